// Child: one forked helper process (CRIU, tar) and the process group it
// leads, owned through a pidfd, waited for with a deadline.
//
// Why a process group: CRIU forks helpers (and, on restore, the restored
// tasks before they take their own group back), and a hung CRIU must not
// leave any of them behind. The forked child calls setpgid(0, 0) before it
// execs (see StartOwnGroupInChild), so a kill of the group reaches all of
// its descendants that did not leave it.
//
// Why a pidfd: poll() on it wakes when the child exits, so a wait with a
// deadline needs no polling loop with sleeps, and nothing else (no
// waitpid(-1) reaper) may reap the child while it is held.
//
// Ownership: a Child reaps its process exactly once. Destroying one that was
// not waited for kills its group and reaps it (a failed step half-way never
// leaves a running helper). Not thread-safe; one owner.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::checkpoint {

class Child {
 public:
  using Clock = std::chrono::steady_clock;

  // Takes `pid`, a child of the caller that leads its own process group
  // (or is about to: the group is made in the child, and a kill before that
  // still reaches the pid itself). `what` names it in errors ("criu dump").
  // On error (pidfd_open failed) the process has been killed and reaped.
  static absl::StatusOr<Child> Adopt(pid_t pid, std::string what);

  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  // Waits until the child exits and reaps it. Returns its wait status
  // (as waitpid gives it). If `deadline` passes first, kills the whole group
  // with SIGKILL, reaps the child and returns DeadlineExceeded naming `what`
  // and `limit` (the deadline as the caller stated it, for the message). If
  // `cancel_fd` (>= 0) becomes readable first, does the same and returns
  // Cancelled.
  absl::StatusOr<int> Wait(Clock::time_point deadline, std::chrono::milliseconds limit,
                           int cancel_fd = -1);

  // SIGKILL to the whole group, then reaps the child. Idempotent.
  void Kill();

  pid_t pid() const { return pid_; }

 private:
  Child(pid_t pid, UniqueFd pidfd, std::string what)
      : pid_(pid), pidfd_(std::move(pidfd)), what_(std::move(what)) {}
  // Reaps the (exited or killed) child; its wait status.
  int Reap();

  pid_t pid_ = -1;  // -1 once reaped or moved from
  UniqueFd pidfd_;
  std::string what_;
};

// For the forked child, before exec: makes it the leader of a new process
// group. Async-signal-safe (a system call).
inline int StartOwnGroupInChild() { return setpgid(0, 0); }

// "12.5 s", "300 ms": a deadline for a message.
std::string FormatLimit(std::chrono::milliseconds limit);

// Describes a wait status: "exited with status 3", "was killed by signal 9".
std::string DescribeWaitStatus(int status);

}  // namespace flotilla::checkpoint
