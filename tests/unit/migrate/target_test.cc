#include "migrate/target.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace flotilla::migrate {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

Candidate Node(std::string id, double cores, int64_t mem_mib, double per_cpu, double per_gib) {
  Candidate c;
  c.node_id = std::move(id);
  c.free_cpu_cores = cores;
  c.free_memory_bytes = mem_mib * kMiB;
  c.per_cpu_second = per_cpu;
  c.per_gib_second = per_gib;
  return c;
}

Demand Task() {
  Demand d;
  d.cpu_cores = 1;
  d.memory_bytes = 512 * kMiB;
  d.remaining_s = 100;
  d.image_bytes = 256 * kMiB;
  return d;
}

TEST(TargetTest, PicksTheCheapestFeasibleNodeAndNeverTheSource) {
  std::vector<Candidate> nodes = {Node("src", 8, 8192, 0.0001, 0), Node("a", 4, 4096, 0.003, 0),
                                  Node("b", 4, 4096, 0.002, 0)};
  auto c = ChooseTarget(Task(), "src", 0.003, 0, nodes);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, "b");
  ASSERT_EQ(c->ranked.size(), 2u);
  EXPECT_EQ(c->ranked[1].node_id, "a");
  // run: 0.002 $/cpu-s × 1 core × 100 s; migration: 256 MiB ÷ 100 MB/s + 0.1 s + 0.4 s/GiB × 0.25 GiB.
  const double migration_s = 256.0 * kMiB / 100e6 + 0.1 + 0.4 * 0.25;
  EXPECT_NEAR(c->best.run_cost, 0.2, 1e-12);
  EXPECT_NEAR(c->best.migration_s, migration_s, 1e-9);
  EXPECT_NEAR(c->best.migration_cost, migration_s * 0.003, 1e-12);
  EXPECT_NEAR(c->best.cost, 0.2 + migration_s * 0.003, 1e-12);
  EXPECT_THAT(c->reason, HasSubstr("cheapest feasible node b"));
}

TEST(TargetTest, MigrationCostCanOutweighACheaperPrice) {
  // b is cheaper to run on, but its link is slow: shipping the image costs more.
  Candidate a = Node("a", 4, 4096, 0.003, 0);
  Candidate b = Node("b", 4, 4096, 0.0029, 0);
  b.bandwidth_bytes_per_s = 1e6;  // 268 s for the image
  auto c = ChooseTarget(Task(), "src", 0.003, 0, {a, b});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_id, "a");
  // With a short image b wins again.
  Demand small = Task();
  small.image_bytes = 1 * kMiB;
  c = ChooseTarget(small, "src", 0.003, 0, {a, b});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_id, "b");
}

TEST(TargetTest, InfeasibleNodesAreRankedLastWithTheirReason) {
  Candidate tight = Node("tight", 4, 256, 0.0001, 0);   // too little memory
  Candidate busy = Node("busy", 0.5, 4096, 0.0001, 0);  // too few cores
  Candidate off = Node("off", 4, 4096, 0.0001, 0);
  off.online = false;
  Candidate noimg = Node("noimg", 4, 4096, 0.0001, 0);
  noimg.can_restore = false;
  Candidate ok = Node("ok", 2, 1024, 0.01, 0.01);
  auto c = ChooseTarget(Task(), "src", 0.003, 0, {tight, busy, off, noimg, ok});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_id, "ok");
  for (size_t i = 1; i < c->ranked.size(); ++i) EXPECT_FALSE(c->ranked[i].feasible);
  auto none = ChooseTarget(Task(), "src", 0.003, 0, {tight, busy, off, noimg});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("tight: 256 MiB free < 512 MiB predicted"));
  EXPECT_THAT(none.status().message(), HasSubstr("busy: 0.50 cores free < 1.00 predicted"));
  EXPECT_THAT(none.status().message(), HasSubstr("off: offline"));
  EXPECT_THAT(none.status().message(), HasSubstr("noimg: cannot restore checkpoints"));
  EXPECT_FALSE(ChooseTarget(Task(), "src", 0, 0, {Node("src", 8, 8192, 0, 0)}).ok());
}

TEST(TargetTest, TiesGoToMoreFreeMemoryThenTheId) {
  auto c = ChooseTarget(Task(), "src", 0, 0,
                        {Node("y", 4, 2048, 0.001, 0), Node("x", 4, 2048, 0.001, 0),
                         Node("z", 4, 4096, 0.001, 0)});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->node_id, "z");
  EXPECT_EQ(c->ranked[1].node_id, "x");
}

TEST(TargetTest, MeasuredRestoreTimeReplacesTheEstimate) {
  Candidate a = Node("a", 4, 4096, 0.001, 0);
  a.restore_s = 2.5;
  Scored s = ScoreNode(Task(), 0.01, a);
  EXPECT_NEAR(s.migration_s, 256.0 * kMiB / 100e6 + 2.5, 1e-9);
  EXPECT_NEAR(PricePerSecond(Task(), 0.001, 0.002), 0.001 + 0.002 * 0.5, 1e-12);
}

TEST(TargetTest, NodesWhoseCheckpointingIsNotAvailableAreNeverTargets) {
  Candidate cheap = Node("cheap", 8, 8192, 0.0001, 0);
  cheap.checkpoint_unavailable = "unavailable (criu dump timed out: killed after 5 s)";
  Candidate probing = Node("probing", 8, 8192, 0.0001, 0);
  probing.checkpoint_unavailable = "probing";
  Candidate dear = Node("dear", 4, 4096, 0.003, 0);
  auto c = ChooseTarget(Task(), "src", 0.003, 0, {cheap, probing, dear});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, "dear");  // the cheaper two cannot take it
  ASSERT_EQ(c->ranked.size(), 3u);
  EXPECT_FALSE(c->ranked[1].feasible);
  EXPECT_THAT(c->ranked[1].why_not + c->ranked[2].why_not, HasSubstr("criu dump timed out"));
  EXPECT_THAT(c->ranked[1].why_not + c->ranked[2].why_not, HasSubstr("checkpointing probing"));

  // With only those, there is no target, and the error says why for each.
  auto none = ChooseTarget(Task(), "src", 0.003, 0, {cheap, probing});
  ASSERT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("cheap: checkpointing unavailable"));
  // An operator's --to gets the same line.
  Scored named = ScoreNode(Task(), 0.003, cheap);
  EXPECT_FALSE(named.feasible);
  EXPECT_THAT(named.why_not, HasSubstr("criu dump timed out"));
}

TEST(TargetTest, ASourceThatCannotCheckpointIsNotMoved) {
  Candidate src = Node("src", 0, 0, 0.003, 0);
  src.checkpoint_unavailable = "unavailable (criu check failed)";
  Candidate room = Node("room", 8, 8192, 0.0001, 0);
  auto c = ChooseTarget(Task(), "src", 0.003, 0, {src, room});
  ASSERT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("node src cannot checkpoint: checkpointing unavailable (criu check failed)"));
  EXPECT_FALSE(CheckSource("src", {src, room}).ok());
  EXPECT_TRUE(CheckSource("room", {src, room}).ok());
  // A source nothing is known about is refused by the strict check.
  EXPECT_EQ(CheckSource("ghost", {src, room}).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flotilla::migrate
