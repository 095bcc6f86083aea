// Forecaster: the interface every forecasting model in predict/ offers. A
// model is fitted once on a series of equally spaced observations (oldest
// first) and then asked for the next `horizon` values with a prediction
// interval at a given level.
//
// Contract.
//   - Fit(series) either succeeds and replaces whatever was fitted before, or
//     returns InvalidArgument naming what is wrong with the series (too short
//     for the model, a NaN or infinity at index i, a season longer than the
//     series...) and leaves the model unfitted.
//   - Forecast(horizon, level) returns `horizon` points, step 1..horizon,
//     each with its mean, the standard deviation of its forecast error and
//     the central interval [lower, upper] holding the future value with
//     probability `level` under the model's normal-error assumption. It
//     returns FailedPrecondition before a successful Fit, and
//     InvalidArgument for horizon < 1 or level outside (0, 1).
//   - FittedValues() are the one-step-ahead in-sample predictions, one per
//     observation, NaN where the model has none (the first observations the
//     model conditions on).
//
// Pure: no I/O, no clock, no threads, no randomness. Thread-compatible: the
// const methods may run concurrently with each other, not with Fit.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::predict {

// One step of a forecast. `stddev` is the standard deviation of the h-step
// forecast error; the interval is mean ± z(level) · stddev.
struct ForecastPoint {
  int step = 0;  // 1 = the observation right after the series
  double mean = 0;
  double stddev = 0;
  double lower = 0;
  double upper = 0;
};

// A fitted parameter, for people: the CLI prints these.
struct FittedParameter {
  std::string name;
  double value = 0;
};

class Forecaster {
 public:
  virtual ~Forecaster() = default;

  // "naive", "seasonal-naive", "holt-winters", "arima(p,d,q)", "auto(...)".
  virtual std::string Name() const = 0;

  virtual absl::Status Fit(std::span<const double> series) = 0;
  virtual absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const = 0;

  virtual std::vector<FittedParameter> Parameters() const = 0;
  virtual std::vector<double> FittedValues() const = 0;

  // The smallest series Fit accepts, so that callers splitting a series
  // (hold-out selection) can skip a model that cannot be fitted.
  virtual int MinObservations() const = 0;
};

// Which model, with its options: what the CLI's flags and Auto's candidates
// describe.
struct ForecasterSpec {
  std::string model = "auto";  // naive | holt-winters | arima | auto
  int season = 0;              // 0 or 1: none
  // ARIMA order; p < 0 means "choose it" (AutoArima).
  int p = -1;
  int d = -1;
  int q = -1;
};

// Returns a new, unfitted forecaster for `spec`, or InvalidArgument naming
// the bad field (unknown model, negative season, an order given to a model
// that takes none).
absl::StatusOr<std::unique_ptr<Forecaster>> MakeForecaster(const ForecasterSpec& spec);

// Returns OK if every value is finite and there are at least `min_size` of
// them; otherwise InvalidArgument naming the first bad index or the sizes,
// prefixed with `what` ("holt-winters").
absl::Status ValidateSeries(std::span<const double> series, int min_size, const std::string& what);

// Returns InvalidArgument unless horizon >= 1 and 0 < level < 1.
absl::Status ValidateForecastRequest(int horizon, double level);

// Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation refined by one
// Halley step on erfc: about 1e-15 relative error).
double NormalQuantile(double p);

// Φ(x), the standard normal CDF.
double NormalCdf(double x);

// Fills lower/upper of each point from its mean and stddev at `level`.
void SetIntervals(std::vector<ForecastPoint>& points, double level);

}  // namespace flotilla::predict
