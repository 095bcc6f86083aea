// Simulator: a discrete-event simulation of the scheduler's real placement
// code (scheduler::NodeSelection, scheduler::PendingQueue) against simulated
// HypervisorNodes and a generated Trace.
//
// What it models: executions arrive, wait in a PendingQueue, are placed by a
// PlacementPolicy on a node whose `available` resources they then reserve
// until they finish; input data not held by the chosen node is copied to it
// first (counted in bytes moved, and in time when a transfer rate is set);
// nodes fail, the executions running there are lost and re-queued, and the
// nodes come back after repair with their data. Time is simulated, in
// milliseconds; nothing reads a clock or sleeps.
//
// Deterministic: the same cluster, trace, policy name, seed and options
// give identical results, bit for bit. Events at the same instant are
// handled finishes first, then repairs, failures and arrivals, then one
// scheduling pass.
//
// Pure: no I/O, no threads. A PlacementPolicy is stateful (cursors, random
// engines) and is used by one Simulate call at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model.h"
#include "scheduler/node_selection.h"
#include "scheduler/scorers.h"
#include "sim/trace.h"

namespace flotilla::sim {

// Picks a node for one request, given every node as it is now (offline and
// full ones included, so that indices are stable).
class PlacementPolicy {
 public:
  virtual ~PlacementPolicy() = default;
  virtual const std::string& name() const = 0;
  // Returns the index into `nodes` to run `request` on now, or nullopt when
  // no node can take it now. `predictor` is the simulator's own latency
  // model: the request's true run time plus the time to copy the input data
  // the node lacks (an oracle, the best a learned model could do).
  virtual std::optional<size_t> Place(const model::ExecutionRequest& request,
                                      std::span<const model::HypervisorNode> nodes,
                                      const scheduler::LatencyPredictor& predictor) = 0;
};

// The policies `flotilla sim` compares, in table order:
//   "random"       uniformly among the nodes that pass the real filters
//   "round-robin"  the next node, in cluster order, that passes them
//   "seed"         NodeSelection with the seed's default Weights, every
//                  request scored (the seed knew no placement modes)
//   "tuned"        NodeSelection with TunedWeights/TunedOptions, each
//                  request in its own placement mode
//   "bidding"      as tuned, with every request in kBid mode
const std::vector<std::string>& PolicyNames();

// The weights and options of the "tuned" policy (bin-packing, high
// locality); simulator.cc says how they were chosen. "bidding" uses them
// too, with every request in kBid mode.
scheduler::Weights TunedWeights();
scheduler::SelectionOptions TunedOptions();

// Returns the named policy, its randomness drawn from `seed`; InvalidArgument
// listing the known names when `name` is not one of PolicyNames().
absl::StatusOr<std::unique_ptr<PlacementPolicy>> MakePolicy(const std::string& name, uint64_t seed);

// A NodeSelection policy with the given weights and options under `name`;
// each request keeps its own placement mode. For trying weights.
std::unique_ptr<PlacementPolicy> MakeSelectionPolicy(std::string name,
                                                     const scheduler::Weights& weights,
                                                     const scheduler::SelectionOptions& options,
                                                     uint64_t seed);

struct SimOptions {
  // Queued executions that may be tried and found not to fit in one
  // scheduling pass before it stops: the backfilling depth behind the head
  // of the queue. 0 counts as 1.
  size_t lookahead = 32;
  // An execution that waited longer than this in total counts as starved.
  int64_t starvation_threshold_ms = 600'000;
  // Copy rate for input data not held by the chosen node; the copy delays
  // the start of the run. 0: copies take no time (bytes are still counted).
  double transfer_bytes_per_s = 125e6;  // 1 Gbit/s
  // The PendingQueue's ageing (PendingQueue::Options); 0: strict priorities,
  // under which low priorities can starve.
  double aging_points_per_second = 0.1;
};

// One execution's fate.
struct ExecutionRecord {
  enum class Outcome {
    kCompleted,
    kRejected,    // no node could ever run it (NodeSelection::CheckEverFeasible)
    kUnfinished,  // still queued when nothing more could happen
  };
  std::string id;
  Outcome outcome = Outcome::kUnfinished;
  std::string node_id;  // where it last ran; empty if it never started
  int64_t arrival_ms = 0;
  int64_t finish_ms = -1;  // -1 unless completed
  int64_t wait_ms = 0;     // total time queued, over every attempt
  int attempts = 0;        // starts; > 1 after node failures
  int64_t bytes_moved = 0;
  bool missed_slo = false;  // finished after its deadline, or never finished
  bool operator==(const ExecutionRecord&) const = default;
};

struct Metrics {
  std::string policy;
  int64_t arrivals = 0;
  int64_t completed = 0;
  int64_t rejected = 0;
  int64_t unfinished = 0;
  // Time-weighted: cpu reserved by running executions over cpu of online
  // nodes, from 0 to the makespan.
  double utilisation = 0;
  int64_t wait_p50_ms = 0;  // queueing delay over completed executions
  int64_t wait_p99_ms = 0;
  int64_t wait_max_ms = 0;  // starvation: the longest total wait of any execution
  int64_t starved = 0;      // executions that waited more than the threshold
  int64_t makespan_ms = 0;  // when the last execution finished
  int64_t bytes_moved = 0;  // input data copied to the nodes that ran it
  int64_t slo_misses = 0;   // finished after the deadline, or never finished
  int64_t reruns = 0;       // starts lost to node failures and run again
  int64_t decisions = 0;    // PlacementPolicy::Place calls
  double cost = 0;          // node price times resources times seconds reserved
  // Placement spread over the cluster's nodes (idle ones count as 0): the
  // busiest node's share of the executions that ran, and its count over the
  // mean count. 1.0 is a perfectly even spread.
  double busiest_share = 0;
  double max_over_mean = 0;
  bool operator==(const Metrics&) const = default;
};

struct SimResult {
  Metrics metrics;
  std::vector<ExecutionRecord> executions;  // in trace order
};

// The busiest node's share of `per_node` counts and its count over their
// mean ({0, 0} when nothing ran): the placement spread reported by the
// simulator and by the scale check.
struct Spread {
  double busiest_share = 0;
  double max_over_mean = 0;
};
Spread PlacementSpread(std::span<const int64_t> per_node);

// Runs `trace` on a copy of `cluster` (from GenerateCluster, or made by hand;
// Failure::node indexes it) with `policy` until every arrival has completed
// or can never run. Request ids in `trace` must be unique.
SimResult Simulate(std::span<const model::HypervisorNode> cluster, const Trace& trace,
                   PlacementPolicy& policy, const SimOptions& options = {});

}  // namespace flotilla::sim
