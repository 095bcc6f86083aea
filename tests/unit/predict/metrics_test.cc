#include "predict/metrics.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(MaseTest, ScalesByTheNaiveInSampleError) {
  const std::vector<double> train = {1, 3, 2, 5, 4};  // naive errors 2,1,3,1: mean 1.75
  const std::vector<double> actual = {6, 7};
  const std::vector<double> forecast = {5, 9};  // errors 1, 2: mean 1.5
  auto mase = MASE(actual, forecast, train, 1);
  ASSERT_TRUE(mase.ok());
  EXPECT_NEAR(*mase, 1.5 / 1.75, 1e-12);
  EXPECT_DOUBLE_EQ(*MASE(actual, actual, train, 1), 0);
}

TEST(MaseTest, UsesTheSeasonalNaiveScale) {
  const std::vector<double> train = {1, 10, 2, 12, 3, 14};  // lag-2 errors 1,2,1,2: mean 1.5
  auto mase = MASE(std::vector<double>{4}, std::vector<double>{7}, train, 2);
  ASSERT_TRUE(mase.ok());
  EXPECT_NEAR(*mase, 3 / 1.5, 1e-12);
}

TEST(MaseTest, SkipsMissingForecastsAndHandlesAConstantTrainingSeries) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto mase =
      MASE(std::vector<double>{1, 2}, std::vector<double>{nan, 3}, std::vector<double>{0, 1}, 1);
  ASSERT_TRUE(mase.ok());
  EXPECT_DOUBLE_EQ(*mase, 1);
  const std::vector<double> flat = {4, 4, 4};
  EXPECT_TRUE(std::isinf(*MASE(std::vector<double>{5}, std::vector<double>{4}, flat, 1)));
  EXPECT_DOUBLE_EQ(*MASE(std::vector<double>{4}, std::vector<double>{4}, flat, 1), 0);
}

TEST(MaseTest, RejectsBadInput) {
  EXPECT_THAT(MASE(std::vector<double>{1, 2}, std::vector<double>{1}, std::vector<double>{1, 2}, 1)
                  .status()
                  .message(),
              HasSubstr("2 actual values but 1 forecasts"));
  EXPECT_FALSE(
      MASE(std::vector<double>{1}, std::vector<double>{1}, std::vector<double>{1, 2}, 4).ok());
  EXPECT_FALSE(
      MASE(std::vector<double>{}, std::vector<double>{}, std::vector<double>{1, 2}, 1).ok());
}

}  // namespace
}  // namespace flotilla::predict
