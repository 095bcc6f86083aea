// What HTTPS costs on the manager's HTTP port: the REST key-value GET
// (bearer token checked, JSON answer) over plain HTTP and over HTTPS, side by
// side in one process and one run, with fork/exec of /bin/true beside as the
// yardstick a sandboxed execution is measured against (docs/benchmarks.md).
//
//   flotilla_https_bench [--requests N] [--spawns N]
//
// Both servers are the manager's own HttpServer with the real REST routes, the
// same users file and the same in-memory key-value store; only the transport
// differs. "reused" keeps one connection (a browser, an httplib client; the
// SDK's urllib does not, the CLI makes one call per run); "new" opens a
// connection per request, so the HTTPS row pays a full TLS handshake (ECDSA
// P-256, the federation's keys).
#include <httplib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "auth/https_trust.h"
#include "auth/pki.h"
#include "auth/users.h"
#include "kv/memory_kv.h"
#include "manager/http_guard.h"
#include "manager/http_server.h"
#include "manager/rest.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using flotilla::manager::HttpServer;

void Die(const std::string& what) {
  std::fprintf(stderr, "https_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Stats {
  double p50_us, p99_us;
  double cpu_us = 0;  // this process's CPU (client and server) per operation
};

double CpuMicros() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
         ru.ru_stime.tv_usec;
}

Stats Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)]};
}

Stats Time(int n, const std::function<void()>& op) {
  for (int i = 0; i < std::max(5, n / 20); ++i) op();  // warm-up
  std::vector<double> us;
  us.reserve(n);
  const double cpu0 = CpuMicros();
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    op();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double cpu = (CpuMicros() - cpu0) / n;
  Stats s = Summarize(std::move(us));
  s.cpu_us = cpu;
  return s;
}

httplib::Client NewClient(const std::string& address, bool tls, const std::string& ca,
                          const std::string& token) {
  httplib::Client c((tls ? "https://" : "http://") + address);
  if (tls) {
    c.enable_server_certificate_verification(false);
    if (auto st = flotilla::auth::TrustManagerOnly(c.ssl_context(), ca); !st.ok()) {
      Die(std::string(st.message()));
    }
  }
  c.set_bearer_token_auth(token);
  c.set_tcp_nodelay(true);
  return c;
}

void Get(httplib::Client& c) {
  auto r = c.Get("/v1/kv/bench/key");
  if (!r || r->status != 200) Die("GET /v1/kv/bench/key failed");
}

void SpawnTrue() {
  pid_t pid;
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  // fork/exec, as a sandbox's child path does it (not vfork-style spawn).
  pid = fork();
  if (pid == 0) {
    execve("/bin/true", argv, environ);
    _exit(127);
  }
  if (pid < 0) Die("fork");
  int status;
  waitpid(pid, &status, 0);
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 2000;
  int spawns = 500;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--requests")
      requests = std::atoi(argv[i + 1]);
    else if (a == "--spawns")
      spawns = std::atoi(argv[i + 1]);
    else
      Die("usage: flotilla_https_bench [--requests N] [--spawns N]");
  }
  char tmpl[] = "/tmp/flotilla-https-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  namespace auth = flotilla::auth;
  if (!auth::InitCa(dir).ok()) Die("ca init");
  auth::IssueRequest req;
  req.role = auth::Role::kManager;
  req.ips = {"127.0.0.1"};
  auto files = auth::Issue(dir, req, dir + "/manager");
  if (!files.ok()) Die(std::string(files.status().message()));
  auto token = auth::AddUser(dir + "/users.json", {"bench", "default", auth::UserRole::kUser});
  if (!token.ok()) Die(std::string(token.status().message()));
  auto users = auth::UserDirectory::Open(dir + "/users.json");
  if (!users.ok()) Die(std::string(users.status().message()));

  flotilla::kv::MemoryKv kv;
  flotilla::manager::HttpOptions opts;
  opts.gate.users = users->get();
  flotilla::manager::RestServices rest{
      opts.gate, std::make_shared<flotilla::manager::WaitSlots>(8), nullptr, nullptr, &kv, nullptr};
  auto routes = [rest](httplib::Server& s) { flotilla::manager::RegisterRestRoutes(s, rest); };
  auto metrics = [] { return std::string(); };
  auto plain = HttpServer::Start("127.0.0.1:0", metrics, routes, opts);
  opts.tls = flotilla::manager::HttpTls{files->cert, files->key};
  auto tls = HttpServer::Start("127.0.0.1:0", metrics, routes, opts);
  if (!plain.ok() || !tls.ok()) Die("cannot start the servers");

  {
    auto c = NewClient((*plain)->address(), false, "", *token);
    auto r = c.Put("/v1/kv/bench/key", R"({"value":"aGVsbG8gd29ybGQ="})", "application/json");
    if (!r || r->status != 200) Die("PUT failed: " + (r ? r->body : httplib::to_string(r.error())));
  }

  struct Row {
    const char* name;
    Stats s;
  };
  std::vector<Row> rows;
  for (bool use_tls : {false, true}) {
    const std::string addr = use_tls ? (*tls)->address() : (*plain)->address();
    auto reused = NewClient(addr, use_tls, files->ca_cert, *token);
    reused.set_keep_alive(true);
    rows.push_back({use_tls ? "REST KV GET, HTTPS, reused connection"
                            : "REST KV GET, plain HTTP, reused connection",
                    Time(requests, [&] { Get(reused); })});
    // One client (one TLS context, as the SDK keeps one per Client), a new
    // connection per request, as the SDK's urllib makes them.
    auto fresh = NewClient(addr, use_tls, files->ca_cert, *token);
    fresh.set_keep_alive(false);
    rows.push_back({use_tls ? "REST KV GET, HTTPS, new connection (full handshake)"
                            : "REST KV GET, plain HTTP, new connection",
                    Time(requests / 4, [&] { Get(fresh); })});
  }
  rows.push_back({"fork/exec /bin/true + wait", Time(spawns, SpawnTrue)});

  // The fork/exec row's CPU is the parent's only (the child's is not waited
  // into RUSAGE_SELF).
  std::printf(
      "| operation | p50 (µs) | p99 (µs) | CPU of this process per op (µs) |\n"
      "|---|---:|---:|---:|\n");
  for (const auto& r : rows) {
    std::printf("| %s | %.0f | %.0f | %.0f |\n", r.name, r.s.p50_us, r.s.p99_us, r.s.cpu_us);
  }
  (*plain)->Stop();
  (*tls)->Stop();
  std::filesystem::remove_all(dir);
  return 0;
}
