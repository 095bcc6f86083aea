#include "predict/holt_winters.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_series.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(HoltWintersTest, PureLinearTrendIsForecastExactly) {
  std::vector<double> y;
  for (int t = 0; t < 30; ++t) y.push_back(3 + 2 * t);
  HoltWintersForecaster model;
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_NEAR(model.params().initial_level, 1, 1e-9);  // the line at t = 0 of the fit: 3 - 2
  EXPECT_NEAR(model.params().initial_trend, 2, 1e-9);
  EXPECT_NEAR(model.sse(), 0, 1e-12);
  auto f = model.Forecast(5, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 1; h <= 5; ++h) {
    EXPECT_NEAR((*f)[h - 1].mean, 3 + 2 * (29 + h), 1e-8);
    EXPECT_NEAR((*f)[h - 1].stddev, 0, 1e-6);
  }
}

TEST(HoltWintersTest, PureSeasonalSeriesRepeatsItsPattern) {
  const std::vector<double> pattern = {10, 14, 8, 4, 12, 6};
  std::vector<double> y;
  for (int c = 0; c < 8; ++c) y.insert(y.end(), pattern.begin(), pattern.end());
  HoltWintersForecaster model(6);
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_NEAR(model.sse(), 0, 1e-9);
  const double mean = 9;
  for (int j = 0; j < 6; ++j)
    EXPECT_NEAR(model.params().initial_seasonals[j], pattern[j] - mean, 1e-9);
  auto f = model.Forecast(12, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 0; h < 12; ++h) EXPECT_NEAR((*f)[h].mean, pattern[h % 6], 1e-7) << h;
}

TEST(HoltWintersTest, SeasonalWithTrendIsForecastExactly) {
  const std::vector<double> pattern = {3, -1, -4, 2};
  std::vector<double> y;
  for (int t = 0; t < 40; ++t) y.push_back(50 + 0.5 * t + pattern[t % 4]);
  HoltWintersForecaster model(4);
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(8, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 1; h <= 8; ++h) {
    const int t = 39 + h;
    EXPECT_NEAR((*f)[h - 1].mean, 50 + 0.5 * t + pattern[t % 4], 1e-6) << h;
  }
}

TEST(HoltWintersTest, IntervalsWidenWithHorizonAndLevel) {
  const std::vector<double> y = testing::Seasonal(96, 12, 100, 0.5, 20, 3, /*seed=*/5);
  HoltWintersForecaster model(12);
  ASSERT_TRUE(model.Fit(y).ok());
  auto f95 = model.Forecast(24, 0.95);
  auto f80 = model.Forecast(24, 0.80);
  ASSERT_TRUE(f95.ok() && f80.ok());
  for (int h = 1; h < 24; ++h) EXPECT_GE((*f95)[h].stddev, (*f95)[h - 1].stddev);
  for (int h = 0; h < 24; ++h) {
    EXPECT_LT((*f80)[h].upper - (*f80)[h].lower, (*f95)[h].upper - (*f95)[h].lower);
    EXPECT_NEAR((*f80)[h].mean, (*f95)[h].mean, 1e-12);
  }
  // The one-step interval is σ itself, σ² = SSE / (n - (4 + 13)).
  EXPECT_NEAR((*f95)[0].stddev, std::sqrt(model.sse() / (96 - 17)), 1e-9);
  EXPECT_GE(model.params().alpha, 0);
  EXPECT_LE(model.params().beta, model.params().alpha);
  EXPECT_LE(model.params().gamma, 1 - model.params().alpha + 1e-12);
}

TEST(HoltWintersTest, ErrorsNameWhatIsWrong) {
  HoltWintersForecaster holt;
  EXPECT_THAT(holt.Fit(std::vector<double>(9, 1.0)).message(), HasSubstr("at least 10"));
  HoltWintersForecaster seasonal(12);
  absl::Status st = seasonal.Fit(std::vector<double>(20, 1.0));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("season 12"));
  EXPECT_THAT(st.message(), HasSubstr("at least 24"));
  std::vector<double> y(30, 1.0);
  y[17] = std::numeric_limits<double>::infinity();
  EXPECT_THAT(holt.Fit(y).message(), HasSubstr("observation 17"));
  EXPECT_EQ(holt.Forecast(3, 0.95).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(holt.Fit(std::vector<double>(30, 1.0)).ok());
  EXPECT_EQ(holt.Forecast(0, 0.95).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(holt.Forecast(3, 1.5).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flotilla::predict
