#include "predict/risk.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::predict {
namespace {

std::vector<ForecastPoint> Steps(double mean, double slope, double sd, int n) {
  std::vector<ForecastPoint> out;
  for (int h = 1; h <= n; ++h) out.push_back({h, mean + slope * h, sd * std::sqrt(h), 0, 0});
  return out;
}

TEST(ExceedanceTest, HalfAtTheMeanAndPointMassWithoutSpread) {
  EXPECT_NEAR(ExceedanceProbability({1, 10, 2, 0, 0}, 10), 0.5, 1e-12);
  EXPECT_NEAR(ExceedanceProbability({1, 10, 2, 0, 0}, 10 + 2 * 1.959963984540054), 0.025, 1e-9);
  EXPECT_EQ(ExceedanceProbability({1, 10, 0, 0, 0}, 9), 1.0);
  EXPECT_EQ(ExceedanceProbability({1, 10, 0, 0, 0}, 10), 0.0);
}

TEST(RiskScoreTest, IsMonotone) {
  const auto forecast = Steps(50, 2, 5, 10);
  double previous = 1.1;
  for (double limit = 40; limit <= 120; limit += 5) {  // a higher limit: less risk
    auto r = RiskScore(forecast, limit, 10);
    ASSERT_TRUE(r.ok());
    EXPECT_LE(r->probability, previous + 1e-15);
    EXPECT_LE(r->at_least, r->probability + 1e-15);
    previous = r->probability;
  }
  previous = -1;
  for (int steps = 1; steps <= 10; ++steps) {  // a longer window: more risk
    auto r = RiskScore(forecast, 80, steps);
    ASSERT_TRUE(r.ok());
    EXPECT_GE(r->probability, previous);
    previous = r->probability;
  }
  previous = -1;
  for (double sd = 0.5; sd <= 20; sd *= 2) {  // more uncertainty above the forecast: more risk
    auto r = RiskScore(Steps(50, 0, sd, 5), 70, 5);
    ASSERT_TRUE(r.ok());
    EXPECT_GT(r->probability, previous);
    previous = r->probability;
  }
}

TEST(RiskScoreTest, CombinesStepsUnderIndependence) {
  std::vector<ForecastPoint> f = {{1, 0, 1, 0, 0}, {2, 0, 1, 0, 0}};
  auto r = RiskScore(f, 0, 2);  // each step 0.5
  ASSERT_TRUE(r.ok());
  EXPECT_NEAR(r->probability, 0.75, 1e-12);
  EXPECT_NEAR(r->at_least, 0.5, 1e-12);
  EXPECT_EQ(r->riskiest_step, 1);
  auto within = RiskWithin(f, 0, 15, 10);  // 15 s at 10 s a step: 2 steps
  ASSERT_TRUE(within.ok());
  EXPECT_NEAR(within->probability, 0.75, 1e-12);
}

TEST(RiskScoreTest, RejectsBadInput) {
  const auto f = Steps(1, 0, 1, 3);
  EXPECT_FALSE(RiskScore(f, 2, 0).ok());
  EXPECT_FALSE(RiskScore(f, std::nan(""), 2).ok());
  std::vector<ForecastPoint> bad = {{1, 0, -1, 0, 0}};
  EXPECT_FALSE(RiskScore(bad, 1, 1).ok());
  EXPECT_FALSE(RiskWithin(f, 1, 10, 0).ok());
}

}  // namespace
}  // namespace flotilla::predict
