// Scorers: the soft preferences of placement. After the filters, each
// surviving HypervisorNode gets a value in 0..1 from every scorer; the
// node's score is 100 * sum(weight_i * scorer_i) / sum(weights), so 0..100,
// and the per-scorer points are its explanation.
//
// The default Weights are the seed's CalculateScore: free cpu 0.3, free
// memory 0.3, security 0.2, data locality 0.2; the newer scorers (geo, warm,
// latency, cost, balance) weigh 0 until configured.
//
// Scorers are immutable and may be called concurrently. Values that depend on
// all candidates of one decision (the largest predicted latency, the largest
// cost, the size of each data key) are computed by NodeSelection first and
// passed in a ScoringContext. Pure: no I/O, no clock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/model.h"

namespace flotilla::scheduler {

struct Weights {
  double cpu = 0.3;       // "cpu": free cpu (or packed cpu, by strategy)
  double memory = 0.3;    // "memory": free memory (or packed memory)
  double security = 0.2;  // "security": how closely the node's trust matches the minimum
  double locality = 0.2;  // "locality": fraction of the request's data bytes on the node
  double geo = 0;         // "geo": position of the node's region among the preferred
  double warm = 0;        // "warm": an idle sandbox of the request's template waits there
  double latency = 0;     // "latency": lower predicted latency
  double cost = 0;        // "cost": lower price for the request's resources
  double balance = 0;     // "balance": lower utilisation after placement

  // Returns weights from a map keyed by the scorer names above; keys left
  // out keep their defaults. InvalidArgument names the key when a key is
  // unknown (listing the known ones), a weight is negative or not finite, or
  // all are zero.
  static absl::StatusOr<Weights> FromMap(const std::map<std::string, double>& values);

  double Sum() const {
    return cpu + memory + security + locality + geo + warm + latency + cost + balance;
  }
};

// How the cpu and memory scorers treat free resources.
enum class AllocationStrategy {
  // Spread: prefer the emptiest node. Scores the free fraction before
  // placement, as the seed did.
  kLeastAllocated,
  // Pack (bin-packing): prefer the fullest node that still fits, leaving
  // whole nodes free for big requests. Scores 1 - free fraction after
  // placement.
  kMostAllocated,
};

// Predicts how long `request` would take to complete on `node`, start to
// finish, in milliseconds. Implementations must be pure and safe to call
// concurrently. LoadLatencyPredictor below is the default; a learned one
// adapts scheduler/latency_model.h's LatencyModel to this interface.
class LatencyPredictor {
 public:
  virtual ~LatencyPredictor() = default;
  virtual double PredictMs(const model::ExecutionRequest& request,
                           const model::HypervisorNode& node) const = 0;
};

// The default predictor, a heuristic from load for when no model is wired:
//   cold_start_ms (0 when a warm sandbox of the request's template waits)
//   + base_ms * (1 + running executions per core of capacity)
// so busy nodes and cold starts look slower. Cores count at least 1.
class LoadLatencyPredictor final : public LatencyPredictor {
 public:
  explicit LoadLatencyPredictor(double base_ms = 100, double cold_start_ms = 250)
      : base_ms_(base_ms), cold_start_ms_(cold_start_ms) {}
  double PredictMs(const model::ExecutionRequest& request,
                   const model::HypervisorNode& node) const override;

 private:
  double base_ms_;
  double cold_start_ms_;
};

// The price per second of running `request`'s resources on `node`:
// per_cpu_second * cores + per_gib_second * GiB of memory.
double CostPerSecond(const model::ExecutionRequest& request, const model::HypervisorNode& node);

// True if node.warm_sandboxes holds an idle sandbox of the request's
// (non-empty) template.
bool HasWarmSandbox(const model::ExecutionRequest& request, const model::HypervisorNode& node);

// Data locality for one decision. A key's size is the largest size any
// observed node reports for it; a node's locality is the share of the
// request's data bytes it holds. When the request names no data, or its data
// has no known size, locality falls back to the share of distinct keys held
// (0 everywhere when no node holds any), so it never distorts the ranking.
//
// Reset and Observe reuse their buffers: after the first decisions they do
// not allocate. Not thread-safe while being filled; Fraction is const.
class DataLocality {
 public:
  // Starts a decision for `request`, keeping pointers to its distinct data
  // keys: `request` must outlive the use of this object.
  void Reset(const model::ExecutionRequest& request);
  // Records the sizes `node` reports for the request's keys.
  void Observe(const model::HypervisorNode& node);

