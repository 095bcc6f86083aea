#include "scheduler/node_selection.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

// Counts heap allocations while g_count_allocations is set, so a test can
// prove the hot path allocates nothing. Replacing the global operator new is
// legal C++ and affects this test binary only; outside the counting window it
// behaves as the default.
namespace {
std::atomic<bool> g_count_allocations{false};
std::atomic<long> g_allocations{0};
}  // namespace

// noinline: GCC otherwise inlines these into callers and then warns that
// free() meets a pointer from operator new (-Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(std::size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocations.fetch_add(1);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

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

TEST(NodeSelectionTest, IdleNodeWithoutDataScoresSeventy) {
  // cpu 1, memory 1, security 0.5 (trust 5, minimum 0: 1 - 5 / 10),
  // locality 0 (no data keys): 30 + 30 + 10 + 0.
  std::vector<HypervisorNode> nodes = {Node("agent-1")};
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_NEAR(d.score, 70.0, 1e-9);
  const CandidateVerdict& v = d.candidates[0];
  ASSERT_EQ(v.parts.size(), 4u);
  EXPECT_EQ(v.parts[0].first, "cpu");
  EXPECT_EQ(v.parts[1].first, "memory");
  EXPECT_EQ(v.parts[2].first, "security");
  EXPECT_EQ(v.parts[3].first, "locality");
  EXPECT_NEAR(Part(v, "cpu"), 30.0, 1e-9);
  EXPECT_NEAR(Part(v, "memory"), 30.0, 1e-9);
  EXPECT_NEAR(Part(v, "security"), 10.0, 1e-9);
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
  EXPECT_NEAR(Part(v, "security"), 10.0, 1e-9);
  EXPECT_NEAR(v.score, 40.0, 1e-9);
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
  EXPECT_NEAR(d.score, 90.0, 1e-9);
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
    EXPECT_NEAR(v.score, 70.0, 1e-9);
  }
  ASSERT_TRUE(d.chosen.has_value());
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
  EXPECT_NEAR(a.score, 70.0, 1e-9);
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

TEST(NodeSelectionTest, FullTiesAreSpreadByRequestYetStablePerRequest) {
  // A burst of short tasks on identical idle nodes: the smallest id alone
  // sent every one to agent-1. The rendezvous hash spreads them, and one
  // request meets the same order whatever the order of the nodes.
  std::vector<HypervisorNode> nodes = {Node("agent-3"), Node("agent-1"), Node("agent-2")};
  std::vector<HypervisorNode> reversed(nodes.rbegin(), nodes.rend());
  std::map<std::string, int> counts;
  const int kTasks = 300;
  for (int i = 0; i < kTasks; ++i) {
    ExecutionRequest request = Request();
    request.id = "exec-" + std::to_string(i);
    const std::string chosen = NodeSelection().Select(request, nodes).node_id;
    EXPECT_EQ(NodeSelection().Select(request, reversed).node_id, chosen);
    counts[chosen]++;
  }
  ASSERT_EQ(counts.size(), 3u);
  for (const auto& [id, n] : counts) {
    EXPECT_GT(n, kTasks / 3 / 2) << id;  // none gets less than half its share
  }
}

// Idle nodes whose free memory differs by noise (as each agent samples its
// host at its own moment): up to 0.7 points apart under the default weights.
std::vector<HypervisorNode> NoisyIdle(int n) {
  std::vector<HypervisorNode> nodes;
  for (int i = 0; i < n; ++i) {
    nodes.push_back(Node("agent-" + std::to_string(i)));
    nodes.back().available.memory_bytes -= (i * 7 % 20) * kMiB * 10;  // distinct for n <= 20
  }
  return nodes;
}

std::map<std::string, int> PlaceMany(const NodeSelection& selection,
                                     const std::vector<HypervisorNode>& nodes, int tasks) {
  std::map<std::string, int> counts;
  for (int i = 0; i < tasks; ++i) {
    ExecutionRequest request = Request();
    request.id = "exec-" + std::to_string(i);
    counts[selection.Select(request, nodes).node_id]++;
  }
  return counts;
}

TEST(NodeSelectionTest, NearTiesWithinTheBandAreSpread) {
  const std::vector<HypervisorNode> nodes = NoisyIdle(20);
  const int kTasks = 400;
  std::map<std::string, int> counts = PlaceMany(NodeSelection(), nodes, kTasks);
  int busiest = 0;
  for (const auto& [id, n] : counts) busiest = std::max(busiest, n);
  EXPECT_EQ(counts.size(), 20u);
  EXPECT_LT(busiest, 3 * kTasks / 20) << "busiest over 3x the mean share";

  // Without the band the noise decides: the node with the most free memory
  // takes every task.
  SelectionOptions exact;
  exact.tie_epsilon = 0;
  counts = PlaceMany(NodeSelection(Weights{}, exact), nodes, kTasks);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, "agent-0");
}

