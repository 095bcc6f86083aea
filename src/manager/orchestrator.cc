#include "manager/orchestrator.h"

#include <algorithm>
#include <chrono>

#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "workflow/analysis.h"
#include "workflow/planner.h"

namespace flotilla::manager {

using nlohmann::json;
using workflow::Piece;
using workflow::PieceKind;
using workflow::Plan;

namespace {

constexpr const char* kDocKind = "workflow";

// Measured costs move by an exponentially weighted average: one call on a
// tiny input should not flip the next plan of a big one on its own.
void Learn(std::map<std::string, double>& table, const std::string& key, double value) {
  auto [it, inserted] = table.emplace(key, value);
  if (!inserted) it->second = 0.7 * it->second + 0.3 * value;
}
constexpr const char* kResultMarker = "\x1e" "FLOTILLA-RESULT ";
constexpr const char* kModuleName = "flotilla_fn";
constexpr size_t kLocalityMinBytes = 64 * 1024;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

bool Terminal(v1::ExecutionState s) {
  return s == v1::EXECUTION_SUCCEEDED || s == v1::EXECUTION_FAILED ||
         s == v1::EXECUTION_TIMED_OUT || s == v1::EXECUTION_CANCELLED;
}

std::string Tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "…" + s.substr(s.size() - n);
}

// "wf-x.p2.t0.1" -> workflow "wf-x", piece "p2", task 0, try 1.
struct TaskId {
  std::string workflow, piece;
  size_t task = 0;
  int attempt = 0;
};

std::string MakeTaskId(const std::string& wf, const std::string& piece, size_t task, int attempt) {
  return absl::StrCat(wf, ".", piece, ".t", task, ".", attempt);
}

std::optional<TaskId> ParseTaskId(const std::string& id) {
  std::vector<std::string> parts = absl::StrSplit(id, '.');
  if (parts.size() != 4 || parts[0].rfind("wf-", 0) != 0 || parts[2].size() < 2 ||
      parts[2][0] != 't') {
    return std::nullopt;
  }
  TaskId t;
  t.workflow = parts[0];
  t.piece = parts[1];
  if (!absl::SimpleAtoi(parts[2].substr(1), &t.task) || !absl::SimpleAtoi(parts[3], &t.attempt)) {
    return std::nullopt;
  }
  return t;
}

std::string ErrorText(const json& error) {
  if (!error.is_object()) return error.dump();
  return absl::StrCat(error.value("type", std::string("Error")), ": ",
                      error.value("message", std::string("")));
}

}  // namespace

absl::StatusOr<json> ParseRunnerResult(const std::string& out) {
  size_t pos = out.rfind(kResultMarker);
  if (pos == std::string::npos) {
    return absl::InvalidArgumentError("the program printed no result line");
  }
  size_t start = pos + std::string(kResultMarker).size();
  size_t end = out.find('\n', start);
  json j = json::parse(out.substr(start, end == std::string::npos ? std::string::npos : end - start),
                       nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the result line is not a JSON object");
  }
  return j;
}

// ------------------------------------------------------------------ state

struct Orchestrator::Task {
  std::string execution_id;  // of the current try
  std::string node_id;       // where it ran
  int tries = 0;
  bool done = false;
  json items;  // kMap: the element values' encodings, in order
  std::vector<json> slice;  // kMap: this task's items
};

struct Orchestrator::PieceRun {
  std::string state = "pending";  // pending, running, succeeded, failed, cancelled
  std::vector<Task> tasks;
  std::string node_id;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  int64_t duration_us = 0;  // sum over tasks, as the runners measured it
  std::string error;
};

struct Orchestrator::Workflow {
  std::string id;
  std::string kind;  // "call" or "dag"
  std::string function;
  int64_t function_version = 0;
  std::string user_id;
  std::string source, entrypoint, template_name;
  json args, kwargs, call;  // value encodings of the call's arguments
  Plan plan;
  std::map<std::string, PieceRun> runs;
  std::string state = "running";
  json result;
  json result_json;
  json error;
  int64_t submitted_ms = 0;
  int64_t finished_ms = 0;

  const Piece* FindPiece(const std::string& id) const {
    for (const auto& p : plan.pieces) {
      if (p.id == id) return &p;
    }
    return nullptr;
  }
  // Workflows from before tenants have no user_id: tenant default.
  std::string Tenant() const { return user_id.empty() ? "default" : user_id; }
  // Its key-value namespace, in its tenant's (kv/kv.h TenantOfNamespace),
  // so that its state counts toward that tenant's quota.
  std::string Namespace() const { return Tenant() == "default" ? id : Tenant() + "~" + id; }
};

namespace {

json WorkflowToDocument(const std::string& id, const std::string& kind, const std::string& fn,
                        int64_t version, const std::string& user, const std::string& source,
                        const std::string& entrypoint, const std::string& tmpl, const json& args,
                        const json& kwargs, const json& call, const Plan& plan,
                        const std::string& state, const json& result, const json& result_json,
                        const json& error, int64_t submitted, int64_t finished) {
  return {{"id", id},         {"kind", kind},
          {"function", fn},   {"function_version", version},
          {"user_id", user},  {"source", source},
          {"entrypoint", entrypoint}, {"template", tmpl},
          {"args", args},     {"kwargs", kwargs},
          {"call", call},     {"plan", json::parse(workflow::PlanToJson(plan))},
          {"state", state},   {"result", result},
          {"result_json", result_json}, {"error", error},
          {"submitted_unix_ms", submitted}, {"finished_unix_ms", finished}};
}

}  // namespace

Orchestrator::Orchestrator(Manager* manager, store::Store* store, FunctionRegistry* functions,
                           kv::KvStore* kv, OrchestratorOptions options, std::string runner,
                           std::string analyzer)
    : manager_(manager),
      store_(store),
      functions_(functions),
      kv_(kv),
      options_(options),
      runner_(std::move(runner)),
      analyzer_(std::move(analyzer)) {}

Orchestrator::~Orchestrator() { Stop(); }

void Orchestrator::Start() {
  worker_ = std::thread([this] { WorkerLoop(); });
}

