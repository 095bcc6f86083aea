#include "manager/manager.h"
#include "manager/internal/live.h"
#include "manager/validation.h"
#include "manager/migration.h"

#include "common/logging.h"

#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/failpoint.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "scheduler/preemption.h"
#include "wire/convert.h"

namespace flotilla::manager {

using model::ExecutionState;

namespace {

constexpr size_t kPeekPerRound = 512;
// Queued entries a dispatch round looks at to find kPeekPerRound that are
// within their tenant's quota: at least this, and at least max_queued.
constexpr size_t kScanPerRound = 16 * kPeekPerRound;
constexpr int64_t kSuspectMs = 2000;


v1::Placement ToPlacement(const scheduler::Decision& d, int64_t now_ms) {
  v1::Placement p;
  p.set_node_id(d.node_id);
  p.set_score(d.score);
  p.set_reason(d.reason);
  p.set_decided_unix_ms(now_ms);
  p.set_mode(d.mode);
  p.set_sampled(d.sampled);
  for (const auto& c : d.candidates) {
    auto* pc = p.add_candidates();
    pc->set_node_id(c.node_id);
    pc->set_feasible(c.feasible);
    pc->set_rejected_because(c.rejected_because);
    pc->set_score(c.score);
    for (const auto& [name, points] : c.parts) (*pc->mutable_parts())[name] = points;
    pc->set_predicted_latency_ms(c.predicted_ms);
    if (c.bid) pc->set_bid(*c.bid);
  }
  return p;
}

}  // namespace

// The learned latency model behind the scheduler's LatencyPredictor; keys it
// has not seen yet fall back to the load heuristic.
class ModelPredictor final : public scheduler::LatencyPredictor {
 public:
  explicit ModelPredictor(const scheduler::LatencyModel& model) : model_(model) {}
  double PredictMs(const model::ExecutionRequest& request,
                   const model::HypervisorNode& node) const override {
    scheduler::LatencyPrediction p = model_.Predict(scheduler::FeaturesFor(request, node));
    if (p.source == scheduler::LatencySource::kDefault) return fallback_.PredictMs(request, node);
    return p.ms;
  }

 private:
  const scheduler::LatencyModel& model_;
  scheduler::LoadLatencyPredictor fallback_;
};

constexpr size_t kLatencyHistory = 4096;

namespace {

// What a listing shows of a result: everything but its output.
std::string ResultSummary(const v1::ExecutionResult& r) {
  v1::ExecutionResult s = r;
  s.clear_stdout();
  s.clear_stderr();
  return s.SerializeAsString();
}

}  // namespace



Manager::Manager(ManagerConfig config, std::unique_ptr<store::Store> store,
                 std::unique_ptr<AgentClientFactory> agents, Clock* clock)
    : config_(std::move(config)),
      clock_(clock),
      store_(std::move(store)),
      writer_(store_.get(), Writer::Options{}),
      agents_(std::move(agents)),
      queue_(scheduler::PendingQueue::Options{.aging_points_per_second =
                                                  config_.aging_points_per_second}),
      tenant_limits_(TenantLimits::Options{.max_unfinished = config_.tenant_max_unfinished,
                                           .submits_per_second = config_.tenant_submits_per_second,
                                           .burst = config_.tenant_submit_burst,
                                           .max_cpu_millis = config_.tenant_max_cpu_millis,
                                           .max_memory_bytes = config_.tenant_max_memory_bytes}),
      selection_(config_.weights, config_.selection),
      rng_(std::random_device{}()),
      balancer_([&] {
        scheduler::LoadBalancerOptions o;
        o.overload_margin = config_.overload_margin;
        return o;
      }()),
      migrator_(std::make_unique<Migrator>(this)) {}

Manager::~Manager() { Stop(); }

int64_t Manager::MonoMs() const { return clock_->MonoMs(); }

absl::Status Manager::Recover() {
  // Read before taking the lock: no store call runs under mu_.
  ASSIGN_OR_RETURN(std::vector<store::NodeRecord> nodes, store_->LoadNodes());
  ASSIGN_OR_RETURN(std::vector<store::ExecutionRecord> unfinished, store_->LoadUnfinished());
  {
    absl::MutexLock lock(&mu_);
    WriteBatch w;
    w.what = "recovery";
    const int64_t now = MonoMs();
    for (const auto& rec : nodes) {
      v1::HypervisorNode spec;
      if (!spec.ParseFromString(rec.spec)) {
        return absl::DataLossError(absl::StrCat("node ", rec.id, ": stored spec does not parse"));
      }
      NodeState& ns = nodes_.Restore(rec.id);
      ns.spec = std::move(spec);
      ns.node = wire::FromProto(ns.spec);
      ns.node.epoch = rec.epoch;
      ns.node.status = rec.status;
      ns.node.last_heartbeat_ms = rec.last_heartbeat_ms;
      // A fresh lease: the agent gets a full lease_timeout to report to the
      // restarted manager before its executions are taken away.
      ns.last_heartbeat_mono_ms = now;
    }
    for (auto& rec : unfinished) {
      auto live = std::make_shared<Live>();
      if (!live->request.ParseFromString(rec.request)) {
        return absl::DataLossError(
            absl::StrCat("execution ", rec.id, ": stored request does not parse"));
      }
      live->sched = wire::FromProto(live->request);
      live->sched.id = rec.id;
      if (!rec.placement.empty()) live->placement.ParseFromString(rec.placement);
      live->rec = std::move(rec);
      live->queued_mono_ms = now;
      live->assigned_mono_ms = now;
      Live& l = *live;
      tenant_limits_.Restore(l.rec.user_id);
      live_[l.rec.id] = std::move(live);
      if (l.rec.state == ExecutionState::kQueued) {
        queue_.Push({l.rec.id, l.rec.priority, l.rec.seq, l.rec.submitted_ms});
        continue;
      }
      NodeState* node = nodes_.Find(l.rec.node_id);
      if (node == nullptr) {
        Requeue(l, "node_unknown", "its node is not in the registry", &w);
        continue;
      }
      // CheckLeases stores "offline" before it re-queues the node's executions;
      // a crash in between leaves them here, where no lease check looks again.
      if (node->node.status != model::NodeStatus::kOnline) {
        Requeue(l, "node_lost", absl::StrCat("node ", l.rec.node_id, " was offline at recovery"),
                &w);
        continue;
      }
      nodes_.Assign(*node, l.rec.id, l.sched.resources);
      HoldQuota(l);
    }
    spdlog::info("recovered {} nodes, {} unfinished executions ({} queued)", nodes_.size(),
                 live_.size(), queue_.size());
    dispatch_wanted_ = true;
    Commit(std::move(w));
  }
  writer_.Drain();
  return absl::OkStatus();
}

void Manager::Start() {
  writer_.Start();
  dispatcher_ = std::thread([this] { DispatcherLoop(); });
  lease_checker_ = std::thread([this] { LeaseLoop(); });
  migrator_->Start();
}

void Manager::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !dispatcher_.joinable()) {
      writer_.Drain();
      return;
    }
    stopping_ = true;
    dispatch_cv_.SignalAll();
    stop_cv_.SignalAll();
    watch_hub_.CloseAll(absl::UnavailableError("the manager is shutting down; watch again"));
  }
  if (dispatcher_.joinable()) dispatcher_.join();
  if (lease_checker_.joinable()) lease_checker_.join();
  migrator_->Stop();
  // Last: the loops above may have staged writes.
  writer_.Stop();
}

