// Channel: starts a container whose guest channel CRIU can checkpoint.
//
// CRIU finds a task's unix sockets through sock_diag in the task's own net
// namespace; a socketpair made in the agent's namespace is invisible there
// ("Unix socket N not found"). So the namespace is made first, on a
// short-lived thread (a net namespace is per thread), the socketpair is
// created inside it, and the container is cloned from that thread sharing
// it. Restore makes a fresh namespace the same way and hands it to CRIU.
//
// Thread-safety: free functions, safe from any thread.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "sandbox/linux/container.h"

namespace flotilla::checkpoint {

// A new net namespace with "lo" up, and a socketpair created inside it.
struct ChannelNamespace {
  UniqueFd netns;        // /proc/thread-self/ns/net of the namespace
  UniqueFd agent_end;    // stays with the agent
  UniqueFd sandbox_end;  // goes into the sandbox (its fd 3)
};

absl::StatusOr<ChannelNamespace> NewChannelNamespace();

struct CheckpointableContainer {
  std::unique_ptr<sandbox::Container> container;
  UniqueFd channel;  // the agent's end; the container has the other at `channel_fd`
};

// Launches `spec` (its network must be kNew: a sandbox with host network
// cannot be moved) in a fresh ChannelNamespace with the channel at
// `channel_fd` inside.
absl::StatusOr<CheckpointableContainer> LaunchCheckpointable(sandbox::ContainerSpec spec,
                                                             const sandbox::HostLayout& layout,
                                                             int channel_fd = 3);

}  // namespace flotilla::checkpoint
