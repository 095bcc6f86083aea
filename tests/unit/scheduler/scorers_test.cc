#include "scheduler/scorers.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

// 4 cores, 8 GiB, trust 5.
HypervisorNode Node() {
  HypervisorNode node;
  node.id = "agent-1";
  node.status = model::NodeStatus::kOnline;
  node.capacity = {.cpu_millis = 4000, .memory_bytes = 8 * kGiB};
  node.available = node.capacity;
  node.security.trust_level = 5;
  return node;
}

// 500m cpu, 512 MiB.
ExecutionRequest Request() {
  ExecutionRequest request;
  request.user_id = "alice";
  request.resources = {.cpu_millis = 500, .memory_bytes = 512 * kMiB};
  return request;
}

const ScoringContext kNoContext;

TEST(CpuScorerTest, LeastAllocatedIsFreeFractionBeforePlacement) {
  HypervisorNode node = Node();
  node.available.cpu_millis = 1000;
  EXPECT_DOUBLE_EQ(CpuScorer().Score(Request(), node, kNoContext), 0.25);
  node.available.cpu_millis = 5000;  // more than capacity: clamped
  EXPECT_DOUBLE_EQ(CpuScorer().Score(Request(), node, kNoContext), 1.0);
}

TEST(CpuScorerTest, MostAllocatedIsUsedFractionAfterPlacement) {
  const CpuScorer packed(AllocationStrategy::kMostAllocated);
  HypervisorNode node = Node();
  // Idle: after placing 500m of 4000m, 12.5% used.
  EXPECT_DOUBLE_EQ(packed.Score(Request(), node, kNoContext), 0.125);
  node.available.cpu_millis = 500;  // the request fills the node exactly
  EXPECT_DOUBLE_EQ(packed.Score(Request(), node, kNoContext), 1.0);
}

TEST(CpuScorerTest, ZeroCapacityScoresZero) {
  HypervisorNode node = Node();
  node.capacity.cpu_millis = 0;
  EXPECT_EQ(CpuScorer().Score(Request(), node, kNoContext), 0);
  EXPECT_EQ(CpuScorer(AllocationStrategy::kMostAllocated).Score(Request(), node, kNoContext), 0);
}

TEST(MemoryScorerTest, BothStrategies) {
  HypervisorNode node = Node();
  node.available.memory_bytes = 6 * kGiB;
  EXPECT_DOUBLE_EQ(MemoryScorer().Score(Request(), node, kNoContext), 0.75);
  // After placing 512 MiB: 5.5 GiB free of 8, so 2.5/8 used.
  EXPECT_DOUBLE_EQ(
      MemoryScorer(AllocationStrategy::kMostAllocated).Score(Request(), node, kNoContext), 2.5 / 8);
}

TEST(SecurityScorerTest, MatchToTheMinimum) {
  const SecurityScorer scorer;
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 0.5);  // 1 - 5/10
  node.security.trust_level = 10;
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 0.0);  // kept for who needs it
  node.security.trust_level = 0;
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 1.0);
  request.security.min_trust_level = 6;
  node.security.trust_level = 6;
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 1.0);  // exactly at the minimum
  node.security.trust_level = 8;
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 0.5);  // 1 - 2/4
}

TEST(SecurityScorerTest, MinimumTenIsOne) {
  HypervisorNode node = Node();
  node.security.trust_level = 10;
  ExecutionRequest request = Request();
  request.security.min_trust_level = 10;
  EXPECT_DOUBLE_EQ(SecurityScorer().Score(request, node, kNoContext), 1.0);
}

