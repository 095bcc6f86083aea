// The resource risk score of the predictive-migration design (seed 003):
// the probability that an execution's usage exceeds its limit within the
// next n steps, read from a forecast's distribution.
//
// Each forecast step is taken as normal with the point's mean and stddev
// (the error model every Forecaster here assumes). For one step,
//
//   P(exceed) = 1 - Φ((limit - mean) / stddev).
//
// Over n steps the events "step h exceeds" are not independent: h-step
// forecast errors share the same future shocks and are positively
// correlated. For positively correlated Gaussians Slepian's inequality gives
//
//   max_h P_h  <=  P(any step exceeds)  <=  1 - Π_h (1 - P_h),
//
// the lower bound reached when the errors are perfectly correlated, the
// upper one when they are independent. RiskScore reports the upper bound
// (the independence approximation): a score that errs towards migrating
// early rather than late. Both bounds are returned so that a caller can
// show how wide the uncertainty about the dependence is.
//
// Pure; no state.
#pragma once

#include <span>

#include "absl/status/statusor.h"
#include "predict/forecaster.h"

namespace flotilla::predict {

// P(value > limit) for one forecast step. A step with stddev 0 is a point
// mass: 1 if its mean exceeds the limit, else 0.
double ExceedanceProbability(const ForecastPoint& point, double limit);

struct Risk {
  double probability = 0;  // 1 - Π(1 - P_h): independence, an upper bound
  double at_least = 0;     // max_h P_h: a lower bound
  int riskiest_step = 0;   // the step with the largest P_h (0 when no steps)
};

// Risk over the first `steps` points of `forecast` (all of them when steps
// exceeds its size). InvalidArgument for steps < 1, a non-finite limit or a
// point with a negative or non-finite stddev.
absl::StatusOr<Risk> RiskScore(std::span<const ForecastPoint> forecast, double limit, int steps);

// The same for "the next `seconds`", when consecutive observations are
// `step_seconds` apart: steps = ceil(seconds / step_seconds).
absl::StatusOr<Risk> RiskWithin(std::span<const ForecastPoint> forecast, double limit,
                                double seconds, double step_seconds);

}  // namespace flotilla::predict
