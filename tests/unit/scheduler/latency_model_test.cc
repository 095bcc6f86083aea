#include "scheduler/latency_model.h"

#include <array>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using ::testing::HasSubstr;

LatencyFeatures Features(std::string function, double load, bool cold,
                         std::string node_class = "default", double memory = 0,
                         int64_t input_bytes = 0) {
  return {.function = std::move(function),
          .node_class = std::move(node_class),
          .load = load,
          .memory_pressure = memory,
          .cold_start = cold,
          .input_bytes = input_bytes};
}

// latency = 20 + 100·load + 50·cold, plus uniform noise of ±noise_ms; memory
// pressure and input size vary but do not matter.
std::vector<LatencySample> Synthetic(const std::string& function, int n, double noise_ms,
                                     uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  std::uniform_real_distribution<double> noise(-noise_ms, noise_ms);
  std::uniform_int_distribution<int64_t> bytes(0, 1 << 20);
  std::vector<LatencySample> out;
  for (int i = 0; i < n; ++i) {
    const double load = unit(rng);
    const bool cold = unit(rng) < 0.3;
    LatencyFeatures f = Features(function, load, cold, "default", unit(rng), bytes(rng));
    out.push_back({f, 20 + 100 * load + 50 * (cold ? 1 : 0) + noise(rng)});
  }
  return out;
}

TEST(LatencyModelTest, LearnsASyntheticLinearRelation) {
  LatencyModel model;
  for (const LatencySample& s : Synthetic("resize", 500, 2.0, 7))
    ASSERT_TRUE(model.Observe(s).ok());

  std::array<double, 5> theta{};
  ASSERT_TRUE(model.CoefficientsForTest("resize", "default", &theta));
  EXPECT_NEAR(theta[0], 20, 4);   // intercept
  EXPECT_NEAR(theta[1], 100, 4);  // load
  EXPECT_NEAR(theta[2], 0, 4);    // memory pressure
  EXPECT_NEAR(theta[3], 50, 3);   // cold start
  EXPECT_NEAR(theta[4], 0, 0.5);  // log1p(input bytes)

  for (double load : {0.0, 0.25, 0.5, 0.9}) {
    for (bool cold : {false, true}) {
      LatencyPrediction p = model.Predict(Features("resize", load, cold, "default", 0.5, 4096));
      EXPECT_EQ(p.source, LatencySource::kModel);
      EXPECT_EQ(p.observations, 500);
      EXPECT_NEAR(p.ms, 20 + 100 * load + 50 * (cold ? 1 : 0), 3)
          << "load=" << load << " cold=" << cold;
    }
  }
}

TEST(LatencyModelTest, FallbackOrder) {
  LatencyModel model({.default_ms = 250});
  LatencyPrediction p = model.Predict(Features("f", 0.5, false));
  EXPECT_EQ(p.source, LatencySource::kDefault);
  EXPECT_DOUBLE_EQ(p.ms, 250);
  EXPECT_EQ(p.observations, 0);

  // Another function only: the global mean.
  ASSERT_TRUE(model.Observe({Features("g", 0.5, false), 100}).ok());
  ASSERT_TRUE(model.Observe({Features("g", 0.5, false), 300}).ok());
  p = model.Predict(Features("f", 0.5, false));
  EXPECT_EQ(p.source, LatencySource::kGlobalMean);
  EXPECT_DOUBLE_EQ(p.ms, 200);
  EXPECT_EQ(p.observations, 2);

  // f seen fewer than 5 times: its mean, across node classes.
  ASSERT_TRUE(model.Observe({Features("f", 0.5, false, "gpu"), 40}).ok());
  ASSERT_TRUE(model.Observe({Features("f", 0.5, false, "default"), 60}).ok());
  p = model.Predict(Features("f", 0.5, false));
  EXPECT_EQ(p.source, LatencySource::kFunctionMean);
  EXPECT_DOUBLE_EQ(p.ms, 50);
  EXPECT_EQ(p.observations, 2);

  // Five observations on one key: the model, for that key only.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(model.Observe({Features("f", 0.1 * i, i % 2 == 0, "default"), 60}).ok());
  }
  p = model.Predict(Features("f", 0.5, false, "default"));
  EXPECT_EQ(p.source, LatencySource::kModel);
  EXPECT_EQ(p.observations, 5);
  EXPECT_NEAR(p.ms, 60, 1);
  EXPECT_EQ(model.Predict(Features("f", 0.5, false, "gpu")).source, LatencySource::kFunctionMean);

  EXPECT_STREQ(ToString(LatencySource::kModel), "model");
  EXPECT_STREQ(ToString(LatencySource::kFunctionMean), "function-mean");
  EXPECT_STREQ(ToString(LatencySource::kGlobalMean), "global");
  EXPECT_STREQ(ToString(LatencySource::kDefault), "default");
}

