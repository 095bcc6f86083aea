// The local federation of `flotilla up`: a manager and N agents as real
// background processes, their state (database, configs, logs) under
// $XDG_DATA_HOME/flotilla (default ~/.local/share/flotilla), and a record
// (federation.json) that lets every other command find the manager.
#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::cli {

struct LocalFederation {
  std::string state_dir;
  std::string manager_grpc;
  std::string manager_http;
  // Security: the CA that signed the manager's certificate, and the file
  // holding the admin's token; `insecure` for the development mode.
  std::string ca_cert;
  std::string token_file;
  bool insecure = false;
  pid_t manager_pid = 0;
  std::vector<pid_t> agent_pids;
  std::vector<std::string> agent_ids;
  // With `up --hosts`: the netlab Lab's name (its namespaces and links are
  // removed by `down`) and each process's host address; empty otherwise.
  std::string lab;
  std::string manager_host;
  std::vector<std::string> agent_hosts;
};

struct UpOptions {
  std::string state_dir;
  int agents = 3;
  std::string self;  // path of the flotilla binary to start
  int64_t lease_timeout_ms = 0;  // 0: the manager's default
  // "process": unisolated, for trusted development hosts; "microvm": QEMU VMs.
  std::string isolation = "linux";
  bool insecure = false;  // security off: plaintext, no identities (development only)
  // 0: every process on loopback. N: the manager and N agents (N replaces
  // `agents`) each in a host of its own, a network namespace joined to a
  // bridge in the root namespace (netlab/netlab.h); needs root.
  int hosts = 0;
};

std::string DefaultStateDir();

// Returns the recorded federation, or NotFound when none is recorded.
absl::StatusOr<LocalFederation> ReadLocalFederation(const std::string& state_dir);

// Makes what a secure federation in `state_dir` needs, keeping what is
// there: a CA (pki/), the manager's certificate, one per agent id (with the
// trust level given), the users file with an admin of tenant default and
// its token in admin.token (0600).
absl::Status EnsureLocalPki(const std::string& state_dir,
                            const std::vector<std::pair<std::string, int>>& agents);

// Starts the manager and the agents, waits until every agent is online, and
// records the federation. FailedPrecondition if one is already running.
absl::StatusOr<LocalFederation> StartLocalFederation(const UpOptions& options);

// Stops the recorded processes (SIGTERM, then SIGKILL after a grace period)
// and removes the record. `purge` also deletes the state directory.
absl::Status StopLocalFederation(const std::string& state_dir, bool purge);

}  // namespace flotilla::cli
