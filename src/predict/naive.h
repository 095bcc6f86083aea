// NaiveForecaster: the baseline every other model must beat. With season m
// of 0 or 1 it forecasts the last value (a random walk); with m > 1 it
// forecasts the value one season earlier ("seasonal naive": y[n+h] =
// y[n+h-m·k], k = ceil(h/m)).
//
// Intervals (Hyndman & Athanasopoulos, "Forecasting: Principles and
// Practice", 3rd ed., §5.5): σ² is the mean squared one-step residual
// y[t] - y[t-m]; the h-step standard deviation is σ·sqrt(h) for the random
// walk and σ·sqrt(floor((h-1)/m) + 1) for the seasonal naive method.
//
// Needs m + 1 observations (m = 1 when there is no season). Pure;
// thread-compatible.
#pragma once

#include <vector>

#include "predict/forecaster.h"

namespace flotilla::predict {

class NaiveForecaster : public Forecaster {
 public:
  explicit NaiveForecaster(int season = 0) : season_(season < 1 ? 1 : season) {}

  std::string Name() const override { return season_ > 1 ? "seasonal-naive" : "naive"; }
  absl::Status Fit(std::span<const double> series) override;
  absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const override;
  std::vector<FittedParameter> Parameters() const override;
  std::vector<double> FittedValues() const override { return fitted_; }
  int MinObservations() const override { return season_ + 1; }

 private:
  int season_;
  bool fitted_ok_ = false;
  std::vector<double> last_season_;  // the last m observations, oldest first
  std::vector<double> fitted_;
  double sigma2_ = 0;
};

}  // namespace flotilla::predict