// ---------------------------------------------------------------- validation

absl::Status Manager::ValidateAndDefault(v1::ExecutionRequest* r) {
  RETURN_IF_ERROR(ValidateRequest(config_, r));
  model::ExecutionRequest sched = wire::FromProto(*r);
  return selection_.CheckEverFeasible(sched, nodes_.All());
}

// ----------------------------------------------------------------------- api

absl::StatusOr<v1::SubmitResponse> Manager::Submit(v1::ExecutionRequest request) {
  v1::SubmitResponse response;
  const bool has_rid = !request.request_id().empty() && IsValidId(request.request_id());
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the manager is shutting down");
    // A retried submit returns the execution it created the first time, even
    // if the cluster has changed since (so it would not validate now).
    if (has_rid) {
      if (auto it = live_.find(request.request_id()); it != live_.end()) {
        if (it->second->inserting) {
          return absl::UnavailableError(absl::StrCat(
              "execution ", request.request_id(), " is being recorded by another submit; retry"));
        }
        *response.mutable_execution() = ToExecution(*it->second);
        response.set_already_existed(true);
        return response;
      }
    }
  }
  if (has_rid) {
    // A finished one is only in the store; read it without the lock.
    ASSIGN_OR_RETURN(std::optional<store::ExecutionRecord> existing,
                     store_->GetExecution(request.request_id()));
    if (existing) {
      ASSIGN_OR_RETURN(*response.mutable_execution(), LoadFinished(request.request_id()));
      response.set_already_existed(true);
      return response;
    }
  }
  std::shared_ptr<Live> live;
  std::shared_ptr<Writer::Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the manager is shutting down");
    if (has_rid && live_.count(request.request_id())) {
      return absl::UnavailableError(absl::StrCat(
          "execution ", request.request_id(), " was submitted concurrently; retry"));
    }
    const int64_t waiting = static_cast<int64_t>(queue_.size()) + inserting_;
    if (waiting >= config_.max_queued) {
      metrics_.CountRejected();
      return absl::ResourceExhaustedError(absl::StrCat(
          "the manager has ", waiting, " executions waiting (max_queued ", config_.max_queued,
          "); retry after a few seconds, or raise max_queued"));
    }
    RETURN_IF_ERROR(ValidateAndDefault(&request));
    model::ExecutionRequest sched = wire::FromProto(request);
    RETURN_IF_ERROR(tenant_limits_.CheckRequest(request.user_id(), sched.resources));
    if (absl::Status st = tenant_limits_.Admit(request.user_id(), clock_->UnixMs()); !st.ok()) {
      metrics_.CountRejected();
      return st;
    }
    prewarmer_.RecordInvocation(request, clock_->UnixMs());
    if (request.request_id().empty()) request.set_request_id(NewId("ex-"));
    const std::string id = request.request_id();
    live = std::make_shared<Live>();
    live->request = std::move(request);
    live->sched = std::move(sched);
    live->sched.id = id;
    live->rec.id = id;
    live->rec.user_id = live->request.user_id();
    live->rec.priority = live->request.priority();
    live->rec.request = live->request.SerializeAsString();
    live->rec.state = ExecutionState::kQueued;
    live->rec.submitted_ms = clock_->UnixMs();
    live->inserting = true;
    ++inserting_;
    live_[id] = live;
    WriteBatch w;
    w.what = absl::StrCat("submit of ", id);
    w.ops.push_back(WriteBatch::InsertExecution{live->rec});
    ticket = CommitAwaited(std::move(w));
  }
  // Durable before acknowledged: a manager killed after this returns still
  // has the execution when it restarts.
  absl::Status st = ticket->Wait();
  absl::MutexLock lock(&mu_);
  --inserting_;
  live->inserting = false;
  const std::string& id = live->rec.id;
  if (!st.ok()) {
    tenant_limits_.Finished(live->rec.user_id);
    live_.erase(id);
    Changed(*live);
    // Not the client's fault: say so with a retryable code.
    return absl::UnavailableError(absl::StrCat("could not record the execution: ", st.message()));
  }
  const auto& op = std::get<WriteBatch::InsertExecution>(ticket->batch().ops[0]);
  live->rec.seq = op.rec.seq;
  live->queued_mono_ms = MonoMs();
  if (live->rec.state == ExecutionState::kQueued) {
    queue_.Push({id, live->rec.priority, live->rec.seq, live->rec.submitted_ms});
  }
  metrics_.CountSubmitted();
  *response.mutable_execution() = ToExecution(*live);
  dispatch_wanted_ = true;
  dispatch_cv_.Signal();
  spdlog::debug("[{}] accepted", id);
  Failpoint("submit.after_persist");
  return response;
}

