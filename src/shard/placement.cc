#include "shard/placement.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace flotilla::shard {
namespace {

// The most common value among `values`, or `fallback` when empty; ties go
// to the smaller value so the result does not depend on map order.
int Mode(const std::vector<int>& values, int fallback) {
  std::map<int, int> count;
  for (int v : values) ++count[v];
  int best = fallback;
  int best_n = 0;
  for (const auto& [v, n] : count) {
    if (n > best_n) {
      best = v;
      best_n = n;
    }
  }
  return best;
}

}  // namespace

absl::StatusOr<NodePlacement> PlaceShards(const std::vector<ShardDefinition>& shards,
                                          const std::vector<ShardEdge>& edges,
                                          const CpuTopology& topology,
                                          const PlacementOptions& options) {
  std::set<int> available;
  for (const LogicalCpu& cpu : topology.cpus) {
    if (!options.reserved.count(cpu.id)) available.insert(cpu.id);
  }
  if (available.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("place shards: no CPU left: the topology has ",
                                                   topology.cpus.size(), " and ",
                                                   options.reserved.size(), " are reserved"));
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < shards.size(); ++i) {
    if (!index.emplace(shards[i].id, i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("place shards: shard id '", shards[i].id, "' repeats"));
    }
  }
  std::map<std::string, std::vector<std::string>> neighbours;
  for (const ShardEdge& e : edges) {
    neighbours[e.from].push_back(e.to);
    neighbours[e.to].push_back(e.from);
  }

  // A core is free for exclusive use only when none of its threads is
  // reserved: a shared sibling would defeat the exclusivity.
  std::vector<bool> core_free(topology.cores.size(), false);
  int free_cores = 0;
  for (size_t c = 0; c < topology.cores.size(); ++c) {
    bool all = !topology.cores[c].cpus.empty();
    for (int cpu : topology.cores[c].cpus) all = all && available.count(cpu);
    core_free[c] = all;
    free_cores += all;
  }
  // One core stays back for the shared pool whenever some shard will need
  // the pool: a light shard, or a heavy one that will not fit.
  bool need_pool = false;
  int64_t heavy_cores = 0;
  for (const ShardDefinition& s : shards) {
    if (s.cpu_millis < options.heavy_cpu_millis)
      need_pool = true;
    else
      heavy_cores += (s.cpu_millis + 999) / 1000;
  }
  need_pool = need_pool || heavy_cores > free_cores;
  // Threads of partly reserved cores are in the pool anyway.
  bool pool_seeded = false;
  for (size_t c = 0; c < topology.cores.size(); ++c) {
    for (int cpu : topology.cores[c].cpus)
      pool_seeded = pool_seeded || (!core_free[c] && available.count(cpu));
  }
  const int keep_back = need_pool && !pool_seeded ? 1 : 0;

  NodePlacement out;
  out.shards.resize(shards.size());
  std::vector<bool> placed(shards.size(), false);
  std::map<int, int> numa_of_cpu;
  std::map<int, int> llc_of_cpu;
  for (const LogicalCpu& cpu : topology.cpus) {
    numa_of_cpu[cpu.id] = cpu.numa_node;
    llc_of_cpu[cpu.id] = cpu.llc;
  }
  // Where the already placed neighbours of shard `i` run.
  auto neighbour_sites = [&](size_t i, std::vector<int>* numas, std::vector<int>* llcs,
                             std::vector<std::string>* names) {
    for (const std::string& n : neighbours[shards[i].id]) {
      auto it = index.find(n);
      if (it == index.end() || !placed[it->second]) continue;
      const ShardPlacement& p = out.shards[it->second];
      if (p.cpus.empty()) continue;
      numas->push_back(p.numa_node);
      llcs->push_back(llc_of_cpu[*p.cpus.begin()]);
      names->push_back(n);
    }
  };

  // Heavy shards first, in the caller's order.
  std::vector<size_t> fell_back;
  for (size_t i = 0; i < shards.size(); ++i) {
    const ShardDefinition& s = shards[i];
    if (s.cpu_millis < options.heavy_cpu_millis) continue;
    ShardPlacement& p = out.shards[i];
    p.shard = s.id;
    int need = static_cast<int>((s.cpu_millis + 999) / 1000);
    int spare = free_cores - keep_back;
    if (need > spare) {
      fell_back.push_back(i);
      p.reason =
          absl::StrCat("wanted ", need, " exclusive core", need == 1 ? "" : "s", " for ",
                       s.cpu_millis, "m, ", std::max(0, spare), " free: shares the pool instead");
      continue;
    }
    std::vector<int> numas, llcs;
    std::vector<std::string> names;
    neighbour_sites(i, &numas, &llcs, &names);
    int want_numa = Mode(numas, -1);
    int want_llc = Mode(llcs, -1);
    std::vector<size_t> candidates;
    for (size_t c = 0; c < topology.cores.size(); ++c) {
      if (core_free[c]) candidates.push_back(c);
    }
    // Near the neighbours first; then the LLC group with the most free
    // cores, so one shard's cores stay inside one cache; then core order.
    std::map<int, int> free_in_llc;
    for (size_t c : candidates) ++free_in_llc[topology.cores[c].llc];
    std::stable_sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
      const PhysicalCore& x = topology.cores[a];
      const PhysicalCore& y = topology.cores[b];
      auto key = [&](const PhysicalCore& k) {
        return std::make_tuple(k.numa_node != want_numa, k.llc != want_llc, -free_in_llc[k.llc],
                               k.llc);
      };
      return key(x) < key(y);
    });
    for (int k = 0; k < need; ++k) {
      size_t c = candidates[k];
      core_free[c] = false;
      --free_cores;
      for (int cpu : topology.cores[c].cpus) p.cpus.insert(cpu);
    }
    p.exclusive = true;
    p.numa_node = topology.cores[candidates[0]].numa_node;
    placed[i] = true;
    p.reason =
        absl::StrCat("exclusive: ", need, " core", need == 1 ? "" : "s", " (CPUs ",
                     FormatCpuList(p.cpus), ") for ", s.cpu_millis, "m on NUMA node ", p.numa_node);
    if (!names.empty()) {
      p.reason += absl::StrCat(p.numa_node == want_numa ? ", beside " : ", away from ", names[0]);
    }
  }

  for (int cpu : available) {
    bool taken = false;
    for (const ShardPlacement& p : out.shards) taken = taken || (p.exclusive && p.cpus.count(cpu));
    if (!taken) out.shared_pool.insert(cpu);
  }

  // Light shards (and heavy ones that did not fit) share the pool, on the
  // NUMA node of their neighbours when the pool has CPUs there.
  for (size_t i = 0; i < shards.size(); ++i) {
    if (placed[i]) continue;
    ShardPlacement& p = out.shards[i];
    p.shard = shards[i].id;
    std::vector<int> numas, llcs;
    std::vector<std::string> names;
    neighbour_sites(i, &numas, &llcs, &names);
    int want_numa = Mode(numas, -1);
    std::set<int> local;
    for (int cpu : out.shared_pool) {
      if (numa_of_cpu[cpu] == want_numa) local.insert(cpu);
    }
    p.cpus = local.empty() ? out.shared_pool : local;
    p.numa_node = p.cpus.empty() ? 0 : numa_of_cpu[*p.cpus.begin()];
    placed[i] = true;
    std::string why = p.reason.empty() ? absl::StrCat("light (", shards[i].cpu_millis, "m < ",
                                                      options.heavy_cpu_millis, "m): ")
                                       : p.reason + "; ";
    p.reason = absl::StrCat(why, "shared CPUs ", FormatCpuList(p.cpus),
                            local.empty() ? "" : absl::StrCat(" on NUMA node ", want_numa));
  }
  return out;
}

}  // namespace flotilla::shard
