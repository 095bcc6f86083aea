// PlaceShards on made-up topologies: heavy shards get whole cores (every
// SMT sibling) and never share them, light shards share the rest, the
// reserve is left alone, neighbours stay on one NUMA node.
#include "shard/placement.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

using ::testing::HasSubstr;

ShardDefinition Shard(const std::string& id, int64_t cpu_millis) {
  ShardDefinition s;
  s.id = id;
  s.stage = id.substr(0, id.find('/'));
  s.cpu_millis = cpu_millis;
  return s;
}

const ShardPlacement& Of(const NodePlacement& p, const std::string& id) {
  for (const auto& s : p.shards) {
    if (s.shard == id) return s;
  }
  ADD_FAILURE() << id;
  return p.shards.front();
}

TEST(PlacementTest, HeavyShardsGetWholeCoresLightShardsShare) {
  CpuTopology t = CpuTopology::Uniform(4, 2, 1);  // cores {0,4} {1,5} {2,6} {3,7}
  std::vector<ShardDefinition> shards = {Shard("parse/0", 900), Shard("parse/1", 1800),
                                         Shard("ingest/0", 200), Shard("sink/0", 100)};
  PlacementOptions options;
  options.reserved = {0};
  auto p = PlaceShards(shards, {}, t, options);
  ASSERT_TRUE(p.ok()) << p.status();
  const ShardPlacement& a = Of(*p, "parse/0");
  const ShardPlacement& b = Of(*p, "parse/1");
  EXPECT_TRUE(a.exclusive);
  EXPECT_TRUE(b.exclusive);
  EXPECT_EQ(a.cpus.size(), 2u);  // one core, both threads
  EXPECT_EQ(b.cpus.size(), 4u);  // two cores
  for (int cpu : a.cpus) EXPECT_FALSE(b.cpus.count(cpu));
  for (int cpu : a.cpus) EXPECT_FALSE(p->shared_pool.count(cpu));
  for (int cpu : b.cpus) EXPECT_FALSE(p->shared_pool.count(cpu));
  // Core {0,4} holds the reserved CPU 0, so it is never exclusive; its
  // other thread is in the pool.
  EXPECT_FALSE(a.cpus.count(4));
  EXPECT_FALSE(b.cpus.count(4));
  EXPECT_EQ(p->shared_pool, (std::set<int>{4}));
  EXPECT_FALSE(Of(*p, "ingest/0").exclusive);
  EXPECT_EQ(Of(*p, "ingest/0").cpus, p->shared_pool);
  EXPECT_THAT(Of(*p, "ingest/0").reason, HasSubstr("light"));
  EXPECT_THAT(a.reason, HasSubstr("exclusive: 1 core"));
}

TEST(PlacementTest, HeavyShardsThatDoNotFitShareAndSaySo) {
  CpuTopology t = CpuTopology::Uniform(2, 1, 1);
  std::vector<ShardDefinition> shards = {Shard("a/0", 1000), Shard("a/1", 1000), Shard("b/0", 100)};
  auto p = PlaceShards(shards, {}, t, {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(Of(*p, "a/0").exclusive);
  EXPECT_FALSE(Of(*p, "a/1").exclusive);  // one core stays for the pool
  EXPECT_THAT(Of(*p, "a/1").reason, HasSubstr("shares the pool instead"));
  EXPECT_FALSE(Of(*p, "a/1").cpus.empty());
  EXPECT_FALSE(Of(*p, "b/0").cpus.empty());
}

TEST(PlacementTest, AllHeavyShardsThatFitTakeEveryCore) {
  CpuTopology t = CpuTopology::Uniform(2, 1, 1);
  auto p = PlaceShards({Shard("a/0", 1000), Shard("a/1", 1000)}, {}, t, {});
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(Of(*p, "a/0").exclusive);
  EXPECT_TRUE(Of(*p, "a/1").exclusive);
  EXPECT_TRUE(p->shared_pool.empty());
}

TEST(PlacementTest, NeighboursLandOnTheSameNumaNode) {
  CpuTopology t = CpuTopology::Uniform(8, 1, 2);  // node 0: 0-3, node 1: 4-7
  // Fill most of node 0 first with an unrelated heavy shard, then place a
  // producer and its consumer: the consumer follows the producer.
  std::vector<ShardDefinition> shards = {Shard("x/0", 2000), Shard("p/0", 900), Shard("c/0", 900),
                                         Shard("l/0", 100)};
  std::vector<ShardEdge> edges = {{"p/0", "c/0", Routing::kKey}, {"c/0", "l/0", Routing::kShuffle}};
  auto p = PlaceShards(shards, edges, t, {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(Of(*p, "p/0").numa_node, Of(*p, "c/0").numa_node);
  EXPECT_THAT(Of(*p, "c/0").reason, HasSubstr("beside p/0"));
  // The light neighbour shares pool CPUs on the same node.
  for (int cpu : Of(*p, "l/0").cpus) EXPECT_EQ(t.cpus[cpu].numa_node, Of(*p, "c/0").numa_node);
}

TEST(PlacementTest, ErrorsForNoCpuAndRepeatedIds) {
  CpuTopology t = CpuTopology::Uniform(2, 1, 1);
  PlacementOptions all;
  all.reserved = {0, 1};
  EXPECT_TRUE(absl::IsInvalidArgument(PlaceShards({Shard("a/0", 10)}, {}, t, all).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      PlaceShards({Shard("a/0", 10), Shard("a/0", 10)}, {}, t, {}).status()));
}

}  // namespace
}  // namespace flotilla::shard
