#include "scheduler/node_selection.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using model::DataSet;
using model::ExecutionRequest;
using model::HypervisorNode;
using model::NodeStatus;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

// An online, idle node: 4 cores, 8 GiB memory, 100 GiB storage, trust 5.
HypervisorNode Node(std::string id) {
  HypervisorNode node;
  node.id = std::move(id);
  node.status = NodeStatus::kOnline;
  node.capacity = {.cpu_millis = 4000,
                   .memory_bytes = 8 * kGiB,
                   .storage_bytes = 100 * kGiB,
                   .bandwidth_bps = 0};
  node.available = node.capacity;
  node.security.trust_level = 5;
  return node;
}

// A small request from tenant "alice": 500m cpu, 256 MiB memory.
ExecutionRequest Request() {
  ExecutionRequest request;
  request.id = "exec-1";
  request.user_id = "alice";
  request.resources = {.cpu_millis = 500, .memory_bytes = 256 * kMiB};
  return request;
}

double PartsSum(const CandidateVerdict& verdict) {
  double sum = 0;
  for (const auto& [name, points] : verdict.parts) sum += points;
  return sum;
}

double Part(const CandidateVerdict& verdict, const std::string& name) {
  for (const auto& [n, points] : verdict.parts) {
    if (n == name) return points;
  }
  ADD_FAILURE() << "no part named " << name;
  return std::numeric_limits<double>::quiet_NaN();
}

// ---------------------------------------------------------------- filters

TEST(NodeSelectionTest, PicksTheOnlyNode) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  Decision d = NodeSelection().Select(Request(), nodes);
  ASSERT_TRUE(d.chosen.has_value());
  EXPECT_EQ(*d.chosen, 0u);
  EXPECT_EQ(d.node_id, "agent-1");
  ASSERT_EQ(d.candidates.size(), 1u);
  EXPECT_TRUE(d.candidates[0].feasible);
  EXPECT_EQ(d.candidates[0].rejected_because, "");
}

TEST(NodeSelectionTest, EmptyNodeListChoosesNothing) {
  Decision d = NodeSelection().Select(Request(), {});
  EXPECT_FALSE(d.chosen.has_value());
  EXPECT_EQ(d.node_id, "");
  EXPECT_EQ(d.score, 0);
  EXPECT_TRUE(d.candidates.empty());
  EXPECT_THAT(d.reason, HasSubstr("no node fits now"));
}

TEST(NodeSelectionTest, OfflineNodeIsRejected) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  nodes[0].status = NodeStatus::kOffline;
  // Offline comes first even when other filters would fail too.
  nodes[0].available.cpu_millis = 0;
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "agent-2");
  EXPECT_EQ(*d.chosen, 1u);
  EXPECT_FALSE(d.candidates[0].feasible);
  EXPECT_EQ(d.candidates[0].rejected_because, "node is offline");
  EXPECT_EQ(d.candidates[0].score, 0);
  EXPECT_TRUE(d.candidates[0].parts.empty());
}

TEST(NodeSelectionTest, CpuShortfallIsRejectedWithNumbers) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.cpu_millis = 1500;
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 4000;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_FALSE(d.chosen.has_value());
  EXPECT_EQ(d.candidates[0].rejected_because, "needs 4000m cpu, 1500m free");
}

TEST(NodeSelectionTest, MemoryShortfallFormatsBytes) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.memory_bytes = 128 * kMiB;
  ExecutionRequest request = Request();
  request.resources.memory_bytes = 512 * kMiB;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_FALSE(d.chosen.has_value());
  EXPECT_EQ(d.candidates[0].rejected_because, "needs 512 MiB memory, 128 MiB free");
}

TEST(NodeSelectionTest, StorageShortfallFormatsFractionalUnits) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.storage_bytes = kGiB + kGiB / 2;
  ExecutionRequest request = Request();
  request.resources.storage_bytes = 2 * kGiB;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.candidates[0].rejected_because, "needs 2 GiB storage, 1.5 GiB free");
}

