#include "sandbox/linux/child.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "sandbox/linux/caps.h"
#include "sandbox/linux/net.h"
#include "sandbox/linux/seccomp.h"

namespace flotilla::sandbox::isolation {
namespace {

[[noreturn]] void Fail(int error_fd, ChildStep step, int index, int err) {
  ChildError error = {static_cast<int32_t>(step), index, err};
  // Nothing to do if this write fails: the parent then sees EOF and a dead
  // child, which Wait reports.
  ssize_t ignored = write(error_fd, &error, sizeof(error));
  (void)ignored;
  _exit(127);
}

int ResetSignals() {
  // The parent blocked every signal around clone so that none of its
  // handlers runs in the child; set the dispositions back to default (an
  // ignored signal would stay ignored across execve) and only then unblock.
  struct sigaction action = {};
  action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // EINVAL for the signals glibc reserves for itself: nothing to reset.
    if (sigaction(sig, &action, nullptr) != 0 && errno != EINVAL) return errno;
  }
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) return errno;
  return 0;
}

}  // namespace

void RunChild(const ChildPlan& plan) {
  int error_fd = plan.error_fd;
  int program_fd = plan.program_fd;
  int err = 0;
  umask(0);  // modes in the rootfs plan are exact
  if ((err = ResetSignals()) != 0) Fail(error_fd, ChildStep::kSignals, 0, err);
  // Set by the child, it fires when the launching *thread* exits; a
  // long-lived launcher thread makes that the process (micro_vm.cc).
  if (plan.parent_death_signal != 0 && prctl(PR_SET_PDEATHSIG, plan.parent_death_signal) != 0) {
    Fail(error_fd, ChildStep::kParentDeathSignal, 0, errno);
  }

  for (size_t i = 0; i < plan.n_join_fds; ++i) {
    if (write(plan.join_fds[i], "0", 1) != 1) Fail(error_fd, ChildStep::kJoinCgroup, i, errno);
  }
  if (setsid() < 0) Fail(error_fd, ChildStep::kSetsid, 0, errno);
  if (unshare(CLONE_NEWCGROUP) != 0) Fail(error_fd, ChildStep::kUnshareCgroupNs, 0, errno);

  if ((err = MakeMountsPrivate()) != 0) Fail(error_fd, ChildStep::kMountPrivate, 0, err);
  size_t failed = 0;
  if ((err = ApplyRootfs(plan.rootfs, plan.n_rootfs, &failed)) != 0) {
    Fail(error_fd, ChildStep::kRootfs, static_cast<int>(failed), err);
  }
  if (sethostname(plan.hostname, plan.hostname_len) != 0) {
    Fail(error_fd, ChildStep::kHostname, 0, errno);
  }
  if (plan.loopback && (err = BringUpLoopback()) != 0) {
    Fail(error_fd, ChildStep::kLoopback, 0, err);
  }
  if ((err = PivotRoot(plan.root_dir)) != 0) Fail(error_fd, ChildStep::kPivotRoot, 0, err);
  if (chdir(plan.workdir) != 0) Fail(error_fd, ChildStep::kChdir, 0, errno);

  int* keep[] = {&error_fd, &program_fd};
  int failed_fd = -1;
  if ((err = InstallFds(plan.fds, plan.n_fds, keep, 2, &failed_fd)) != 0) {
    Fail(error_fd, ChildStep::kFds, failed_fd, err);
  }
  if ((err = ApplyRlimits(plan.rlimits, plan.n_rlimits, &failed)) != 0) {
    Fail(error_fd, ChildStep::kRlimits, static_cast<int>(failed), err);
  }
  CapStep cap_step = CapStep::kSecurebits;
  if ((err = DropPrivileges(plan.uid, plan.gid, plan.last_cap, &cap_step)) != 0) {
    Fail(error_fd, ChildStep::kDropPrivileges, static_cast<int>(cap_step), err);
  }
  if ((err = SetNoNewPrivs()) != 0) Fail(error_fd, ChildStep::kNoNewPrivs, 0, err);
  umask(022);
  if (plan.seccomp != nullptr && (err = InstallSeccompFilter(plan.seccomp)) != 0) {
    Fail(error_fd, ChildStep::kSeccomp, 0, err);
  }
  if (program_fd >= 0) {
    syscall(SYS_execveat, program_fd, "", plan.argv, plan.envp, AT_EMPTY_PATH);
  } else {
    execve(plan.program_path, plan.argv, plan.envp);
  }
  Fail(error_fd, ChildStep::kExec, 0, errno);
}

}  // namespace flotilla::sandbox::isolation
