#include "predict/forecaster.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "predict/nelder_mead.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(NormalTest, QuantileMatchesKnownValues) {
  EXPECT_NEAR(NormalQuantile(0.975), 1.959963984540054, 1e-12);
  EXPECT_NEAR(NormalQuantile(0.5), 0.0, 1e-15);
  EXPECT_NEAR(NormalQuantile(0.9), 1.2815515655446004, 1e-12);
  EXPECT_NEAR(NormalQuantile(0.001), -3.090232306167813, 1e-10);
  EXPECT_TRUE(std::isinf(NormalQuantile(0)));
}

TEST(NormalTest, CdfInvertsQuantile) {
  for (double p : {1e-6, 0.01, 0.2, 0.5, 0.7, 0.99, 1 - 1e-6}) {
    EXPECT_NEAR(NormalCdf(NormalQuantile(p)), p, 1e-12 * std::max(1.0, 1 / p)) << p;
  }
}

TEST(ValidateSeriesTest, NamesTheBadObservation) {
  const std::vector<double> y = {1, 2, std::numeric_limits<double>::quiet_NaN(), 4};
  absl::Status st = ValidateSeries(y, 2, "holt-winters");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("holt-winters: observation 2"));
  st = ValidateSeries(std::vector<double>{1, 2}, 5, "naive");
  EXPECT_THAT(st.message(), HasSubstr("2 observations; this model needs at least 5"));
}

TEST(ValidateForecastRequestTest, RejectsBadHorizonAndLevel) {
  EXPECT_TRUE(ValidateForecastRequest(1, 0.95).ok());
  EXPECT_THAT(ValidateForecastRequest(0, 0.95).message(), HasSubstr("horizon is 0"));
  EXPECT_THAT(ValidateForecastRequest(3, 1.0).message(), HasSubstr("level is 1"));
  EXPECT_FALSE(ValidateForecastRequest(3, 0).ok());
}

TEST(MakeForecasterTest, BuildsEachModelAndRejectsBadSpecs) {
  for (const char* name : {"naive", "holt-winters", "arima", "auto"}) {
    ForecasterSpec spec;
    spec.model = name;
    EXPECT_TRUE(MakeForecaster(spec).ok()) << name;
  }
  ForecasterSpec spec;
  spec.model = "lstm";
  EXPECT_THAT(MakeForecaster(spec).status().message(), HasSubstr("unknown model 'lstm'"));
  spec = {};
  spec.model = "naive";
  spec.p = 1;
  spec.d = 0;
  spec.q = 0;
  EXPECT_THAT(MakeForecaster(spec).status().message(), HasSubstr("--model arima"));
  spec.model = "arima";
  spec.d = 3;
  EXPECT_THAT(MakeForecaster(spec).status().message(), HasSubstr("d must be 0, 1 or 2"));
  spec = {};
  spec.season = -2;
  EXPECT_EQ(MakeForecaster(spec).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NelderMeadTest, FindsTheRosenbrockMinimum) {
  auto rosenbrock = [](std::span<const double> x) {
    return 100 * (x[1] - x[0] * x[0]) * (x[1] - x[0] * x[0]) + (1 - x[0]) * (1 - x[0]);
  };
  NelderMeadOptions options;
  options.max_evaluations = 10000;
  NelderMeadResult r = NelderMead(rosenbrock, {-1.2, 1.0}, options);
  EXPECT_TRUE(r.converged);
  EXPECT_NEAR(r.x[0], 1, 1e-4);
  EXPECT_NEAR(r.x[1], 1, 1e-4);
}

TEST(NelderMeadTest, StopsAtTheEvaluationBudget) {
  auto bowl = [](std::span<const double> x) { return x[0] * x[0] + x[1] * x[1] + x[2] * x[2]; };
  NelderMeadOptions options;
  options.max_evaluations = 20;
  NelderMeadResult r = NelderMead(bowl, {5, 5, 5}, options);
  EXPECT_FALSE(r.converged);
  EXPECT_LE(r.evaluations, 20 + 3);  // a shrink may finish its round
}

}  // namespace
}  // namespace flotilla::predict
