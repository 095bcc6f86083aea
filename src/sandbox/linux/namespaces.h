// Namespaces: the clone3() call that starts a container's init in fresh pid,
// mount, ipc, uts and (unless the host network is shared) net namespaces,
// with a pidfd for the parent and, where a cgroup v2 group exists, directly
// inside that group (CLONE_INTO_CGROUP), so no instant of the child's life
// is outside the group that cgroup.kill empties.
//
// The cgroup namespace is not created here: the child unshares it only after
// it joined its cgroup v1 groups (see child.cc), so that every hierarchy's
// namespace root is the container's own group.
#pragma once

#include <sys/types.h>

#include "absl/status/statusor.h"

namespace flotilla::sandbox::isolation {

enum class NetworkNamespace {
  kNew,   // an empty network namespace: loopback only
  // The creating thread's network namespace: LaunchCheckpointable's
  // prepared one. Never the host's for a sandbox (egress.h).
  kHost,
};

struct CloneOptions {
  NetworkNamespace network = NetworkNamespace::kNew;
  int cgroup_fd = -1;  // a cgroup v2 directory to start in, or -1
};

struct CloneResult {
  pid_t pid = 0;   // 0 in the child
  int pidfd = -1;  // the parent's pidfd of the child; -1 in the child
};

// Returns clone3()'s namespace flags for `options`.
unsigned long long NamespaceFlags(const CloneOptions& options);

// Forks the calling process into new namespaces, like fork() (the child
// continues on a copy of the stack and sees pid == 0). The child is one
// thread of a possibly multithreaded parent: until execve it must only make
// async-signal-safe calls. Returns an error naming clone3 and the flags.
absl::StatusOr<CloneResult> CloneIntoNamespaces(const CloneOptions& options);

}  // namespace flotilla::sandbox::isolation
