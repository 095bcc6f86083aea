#include "predict/arima.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flotilla::predict {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Solves A x = b (A k×k, row-major) by Gaussian elimination with partial
// pivoting. Returns false when A is singular.
bool Solve(std::vector<double> a, std::vector<double>& b) {
  const size_t k = b.size();
  for (size_t c = 0; c < k; ++c) {
    size_t pivot = c;
    for (size_t r = c + 1; r < k; ++r) {
      if (std::abs(a[r * k + c]) > std::abs(a[pivot * k + c])) pivot = r;
    }
    if (std::abs(a[pivot * k + c]) < 1e-300) return false;
    if (pivot != c) {
      for (size_t j = 0; j < k; ++j) std::swap(a[c * k + j], a[pivot * k + j]);
      std::swap(b[c], b[pivot]);
    }
    for (size_t r = c + 1; r < k; ++r) {
      const double f = a[r * k + c] / a[c * k + c];
      for (size_t j = c; j < k; ++j) a[r * k + j] -= f * a[c * k + j];
      b[r] -= f * b[c];
    }
  }
  for (size_t c = k; c-- > 0;) {
    double s = b[c];
    for (size_t j = c + 1; j < k; ++j) s -= a[c * k + j] * b[j];
    b[c] = s / a[c * k + c];
  }
  return true;
}

// The CSS problem on the differenced series w.
class Css {
 public:
  Css(std::span<const double> w, int p, int q, bool has_mean)
      : w_(w), p_(p), q_(q), has_mean_(has_mean) {}

  size_t NumParams() const { return (has_mean_ ? 1 : 0) + p_ + q_; }
  size_t NumResiduals() const { return w_.size() - p_; }

  // Residuals e[p..N-1] for params = [μ?, φ₁..φp, θ₁..θq]; returns false if
  // they overflow (an explosive MA part).
  bool Residuals(std::span<const double> params, std::vector<double>& e) const {
    const double mu = has_mean_ ? params[0] : 0;
    const double* phi = params.data() + (has_mean_ ? 1 : 0);
    const double* theta = phi + p_;
    e.assign(w_.size(), 0.0);
    for (size_t t = p_; t < w_.size(); ++t) {
      double v = w_[t] - mu;
      for (int i = 1; i <= p_; ++i) v -= phi[i - 1] * (w_[t - i] - mu);
      for (int j = 1; j <= q_ && static_cast<size_t>(j) <= t; ++j) v -= theta[j - 1] * e[t - j];
      if (!std::isfinite(v) || std::abs(v) > 1e150) return false;
      e[t] = v;
    }
    return true;
  }

  double Sse(std::span<const double> params, std::vector<double>& e) const {
    if (!Residuals(params, e)) return kInf;
    double s = 0;
    for (size_t t = p_; t < w_.size(); ++t) s += e[t] * e[t];
    return s;
  }

  // Starting values: μ = mean(w); φ from least squares of (w - μ) on its p
  // lags; θ = 0.
  std::vector<double> Start() const {
    std::vector<double> params(NumParams(), 0.0);
    double mu = 0;
    if (has_mean_) {
      mu = std::accumulate(w_.begin(), w_.end(), 0.0) / w_.size();
      params[0] = mu;
    }
    if (p_ == 0) return params;
    std::vector<double> ata(p_ * p_, 0.0), atb(p_, 0.0);
    for (size_t t = p_; t < w_.size(); ++t) {
      for (int i = 0; i < p_; ++i) {
        const double xi = w_[t - i - 1] - mu;
        atb[i] += xi * (w_[t] - mu);
        for (int j = 0; j < p_; ++j) ata[i * p_ + j] += xi * (w_[t - j - 1] - mu);
      }
    }
    for (int i = 0; i < p_; ++i) ata[i * p_ + i] *= 1 + 1e-10;
    if (Solve(ata, atb)) {
      for (int i = 0; i < p_; ++i) params[(has_mean_ ? 1 : 0) + i] = atb[i];
    }
    return params;
  }

