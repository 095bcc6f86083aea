#include "cli/local_federation.h"

#include "auth/pki.h"
#include "auth/users.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/client.h"
#include "common/status_macros.h"
#include "netlab/netlab.h"

namespace flotilla::cli {

namespace fs = std::filesystem;

namespace {

// The showcase profiles of a local federation's agents: different regions,
// trust levels and data sets, so placement has something to decide.
struct Profile {
  const char* region;
  const char* zone;
  int trust;
  std::vector<std::pair<const char*, int64_t>> data;
  std::vector<const char*> capabilities;
};

const std::vector<Profile>& Profiles() {
  static const std::vector<Profile> kProfiles = {
      {"eu-west", "eu-west-1a", 3, {{"climate/era5-2025", 2ll << 30}}, {"network-egress"}},
      {"us-east", "us-east-1b", 5, {{"genomics/hg38", 3ll << 30}, {"climate/era5-2025", 2ll << 30}}, {}},
      {"ap-south", "ap-south-1a", 8, {{"finance/ticks-2026", 512ll << 20}}, {"network-egress"}},
  };
  return kProfiles;
}

std::string RecordPath(const std::string& dir) { return dir + "/federation.json"; }

bool Alive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

// True if pid still runs our binary (guards against a recycled pid).
bool IsOurs(pid_t pid, const std::string& state_dir) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string cmdline = ss.str();
  return cmdline.find("flotilla") != std::string::npos &&
         cmdline.find(state_dir) != std::string::npos;
}

// Starts a daemon; `netns` ("" for ours) names the network namespace under
// /run/netns that it runs in.
absl::StatusOr<pid_t> SpawnDaemon(const std::vector<std::string>& argv, const std::string& log,
                                  const std::string& netns = "") {
  int ns = -1;
  if (!netns.empty()) {
    ns = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
    if (ns < 0) return ErrnoError(errno, "open", "/run/netns/" + netns);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (ns >= 0) close(ns);
    return ErrnoError(errno, "open", log);
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    if (ns >= 0) close(ns);
    return ErrnoError(errno, "fork");
  }
  if (pid == 0) {
    if (ns >= 0 && setns(ns, CLONE_NEWNET) != 0) _exit(126);
    setsid();  // outlives `flotilla up`, and the terminal's signals
    dup2(devnull, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fd);
  close(devnull);
  if (ns >= 0) close(ns);
  return pid;
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("no file `", path, "`"));
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(path, ": ", e.what()));
  }
}

std::string LogTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > 2000) s = s.substr(s.size() - 2000);
  return s;
}

// Waits for `path` to appear, or for the process to die (reaping it).
absl::StatusOr<nlohmann::json> WaitReady(const std::string& path, pid_t pid,
                                         const std::string& what, const std::string& log) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto j = ReadJsonFile(path); j.ok()) return j;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError(
          absl::StrCat(what, " exited during start-up; its log (", log, ") ends:\n", LogTail(log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(what, " did not become ready in 15 s; see ", log));
}

void Terminate(pid_t pid, const std::string& state_dir) {
  if (!Alive(pid) || !IsOurs(pid, state_dir)) return;
  kill(pid, SIGTERM);
  for (int i = 0; i < 100 && Alive(pid); ++i) {
    waitpid(pid, nullptr, WNOHANG);  // reaps it if it is our child (tests)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (Alive(pid) && IsOurs(pid, state_dir)) kill(pid, SIGKILL);
  waitpid(pid, nullptr, WNOHANG);
}

}  // namespace

std::string DefaultStateDir() {
  const char* xdg = std::getenv("XDG_DATA_HOME");
  if (xdg && *xdg) return absl::StrCat(xdg, "/flotilla");
  const char* home = std::getenv("HOME");
  return absl::StrCat(home && *home ? home : "/tmp", "/.local/share/flotilla");
}

absl::StatusOr<LocalFederation> ReadLocalFederation(const std::string& state_dir) {
  auto j = ReadJsonFile(RecordPath(state_dir));
  if (!j.ok()) {
    return absl::NotFoundError(absl::StrCat("no local federation recorded in ", state_dir));
  }
  LocalFederation f;
  try {
    f.state_dir = state_dir;
    f.manager_grpc = (*j)["manager_grpc"].get<std::string>();
    f.manager_http = (*j)["manager_http"].get<std::string>();
    f.manager_pid = (*j)["manager_pid"].get<pid_t>();
    f.agent_pids = (*j)["agent_pids"].get<std::vector<pid_t>>();
    f.agent_ids = (*j)["agent_ids"].get<std::vector<std::string>>();
    f.ca_cert = j->value("ca", "");
    f.token_file = j->value("token_file", "");
    f.insecure = j->value("insecure", false);
    f.lab = j->value("lab", "");
    f.manager_host = j->value("manager_host", "");
    f.agent_hosts = j->value("agent_hosts", std::vector<std::string>{});
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(RecordPath(state_dir), ": ", e.what()));
  }
  return f;
}

