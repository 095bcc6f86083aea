#include "predict/prewarm.h"

#include <gtest/gtest.h>

#include <cmath>

namespace flotilla::predict {
namespace {

constexpr int64_t kMinute = 60'000;

TEST(PoissonQuantileTest, SmallAndLargeMeans) {
  EXPECT_EQ(PoissonQuantile(0, 0.95), 0);
  // P(0) = e^-0.1 = 0.905 < 0.95; P(<=1) = 0.995.
  EXPECT_EQ(PoissonQuantile(0.1, 0.95), 1);
  EXPECT_EQ(PoissonQuantile(0.01, 0.95), 0);  // P(0) = 0.990
  // Poisson(10): P(<=15) = 0.951, P(<=14) = 0.917.
  EXPECT_EQ(PoissonQuantile(10, 0.95), 15);
  // Normal approximation: 400 + 1.645 · 20 = 432.9.
  EXPECT_NEAR(PoissonQuantile(400, 0.95), 433, 1);
}

TEST(PrewarmPlannerTest, UnknownKeyAndNoInvocationsKeepNothing) {
  PrewarmPlanner p;
  EXPECT_EQ(p.PlanKey("python", 0).min_idle, 0);
  EXPECT_TRUE(p.Plan(0).empty());
}

TEST(PrewarmPlannerTest, RecentBurstRaisesTheTargetReactively) {
  PrewarmOptions o;
  o.start_time_s = 10;
  o.refill_delay_s = 0;  // window 10 s
  PrewarmPlanner p(o);
  // 120 invocations in the last minute: 2/s, 20 in a window; quantile ~28.
  for (int i = 0; i < 120; ++i) p.Record("python", 1'000'000 + i * 500);
  PrewarmTarget t = p.PlanKey("python", 1'060'000);
  EXPECT_NEAR(t.recent_per_s, 2.0, 0.05);
  EXPECT_EQ(t.min_idle, 16);  // capped at max_idle
  o.max_idle = 100;
  PrewarmPlanner q(o);
  for (int i = 0; i < 120; ++i) q.Record("python", 1'000'000 + i * 500);
  EXPECT_EQ(q.PlanKey("python", 1'060'000).min_idle, PoissonQuantile(2.0 * 10, 0.95));
}

TEST(PrewarmPlannerTest, SteadyRateKeepsOneWarmAndIdlenessShrinksToZero) {
  PrewarmOptions o;
  PrewarmPlanner p(o);
  // One invocation every 2 minutes for 3 hours.
  int64_t t = 0;
  for (; t < 3 * 60 * kMinute; t += 2 * kMinute) p.Record("fn", t);
  PrewarmTarget busy = p.PlanKey("fn", t);
  EXPECT_GE(busy.min_idle, 1) << busy.reason;
  EXPECT_NEAR(busy.forecast_per_s, 1.0 / 120, 0.004) << busy.reason;
  EXPECT_EQ(busy.model, "holt");
  // Then nothing for 6 hours: the forecast follows the silence down.
  PrewarmTarget quiet = p.PlanKey("fn", t + 6 * 60 * kMinute);
  EXPECT_EQ(quiet.min_idle, 0) << quiet.reason;
}

TEST(PrewarmPlannerTest, DailySeasonPrewarmsBeforeTheMorningRamp) {
  PrewarmOptions o;
  o.bucket_s = 600;  // 144 buckets a day
  PrewarmPlanner p(o);
  // Three days: busy 08:00-18:00 (one invocation every 20 s), silent otherwise.
  const int64_t day = 24 * 60 * kMinute;
  for (int d = 0; d < 3; ++d) {
    for (int64_t t = 8 * 60 * kMinute; t < 18 * 60 * kMinute; t += 20'000) p.Record("fn", d * day + t);
  }
  // Day 4 at 08:00, before anything arrived today (last one 14 h ago): only
  // the seasonal model can know the ramp is now.
  PrewarmTarget t = p.PlanKey("fn", 3 * day + 8 * 60 * kMinute + 1000);
  EXPECT_EQ(t.model, "holt-winters(144)") << t.reason;
  EXPECT_EQ(t.recent_per_s, 0);
  EXPECT_GE(t.min_idle, 1) << t.reason;
  EXPECT_GT(t.forecast_per_s, 0.02) << t.reason;
  // At 03:00 it forecasts silence.
  PrewarmTarget night = p.PlanKey("fn", 3 * day + 3 * 60 * kMinute + 1000 + day);
  EXPECT_EQ(night.min_idle, 0) << night.reason;
}

TEST(PrewarmPlannerTest, ValidationNamesTheOption) {
  PrewarmOptions o;
  EXPECT_TRUE(ValidatePrewarmOptions(o).ok());
  o.quantile = 1;
  EXPECT_NE(ValidatePrewarmOptions(o).message().find("prewarm.quantile"), std::string::npos);
  o = PrewarmOptions{};
  o.refit_s = 10;
  EXPECT_FALSE(ValidatePrewarmOptions(o).ok());
}

TEST(PrewarmPlannerTest, PruneForgetsKeysSilentForAWholeHistory) {
  PrewarmOptions o;
  o.history_buckets = 10;
  o.bucket_s = 60;
  PrewarmPlanner p(o);
  p.Record("old", 0);
  p.Record("new", 20 * kMinute);
  p.Prune(20 * kMinute);
  auto targets = p.Plan(20 * kMinute);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].key, "new");
}

}  // namespace
}  // namespace flotilla::predict
