// The resource controller's rounds on plain values: raise on predicted
// overload while the node has room, lower under half, priority order,
// move when the node cannot serve, and the node never over-committed.
#include "shard/controller.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

using ::testing::HasSubstr;

ShardUsage Usage(const std::string& id, int priority, int64_t cpu_limit, std::vector<int64_t> cpu,
                 int64_t mem_limit = 256 << 20, std::vector<int64_t> mem = {200 << 20}) {
  ShardUsage u;
  u.shard = id;
  u.priority = priority;
  u.cpu_limit_millis = cpu_limit;
  u.memory_limit_bytes = mem_limit;
  u.cpu_millis_history = std::move(cpu);
  u.memory_bytes_history = std::move(mem);
  return u;
}

const NodeCapacity kNode{4000, 8ll << 30};

TEST(PredictNextTest, FollowsATrendAndDistrustsSharpDrops) {
  EXPECT_EQ(PredictNext({}, 0.5, 0.3), 0);
  EXPECT_EQ(PredictNext({500}, 0.5, 0.3), 500);
  EXPECT_EQ(PredictNext({500, 500, 500, 500}, 0.5, 0.3), 500);
  EXPECT_GT(PredictNext({100, 200, 300, 400, 500}, 0.5, 0.3), 500);  // rising
  EXPECT_GE(PredictNext({1000, 1000, 1000, 0}, 0.5, 0.3), 0);
  EXPECT_GE(PredictNext({1000, 1000, 1000, 100}, 0.9, 0.9), 50);  // half the last sample at least
}

TEST(ControllerTest, RaisesAPredictedOverloadWhileTheNodeHasRoom) {
  auto d = Decide({Usage("a/0", 1, 500, {400, 500, 600, 700})}, kNode, {});
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].action, Action::kRaise);
  EXPECT_GT(d[0].cpu_limit_millis, d[0].predicted_cpu_millis);
  EXPECT_THAT(d[0].reason, HasSubstr("over the limit"));
}

TEST(ControllerTest, LowersALimitUsedUnderHalf) {
  auto d = Decide({Usage("a/0", 1, 2000, {300, 300, 300})}, kNode, {});
  EXPECT_EQ(d[0].action, Action::kLower);
  EXPECT_EQ(d[0].cpu_limit_millis, 360);  // 300 · 1.2
  EXPECT_THAT(d[0].reason, HasSubstr("under half the limit"));
}

TEST(ControllerTest, KeepsASteadyShard) {
  auto d = Decide({Usage("a/0", 1, 1000, {700, 700, 700})}, kNode, {});
  EXPECT_EQ(d[0].action, Action::kKeep);
  EXPECT_EQ(d[0].cpu_limit_millis, 1000);
  EXPECT_THAT(d[0].reason, HasSubstr("keep"));
}

TEST(ControllerTest, HigherPriorityGetsTheRoomFirstTheOtherMoves) {
  // 3000m committed of 4000m: 1000m of room; both want ~1440m more.
  std::vector<ShardUsage> shards = {Usage("low/0", 1, 1500, {2700, 2700, 2700}),
                                    Usage("high/0", 9, 1500, {2700, 2700, 2700})};
  auto d = Decide(shards, kNode, {});
  EXPECT_EQ(d[1].shard, "high/0");
  EXPECT_EQ(d[1].action, Action::kMove);  // got all the room, still short of 2700
  EXPECT_EQ(d[1].cpu_limit_millis, 2500);
  EXPECT_EQ(d[0].action, Action::kMove);
  EXPECT_EQ(d[0].cpu_limit_millis, 1500);  // nothing left for it
  EXPECT_THAT(d[0].reason, HasSubstr("cannot serve"));
  EXPECT_THAT(d[0].reason, HasSubstr("priority 1"));
}

TEST(ControllerTest, RoomFreedByLoweringGoesToRaisesInTheSameRound) {
  std::vector<ShardUsage> shards = {Usage("idle/0", 1, 2000, {100, 100, 100}),
                                    Usage("busy/0", 5, 2000, {2400, 2600, 2800})};
  auto d = Decide(shards, kNode, {});
  EXPECT_EQ(d[0].action, Action::kLower);
  EXPECT_EQ(d[1].action, Action::kRaise);
  EXPECT_LE(d[0].cpu_limit_millis + d[1].cpu_limit_millis, kNode.cpu_millis);
}

TEST(ControllerTest, MemoryIsControlledLikeCpu) {
  auto d = Decide({Usage("a/0", 1, 1000, {700, 700}, 256 << 20, {250 << 20, 300 << 20, 350 << 20})},
                  kNode, {});
  EXPECT_EQ(d[0].action, Action::kRaise);
  EXPECT_GT(d[0].memory_limit_bytes, 350 << 20);
  EXPECT_THAT(d[0].reason, HasSubstr("memory"));
}

TEST(ControllerTest, NeverOverCommitsTheNode) {
  // A sweep of made-up rounds: the sum of new limits stays within the node
  // whenever it started within it.
  for (int seed = 1; seed < 200; ++seed) {
    std::vector<ShardUsage> shards;
    uint32_t x = seed * 2654435761u;
    auto next = [&x] { return x = x * 1664525u + 1013904223u; };
    int64_t committed = 0;
    for (int i = 0; i < 6; ++i) {
      int64_t limit = 100 + next() % 600;
      committed += limit;
      std::vector<int64_t> hist;
      for (int k = 0; k < 5; ++k) hist.push_back(next() % 1500);
      shards.push_back(
          Usage("s/" + std::to_string(i), next() % 5, limit, hist, 64 << 20, {32 << 20}));
    }
    ASSERT_LE(committed, kNode.cpu_millis);
    auto d = Decide(shards, kNode, {});
    int64_t sum = 0;
    for (const auto& r : d) {
      sum += r.cpu_limit_millis;
      EXPECT_FALSE(r.reason.empty());
      EXPECT_GE(r.cpu_limit_millis, 50);
    }
    EXPECT_LE(sum, kNode.cpu_millis) << "seed " << seed;
  }
}

}  // namespace
}  // namespace flotilla::shard
