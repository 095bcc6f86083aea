// flotilla_e2e_bench: end-to-end latency and throughput of no-op executions
// (argv ["true"]) submitted through a manager to ONE agent. Both daemons are
// started here from the flotilla binary named by --flotilla, on 127.0.0.1
// port 0, in a temporary directory that is removed at the end.
//
// Measured, in one run:
//   latency     N sequential executions: Submit, then Watch until the final
//               event; submit -> final event, with the Submit RPC alone and
//               the agent's own run (result.wall_time_us: fork -> exit) so
//               the rest (dispatch, result report, watch wake-up) shows.
//   throughput  M executions by C client threads, each with its own
//               connection, each doing submit + watch in a loop.
//   cpu         CPU time of the manager, the agent (and the tasks it reaped)
//               and this client, per execution, from /proc and getrusage.
//   peers       the same loops, interleaved with Flotilla's, over a plain
//               fork + execve + waitpid of /bin/true from this
//               (multithreaded) process, over posix_spawn (vfork-style),
//               and over `unshare -pmuin --fork /bin/true` (--unshare).
//
// Prints a markdown table; --json writes the figures for bench/report.py.
// Only its own children are signalled, by pid; everything is bounded by
// --time-limit-s.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <cctype>
#include <fstream>
#include <latch>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flotilla/v1/api.grpc.pb.h"

namespace {

namespace v1 = ::flotilla::v1;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// ------------------------------------------------------------------ stats

struct Stats {
  size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;  // microseconds
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];  // nearest rank
}

Stats Summarize(std::vector<double> us) {
  Stats s;
  s.n = us.size();
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  s.p50 = Percentile(us, 0.50);
  s.p90 = Percentile(us, 0.90);
  s.p99 = Percentile(us, 0.99);
  s.max = us.back();
  double sum = 0;
  for (double v : us) sum += v;
  s.mean = sum / static_cast<double>(us.size());
  return s;
}

json ToJson(const Stats& s) {
  return {{"n", s.n},        {"p50_us", s.p50}, {"p90_us", s.p90},
          {"p99_us", s.p99}, {"max_us", s.max}, {"mean_us", s.mean}};
}

std::string Ms(double us) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3f", us / 1000.0);
  return buf;
}

// ------------------------------------------------ children and clean-up

std::mutex g_cleanup_mu;
std::vector<std::pair<pid_t, std::string>> g_children;  // pid, log path; start order
std::string g_dir;
bool g_keep_dir = false;

void TailLog(const std::string& path, size_t max_bytes = 2000) {
  std::ifstream in(path);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() > max_bytes) text = "..." + text.substr(text.size() - max_bytes);
  std::fprintf(stderr, "---- %s\n%s\n", path.c_str(), text.c_str());
}

// Stops our own children (last started first): SIGTERM, then SIGKILL after
// a grace period. Then removes the temporary directory. Idempotent.
void CleanupLocked(bool show_logs) {
  for (auto it = g_children.rbegin(); it != g_children.rend(); ++it) {
    const pid_t pid = it->first;
    if (pid <= 0) continue;
    if (show_logs) TailLog(it->second);
    kill(pid, SIGTERM);
    const auto give_up = Clock::now() + std::chrono::seconds(5);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > give_up) {
        std::fprintf(stderr, "bench: pid %d ignored SIGTERM for 5 s: SIGKILL\n", pid);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    it->first = 0;
  }
  if (!g_dir.empty() && !g_keep_dir) {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
    g_dir.clear();
  }
}

void Cleanup(bool show_logs) {
  std::lock_guard<std::mutex> lock(g_cleanup_mu);
  CleanupLocked(show_logs);
}

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "bench: %s\n", why.c_str());
  Cleanup(/*show_logs=*/true);
  std::exit(2);
}

// fork + exec of `argv` with stdout and stderr into `log_path`. The child
// dies with us (PR_SET_PDEATHSIG), so a killed bench leaves no daemons.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) Die("cannot open " + log_path);
  const pid_t parent = getpid();
  std::lock_guard<std::mutex> lock(g_cleanup_mu);
  pid_t pid = fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {  // only async-signal-safe calls from here
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  close(null_fd);
  g_children.emplace_back(pid, log_path);
  return pid;
}