TEST(NodeSelectionTest, ABandChoiceIsStableAndExplained) {
  const std::vector<HypervisorNode> nodes = NoisyIdle(8);
  const std::vector<HypervisorNode> reversed(nodes.rbegin(), nodes.rend());
  NodeSelection selection;  // collects candidates and reasons by default
  bool explained = false;
  for (int i = 0; i < 50; ++i) {
    ExecutionRequest request = Request();
    request.id = "exec-" + std::to_string(i);
    const Decision d = selection.Select(request, nodes);
    EXPECT_EQ(selection.Select(request, reversed).node_id, d.node_id);
    if (d.node_id != "agent-0") {
      EXPECT_THAT(d.reason, HasSubstr("within 1.0 points of the best (agent-0"));
      explained = true;
    }
  }
  EXPECT_TRUE(explained);
}

TEST(NodeSelectionTest, AScoreAheadByMoreThanTheBandAlwaysWins) {
  std::vector<HypervisorNode> nodes = NoisyIdle(10);
  nodes[7].security.trust_level = 1;  // 8 points ahead for a request needing no trust
  std::map<std::string, int> counts = PlaceMany(NodeSelection(), nodes, 100);
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.begin()->first, "agent-7");
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
  EXPECT_TRUE(first == "a" || first == "b") << first;  // the two that tie
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
            "agent-1: score 87.0 (cpu 27.0, memory 30.0, security 10.0, locality 20.0); holds "
            "100% of the input data");
}

TEST(NodeSelectionTest, ReasonOmitsDataClauseWithoutDataKeys) {
  std::vector<HypervisorNode> nodes = {Node("agent-1"), Node("agent-2")};
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_THAT(d.reason, HasSubstr(": score 70.0"));
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
            "unknown scheduler weight 'cpux' (known: cpu, memory, security, locality, geo, warm, "
            "latency, cost, balance)");
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
  ASSERT_TRUE(d.chosen.has_value());
  EXPECT_EQ(d.score, 0);
}

// ---------------------------------------------------------------- new filters through Select

TEST(NodeSelectionTest, DrainingNodeIsRejected) {
  std::vector<HypervisorNode> nodes = {Node("draining"), Node("open")};
  nodes[0].draining = true;
  nodes[1].available.cpu_millis = 1000;
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "open");
  EXPECT_EQ(d.candidates[0].rejected_because, "node is draining");
}

TEST(NodeSelectionTest, IsolationAndRequiredRegionFilter) {
  std::vector<HypervisorNode> nodes = {Node("proc-eu"), Node("vm-us"), Node("vm-eu")};
  nodes[0].security.isolation = "process";
  nodes[0].labels["region"] = "eu-west";
  nodes[1].security.isolation = "microvm";
  nodes[1].labels["region"] = "us-east";
  nodes[2].security.isolation = "microvm";
  nodes[2].labels["region"] = "eu-west";
  nodes[2].available.cpu_millis = 1000;  // least attractive, but the only match
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"isolation:microvm"};
  request.placement.required_regions = {"eu-west"};
  Decision d = NodeSelection().Select(request, nodes);
  EXPECT_EQ(d.node_id, "vm-eu");
  EXPECT_EQ(d.candidates[0].rejected_because,
            "isolation 'microvm' not offered (node gives 'process')");
  EXPECT_EQ(d.candidates[1].rejected_because, "region 'us-east' not in required regions (eu-west)");
}

TEST(CheckEverFeasibleTest, RequiredRegionNowhere) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[0].labels["region"] = "us-east";
  ExecutionRequest request = Request();
  request.placement.required_regions = {"eu-west"};
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "no node can ever run this: no node is in the required regions (eu-west); nodes are "
            "in: us-east");
  nodes[1].labels["region"] = "eu-west";
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(request, nodes).ok());
}

TEST(CheckEverFeasibleTest, IsolationOfferedNowhere) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b")};
  nodes[0].security.isolation = "process";
  nodes[1].security.isolation = "container";
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"isolation:microvm"};
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(status.message(),
            "no node can ever run this: no node offers isolation 'microvm' (offered: process, "
            "container)");
  nodes[1].security.isolation = "microvm";
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(request, nodes).ok());
}