TEST(NodeSelectionTest, SmallByteCountsPrintInBytes) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.memory_bytes = 100;
  ExecutionRequest request = Request();
  request.resources.memory_bytes = 2048;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.candidates[0].rejected_because, "needs 2 KiB memory, 100 B free");
}

TEST(NodeSelectionTest, CpuIsCheckedBeforeMemory) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.cpu_millis = 100;
  nodes[0].available.memory_bytes = 1;
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_THAT(d.candidates[0].rejected_because, HasSubstr("cpu"));
  EXPECT_THAT(d.candidates[0].rejected_because, Not(HasSubstr("memory")));
}

TEST(NodeSelectionTest, ExactFitIsFeasible) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  ExecutionRequest request = Request();
  request.resources = nodes[0].available;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_TRUE(d.candidates[0].feasible) << d.candidates[0].rejected_because;
}

TEST(NodeSelectionTest, ZeroBandwidthDemandNeverFilters) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.bandwidth_bps = 0;
  ExecutionRequest request = Request();
  request.resources.bandwidth_bps = 0;
  EXPECT_TRUE(NodeSelection().Select(request, nodes).chosen.has_value());
}

TEST(NodeSelectionTest, UnknownNodeBandwidthCountsAsUnlimited) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.bandwidth_bps = 0;
  ExecutionRequest request = Request();
  request.resources.bandwidth_bps = 1'000'000'000;
  EXPECT_TRUE(NodeSelection().Select(request, nodes).chosen.has_value());
}

TEST(NodeSelectionTest, KnownSmallerBandwidthFilters) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  nodes[0].available.bandwidth_bps = 50'000'000;
  nodes[1].available.bandwidth_bps = 200'000'000;
  ExecutionRequest request = Request();
  request.resources.bandwidth_bps = 100'000'000;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "agent-2");
  EXPECT_EQ(d.candidates[0].rejected_because, "needs 100 Mbit/s bandwidth, 50 Mbit/s free");
}

TEST(NodeSelectionTest, HighTrustRequestSkipsLowTrustNodes) {
  std::vector<HypervisorNode> nodes = {Node("low"), Node("high")};
  nodes[0].security.trust_level = 2;
  nodes[1].security.trust_level = 7;
  // Make the low-trust node otherwise far more attractive.
  nodes[1].available.cpu_millis = 600;
  nodes[1].available.memory_bytes = 300 * kMiB;
  ExecutionRequest request = Request();
  request.security.min_trust_level = 5;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "high");
  EXPECT_EQ(d.candidates[0].rejected_because, "trust level 2 < required 5");
}

TEST(NodeSelectionTest, TrustEqualToMinimumPasses) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  ExecutionRequest request = Request();
  request.security.min_trust_level = 5;
  EXPECT_TRUE(NodeSelection().Select(request, nodes).chosen.has_value());
}

TEST(NodeSelectionTest, TenantFilter) {
  std::vector<HypervisorNode> nodes = {Node("private"), Node("open")};
  nodes[0].security.allowed_tenants = {"alice", "carol"};
  // nodes[1] has no allow list: everyone may run there.
  ExecutionRequest request = Request();
  request.user_id = "bob";
  nodes[1].available.cpu_millis = 1000;  // less attractive, but the only one allowed
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "open");
  EXPECT_EQ(d.candidates[0].rejected_because, "tenant 'bob' not allowed (allowed: alice, carol)");

  request.user_id = "carol";
  d = NodeSelection().Select(request, nodes);
  EXPECT_TRUE(d.candidates[0].feasible);
  EXPECT_EQ(d.node_id, "private");
}

TEST(NodeSelectionTest, CapabilityFilterNamesTheMissingOne) {
  std::vector<HypervisorNode> nodes = {Node("plain"), Node("gpu-box")};
  nodes[0].security.capabilities = {"network-egress"};
  nodes[1].security.capabilities = {"network-egress", "gpu"};
  nodes[1].available.cpu_millis = 1000;
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"network-egress", "gpu"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "gpu-box");
  EXPECT_EQ(d.candidates[0].rejected_because, "lacks capability 'gpu'");
}