bool Alive(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == 0;
}

// Waits for a ready file (JSON) written by `pid`.
json WaitReadyFile(const std::string& path, pid_t pid, std::chrono::seconds limit) {
  const auto give_up = Clock::now() + limit;
  while (Clock::now() < give_up) {
    std::ifstream in(path);
    if (in) {
      json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
      if (!j.is_discarded()) return j;
    }
    if (!Alive(pid)) Die("pid " + std::to_string(pid) + " exited before writing " + path);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Die("no ready file " + path + " after " + std::to_string(limit.count()) + " s");
}

// CPU time (user + system) of a live child, and of the children it reaped.
struct ProcCpu {
  double self_us = 0;
  double reaped_us = 0;
};

ProcCpu ReadProcCpu(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ProcCpu c;
  size_t paren = text.rfind(')');
  if (paren == std::string::npos) return c;
  std::istringstream rest(text.substr(paren + 2));
  std::vector<std::string> f;  // f[0] is field 3 (state)
  for (std::string tok; rest >> tok;) f.push_back(tok);
  if (f.size() < 15) return c;
  const double tick_us = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  c.self_us = (std::stod(f[11]) + std::stod(f[12])) * tick_us;    // utime, stime
  c.reaped_us = (std::stod(f[13]) + std::stod(f[14])) * tick_us;  // cutime, cstime
  return c;
}

double SelfCpuUs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto us = [](const timeval& tv) { return tv.tv_sec * 1e6 + static_cast<double>(tv.tv_usec); };
  return us(ru.ru_utime) + us(ru.ru_stime);
}

struct CpuSnapshot {
  ProcCpu manager, agent;
  double client_us = 0;
};

struct Daemons {
  pid_t manager = 0;
  pid_t agent = 0;
};

CpuSnapshot TakeCpu(const Daemons& d) {
  return {ReadProcCpu(d.manager), ReadProcCpu(d.agent), SelfCpuUs()};
}

// CPU microseconds per execution between two snapshots.
json CpuPerTask(const CpuSnapshot& a, const CpuSnapshot& b, size_t tasks) {
  const double n = static_cast<double>(std::max<size_t>(tasks, 1));
  return {{"manager_us", (b.manager.self_us - a.manager.self_us) / n},
          {"agent_us", (b.agent.self_us - a.agent.self_us) / n},
          {"tasks_us", (b.agent.reaped_us - a.agent.reaped_us) / n},
          {"client_us", (b.client_us - a.client_us) / n}};
}

// ------------------------------------------------------------ the client

// How the client reaches the manager: plaintext (the development mode), or
// mutual-TLS gRPC with a user's token, as every real client does.
struct ClientSecurity {
  bool tls = false;
  std::string ca_pem;
  std::string token;
};
ClientSecurity g_security;

std::unique_ptr<v1::ApiService::Stub> NewStub(const std::string& address) {
  grpc::ChannelArguments args;
  // Each client gets its own connection, as separate client processes would.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (g_security.tls) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = g_security.ca_pem;
    creds = grpc::CompositeChannelCredentials(grpc::SslCredentials(o),
                                              grpc::AccessTokenCredentials(g_security.token));
    args.SetSslTargetNameOverride("manager.flotilla");
  }
  return v1::ApiService::NewStub(grpc::CreateCustomChannel(address, creds, args));
}

// Runs `command` (a flotilla CLI call) and returns its stdout; dies on failure.
std::string Capture(const std::string& command) {
  FILE* f = popen(command.c_str(), "r");
  if (!f) Die("popen: " + command);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  if (pclose(f) != 0) Die("failed: " + command + "\n" + out);
  return out;
}

void SetDeadline(grpc::ClientContext* ctx, std::chrono::seconds s) {
  ctx->set_deadline(std::chrono::system_clock::now() + s);
}

struct Sample {
  double e2e_us = 0;     // Submit sent -> final Watch event read
  double submit_us = 0;  // the Submit RPC alone
  double wall_us = 0;    // result.wall_time_us: the agent's fork -> exit
  bool ok = false;
  std::string error;
};