TEST(CheckEverFeasibleTest, IsolationAndRegionOnlyInCombination) {
  std::vector<HypervisorNode> nodes = {Node("vm-us"), Node("proc-eu")};
  nodes[0].security.isolation = "microvm";
  nodes[0].labels["region"] = "us-east";
  nodes[1].security.isolation = "process";
  nodes[1].labels["region"] = "eu-west";
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"isolation:microvm"};
  request.placement.required_regions = {"eu-west"};
  absl::Status status = NodeSelection().CheckEverFeasible(request, nodes);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("no single node"));
  EXPECT_THAT(status.message(), HasSubstr("vm-us: region 'us-east' not in required regions"));
  EXPECT_THAT(status.message(), HasSubstr("proc-eu: isolation 'microvm' not offered"));
}

TEST(CheckEverFeasibleTest, DrainingNodeStillCounts) {
  std::vector<HypervisorNode> nodes = {Node("a")};
  nodes[0].draining = true;
  EXPECT_TRUE(NodeSelection().CheckEverFeasible(Request(), nodes).ok());
}

// ---------------------------------------------------------------- options

TEST(SelectionOptionsTest, ValidateNamesTheField) {
  EXPECT_TRUE(SelectionOptions().Validate().ok());
  SelectionOptions o;
  o.top_k = 0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("top_k"));
  o = {};
  o.bid_k = 0;
  EXPECT_THAT(o.Validate().message(), HasSubstr("bid_k"));
  o = {};
  o.tie_epsilon = -1;
  EXPECT_THAT(o.Validate().message(), HasSubstr("tie_epsilon"));
  o = {};
  o.time_price_per_s = std::nan("");
  EXPECT_THAT(o.Validate().message(), HasSubstr("time_price_per_s"));
}

// ---------------------------------------------------------------- new scorers through Select

TEST(NodeSelectionTest, OverQualifiedNodesAreKeptForTheWorkThatNeedsThem) {
  std::vector<HypervisorNode> nodes = {Node("a-trust5"), Node("b-trust9")};
  nodes[1].security.trust_level = 9;
  // No requirement: the less trusted node matches better.
  Decision d = NodeSelection().Select(Request(), nodes);
  EXPECT_EQ(d.node_id, "a-trust5");
  EXPECT_NEAR(Part(d.candidates[1], "security"), 20.0 * 0.1, 1e-9);
  // A requirement only the trusted node meets still goes there.
  ExecutionRequest needs = Request();
  needs.security.min_trust_level = 8;
  EXPECT_EQ(NodeSelection().Select(needs, nodes).node_id, "b-trust9");
}

TEST(NodeSelectionTest, UnconstrainedBurstStaysOffTheTrustedNodes) {
  // The case: a federation with two trust-10 nodes among ordinary
  // ones; 200 tasks without a requirement once landed 195 on the two.
  std::vector<HypervisorNode> nodes;
  for (int i = 0; i < 20; ++i) {
    nodes.push_back(Node("agent-" + std::to_string(i)));
    nodes.back().security.trust_level = i < 2 ? 10 : 1 + i % 3;
  }
  std::map<std::string, int> counts;
  for (int i = 0; i < 200; ++i) {
    ExecutionRequest request = Request();
    request.id = "burst-" + std::to_string(i);
    counts[NodeSelection().Select(request, nodes).node_id]++;
  }
  EXPECT_EQ(counts["agent-0"] + counts["agent-1"], 0);
  // Spread over the best-matching (trust 1) nodes, none taking most of it.
  int busiest = 0;
  for (const auto& [id, n] : counts) busiest = std::max(busiest, n);
  EXPECT_GE(counts.size(), 4u);
  EXPECT_LT(busiest, 100);
}

TEST(NodeSelectionTest, GeoAndWarmWeightsSteer) {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b"), Node("c")};
  nodes[0].labels["region"] = "us-east";
  nodes[1].labels["region"] = "eu-west";
  nodes[2].labels["region"] = "ap-south";
  nodes[2].warm_sandboxes["python3"] = 1;
  ExecutionRequest request = Request();
  request.placement.preferred_regions = {"eu-west", "us-east"};
  request.template_name = "python3";
  // Designated initialisers keep the seed's defaults for the fields left out.
  EXPECT_EQ(NodeSelection(Weights{.geo = 1}).Select(request, nodes).node_id, "b");
  Decision d =
      NodeSelection(Weights{.cpu = 0, .memory = 0, .security = 0, .locality = 0, .warm = 1})
          .Select(request, nodes);
  EXPECT_EQ(d.node_id, "c");
  EXPECT_NEAR(Part(d.candidates[2], "warm"), 100.0, 1e-9);
  EXPECT_NEAR(Part(d.candidates[0], "warm"), 0.0, 1e-9);
}

