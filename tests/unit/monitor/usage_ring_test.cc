#include "monitor/usage_ring.h"

#include <gtest/gtest.h>

#include "monitor/sampler.h"

namespace flotilla::monitor {
namespace {

UsageSample At(int64_t t_ms, int64_t cpu_us, int64_t mem, int64_t limit = 0) {
  UsageSample s;
  s.t_ms = t_ms;
  s.cpu_usage_us = cpu_us;
  s.memory_bytes = mem;
  s.memory_limit_bytes = limit;
  s.pids = 1;
  return s;
}

TEST(UsageRingTest, KeepsTheNewestSamplesOldestFirst) {
  UsageRing ring(3);
  EXPECT_TRUE(ring.empty());
  EXPECT_FALSE(ring.Latest().has_value());
  for (int i = 1; i <= 5; ++i) ring.Add(At(i * 100, 0, i));
  ASSERT_EQ(ring.size(), 3u);
  EXPECT_EQ(ring.at(0).memory_bytes, 3);
  EXPECT_EQ(ring.at(2).memory_bytes, 5);
  EXPECT_EQ(ring.Latest()->t_ms, 500);
  auto all = ring.Samples();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[1].memory_bytes, 4);
  EXPECT_EQ(ring.MemorySeries(2), (std::vector<double>{4, 5}));
  EXPECT_EQ(ring.MemorySeries(10).size(), 3u);
}

TEST(UsageRingTest, IgnoresSamplesThatAreNotNewer) {
  UsageRing ring(4);
  ring.Add(At(100, 0, 1));
  ring.Add(At(100, 0, 2));
  ring.Add(At(50, 0, 3));
  EXPECT_EQ(ring.size(), 1u);
  EXPECT_EQ(ring.Latest()->memory_bytes, 1);
}

TEST(UsageRingTest, PeakSurvivesDroppedSamples) {
  UsageRing ring(2);
  ring.Add(At(100, 0, 900));
  ring.Add(At(200, 0, 10));
  ring.Add(At(300, 0, 20));
  EXPECT_EQ(ring.PeakMemory(), 900);
  EXPECT_EQ(ring.at(0).memory_bytes, 10);
}

TEST(UsageRingTest, CpuCoresIsTheRateOverTheWindow) {
  EXPECT_DOUBLE_EQ(CpuCoresBetween(At(0, 0, 0), At(1000, 1'500'000, 0)), 1.5);
  EXPECT_DOUBLE_EQ(CpuCoresBetween(At(1000, 0, 0), At(1000, 5, 0)), 0);  // no time passed
  EXPECT_DOUBLE_EQ(CpuCoresBetween(At(0, 10, 0), At(100, 5, 0)), 0);     // counter reset

  UsageRing ring;
  EXPECT_EQ(ring.CpuCores(), 0);
  // 2 cores for the first second, then 0.5 cores.
  for (int i = 0; i <= 10; ++i) ring.Add(At(i * 100, i * 200'000, 0));
  for (int i = 11; i <= 30; ++i) ring.Add(At(i * 100, 2'000'000 + (i - 10) * 50'000, 0));
  EXPECT_NEAR(ring.CpuCores(1000), 0.5, 1e-9);
  EXPECT_NEAR(ring.CpuCores(3000), (3'000'000 - 0) / 3e6, 1e-9);  // whole ring: 1 core
}

TEST(MemoryRiskTest, ZeroWithTooFewSamplesOrNoLimit) {
  UsageRing ring;
  for (int i = 0; i < 19; ++i) ring.Add(At(i * 100, 0, (100 + 50 * i) << 20));
  EXPECT_EQ(MemoryRisk(ring, 512 << 20), 0);
  ring.Add(At(1900, 0, 1050ll << 20));
  EXPECT_EQ(MemoryRisk(ring, 0), 0);
}

TEST(MemoryRiskTest, HighForAFastGrowingSeriesLowForAFlatOne) {
  UsageRing growing;
  UsageRing flat;
  for (int i = 0; i < 40; ++i) {
    // 5 MiB per 100 ms with a little noise: 50 MiB/s, at 200 MiB at the end.
    const int64_t noise = (i % 3 - 1) * (256 << 10);
    growing.Add(At(i * 100, 0, (5ll * i << 20) + noise));
    flat.Add(At(i * 100, 0, (100ll << 20) + noise));
  }
  const int64_t limit = 512ll << 20;
  const double grow_risk = MemoryRisk(growing, limit);
  const double flat_risk = MemoryRisk(flat, limit);
  EXPECT_GT(grow_risk, 0.9);  // 10 s ahead it is far past 512 MiB
  EXPECT_LT(flat_risk, 1e-3);
  EXPECT_GE(flat_risk, 0);
  // A short horizon: the growing series does not get there in 1 s.
  EXPECT_LT(MemoryRisk(growing, limit, RiskOptions{.seconds = 1}), 0.05);
}

TEST(HostTest, ParsesProcStat) {
  const std::string a =
      "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\n"
      "cpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n";
  const std::string b =
      "cpu  200 0 200 800 100 0 0 0 0 0\ncpu0 1 0 0 0 0 0 0 0 0 0\ncpu1 1 0 0 0 0 0 0 0 0 0\n";
  auto x = ParseProcStat(a);
  auto y = ParseProcStat(b);
  ASSERT_TRUE(x && y);
  EXPECT_EQ(x->busy, 200u);
  EXPECT_EQ(x->total, 1000u);
  EXPECT_EQ(x->cpus, 2);
  // 200 busy ticks of 300: 2/3 of 2 cpus.
  EXPECT_NEAR(HostCoresBetween(*x, *y), 4.0 / 3.0, 1e-9);
  EXPECT_FALSE(ParseProcStat("intr 1\n").has_value());
}

TEST(SamplerTest, SummarisesTrackedTasks) {
  int64_t t = 0;
  Sampler sampler(
      [&](const std::string& key) -> std::optional<UsageSample> {
        if (key != "a/1") return std::nullopt;
        t += 100;
        return At(t, t * 1000, 64 << 20);  // 1 core
      },
      [] { return std::optional<int64_t>(1 << 30); }, "/nonexistent");
  sampler.Track("a/1", "a", 1, 256 << 20);
  sampler.Track("b/1", "b", 1, 0);
  for (int i = 0; i < 5; ++i) sampler.SampleOnce();
  auto s = sampler.Summaries();
  ASSERT_EQ(s.size(), 1u);  // b has no samples
  EXPECT_EQ(s[0].execution_id, "a");
  EXPECT_EQ(s[0].attempt, 1u);
  EXPECT_NEAR(s[0].cpu_cores, 1.0, 1e-9);
  EXPECT_EQ(s[0].memory_bytes, 64 << 20);
  EXPECT_EQ(s[0].memory_limit_bytes, 256 << 20);  // the fallback
  EXPECT_EQ(s[0].samples, 5);
  EXPECT_EQ(s[0].risk, 0);  // fewer than 20 samples
  EXPECT_EQ(sampler.Host().memory_available_bytes, 1 << 30);
  sampler.Untrack("a/1");
  EXPECT_TRUE(sampler.Summaries().empty());
}

}  // namespace
}  // namespace flotilla::monitor
