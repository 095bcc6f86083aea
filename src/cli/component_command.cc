#include "cli/component_command.h"

#include <cmath>
#include <cstdio>
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
}

}  // namespace flotilla::cli
