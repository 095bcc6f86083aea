// Tests of the Knative-style autoscaler (src/scheduler/autoscaler.cc).

#include "scheduler/autoscaler.h"

#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

AutoscalerOptions Opts() {
  AutoscalerOptions o;
  o.target_concurrency = 2;
  o.stable_window_ms = 60'000;
  o.panic_window_ms = 6'000;
  o.max_instances = 8;
  o.scale_to_zero_grace_ms = 10'000;
  return o;
}

TEST(AutoscalerTest, SteadyLoadGivesCeilOfConcurrencyOverTarget) {
  Autoscaler a(Opts());
  for (int64_t t = 0; t <= 60'000; t += 1000) a.Observe(t, 5);
  auto d = a.Decide(60'000, 3);
  EXPECT_EQ(d.desired, 3);  // ceil(5 / 2)
  EXPECT_FALSE(d.panic);
}

TEST(AutoscalerTest, BurstPanicsAndFollowsThePanicWindow) {
  Autoscaler a(Opts());
  for (int64_t t = 0; t < 54'000; t += 1000) a.Observe(t, 2);
  EXPECT_EQ(a.Decide(53'000, 1).desired, 1);
  for (int64_t t = 54'000; t <= 60'000; t += 1000) a.Observe(t, 14);
  auto d = a.Decide(60'000, 1);
  EXPECT_TRUE(d.panic);
  EXPECT_EQ(d.desired, 7);  // ceil(14 / 2); the stable window alone says 2
}

TEST(AutoscalerTest, NoScaleDownWhilePanicking) {
  Autoscaler a(Opts());
  for (int64_t t = 0; t <= 6'000; t += 1000) a.Observe(t, 16);
  EXPECT_EQ(a.Decide(6'000, 1).desired, 8);  // clamped to max
  for (int64_t t = 7'000; t <= 20'000; t += 1000) a.Observe(t, 1);
  auto d = a.Decide(20'000, 8);
  EXPECT_TRUE(d.panic);
  EXPECT_EQ(d.desired, 8);
  // A whole stable window after the last panic condition it calms down.
  for (int64_t t = 21'000; t <= 70'000; t += 1000) a.Observe(t, 1);
  d = a.Decide(70'000, 8);
  EXPECT_FALSE(d.panic);
  EXPECT_EQ(d.desired, 1);
}

TEST(AutoscalerTest, ScalesToZeroOnlyAfterTheGrace) {
  Autoscaler a(Opts());
  a.Observe(0, 3);
  for (int64_t t = 1000; t <= 61'000; t += 1000) a.Observe(t, 0);
  EXPECT_GE(a.Decide(61'000, 2).desired, 1);  // within grace
  for (int64_t t = 62'000; t <= 75'000; t += 1000) a.Observe(t, 0);
  EXPECT_EQ(a.Decide(75'000, 2).desired, 0);
}

TEST(AutoscalerTest, MinInstancesIsTheFloor) {
  AutoscalerOptions o = Opts();
  o.min_instances = 2;
  Autoscaler a(o);
  EXPECT_EQ(a.Decide(100'000, 0).desired, 2);
}

}  // namespace
}  // namespace flotilla::scheduler
