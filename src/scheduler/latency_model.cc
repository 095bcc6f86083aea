#include "scheduler/latency_model.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flotilla::scheduler {
namespace {

double Utilisation(int64_t capacity, int64_t available) {
  if (capacity <= 0) return 0;
  return std::clamp(static_cast<double>(capacity - available) / static_cast<double>(capacity), 0.0,
                    1.0);
}

absl::Status CheckSample(const LatencySample& s) {
  const LatencyFeatures& f = s.features;
  if (!std::isfinite(s.latency_ms) || s.latency_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat("latency sample for function '", f.function,
                                                   "': latency_ms must be finite and >= 0, got ",
                                                   s.latency_ms));
  }
  if (!std::isfinite(f.load) || !std::isfinite(f.memory_pressure)) {
    return absl::InvalidArgumentError(absl::StrCat("latency sample for function '", f.function,
                                                   "': load and memory_pressure must be finite"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* ToString(LatencySource source) {
  switch (source) {
    case LatencySource::kModel:
      return "model";
    case LatencySource::kFunctionMean:
      return "function-mean";
    case LatencySource::kGlobalMean:
      return "global";
    case LatencySource::kDefault:
      return "default";
  }
  return "unknown";
}

absl::Status LatencyModelOptions::Validate() const {
  if (!(forgetting_factor > 0 && forgetting_factor <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("latency model forgetting_factor must be in (0, 1], got ", forgetting_factor));
  }
  if (!std::isfinite(ridge) || ridge < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("latency model ridge must be finite and >= 0, got ", ridge));
  }
  if (min_model_observations < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "latency model min_model_observations must be >= 1, got ", min_model_observations));
  }
  if (!std::isfinite(default_ms) || default_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("latency model default_ms must be finite and >= 0, got ", default_ms));
  }
  return absl::OkStatus();
}

std::string NodeClassOf(const model::HypervisorNode& node) {
  auto it = node.labels.find("class");
  if (it == node.labels.end() || it->second.empty()) return "default";
  return it->second;
}

LatencyFeatures FeaturesFor(const model::ExecutionRequest& request,
                            const model::HypervisorNode& node) {
  LatencyFeatures f;
  f.function = request.function;
  f.node_class = NodeClassOf(node);
  f.load = Utilisation(node.capacity.cpu_millis, node.available.cpu_millis);
  f.memory_pressure = Utilisation(node.capacity.memory_bytes, node.available.memory_bytes);
  auto warm = request.template_name.empty() ? node.warm_sandboxes.end()
                                            : node.warm_sandboxes.find(request.template_name);
  f.cold_start = warm == node.warm_sandboxes.end() || warm->second <= 0;
  f.input_bytes = request.input_bytes;
  return f;
}

LatencyModel::LatencyModel(LatencyModelOptions options) : options_(options) {}

LatencyModel::Vector LatencyModel::FeatureVector(const LatencyFeatures& f) {
  return {1.0, std::clamp(f.load, 0.0, 1.0), std::clamp(f.memory_pressure, 0.0, 1.0),
          f.cold_start ? 1.0 : 0.0,
          std::log1p(static_cast<double>(std::max<int64_t>(0, f.input_bytes)))};
}

absl::Status LatencyModel::Observe(const LatencySample& sample) {
  RETURN_IF_ERROR(CheckSample(sample));
  const Vector x = FeatureVector(sample.features);
  const double y = sample.latency_ms;
  const double lambda = options_.forgetting_factor;

  KeyState& state = keys_[{sample.features.function, sample.features.node_class}];
  for (size_t i = 0; i < kDim; ++i) {
    for (size_t j = 0; j < kDim; ++j) state.a[i][j] = lambda * state.a[i][j] + x[i] * x[j];
    state.b[i] = lambda * state.b[i] + y * x[i];
  }
  ++state.observations;
  if (state.observations >= options_.min_model_observations) Solve(state);

  Mean& function_mean = by_function_[sample.features.function];
  function_mean.sum += y;
  ++function_mean.count;
  global_.sum += y;
  ++global_.count;
  return absl::OkStatus();
}

