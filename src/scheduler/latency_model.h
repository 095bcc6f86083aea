// LatencyModel: predicts how long an execution will take on a node, learned
// online from completed executions. It feeds the predicted-latency scorer.
//
// Model. One linear regression per key (function, node class) on
//
//   x = [1, load, memory_pressure, cold_start, log1p(input_bytes)]
//
// predicting latency in milliseconds. load and memory_pressure are the
// node's cpu and memory utilisation (0..1, clamped) when the execution
// started; cold_start is 1 when no warm sandbox was reused. log1p because
// the cost of input grows with its size but far slower than linearly across
// the bytes-to-gigabytes range requests span.
//
// Fit: recursive least squares with exponential forgetting (factor λ, 0.99 by
// default: an effective memory of about 1 / (1 - λ) = 100 executions per key,
// so the model follows a node class whose behaviour drifts) and a ridge prior
// δ on every coefficient but the intercept. The estimate is kept as the RLS
// sufficient statistics A = Σ λ^(n-i) x xᵀ and b = Σ λ^(n-i) y x and solved
// as θ = (A + δ·diag(0,1,1,1,1))⁻¹ b on each Observe, rather than through
// the covariance recursion on P = A⁻¹: with forgetting, that recursion winds
// up (P grows as λ^-n) along any feature that never varies — a key that only
// ever sees warm starts, or one input size — while the non-forgetting ridge
// here holds such a coefficient at 0 and leaves the intercept to carry the
// mean. The result is the RLS estimate; each update is O(d³) for d = 5.
//
// Fallbacks, so a prediction is always available: a key with fewer than
// min_model_observations (5) uses the per-function mean (over every node
// class), then the global mean, then default_ms. Means are plain running
// means over everything observed. Every prediction says which source it
// came from and how many observations stand behind it.
//
// Node class: a string the caller supplies. The manager uses the node's
// labels["class"], or "default" when the label is absent (NodeClassOf).
//
// Keys are never evicted: the model grows with the number of distinct
// (function, node class) pairs, about 300 bytes each.
//
// Pure: no I/O, no clock, no threads, no randomness. Thread-compatible:
// Predict and EvaluateHoldout are const and may run concurrently with each
// other, but not with Observe.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model.h"

namespace flotilla::scheduler {

struct LatencyFeatures {
  std::string function;                // model::ExecutionRequest::function
  std::string node_class = "default";  // NodeClassOf(node)
  double load = 0;                     // 0..1, node cpu utilisation
  double memory_pressure = 0;          // 0..1, node memory utilisation
  bool cold_start = false;
  int64_t input_bytes = 0;
};

// One completed execution.
struct LatencySample {
  LatencyFeatures features;
  double latency_ms = 0;
};

enum class LatencySource { kModel, kFunctionMean, kGlobalMean, kDefault };
// "model", "function-mean", "global", "default".
const char* ToString(LatencySource source);

struct LatencyPrediction {
  double ms = 0;             // >= 0
  int64_t observations = 0;  // behind the source used (0 for kDefault)
  LatencySource source = LatencySource::kDefault;
};

// Error on the later part of a history, for the model and for the
// per-function-mean baseline trained on the same earlier part.
struct HoldoutReport {
  double mae_ms = 0;  // mean absolute error
  double mape = 0;    // mean absolute percentage error as a fraction (0.1 = 10%)
  double baseline_mae_ms = 0;
  double baseline_mape = 0;
  size_t n_train = 0;
  size_t n_test = 0;
  size_t n_test_from_model = 0;  // test predictions the regression made (not a fallback)
};

struct LatencyModelOptions {
  double forgetting_factor = 0.99;  // λ in (0, 1]; 1: never forget
  double ridge = 0.1;               // δ >= 0
  int64_t min_model_observations = 5;
  double default_ms = 1000;  // with nothing observed at all

  // Returns InvalidArgument naming the field when a value is out of range.
  absl::Status Validate() const;
};

// Returns labels["class"] of the node, or "default".
std::string NodeClassOf(const model::HypervisorNode& node);

// Returns the features of running `request` on `node` now: its function, the
// node's class, cpu and memory utilisation from capacity and available, cold
// unless the node has a warm sandbox of the request's template.
LatencyFeatures FeaturesFor(const model::ExecutionRequest& request,
                            const model::HypervisorNode& node);

class LatencyModel {
 public:
  // Requires options.Validate().ok().
  explicit LatencyModel(LatencyModelOptions options = {});

  // Learns from one completed execution. InvalidArgument (and nothing
  // learned) if the latency is negative or any number is not finite.
  absl::Status Observe(const LatencySample& sample);

  // Returns the predicted latency for `features` (see the fallback order).
  LatencyPrediction Predict(const LatencyFeatures& features) const;

  // Trains a fresh model with this model's options on the first
  // (1 - holdout_fraction) of `history` (oldest first), then measures it and
  // the per-function-mean baseline (falling back to the training mean) on the
  // rest, without learning from the test part. This model is unchanged.
  // InvalidArgument if holdout_fraction is not in (0, 1), or either part
  // would be empty, or a sample is invalid.
  absl::StatusOr<HoldoutReport> EvaluateHoldout(std::span<const LatencySample> history,
                                                double holdout_fraction) const;

  // Fills `out` with the key's fitted coefficients, in feature order, and
  // returns true; returns false if the key has no fitted model yet.
  bool CoefficientsForTest(const std::string& function, const std::string& node_class,
                           std::array<double, 5>* out) const;

  const LatencyModelOptions& options() const { return options_; }

 private:
  static constexpr size_t kDim = 5;
  using Vector = std::array<double, kDim>;
  using Matrix = std::array<Vector, kDim>;

  struct KeyState {
    Matrix a{};  // Σ λ^(n-i) x xᵀ
    Vector b{};  // Σ λ^(n-i) y x
    Vector theta{};
    bool solved = false;  // theta is valid
    int64_t observations = 0;
  };
  struct Mean {
    double sum = 0;
    int64_t count = 0;
    double value() const { return sum / static_cast<double>(count); }
  };

  static Vector FeatureVector(const LatencyFeatures& f);
  void Solve(KeyState& state) const;

  LatencyModelOptions options_;
  std::map<std::pair<std::string, std::string>, KeyState> keys_;
  std::map<std::string, Mean> by_function_;
  Mean global_;
};

}  // namespace flotilla::scheduler
