// AutoForecaster: picks among the naive baseline, Holt-Winters and ARIMA by
// their error on a hold-out, then refits the winner on the whole series.
//
// Candidates: naive (seasonal naive when season m > 1), holt-winters with
// the same season (Holt's linear method without one), and arima with its
// order chosen by AutoArima (inside the training part, so the outer
// hold-out stays unseen). The last H = max(1, min(n/5, max(24, m))) values
// are held out; each candidate is fitted on the rest, forecasts H steps, and
// is scored by MASE scaled by the (seasonal) naive method on the training
// part. Lowest MASE wins; ties go to the model listed first.
// The winner is refitted on the whole series; for arima, with the order it
// was chosen with on the training part. Candidates that cannot be fitted on
// the training part (too short) are skipped; when none can, the naive method
// is used on the whole series.
//
// Pure; thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "predict/forecaster.h"

namespace flotilla::predict {

struct CandidateScore {
  std::string model;  // "naive", "holt-winters", "arima(2,1,0)", ...
  double holdout_mase = 0;
  bool fitted = false;  // false: could not be fitted on the training part
};

class AutoForecaster : public Forecaster {
 public:
  explicit AutoForecaster(int season = 0) : season_(season > 1 ? season : 0) {}

  std::string Name() const override;
  absl::Status Fit(std::span<const double> series) override;
  absl::StatusOr<std::vector<ForecastPoint>> Forecast(int horizon, double level) const override;
  std::vector<FittedParameter> Parameters() const override;
  std::vector<double> FittedValues() const override;
  int MinObservations() const override;

  const Forecaster* chosen() const { return chosen_.get(); }
  const std::vector<CandidateScore>& scores() const { return scores_; }
  int holdout() const { return holdout_; }

 private:
  int season_;
  int holdout_ = 0;
  std::unique_ptr<Forecaster> chosen_;
  std::vector<CandidateScore> scores_;
};

}  // namespace flotilla::predict
