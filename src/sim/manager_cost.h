// ManagerCost: the manager's memory and CPU at a given number of nodes and
// task rate, extrapolated linearly from per-node and per-task costs measured
// on a real federation (bench/scale_bench.cc, which writes them as JSON).
//
// The model: memory = base + nodes x per-idle-node; CPU = nodes x
// per-node-second (heartbeats at the measured interval, scaled to the
// interval asked for) + tasks/s x per-task. It knows nothing of effects
// that appear only at scale (lock contention, the dispatcher's scan over
// nodes, connection limits): read the result as a floor, and re-measure at
// larger sizes before relying on it. Pure: no I/O, no clock.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace flotilla::sim {

struct ManagerCosts {
  double base_rss_kib = 0;             // the manager with no nodes
  double kib_per_idle_node = 0;        // registered, heartbeating, no tasks
  double cpu_ms_per_node_second = 0;   // at heartbeat_interval_s
  double heartbeat_interval_s = 1;
  double cpu_ms_per_task = 0;          // submit, placement, dispatch, result, state
  absl::Status Validate() const;
};

struct ManagerLoad {
  int64_t nodes = 0;
  double tasks_per_s = 0;
  double rss_mib = 0;
  double heartbeat_cores = 0;  // cores spent on heartbeats
  double task_cores = 0;       // cores spent on tasks
  double cores() const { return heartbeat_cores + task_cores; }
};

// Returns the extrapolated load; `heartbeat_interval_s` <= 0 keeps the
// measured interval.
ManagerLoad Extrapolate(const ManagerCosts& costs, int64_t nodes, double tasks_per_s,
                        double heartbeat_interval_s = 0);

}  // namespace flotilla::sim