v1::Execution Manager::ToExecution(const Live& l) const {
  v1::Execution e;
  e.set_id(l.rec.id);
  *e.mutable_request() = l.request;
  e.set_state(wire::ToProto(l.rec.state));
  e.set_attempt(l.rec.attempt);
  e.set_node_id(l.rec.node_id);
  *e.mutable_placement() = l.placement;
  if (l.rec.state == ExecutionState::kQueued && !l.waiting_reason.empty()) {
    e.mutable_placement()->set_reason(l.waiting_reason);
  }
  if (l.result) *e.mutable_result() = *l.result;
  e.set_submitted_unix_ms(l.rec.submitted_ms);
  e.set_started_unix_ms(l.rec.started_ms);
  e.set_finished_unix_ms(l.rec.finished_ms);
  e.set_error(l.rec.error);
  e.set_cancel_requested(l.rec.cancel_requested);
  if (l.rec.state == ExecutionState::kRunning && l.usage && l.usage->attempt() == l.rec.attempt) {
    *e.mutable_usage() = *l.usage;
  }
  return e;
}

absl::StatusOr<v1::Execution> Manager::LoadFinished(const std::string& id) {
  ASSIGN_OR_RETURN(std::optional<store::ExecutionRecord> rec, store_->GetExecution(id));
  if (!rec) {
    return absl::NotFoundError(absl::StrCat("no execution with id '", id, "'"));
  }
  Live l;
  l.rec = *rec;
  l.request.ParseFromString(rec->request);
  if (!rec->placement.empty()) l.placement.ParseFromString(rec->placement);
  if (rec->attempt > 0 && model::IsTerminal(rec->state)) {
    ASSIGN_OR_RETURN(std::optional<std::string> blob, store_->GetResult(id, rec->attempt));
    if (blob) {
      v1::ExecutionResult r;
      if (r.ParseFromString(*blob)) l.result = std::move(r);
    }
  }
  return ToExecution(l);
}

absl::StatusOr<v1::Execution> Manager::Get(const std::string& id) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = live_.find(id); it != live_.end() && !it->second->inserting) {
      v1::Execution e = ToExecution(*it->second);
      if (!e.has_result() && e.state() == v1::EXECUTION_RUNNING) {
        // Show what has been printed so far.
        e.mutable_result()->set_stdout(it->second->output[0]);
        e.mutable_result()->set_stderr(it->second->output[1]);
      }
      return e;
    }
  }
  return LoadFinished(id);
}

absl::StatusOr<v1::Execution> Manager::Cancel(const std::string& id) {
  std::shared_ptr<Writer::Ticket> ticket;
  v1::Execution reply;
  std::string address;
  std::string node_id;
  v1::CancelTaskRequest req;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(id);
    if (it != live_.end() && !it->second->inserting) {
      std::shared_ptr<Live> live = it->second;
      WriteBatch w;
      w.what = absl::StrCat("cancel of ", id);
      if (live->finishing) {
        // Ended in memory, not yet (or not successfully) recorded: record it.
        StageFinish(*live, &w);
        pending_finish_.push_back(id);
      } else if (live->rec.state == ExecutionState::kQueued) {
        queue_.Remove(id);
        live->rec.cancel_requested = true;
        Finish(*live, ExecutionState::kCancelled, nullptr, "cancelled before it started", &w);
      } else {
        live->rec.cancel_requested = true;
        NodeState* node = nodes_.Find(live->rec.node_id);
        if (node == nullptr || node->node.status != model::NodeStatus::kOnline) {
          Finish(*live, ExecutionState::kCancelled, nullptr, "cancelled while its node was offline",
                 &w);
        } else {
          StageExecution(*live, &w);
          Changed(*live);
          address = node->node.address;
          node_id = node->node.id;
          req.set_execution_id(id);
          req.set_attempt(live->rec.attempt);
          req.set_manager_epoch(config_.manager_epoch);
        }
      }
      reply = ToExecution(*live);
      ticket = CommitAwaited(std::move(w));
    }
  }
  if (!ticket) {
    ASSIGN_OR_RETURN(v1::Execution done, LoadFinished(id));
    return absl::FailedPreconditionError(absl::StrCat(
        "execution ", id, " has already finished (", wire::StateName(done.state()), ")"));
  }
  if (absl::Status st = ticket->Wait(); !st.ok()) {
    return absl::UnavailableError(absl::StrCat("could not record the cancel: ", st.message(),
                                               "; retry"));
  }
  Failpoint("cancel.after_persist");
  if (!address.empty()) {
    agents_->For(node_id, address)->CancelTask(req, [id](absl::Status st) {
      if (!st.ok()) spdlog::warn("[{}] cancel not delivered: {}", id, st.message());
    });
  }
  return reply;
}

