#include "predict/risk.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::predict {

double ExceedanceProbability(const ForecastPoint& point, double limit) {
  if (point.stddev <= 0) return point.mean > limit ? 1.0 : 0.0;
  // 1 - Φ(z) = Φ(-z), which keeps precision in the far tail.
  return NormalCdf(-(limit - point.mean) / point.stddev);
}

absl::StatusOr<Risk> RiskScore(std::span<const ForecastPoint> forecast, double limit, int steps) {
  if (steps < 1) {
    return absl::InvalidArgumentError(absl::StrCat("risk: steps is ", steps, "; use at least 1"));
  }
  if (!std::isfinite(limit)) {
    return absl::InvalidArgumentError(absl::StrFormat("risk: limit %f is not finite", limit));
  }
  const size_t n = std::min<size_t>(forecast.size(), steps);
  Risk risk;
  // Accumulate log(1 - P) so that many small probabilities do not round to 1.
  double log_none = 0;
  for (size_t i = 0; i < n; ++i) {
    const ForecastPoint& p = forecast[i];
    if (!std::isfinite(p.mean) || !std::isfinite(p.stddev) || p.stddev < 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("risk: forecast step %d has mean %f and stddev %f; need finite values "
                          "and stddev >= 0",
                          p.step, p.mean, p.stddev));
    }
    const double prob = ExceedanceProbability(p, limit);
    if (risk.riskiest_step == 0 || prob > risk.at_least) {
      risk.at_least = prob;
      risk.riskiest_step = p.step;
    }
    log_none += std::log1p(-std::min(prob, 1.0));
  }
  risk.probability = -std::expm1(log_none);
  risk.probability = std::max(risk.probability, risk.at_least);  // guard rounding
  return risk;
}

absl::StatusOr<Risk> RiskWithin(std::span<const ForecastPoint> forecast, double limit,
                                double seconds, double step_seconds) {
  if (!(step_seconds > 0) || !(seconds > 0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "risk: window %gs and step %gs must both be positive", seconds, step_seconds));
  }
  const double steps = std::ceil(seconds / step_seconds - 1e-9);
  return RiskScore(forecast, limit, static_cast<int>(std::min(steps, 1e9)));
}

}  // namespace flotilla::predict