TEST(NodeSelectionTest, MostAllocatedPacks) {
  std::vector<HypervisorNode> nodes = {Node("empty"), Node("half-full")};
  nodes[1].available.cpu_millis = 2000;
  nodes[1].available.memory_bytes = 4 * kGiB;
  SelectionOptions pack;
  pack.strategy = AllocationStrategy::kMostAllocated;
  EXPECT_EQ(NodeSelection().Select(Request(), nodes).node_id, "empty");
  EXPECT_EQ(NodeSelection(Weights{}, pack).Select(Request(), nodes).node_id, "half-full");
  // Balance alone spreads again, whatever the strategy.
  EXPECT_EQ(NodeSelection(
                Weights{.cpu = 0, .memory = 0, .security = 0, .locality = 0, .balance = 1}, pack)
                .Select(Request(), nodes)
                .node_id,
            "empty");
}

// A predictor with fixed answers by node id.
class FixedPredictor : public LatencyPredictor {
 public:
  explicit FixedPredictor(std::map<std::string, double> ms) : ms_(std::move(ms)) {}
  double PredictMs(const ExecutionRequest&, const HypervisorNode& node) const override {
    return ms_.at(node.id);
  }

 private:
  std::map<std::string, double> ms_;
};

TEST(NodeSelectionTest, LatencyAndCostScorersUseThePredictorAndPrices) {
  std::vector<HypervisorNode> nodes = {Node("slow-cheap"), Node("fast-dear")};
  nodes[0].cost.per_cpu_second = 0.1;
  nodes[1].cost.per_cpu_second = 0.4;
  FixedPredictor predictor({{"slow-cheap", 400}, {"fast-dear", 100}});
  NodeSelection by_latency(
      Weights{.cpu = 0, .memory = 0, .security = 0, .locality = 0, .latency = 1});
  Decision d = by_latency.Select(Request(), nodes, nullptr, &predictor);
  EXPECT_EQ(d.node_id, "fast-dear");
  EXPECT_NEAR(d.candidates[1].score, 75.0, 1e-9);  // 1 - 100/400
  EXPECT_NEAR(d.candidates[0].score, 0.0, 1e-9);
  EXPECT_EQ(d.candidates[0].predicted_ms, 400);
  NodeSelection by_cost(Weights{.cpu = 0, .memory = 0, .security = 0, .locality = 0, .cost = 1});
  d = by_cost.Select(Request(), nodes, nullptr, &predictor);
  EXPECT_EQ(d.node_id, "slow-cheap");
  EXPECT_NEAR(d.candidates[0].score, 75.0, 1e-9);  // 1 - 0.05/0.2
  EXPECT_NEAR(d.candidates[0].cost_per_s, 0.05, 1e-12);
}

TEST(NodeSelectionTest, ExplainPartsSumToScoreWithEveryScorer) {
  std::vector<HypervisorNode> nodes;
  std::mt19937_64 gen(7);
  for (int i = 0; i < 20; ++i) {
    HypervisorNode node = Node("n" + std::to_string(i));
    node.available.cpu_millis = 500 + static_cast<int64_t>(gen() % 3500);
    node.available.memory_bytes = kGiB + static_cast<int64_t>(gen() % (7 * kGiB));
    node.security.trust_level = static_cast<int>(gen() % 11);
    node.labels["region"] = i % 3 == 0 ? "eu-west" : "us-east";
    node.cost = {.per_cpu_second = 0.01 * (i % 5), .per_gib_second = 0.001 * (i % 7)};
    node.running_executions = i % 4;
    if (i % 2 == 0) node.warm_sandboxes["python3"] = 1;
    if (i % 5 == 0) node.data_sets = {{"in", 100 * i}};
    nodes.push_back(node);
  }
  ExecutionRequest request = Request();
  request.placement.preferred_regions = {"eu-west"};
  request.template_name = "python3";
  request.data_keys = {"in"};
  Weights all{.cpu = 1,
              .memory = 1,
              .security = 1,
              .locality = 1,
              .geo = 1,
              .warm = 1,
              .latency = 1,
              .cost = 1,
              .balance = 1};
  for (AllocationStrategy strategy :
       {AllocationStrategy::kLeastAllocated, AllocationStrategy::kMostAllocated}) {
    SelectionOptions options;
    options.strategy = strategy;
    Decision d = NodeSelection(all, options).Select(request, nodes);
    ASSERT_TRUE(d.chosen.has_value());
    for (const CandidateVerdict& v : d.candidates) {
      ASSERT_TRUE(v.feasible) << v.rejected_because;
      EXPECT_EQ(v.parts.size(), 9u);
      EXPECT_NEAR(PartsSum(v), v.score, 1e-9) << v.node_id;
      EXPECT_GE(v.score, 0);
      EXPECT_LE(v.score, 100);
      EXPECT_LE(v.score, d.score + 1e-9) << "score mode picks the best";
    }
    EXPECT_THAT(d.reason, HasSubstr("geo"));
    EXPECT_THAT(d.reason, HasSubstr("balance"));
  }
}