std::vector<v1::HypervisorNode> Manager::ListNodes() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::HypervisorNode> out;
  for (const auto& view : NodeViews()) {
    v1::HypervisorNode n;
    wire::ToProto(view, &n);
    const v1::HypervisorNode& spec = nodes_.Find(view.id)->spec;
    n.set_version(spec.version());
    *n.mutable_pools() = spec.pools();
    n.set_unisolated(spec.unisolated());
    n.set_cpu_cores_used(spec.cpu_cores_used());
    n.set_memory_available_bytes(spec.memory_available_bytes());
    *n.mutable_checkpoint() = spec.checkpoint();
    *n.mutable_microvm() = spec.microvm();
    out.push_back(std::move(n));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id() < b.id(); });
  return out;
}

absl::StatusOr<std::vector<v1::Execution>> Manager::ListExecutions(
    const v1::ListExecutionsRequest& req) {
  store::ListFilter filter;
  for (int s : req.states()) filter.states.push_back(wire::FromProto(static_cast<v1::ExecutionState>(s)));
  if (req.limit() > kMaxListPage) {
    return absl::InvalidArgumentError(absl::StrCat("limit ", req.limit(),
                                                   " is above the page cap of ", kMaxListPage));
  }
  filter.limit = req.limit() > 0 ? req.limit() : 100;
  filter.user_id = req.tenant();
  ASSIGN_OR_RETURN(std::vector<store::ExecutionRecord> rows, store_->ListExecutions(filter));
  std::vector<v1::Execution> out(rows.size());
  std::vector<size_t> stored;  // rows not live: their results come from the store
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (auto it = live_.find(rows[i].id); it != live_.end()) {
        out[i] = ToExecution(*it->second);
      } else {
        stored.push_back(i);
      }
    }
  }
  for (size_t i : stored) {
    const store::ExecutionRecord& rec = rows[i];
    Live l;
    l.rec = rec;
    l.request.ParseFromString(rec.request);
    if (!rec.placement.empty()) l.placement.ParseFromString(rec.placement);
    if (rec.attempt > 0 && model::IsTerminal(rec.state)) {
      // A listing without output reads the summary, never a whole output.
      auto blob = req.include_output() ? store_->GetResult(rec.id, rec.attempt)
                                       : store_->GetResultSummary(rec.id, rec.attempt);
      if (blob.ok() && *blob) {
        v1::ExecutionResult r;
        if (r.ParseFromString(**blob)) l.result = std::move(r);
      }
    }
    out[i] = ToExecution(l);
  }
  for (auto& e : out) {
    if (!req.include_output()) {
      e.mutable_result()->clear_stdout();
      e.mutable_result()->clear_stderr();
      e.mutable_request()->clear_stdin();
      e.mutable_request()->mutable_dependencies()->clear_files();
    }
  }
  return out;
}

// ----------------------------------------------------------- state changes

void Manager::StageExecution(Live& live, WriteBatch* w) {
  live.rec.placement = live.placement.SerializeAsString();
  w->ops.push_back(WriteBatch::UpdateExecution{live.rec});
}

void Manager::StageNode(const NodeState& ns, WriteBatch* w) {
  store::NodeRecord rec;
  rec.id = ns.node.id;
  rec.spec = ns.spec.SerializeAsString();
  rec.status = ns.node.status;
  rec.epoch = ns.node.epoch;
  rec.last_heartbeat_ms = ns.node.last_heartbeat_ms;
  w->ops.push_back(WriteBatch::UpsertNode{std::move(rec)});
}

void Manager::StageFinish(Live& live, WriteBatch* w) {
  if (live.result) {
    w->ops.push_back(
        WriteBatch::PutResult{live.rec.id, live.rec.attempt, live.result->SerializeAsString(),
                              ResultSummary(*live.result)});
  }
  if (live.rec.attempt > 0 && !live.rec.node_id.empty()) {
    w->ops.push_back(WriteBatch::PutAttempt{{.execution_id = live.rec.id,
                                             .attempt = live.rec.attempt,
                                             .node_id = live.rec.node_id,
                                             .assigned_ms = live.rec.assigned_ms,
                                             .ended_ms = live.rec.finished_ms,
                                             .outcome = model::ToString(live.rec.state)}});
  }
  StageExecution(live, w);
}

std::shared_ptr<Writer::Ticket> Manager::Commit(WriteBatch w, Writer::Done done) {
  return Enqueue(std::move(w), std::move(done), /*awaited=*/false);
}

std::shared_ptr<Writer::Ticket> Manager::CommitAwaited(WriteBatch w) {
  return Enqueue(std::move(w), nullptr, /*awaited=*/true);
}

std::shared_ptr<Writer::Ticket> Manager::Enqueue(WriteBatch w, Writer::Done done, bool awaited) {
  std::vector<std::string> ended;
  ended.swap(pending_finish_);
  if (w.empty() && !done && ended.empty()) {
    return writer_.Enqueue(std::move(w));  // nothing to write: done at once
  }
  return writer_.Enqueue(std::move(w), [this, done = std::move(done), ended = std::move(ended)](
                                           const absl::Status& st, WriteBatch& batch) {
    {
      absl::MutexLock lock(&mu_);
      if (!st.ok()) {
        spdlog::error("persist failed: {}", st.message());
        ++persist_failures_;
      }
      for (const auto& id : ended) AfterFinishCommitted(id, st);
    }
    if (done) done(st, batch);
  }, awaited);
}

void Manager::Changed(Live& live) {
  ++live.version;
  // An end not yet durable is not shown: a crash could still undo it.
  if (live.finishing || !watch_hub_.Watched(live.rec.id)) return;
  WatchView view;
  view.id = live.rec.id;
  view.state = wire::ToProto(live.rec.state);
  view.attempt = live.rec.attempt;
  view.node_id = live.rec.node_id;
  view.output[0] = &live.output[0];
  view.output[1] = &live.output[1];
  v1::Execution final_execution;
  if (model::IsTerminal(live.rec.state)) {
    final_execution = ToExecution(live);
    view.final_execution = &final_execution;
  }
  watch_hub_.Notify(view);
}

