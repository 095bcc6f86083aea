// Agent: one per host. Registers the host with the manager (address, real
// resources, labels, security profile, data sets), reports status every
// heartbeat, runs each task it is sent in a Sandbox on a thread of its own,
// streams live output, and sends each result until the manager confirms it.
//
// The agent holds no durable state: a result it could not deliver before it
// died is re-run elsewhere (the manager re-queues the attempt).
// Thread-safe: the gRPC handlers and its three loops share one mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "agent/config.h"
#include "auth/migration_token.h"
#include "auth/tls.h"
#include "agent/result_outbox.h"
#include "checkpoint/probe.h"
#include "flotilla/v1/federation.grpc.pb.h"
#include "monitor/sampler.h"
#include "pool/microvm_instance.h"
#include "pool/warm_pool.h"
#include "sandbox/sandbox.h"
#include "wire/endpoints.h"

namespace grpc {
class Server;
}

namespace flotilla::agent {

namespace v1 = ::flotilla::v1;

class Agent {
 public:
  Agent(AgentConfig config, std::unique_ptr<sandbox::Sandbox> sandbox);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Detects resources, starts serving AgentService and starts the loops
  // (registration is retried until the manager answers).
  absl::Status Start();
  // Cancels running tasks, gives their results a moment to reach the
  // manager, and stops serving. Idempotent.
  void Stop();

  // Warm pools behind the sandbox (none for unisolated nodes): the agent
  // refills them in the background and reports their status. Call before
  // Start; the pools must outlive the agent.
  void SetPools(std::vector<pool::WarmPool*> pools) { pools_ = std::move(pools); }
  // Whether this node can checkpoint (its probe's outcome, filled in the
  // background): reported at registration and in every ReportStatus. Call
  // before Start; unset, the node reports "unavailable".
  void SetCheckpointAvailability(std::shared_ptr<const checkpoint::Availability> a) {
    checkpoint_ = std::move(a);
  }

  // The node's micro-VM factory (null: none, and `unavailable` says why):
  // reported at registration and in every ReportStatus. Call before Start;
  // the factory must outlive the agent.
  void SetMicroVm(const pool::MicroVmInstanceFactory* factory, std::string unavailable) {
    microvm_ = factory;
    microvm_unavailable_ = std::move(unavailable);
  }

  const std::string& address() const { return address_; }
  const std::string& node_id() const { return config_.node_id; }

  // Fencing: every request from a manager carries its epoch (its term as
  // leader). One older than the newest this agent has seen comes from a
  // deposed leader and is refused with FAILED_PRECONDITION; a newer one
  // becomes the newest. `what` names the request for the message.
  absl::Status AcceptManagerEpoch(uint64_t epoch, const char* what);

  // AgentService.
  absl::Status RequestTask(const v1::RequestTaskRequest& request);
  bool CancelTask(const std::string& execution_id, uint32_t attempt);
  // Migration (agent_migration.cc; see federation.proto for the protocol).
  absl::StatusOr<v1::MigrateTaskResponse> MigrateTask(const v1::MigrateTaskRequest& request);
  // `source`: the node the stream comes from (its certificate); "" when
  // security is off.
  absl::StatusOr<v1::RestoreTaskResponse> RestoreTask(
      const std::function<bool(v1::RestoreTaskChunk*)>& next, const std::string& source);
  // The stream's header must carry the manager's token for exactly this
  // migration, from `source` to this node, unexpired and unused.
  absl::Status CheckMigrationToken(const v1::RestoreTaskHeader& h, const std::string& source);
  absl::Status FinishMigration(const v1::FinishMigrationRequest& request);
  absl::StatusOr<v1::CheckpointTaskResponse> CheckpointTask(const v1::CheckpointTaskRequest& request);

 private:
  struct Task;
  class Sink;

