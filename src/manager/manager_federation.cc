// The manager's FederationService side: agents register, report status,
// send results and live output.
#include <set>

#include "common/logging.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/failpoint.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "manager/internal/live.h"
#include "manager/manager.h"

#include "auth/migration_token.h"
#include "wire/convert.h"

namespace flotilla::manager {

using model::ExecutionState;

// ---------------------------------------------------------------- federation

absl::StatusOr<std::string> Manager::MintMigrationToken(v1::MigrationClaims claims,
                                                        std::chrono::milliseconds ttl) {
  absl::MutexLock lock(&mu_);
  const NodeState* target = nodes_.Find(claims.target_node_id());
  if (target == nullptr || target->migration_key.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", claims.target_node_id(), " is not registered: no migration to it"));
  }
  claims.set_expires_unix_ms(clock_->UnixMs() + ttl.count());
  return auth::MintMigrationToken(target->migration_key, claims);
}

absl::StatusOr<v1::RegisterNodeResponse> Manager::RegisterNode(const v1::RegisterNodeRequest& req) {
  const v1::HypervisorNode& spec = req.node();
  if (!IsValidId(spec.id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node id '", spec.id(), "' is not valid: use 1-128 characters from [A-Za-z0-9._:-]"));
  }
  if (spec.address().empty()) return absl::InvalidArgumentError("node address is empty");
  const auto& cap = spec.resources().capacity();
  if (cap.cpu_millis() <= 0 || cap.memory_bytes() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node ", spec.id(), " reports no capacity (cpu ", cap.cpu_millis(), "m, memory ",
        cap.memory_bytes(), " bytes)"));
  }
  if (spec.security().trust_level() < 0 || spec.security().trust_level() > 10) {
    return absl::InvalidArgumentError("security.trust_level must be in 0..10");
  }
  std::shared_ptr<Writer::Ticket> ticket;
  v1::RegisterNodeResponse resp;
  {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(NodeState* slot, nodes_.ForRegistration(spec.id()));
  WriteBatch w;
  w.what = absl::StrCat("registration of node ", spec.id());
  NodeState& ns = *slot;
  const uint64_t epoch = ns.node.epoch + 1;
  ns.spec = spec;
  ns.spec.clear_status();
  model::HypervisorNode node = wire::FromProto(spec);
  node.epoch = epoch;
  node.status = model::NodeStatus::kOnline;
  node.last_heartbeat_ms = clock_->UnixMs();
  ns.node = std::move(node);
  ns.last_heartbeat_mono_ms = MonoMs();
  ns.suspect_until_mono_ms = 0;
  ns.reported_available = ns.node.capacity;

  // Executions the manager sent to this node that the node no longer knows
  // (it restarted) go back to the queue now rather than after a grace period.
  std::set<std::pair<std::string, uint32_t>> held;
  for (const auto& t : req.tasks()) held.insert({t.execution_id(), t.attempt()});
  for (const std::string& id : std::vector<std::string>(ns.assigned.begin(), ns.assigned.end())) {
    Live& live = *live_.at(id);
    if (!held.count({id, live.rec.attempt})) {
      Requeue(live, "node_restarted", absl::StrCat("node ", spec.id(), " restarted without it"),
              &w);
    }
  }
  StageNode(ns, &w);
  spdlog::info("node {} registered at {} (epoch {}, {}m cpu, {} MiB, trust {})", spec.id(),
               spec.address(), epoch, cap.cpu_millis(), cap.memory_bytes() >> 20,
               spec.security().trust_level());
  dispatch_wanted_ = true;
  dispatch_cv_.Signal();
  ns.migration_key = auth::NewMigrationKey();
  resp.set_migration_key(ns.migration_key);
  resp.set_epoch(epoch);
  resp.set_manager_epoch(config_.manager_epoch);
  resp.set_heartbeat_interval_ms(config_.heartbeat_interval.count());
  resp.set_lease_timeout_ms(config_.lease_timeout.count());
  ticket = CommitAwaited(std::move(w));
  }
  // The epoch is durable before the agent uses it: a restarted manager never
  // hands out the same epoch twice.
  if (absl::Status st = ticket->Wait(); !st.ok()) {
    return absl::UnavailableError(absl::StrCat("could not record the registration: ", st.message()));
  }
  return resp;
}

absl::StatusOr<v1::ReportStatusResponse> Manager::ReportStatus(const v1::ReportStatusRequest& req) {
  absl::StatusOr<v1::ReportStatusResponse> out = [&]() -> absl::StatusOr<v1::ReportStatusResponse> {
  absl::MutexLock lock(&mu_);
  WriteBatch w;
  w.what = absl::StrCat("status of node ", req.node_id());
  NodeState* found = nodes_.Find(req.node_id());
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown node '", req.node_id(), "': register first"));
  }
  NodeState& ns = *found;
  // No migration key: the node's registration happened with another manager
  // process (this one restarted, or took over as leader). It registers again,
  // which gets it a key and settles which executions are still its own.
  if (ns.migration_key.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", req.node_id(), " registered with an earlier manager: register again"));
  }
  if (ns.node.status != model::NodeStatus::kOnline || ns.node.epoch != req.epoch()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the lease of node ", req.node_id(), " (epoch ", req.epoch(),
        ") expired or was superseded (current epoch ", ns.node.epoch, "): register again"));
  }
  const int64_t now = MonoMs();
  ns.last_heartbeat_mono_ms = now;
  ns.node.last_heartbeat_ms = clock_->UnixMs();
  ns.reported_available = wire::FromProto(req.available());
  ns.load_average = req.load_average();
  // Warm pools: shown in listings, and the warm-pool scorer's input.
  *ns.spec.mutable_pools() = req.pools();
  ns.node.warm_sandboxes.clear();
  for (const auto& p : req.pools()) ns.node.warm_sandboxes[p.template_name()] = p.idle();
  ns.spec.set_cpu_cores_used(req.cpu_cores_used());
  ns.spec.set_memory_available_bytes(req.memory_available_bytes());
  *ns.spec.mutable_checkpoint() = req.checkpoint();
  if (req.has_microvm()) *ns.spec.mutable_microvm() = req.microvm();

