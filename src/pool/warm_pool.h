// WarmPool: pre-provisioned sandboxes of one environment template, parked
// and ready, so an execution starts in a warm sandbox instead of building
// one. A pool keeps at least `min` idle instances (refilled in the
// background by the owner calling Refill), never more than `max` in all, and
// hands out a cold (newly created) instance when it is empty.
//
// Reuse policy: an instance that ran a task is parked again only under the
// template's reuse lifecycle and only for the same tenant and function; a
// fresh instance is usable by anyone. Under the destroy lifecycle an
// instance runs one task.
//
// Thread-safe. Instances are created and destroyed outside the pool's lock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pool/environment_template.h"
#include "sandbox/sandbox.h"

namespace flotilla::pool {

// One isolated environment that runs tasks one after another.
class Instance {
 public:
  virtual ~Instance() = default;
  virtual absl::StatusOr<sandbox::TaskOutcome> Run(const sandbox::TaskSpec& spec,
                                                   sandbox::OutputSink& sink,
                                                   const sandbox::CancelToken& cancel) = 0;
  // Cleans the instance for its next task; false if it cannot be reused.
  virtual bool Reset() = 0;
  virtual bool healthy() const = 0;
  // Live usage while a task runs (cgroups); nullopt where not measured.
  // May be called from another thread while Run is in progress.
  virtual std::optional<monitor::UsageSample> Usage() const { return std::nullopt; }
  // Changes the running task's memory / cpu limits in place (0: unchanged);
  // the next Reset puts the template's limits back. May be called from
  // another thread while Run is in progress.
  virtual absl::Status Resize(const model::Resources& limits) {
    (void)limits;
    return absl::UnimplementedError("this instance cannot be resized");
  }
  // See Sandbox::Checkpoint and EndCheckpoint; called from another thread
  // while Run is in progress.
  virtual absl::StatusOr<sandbox::TaskCheckpoint> Checkpoint(const std::string& image_dir) {
    (void)image_dir;
    return absl::FailedPreconditionError("this instance cannot be checkpointed");
  }
  virtual absl::Status EndCheckpoint(bool moved) {
    (void)moved;
    return absl::FailedPreconditionError("no checkpoint is in progress");
  }
  // For an instance made by InstanceFactory::Restore: continues the task
  // that was paused at `from` (instead of Run).
  virtual absl::StatusOr<sandbox::TaskOutcome> ResumeRestored(const sandbox::TaskSpec& spec,
                                                              const sandbox::TaskCheckpoint& from,
                                                              sandbox::OutputSink& sink,
                                                              const sandbox::CancelToken& cancel) {
    (void)spec;
    (void)from;
    (void)sink;
    (void)cancel;
    return absl::FailedPreconditionError("this instance was not restored");
  }
};

struct InstanceOptions {
  bool network_egress = false;
  // Made ahead of demand (Refill), with no request waiting on it: a factory
  // may spend longer readying it (MicroVmInstanceOptions::warm_up).
  bool ahead_of_demand = false;
};

class InstanceFactory {
 public:
  virtual ~InstanceFactory() = default;
  virtual absl::StatusOr<std::unique_ptr<Instance>> Create(const EnvironmentTemplate& t,
                                                           const InstanceOptions& options) = 0;
  // An instance restored from a checkpoint image, its task paused; never
  // pooled afterwards.
  virtual absl::StatusOr<std::unique_ptr<Instance>> Restore(const EnvironmentTemplate& t,
                                                            const sandbox::TaskCheckpoint& from) {
    (void)t;
    (void)from;
    return absl::FailedPreconditionError("this node's sandboxes cannot restore checkpoints");
  }
};

struct PoolStats {
  std::string template_name;
  int idle = 0;       // parked, ready
  int busy = 0;       // running a task
  uint64_t hits = 0;  // tasks that started in a warm instance
  uint64_t misses = 0;
  uint64_t created = 0;
  uint64_t destroyed = 0;
  uint64_t create_failures = 0;
  double warm_start_p50_us = 0;  // acquire → ready, over the last 1024 starts
  double warm_start_p99_us = 0;
  double cold_start_p50_us = 0;
  double cold_start_p99_us = 0;
  double hit_rate() const { return hits + misses ? double(hits) / double(hits + misses) : 0; }
};

class WarmPool {
 public:
  WarmPool(EnvironmentTemplate t, InstanceFactory* factory);
  ~WarmPool();

