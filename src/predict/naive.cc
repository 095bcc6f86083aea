#include "predict/naive.h"

#include <cmath>
#include <limits>

#include "common/status_macros.h"

namespace flotilla::predict {

absl::Status NaiveForecaster::Fit(std::span<const double> series) {
  fitted_ok_ = false;
  RETURN_IF_ERROR(ValidateSeries(series, MinObservations(), Name()));
  const size_t n = series.size();
  const size_t m = season_;
  fitted_.assign(n, std::numeric_limits<double>::quiet_NaN());
  double sse = 0;
  for (size_t t = m; t < n; ++t) {
    fitted_[t] = series[t - m];
    sse += (series[t] - series[t - m]) * (series[t] - series[t - m]);
  }
  sigma2_ = sse / static_cast<double>(n - m);
  last_season_.assign(series.end() - m, series.end());
  fitted_ok_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ForecastPoint>> NaiveForecaster::Forecast(int horizon,
                                                                     double level) const {
  RETURN_IF_ERROR(ValidateForecastRequest(horizon, level));
  if (!fitted_ok_)
    return absl::FailedPreconditionError(Name() + ": Forecast before a successful Fit");
  std::vector<ForecastPoint> points(horizon);
  const int m = season_;
  for (int h = 1; h <= horizon; ++h) {
    ForecastPoint& p = points[h - 1];
    p.step = h;
    p.mean = last_season_[(h - 1) % m];
    const double k = m == 1 ? h : std::floor((h - 1) / static_cast<double>(m)) + 1;
    p.stddev = std::sqrt(sigma2_ * k);
  }
  SetIntervals(points, level);
  return points;
}

std::vector<FittedParameter> NaiveForecaster::Parameters() const {
  return {{"season", static_cast<double>(season_)}, {"sigma2", sigma2_}};
}

}  // namespace flotilla::predict
