#include "predict/phase_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "predict/forecaster.h"

namespace flotilla::predict {
namespace {

constexpr double kTiny = 1e-300;

}  // namespace

double PhaseModel::Emission(int k, double y) const {
  const double d = y - mu_[k];
  return std::exp(-0.5 * d * d / var_[k]) / std::sqrt(2 * M_PI * var_[k]);
}

double PhaseModel::Forward(std::span<const double> y, std::vector<double>& alpha) const {
  const int k_states = static_cast<int>(mu_.size());
  const size_t n = y.size();
  alpha.assign(n * k_states, 0.0);
  double log_l = 0;
  for (size_t t = 0; t < n; ++t) {
    double total = 0;
    for (int j = 0; j < k_states; ++j) {
      double prior = 0;
      if (t == 0) {
        prior = pi_[j];
      } else {
        for (int i = 0; i < k_states; ++i) prior += alpha[(t - 1) * k_states + i] * a_[i][j];
      }
      alpha[t * k_states + j] = prior * Emission(j, y[t]);
      total += alpha[t * k_states + j];
    }
    // An observation far from every state underflows every emission: fall
    // back to the prior so the recursion continues (log L is then -inf-ish).
    if (total < kTiny) {
      for (int j = 0; j < k_states; ++j) {
        double prior = t == 0 ? pi_[j] : 0;
        if (t > 0) {
          for (int i = 0; i < k_states; ++i) prior += alpha[(t - 1) * k_states + i] * a_[i][j];
        }
        alpha[t * k_states + j] = prior;
      }
      total = 1;
      log_l += std::log(kTiny);
    } else {
      log_l += std::log(total);
    }
    for (int j = 0; j < k_states; ++j) alpha[t * k_states + j] /= total;
  }
  return log_l;
}

absl::Status PhaseModel::Fit(std::span<const double> series) {
  fitted_ = false;
  const int k_states = options_.states;
  if (k_states < 1 || k_states > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("phase model: states is ", k_states, "; use 1..10 (3: idle/steady/burst)"));
  }
  if (options_.max_iterations < 1) {
    return absl::InvalidArgumentError(absl::StrCat("phase model: max_iterations is ",
                                                   options_.max_iterations, "; use at least 1"));
  }
  RETURN_IF_ERROR(
      ValidateSeries(series, 3 * k_states, absl::StrCat("phase model with ", k_states, " states")));
  const size_t n = series.size();
  const int K = k_states;

  // Deterministic initialisation from quantiles.
  std::vector<double> sorted(series.begin(), series.end());
  std::sort(sorted.begin(), sorted.end());
  const double mean = std::accumulate(sorted.begin(), sorted.end(), 0.0) / n;
  double total_var = 0;
  for (double v : sorted) total_var += (v - mean) * (v - mean);
  total_var /= n;
  const double floor = 1e-4 * total_var + 1e-12;
  mu_.assign(K, 0);
  var_.assign(K, 0);
  for (int k = 0; k < K; ++k) {
    mu_[k] = sorted[std::min(n - 1, static_cast<size_t>((k + 0.5) / K * n))];
  }
  for (int k = 0; k < K; ++k) {
    const double lo = k == 0 ? -std::numeric_limits<double>::infinity() : (mu_[k - 1] + mu_[k]) / 2;
    const double hi =
        k == K - 1 ? std::numeric_limits<double>::infinity() : (mu_[k] + mu_[k + 1]) / 2;
    double s = 0, s2 = 0;
    int c = 0;
    for (double v : sorted) {
      if (v < lo || v > hi) continue;
      s += v;
      s2 += v * v;
      ++c;
    }
    var_[k] =
        c > 1 ? std::max(floor, s2 / c - (s / c) * (s / c)) : std::max(floor, total_var / (K * K));
  }
  pi_.assign(K, 1.0 / K);
  a_.assign(K, std::vector<double>(K, K == 1 ? 1.0 : 0.1 / (K - 1)));
  for (int k = 0; k < K; ++k) a_[k][k] = K == 1 ? 1.0 : 0.9;