Sample RunOne(v1::ApiService::Stub& stub) {
  Sample s;
  v1::SubmitRequest req;
  v1::ExecutionRequest* r = req.mutable_request();
  r->mutable_code()->add_argv("true");
  r->set_timeout_ms(30000);
  r->set_name("bench no-op");
  const auto t0 = Clock::now();
  v1::SubmitResponse resp;
  grpc::ClientContext sctx;
  SetDeadline(&sctx, std::chrono::seconds(10));
  grpc::Status st = stub.Submit(&sctx, req, &resp);
  const auto t1 = Clock::now();
  s.submit_us = Us(t1 - t0);
  if (!st.ok()) {
    s.error = "Submit: " + st.error_message();
    return s;
  }
  v1::WatchRequest wreq;
  wreq.set_execution_id(resp.execution().id());
  grpc::ClientContext wctx;
  SetDeadline(&wctx, std::chrono::seconds(30));
  auto reader = stub.Watch(&wctx, wreq);
  v1::WatchEvent ev;
  std::optional<v1::Execution> final;
  Clock::time_point t2;
  while (reader->Read(&ev)) {
    if (ev.has_execution() && !final) {
      t2 = Clock::now();
      final = ev.execution();
    }
  }
  grpc::Status wst = reader->Finish();
  if (!final) {
    s.error = "Watch ended without a final event: " + wst.error_message();
    return s;
  }
  s.e2e_us = Us(t2 - t0);
  s.wall_us = static_cast<double>(final->result().wall_time_us());
  s.ok = final->state() == v1::EXECUTION_SUCCEEDED;
  if (!s.ok) {
    s.error = "ended " + v1::ExecutionState_Name(final->state()) + ": " + final->error() + " " +
              final->result().error();
  }
  return s;
}

void WaitAgentOnline(v1::ApiService::Stub& stub, const std::string& node_id,
                     std::chrono::seconds limit) {
  const auto give_up = Clock::now() + limit;
  while (Clock::now() < give_up) {
    v1::ListNodesResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, std::chrono::seconds(2));
    if (stub.ListNodes(&ctx, v1::ListNodesRequest(), &resp).ok()) {
      for (const auto& n : resp.nodes()) {
        if (n.id() == node_id && n.status() == v1::NODE_ONLINE) return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Die("agent " + node_id + " not online after " + std::to_string(limit.count()) + " s");
}

size_t CountFailures(const std::vector<Sample>& samples, std::string* first_error) {
  size_t failed = 0;
  for (const auto& s : samples) {
    if (s.ok) continue;
    if (failed++ == 0) *first_error = s.error;
  }
  return failed;
}

struct LoadResult {
  int concurrency = 0;
  size_t tasks = 0;
  double seconds = 0;
  double per_second = 0;
  Stats e2e;
  size_t failed = 0;
  std::string first_error;
  json cpu;
};

// `total` runs of `one` spread over `concurrency` threads; each thread first
// runs `prepare` (e.g. connects) and all start together.
template <typename Prepare, typename One>
LoadResult RunLoad(int concurrency, size_t total, Prepare prepare, One one) {
  std::atomic<size_t> next{0};
  std::vector<std::vector<Sample>> per_thread(concurrency);
  std::latch ready(concurrency + 1);
  std::latch go(1);
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) {
    threads.emplace_back([&, i] {
      auto ctx = prepare();
      ready.count_down();
      go.wait();
      while (next.fetch_add(1) < total) per_thread[i].push_back(one(ctx));
    });
  }
  ready.arrive_and_wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  LoadResult r;
  r.concurrency = concurrency;
  std::vector<Sample> all;
  for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
  r.tasks = all.size();
  r.seconds = seconds;
  r.per_second = static_cast<double>(all.size()) / seconds;
  std::vector<double> e2e;
  for (const auto& s : all) e2e.push_back(s.e2e_us);
  r.e2e = Summarize(e2e);
  r.failed = CountFailures(all, &r.first_error);
  return r;
}

// --------------------------------------------------------- fork/exec peer

struct Command {
  std::vector<std::string> argv;
  std::vector<char*> args, env;
  std::vector<std::string> env_strings = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8",
                                          "HOME=/tmp"};
  Command(const Command&) = delete;  // args and env point into this object
  Command& operator=(const Command&) = delete;
  explicit Command(std::vector<std::string> a) : argv(std::move(a)) {
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);
    for (auto& s : env_strings) env.push_back(s.data());
    env.push_back(nullptr);
  }
};

