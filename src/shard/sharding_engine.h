// ShardingEngine: decides how many shards each stage of a component runs as
// on one node, and what each shard is — pure, no I/O, no clock.
//
// Model. A stage with input rate λ (messages/s) and CPU time S per message
// needs d = λ·S cores. Split over n shards, each shard is a single-server
// queue at utilisation ρ = d/n; its expected time in system is S/(1-ρ)
// (M/M/1: Kleinrock, Queueing Systems vol. 1, 1975 — a pessimistic but
// monotone model, good enough to rank choices). Starting from one shard a
// stage, the engine adds shards greedily, each time to the stage where one
// more shard saves the most waiting time per second (λ·ΔW; a saturated
// stage first), while:
//   - the node still has CPU for it (shards' CPU together <= node CPU less
//     the reserve, or the component's CPU limit): the contention bound;
//     each shard holds min(1000m, ρ·headroom), at least min_shard_cpu_millis;
//   - the stage has a partition for it (a shard owns >= 1 key partition);
//   - the stage keeps no global state, and max_shards allows it;
//   - the latency it saves is at least `min_saved_us` per message, the cost
//     of one more channel hop and one more process;
//   - memory (instance memory plus its share of keyed state) still fits.
// A stage without a measured rate has no latency model: it gets shards
// until each one's CPU, with headroom, fits in one core.
// The component's priority does not enter here (one component is planned
// at a time); it orders the controller's raises and the placement.
// Every choice is written down as a reason, so `flotilla component plan`
// can show why a stage got the shards it got.
//
// Output: one ShardDefinition per shard (code, resources, data deps,
// partition range) and the shard dependency graph: for a kKey edge, shard
// i of `from` connects to every shard of `to` whose partition range
// overlaps its own; for kShuffle and kBroadcast, to every shard of `to`.
// Each ShardEdge is one single-producer single-consumer channel.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard/component.h"

namespace flotilla::shard {

// What the node can give the component.
struct NodeResources {
  int64_t cpu_millis = 0;  // CPUs the component may use, in millicores
  int64_t memory_bytes = 0;
};

struct ShardingOptions {
  // Smallest expected latency saving per message (µs) that pays for one
  // more shard: a channel hop plus a process (see docs/benchmarks.md).
  double min_saved_us = 2.0;
  // CPU headroom on top of measured demand, so a shard at its limit is not
  // throttled at the first burst.
  double cpu_headroom = 1.25;
  // Kept free on the node for the agent and the channels' wake-ups.
  int64_t reserve_cpu_millis = 0;
  // Every shard holds at least this much CPU (its process, its channel
  // polling): what makes one more shard cost something.
  int64_t min_shard_cpu_millis = 50;
  // One channel hop between stages, for the end-to-end estimate.
  double hop_latency_us = 2.0;
};

struct PartitionRange {
  int begin = 0;  // first partition owned
  int end = 0;    // one past the last
};

struct ShardDefinition {
  std::string id;  // "<stage>/<index>"
  std::string stage;
  int index = 0;
  StageCode code;
  PartitionRange partitions;
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
  int64_t io_bytes_per_s = 0;
  std::vector<std::string> data;    // data dependencies it reads
  std::string state;                // name of the state it holds, "" if none
  double expected_utilisation = 0;  // ρ of the shard under the model
};

struct ShardEdge {
  std::string from;  // shard ids
  std::string to;
  Routing routing = Routing::kShuffle;
};

struct StageDecision {
  std::string stage;
  int shards = 1;
  double demand_cores = 0;     // λ·S
  double service_time_us = 0;  // S
  double latency_one_shard_us = 0;
  double latency_chosen_us = 0;  // per message, under the model
  bool saturated = false;        // ρ >= 1 even with the shards chosen
  std::vector<std::string> reasons;
};

struct ShardPlan {
  std::string component;
  std::vector<StageDecision> stages;  // in spec order
  std::vector<ShardDefinition> shards;
  std::vector<ShardEdge> edges;
  int64_t cpu_millis = 0;  // all shards together
  int64_t memory_bytes = 0;
  // Mean latency along the slowest path from a source stage to a sink
  // (stage latencies plus one hop per edge), when every stage on it has a
  // measured rate; 0 otherwise.
  double path_latency_us = 0;
  std::vector<std::string> warnings;  // e.g. the component does not fit
};

// Plans `spec` for a node with `node` resources, using `measured` (by stage
// name; the spec's declared resources where a stage has none). Returns
// InvalidArgument when a measurement names an unknown stage or the node has
// no CPU; a component that does not fit is planned anyway, with warnings
// and saturated stages, so the caller can decide to move it.
absl::StatusOr<ShardPlan> PlanShards(const ComponentSpec& spec,
                                     const std::map<std::string, StageMeasurement>& measured,
                                     const NodeResources& node, const ShardingOptions& options);

// Expected time in system (µs) of one message at a shard with service time
// `service_us` and utilisation `rho`; infinity when rho >= 1.
double ExpectedLatencyUs(double service_us, double rho);

}  // namespace flotilla::shard
