#include "manager/migration.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "flotilla/v1/federation.grpc.pb.h"
#include "manager/manager.h"
#include "migrate/target.h"
#include "scheduler/filters.h"
#include "wire/channel.h"
#include "wire/convert.h"
#include "wire/grpc_status.h"

namespace flotilla::manager {

namespace v1 = ::flotilla::v1;

namespace {

constexpr auto kMigrateTimeout = std::chrono::seconds(300);  // checkpoint + transfer + restore
constexpr auto kFinishTimeout = std::chrono::seconds(10);
constexpr int64_t kRetryAfterMs = 30000;
constexpr int64_t kImageOverheadBytes = 8 << 20;  // CRIU metadata, the root skeleton, page tables

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A stub on the manager's (mutual TLS) channel to node `node` at `address`.
std::unique_ptr<v1::AgentService::Stub> AgentStub(AgentClientFactory* agents,
                                                  const std::string& node,
                                                  const std::string& address) {
  std::shared_ptr<grpc::Channel> channel = agents->ChannelFor(node, address);
  if (!channel) {
    // Only test fakes have none; a channel to nowhere fails every call.
    channel = grpc::CreateChannel("unix:/nonexistent", grpc::InsecureChannelCredentials());
  }
  return v1::AgentService::NewStub(channel);
}

template <typename Duration>
std::unique_ptr<grpc::ClientContext> Ctx(Duration d) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + d);
  return ctx;
}

absl::Status Finish(AgentClientFactory* agents, uint64_t epoch, const std::string& address,
                    const std::string& node, const std::string& mig, const Manager::RunningView& v,
                    bool moved) {
  v1::FinishMigrationRequest req;
  req.set_migration_id(mig);
  req.set_execution_id(v.execution_id);
  req.set_attempt(v.attempt);
  req.set_moved(moved);
  req.set_manager_epoch(epoch);
  v1::FinishMigrationResponse resp;
  auto ctx = Ctx(kFinishTimeout);
  return wire::FromGrpcStatus(AgentStub(agents, node, address)->FinishMigration(ctx.get(), req, &resp),
                              absl::StrCat("FinishMigration(moved=", moved, ") on ", node));
}

// What the execution will need, from its latest usage report and request.
migrate::Demand DemandOf(const Manager::RunningView& v) {
  migrate::Demand d;
  const auto& r = v.request.resources();
  d.cpu_cores = static_cast<double>(r.cpu_millis()) / 1000.0;
  d.memory_bytes = r.memory_bytes();
  if (v.usage) {
    d.cpu_cores = std::max(d.cpu_cores, v.usage->cpu_cores());
    // The limit in force (a resize may have raised it) is what the target must hold.
    d.memory_bytes = std::max(d.memory_bytes, v.usage->memory_limit_bytes());
    d.image_bytes = v.usage->memory_bytes() + kImageOverheadBytes;
  } else {
    d.image_bytes = r.memory_bytes() / 2 + kImageOverheadBytes;
  }
  const int64_t timeout_ms = v.request.timeout_ms() > 0 ? v.request.timeout_ms() : 60000;
  d.remaining_s = std::max<double>(0.0, static_cast<double>(timeout_ms - v.running_ms) / 1000.0);
  return d;
}

// Why a node cannot checkpoint, as its agent reported it; "" when it can.
std::string CheckpointUnavailable(const v1::CheckpointStatus& s) {
  switch (s.state()) {
    case v1::CHECKPOINT_AVAILABLE:
      return "";
    case v1::CHECKPOINT_PROBING:
      return "probing (the agent is still proving it works)";
    case v1::CHECKPOINT_UNAVAILABLE:
      return absl::StrCat("unavailable (", s.reason(), ")");
    default:
      return "unknown (the agent did not report it)";
  }
}

migrate::Candidate CandidateOf(const v1::HypervisorNode& n) {
  migrate::Candidate c;
  c.node_id = n.id();
  c.online = n.status() == v1::NODE_ONLINE;
  c.can_restore = !n.unisolated() && n.security().isolation() != "process";
  c.checkpoint_unavailable = CheckpointUnavailable(n.checkpoint());
  c.free_cpu_cores = static_cast<double>(n.resources().available().cpu_millis()) / 1000.0;
  c.free_memory_bytes = n.resources().available().memory_bytes();
  c.per_cpu_second = n.cost().per_cpu_second();
  c.per_gib_second = n.cost().per_gib_second();
  c.bandwidth_bytes_per_s = static_cast<double>(n.resources().capacity().bandwidth_bps()) / 8.0;
  return c;
}

}  // namespace

void Migrator::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (trigger_.joinable()) return;
  stopping_ = false;
  trigger_ = std::thread([this] { TriggerLoop(); });
}

void Migrator::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (trigger_.joinable()) trigger_.join();
}

