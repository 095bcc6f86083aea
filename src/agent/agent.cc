#include "agent/agent.h"

#include "auth/caller.h"
#include "auth/tls.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/agent_task.h"
#include "agent/host_resources.h"
#include "checkpoint/checkpointer.h"
#include "monitor/resize_policy.h"
#include "pool/environment_template.h"
#include "pool/linux_instance.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "wire/channel.h"
#include "wire/convert.h"
#include "wire/grpc_status.h"

namespace flotilla::agent {

namespace {

constexpr auto kRpcTimeout = std::chrono::seconds(3);
// A results call carries up to kResultBatchBytes (1 MiB): a full one gets
// up to kResultsRpcTimeout for a slow link; a small one the deadline of any
// call, so that a paused or cut-off leader (which answers nothing) holds
// finished results no longer than a heartbeat does before the agent moves to
// the next manager.
constexpr auto kResultsRpcTimeout = std::chrono::seconds(10);
std::chrono::milliseconds ResultsRpcTimeout(size_t request_bytes) {
  const auto for_bytes = std::chrono::milliseconds(request_bytes / 128);  // 128 KB/s
  return std::min<std::chrono::milliseconds>(kResultsRpcTimeout, kRpcTimeout + for_bytes);
}
constexpr auto kOutputFlushPeriod = std::chrono::milliseconds(20);
const char* const kVersion = "0.1.0";

// How an answer from a manager older than the newest leader seen counts: as
// a manager that does not lead (the caller moves on to the next address).
grpc::Status Deposed(const std::string& address, uint64_t epoch) {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      absl::StrCat("manager ", address, " was deposed (epoch ", epoch, ")"));
}

std::string TaskKey(const std::string& id, uint32_t attempt) {
  return absl::StrCat(id, "/", attempt);
}

std::unique_ptr<grpc::ClientContext> Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + kRpcTimeout);
  return ctx;
}

class AgentServiceImpl final : public v1::AgentService::Service {
 public:
  AgentServiceImpl(Agent* agent, bool insecure, std::shared_ptr<auth::Revocations> revocations)
      : agent_(agent), gate_{insecure, nullptr, std::move(revocations)} {}
  grpc::Status RequestTask(grpc::ServerContext* ctx, const v1::RequestTaskRequest* req,
                           v1::RequestTaskResponse*) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    return wire::ToGrpcStatus(agent_->RequestTask(*req));
  }
  grpc::Status RequestTasks(grpc::ServerContext* ctx, const v1::RequestTasksRequest* req,
                            v1::RequestTasksResponse* resp) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    for (const auto& t : req->tasks()) {
      absl::Status st = agent_->RequestTask(t);
      auto* a = resp->add_accepted();
      a->set_code(static_cast<int>(st.code()));
      a->set_message(std::string(st.message()));
    }
    return grpc::Status::OK;
  }
  grpc::Status CancelTask(grpc::ServerContext* ctx, const v1::CancelTaskRequest* req,
                          v1::CancelTaskResponse* resp) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    if (auto st = agent_->AcceptManagerEpoch(req->manager_epoch(), "a cancel"); !st.ok()) {
      return wire::ToGrpcStatus(st);
    }
    resp->set_found(agent_->CancelTask(req->execution_id(), req->attempt()));
    return grpc::Status::OK;
  }
  grpc::Status MigrateTask(grpc::ServerContext* ctx, const v1::MigrateTaskRequest* req,
                           v1::MigrateTaskResponse* resp) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    if (auto st = agent_->AcceptManagerEpoch(req->manager_epoch(), "a migration"); !st.ok()) {
      return wire::ToGrpcStatus(st);
    }
    auto r = agent_->MigrateTask(*req);
    if (r.ok()) *resp = std::move(*r);
    return wire::ToGrpcStatus(r.status());
  }
  // The one call from another agent: the source of a migration streams
  // the image here.
  grpc::Status RestoreTask(grpc::ServerContext* ctx, grpc::ServerReader<v1::RestoreTaskChunk>* reader,
                           v1::RestoreTaskResponse* resp) override {
    auto from = gate_.FromGrpc(*ctx);
    if (!from.ok()) return wire::ToGrpcStatus(from.status());
    std::string source;
    if (!gate_.insecure) {
      if (from->kind != auth::Caller::Kind::kNode) {
        return wire::ToGrpcStatus(absl::PermissionDeniedError(absl::StrCat(
            "only another node may stream a migration image here; the caller is ",
            from->Describe())));
      }
      source = from->node_id;
    }
    auto r = agent_->RestoreTask([reader](v1::RestoreTaskChunk* c) { return reader->Read(c); },
                                 source);
    if (r.ok()) *resp = std::move(*r);
    return wire::ToGrpcStatus(r.status());
  }
  grpc::Status FinishMigration(grpc::ServerContext* ctx, const v1::FinishMigrationRequest* req,
                               v1::FinishMigrationResponse*) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    if (auto st = agent_->AcceptManagerEpoch(req->manager_epoch(), "a migration's end");
        !st.ok()) {
      return wire::ToGrpcStatus(st);
    }
    return wire::ToGrpcStatus(agent_->FinishMigration(*req));
  }
  grpc::Status CheckpointTask(grpc::ServerContext* ctx, const v1::CheckpointTaskRequest* req,
                              v1::CheckpointTaskResponse* resp) override {
    if (auto st = FromManager(*ctx); !st.ok()) return wire::ToGrpcStatus(st);
    if (auto st = agent_->AcceptManagerEpoch(req->manager_epoch(), "a checkpoint"); !st.ok()) {
      return wire::ToGrpcStatus(st);
    }
    auto r = agent_->CheckpointTask(*req);
    if (r.ok()) *resp = std::move(*r);
    return wire::ToGrpcStatus(r.status());
  }

 private:
  // Tasks, cancels and migrations come from the manager only: the TLS
  // handshake verified its certificate, and the name must be the manager's.
  absl::Status FromManager(const grpc::ServerContext& ctx) {
    if (gate_.insecure) return absl::OkStatus();
    auto caller = gate_.FromGrpc(ctx);
    if (!caller.ok()) return caller.status();
    if (caller->kind != auth::Caller::Kind::kManager) {
      return absl::PermissionDeniedError(absl::StrCat(
          "only the manager may call this agent; the caller is ", caller->Describe()));
    }
    return absl::OkStatus();
  }

 private:
  Agent* agent_;
  const auth::Gate gate_;
};

}  // namespace

