// FederationHarness: starts a real manager and real agents (the flotilla
// binary) on loopback ports in a private temporary directory, and stops
// every process it started, by pid, when it goes away.
//
// With UseHosts(lab), the manager and each agent run in a host of their own
// (a network namespace of a netlab::Lab, netlab/netlab.h) and talk over the
// lab's bridge, so a test can partition, slow down or drop their links. The
// test's own calls come from the root namespace over the bridge. The Lab
// must outlive the harness (declare it first).
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "auth/pki.h"
#include "auth/tls.h"
#include "auth/users.h"
#include "flotilla/v1/api.grpc.pb.h"
#include "netlab/netlab.h"
#include "pool/linux_instance.h"

namespace flotilla::testing {

namespace v1 = ::flotilla::v1;

struct AgentSpec {
  std::string id;
  std::string region = "test";
  int trust = 5;
  std::vector<std::pair<std::string, int64_t>> data;
  int64_t cpu_millis = 2000;
  int64_t memory_bytes = 0;  // 0: the host's
  std::string extra_config;  // appended to the agent's YAML (e.g. a resize: section)
  std::vector<std::string> capabilities;  // security.capabilities ("network-egress")
  std::vector<std::string> env;  // "K=V" added to the agent's environment (e.g. LD_PRELOAD)
};

class FederationHarness {
 public:
  // Security is on, as in production: a CA of the test's own, mutual TLS
  // between the manager and the agents, and an admin token for the test's
  // calls. `insecure` starts everything in the development mode instead.
  explicit FederationHarness(bool insecure = false) : insecure_(insecure) {
    char tmpl[] = "/tmp/flotilla-it-XXXXXX";
    dir_ = mkdtemp(tmpl);
    pki_ = dir_ + "/pki";
    if (insecure_) return;
    Check(auth::InitCa(pki_), "ca init");
    auth::IssueRequest manager;
    manager.role = auth::Role::kManager;
    manager.ips = {"127.0.0.1"};
    Check(auth::Issue(pki_, manager, pki_ + "/manager").status(), "issue manager");
    token_ = AddUser("admin", "default", auth::UserRole::kAdmin);
  }

  // Adds a user to the manager's users file and returns its token (the
  // manager reloads the file within a second).
  std::string AddUser(const std::string& name, const std::string& tenant,
                      auth::UserRole role = auth::UserRole::kUser) {
    auto token = auth::AddUser(users_file(), {name, tenant, role});
    Check(token.status(), "user add");
    return *token;
  }
  // Issues a node certificate (prefix pki/<id>) as `flotilla ca issue` does.
  auth::TlsFiles IssueNode(const std::string& id, int trust) {
    auth::IssueRequest req;
    req.role = auth::Role::kNode;
    req.node_id = id;
    req.trust_level = trust;
    req.ips = {"127.0.0.1"};
    auto files = auth::Issue(pki_, req, pki_ + "/" + id);
    Check(files.status(), "issue node");
    return *files;
  }
  std::string users_file() const { return dir_ + "/users.json"; }
  std::string ca_cert() const { return pki_ + "/ca.crt"; }
  const std::string& token() const { return token_; }
  bool insecure() const { return insecure_; }
  // What a CLI run by the test needs in its environment.
  std::vector<std::string> ClientEnv() const {
    if (insecure_) return {"FLOTILLA_INSECURE=1"};
    return {"FLOTILLA_CA=" + ca_cert(), "FLOTILLA_TOKEN=" + token_};
  }
  // A channel to the manager's gRPC port as a user holding `token` ("" for
  // none).
  std::shared_ptr<grpc::Channel> UserChannel(const std::string& token) const {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    if (insecure_) return grpc::CreateCustomChannel(grpc_, grpc::InsecureChannelCredentials(), args);
    auth::Transport t;
    t.files.ca_cert = ca_cert();
    auto creds = auth::ChannelCredentials(t, auth::kManagerName, token);
    Check(creds.status(), "channel credentials");
    args.SetSslTargetNameOverride(creds->peer_name);
    return grpc::CreateCustomChannel(grpc_, creds->credentials, args);
  }
  // A channel to `address` presenting `files` (a node's or the manager's
  // certificate), checking that the server is `peer_name`.
  std::shared_ptr<grpc::Channel> PeerChannel(const std::string& address, const auth::TlsFiles& files,
                                             const std::string& peer_name) const {
    auth::Transport t;
    t.files = files;
    auto creds = auth::ChannelCredentials(t, peer_name);
    Check(creds.status(), "channel credentials");
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride(peer_name);
    return grpc::CreateCustomChannel(address, creds->credentials, args);
  }
  std::string pki() const { return pki_; }

