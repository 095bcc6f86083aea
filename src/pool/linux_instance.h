// LinuxInstanceFactory: warm-pool instances that are Linux containers
// (namespaces, pivot_root, cgroups, seccomp, no capabilities, an
// unprivileged uid) with flotilla-guest as their PID 1, driven over a unix
// socketpair by a GuestClient.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pool/warm_pool.h"
#include "sandbox/linux/container.h"

namespace flotilla::pool {

struct LinuxInstanceOptions {
  std::string guest_binary;  // the static flotilla-guest
  sandbox::HostLayout layout;  // runtime dir, cgroup root and parent (per agent)
  uid_t uid = 65534;
};

// The per-agent names of its sandboxes' runtime directory and cgroup parent:
// "<node_id>.<pid>", so two agents on one host never touch each other's, and
// leftovers of a dead agent can be told from a live one's.
std::string SandboxRootKey(const std::string& node_id);

// Removes what agents that died without cleaning up left behind: for every
// "<name>.<pid>" under the runtime root and the cgroup parents whose pid is
// not alive, kills the processes still in its groups and removes the groups
// and directories. Returns how many stale agent roots it removed.
int CleanStaleSandboxRoots(const sandbox::HostLayout& detected, const std::string& runtime_root,
                           const std::string& cgroup_parent_root);

// Removes this agent's own (now empty) runtime directory and cgroup parents.
void RemoveSandboxRoot(const sandbox::HostLayout& detected);

// Opens the guest binary and detects the host's cgroup layout once.
absl::StatusOr<std::unique_ptr<InstanceFactory>> NewLinuxInstanceFactory(
    LinuxInstanceOptions options);

}  // namespace flotilla::pool
