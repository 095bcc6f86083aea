// ShardPlacement: pins a node's shards to CPUs — pure, no I/O.
//
// Given the shards of one or more ShardPlans and the node's CpuTopology, it
// gives every shard a cpuset:
//   - a CPU-heavy shard (cpu_millis >= heavy_cpu_millis) gets exclusive
//     physical cores, ceil(cpu/1000) of them, with all their SMT siblings,
//     so no other shard's thread competes for the core's pipelines and L1/L2
//     (a sibling thread can cost a busy shard a large part of its
//     throughput);
//   - light shards share the CPUs nobody holds exclusively.
// Cores are taken NUMA node by NUMA node and, inside a node, last-level
// cache group by group, and a shard prefers the NUMA node and LLC of the
// shards it already talks to (its ShardEdges), because the shared-memory
// channel between two shards is cheapest inside one cache.
// CPUs in `reserved` (the agent's own) are never handed out.
// When too few cores are free, the heavy shards that come last (in the
// caller's order: put higher priority first) fall back to the shared pool,
// and the placement says so in their reason; nothing fails silently.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard/sharding_engine.h"
#include "shard/topology.h"

namespace flotilla::shard {

struct PlacementOptions {
  int64_t heavy_cpu_millis = 700;
  std::set<int> reserved;  // logical CPU ids kept for the agent
};

struct ShardPlacement {
  std::string shard;
  std::set<int> cpus;
  bool exclusive = false;
  int numa_node = 0;
  std::string reason;
};

struct NodePlacement {
  std::vector<ShardPlacement> shards;  // in the order given
  std::set<int> shared_pool;           // CPUs the light shards share
};

// Returns the placement of `shards` (edges give the neighbours). Returns
// InvalidArgument when the topology has no CPU left after `reserved`, or a
// shard id is repeated.
absl::StatusOr<NodePlacement> PlaceShards(const std::vector<ShardDefinition>& shards,
                                          const std::vector<ShardEdge>& edges,
                                          const CpuTopology& topology,
                                          const PlacementOptions& options);

}  // namespace flotilla::shard