  // Levenberg–Marquardt on the residual vector. Returns the minimiser.
  std::vector<double> Minimise(std::vector<double> x, double& sse) const {
    const size_t k = x.size();
    std::vector<double> e, e2;
    sse = Sse(x, e);
    if (k == 0 || !std::isfinite(sse)) return x;
    const size_t n = w_.size();
    std::vector<double> jac(k * n);
    double lambda = 1e-3;
    for (int iter = 0; iter < 200; ++iter) {
      // Forward-difference Jacobian of e with respect to each parameter.
      for (size_t c = 0; c < k; ++c) {
        std::vector<double> xp = x;
        const double step = 1e-7 * std::max(1.0, std::abs(x[c]));
        xp[c] += step;
        if (!Residuals(xp, e2)) {
          xp[c] = x[c] - step;
          Residuals(xp, e2);
          for (size_t t = p_; t < n; ++t) jac[c * n + t] = (e[t] - e2[t]) / step;
        } else {
          for (size_t t = p_; t < n; ++t) jac[c * n + t] = (e2[t] - e[t]) / step;
        }
      }
      std::vector<double> jtj(k * k, 0.0), jte(k, 0.0);
      for (size_t a = 0; a < k; ++a) {
        for (size_t t = p_; t < n; ++t) jte[a] += jac[a * n + t] * e[t];
        for (size_t b = 0; b <= a; ++b) {
          double s = 0;
          for (size_t t = p_; t < n; ++t) s += jac[a * n + t] * jac[b * n + t];
          jtj[a * k + b] = jtj[b * k + a] = s;
        }
      }
      bool improved = false;
      for (int tries = 0; tries < 20 && !improved; ++tries) {
        std::vector<double> m = jtj;
        for (size_t a = 0; a < k; ++a) m[a * k + a] += lambda * std::max(jtj[a * k + a], 1e-12);
        std::vector<double> delta(k);
        for (size_t a = 0; a < k; ++a) delta[a] = -jte[a];
        if (!Solve(m, delta)) {
          lambda *= 10;
          continue;
        }
        std::vector<double> candidate = x;
        for (size_t a = 0; a < k; ++a) candidate[a] += delta[a];
        std::vector<double> ec;
        const double s = Sse(candidate, ec);
        if (s < sse) {
          const double gain = sse - s;
          x = candidate;
          e = ec;
          sse = s;
          lambda = std::max(lambda / 10, 1e-12);
          improved = true;
          if (gain <= 1e-13 * std::max(sse, 1e-300)) return x;
        } else {
          lambda *= 10;
        }
      }
      if (!improved) break;
    }
    return x;
  }

 private:
  std::span<const double> w_;
  int p_, q_;
  bool has_mean_;
};

std::vector<double> Difference(std::span<const double> v) {
  std::vector<double> out;
  for (size_t i = 1; i < v.size(); ++i) out.push_back(v[i] - v[i - 1]);
  return out;
}

}  // namespace

bool ArimaOrder::HasMean() const { return d <= 1; }

absl::Status ArimaOrder::Validate() const {
  if (p < 0 || p > 10 || q < 0 || q > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("ARIMA order (", p, ",", d, ",", q, "): p and q must lie in 0..10"));
  }
  if (d < 0 || d > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("ARIMA order (", p, ",", d, ",", q, "): d must be 0, 1 or 2"));
  }
  return absl::OkStatus();
}

std::string ArimaOrder::ToString() const { return absl::StrCat("arima(", p, ",", d, ",", q, ")"); }

int ArimaForecaster::MinObservations() const {
  const int params = (order_.HasMean() ? 1 : 0) + order_.p + order_.q;
  return order_.d + order_.p + params + 2;
}

absl::Status ArimaForecaster::Fit(std::span<const double> series) {
  fitted_ok_ = false;
  RETURN_IF_ERROR(order_.Validate());
  RETURN_IF_ERROR(ValidateSeries(series, MinObservations(), Name()));
  levels_.assign(1, std::vector<double>(series.begin(), series.end()));
  for (int k = 1; k <= order_.d; ++k) levels_.push_back(Difference(levels_.back()));
  const std::vector<double>& w = levels_.back();
  const bool has_mean = order_.HasMean();
  Css css(w, order_.p, order_.q, has_mean);
  double sse = 0;
  std::vector<double> x = css.Minimise(css.Start(), sse);
  if (!std::isfinite(sse)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Name(), ": the conditional sum of squares diverged on this series; try a smaller order"));
  }
  mean_ = has_mean ? x[0] : 0;
  phi_.assign(x.begin() + (has_mean ? 1 : 0), x.begin() + (has_mean ? 1 : 0) + order_.p);
  theta_.assign(x.end() - order_.q, x.end());
  css.Residuals(x, residuals_);
  css_ = sse;
  sigma2_ = sse / static_cast<double>(css.NumResiduals());
  fitted_ = OneStep(levels_, residuals_);
  fitted_ok_ = true;
  return absl::OkStatus();
}

