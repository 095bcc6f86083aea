#include "support/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace flotilla::testing {
namespace {

using Clock = std::chrono::steady_clock;

// A port the kernel considers free now. Another process may take it before
// etcd binds it; Start() then retries with new ports.
absl::StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return absl::ErrnoToStatus(err, "bind 127.0.0.1:0");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string Url(int port) { return absl::StrCat("http://127.0.0.1:", port); }

}  // namespace

std::string FindEtcdBinary() {
  if (const char* path = getenv("PATH")) {
    for (const auto& dir : absl::StrSplit(std::string(path), ':')) {
      std::string candidate = absl::StrCat(std::string(dir), "/etcd");
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (access("/usr/bin/etcd", X_OK) == 0) return "/usr/bin/etcd";
  return "";
}

EtcdCluster::EtcdCluster(EtcdClusterOptions options) : options_(std::move(options)) {}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    if (m.pid <= 0) continue;
    kill(m.pid, SIGKILL);
    int status;
    while (waitpid(m.pid, &status, 0) < 0 && errno == EINTR) {
    }
    m.pid = -1;
  }
}

std::string EtcdCluster::InitialCluster() const {
  std::vector<std::string> parts;
  for (const Member& m : members_) parts.push_back(absl::StrCat(m.name, "=", Url(m.peer_port)));
  return absl::StrJoin(parts, ",");
}

std::string EtcdCluster::LogPath(int i) const { return dir_.File(absl::StrCat("m", i, ".log")); }

absl::Status EtcdCluster::Spawn(int i, bool initial) {
  Member& m = members_[i];
  std::vector<std::string> args = {
      binary_,
      "--name", m.name,
      "--data-dir", m.data_dir,
      "--listen-client-urls", options_.extra_client_host.empty()
          ? Url(m.client_port)
          : absl::StrCat(Url(m.client_port), ",http://", options_.extra_client_host, ":",
                         m.client_port),
      "--advertise-client-urls", Url(m.client_port),
      "--listen-peer-urls", Url(m.peer_port),
      "--initial-advertise-peer-urls", Url(m.peer_port),
      "--initial-cluster", InitialCluster(),
      "--initial-cluster-state", initial ? "new" : "existing",
      "--initial-cluster-token", absl::StrCat("flotilla-test-", getpid(), "-", client_port_seed_),
      "--heartbeat-interval", std::to_string(options_.heartbeat_ms),
      "--election-timeout", std::to_string(options_.election_timeout_ms),
      "--logger", "zap",
      "--log-outputs", "stderr",
      "--log-level", "warn",
  };
  // setpriv --pdeathsig: the member dies with the test process, whatever
  // kills it.
  if (access("/usr/bin/setpriv", X_OK) == 0) {
    args.insert(args.begin(), {"/usr/bin/setpriv", "--pdeathsig", "KILL", "--"});
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // posix_spawn, not fork: the test process has gRPC threads, and a fork
  // runs gRPC's atfork handlers in it; posix_spawn runs none.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = LogPath(i);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  int err = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return absl::ErrnoToStatus(err, absl::StrCat("spawn ", argv[0]));
  m.pid = pid;
  m.paused = false;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Start() {
  binary_ = options_.etcd_binary.empty() ? FindEtcdBinary() : options_.etcd_binary;
  if (binary_.empty() || access(binary_.c_str(), X_OK) != 0) {
    return absl::UnavailableError(
        "no etcd binary (looked in PATH and /usr/bin): install Debian's etcd-server "
        "(scripts/install-deps) to run the etcd tests");
  }
  absl::Status last;
  for (int tries = 0; tries < 3; ++tries) {
    for (Member& m : members_) {
      if (m.pid > 0) {
        kill(m.pid, SIGKILL);
        waitpid(m.pid, nullptr, 0);
      }
    }
    members_.clear();
    client_port_seed_ = std::random_device{}();
    for (int i = 0; i < options_.members; ++i) {
      Member m;
      m.name = absl::StrCat("m", i);
      absl::StatusOr<int> cp = FreePort();
      absl::StatusOr<int> pp = FreePort();
      if (!cp.ok()) return cp.status();
      if (!pp.ok()) return pp.status();
      m.client_port = *cp;
      m.peer_port = *pp;
      m.data_dir = dir_.File(absl::StrCat("m", i, "-try", tries, ".etcd"));
      members_.push_back(m);
    }
    last = absl::OkStatus();
    for (int i = 0; i < options_.members && last.ok(); ++i) last = Spawn(i, /*initial=*/true);
    const Clock::time_point end = Clock::now() + options_.start_deadline;
    for (int i = 0; i < options_.members && last.ok(); ++i) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      last = WaitHealthy(i, std::max(left, std::chrono::milliseconds(1)));
    }
    if (last.ok()) return absl::OkStatus();
  }
  return last;
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < static_cast<int>(members_.size()); ++i) out.push_back(endpoint(i));
  return out;
}