Agent::Agent(AgentConfig config, std::unique_ptr<sandbox::Sandbox> sandbox)
    : config_(std::move(config)), sandbox_(std::move(sandbox)) {}

Agent::~Agent() { Stop(); }

absl::Status Agent::Start() {
  HostPaths paths;
  paths.work_dir = config_.work_dir;
  ASSIGN_OR_RETURN(capacity_, DetectHostResources(paths));
  const auto& o = config_.resources;
  if (o.cpu_millis > 0) capacity_.cpu_millis = o.cpu_millis;
  if (o.memory_bytes > 0) capacity_.memory_bytes = o.memory_bytes;
  if (o.storage_bytes > 0) capacity_.storage_bytes = o.storage_bytes;
  if (o.bandwidth_bps > 0) capacity_.bandwidth_bps = o.bandwidth_bps;

  if (config_.transport.insecure) {
    spdlog::warn(
        "SECURITY IS OFF (tls.insecure): this agent accepts tasks from any caller over plaintext "
        "gRPC. For development on a trusted host only.");
  }
  RETURN_IF_ERROR(auth::ValidateTransport(config_.transport, "tls."));
  if (!config_.transport.insecure) RETURN_IF_ERROR(auth::ValidateNodeId(config_.node_id));
  ASSIGN_OR_RETURN(auto server_credentials,
                   auth::ServerCredentials(config_.transport, auth::ClientCertPolicy::kRequire));
  ASSIGN_OR_RETURN(peer_credentials_, auth::ChannelCredentials(config_.transport, ""));
  std::shared_ptr<auth::Revocations> revocations;
  if (!config_.transport.insecure && !config_.transport.crl.empty()) {
    ASSIGN_OR_RETURN(revocations, auth::Revocations::Open(config_.transport.crl,
                                                          config_.transport.files.ca_cert));
  }
  service_ = std::make_unique<AgentServiceImpl>(this, config_.transport.insecure,
                                                std::move(revocations));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.listen, server_credentials, &port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  wire::ConfigureServerKeepalive(builder);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config_.listen));
  }
  if (config_.advertise.empty()) {
    std::string host = config_.listen.substr(0, config_.listen.rfind(':'));
    if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
    address_ = absl::StrCat(host, ":", port);
  } else {
    address_ = config_.advertise;
  }
  ASSIGN_OR_RETURN(std::vector<std::string> manager_addresses,
                   wire::ParseEndpointList(config_.manager));
  managers_ = std::make_unique<wire::Endpoints>(
      std::move(manager_addresses), [this](const std::string& address) {
        return wire::NewChannel(address, {.max_send_bytes = 64 << 20},
                                peer_credentials_.credentials,
                                config_.transport.insecure ? "" : auth::kManagerName);
      });
  spdlog::info("agent {} serving on {} ({}m cpu, {} MiB memory, sandbox {}), manager {}",
               config_.node_id, address_, capacity_.cpu_millis, capacity_.memory_bytes >> 20,
               sandbox_->kind(), config_.manager);
  sampler_ = std::make_unique<monitor::Sampler>(
      [this](const std::string& key) { return sandbox_->Sample(key); },
      []() -> std::optional<int64_t> {
        auto m = ReadMemAvailable("/proc");
        return m.ok() ? std::optional<int64_t>(*m) : std::nullopt;
      });
  sampler_->Start();
  loops_.emplace_back([this] { ControlLoop(); });
  loops_.emplace_back([this] { ResultsLoop(); });
  loops_.emplace_back([this] { OutputLoop(); });
  if (!pools_.empty()) loops_.emplace_back([this] { RefillLoop(); });
  if (config_.resize.enabled) loops_.emplace_back([this] { ResizeLoop(); });
  return absl::OkStatus();
}

void Agent::Stop() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stopping_) return;
    for (auto& [key, task] : tasks_) task->cancel.Cancel();
    // Let cancelled tasks end and their results go out before the loops stop.
    cv_.wait_for(lock, std::chrono::seconds(3), [&] { return running_threads_ == 0; });
    cv_.wait_for(lock, std::chrono::seconds(2), [&] { return results_.empty(); });
    stopping_ = true;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return running_threads_ == 0; });
  }
  for (auto& t : loops_) t.join();
  loops_.clear();
  // Cancelled above: the task and migration threads end; wait for each.
  std::list<Worker> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) {
    if (w.thread.joinable()) w.thread.join();
  }
  if (sampler_) sampler_->Stop();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

v1::HypervisorNode Agent::Describe() {
  v1::HypervisorNode n;
  n.set_id(config_.node_id);
  n.set_address(address_);
  wire::ToProto(capacity_, n.mutable_resources()->mutable_capacity());
  wire::ToProto(capacity_, n.mutable_resources()->mutable_available());
  auto* sec = n.mutable_security();
  sec->set_trust_level(config_.trust_level);
  for (const auto& t : config_.allowed_tenants) sec->add_allowed_tenants(t);
  for (const auto& c : config_.capabilities) sec->add_capabilities(c);
  sec->set_isolation(std::string(sandbox_->kind()));
  n.set_unisolated(config_.isolation == "process");
  AddCheckpointStatus(n.mutable_checkpoint());
  AddMicroVmStatus(n.mutable_microvm());
  AddPoolStatus(n.mutable_pools());
  for (const auto& p : n.pools()) (*n.mutable_warm_sandboxes())[p.template_name()] = p.idle();
  for (const auto& d : config_.data_sets) {
    auto* ds = n.mutable_data()->add_data_sets();
    ds->set_key(d.key);
    ds->set_size_bytes(d.size_bytes);
  }
  for (const auto& [k, v] : config_.labels) (*n.mutable_labels())[k] = v;
  n.set_version(kVersion);
  n.mutable_cost()->set_per_cpu_second(config_.cost.per_cpu_second);
  n.mutable_cost()->set_per_gib_second(config_.cost.per_gib_second);
  return n;
}

