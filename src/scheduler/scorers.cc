#include "scheduler/scorers.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "scheduler/filters.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr int kMaxTrust = 10;
constexpr const char* kKnownWeights =
    "cpu, memory, security, locality, geo, warm, latency, cost, balance";

double Clamp01(double value) { return std::clamp(value, 0.0, 1.0); }

double FreeFraction(int64_t available, int64_t capacity) {
  if (capacity <= 0) return 0;
  return Clamp01(static_cast<double>(available) / static_cast<double>(capacity));
}

double ByStrategy(AllocationStrategy strategy, int64_t available, int64_t demand,
                  int64_t capacity) {
  if (capacity <= 0) return 0;
  if (strategy == AllocationStrategy::kLeastAllocated) return FreeFraction(available, capacity);
  return 1 - FreeFraction(available - demand, capacity);
}

}  // namespace

absl::StatusOr<Weights> Weights::FromMap(const std::map<std::string, double>& values) {
  Weights weights;
  const std::pair<const char*, double*> slots[] = {
      {"cpu", &weights.cpu},           {"memory", &weights.memory}, {"security", &weights.security},
      {"locality", &weights.locality}, {"geo", &weights.geo},       {"warm", &weights.warm},
      {"latency", &weights.latency},   {"cost", &weights.cost},     {"balance", &weights.balance},
  };
  for (const auto& [key, value] : values) {
    double* slot = nullptr;
    for (const auto& [name, target] : slots) {
      if (key == name) slot = target;
    }
    if (slot == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown scheduler weight '", key, "' (known: ", kKnownWeights, ")"));
    }
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "scheduler weight '%s' must be a finite number >= 0, got %g", key, value));
    }
    *slot = value;
  }
  if (weights.Sum() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler weights are all zero; at least one of ", kKnownWeights, " must be positive"));
  }
  return weights;
}

double LoadLatencyPredictor::PredictMs(const ExecutionRequest& request,
                                       const HypervisorNode& node) const {
  const double cores = std::max(1.0, static_cast<double>(node.capacity.cpu_millis) / 1000.0);
  const double load = static_cast<double>(std::max(0, node.running_executions)) / cores;
  const double cold = HasWarmSandbox(request, node) ? 0 : cold_start_ms_;
  return cold + base_ms_ * (1 + load);
}

double CostPerSecond(const ExecutionRequest& request, const HypervisorNode& node) {
  const double cores = static_cast<double>(request.resources.cpu_millis) / 1000.0;
  const double gib = static_cast<double>(request.resources.memory_bytes) / kGiB;
  return node.cost.per_cpu_second * cores + node.cost.per_gib_second * gib;
}

bool HasWarmSandbox(const ExecutionRequest& request, const HypervisorNode& node) {
  if (request.template_name.empty() || node.warm_sandboxes.empty()) return false;
  auto it = node.warm_sandboxes.find(request.template_name);
  return it != node.warm_sandboxes.end() && it->second > 0;
}

void DataLocality::Reset(const ExecutionRequest& request) {
  keys_.clear();
  sizes_.clear();
  for (const std::string& key : request.data_keys) {
    bool seen = false;
    for (const std::string* k : keys_) seen |= *k == key;
    if (seen) continue;
    keys_.push_back(&key);
    sizes_.push_back(0);
  }
}

void DataLocality::Observe(const HypervisorNode& node) {
  if (keys_.empty()) return;
  for (const model::DataSet& data : node.data_sets) {
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (*keys_[i] == data.key) sizes_[i] = std::max(sizes_[i], data.size_bytes);
    }
  }
}

double DataLocality::Fraction(const HypervisorNode& node) const {
  if (keys_.empty()) return 0;
  double total = 0;
  double held_bytes = 0;
  size_t held_keys = 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    total += static_cast<double>(sizes_[i]);
    const bool held = std::any_of(node.data_sets.begin(), node.data_sets.end(),
                                  [&](const model::DataSet& d) { return d.key == *keys_[i]; });
    if (!held) continue;
    ++held_keys;
    held_bytes += static_cast<double>(sizes_[i]);
  }
  if (total > 0) return held_bytes / total;
  return static_cast<double>(held_keys) / static_cast<double>(keys_.size());
}

double CpuScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                        const ScoringContext&) const {
  return ByStrategy(strategy_, node.available.cpu_millis, request.resources.cpu_millis,
                    node.capacity.cpu_millis);
}

double MemoryScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                           const ScoringContext&) const {
  return ByStrategy(strategy_, node.available.memory_bytes, request.resources.memory_bytes,
                    node.capacity.memory_bytes);
}

double SecurityScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                             const ScoringContext&) const {
  // The match, not the margin: a node exactly as trusted as the request needs
  // scores 1 and each level above it costs a share, so work without a
  // requirement lands on ordinary nodes and the trusted ones stay free for
  // the work only they may run (the way a taint or a rank expression keeps
  // special machines for special jobs). Filters have already removed nodes
  // below the minimum.
  const int min = std::clamp(request.security.min_trust_level, 0, kMaxTrust);
  if (min >= kMaxTrust) return 1;
  const int excess = std::max(0, std::min(node.security.trust_level, kMaxTrust) - min);
  return Clamp01(1 - static_cast<double>(excess) / static_cast<double>(kMaxTrust - min));
}

double LocalityScorer::Score(const ExecutionRequest&, const HypervisorNode& node,
                             const ScoringContext& context) const {
  return context.locality == nullptr ? 0 : context.locality->Fraction(node);
}

double GeoScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                        const ScoringContext&) const {
  const std::vector<std::string>& preferred = request.placement.preferred_regions;
  if (preferred.empty()) return 0;
  const std::string* region = NodeRegion(node);
  if (region == nullptr) return 0;
  for (size_t p = 0; p < preferred.size(); ++p) {
    if (preferred[p] == *region) {
      return static_cast<double>(preferred.size() - p) / static_cast<double>(preferred.size());
    }
  }
  return 0;
}

double WarmScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                         const ScoringContext&) const {
  return HasWarmSandbox(request, node) ? 1 : 0;
}

double LatencyScorer::Score(const ExecutionRequest&, const HypervisorNode&,
                            const ScoringContext& context) const {
  if (context.max_predicted_ms <= 0) return 1;
  return Clamp01(1 - context.predicted_ms / context.max_predicted_ms);
}

double CostScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                         const ScoringContext& context) const {
  if (context.max_cost_per_s <= 0) return 1;
  return Clamp01(1 - CostPerSecond(request, node) / context.max_cost_per_s);
}

double BalanceScorer::Score(const ExecutionRequest& request, const HypervisorNode& node,
                            const ScoringContext&) const {
  const double cpu = 1 - FreeFraction(node.available.cpu_millis - request.resources.cpu_millis,
                                      node.capacity.cpu_millis);
  const double memory =
      1 - FreeFraction(node.available.memory_bytes - request.resources.memory_bytes,
                       node.capacity.memory_bytes);
  return Clamp01(1 - std::max(cpu, memory));
}

std::vector<WeightedScorer> ScorersFor(const Weights& weights, AllocationStrategy strategy) {
  const WeightedScorer all[] = {
      {std::make_shared<CpuScorer>(strategy), weights.cpu},
      {std::make_shared<MemoryScorer>(strategy), weights.memory},
      {std::make_shared<SecurityScorer>(), weights.security},
      {std::make_shared<LocalityScorer>(), weights.locality},
      {std::make_shared<GeoScorer>(), weights.geo},
      {std::make_shared<WarmScorer>(), weights.warm},
      {std::make_shared<LatencyScorer>(), weights.latency},
      {std::make_shared<CostScorer>(), weights.cost},
      {std::make_shared<BalanceScorer>(), weights.balance},
  };
  std::vector<WeightedScorer> active;
  for (const WeightedScorer& s : all) {
    if (s.weight > 0) active.push_back(s);
  }
  return active;
}

}  // namespace flotilla::scheduler
