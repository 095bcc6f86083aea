// The manager's part in checkpoint and migration (manager/migration.cc
// drives it): running views and the atomic switch of an assignment.
#include "common/logging.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/failpoint.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "manager/internal/live.h"
#include "manager/manager.h"
#include "manager/migration.h"
#include "wire/convert.h"

namespace flotilla::manager {

using model::ExecutionState;

// ---------------------------------------------------------------- migration

absl::StatusOr<v1::CheckpointResponse> Manager::Checkpoint(const std::string& id) {
  return migrator_->Checkpoint(id);
}

absl::StatusOr<v1::MigrateResponse> Manager::Migrate(const v1::MigrateRequest& request) {
  return migrator_->Migrate(request.execution_id(), request.target_node_id(), request.fail_after(),
                            "requested by an operator");
}

namespace {
bool IsRunning(ExecutionState s) { return s == ExecutionState::kRunning; }
}  // namespace

absl::StatusOr<Manager::RunningView> Manager::RunningExecution(const std::string& id) {
  bool known;
  {
    absl::MutexLock lock(&mu_);
    known = live_.count(id) > 0;
  }
  if (!known) {
    auto done = LoadFinished(id);
    if (!done.ok()) return done.status();
    return absl::FailedPreconditionError(
        absl::StrCat("execution ", id, " is not running (", v1::ExecutionState_Name(done->state()), ")"));
  }
  absl::MutexLock lock(&mu_);
  auto it = live_.find(id);
  if (it == live_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("execution ", id, " has just ended"));
  }
  const Live& live = *it->second;
  if (!IsRunning(live.rec.state)) {
    return absl::FailedPreconditionError(absl::StrCat("execution ", id, " is not running (",
                                                      model::ToString(live.rec.state), ")"));
  }
  RunningView v;
  v.execution_id = id;
  v.attempt = live.rec.attempt;
  v.node_id = live.rec.node_id;
  if (const NodeState* n = nodes_.Find(live.rec.node_id)) v.node_address = n->spec.address();
  v.request = live.request;
  if (live.usage && live.usage->attempt() == live.rec.attempt) v.usage = live.usage;
  v.running_ms = live.rec.started_ms > 0 ? clock_->UnixMs() - live.rec.started_ms : 0;
  return v;
}

std::vector<Manager::RunningView> Manager::NeedingMigration() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, live] : live_) {
      if (IsRunning(live->rec.state) && live->usage && live->usage->attempt() == live->rec.attempt &&
          live->usage->needs_migration()) {
        ids.push_back(id);
      }
    }
  }
  std::vector<RunningView> out;
  for (const auto& id : ids) {
    if (auto v = RunningExecution(id); v.ok()) out.push_back(std::move(*v));
  }
  return out;
}

absl::Status Manager::MoveAssignment(const std::string& id, uint32_t attempt,
                                     const std::string& from, const std::string& to) {
  auto check = [&](Live** out) -> absl::Status {
    auto it = live_.find(id);
    if (it == live_.end()) return absl::FailedPreconditionError(absl::StrCat("execution ", id, " ended"));
    Live& live = *it->second;
    if (live.rec.attempt != attempt || live.rec.node_id != from || !IsRunning(live.rec.state) ||
        live.finishing) {
      return absl::FailedPreconditionError(absl::StrCat(
          "execution ", id, " is no longer attempt ", attempt, " running on ", from, " (attempt ",
          live.rec.attempt, " ", model::ToString(live.rec.state), " on '", live.rec.node_id, "')"));
    }
    const NodeState* dst = nodes_.Find(to);
    if (dst == nullptr || dst->node.status != model::NodeStatus::kOnline) {
      return absl::FailedPreconditionError(absl::StrCat("node ", to, " is not online"));
    }
    *out = &live;
    return absl::OkStatus();
  };
  std::shared_ptr<Writer::Ticket> ticket;
  {
    absl::MutexLock lock(&mu_);
    Live* live = nullptr;
    RETURN_IF_ERROR(check(&live));
    // The switch is durable before anyone is told: a restarted manager
    // expects the task on `to`.
    store::ExecutionRecord moved = live->rec;
    moved.node_id = to;
    moved.placement = live->placement.SerializeAsString();
    WriteBatch w;
    w.what = absl::StrCat("move of ", id, " to ", to);
    w.ops.push_back(WriteBatch::UpdateExecution{std::move(moved)});
    ticket = CommitAwaited(std::move(w));
  }
  if (absl::Status st = ticket->Wait(); !st.ok()) {
    return Annotate(st, absl::StrCat("moving execution ", id, " to ", to));
  }
  absl::MutexLock lock(&mu_);
  Live* livep = nullptr;
  RETURN_IF_ERROR(check(&livep));
  Live& live = *livep;
  NodeState* src = nodes_.Find(from);
  NodeState* dst = nodes_.Find(to);
  live.rec.node_id = to;
  if (src != nullptr) nodes_.Release(*src, id, live.sched.resources);
  nodes_.Assign(*dst, id, live.sched.resources);
  live.placement.set_node_id(to);
  live.placement.set_reason(absl::StrCat("migrated from ", from));
  // The new node reports the attempt from its next heartbeat on.
  live.assigned_mono_ms = MonoMs();
  live.usage.reset();
  dispatch_wanted_ = true;
  Changed(live);
  spdlog::info("[{}] attempt {} moved from {} to {}", id, attempt, from, to);
  return absl::OkStatus();
}

}  // namespace flotilla::manager