TEST(NodeSelectionTest, FilterOrderResourcesBeforeTrustBeforeTenantBeforeCapability) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].security.trust_level = 1;
  nodes[0].security.allowed_tenants = {"carol"};
  ExecutionRequest request = Request();
  request.security.min_trust_level = 3;
  request.security.required_capabilities = {"gpu"};

  request.resources.memory_bytes = 16 * kGiB;
  EXPECT_THAT(NodeSelection().Select(request, nodes).candidates[0].rejected_because,
              HasSubstr("memory"));
  request.resources.memory_bytes = kMiB;
  EXPECT_THAT(NodeSelection().Select(request, nodes).candidates[0].rejected_because,
              HasSubstr("trust level 1"));
  request.security.min_trust_level = 0;
  EXPECT_THAT(NodeSelection().Select(request, nodes).candidates[0].rejected_because,
              HasSubstr("tenant 'alice'"));
  nodes[0].security.allowed_tenants.clear();
  EXPECT_EQ(NodeSelection().Select(request, nodes).candidates[0].rejected_because,
            "lacks capability 'gpu'");
}

// ---------------------------------------------------------------- scoring

TEST(NodeSelectionTest, IdleNodeWithoutDataScoresEighty) {
  // cpu 1, memory 1, security 1, locality 0 (no data keys): 100 * 0.8 / 1.0.
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_NEAR(d.score, 80.0, 1e-9);
  const CandidateVerdict& v = d.candidates[0];
  ASSERT_EQ(v.parts.size(), 4u);
  EXPECT_EQ(v.parts[0].first, "cpu");
  EXPECT_EQ(v.parts[1].first, "memory");
  EXPECT_EQ(v.parts[2].first, "security");
  EXPECT_EQ(v.parts[3].first, "locality");
  EXPECT_NEAR(Part(v, "cpu"), 30.0, 1e-9);
  EXPECT_NEAR(Part(v, "memory"), 30.0, 1e-9);
  EXPECT_NEAR(Part(v, "security"), 20.0, 1e-9);
  EXPECT_NEAR(Part(v, "locality"), 0.0, 1e-9);
}

TEST(NodeSelectionTest, ScoreFollowsFreeFractions) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.cpu_millis = 1000;        // 25% free
  nodes[0].available.memory_bytes = 6 * kGiB;  // 75% free
  Decision d = NodeSelection().Select(Request(), nodes);
  const CandidateVerdict& v = d.candidates[0];
  EXPECT_NEAR(Part(v, "cpu"), 7.5, 1e-9);
  EXPECT_NEAR(Part(v, "memory"), 22.5, 1e-9);
  EXPECT_NEAR(Part(v, "security"), 20.0, 1e-9);
  EXPECT_NEAR(v.score, 50.0, 1e-9);
  EXPECT_NEAR(d.score, v.score, 1e-12);
}

TEST(NodeSelectionTest, ZeroCapacityScoresZeroNotNaN) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].capacity.cpu_millis = 0;
  nodes[0].available.cpu_millis = 1000;
  Decision d = NodeSelection().Select(Request(), nodes);
  ASSERT_TRUE(d.chosen.has_value());
  EXPECT_EQ(Part(d.candidates[0], "cpu"), 0.0);
  EXPECT_FALSE(std::isnan(d.score));
}

TEST(NodeSelectionTest, PartsSumToScoreForEveryFeasibleCandidate) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b"), Node("c")};
  nodes[0].available.cpu_millis = 1234;
  nodes[1].available.memory_bytes = 3 * kGiB + 17;
  nodes[2].data_sets = {{"x", 300}};
  nodes[1].data_sets = {{"y", 700}};
  ExecutionRequest request = Request();
  request.data_keys = {"x", "y"};
  NodeSelection selection(Weights{.cpu = 0.7, .memory = 0.1, .security = 0.05, .locality = 1.3});
  Decision d = selection.Select(request, nodes);
  for (const CandidateVerdict& v : d.candidates) {
    ASSERT_TRUE(v.feasible);
    EXPECT_NEAR(PartsSum(v), v.score, 1e-9) << v.node_id;
    EXPECT_GE(v.score, 0);
    EXPECT_LE(v.score, 100);
  }
}

