#include "predict/auto_forecaster.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_series.h"

namespace flotilla::predict {
namespace {

TEST(AutoForecasterTest, PicksASeasonalModelForSeasonalData) {
  const std::vector<double> y = testing::Seasonal(144, 12, 100, 0.5, 30, 2, /*seed=*/31);
  AutoForecaster model(12);
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_EQ(model.chosen()->Name(), "holt-winters");
  EXPECT_EQ(model.Name(), "auto(holt-winters)");
  ASSERT_EQ(model.scores().size(), 3u);
  double best = 1e300;
  for (const CandidateScore& s : model.scores()) {
    if (s.fitted) best = std::min(best, s.holdout_mase);
  }
  EXPECT_EQ(model.scores()[1].holdout_mase, best);
  EXPECT_EQ(model.holdout(), 24);  // min(144 / 5, max(24, 12))
  auto f = model.Forecast(12, 0.95);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->size(), 12u);
}

TEST(AutoForecasterTest, ChoosesTheLowestHoldoutMase) {
  const std::vector<double> y = testing::Arma({0.8}, {}, 30, 1, 200, 32);
  AutoForecaster model;
  ASSERT_TRUE(model.Fit(y).ok());
  double best = 1e300;
  std::string best_name;
  for (const CandidateScore& s : model.scores()) {
    if (s.fitted && s.holdout_mase < best) {
      best = s.holdout_mase;
      best_name = s.model;
    }
  }
  EXPECT_EQ(model.chosen()->Name(), best_name);
}

TEST(AutoForecasterTest, FallsBackToNaiveOnATinySeries) {
  AutoForecaster model;
  ASSERT_TRUE(model.Fit(std::vector<double>{1, 2, 3}).ok());
  EXPECT_EQ(model.chosen()->Name(), "naive");
  EXPECT_FALSE(model.Fit(std::vector<double>{1}).ok());
}

}  // namespace
}  // namespace flotilla::predict