void Orchestrator::Stop() {
  {
    absl::MutexLock lock(&events_mu_);
    stopping_ = true;
    events_cv_.SignalAll();
  }
  if (worker_.joinable()) worker_.join();
  absl::MutexLock lock(&mu_);
  changed_.SignalAll();
}

void Orchestrator::NoteFinished(const std::string& execution_id) {
  if (execution_id.rfind("wf-", 0) != 0) return;
  absl::MutexLock lock(&events_mu_);
  events_.push_back(execution_id);
  events_cv_.Signal();
}

void Orchestrator::WorkerLoop() {
  int64_t last_poll = 0;
  while (true) {
    std::deque<std::string> batch;
    {
      absl::MutexLock lock(&events_mu_);
      if (events_.empty() && !stopping_) events_cv_.WaitWithTimeout(&events_mu_, absl::Milliseconds(250));
      if (stopping_) return;
      batch.swap(events_);
    }
    for (const auto& id : batch) Handle(id);
    int64_t now = NowMs();
    if (now - last_poll >= 1000) {
      last_poll = now;
      PollRunning();
      ScaleTick(now);
    }
  }
}

// ------------------------------------------------------------------ persistence

void Orchestrator::Persist(const Workflow& wf) {
  json doc = WorkflowToDocument(wf.id, wf.kind, wf.function, wf.function_version, wf.user_id,
                                wf.source, wf.entrypoint, wf.template_name, wf.args, wf.kwargs,
                                wf.call, wf.plan, wf.state, wf.result, wf.result_json, wf.error,
                                wf.submitted_ms, wf.finished_ms);
  json runs = json::object();
  for (const auto& [id, r] : wf.runs) {
    json tasks = json::array();
    for (const auto& t : r.tasks) {
      tasks.push_back({{"execution_id", t.execution_id}, {"node_id", t.node_id},
                       {"tries", t.tries}, {"done", t.done},
                       {"items", t.items}, {"slice", t.slice}});
    }
    runs[id] = {{"state", r.state},         {"tasks", tasks},
                {"node_id", r.node_id},     {"started_ms", r.started_ms},
                {"finished_ms", r.finished_ms}, {"duration_us", r.duration_us},
                {"error", r.error}};
  }
  doc["runs"] = runs;
  absl::Status st = store_->PutDocument({kDocKind, wf.id, doc.dump(), NowMs()});
  if (!st.ok()) spdlog::error("[{}] could not persist workflow: {}", wf.id, st.message());
}

absl::Status Orchestrator::Recover() {
  ASSIGN_OR_RETURN(auto docs, store_->ListDocuments(kDocKind));
  int resumed = 0;
  for (const auto& d : docs) {
    json j = json::parse(d.body, nullptr, false);
    if (j.is_discarded() || j.value("state", "") != "running") continue;
    auto wf = std::make_unique<Workflow>();
    wf->id = j.value("id", "");
    wf->kind = j.value("kind", "call");
    wf->function = j.value("function", "");
    wf->function_version = j.value("function_version", int64_t{0});
    wf->user_id = j.value("user_id", "");
    wf->source = j.value("source", "");
    wf->entrypoint = j.value("entrypoint", "");
    wf->template_name = j.value("template", "python");
    wf->args = j["args"];
    wf->kwargs = j["kwargs"];
    wf->call = j["call"];
    wf->submitted_ms = j.value("submitted_unix_ms", int64_t{0});
    auto plan = workflow::PlanFromJson(j["plan"].dump());
    if (!plan.ok()) {
      spdlog::error("[{}] stored plan unreadable, workflow dropped: {}", wf->id, plan.status().message());
      continue;
    }
    wf->plan = *plan;
    for (const auto& [pid, rj] : j["runs"].items()) {
      PieceRun r;
      r.state = rj.value("state", "pending");
      r.node_id = rj.value("node_id", "");
      r.started_ms = rj.value("started_ms", int64_t{0});
      r.finished_ms = rj.value("finished_ms", int64_t{0});
      r.duration_us = rj.value("duration_us", int64_t{0});
      r.error = rj.value("error", "");
      for (const auto& tj : rj["tasks"]) {
        Task t;
        t.execution_id = tj.value("execution_id", "");
        t.node_id = tj.value("node_id", "");
        t.tries = tj.value("tries", 0);
        t.done = tj.value("done", false);
        t.items = tj["items"];
        for (const auto& s : tj["slice"]) t.slice.push_back(s);
        r.tasks.push_back(std::move(t));
      }
      wf->runs[pid] = std::move(r);
    }
    absl::Status restored = RestoreOutputs(*wf);
    if (!restored.ok()) spdlog::warn("[{}] {}", wf->id, restored.message());
    resumed++;
    absl::MutexLock lock(&mu_);
    workflows_[wf->id] = std::move(wf);
  }
  if (resumed > 0) spdlog::info("orchestrator: resumed {} running workflows", resumed);
  return absl::OkStatus();
}