// fork + execve + waitpid: what the agent's process sandbox does at least.
Sample ForkExecOnce(const Command& c) {
  Sample s;
  const auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    execve(c.args[0], c.args.data(), c.env.data());
    _exit(127);
  }
  if (pid < 0) {
    s.error = "fork failed";
    return s;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  s.e2e_us = Us(Clock::now() - t0);
  s.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!s.ok) s.error = c.argv[0] + " exited with status " + std::to_string(status);
  return s;
}

// posix_spawn + waitpid: glibc spawns with clone(CLONE_VM | CLONE_VFORK), so
// the parent's page tables are not copied.
Sample PosixSpawnOnce(const Command& c) {
  Sample s;
  const auto t0 = Clock::now();
  pid_t pid = 0;
  int rc = posix_spawn(&pid, c.args[0], nullptr, nullptr, c.args.data(), c.env.data());
  if (rc != 0) {
    s.error = "posix_spawn failed: " + std::to_string(rc);
    return s;
  }
  int status = 0;
  waitpid(pid, &status, 0);
  s.e2e_us = Us(Clock::now() - t0);
  s.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!s.ok) s.error = c.argv[0] + " exited with status " + std::to_string(status);
  return s;
}

// A peer: a way to run a no-op process from this (multithreaded, gRPC
// client) process, measured with the same loops as Flotilla.
struct Peer {
  Peer(std::string n, std::vector<std::string> argv, Sample (*f)(const Command&),
       size_t every_n = 1, size_t divisor = 1)
      : name(std::move(n)),
        command(std::make_shared<const Command>(std::move(argv))),
        once(f),
        every(every_n),
        load_divisor(divisor) {}
  Sample Run() const { return once(*command); }

  std::string name;
  std::shared_ptr<const Command> command;
  Sample (*once)(const Command&);
  size_t every;         // in the sequential loop, run every `every` iterations
  size_t load_divisor;  // throughput runs do load_total / load_divisor
  std::vector<Sample> samples;
  std::vector<LoadResult> loads;
};

json LoadJson(const LoadResult& l) {
  json j = {{"concurrency", l.concurrency}, {"tasks", l.tasks},     {"seconds", l.seconds},
            {"per_second", l.per_second},   {"e2e", ToJson(l.e2e)}, {"failed", l.failed},
            {"first_error", l.first_error}};
  if (!l.cpu.is_null()) j["cpu_per_task"] = l.cpu;
  return j;
}