namespace {

absl::Status WritePrivateFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
  fchmod(fd, 0600);
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::string AgentId(int i) { return absl::StrCat("agent-", i + 1); }

// The name of the netlab Lab of `up --hosts` in `state_dir`: fixed per state
// directory, so `down` (another process) finds it, and short enough for
// interface names ("flu" + 5 hex digits + "v200").
std::string LabName(const std::string& state_dir) {
  return absl::StrFormat("flu%05x", std::hash<std::string>{}(state_dir) & 0xfffff);
}

int AgentTrust(int i) {
  const Profile& p = Profiles()[static_cast<size_t>(i) % Profiles().size()];
  return i < 3 ? p.trust : 1 + i % 10;
}

// Points an agent's config at its certificate (or at the development
// mode) and at this `up`'s manager and listening address, replacing the
// lines an earlier `up` wrote (the manager's port, and with --hosts the
// addresses, change every time) and keeping the rest of an operator's edits.
absl::Status SetAgentTransport(const std::string& config, bool insecure, const std::string& pki,
                               const std::string& id, const std::string& manager,
                               const std::string& listen) {
  std::ifstream in(config);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string kept;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "tls:") || absl::StartsWith(line, "manager:") ||
        absl::StartsWith(line, "listen:")) {
      continue;
    }
    absl::StrAppend(&kept, line, "\n");
  }
  absl::StrAppend(&kept, "manager: ", manager, "\nlisten: ", listen, "\n");
  if (insecure) {
    absl::StrAppend(&kept, "tls: {insecure: true}  # SECURITY OFF (flotilla up --insecure)\n");
  } else {
    absl::StrAppend(&kept, "tls: {ca: ", pki, "/ca.crt, cert: ", pki, "/", id, ".crt, key: ", pki,
                    "/", id, ".key, crl: ", pki, "/ca.crl}\n");
  }
  std::ofstream out(config, std::ios::trunc);
  out << kept;
  if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", config));
  return absl::OkStatus();
}

}  // namespace