TEST(NodeSelectionTest, DataLocalNodeWinsWhenResourcesAreEqual) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2"), Node("agent-3")};
  nodes[1].data_sets = {{"dataset/train", 10 * kGiB}};
  ExecutionRequest request = Request();
  request.data_keys = {"dataset/train"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "agent-2");
  EXPECT_NEAR(d.score, 100.0, 1e-9);
  EXPECT_NEAR(Part(d.candidates[1], "locality"), 20.0, 1e-9);
  EXPECT_NEAR(Part(d.candidates[0], "locality"), 0.0, 1e-9);
  EXPECT_THAT(d.reason, HasSubstr("holds 100% of the input data"));
}

TEST(NodeSelectionTest, LocalityIsByBytesUsingLargestReportedSize) {
  std::vector<HypervisorNode> nodes = {Node("small"), Node("big")};
  // "a" is 100 bytes on one node but 300 on the other: its size is 300.
  nodes[0].data_sets = {{"a", 100}};
  nodes[1].data_sets = {{"a", 300}, {"b", 100}, {"unrelated", 5000}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "b", "c"};  // "c" is nowhere and so counts 0 bytes
  Decision d = NodeSelection().Select(request, nodes);
  // total = 300 + 100 = 400; small holds 300/400, big holds 400/400.
  EXPECT_NEAR(Part(d.candidates[0], "locality"), 20.0 * 0.75, 1e-9);
  EXPECT_NEAR(Part(d.candidates[1], "locality"), 20.0, 1e-9);
  EXPECT_EQ(d.node_id, "big");
}

TEST(NodeSelectionTest, LocalityBeatsSmallResourceAdvantage) {
  std::vector<HypervisorNode> nodes = {Node("idle"), Node("has-data")};
  nodes[1].available.cpu_millis = 3000;  // 75% free: loses 7.5 cpu points
  nodes[1].data_sets = {{"k", 1 * kGiB}};
  ExecutionRequest request = Request();
  request.data_keys = {"k"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "has-data");  // gains 20 locality points
}

TEST(NodeSelectionTest, DuplicateDataKeysCountOnce) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].data_sets = {{"a", 100}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "a", "b"};
  nodes.push_back(Node("agent-2"));
  nodes[1].data_sets = {{"b", 100}};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_NEAR(Part(d.candidates[0], "locality"), 10.0, 1e-9);
  EXPECT_NEAR(Part(d.candidates[1], "locality"), 10.0, 1e-9);
}

TEST(NodeSelectionTest, NoDataHeldAnywhereGivesZeroLocalityEverywhere) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  ExecutionRequest request = Request();
  request.data_keys = {"missing"};
  Decision d = NodeSelection().Select(request, nodes);
  for (const CandidateVerdict& v : d.candidates) {
    EXPECT_EQ(Part(v, "locality"), 0.0);
    EXPECT_NEAR(v.score, 80.0, 1e-9);
  }
  EXPECT_EQ(d.node_id, "agent-1");
  EXPECT_THAT(d.reason, HasSubstr("holds 0% of the input data"));
}

