// GET /v1/nodes, /v1/executions and /v1/executions/ID: the federation and
// its executions as the REST API (and the dashboard) sees them. The data and
// its tenancy come from the same calls the gRPC ApiService makes
// (manager/user_api.h); this file only encodes them as JSON.
#include <httplib.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "manager/manager.h"
#include "manager/internal/rest_common.h"
#include "manager/access.h"
#include "manager/rest_json.h"
#include "manager/user_api.h"
#include "model/model.h"
#include "wire/convert.h"

namespace flotilla::manager {
namespace {

using nlohmann::json;

// The last `max` bytes of `text`, cut at a UTF-8 character boundary so the
// JSON encoder gets valid text.
std::string Tail(const std::string& text, size_t max) {
  if (text.size() <= max) return text;
  size_t start = text.size() - max;
  while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
  return text.substr(start);
}

const char* TerminationName(v1::Termination t) {
  switch (t) {
    case v1::TERMINATION_EXITED: return "exited";
    case v1::TERMINATION_SIGNALED: return "signaled";
    case v1::TERMINATION_TIMED_OUT: return "timed_out";
    case v1::TERMINATION_CANCELLED: return "cancelled";
    case v1::TERMINATION_START_FAILED: return "start_failed";
    default: return "unknown";
  }
}

const char* CheckpointName(v1::CheckpointState s) {
  switch (s) {
    case v1::CHECKPOINT_PROBING: return "probing";
    case v1::CHECKPOINT_AVAILABLE: return "available";
    case v1::CHECKPOINT_UNAVAILABLE: return "unavailable";
    default: return "unknown";
  }
}

json ResourcesJson(const v1::Resources& r) {
  return {{"cpu_millis", r.cpu_millis()},
          {"memory_bytes", r.memory_bytes()},
          {"storage_bytes", r.storage_bytes()}};
}

// Parses ?state=running,queued into `req`; InvalidArgument names a bad one.
absl::Status ParseStates(const std::string& text, v1::ListExecutionsRequest* req) {
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    model::ExecutionState s;
    if (!model::ParseExecutionState(std::string(part), &s)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state '", part,
          "' is not one of queued, assigned, running, succeeded, failed, timed_out, cancelled"));
    }
    req->add_states(wire::ToProto(s));
  }
  return absl::OkStatus();
}

}  // namespace

json NodeToJson(const v1::HypervisorNode& n) {
  json isolation = json::array();
  if (!n.security().isolation().empty()) isolation.push_back(n.security().isolation());
  if (n.microvm().available()) isolation.push_back("microvm");
  json pools = json::array();
  for (const auto& p : n.pools()) {
    pools.push_back({{"template", p.template_name()},
                     {"idle", p.idle()},
                     {"busy", p.busy()},
                     {"hits", p.hits()},
                     {"misses", p.misses()},
                     {"hit_rate", p.hit_rate()}});
  }
  auto label = [&n](const char* key) {
    auto it = n.labels().find(key);
    return it == n.labels().end() ? std::string() : it->second;
  };
  return {{"id", n.id()},
          {"region", label("region")},
          {"zone", label("zone")},
          {"status", n.status() == v1::NODE_ONLINE ? "online" : "offline"},
          {"draining", n.draining()},
          {"busy", n.busy()},
          {"running", n.running_executions()},
          {"capacity", ResourcesJson(n.resources().capacity())},
          {"free", ResourcesJson(n.resources().available())},
          {"cpu_cores_used", n.cpu_cores_used()},
          {"memory_available_bytes", n.memory_available_bytes()},
          {"trust", n.security().trust_level()},
          {"capabilities", n.security().capabilities()},
          {"isolation", isolation},
          {"unisolated", n.unisolated()},
          {"warm_pools", pools},
          {"checkpoint",
           {{"state", CheckpointName(n.checkpoint().state())}, {"reason", n.checkpoint().reason()}}},
          {"last_heartbeat_unix_ms", n.last_heartbeat_unix_ms()},
          {"version", n.version()}};
}

json ExecutionSummaryToJson(const v1::Execution& e) {
  json j = {{"id", e.id()},
            {"name", e.request().name()},
            {"function", e.request().function()},
            {"tenant", e.request().user_id()},
            {"state", wire::StateName(e.state())},
            {"attempts", e.attempt()},
            {"node", e.node_id()},
            {"submitted_unix_ms", e.submitted_unix_ms()},
            // The execution records when it started only while it runs; after,
            // its result does.
            {"started_unix_ms", e.started_unix_ms() != 0 ? e.started_unix_ms()
                                                         : e.result().started_unix_ms()},
            {"finished_unix_ms", e.finished_unix_ms()},
            {"error", e.error()}};
  if (e.has_result() && e.result().termination() != v1::TERMINATION_UNSPECIFIED) {
    j["exit_code"] = e.result().exit_code();
  }
  return j;
}

