#include "predict/naive.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(NaiveTest, ForecastsTheLastValueWithRandomWalkIntervals) {
  const std::vector<double> y = {1, 3, 2, 4, 3};
  NaiveForecaster model;
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(4, 0.95);
  ASSERT_TRUE(f.ok());
  // Residuals 2, -1, 2, -1: σ² = 10/4.
  const double sigma = std::sqrt(2.5);
  for (int h = 1; h <= 4; ++h) {
    EXPECT_EQ((*f)[h - 1].step, h);
    EXPECT_DOUBLE_EQ((*f)[h - 1].mean, 3);
    EXPECT_NEAR((*f)[h - 1].stddev, sigma * std::sqrt(h), 1e-12);
    EXPECT_NEAR((*f)[h - 1].upper - (*f)[h - 1].mean, 1.959963984540054 * sigma * std::sqrt(h),
                1e-9);
  }
  EXPECT_TRUE(std::isnan(model.FittedValues()[0]));
  EXPECT_DOUBLE_EQ(model.FittedValues()[4], 4);
}

TEST(NaiveTest, SeasonalRepeatsTheLastSeason) {
  const std::vector<double> y = {1, 5, 9, 2, 6, 10, 3, 7, 11};
  NaiveForecaster model(3);
  EXPECT_EQ(model.Name(), "seasonal-naive");
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(7, 0.9);
  ASSERT_TRUE(f.ok());
  const double expected[] = {3, 7, 11, 3, 7, 11, 3};
  for (int h = 0; h < 7; ++h) EXPECT_DOUBLE_EQ((*f)[h].mean, expected[h]);
  // Every residual is 1: σ = 1; k = floor((h-1)/3) + 1.
  EXPECT_NEAR((*f)[2].stddev, 1, 1e-12);
  EXPECT_NEAR((*f)[3].stddev, std::sqrt(2), 1e-12);
  EXPECT_NEAR((*f)[6].stddev, std::sqrt(3), 1e-12);
}

TEST(NaiveTest, RejectsShortSeriesAndSeasonLongerThanSeries) {
  NaiveForecaster model;
  EXPECT_THAT(model.Fit(std::vector<double>{4}).message(), HasSubstr("at least 2"));
  NaiveForecaster seasonal(12);
  absl::Status st = seasonal.Fit(std::vector<double>(8, 1.0));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("needs at least 13"));
  EXPECT_EQ(seasonal.Forecast(3, 0.95).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flotilla::predict
