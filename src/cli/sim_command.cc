#include "cli/sim_command.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/output.h"
#include "sim/manager_cost.h"
#include "sim/prewarm_sim.h"
#include "sim/simulator.h"
#include "sim/trace.h"

namespace flotilla::cli {
namespace {

struct SimFlags {
  sim::TraceOptions trace;
  sim::SimOptions sim;
  std::string policy = "all";
  bool json = false;
  bool prewarm = false;
  sim::PrewarmTraceOptions prewarm_trace;
  sim::PrewarmSimOptions prewarm_sim;
  std::string manager_costs;  // JSON of bench/scale_bench.cc ("" for none)
  double heartbeat_s = 0;     // 0: the interval the costs were measured at
};

// Reads the per-node and per-task costs that flotilla_scale_bench --json
// measured.
absl::StatusOr<sim::ManagerCosts> ReadManagerCosts(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--manager-costs: cannot read `", path, "`"));
  sim::ManagerCosts c;
  try {
    const nlohmann::json j = nlohmann::json::parse(in);
    c.base_rss_kib = j.at("manager_rss_kib_empty").get<double>();
    c.kib_per_idle_node = j.at("manager_kib_per_idle_node").get<double>();
    c.cpu_ms_per_node_second = j.at("manager_cpu_ms_per_node_second").get<double>();
    c.cpu_ms_per_task = j.at("manager_cpu_ms_per_task").get<double>();
    c.heartbeat_interval_s = j.value("heartbeat_interval_s", 1.0);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--manager-costs `", path, "`: ", e.what(), " (write it with flotilla_scale_bench --json)"));
  }
  if (absl::Status st = c.Validate(); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--manager-costs `", path, "`: ", st.message()));
  }
  return c;
}

std::vector<sim::ManagerLoad> ManagerLoads(const sim::ManagerCosts& costs, int64_t nodes,
                                           double rate, double heartbeat_s) {
  std::vector<int64_t> sizes = {1000, 10000};
  if (nodes != 1000 && nodes != 10000) sizes.insert(sizes.begin(), nodes);
  std::vector<sim::ManagerLoad> loads;
  for (int64_t n : sizes) loads.push_back(sim::Extrapolate(costs, n, rate, heartbeat_s));
  return loads;
}

std::string ManagerLoadTable(const std::vector<sim::ManagerLoad>& loads) {
  Table t({"NODES", "TASKS/S", "MANAGER RSS", "HEARTBEAT CORES", "TASK CORES", "TOTAL CORES"});
  for (const auto& l : loads) {
    t.Add({absl::StrCat(l.nodes), absl::StrFormat("%.1f", l.tasks_per_s),
           absl::StrFormat("%.0f MiB", l.rss_mib), absl::StrFormat("%.2f", l.heartbeat_cores),
           absl::StrFormat("%.2f", l.task_cores), absl::StrFormat("%.2f", l.cores())});
  }
  return "manager cost, extrapolated linearly from the measured per-node and per-task costs:\n" +
         t.Render();
}

int FailSim(const absl::Status& st) {
  std::fprintf(stderr, "flotilla sim: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

int64_t TotalCores(const std::vector<model::HypervisorNode>& nodes) {
  int64_t millis = 0;
  for (const auto& n : nodes) millis += n.capacity.cpu_millis;
  return millis / 1000;
}

std::string DescribeTrace(const SimFlags& f, const std::vector<model::HypervisorNode>& nodes,
                          const sim::Trace& trace) {
  const sim::TraceOptions& o = f.trace;
  std::string out;
  absl::StrAppendFormat(&out, "trace: seed %d; %d nodes, %d cores, %d regions\n", o.seed,
                        nodes.size(), TotalCores(nodes), o.regions.size());
  absl::StrAppendFormat(&out,
                        "  %d arrivals over %.0fs: Poisson %.2f/s, diurnal +-%.0f%% per %.0fs, "
                        "bursts of %d with p=%.3f\n",
                        trace.arrivals.size(), o.duration_s, o.arrival_rate_per_s,
                        100 * o.diurnal_amplitude, o.diurnal_period_s, o.burst_size,
                        o.burst_probability);
  absl::StrAppendFormat(&out, "  durations Pareto(shape %.2f, min %.0fs), capped at %.0fs\n",
                        o.duration_shape, o.duration_scale_s, o.max_duration_s);
  absl::StrAppendFormat(&out,
                        "  %d data sets (Pareto sizes from %s), %d replicas each; %.0f%% of "
                        "requests read 1-%d\n",
                        o.data_sets, FormatBytes(o.data_size_min_bytes), o.data_replication,
                        100 * o.data_request_fraction, o.max_data_keys);
  absl::StrAppendFormat(&out,
                        "  priorities high/low %.0f%%/%.0f%%; min trust %.0f%%, capabilities "
                        "%.0f%%, preferred region %.0f%%, bid mode %.0f%%\n",
                        100 * o.high_priority_fraction, 100 * o.low_priority_fraction,
                        100 * o.min_trust_fraction, 100 * o.capability_fraction,
                        100 * o.preferred_region_fraction, 100 * o.bid_fraction);
  absl::StrAppendFormat(&out, "  %d node failures (%.2f per node-hour, mean repair %.0fs)\n",
                        trace.failures.size(), o.failures_per_node_hour, o.mean_repair_s);
  absl::StrAppendFormat(&out,
                        "  SLO: finish by arrival + %.1f x duration + %.0fs; starved: waited > "
                        "%s; lookahead %d\n",
                        o.slo_factor, o.slo_grace_s,
                        FormatDurationMs(f.sim.starvation_threshold_ms), f.sim.lookahead);
  return out;
}

std::string Percent(double fraction) { return absl::StrFormat("%.1f%%", 100 * fraction); }

std::string MetricsTable(const std::vector<sim::Metrics>& rows) {
  Table t({"POLICY", "DONE", "REJECTED", "UTIL", "WAIT P50", "WAIT P99", "MAKESPAN", "DATA MOVED",
           "SLO MISS", "MAX WAIT", "STARVED", "RE-RUNS", "DECISIONS", "COST", "BUSIEST",
           "MAX/MEAN"});
  for (const sim::Metrics& m : rows) {
    t.Add({m.policy, absl::StrCat(m.completed, "/", m.arrivals), absl::StrCat(m.rejected),
           Percent(m.utilisation), FormatDurationMs(m.wait_p50_ms), FormatDurationMs(m.wait_p99_ms),
           FormatDurationMs(m.makespan_ms), FormatBytes(m.bytes_moved), absl::StrCat(m.slo_misses),
           FormatDurationMs(m.wait_max_ms), absl::StrCat(m.starved), absl::StrCat(m.reruns),
           absl::StrCat(m.decisions), absl::StrFormat("%.2f", m.cost), Percent(m.busiest_share),
           absl::StrFormat("%.2f", m.max_over_mean)});
  }
  return t.Render();
}

nlohmann::json ToJson(const sim::Metrics& m) {
  return nlohmann::json{
      {"policy", m.policy},           {"arrivals", m.arrivals},
      {"completed", m.completed},     {"rejected", m.rejected},
      {"unfinished", m.unfinished},   {"utilisation", m.utilisation},
      {"wait_p50_ms", m.wait_p50_ms}, {"wait_p99_ms", m.wait_p99_ms},
      {"wait_max_ms", m.wait_max_ms}, {"starved", m.starved},
      {"makespan_ms", m.makespan_ms}, {"bytes_moved", m.bytes_moved},
      {"slo_misses", m.slo_misses},   {"reruns", m.reruns},
      {"decisions", m.decisions},     {"cost", m.cost},
      {"busiest_share", m.busiest_share}, {"max_over_mean", m.max_over_mean},
  };
}

// `flotilla sim --prewarm`: the three warm-pool policies on one generated
// invocation trace, one row each.
int RunPrewarmSim(const SimFlags& f, bool json) {
  sim::PrewarmTraceOptions to = f.prewarm_trace;
  to.seed = f.trace.seed;
  if (absl::Status st = to.Validate(); !st.ok()) return FailSim(st);
  const sim::PrewarmTrace trace = sim::GeneratePrewarmTrace(to);
  std::vector<sim::PrewarmMetrics> rows;
  const auto began = std::chrono::steady_clock::now();
  for (const std::string& name : sim::PrewarmPolicyNames()) {
    auto m = sim::SimulatePrewarm(trace, name, f.prewarm_sim);
    if (!m.ok()) return FailSim(m.status());
    rows.push_back(*m);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  if (json) {
    nlohmann::json out;
    out["seed"] = to.seed;
    out["functions"] = to.functions;
    out["days"] = to.days;
    out["invocations"] = trace.invocations.size();
    out["policies"] = nlohmann::json::array();
    for (const auto& m : rows) {
      out["policies"].push_back({{"policy", m.policy},
                                 {"invocations", m.invocations},
                                 {"cold_starts", m.cold_starts},
                                 {"cold_start_rate", m.cold_start_rate},
                                 {"idle_sandbox_s", m.idle_sandbox_s},
                                 {"sandboxes_created", m.sandboxes_created},
                                 {"cold_wait_s", m.cold_wait_s}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat(
      "prewarm trace: seed %d; %d functions over %.1f days, %d invocations (base rates %.2g..%.2g/s "
      "log-uniform, daily cycle, %.0f%% sleep %.0fh a night, %.1f bursts/day of %.0fs); "
      "sandbox start %.1fs\n\n",
      to.seed, to.functions, to.days, trace.invocations.size(), to.min_rate_per_s,
      to.max_rate_per_s, 100 * to.idle_fraction, to.idle_hours, to.bursts_per_day, to.burst_s,
      f.prewarm_sim.start_time_s);
  Table t({"POLICY", "INVOCATIONS", "COLD STARTS", "COLD RATE", "IDLE SANDBOX-S", "CREATED",
           "COLD WAIT"});
  for (const auto& m : rows) {
    t.Add({m.policy, absl::StrCat(m.invocations), absl::StrCat(m.cold_starts),
           absl::StrFormat("%.3f%%", 100 * m.cold_start_rate), absl::StrFormat("%.0f", m.idle_sandbox_s),
           absl::StrCat(m.sandboxes_created), absl::StrFormat("%.0fs", m.cold_wait_s)});
  }
  std::cout << t.Render() << std::flush;
  std::fprintf(stderr, "simulated %zu policies in %.2fs\n", rows.size(), seconds);
  return 0;
}

int RunSim(const SimFlags& f, bool json) {
  if (f.prewarm) return RunPrewarmSim(f, json);
  if (absl::Status st = f.trace.Validate(); !st.ok()) return FailSim(st);
  std::vector<std::string> policies = sim::PolicyNames();
  if (f.policy != "all") policies = {f.policy};
  std::vector<std::unique_ptr<sim::PlacementPolicy>> made;
  for (const std::string& name : policies) {
    auto policy = sim::MakePolicy(name, f.trace.seed);
    if (!policy.ok()) {
      return FailSim(absl::InvalidArgumentError(
          absl::StrCat("--policy: ", policy.status().message(), "; or 'all' for every one")));
    }
    made.push_back(std::move(*policy));
  }

  const std::vector<model::HypervisorNode> cluster = sim::GenerateCluster(f.trace);
  const sim::Trace trace = sim::GenerateTrace(f.trace);
  std::vector<sim::Metrics> rows;
  // Wall time is for the user only; the simulation itself reads no clock.
  const auto began = std::chrono::steady_clock::now();
  for (auto& policy : made) rows.push_back(sim::Simulate(cluster, trace, *policy, f.sim).metrics);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();

  std::vector<sim::ManagerLoad> loads;
  if (!f.manager_costs.empty()) {
    auto costs = ReadManagerCosts(f.manager_costs);
    if (!costs.ok()) return FailSim(costs.status());
    loads = ManagerLoads(*costs, static_cast<int64_t>(cluster.size()), f.trace.arrival_rate_per_s,
                         f.heartbeat_s);
  }
  if (json) {
    nlohmann::json out;
    for (const auto& l : loads) {
      out["manager_extrapolation"].push_back({{"nodes", l.nodes},
                                              {"tasks_per_s", l.tasks_per_s},
                                              {"rss_mib", l.rss_mib},
                                              {"heartbeat_cores", l.heartbeat_cores},
                                              {"task_cores", l.task_cores}});
    }
    out["seed"] = f.trace.seed;
    out["nodes"] = cluster.size();
    out["arrivals"] = trace.arrivals.size();
    out["failures"] = trace.failures.size();
    out["duration_s"] = f.trace.duration_s;
    out["rate_per_s"] = f.trace.arrival_rate_per_s;
    out["policies"] = nlohmann::json::array();
    for (const sim::Metrics& m : rows) out["policies"].push_back(ToJson(m));
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << DescribeTrace(f, cluster, trace) << "\n" << MetricsTable(rows) << std::flush;
  if (!loads.empty()) std::cout << "\n" << ManagerLoadTable(loads) << std::flush;
  std::fprintf(stderr, "simulated %zu policies in %.2fs\n", rows.size(), seconds);
  return 0;
}

}  // namespace

void AddSimCommand(CLI::App& app, int* rc) {
  auto flags = std::make_shared<SimFlags>();
  CLI::App* sim = app.add_subcommand(
      "sim",
      "simulate the scheduler on a generated trace and compare placement policies (random, "
      "round-robin, seed, tuned, bidding)");
  sim->add_option("--seed", flags->trace.seed, "seed of the cluster, trace and policies")
      ->capture_default_str();
  sim->add_option("--nodes", flags->trace.nodes, "simulated nodes")->capture_default_str();
  sim->add_option("--duration", flags->trace.duration_s, "seconds during which work arrives")
      ->capture_default_str();
  sim->add_option("--rate", flags->trace.arrival_rate_per_s, "mean arrivals per second")
      ->capture_default_str();
  sim->add_option("--policy", flags->policy, "all, random, round-robin, seed, tuned or bidding")
      ->capture_default_str();
  sim->add_option("--failure-rate", flags->trace.failures_per_node_hour,
                  "node failures per node-hour")
      ->capture_default_str();
  sim->add_option("--lookahead", flags->sim.lookahead,
                  "queued executions a scheduling pass may skip (backfilling depth)")
      ->capture_default_str();
  sim->add_flag("--json", flags->json, "print JSON instead of a table");
  sim->add_option("--manager-costs", flags->manager_costs,
                  "JSON of flotilla_scale_bench --json: also extrapolate the manager's memory and "
                  "CPU to 1,000 and 10,000 nodes at --rate");
  sim->add_option("--heartbeat-s", flags->heartbeat_s,
                  "with --manager-costs: the agents' heartbeat interval to extrapolate to "
                  "(default: the measured one)");
  sim->add_flag("--prewarm", flags->prewarm,
                "simulate warm-pool policies instead (fixed 10-minute keep-alive, reactive, "
                "predictive) on a generated invocation trace");
  sim->add_option("--functions", flags->prewarm_trace.functions, "with --prewarm: functions")
      ->capture_default_str();
  sim->add_option("--days", flags->prewarm_trace.days, "with --prewarm: days of invocations")
      ->capture_default_str();
  sim->add_option("--start-time", flags->prewarm_sim.start_time_s,
                  "with --prewarm: seconds to make one sandbox")
      ->capture_default_str();
  sim->callback([&app, flags, rc] {
    // `flotilla --json sim` sets the global flag rather than ours.
    const CLI::Option* global_json = app.get_option_no_throw("--json");
    const bool json = flags->json || (global_json != nullptr && global_json->count() > 0);
    *rc = RunSim(*flags, json);
  });
}

}  // namespace flotilla::cli
