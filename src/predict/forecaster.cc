#include "predict/forecaster.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "predict/arima.h"
#include "predict/auto_forecaster.h"
#include "predict/holt_winters.h"
#include "predict/naive.h"

namespace flotilla::predict {

absl::Status ValidateSeries(std::span<const double> series, int min_size, const std::string& what) {
  for (size_t i = 0; i < series.size(); ++i) {
    if (!std::isfinite(series[i])) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: observation %d is %f; every value must be a finite number", what, i, series[i]));
    }
  }
  if (static_cast<int64_t>(series.size()) < min_size) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the series has ", series.size(),
                                                   " observations; this model needs at least ",
                                                   min_size));
  }
  return absl::OkStatus();
}

absl::Status ValidateForecastRequest(int horizon, double level) {
  if (horizon < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("horizon is ", horizon, "; ask for at least 1 step"));
  }
  if (!(level > 0 && level < 1)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "interval level is %g; it must lie strictly between 0 and 1 (e.g. 0.95)", level));
  }
  return absl::OkStatus();
}

double NormalCdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

double NormalQuantile(double p) {
  if (p <= 0) return -std::numeric_limits<double>::infinity();
  if (p >= 1) return std::numeric_limits<double>::infinity();
  // Acklam's algorithm.
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double kLow = 0.02425;
  double x;
  if (p < kLow) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - kLow) {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  // One Halley step brings the 1e-9 approximation to full double precision.
  const double e = NormalCdf(x) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

void SetIntervals(std::vector<ForecastPoint>& points, double level) {
  const double z = NormalQuantile(0.5 + level / 2);
  for (ForecastPoint& p : points) {
    p.lower = p.mean - z * p.stddev;
    p.upper = p.mean + z * p.stddev;
  }
}

absl::StatusOr<std::unique_ptr<Forecaster>> MakeForecaster(const ForecasterSpec& spec) {
  if (spec.season < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("season is ", spec.season, "; use 0 for none or the period, e.g. 12"));
  }
  const bool has_order = spec.p >= 0 || spec.d >= 0 || spec.q >= 0;
  if (has_order && spec.model != "arima") {
    return absl::InvalidArgumentError(
        absl::StrCat("an ARIMA order was given to model '", spec.model, "'; use --model arima"));
  }
  if (spec.model == "naive") return std::unique_ptr<Forecaster>(new NaiveForecaster(spec.season));
  if (spec.model == "holt-winters") {
    return std::unique_ptr<Forecaster>(new HoltWintersForecaster(spec.season));
  }
  if (spec.model == "arima") {
    if (!has_order) return std::unique_ptr<Forecaster>(new AutoArimaForecaster());
    ArimaOrder order{spec.p, spec.d, spec.q};
    RETURN_IF_ERROR(order.Validate());
    return std::unique_ptr<Forecaster>(new ArimaForecaster(order));
  }
  if (spec.model == "auto") return std::unique_ptr<Forecaster>(new AutoForecaster(spec.season));
  return absl::InvalidArgumentError(
      absl::StrCat("unknown model '", spec.model, "'; choose naive, holt-winters, arima or auto"));
}

}  // namespace flotilla::predict
