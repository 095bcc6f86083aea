// Manager: the federation's control logic — node registry with leases, the
// queue of pending executions, placement through NodeSelection, dispatch to
// agents, results, and durability through the Store.
//
// State machine of an execution:
//   queued -> assigned (attempt n on node N, persisted before it is sent)
//          -> running (the node reported it)
//          -> succeeded | failed | timed_out | cancelled
// A lost node, a failed dispatch or a task the node never received sends it
// back to queued; the next dispatch uses attempt n+1, and results carrying an
// older attempt, or a node other than the current one, are rejected.
//
// Persistence is off the lock: a change is made in memory under mu_ and
// staged as a WriteBatch, which the Writer (manager/writer.h) commits with
// group commit on its own thread. Batches are enqueued under mu_, so the
// store sees one execution's changes in the order they happened; no SQLite
// call and no RPC runs under mu_. Every acknowledgement — a submit's reply,
// a result's ACCEPTED verdict, a cancel's reply, a task sent to an agent —
// waits for its batch to be durable. A batch that fails is never
// acknowledged: the caller gets UNAVAILABLE and retries; a result whose
// write failed stays in memory until a retry of it is recorded.
//
// Thread-safe: gRPC handlers, the dispatcher and the lease checker call in
// concurrently; one mutex guards the in-memory state.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flotilla/v1/api.pb.h"
#include "flotilla/v1/federation.pb.h"
#include "manager/agent_client.h"
#include "manager/config.h"
#include "manager/tenant_limits.h"
#include "manager/metrics.h"
#include "manager/node_registry.h"
#include "manager/prewarmer.h"
#include "manager/watch_hub.h"
#include "manager/writer.h"
#include "common/clock.h"
#include <deque>
#include <random>

#include "scheduler/latency_model.h"
#include "scheduler/load_balancer.h"
#include "scheduler/node_selection.h"
#include "scheduler/pending_queue.h"
#include "store/store.h"

namespace flotilla::manager {

namespace v1 = ::flotilla::v1;

class Migrator;

class Manager {
 public:
  // `clock` (not owned) must outlive the manager; tests pass a FakeClock.
  Manager(ManagerConfig config, std::unique_ptr<store::Store> store,
          std::unique_ptr<AgentClientFactory> agents, Clock* clock = Clock::Real());
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Loads nodes and unfinished executions from the store. Call once, before Start.
  absl::Status Recover();
  // Starts the dispatcher and the lease checker threads.
  void Start();
  // Stops the threads and wakes every watcher. Idempotent.
  void Stop();

  // --- ApiService ---
  absl::StatusOr<v1::SubmitResponse> Submit(v1::ExecutionRequest request);
  absl::StatusOr<v1::Execution> Get(const std::string& id);
  absl::StatusOr<v1::Execution> Cancel(const std::string& id);
  std::vector<v1::HypervisorNode> ListNodes();
  // At most kMaxListPage executions (a larger limit is refused), of
  // req.tenant() when set.
  static constexpr int kMaxListPage = 1000;
  absl::StatusOr<std::vector<v1::Execution>> ListExecutions(const v1::ListExecutionsRequest& req);
  // Streams the events of `id` to `sink`: what it should see now at once,
  // then each change, until the execution ends (the last Push carries OK).
  // `sink` is pushed to with the manager's lock held (see WatchSink). Call
  // Unsubscribe before destroying a sink whose stream has not ended.
  // NotFound for an unknown id; ResourceExhausted past the stream bounds.
  absl::Status Subscribe(const std::string& id, bool with_output, WatchSink* sink);
  void Unsubscribe(const std::string& id, WatchSink* sink);
  // Blocking form of Subscribe: streams events for `id` through `send` until
  // the execution ends, `send` returns false, or `cancelled` returns true.
  absl::Status Watch(const std::string& id, bool with_output,
                     const std::function<bool(const v1::WatchEvent&)>& send,
                     const std::function<bool()>& cancelled);

