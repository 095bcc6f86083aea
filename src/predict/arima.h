// ArimaForecaster: ARIMA(p,d,q) fitted by conditional least squares, and
// AutoArimaForecaster, which picks the order on a hold-out.
//
// Model. w = ∇ᵈy (y differenced d times). For d <= 1 the model has a
// constant μ: the mean of y when d = 0 (statsmodels' trend="c"), the drift
// of y (mean of ∇y) when d = 1 (statsmodels' trend="t" for an integrated
// model; R's include.drift) — without it an ARIMA(p,1,q) cannot follow a
// trend, which is what usage series do. With d = 2 there is none (a
// constant there would be a quadratic trend):
//
//   (w[t] - μ) = Σᵢ φᵢ (w[t-i] - μ) + e[t] + Σⱼ θⱼ e[t-j].
//
// Fit: conditional sum of squares (CSS; Box & Jenkins). Condition on the
// first p values of w and set the p pre-sample errors to 0; the residuals
// e[p..N-1] follow from the recursion above and the parameters minimise
// Σ e[t]². Levenberg–Marquardt with a forward-difference Jacobian, started
// from the least-squares AR(p) fit (φ) and θ = 0. For a pure AR model the
// CSS estimate is ordinary least squares of w[t] on its p lags and a
// constant, i.e. exactly statsmodels' AutoReg (trend "c" on w); with MA
// terms it differs from exact maximum likelihood by O(1/N). Stationarity of
// φ is not enforced (a hold-out chooses d); an MA part with a root inside
// the unit circle makes the recursion explode and is rejected by the search.
//
// σ² = CSS / (N - p), the mean squared residual (AutoReg's sigma2).
//
// Forecast: the ARMA recursion on w with future errors 0, integrated d
// times back to y. Intervals from the ψ-weights of the integrated model
// φ(B)(1-B)ᵈ yₜ = θ(B) eₜ: v[h] = σ² Σ_{j<h} ψⱼ².
//
// AutoArima: over p, q in 0..3 and d in 0..2, fit each order on the series
// minus its last H values (H = max(1, min(n/5, 24)): a fifth of the data,
// at most 24 steps), then run the fitted recursion over the whole series
// and score the order by the mean absolute error of its one-step-ahead
// predictions on the H held-out values (rolling origin, parameters frozen).
// One-step errors rather than an H-step forecast: an H-step forecast of a
// stationary series decays to its mean within a few steps, so a long
// hold-out forecast cannot tell an AR(1) from white noise. Lowest MAE wins
// (within 1e-9 relative: fewer parameters, then the order met first, i.e.
// smaller d); the winner is refitted on the whole series. Orders whose
// training part is shorter than their minimum plus 4 are skipped.
//
// Pure; thread-compatible.
#pragma once

#include <vector>

#include "predict/forecaster.h"

namespace flotilla::predict {

struct ArimaOrder {
  int p = 0;
  int d = 0;
  int q = 0;
  absl::Status Validate() const;  // 0 <= p, q <= 10; 0 <= d <= 2
  bool HasMean() const;           // the constant μ: for d <= 1
  std::string ToString() const;   // "arima(2,1,0)"
};

class ArimaForecaster : public Forecaster {
 public:
  explicit ArimaForecaster(ArimaOrder order) : order_(order) {}

  std::string Name() const override { return order_.ToString(); }
  absl::Status Fit(std::span<const double> series) override;
  absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const override;
  std::vector<FittedParameter> Parameters() const override;
  std::vector<double> FittedValues() const override { return fitted_; }
  // d + p + (number of parameters) + 2: at least two residuals beyond the
  // parameter count.
  int MinObservations() const override;

  const ArimaOrder& order() const { return order_; }
  // One-step-ahead predictions over `series` with the fitted parameters (no
  // refit): NaN for the first d + p values. FailedPrecondition before Fit.
  absl::StatusOr<std::vector<double>> OneStepPredictions(std::span<const double> series) const;

  double mean() const { return mean_; }                     // μ (mean or drift); 0 when d = 2
  const std::vector<double>& ar() const { return phi_; }    // φ₁..φp
  const std::vector<double>& ma() const { return theta_; }  // θ₁..θq
  double sigma2() const { return sigma2_; }
  double css() const { return css_; }

 private:
  std::vector<double> OneStep(const std::vector<std::vector<double>>& levels,
                              const std::vector<double>& residuals) const;

  ArimaOrder order_;
  bool fitted_ok_ = false;
  double mean_ = 0;
  std::vector<double> phi_, theta_;
  double sigma2_ = 0;
  double css_ = 0;
  std::vector<std::vector<double>> levels_;  // levels_[k] = ∇ᵏy, k = 0..d
  std::vector<double> residuals_;            // e over all of w (0 for t < p)
  std::vector<double> fitted_;
};

class AutoArimaForecaster : public Forecaster {
 public:
  AutoArimaForecaster() = default;

  std::string Name() const override;
  absl::Status Fit(std::span<const double> series) override;
  absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const override;
  std::vector<FittedParameter> Parameters() const override;
  std::vector<double> FittedValues() const override;
  int MinObservations() const override { return 8; }

  // The chosen order (valid after a successful Fit).
  ArimaOrder chosen() const { return chosen_; }
  double holdout_mae() const { return holdout_mae_; }

 private:
  ArimaOrder chosen_;
  double holdout_mae_ = 0;
  std::unique_ptr<ArimaForecaster> model_;
};

}  // namespace flotilla::predict