TEST(NodeSelectionTest, ZeroSizedDataFallsBackToFractionOfKeys) {
  std::vector<HypervisorNode> nodes = {Node("one-key"), Node("two-keys")};
  nodes[0].data_sets = {{"a", 0}};
  nodes[1].data_sets = {{"a", 0}, {"b", 0}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "b", "c", "d"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_NEAR(Part(d.candidates[0], "locality"), 20.0 * 0.25, 1e-9);
  EXPECT_NEAR(Part(d.candidates[1], "locality"), 20.0 * 0.5, 1e-9);
  EXPECT_EQ(d.node_id, "two-keys");
}

TEST(NodeSelectionTest, DataOnInfeasibleNodeStillSizesTheKeys) {
  std::vector<HypervisorNode> nodes = {Node("offline"), Node("online")};
  nodes[0].status = NodeStatus::kOffline;
  nodes[0].data_sets = {{"a", 900}};
  nodes[1].data_sets = {{"a", 100}, {"b", 100}};
  ExecutionRequest request = Request();
  request.data_keys = {"a", "b"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "online");
  // "a" weighs 900 (its largest reported size), so online holds all 1000 bytes.
  EXPECT_NEAR(Part(d.candidates[1], "locality"), 20.0, 1e-9);
}

TEST(NodeSelectionTest, CustomWeightsChangeTheWinner) {
  std::vector<HypervisorNode> nodes = {Node("cpu-rich"), Node("mem-rich")};
  nodes[0].available.memory_bytes = 2 * kGiB;
  nodes[1].available.cpu_millis = 1000;
  EXPECT_EQ(NodeSelection(Weights{.cpu = 1, .memory = 0, .security = 0, .locality = 0})
                .Select(Request(), nodes)
                .node_id,
            "cpu-rich");
  EXPECT_EQ(NodeSelection(Weights{.cpu = 0, .memory = 1, .security = 0, .locality = 0})
                .Select(Request(), nodes)
                .node_id,
            "mem-rich");
}

TEST(NodeSelectionTest, WeightsAreNormalised) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  Decision a = NodeSelection(Weights{.cpu = 3, .memory = 3, .security = 2, .locality = 2})
                   .Select(Request(), nodes);
  Decision b = NodeSelection().Select(Request(), nodes);
  EXPECT_NEAR(a.score, b.score, 1e-9);
  EXPECT_NEAR(a.score, 80.0, 1e-9);
}

// ---------------------------------------------------------------- ties

TEST(NodeSelectionTest, TieGoesToFewerRunningExecutions) {
  std::vector<HypervisorNode> nodes = {Node("a-busy"), Node("b-quiet")};
  nodes[0].running_executions = 3;
  nodes[1].running_executions = 1;
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "b-quiet");
  EXPECT_EQ(*d.chosen, 1u);
}

TEST(NodeSelectionTest, FullTieGoesToSmallerId) {
  std::vector<HypervisorNode> nodes = {Node("agent-3"), Node("agent-1"), Node("agent-2")};
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "agent-1");
  EXPECT_EQ(*d.chosen, 1u);
}

TEST(NodeSelectionTest, HigherScoreBeatsFewerExecutions) {
  std::vector<HypervisorNode> nodes = {Node("quiet"), Node("busy")};
  nodes[0].available.cpu_millis = 2000;
  nodes[1].running_executions = 10;
  EXPECT_EQ(NodeSelection().Select(Request(), nodes).node_id, "busy");
}

TEST(NodeSelectionTest, ResultDoesNotDependOnInputOrder) {
  std::vector<HypervisorNode> nodes = {Node("c"), Node("a"), Node("b"), Node("d")};
  nodes[0].running_executions = 2;
  nodes[3].available.memory_bytes = kGiB;
  std::string first = NodeSelection().Select(Request(), nodes).node_id;
  std::reverse(nodes.begin(), nodes.end());
  EXPECT_EQ(NodeSelection().Select(Request(), nodes).node_id, first);
  EXPECT_EQ(first, "a");
}

// ---------------------------------------------------------------- reasons

TEST(NodeSelectionTest, ReasonNamesNodeScoreAndParts) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].available.cpu_millis = 3600;             // 90%: cpu 27.0
  nodes[0].available.memory_bytes = kGiB * 34 / 4;  // clamped to 100%: memory 30.0
  nodes[0].data_sets = {{"in", 100}};
  ExecutionRequest request = Request();
  request.data_keys = {"in"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.reason,
            "agent-1: score 97.0 (cpu 27.0, memory 30.0, security 20.0, locality 20.0); holds "
            "100% of the input data");
}

TEST(NodeSelectionTest, ReasonOmitsDataClauseWithoutDataKeys) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_THAT(d.reason, HasSubstr("agent-1: score 80.0"));
  EXPECT_THAT(d.reason, Not(HasSubstr("input data")));
}

TEST(NodeSelectionTest, NoFitReasonListsEachNode) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  nodes[0].available.cpu_millis = 1500;
  nodes[1].status = NodeStatus::kOffline;
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 4000;
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_FALSE(d.chosen.has_value());
  EXPECT_EQ(d.node_id, "");
  EXPECT_EQ(d.score, 0);
  EXPECT_EQ(d.reason,
            "no node fits now: agent-1: needs 4000m cpu, 1500m free, agent-2: node is offline");
}