void Manager::HoldQuota(Live& live) {
  if (live.quota_held) return;
  tenant_limits_.Place(live.rec.user_id, live.sched.resources);
  live.quota_held = true;
}

void Manager::Release(Live& live) {
  if (live.quota_held) {
    tenant_limits_.Unplace(live.rec.user_id, live.sched.resources);
    live.quota_held = false;
  }
  NodeState* node = nodes_.Find(live.rec.node_id);
  if (node == nullptr || !nodes_.Release(*node, live.rec.id, live.sched.resources)) return;
  dispatch_wanted_ = true;
  dispatch_cv_.Signal();
}

void Manager::Requeue(Live& live, const std::string& outcome, const std::string& why,
                      WriteBatch* w) {
  const std::string old_node = live.rec.node_id;
  Release(live);
  if (live.rec.cancel_requested) {
    Finish(live, ExecutionState::kCancelled, nullptr, absl::StrCat("cancelled (", why, ")"), w);
    // Nobody waits for this end: its completion finishes it in memory.
    return;
  }
  if (live.rec.attempt > 0) {
    w->ops.push_back(WriteBatch::PutAttempt{{.execution_id = live.rec.id,
                                             .attempt = live.rec.attempt,
                                             .node_id = old_node,
                                             .assigned_ms = live.rec.assigned_ms,
                                             .ended_ms = clock_->UnixMs(),
                                             .outcome = outcome}});
  }
  live.rec.state = ExecutionState::kQueued;
  live.rec.node_id.clear();
  live.rec.error = absl::StrCat("attempt ", live.rec.attempt, " re-queued: ", why);
  live.queued_mono_ms = MonoMs();
  live.output[0].clear();
  live.output[1].clear();
  StageExecution(live, w);
  // Its original seq and submission time: a re-run keeps its place and age.
  queue_.Push({live.rec.id, live.rec.priority, live.rec.seq, live.rec.submitted_ms});
  metrics_.CountRequeued();
  spdlog::warn("[{}] {}", live.rec.id, live.rec.error);
  Changed(live);
}

void Manager::Finish(Live& live, model::ExecutionState state, const v1::ExecutionResult* result,
                     const std::string& error, WriteBatch* w) {
  Release(live);
  live.rec.state = state;
  live.rec.finished_ms = clock_->UnixMs();
  if (!error.empty()) live.rec.error = error;
  if (result) live.result = *result;
  live.finishing = true;
  StageFinish(live, w);
  // Watchers, the finish listener and the removal from live_ wait for the
  // commit of this batch (Commit attaches them).
  pending_finish_.push_back(live.rec.id);
}

void Manager::AfterFinishCommitted(const std::string& id, const absl::Status& status) {
  auto it = live_.find(id);
  if (it == live_.end()) return;  // recorded by an earlier write already
  std::shared_ptr<Live> keep = it->second;
  Live& live = *keep;
  if (!live.finishing) return;
  if (!status.ok()) {
    // Stays terminal in memory and in live_: the agent's retry of the result
    // (or the client's retry of the cancel) writes it again.
    spdlog::error("[{}] its end ({}) is not recorded yet: {}", id, model::ToString(live.rec.state),
                  status.message());
    return;
  }
  live.finishing = false;
  const ExecutionState state = live.rec.state;
  metrics_.CountOutcome(model::ToString(state));
  if (live.result && live.features && live.result->wall_time_us() > 0 &&
      (state == ExecutionState::kSucceeded || state == ExecutionState::kFailed)) {
    scheduler::LatencySample sample{*live.features, live.result->wall_time_us() / 1000.0};
    if (latency_model_.Observe(sample).ok()) {
      latency_history_.push_back(std::move(sample));
      if (latency_history_.size() > kLatencyHistory) latency_history_.pop_front();
    }
  }
  if (live.rec.submitted_ms > 0) {
    metrics_.end_to_end_latency().Observe((live.rec.finished_ms - live.rec.submitted_ms) / 1000.0);
  }
  spdlog::debug("[{}] attempt {} {} on '{}'", id, live.rec.attempt, model::ToString(state),
                live.rec.node_id);
  Changed(live);
  if (finish_listener_) finish_listener_(id);
  tenant_limits_.Finished(live.rec.user_id);
  live_.erase(id);  // watchers keep their own reference
}

void Manager::SetFinishListener(std::function<void(const std::string&)> listener) {
  absl::MutexLock lock(&mu_);
  finish_listener_ = std::move(listener);
}

void Manager::AddNodeData(const std::string& node_id, const std::string& key, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  nodes_.AddData(node_id, key, bytes);
}

void Manager::ForgetNodeData(const std::string& key_prefix) {
  absl::MutexLock lock(&mu_);
  nodes_.ForgetData(key_prefix);
}

int Manager::OnlineNodeCount() {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& v : NodeViews()) {
    if (v.status == model::NodeStatus::kOnline && !v.draining) n++;
  }
  return n;
}

// --------------------------------------------------------------- dispatching

std::vector<model::HypervisorNode> Manager::NodeViews() const { return nodes_.Views(MonoMs()); }