  // --- FederationService ---
  absl::StatusOr<v1::RegisterNodeResponse> RegisterNode(const v1::RegisterNodeRequest& req);
  absl::StatusOr<v1::ReportStatusResponse> ReportStatus(const v1::ReportStatusRequest& req);
  absl::StatusOr<v1::SendResultsResponse> SendResults(const v1::SendResultsRequest& req);
  void SendOutput(const v1::SendOutputRequest& req);

  // Called with the manager's lock held whenever an execution reaches a
  // terminal state; it must only note the id (e.g. queue it) and never call
  // back into the Manager. Set once, before Start.
  void SetFinishListener(std::function<void(const std::string& execution_id)> listener);

  // Values a node produced and still has (workflow outputs): the locality
  // scorer sees them as data sets of that node, so a piece that reads them
  // prefers it. Forgotten by key prefix when the workflow ends.
  void AddNodeData(const std::string& node_id, const std::string& key, int64_t bytes);
  void ForgetNodeData(const std::string& key_prefix);

  // Online nodes that could take work now.
  int OnlineNodeCount();

  std::string RenderMetrics();
  const ManagerConfig& config() const { return config_; }
  AgentClientFactory* agent_clients() const { return agents_.get(); }

  // --- Migration (manager/migration.cc drives it) ---
  // ApiService.Checkpoint / Migrate.
  absl::StatusOr<v1::CheckpointResponse> Checkpoint(const std::string& id);
  absl::StatusOr<v1::MigrateResponse> Migrate(const v1::MigrateRequest& request);
  // A token for one image stream to claims.target_node_id(), valid for `ttl`
  // (auth/migration_token.h); FailedPrecondition if the target is unknown.
  absl::StatusOr<std::string> MintMigrationToken(v1::MigrationClaims claims,
                                                 std::chrono::milliseconds ttl);
  // A running execution as a migration sees it.
  struct RunningView {
    std::string execution_id;
    uint32_t attempt = 0;
    std::string node_id;
    std::string node_address;
    v1::ExecutionRequest request;
    std::optional<v1::TaskUsage> usage;
    int64_t running_ms = 0;  // since it started
  };
  // FailedPrecondition unless `id` is running on a node.
  absl::StatusOr<RunningView> RunningExecution(const std::string& id);
  // Running executions whose node reported needs_migration.
  std::vector<RunningView> NeedingMigration();
  // The switch of a migration: atomically makes `to` the node of attempt
  // `attempt` of `id` (now on `from`) — same execution and attempt, watchers
  // carry on and see the new node, results and output from `from` are stale
  // from here on. FailedPrecondition when the execution is no longer that
  // attempt on `from` (it ended, was cancelled or re-queued meanwhile).
  absl::Status MoveAssignment(const std::string& id, uint32_t attempt, const std::string& from,
                              const std::string& to);

  // Runs one dispatch round, one lease and attempt-deadline check, or one
  // retention pass now (tests drive time this way).
  void DispatchOnceForTest();
  void CheckLeasesForTest();
  // Returns how many finished executions the pass deleted.
  absl::StatusOr<int> RunRetentionForTest();

 private:
  struct Live;

