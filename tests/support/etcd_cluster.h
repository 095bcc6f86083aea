// EtcdCluster: a real etcd cluster of N members (3 by default) for tests,
// each an `etcd` process on free loopback ports with its own temporary data
// directory. Kill(i) / Restart(i) / Pause(i) (SIGSTOP) / Resume(i) inject
// member faults; the destructor kills every process it started, by pid, and
// removes the data.
//
// Start() returns Unavailable if the etcd binary is missing (tests skip with
// that reason: install etcd-server, scripts/install-deps) and
// DeadlineExceeded if the cluster does not serve a linearizable read within
// its deadline.
//
// Not thread-safe: one test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/etcd/etcd_client.h"
#include "support/temp_dir.h"

namespace flotilla::testing {

struct EtcdClusterOptions {
  int members = 3;
  // Raft timing: faster than etcd's defaults (100 / 1000 ms), so that leader
  // changes and the minimum lease TTL (1.5 x election timeout, rounded up to
  // a second) stay short in tests.
  int heartbeat_ms = 50;
  int election_timeout_ms = 500;
  std::chrono::milliseconds start_deadline{20000};
  std::string etcd_binary;  // "": `etcd` from PATH or /usr/bin/etcd
  // Another address (e.g. a netlab bridge's) on which the members also serve
  // clients, on the same ports: endpoints_on(host) lists them. "": loopback
  // only.
  std::string extra_client_host;
};

class EtcdCluster {
 public:
  explicit EtcdCluster(EtcdClusterOptions options = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  absl::Status Start();

  // "127.0.0.1:port" client endpoints, one per member.
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  // The client endpoints on `host` (options.extra_client_host).
  std::vector<std::string> endpoints_on(const std::string& host) const;
  int client_port(int i) const { return members_[i].client_port; }
  // A client over every member's endpoint.
  absl::StatusOr<std::shared_ptr<etcd::EtcdClient>> Client(
      std::chrono::milliseconds default_timeout = std::chrono::milliseconds(3000)) const;

  // SIGKILLs member i and waits for it.
  absl::Status Kill(int i);
  // Starts member i again on its ports and data (after Kill) and waits until
  // it serves.
  absl::Status Restart(int i);
  // SIGSTOP / SIGCONT.
  absl::Status Pause(int i);
  absl::Status Resume(int i);

  // Waits until member i serves a linearizable read (it has a leader).
  absl::Status WaitHealthy(int i, std::chrono::milliseconds timeout);

  // Where member i's log goes, for a failing test's message.
  std::string LogPath(int i) const;

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    pid_t pid = -1;
    bool paused = false;
  };
  absl::Status Spawn(int i, bool initial);
  std::string InitialCluster() const;

  EtcdClusterOptions options_;
  TempDir dir_{"flotilla_etcd"};
  std::string binary_;
  std::vector<Member> members_;
  unsigned client_port_seed_ = 0;  // makes each start's cluster token unique
};

// The etcd binary, or "" if none is installed.
std::string FindEtcdBinary();

}  // namespace flotilla::testing