absl::Status EnsureLocalPki(const std::string& state_dir,
                            const std::vector<std::pair<std::string, int>>& agents) {
  const std::string pki = state_dir + "/pki";
  if (!fs::exists(pki + "/ca.key")) RETURN_IF_ERROR(auth::InitCa(pki));
  if (!fs::exists(pki + "/manager.crt")) {
    auth::IssueRequest req;
    req.role = auth::Role::kManager;
    req.dns = {"localhost"};
    req.ips = {"127.0.0.1", "::1"};
    RETURN_IF_ERROR(auth::Issue(pki, req, pki + "/manager").status());
  }
  for (const auto& [id, trust] : agents) {
    // Issued again on every `up`: the trust level follows the profile.
    auth::IssueRequest req;
    req.role = auth::Role::kNode;
    req.node_id = id;
    req.trust_level = trust;
    req.ips = {"127.0.0.1"};
    RETURN_IF_ERROR(auth::Issue(pki, req, pki + "/" + id).status());
  }
  const std::string users = state_dir + "/users.json";
  const std::string token_file = state_dir + "/admin.token";
  if (!fs::exists(users) || !fs::exists(token_file)) {
    std::string token;
    auto added = auth::AddUser(users, {"admin", "default", auth::UserRole::kAdmin});
    if (added.ok()) {
      token = *added;
    } else if (added.status().code() == absl::StatusCode::kAlreadyExists) {
      ASSIGN_OR_RETURN(token, auth::RotateToken(users, "admin"));
    } else {
      return added.status();
    }
    RETURN_IF_ERROR(WritePrivateFile(token_file, token + "\n"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LocalFederation> StartLocalFederation(const UpOptions& options) {
  UpOptions o = options;
  if (o.hosts < 0 || o.hosts > 200) {
    return absl::InvalidArgumentError(absl::StrCat("--hosts ", o.hosts, ": use 1 to 200"));
  }
  if (o.hosts > 0) {
    if (geteuid() != 0) {
      return absl::PermissionDeniedError(
          "--hosts makes network namespaces and a bridge: run it as root, or drop --hosts");
    }
    o.agents = o.hosts;
  }
  if (o.agents < 1 || o.agents > (o.hosts > 0 ? 200 : 64)) {
    return absl::InvalidArgumentError(absl::StrCat("--agents ", o.agents, ": use 1 to 64"));
  }
  if (auto existing = ReadLocalFederation(o.state_dir); existing.ok()) {
    if (Alive(existing->manager_pid) && IsOurs(existing->manager_pid, o.state_dir)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "a local federation is already running (manager at ", existing->manager_grpc,
          "); stop it with `flotilla down`"));
    }
    // A stale record (the machine rebooted, processes were killed): clean it.
    (void)StopLocalFederation(o.state_dir, false);
  }
  std::error_code ec;
  fs::create_directories(o.state_dir + "/logs", ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir `", o.state_dir, "/logs`: ", ec.message()));

  LocalFederation f;
  f.state_dir = o.state_dir;
  f.insecure = o.insecure;
  std::vector<std::pair<std::string, int>> agent_trust;
  for (int i = 0; i < o.agents; ++i) {
    agent_trust.emplace_back(AgentId(i), AgentTrust(i));
  }
  const std::string pki = o.state_dir + "/pki";
  if (!o.insecure) {
    RETURN_IF_ERROR(EnsureLocalPki(o.state_dir, agent_trust));
    f.ca_cert = pki + "/ca.crt";
    f.token_file = o.state_dir + "/admin.token";
  }
  {
    // Rewritten on every `up`: it only says where the security files are.
    std::ofstream out(o.state_dir + "/manager.yaml");
    out << "# Generated by `flotilla up`.\n";
    if (o.insecure) {
      out << "tls: {insecure: true}  # SECURITY OFF (flotilla up --insecure)\n";
    } else {
      out << "tls: {ca: " << pki << "/ca.crt, cert: " << pki << "/manager.crt, key: " << pki
          << "/manager.key, crl: " << pki << "/ca.crl}\n"
          << "auth: {users_file: " << o.state_dir << "/users.json}\n";
    }
  }
  // With --hosts, every process gets a host of its own; the Lab is detached
  // once the federation is up (its namespaces outlive `up`) and removed by
  // name in `down`, or here if the start fails.
  std::unique_ptr<netlab::Lab> lab;
  std::string manager_listen = "127.0.0.1", manager_netns;
  if (o.hosts > 0) {
    netlab::LabOptions lo;
    lo.name = LabName(o.state_dir);
    // The same addresses at every `up` of this state directory, while free.
    lo.subnet_seed = static_cast<uint32_t>(std::hash<std::string>{}(o.state_dir) >> 20) | 1;
    netlab::Lab::RemoveNamed(lo.name);  // a stale one of this state directory
    auto made = netlab::Lab::Create(lo);
    if (!made.ok()) return made.status();
    lab = std::move(*made);
    f.lab = lo.name;
    auto host = lab->AddHost("manager");
    if (!host.ok()) return host.status();
    manager_listen = host->address;
    manager_netns = host->netns;
    f.manager_host = host->address;
  }
  const std::string ready = o.state_dir + "/manager.ready";
  fs::remove(ready, ec);
  std::vector<std::string> argv = {o.self, "manager", "--grpc-listen", manager_listen + ":0",
                                   "--http-listen", manager_listen + ":0", "--db",
                                   o.state_dir + "/manager.db", "--ready-file", ready,
                                   "--config", o.state_dir + "/manager.yaml"};
  if (o.lease_timeout_ms > 0) {
    argv.insert(argv.end(), {"--lease-timeout-ms", std::to_string(o.lease_timeout_ms)});
  }
  const std::string manager_log = o.state_dir + "/logs/manager.log";
  ASSIGN_OR_RETURN(f.manager_pid, SpawnDaemon(argv, manager_log, manager_netns));
  auto ready_json = WaitReady(ready, f.manager_pid, "the manager", manager_log);
  if (!ready_json.ok()) {
    Terminate(f.manager_pid, o.state_dir);
    return ready_json.status();
  }
  f.manager_grpc = (*ready_json)["grpc"].get<std::string>();
  f.manager_http = (*ready_json)["http"].get<std::string>();

  auto fail = [&](absl::Status st) {
    for (pid_t p : f.agent_pids) Terminate(p, o.state_dir);
    Terminate(f.manager_pid, o.state_dir);
    return st;
  };
  for (int i = 0; i < o.agents; ++i) {
    const Profile& p = Profiles()[i % Profiles().size()];
    const std::string id = AgentId(i);
    const std::string config = absl::StrCat(o.state_dir, "/", id, ".yaml");
    // Written once: an operator's edits survive `down` and the next `up`.
    if (!fs::exists(config)) {
      std::ofstream out(config);
      out << "# Generated by `flotilla up`; edit it and run `flotilla down && flotilla up`.\n"
          << "node_id: " << id << "\n"
          << "work_dir: " << o.state_dir << "/work/" << id << "\n"
          << (o.isolation == "process"
                  ? "isolation: process  # UNISOLATED: tasks run on the host\n"
                    "trusted_development_node: true\n"
                  : absl::StrCat("isolation: ", o.isolation, "\n"))
          << "labels: {region: " << p.region << ", zone: " << p.zone << "}\n"
          << "cost: {per_cpu_second: " << (0.00002 * (1 + i % 3)) << ", per_gib_second: "
          << (0.000005 * (1 + i % 3)) << "}\n"
          << "security:\n  trust_level: " << AgentTrust(i) << "\n"
          << "  capabilities: [";
      for (size_t c = 0; c < p.capabilities.size(); ++c) out << (c ? ", " : "") << p.capabilities[c];
      out << "]\ndata_sets:\n";
      for (const auto& [key, size] : p.data) out << "  - {key: " << key << ", size_bytes: " << size << "}\n";
      if (p.data.empty()) out << "  []\n";
    }
    std::string listen = "127.0.0.1:0", netns;
    if (lab) {
      auto host = lab->AddHost(id);
      if (!host.ok()) return fail(host.status());
      listen = host->address + ":0";
      netns = host->netns;
      f.agent_hosts.push_back(host->address);
    }
    if (absl::Status st = SetAgentTransport(config, o.insecure, pki, id, f.manager_grpc, listen);
        !st.ok()) {
      return fail(st);
    }
    fs::create_directories(absl::StrCat(o.state_dir, "/work/", id), ec);
    const std::string log = absl::StrCat(o.state_dir, "/logs/", id, ".log");
    auto pid = SpawnDaemon({o.self, "agent", "--config", config}, log, netns);
    if (!pid.ok()) return fail(pid.status());
    f.agent_pids.push_back(*pid);
    f.agent_ids.push_back(id);
  }

  // Wait until every agent is registered and online.
  ClientSecurity security;
  security.insecure = f.insecure;
  security.ca_cert = f.ca_cert;
  if (!f.insecure) {
    auto token = ReadToken(f.token_file);
    if (!token.ok()) return fail(token.status());
    security.token = *token;
  }
  Client client(f.manager_grpc, security);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (true) {
    auto nodes = client.ListNodes();
    int online = 0;
    if (nodes.ok()) {
      for (const auto& n : nodes->nodes()) {
        for (const auto& id : f.agent_ids) {
          if (n.id() == id && n.status() == flotilla::v1::NODE_ONLINE) ++online;
        }
      }
    }
    if (online == o.agents) break;
    for (size_t i = 0; i < f.agent_pids.size(); ++i) {
      if (waitpid(f.agent_pids[i], nullptr, WNOHANG) == f.agent_pids[i]) {
        const std::string log = absl::StrCat(o.state_dir, "/logs/", f.agent_ids[i], ".log");
        return fail(absl::InternalError(absl::StrCat(f.agent_ids[i], " exited during start-up; its log ends:\n",
                                                     LogTail(log))));
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return fail(absl::DeadlineExceededError(absl::StrCat(
          "only ", online, " of ", o.agents, " agents registered in 20 s; see ", o.state_dir, "/logs")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  nlohmann::json j = {{"manager_grpc", f.manager_grpc}, {"manager_http", f.manager_http},
                      {"manager_pid", f.manager_pid},   {"agent_pids", f.agent_pids},
                      {"agent_ids", f.agent_ids},       {"ca", f.ca_cert},
                      {"token_file", f.token_file},     {"insecure", f.insecure}};
  if (lab) {
    j["lab"] = f.lab;
    j["manager_host"] = f.manager_host;
    j["agent_hosts"] = f.agent_hosts;
    lab->Detach();
  }
  std::ofstream(RecordPath(o.state_dir)) << j.dump(2) << "\n";
  return f;
}

absl::Status StopLocalFederation(const std::string& state_dir, bool purge) {
  auto f = ReadLocalFederation(state_dir);
  if (!f.ok() && !purge) return f.status();
  if (f.ok()) {
    for (pid_t p : f->agent_pids) Terminate(p, state_dir);
    Terminate(f->manager_pid, state_dir);
    if (!f->lab.empty()) netlab::Lab::RemoveNamed(f->lab);
  }
  std::error_code ec;
  fs::remove(RecordPath(state_dir), ec);
  if (purge) fs::remove_all(state_dir, ec);
  return absl::OkStatus();
}

}  // namespace flotilla::cli