TEST(LocalityScorerTest, ShareOfBytesUsingTheLargestObservedSize) {
  HypervisorNode small = Node();
  small.data_sets = {{"a", 100}};
  HypervisorNode big = Node();
  big.data_sets = {{"a", 300}, {"b", 100}, {"unrelated", 5000}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "b", "c", "a"};
  DataLocality locality;
  locality.Reset(request);
  locality.Observe(small);
  locality.Observe(big);
  ScoringContext context;
  context.locality = &locality;
  EXPECT_DOUBLE_EQ(LocalityScorer().Score(request, small, context), 0.75);
  EXPECT_DOUBLE_EQ(LocalityScorer().Score(request, big, context), 1.0);
  EXPECT_EQ(LocalityScorer().Score(request, Node(), context), 0);
  EXPECT_EQ(LocalityScorer().Score(request, big, kNoContext), 0) << "no DataLocality";
}

TEST(LocalityScorerTest, UnsizedDataFallsBackToShareOfKeys) {
  HypervisorNode node = Node();
  node.data_sets = {{"a", 0}, {"b", 0}, {"b", 0}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "b", "c", "d"};
  DataLocality locality;
  locality.Reset(request);
  locality.Observe(node);
  EXPECT_DOUBLE_EQ(locality.Fraction(node), 0.5);
  EXPECT_TRUE(locality.has_data());
  locality.Reset(Request());
  EXPECT_FALSE(locality.has_data());
  EXPECT_EQ(locality.Fraction(node), 0);
}

TEST(GeoScorerTest, DecreasesByPosition) {
  const GeoScorer scorer;
  ExecutionRequest request = Request();
  HypervisorNode node = Node();
  node.labels["region"] = "eu-west";
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0) << "no preference";
  request.placement.preferred_regions = {"eu-west", "us-east", "ap-south"};
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 1.0);
  node.labels["region"] = "us-east";
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 2.0 / 3);
  node.labels["region"] = "ap-south";
  EXPECT_DOUBLE_EQ(scorer.Score(request, node, kNoContext), 1.0 / 3);
  node.labels["region"] = "sa-east";
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0);
  node.labels.clear();
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0);
}

TEST(WarmScorerTest, IdleSandboxOfTheTemplate) {
  const WarmScorer scorer;
  ExecutionRequest request = Request();
  request.template_name = "python3";
  HypervisorNode node = Node();
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0);
  node.warm_sandboxes["python3"] = 0;
  node.warm_sandboxes["shell"] = 4;
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0);
  node.warm_sandboxes["python3"] = 2;
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 1);
  request.template_name = "";
  EXPECT_EQ(scorer.Score(request, node, kNoContext), 0);
}

TEST(LatencyScorerTest, RelativeToTheSlowestCandidate) {
  ScoringContext context;
  context.predicted_ms = 50;
  context.max_predicted_ms = 200;
  EXPECT_DOUBLE_EQ(LatencyScorer().Score(Request(), Node(), context), 0.75);
  context.predicted_ms = 200;
  EXPECT_DOUBLE_EQ(LatencyScorer().Score(Request(), Node(), context), 0.0);
  context.predicted_ms = 0;
  context.max_predicted_ms = 0;
  EXPECT_DOUBLE_EQ(LatencyScorer().Score(Request(), Node(), context), 1.0);
}

TEST(CostScorerTest, RelativeToTheDearestCandidate) {
  HypervisorNode node = Node();
  node.cost = {.per_cpu_second = 0.01, .per_gib_second = 0.02};
  ExecutionRequest request = Request();
  request.resources = {.cpu_millis = 2000, .memory_bytes = 512 * kMiB};
  EXPECT_DOUBLE_EQ(CostPerSecond(request, node), 0.01 * 2 + 0.02 * 0.5);
  ScoringContext context;
  context.max_cost_per_s = 0.06;
  EXPECT_DOUBLE_EQ(CostScorer().Score(request, node, context), 0.5);
  context.max_cost_per_s = 0;
  EXPECT_DOUBLE_EQ(CostScorer().Score(request, node, context), 1.0) << "everything free";
}