void Manager::DispatchRound() {
  struct Send {
    std::pair<std::string, std::string> node;  // id, address
    v1::RequestTaskRequest request;
  };
  std::vector<Send> sends;
  std::shared_ptr<Writer::Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty() || stopping_) return;
    WriteBatch w;
    w.what = "dispatch";
    std::vector<model::HypervisorNode> views = NodeViews();
    const int64_t now_ms = clock_->UnixMs();
    const int64_t now_mono = MonoMs();
    // Load balancing: overloaded nodes look draining to the first attempt at
    // placing each entry, so queued work goes to cooler nodes while they fit.
    balance_ = balancer_.Analyze(views, &balance_);
    // The nodes to avoid, by index into views (ones already draining need no mark).
    std::vector<size_t> avoided;
    if (config_.load_balancing) {
      for (const std::string& id : scheduler::LoadBalancer::AvoidSet(balance_)) {
        for (size_t i = 0; i < views.size(); ++i) {
          if (views[i].id == id && !views[i].draining) avoided.push_back(i);
        }
      }
    }
    ModelPredictor predictor(latency_model_);
    // Entries of a tenant at its CPU or memory quota are passed over (they
    // keep their place), so the work of other tenants behind them goes on.
    // The scan covers the whole queue (max_queued bounds it), so no backlog
    // of held-back entries, however long, hides the work behind it; a held
    // entry costs a lookup, its reason being written once when first held.
    auto within_quota = [this](const scheduler::PendingQueue::Entry& e) {
      Live& live = *live_.at(e.id);
      if (tenant_limits_.Fits(live.rec.user_id, live.sched.resources)) {
        live.quota_held_back = false;
        return true;
      }
      if (!live.quota_held_back) {
        live.waiting_reason =
            tenant_limits_.WhyNotPlaceable(live.rec.user_id, live.sched.resources);
        live.quota_held_back = true;
      }
      return false;
    };
    const size_t scan = std::max<size_t>(kScanPerRound, static_cast<size_t>(config_.max_queued));
    for (const auto& entry : queue_.PeekIf(kPeekPerRound, now_ms, scan, within_quota)) {
      Live& live = *live_.at(entry.id);
      // An earlier entry of this round may have used the tenant's quota up.
      if (!within_quota(entry)) continue;
      scheduler::Decision d;
      if (!avoided.empty()) {
        // Avoided nodes look draining to this first try only.
        for (size_t i : avoided) views[i].draining = true;
        d = selection_.Select(live.sched, views, &rng_, &predictor);
        for (size_t i : avoided) views[i].draining = false;
        for (auto& cand : d.candidates) {
          if (std::find(avoided.begin(), avoided.end(), cand.index) != avoided.end()) {
            cand.rejected_because = "overloaded: the load balancer steers work to cooler nodes";
          }
        }
      }
      if (!d.chosen) d = selection_.Select(live.sched, views, &rng_, &predictor);
      std::vector<std::string> preempted;
      if (!d.chosen && config_.preemption) {
        preempted = Preempt(live, views, &w);
        if (!preempted.empty()) d = selection_.Select(live.sched, views, &rng_, &predictor);
      }
      if (!d.chosen) {
        live.waiting_reason = d.reason;
        continue;
      }
      model::HypervisorNode& view = views[*d.chosen];
      live.features = scheduler::FeaturesFor(live.sched, view);
      view.available -= live.sched.resources;
      view.running_executions++;
      NodeState& ns = *nodes_.Find(d.node_id);
      nodes_.Assign(ns, entry.id, live.sched.resources);
      HoldQuota(live);
      queue_.Remove(entry.id);
      live.placement = ToPlacement(d, now_ms);
      for (const auto& id : preempted) live.placement.add_preempted(id);
      live.waiting_reason.clear();
      live.rec.state = ExecutionState::kAssigned;
      live.rec.attempt++;
      live.rec.node_id = d.node_id;
      live.rec.assigned_ms = now_ms;
      live.assigned_mono_ms = now_mono;
      // Persisted before it is sent, so a restarted manager knows where it went.
      w.ops.push_back(WriteBatch::PutAttempt{{.execution_id = entry.id,
                                              .attempt = live.rec.attempt,
                                              .node_id = d.node_id,
                                              .assigned_ms = now_ms,
                                              .ended_ms = 0,
                                              .outcome = ""}});
      StageExecution(live, &w);
      metrics_.placement_latency().Observe((now_mono - live.queued_mono_ms) / 1000.0);
      Changed(live);
      Send s{{ns.node.id, ns.node.address}, {}};
      s.request.set_execution_id(entry.id);
      s.request.set_attempt(live.rec.attempt);
      *s.request.mutable_request() = live.request;
      s.request.set_node_epoch(ns.node.epoch);
      s.request.set_manager_epoch(config_.manager_epoch);
      sends.push_back(std::move(s));
    }
    ticket = CommitAwaited(std::move(w));
  }
  // Nothing is sent before its assignment is durable.
  const absl::Status st = ticket->Wait();
  if (!st.ok()) {
    absl::MutexLock lock(&mu_);
    WriteBatch w;
    w.what = "re-queue after a failed dispatch write";
    for (const auto& s : sends) {
      auto it = live_.find(s.request.execution_id());
      if (it == live_.end()) continue;
      Live& live = *it->second;
      if (live.rec.attempt != s.request.attempt() || live.rec.state != ExecutionState::kAssigned) {
        continue;
      }
      Requeue(live, "persist_failed",
              absl::StrCat("its assignment could not be recorded: ", st.message()), &w);
    }
    Commit(std::move(w));
  }
  if (!st.ok()) {
    writer_.Drain();
    return;
  }
  Failpoint("dispatch.after_persist");
  // One call per node: the tasks placed on it this round travel together.
  std::map<std::pair<std::string, std::string>, std::vector<v1::RequestTaskRequest>> by_node;
  for (auto& s : sends) by_node[s.node].push_back(std::move(s.request));
  for (auto& [node, batch] : by_node) {
    if (batch.size() == 1) {
      const std::string id = batch[0].execution_id();
      const uint32_t attempt = batch[0].attempt();
      agents_->For(node.first, node.second)->RequestTask(
          batch[0], [this, id, attempt](absl::Status st) { OnDispatchDone(id, attempt, st); });
      continue;
    }
    std::vector<std::pair<std::string, uint32_t>> keys;
    for (const auto& r : batch) keys.emplace_back(r.execution_id(), r.attempt());
    agents_->For(node.first, node.second)->RequestTasks(
        batch, [this, keys = std::move(keys)](std::vector<absl::Status> statuses) {
          for (size_t i = 0; i < keys.size() && i < statuses.size(); ++i) {
            OnDispatchDone(keys[i].first, keys[i].second, statuses[i]);
          }
        });
  }
}

