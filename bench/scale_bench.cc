// flotilla_scale_bench: one manager and N agents (default 50), each in a
// network namespace of its own (netlab), registering, heartbeating, then
// running M no-op tasks (default 10,000); reports the manager's CPU and
// memory per node and per task, and the placement spread. Needs root.
//
// The agents are lightweight on purpose — isolation "process" (no
// sandboxes, allowed only with trusted_development_node) — because the
// subject is the manager: 50 full agents with warm pools would not fit two
// cores. Everything runs with mutual TLS, as in production.
//
// Phases, each measured from /proc/<manager pid>/{stat,status}:
//   empty       the manager alone, idle for --idle-s
//   registered  N agents online, idle (heartbeats only) for --idle-s
//   tasks       M tasks of argv ["true"], submitted by --clients threads
// Prints a markdown table; --json writes the figures (for `flotilla sim
// --node-cost-json`, which extrapolates them to 1,000 and 10,000 nodes).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "netlab/netlab.h"
#include "support/federation_harness.h"

namespace {

using flotilla::testing::FederationHarness;
namespace v1 = ::flotilla::v1;
using Clock = std::chrono::steady_clock;

struct Sample {
  double cpu_s = 0;      // utime + stime
  int64_t rss_kib = 0;   // VmRSS
  int64_t threads = 0;
};

Sample Read(pid_t pid) {
  Sample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::vector<std::string> f;
  for (std::string x; rest >> x;) f.push_back(x);
  // After "pid (comm) ": state is field 3, utime 14, stime 15, num_threads 20.
  if (f.size() > 17) {
    const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / hz;
    s.threads = std::stoll(f[17]);
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kib = std::stoll(line.substr(6));
  }
  return s;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"one manager and N agents in network namespaces: manager cost per node and per task"};
  int nodes = 50, tasks = 10000, clients = 8, idle_s = 10, trust_levels = 10;
  int64_t lease_ms = 10000;
  std::string json_out;
  bool insecure = false;
  app.add_flag("--insecure", insecure,
               "plaintext gRPC (development mode), to see what mutual TLS costs per node");
  app.add_option("--nodes", nodes)->capture_default_str();
  app.add_option("--tasks", tasks)->capture_default_str();
  app.add_option("--clients", clients, "submitting threads")->capture_default_str();
  app.add_option("--idle-s", idle_s, "seconds of each idle measurement")->capture_default_str();
  app.add_option("--lease-timeout-ms", lease_ms)->capture_default_str();
  app.add_option("--trust-levels", trust_levels,
                 "node i gets trust 1 + i % N: with the default 10 the security scorer prefers "
                 "the trust-1 nodes; 1 makes every node equal")
      ->check(CLI::Range(1, 10))
      ->capture_default_str();
  app.add_option("--json", json_out, "write the figures here");
  CLI11_PARSE(app, argc, argv);
  if (geteuid() != 0) {
    std::cerr << "flotilla_scale_bench: needs root (network namespaces)\n";
    return 2;
  }

