#include "cli/component_command.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/output.h"
#include "shard/component.h"
#include "shard/placement.h"
#include "shard/runtime.h"
#include "shard/sharding_engine.h"
#include "shard/topology.h"

namespace flotilla::cli {
namespace {

using nlohmann::json;

struct PlanFlags {
  std::string file;
  std::string cpus;     // "" → this machine's topology
  std::string memory;   // "" → MemTotal of this machine
  std::string reserve;  // CPU list kept for the agent
  std::string sysfs = "/sys";
  double min_saved_us = shard::ShardingOptions{}.min_saved_us;
  std::string heavy = "700m";
};

int FailComponent(const absl::Status& st) {
  std::fprintf(stderr, "flotilla component: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

// MemTotal of this machine, 0 when unknown (then memory does not bound the plan).
int64_t HostMemory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib * 1024;
  }
  return 0;
}

std::string Us(double us) {
  if (us <= 0) return "-";
  if (std::isinf(us)) return "saturated";
  // ASCII "us": the table pads by bytes.
  return us < 1000 ? absl::StrFormat("%.1fus", us) : absl::StrFormat("%.2fms", us / 1000);
}

json ToJson(const shard::ShardPlan& plan, const shard::NodePlacement& placement,
            const shard::CpuTopology& topology, const shard::NodeResources& node) {
  json j;
  j["component"] = plan.component;
  j["node"] = {{"cpu_millis", node.cpu_millis},
               {"memory_bytes", node.memory_bytes},
               {"cpus", topology.cpus.size()},
               {"cores", topology.cores.size()},
               {"numa_nodes", topology.numa_nodes}};
  j["cpu_millis"] = plan.cpu_millis;
  j["memory_bytes"] = plan.memory_bytes;
  j["path_latency_us"] =
      std::isinf(plan.path_latency_us) ? json(nullptr) : json(plan.path_latency_us);
  j["stages"] = json::array();
  for (const auto& d : plan.stages) {
    auto finite = [](double v) { return std::isinf(v) ? json(nullptr) : json(v); };
    j["stages"].push_back({{"stage", d.stage},
                           {"shards", d.shards},
                           {"demand_cores", d.demand_cores},
                           {"service_time_us", d.service_time_us},
                           {"latency_one_shard_us", finite(d.latency_one_shard_us)},
                           {"latency_chosen_us", finite(d.latency_chosen_us)},
                           {"saturated", d.saturated},
                           {"reasons", d.reasons}});
  }
  j["shards"] = json::array();
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    const auto& s = plan.shards[i];
    const auto& p = placement.shards[i];
    json code = {{"kind", shard::CodeKindName(s.code.kind)}};
    if (s.code.kind == shard::CodeKind::kCommand)
      code["argv"] = s.code.argv;
    else
      code["target"] = s.code.target;
    j["shards"].push_back({{"id", s.id},
                           {"stage", s.stage},
                           {"code", code},
                           {"partitions", {s.partitions.begin, s.partitions.end}},
                           {"cpu_millis", s.cpu_millis},
                           {"memory_bytes", s.memory_bytes},
                           {"io_bytes_per_s", s.io_bytes_per_s},
                           {"data", s.data},
                           {"state", s.state},
                           {"utilisation", s.expected_utilisation},
                           {"cpuset", shard::FormatCpuList(p.cpus)},
                           {"exclusive", p.exclusive},
                           {"numa_node", p.numa_node},
                           {"placement", p.reason}});
  }
  j["edges"] = json::array();
  for (const auto& e : plan.edges) {
    j["edges"].push_back(
        {{"from", e.from}, {"to", e.to}, {"routing", shard::RoutingName(e.routing)}});
  }
  j["shared_pool"] = shard::FormatCpuList(placement.shared_pool);
  j["warnings"] = plan.warnings;
  return j;
}

void PrintPlan(const shard::ShardPlan& plan, const shard::NodePlacement& placement,
               const shard::CpuTopology& topology, const shard::NodeResources& node,
               const std::string& node_source) {
  std::cout << "component " << plan.component << ": " << plan.stages.size() << " stages -> "
            << plan.shards.size() << " shards, " << FormatMillicores(plan.cpu_millis) << " CPU, "
            << FormatBytes(plan.memory_bytes) << " memory, " << plan.edges.size() << " channels\n";
  std::cout << "node: " << topology.cpus.size() << " CPUs in " << topology.cores.size()
            << " cores, " << topology.numa_nodes << " NUMA node"
            << (topology.numa_nodes == 1 ? "" : "s") << " (" << node_source << "); "
            << FormatMillicores(node.cpu_millis) << " CPU"
            << (node.memory_bytes > 0 ? ", " + FormatBytes(node.memory_bytes) + " memory" : "")
            << " offered\n";
  if (plan.path_latency_us > 0) {
    std::cout << "expected latency, slowest path: " << Us(plan.path_latency_us) << " mean\n";
  }
  std::cout << "\n";
  Table stages({"STAGE", "SHARDS", "DEMAND", "SERVICE", "LATENCY 1 SHARD", "LATENCY CHOSEN"});
  for (const auto& d : plan.stages) {
    stages.Add({d.stage, std::to_string(d.shards), absl::StrFormat("%.2f cores", d.demand_cores),
                Us(d.service_time_us), Us(d.latency_one_shard_us), Us(d.latency_chosen_us)});
  }
  std::cout << stages.Render() << "\n";
  for (const auto& d : plan.stages) {
    std::cout << d.stage << ":\n";
    for (const auto& r : d.reasons) std::cout << "  - " << r << "\n";
  }
  std::cout << "\n";
  Table shards({"SHARD", "PARTITIONS", "CPU", "MEMORY", "UTIL", "CPUSET", "PLACEMENT"});
  for (size_t i = 0; i < plan.shards.size(); ++i) {
    const auto& s = plan.shards[i];
    const auto& p = placement.shards[i];
    shards.Add({s.id, absl::StrCat("[", s.partitions.begin, ",", s.partitions.end, ")"),
                FormatMillicores(s.cpu_millis), FormatBytes(s.memory_bytes),
                absl::StrFormat("%.2f", s.expected_utilisation), shard::FormatCpuList(p.cpus),
                p.exclusive ? "exclusive" : "shared"});
  }
  std::cout << shards.Render() << "\n";
  for (const auto& p : placement.shards) std::cout << p.shard << ": " << p.reason << "\n";
  std::cout << "\nchannels (one shared-memory ring each):\n";
  for (const auto& e : plan.edges) {
    std::cout << "  " << e.from << " -> " << e.to << " (" << shard::RoutingName(e.routing) << ")\n";
  }
  if (!plan.warnings.empty()) {
    std::cout << "\nwarnings:\n";
    for (const auto& w : plan.warnings) std::cout << "  ! " << w << "\n";
  }
}

int RunPlan(const PlanFlags& f, bool json_out) {
  auto spec = shard::LoadComponentSpecFile(f.file);
  if (!spec.ok()) return FailComponent(spec.status());

  shard::CpuTopology topology;
  std::string node_source;
  if (!f.cpus.empty()) {
    auto millis = ParseCpu(f.cpus);
    if (!millis.ok() || *millis < 1000 || *millis % 1000 != 0) {
      return FailComponent(absl::InvalidArgumentError(
          absl::StrCat("--cpus '", f.cpus, "': give a whole number of CPUs, e.g. --cpus 8")));
    }
    topology = shard::CpuTopology::Uniform(static_cast<int>(*millis / 1000), 1, 1);
    node_source = "--cpus";
  } else {
    auto read = shard::SysfsTopologyReader(f.sysfs).Read();
    if (!read.ok()) return FailComponent(read.status());
    topology = std::move(*read);
    node_source = absl::StrCat("read from ", f.sysfs);
  }
  shard::PlacementOptions placement_options;
  auto reserved = shard::ParseCpuList(f.reserve);
  if (!reserved.ok()) {
    return FailComponent(
        absl::InvalidArgumentError(absl::StrCat("--reserve: ", reserved.status().message())));
  }
  placement_options.reserved = *reserved;
  auto heavy = ParseCpu(f.heavy);
  if (!heavy.ok())
    return FailComponent(
        absl::InvalidArgumentError(absl::StrCat("--heavy: ", heavy.status().message())));
  placement_options.heavy_cpu_millis = *heavy;

  shard::NodeResources node;
  for (const auto& cpu : topology.cpus) node.cpu_millis += reserved->count(cpu.id) ? 0 : 1000;
  if (!f.memory.empty()) {
    auto bytes = ParseBytes(f.memory);
    if (!bytes.ok())
      return FailComponent(
          absl::InvalidArgumentError(absl::StrCat("--memory: ", bytes.status().message())));
    node.memory_bytes = *bytes;
  } else {
    node.memory_bytes = HostMemory();
  }
  shard::ShardingOptions options;
  options.min_saved_us = f.min_saved_us;

  auto plan = shard::PlanShards(*spec, spec->measured, node, options);
  if (!plan.ok()) return FailComponent(plan.status());
  auto placement = shard::PlaceShards(plan->shards, plan->edges, topology, placement_options);
  if (!placement.ok()) return FailComponent(placement.status());
  if (json_out) {
    std::cout << ToJson(*plan, *placement, topology, node).dump(2) << "\n";
  } else {
    PrintPlan(*plan, *placement, topology, node, node_source);
  }
  return 0;
}

struct RunFlags {
  std::string file;
  int64_t records = 100000;
  std::string kill_shard;
  int64_t kill_after = 0;
  std::string work_dir;
  int deadline_s = 600;
  bool no_pin = false;
  double min_saved_us = shard::ShardingOptions{}.min_saved_us;
};

// Plans `spec` for this machine exactly as `component plan` does with no
// flags (the /sys topology, all CPUs, MemTotal).
absl::Status PlanForThisNode(const shard::ComponentSpec& spec, double min_saved_us,
                             shard::ShardPlan* plan, shard::NodePlacement* placement,
                             shard::CpuTopology* topology) {
  auto read = shard::SysfsTopologyReader("/sys").Read();
  if (!read.ok()) return read.status();
  *topology = std::move(*read);
  shard::NodeResources node;
  node.cpu_millis = 1000 * static_cast<int64_t>(topology->cpus.size());
  node.memory_bytes = HostMemory();
  shard::ShardingOptions sharding;
  sharding.min_saved_us = min_saved_us;
  auto planned = shard::PlanShards(spec, spec.measured, node, sharding);
  if (!planned.ok()) return planned.status();
  auto placed =
      shard::PlaceShards(planned->shards, planned->edges, *topology, shard::PlacementOptions{});
  if (!placed.ok()) return placed.status();
  *plan = std::move(*planned);
  *placement = std::move(*placed);
  return absl::OkStatus();
}

std::string CpuList(const std::set<int>& cpus) { return absl::StrJoin(cpus, ","); }

int RunRun(const RunFlags& f, bool json_out) {
  auto spec = shard::LoadComponentSpecFile(f.file);
  if (!spec.ok()) return FailComponent(spec.status());
  if (auto st = shard::ValidateForRuntime(*spec); !st.ok()) {
    return FailComponent(absl::InvalidArgumentError(absl::StrCat(f.file, ": ", st.message())));
  }
  if (f.records < 1) {
    return FailComponent(absl::InvalidArgumentError(
        absl::StrCat("--records ", f.records, ": give a positive number of records")));
  }
  shard::ShardPlan plan;
  shard::NodePlacement placement;
  shard::CpuTopology topology;
  if (auto st = PlanForThisNode(*spec, f.min_saved_us, &plan, &placement, &topology); !st.ok()) {
    return FailComponent(st);
  }
  if (!f.kill_shard.empty()) {
    bool known = false;
    for (const auto& s : plan.shards) known = known || s.id == f.kill_shard;
    if (!known) {
      std::vector<std::string> ids;
      for (const auto& s : plan.shards) ids.push_back(s.id);
      return FailComponent(absl::InvalidArgumentError(absl::StrCat("--kill-shard ", f.kill_shard,
                                                                   ": no such shard; the plan has ",
                                                                   absl::StrJoin(ids, ", "))));
    }
  }
  shard::RuntimeOptions options;
  std::error_code ec;
  auto spec_dir = std::filesystem::absolute(f.file, ec).parent_path();
  options.stage_dir = spec_dir.string();
  options.work_dir = f.work_dir.empty()
                         ? absl::StrCat(std::filesystem::temp_directory_path().string(),
                                        "/flotilla-component-", spec->name, "-", getpid())
                         : f.work_dir;
  options.records = f.records;
  options.kill_shard = f.kill_shard;
  options.kill_after = f.kill_after;
  options.deadline = std::chrono::seconds(f.deadline_s);
  options.pin = !f.no_pin;
  options.status_file = options.work_dir + "/status.json";
  if (!json_out) {
    std::printf("component %s: %zu shards on %zu CPUs\n", spec->name.c_str(), plan.shards.size(),
                topology.cpus.size());
    for (const auto& placed : placement.shards) {
      std::printf("  %-16s cpus %-8s %s\n", placed.shard.c_str(), CpuList(placed.cpus).c_str(),
                  placed.exclusive ? "exclusive" : "shared");
    }
    std::fflush(stdout);
    options.on_event = [](const std::string& line) {
      std::printf("  event: %s\n", line.c_str());
      std::fflush(stdout);
    };
  }
  auto report = shard::RunComponent(*spec, plan, placement, options);
  if (!report.ok()) return FailComponent(report.status());
  if (json_out) {
    json j;
    j["component"] = spec->name;
    j["records"] = report->source_records;
    j["elapsed_s"] = report->elapsed_s;
    j["records_per_s"] = report->records_per_s;
    j["output_files"] = report->output_files;
    j["shards"] = json::array();
    for (const auto& s : report->shards) {
      j["shards"].push_back({{"id", s.id},
                             {"cpus", std::vector<int>(s.cpus.begin(), s.cpus.end())},
                             {"restarts", s.restarts},
                             {"committed", s.committed},
                             {"published", s.published}});
    }
    j["recoveries"] = json::array();
    for (const auto& r : report->recoveries) {
      j["recoveries"].push_back({{"shard", r.shard},
                                 {"injected", r.injected},
                                 {"committed_at_kill", r.committed_at_kill},
                                 {"restart_ms", r.restart_ms},
                                 {"resume_ms", r.resume_ms}});
    }
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::printf("done: %llu records in %.3f s, %.0f records/s\n",
              static_cast<unsigned long long>(report->source_records), report->elapsed_s,
              report->records_per_s);
  for (const auto& s : report->shards) {
    std::printf("  %-16s committed %-9llu published %-9llu restarts %d\n", s.id.c_str(),
                static_cast<unsigned long long>(s.committed),
                static_cast<unsigned long long>(s.published), s.restarts);
  }
  for (const auto& r : report->recoveries) {
    std::printf("  recovery: %s %s; restarted %.1f ms, resumed %.1f ms after the kill\n",
                r.shard.c_str(), r.injected ? "killed (injected)" : "died", r.restart_ms,
                r.resume_ms);
  }
  for (const auto& file : report->output_files) std::printf("  output: %s\n", file.c_str());
  return 0;
}

// `flotilla component status [DIR...]`: the snapshot each running (or
// finished) `component run` keeps in its work directory. Without DIR, every
// flotilla-component-* directory under the temporary directory.
int RunStatus(const std::vector<std::string>& dirs_in, bool json_out) {
  std::vector<std::string> dirs = dirs_in;
  if (dirs.empty()) {
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
      if (e.path().filename().string().rfind("flotilla-component-", 0) == 0) {
        dirs.push_back(e.path().string());
      }
    }
    std::sort(dirs.begin(), dirs.end());
  }
  json all = json::array();
  for (const auto& dir : dirs) {
    std::ifstream in(dir + "/status.json");
    if (!in) {
      if (!dirs_in.empty()) {
        return FailComponent(absl::NotFoundError(
            absl::StrCat(dir, "/status.json: not found; give the --work-dir of a component run")));
      }
      continue;
    }
    json j = json::parse(in, nullptr, false);
    if (j.is_discarded()) continue;
    j["work_dir"] = dir;
    // A run whose supervisor is gone without writing "done" or "failed".
    if (j.value("state", "") == "running" && kill(j.value("supervisor_pid", 0), 0) != 0) {
      j["state"] = "lost";
    }
    all.push_back(j);
  }
  if (json_out) {
    std::cout << all.dump(2) << "\n";
    return 0;
  }
  if (all.empty()) {
    std::printf("no component runs found\n");
    return 0;
  }
  for (const auto& j : all) {
    std::printf("component %s: %s, %.1f s, supervisor pid %d (%s)\n",
                j.value("component", "?").c_str(), j.value("state", "?").c_str(),
                j.value("elapsed_s", 0.0), j.value("supervisor_pid", 0),
                j["work_dir"].get<std::string>().c_str());
    std::printf("  %-16s %-8s %-10s %-10s %-10s %s\n", "SHARD", "PID", "CPUS", "COMMITTED",
                "PUBLISHED", "RESTARTS");
    for (const auto& s : j["shards"]) {
      std::vector<int> cpus = s["cpus"].get<std::vector<int>>();
      std::printf("  %-16s %-8s %-10s %-10llu %-10llu %d\n", s.value("id", "?").c_str(),
                  s.value("finished", false) ? "-" : std::to_string(s.value("pid", 0)).c_str(),
                  absl::StrJoin(cpus, ",").c_str(),
                  static_cast<unsigned long long>(s.value("committed", 0ull)),
                  static_cast<unsigned long long>(s.value("published", 0ull)),
                  s.value("restarts", 0));
    }
    for (const auto& r : j["recoveries"]) {
      std::printf("  recovery: %s restarted %.1f ms, resumed %.1f ms\n",
                  r.value("shard", "?").c_str(), r.value("restart_ms", 0.0),
                  r.value("resume_ms", 0.0));
    }
  }
  return 0;
}

}  // namespace