void Agent::AddMicroVmStatus(v1::MicroVmStatus* out) const {
  if (!microvm_) {
    out->set_available(false);
    out->set_reason(microvm_unavailable_);
    return;
  }
  const pool::MicroVmStatus s = microvm_->status();
  out->set_available(true);
  out->set_accelerator(sandbox::microvm::ToString(s.accel));
  // The reason says why not KVM; a node whose QEMU runs unjailed says so too.
  std::string reason = s.accel_reason;
  if (!s.jailed) absl::StrAppend(&reason, reason.empty() ? "" : "; ", "QEMU jail ", s.jail);
  out->set_reason(reason);
  out->set_snapshots(s.snapshots_made);
  out->set_restores(s.restores);
  out->set_cold_boots(s.cold_boots);
  out->set_failures(s.failures);
  out->set_last_restore_ms(s.last_restore_ms);
  out->set_last_snapshot_ms(s.last_snapshot_ms);
}

void Agent::AddCheckpointStatus(v1::CheckpointStatus* out) const {
  if (config_.isolation == "microvm") {
    // CRIU works on containers; a VM's tasks would move by QEMU migration,
    // which is not built yet.
    out->set_state(v1::CHECKPOINT_UNAVAILABLE);
    out->set_reason("isolation: microvm (micro-VM tasks are not checkpointed yet)");
    return;
  }
  if (!checkpoint_) {
    out->set_state(v1::CHECKPOINT_UNAVAILABLE);
    out->set_reason(config_.isolation == "process"
                        ? "isolation: process (tasks run unisolated, not in checkpointable sandboxes)"
                        : "checkpointing is not set up on this node");
    return;
  }
  const checkpoint::ProbeResult r = checkpoint_->Get();
  switch (r.state) {
    case checkpoint::CheckpointState::kProbing:
      out->set_state(v1::CHECKPOINT_PROBING);
      break;
    case checkpoint::CheckpointState::kAvailable:
      out->set_state(v1::CHECKPOINT_AVAILABLE);
      break;
    case checkpoint::CheckpointState::kUnavailable:
      out->set_state(v1::CHECKPOINT_UNAVAILABLE);
      out->set_reason(r.reason);
      break;
  }
  out->set_probe_dump_us(r.dump_took.count());
  out->set_probe_restore_us(r.restore_took.count());
}

std::vector<v1::TaskRef> Agent::TaskRefs() {
  std::vector<v1::TaskRef> refs;
  for (const auto& [key, task] : tasks_) {
    v1::TaskRef r;
    r.set_execution_id(task->id);
    r.set_attempt(task->attempt);
    r.set_finished(task->finished);
    refs.push_back(std::move(r));
  }
  return refs;
}

absl::Status Agent::Register() {
  v1::RegisterNodeRequest req;
  *req.mutable_node() = Describe();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : TaskRefs()) *req.add_tasks() = std::move(r);
  }
  v1::RegisterNodeResponse resp;
  auto ctx = Context();
  ManagerCall call = Manager();
  grpc::Status st = call.stub->RegisterNode(ctx.get(), req, &resp);
  if (!st.ok()) {
    ManagerFailed(call, st);
    return wire::FromGrpcStatus(st, "RegisterNode to " + call.address);
  }
  if (absl::Status fenced = AcceptManagerEpoch(resp.manager_epoch(), "a registration");
      !fenced.ok()) {
    ManagerFailed(call, Deposed(call.address, resp.manager_epoch()));
    return fenced;
  }
  std::lock_guard<std::mutex> lock(mu_);
  epoch_ = resp.epoch();
  migration_key_ = resp.migration_key();
  if (resp.heartbeat_interval_ms() > 0) {
    config_.heartbeat_interval = std::chrono::milliseconds(resp.heartbeat_interval_ms());
  }
  spdlog::info("agent {} registered with manager {} (node epoch {}, manager epoch {})",
               config_.node_id, call.address, epoch_, resp.manager_epoch());
  if (!config_.ready_file.empty()) {
    nlohmann::json j = {{"address", address_}, {"node_id", config_.node_id}, {"pid", getpid()}};
    std::ofstream(config_.ready_file + ".tmp") << j.dump() << "\n";
    rename((config_.ready_file + ".tmp").c_str(), config_.ready_file.c_str());
  }
  return absl::OkStatus();
}

Agent::ManagerCall Agent::Manager() {
  wire::Endpoints::Pick pick = managers_->Current();
  return ManagerCall{pick.index, std::move(pick.address),
                     v1::FederationService::NewStub(std::move(pick.channel))};
}

void Agent::ManagerFailed(const ManagerCall& call, const grpc::Status& st) {
  // The agent's calls are all safe to repeat, so a manager that answers
  // nothing before the deadline (paused, or cut off) counts as gone too.
  if (!wire::MovesToNextManager(st.error_code(), /*deadline_moves=*/true)) return;
  if (managers_->size() < 2) return;
  const size_t next = managers_->Failed(call.index);
  if (next != call.index) {
    spdlog::info("agent {}: manager {} does not answer as leader ({}); trying {}",
                 config_.node_id, call.address, st.error_message(),
                 managers_->addresses()[next]);
  }
}