  struct Incoming;
  void RunTask(std::shared_ptr<Task> task, v1::ExecutionRequest request);
  sandbox::TaskSpec SpecFor(const Task& task, const v1::ExecutionRequest& request) const;
  // Turns an outcome into the task's result and queues it; a task that moved
  // away (migrated) leaves without one.
  void FinishTask(const std::shared_ptr<Task>& task, int64_t started_unix_ms,
                  absl::StatusOr<sandbox::TaskOutcome> outcome);
  void RunRestoredTask(std::shared_ptr<Task> task, std::shared_ptr<Incoming> incoming,
                       sandbox::TaskSpec spec, sandbox::TaskCheckpoint from);
  std::string ImageRoot() const;
  absl::Status Register();
  void ControlLoop();
  void ResultsLoop();
  void OutputLoop();
  void RefillLoop();
  // Adaptive allocation: every resize.interval_ms, runs monitor::DecideResize
  // for each running task and applies its decision in place.
  void ResizeLoop();
  void ResizeOnce();
  // Pre-warming: the manager's pool targets become the pools' idle floors.
  void ApplyPoolTargets(const v1::ReportStatusResponse& resp);
  void AddUsage(v1::ReportStatusRequest* req);
  void AddPoolStatus(google::protobuf::RepeatedPtrField<v1::PoolStatus>* out);
  void AddMicroVmStatus(v1::MicroVmStatus* out) const;
  std::vector<v1::TaskRef> TaskRefs();
  v1::HypervisorNode Describe();

  AgentConfig config_;
  const pool::MicroVmInstanceFactory* microvm_ = nullptr;
  std::string microvm_unavailable_ = "micro-VMs are not configured on this node";
  std::unique_ptr<sandbox::Sandbox> sandbox_;
  model::Resources capacity_;
  std::string address_;
  // The managers' addresses (one, or the replicas of an HA federation); calls
  // go to the current one and move on when it does not lead.
  std::unique_ptr<wire::Endpoints> managers_;
  struct ManagerCall {
    size_t index;
    std::string address;
    std::unique_ptr<v1::FederationService::Stub> stub;
  };
  ManagerCall Manager();
  // After a call through `call` failed with `st`: moves to the next manager
  // when the failure says this one does not lead (or is paused).
  void ManagerFailed(const ManagerCall& call, const grpc::Status& st);
  std::atomic<uint64_t> manager_epoch_{0};  // the newest seen; see AcceptManagerEpoch
  auth::ChannelSecurity peer_credentials_;  // to the manager and migration targets
  std::string migration_key_;               // from the last registration; under mu_
  auth::UsedTokens used_tokens_;            // migration tokens already spent here
  std::unique_ptr<v1::AgentService::Service> service_;
  std::unique_ptr<grpc::Server> server_;

  // Starts `fn` on a thread the agent owns and joins (see workers_).
  // Call without mu_.
  void SpawnWorker(std::function<void()> fn);

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                  // guarded by mu_
  uint64_t epoch_ = 0;                                     // guarded by mu_; 0: not registered
  std::map<std::string, std::shared_ptr<Task>> tasks_;     // by "<id>/<attempt>", guarded by mu_
  ResultOutbox results_;                                   // unconfirmed, guarded by mu_
  std::vector<v1::OutputChunk> chunks_;                    // guarded by mu_
  size_t chunk_bytes_ = 0;                                 // guarded by mu_
  std::vector<v1::TaskRef> started_;                       // guarded by mu_
  int running_threads_ = 0;                                // guarded by mu_
  // Threads the agent started for tasks and migrations: it joins them (the
  // finished ones whenever it starts another, the rest in Stop), so none
  // outlives the agent. Guarded by mu_.
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers_;
  model::Resources reserved_;                              // guarded by mu_
  // Migration: restored copies waiting for the manager's switch (target),
  // and held sources waiting for its verdict, by migration id; guarded by mu_.
  std::map<std::string, std::shared_ptr<Incoming>> incoming_;
  struct Outgoing {
    std::string key;  // TaskKey of the held task
    bool decided = false;
  };
  std::map<std::string, Outgoing> outgoing_;

  std::vector<pool::WarmPool*> pools_;
  std::shared_ptr<const checkpoint::Availability> checkpoint_;
  void AddCheckpointStatus(v1::CheckpointStatus* out) const;
  std::vector<std::thread> loops_;
  // Samples every running task's sandbox (sandbox_->Sample) and the host at
  // 10 Hz; summarised in every ReportStatus.
  std::unique_ptr<monitor::Sampler> sampler_;
};

// Runs `flotilla agent` until SIGTERM or SIGINT.
absl::Status RunAgent(const AgentConfig& config);

}  // namespace flotilla::agent