TEST(BalanceScorerTest, HotNodesLose) {
  HypervisorNode node = Node();
  node.available = {.cpu_millis = 2000, .memory_bytes = 6 * kGiB};
  ExecutionRequest request = Request();
  request.resources = {.cpu_millis = 1000, .memory_bytes = kGiB};
  // After placement: cpu 3000/4000 used, memory 3/8 used; the larger counts.
  EXPECT_DOUBLE_EQ(BalanceScorer().Score(request, node, kNoContext), 0.25);
  node.available = node.capacity;
  EXPECT_DOUBLE_EQ(BalanceScorer().Score(request, node, kNoContext), 0.75);
}

TEST(LoadLatencyPredictorTest, LoadAndColdStart) {
  const LoadLatencyPredictor predictor(/*base_ms=*/100, /*cold_start_ms=*/250);
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  request.template_name = "python3";
  EXPECT_DOUBLE_EQ(predictor.PredictMs(request, node), 350);
  node.running_executions = 2;  // 0.5 per core
  EXPECT_DOUBLE_EQ(predictor.PredictMs(request, node), 400);
  node.warm_sandboxes["python3"] = 1;
  EXPECT_DOUBLE_EQ(predictor.PredictMs(request, node), 150);
  node.capacity.cpu_millis = 0;  // counts as one core
  EXPECT_DOUBLE_EQ(predictor.PredictMs(request, node), 300);
}

TEST(ScorersForTest, PositiveWeightsInPartOrder) {
  Weights weights{.cpu = 1, .memory = 0, .security = 0, .locality = 2, .geo = 0, .warm = 3};
  weights.balance = 0.5;
  std::vector<std::string> names;
  for (const WeightedScorer& s : ScorersFor(weights, AllocationStrategy::kLeastAllocated)) {
    names.push_back(s.scorer->name());
  }
  EXPECT_THAT(names, ElementsAre("cpu", "locality", "warm", "balance"));
}

TEST(WeightsTest, NewKeysDefaultToZeroAndParse) {
  Weights defaults;
  EXPECT_EQ(defaults.geo, 0);
  EXPECT_EQ(defaults.warm, 0);
  EXPECT_EQ(defaults.latency, 0);
  EXPECT_EQ(defaults.cost, 0);
  EXPECT_EQ(defaults.balance, 0);
  absl::StatusOr<Weights> w =
      Weights::FromMap({{"geo", 1}, {"warm", 2}, {"latency", 3}, {"cost", 4}, {"balance", 5}});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->geo, 1);
  EXPECT_EQ(w->warm, 2);
  EXPECT_EQ(w->latency, 3);
  EXPECT_EQ(w->cost, 4);
  EXPECT_EQ(w->balance, 5);
  EXPECT_EQ(w->cpu, 0.3);
}

TEST(WeightsTest, OnlyNewKeyPositiveIsEnough) {
  absl::StatusOr<Weights> w =
      Weights::FromMap({{"cpu", 0}, {"memory", 0}, {"security", 0}, {"locality", 0}, {"cost", 1}});
  EXPECT_TRUE(w.ok()) << w.status();
}

TEST(WeightsTest, ErrorsNameKeyAndValue) {
  absl::StatusOr<Weights> w = Weights::FromMap({{"latency", -1}});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("'latency'"));
  w = Weights::FromMap({{"geo", std::numeric_limits<double>::infinity()}});
  EXPECT_THAT(w.status().message(), HasSubstr("'geo'"));
  w = Weights::FromMap({{"warmth", 1}});
  EXPECT_THAT(w.status().message(), HasSubstr("'warmth'"));
  EXPECT_THAT(w.status().message(), HasSubstr("geo, warm, latency, cost, balance"));
  w = Weights::FromMap({{"cpu", 0}, {"memory", 0}, {"security", 0}, {"locality", 0}});
  EXPECT_THAT(w.status().message(), HasSubstr("all zero"));
}

}  // namespace
}  // namespace flotilla::scheduler