  v1::ReportStatusResponse resp;
  resp.set_manager_epoch(config_.manager_epoch);
  for (auto& t : prewarmer_.TargetsFor(clock_->UnixMs(), static_cast<int>(nodes_.size()))) {
    *resp.add_pool_targets() = std::move(t);
  }
  std::set<std::string> reported;
  for (const auto& t : req.tasks()) {
    auto lit = live_.find(t.execution_id());
    const bool current = lit != live_.end() && lit->second->rec.node_id == req.node_id() &&
                         lit->second->rec.attempt == t.attempt() &&
                         (lit->second->rec.state == ExecutionState::kAssigned ||
                          lit->second->rec.state == ExecutionState::kRunning);
    if (current) {
      reported.insert(t.execution_id());
      Live& live = *lit->second;
      if (!t.finished() && live.rec.state == ExecutionState::kAssigned) {
        live.rec.state = ExecutionState::kRunning;
        live.rec.started_ms = clock_->UnixMs();
        StageExecution(live, &w);
        Changed(live);
      }
      // The CancelTask call may have failed or reached the agent before the
      // task did: repeat it while the node still runs the task.
      if (!t.finished() && live.rec.cancel_requested) *resp.add_cancel() = t;
    } else if (!t.finished()) {
      *resp.add_cancel() = t;  // superseded attempt: stop it
    }
  }
  // Live usage of the node's current attempts (not persisted).
  for (const auto& u : req.usage()) {
    auto lit = live_.find(u.execution_id());
    if (lit == live_.end()) continue;
    Live& live = *lit->second;
    if (live.rec.node_id == req.node_id() && live.rec.attempt == u.attempt() &&
        live.rec.state == ExecutionState::kRunning) {
      live.usage = u;
    }
  }
  for (const std::string& id : std::vector<std::string>(ns.assigned.begin(), ns.assigned.end())) {
    Live& live = *live_.at(id);
    if (reported.count(id)) continue;
    if (now - live.assigned_mono_ms > config_.dispatch_grace.count()) {
      Requeue(live, "not_received",
              absl::StrCat("node ", req.node_id(), " never reported attempt ", live.rec.attempt),
              &w);
    }
  }
  Commit(std::move(w));
  return resp;
  }();
  writer_.Drain();
  return out;
}