TEST(LatencyModelTest, NodeClassesAreLearnedSeparately) {
  LatencyModel model;
  for (int i = 0; i < 50; ++i) {
    const double load = (i % 10) / 10.0;
    ASSERT_TRUE(model.Observe({Features("f", load, false, "fast"), 10 + 10 * load}).ok());
    ASSERT_TRUE(model.Observe({Features("f", load, false, "slow"), 100 + 200 * load}).ok());
  }
  EXPECT_NEAR(model.Predict(Features("f", 0.5, false, "fast")).ms, 15, 1);
  EXPECT_NEAR(model.Predict(Features("f", 0.5, false, "slow")).ms, 200, 2);
}

TEST(LatencyModelTest, FeaturesThatNeverVaryStayAtZero) {
  // Always warm, always the same input size: no wind-up, and the intercept
  // carries the mean.
  LatencyModel model;
  for (int i = 0; i < 2000; ++i) {
    const double load = (i % 5) / 4.0;
    ASSERT_TRUE(
        model.Observe({Features("f", load, false, "default", 0.2, 1 << 16), 30 + 40 * load}).ok());
  }
  std::array<double, 5> theta{};
  ASSERT_TRUE(model.CoefficientsForTest("f", "default", &theta));
  EXPECT_NEAR(theta[3], 0, 1e-9);  // cold start: never seen
  EXPECT_NEAR(model.Predict(Features("f", 0.5, false, "default", 0.2, 1 << 16)).ms, 50, 0.5);
  for (double v : theta) EXPECT_TRUE(std::isfinite(v));
}

TEST(LatencyModelTest, ForgettingFollowsDrift) {
  LatencyModel model;
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(model.Observe({Features("f", (i % 10) / 10.0, false), 100}).ok());
  }
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(model.Observe({Features("f", (i % 10) / 10.0, false), 200}).ok());
  }
  // 300 observations at λ = 0.99 leave the old regime a weight of ~5%.
  EXPECT_NEAR(model.Predict(Features("f", 0.5, false)).ms, 200, 10);
}

TEST(LatencyModelTest, PredictionIsNeverNegative) {
  LatencyModel model;
  for (int i = 0; i < 20; ++i) {
    const double load = (i % 5) / 10.0;  // 0 .. 0.4
    ASSERT_TRUE(model.Observe({Features("f", load, false), 400 - 1000 * load}).ok());
  }
  LatencyPrediction p = model.Predict(Features("f", 1.0, false));
  EXPECT_EQ(p.source, LatencySource::kModel);
  EXPECT_EQ(p.ms, 0);
}

TEST(LatencyModelTest, ObserveRejectsInvalidSamples) {
  LatencyModel model;
  absl::Status s = model.Observe({Features("f", 0.5, false), -1});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("latency_ms"));
  EXPECT_FALSE(model.Observe({Features("f", 0.5, false), std::nan("")}).ok());
  EXPECT_FALSE(model.Observe({Features("f", INFINITY, false), 10}).ok());
  // Nothing was learned.
  EXPECT_EQ(model.Predict(Features("f", 0.5, false)).source, LatencySource::kDefault);
}