std::vector<double> ArimaForecaster::OneStep(const std::vector<std::vector<double>>& levels,
                                             const std::vector<double>& residuals) const {
  // The prediction of w[t] is w[t] - e[t]; y's follows by undoing the
  // differences level by level, ∇ᵏy[t] = ∇ᵏ⁺¹y[t] + ∇ᵏy[t-1], where
  // levels[k][i] holds ∇ᵏy[i + k].
  const std::vector<double>& w = levels.back();
  const size_t n = levels[0].size();
  std::vector<double> fitted(n, std::numeric_limits<double>::quiet_NaN());
  for (size_t t = order_.d + order_.p; t < n; ++t) {
    const size_t tw = t - order_.d;
    double pred = w[tw] - residuals[tw];
    for (int k = order_.d - 1; k >= 0; --k) pred += levels[k][t - k - 1];
    fitted[t] = pred;
  }
  return fitted;
}

absl::StatusOr<std::vector<double>> ArimaForecaster::OneStepPredictions(
    std::span<const double> series) const {
  if (!fitted_ok_) {
    return absl::FailedPreconditionError(Name() + ": OneStepPredictions before a successful Fit");
  }
  RETURN_IF_ERROR(ValidateSeries(series, order_.d + order_.p + 1, Name()));
  std::vector<std::vector<double>> levels(1, std::vector<double>(series.begin(), series.end()));
  for (int k = 1; k <= order_.d; ++k) levels.push_back(Difference(levels.back()));
  Css css(levels.back(), order_.p, order_.q, order_.HasMean());
  std::vector<double> x;
  if (order_.HasMean()) x.push_back(mean_);
  x.insert(x.end(), phi_.begin(), phi_.end());
  x.insert(x.end(), theta_.begin(), theta_.end());
  std::vector<double> residuals;
  if (!css.Residuals(x, residuals)) {
    return absl::InvalidArgumentError(Name() + ": the one-step recursion diverged on this series");
  }
  return OneStep(levels, residuals);
}

absl::StatusOr<std::vector<ForecastPoint>> ArimaForecaster::Forecast(int horizon,
                                                                     double level) const {
  RETURN_IF_ERROR(ValidateForecastRequest(horizon, level));
  if (!fitted_ok_)
    return absl::FailedPreconditionError(Name() + ": Forecast before a successful Fit");
  const int p = order_.p, q = order_.q;
  const std::vector<double>& w = levels_.back();
  const size_t nw = w.size();
  // Forecast w: history plus predictions, errors beyond the sample are 0.
  std::vector<double> ext(w.begin(), w.end());
  std::vector<double> err(residuals_.begin(), residuals_.end());
  for (int h = 1; h <= horizon; ++h) {
    const size_t t = nw + h - 1;
    double v = mean_;
    for (int i = 1; i <= p; ++i) v += phi_[i - 1] * (ext[t - i] - mean_);
    for (int j = 1; j <= q; ++j) {
      if (t >= static_cast<size_t>(j)) v += theta_[j - 1] * err[t - j];
    }
    ext.push_back(v);
    err.push_back(0);
  }
  std::vector<double> path(ext.begin() + nw, ext.end());
  // Integrate: level k's forecast is its last value plus the running sum of
  // level k+1's forecast.
  for (int k = order_.d - 1; k >= 0; --k) {
    double last = levels_[k].back();
    for (double& v : path) {
      last += v;
      v = last;
    }
  }

  // ψ-weights of φ(B)(1-B)ᵈ: the AR polynomial a (y[t] = Σ aᵢ y[t-i] + ...).
  std::vector<double> poly = {1.0};  // 1 - Σ φᵢ Bⁱ, as coefficients of Bⁱ
  for (int i = 0; i < p; ++i) poly.push_back(-phi_[i]);
  for (int k = 0; k < order_.d; ++k) {
    std::vector<double> next(poly.size() + 1, 0.0);
    for (size_t i = 0; i < poly.size(); ++i) {
      next[i] += poly[i];
      next[i + 1] -= poly[i];
    }
    poly = next;
  }
  std::vector<double> psi(horizon, 0.0);
  psi[0] = 1;
  for (int j = 1; j < horizon; ++j) {
    double v = j <= q ? theta_[j - 1] : 0;
    for (size_t i = 1; i < poly.size() && i <= static_cast<size_t>(j); ++i)
      v -= poly[i] * psi[j - i];
    psi[j] = v;
  }
  std::vector<ForecastPoint> points(horizon);
  double sum_psi2 = 0;
  for (int h = 1; h <= horizon; ++h) {
    sum_psi2 += psi[h - 1] * psi[h - 1];
    points[h - 1].step = h;
    points[h - 1].mean = path[h - 1];
    points[h - 1].stddev = std::sqrt(sigma2_ * sum_psi2);
  }
  SetIntervals(points, level);
  return points;
}