std::vector<std::string> Manager::Preempt(Live& live, std::vector<model::HypervisorNode>& views,
                                          WriteBatch* w) {
  std::vector<scheduler::RunningExecution> running;
  nodes_.ForEach([&](const NodeState& ns) {
    for (const std::string& id : ns.assigned) {
      const Live& r = *live_.at(id);
      running.push_back({id, ns.node.id, r.rec.priority, r.sched.resources, r.rec.assigned_ms});
    }
  });
  scheduler::PreemptionOptions options;
  options.min_priority_gap = config_.preemption_min_gap;
  std::optional<scheduler::PreemptionPlan> plan =
      scheduler::PlanPreemption(live.sched, views, running, options);
  if (!plan || plan->victims.empty()) return {};
  const NodeState* node = nodes_.Find(plan->node_id);
  if (node == nullptr) return {};
  const std::string address = node->node.address;
  for (const std::string& id : plan->victims) {
    Live& victim = *live_.at(id);
    for (auto& v : views) {
      if (v.id != plan->node_id) continue;
      v.available += victim.sched.resources;
      v.running_executions--;
    }
    v1::CancelTaskRequest cancel;
    cancel.set_execution_id(id);
    cancel.set_attempt(victim.rec.attempt);
    cancel.set_manager_epoch(config_.manager_epoch);
    // Re-queued, not lost: it keeps its place and age, and runs again later.
    Requeue(victim, "preempted",
            absl::StrCat("preempted on ", plan->node_id, " by ", live.rec.id, " (priority ",
                         live.rec.priority, " over ", victim.rec.priority, ")"),
            w);
    agents_->For(node->node.id, address)->CancelTask(cancel, [id](absl::Status st) {
      if (!st.ok()) spdlog::warn("[{}] preemption cancel not delivered: {}", id, st.message());
    });
    ++preemptions_;
  }
  spdlog::info("[{}] {}", live.rec.id, plan->reason);
  return plan->victims;
}

void Manager::OnDispatchDone(const std::string& id, uint32_t attempt, absl::Status status) {
  if (status.ok()) return;
  {
    absl::MutexLock lock(&mu_);
    auto it = live_.find(id);
    if (it == live_.end()) return;
    Live& live = *it->second;
    if (live.rec.attempt != attempt || live.rec.state != ExecutionState::kAssigned) return;
    WriteBatch w;
    w.what = absl::StrCat("failed dispatch of ", id);
    if (status.code() == absl::StatusCode::kUnavailable ||
        status.code() == absl::StatusCode::kDeadlineExceeded) {
      if (NodeState* n = nodes_.Find(live.rec.node_id)) n->suspect_until_mono_ms = MonoMs() + kSuspectMs;
      Requeue(live, "dispatch_failed",
              absl::StrCat("sending it to node ", live.rec.node_id, " failed: ", status.message()),
              &w);
    } else if (++live.dispatch_failures >= 3) {
      // The agent refuses it for a reason of its own, every time: give up.
      Finish(live, ExecutionState::kFailed, nullptr,
             absl::StrCat("node ", live.rec.node_id, " refused it: ", status.message()), &w);
    } else {
      Requeue(live, "dispatch_failed",
              absl::StrCat("sending it to node ", live.rec.node_id, " failed: ", status.message()),
              &w);
    }
    Commit(std::move(w));
  }
  writer_.Drain();
}

void Manager::CheckLeases() {
  std::vector<std::pair<AgentEndpoint, v1::CancelTaskRequest>> cancels;
  bool retention_due = false;
  {
    absl::MutexLock lock(&mu_);
    WriteBatch w;
    w.what = "lease check";
    const int64_t now = MonoMs();
    for (const auto& [nsp, silent] : nodes_.ExpireLeases(now, config_.lease_timeout.count())) {
      NodeState* ns = nsp;
      const std::string& id = ns->node.id;
      StageNode(*ns, &w);
      spdlog::warn("node {} missed heartbeats for {} ms: offline; re-queueing {} executions", id,
                   silent, ns->assigned.size());
      for (const std::string& eid :
           std::vector<std::string>(ns->assigned.begin(), ns->assigned.end())) {
        Requeue(*live_.at(eid), "node_lost",
                absl::StrCat("node ", id, " was lost (no heartbeat for ", silent / 1000.0, " s)"),
                &w);
      }
    }
    CheckAttemptDeadlines(&w, &cancels);
    Commit(std::move(w));
    if (now - last_retention_mono_ms_ >= config_.retention_interval.count()) {
      last_retention_mono_ms_ = now;
      retention_due = true;
    }
  }
  writer_.Drain();
  for (auto& [to, req] : cancels) {
    agents_->For(to.node_id, to.address)->CancelTask(req, [id = req.execution_id()](absl::Status st) {
      if (!st.ok()) spdlog::warn("[{}] cancel of a lost attempt not delivered: {}", id, st.message());
    });
  }
  if (retention_due) {
    if (auto n = RunRetention(); !n.ok()) {
      spdlog::warn("retention: {}", n.status().message());
    }
  }
}