// ---------------------------------------------------------------- top-k tie-breaking

std::vector<HypervisorNode> Identical(int n) {
  std::vector<HypervisorNode> nodes;
  for (int i = 0; i < n; ++i) nodes.push_back(Node("agent-" + std::to_string(i)));
  return nodes;
}

TEST(TieBreakingTest, TopKSpreadsOverTheBestWithASeededRng) {
  std::vector<HypervisorNode> nodes = Identical(8);
  SelectionOptions options;
  options.top_k = 4;
  NodeSelection selection(Weights{}, options);
  std::mt19937_64 rng(42);
  std::map<std::string, int> counts;
  for (int i = 0; i < 400; ++i) counts[selection.Select(Request(), nodes, &rng).node_id]++;
  // The four best by the deterministic order, drawn evenly.
  ASSERT_EQ(counts.size(), 4u);
  for (const auto& [id, n] : counts) EXPECT_GT(n, 60) << id;
}

TEST(TieBreakingTest, DeterministicForAFixedSeed) {
  std::vector<HypervisorNode> nodes = Identical(10);
  SelectionOptions options;
  options.top_k = 5;
  NodeSelection selection(Weights{}, options);
  auto run = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::string> picks;
    for (int i = 0; i < 50; ++i) picks.push_back(selection.Select(Request(), nodes, &rng).node_id);
    return picks;
  };
  EXPECT_EQ(run(1), run(1));
  EXPECT_NE(run(1), run(2));
}

TEST(TieBreakingTest, OnlyWithinEpsilonOfTheBest) {
  std::vector<HypervisorNode> nodes = Identical(3);
  nodes[2].available.cpu_millis = 2000;  // 15 points behind
  SelectionOptions options;
  options.top_k = 3;
  options.tie_epsilon = 1.0;
  NodeSelection selection(Weights{}, options);
  std::mt19937_64 rng(3);
  std::set<std::string> picked;
  for (int i = 0; i < 100; ++i) picked.insert(selection.Select(Request(), nodes, &rng).node_id);
  EXPECT_EQ(picked, (std::set<std::string>{"agent-0", "agent-1"}));
}

TEST(TieBreakingTest, TopKOneOrNoRngIsDeterministic) {
  std::vector<HypervisorNode> nodes = Identical(6);
  std::mt19937_64 rng(5);
  NodeSelection one;
  SelectionOptions options;
  options.top_k = 6;
  NodeSelection many(Weights{}, options);
  const std::string first = one.Select(Request(), nodes, &rng).node_id;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(one.Select(Request(), nodes, &rng).node_id, first);
    EXPECT_EQ(many.Select(Request(), nodes).node_id, first);
    EXPECT_EQ(many.Select(Request(), nodes, nullptr).node_id, first);
  }
}

// ---------------------------------------------------------------- sampling

TEST(SamplingTest, AboveThresholdExaminesASampleOfFeasibleNodes) {
  std::vector<HypervisorNode> nodes = Identical(2000);
  for (size_t i = 0; i < nodes.size(); i += 2) nodes[i].status = NodeStatus::kOffline;
  NodeSelection selection;  // threshold 1000, k = 2 * ceil(log2 2000) = 22
  std::mt19937_64 rng(11);
  std::set<size_t> chosen;
  for (int i = 0; i < 50; ++i) {
    Decision d = selection.Select(Request(), nodes, &rng);
    ASSERT_TRUE(d.chosen.has_value());
    EXPECT_TRUE(d.sampled);
    EXPECT_EQ(*d.chosen % 2, 1u) << "only odd nodes are online";
    EXPECT_EQ(d.candidates.size(), 22u);
    for (size_t c = 1; c < d.candidates.size(); ++c) {
      EXPECT_LT(d.candidates[c - 1].index, d.candidates[c].index) << "input order, no repeats";
    }
    EXPECT_THAT(d.reason, HasSubstr("sampled 22 of 2000 nodes"));
    chosen.insert(*d.chosen);
  }
  EXPECT_GT(chosen.size(), 10u) << "samples differ between decisions";
}