absl::Status Agent::AcceptManagerEpoch(uint64_t epoch, const char* what) {
  uint64_t seen = manager_epoch_.load();
  while (epoch > seen) {
    if (manager_epoch_.compare_exchange_weak(seen, epoch)) return absl::OkStatus();
  }
  if (epoch < seen) {
    return absl::FailedPreconditionError(
        absl::StrCat("refused ", what, " from manager epoch ", epoch, ": a newer leader (epoch ",
                     seen, ") has taken over"));
  }
  return absl::OkStatus();
}

void Agent::ControlLoop() {
  bool warned = false;
  while (true) {
    uint64_t epoch;
    std::chrono::milliseconds interval;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      epoch = epoch_;
      interval = config_.heartbeat_interval;
    }
    absl::Status st;
    if (epoch == 0) {
      st = Register();
    } else {
      v1::ReportStatusRequest req;
      req.set_node_id(config_.node_id);
      req.set_epoch(epoch);
      {
        std::lock_guard<std::mutex> lock(mu_);
        wire::ToProto(capacity_ - reserved_, req.mutable_available());
        for (auto& r : TaskRefs()) *req.add_tasks() = std::move(r);
      }
      if (auto la = ReadLoadAverage("/proc"); la.ok()) req.set_load_average(*la);
      AddPoolStatus(req.mutable_pools());
      AddCheckpointStatus(req.mutable_checkpoint());
      AddMicroVmStatus(req.mutable_microvm());
      if (sampler_) AddUsage(&req);
      v1::ReportStatusResponse resp;
      auto ctx = Context();
      ManagerCall call = Manager();
      grpc::Status gst = call.stub->ReportStatus(ctx.get(), req, &resp);
      if (gst.ok() && !AcceptManagerEpoch(resp.manager_epoch(), "a status answer").ok()) {
        // A deposed leader that has not noticed yet: its word counts for
        // nothing (not even its cancels); look for the new one.
        gst = Deposed(call.address, resp.manager_epoch());
      }
      if (!gst.ok()) ManagerFailed(call, gst);
      if (gst.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
          gst.error_code() == grpc::StatusCode::NOT_FOUND) {
        spdlog::warn("agent {}: {}; registering again", config_.node_id, gst.error_message());
        std::lock_guard<std::mutex> lock(mu_);
        epoch_ = 0;
        continue;
      }
      st = wire::FromGrpcStatus(gst, "ReportStatus to " + call.address);
      if (gst.ok()) ApplyPoolTargets(resp);
      for (const auto& t : resp.cancel()) {
        spdlog::info("[{}] attempt {} is superseded: stopping it", t.execution_id(), t.attempt());
        CancelTask(t.execution_id(), t.attempt());
      }
    }
    if (!st.ok() && !warned) {
      spdlog::warn("agent {}: {} (retrying)", config_.node_id, st.message());
    }
    warned = !st.ok();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, st.ok() ? interval : std::min(interval, std::chrono::milliseconds(500)),
                 [&] { return stopping_; });
  }
}

void Agent::ResultsLoop() {
  auto backoff = std::chrono::milliseconds(50);
  auto pause = [&] {
    // Kept until the manager confirms: it may be restarting, or paused.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return stopping_; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
  };
  while (true) {
    v1::SendResultsRequest req;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !results_.empty(); });
      if (stopping_) return;
      req.set_node_id(config_.node_id);
      results_.NextBatch(&req);
    }
    v1::SendResultsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + ResultsRpcTimeout(req.ByteSizeLong()));
    ManagerCall call = Manager();
    grpc::Status st = call.stub->SendResults(&ctx, req, &resp);
    if (!st.ok()) {
      ManagerFailed(call, st);
      spdlog::debug("agent {}: SendResults to {}: {}", config_.node_id, call.address,
                    st.error_message());
      pause();
      continue;
    }
    ResultOutbox::Applied applied;
    {
      std::lock_guard<std::mutex> lock(mu_);
      applied = results_.Apply(req, resp);
      for (const auto& d : applied.done) {
        if (d.verdict == v1::RESULT_STALE) {
          spdlog::info("[{}] manager dropped the result of attempt {} as stale", d.execution_id,
                       d.attempt);
        }
        tasks_.erase(TaskKey(d.execution_id, d.attempt));
      }
      cv_.notify_all();
    }
    if (applied.back_off) {
      pause();
    } else {
      backoff = std::chrono::milliseconds(50);
    }
  }
}

void Agent::OutputLoop() {
  while (true) {
    v1::SendOutputRequest req;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, kOutputFlushPeriod, [&] { return stopping_; });
      if (stopping_) return;
      if (chunks_.empty() && started_.empty()) continue;
      req.set_node_id(config_.node_id);
      for (auto& c : chunks_) *req.add_chunks() = std::move(c);
      for (auto& s : started_) *req.add_started() = std::move(s);
      chunks_.clear();
      started_.clear();
      chunk_bytes_ = 0;
    }
    v1::SendOutputResponse resp;
    auto ctx = Context();
    ManagerCall call = Manager();
    // Best effort: the result carries it all.
    if (grpc::Status st = call.stub->SendOutput(ctx.get(), req, &resp); !st.ok()) {
      ManagerFailed(call, st);
    }
  }
}

void Agent::AddPoolStatus(google::protobuf::RepeatedPtrField<v1::PoolStatus>* out) {
  for (pool::WarmPool* p : pools_) {
    pool::PoolStats s = p->Stats();
    v1::PoolStatus* ps = out->Add();
    ps->set_template_name(s.template_name);
    ps->set_idle(s.idle);
    ps->set_busy(s.busy);
    ps->set_hits(s.hits);
    ps->set_misses(s.misses);
    ps->set_hit_rate(s.hit_rate());
    ps->set_warm_start_p50_us(s.warm_start_p50_us);
    ps->set_warm_start_p99_us(s.warm_start_p99_us);
    ps->set_cold_start_p50_us(s.cold_start_p50_us);
    ps->set_cold_start_p99_us(s.cold_start_p99_us);
  }
}