// Cholesky on (A + δ·diag(0,1,1,1,1)), which is positive definite once the
// intercept has been observed (A[0][0] > 0) and δ > 0. With δ = 0 and a
// feature that never varied it is singular; the key then keeps its fallback.
void LatencyModel::Solve(KeyState& state) const {
  Matrix m = state.a;
  for (size_t i = 1; i < kDim; ++i) m[i][i] += options_.ridge;
  Matrix l{};
  for (size_t i = 0; i < kDim; ++i) {
    for (size_t j = 0; j <= i; ++j) {
      double sum = m[i][j];
      for (size_t k = 0; k < j; ++k) sum -= l[i][k] * l[j][k];
      if (i == j) {
        // Relative to the diagonal, so a huge A does not pass off rounding
        // noise as a pivot.
        if (sum <= 1e-12 * std::max(1.0, m[i][i])) {
          state.solved = false;
          return;
        }
        l[i][i] = std::sqrt(sum);
      } else {
        l[i][j] = sum / l[j][j];
      }
    }
  }
  Vector z{};
  for (size_t i = 0; i < kDim; ++i) {
    double sum = state.b[i];
    for (size_t k = 0; k < i; ++k) sum -= l[i][k] * z[k];
    z[i] = sum / l[i][i];
  }
  for (size_t i = kDim; i-- > 0;) {
    double sum = z[i];
    for (size_t k = i + 1; k < kDim; ++k) sum -= l[k][i] * state.theta[k];
    state.theta[i] = sum / l[i][i];
  }
  state.solved = std::all_of(state.theta.begin(), state.theta.end(),
                             [](double v) { return std::isfinite(v); });
}

LatencyPrediction LatencyModel::Predict(const LatencyFeatures& features) const {
  auto key = keys_.find({features.function, features.node_class});
  if (key != keys_.end() && key->second.solved &&
      key->second.observations >= options_.min_model_observations) {
    const Vector x = FeatureVector(features);
    double ms = 0;
    for (size_t i = 0; i < kDim; ++i) ms += key->second.theta[i] * x[i];
    return {std::max(0.0, ms), key->second.observations, LatencySource::kModel};
  }
  auto function_mean = by_function_.find(features.function);
  if (function_mean != by_function_.end() && function_mean->second.count > 0) {
    return {function_mean->second.value(), function_mean->second.count,
            LatencySource::kFunctionMean};
  }
  if (global_.count > 0) return {global_.value(), global_.count, LatencySource::kGlobalMean};
  return {options_.default_ms, 0, LatencySource::kDefault};
}

absl::StatusOr<HoldoutReport> LatencyModel::EvaluateHoldout(std::span<const LatencySample> history,
                                                            double holdout_fraction) const {
  if (!(holdout_fraction > 0 && holdout_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("holdout_fraction must be in (0, 1), got ", holdout_fraction));
  }
  HoldoutReport report;
  report.n_test =
      static_cast<size_t>(std::llround(static_cast<double>(history.size()) * holdout_fraction));
  report.n_train = history.size() - std::min(report.n_test, history.size());
  if (report.n_test == 0 || report.n_train == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "holdout needs samples on both sides: ", history.size(), " samples with holdout_fraction ",
        holdout_fraction, " leave ", report.n_train, " to train and ", report.n_test, " to test"));
  }

  LatencyModel model(options_);
  Mean global;
  std::map<std::string, Mean> by_function;
  for (const LatencySample& s : history.first(report.n_train)) {
    RETURN_IF_ERROR(model.Observe(s));
    by_function[s.features.function].sum += s.latency_ms;
    ++by_function[s.features.function].count;
    global.sum += s.latency_ms;
    ++global.count;
  }

  double abs_error = 0, baseline_abs_error = 0;
  double pct_error = 0, baseline_pct_error = 0;
  size_t pct_count = 0;
  for (const LatencySample& s : history.subspan(report.n_train)) {
    RETURN_IF_ERROR(CheckSample(s));
    LatencyPrediction p = model.Predict(s.features);
    if (p.source == LatencySource::kModel) ++report.n_test_from_model;
    auto f = by_function.find(s.features.function);
    const double baseline = f != by_function.end() ? f->second.value() : global.value();
    abs_error += std::fabs(p.ms - s.latency_ms);
    baseline_abs_error += std::fabs(baseline - s.latency_ms);
    // MAPE is undefined at 0 ms; such samples count towards MAE only.
    if (s.latency_ms > 0) {
      pct_error += std::fabs(p.ms - s.latency_ms) / s.latency_ms;
      baseline_pct_error += std::fabs(baseline - s.latency_ms) / s.latency_ms;
      ++pct_count;
    }
  }
  const double n = static_cast<double>(report.n_test);
  report.mae_ms = abs_error / n;
  report.baseline_mae_ms = baseline_abs_error / n;
  if (pct_count > 0) {
    report.mape = pct_error / static_cast<double>(pct_count);
    report.baseline_mape = baseline_pct_error / static_cast<double>(pct_count);
  }
  return report;
}

bool LatencyModel::CoefficientsForTest(const std::string& function, const std::string& node_class,
                                       std::array<double, 5>* out) const {
  auto it = keys_.find({function, node_class});
  if (it == keys_.end() || !it->second.solved) return false;
  *out = it->second.theta;
  return true;
}

}  // namespace flotilla::scheduler