  bool has_data() const { return !keys_.empty(); }
  // Returns 0..1 for `node`.
  double Fraction(const model::HypervisorNode& node) const;

 private:
  std::vector<const std::string*> keys_;  // the request's keys, without duplicates
  std::vector<int64_t> sizes_;            // sizes_[i]: largest observed size of keys_[i]
};

// What one decision knows beyond the request and the node being scored.
struct ScoringContext {
  const DataLocality* locality = nullptr;  // null: locality scores 0
  double predicted_ms = 0;                 // the prediction for the node being scored
  double max_predicted_ms = 0;             // the largest prediction among the candidates
  double max_cost_per_s = 0;               // the largest CostPerSecond among the candidates
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  // The name used in Weights::FromMap and in a candidate's parts.
  virtual const char* name() const = 0;
  // Returns 0..1 (higher is better) for a node that passed the filters.
  virtual double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
                       const ScoringContext& context) const = 0;
};

// "cpu": kLeastAllocated scores available/capacity; kMostAllocated scores
// 1 - (available - demand)/capacity. A node reporting capacity 0 scores 0
// either way.
class CpuScorer final : public Scorer {
 public:
  explicit CpuScorer(AllocationStrategy strategy = AllocationStrategy::kLeastAllocated)
      : strategy_(strategy) {}
  const char* name() const override { return "cpu"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;

 private:
  AllocationStrategy strategy_;
};

// "memory": as CpuScorer, over memory bytes.
class MemoryScorer final : public Scorer {
 public:
  explicit MemoryScorer(AllocationStrategy strategy = AllocationStrategy::kLeastAllocated)
      : strategy_(strategy) {}
  const char* name() const override { return "memory"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;

 private:
  AllocationStrategy strategy_;
};

// "security": how well the node's trust matches the request's minimum,
// 1 - (trust - min) / (10 - min), and 1 when the minimum is 10. A node
// exactly at the minimum scores 1 and a trust-10 node serving a request that
// needs nothing scores 0: over-qualified nodes are kept for the work that
// needs them (the seed's "how well the node's security profile matches the
// code's requirements").
class SecurityScorer final : public Scorer {
 public:
  const char* name() const override { return "security"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "locality": context.locality->Fraction(node); 0 without a DataLocality.
class LocalityScorer final : public Scorer {
 public:
  const char* name() const override { return "locality"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "geo": with n preferred regions, a node whose labels["region"] is the
// preferred region at position p (0-based) scores (n - p) / n: 1 for the
// first, decreasing by position; 0 when its region is not preferred, and 0
// for every node when the request prefers none.
class GeoScorer final : public Scorer {
 public:
  const char* name() const override { return "geo"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "warm": 1 if an idle sandbox of the request's template waits on the node.
class WarmScorer final : public Scorer {
 public:
  const char* name() const override { return "warm"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "latency": 1 - predicted / the largest prediction among the candidates;
// 1 for all when every prediction is 0.
class LatencyScorer final : public Scorer {
 public:
  const char* name() const override { return "latency"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "cost": 1 - CostPerSecond / the largest among the candidates; 1 for all
// when every node is free.
class CostScorer final : public Scorer {
 public:
  const char* name() const override { return "cost"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

// "balance": 1 - the node's utilisation after placement, where utilisation
// is the larger of its reserved cpu and memory fractions, so hot nodes lose.
class BalanceScorer final : public Scorer {
 public:
  const char* name() const override { return "balance"; }
  double Score(const model::ExecutionRequest& request, const model::HypervisorNode& node,
               const ScoringContext& context) const override;
};

struct WeightedScorer {
  std::shared_ptr<const Scorer> scorer;
  double weight = 0;
};

// The scorers with a positive weight, in the order cpu, memory, security,
// locality, geo, warm, latency, cost, balance: the order of a candidate's
// parts.
std::vector<WeightedScorer> ScorersFor(const Weights& weights, AllocationStrategy strategy);

}  // namespace flotilla::scheduler