TEST(NodeSelectionTest, NoFitReasonStaysShortWithManyNodes) {
  std::vector<HypervisorNode> nodes;
  for (int i = 0; i < 50; ++i) {
    nodes.push_back(Node("agent-" + std::to_string(i)));
    nodes.back().status = NodeStatus::kOffline;
  }
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_LE(d.reason.size(), 300u);
  EXPECT_THAT(d.reason, HasSubstr("agent-0: node is offline"));
  EXPECT_THAT(d.reason, HasSubstr("more"));
  EXPECT_EQ(d.candidates.size(), 50u);
}

TEST(NodeSelectionTest, CandidatesKeepInputOrder) {
  std::vector<HypervisorNode> nodes = {Node("z"), Node("y"), Node("x")};
  nodes[1].status = NodeStatus::kOffline;
  Decision d = NodeSelection().Select(Request(), nodes);
  ASSERT_EQ(d.candidates.size(), 3u);
  EXPECT_EQ(d.candidates[0].node_id, "z");
  EXPECT_EQ(d.candidates[1].node_id, "y");
  EXPECT_EQ(d.candidates[2].node_id, "x");
  EXPECT_TRUE(d.candidates[0].feasible);
  EXPECT_FALSE(d.candidates[1].feasible);
  EXPECT_TRUE(d.candidates[2].feasible);
}

// ---------------------------------------------------------------- CheckEverFeasible

TEST(CheckEverFeasibleTest, EmptyNodeListIsOk) {
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(Request(), {}).ok());
}

TEST(CheckEverFeasibleTest, BusyOrOfflineNodeStillCounts) {
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  nodes[0].status = NodeStatus::kOffline;
  nodes[0].available = {};
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 4000;
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(request, nodes).ok());
  EXPECT_FALSE(NodeSelection().Select(request, nodes).chosen.has_value());
}

TEST(CheckEverFeasibleTest, TooMuchCpuNamesLargestNode) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[0].capacity.cpu_millis = 2000;
  nodes[1].capacity.cpu_millis = 1000;
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 64000;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "no node can ever run this: it asks for 64000m cpu but the largest node has 2000m");
}

TEST(CheckEverFeasibleTest, TooMuchMemory) {
  std::vector<HypervisorNode> nodes = {Node("a")};
  ExecutionRequest request = Request();
  request.resources.memory_bytes = 32 * kGiB;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("32 GiB memory but the largest node has 8 GiB"));
}

TEST(CheckEverFeasibleTest, TrustTooHigh) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[0].security.trust_level = 3;
  ExecutionRequest request = Request();
  request.security.min_trust_level = 9;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "no node can ever run this: it asks for minimum trust 9 but the most trusted node "
            "has 5");
}

TEST(CheckEverFeasibleTest, TenantAllowedNowhere) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[0].security.allowed_tenants = {"carol"};
  nodes[1].security.allowed_tenants = {"dave"};
  absl::Status status = NodeSelection().CheckEverFeasible(Request(), nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("tenant 'alice'"));
}

TEST(CheckEverFeasibleTest, CapabilityOfferedNowhere) {
  std::vector<HypervisorNode> nodes = {Node("a")};
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"gpu"};
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("capability 'gpu'"));
}

TEST(CheckEverFeasibleTest, ListsEveryMissingRequirement) {
  std::vector<HypervisorNode> nodes = {Node("a")};
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 8000;
  request.security.min_trust_level = 9;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_THAT(status.message(), HasSubstr("8000m cpu"));
  EXPECT_THAT(status.message(), HasSubstr("minimum trust 9"));
}

TEST(CheckEverFeasibleTest, CombinationNoSingleNodeMeets) {
  // The big node is untrusted, the trusted node is small.
  std::vector<HypervisorNode> nodes = {Node("big"), Node("trusted")};
  nodes[0].capacity.cpu_millis = 16000;
  nodes[0].security.trust_level = 1;
  nodes[1].security.trust_level = 9;
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 8000;
  request.security.min_trust_level = 8;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("no single node"));
  EXPECT_THAT(status.message(), HasSubstr("big: trust level 1 < required 8"));
  EXPECT_THAT(status.message(), HasSubstr("trusted: needs 8000m cpu, 4000m total"));
}

