#include "predict/metrics.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "predict/forecaster.h"

namespace flotilla::predict {

absl::StatusOr<double> MASE(std::span<const double> actual, std::span<const double> forecast,
                            std::span<const double> train, int season) {
  const size_t m = season < 1 ? 1 : season;
  if (actual.size() != forecast.size()) {
    return absl::InvalidArgumentError(absl::StrCat("MASE: ", actual.size(), " actual values but ",
                                                   forecast.size(), " forecasts"));
  }
  RETURN_IF_ERROR(ValidateSeries(actual, 1, "MASE actual values"));
  RETURN_IF_ERROR(ValidateSeries(train, static_cast<int>(m) + 1, "MASE training series"));
  double scale = 0;
  for (size_t t = m; t < train.size(); ++t) scale += std::abs(train[t] - train[t - m]);
  scale /= static_cast<double>(train.size() - m);
  double error = 0;
  size_t scored = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::isnan(forecast[i])) continue;
    error += std::abs(actual[i] - forecast[i]);
    ++scored;
  }
  if (scored == 0) return absl::InvalidArgumentError("MASE: no forecast value to score (all NaN)");
  error /= static_cast<double>(scored);
  if (scale == 0) return error == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return error / scale;
}

}  // namespace flotilla::predict
