#include "predict/arima.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_series.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(ArimaTest, RecoversAr1Coefficient) {
  const std::vector<double> y = testing::Arma({0.7}, {}, 20, 1, 2000, /*seed=*/1);
  ArimaForecaster model({1, 0, 0});
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_NEAR(model.ar()[0], 0.7, 0.04);
  EXPECT_NEAR(model.mean(), 20, 0.2);
  EXPECT_NEAR(model.sigma2(), 1, 0.1);
  // One-step fitted values follow the AR recursion.
  const auto fitted = model.FittedValues();
  EXPECT_TRUE(std::isnan(fitted[0]));
  EXPECT_NEAR(fitted[10], model.mean() + model.ar()[0] * (y[9] - model.mean()), 1e-9);
}

TEST(ArimaTest, RecoversMa1Coefficient) {
  const std::vector<double> y = testing::Arma({}, {0.5}, 0, 1, 3000, /*seed=*/2);
  ArimaForecaster model({0, 0, 1});
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_NEAR(model.ma()[0], 0.5, 0.05);
}

TEST(ArimaTest, Ar1IntervalsFollowPsiWeights) {
  const std::vector<double> y = testing::Arma({0.6}, {}, 5, 2, 500, /*seed=*/3);
  ArimaForecaster model({1, 0, 0});
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(6, 0.95);
  ASSERT_TRUE(f.ok());
  const double phi = model.ar()[0], mu = model.mean();
  double var = 0, expected = y.back();
  for (int h = 1; h <= 6; ++h) {
    var += std::pow(phi, 2 * (h - 1));
    expected = mu + phi * (expected - mu);
    EXPECT_NEAR((*f)[h - 1].mean, expected, 1e-9);
    EXPECT_NEAR((*f)[h - 1].stddev, std::sqrt(model.sigma2() * var), 1e-9);
  }
}

TEST(ArimaTest, RandomWalkWithDriftContinuesFromTheLastValue) {
  const std::vector<double> y = testing::Integrate(testing::Arma({}, {}, 0.5, 1, 200, 4), 50);
  ArimaForecaster model({0, 1, 0});
  ASSERT_TRUE(model.Fit(y).ok());
  // The drift is the mean step: (y[n-1] - y[0]) / (n - 1).
  EXPECT_NEAR(model.mean(), (y.back() - y.front()) / 199, 1e-9);
  EXPECT_NEAR(model.mean(), 0.5, 0.2);
  auto f = model.Forecast(4, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 1; h <= 4; ++h) {
    EXPECT_NEAR((*f)[h - 1].mean, y.back() + h * model.mean(), 1e-9);
    EXPECT_NEAR((*f)[h - 1].stddev, std::sqrt(model.sigma2() * h), 1e-9);
  }
}

TEST(ArimaTest, TwiceDifferencedContinuesALine) {
  std::vector<double> y;
  for (int t = 0; t < 20; ++t) y.push_back(7 - 1.5 * t);
  ArimaForecaster model({0, 2, 0});
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(3, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 1; h <= 3; ++h) EXPECT_NEAR((*f)[h - 1].mean, 7 - 1.5 * (19 + h), 1e-9);
  EXPECT_NEAR(model.FittedValues()[5], y[5], 1e-9);
}

TEST(ArimaTest, ErrorsNameWhatIsWrong) {
  ArimaForecaster bad({1, 3, 0});
  EXPECT_THAT(bad.Fit(std::vector<double>(50, 1.0)).message(), HasSubstr("d must be 0, 1 or 2"));
  ArimaForecaster model({3, 1, 2});
  absl::Status st = model.Fit(std::vector<double>(6, 1.0));
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("arima(3,1,2)"));
  std::vector<double> y = testing::Arma({0.5}, {}, 0, 1, 50, 5);
  y[3] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(ArimaForecaster({1, 0, 0}).Fit(y).message(), HasSubstr("observation 3"));
  EXPECT_EQ(model.Forecast(2, 0.95).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(AutoArimaTest, FollowsATrend) {
  std::vector<double> y = testing::Arma({0.3}, {}, 0, 0.5, 120, 6);
  for (size_t t = 0; t < y.size(); ++t) y[t] += 100 + 2.0 * t;
  AutoArimaForecaster model;
  ASSERT_TRUE(model.Fit(y).ok());
  auto f = model.Forecast(5, 0.95);
  ASSERT_TRUE(f.ok());
  for (int h = 1; h <= 5; ++h) EXPECT_NEAR((*f)[h - 1].mean, 100 + 2.0 * (119 + h), 5);
}

TEST(AutoArimaTest, FindsAutoregressionInAnArSeries) {
  const std::vector<double> y = testing::Arma({0.8}, {}, 10, 1, 300, 7);
  AutoArimaForecaster model;
  ASSERT_TRUE(model.Fit(y).ok());
  // Dynamics are found: not white noise around a mean.
  EXPECT_GE(model.chosen().p + model.chosen().q + model.chosen().d, 1) << model.Name();
  EXPECT_THAT(model.Name(), HasSubstr("arima("));
}

}  // namespace
}  // namespace flotilla::predict
