#include "predict/auto_forecaster.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "predict/arima.h"
#include "predict/holt_winters.h"
#include "predict/metrics.h"
#include "predict/naive.h"

namespace flotilla::predict {
namespace {

std::vector<std::function<std::unique_ptr<Forecaster>()>> Candidates(int season) {
  return {
      [season] { return std::make_unique<NaiveForecaster>(season); },
      [season] { return std::make_unique<HoltWintersForecaster>(season); },
      [] { return std::make_unique<AutoArimaForecaster>(); },
  };
}

}  // namespace

std::string AutoForecaster::Name() const {
  return chosen_ ? absl::StrCat("auto(", chosen_->Name(), ")") : std::string("auto");
}

int AutoForecaster::MinObservations() const { return NaiveForecaster(season_).MinObservations(); }

absl::Status AutoForecaster::Fit(std::span<const double> series) {
  chosen_.reset();
  scores_.clear();
  RETURN_IF_ERROR(ValidateSeries(series, MinObservations(), "auto"));
  const int n = static_cast<int>(series.size());
  const int m = std::max(season_, 1);
  holdout_ = std::max(1, std::min(n / 5, std::max(24, m)));
  const std::span<const double> train = series.first(n - holdout_);
  const std::span<const double> test = series.last(holdout_);

  int best = -1;
  double best_mase = std::numeric_limits<double>::infinity();
  const auto candidates = Candidates(season_);
  std::vector<std::unique_ptr<Forecaster>> trained;
  for (size_t i = 0; i < candidates.size(); ++i) {
    trained.push_back(candidates[i]());
    Forecaster* model = trained.back().get();
    CandidateScore score{model->Name(), 0, false};
    if (static_cast<int>(train.size()) >= std::max(model->MinObservations(), m + 1) &&
        model->Fit(train).ok()) {
      auto forecast = model->Forecast(holdout_, 0.95);
      if (forecast.ok()) {
        std::vector<double> means;
        for (const ForecastPoint& p : *forecast) means.push_back(p.mean);
        auto mase = MASE(test, means, train, m);
        if (mase.ok()) {
          score = {model->Name(), *mase, true};
          if (*mase < best_mase || best < 0) {
            best_mase = *mase;
            best = static_cast<int>(i);
          }
        }
      }
    }
    scores_.push_back(score);
  }
  if (best < 0) best = 0;  // too short to hold anything out: the baseline
  std::unique_ptr<Forecaster> winner = candidates[best]();
  // Keep the ARIMA order that won rather than searching again on more data.
  if (auto* arima = dynamic_cast<AutoArimaForecaster*>(trained[best].get());
      arima != nullptr && scores_[best].fitted) {
    winner = std::make_unique<ArimaForecaster>(arima->chosen());
  }
  RETURN_IF_ERROR(winner->Fit(series));
  chosen_ = std::move(winner);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ForecastPoint>> AutoForecaster::Forecast(int horizon,
                                                                    double level) const {
  RETURN_IF_ERROR(ValidateForecastRequest(horizon, level));
  if (!chosen_) return absl::FailedPreconditionError("auto: Forecast before a successful Fit");
  return chosen_->Forecast(horizon, level);
}

std::vector<FittedParameter> AutoForecaster::Parameters() const {
  if (!chosen_) return {};
  return chosen_->Parameters();  // the candidates' scores are in scores()
}

std::vector<double> AutoForecaster::FittedValues() const {
  return chosen_ ? chosen_->FittedValues() : std::vector<double>{};
}

}  // namespace flotilla::predict