absl::StatusOr<v1::SendResultsResponse> Manager::SendResults(const v1::SendResultsRequest& req) {
  v1::SendResultsResponse resp;
  std::vector<int> unknown;  // indexes of results whose execution is not live
  std::shared_ptr<Writer::Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    WriteBatch w;
    w.what = absl::StrCat(req.results_size(), " results from node ", req.node_id());
    for (int i = 0; i < req.results_size(); ++i) {
      const v1::ExecutionResult& r = req.results(i);
      auto it = live_.find(r.execution_id());
      if (it == live_.end() || it->second->inserting) {
        unknown.push_back(i);
        resp.add_verdicts(v1::RESULT_STALE);  // decided below, from the store
        continue;
      }
      Live& live = *it->second;
      const bool same = live.rec.attempt == r.attempt() && live.rec.node_id == req.node_id();
      if (same && live.finishing && live.result) {
        // Its end was not recorded yet (or the write failed): record it
        // again; the verdict waits for that write like the first one did.
        StageFinish(live, &w);
        pending_finish_.push_back(live.rec.id);
        resp.add_verdicts(v1::RESULT_ACCEPTED);
        continue;
      }
      const bool current = same && (live.rec.state == ExecutionState::kAssigned ||
                                    live.rec.state == ExecutionState::kRunning);
      if (!current) {
        spdlog::info("[{}] rejected result of attempt {} from {} (current: attempt {} on '{}')",
                     r.execution_id(), r.attempt(), req.node_id(), live.rec.attempt,
                     live.rec.node_id);
        metrics_.CountStaleResult();
        resp.add_verdicts(v1::RESULT_STALE);
        continue;
      }
      v1::ExecutionResult result = r;
      result.set_node_id(req.node_id());
      Finish(live, StateFromResult(result, live.rec.cancel_requested), &result, result.error(),
             &w);
      resp.add_verdicts(v1::RESULT_ACCEPTED);
    }
    if (!w.empty()) ticket = CommitAwaited(std::move(w));
  }
  // Finished already (a retry of a confirmed result) or never known: the
  // store says which, read without the lock.
  for (int i : unknown) {
    const v1::ExecutionResult& r = req.results(i);
    auto rec = store_->GetExecution(r.execution_id());
    if (!rec.ok()) return absl::UnavailableError(absl::StrCat("reading ", r.execution_id(), ": ", rec.status().message()));
    const bool duplicate = *rec && (*rec)->attempt == r.attempt() &&
                           (*rec)->node_id == req.node_id() && model::IsTerminal((*rec)->state);
    resp.set_verdicts(i, duplicate ? v1::RESULT_DUPLICATE : v1::RESULT_STALE);
    if (!duplicate) metrics_.CountStaleResult();
  }
  // ACCEPTED only once durable: the agent drops its copy on that verdict.
  if (ticket) {
    if (absl::Status st = ticket->Wait(); !st.ok()) {
      return absl::UnavailableError(
          absl::StrCat("could not record the results: ", st.message(), "; send them again"));
    }
    Failpoint("result.after_persist");
  }
  return resp;
}

void Manager::SendOutput(const v1::SendOutputRequest& req) {
  {
  absl::MutexLock lock(&mu_);
  WriteBatch w;
  w.what = "start of a task";
  for (const auto& t : req.started()) {
    auto it = live_.find(t.execution_id());
    if (it == live_.end()) continue;
    Live& live = *it->second;
    if (live.rec.attempt != t.attempt() || live.rec.node_id != req.node_id() ||
        live.rec.state != ExecutionState::kAssigned) {
      continue;
    }
    live.rec.state = ExecutionState::kRunning;
    live.rec.started_ms = clock_->UnixMs();
    StageExecution(live, &w);
    Changed(live);
  }
  Commit(std::move(w));
  for (const auto& c : req.chunks()) {
    auto it = live_.find(c.execution_id());
    if (it == live_.end()) continue;
    Live& live = *it->second;
    if (live.rec.attempt != c.attempt() || live.rec.node_id != req.node_id()) continue;
    std::string& buf = live.output[StreamIndex(c.stream())];
    const int64_t have = static_cast<int64_t>(buf.size());
    // Keep the live copy contiguous; a gap (a lost batch) is filled by the
    // final result, which carries the whole output.
    if (c.offset() > have || c.offset() + static_cast<int64_t>(c.data().size()) <= have) continue;
    size_t skip = static_cast<size_t>(have - c.offset());
    size_t room = kLiveOutputCap > buf.size() ? kLiveOutputCap - buf.size() : 0;
    buf.append(c.data(), skip, std::min(room, c.data().size() - skip));
    Changed(live);
  }
  }
  writer_.Drain();
}

}  // namespace flotilla::manager
