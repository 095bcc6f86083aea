#include "sim/prewarm_sim.h"

#include <gtest/gtest.h>

namespace flotilla::sim {
namespace {

PrewarmTrace Manual(std::vector<Invocation> inv, int functions, double duration_s) {
  PrewarmTrace t;
  t.invocations = std::move(inv);
  t.base_rate_per_s.assign(static_cast<size_t>(functions), 0.01);
  t.duration_s = duration_s;
  return t;
}

TEST(PrewarmTraceTest, SameSeedSameTraceAndDailyCycleVisible) {
  PrewarmTraceOptions o;
  o.functions = 6;
  o.days = 2;
  PrewarmTrace a = GeneratePrewarmTrace(o);
  PrewarmTrace b = GeneratePrewarmTrace(o);
  ASSERT_EQ(a.invocations.size(), b.invocations.size());
  ASSERT_FALSE(a.invocations.empty());
  for (size_t i = 0; i < a.invocations.size(); i += 97) {
    EXPECT_EQ(a.invocations[i].t_s, b.invocations[i].t_s);
    EXPECT_EQ(a.invocations[i].function, b.invocations[i].function);
  }
  o.seed = 2;
  EXPECT_NE(GeneratePrewarmTrace(o).invocations.size(), a.invocations.size());
  // Afternoons (12-16 h) are busier than nights (2-6 h) without bursts.
  o.seed = 1;
  o.bursts_per_day = 0;
  PrewarmTrace c = GeneratePrewarmTrace(o);
  int day = 0, night = 0;
  for (const auto& inv : c.invocations) {
    const double h = std::fmod(inv.t_s / 3600, 24);
    day += h >= 12 && h < 16;
    night += h >= 2 && h < 6;
  }
  EXPECT_GT(day, 3 * night);
  for (size_t i = 1; i < c.invocations.size(); ++i) {
    ASSERT_LE(c.invocations[i - 1].t_s, c.invocations[i].t_s);
  }
}

TEST(PrewarmSimTest, FixedKeepAliveCountsColdStartsAndIdleSecondsExactly) {
  // One function: t=0 (cold, runs 1 s after a 1 s start, parked at 2 s),
  // t=100 (warm: idle 98 s), t=1000 (the sandbox expired at 101 + 600 = 701:
  // cold), parked at 1002, expires at 1602 but the trace ends at 1500.
  PrewarmTrace t = Manual({{0, 0, 1}, {100, 0, 1}, {1000, 0, 1}}, 1, 1500);
  PrewarmSimOptions o;
  auto m = SimulatePrewarm(t, "fixed-10m", o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->invocations, 3);
  EXPECT_EQ(m->cold_starts, 2);
  EXPECT_EQ(m->sandboxes_created, 2);
  EXPECT_NEAR(m->idle_sandbox_s, 98 + 600 + 498, 1e-6);
  EXPECT_NEAR(m->cold_wait_s, 2, 1e-9);
}

TEST(PrewarmSimTest, ReactiveKeepsAWarmSandboxWhileArrivalsAreRecentAndThenFreesIt) {
  // An invocation every 20 s for 10 minutes, then silence.
  std::vector<Invocation> inv;
  for (int i = 0; i < 30; ++i) inv.push_back({20.0 * i + 5, 0, 0.1});
  PrewarmSimOptions o;
  auto shorter = SimulatePrewarm(Manual(inv, 1, 800), "reactive", o);
  auto longer = SimulatePrewarm(Manual(inv, 1, 3000), "reactive", o);
  ASSERT_TRUE(shorter.ok() && longer.ok());
  EXPECT_EQ(shorter->cold_starts, 1);  // only the first
  // Freed within the window and keep-alive (+ a tick) after the last arrival
  // at 585 s: the idle time does not grow after 800 s.
  EXPECT_NEAR(shorter->idle_sandbox_s, longer->idle_sandbox_s, 1e-6);
  // The fixed keep-alive holds its sandbox 10 minutes after the last one.
  auto fixed_short = SimulatePrewarm(Manual(inv, 1, 800), "fixed-10m", o);
  auto fixed_long = SimulatePrewarm(Manual(inv, 1, 3000), "fixed-10m", o);
  ASSERT_TRUE(fixed_short.ok() && fixed_long.ok());
  EXPECT_NEAR(fixed_long->idle_sandbox_s - fixed_short->idle_sandbox_s, 585.1 + 600 - 800, 1e-6);
}

TEST(PrewarmSimTest, UnknownPolicyIsAnError) {
  PrewarmTrace t = Manual({}, 1, 10);
  auto m = SimulatePrewarm(t, "lru", PrewarmSimOptions{});
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PrewarmSimTest, PoliciesTradeColdStartsForIdleTimeDeterministically) {
  PrewarmTraceOptions to;
  to.functions = 8;
  to.days = 3;
  PrewarmTrace t = GeneratePrewarmTrace(to);
  PrewarmSimOptions o;
  auto fixed = SimulatePrewarm(t, "fixed-10m", o);
  auto reactive = SimulatePrewarm(t, "reactive", o);
  auto pred = SimulatePrewarm(t, "predictive", o);
  ASSERT_TRUE(fixed.ok() && reactive.ok() && pred.ok());
  EXPECT_EQ(fixed->invocations, static_cast<int64_t>(t.invocations.size()));
  EXPECT_EQ(pred->invocations, fixed->invocations);
  // The forecast keeps sandboxes through the gaps the last minute's rate
  // cannot see: far fewer cold starts than the purely reactive policy.
  EXPECT_LT(2 * pred->cold_starts, reactive->cold_starts);
  // Reactive frees idle sandboxes after a minute: less idle than 10 minutes.
  EXPECT_LT(reactive->idle_sandbox_s, fixed->idle_sandbox_s);
  // Same trace, same result.
  auto again = SimulatePrewarm(t, "predictive", o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cold_starts, pred->cold_starts);
  EXPECT_DOUBLE_EQ(again->idle_sandbox_s, pred->idle_sandbox_s);
}

}  // namespace
}  // namespace flotilla::sim
