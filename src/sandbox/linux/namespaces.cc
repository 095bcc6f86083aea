#include "sandbox/linux/namespaces.h"

#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

namespace flotilla::sandbox::isolation {

unsigned long long NamespaceFlags(const CloneOptions& options) {
  unsigned long long flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS;
  if (options.network == NetworkNamespace::kNew) flags |= CLONE_NEWNET;
  return flags;
}

absl::StatusOr<CloneResult> CloneIntoNamespaces(const CloneOptions& options) {
  int pidfd = -1;
  struct clone_args args;
  std::memset(&args, 0, sizeof(args));
  args.flags = NamespaceFlags(options) | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  // SIGCHLD, as for fork(): waitid(P_PIDFD) then needs no __WCLONE.
  args.exit_signal = SIGCHLD;
  if (options.cgroup_fd >= 0) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(options.cgroup_fd);
  }
  // A raw clone3 with no stack behaves like fork() but skips glibc's atfork
  // handlers; the child only runs async-signal-safe code, so it needs none.
  long ret = syscall(SYS_clone3, &args, sizeof(args));
  if (ret < 0) {
    return ErrnoError(errno, "clone3", absl::StrFormat("flags %#llx", args.flags));
  }
  if (ret == 0) return CloneResult{0, -1};
  return CloneResult{static_cast<pid_t>(ret), pidfd};
}

}  // namespace flotilla::sandbox::isolation