  // Runs the manager and the agents started from now on in hosts of `lab`
  // (host "manager", and one named after each agent's id), made on demand.
  // Certificates need nothing more: peers check node names
  // (<id>.node.flotilla, manager.flotilla), not addresses.
  void UseHosts(netlab::Lab* lab) { lab_ = lab; }
  netlab::Lab* lab() const { return lab_; }

  // For manager replicas a test starts itself (tests/fault/failover_test.cc):
  // agents started from now on get `agent_manager_list` ("a:1,b:2") as their
  // manager, and PointAt(address) sends the harness's own calls there.
  std::string agent_manager_list;
  void PointAt(const std::string& address) {
    grpc_ = address;
    stub_ = v1::ApiService::NewStub(UserChannel(token_));
  }
  std::string TlsYamlFor(const std::string& who) const { return TlsYaml(who); }
  // Starts a process here with its output in `log` under dir().
  pid_t SpawnLogged(const std::vector<std::string>& argv, const std::string& log) {
    return Spawn(argv, dir_ + "/" + log);
  }
  static void TerminatePid(pid_t& pid) { Stop(pid); }
  static void KillPid(pid_t& pid) { Kill(pid); }

  ~FederationHarness() {
    // Agents first and gracefully, so they destroy their sandboxes (an
    // agent killed with SIGKILL leaves them to the next agent's clean-up).
    for (auto& [id, pid] : agents_) Stop(pid);
    Stop(manager_pid_);
    // Sandboxes of agents this test killed with SIGKILL (any dead agent's).
    if (geteuid() == 0) {
      if (auto layout = sandbox::DetectHostLayout({}); layout.ok()) {
        pool::CleanStaleSandboxRoots(*layout, "/run/flotilla", "flotilla");
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // --log-level of agents started from now on ("info" shows cancellations).
  std::string agent_log_level = "warn";
  // YAML for the manager's --config (e.g. a state: section), when set
  // before StartManager.
  std::string manager_config;
  // FLOTILLA_FAILPOINT for the next StartManager ("" for none): the manager
  // kills itself with SIGKILL at that point (common/failpoint.h).
  std::string manager_failpoint;
  // The manager's SQLite database for the next StartManager ("" for
  // dir()/manager.db), e.g. on a small file system a test fills up.
  std::string manager_db;

  const std::string& dir() const { return dir_; }
  const std::string& manager_address() const { return grpc_; }
  const std::string& http_address() const { return http_; }
  pid_t manager_pid() const { return manager_pid_; }
  pid_t agent_pid(const std::string& id) const { return agents_.at(id); }

  // Starts the manager; `grpc_listen` "127.0.0.1:0" picks a port, a fixed one
  // restarts it where agents expect it.
  // In a lab, "127.0.0.1" in `grpc_listen` means the manager host's address.
  void StartManager(int64_t lease_timeout_ms = 1500, std::string grpc_listen = "127.0.0.1:0") {
    const std::string ready = dir_ + "/manager.ready";
    std::filesystem::remove(ready);
    std::string http_listen = "127.0.0.1:0";
    if (lab_ != nullptr) {
      const std::string address = HostAddress("manager");
      if (grpc_listen.rfind("127.0.0.1:", 0) == 0) grpc_listen = address + grpc_listen.substr(9);
      http_listen = address + ":0";
    }
    std::vector<std::string> argv = {FLOTILLA_BIN, "manager", "--grpc-listen", grpc_listen,
                                     "--http-listen", http_listen, "--db",
                                     manager_db.empty() ? dir_ + "/manager.db" : manager_db,
                                     "--ready-file", ready, "--lease-timeout-ms",
                                     std::to_string(lease_timeout_ms), "--log-level", "warn"};
    {
      std::ofstream out(dir_ + "/manager.yaml");
      out << TlsYaml("manager");
      // A test's own auth: section replaces the harness's.
      if (!insecure_ && manager_config.find("auth:") == std::string::npos) {
        out << "auth: {users_file: " << users_file() << "}\n";
      }
      out << manager_config;
      argv.push_back("--config");
      argv.push_back(dir_ + "/manager.yaml");
    }
    std::vector<std::string> env;
    if (!manager_failpoint.empty()) env.push_back("FLOTILLA_FAILPOINT=" + manager_failpoint);
    manager_pid_ = Spawn("manager", argv, dir_ + "/manager.log", env);
    nlohmann::json j = WaitForJson(ready, manager_pid_);
    grpc_ = j["grpc"].get<std::string>();
    http_ = j["http"].get<std::string>();
    stub_ = v1::ApiService::NewStub(UserChannel(token_));
  }

  void StartAgent(const AgentSpec& spec) {
    const std::string config = dir_ + "/" + spec.id + ".yaml";
    if (!insecure_) IssueNode(spec.id, spec.trust);
    {
      std::ofstream out(config);
      out << TlsYaml(spec.id);
      const std::string listen = lab_ != nullptr ? HostAddress(spec.id) + ":0" : "127.0.0.1:0";
      out << "node_id: " << spec.id << "\nmanager: "
          << (agent_manager_list.empty() ? grpc_ : agent_manager_list) << "\nlisten: " << listen
          << "\n"
          << "work_dir: " << dir_ << "/work-" << spec.id << "\n"
          << "labels: {region: " << spec.region << "}\n"
          << "security: {trust_level: " << spec.trust << ", capabilities: ["
          << absl::StrJoin(spec.capabilities, ", ") << "]}\n"
          << "resources: {cpu_millis: " << spec.cpu_millis
          << (spec.memory_bytes > 0 ? ", memory_bytes: " + std::to_string(spec.memory_bytes) : "")
          << "}\n"
          << "data_sets:\n";
      for (const auto& [k, v] : spec.data) out << "  - {key: " << k << ", size_bytes: " << v << "}\n";
      if (spec.data.empty()) out << "  []\n";
      out << spec.extra_config;
    }
    std::filesystem::create_directories(dir_ + "/work-" + spec.id);
    agents_[spec.id] = Spawn(spec.id, {FLOTILLA_BIN, "agent", "--config", config, "--log-level",
                                       agent_log_level},
                             dir_ + "/" + spec.id + ".log", spec.env);
  }

  // Waits until `n` nodes are online; fails the test after `timeout`.
  bool WaitOnline(size_t n, std::chrono::seconds timeout = std::chrono::seconds(20)) {
    return WaitUntil(timeout, [&] {
      v1::ListNodesResponse resp;
      if (!ListNodes(&resp).ok()) return false;
      size_t online = 0;
      for (const auto& node : resp.nodes()) online += node.status() == v1::NODE_ONLINE;
      return online >= n;
    });
  }

  // Waits until the agents of `ids` have reported how their checkpoint
  // probe ended. Returns "" if every one can checkpoint; otherwise which
  // cannot and why (the probe's reason), for a test to skip with. Bounded:
  // the probe's steps have deadlines of a few seconds each.
  std::string WaitCheckpointSettled(const std::vector<std::string>& ids,
                                    std::chrono::seconds timeout = std::chrono::seconds(40)) {
    std::map<std::string, v1::CheckpointStatus> seen;
    const bool settled = WaitUntil(timeout, [&] {
      v1::ListNodesResponse resp;
      if (!ListNodes(&resp).ok()) return false;
      for (const auto& n : resp.nodes()) seen[n.id()] = n.checkpoint();
      for (const auto& id : ids) {
        auto it = seen.find(id);
        if (it == seen.end() || it->second.state() == v1::CHECKPOINT_PROBING ||
            it->second.state() == v1::CHECKPOINT_STATE_UNSPECIFIED) {
          return false;
        }
      }
      return true;
    });
    if (!settled) return "the checkpoint probe did not finish in time";
    std::string why;
    for (const auto& id : ids) {
      if (seen[id].state() == v1::CHECKPOINT_AVAILABLE) continue;
      why += (why.empty() ? "" : "; ") + id + ": " + seen[id].reason();
    }
    return why;
  }

  void KillAgent(const std::string& id) { Kill(agents_.at(id)); }
  void KillManager() { Kill(manager_pid_); }
  // Returns whether the manager process has exited (and reaps it).
  bool ManagerExited() {
    if (manager_pid_ <= 0) return true;
    if (waitpid(manager_pid_, nullptr, WNOHANG) != manager_pid_) return false;
    manager_pid_ = 0;
    return true;
  }

  // Submits as the admin of tenant default, or as the user holding `token`.
  grpc::Status Submit(const v1::ExecutionRequest& r, v1::SubmitResponse* resp,
                      const std::string& token = "") {
    v1::SubmitRequest req;
    *req.mutable_request() = r;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) return v1::ApiService::NewStub(UserChannel(token))->Submit(&ctx, req, resp);
    return stub_->Submit(&ctx, req, resp);
  }

  grpc::Status Get(const std::string& id, v1::Execution* out) {
    v1::GetRequest req;
    req.set_execution_id(id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub_->Get(&ctx, req, out);
  }

  grpc::Status ListNodes(v1::ListNodesResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub_->ListNodes(&ctx, v1::ListNodesRequest(), out);
  }

  grpc::Status Cancel(const std::string& id, v1::CancelResponse* out) {
    v1::CancelRequest req;
    req.set_execution_id(id);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub_->Cancel(&ctx, req, out);
  }

  v1::ApiService::Stub* stub() { return stub_.get(); }

  // Polls Get until every id is in a terminal state or `timeout` passes.
  // Returns the final executions (missing ones are not terminal in time).
  std::map<std::string, v1::Execution> WaitAllDone(const std::vector<std::string>& ids,
                                                   std::chrono::seconds timeout) {
    std::map<std::string, v1::Execution> done;
    WaitUntil(timeout, [&] {
      for (const auto& id : ids) {
        if (done.count(id)) continue;
        v1::Execution e;
        if (!Get(id, &e).ok()) continue;
        if (e.state() >= v1::EXECUTION_SUCCEEDED) done[id] = e;
      }
      return done.size() == ids.size();
    });
    return done;
  }

  std::string ReadLog(const std::string& name) const {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  static bool WaitUntil(std::chrono::milliseconds timeout, const std::function<bool()>& cond) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (cond()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return cond();
  }

  static v1::ExecutionRequest Command(std::vector<std::string> argv) {
    v1::ExecutionRequest r;
    for (auto& a : argv) r.mutable_code()->add_argv(a);
    r.set_user_id("tester");
    return r;
  }

  static v1::ExecutionRequest Shell(const std::string& source) {
    v1::ExecutionRequest r;
    r.mutable_code()->set_runtime("shell");
    r.mutable_code()->set_source(source);
    r.set_user_id("tester");
    return r;
  }

 private:
  static void Check(const absl::Status& st, const char* what) {
    if (!st.ok()) throw std::runtime_error(std::string(what) + ": " + std::string(st.message()));
  }
  std::string TlsYaml(const std::string& who) const {
    if (insecure_) return "tls: {insecure: true}\n";
    return "tls: {ca: " + ca_cert() + ", cert: " + pki_ + "/" + who + ".crt, key: " + pki_ + "/" +
           who + ".key, crl: " + pki_ + "/ca.crl}\n";
  }

  // The address of the lab host `name`, made if it is new.
  std::string HostAddress(const std::string& name) {
    if (const netlab::Host* h = lab_->Find(name)) return h->address;
    auto h = lab_->AddHost(name);
    Check(h.status(), "lab host");
    return h->address;
  }

  // Starts a process in the host `host` of the lab, or here without one.
  pid_t Spawn(const std::string& host, const std::vector<std::string>& argv,
              const std::string& log, const std::vector<std::string>& env) {
    if (lab_ == nullptr) return Spawn(argv, log, env);
    HostAddress(host);
    auto pid = lab_->Spawn(host, argv, log, env);
    Check(pid.status(), "spawn in lab host");
    return *pid;
  }

  static pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
                     const std::vector<std::string>& env = {}) {
    pid_t pid = fork();
    if (pid == 0) {
      for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
      FILE* f = freopen(log.c_str(), "a", stdout);
      (void)f;
      dup2(1, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    return pid;
  }

  static nlohmann::json WaitForJson(const std::string& path, pid_t pid) {
    nlohmann::json j;
    WaitUntil(std::chrono::seconds(15), [&] {
      std::ifstream in(path);
      if (!in) return waitpid(pid, nullptr, WNOHANG) == pid;  // died: stop waiting
      try {
        j = nlohmann::json::parse(in);
        return true;
      } catch (...) {
        return false;
      }
    });
    if (j.is_null()) throw std::runtime_error("process did not become ready: " + path);
    return j;
  }

  static void Stop(pid_t& pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; ++i) {
      if (waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = 0;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    Kill(pid);
  }

  static void Kill(pid_t& pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    pid = 0;
  }

  netlab::Lab* lab_ = nullptr;
  std::string dir_;
  bool insecure_ = false;
  std::string pki_;
  std::string token_;
  std::string grpc_;
  std::string http_;
  pid_t manager_pid_ = 0;
  std::map<std::string, pid_t> agents_;
  std::unique_ptr<v1::ApiService::Stub> stub_;
};

}  // namespace flotilla::testing
