// Forecast accuracy measures.
//
// MASE, the mean absolute scaled error (Hyndman & Koehler 2006): the mean
// absolute error of a forecast divided by the in-sample mean absolute error
// of the (seasonal) naive method on the training series,
//
//   MASE = mean|actual - forecast| / mean_{t >= m} |train[t] - train[t-m]|.
//
// Below 1 the forecast beats the naive method's one-step in-sample error;
// it is comparable across series of different scales. Pure.
#pragma once

#include <span>

#include "absl/status/statusor.h"

namespace flotilla::predict {

// Returns the MASE of `forecast` against `actual` (same length, >= 1) scaled
// by the naive method with season `season` (0 or 1: none) on `train`, which
// needs at least season + 1 values. NaN entries of `forecast` (no prediction
// there) are skipped, with their actual values. When the training series has
// no naive error at all (constant, or exactly periodic), returns 0 if the
// forecast is exact and +infinity otherwise. InvalidArgument on mismatched
// sizes, too short a training series, non-finite values in actual/train, or
// no forecast value to score.
absl::StatusOr<double> MASE(std::span<const double> actual, std::span<const double> forecast,
                            std::span<const double> train, int season);

}  // namespace flotilla::predict