TEST(SamplingTest, FallsBackToAFullScanWhenNoSampledNodeFits) {
  std::vector<HypervisorNode> nodes = Identical(3000);
  for (HypervisorNode& node : nodes) node.status = NodeStatus::kOffline;
  nodes[1234].status = NodeStatus::kOnline;
  NodeSelection selection;
  std::mt19937_64 rng(13);
  Decision d = selection.Select(Request(), nodes, &rng);
  ASSERT_TRUE(d.chosen.has_value());
  EXPECT_EQ(*d.chosen, 1234u);
  EXPECT_FALSE(d.sampled);
  EXPECT_EQ(d.candidates.size(), 3000u);
  EXPECT_THAT(d.reason, HasSubstr("so all 3000 were scanned"));
}

TEST(SamplingTest, NothingFitsAnywhere) {
  std::vector<HypervisorNode> nodes = Identical(1500);
  for (HypervisorNode& node : nodes) node.status = NodeStatus::kOffline;
  std::mt19937_64 rng(1);
  NodeSelection selection;
  Decision d = selection.Select(Request(), nodes, &rng);
  EXPECT_FALSE(d.chosen.has_value());
  EXPECT_FALSE(d.sampled);
  EXPECT_THAT(d.reason, HasSubstr("no node fits now"));
}

TEST(SamplingTest, AtOrBelowThresholdOrWithoutRngScansAll) {
  std::vector<HypervisorNode> nodes = Identical(1000);
  std::mt19937_64 rng(1);
  NodeSelection selection;
  Decision d = selection.Select(Request(), nodes, &rng);
  EXPECT_FALSE(d.sampled);
  EXPECT_EQ(d.candidates.size(), 1000u);
  nodes.push_back(Node("extra"));
  d = selection.Select(Request(), nodes);
  EXPECT_FALSE(d.sampled);
  EXPECT_EQ(d.candidates.size(), 1001u);
}

TEST(SamplingTest, SampleSizeAndThresholdAreConfigurable) {
  std::vector<HypervisorNode> nodes = Identical(50);
  SelectionOptions options;
  options.sampling_threshold = 10;
  options.sample_k = 5;
  NodeSelection selection(Weights{}, options);
  std::mt19937_64 rng(9);
  Decision d = selection.Select(Request(), nodes, &rng);
  EXPECT_TRUE(d.sampled);
  EXPECT_EQ(d.candidates.size(), 5u);
  std::set<size_t> distinct;
  for (const CandidateVerdict& v : d.candidates) distinct.insert(v.index);
  EXPECT_EQ(distinct.size(), 5u);
}

TEST(SamplingTest, SampledChoiceIsTheBestOfItsSample) {
  std::vector<HypervisorNode> nodes = Identical(1200);
  std::mt19937_64 gen(4);
  for (HypervisorNode& node : nodes) {
    node.available.cpu_millis = 500 + static_cast<int64_t>(gen() % 3500);
  }
  NodeSelection selection;
  std::mt19937_64 rng(8);
  for (int i = 0; i < 20; ++i) {
    Decision d = selection.Select(Request(), nodes, &rng);
    ASSERT_TRUE(d.sampled);
    // Best within the default 1-point band: near-ties go to the hash.
    for (const CandidateVerdict& v : d.candidates) {
      EXPECT_LE(v.score, d.score + SelectionOptions{}.tie_epsilon);
    }
  }
}

// ---------------------------------------------------------------- bidding

// Three nodes ranked a > b > c by score (a has the most free cpu), with
// prices a 1.0, b 0.1, c 0 per core-second.
std::vector<HypervisorNode> Bidders() {
  std::vector<HypervisorNode> nodes = {Node("a"), Node("b"), Node("c")};
  nodes[1].available.cpu_millis = 3000;
  nodes[2].available.cpu_millis = 2000;
  nodes[0].cost.per_cpu_second = 1.0;
  nodes[1].cost.per_cpu_second = 0.1;
  nodes[2].cost.per_cpu_second = 0;
  return nodes;
}

ExecutionRequest BidRequest() {
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 1000;
  request.placement.mode = model::PlacementMode::kBid;
  return request;
}

