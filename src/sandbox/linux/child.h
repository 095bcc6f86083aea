// Child: the code between clone() and execve(), as one flat pipeline of
// steps (nsjail's containProc). Each step either succeeds or the child writes
// a ChildError (step, index, errno) to the error pipe and _exits; the error
// pipe is close-on-exec, so EOF on it tells the parent that execve worked.
//
// The child is a one-thread copy of the (multithreaded) agent: it may only
// make async-signal-safe calls. Everything it reads is prepared by the parent
// in a ChildPlan before clone; it allocates nothing and takes no locks.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include "sandbox/linux/fds.h"
#include "sandbox/linux/mounts.h"
#include "sandbox/linux/rlimits.h"

namespace flotilla::sandbox::isolation {

enum class ChildStep : int32_t {
  kSignals,  // default handlers, nothing blocked
  kParentDeathSignal,
  kJoinCgroup,  // index: which cgroup.procs
  kSetsid,
  kUnshareCgroupNs,  // after joining, so each hierarchy's root is the container's group
  kMountPrivate,
  kRootfs,  // index: the RootfsOp
  kHostname,
  kLoopback,
  kPivotRoot,
  kChdir,
  kFds,             // index: the target fd, or -1
  kRlimits,         // index: the RlimitSetting
  kDropPrivileges,  // index: the CapStep
  kNoNewPrivs,
  kSeccomp,
  kExec,
};

struct ChildError {
  int32_t step;
  int32_t index;
  int32_t err;
};

struct ChildPlan {
  const int* join_fds = nullptr;  // cgroup.procs files to write "0" to
  size_t n_join_fds = 0;
  const RootfsOp* rootfs = nullptr;
  size_t n_rootfs = 0;
  const char* root_dir = nullptr;
  const char* hostname = nullptr;
  size_t hostname_len = 0;
  bool loopback = false;
  const char* workdir = nullptr;  // inside the new root
  const FdMapping* fds = nullptr;
  size_t n_fds = 0;
  const RlimitSetting* rlimits = nullptr;
  size_t n_rlimits = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  int last_cap = 0;
  const sock_fprog* seccomp = nullptr;  // nullptr: no filter
  int program_fd = -1;                  // execveat(fd, "", AT_EMPTY_PATH) when >= 0
  const char* program_path = nullptr;   // else execve(path), inside the new root
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int error_fd = -1;
  int parent_death_signal = 0;  // PR_SET_PDEATHSIG; 0: none
};

// Runs the pipeline; never returns.
[[noreturn]] void RunChild(const ChildPlan& plan);

}  // namespace flotilla::sandbox::isolation