void AddComponentCommand(CLI::App& app, int* rc, const bool* json) {
  auto* component = app.add_subcommand("component", "components sharded inside a node");
  component->require_subcommand(1);
  auto flags = std::make_shared<PlanFlags>();
  auto* plan = component->add_subcommand(
      "plan", "show how a node would shard a component spec and pin its shards, and why");
  plan->add_option("file", flags->file, "the component spec (YAML)")->required();
  plan->add_option("--cpus", flags->cpus, "plan for a node of N CPUs instead of this machine");
  plan->add_option("--memory", flags->memory, "node memory (e.g. 16Gi); default: this machine's");
  plan->add_option("--reserve", flags->reserve,
                   "CPUs kept for the agent, as a list (e.g. 0 or 0-1)");
  plan->add_option("--sysfs", flags->sysfs, "root of the sysfs tree to read the topology from");
  plan->add_option("--min-saved-us", flags->min_saved_us,
                   "least latency per message (µs) one more shard must save");
  plan->add_option("--heavy", flags->heavy,
                   "CPU from which a shard gets exclusive cores (e.g. 700m)");
  plan->callback([rc, json, flags] { *rc = RunPlan(*flags, *json); });

  auto run_flags = std::make_shared<RunFlags>();
  auto* run = component->add_subcommand(
      "run", "run a component on this node: shards pinned to cores, shared-memory channels");
  run->add_option("file", run_flags->file, "the component spec (YAML)")->required();
  run->add_option("--records", run_flags->records,
                  "records the generator produces (FLOTILLA_RECORDS); default 100000");
  run->add_option("--kill-shard", run_flags->kill_shard,
                  "SIGKILL this shard (e.g. parse/0) once, to show recovery");
  run->add_option("--after", run_flags->kill_after,
                  "kill it once it has committed this many records");
  run->add_option("--work-dir", run_flags->work_dir,
                  "where journals and sink outputs go; default a new temporary directory");
  run->add_option("--deadline", run_flags->deadline_s, "stop everything after this many seconds");
  run->add_option("--min-saved-us", run_flags->min_saved_us,
                  "least latency per message (µs) one more shard must save (as in plan)");
  run->add_flag("--no-pin", run_flags->no_pin, "do not pin shards to their placement's CPUs");
  run->callback([rc, json, run_flags] { *rc = RunRun(*run_flags, *json); });

  auto status_dirs = std::make_shared<std::vector<std::string>>();
  auto* status = component->add_subcommand(
      "status", "shards, their CPUs, pids, counts and restarts of component runs on this node");
  status->add_option("dir", *status_dirs,
                     "work directories of runs; default every flotilla-component-* under the "
                     "temporary directory");
  status->callback([rc, json, status_dirs] { *rc = RunStatus(*status_dirs, *json); });
}

}  // namespace flotilla::cli
