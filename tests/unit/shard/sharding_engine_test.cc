// PlanShards on made-up components and nodes: the shard counts follow
// contention and latency saved, every cap is honoured and explained, and
// the shard graph connects exactly the shards that exchange messages.
#include "shard/sharding_engine.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

using ::testing::HasSubstr;

Stage MakeStage(const std::string& name, int partitions, int64_t cpu_millis = 100) {
  Stage s;
  s.name = name;
  s.code.kind = CodeKind::kCommand;
  s.code.argv = {name};
  s.partitions = partitions;
  s.resources.cpu_millis = cpu_millis;
  s.resources.memory_bytes = 10 << 20;
  return s;
}

StageMeasurement Rate(double per_s, double service_us) {
  StageMeasurement m;
  m.messages_per_s = per_s;
  m.service_time_us = service_us;
  return m;
}

ComponentSpec Pipeline() {
  ComponentSpec spec;
  spec.name = "p";
  spec.stages = {MakeStage("a", 1), MakeStage("b", 16), MakeStage("c", 16)};
  spec.edges = {{"a", "b", Routing::kShuffle}, {"b", "c", Routing::kKey}};
  return spec;
}

const StageDecision& Decision(const ShardPlan& plan, const std::string& stage) {
  for (const StageDecision& d : plan.stages) {
    if (d.stage == stage) return d;
  }
  ADD_FAILURE() << "no stage " << stage;
  return plan.stages.front();
}

std::string Reasons(const StageDecision& d) {
  std::string all;
  for (const auto& r : d.reasons) all += r + "\n";
  return all;
}

TEST(ShardingEngineTest, ExpectedLatencyFollowsMM1) {
  EXPECT_DOUBLE_EQ(ExpectedLatencyUs(10, 0), 10);
  EXPECT_DOUBLE_EQ(ExpectedLatencyUs(10, 0.5), 20);
  EXPECT_TRUE(std::isinf(ExpectedLatencyUs(10, 1.0)));
}

