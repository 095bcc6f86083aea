#include "scheduler/load_balancer.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr int64_t kGiB = int64_t{1} << 30;

// A node with `cores` cores and 4 GiB per core, `cpu_used` and `mem_used` of
// them in use (fractions).
model::HypervisorNode Node(std::string id, int64_t cores, double cpu_used, double mem_used = 0) {
  model::HypervisorNode n;
  n.id = std::move(id);
  n.status = model::NodeStatus::kOnline;
  n.capacity = {.cpu_millis = cores * 1000, .memory_bytes = cores * 4 * kGiB};
  n.available = n.capacity;
  n.available.cpu_millis -= static_cast<int64_t>(std::llround(cpu_used * cores * 1000));
  n.available.memory_bytes -= static_cast<int64_t>(std::llround(mem_used * cores * 4 * kGiB));
  return n;
}

TEST(LoadBalancerTest, EmptyFederation) {
  LoadBalancer lb;
  BalanceReport r = lb.Analyze({});
  EXPECT_EQ(r.average_utilisation, 0);
  EXPECT_THAT(r.nodes, IsEmpty());
  EXPECT_THAT(LoadBalancer::AvoidSet(r), IsEmpty());
}

TEST(LoadBalancerTest, HotNodeIsMarkedAndAvoided) {
  std::vector nodes{Node("hot", 8, 0.75), Node("cool", 8, 0.25)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_DOUBLE_EQ(r.average_utilisation, 0.5);
  ASSERT_EQ(r.nodes.size(), 2u);
  const NodeBalance& hot = r.nodes[0];
  const NodeBalance& cool = r.nodes[1];
  EXPECT_DOUBLE_EQ(hot.utilisation, 0.75);
  EXPECT_DOUBLE_EQ(hot.target_share, 0.5);
  EXPECT_DOUBLE_EQ(hot.load_share, 0.75);
  EXPECT_TRUE(hot.overloaded);  // 0.75 > 0.5 + 0.2
  EXPECT_DOUBLE_EQ(hot.penalty, 1);
  EXPECT_DOUBLE_EQ(hot.suggested_weight, 0);
  EXPECT_FALSE(cool.overloaded);
  EXPECT_DOUBLE_EQ(cool.penalty, 0);
  EXPECT_DOUBLE_EQ(cool.suggested_weight, 1);
  EXPECT_THAT(LoadBalancer::AvoidSet(r), ElementsAre("hot"));
  EXPECT_THAT(LoadBalancer::Penalties(r), ElementsAre(Pair("cool", 0.0), Pair("hot", 1.0)));
}

TEST(LoadBalancerTest, FairShareIsProportionalToCapacity) {
  // A 4-core and a 12-core node, both half full: each carries exactly its
  // fair share, so nobody is penalised and new work splits 1:3.
  std::vector nodes{Node("small", 4, 0.5), Node("large", 12, 0.5)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_DOUBLE_EQ(r.average_utilisation, 0.5);
  EXPECT_DOUBLE_EQ(r.nodes[0].target_share, 0.25);
  EXPECT_DOUBLE_EQ(r.nodes[1].target_share, 0.75);
  EXPECT_DOUBLE_EQ(r.nodes[0].load_share, 0.25);
  EXPECT_DOUBLE_EQ(r.nodes[1].load_share, 0.75);
  EXPECT_DOUBLE_EQ(r.nodes[0].suggested_weight, 0.25);
  EXPECT_DOUBLE_EQ(r.nodes[1].suggested_weight, 0.75);
  EXPECT_DOUBLE_EQ(r.nodes[0].penalty, 0);
  EXPECT_DOUBLE_EQ(r.nodes[1].penalty, 0);
}

TEST(LoadBalancerTest, AverageIsCapacityWeighted) {
  // 4 cores full and 12 cores empty: 4 of 16 cores busy, Ū = 0.25 (not the
  // unweighted 0.5). The small node is far above it.
  std::vector nodes{Node("small", 4, 1.0), Node("large", 12, 0.0)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_DOUBLE_EQ(r.average_utilisation, 0.25);
  EXPECT_TRUE(r.nodes[0].overloaded);
  EXPECT_DOUBLE_EQ(r.nodes[0].load_share, 1.0);
  EXPECT_DOUBLE_EQ(r.nodes[1].load_share, 0.0);
}

TEST(LoadBalancerTest, DominantResourceCounts) {
  std::vector nodes{Node("memory-bound", 8, 0.1, 0.8), Node("idle", 8, 0.1, 0.1)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_DOUBLE_EQ(r.nodes[0].cpu_utilisation, 0.1);
  EXPECT_NEAR(r.nodes[0].memory_utilisation, 0.8, 1e-9);
  EXPECT_NEAR(r.nodes[0].utilisation, 0.8, 1e-9);
  EXPECT_NEAR(r.average_utilisation, 0.45, 1e-9);
  EXPECT_TRUE(r.nodes[0].overloaded);  // 0.8 > 0.65
}

TEST(LoadBalancerTest, PenaltyRisesLinearlyAboveAverage) {
  std::vector nodes{Node("a", 10, 0.6), Node("b", 10, 0.4)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_NEAR(r.average_utilisation, 0.5, 1e-12);
  EXPECT_FALSE(r.nodes[0].overloaded);
  EXPECT_NEAR(r.nodes[0].penalty, 0.5, 1e-9);  // (0.6 - 0.5) / 0.2
  EXPECT_DOUBLE_EQ(r.nodes[1].penalty, 0);
  // Weights ∝ free capacity: 0.4 : 0.6.
  EXPECT_NEAR(r.nodes[0].suggested_weight, 0.4, 1e-9);
  EXPECT_NEAR(r.nodes[1].suggested_weight, 0.6, 1e-9);
  EXPECT_THAT(LoadBalancer::AvoidSet(r), IsEmpty());
}

TEST(LoadBalancerTest, AbsoluteLimitMarksEvenWhenEveryoneIsBusy) {
  std::vector nodes{Node("a", 8, 0.95), Node("b", 8, 0.85)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_TRUE(r.nodes[0].overloaded);   // 0.95 > 0.9
  EXPECT_FALSE(r.nodes[1].overloaded);  // 0.85 < 0.9 and < 0.9 + 0.2
  EXPECT_THAT(LoadBalancer::AvoidSet(r), ElementsAre("a"));
}

TEST(LoadBalancerTest, NothingIsAvoidedWhenAllAreOverloaded) {
  std::vector nodes{Node("a", 8, 0.95), Node("b", 8, 0.97)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  EXPECT_TRUE(r.nodes[0].overloaded);
  EXPECT_TRUE(r.nodes[1].overloaded);
  EXPECT_THAT(LoadBalancer::AvoidSet(r), IsEmpty());
  EXPECT_DOUBLE_EQ(r.nodes[0].suggested_weight, 0);
  EXPECT_DOUBLE_EQ(r.nodes[1].suggested_weight, 0);
}

TEST(LoadBalancerTest, HysteresisKeepsTheMarkNearTheThreshold) {
  LoadBalancer lb;
  // 0.8 vs 0.3: 0.8 > 0.55 + 0.2.
  std::vector first{Node("a", 10, 0.8), Node("b", 10, 0.3)};
  BalanceReport r1 = lb.Analyze(first);
  ASSERT_TRUE(r1.nodes[0].overloaded);

  // 0.75 vs 0.4: limit 0.775; below it, but not by the 0.05 hysteresis.
  std::vector second{Node("a", 10, 0.75), Node("b", 10, 0.4)};
  EXPECT_FALSE(lb.Analyze(second).nodes[0].overloaded);
  BalanceReport r2 = lb.Analyze(second, &r1);
  EXPECT_TRUE(r2.nodes[0].overloaded);

  // 0.7 vs 0.45: limit 0.775, 0.7 < 0.725: cleared.
  std::vector third{Node("a", 10, 0.7), Node("b", 10, 0.45)};
  EXPECT_FALSE(lb.Analyze(third, &r2).nodes[0].overloaded);
}

TEST(LoadBalancerTest, DrainingCountsLoadButTakesNoWork) {
  auto draining = Node("draining", 8, 1.0);
  draining.draining = true;
  auto offline = Node("offline", 8, 1.0);
  offline.status = model::NodeStatus::kOffline;
  std::vector nodes{draining, offline, Node("up", 8, 0.2)};
  BalanceReport r = LoadBalancer().Analyze(nodes);
  ASSERT_EQ(r.nodes.size(), 2u);  // offline left out
  EXPECT_EQ(r.nodes[0].node_id, "draining");
  EXPECT_FALSE(r.nodes[0].accepts_work);
  EXPECT_DOUBLE_EQ(r.average_utilisation, 0.6);
  EXPECT_DOUBLE_EQ(r.nodes[0].suggested_weight, 0);
  EXPECT_DOUBLE_EQ(r.nodes[1].suggested_weight, 1);
  // Draining nodes take no work anyway; they are not part of the avoid set.
  EXPECT_THAT(LoadBalancer::AvoidSet(r), IsEmpty());
  EXPECT_EQ(r.Find("offline"), nullptr);
  ASSERT_NE(r.Find("up"), nullptr);
  EXPECT_DOUBLE_EQ(r.Find("up")->utilisation, 0.2);
}

TEST(LoadBalancerTest, FollowingTheWeightsConvergesUtilisation) {
  // Start skewed, add work in small batches split by suggested weight; the
  // spread between the hottest and coolest node shrinks every round.
  std::vector nodes{Node("a", 4, 0.8), Node("b", 8, 0.1), Node("c", 16, 0.3)};
  LoadBalancer lb;
  auto spread = [](const BalanceReport& r) {
    double lo = 1, hi = 0;
    for (const auto& n : r.nodes) {
      lo = std::min(lo, n.utilisation);
      hi = std::max(hi, n.utilisation);
    }
    return hi - lo;
  };
  BalanceReport r = lb.Analyze(nodes);
  double last = spread(r);
  for (int round = 0; round < 10; ++round) {
    const int64_t batch_millis = 1000;
    for (size_t i = 0; i < nodes.size(); ++i) {
      nodes[i].available.cpu_millis -=
          static_cast<int64_t>(std::llround(batch_millis * r.nodes[i].suggested_weight));
    }
    r = lb.Analyze(nodes, &r);
    const double now = spread(r);
    EXPECT_LT(now, last) << "round " << round;
    last = now;
  }
}

TEST(LoadBalancerTest, OptionsValidate) {
  EXPECT_TRUE(LoadBalancerOptions{}.Validate().ok());
  absl::Status s = LoadBalancerOptions{.overload_margin = 0}.Validate();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("overload_margin"));
  EXPECT_FALSE(LoadBalancerOptions{.overload_absolute = 1.5}.Validate().ok());
  EXPECT_FALSE(LoadBalancerOptions{.hysteresis = -0.1}.Validate().ok());
  EXPECT_TRUE(LoadBalancerOptions{.hysteresis = 0}.Validate().ok());
}

}  // namespace
}  // namespace flotilla::scheduler
