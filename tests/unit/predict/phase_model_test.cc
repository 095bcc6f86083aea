#include "predict/phase_model.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_series.h"

namespace flotilla::predict {
namespace {

using ::testing::HasSubstr;

TEST(PhaseModelTest, RecoversThreeRegimes) {
  std::vector<int> truth;
  const std::vector<double> y = testing::ThreeRegimes(600, 25, /*seed=*/9, &truth);
  PhaseModel model;
  ASSERT_TRUE(model.Fit(y).ok());
  EXPECT_NEAR(model.means()[0], 5, 0.5);
  EXPECT_NEAR(model.means()[1], 40, 0.5);
  EXPECT_NEAR(model.means()[2], 90, 0.5);
  for (double v : model.variances()) EXPECT_NEAR(std::sqrt(v), 2, 0.4);
  auto path = model.Decode(y);
  ASSERT_TRUE(path.ok());
  int correct = 0;
  for (size_t t = 0; t < y.size(); ++t) correct += (*path)[t] == truth[t];
  EXPECT_GE(correct, 0.98 * y.size());
  EXPECT_EQ(model.CurrentPhase(), truth.back());
  EXPECT_EQ(model.PhaseName(2), "burst");
  // Runs of 25: staying is about 24/25 likely, and each state leads to the
  // next regime of the cycle.
  EXPECT_GT(model.transitions()[0][0], 0.9);
  EXPECT_GT(model.transitions()[0][1], model.transitions()[0][2]);
}

TEST(PhaseModelTest, ForeseesTheNextPhase) {
  std::vector<int> truth;
  const std::vector<double> y = testing::ThreeRegimes(400, 20, 10, &truth);
  PhaseModel model;
  ASSERT_TRUE(model.Fit(y).ok());
  const std::vector<double> next = model.NextPhaseDistribution();
  ASSERT_EQ(next.size(), 3u);
  EXPECT_NEAR(std::accumulate(next.begin(), next.end(), 0.0), 1, 1e-9);
  EXPECT_GT(next[model.CurrentPhase()], 0.8);  // phases persist
  // A recent stretch of idle usage: next is most likely idle, and after it
  // steady rather than burst.
  auto from_idle = model.NextPhaseDistribution(std::vector<double>{40, 5, 6, 4});
  ASSERT_TRUE(from_idle.ok());
  EXPECT_GT((*from_idle)[0], 0.8);
  EXPECT_GT((*from_idle)[1], (*from_idle)[2]);
  EXPECT_NEAR(model.ExpectedNextValue(),
              next[0] * model.means()[0] + next[1] * model.means()[1] + next[2] * model.means()[2],
              1e-9);
}

TEST(PhaseModelTest, IsDeterministic) {
  std::vector<int> truth;
  const std::vector<double> y = testing::ThreeRegimes(300, 15, 11, &truth);
  PhaseModel a, b;
  ASSERT_TRUE(a.Fit(y).ok());
  ASSERT_TRUE(b.Fit(y).ok());
  EXPECT_EQ(a.means(), b.means());
  EXPECT_EQ(a.log_likelihood(), b.log_likelihood());
  EXPECT_LE(a.iterations(), 100);
}

TEST(PhaseModelTest, ErrorsNameWhatIsWrong) {
  PhaseModel model;
  EXPECT_EQ(model.Decode(std::vector<double>{1}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(model.Fit(std::vector<double>(5, 1.0)).message(), HasSubstr("at least 9"));
  EXPECT_THAT(PhaseModel({0, 10, 1e-6}).Fit(std::vector<double>(50, 1.0)).message(),
              HasSubstr("states is 0"));
  std::vector<double> y(30, 1.0);
  y[4] = std::nan("");
  EXPECT_THAT(model.Fit(y).message(), HasSubstr("observation 4"));
  // A constant series fits (every state collapses to the floor variance).
  EXPECT_TRUE(model.Fit(std::vector<double>(30, 3.0)).ok());
}

}  // namespace
}  // namespace flotilla::predict
