// Migrator: the manager's side of migration by checkpoint and restore.
//
// Migrate(id, to) runs the steps in order and stops at the first failure:
//   1. target: the named node, or migrate::ChooseTarget over the online nodes
//      (predicted capacity, price per resource-second, image size ÷ bandwidth
//      + restore time);
//   2. checkpoint + transfer + restore: the source agent's MigrateTask pauses
//      and checkpoints the task, holds it frozen, streams the image to the
//      target's RestoreTask, which restores it paused;
//   3. switch: Manager::MoveAssignment makes the target the execution's node
//      (same id and attempt; the source's results become stale);
//   4. resume: the target's FinishMigration(moved) lets the copy run, then
//      the source's FinishMigration(moved) kills the held one.
// A failure at 2 leaves the source running (the agent resumes it); at 3 the
// target's copy is discarded and the source resumed; at 4 the switch is
// undone, then the same. So exactly one copy is live, and it is the source
// unless the migration succeeded.
//
// The automatic trigger: every second, an execution whose node reported
// needs_migration (the agent's resize loop found no room) is migrated to the
// best target; the reason is logged. Each execution is tried at most once
// per kRetryAfter.
//
// Thread-safe; the calls block (they are made from gRPC handler threads and
// the trigger's own thread).
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "flotilla/v1/api.pb.h"

namespace flotilla::manager {

class Manager;

class Migrator {
 public:
  explicit Migrator(Manager* manager) : manager_(manager) {}
  ~Migrator() { Stop(); }

  void Start();
  void Stop();

  absl::StatusOr<flotilla::v1::CheckpointResponse> Checkpoint(const std::string& id);
  // `to` empty: the cheapest feasible node. `why` is logged.
  absl::StatusOr<flotilla::v1::MigrateResponse> Migrate(const std::string& id,
                                                        const std::string& to,
                                                        const std::string& fail_after,
                                                        const std::string& why);

 private:
  void TriggerLoop();

  Manager* const manager_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                       // guarded by mu_
  std::map<std::string, int64_t> in_flight_;     // execution id -> start, guarded by mu_
  std::map<std::string, int64_t> last_tried_;    // execution id -> steady ms, guarded by mu_
  std::thread trigger_;
};

}  // namespace flotilla::manager