  std::vector<double> alpha, beta(n * K), gamma(n * K);
  double prev = -std::numeric_limits<double>::infinity();
  iterations_ = 0;
  for (int iter = 0; iter < options_.max_iterations; ++iter) {
    ++iterations_;
    const double log_l = Forward(series, alpha);
    // Scaled backward pass with the forward pass's normalisers c[t]: with
    // alpha normalised per row, beta[t] ∝ Σ_j A_ij b_j(y[t+1]) beta[t+1][j],
    // normalised by the same total as the forward step at t+1.
    for (int k = 0; k < K; ++k) beta[(n - 1) * K + k] = 1;
    for (size_t t = n - 1; t-- > 0;) {
      double norm = 0;
      for (int i = 0; i < K; ++i) {
        double s = 0;
        for (int j = 0; j < K; ++j)
          s += a_[i][j] * Emission(j, series[t + 1]) * beta[(t + 1) * K + j];
        beta[t * K + i] = s;
        norm += s;
      }
      if (norm < kTiny) norm = 1;
      for (int i = 0; i < K; ++i) beta[t * K + i] /= norm;
    }
    std::vector<std::vector<double>> xi_sum(K, std::vector<double>(K, 0.0));
    for (size_t t = 0; t < n; ++t) {
      double norm = 0;
      for (int k = 0; k < K; ++k) {
        gamma[t * K + k] = alpha[t * K + k] * beta[t * K + k];
        norm += gamma[t * K + k];
      }
      if (norm < kTiny) norm = 1;
      for (int k = 0; k < K; ++k) gamma[t * K + k] /= norm;
      if (t + 1 == n) continue;
      std::vector<double> xi(K * K);
      double xnorm = 0;
      for (int i = 0; i < K; ++i) {
        for (int j = 0; j < K; ++j) {
          xi[i * K + j] =
              alpha[t * K + i] * a_[i][j] * Emission(j, series[t + 1]) * beta[(t + 1) * K + j];
          xnorm += xi[i * K + j];
        }
      }
      if (xnorm < kTiny) continue;
      for (int i = 0; i < K; ++i) {
        for (int j = 0; j < K; ++j) xi_sum[i][j] += xi[i * K + j] / xnorm;
      }
    }
    // M step.
    for (int k = 0; k < K; ++k) pi_[k] = gamma[k];
    for (int i = 0; i < K; ++i) {
      const double row = std::accumulate(xi_sum[i].begin(), xi_sum[i].end(), 0.0);
      if (row < kTiny) continue;  // a state never visited keeps its row
      for (int j = 0; j < K; ++j) a_[i][j] = xi_sum[i][j] / row;
    }
    for (int k = 0; k < K; ++k) {
      double w = 0, s = 0;
      for (size_t t = 0; t < n; ++t) {
        w += gamma[t * K + k];
        s += gamma[t * K + k] * series[t];
      }
      if (w < 1e-9) continue;  // an empty state keeps its emission
      mu_[k] = s / w;
      double v = 0;
      for (size_t t = 0; t < n; ++t) {
        v += gamma[t * K + k] * (series[t] - mu_[k]) * (series[t] - mu_[k]);
      }
      var_[k] = std::max(floor, v / w);
    }
    log_likelihood_ = log_l;
    if (std::isfinite(prev) &&
        std::abs(log_l - prev) <= options_.tolerance * (1 + std::abs(log_l))) {
      break;
    }
    prev = log_l;
  }

  // Renumber states by increasing mean.
  std::vector<int> order(K);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return mu_[a] < mu_[b]; });
  auto permute = [&](std::vector<double>& v) {
    std::vector<double> out(K);
    for (int k = 0; k < K; ++k) out[k] = v[order[k]];
    v = out;
  };
  permute(mu_);
  permute(var_);
  permute(pi_);
  std::vector<std::vector<double>> a(K, std::vector<double>(K));
  for (int i = 0; i < K; ++i) {
    for (int j = 0; j < K; ++j) a[i][j] = a_[order[i]][order[j]];
  }
  a_ = a;
  log_likelihood_ = Forward(series, alpha);
  fitted_ = true;

  ASSIGN_OR_RETURN(std::vector<int> path, Decode(series));
  current_phase_ = path.back();
  ASSIGN_OR_RETURN(next_, NextPhaseDistribution(series));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int>> PhaseModel::Decode(std::span<const double> series) const {
  if (!fitted_) return absl::FailedPreconditionError("phase model: Decode before a successful Fit");
  RETURN_IF_ERROR(ValidateSeries(series, 1, "phase model decode"));
  const int K = static_cast<int>(mu_.size());
  const size_t n = series.size();
  auto log_or_floor = [](double v) { return std::log(std::max(v, kTiny)); };
  auto log_emission = [&](int k, double y) {
    const double d = y - mu_[k];
    return -0.5 * d * d / var_[k] - 0.5 * std::log(2 * M_PI * var_[k]);
  };
  std::vector<double> delta(K), next(K);
  std::vector<int> back(n * K, 0);
  for (int k = 0; k < K; ++k) delta[k] = log_or_floor(pi_[k]) + log_emission(k, series[0]);
  for (size_t t = 1; t < n; ++t) {
    for (int j = 0; j < K; ++j) {
      int arg = 0;
      double best = -std::numeric_limits<double>::infinity();
      for (int i = 0; i < K; ++i) {
        const double v = delta[i] + log_or_floor(a_[i][j]);
        if (v > best) {
          best = v;
          arg = i;
        }
      }
      next[j] = best + log_emission(j, series[t]);
      back[t * K + j] = arg;
    }
    delta = next;
  }
  std::vector<int> path(n);
  path[n - 1] = static_cast<int>(std::max_element(delta.begin(), delta.end()) - delta.begin());
  for (size_t t = n - 1; t > 0; --t) path[t - 1] = back[t * K + path[t]];
  return path;
}

absl::StatusOr<std::vector<double>> PhaseModel::NextPhaseDistribution(
    std::span<const double> recent) const {
  if (!fitted_) {
    return absl::FailedPreconditionError(
        "phase model: NextPhaseDistribution before a successful Fit");
  }
  RETURN_IF_ERROR(ValidateSeries(recent, 1, "phase model recent usage"));
  const int K = static_cast<int>(mu_.size());
  std::vector<double> alpha;
  Forward(recent, alpha);
  std::vector<double> out(K, 0.0);
  const size_t last = (recent.size() - 1) * K;
  for (int i = 0; i < K; ++i) {
    for (int j = 0; j < K; ++j) out[j] += alpha[last + i] * a_[i][j];
  }
  return out;
}

double PhaseModel::ExpectedNextValue() const {
  double v = 0;
  for (size_t k = 0; k < next_.size(); ++k) v += next_[k] * mu_[k];
  return v;
}

std::string PhaseModel::PhaseName(int state) const {
  const int K = static_cast<int>(mu_.empty() ? options_.states : mu_.size());
  if (K == 3 && state >= 0 && state < 3) {
    static const char* kNames[] = {"idle", "steady", "burst"};
    return kNames[state];
  }
  if (K == 2 && state >= 0 && state < 2) return state == 0 ? "low" : "high";
  return absl::StrCat("phase ", state);
}

}  // namespace flotilla::predict