void Migrator::TriggerLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
      if (stopping_) return;
    }
    for (const Manager::RunningView& v : manager_->NeedingMigration()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
        auto it = last_tried_.find(v.execution_id);
        if (it != last_tried_.end() && SteadyMs() - it->second < kRetryAfterMs) continue;
        last_tried_[v.execution_id] = SteadyMs();
      }
      const std::string why = absl::StrCat(
          "node ", v.node_id, " has no room: ",
          v.usage && !v.usage->pressure_reason().empty() ? v.usage->pressure_reason()
                                                         : std::string("needs migration"));
      auto r = Migrate(v.execution_id, "", "", why);
      if (!r.ok()) {
        spdlog::warn("[{}] automatic migration off {} failed: {}", v.execution_id, v.node_id,
                     r.status().message());
      }
    }
  }
}

absl::StatusOr<v1::CheckpointResponse> Migrator::Checkpoint(const std::string& id) {
  ASSIGN_OR_RETURN(Manager::RunningView v, manager_->RunningExecution(id));
  v1::CheckpointTaskRequest req;
  req.set_execution_id(id);
  req.set_attempt(v.attempt);
  req.set_manager_epoch(manager_->config().manager_epoch);
  v1::CheckpointTaskResponse resp;
  auto ctx = Ctx(kMigrateTimeout);
  RETURN_IF_ERROR(wire::FromGrpcStatus(AgentStub(manager_->agent_clients(), v.node_id, v.node_address)->CheckpointTask(ctx.get(), req, &resp),
                                       absl::StrCat("CheckpointTask on ", v.node_id)));
  v1::CheckpointResponse out;
  out.set_node_id(v.node_id);
  out.set_image_dir(resp.image_dir());
  out.set_image_bytes(resp.image_bytes());
  out.set_checkpoint_us(resp.checkpoint_us());
  spdlog::info("[{}] checkpoint on {}: {} ({} bytes)", id, v.node_id, resp.image_dir(),
               resp.image_bytes());
  return out;
}