TEST(LatencyModelTest, HoldoutBeatsThePerFunctionMean) {
  LatencyModel model;
  std::vector<LatencySample> history = Synthetic("resize", 400, 2.0, 11);
  auto more = Synthetic("thumbnail", 200, 2.0, 12);
  history.insert(history.end(), more.begin(), more.end());
  // Interleave so both functions appear in both halves.
  std::mt19937 rng(3);
  std::shuffle(history.begin(), history.end(), rng);

  absl::StatusOr<HoldoutReport> report = model.EvaluateHoldout(history, 0.25);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->n_train, 450u);
  EXPECT_EQ(report->n_test, 150u);
  EXPECT_EQ(report->n_test_from_model, 150u);
  EXPECT_LT(report->mae_ms, 3);
  EXPECT_LT(report->mape, 0.05);
  // The mean ignores load and cold starts: tens of ms off on this data.
  EXPECT_GT(report->baseline_mae_ms, 20);
  EXPECT_LT(report->mae_ms, report->baseline_mae_ms / 5);
  EXPECT_LT(report->mape, report->baseline_mape);
  // The evaluating model learned nothing.
  EXPECT_EQ(model.Predict(Features("resize", 0.5, false)).source, LatencySource::kDefault);
}

TEST(LatencyModelTest, HoldoutRejectsBadArguments) {
  LatencyModel model;
  auto history = Synthetic("f", 10, 1.0, 1);
  EXPECT_EQ(model.EvaluateHoldout(history, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model.EvaluateHoldout(history, 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(model.EvaluateHoldout(history, 0.01).ok());  // no test samples
  EXPECT_FALSE(model.EvaluateHoldout({}, 0.5).ok());
  history[2].latency_ms = -5;
  EXPECT_FALSE(model.EvaluateHoldout(history, 0.5).ok());
}

TEST(LatencyModelTest, OptionsValidate) {
  EXPECT_TRUE(LatencyModelOptions{}.Validate().ok());
  EXPECT_FALSE(LatencyModelOptions{.forgetting_factor = 0}.Validate().ok());
  EXPECT_FALSE(LatencyModelOptions{.forgetting_factor = 1.01}.Validate().ok());
  EXPECT_TRUE(LatencyModelOptions{.forgetting_factor = 1}.Validate().ok());
  EXPECT_FALSE(LatencyModelOptions{.ridge = -1}.Validate().ok());
  EXPECT_FALSE(LatencyModelOptions{.min_model_observations = 0}.Validate().ok());
  EXPECT_THAT(std::string(LatencyModelOptions{.default_ms = -1}.Validate().message()),
              HasSubstr("default_ms"));
}

TEST(LatencyModelTest, FeaturesForReadsTheNode) {
  model::HypervisorNode node;
  node.capacity = {.cpu_millis = 4000, .memory_bytes = 1000};
  node.available = {.cpu_millis = 1000, .memory_bytes = 800};
  node.warm_sandboxes = {{"python", 2}, {"node", 0}};
  model::ExecutionRequest req;
  req.function = "resize";
  req.template_name = "python";
  req.input_bytes = 123;

  EXPECT_EQ(NodeClassOf(node), "default");
  LatencyFeatures f = FeaturesFor(req, node);
  EXPECT_EQ(f.function, "resize");
  EXPECT_EQ(f.node_class, "default");
  EXPECT_DOUBLE_EQ(f.load, 0.75);
  EXPECT_DOUBLE_EQ(f.memory_pressure, 0.2);
  EXPECT_FALSE(f.cold_start);
  EXPECT_EQ(f.input_bytes, 123);

  node.labels["class"] = "gpu-large";
  req.template_name = "node";
  f = FeaturesFor(req, node);
  EXPECT_EQ(f.node_class, "gpu-large");
  EXPECT_TRUE(f.cold_start);
  req.template_name = "";
  EXPECT_TRUE(FeaturesFor(req, node).cold_start);
}

}  // namespace
}  // namespace flotilla::scheduler