std::string Row(const std::string& what, const Stats& s) {
  return "| " + what + " | " + Ms(s.p50) + " | " + Ms(s.p90) + " | " + Ms(s.p99) + " | " +
         Ms(s.max) + " | " + std::to_string(s.n) + " |\n";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"End-to-end latency and throughput of no-op executions through Flotilla"};
  std::string flotilla;
  size_t latency_n = 1000, load_total = 2000, warmup = 50, unary_n = 500;
  std::vector<int> concurrency = {4, 16};
  std::string json_path;
  int time_limit_s = 170;
  bool unshare = false;
  app.add_option("--flotilla", flotilla, "the flotilla binary")->required();
  app.add_option("--latency-n", latency_n, "sequential executions for latency")
      ->capture_default_str();
  app.add_option("--throughput-m", load_total, "executions per throughput run")
      ->capture_default_str();
  app.add_option("--concurrency", concurrency, "client threads, one run each")
      ->capture_default_str();
  app.add_option("--warmup", warmup, "executions before measuring")->capture_default_str();
  app.add_flag("--unshare", unshare, "also measure `unshare -pmuin --fork /bin/true`");
  app.add_option("--json", json_path, "write the figures here as JSON");
  app.add_option("--time-limit-s", time_limit_s, "give up (and clean up) after this long")
      ->capture_default_str();
  app.add_flag("--keep-dir", g_keep_dir, "keep the temporary directory (logs, database)");
  std::string security = "tls";
  app.add_option("--security", security,
                 "tls (mutual TLS and a user token, the default of every deployment) or insecure "
                 "(the development mode), to measure what security costs")
      ->check(CLI::IsMember({"tls", "insecure"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  flotilla = std::filesystem::absolute(flotilla).string();
  if (access(flotilla.c_str(), X_OK) != 0) Die("not an executable: " + flotilla);

  // SIGINT/SIGTERM and the time limit go to one guard thread, which stops
  // our children and removes the directory.
  sigset_t guard_set;
  sigemptyset(&guard_set);
  sigaddset(&guard_set, SIGINT);
  sigaddset(&guard_set, SIGTERM);
  sigaddset(&guard_set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &guard_set, nullptr);
  std::atomic<bool> finished{false};
  const auto hard_deadline = Clock::now() + std::chrono::seconds(time_limit_s);
  std::thread guard([&] {
    while (!finished.load()) {
      timespec slice{0, 100 * 1000 * 1000};
      int sig = sigtimedwait(&guard_set, nullptr, &slice);
      if (finished.load()) return;
      if (sig > 0 || Clock::now() > hard_deadline) {
        if (sig > 0) {
          std::fprintf(stderr, "bench: signal %d: stopping\n", sig);
        } else {
          std::fprintf(stderr, "bench: over --time-limit-s=%d: stopping\n", time_limit_s);
        }
        Cleanup(/*show_logs=*/sig <= 0);
        _exit(sig > 0 ? 128 + sig : 3);
      }
    }
  });

  char tmpl[] = "/tmp/flotilla-bench-XXXXXX";
  if (!mkdtemp(tmpl)) Die("mkdtemp failed");
  {
    std::lock_guard<std::mutex> lock(g_cleanup_mu);
    g_dir = tmpl;
  }
  const std::string dir = tmpl;

  // Certificates and a token, as `flotilla up` makes them.
  const std::string pki = dir + "/pki";
  if (security == "tls") {
    Capture(flotilla + " ca init --dir " + pki);
    Capture(flotilla + " ca issue --manager --ip 127.0.0.1 --dir " + pki);
    Capture(flotilla + " ca issue --node bench-1 --trust 5 --ip 127.0.0.1 --dir " + pki);
    g_security.tls = true;
    g_security.token = Capture(flotilla + " user add bench --tenant default --role admin " +
                               "--users-file " + dir + "/users.json");
    while (!g_security.token.empty() && std::isspace(g_security.token.back())) {
      g_security.token.pop_back();
    }
    std::ifstream ca(pki + "/ca.crt");
    g_security.ca_pem.assign(std::istreambuf_iterator<char>(ca), std::istreambuf_iterator<char>());
    std::ofstream(dir + "/m.yaml") << "tls: {ca: " << pki << "/ca.crt, cert: " << pki
                                   << "/manager.crt, key: " << pki << "/manager.key}\n"
                                   << "auth: {users_file: " << dir << "/users.json}\n";
    std::ofstream(dir + "/a.yaml") << "tls: {ca: " << pki << "/ca.crt, cert: " << pki
                                   << "/bench-1.crt, key: " << pki << "/bench-1.key}\n";
  } else {
    std::ofstream(dir + "/m.yaml") << "tls: {insecure: true}\n";
    std::ofstream(dir + "/a.yaml") << "tls: {insecure: true}\n";
  }

  Daemons d;
  d.manager = Spawn(
      {flotilla, "--log-level", "warn", "manager", "--config", dir + "/m.yaml", "--grpc-listen",
       "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--db", dir + "/m.db", "--ready-file",
       dir + "/m.ready"},
      dir + "/manager.log");
  const std::string address =
      WaitReadyFile(dir + "/m.ready", d.manager, std::chrono::seconds(20)).value("grpc", "");
  if (address.empty()) Die("the manager's ready file has no grpc address");
  d.agent = Spawn(
      {flotilla, "--log-level", "warn", "agent", "--config", dir + "/a.yaml", "--manager-address",
       address, "--id", "bench-1",
       "--listen", "127.0.0.1:0", "--work-dir", dir + "/work", "--ready-file", dir + "/a.ready"},
      dir + "/agent.log");
  auto stub = NewStub(address);
  WaitAgentOnline(*stub, "bench-1", std::chrono::seconds(20));

  json out;
  out["flotilla"] = flotilla;
  out["security"] = security;
  out["params"] = {{"latency_n", latency_n},
                   {"throughput_m", load_total},
                   {"concurrency", concurrency},
                   {"warmup", warmup}};

  // Warm path: connections up, code paged in, SQLite warm.
  for (size_t i = 0; i < warmup; ++i) {
    Sample s = RunOne(*stub);
    if (!s.ok) Die("warm-up execution failed: " + s.error);
  }

  // gRPC floor: a unary round trip that does no work (ListNodes, 1 node).
  std::vector<double> unary;
  for (size_t i = 0; i < unary_n; ++i) {
    v1::ListNodesResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, std::chrono::seconds(5));
    const auto t0 = Clock::now();
    grpc::Status st = stub->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
    unary.push_back(Us(Clock::now() - t0));
    if (!st.ok()) Die("ListNodes: " + st.error_message());
  }
  const Stats unary_stats = Summarize(unary);

  std::vector<Peer> peers;
  peers.emplace_back("fork/exec /bin/true", std::vector<std::string>{"/bin/true"}, ForkExecOnce);
  peers.emplace_back("posix_spawn /bin/true", std::vector<std::string>{"/bin/true"},
                     PosixSpawnOnce);
  if (unshare) {
    peers.emplace_back(
        "unshare -pmuin --fork /bin/true",
        std::vector<std::string>{"/usr/bin/unshare", "-pmuin", "--fork", "/bin/true"}, ForkExecOnce,
        4, 4);
  }
  for (auto& p : peers) {
    for (int i = 0; i < 10; ++i) {
      Sample s = p.Run();
      if (!s.ok) Die(p.name + ": " + s.error);
    }
  }

  // (a) latency, sequential. Each iteration runs one Flotilla execution and
  // then each peer once, so all see the same machine (these are shared,
  // noisy machines). CPU is counted over the Flotilla executions only.
  std::vector<Sample> seq;
  seq.reserve(latency_n);
  CpuSnapshot before = TakeCpu(d);
  double peer_client_us = 0;  // this process's CPU spent on peers, taken out below
  for (size_t i = 0; i < latency_n; ++i) {
    seq.push_back(RunOne(*stub));
    const double c0 = SelfCpuUs();
    for (auto& p : peers) {
      if (i % p.every == 0) p.samples.push_back(p.Run());
    }
    peer_client_us += SelfCpuUs() - c0;
  }
  CpuSnapshot after = TakeCpu(d);
  after.client_us -= peer_client_us;
  // The peers' children are ours, not the agent's: the agent's counters hold
  // only Flotilla's work.
  const json cpu_seq = CpuPerTask(before, after, seq.size());
  std::string seq_error;
  const size_t seq_failed = CountFailures(seq, &seq_error);
  std::vector<double> e2e, submit, wall, rest;
  for (const auto& s : seq) {
    if (!s.ok) continue;
    e2e.push_back(s.e2e_us);
    submit.push_back(s.submit_us);
    wall.push_back(s.wall_us);
    rest.push_back(s.e2e_us - s.submit_us - s.wall_us);
  }
  const Stats e2e_s = Summarize(e2e), submit_s = Summarize(submit), wall_s = Summarize(wall),
              rest_s = Summarize(rest);
  out["latency"] = {
      {"e2e", ToJson(e2e_s)},     {"submit_rpc", ToJson(submit_s)},   {"agent_run", ToJson(wall_s)},
      {"rest", ToJson(rest_s)},   {"unary_rpc", ToJson(unary_stats)}, {"failed", seq_failed},
      {"first_error", seq_error}, {"cpu_per_task", cpu_seq}};

  // (b) throughput, C client threads; after each Flotilla run, the peers
  // with as many threads.
  std::vector<LoadResult> loads;
  for (int conc : concurrency) {
    CpuSnapshot a = TakeCpu(d);
    LoadResult l = RunLoad(
        conc, load_total,
        [&] {
          auto s = NewStub(address);
          v1::ListNodesResponse resp;  // connect before the clock starts
          grpc::ClientContext ctx;
          SetDeadline(&ctx, std::chrono::seconds(5));
          s->ListNodes(&ctx, v1::ListNodesRequest(), &resp);
          return s;
        },
        [](std::unique_ptr<v1::ApiService::Stub>& s) { return RunOne(*s); });
    l.cpu = CpuPerTask(a, TakeCpu(d), l.tasks);
    loads.push_back(std::move(l));
    for (auto& p : peers) {
      p.loads.push_back(RunLoad(
          conc, std::max<size_t>(load_total / p.load_divisor, 50), [] { return 0; },
          [&p](int) { return p.Run(); }));
    }
  }
  json jl = json::array();
  for (const auto& l : loads) jl.push_back(LoadJson(l));
  out["throughput"] = jl;

  json jp = json::array();
  size_t peers_failed = 0;
  for (const auto& p : peers) {
    std::vector<double> us;
    for (const auto& s : p.samples) us.push_back(s.e2e_us);
    std::string first_error;
    size_t failed = CountFailures(p.samples, &first_error);
    json lj = json::array();
    for (const auto& l : p.loads) {
      lj.push_back(LoadJson(l));
      failed += l.failed;
      if (first_error.empty()) first_error = l.first_error;
    }
    if (failed) {
      std::fprintf(stderr, "bench: %s: %zu failed, e.g. %s\n", p.name.c_str(), failed,
                   first_error.c_str());
    }
    peers_failed += failed;
    jp.push_back({{"name", p.name},
                  {"latency", ToJson(Summarize(us))},
                  {"throughput", lj},
                  {"failed", failed},
                  {"first_error", first_error}});
  }
  out["peers"] = jp;

  Cleanup(/*show_logs=*/false);
  finished = true;
  guard.join();

  // ---- report
  std::string md;
  md += "| latency (ms) | p50 | p90 | p99 | max | n |\n|---|---|---|---|---|---|\n";
  md += Row("flotilla submit -> final event", e2e_s);
  md += Row("  Submit RPC alone", submit_s);
  md += Row("  agent run (wall_time_us: fork -> exit)", wall_s);
  md += Row("  rest: dispatch + result + watch", rest_s);
  md += Row("gRPC unary round trip (ListNodes)", unary_stats);
  for (const auto& p : out["peers"]) {
    const json& l = p["latency"];
    Stats st{l["n"].get<size_t>(),      l["p50_us"].get<double>(), l["p90_us"].get<double>(),
             l["p99_us"].get<double>(), l["max_us"].get<double>(), l["mean_us"].get<double>()};
    md += Row(p["name"].get<std::string>(), st);
  }
  md += "\n| throughput | clients | tasks | tasks/s | p50 ms | p99 ms | failed |\n";
  md += "|---|---|---|---|---|---|---|\n";
  auto load_row = [&](const std::string& name, const LoadResult& l) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "| %s | %d | %zu | %.0f | %s | %s | %zu |\n", name.c_str(),
                  l.concurrency, l.tasks, l.per_second, Ms(l.e2e.p50).c_str(),
                  Ms(l.e2e.p99).c_str(), l.failed);
    md += buf;
  };
  for (const auto& l : loads) load_row("flotilla", l);
  for (const auto& p : peers) {
    for (const auto& l : p.loads) load_row(p.name, l);
  }
  md += "\n| CPU per execution (us) | manager | agent | task processes | client |\n";
  md += "|---|---|---|---|---|\n";
  auto cpu_row = [&](const std::string& name, const json& c) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "| %s | %.0f | %.0f | %.0f | %.0f |\n", name.c_str(),
                  c["manager_us"].get<double>(), c["agent_us"].get<double>(),
                  c["tasks_us"].get<double>(), c["client_us"].get<double>());
    md += buf;
  };
  cpu_row("sequential", out["latency"]["cpu_per_task"]);
  for (const auto& l : loads) cpu_row(std::to_string(l.concurrency) + " clients", l.cpu);
  std::fputs(md.c_str(), stdout);

  size_t failed = seq_failed;
  for (const auto& l : loads) {
    failed += l.failed;
    if (l.failed)
      std::fprintf(stderr, "bench: %zu failed, e.g. %s\n", l.failed, l.first_error.c_str());
  }
  failed += peers_failed;
  if (seq_failed)
    std::fprintf(stderr, "bench: %zu failed, e.g. %s\n", seq_failed, seq_error.c_str());
  out["failed"] = failed;
  out["markdown"] = md;
  if (!json_path.empty()) {
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  return failed == 0 ? 0 : 1;
}
