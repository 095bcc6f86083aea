// ManagerReplicas: N manager replicas (`flotilla manager` with an `ha:`
// section) on an etcd cluster, started and stopped by a test, for the HA
// fault tests (tests/fault/failover_test.cc, ha_faults_test.cc).
//
// Each replica writes a ready file whose "role" says whether it leads;
// Leader() reads those, skipping replicas that are dead or paused (a paused
// leader's file still says "leader": it cannot rewrite it). Kill, Pause and
// Resume inject the faults; the destructor terminates every replica it
// started, by pid (resuming a paused one first).
//
// With a lab (ReplicaOptions.lab), replica i runs in the lab host "m<i>" and
// listens on that host's address; etcd must then be reachable from the
// hosts (EtcdClusterOptions.extra_client_host = the lab's bridge address).
//
// Not thread-safe: one test thread drives it. The FederationHarness (for
// certificates, users and logs) must outlive it.
#pragma once

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/federation_harness.h"
#include "unit/kv/redis_server.h"  // FreeLoopbackPort

namespace flotilla::testing {

struct ReplicaOptions {
  int count = 3;
  int lease_ttl_ms = 2000;
  std::string redis_address;       // "host:port" of the shared Redis (HA needs one)
  netlab::Lab* lab = nullptr;      // null: replicas on loopback
  std::string log_level = "info";  // "info" logs leadership changes
};

class ManagerReplicas {
 public:
  ManagerReplicas(FederationHarness* h, std::vector<std::string> etcd, ReplicaOptions options)
      : h_(h), etcd_(std::move(etcd)), options_(options) {
    for (int i = 0; i < options_.count; ++i) {
      std::string address;
      if (options_.lab != nullptr) {
        const std::string host = HostName(i);
        const netlab::Host* found = options_.lab->Find(host);
        std::string ip;
        if (found != nullptr) {
          ip = found->address;
        } else {
          auto made = options_.lab->AddHost(host);
          if (!made.ok()) throw std::runtime_error("lab host: " + made.status().ToString());
          ip = made->address;
        }
        address = absl::StrCat(ip, ":7443");  // a namespace of its own: any port is free
      } else {
        address = absl::StrCat("127.0.0.1:", kv::testing::FreeLoopbackPort());
      }
      addresses_.push_back(address);
      pids_.push_back(0);
      paused_.push_back(false);
    }
  }
  ~ManagerReplicas() {
    for (int i = 0; i < options_.count; ++i) {
      if (paused_[i] && pids_[i] > 0) kill(pids_[i], SIGCONT);
      FederationHarness::TerminatePid(pids_[i]);
    }
  }
  ManagerReplicas(const ManagerReplicas&) = delete;
  ManagerReplicas& operator=(const ManagerReplicas&) = delete;

  int count() const { return options_.count; }
  const std::vector<std::string>& Addresses() const { return addresses_; }
  std::string List() const { return absl::StrJoin(addresses_, ","); }
  static std::string HostName(int i) { return absl::StrCat("m", i); }
  pid_t pid(int i) const { return pids_[i]; }

  void Start(int i) {
    const std::string name = HostName(i);
    const std::string config = absl::StrCat(h_->dir(), "/", name, ".yaml");
    {
      std::ofstream out(config);
      out << h_->TlsYamlFor("manager") << "auth: {users_file: " << h_->users_file() << "}\n";
      if (!options_.redis_address.empty()) {
        out << "state: {backend: redis, redis_address: " << options_.redis_address << "}\n";
      }
      out << "ha: {etcd: [" << absl::StrJoin(etcd_, ", ") << "], id: " << name
          << ", advertise: " << addresses_[i] << ", lease_ttl_ms: " << options_.lease_ttl_ms
          << "}\n";
    }
    std::filesystem::remove(Ready(i));
    const std::vector<std::string> argv = {
        FLOTILLA_BIN, "manager", "--grpc-listen", addresses_[i], "--http-listen", "",
        "--db", absl::StrCat(h_->dir(), "/", name, ".db"), "--ready-file", Ready(i),
        "--lease-timeout-ms", "3000", "--log-level", options_.log_level, "--config", config};
    paused_[i] = false;
    if (options_.lab != nullptr) {
      auto pid = options_.lab->Spawn(name, argv, absl::StrCat(h_->dir(), "/", name, ".log"));
      if (!pid.ok()) throw std::runtime_error("spawn replica: " + pid.status().ToString());
      pids_[i] = *pid;
    } else {
      pids_[i] = h_->SpawnLogged(argv, name + ".log");
    }
  }
  void StartAll() {
    for (int i = 0; i < options_.count; ++i) Start(i);
  }

  // "leader", "standby", or "" (not started, dead, or no ready file yet).
  std::string Role(int i, uint64_t* epoch = nullptr) {
    if (pids_[i] <= 0 || waitpid(pids_[i], nullptr, WNOHANG) == pids_[i]) return "";
    std::ifstream in(Ready(i));
    if (!in) return "";
    try {
      const nlohmann::json j = nlohmann::json::parse(in);
      if (epoch != nullptr) *epoch = j.value("epoch", uint64_t{0});
      return j.value("role", "");
    } catch (...) {
      return "";
    }
  }
  // The running, unpaused replica whose ready file says it leads, with the
  // highest epoch (a deposed leader's file may say so a little longer);
  // -1 if none.
  int Leader() {
    int best = -1;
    uint64_t best_epoch = 0;
    for (int i = 0; i < options_.count; ++i) {
      if (paused_[i]) continue;
      uint64_t epoch = 0;
      if (Role(i, &epoch) != "leader") continue;
      if (best < 0 || epoch > best_epoch) {
        best = i;
        best_epoch = epoch;
      }
    }
    return best;
  }
  int WaitLeader(std::chrono::milliseconds timeout) {
    int leader = -1;
    FederationHarness::WaitUntil(timeout, [&] { return (leader = Leader()) >= 0; });
    return leader;
  }
  // A leader other than `not_this`; -1 if none within `timeout`.
  int WaitOtherLeader(int not_this, std::chrono::milliseconds timeout) {
    int leader = -1;
    FederationHarness::WaitUntil(timeout, [&] {
      leader = Leader();
      return leader >= 0 && leader != not_this;
    });
    return leader != not_this ? leader : -1;
  }

  void Kill(int i) {
    if (paused_[i] && pids_[i] > 0) kill(pids_[i], SIGCONT);
    paused_[i] = false;
    FederationHarness::KillPid(pids_[i]);
    std::filesystem::remove(Ready(i));
  }
  void Pause(int i) {
    kill(pids_[i], SIGSTOP);
    paused_[i] = true;
  }
  void Resume(int i) {
    kill(pids_[i], SIGCONT);
    paused_[i] = false;
  }

  std::string Log(int i) const { return h_->ReadLog(absl::StrCat(HostName(i), ".log")); }
  // Every replica's log, for a failing assertion's message.
  std::string Logs() const {
    std::string out;
    for (int i = 0; i < options_.count; ++i) {
      out += absl::StrCat("---- ", HostName(i), ".log\n", Log(i));
    }
    return out;
  }

 private:
  std::string Ready(int i) const { return absl::StrCat(h_->dir(), "/", HostName(i), ".ready"); }

  FederationHarness* h_;
  std::vector<std::string> etcd_;
  ReplicaOptions options_;
  std::vector<std::string> addresses_;
  std::vector<pid_t> pids_;
  std::vector<bool> paused_;
};

}  // namespace flotilla::testing