TEST(BiddingTest, LowestBidAmongTheTopKWins) {
  std::vector<HypervisorNode> nodes = Bidders();
  FixedPredictor predictor({{"a", 1000}, {"b", 1000}, {"c", 100}});
  SelectionOptions options;
  options.bid_k = 2;
  options.time_price_per_s = 1.0;
  NodeSelection selection(Weights{}, options);
  Decision d = selection.Select(BidRequest(), nodes, nullptr, &predictor);
  EXPECT_EQ(d.mode, "bid");
  // a: 1.0/s * 1 s + 1 s * 1.0 = 2.0; b: 0.1 + 1.0 = 1.1; c is not in the top 2.
  EXPECT_EQ(d.node_id, "b");
  ASSERT_TRUE(d.candidates[0].bid.has_value());
  ASSERT_TRUE(d.candidates[1].bid.has_value());
  EXPECT_NEAR(*d.candidates[0].bid, 2.0, 1e-12);
  EXPECT_NEAR(*d.candidates[1].bid, 1.1, 1e-12);
  EXPECT_FALSE(d.candidates[2].bid.has_value());
  EXPECT_EQ(d.score, d.candidates[1].score);
  EXPECT_THAT(d.reason, HasSubstr("lowest bid 1.1 of 2"));

  options.bid_k = 3;  // now c bids 0 + 0.1 s * 1.0
  d = NodeSelection(Weights{}, options).Select(BidRequest(), nodes, nullptr, &predictor);
  EXPECT_EQ(d.node_id, "c");
  EXPECT_NEAR(*d.candidates[2].bid, 0.1, 1e-12);
}

TEST(BiddingTest, TimePriceTradesMoneyForSpeed) {
  std::vector<HypervisorNode> nodes = Bidders();
  FixedPredictor predictor({{"a", 1000}, {"b", 3000}, {"c", 3000}});
  SelectionOptions options;
  options.bid_k = 2;
  options.time_price_per_s = 0;  // only money counts: b bids 0.3, a 1.0
  EXPECT_EQ(
      NodeSelection(Weights{}, options).Select(BidRequest(), nodes, nullptr, &predictor).node_id,
      "b");
  options.time_price_per_s = 1;  // a: 1 + 1 = 2; b: 0.3 + 3 = 3.3
  EXPECT_EQ(
      NodeSelection(Weights{}, options).Select(BidRequest(), nodes, nullptr, &predictor).node_id,
      "a");
}

TEST(BiddingTest, WorksThroughTheDefaultPredictorAndConstSelect) {
  std::vector<HypervisorNode> nodes = Bidders();
  Decision d = NodeSelection().Select(BidRequest(), nodes);
  ASSERT_TRUE(d.chosen.has_value());
  EXPECT_EQ(d.mode, "bid");
  // Equal predictions from the default heuristic: the cheaper of the top 3 wins.
  EXPECT_EQ(d.node_id, "c");
}

// ---------------------------------------------------------------- cheapest

ExecutionRequest CheapestRequest(int64_t bound_ms) {
  ExecutionRequest request = Request();
  request.resources.cpu_millis = 1000;
  request.placement.mode = model::PlacementMode::kCheapest;
  request.placement.latency_bound_ms = bound_ms;
  return request;
}

// fast costs 1.0/s at 100 ms, mid 0.5/s at 400 ms, slow 0.1/s at 900 ms.
std::vector<HypervisorNode> PricedNodes() {
  std::vector<HypervisorNode> nodes = {Node("fast"), Node("mid"), Node("slow")};
  nodes[0].cost.per_cpu_second = 1.0;
  nodes[1].cost.per_cpu_second = 0.5;
  nodes[2].cost.per_cpu_second = 0.1;
  return nodes;
}
const FixedPredictor kPriced({{"fast", 100}, {"mid", 400}, {"slow", 900}});

TEST(CheapestTest, CheapestWithinTheBound) {
  std::vector<HypervisorNode> nodes = PricedNodes();
  NodeSelection selection;
  Decision d = selection.Select(CheapestRequest(500), nodes, nullptr, &kPriced);
  EXPECT_EQ(d.mode, "cheapest");
  EXPECT_EQ(d.node_id, "mid");
  EXPECT_THAT(d.reason, HasSubstr("cheapest at 0.5/s within the 500 ms latency bound"));
  EXPECT_EQ(selection.Select(CheapestRequest(900), nodes, nullptr, &kPriced).node_id, "slow");
}

TEST(CheapestTest, NoBoundMeansCheapestOverall) {
  std::vector<HypervisorNode> nodes = PricedNodes();
  NodeSelection selection;
  Decision d = selection.Select(CheapestRequest(0), nodes, nullptr, &kPriced);
  EXPECT_EQ(d.node_id, "slow");
  EXPECT_THAT(d.reason, HasSubstr("no latency bound"));
}