  struct Lease {
    std::unique_ptr<Instance> instance;
    bool warm = false;
    int64_t start_us = 0;  // time to obtain it
  };

  // Returns an idle instance fit for (tenant, function), or creates one.
  // When `max` instances are busy it waits for one to be released, up to
  // `wait`; then ResourceExhausted.
  absl::StatusOr<Lease> Acquire(const std::string& tenant, const std::string& function,
                                const InstanceOptions& options,
                                std::chrono::milliseconds wait = std::chrono::seconds(60));
  // Gives an instance back after a task: parked for (tenant, function) under
  // the reuse lifecycle if it is healthy and resets cleanly, else destroyed.
  void Release(Lease lease, const std::string& tenant, const std::string& function,
               const InstanceOptions& options);
  // Creates instances until `min` fresh ones are idle (or `max` reached).
  // Returns how many it created. Call from a background thread.
  int Refill();
  // Destroys every idle instance.
  void Drain();
  // A floor of fresh idle instances set from outside (the manager's
  // pre-warming targets): Refill keeps max(min, target) idle, never more
  // than `max` in all. 0 goes back to the template's own floor.
  void SetTargetIdle(int target);

  PoolStats Stats() const;
  const EnvironmentTemplate& environment() const { return template_; }
  // Restores a checkpointed task of this template (outside the pool's count).
  absl::StatusOr<std::unique_ptr<Instance>> Restore(const sandbox::TaskCheckpoint& from) {
    return factory_->Restore(template_, from);
  }

 private:
  struct Parked {
    std::unique_ptr<Instance> instance;
    std::string owner;  // "" for fresh; else tenant + "\n" + function
  };
  void RecordStart(bool warm, int64_t us);

  const EnvironmentTemplate template_;
  InstanceFactory* const factory_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::deque<Parked> idle_;  // guarded by mu_
  int busy_ = 0;             // guarded by mu_
  int creating_ = 0;         // guarded by mu_
  int target_idle_ = 0;      // guarded by mu_
  PoolStats stats_;          // counters, guarded by mu_
  std::vector<int64_t> warm_starts_, cold_starts_;  // ring buffers, guarded by mu_
  size_t warm_next_ = 0, cold_next_ = 0;             // guarded by mu_
};

// A Sandbox over warm pools: each TaskSpec runs in an instance of its
// template's pool (the default template when it names none). Requests for
// network egress get a cold instance of their own, never a pooled one.
class PooledSandbox : public sandbox::Sandbox {
 public:
  // `pools` are owned by the caller and outlive this object.
  PooledSandbox(std::vector<WarmPool*> pools, std::string default_template, std::string kind);

  absl::StatusOr<sandbox::TaskOutcome> Run(const sandbox::TaskSpec& spec, sandbox::OutputSink& sink,
                                           const sandbox::CancelToken& cancel) override;
  std::string_view kind() const override { return kind_; }
  // The usage of the instance running `task_id`: Run records task id →
  // instance while the task runs; running_mu_ keeps the instance from being
  // released during the call.
  std::optional<monitor::UsageSample> Sample(const std::string& task_id) override;
  absl::Status Resize(const std::string& task_id, const model::Resources& limits) override;
  // Forwarded to the instance running `task_id`, under running_mu_ so it is
  // not released meanwhile.
  absl::StatusOr<sandbox::TaskCheckpoint> Checkpoint(const std::string& task_id,
                                                     const std::string& image_dir) override;
  absl::Status EndCheckpoint(const std::string& task_id, bool moved) override;
  absl::StatusOr<sandbox::TaskOutcome> RunRestored(const sandbox::TaskSpec& spec,
                                                   const sandbox::TaskCheckpoint& from,
                                                   const std::function<bool()>& go,
                                                   sandbox::OutputSink& sink,
                                                   const sandbox::CancelToken& cancel) override;

 private:
  absl::StatusOr<WarmPool*> PoolFor(const sandbox::TaskSpec& spec);

  std::mutex running_mu_;
  std::map<std::string, Instance*> running_;  // guarded by running_mu_
  std::vector<WarmPool*> pools_;
  std::string default_template_;
  std::string kind_;
};

}  // namespace flotilla::pool