  auto lab = flotilla::netlab::Lab::Create();
  if (!lab.ok()) {
    std::cerr << lab.status() << "\n";
    return 1;
  }
  nlohmann::json out;
  int rc = 0;
  {
    FederationHarness h(insecure);
    h.UseHosts(lab->get());
    const auto t_hosts = Clock::now();
    for (int i = 0; i < nodes; ++i) {
      if (auto st = (*lab)->AddHost("n" + std::to_string(i)); !st.ok()) {
        std::cerr << st.status() << "\n";
        return 1;
      }
    }
    const double hosts_s = Seconds(Clock::now() - t_hosts);
    h.StartManager(lease_ms);
    const pid_t mgr = h.manager_pid();

    std::this_thread::sleep_for(std::chrono::seconds(2));  // start-up settles
    Sample e0 = Read(mgr);
    std::this_thread::sleep_for(std::chrono::seconds(idle_s));
    Sample e1 = Read(mgr);

    const auto t_reg = Clock::now();
    for (int i = 0; i < nodes; ++i) {
      flotilla::testing::AgentSpec spec;
      spec.id = "n" + std::to_string(i);
      spec.trust = 1 + i % trust_levels;
      spec.cpu_millis = 4000;
      spec.memory_bytes = 4ll << 30;
      spec.extra_config = "isolation: process\ntrusted_development_node: true\n";
      h.StartAgent(spec);
    }
    if (!h.WaitOnline(static_cast<size_t>(nodes), std::chrono::seconds(120))) {
      std::cerr << "not every agent came online in 120 s\n";
      return 1;
    }
    const double register_s = Seconds(Clock::now() - t_reg);
    std::this_thread::sleep_for(std::chrono::seconds(2));
    Sample r0 = Read(mgr);
    std::this_thread::sleep_for(std::chrono::seconds(idle_s));
    Sample r1 = Read(mgr);

    // Tasks: each client thread submits its share, then waits for each.
    std::vector<std::string> ids(static_cast<size_t>(tasks));
    std::map<std::string, int> per_node;
    std::mutex mu;
    std::atomic<int> failed{0};
    const auto t_tasks = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        auto stub = v1::ApiService::NewStub(h.UserChannel(h.token()));
        for (int i = c; i < tasks; i += clients) {
          v1::SubmitRequest req;
          *req.mutable_request() = FederationHarness::Command({"true"});
          v1::SubmitResponse resp;
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
          if (stub->Submit(&ctx, req, &resp).ok()) {
            ids[static_cast<size_t>(i)] = resp.execution().id();
          } else {
            ++failed;
          }
        }
        const auto deadline = Clock::now() + std::chrono::seconds(600);
        for (int i = c; i < tasks; i += clients) {
          const std::string& id = ids[static_cast<size_t>(i)];
          if (id.empty()) continue;
          while (Clock::now() < deadline) {
            v1::GetRequest g;
            g.set_execution_id(id);
            v1::Execution e;
            grpc::ClientContext ctx;
            ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
            if (stub->Get(&ctx, g, &e).ok() && e.state() >= v1::EXECUTION_SUCCEEDED) {
              if (e.state() != v1::EXECUTION_SUCCEEDED) ++failed;
              std::lock_guard<std::mutex> lock(mu);
              ++per_node[e.node_id()];
              break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    const double tasks_s = Seconds(Clock::now() - t_tasks);
    Sample t1 = Read(mgr);

    int done = 0, max_share = 0;
    for (const auto& [node, n] : per_node) {
      done += n;
      max_share = std::max(max_share, n);
    }
    const double mean_share = per_node.empty() ? 0 : static_cast<double>(done) / nodes;
    const double idle_node_kib = static_cast<double>(r1.rss_kib - e1.rss_kib) / nodes;
    const double hb_cpu_ms_per_node_s =
        1000.0 * ((r1.cpu_s - r0.cpu_s) - (e1.cpu_s - e0.cpu_s)) / idle_s / nodes;
    const double task_cpu_ms = 1000.0 * (t1.cpu_s - r1.cpu_s) / std::max(done, 1);
    const double task_kib = static_cast<double>(t1.rss_kib - r1.rss_kib) / std::max(done, 1);

    out = {{"nodes", nodes},
           {"insecure", insecure},
           {"tasks", tasks},
           {"tasks_done", done},
           {"tasks_failed", failed.load()},
           {"hosts_setup_s", hosts_s},
           {"register_s", register_s},
           {"tasks_s", tasks_s},
           {"tasks_per_s", done / std::max(tasks_s, 1e-9)},
           {"manager_rss_kib_empty", e1.rss_kib},
           {"manager_rss_kib_registered", r1.rss_kib},
           {"manager_rss_kib_after_tasks", t1.rss_kib},
           {"manager_threads_registered", r1.threads},
           {"manager_kib_per_idle_node", idle_node_kib},
           {"manager_cpu_ms_per_node_second", hb_cpu_ms_per_node_s},
           {"manager_cpu_ms_per_task", task_cpu_ms},
           {"manager_kib_per_task", task_kib},
           {"placement_nodes_used", per_node.size()},
           {"placement_max_share", max_share},
           {"placement_mean_share", mean_share},
           {"placement_max_over_mean", mean_share > 0 ? max_share / mean_share : 0}};
    std::printf(
        "| figure | value |\n|---|---|\n"
        "| nodes (agents in namespaces, process isolation) | %d |\n"
        "| host namespaces made | %.2f s (%.0f ms each) |\n"
        "| all registered | %.2f s |\n"
        "| manager RSS: empty / %d nodes idle / after %d tasks | %lld / %lld / %lld KiB |\n"
        "| manager memory per idle node | %.1f KiB (target <= 50) |\n"
        "| manager CPU per node (heartbeats, 1/s) | %.3f ms per node-second |\n"
        "| tasks done / failed | %d / %d in %.1f s (%.0f /s) |\n"
        "| manager CPU per task | %.3f ms |\n"
        "| manager RSS growth per task | %.3f KiB |\n"
        "| placement: nodes used, max / mean share | %zu, %d / %.1f (%.2fx) |\n",
        nodes, hosts_s, 1000 * hosts_s / nodes, register_s, nodes, done,
        static_cast<long long>(e1.rss_kib), static_cast<long long>(r1.rss_kib),
        static_cast<long long>(t1.rss_kib), idle_node_kib, hb_cpu_ms_per_node_s, done,
        failed.load(), tasks_s, done / std::max(tasks_s, 1e-9), task_cpu_ms, task_kib,
        per_node.size(), max_share, mean_share, mean_share > 0 ? max_share / mean_share : 0);
    if (done != tasks) rc = 1;
  }  // the harness stops every process before the lab removes the hosts
  if (!json_out.empty()) std::ofstream(json_out) << out.dump(2) << "\n";
  return rc;
}
