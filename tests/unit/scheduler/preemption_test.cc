#include "scheduler/preemption.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr int64_t kGiB = int64_t{1} << 30;

model::HypervisorNode Node(std::string id, int64_t cpu_cap, int64_t cpu_free,
                           int64_t mem_cap = 64 * kGiB, int64_t mem_free = 64 * kGiB) {
  model::HypervisorNode n;
  n.id = std::move(id);
  n.status = model::NodeStatus::kOnline;
  n.capacity = {.cpu_millis = cpu_cap, .memory_bytes = mem_cap, .storage_bytes = 100 * kGiB};
  n.available = {.cpu_millis = cpu_free, .memory_bytes = mem_free, .storage_bytes = 100 * kGiB};
  n.security.trust_level = 5;
  return n;
}

RunningExecution Running(std::string id, std::string node, int priority, int64_t cpu,
                         int64_t mem = kGiB) {
  return {.id = std::move(id),
          .node_id = std::move(node),
          .priority = priority,
          .resources = {.cpu_millis = cpu, .memory_bytes = mem},
          .started_ms = 0};
}

model::ExecutionRequest Request(int priority, int64_t cpu, int64_t mem = kGiB) {
  model::ExecutionRequest r;
  r.id = "req";
  r.user_id = "alice";
  r.priority = priority;
  r.resources = {.cpu_millis = cpu, .memory_bytes = mem};
  return r;
}

TEST(PreemptionTest, NoPlanWhenNothingIsLowEnough) {
  std::vector nodes{Node("n1", 4000, 0)};
  std::vector running{Running("a", "n1", 45, 2000), Running("b", "n1", 45, 2000)};
  EXPECT_EQ(PlanPreemption(Request(50, 1000), nodes, running), std::nullopt);
}

TEST(PreemptionTest, NoPlanWhenEvictingEverythingEligibleIsNotEnough) {
  std::vector nodes{Node("n1", 4000, 0)};
  std::vector running{Running("low", "n1", 10, 1000), Running("high", "n1", 90, 3000)};
  EXPECT_EQ(PlanPreemption(Request(50, 2000), nodes, running), std::nullopt);
}

TEST(PreemptionTest, NeverEvictsEqualOrHigherPriority) {
  std::vector nodes{Node("n1", 4000, 0)};
  std::vector running{Running("same", "n1", 70, 2000), Running("higher", "n1", 80, 2000)};
  EXPECT_EQ(PlanPreemption(Request(70, 1000), nodes, running), std::nullopt);
  // Even with the gap turned off.
  EXPECT_EQ(PlanPreemption(Request(70, 1000), nodes, running, {.min_priority_gap = 0}),
            std::nullopt);
}

TEST(PreemptionTest, GapOfExactlyTenIsEligible) {
  std::vector nodes{Node("n1", 2000, 0)};
  std::vector at_gap{Running("p40", "n1", 40, 2000)};
  auto plan = PlanPreemption(Request(50, 1000), nodes, at_gap);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("p40"));

  std::vector inside_gap{Running("p41", "n1", 41, 2000)};
  EXPECT_EQ(PlanPreemption(Request(50, 1000), nodes, inside_gap), std::nullopt);
}

