// Preemption: which running executions to evict so that a more important
// request can start now.
//
// The manager asks for a plan only after NodeSelection found no node with
// room. PlanPreemption looks at every node the request may run on and at the
// executions running there, and returns at most one plan: a node and the
// victims whose release lets the request fit.
//
// Rules.
//  - Gap: a victim's priority must be <= request.priority - min_priority_gap
//    (10 by default, never below 1). Equal or higher priorities are never
//    evicted, and nearby ones are not either, so close priorities do not
//    thrash.
//  - Eligible nodes: online, not draining, trust level >= the request's
//    minimum, the request's tenant allowed, every required capability
//    granted, and in a required region (labels["region"]) when the request
//    names any. A node failing any of these is never chosen, whatever it runs.
//  - Fit: the node's current `available` plus the victims' resources must
//    hold the request in every dimension (cpu, memory, storage, bandwidth;
//    bandwidth 0 on either side means "not tracked" and never blocks).
//  - Per node, the fewest victims that make it fit; among sets of that size,
//    the smallest total size; then the lowest highest-victim priority; then
//    victim ids. Fewest comes first on purpose: one big eviction is one
//    restarted execution, three small ones are three, and each restart costs
//    a queue trip, a cold start and the work done so far.
//  - Across nodes: fewest victims, then smallest total size, then lowest
//    highest-victim priority, then node id.
//
// Size of an execution: cpu_millis / total_cpu + memory_bytes / total_memory,
// where the totals are the summed capacity of all `nodes` passed in. It is
// dimensionless, weighs a core and a byte by how scarce they are in this
// federation, and is the same yardstick on every node, so totals compare
// across nodes.
//
// Search: exact (every subset of the minimum size is considered) when a
// node's eligible victims leave at most `max_subsets_per_node` subsets to
// examine; beyond that, a greedy cover (largest contribution to the missing
// resources first, then dropping any victim the rest make unnecessary). The
// greedy result can use more victims than the optimum; it is deterministic.
//
// If some eligible node already has room, the plan for it has no victims
// (reason says so): the caller should place normally.
//
// The caller owns what happens next: evict the victims, and push each back
// onto the PendingQueue with its original seq and enqueued_ms (a preempted
// execution is re-queued, not lost), then place the request on the node.
//
// Pure: no I/O, no clock, no threads. Thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace flotilla::scheduler {

// One execution holding resources on a node.
struct RunningExecution {
  std::string id;
  std::string node_id;
  int priority = 0;
  model::Resources resources;  // what it reserved
  int64_t started_ms = 0;
};

struct PreemptionOptions {
  // Victims need priority <= request.priority - min_priority_gap. Values
  // below 1 act as 1: equal priorities never evict each other.
  int min_priority_gap = 10;
  // 0: no limit. Otherwise plans needing more victims than this are refused.
  int max_victims = 0;
  // Bound on subsets examined per node by the exact search (see above).
  int64_t max_subsets_per_node = 100'000;
};

struct PreemptionPlan {
  std::string node_id;
  std::vector<std::string> victims;  // ids, ascending size (smallest first)
  model::Resources freed;            // sum of the victims' resources
  double evicted_size = 0;           // sum of the victims' sizes (see above)
  int max_victim_priority = -1;      // -1 with no victims
  std::string reason;                // one human line
};

// Returns the best plan for `request`, or nullopt when no eligible node can
// hold it even after evicting every eligible victim. `running` may list
// executions on nodes not in `nodes`; they are ignored.
std::optional<PreemptionPlan> PlanPreemption(const model::ExecutionRequest& request,
                                             std::span<const model::HypervisorNode> nodes,
                                             std::span<const RunningExecution> running,
                                             const PreemptionOptions& options = {});

}  // namespace flotilla::scheduler