void Agent::AddUsage(v1::ReportStatusRequest* req) {
  const int64_t now = NowUnixMs();
  for (const auto& s : sampler_->Summaries()) {
    v1::TaskUsage* u = req->add_usage();
    u->set_execution_id(s.execution_id);
    u->set_attempt(s.attempt);
    u->set_cpu_cores(s.cpu_cores);
    u->set_memory_bytes(s.memory_bytes);
    u->set_memory_limit_bytes(s.memory_limit_bytes);
    u->set_memory_peak_bytes(s.memory_peak_bytes);
    u->set_pids(s.pids);
    u->set_risk(s.risk);
    u->set_samples(s.samples);
    u->set_io_read_bps(s.rates.io_read_bps);
    u->set_io_write_bps(s.rates.io_write_bps);
    u->set_net_rx_bps(s.rates.net_rx_bps);
    u->set_net_tx_bps(s.rates.net_tx_bps);
    u->set_sampled_unix_ms(now);
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = tasks_.find(s.key); it != tasks_.end()) {
      const Task& t = *it->second;
      u->set_needs_migration(t.needs_migration);
      u->set_pressure_reason(t.pressure_reason);
      u->set_resizes(t.resizes);
      u->set_last_resize_unix_ms(t.last_resize_unix_ms);
      u->set_last_resize(t.last_resize);
    }
  }
  monitor::HostSummary host = sampler_->Host();
  req->set_cpu_cores_used(host.cpu_cores_used);
  req->set_memory_available_bytes(host.memory_available_bytes);
}

void Agent::RefillLoop() {
  while (true) {
    for (pool::WarmPool* p : pools_) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      p->Refill();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; });
    if (stopping_) return;
  }
}

void Agent::ApplyPoolTargets(const v1::ReportStatusResponse& resp) {
  for (pool::WarmPool* p : pools_) {
    int target = 0;
    std::string reason;
    for (const auto& t : resp.pool_targets()) {
      if (t.template_name() == p->environment().name) {
        target = t.min_idle();
        reason = t.reason();
      }
    }
    // The pool keeps the larger of its own floor and this, below its max.
    if (target != p->Stats().idle && target > p->environment().pool_min) {
      spdlog::debug("agent {}: pool {} pre-warms {} idle: {}", config_.node_id,
                    p->environment().name, target, reason);
    }
    p->SetTargetIdle(target);
  }
}

void Agent::ResizeLoop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(config_.resize.interval_ms),
                   [&] { return stopping_; });
      if (stopping_) return;
    }
    if (sampler_) ResizeOnce();
  }
}

void Agent::ResizeOnce() {
  const monitor::ResizeOptions& o = config_.resize;
  monitor::RiskOptions risk;
  risk.seconds = o.horizon_s;
  const int64_t host_free = sampler_->Host().memory_available_bytes;
  for (const monitor::TaskSummary& s : sampler_->Summaries(risk)) {
    std::optional<monitor::UsageRing> ring = sampler_->RingOf(s.key);
    if (!ring || ring->empty()) continue;
    const monitor::UsageSample latest = *ring->Latest();
    // The ring's clock: steady milliseconds, as the samples are taken.
    const int64_t now_mono = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch())
                                 .count();
    monitor::ResizeInput in;
    in.now_ms = now_mono;
    in.ring = &*ring;
    in.risk = s.risk;
    in.memory_limit_bytes = s.memory_limit_bytes;
    in.cpu_limit_millis = latest.cpu_limit_millis;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = tasks_.find(s.key);
      if (it == tasks_.end() || it->second->finished) continue;
      Task& t = *it->second;
      if (t.memory_floor == 0) t.memory_floor = s.memory_limit_bytes;
      if (t.cpu_floor == 0) t.cpu_floor = latest.cpu_limit_millis;
      in.memory_floor_bytes = t.memory_floor;
      in.cpu_floor_millis = t.cpu_floor;
      in.last_change_ms = t.last_change_mono_ms;
      const model::Resources left = capacity_ - reserved_;
      in.room_memory_bytes = left.memory_bytes;
      // What the scheduler may still place is not all there is: the host
      // itself must have the memory, less a reserve for everything else.
      if (host_free > 0) {
        in.room_memory_bytes =
            std::min(in.room_memory_bytes, host_free - o.host_reserve_bytes);
      }
      in.room_cpu_millis = left.cpu_millis;
    }
    in.memory_upper_bytes = monitor::MemoryUpperBound(*ring, o.horizon_s, o.level);
    const monitor::ResizeDecision d = monitor::DecideResize(in, o);

    model::Resources change;
    if (d.memory_limit_bytes != in.memory_limit_bytes) change.memory_bytes = d.memory_limit_bytes;
    if (d.cpu_limit_millis != in.cpu_limit_millis) change.cpu_millis = d.cpu_limit_millis;
    absl::Status applied = absl::OkStatus();
    const bool resize = change.memory_bytes > 0 || change.cpu_millis > 0;
    if (resize) applied = sandbox_->Resize(s.key, change);

    std::lock_guard<std::mutex> lock(mu_);
    auto it = tasks_.find(s.key);
    if (it == tasks_.end() || it->second->finished) continue;
    Task& t = *it->second;
    if (resize && applied.ok()) {
      model::Resources delta;
      if (change.memory_bytes > 0) delta.memory_bytes = change.memory_bytes - in.memory_limit_bytes;
      if (change.cpu_millis > 0) delta.cpu_millis = change.cpu_millis - in.cpu_limit_millis;
      t.resize_delta += delta;
      reserved_ += delta;
      ++t.resizes;
      t.last_resize_unix_ms = NowUnixMs();
      t.last_change_mono_ms = now_mono;
      t.last_resize = d.reason;
      spdlog::info("[{}] attempt {} on {}: resized in place: {}", t.id, t.attempt,
                   config_.node_id, d.reason);
    } else if (resize) {
      spdlog::warn("[{}] attempt {} on {}: resize failed ({}): {}", t.id, t.attempt,
                   config_.node_id, d.reason, applied.message());
    }
    if (d.needs_migration && !t.needs_migration) {
      spdlog::warn("[{}] attempt {} on {}: {}", t.id, t.attempt, config_.node_id, d.reason);
    }
    t.needs_migration = d.needs_migration;
    t.pressure_reason = s.risk >= o.raise_risk ? d.reason : std::string();
    if (t.pressure_reason.empty() && s.risk >= o.raise_risk) {
      t.pressure_reason = absl::StrFormat("risk %.2f >= %.2f (cooling down)", s.risk, o.raise_risk);
    }
  }
}