TEST(CheckEverFeasibleTest, OneCapableNodeIsEnough) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[1].security.capabilities = {"gpu"};
  nodes[1].security.trust_level = 9;
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"gpu"};
  request.security.min_trust_level = 9;
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(request, nodes).ok());
}

TEST(CheckEverFeasibleTest, UnknownBandwidthIsUnlimited) {
  std::vector<HypervisorNode> nodes = {Node("a")};
  ExecutionRequest request = Request();
  request.resources.bandwidth_bps = 10'000'000'000;
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(request, nodes).ok());
  nodes[0].capacity.bandwidth_bps = 1'000'000'000;
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("10 Gbit/s bandwidth but the fastest node has 1 Gbit/s"));
}

// ---------------------------------------------------------------- Weights

TEST(WeightsTest, DefaultsAreTheSeeds) {
  Weights w;
  EXPECT_EQ(w.cpu, 0.3);
  EXPECT_EQ(w.memory, 0.3);
  EXPECT_EQ(w.security, 0.2);
  EXPECT_EQ(w.locality, 0.2);
}

TEST(WeightsTest, EmptyMapKeepsDefaults) {
  absl::StatusOr<Weights> w = Weights::FromMap({});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->cpu, 0.3);
  EXPECT_EQ(w->locality, 0.2);
}

TEST(WeightsTest, OverridesOnlyGivenKeys) {
  absl::StatusOr<Weights> w = Weights::FromMap({{"locality", 0.9}, {"cpu", 0}});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->cpu, 0);
  EXPECT_EQ(w->memory, 0.3);
  EXPECT_EQ(w->security, 0.2);
  EXPECT_EQ(w->locality, 0.9);
}

TEST(WeightsTest, UnknownKeyIsNamed) {
  absl::StatusOr<Weights> w = Weights::FromMap({{"cpux", 1}});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.status().message(),
            "unknown scheduler weight 'cpux' (known: cpu, memory, security, locality)");
}

TEST(WeightsTest, NegativeIsRejectedWithKeyAndValue) {
  absl::StatusOr<Weights> w = Weights::FromMap({{"memory", -0.5}});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("'memory'"));
  EXPECT_THAT(w.status().message(), HasSubstr("-0.5"));
}

TEST(WeightsTest, NonFiniteIsRejected) {
  for (double bad :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity()}) {
    absl::StatusOr<Weights> w = Weights::FromMap({{"security", bad}});
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(w.status().message(), HasSubstr("'security'"));
  }
  absl::StatusOr<Weights> nan = Weights::FromMap({{"cpu", std::nan("")}});
  EXPECT_THAT(nan.status().message(), HasSubstr("nan"));
  absl::StatusOr<Weights> inf =
      Weights::FromMap({{"cpu", std::numeric_limits<double>::infinity()}});
  EXPECT_THAT(inf.status().message(), HasSubstr("inf"));
}

TEST(WeightsTest, AllZeroIsRejected) {
  absl::StatusOr<Weights> w =
      Weights::FromMap({{"cpu", 0}, {"memory", 0}, {"security", 0}, {"locality", 0}});
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(w.status().message(), HasSubstr("zero"));
}

TEST(WeightsTest, SingleNonZeroIsFine) {
  absl::StatusOr<Weights> w =
      Weights::FromMap({{"cpu", 0}, {"memory", 0}, {"security", 0}, {"locality", 1e-6}});
  EXPECT_TRUE(w.ok()) << w.status();
}

TEST(WeightsTest, ZeroWeightSumScoresZeroWithoutNaN) {
  // Weights set directly (not through FromMap) may all be zero; Select must
  // stay well-defined.
  std::vector<HypervisorNode> nodes = {Node("b"), Node("a")};
  Decision d = NodeSelection(Weights{0, 0, 0, 0}).Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "a");
  EXPECT_EQ(d.score, 0);
}

}  // namespace
}  // namespace flotilla::scheduler