std::vector<std::string> EtcdCluster::endpoints_on(const std::string& host) const {
  std::vector<std::string> out;
  for (const Member& m : members_) out.push_back(absl::StrCat(host, ":", m.client_port));
  return out;
}

std::string EtcdCluster::endpoint(int i) const {
  return absl::StrCat("127.0.0.1:", members_[i].client_port);
}

absl::StatusOr<std::shared_ptr<etcd::EtcdClient>> EtcdCluster::Client(
    std::chrono::milliseconds default_timeout) const {
  absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
      etcd::EtcdClient::Create({endpoints(), default_timeout});
  if (!client.ok()) return client.status();
  return std::shared_ptr<etcd::EtcdClient>(std::move(client).value());
}

absl::Status EtcdCluster::WaitHealthy(int i, std::chrono::milliseconds timeout) {
  const Clock::time_point end = Clock::now() + timeout;
  absl::Status last = absl::DeadlineExceededError("not tried");
  while (Clock::now() < end) {
    if (members_[i].pid > 0 && waitpid(members_[i].pid, nullptr, WNOHANG) == members_[i].pid) {
      members_[i].pid = -1;
      return absl::InternalError(absl::StrCat("etcd member ", i, " exited at start; see ",
                                              LogPath(i)));
    }
    // A fresh channel per try: a channel that failed to connect waits out
    // gRPC's reconnect backoff (1 s, 1.6 s, 2.6 s, ...) before it tries again.
    absl::StatusOr<std::unique_ptr<etcd::EtcdClient>> client =
        etcd::EtcdClient::Create({{endpoint(i)}, std::chrono::milliseconds(500)});
    if (!client.ok()) return client.status();
    auto attempt = std::min<Clock::duration>(end - Clock::now(), std::chrono::milliseconds(500));
    last = (*client)->Range("/flotilla-health", "", 0, Clock::now() + attempt).status();
    if (last.ok()) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd member ", i, " at ", endpoint(i),
                                                  " not serving after ", timeout.count(),
                                                  " ms: ", last.message(), "; log: ", LogPath(i)));
}

absl::Status EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError(absl::StrCat("member ", i, " not running"));
  kill(m.pid, SIGKILL);
  while (waitpid(m.pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  m.pid = -1;
  m.paused = false;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Restart(int i) {
  if (members_[i].pid > 0) {
    absl::Status s = Kill(i);
    if (!s.ok()) return s;
  }
  absl::Status s = Spawn(i, /*initial=*/false);
  if (!s.ok()) return s;
  return WaitHealthy(i, options_.start_deadline);
}

absl::Status EtcdCluster::Pause(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError(absl::StrCat("member ", i, " not running"));
  if (kill(m.pid, SIGSTOP) != 0) return absl::ErrnoToStatus(errno, "SIGSTOP etcd");
  m.paused = true;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Resume(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError(absl::StrCat("member ", i, " not running"));
  if (kill(m.pid, SIGCONT) != 0) return absl::ErrnoToStatus(errno, "SIGCONT etcd");
  m.paused = false;
  return absl::OkStatus();
}

}  // namespace flotilla::testing
