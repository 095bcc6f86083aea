#include "checkpoint/child.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace flotilla::checkpoint {

absl::StatusOr<Child> Child::Adopt(pid_t pid, std::string what) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    const int err = errno;
    // Without a pidfd there is no wait with a deadline: do not run it.
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return ErrnoError(err, "pidfd_open", absl::StrCat(what, " (pid ", pid, ")"));
  }
  return Child(pid, UniqueFd(fd), std::move(what));
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      what_(std::move(other.what_)) {}

Child::~Child() { Kill(); }

void Child::Kill() {
  if (pid_ < 0) return;
  // The group first (helpers), then the leader itself: before its
  // setpgid(0, 0) the child is still in the caller's group, which must not
  // be signalled, and kill(-pid) then fails with ESRCH.
  kill(-pid_, SIGKILL);
  kill(pid_, SIGKILL);
  Reap();
}

int Child::Reap() {
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) break;  // ECHILD: not ours any more; nothing to reap
  }
  pid_ = -1;
  pidfd_.Reset();
  return status;
}

absl::StatusOr<int> Child::Wait(Clock::time_point deadline, std::chrono::milliseconds limit,
                                int cancel_fd) {
  if (pid_ < 0) return absl::FailedPreconditionError(absl::StrCat(what_, ": already reaped"));
  while (true) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      Kill();
      return absl::DeadlineExceededError(absl::StrCat(
          what_, " did not finish within ", FormatLimit(limit), "; killed it and its process group"));
    }
    pollfd fds[2] = {{pidfd_.get(), POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    const int n = poll(fds, cancel_fd >= 0 ? 2 : 1,
                       static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      Kill();
      return ErrnoError(err, "poll the pidfd of", what_);
    }
    if (n == 0) continue;  // the deadline: checked at the top
    if (fds[0].revents != 0) return Reap();
    if (cancel_fd >= 0 && fds[1].revents != 0) {
      Kill();
      return absl::CancelledError(absl::StrCat(what_, " was cancelled (the agent is stopping)"));
    }
  }
}

std::string FormatLimit(std::chrono::milliseconds limit) {
  if (limit.count() < 1000) return absl::StrCat(limit.count(), " ms");
  return absl::StrFormat("%.3g s", static_cast<double>(limit.count()) / 1000.0);
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace flotilla::checkpoint
