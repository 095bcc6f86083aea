#include "sandbox/linux/egress.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace flotilla::sandbox::isolation {
namespace {

using Clock = std::chrono::steady_clock;

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

// Waits for the child behind `pidfd` until `deadline`, then kills it.
// Returns its wait status, or -1 if it had to be killed.
int WaitOrKill(pid_t pid, int pidfd, Clock::time_point deadline) {
  pollfd p = {pidfd, POLLIN, 0};
  int ready;
  while ((ready = poll(&p, 1, MillisLeft(deadline))) < 0 && errno == EINTR) {
  }
  const bool exited = ready > 0;
  if (!exited) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return exited ? status : -1;
}

// Runs iptables-restore with `rules` on stdin inside the net namespace
// `netns`, bounded by `deadline`.
absl::Status RestoreRules(const std::string& iptables_restore, int netns,
                          const std::string& rules, Clock::time_point deadline) {
  UniqueFd input(memfd_create("flotilla-egress-rules", MFD_CLOEXEC));
  if (!input.valid()) return ErrnoError(errno, "memfd_create", "egress rules");
  if (write(input.get(), rules.data(), rules.size()) != static_cast<ssize_t>(rules.size()) ||
      lseek(input.get(), 0, SEEK_SET) != 0) {
    return ErrnoError(errno ? errno : EIO, "write", "egress rules");
  }
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", iptables_restore);
  if (pid == 0) {
    setpgid(0, 0);
    if (setns(netns, CLONE_NEWNET) != 0 || dup2(input.get(), 0) != 0) _exit(126);
    const char* argv[] = {iptables_restore.c_str(), "--wait", "5", nullptr};
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  UniqueFd pidfd(PidfdOpen(pid));
  if (!pidfd.valid()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return ErrnoError(errno, "pidfd_open", iptables_restore);
  }
  const int status = WaitOrKill(pid, pidfd.get(), deadline);
  if (status == -1) {
    return absl::DeadlineExceededError(absl::StrCat(iptables_restore, " did not finish in time"));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        iptables_restore, " in the sandbox's network namespace failed (exit status ",
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<std::string>> EgressBlockedDestinations() {
  std::set<std::string> blocked = {"169.254.0.0/16", "10.0.2.2/32", "10.0.2.3/32"};
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return ErrnoError(errno, "getifaddrs");
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    const in_addr addr = reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr;
    // 127/8 inside the namespace is the sandbox's own loopback; slirp's
    // --disable-host-loopback keeps the host's out of reach.
    if ((ntohl(addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &addr, text, sizeof(text)) == nullptr) continue;
    blocked.insert(absl::StrCat(text, "/32"));
  }
  freeifaddrs(list);
  return std::vector<std::string>(blocked.begin(), blocked.end());
}

std::string EgressFilterRules(const std::vector<std::string>& blocked) {
  std::string rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
  for (const std::string& cidr : blocked) {
    // A TCP reset makes connect() fail at once with ECONNREFUSED; the rest
    // gets an ICMP error rather than a silent drop and a long timeout.
    absl::StrAppend(&rules, "-A OUTPUT -d ", cidr, " -p tcp -j REJECT --reject-with tcp-reset\n");
    absl::StrAppend(&rules, "-A OUTPUT -d ", cidr, " -j REJECT --reject-with icmp-net-prohibited\n");
  }
  absl::StrAppend(&rules, "COMMIT\n");
  return rules;
}

absl::Status EgressAvailable(const EgressOptions& options) {
  for (const std::string& program : {options.slirp4netns, options.iptables_restore}) {
    if (access(program.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "network egress needs ", program, " (scripts/install-deps installs slirp4netns and iptables)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EgressNetwork>> EgressNetwork::Attach(pid_t pid,
                                                                     const EgressOptions& options) {
  RETURN_IF_ERROR(EgressAvailable(options));
  const auto deadline = Clock::now() + options.deadline;
  const std::string ns_path = absl::StrCat("/proc/", pid, "/ns/net");
  UniqueFd netns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns.valid()) return ErrnoError(errno, "open", ns_path);

  // The filter first: the namespace has no way out until slirp4netns
  // configures tap0, so no packet ever leaves unfiltered.
  ASSIGN_OR_RETURN(std::vector<std::string> blocked, EgressBlockedDestinations());
  RETURN_IF_ERROR(
      RestoreRules(options.iptables_restore, netns.get(), EgressFilterRules(blocked), deadline));

  int ready[2], exit_pipe[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2", "slirp4netns ready-fd");
  UniqueFd ready_read(ready[0]), ready_write(ready[1]);
  if (pipe2(exit_pipe, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2", "slirp4netns exit-fd");
  UniqueFd exit_read(exit_pipe[0]), exit_write(exit_pipe[1]);
  const std::string target = absl::StrCat(pid);
  pid_t slirp = fork();
  if (slirp < 0) return ErrnoError(errno, "fork", options.slirp4netns);
  if (slirp == 0) {
    setpgid(0, 0);
    // Fixed fd numbers for its options; everything else stays close-on-exec.
    if (dup2(ready_write.get(), 3) != 3 || dup2(exit_read.get(), 4) != 4) _exit(126);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) dup2(null, 0);
    // --enable-sandbox: slirp4netns parses the sandbox's packets, so it runs
    // with no capabilities in an empty root once it has its tap device.
    const char* argv[] = {options.slirp4netns.c_str(), "--configure", "--mtu=65520",
                          "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
                          "--ready-fd=3", "--exit-fd=4", target.c_str(), "tap0", nullptr};
    execv(argv[0], const_cast<char* const*>(argv));
    _exit(127);
  }
  ready_write.Reset();
  exit_read.Reset();
  UniqueFd pidfd(PidfdOpen(slirp));
  if (!pidfd.valid()) {
    const int err = errno;
    kill(slirp, SIGKILL);
    waitpid(slirp, nullptr, 0);
    return ErrnoError(err, "pidfd_open", options.slirp4netns);
  }
  std::unique_ptr<EgressNetwork> net(
      new EgressNetwork(slirp, std::move(pidfd), std::move(exit_write)));
  // It writes "1" once tap0 is configured; end of file means it died.
  pollfd p = {ready_read.get(), POLLIN, 0};
  int n;
  while ((n = poll(&p, 1, MillisLeft(deadline))) < 0 && errno == EINTR) {
  }
  char c = 0;
  if (n <= 0 || read(ready_read.get(), &c, 1) != 1 || c != '1') {
    return absl::InternalError(absl::StrCat(options.slirp4netns, " for pid ", pid,
                                            n == 0 ? " did not get ready in time"
                                                   : " exited before it was ready"));
  }
  return net;
}

EgressNetwork::~EgressNetwork() {
  exit_fd_.Reset();
  WaitOrKill(slirp_, pidfd_.get(), Clock::now() + std::chrono::seconds(1));
}

}  // namespace flotilla::sandbox::isolation
