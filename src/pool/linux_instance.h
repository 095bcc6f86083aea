// LinuxInstanceFactory: warm-pool instances that are Linux containers
// (namespaces, pivot_root, cgroups, seccomp, no capabilities, an
// unprivileged uid) with flotilla-guest as their PID 1, driven over a unix
// socketpair by a GuestClient.
//
// Every sandbox with a network namespace of its own is started with
// checkpoint::LaunchCheckpointable (its channel made inside that namespace),
// so any running task can be checkpointed and migrated; the launch costs the
// same either way, since the namespace is made once in both (see
// docs/benchmarks.md). Sandboxes granted network egress share the host's
// network and cannot be checkpointed.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "checkpoint/checkpointer.h"
#include "pool/warm_pool.h"
#include "sandbox/linux/container.h"
#include "sandbox/linux/egress.h"

namespace flotilla::pool {

struct LinuxInstanceOptions {
  std::string guest_binary;  // the static flotilla-guest
  sandbox::HostLayout layout;  // runtime dir, cgroup root and parent (per agent)
  uid_t uid = 65534;
  // Checkpoints and restores sandboxes (migration); null where CRIU is not
  // available, and checkpoint_unavailable then says why.
  checkpoint::Checkpointer* checkpointer = nullptr;
  std::string checkpoint_unavailable = "checkpointing is not configured on this node";
  // Checkpointable sandboxes run a copy of the guest staged here, under a
  // directory named by its content hash, bound read-only into the sandbox:
  // CRIU must find the init's executable on a mount of the container (a
  // binary exec'd from the agent's fd is not), and a target agent with the
  // same release finds the same path. Must be on the host's root filesystem.
  std::string guest_stage_root = "/var/lib/flotilla/guest";
  // Sandboxes granted network egress get their own namespace with a NAT
  // (sandbox/linux/egress.h), never the host's network.
  sandbox::isolation::EgressOptions egress;
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