TEST(PreemptionTest, FewestVictimsBeatSmallerTotal) {
  // Evicting "big" (4000m) or the three small ones (3900m together) both
  // free enough; one restarted execution beats three.
  std::vector nodes{Node("n1", 8000, 100)};
  std::vector running{Running("big", "n1", 10, 4000), Running("s1", "n1", 10, 1300),
                      Running("s2", "n1", 10, 1300), Running("s3", "n1", 10, 1300)};
  auto plan = PlanPreemption(Request(80, 4000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("big"));
  EXPECT_EQ(plan->freed.cpu_millis, 4000);
  EXPECT_EQ(plan->node_id, "n1");
  EXPECT_THAT(plan->reason, HasSubstr("evict 1 execution"));
}

TEST(PreemptionTest, SmallestVictimAmongEqualCounts) {
  std::vector nodes{Node("n1", 12000, 1000)};
  std::vector running{Running("huge", "n1", 10, 6000), Running("mid", "n1", 10, 3000),
                      Running("small", "n1", 10, 2000)};
  auto plan = PlanPreemption(Request(80, 2500), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("small"));
}

TEST(PreemptionTest, SmallestPairWhenNoSingleVictimSuffices) {
  std::vector nodes{Node("n1", 10000, 0)};
  std::vector running{Running("a", "n1", 10, 1000), Running("b", "n1", 10, 2000),
                      Running("c", "n1", 10, 3000), Running("d", "n1", 10, 4000)};
  // Needs 4500m: no single victim; pairs that fit: b+c (5000), a+d (5000),
  // b+d, c+d. b+c and a+d tie on cpu and memory; a+d has ids "a","d" < "b","c".
  auto plan = PlanPreemption(Request(80, 4500), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->victims.size(), 2u);
  EXPECT_EQ(plan->freed.cpu_millis, 5000);
  EXPECT_THAT(plan->victims, ElementsAre("a", "d"));
}

TEST(PreemptionTest, LowerPriorityVictimBreaksSizeTie) {
  std::vector nodes{Node("n1", 4000, 0)};
  std::vector running{Running("p20", "n1", 20, 2000), Running("p5", "n1", 5, 2000)};
  auto plan = PlanPreemption(Request(80, 2000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("p5"));
  EXPECT_EQ(plan->max_victim_priority, 5);
}

TEST(PreemptionTest, EveryDimensionMustFit) {
  // cpu is short by 1000m and memory by 3 GiB: the cpu-only victim is not
  // enough, the memory-heavy one is.
  std::vector nodes{Node("n1", 4000, 0, 8 * kGiB, 1 * kGiB)};
  std::vector running{Running("cpu-only", "n1", 10, 2000, 0),
                      Running("memory-heavy", "n1", 10, 1000, 4 * kGiB),
                      Running("rest", "n1", 90, 1000, 3 * kGiB)};
  auto plan = PlanPreemption(Request(80, 1000, 4 * kGiB), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("memory-heavy"));
}

TEST(PreemptionTest, ChoosesNodeNeedingFewestVictims) {
  std::vector nodes{Node("n1", 4000, 0), Node("n2", 4000, 0)};
  std::vector running{Running("n1-a", "n1", 10, 1000), Running("n1-b", "n1", 10, 1000),
                      Running("n1-c", "n1", 10, 2000), Running("n2-a", "n2", 30, 3000),
                      Running("n2-b", "n2", 30, 1000)};
  auto plan = PlanPreemption(Request(80, 2500), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "n2");
  EXPECT_THAT(plan->victims, ElementsAre("n2-a"));
}

TEST(PreemptionTest, ChoosesNodeWithSmallestEvictionThenNodeId) {
  std::vector nodes{Node("n3", 8000, 0), Node("n1", 8000, 0), Node("n2", 8000, 0)};
  // Victim ids on n2 sort first; they must not decide between nodes.
  std::vector running{Running("n3-big", "n3", 10, 8000), Running("z-x", "n1", 10, 2000),
                      Running("z-y", "n1", 10, 6000), Running("a-x", "n2", 10, 2000),
                      Running("a-y", "n2", 10, 6000)};
  auto plan = PlanPreemption(Request(80, 2000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "n1");  // n1 and n2 tie; n1 < n2
  EXPECT_THAT(plan->victims, ElementsAre("z-x"));
}

TEST(PreemptionTest, AcrossNodesLowerVictimPriorityWinsBeforeNodeId) {
  std::vector nodes{Node("n1", 4000, 0), Node("n2", 4000, 0)};
  std::vector running{Running("v1", "n1", 20, 2000), Running("v2", "n2", 5, 2000)};
  auto plan = PlanPreemption(Request(80, 2000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "n2");
  EXPECT_THAT(plan->victims, ElementsAre("v2"));
}

TEST(PreemptionTest, NodeFailingSecurityIsNeverChosen) {
  auto good = Node("good", 4000, 0);
  auto low_trust = Node("low-trust", 4000, 0);
  low_trust.security.trust_level = 1;
  auto other_tenant = Node("other-tenant", 4000, 0);
  other_tenant.security.allowed_tenants = {"bob"};
  auto no_gpu = Node("no-gpu", 4000, 0);
  auto offline = Node("offline", 4000, 0);
  offline.status = model::NodeStatus::kOffline;
  auto draining = Node("draining", 4000, 0);
  draining.draining = true;
  good.security.capabilities = {"gpu"};
  low_trust.security.capabilities = {"gpu"};
  other_tenant.security.capabilities = {"gpu"};
  offline.security.capabilities = {"gpu"};
  draining.security.capabilities = {"gpu"};

  model::ExecutionRequest req = Request(80, 2000);
  req.security.min_trust_level = 3;
  req.security.required_capabilities = {"gpu"};

  // Every bad node runs one perfect, tiny victim; "good" needs two.
  std::vector<RunningExecution> running;
  for (const char* bad : {"low-trust", "other-tenant", "no-gpu", "offline", "draining"}) {
    running.push_back(Running(std::string(bad) + "-v", bad, 0, 2000));
  }
  running.push_back(Running("good-1", "good", 10, 1000));
  running.push_back(Running("good-2", "good", 10, 1000));

  std::vector nodes{low_trust, other_tenant, no_gpu, offline, draining, good};
  auto plan = PlanPreemption(req, nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "good");
  EXPECT_THAT(plan->victims, UnorderedElementsAre("good-1", "good-2"));

  // Without "good", nothing qualifies.
  nodes.pop_back();
  EXPECT_EQ(PlanPreemption(req, nodes, running), std::nullopt);
}

TEST(PreemptionTest, RequiredRegionIsHonoured) {
  auto eu = Node("eu", 2000, 0);
  eu.labels["region"] = "eu";
  auto us = Node("us", 2000, 0);
  us.labels["region"] = "us";
  std::vector nodes{eu, us};
  std::vector running{Running("eu-v", "eu", 0, 2000), Running("us-v", "us", 0, 2000)};
  model::ExecutionRequest req = Request(80, 1000);
  req.placement.required_regions = {"us"};
  auto plan = PlanPreemption(req, nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "us");
}

TEST(PreemptionTest, RoomWithoutPreemptionGivesEmptyPlan) {
  std::vector nodes{Node("full", 4000, 0), Node("free", 4000, 3000)};
  std::vector running{Running("v", "full", 0, 4000)};
  auto plan = PlanPreemption(Request(80, 2000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->node_id, "free");
  EXPECT_THAT(plan->victims, IsEmpty());
  EXPECT_THAT(plan->reason, HasSubstr("without preemption"));
}

TEST(PreemptionTest, ExecutionsOnUnknownNodesAreIgnored) {
  std::vector nodes{Node("n1", 2000, 0)};
  std::vector running{Running("ghost", "gone", 0, 8000)};
  EXPECT_EQ(PlanPreemption(Request(80, 1000), nodes, running), std::nullopt);
}

TEST(PreemptionTest, MaxVictimsRefusesLargerPlans) {
  std::vector nodes{Node("n1", 3000, 0)};
  std::vector running{Running("a", "n1", 0, 1000), Running("b", "n1", 0, 1000),
                      Running("c", "n1", 0, 1000)};
  EXPECT_EQ(PlanPreemption(Request(80, 2000), nodes, running, {.max_victims = 1}), std::nullopt);
  auto plan = PlanPreemption(Request(80, 2000), nodes, running, {.max_victims = 2});
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->victims.size(), 2u);
}

TEST(PreemptionTest, GreedyFallbackStillFreesEnough) {
  std::vector nodes{Node("n1", 64000, 0)};
  std::vector<RunningExecution> running;
  for (int i = 0; i < 32; ++i) {
    running.push_back(Running("v" + std::to_string(i), "n1", 0, 1000 + 30 * i));
  }
  PreemptionOptions options{.max_subsets_per_node = 1};
  auto plan = PlanPreemption(Request(80, 10000), nodes, running, options);
  ASSERT_TRUE(plan.has_value());
  EXPECT_GE(plan->freed.cpu_millis, 10000);
  // Greedy: the five largest (9350m), then the smallest that closes the gap.
  EXPECT_LE(plan->victims.size(), 6u);
  // And no victim is superfluous.
  for (size_t skip = 0; skip < plan->victims.size(); ++skip) {
    int64_t freed = 0;
    for (size_t i = 0; i < plan->victims.size(); ++i) {
      if (i == skip) continue;
      for (const auto& r : running) {
        if (r.id == plan->victims[i]) freed += r.resources.cpu_millis;
      }
    }
    EXPECT_LT(freed, 10000) << "victim " << plan->victims[skip] << " was not needed";
  }
}

TEST(PreemptionTest, ExactSearchFindsMinimumOnMediumNode) {
  // 20 victims; 5 of size 2000m and 15 of 500m. Needs 6000m: 3 big ones.
  std::vector nodes{Node("n1", 17500, 0)};
  std::vector<RunningExecution> running;
  for (int i = 0; i < 15; ++i) running.push_back(Running("s" + std::to_string(i), "n1", 0, 500));
  for (int i = 0; i < 5; ++i) running.push_back(Running("b" + std::to_string(i), "n1", 0, 2000));
  auto plan = PlanPreemption(Request(80, 6000), nodes, running);
  ASSERT_TRUE(plan.has_value());
  EXPECT_THAT(plan->victims, ElementsAre("b0", "b1", "b2"));
}

}  // namespace
}  // namespace flotilla::scheduler
