#include "monitor/resize_policy.h"

#include <gtest/gtest.h>

namespace flotilla::monitor {
namespace {

constexpr int64_t kMi = 1 << 20;

// A ring of `n` samples 100 ms apart ending at `end_ms`, memory from `mem(i)`,
// cpu growing at `cores` cores.
template <typename F>
UsageRing Ring(int n, int64_t end_ms, F mem, double cores = 0) {
  UsageRing r;
  for (int i = 0; i < n; ++i) {
    UsageSample s;
    s.t_ms = end_ms - (n - 1 - i) * 100;
    s.memory_bytes = mem(i);
    s.cpu_usage_us = static_cast<int64_t>(cores * 1e6 * (s.t_ms / 1000.0));
    r.Add(s);
  }
  return r;
}

ResizeOptions Enabled() {
  ResizeOptions o;
  o.enabled = true;
  return o;
}

ResizeInput Base(const UsageRing& ring, int64_t now) {
  ResizeInput in;
  in.now_ms = now;
  in.ring = &ring;
  in.memory_limit_bytes = 256 * kMi;
  in.memory_floor_bytes = 256 * kMi;
  in.room_memory_bytes = 4096 * kMi;
  return in;
}

TEST(ResizePolicyTest, DisabledDoesNothing) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.99;
  in.memory_upper_bytes = 400 * kMi;
  ResizeDecision d = DecideResize(in, ResizeOptions{});
  EXPECT_EQ(d.action, ResizeAction::kNone);
  EXPECT_EQ(d.memory_limit_bytes, 256 * kMi);
}

TEST(ResizePolicyTest, HighRiskWithRoomRaisesToCoverTheForecastUpperBound) {
  UsageRing r = Ring(100, 100000, [](int i) { return (100 + i) * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.8;
  in.memory_upper_bytes = 300 * kMi;
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_EQ(d.action, ResizeAction::kRaise);
  EXPECT_FALSE(d.needs_migration);
  EXPECT_EQ(d.memory_limit_bytes, 375 * kMi);  // 300 Mi · 1.25
  EXPECT_NE(d.reason.find("memory 256Mi -> 375Mi"), std::string::npos) << d.reason;
  EXPECT_NE(d.reason.find("risk 0.80"), std::string::npos) << d.reason;
}

TEST(ResizePolicyTest, RaiseIsAtLeastTheMinimumStep) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.6;
  in.memory_upper_bytes = 200 * kMi;  // odd but possible: the risk came from an earlier fit
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_EQ(d.memory_limit_bytes, 256 * kMi + Enabled().min_step_bytes);
}

TEST(ResizePolicyTest, RiskBelowThresholdKeepsTheLimit) {
  UsageRing r = Ring(100, 100000, [](int) { return 200 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.49;
  in.memory_upper_bytes = 300 * kMi;
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kNone);
}

TEST(ResizePolicyTest, CooldownBlocksAnotherChange) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.9;
  in.memory_upper_bytes = 300 * kMi;
  in.last_change_ms = 100000 - 500;  // cooldown 1000 ms
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kNone);
  in.last_change_ms = 100000 - 1000;
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kRaise);
}

TEST(ResizePolicyTest, NoRoomMarksNeedsMigration) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.9;
  in.memory_upper_bytes = 400 * kMi;
  in.room_memory_bytes = 4 * kMi;  // below the minimum step: no partial raise
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_TRUE(d.needs_migration);
  EXPECT_EQ(d.action, ResizeAction::kNone);
  EXPECT_EQ(d.memory_limit_bytes, 256 * kMi);
  EXPECT_NE(d.reason.find("needs migration"), std::string::npos) << d.reason;
}

TEST(ResizePolicyTest, PartialRoomRaisesByWhatIsLeftAndStillAsksForMigration) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.9;
  in.memory_upper_bytes = 400 * kMi;
  in.room_memory_bytes = 64 * kMi;
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_TRUE(d.needs_migration);
  EXPECT_EQ(d.action, ResizeAction::kRaise);
  EXPECT_EQ(d.memory_limit_bytes, 320 * kMi);
}

