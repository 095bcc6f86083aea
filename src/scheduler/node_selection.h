// NodeSelection: picks the HypervisorNode that should run an ExecutionRequest.
//
// The raylet shape: hard filters (scheduler/filters.h) over a snapshot of
// node state, then weighted scorers (scheduler/scorers.h) over the
// survivors, then a choice by the request's placement mode:
//   kScore    the highest score; scores within `tie_epsilon` points tie,
//             broken by fewer running executions and a rendezvous hash,
//             or at random among the best `top_k`, which keeps many
//             managers (or many decisions of one dispatch round) from
//             herding onto one node.
//   kBid      the best `bid_k` by score bid; the lowest bid wins. A bid is
//             CostPerSecond * predicted seconds + predicted seconds *
//             `time_price_per_s`: money spent plus the price of waiting.
//   kCheapest among feasible nodes whose predicted latency is within the
//             request's latency_bound_ms (0: no bound), the lowest
//             CostPerSecond; if none meets the bound, the lowest predicted
//             latency, and the reason says so.
//
// Scale: above `sampling_threshold` nodes, and only when the caller passes an
// rng, a decision examines a uniform sample of k nodes (power-of-k choices;
// k = 2 * ceil(log2 n) unless `sample_k` says otherwise), falling back to a
// full scan when no sampled node fits. Callers keep one node snapshot and
// update entries in place as they place work (subtract the reservation from
// the chosen node's `available`), rather than rebuilding it per decision.
//
// Explanations: with `collect_candidates` each decision carries a verdict per
// examined node (the first failing filter, or per-scorer points that add up
// to the score) and a one-line reason. Without it (the hot path) candidates
// and, on success, the reason stay empty, and a decision allocates nothing
// once the object's scratch buffers have grown to the cluster's size (node
// ids up to 15 characters are copied into Decision::node_id without
// allocating).
//
// Pure: no I/O, no clock, no threads; randomness only from the rng passed in.
// Thread-safety: the const methods may be called concurrently. The Select
// overload that takes an rng reuses scratch buffers inside the object, so it
// is non-const and one object serves one thread at a time; give each thread
// its own copy (NodeSelection is cheap to copy).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model.h"
#include "scheduler/filters.h"
#include "scheduler/scorers.h"

namespace flotilla::scheduler {

struct SelectionOptions {
  AllocationStrategy strategy = AllocationStrategy::kLeastAllocated;

  // kScore: choose at random (with the rng passed to Select) among at most
  // top_k candidates scoring within tie_epsilon points of the best. top_k 1,
  // or no rng: deterministic; candidates within tie_epsilon points of the
  // best tie, and the one with fewer running executions, then the larger
  // rendezvous hash of (request id, node id), then the smaller id wins, so
  // short tasks spread over nodes whose scores differ only by noise while a
  // retry (or another manager) makes the same choice. 0: the best score
  // alone decides, ties broken as above.
  int top_k = 1;
  double tie_epsilon = 1.0;

  // Sample when there are more nodes than this and an rng is given.
  size_t sampling_threshold = 1000;
  // Nodes per sample; 0: 2 * ceil(log2 n), twice the textbook log2 n because
  // a sample must still find a node that passes the filters in a cluster
  // that is mostly full. At least n means a full scan.
  size_t sample_k = 0;

  // kBid: how many of the best by score bid, and the price of one second of
  // predicted completion time in the currency of model::Cost.
  int bid_k = 3;
  double time_price_per_s = 1.0;

  // Build per-candidate verdicts and the reason line. The manager wants
  // them (they are shown to users); benchmarks and the simulator do not.
  bool collect_candidates = true;