absl::Status Agent::RequestTask(const v1::RequestTaskRequest& req) {
  const auto& r = req.request();
  if (req.execution_id().empty() || req.attempt() == 0) {
    return absl::InvalidArgumentError("RequestTask needs an execution id and an attempt >= 1");
  }
  RETURN_IF_ERROR(AcceptManagerEpoch(req.manager_epoch(), "a task"));
  const auto& code = r.code();
  if (code.argv_size() == 0 && code.source().empty()) {
    return absl::InvalidArgumentError("the request has no code to run");
  }
  if (!code.source().empty() && code.runtime() != "shell" && code.runtime() != "python3") {
    return absl::InvalidArgumentError(
        absl::StrCat("runtime '", code.runtime(), "' is not available on node ", config_.node_id));
  }
  // Security enforcement: what the request relaxes, the node must grant.
  for (const auto& cap : r.security().required_capabilities()) {
    // "isolation:KIND" is a requirement on the sandbox, not a grant: this
    // node meets it when its sandboxes are of that kind (as the
    // scheduler's isolation filter decided).
    if (cap.rfind("isolation:", 0) == 0) {
      if (cap.substr(10) == sandbox_->kind()) continue;
      return absl::FailedPreconditionError(
          absl::StrCat("node ", config_.node_id, " runs '", std::string(sandbox_->kind()),
                       "' sandboxes, not the '", cap.substr(10), "' the request needs"));
    }
    if (std::find(config_.capabilities.begin(), config_.capabilities.end(), cap) ==
        config_.capabilities.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", config_.node_id, " does not grant capability '", cap, "' that the request needs"));
    }
  }
  if (r.security().min_trust_level() > config_.trust_level) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node ", config_.node_id, " has trust level ", config_.trust_level, ", the request needs ",
        r.security().min_trust_level()));
  }
  auto task = std::make_shared<Task>();
  task->id = req.execution_id();
  task->attempt = req.attempt();
  task->resources = wire::FromProto(r.resources());
  task->request = r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return absl::UnavailableError("the agent is shutting down");
    const std::string key = TaskKey(task->id, task->attempt);
    if (tasks_.count(key)) return absl::OkStatus();  // a retried dispatch: already running
    tasks_[key] = task;
    reserved_ += task->resources;
    ++running_threads_;
    v1::TaskRef ref;
    ref.set_execution_id(task->id);
    ref.set_attempt(task->attempt);
    started_.push_back(std::move(ref));
  }
  SpawnWorker([this, task, request = r]() mutable { RunTask(task, std::move(request)); });
  return absl::OkStatus();
}

void Agent::SpawnWorker(std::function<void()> fn) {
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::list<Worker> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Take the threads that have ended (their last act was setting `done`).
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (it->done->load()) {
        finished.splice(finished.end(), workers_, it++);
      } else {
        ++it;
      }
    }
    workers_.push_back({std::thread([fn = std::move(fn), done]() mutable {
                          fn();
                          fn = nullptr;  // its captures go before `done` says so
                          done->store(true);
                        }),
                        done});
  }
  for (auto& w : finished) w.thread.join();
}

bool Agent::CancelTask(const std::string& execution_id, uint32_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  bool found = false;
  for (auto& [key, task] : tasks_) {
    if (task->id == execution_id && (attempt == 0 || task->attempt == attempt) && !task->finished) {
      // A copy held by a migration is ended or resumed by its verdict.
      if (task->held) {
        found = true;
        continue;
      }
      task->cancel.Cancel();
      found = true;
    }
  }
  return found;
}

void Agent::RunTask(std::shared_ptr<Task> task, v1::ExecutionRequest request) {
  sandbox::TaskSpec spec = SpecFor(*task, request);
  const int64_t started = NowUnixMs();
  Sink sink(this, *task);
  if (sampler_) sampler_->Track(spec.id, task->id, task->attempt, task->resources.memory_bytes);
  spdlog::debug("[{}] handing the task to the sandbox", spec.id);
  absl::StatusOr<sandbox::TaskOutcome> outcome = sandbox_->Run(spec, sink, task->cancel);
  spdlog::debug("[{}] the sandbox returned: {}", spec.id,
                outcome.ok() ? "an outcome" : outcome.status().ToString());
  if (sampler_) sampler_->Untrack(spec.id);
  FinishTask(task, started, std::move(outcome));
}