absl::StatusOr<v1::MigrateResponse> Migrator::Migrate(const std::string& id, const std::string& to,
                                                      const std::string& fail_after,
                                                      const std::string& why) {
  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(Manager::RunningView v, manager_->RunningExecution(id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (in_flight_.count(id)) {
      return absl::AlreadyExistsError(absl::StrCat("execution ", id, " is being migrated already"));
    }
    in_flight_[id] = SteadyMs();
  }
  struct Done {
    Migrator* m;
    std::string id;
    ~Done() {
      std::lock_guard<std::mutex> lock(m->mu_);
      m->in_flight_.erase(id);
    }
  } done{this, id};

  // 1. The target.
  const migrate::Demand demand = DemandOf(v);
  std::vector<migrate::Candidate> candidates;
  std::map<std::string, std::string> address;
  double src_cpu = 0, src_gib = 0;
  // A target must be one the execution could have been placed on: the
  // scheduler's hard filters (trust, tenant, capabilities, isolation,
  // required regions, capacity) apply to a move as to a placement.
  ASSIGN_OR_RETURN(v1::Execution exec, manager_->Get(id));
  const model::ExecutionRequest request = wire::FromProto(exec.request());
  const scheduler::FilterChain filters = scheduler::EverFeasibleFilters();
  std::map<std::string, std::string> refused;
  for (const auto& n : manager_->ListNodes()) {
    std::string why;
    if (n.id() != v.node_id &&
        !scheduler::PassesAll(filters, request, wire::FromProto(n), &why)) {
      refused[n.id()] = why;
      continue;
    }
    candidates.push_back(CandidateOf(n));
    address[n.id()] = n.address();
    if (n.id() == v.node_id) {
      src_cpu = n.cost().per_cpu_second();
      src_gib = n.cost().per_gib_second();
    }
  }
  // Never from a node that cannot checkpoint: the dump could hang or fail
  // there, and the task would stall for nothing.
  RETURN_IF_ERROR(Annotate(migrate::CheckSource(v.node_id, candidates),
                           absl::StrCat("migration of ", id, " refused")));
  std::string target = to;
  std::string reason;
  if (target.empty()) {
    ASSIGN_OR_RETURN(migrate::Choice choice,
                     migrate::ChooseTarget(demand, v.node_id, src_cpu, src_gib, candidates));
    target = choice.node_id;
    reason = choice.reason;
  } else {
    if (target == v.node_id) {
      return absl::InvalidArgumentError(absl::StrCat("execution ", id, " already runs on ", target));
    }
    if (auto r = refused.find(target); r != refused.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", target, " cannot take execution ", id, ": ", r->second));
    }
    auto c = std::find_if(candidates.begin(), candidates.end(),
                          [&](const migrate::Candidate& x) { return x.node_id == target; });
    if (c == candidates.end()) return absl::NotFoundError(absl::StrCat("no node '", target, "'"));
    migrate::Scored s =
        migrate::ScoreNode(demand, migrate::PricePerSecond(demand, src_cpu, src_gib), *c);
    if (!c->online || !c->can_restore || !c->checkpoint_unavailable.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("node ", target, " cannot take it: ", s.why_not));
    }
    reason = absl::StrFormat("named by the operator: cost %.6g = run %.6g + migration %.6g (%.2f s)%s",
                             s.cost, s.run_cost, s.migration_cost, s.migration_s,
                             s.feasible ? "" : absl::StrCat("; warning: ", s.why_not));
  }
  const std::string mig = NewId("mig-");
  spdlog::info("[{}] migrating attempt {} from {} to {} ({}): {}", id, v.attempt, v.node_id, target,
               why, reason);

  // 2. Checkpoint, transfer, restore (the source agent drives them).
  v1::MigrateTaskRequest mreq;
  mreq.set_migration_id(mig);
  mreq.set_execution_id(id);
  mreq.set_attempt(v.attempt);
  mreq.set_manager_epoch(manager_->config().manager_epoch);
  mreq.set_target_node_id(target);
  mreq.set_target_address(address[target]);
  if (fail_after == "checkpoint" || fail_after == "transfer" || fail_after == "restore") {
    mreq.set_fail_after(fail_after);
  }
  {
    v1::MigrationClaims claims;
    claims.set_migration_id(mig);
    claims.set_execution_id(id);
    claims.set_attempt(v.attempt);
    claims.set_source_node_id(v.node_id);
    claims.set_target_node_id(target);
    ASSIGN_OR_RETURN(*mreq.mutable_token(), manager_->MintMigrationToken(claims, kMigrateTimeout));
  }
  v1::MigrateTaskResponse mresp;
  {
    auto ctx = Ctx(kMigrateTimeout);
    grpc::Status st = AgentStub(manager_->agent_clients(), v.node_id, v.node_address)->MigrateTask(ctx.get(), mreq, &mresp);
    if (!st.ok()) {
      return Annotate(wire::FromGrpcStatus(st, "MigrateTask on " + v.node_id),
                      absl::StrCat("migration of ", id, " from ", v.node_id, " to ", target,
                                   " failed; it carries on on ", v.node_id));
    }
  }
  // 3. The switch.
  auto undo_restore = [&](absl::Status why_failed) {
    if (absl::Status st = Finish(manager_->agent_clients(), manager_->config().manager_epoch, address[target], target, mig, v, false); !st.ok()) {
      spdlog::warn("[{}] discarding the restored copy on {}: {}", id, target, st.message());
    }
    if (absl::Status st = Finish(manager_->agent_clients(), manager_->config().manager_epoch, v.node_address, v.node_id, mig, v, false); !st.ok()) {
      spdlog::warn("[{}] resuming the source on {}: {}", id, v.node_id, st.message());
    }
    return Annotate(why_failed, absl::StrCat("migration of ", id, " from ", v.node_id, " to ",
                                             target, " failed; it carries on on ", v.node_id));
  };
  if (absl::Status st = manager_->MoveAssignment(id, v.attempt, v.node_id, target); !st.ok()) {
    return undo_restore(st);
  }
  // 4. Resume on the target, then end the source.
  absl::Status resumed = fail_after == "switch"
                             ? absl::InternalError("fault injected after the switch")
                             : Finish(manager_->agent_clients(), manager_->config().manager_epoch, address[target], target, mig, v, true);
  if (!resumed.ok()) {
    if (absl::Status st = manager_->MoveAssignment(id, v.attempt, target, v.node_id); !st.ok()) {
      spdlog::error("[{}] could not move the execution back to {}: {}", id, v.node_id, st.message());
    }
    return undo_restore(resumed);
  }
  if (absl::Status st = Finish(manager_->agent_clients(), manager_->config().manager_epoch, v.node_address, v.node_id, mig, v, true); !st.ok()) {
    // The held source resumes on its own later; the manager then cancels it
    // (it is no longer the execution's node) and drops its result as stale.
    spdlog::warn("[{}] the source on {} did not confirm the end of its copy: {}", id, v.node_id,
                 st.message());
  }
  v1::MigrateResponse resp;
  resp.set_from_node_id(v.node_id);
  resp.set_to_node_id(target);
  resp.set_image_bytes(mresp.image_bytes());
  resp.set_checkpoint_us(mresp.checkpoint_us());
  resp.set_transfer_us(mresp.transfer_us());
  resp.set_restore_us(mresp.restore_us());
  resp.set_total_us(std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - t0)
                        .count());
  resp.set_reason(absl::StrCat(why, "; ", reason));
  if (auto e = manager_->Get(id); e.ok()) *resp.mutable_execution() = std::move(*e);
  spdlog::info("[{}] migrated from {} to {}: image {} bytes, checkpoint {} ms, transfer {} ms, "
               "restore {} ms, total {} ms ({})",
               id, v.node_id, target, resp.image_bytes(), resp.checkpoint_us() / 1000,
               resp.transfer_us() / 1000, resp.restore_us() / 1000, resp.total_us() / 1000, why);
  return resp;
}

}  // namespace flotilla::manager