  // Returns InvalidArgument naming the field when a value is out of range:
  // top_k or bid_k < 1, tie_epsilon or time_price_per_s negative or not
  // finite.
  absl::Status Validate() const;
};

// One examined node as the scheduler judged it.
struct CandidateVerdict {
  std::string node_id;
  size_t index = 0;  // into the nodes passed to Select
  bool feasible = false;
  std::string rejected_because;  // the first failing filter, e.g. "needs 4000m cpu, 1500m free"
  double score = 0;              // 0..100; 0 when infeasible
  // Per-scorer points, for the scorers with a positive weight in the order
  // cpu, memory, security, locality, geo, warm, latency, cost, balance;
  // they add up to score.
  std::vector<std::pair<std::string, double>> parts;
  double predicted_ms = 0;    // feasible nodes only
  double cost_per_s = 0;      // CostPerSecond of the request here; feasible nodes only
  std::optional<double> bid;  // kBid: set for the nodes that bid
};

struct Decision {
  std::optional<size_t> chosen;  // index into the nodes passed to Select
  std::string node_id;           // empty when nothing fits now
  double score = 0;
  std::string mode = "score";  // "score", "bid" or "cheapest"
  bool sampled = false;        // chosen from a sample rather than a full scan
  std::string reason;          // one human line: why this node, or why none
  // With collect_candidates: one per examined node, in input order (every
  // node for a full scan).
  std::vector<CandidateVerdict> candidates;
};

class NodeSelection {
 public:
  explicit NodeSelection(Weights weights = {}, SelectionOptions options = {});
  // With a filter chain other than DefaultFilters().
  NodeSelection(Weights weights, SelectionOptions options, FilterChain filters);

  // Returns the best feasible node for `request` among `nodes`, examining
  // every node and breaking ties deterministically (score, then fewer
  // running executions, then a rendezvous hash of request and node ids). Placement modes apply,
  // with the default LoadLatencyPredictor.
  Decision Select(const model::ExecutionRequest& request,
                  std::span<const model::HypervisorNode> nodes) const;

  // As above, with sampling and random tie-breaking drawn from `rng` (null:
  // neither) and latency from `predictor` (null: LoadLatencyPredictor).
  // Reuses this object's scratch buffers: not for concurrent use.
  Decision Select(const model::ExecutionRequest& request,
                  std::span<const model::HypervisorNode> nodes, std::mt19937_64* rng,
                  const LatencyPredictor* predictor = nullptr);

  // Returns OK if at least one of `nodes` (online or not, draining or not)
  // could run `request` when idle: its capacity holds the demand, its
  // security profile matches, it offers the required isolation and lies in a
  // required region. Otherwise FailedPrecondition saying what no node
  // offers, e.g. "no node can ever run this: it asks for 64000m cpu but the
  // largest node has 2000m". OK when `nodes` is empty (nodes may still join).
  absl::Status CheckEverFeasible(const model::ExecutionRequest& request,
                                 std::span<const model::HypervisorNode> nodes) const;

  const Weights& weights() const { return weights_; }
  const SelectionOptions& options() const { return options_; }

 private:
  // One feasible node of the decision in progress.
  struct Feasible {
    uint32_t index = 0;    // into nodes
    int32_t verdict = -1;  // into Decision::candidates; -1 when not collecting
    double score = 0;
    double predicted_ms = 0;
    double cost_per_s = 0;
  };
  // Buffers reused across decisions so the hot path does not allocate.
  struct Scratch {
    std::vector<uint32_t> sample;
    std::vector<Feasible> feasible;
    std::vector<uint32_t> pool;  // indices into feasible
    DataLocality locality;
  };

  Decision SelectWith(const model::ExecutionRequest& request,
                      std::span<const model::HypervisorNode> nodes, std::mt19937_64* rng,
                      const LatencyPredictor& predictor, Scratch& scratch) const;
  // Filters and scores nodes[i] for each i in `subset` (every node when
  // `subset` is empty), filling scratch.feasible and, when collecting,
  // decision->candidates.
  void Evaluate(const model::ExecutionRequest& request,
                std::span<const model::HypervisorNode> nodes, std::span<const uint32_t> subset,
                const LatencyPredictor& predictor, Scratch& scratch, Decision* decision) const;
  size_t SampleSize(size_t n) const;

  Weights weights_;
  SelectionOptions options_;
  FilterChain filters_;
  FilterChain ever_filters_;
  std::vector<WeightedScorer> scorers_;
  double weight_sum_ = 0;
  bool needs_latency_ = false;  // a scorer uses predictions
  bool needs_cost_ = false;     // a scorer uses costs
  LoadLatencyPredictor default_predictor_;
  Scratch scratch_;
};

}  // namespace flotilla::scheduler