TEST(ResizePolicyTest, MaxMemoryCapsTheRaise) {
  UsageRing r = Ring(100, 100000, [](int) { return 250 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.risk = 0.9;
  in.memory_upper_bytes = 1000 * kMi;
  ResizeOptions o = Enabled();
  o.max_memory_bytes = 512 * kMi;
  ResizeDecision d = DecideResize(in, o);
  EXPECT_EQ(d.memory_limit_bytes, 512 * kMi);
  EXPECT_FALSE(d.needs_migration);
}

TEST(ResizePolicyTest, LongQuietUsageLowersTowardsTheFloor) {
  // 30 s of samples at 100 Mi under a 1 Gi limit; floor 256 Mi.
  UsageRing r = Ring(300, 100000, [](int) { return 100 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.memory_limit_bytes = 1024 * kMi;
  in.last_change_ms = 100000 - 25000;
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_EQ(d.action, ResizeAction::kLower);
  EXPECT_EQ(d.memory_limit_bytes, 256 * kMi);  // max(floor, 2 · 100 Mi)
  // With a higher peak the lowered limit stays at twice the peak.
  UsageRing r2 = Ring(300, 100000, [](int i) { return (i == 250 ? 300 : 100) * kMi; });
  in.ring = &r2;
  d = DecideResize(in, Enabled());
  EXPECT_EQ(d.memory_limit_bytes, 600 * kMi);
}

TEST(ResizePolicyTest, NoLoweringBeforeTheWindowIsCoveredOrSoonAfterAChange) {
  UsageRing shortring = Ring(50, 100000, [](int) { return 100 * kMi; });  // 5 s
  ResizeInput in = Base(shortring, 100000);
  in.memory_limit_bytes = 1024 * kMi;
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kNone);
  UsageRing r = Ring(300, 100000, [](int) { return 100 * kMi; });
  in.ring = &r;
  in.last_change_ms = 100000 - 5000;  // raised 5 s ago
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kNone);
}

TEST(ResizePolicyTest, UsageNearTheLimitIsNotLowered) {
  UsageRing r = Ring(300, 100000, [](int) { return 500 * kMi; });
  ResizeInput in = Base(r, 100000);
  in.memory_limit_bytes = 1024 * kMi;
  EXPECT_EQ(DecideResize(in, Enabled()).action, ResizeAction::kNone);
}

TEST(ResizePolicyTest, CpuQuotaIsRaisedWhenSaturatedAndLoweredWhenIdle) {
  UsageRing busy = Ring(100, 100000, [](int) { return 10 * kMi; }, 1.0);
  ResizeInput in = Base(busy, 100000);
  in.memory_limit_bytes = 256 * kMi;
  in.cpu_limit_millis = 1000;
  in.cpu_floor_millis = 1000;
  in.room_cpu_millis = 500;
  ResizeDecision d = DecideResize(in, Enabled());
  EXPECT_EQ(d.action, ResizeAction::kRaise);
  EXPECT_EQ(d.cpu_limit_millis, 1500);  // limited by the room
  UsageRing idle = Ring(300, 100000, [](int) { return 10 * kMi; }, 0.1);
  in.ring = &idle;
  in.cpu_limit_millis = 2000;
  d = DecideResize(in, Enabled());
  EXPECT_EQ(d.action, ResizeAction::kLower);
  EXPECT_EQ(d.cpu_limit_millis, 1000);  // the floor
}

TEST(ResizePolicyTest, ValidationNamesTheKey) {
  ResizeOptions o = Enabled();
  EXPECT_TRUE(ValidateResizeOptions(o).ok());
  o.raise_risk = 1.5;
  EXPECT_NE(ValidateResizeOptions(o).message().find("resize.raise_risk"), std::string::npos);
  o = Enabled();
  o.lower_margin = 3;  // 0.4 · 3 >= 1: oscillates
  EXPECT_FALSE(ValidateResizeOptions(o).ok());
  o = Enabled();
  o.lower_after_ms = 120000;
  EXPECT_NE(ValidateResizeOptions(o).message().find("lower_after_ms"), std::string::npos);
}

TEST(ResizePolicyTest, UpperBoundOfALinearGrowthIsAheadOfIt) {
  // 10 Mi per 100 ms: in 10 s 1000 Mi more.
  UsageRing r = Ring(100, 100000, [](int i) { return (100 + 10 * i) * kMi; });
  const int64_t upper = MemoryUpperBound(r, 10, 0.95);
  EXPECT_GT(upper, 1990 * kMi);
  EXPECT_LT(upper, 2300 * kMi);
  UsageRing few = Ring(5, 100000, [](int) { return kMi; });
  EXPECT_EQ(MemoryUpperBound(few, 10, 0.95), 0);
}

}  // namespace
}  // namespace flotilla::monitor