  absl::Status ValidateAndDefault(v1::ExecutionRequest* request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<model::HypervisorNode> NodeViews() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Execution ToExecution(const Live& live) const;
  // Reads a finished execution from the store. Called without mu_.
  absl::StatusOr<v1::Execution> LoadFinished(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);

  // Staging: appends the ops that make the store match memory to `w`.
  void StageExecution(Live& live, WriteBatch* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StageNode(const NodeState& node, WriteBatch* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The ops that record `live`'s end (result, attempt, row).
  void StageFinish(Live& live, WriteBatch* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Enqueues `w` for the writer (in order, under mu_). Failures of writes
  // nobody waits for are logged and counted, never dropped silently.
  std::shared_ptr<Writer::Ticket> Commit(WriteBatch w, Writer::Done done = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // As Commit, for a caller that will Wait() on the ticket (and so commit it
  // itself when no commit is in progress: no hand-off to the writer thread).
  std::shared_ptr<Writer::Ticket> CommitAwaited(WriteBatch w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Writer::Ticket> Enqueue(WriteBatch w, Writer::Done done, bool awaited)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes watchers of `live` with what is new to them.
  void Changed(Live& live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Detaches `live` from its node and puts it back in the queue (or ends it
  // as cancelled when a cancel was asked). `outcome` labels the closed attempt.
  void Requeue(Live& live, const std::string& outcome, const std::string& why, WriteBatch* w)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a terminal state in memory, releases the node's reservation and
  // stages the end into `w`. Watchers, the finish listener and the removal
  // from live_ wait for the batch: Commit() runs AfterFinishCommitted for
  // every execution ended since the last Commit.
  void Finish(Live& live, model::ExecutionState state, const v1::ExecutionResult* result,
              const std::string& error, WriteBatch* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterFinishCommitted(const std::string& id, const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(Live& live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts a placed execution toward its tenant's CPU and memory quotas
  // (Release gives it back).
  void HoldQuota(Live& live) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnDispatchDone(const std::string& id, uint32_t attempt, absl::Status status);
  void DispatchRound();
  // Evicts lower-priority work so `live` fits; returns the evicted ids.
  std::vector<std::string> Preempt(Live& live, std::vector<model::HypervisorNode>& views,
                                   WriteBatch* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckLeases();
  // Running attempts past their timeout + attempt_grace: cancelled on their
  // node and re-queued, or failed after max_attempts.
  void CheckAttemptDeadlines(WriteBatch* w, std::vector<std::pair<AgentEndpoint, v1::CancelTaskRequest>>* cancels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int> RunRetention();
  void DispatcherLoop();
  void LeaseLoop();
  int64_t MonoMs() const;

  const ManagerConfig config_;
  Clock* const clock_;
  const std::unique_ptr<store::Store> store_;
  Writer writer_;
  const std::unique_ptr<AgentClientFactory> agents_;
  Metrics metrics_;

  absl::Mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<Live>> live_ ABSL_GUARDED_BY(mu_);
  NodeRegistry nodes_ ABSL_GUARDED_BY(mu_);
  scheduler::PendingQueue queue_ ABSL_GUARDED_BY(mu_);
  TenantLimits tenant_limits_ ABSL_GUARDED_BY(mu_);
  // Not const: Select reuses scratch buffers. Used only under mu_.
  scheduler::NodeSelection selection_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  scheduler::LoadBalancer balancer_;
  scheduler::BalanceReport balance_ ABSL_GUARDED_BY(mu_);
  // Learns run times from results; predicts latency for bid/cheapest modes
  // and the latency scorer. The recent samples measure its held-out error.
  scheduler::LatencyModel latency_model_ ABSL_GUARDED_BY(mu_);
  std::deque<scheduler::LatencySample> latency_history_ ABSL_GUARDED_BY(mu_);
  uint64_t preemptions_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void(const std::string&)> finish_listener_;
  // Submits accepted in memory whose insert is not yet durable (admission
  // control counts them with the queue).
  int64_t inserting_ ABSL_GUARDED_BY(mu_) = 0;
  // Executions ended in memory since the last Commit (see Finish).
  std::vector<std::string> pending_finish_ ABSL_GUARDED_BY(mu_);
  uint64_t persist_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_retention_mono_ms_ ABSL_GUARDED_BY(mu_) = 0;
  WatchHub watch_hub_ ABSL_GUARDED_BY(mu_);
  bool dispatch_wanted_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar dispatch_cv_;
  absl::CondVar stop_cv_;

  std::thread dispatcher_;
  std::thread lease_checker_;
  // Checkpoint, migration and its automatic trigger (manager/migration.h).
  std::unique_ptr<Migrator> migrator_;

 public:
  // Predictive pre-warming: counts submissions, answers each ReportStatus
  // with pool targets. Other components add theirs with SetExternalTarget.
  Prewarmer& prewarmer() { return prewarmer_; }

 private:
  Prewarmer prewarmer_;
};

}  // namespace flotilla::manager
