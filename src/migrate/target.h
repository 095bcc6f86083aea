// Target selection for migration (seed 003's select_pop), pure: plain values
// in, a ranked answer out, no I/O and no clock.
//
// A node is feasible when its predicted free capacity holds the execution's
// predicted demand (cpu and memory), it can restore checkpoints and its
// agent proved checkpointing works there (checkpoint/probe.h). Among
// the feasible nodes the cost of finishing there is
//
//   run cost       = (price per cpu-second × predicted cores
//                     + price per GiB-second × predicted GiB) × remaining seconds
//   migration time = image bytes ÷ bandwidth to the node + its restore time
//   migration cost = migration time × the execution's price per second on
//                    the source (what a stalled second costs)
//   cost           = run cost + migration cost
//
// and the cheapest wins (ties: more free memory, then the id). The source
// is never a target: the point is that it has no room. A source whose
// checkpointing is not available cannot be moved at all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::migrate {

struct Demand {
  double cpu_cores = 0;        // predicted, at the forecast's upper level
  int64_t memory_bytes = 0;    // predicted peak
  double remaining_s = 0;      // predicted time left to run
  int64_t image_bytes = 0;     // predicted checkpoint size (≈ resident memory)
};

struct Candidate {
  std::string node_id;
  bool online = true;
  bool can_restore = true;           // a Linux sandbox node (not an unisolated one)
  // Empty when the node's checkpointing is available (its probe passed);
  // otherwise why not: "probing", "unavailable (criu dump timed out ...)".
  std::string checkpoint_unavailable;
  double free_cpu_cores = 0;         // predicted free capacity over the horizon
  int64_t free_memory_bytes = 0;
  double per_cpu_second = 0;         // price per resource-second
  double per_gib_second = 0;
  double bandwidth_bytes_per_s = 0;  // to this node; 0: the option's default
  double restore_s = 0;              // measured restore time; 0: estimated from the options
};

struct Options {
  double default_bandwidth_bytes_per_s = 100e6;  // ~1 Gbit/s
  // Restore time when a node has no measurement: a fixed part plus a part
  // per GiB of image (docs/benchmarks.md: ~0.1 s + ~0.4 s/GiB here).
  double restore_base_s = 0.1;
  double restore_s_per_gib = 0.4;
};

struct Scored {
  std::string node_id;
  bool feasible = false;
  std::string why_not;  // for an infeasible node
  double run_cost = 0;
  double migration_s = 0;
  double migration_cost = 0;
  double cost = 0;
};

struct Choice {
  std::string node_id;
  Scored best;
  std::vector<Scored> ranked;  // every candidate but the source, feasible first by cost
  std::string reason;          // one line for the log and the CLI
};

// The execution's price per second at `demand` on a node with these prices.
double PricePerSecond(const Demand& demand, double per_cpu_second, double per_gib_second);

// OK when `source` (one of `candidates`) can be checkpointed; otherwise
// FailedPrecondition naming the node and why. A source missing from the
// candidates is refused too: nothing says it can checkpoint.
absl::Status CheckSource(const std::string& source, const std::vector<Candidate>& candidates);

// FailedPrecondition (as CheckSource) when the source is among the
// candidates and cannot be checkpointed; NotFound (with each candidate's
// reason) when no node is feasible.
absl::StatusOr<Choice> ChooseTarget(const Demand& demand, const std::string& source_node,
                                    double source_per_cpu_second, double source_per_gib_second,
                                    const std::vector<Candidate>& candidates,
                                    const Options& options = {});

// Scores one named node (an operator's `--to`): its line in the ranking.
Scored ScoreNode(const Demand& demand, double stall_price_per_s, const Candidate& c,
                 const Options& options = {});

}  // namespace flotilla::migrate