json ExecutionToJson(const v1::Execution& e, size_t output_tail_bytes) {
  json j = ExecutionSummaryToJson(e);
  json argv = json::array();
  for (const auto& a : e.request().code().argv()) argv.push_back(a);
  j["command"] = {{"runtime", e.request().code().runtime()}, {"argv", argv}};
  j["priority"] = e.request().priority();
  j["resources"] = ResourcesJson(e.request().resources());
  j["cancel_requested"] = e.cancel_requested();
  if (e.has_placement()) {
    const v1::Placement& p = e.placement();
    json candidates = json::array();
    for (const auto& c : p.candidates()) {
      json parts = json::object();
      for (const auto& [name, points] : c.parts()) parts[name] = points;
      candidates.push_back({{"node", c.node_id()},
                            {"feasible", c.feasible()},
                            {"rejected_because", c.rejected_because()},
                            {"score", c.score()},
                            {"parts", parts},
                            {"bid", c.bid()},
                            {"predicted_latency_ms", c.predicted_latency_ms()}});
    }
    // The chosen node first, then the feasible by score, then the rejected.
    std::stable_sort(candidates.begin(), candidates.end(), [&p](const json& a, const json& b) {
      auto rank = [&p](const json& c) {
        return std::make_tuple(c["node"] != p.node_id(), !c["feasible"].get<bool>(),
                               -c["score"].get<double>());
      };
      return rank(a) < rank(b);
    });
    j["placement"] = {{"node", p.node_id()},     {"score", p.score()},
                      {"reason", p.reason()},    {"mode", p.mode()},
                      {"sampled", p.sampled()},  {"decided_unix_ms", p.decided_unix_ms()},
                      {"preempted", p.preempted()}, {"candidates", candidates}};
  }
  if (e.has_result()) {
    const v1::ExecutionResult& r = e.result();
    j["result"] = {{"termination", TerminationName(r.termination())},
                   {"exit_code", r.exit_code()},
                   {"signal", r.signal()},
                   {"wall_time_us", r.wall_time_us()},
                   {"cpu_time_us", r.cpu_time_us()},
                   {"peak_memory_bytes", r.peak_memory_bytes()},
                   {"error", r.error()}};
    j["output"] = {{"stdout_tail", Tail(r.stdout(), output_tail_bytes)},
                   {"stderr_tail", Tail(r.stderr(), output_tail_bytes)},
                   {"stdout_bytes", r.stdout().size()},
                   {"stderr_bytes", r.stderr().size()},
                   {"truncated", r.stdout_truncated() || r.stderr_truncated() ||
                                     r.stdout().size() > output_tail_bytes ||
                                     r.stderr().size() > output_tail_bytes}};
  }
  if (e.has_usage()) {
    const v1::TaskUsage& u = e.usage();
    j["usage"] = {{"cpu_cores", u.cpu_cores()},
                  {"memory_bytes", u.memory_bytes()},
                  {"memory_limit_bytes", u.memory_limit_bytes()},
                  {"memory_peak_bytes", u.memory_peak_bytes()},
                  {"pids", u.pids()},
                  {"risk", u.risk()},
                  {"sampled_unix_ms", u.sampled_unix_ms()},
                  {"needs_migration", u.needs_migration()},
                  {"pressure_reason", u.pressure_reason()},
                  {"resizes", u.resizes()},
                  {"last_resize", u.last_resize()}};
  }
  return j;
}

void FederationRoutes(httplib::Server& s, const RestServices& svc) {
  Manager* m = svc.manager;
  s.Get("/v1/nodes", Authed(svc, [m](const auth::Caller&, const httplib::Request&,
                                     httplib::Response& res) {
    json out = json::array();
    for (const auto& n : m->ListNodes()) out.push_back(NodeToJson(n));
    ReplyJson(res, 200, {{"nodes", out}});
  }));
  s.Get("/v1/executions", Authed(svc, [m](const auth::Caller& caller, const httplib::Request& req,
                                          httplib::Response& res) {
    v1::ListExecutionsRequest list_req;
    int64_t limit = 100;
    if (req.has_param("limit") && (!absl::SimpleAtoi(req.get_param_value("limit"), &limit) ||
                                   limit < 1 || limit > Manager::kMaxListPage)) {
      return ReplyError(res, absl::InvalidArgumentError(absl::StrCat(
                                 "limit must be a number from 1 to ", Manager::kMaxListPage)));
    }
    list_req.set_limit(static_cast<int32_t>(limit));
    if (absl::Status st = ParseStates(req.get_param_value("state"), &list_req); !st.ok()) {
      return ReplyError(res, st);
    }
    auto list = ListExecutionsFor(*m, caller, list_req);
    if (!list.ok()) return ReplyError(res, list.status());
    json out = json::array();
    for (const auto& e : *list) out.push_back(ExecutionSummaryToJson(e));
    ReplyJson(res, 200, {{"executions", out}});
  }));
  s.Get(R"(/v1/executions/([^/]+))", Authed(svc, [m](const auth::Caller& caller,
                                                      const httplib::Request& req,
                                                      httplib::Response& res) {
    auto e = FindExecutionFor(*m, caller, req.matches[1].str());
    if (!e.ok()) return ReplyError(res, e.status());
    Redact(caller, &*e);
    ReplyJson(res, 200, {{"execution", ExecutionToJson(*e, kOutputTailBytes)}});
  }));
}

}  // namespace flotilla::manager
