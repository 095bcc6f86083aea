// HoltWintersForecaster: exponential smoothing with an additive trend and,
// when a season m > 1 is given, an additive seasonal component (ETS(A,A,A));
// with no season it is Holt's linear method (ETS(A,A,N)).
//
// Recursions (the form statsmodels' ExponentialSmoothing uses; t = 1..n):
//
//   ŷ[t]  = l[t-1] + b[t-1] + s[t-m]                 one-step prediction
//   l[t]  = α (y[t] - s[t-m]) + (1-α)(l[t-1] + b[t-1])
//   b[t]  = β (l[t] - l[t-1]) + (1-β) b[t-1]
//   s[t]  = γ (y[t] - l[t-1] - b[t-1]) + (1-γ) s[t-m]
//   ŷ[n+h] = l[n] + h·b[n] + s[n+h-m·ceil(h/m)]
//
// Initialisation: statsmodels' "heuristic" method (Hyndman et al. 2008,
// "Forecasting with Exponential Smoothing", §2.6), reproduced exactly so
// that the same data give the same fit:
//   - seasonal: take k = max(min(5, n/m), ceil((10 + 2·(m/2))/m)) full
//     cycles; smooth them with a centred moving average of order m (2×m
//     for even m); the initial seasonals s[1-m..0] are the mean, over the
//     cycles, of y minus that average at each position of the season,
//     shifted to sum to 0; the series for the level is then the moving
//     average itself.
//   - level and trend: a least-squares line through the first 10 values of
//     that series (of y when there is no season) against t = 1..10; l[0]
//     is its intercept, b[0] its slope.
// It needs n >= 10, and with a season n >= 2m and n >= 10 + 2·(m/2).
//
// Fit: α, β, γ minimise the sum of squared one-step errors subject to
// statsmodels' constraints 0 < α < 1, 0 <= β <= α, 0 <= γ <= 1 - α. They
// are searched as u ∈ [0,1]³ with α = ε + u₁(1-2ε), β = u₂α,
// γ = u₃(1-α) (ε = sqrt(machine epsilon), statsmodels' bound): first a grid
// of 11 points per axis, then Nelder–Mead from the three best grid points;
// the lowest SSE wins.
//
// Intervals: with the one-step errors e[t] ~ N(0, σ²) the model is
// ETS(A,A,A) with smoothing weights α, αβ and γ in error-correction form,
// so the h-step error variance is (Hyndman et al. 2008, Table 6.1, class 1)
//
//   v[h] = σ² (1 + Σ_{j=1}^{h-1} (α(1 + jβ) + γ·[j mod m = 0])²),
//
// with σ² = SSE / (n - k), k = 2 + 2 + (m + 1) the parameters and initial
// states (k = 4 without a season): the same σ statsmodels' simulate() uses.
//
// Pure; thread-compatible.
#pragma once

#include <vector>

#include "predict/forecaster.h"

namespace flotilla::predict {

struct HoltWintersParams {
  double alpha = 0;
  double beta = 0;
  double gamma = 0;
  double initial_level = 0;
  double initial_trend = 0;
  std::vector<double> initial_seasonals;  // s[1-m..0]; empty without a season
};

class HoltWintersForecaster : public Forecaster {
 public:
  // season 0 or 1: no seasonal component (Holt's linear method).
  explicit HoltWintersForecaster(int season = 0) : season_(season > 1 ? season : 0) {}

  std::string Name() const override { return "holt-winters"; }
  absl::Status Fit(std::span<const double> series) override;
  absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const override;
  std::vector<FittedParameter> Parameters() const override;
  std::vector<double> FittedValues() const override { return fitted_; }
  int MinObservations() const override;

  const HoltWintersParams& params() const { return params_; }
  double sse() const { return sse_; }

  // The heuristic initial states alone (α, β, γ left 0): exposed so that
  // tests can check them against statsmodels.
  static absl::StatusOr<HoltWintersParams> HeuristicInitialisationForTest(
      std::span<const double> series, int season);

 private:
  // Runs the recursions with `p`; returns the SSE and, when `keep` is set,
  // stores the fitted values and final states.
  double Smooth(std::span<const double> y, const HoltWintersParams& p, bool keep);

  int season_;
  bool fitted_ok_ = false;
  HoltWintersParams params_;
  double sse_ = 0;
  double sigma2_ = 0;
  double level_ = 0;             // l[n]
  double trend_ = 0;             // b[n]
  std::vector<double> seasons_;  // s[n-m+1..n]
  std::vector<double> fitted_;
};

}  // namespace flotilla::predict
