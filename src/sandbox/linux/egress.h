// Egress: the network of a sandbox whose request was granted network
// egress. It never shares the host's network namespace, where the manager
// and the agents listen on loopback (ARCHITECTURE.md: "Untrusted code never
// shares a network namespace with the control plane"). It gets its own
// namespace, like every sandbox, and a user-mode NAT to the outside:
// slirp4netns, a process of the agent that relays the sandbox's packets
// through ordinary sockets of the host.
//
// What such a sandbox cannot reach:
//   - the host's loopback: slirp4netns runs with --disable-host-loopback,
//     so its gateway 10.0.2.2 does not lead to the host's 127.0.0.1, and
//     127.0.0.1 inside is the sandbox's own loopback;
//   - the host's other addresses, link-local 169.254.0.0/16 (cloud
//     metadata services) and slirp's gateway and DNS forwarder: rejected by
//     an iptables filter in the sandbox's namespace, installed before the
//     NAT exists and out of the task's reach (it has no CAP_NET_ADMIN, and
//     seccomp denies netfilter netlink);
//   - IPv6: slirp4netns runs without it, so there is no IPv6 route.
//
// Thread-safety: an EgressNetwork is owned by one sandbox; the free
// functions are safe from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::sandbox::isolation {

struct EgressOptions {
  std::string slirp4netns = "/usr/bin/slirp4netns";
  std::string iptables_restore = "/usr/sbin/iptables-restore";
  // For the filter to be installed and for slirp4netns to say it is ready.
  std::chrono::milliseconds deadline{5000};
};

// The IPv4 destinations (CIDR) a sandbox with egress must not reach: every
// IPv4 address of the host's interfaces but loopback, 169.254.0.0/16, and
// slirp4netns's 10.0.2.2 and 10.0.2.3.
absl::StatusOr<std::vector<std::string>> EgressBlockedDestinations();

// The iptables-restore input that rejects `blocked` on the way out.
std::string EgressFilterRules(const std::vector<std::string>& blocked);

// Returns OK if egress can be set up on this host (both programs there).
absl::Status EgressAvailable(const EgressOptions& options);

class EgressNetwork {
 public:
  // Filters, then connects the network namespace of `pid` (the sandbox's
  // init) to the outside. On error nothing is left running.
  static absl::StatusOr<std::unique_ptr<EgressNetwork>> Attach(pid_t pid,
                                                              const EgressOptions& options);
  // Stops slirp4netns.
  ~EgressNetwork();
  EgressNetwork(const EgressNetwork&) = delete;
  EgressNetwork& operator=(const EgressNetwork&) = delete;

 private:
  EgressNetwork(pid_t slirp, UniqueFd pidfd, UniqueFd exit_fd)
      : slirp_(slirp), pidfd_(std::move(pidfd)), exit_fd_(std::move(exit_fd)) {}
  pid_t slirp_;
  UniqueFd pidfd_;
  UniqueFd exit_fd_;  // closing it tells slirp4netns to exit
};

}  // namespace flotilla::sandbox::isolation