// The outputs of finished pieces are in their executions' stored results, so
// put back any the key-value store lacks: the embedded store persists every
// acknowledged put, but a manager killed between a result and its output's
// put, or state written before the store was durable, leaves gaps.
absl::Status Orchestrator::RestoreOutputs(Workflow& wf) {
  for (const auto& piece : wf.plan.pieces) {
    auto it = wf.runs.find(piece.id);
    if (it == wf.runs.end() || it->second.state != "succeeded") continue;
    if (piece.kind == PieceKind::kMap) {
      json items = json::array();
      for (const auto& t : it->second.tasks) {
        for (const auto& v : t.items) items.push_back(v);
      }
      json enc = {{"encoding", "items"}, {"data", items}};
      RETURN_IF_ERROR(kv_->Put(wf.Namespace(), absl::StrCat(piece.id, "/", piece.map.accumulator),
                               enc.dump()).status());
      continue;
    }
    for (const auto& var : piece.outputs) {
      std::string key = absl::StrCat(piece.id, "/", var);
      ASSIGN_OR_RETURN(auto have, kv_->Get(wf.Namespace(), key));
      if (have) continue;
      ASSIGN_OR_RETURN(v1::Execution exec, manager_->Get(it->second.tasks.at(0).execution_id));
      if (piece.kind == PieceKind::kCommand) {
        RETURN_IF_ERROR(kv_->Put(wf.Namespace(), key, exec.result().stdout()).status());
        continue;
      }
      ASSIGN_OR_RETURN(json out, ParseRunnerResult(exec.result().stdout()));
      if (!out["outputs"].contains(var)) continue;
      RETURN_IF_ERROR(kv_->Put(wf.Namespace(), key, out["outputs"][var].dump()).status());
    }
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------------ analysis

absl::StatusOr<std::string> Orchestrator::RunAnalyzer(const std::string& source,
                                                      const std::string& entrypoint) {
  std::vector<std::string> deployed;
  if (auto fns = functions_->List(); fns.ok()) {
    for (const auto& f : *fns) deployed.push_back(f.entrypoint);
  }
  json input = {{"source", source}, {"function", entrypoint}, {"deployed", deployed}};
  v1::ExecutionRequest req;
  req.set_request_id(NewId("an-"));
  req.set_name(absl::StrCat("split-analyze ", entrypoint));
  req.mutable_code()->set_runtime("python3");
  req.mutable_code()->set_source(analyzer_);
  req.set_stdin(input.dump());
  req.set_template_name("python");
  req.set_function("flotilla.split-analyze");
  req.set_timeout_ms(options_.analysis_timeout_ms);
  ASSIGN_OR_RETURN(v1::SubmitResponse sub, manager_->Submit(req));
  const std::string id = sub.execution().id();
  const int64_t deadline = NowMs() + options_.analysis_timeout_ms + 5000;
  while (true) {
    ASSIGN_OR_RETURN(v1::Execution e, manager_->Get(id));
    if (Terminal(e.state())) {
      if (e.state() != v1::EXECUTION_SUCCEEDED) {
        return absl::UnavailableError(absl::StrCat(
            "the split analysis (execution ", id, ") ended ", v1::ExecutionState_Name(e.state()),
            ": ", e.error().empty() ? Tail(e.result().stderr(), 400) : e.error()));
      }
      auto parsed = ParseRunnerResult(e.result().stdout());
      if (!parsed.ok()) return parsed.status();
      return parsed->dump();
    }
    if (NowMs() > deadline) {
      (void)manager_->Cancel(id);
      return absl::DeadlineExceededError(
          absl::StrCat("the split analysis (execution ", id, ") did not finish in time"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

absl::StatusOr<Plan> Orchestrator::PlanCall(const Function& f, std::string* analysis_json) {
  if (!f.annotations.splitable) {
    Plan p;
    p.function = f.name;
    p.split = false;
    p.reason = "runs whole: the function is not annotated splitable";
    Piece piece;
    piece.id = "call";
    piece.kind = PieceKind::kCall;
    piece.reason = p.reason;
    p.pieces.push_back(std::move(piece));
    return p;
  }
  std::string analysis = f.analysis;
  if (analysis.empty()) {
    ASSIGN_OR_RETURN(analysis, RunAnalyzer(f.source, f.entrypoint));
    (void)functions_->SaveAnalysis(f.name, f.sha256, analysis);
  }
  if (analysis_json) *analysis_json = analysis;
  ASSIGN_OR_RETURN(workflow::Analysis a, workflow::ParseAnalysis(analysis));
  workflow::PlanOptions o;
  o.min_piece_cost = options_.min_piece_cost;
  o.available_nodes = manager_->OnlineNodeCount();
  {
    absl::MutexLock lock(&mu_);
    o.measured_cost_ms = measured_ms_[f.name];
    o.measured_bytes = measured_bytes_[f.name];
    o.measured_items = measured_items_[f.name];
  }
  // Measured costs are in ms; a remote call costs about min_piece_cost ms.
  o.units_per_ms = 1.0;
  return workflow::MakePlan(a, o);
}

absl::StatusOr<json> Orchestrator::Analyze(const json& request) {
  if (!request.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  Function f;
  if (request.contains("function") && request["function"].is_string()) {
    ASSIGN_OR_RETURN(f, functions_->Get(request["function"].get<std::string>()));
    f.annotations.splitable = true;  // analyse even if it is not annotated yet
  } else {
    f.name = request.value("entrypoint", "");
    f.entrypoint = f.name;
    f.source = request.value("source", "");
    f.annotations.splitable = true;
    if (f.source.empty() || f.entrypoint.empty()) {
      return absl::InvalidArgumentError(
          "split/analyze needs {\"function\": NAME} or {\"source\": ..., \"entrypoint\": ...}");
    }
  }
  std::string analysis;
  ASSIGN_OR_RETURN(Plan plan, PlanCall(f, &analysis));
  json out = {{"plan", json::parse(workflow::PlanToJson(plan))},
              {"analysis", json::parse(analysis, nullptr, false)}};
  return out;
}

// ------------------------------------------------------------------ submit

namespace {

absl::StatusOr<std::string> ValidRequestId(const json& value) {
  if (!value.is_string()) return absl::InvalidArgumentError("request_id must be a string");
  const std::string id = value.get<std::string>();
  if (id.empty() || id.size() > 128) {
    return absl::InvalidArgumentError("request_id must be 1 to 128 characters");
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return absl::InvalidArgumentError(absl::StrCat(
          "request_id '", id, "' may hold only letters, digits, '.', '-' and '_'"));
    }
  }
  return id;
}

// The workflow id of a tenant's request id: a digest, so that ids stay in
// the workflow id alphabet and two tenants' equal request ids never meet.
std::string WorkflowIdFor(const std::string& tenant, const std::string& request_id) {
  const std::string key = absl::StrCat(tenant, std::string(1, '\0'), request_id);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  return absl::StrCat("wf-r", absl::BytesToHexString(absl::string_view(
                                  reinterpret_cast<const char*>(digest), 12)));
}

}  // namespace

absl::StatusOr<json> Orchestrator::Submit(const json& request, const std::string& tenant) {
  if (!request.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  auto wf = std::make_unique<Workflow>();
  // A request id makes the submit idempotent: the same id (per tenant) names
  // the same workflow, so a client whose answer was lost can send it again.
  std::string request_id;
  if (request.contains("request_id")) {
    ASSIGN_OR_RETURN(request_id, ValidRequestId(request["request_id"]));
    wf->id = WorkflowIdFor(tenant, request_id);
    const int64_t wait_ms = request.value("wait_ms", int64_t{0});
    if (absl::StatusOr<json> existing = Get(wf->id, 0, tenant); existing.ok()) {
      return wait_ms > 0 ? Get(wf->id, wait_ms, tenant) : existing;
    } else if (!absl::IsNotFound(existing.status())) {
      // Unknown is not absent: making it again could run it twice.
      return absl::UnavailableError(absl::StrCat("cannot tell whether request ", request_id,
                                                 " was submitted: ", existing.status().message()));
    }
  } else {
    wf->id = NewId("wf-");
    for (char& c : wf->id) {
      if (c == '.') c = '-';
    }
  }
  wf->submitted_ms = NowMs();
  wf->user_id = tenant;
  if (request.contains("plan")) {
    const json& spec = request["plan"];
    ASSIGN_OR_RETURN(wf->plan, workflow::PlanFromWorkflowSpec(spec.is_string()
                                                                  ? spec.get<std::string>()
                                                                  : spec.dump()));
    wf->kind = "dag";
    wf->function = wf->plan.function;
    wf->template_name = "shell";
  } else if (request.contains("function") && request["function"].is_string()) {
    ASSIGN_OR_RETURN(Function f, functions_->Get(request["function"].get<std::string>()));
    wf->kind = "call";
    wf->function = f.name;
    wf->function_version = f.version;
    wf->source = f.source;
    wf->entrypoint = f.entrypoint;
    wf->template_name = f.template_name;
    if (request.contains("args_pickle")) {
      if (!request["args_pickle"].is_string()) {
        return absl::InvalidArgumentError("args_pickle must be base64 text");
      }
      wf->call = {{"encoding", "pickle"}, {"data", request["args_pickle"]}};
    } else {
      json args = request.contains("args") ? request["args"] : json::array();
      json kwargs = request.contains("kwargs") ? request["kwargs"] : json::object();
      if (!args.is_array()) return absl::InvalidArgumentError("args must be a JSON list");
      if (!kwargs.is_object()) return absl::InvalidArgumentError("kwargs must be a JSON object");
      wf->args = {{"encoding", "json"}, {"data", args}};
      wf->kwargs = {{"encoding", "json"}, {"data", kwargs}};
    }
    ASSIGN_OR_RETURN(wf->plan, PlanCall(f, nullptr));
  } else {
    return absl::InvalidArgumentError(
        "execution/submit needs {\"function\": NAME, \"args\": [...]} or {\"plan\": {...}}");
  }
  for (const auto& p : wf->plan.pieces) wf->runs[p.id] = PieceRun{};
  const std::string id = wf->id;
  std::vector<Submission> subs;
  {
    absl::MutexLock lock(&mu_);
    if (workflows_.count(id)) {
      // The same request id, sent twice at once: the other one made it.
      return absl::UnavailableError(
          absl::StrCat("request ", request_id, " is being submitted concurrently; retry"));
    }
    Workflow& ref = *wf;
    workflows_[id] = std::move(wf);
    Persist(ref);
    spdlog::info("[{}] workflow for {}: {}", id, ref.function, ref.plan.reason);
    subs = Advance(ref);
  }
  SubmitAll(std::move(subs));
  return Get(id, request.value("wait_ms", int64_t{0}));
}

v1::ExecutionRequest Orchestrator::BaseRequest(const Workflow& wf, const Piece& piece,
                                               const Function* f) {
  v1::ExecutionRequest req;
  req.set_user_id(wf.user_id);
  req.set_name(absl::StrCat(wf.function, ":", piece.id));
  req.set_function(wf.kind == "dag" ? absl::StrCat(wf.function, ":", piece.id) : wf.function);
  req.set_template_name(wf.template_name);
  if (f) {
    // The function's annotations as they are now: an update applies to the
    // pieces that start after it.
    const Annotations& a = f->annotations;
    if (a.memory_bytes > 0) req.mutable_resources()->set_memory_bytes(a.memory_bytes);
    // A piece of a split call is CPU work by assumption (that is why it was
    // split): it reserves a core unless annotated otherwise, so the
    // scheduler spreads a fan-out over the nodes instead of stacking it.
    const int64_t cpu = a.cpu_millis > 0 ? a.cpu_millis : (wf.plan.split ? 1000 : 0);
    if (cpu > 0) req.mutable_resources()->set_cpu_millis(cpu);
    if (a.timeout_ms > 0) req.set_timeout_ms(a.timeout_ms);
    for (const auto& r : a.geo_preference) req.mutable_placement()->add_preferred_regions(r);
  }
  return req;
}

absl::StatusOr<std::vector<v1::ExecutionRequest>> Orchestrator::BuildRequests(
    Workflow& wf, PieceRun& run, const Piece& piece) {
  std::optional<Function> fn;
  if (wf.kind == "call") {
    auto f = functions_->Get(wf.function);
    if (f.ok()) fn = *f;  // deleted meanwhile: the snapshot still runs
  }
  // Inputs from upstream pieces, by key.
  json inputs = json::object();
  std::vector<std::string> keys;
  int64_t input_bytes = 0;
  std::string stdin_text;  // kCommand
  for (const auto& e : wf.plan.edges) {
    if (e.to != piece.id) continue;
    for (const auto& var : e.vars) {
      // A command step's output is its stdout, whatever the edge calls it.
      std::string key = absl::StrCat(e.from, "/", piece.kind == PieceKind::kCommand ? "stdout" : var);
      ASSIGN_OR_RETURN(auto entry, kv_->Get(wf.Namespace(), key));
      if (!entry) {
        return absl::DataLossError(absl::StrCat("input '", var, "' of piece ", piece.id,
                                                " is missing from the key-value store"));
      }
      // Locality only for inputs worth moving: a few hundred bytes cost
      // nothing to ship, and would pull every consumer onto one node.
      if (entry->value.size() >= kLocalityMinBytes) keys.push_back(absl::StrCat(wf.id, "/", key));
      input_bytes += static_cast<int64_t>(entry->value.size());
      if (piece.kind == PieceKind::kCommand) {
        stdin_text += entry->value;
        continue;
      }
      json v = json::parse(entry->value, nullptr, false);
      if (v.is_discarded()) return absl::DataLossError(absl::StrCat("input '", var, "' is corrupt"));
      inputs[var] = std::move(v);
    }
  }
  std::vector<v1::ExecutionRequest> out;
  auto finish = [&](v1::ExecutionRequest req) {
    for (const auto& k : keys) req.mutable_dependencies()->add_data_keys(k);
    req.set_input_bytes(input_bytes);
    out.push_back(std::move(req));
  };
  if (piece.kind == PieceKind::kCommand) {
    v1::ExecutionRequest req = BaseRequest(wf, piece, nullptr);
    req.mutable_code()->set_runtime(piece.runtime);
    req.mutable_code()->set_source(piece.code);
    req.set_template_name(piece.runtime == "python3" ? "python" : "shell");
    req.set_stdin(stdin_text);
    if (run.tasks.empty()) run.tasks.resize(1);
    finish(std::move(req));
    return out;
  }
  json base = {{"module", wf.source}, {"module_name", kModuleName}};
  auto add_call_args = [&](json& spec) {
    spec["entrypoint"] = wf.entrypoint;
    if (!wf.call.is_null()) {
      spec["args_pickle"] = wf.call["data"];
    } else {
      spec["args"] = wf.args;
      spec["kwargs"] = wf.kwargs;
    }
  };
  auto python = [&](const json& spec) {
    v1::ExecutionRequest req = BaseRequest(wf, piece, fn ? &*fn : nullptr);
    req.mutable_code()->set_runtime("python3");
    req.mutable_code()->set_source(runner_);
    req.set_stdin(spec.dump());
    return req;
  };
  switch (piece.kind) {
    case PieceKind::kCall: {
      json spec = base;
      spec["mode"] = "call";
      add_call_args(spec);
      if (run.tasks.empty()) run.tasks.resize(1);
      finish(python(spec));
      return out;
    }
    case PieceKind::kPiece:
    case PieceKind::kReturn: {
      json spec = base;
      spec["mode"] = "piece";
      spec["code"] = piece.code;
      spec["inputs"] = inputs;
      spec["outputs"] = piece.outputs;
      spec["expand"] = piece.expand;
      spec["return"] = piece.kind == PieceKind::kReturn ? json(piece.return_expr) : json();
      if (!piece.params.empty()) add_call_args(spec);
      if (run.tasks.empty()) run.tasks.resize(1);
      finish(python(spec));
      return out;
    }
    case PieceKind::kMap: {
      if (!inputs.contains(piece.items_from) || !inputs[piece.items_from].contains("data")) {
        return absl::DataLossError(absl::StrCat("map ", piece.id, " has no items"));
      }
      const json items = inputs[piece.items_from]["data"];
      json others = inputs;
      others.erase(piece.items_from);
      if (run.tasks.empty()) {
        // Chunks: as many as the federation can run at once, none cheaper
        // than a remote call once the cost of an item is known.
        const int n = static_cast<int>(items.size());
        double per_item = 0;
        {
          auto m = measured_ms_[wf.function].find(piece.statements.empty() ? piece.id
                                                                           : piece.statements[0]);
          if (m != measured_ms_[wf.function].end()) per_item = m->second;
        }
        int chunks = workflow::ChunkCount(n, per_item, options_.min_piece_cost,
                                          std::min(options_.max_fanout, options_.max_instances));
        run.tasks.resize(std::max(1, chunks));
        for (int i = 0; i < n; ++i) {
          run.tasks[static_cast<size_t>(i) * run.tasks.size() / std::max(1, n)].slice.push_back(items[i]);
        }
        if (!piece.statements.empty()) measured_items_[wf.function][piece.statements[0]] = n;
      }
      for (auto& t : run.tasks) {
        json spec = base;
        spec["mode"] = "map";
        spec["target"] = piece.map.target;
        spec["element"] = piece.map.element;
        spec["items"] = {{"encoding", "items"}, {"data", t.slice}};
        spec["inputs"] = others;
        finish(python(spec));
      }
      return out;
    }
    case PieceKind::kCommand:
      break;
  }
  return absl::InternalError("unknown piece kind");
}

int Orchestrator::InFlight(const std::string& function) const {
  int n = 0;
  for (const auto& [id, wf] : workflows_) {
    if (wf->state != "running" || wf->function != function) continue;
    for (const auto& [pid, r] : wf->runs) {
      if (r.state != "running") continue;
      for (const auto& t : r.tasks) n += t.done ? 0 : 1;
    }
  }
  return n;
}

std::vector<Orchestrator::Submission> Orchestrator::Advance(Workflow& wf) {
  std::vector<Submission> subs;
  if (wf.state != "running") return subs;
  std::vector<std::string> done, started;
  for (const auto& [id, r] : wf.runs) {
    if (r.state == "succeeded") done.push_back(id);
    else if (r.state != "pending") started.push_back(id);
  }
  int in_flight = InFlight(wf.function);
  for (const auto& id : workflow::ReadyPieces(wf.plan, done, started)) {
    const Piece* piece = wf.FindPiece(id);
    PieceRun& run = wf.runs[id];
    if (in_flight >= options_.max_instances) break;  // the next finish advances again
    auto reqs = BuildRequests(wf, run, *piece);
    if (!reqs.ok()) {
      FailWorkflow(wf, {{"type", "WorkflowError"},
                        {"message", absl::StrCat("piece ", id, ": ", reqs.status().message())}});
      return {};
    }
    run.state = "running";
    run.started_ms = NowMs();
    for (size_t t = 0; t < run.tasks.size(); ++t) {
      Task& task = run.tasks[t];
      task.tries = 1;
      task.execution_id = MakeTaskId(wf.id, id, t, task.tries);
      v1::ExecutionRequest req = (*reqs)[t];
      req.set_request_id(task.execution_id);
      subs.push_back({wf.id, std::move(req)});
      in_flight++;
    }
  }
  if (!subs.empty()) Persist(wf);
  return subs;
}

void Orchestrator::SubmitAll(std::vector<Submission> subs) {
  for (auto& s : subs) {
    auto r = manager_->Submit(s.request);
    if (r.ok() && r->already_existed() &&
        r->execution().request().user_id() != s.request.user_id()) {
      // Defence in depth (access.cc reserves these ids): never take another
      // tenant's execution for a piece of this workflow.
      r = absl::PermissionDeniedError(
          absl::StrCat("execution ", s.request.request_id(), " belongs to another tenant"));
    }
    if (r.ok()) continue;
    spdlog::warn("[{}] submit of {} failed: {}", s.workflow_id, s.request.request_id(),
                 r.status().message());
    absl::MutexLock lock(&mu_);
    auto it = workflows_.find(s.workflow_id);
    if (it == workflows_.end()) continue;
    FailWorkflow(*it->second, {{"type", "SubmitError"},
                               {"message", absl::StrCat("could not submit ", s.request.request_id(),
                                                        ": ", r.status().message())}});
  }
}

// ------------------------------------------------------------------ results

void Orchestrator::Handle(const std::string& execution_id) {
  auto tid = ParseTaskId(execution_id);
  if (!tid) return;
  auto exec = manager_->Get(execution_id);
  if (!exec.ok() || !Terminal(exec->state())) return;
  std::vector<Submission> subs;
  {
    absl::MutexLock lock(&mu_);
    auto it = workflows_.find(tid->workflow);
    if (it == workflows_.end()) return;
    Workflow& wf = *it->second;
    if (wf.state != "running") return;
    const Piece* piece = wf.FindPiece(tid->piece);
    auto run = wf.runs.find(tid->piece);
    if (!piece || run == wf.runs.end() || run->second.state != "running" ||
        tid->task >= run->second.tasks.size()) {
      return;
    }
    Task& task = run->second.tasks[tid->task];
    if (task.done || task.execution_id != execution_id) return;  // stale
    OnTaskDone(wf, run->second, *piece, tid->task, *exec);
    if (wf.state == "running") {
      // A try again, if OnTaskDone asked for one.
      if (!task.done && task.execution_id != execution_id) {
        auto reqs = BuildRequests(wf, run->second, *piece);
        if (reqs.ok()) {
          v1::ExecutionRequest req = (*reqs)[tid->task];
          req.set_request_id(task.execution_id);
          subs.push_back({wf.id, std::move(req)});
        } else {
          FailWorkflow(wf, {{"type", "WorkflowError"}, {"message", std::string(reqs.status().message())}});
        }
      }
      auto more = Advance(wf);
      subs.insert(subs.end(), more.begin(), more.end());
    }
    Persist(wf);
    changed_.SignalAll();
  }
  SubmitAll(std::move(subs));
}

void Orchestrator::OnTaskDone(Workflow& wf, PieceRun& run, const Piece& piece, size_t index,
                              const v1::Execution& exec) {
  Task& task = run.tasks[index];
  const auto& result = exec.result();
  run.node_id = exec.node_id();
  task.node_id = exec.node_id();
  auto retry_or_fail = [&](const std::string& why) {
    if (task.tries < options_.max_tries) {
      spdlog::warn("[{}] piece {} task {} try {} failed ({}); trying again", wf.id, piece.id, index,
                   task.tries, why);
      task.tries++;
      task.execution_id = MakeTaskId(wf.id, piece.id, index, task.tries);
      return;
    }
    run.state = "failed";
    run.error = why;
    FailWorkflow(wf, {{"type", "PieceFailed"},
                      {"message", absl::StrCat("piece ", piece.id, " failed after ", task.tries,
                                               " tries: ", why)}});
  };

  if (exec.state() == v1::EXECUTION_TIMED_OUT) {
    run.state = "failed";
    run.error = "timed out";
    FailWorkflow(wf, {{"type", "TimeoutError"},
                      {"message", absl::StrCat("piece ", piece.id, " ran past its timeout of ",
                                               exec.request().timeout_ms(), " ms")}});
    return;
  }
  if (exec.state() != v1::EXECUTION_SUCCEEDED) {
    std::string why = !exec.error().empty() ? exec.error() : result.error();
    if (why.empty()) {
      why = absl::StrCat(v1::ExecutionState_Name(exec.state()), " (exit ", result.exit_code(),
                         result.signal() ? absl::StrCat(", signal ", result.signal()) : "", ") ",
                         Tail(result.stderr(), 300));
    }
    retry_or_fail(why);
    return;
  }
  std::string node_prefix = absl::StrCat(wf.id, "/", piece.id, "/");
  if (piece.kind == PieceKind::kCommand) {
    std::string key = absl::StrCat(piece.id, "/stdout");
    auto put = kv_->Put(wf.Namespace(), key, result.stdout());
    if (!put.ok()) return retry_or_fail(std::string(put.status().message()));
    manager_->AddNodeData(exec.node_id(), node_prefix + "stdout",
                          static_cast<int64_t>(result.stdout().size()));
    task.done = true;
  } else {
    auto out = ParseRunnerResult(result.stdout());
    if (!out.ok()) {
      return retry_or_fail(absl::StrCat(out.status().message(),
                                        result.stdout_truncated() ? " (stdout was truncated)" : "",
                                        " ", Tail(result.stderr(), 300)));
    }
    if (!out->value("ok", false)) {
      run.state = "failed";
      run.error = ErrorText((*out)["error"]);
      FailWorkflow(wf, (*out)["error"]);
      return;
    }
    run.duration_us += out->value("duration_us", int64_t{0});
    if (piece.kind == PieceKind::kMap) {
      task.items = (*out)["result"].value("data", json::array());
    } else {
      for (const auto& [var, enc] : (*out)["outputs"].items()) {
        auto put = kv_->Put(wf.Namespace(), absl::StrCat(piece.id, "/", var), enc.dump());
        if (!put.ok()) return retry_or_fail(std::string(put.status().message()));
        int64_t bytes = enc.value("bytes", static_cast<int64_t>(enc.dump().size()));
        measured_bytes_[wf.function][var] = bytes;
        manager_->AddNodeData(exec.node_id(), node_prefix + var, bytes);
      }
      if (piece.kind == PieceKind::kCall || piece.kind == PieceKind::kReturn) {
        wf.result = (*out)["result"];
        if (out->contains("result_json")) wf.result_json = (*out)["result_json"];
      }
    }
    task.done = true;
  }
  for (const auto& t : run.tasks) {
    if (!t.done) return;
  }
  // Every task of the piece is done.
  run.state = "succeeded";
  run.finished_ms = NowMs();
  if (piece.kind == PieceKind::kMap) {
    json items = json::array();
    for (const auto& t : run.tasks) {
      for (const auto& v : t.items) items.push_back(v);
    }
    json enc = {{"encoding", "items"}, {"data", items}};
    auto put = kv_->Put(wf.Namespace(), absl::StrCat(piece.id, "/", piece.map.accumulator), enc.dump());
    if (!put.ok()) {
      FailWorkflow(wf, {{"type", "WorkflowError"}, {"message", std::string(put.status().message())}});
      return;
    }
    manager_->AddNodeData(run.node_id, node_prefix + piece.map.accumulator,
                          static_cast<int64_t>(enc.dump().size()));
    if (!piece.statements.empty() && !items.empty()) {
      Learn(measured_ms_[wf.function], piece.statements[0],
            run.duration_us / 1000.0 / static_cast<double>(items.size()));
    }
  } else if (!piece.statements.empty() && run.duration_us > 0) {
    double each = run.duration_us / 1000.0 / static_cast<double>(piece.statements.size());
    for (const auto& s : piece.statements) Learn(measured_ms_[wf.function], s, each);
  }
  if (piece.kind == PieceKind::kCall || piece.kind == PieceKind::kReturn) {
    EndWorkflow(wf, "succeeded");
    return;
  }
  if (wf.kind == "dag") {
    bool all = true;
    for (const auto& [id, r] : wf.runs) all &= r.state == "succeeded";
    if (all) {
      // A hand-written workflow's result: the output of every step nobody reads.
      json sinks = json::object();
      for (const auto& p : wf.plan.pieces) {
        bool read = false;
        for (const auto& e : wf.plan.edges) read |= e.from == p.id;
        if (read) continue;
        auto v = kv_->Get(wf.Namespace(), absl::StrCat(p.id, "/stdout"));
        sinks[p.id] = v.ok() && *v ? (*v)->value : "";
      }
      wf.result_json = sinks;
      wf.result = {{"encoding", "json"}, {"data", sinks}};
      EndWorkflow(wf, "succeeded");
    }
  }
}

void Orchestrator::FailWorkflow(Workflow& wf, json error, const std::string& state) {
  if (wf.state != "running") return;
  wf.error = std::move(error);
  std::vector<std::string> running;
  for (auto& [id, r] : wf.runs) {
    if (r.state != "running") continue;
    for (const auto& t : r.tasks) {
      if (!t.done) running.push_back(t.execution_id);
    }
    if (r.state == "running") r.state = "cancelled";
  }
  EndWorkflow(wf, state);
  // Manager::Cancel takes the manager's lock under ours: that order is the
  // only one (the manager's finish listener takes only events_mu_).
  for (const auto& id : running) (void)manager_->Cancel(id);
}

void Orchestrator::EndWorkflow(Workflow& wf, const std::string& state) {
  wf.state = state;
  wf.finished_ms = NowMs();
  (void)kv_->DeleteNamespace(wf.Namespace());
  manager_->ForgetNodeData(wf.id + "/");
  spdlog::info("[{}] workflow {} in {} ms", wf.id, state, wf.finished_ms - wf.submitted_ms);
  Persist(wf);
  finished_order_.push_back(wf.id);
  while (static_cast<int64_t>(finished_order_.size()) > options_.keep_finished) {
    workflows_.erase(finished_order_.front());
    finished_order_.pop_front();
  }
  changed_.SignalAll();
}

// ------------------------------------------------------------------ queries

json Orchestrator::ToJson(const Workflow& wf, bool with_result) const {
  json pieces = json::array();
  for (const auto& p : wf.plan.pieces) {
    const PieceRun& r = wf.runs.at(p.id);
    json execs = json::array();
    json nodes = json::array();
    int attempts = 0;
    for (const auto& t : r.tasks) {
      execs.push_back(t.execution_id);
      if (!t.node_id.empty()) nodes.push_back(t.node_id);
      attempts += t.tries;
    }
    pieces.push_back({{"id", p.id},
                      {"kind", std::string(workflow::PieceKindName(p.kind))},
                      {"state", r.state},
                      {"executions", execs},
                      {"node_id", r.node_id},
                      {"nodes", nodes},
                      {"attempts", attempts},
                      {"duration_ms", r.finished_ms > 0 ? r.finished_ms - r.started_ms : 0},
                      {"error", r.error},
                      {"reason", p.reason}});
  }
  json j = {{"id", wf.id},
            {"kind", wf.kind},
            {"state", wf.state},
            {"function", wf.function},
            {"function_version", wf.function_version},
            {"split", wf.plan.split},
            {"reason", wf.plan.reason},
            {"pieces", pieces},
            {"submitted_unix_ms", wf.submitted_ms},
            {"finished_unix_ms", wf.finished_ms}};
  if (with_result) {
    if (!wf.result.is_null()) j["result"] = wf.result;
    if (!wf.result_json.is_null()) j["result_json"] = wf.result_json;
    if (!wf.error.is_null()) j["error"] = wf.error;
  }
  return j;
}

absl::StatusOr<json> Orchestrator::Get(const std::string& id, int64_t wait_ms,
                                       const std::optional<std::string>& tenant) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(std::clamp<int64_t>(wait_ms, 0, 600'000));
  const absl::Status missing = absl::NotFoundError(absl::StrCat("no workflow '", id, "'"));
  {
    absl::MutexLock lock(&mu_);
    while (true) {
      auto it = workflows_.find(id);
      if (it == workflows_.end()) break;
      if (tenant && it->second->Tenant() != *tenant) return missing;
      if (it->second->state != "running" || absl::Now() >= deadline) {
        return ToJson(*it->second, /*with_result=*/true);
      }
      changed_.WaitWithDeadline(&mu_, deadline);
    }
  }
  ASSIGN_OR_RETURN(auto doc, store_->GetDocument(kDocKind, id));
  if (!doc) return missing;
  json j = json::parse(doc->body, nullptr, false);
  if (!j.is_object()) return missing;
  const std::string owner = j.value("user_id", "");
  if (tenant && (owner.empty() ? "default" : owner) != *tenant) return missing;
  json out = {{"id", j.value("id", "")},           {"kind", j.value("kind", "")},
              {"state", j.value("state", "")},     {"function", j.value("function", "")},
              {"split", j["plan"].value("splittable", false)},
              {"reason", j["plan"].value("reason", "")},
              {"submitted_unix_ms", j["submitted_unix_ms"]},
              {"finished_unix_ms", j["finished_unix_ms"]}};
  for (const char* k : {"result", "result_json", "error"}) {
    if (!j[k].is_null()) out[k] = j[k];
  }
  return out;
}

absl::StatusOr<json> Orchestrator::Cancel(const std::string& id,
                                          const std::optional<std::string>& tenant) {
  {
    absl::MutexLock lock(&mu_);
    auto it = workflows_.find(id);
    if (it == workflows_.end() || (tenant && it->second->Tenant() != *tenant)) {
      return absl::NotFoundError(absl::StrCat("no running workflow '", id, "'"));
    }
    Workflow& wf = *it->second;
    if (wf.state != "running") {
      return absl::FailedPreconditionError(absl::StrCat("workflow ", id, " has already ", wf.state));
    }
    FailWorkflow(wf, {{"type", "Cancelled"}, {"message", "cancelled by request"}}, "cancelled");
  }
  return Get(id, 0, tenant);
}

std::vector<json> Orchestrator::List(size_t limit, const std::optional<std::string>& tenant) {
  absl::MutexLock lock(&mu_);
  std::vector<const Workflow*> all;
  for (const auto& [id, wf] : workflows_) {
    if (!tenant || wf->Tenant() == *tenant) all.push_back(wf.get());
  }
  std::sort(all.begin(), all.end(),
            [](const Workflow* a, const Workflow* b) { return a->submitted_ms > b->submitted_ms; });
  std::vector<json> out;
  for (const Workflow* wf : all) {
    if (out.size() >= limit) break;
    out.push_back(ToJson(*wf, /*with_result=*/false));
  }
  return out;
}

void Orchestrator::PollRunning() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, wf] : workflows_) {
      if (wf->state != "running") continue;
      for (const auto& [pid, r] : wf->runs) {
        if (r.state != "running") continue;
        for (const auto& t : r.tasks) {
          if (!t.done) ids.push_back(t.execution_id);
        }
      }
    }
  }
  std::vector<Submission> resubmit;
  for (const auto& id : ids) {
    auto e = manager_->Get(id);
    if (e.ok()) {
      if (Terminal(e->state())) Handle(id);
      continue;
    }
    if (!absl::IsNotFound(e.status())) continue;
    // Recorded as started but never accepted (the manager stopped between
    // the two): submit it again; the id makes that idempotent.
    auto tid = ParseTaskId(id);
    if (!tid) continue;
    absl::MutexLock lock(&mu_);
    auto it = workflows_.find(tid->workflow);
    if (it == workflows_.end()) continue;
    Workflow& wf = *it->second;
    const Piece* piece = wf.FindPiece(tid->piece);
    auto reqs = piece ? BuildRequests(wf, wf.runs[tid->piece], *piece)
                      : absl::StatusOr<std::vector<v1::ExecutionRequest>>(absl::NotFoundError("piece"));
    if (!reqs.ok() || tid->task >= reqs->size()) continue;
    v1::ExecutionRequest req = (*reqs)[tid->task];
    req.set_request_id(id);
    resubmit.push_back({wf.id, std::move(req)});
  }
  SubmitAll(std::move(resubmit));
  // Pieces held back by the per-function limit start as room frees up.
  std::vector<Submission> more;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, wf] : workflows_) {
      auto s = Advance(*wf);
      more.insert(more.end(), s.begin(), s.end());
    }
  }
  SubmitAll(std::move(more));
}

void Orchestrator::ScaleTick(int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, int> in_flight;
  for (const auto& [id, wf] : workflows_) {
    if (wf->kind != "call") continue;
    in_flight[wf->function] += 0;
    templates_[wf->function] = wf->template_name;
  }
  for (auto& [fn, n] : in_flight) n = InFlight(fn);
  for (auto& [fn, scaler] : scalers_) in_flight.emplace(fn, 0);
  for (const auto& [fn, n] : in_flight) {
    auto& scaler = scalers_[fn];
    if (!scaler) {
      scheduler::AutoscalerOptions o;
      o.target_concurrency = options_.target_concurrency;
      o.max_instances = options_.max_instances;
      scaler = std::make_unique<scheduler::Autoscaler>(o);
    }
    scaler->Observe(now_ms, n);
    int current = decisions_.count(fn) ? decisions_[fn].desired : 0;
    const scheduler::AutoscaleDecision& d = decisions_[fn] = scaler->Decide(now_ms, current);
    // The instances the function should have become warm sandboxes of its
    // template kept ready on the agents (the pool floor follows the scale).
    if (auto t = templates_.find(fn); t != templates_.end()) {
      manager_->prewarmer().SetExternalTarget(t->second, "autoscale:" + fn, d.desired,
                                              absl::StrCat("autoscale ", fn, ": ", d.reason));
    }
  }
}

json Orchestrator::Scaling() {
  absl::MutexLock lock(&mu_);
  json out = json::object();
  for (const auto& [fn, d] : decisions_) {
    out[fn] = {{"in_flight", InFlight(fn)},
               {"desired_instances", d.desired},
               {"panic", d.panic},
               {"stable_concurrency", d.stable_concurrency},
               {"panic_concurrency", d.panic_concurrency},
               {"reason", d.reason}};
  }
  return out;
}

}  // namespace flotilla::manager