sandbox::TaskSpec Agent::SpecFor(const Task& t, const v1::ExecutionRequest& request) const {
  const Task* task = &t;
  sandbox::TaskSpec spec;
  spec.id = TaskKey(task->id, task->attempt);
  const auto& code = request.code();
  if (code.argv_size() > 0) {
    spec.argv.assign(code.argv().begin(), code.argv().end());
  } else if (code.runtime() == "python3") {
    spec.files.push_back({"main.py", code.source(), 0644});
    spec.argv = {"python3", "main.py"};
  } else {
    spec.files.push_back({"main.sh", code.source(), 0755});
    spec.argv = {"/bin/sh", "main.sh"};
  }
  for (const auto& f : request.dependencies().files()) {
    spec.files.push_back({f.path(), f.content(), f.mode() == 0 ? 0644u : f.mode()});
  }
  spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"},
              {"LANG", "C.UTF-8"},
              {"HOME", "/tmp"}};
  for (const auto& [k, v] : request.env()) spec.env[k] = v;
  spec.env["FLOTILLA_EXECUTION_ID"] = task->id;
  spec.env["FLOTILLA_ATTEMPT"] = std::to_string(task->attempt);
  spec.env["FLOTILLA_NODE_ID"] = config_.node_id;
  spec.stdin_data = request.stdin();
  spec.timeout = std::chrono::milliseconds(request.timeout_ms() > 0 ? request.timeout_ms() : 60000);
  spec.output_limit_bytes = config_.output_limit_bytes;
  spec.limits = task->resources;
  spec.tenant = request.user_id();
  spec.function = request.function().empty() ? request.name() : request.function();
  spec.python = code.argv_size() == 0 && code.runtime() == "python3";
  spec.template_name = request.template_name();
  if (spec.template_name.empty() && spec.python) spec.template_name = "python";
  for (const auto& cap : request.security().required_capabilities()) {
    if (cap == "network-egress") spec.network_egress = true;
  }
  return spec;
}

void Agent::FinishTask(const std::shared_ptr<Task>& task, int64_t started_unix_ms,
                       absl::StatusOr<sandbox::TaskOutcome> outcome) {
  const std::string key = TaskKey(task->id, task->attempt);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (task->migrated) {
      // A restored copy on another node carries the execution on; the
      // manager already assigns it there and would drop this result.
      spdlog::info("[{}] attempt {} moved to {}; the copy on {} is gone", task->id, task->attempt,
                   task->moved_to, config_.node_id);
      tasks_.erase(key);
      reserved_ -= task->resources;
      reserved_ -= task->resize_delta;
      --running_threads_;
      cv_.notify_all();
      return;
    }
  }
  v1::ExecutionResult result;
  result.set_execution_id(task->id);
  result.set_attempt(task->attempt);
  result.set_node_id(config_.node_id);
  result.set_started_unix_ms(started_unix_ms);
  result.set_finished_unix_ms(NowUnixMs());
  if (!outcome.ok()) {
    result.set_termination(v1::TERMINATION_START_FAILED);
    result.set_exit_code(outcome.status().code() == absl::StatusCode::kNotFound ? 127 : 126);
    result.set_error(std::string(outcome.status().message()));
    spdlog::info("[{}] could not start: {}", key, outcome.status().message());
  } else {
    switch (outcome->termination) {
      case sandbox::Termination::kExited: result.set_termination(v1::TERMINATION_EXITED); break;
      case sandbox::Termination::kSignaled: result.set_termination(v1::TERMINATION_SIGNALED); break;
      case sandbox::Termination::kTimedOut: result.set_termination(v1::TERMINATION_TIMED_OUT); break;
      case sandbox::Termination::kCancelled: result.set_termination(v1::TERMINATION_CANCELLED); break;
    }
    result.set_exit_code(outcome->exit_code);
    result.set_signal(outcome->signal);
    result.set_stdout(std::move(outcome->stdout_data));
    result.set_stderr(std::move(outcome->stderr_data));
    result.set_stdout_truncated(outcome->stdout_truncated);
    result.set_stderr_truncated(outcome->stderr_truncated);
    result.set_wall_time_us(outcome->wall_time_us);
    result.set_cpu_time_us(outcome->cpu_time_us);
    result.set_peak_memory_bytes(outcome->peak_memory_bytes);
  }
  std::lock_guard<std::mutex> lock(mu_);
  task->finished = true;
  reserved_ -= task->resources;
  reserved_ -= task->resize_delta;
  results_.Add(std::move(result));
  --running_threads_;
  cv_.notify_all();
}

namespace {
std::string SelfDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}
}  // namespace

