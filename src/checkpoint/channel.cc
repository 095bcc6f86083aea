#include "checkpoint/channel.h"

#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sandbox/linux/net.h"

namespace flotilla::checkpoint {

absl::StatusOr<ChannelNamespace> NewChannelNamespace() {
  absl::StatusOr<ChannelNamespace> result = absl::UnknownError("not run");
  // The thread dies with the namespace switch, so the caller's threads keep
  // their own namespace.
  std::thread([&result] {
    if (unshare(CLONE_NEWNET) != 0) {
      result = ErrnoError(errno, "unshare", "CLONE_NEWNET");
      return;
    }
    if (int err = sandbox::isolation::BringUpLoopback(); err != 0) {
      result = ErrnoError(err, "bring up interface", "lo");
      return;
    }
    ChannelNamespace ns;
    ns.netns.Reset(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns.netns.valid()) {
      result = ErrnoError(errno, "open", "/proc/thread-self/ns/net");
      return;
    }
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      result = ErrnoError(errno, "socketpair", "AF_UNIX");
      return;
    }
    ns.agent_end.Reset(fds[0]);
    ns.sandbox_end.Reset(fds[1]);
    result = std::move(ns);
  }).join();
  return result;
}

absl::StatusOr<CheckpointableContainer> LaunchCheckpointable(sandbox::ContainerSpec spec,
                                                             const sandbox::HostLayout& layout,
                                                             int channel_fd) {
  if (spec.network != sandbox::NetworkNamespace::kNew) {
    return absl::InvalidArgumentError(absl::StrCat(
        "container ", spec.id, ": a checkpointable sandbox needs its own network namespace"));
  }
  absl::StatusOr<CheckpointableContainer> result = absl::UnknownError("not run");
  std::thread([&] {
    auto ns = NewChannelNamespace();
    if (!ns.ok()) {
      result = Annotate(ns.status(), absl::StrCat("container ", spec.id));
      return;
    }
    // Entering the prepared namespace on this thread and cloning with the
    // host-network setting shares it with the container.
    if (setns(ns->netns.get(), CLONE_NEWNET) != 0) {
      result = Annotate(ErrnoError(errno, "setns", "CLONE_NEWNET"), absl::StrCat("container ", spec.id));
      return;
    }
    spec.network = sandbox::NetworkNamespace::kHost;
    spec.fds.push_back({ns->sandbox_end.get(), channel_fd});
    auto container = sandbox::Container::Launch(spec, layout);
    if (!container.ok()) {
      result = container.status();
      return;
    }
    CheckpointableContainer out;
    out.container = std::move(*container);
    out.channel = std::move(ns->agent_end);
    result = std::move(out);
  }).join();
  return result;
}

}  // namespace flotilla::checkpoint
