// ResourceController: adjusts the CPU and memory limits of a node's shards
// from their usage and predicted load — pure, no I/O, no clock.
//
// One Decide() call is one control round (the agent calls it every few
// seconds with fresh samples). Rules, after the seed's adjustResources:
//   1. Predict each shard's next-interval usage from its history (Holt's
//      double exponential smoothing: level plus trend, never below the
//      last sample's half — a sharp drop is trusted only gradually).
//   2. Lower: a shard using less than half its limit, and predicted to stay
//      there, gets limit = max(predicted·headroom, min). This runs first,
//      so the room it frees can go to the raises of this round.
//   3. Raise: shards whose predicted load exceeds their limit, highest
//      priority first (ties: the larger deficit), get
//      min(predicted·headroom, limit + free room on the node).
//   4. Move: a shard still short after 3 because the node has no room gets
//      a kMove decision: the node cannot serve it, the caller should place
//      it elsewhere (another node, or after lower-priority shards shrink).
// Every decision carries a reason a person can read in `flotilla top` or a
// log line. Plain values in, plain values out; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flotilla::shard {

struct ShardUsage {
  std::string shard;
  int priority = 0;
  int64_t cpu_limit_millis = 0;
  int64_t memory_limit_bytes = 0;
  // Samples, oldest first, one per control interval.
  std::vector<int64_t> cpu_millis_history;
  std::vector<int64_t> memory_bytes_history;
};

struct ControllerOptions {
  double headroom = 1.2;              // limit = prediction · headroom
  double lower_below_fraction = 0.5;  // "usage below half of the limit"
  int64_t min_cpu_millis = 50;
  int64_t min_memory_bytes = 32ll << 20;
  double smoothing_level = 0.5;  // Holt's alpha
  double smoothing_trend = 0.3;  // Holt's beta
};

struct NodeCapacity {
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
};

enum class Action { kKeep, kRaise, kLower, kMove };

struct ResourceDecision {
  std::string shard;
  Action action = Action::kKeep;
  int64_t cpu_limit_millis = 0;  // the new limits (for kMove: what it has until moved)
  int64_t memory_limit_bytes = 0;
  int64_t predicted_cpu_millis = 0;
  int64_t predicted_memory_bytes = 0;
  std::string reason;
};

// One-step-ahead prediction from `history` (oldest first); 0 when empty.
int64_t PredictNext(const std::vector<int64_t>& history, double alpha, double beta);

// One control round over the shards of one node. Decisions come back in
// the order of `shards`. The sum of the new limits never exceeds `node`
// unless it already did before the round (the controller never raises
// into an over-committed node; it only lowers or moves).
std::vector<ResourceDecision> Decide(const std::vector<ShardUsage>& shards,
                                     const NodeCapacity& node, const ControllerOptions& options);

const char* ActionName(Action action);

}  // namespace flotilla::shard