TEST(CheapestTest, NoNodeMeetsTheBoundPicksTheFastest) {
  std::vector<HypervisorNode> nodes = PricedNodes();
  NodeSelection selection;
  Decision d = selection.Select(CheapestRequest(50), nodes, nullptr, &kPriced);
  EXPECT_EQ(d.node_id, "fast");
  EXPECT_THAT(d.reason, HasSubstr("no node meets the 50 ms latency bound"));
  EXPECT_THAT(d.reason, HasSubstr("predicted 100 ms"));
}

TEST(CheapestTest, InfeasibleNodesNeverWin) {
  std::vector<HypervisorNode> nodes = PricedNodes();
  nodes[2].draining = true;
  EXPECT_EQ(NodeSelection().Select(CheapestRequest(0), nodes, nullptr, &kPriced).node_id, "mid");
}

// ---------------------------------------------------------------- hot path

TEST(HotPathTest, WithoutCandidatesTheChoiceIsTheSame) {
  std::vector<HypervisorNode> nodes = Identical(30);
  std::mt19937_64 gen(21);
  for (HypervisorNode& node : nodes) {
    node.available.cpu_millis = static_cast<int64_t>(gen() % 4000);
    node.available.memory_bytes = static_cast<int64_t>(gen() % (8 * kGiB));
  }
  SelectionOptions quiet;
  quiet.collect_candidates = false;
  NodeSelection fast(Weights{}, quiet);
  for (model::PlacementMode mode : {model::PlacementMode::kScore, model::PlacementMode::kBid,
                                    model::PlacementMode::kCheapest}) {
    ExecutionRequest request = Request();
    request.placement.mode = mode;
    Decision full = NodeSelection().Select(request, nodes);
    Decision hot = fast.Select(request, nodes, nullptr);
    EXPECT_EQ(hot.chosen, full.chosen);
    EXPECT_EQ(hot.node_id, full.node_id);
    EXPECT_EQ(hot.score, full.score);
    EXPECT_TRUE(hot.candidates.empty());
    EXPECT_EQ(hot.reason, "");
  }
}

TEST(HotPathTest, DecisionsDoNotAllocateOnceWarm) {
  std::vector<HypervisorNode> nodes;
  std::mt19937_64 gen(5);
  for (int i = 0; i < 1500; ++i) {
    HypervisorNode node = Node("n" + std::to_string(i));
    node.available.cpu_millis = static_cast<int64_t>(gen() % 4000);
    node.labels["region"] = i % 2 ? "eu-west" : "us-east";
    node.warm_sandboxes["python3"] = i % 3;
    node.data_sets = {{"in", 1000}};
    node.cost.per_cpu_second = 0.01 * (i % 9);
    node.draining = i % 17 == 0;
    nodes.push_back(node);
  }
  std::vector<ExecutionRequest> requests;
  for (model::PlacementMode mode : {model::PlacementMode::kScore, model::PlacementMode::kBid,
                                    model::PlacementMode::kCheapest}) {
    ExecutionRequest request = Request();
    request.placement.mode = mode;
    request.placement.latency_bound_ms = 300;
    request.placement.preferred_regions = {"eu-west"};
    request.template_name = "python3";
    request.data_keys = {"in", "other"};
    requests.push_back(request);
  }
  Weights all{.cpu = 1,
              .memory = 1,
              .security = 1,
              .locality = 1,
              .geo = 1,
              .warm = 1,
              .latency = 1,
              .cost = 1,
              .balance = 1};
  for (size_t threshold : {size_t{100}, size_t{100000}}) {  // sampled, full scan
    SelectionOptions options;
    options.collect_candidates = false;
    options.top_k = 3;
    options.tie_epsilon = 5;
    options.sampling_threshold = threshold;
    NodeSelection selection(all, options);
    std::mt19937_64 rng(1);
    for (const ExecutionRequest& r : requests) selection.Select(r, nodes, &rng);  // warm up
    g_allocations = 0;
    g_count_allocations = true;
    int chosen = 0;
    for (int i = 0; i < 30; ++i) {
      chosen += selection.Select(requests[i % requests.size()], nodes, &rng).chosen ? 1 : 0;
    }
    g_count_allocations = false;
    EXPECT_EQ(g_allocations.load(), 0) << "threshold " << threshold;
    EXPECT_EQ(chosen, 30);
  }
}

}  // namespace
}  // namespace flotilla::scheduler