TEST(ShardingEngineTest, BusyStageGetsShardsIdleStagesStayWhole) {
  ComponentSpec spec = Pipeline();
  // b needs 2.4 cores; a and c are nearly idle.
  std::map<std::string, StageMeasurement> m = {
      {"a", Rate(80000, 1)}, {"b", Rate(80000, 30)}, {"c", Rate(80000, 0.5)}};
  auto plan = PlanShards(spec, m, {16000, 64ll << 30}, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  const StageDecision& b = Decision(*plan, "b");
  EXPECT_GE(b.shards, 4);  // 3 would leave each shard at ρ = 0.8
  EXPECT_FALSE(b.saturated);
  EXPECT_LT(b.latency_chosen_us, 100);
  EXPECT_TRUE(std::isinf(b.latency_one_shard_us));
  EXPECT_THAT(Reasons(b), HasSubstr("demand 2.40 cores"));
  EXPECT_THAT(Reasons(b), HasSubstr("would save"));  // stopped by the gain threshold
  EXPECT_EQ(Decision(*plan, "a").shards, 1);
  EXPECT_THAT(Reasons(Decision(*plan, "a")), HasSubstr("capped at 1 by its 1 key partition"));
  EXPECT_EQ(Decision(*plan, "c").shards, 1);
  EXPECT_TRUE(plan->warnings.empty());
}

TEST(ShardingEngineTest, MoreShardsNeverRaiseTheModelledLatency) {
  ComponentSpec spec = Pipeline();
  std::map<std::string, StageMeasurement> m = {{"b", Rate(50000, 40)}};
  ShardingOptions lax;
  lax.min_saved_us = 0.5;
  ShardingOptions strict;
  strict.min_saved_us = 5;
  auto many = PlanShards(spec, m, {16000, 0}, lax);
  auto few = PlanShards(spec, m, {16000, 0}, strict);
  ASSERT_TRUE(many.ok() && few.ok());
  EXPECT_GE(Decision(*many, "b").shards, Decision(*few, "b").shards);
  EXPECT_LE(Decision(*many, "b").latency_chosen_us, Decision(*few, "b").latency_chosen_us);
}

TEST(ShardingEngineTest, CpuContentionStopsSharding) {
  ComponentSpec spec = Pipeline();
  std::map<std::string, StageMeasurement> m = {{"b", Rate(80000, 30)}};  // 2.4 cores
  auto plan = PlanShards(spec, m, {2000, 0}, {});
  ASSERT_TRUE(plan.ok());
  const StageDecision& b = Decision(*plan, "b");
  EXPECT_TRUE(b.saturated);
  EXPECT_THAT(Reasons(b), HasSubstr("CPU contention"));
  EXPECT_THAT(Reasons(b), HasSubstr("saturated"));
  EXPECT_FALSE(plan->warnings.empty());
  EXPECT_LE(plan->cpu_millis, 2000 + 1000);  // at most the shard that did not fit
}

TEST(ShardingEngineTest, ComponentLimitBoundsTheCpu) {
  ComponentSpec spec = Pipeline();
  spec.usage.cpu_limit_millis = 1500;
  std::map<std::string, StageMeasurement> m = {{"b", Rate(80000, 30)}};
  auto plan = PlanShards(spec, m, {16000, 0}, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_THAT(Reasons(Decision(*plan, "b")), HasSubstr("the component's limit of 1500m"));
}

TEST(ShardingEngineTest, PartitionsMaxShardsAndGlobalStateCap) {
  ComponentSpec spec;
  spec.name = "caps";
  spec.stages = {MakeStage("few", 2), MakeStage("bounded", 64), MakeStage("global", 1)};
  spec.stages[1].max_shards = 3;
  spec.stages[2].state = StageState{"table", StateScope::kGlobal, 1 << 20};
  std::map<std::string, StageMeasurement> m = {
      {"few", Rate(100000, 50)}, {"bounded", Rate(100000, 50)}, {"global", Rate(100000, 50)}};
  auto plan = PlanShards(spec, m, {64000, 0}, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(Decision(*plan, "few").shards, 2);
  EXPECT_THAT(Reasons(Decision(*plan, "few")), HasSubstr("its 2 key partitions"));
  EXPECT_EQ(Decision(*plan, "bounded").shards, 3);
  EXPECT_THAT(Reasons(Decision(*plan, "bounded")), HasSubstr("max_shards 3"));
  EXPECT_EQ(Decision(*plan, "global").shards, 1);
  EXPECT_THAT(Reasons(Decision(*plan, "global")), HasSubstr("global state 'table'"));
}

TEST(ShardingEngineTest, WithoutRatesStagesAreSizedByCpu) {
  ComponentSpec spec = Pipeline();
  spec.stages[1].resources.cpu_millis = 2500;
  auto plan = PlanShards(spec, {}, {16000, 0}, {});
  ASSERT_TRUE(plan.ok());
  const StageDecision& b = Decision(*plan, "b");
  EXPECT_EQ(b.shards, 4);  // 2.5 cores · 1.25 headroom ≤ 1 core a shard
  EXPECT_THAT(Reasons(b), HasSubstr("no measured rate"));
  EXPECT_EQ(plan->path_latency_us, 0);
}

TEST(ShardingEngineTest, ShardsCoverThePartitionsExactlyOnce) {
  ComponentSpec spec = Pipeline();
  std::map<std::string, StageMeasurement> m = {{"b", Rate(100000, 35)}, {"c", Rate(100000, 20)}};
  auto plan = PlanShards(spec, m, {32000, 0}, {});
  ASSERT_TRUE(plan.ok());
  for (const std::string stage : {"b", "c"}) {
    int next = 0;
    for (const ShardDefinition& s : plan->shards) {
      if (s.stage != stage) continue;
      EXPECT_EQ(s.partitions.begin, next) << s.id;
      EXPECT_GT(s.partitions.end, s.partitions.begin) << s.id;
      next = s.partitions.end;
      EXPECT_EQ(s.code.argv, std::vector<std::string>{stage});
    }
    EXPECT_EQ(next, 16) << stage;
  }
}

TEST(ShardingEngineTest, KeyEdgesConnectOverlappingRangesShuffleEdgesConnectAll) {
  ComponentSpec spec = Pipeline();
  std::map<std::string, StageMeasurement> m = {{"b", Rate(100000, 35)}, {"c", Rate(100000, 12)}};
  auto plan = PlanShards(spec, m, {32000, 0}, {});
  ASSERT_TRUE(plan.ok());
  int nb = Decision(*plan, "b").shards;
  int nc = Decision(*plan, "c").shards;
  ASSERT_GT(nb, 1);
  ASSERT_GT(nc, 1);
  std::map<std::string, PartitionRange> range;
  for (const auto& s : plan->shards) range[s.id] = s.partitions;
  int shuffle = 0;
  std::set<std::string> fed;
  for (const ShardEdge& e : plan->edges) {
    if (e.routing == Routing::kShuffle) {
      ++shuffle;
      continue;
    }
    const PartitionRange& x = range[e.from];
    const PartitionRange& y = range[e.to];
    EXPECT_TRUE(x.begin < y.end && y.begin < x.end) << e.from << " -> " << e.to;
    fed.insert(e.to);
  }
  EXPECT_EQ(shuffle, nb);                       // a/0 to every b shard
  EXPECT_EQ(static_cast<int>(fed.size()), nc);  // every c shard has an input
}

TEST(ShardingEngineTest, KeyedStateIsSplitAmongShards) {
  ComponentSpec spec = Pipeline();
  spec.stages[2].state = StageState{"counts", StateScope::kKeyed, 800 << 20};
  std::map<std::string, StageMeasurement> m = {{"c", Rate(100000, 30)}};
  auto plan = PlanShards(spec, m, {32000, 0}, {});
  ASSERT_TRUE(plan.ok());
  int n = Decision(*plan, "c").shards;
  ASSERT_GT(n, 1);
  for (const auto& s : plan->shards) {
    if (s.stage != "c") continue;
    EXPECT_EQ(s.state, "counts");
    EXPECT_EQ(s.memory_bytes, (10 << 20) + ((800 << 20) + n - 1) / n);
  }
}

TEST(ShardingEngineTest, SloWarningUsesTheSlowestPath) {
  ComponentSpec spec = Pipeline();
  spec.usage.slo_latency_p99_us = 50;
  std::map<std::string, StageMeasurement> m = {
      {"a", Rate(1000, 10)}, {"b", Rate(1000, 10)}, {"c", Rate(1000, 10)}};
  auto plan = PlanShards(spec, m, {8000, 0}, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(plan->path_latency_us, 30);  // three stages of >= 10 µs and two hops
  ASSERT_FALSE(plan->warnings.empty());
  EXPECT_THAT(plan->warnings.back(), HasSubstr("SLO of 50 µs"));
}

TEST(ShardingEngineTest, RefusesUnknownStagesAndANodeWithoutCpu) {
  ComponentSpec spec = Pipeline();
  EXPECT_TRUE(
      absl::IsInvalidArgument(PlanShards(spec, {{"zz", Rate(1, 1)}}, {1000, 0}, {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(PlanShards(spec, {}, {0, 0}, {}).status()));
}

}  // namespace
}  // namespace flotilla::shard