absl::Status RunAgent(const AgentConfig& input) {
  AgentConfig config = input;
  if (config.node_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    config.node_id = host;
  }
  RETURN_IF_ERROR(Validate(config));
  if (config.work_dir.empty()) {
    const char* tmp = getenv("TMPDIR");
    config.work_dir = absl::StrCat(tmp && *tmp ? tmp : "/tmp", "/flotilla-", config.node_id);
  }
  if (mkdir(config.work_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, "mkdir", config.work_dir);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // The sandbox: Linux containers from warm pools by default; unisolated
  // child processes only on a node marked as a trusted development node.
  std::unique_ptr<sandbox::Sandbox> sb;
  std::optional<sandbox::HostLayout> sandbox_root;
  std::unique_ptr<checkpoint::Checkpointer> checkpointer;  // outlives the factory
  std::shared_ptr<checkpoint::Availability> availability;
  std::unique_ptr<checkpoint::BackgroundProbe> probe;  // joined before the agent goes
  std::unique_ptr<pool::InstanceFactory> factory;
  std::unique_ptr<pool::MicroVmInstanceFactory> vm_factory;  // outlives the pools
  std::string microvm_unavailable = "no template of this node asks for micro-VMs";
  std::vector<std::unique_ptr<pool::WarmPool>> pools;
  std::vector<pool::WarmPool*> pool_ptrs;
  if (config.isolation == "process") {
    spdlog::warn("agent {}: isolation: process — tasks run UNISOLATED on this host "
                 "(trusted development node)", config.node_id);
    sb = sandbox::NewProcessSandbox({.work_root = config.work_dir});
  } else {
    availability = std::make_shared<checkpoint::Availability>();
    const std::string self_dir = SelfDir();
    std::string templates_dir = config.templates_dir;
    if (templates_dir.empty()) templates_dir = FLOTILLA_DEFAULT_TEMPLATES_DIR;
    ASSIGN_OR_RETURN(std::vector<pool::EnvironmentTemplate> templates,
                     pool::LoadTemplates(templates_dir));
    if (templates.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("no environment templates in `", templates_dir, "`"));
    }
    pool::LinuxInstanceOptions lo;
    lo.guest_binary = config.guest_binary.empty() ? self_dir + "/flotilla-guest" : config.guest_binary;
    const std::string key = pool::SandboxRootKey(config.node_id);
    lo.layout.runtime_dir = absl::StrCat("/run/flotilla/", key);
    lo.layout.cgroup_parent = absl::StrCat("flotilla/", key);
    if (auto detected = sandbox::DetectHostLayout(lo.layout); detected.ok()) {
      pool::CleanStaleSandboxRoots(*detected, "/run/flotilla", "flotilla");
      sandbox_root = *detected;
    }
    lo.uid = static_cast<uid_t>(config.sandbox_uid);
    // Checkpointing is proven in the background by a real dump and restore
    // (checkpoint/probe.h): `criu check` passing is not enough on every
    // host, and a hung probe must not delay registration. Until it ends,
    // and if it fails, checkpoints and migrations are refused with the
    // probe's state and reason; tasks run as usual either way.
    checkpoint::CriuOptions co;
    co.criu_path = config.checkpoint.criu_path;
    co.state_dir = config.work_dir + "/criu";
    co.deadlines.floor = config.checkpoint.timeout_floor;
    co.deadlines.cap = config.checkpoint.timeout_cap;
    checkpointer = checkpoint::NewGatedCheckpointer(
        [co](const checkpoint::ProbeResult& proven) {
          checkpoint::CriuOptions with = co;
          with.no_breakpoints = proven.no_breakpoints;
          return checkpoint::NewCriuCheckpointer(with);
        },
        availability, config.node_id);
    lo.checkpointer = checkpointer.get();
    checkpoint::ProbeOptions po;
    po.criu_path = config.checkpoint.criu_path;
    po.work_dir = config.work_dir + "/criu-probe";
    po.dump_deadline = config.checkpoint.probe_timeout;
    po.restore_deadline = config.checkpoint.probe_timeout;
    probe = std::make_unique<checkpoint::BackgroundProbe>(po, availability);
    ASSIGN_OR_RETURN(factory, pool::NewLinuxInstanceFactory(lo));
    // Micro-VMs: for every template on a microvm node, for the templates
    // that ask on a linux node. The accelerator is decided here, once, by
    // a probe boot (KVM where a stock kernel boots under it, else TCG).
    const bool all_vms = config.isolation == "microvm";
    bool want_vms = all_vms;
    for (const auto& t : templates) want_vms = want_vms || t.isolation == pool::Isolation::kMicroVm;
    if (want_vms) {
      pool::MicroVmInstanceOptions vo;
      vo.kernel = config.vm_kernel;
      vo.initrd = config.vm_initrd.empty() ? self_dir + "/guest-initramfs.cpio" : config.vm_initrd;
      if (config.vm_rootfs.empty()) {
        const std::string beside = self_dir + "/guest-rootfs.img";
        if (access(beside.c_str(), R_OK) == 0) vo.rootfs = beside;
      } else if (config.vm_rootfs != "none") {
        vo.rootfs = config.vm_rootfs;
      }
      vo.warm_up = pool::MicroVmInstanceOptions::WarmUp::kPython;  // pool refills only
      vo.run_root = absl::StrCat("/run/flotilla/vm.", key);
      vo.jail = config.vm_jail == "off" ? pool::MicroVmInstanceOptions::Jail::kOff
                                        : pool::MicroVmInstanceOptions::Jail::kRequired;
      auto made = pool::NewMicroVmInstanceFactory(vo);
      if (made.ok()) {
        vm_factory = std::move(*made);
      } else if (all_vms) {
        return Annotate(made.status(), "isolation: microvm");
      } else {
        microvm_unavailable = std::string(made.status().message());
        spdlog::warn("agent {}: micro-VMs unavailable ({}); templates with isolation: microvm "
                     "are not served", config.node_id, microvm_unavailable);
      }
    }
    bool has_default = false;
    for (auto& t : templates) {
      if (all_vms) t.isolation = pool::Isolation::kMicroVm;
      pool::InstanceFactory* f = factory.get();
      if (t.isolation == pool::Isolation::kMicroVm) {
        if (!vm_factory) continue;
        f = vm_factory.get();
      }
      has_default = has_default || t.name == config.default_template;
      pools.push_back(std::make_unique<pool::WarmPool>(std::move(t), f));
      pool_ptrs.push_back(pools.back().get());
    }
    if (!has_default) {
      return absl::InvalidArgumentError(absl::StrCat(
          "default_template: no template named '", config.default_template, "' in ", templates_dir));
    }
    sb = std::make_unique<pool::PooledSandbox>(pool_ptrs, config.default_template,
                                               all_vms ? "microvm" : "linux");
  }
  Agent agent(config, std::move(sb));
  agent.SetPools(pool_ptrs);
  agent.SetCheckpointAvailability(availability);
  agent.SetMicroVm(vm_factory.get(), microvm_unavailable);
  RETURN_IF_ERROR(agent.Start());
  int sig = 0;
  sigwait(&set, &sig);
  spdlog::info("agent {}: signal {}, shutting down", config.node_id, sig);
  agent.Stop();
  probe.reset();  // cancels a probe still running
  sb.reset();
  for (auto& p : pools) p->Drain();
  pools.clear();
  if (sandbox_root) pool::RemoveSandboxRoot(*sandbox_root);
  return absl::OkStatus();
}

}  // namespace flotilla::agent
