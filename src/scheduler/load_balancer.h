// LoadBalancer: keeps every node's utilisation near the federation's average
// by proportional allocation, and marks the nodes that are running hot.
//
// The manager calls Analyze on each dispatch round with its node views and
// the previous report, and feeds the result into placement: Penalties() as a
// score adjustment, or AvoidSet() as nodes to skip while others have room.
//
// Definitions, over the online nodes with some capacity (offline nodes are
// left out; draining nodes count towards the load but take no new work):
//
//  - utilisation u_i: the dominant share, max(cpu used / cpu capacity,
//    memory used / memory capacity), where used = capacity - available,
//    clamped to 0..1. The dominant resource is the one that stops the next
//    placement, as in DRF.
//  - target share c_i: the node's share of the federation's capacity,
//    (cpu_i / total cpu + memory_i / total memory) / 2. Shares sum to 1.
//  - proportional allocation: each node's fair share of the total load is
//    proportional to its capacity, c_i. A node holds exactly its fair share
//    when u_i equals the capacity-weighted average Ū = Σ c_i u_i, which is
//    average_utilisation.
//  - load share: c_i u_i / Σ c_j u_j, the share of the load it actually
//    carries (0 for all when the federation is idle).
//  - overloaded: u_i > Ū + overload_margin (default 0.2), or u_i >
//    overload_absolute (default 0.9). A node marked overloaded in the
//    previous report stays marked until it drops `hysteresis` (0.05) below
//    the limit it crossed, so the mark does not flap around the threshold.
//  - penalty: 0 at or below Ū, rising linearly to 1 at Ū + overload_margin;
//    1 when overloaded.
//  - suggested weight: the share of new work a node should take, ∝ c_i (1 -
//    u_i), its free capacity; 0 for overloaded and draining nodes; summing to
//    1 (or all 0 when nothing can take work). Spreading work in this ratio is
//    the proportional-allocation step: a node at utilisation u fills in
//    proportion to 1 - u, so cooler nodes catch up and utilisations converge.
//
// Pure: no I/O, no clock, no threads. Thread-compatible; const methods may be
// called concurrently.
#pragma once

#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/model.h"

namespace flotilla::scheduler {

struct LoadBalancerOptions {
  double overload_margin = 0.2;    // above the average utilisation
  double overload_absolute = 0.9;  // whatever the average
  double hysteresis = 0.05;        // how far below its limit a marked node must fall

  // Returns InvalidArgument naming the field when a value is outside 0..1 or
  // not finite, or overload_margin is 0 (the penalty divides by it).
  absl::Status Validate() const;
};

struct NodeBalance {
  std::string node_id;
  double cpu_utilisation = 0;     // 0..1
  double memory_utilisation = 0;  // 0..1
  double utilisation = 0;         // max of the two
  double target_share = 0;        // fair share of the load, ∝ capacity
  double load_share = 0;          // share of the load it carries now
  bool accepts_work = true;       // false while draining
  bool overloaded = false;
  double penalty = 0;           // 0..1
  double suggested_weight = 0;  // 0..1, sums to 1 over the report
};

struct BalanceReport {
  double average_utilisation = 0;  // capacity-weighted, Ū
  std::vector<NodeBalance> nodes;  // the online nodes, in input order

  // Returns the node's entry, or nullptr if the report does not hold it.
  const NodeBalance* Find(const std::string& node_id) const;
};

class LoadBalancer {
 public:
  // Requires options.Validate().ok().
  explicit LoadBalancer(LoadBalancerOptions options = {});

  // Returns the balance of `nodes`. `previous` (may be null) is the last
  // report, for hysteresis on the overloaded mark.
  BalanceReport Analyze(std::span<const model::HypervisorNode> nodes,
                        const BalanceReport* previous = nullptr) const;

  // Returns the ids of overloaded nodes that queued work should avoid while
  // other nodes can take it. Empty when every node accepting work is
  // overloaded: avoiding all of them would only idle the federation, and the
  // resource filters still stop what does not fit.
  static std::vector<std::string> AvoidSet(const BalanceReport& report);

  // Returns node id -> penalty (0..1) for every node in the report. A scorer
  // can multiply its 0..100 score by (1 - strength * penalty).
  static std::map<std::string, double> Penalties(const BalanceReport& report);

  const LoadBalancerOptions& options() const { return options_; }

 private:
  LoadBalancerOptions options_;
};

}  // namespace flotilla::scheduler