std::vector<FittedParameter> ArimaForecaster::Parameters() const {
  std::vector<FittedParameter> out;
  out.push_back({"p", static_cast<double>(order_.p)});
  out.push_back({"d", static_cast<double>(order_.d)});
  out.push_back({"q", static_cast<double>(order_.q)});
  if (order_.HasMean()) out.push_back({order_.d == 0 ? "mean" : "drift", mean_});
  for (int i = 0; i < order_.p; ++i) out.push_back({absl::StrCat("ar", i + 1), phi_[i]});
  for (int j = 0; j < order_.q; ++j) out.push_back({absl::StrCat("ma", j + 1), theta_[j]});
  out.push_back({"sigma2", sigma2_});
  return out;
}

std::string AutoArimaForecaster::Name() const {
  return model_ ? chosen_.ToString() : std::string("arima(auto)");
}

absl::Status AutoArimaForecaster::Fit(std::span<const double> series) {
  model_.reset();
  RETURN_IF_ERROR(ValidateSeries(series, MinObservations(), "arima(auto)"));
  const int n = static_cast<int>(series.size());
  const int holdout = std::max(1, std::min(n / 5, 24));
  const std::span<const double> train = series.first(n - holdout);

  bool found = false;
  double best_mae = kInf;
  int best_params = 0;
  ArimaOrder best;
  for (int d = 0; d <= 2; ++d) {
    for (int p = 0; p <= 3; ++p) {
      for (int q = 0; q <= 3; ++q) {
        ArimaForecaster candidate({p, d, q});
        // Demand a training part well beyond the minimum: a fit on barely
        // more points than parameters wins hold-outs by luck.
        if (static_cast<int>(train.size()) < candidate.MinObservations() + 4) continue;
        if (!candidate.Fit(train).ok()) continue;
        auto predictions = candidate.OneStepPredictions(series);
        if (!predictions.ok()) continue;
        double mae = 0;
        for (int t = n - holdout; t < n; ++t) mae += std::abs(series[t] - (*predictions)[t]);
        mae /= holdout;
        if (!std::isfinite(mae)) continue;
        const int params = p + q;
        // Prefer fewer parameters when within a hair of the best.
        const bool better = !found || mae < best_mae * (1 - 1e-9) ||
                            (mae <= best_mae * (1 + 1e-9) && params < best_params);
        if (better) {
          found = true;
          best_mae = mae;
          best_params = params;
          best = {p, d, q};
        }
      }
    }
  }
  if (!found) {
    return absl::InvalidArgumentError(absl::StrCat("arima(auto): no order could be fitted to ", n,
                                                   " observations; give a longer series"));
  }
  auto model = std::make_unique<ArimaForecaster>(best);
  RETURN_IF_ERROR(model->Fit(series));
  model_ = std::move(model);
  chosen_ = best;
  holdout_mae_ = best_mae;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ForecastPoint>> AutoArimaForecaster::Forecast(int horizon,
                                                                         double level) const {
  RETURN_IF_ERROR(ValidateForecastRequest(horizon, level));
  if (!model_)
    return absl::FailedPreconditionError("arima(auto): Forecast before a successful Fit");
  return model_->Forecast(horizon, level);
}

std::vector<FittedParameter> AutoArimaForecaster::Parameters() const {
  if (!model_) return {};
  std::vector<FittedParameter> out = model_->Parameters();
  out.push_back({"holdout_mae", holdout_mae_});
  return out;
}

std::vector<double> AutoArimaForecaster::FittedValues() const {
  return model_ ? model_->FittedValues() : std::vector<double>{};
}

}  // namespace flotilla::predict