void Manager::CheckAttemptDeadlines(
    WriteBatch* w, std::vector<std::pair<AgentEndpoint, v1::CancelTaskRequest>>* cancels) {
  const int64_t now = MonoMs();
  std::vector<std::string> lost;
  nodes_.ForEach([&](const NodeState& ns) {
    for (const std::string& eid : ns.assigned) {
      const Live& live = *live_.at(eid);
      const int64_t deadline =
          live.assigned_mono_ms + live.request.timeout_ms() + config_.attempt_grace.count();
      if (now > deadline) lost.push_back(eid);
    }
  });
  for (const std::string& eid : lost) {
    Live& live = *live_.at(eid);
    const std::string node_id = live.rec.node_id;
    if (const NodeState* n = nodes_.Find(node_id)) {
      v1::CancelTaskRequest req;
      req.set_execution_id(eid);
      req.set_attempt(live.rec.attempt);
      req.set_manager_epoch(config_.manager_epoch);
      cancels->push_back({{n->node.id, n->node.address}, std::move(req)});
    }
    const std::string why = absl::StrCat(
        "node ", node_id, " returned no result for attempt ", live.rec.attempt, " within its timeout (",
        live.request.timeout_ms(), " ms) plus the grace (", config_.attempt_grace.count(), " ms)");
    if (static_cast<int>(live.rec.attempt) >= config_.max_attempts) {
      Finish(live, ExecutionState::kFailed, nullptr,
             absl::StrCat(why, "; gave up after ", live.rec.attempt, " attempts"), w);
      // After Finish's own attempt row, so that this outcome is the one kept.
      w->ops.push_back(WriteBatch::PutAttempt{{.execution_id = eid,
                                               .attempt = live.rec.attempt,
                                               .node_id = node_id,
                                               .assigned_ms = live.rec.assigned_ms,
                                               .ended_ms = live.rec.finished_ms,
                                               .outcome = "attempt_deadline"}});
    } else {
      Requeue(live, "attempt_deadline", why, w);
    }
  }
}

absl::StatusOr<int> Manager::RunRetention() {
  // A round is one writer transaction. The etcd store deletes only what fits
  // in one etcd Txn per round (tens of executions, etcd's --max-txn-ops), so
  // rounds repeat while they delete something: at most kRounds, or 2 s.
  constexpr int kRounds = 100;
  const int64_t until = MonoMs() + 2000;
  int total = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::shared_ptr<Writer::Ticket> ticket;
    {
      absl::MutexLock lock(&mu_);
      WriteBatch w;
      w.what = "retention";
      w.ops.push_back(WriteBatch::DeleteFinished{
          .finished_before_ms = clock_->UnixMs() - config_.retention_max_age.count(),
          .keep_newest = config_.retention_max_count,
          .limit = 10000});
      ticket = CommitAwaited(std::move(w));
    }
    absl::Status st = ticket->Wait();
    if (!st.ok()) {
      if (total == 0) return st;
      spdlog::warn("retention: deleted {} finished executions, then: {}", total, st.message());
      break;
    }
    const int deleted = std::get<WriteBatch::DeleteFinished>(ticket->batch().ops[0]).deleted;
    total += deleted;
    if (deleted == 0 || MonoMs() >= until) break;
  }
  if (total > 0) spdlog::info("retention: deleted {} finished executions", total);
  return total;
}

void Manager::DispatcherLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!dispatch_wanted_ && !stopping_) {
        dispatch_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(250));
      }
      if (stopping_) return;
      dispatch_wanted_ = false;
    }
    DispatchRound();
  }
}

void Manager::LeaseLoop() {
  const absl::Duration period =
      absl::Milliseconds(std::max<int64_t>(50, std::min<int64_t>(500, config_.lease_timeout.count() / 4)));
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      stop_cv_.WaitWithTimeout(&mu_, period);
      if (stopping_) return;
    }
    CheckLeases();
  }
}

void Manager::DispatchOnceForTest() { DispatchRound(); }
void Manager::CheckLeasesForTest() { CheckLeases(); }
absl::StatusOr<int> Manager::RunRetentionForTest() { return RunRetention(); }

std::string Manager::RenderMetrics() {
  Metrics::Gauges g;
  std::vector<scheduler::LatencySample> history;
  scheduler::LatencyModelOptions model_options;
  {
    absl::MutexLock lock(&mu_);
    nodes_.ForEach([&](const NodeState& ns) { g.nodes_by_status[model::ToString(ns.node.status)]++; });
    g.queue_depth = static_cast<int64_t>(queue_.size());
    g.running = static_cast<int64_t>(live_.size() - queue_.size());
    g.preemptions = static_cast<int64_t>(preemptions_);
    for (const auto& n : balance_.nodes) g.overloaded_nodes += n.overloaded;
    history.assign(latency_history_.begin(), latency_history_.end());
    model_options = latency_model_.options();
  }
  const Writer::Stats ws = writer_.stats();
  g.write_batches = static_cast<int64_t>(ws.batches);
  g.write_groups = static_cast<int64_t>(ws.groups);
  g.write_failures = static_cast<int64_t>(ws.failures);
  g.write_backlog = static_cast<int64_t>(writer_.backlog());
  // Training the held-out model is the only real work of a scrape: done
  // outside the lock, on copies.
  if (history.size() >= 20) {
    auto report = scheduler::LatencyModel(model_options).EvaluateHoldout(history, 0.2);
    if (report.ok()) {
      g.latency_model_mae_ms = report->mae_ms;
      g.latency_baseline_mae_ms = report->baseline_mae_ms;
      g.latency_model_samples = static_cast<int64_t>(history.size());
    }
  }
  return metrics_.Render(g);
}

}  // namespace flotilla::manager
