#include "sim/simulator.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/trace.h"

namespace flotilla::sim {
namespace {

constexpr int64_t kGiB = 1ll << 30;

std::unique_ptr<PlacementPolicy> Policy(const std::string& name, uint64_t seed = 1) {
  auto policy = MakePolicy(name, seed);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return std::move(*policy);
}

SimResult RunPolicy(const TraceOptions& o, const std::string& name,
                    const SimOptions& sim_options = {}) {
  const auto cluster = GenerateCluster(o);
  const Trace trace = GenerateTrace(o);
  auto policy = Policy(name, o.seed);
  return Simulate(cluster, trace, *policy, sim_options);
}

// Small enough to run every policy many times, loaded enough to queue.
TraceOptions Busy(uint64_t seed = 7) {
  TraceOptions o;
  o.seed = seed;
  o.nodes = 12;
  o.duration_s = 300;
  o.arrival_rate_per_s = 2.5;
  o.failures_per_node_hour = 2;
  o.mean_repair_s = 60;
  return o;
}

model::HypervisorNode Node(const std::string& id, int64_t cpu_millis, double per_cpu_second) {
  model::HypervisorNode n;
  n.id = id;
  n.capacity = model::Resources{cpu_millis, 4 * kGiB, 0, 0};
  n.available = n.capacity;
  n.status = model::NodeStatus::kOnline;
  n.cost.per_cpu_second = per_cpu_second;
  return n;
}

Arrival Job(const std::string& id, int64_t time_ms, int64_t cpu_millis, int64_t duration_ms,
            int64_t deadline_ms, int priority = 50) {
  Arrival a;
  a.time_ms = time_ms;
  a.request.id = id;
  a.request.user_id = "t";
  a.request.priority = priority;
  a.request.resources = model::Resources{cpu_millis, kGiB, 0, 0};
  a.duration_ms = duration_ms;
  a.deadline_ms = deadline_ms;
  return a;
}

// The simulator's determinism: the same seed gives the same result, every
// metric and every execution's record, for every policy; another seed does
// not.
TEST(SimulatorTest, SameSeedGivesIdenticalResults) {
  for (const std::string& name : PolicyNames()) {
    SCOPED_TRACE(name);
    const SimResult a = RunPolicy(Busy(), name);
    const SimResult b = RunPolicy(Busy(), name);
    EXPECT_EQ(a.metrics, b.metrics);
    EXPECT_EQ(a.executions, b.executions);
    EXPECT_EQ(a.metrics.policy, name);
  }
}

TEST(SimulatorTest, DifferentSeedGivesDifferentResults) {
  for (const std::string& name : PolicyNames()) {
    SCOPED_TRACE(name);
    const SimResult a = RunPolicy(Busy(7), name);
    const SimResult b = RunPolicy(Busy(8), name);
    EXPECT_NE(a.metrics.arrivals, 0);
    EXPECT_NE(a.metrics, b.metrics);
    EXPECT_NE(a.metrics.wait_p99_ms, b.metrics.wait_p99_ms);
  }
}

TEST(SimulatorTest, APolicyObjectCanBeReusedOnlyFreshForTheSameResult) {
  // Policies keep state (random engines, cursors): determinism is per fresh
  // policy, which is what MakePolicy gives.
  const auto cluster = GenerateCluster(Busy());
  const Trace trace = GenerateTrace(Busy());
  auto first = Policy("random");
  auto second = Policy("random");
  EXPECT_EQ(Simulate(cluster, trace, *first).metrics, Simulate(cluster, trace, *second).metrics);
}

// Nothing is lost: each arrival completes, is rejected as never feasible,
// or is reported unfinished; node failures re-run what they killed.
TEST(SimulatorTest, EveryArrivalIsAccountedForDespiteFailures) {
  TraceOptions o = Busy();
  o.failures_per_node_hour = 20;  // a failure every 3 minutes per node
  o.mean_repair_s = 30;
  const Trace trace = GenerateTrace(o);
  ASSERT_GT(trace.failures.size(), 15u);
  for (const std::string& name : PolicyNames()) {
    SCOPED_TRACE(name);
    const SimResult r = RunPolicy(o, name);
    const Metrics& m = r.metrics;
    EXPECT_EQ(m.arrivals, static_cast<int64_t>(trace.arrivals.size()));
    EXPECT_EQ(m.completed + m.rejected + m.unfinished, m.arrivals);
    EXPECT_EQ(m.unfinished, 0);
    EXPECT_GT(m.reruns, 0);
    ASSERT_EQ(r.executions.size(), trace.arrivals.size());
    int64_t starts = 0;
    for (size_t i = 0; i < r.executions.size(); ++i) {
      const ExecutionRecord& x = r.executions[i];
      const Arrival& a = trace.arrivals[i];
      EXPECT_EQ(x.id, a.request.id);
      starts += x.attempts;
      if (x.outcome == ExecutionRecord::Outcome::kCompleted) {
        EXPECT_GE(x.attempts, 1);
        EXPECT_FALSE(x.node_id.empty());
        // It ran to the end once, after waiting.
        EXPECT_GE(x.finish_ms, a.time_ms + x.wait_ms + a.duration_ms);
        EXPECT_LE(x.finish_ms, m.makespan_ms);
      } else {
        EXPECT_EQ(x.outcome, ExecutionRecord::Outcome::kRejected);
        EXPECT_EQ(x.attempts, 0);
      }
    }
    EXPECT_EQ(starts, m.completed + m.reruns);
  }
}

TEST(SimulatorTest, RequestsNoNodeCanEverRunAreRejectedNotLost) {
  std::vector<model::HypervisorNode> nodes = {Node("n0", 1000, 0)};
  Trace trace;
  trace.arrivals = {Job("fits", 0, 500, 1000, 10'000), Job("huge", 0, 64'000, 1000, 10'000)};
  auto policy = Policy("seed");
  const SimResult r = Simulate(nodes, trace, *policy);
  EXPECT_EQ(r.metrics.completed, 1);
  EXPECT_EQ(r.metrics.rejected, 1);
  EXPECT_EQ(r.metrics.slo_misses, 1);
  EXPECT_EQ(r.executions[1].outcome, ExecutionRecord::Outcome::kRejected);
}

// A trace where every request reads one large data set held by one node:
// placing by locality must move much less than placing at random.
TEST(SimulatorTest, DataAwarePoliciesMoveFewerBytesThanRandom) {
  TraceOptions o = Busy();
  o.arrival_rate_per_s = 0.4;  // light load: the data's node usually has room
  o.data_request_fraction = 1;
  o.max_data_keys = 1;
  o.data_replication = 1;
  o.data_sets = 24;
  o.data_size_min_bytes = 1 * kGiB;
  o.data_size_max_bytes = 4 * kGiB;
  o.failures_per_node_hour = 0;
  const int64_t random = RunPolicy(o, "random").metrics.bytes_moved;
  const int64_t round_robin = RunPolicy(o, "round-robin").metrics.bytes_moved;
  ASSERT_GT(random, 0);
  for (const std::string& name : {"seed", "tuned", "bidding"}) {
    SCOPED_TRACE(name);
    const int64_t moved = RunPolicy(o, name).metrics.bytes_moved;
    EXPECT_LT(moved, random * 3 / 4);
    EXPECT_LT(moved, round_robin * 3 / 4);
  }
  EXPECT_LT(RunPolicy(o, "tuned").metrics.bytes_moved, RunPolicy(o, "seed").metrics.bytes_moved);
}

// One 1-core node, a low-priority job and a stream of high-priority jobs
// that keeps the node busy for an hour, each arriving as the last finishes.
// Strict priorities starve the low one until the stream ends; ageing lifts
// it to the cap of 100, past the stream's 90, after 900 s.
TEST(SimulatorTest, AgeingBoundsStarvation) {
  std::vector<model::HypervisorNode> nodes = {Node("n0", 1000, 0)};
  Trace trace;
  trace.arrivals.push_back(Job("high0", 0, 1000, 1000, 1 << 30, 90));
  trace.arrivals.push_back(Job("low", 0, 1000, 1000, 1 << 30, 0));
  for (int k = 1; k < 3600; ++k) {
    trace.arrivals.push_back(Job("high" + std::to_string(k), k * 1000, 1000, 1000, 1 << 30, 90));
  }
  SimOptions strict;
  strict.aging_points_per_second = 0;
  strict.starvation_threshold_ms = 60'000;
  SimOptions ageing = strict;
  ageing.aging_points_per_second = 0.1;

  auto a = Policy("seed");
  const SimResult starved = Simulate(nodes, trace, *a, strict);
  EXPECT_EQ(starved.executions[1].wait_ms, 3600 * 1000);
  EXPECT_EQ(starved.metrics.wait_max_ms, 3600 * 1000);
  EXPECT_EQ(starved.metrics.starved, 1);

  auto b = Policy("seed");
  const SimResult aged = Simulate(nodes, trace, *b, ageing);
  // Effective priority 0 + 0.1/s reaches 90 at 900 s; at the tie the older
  // entry goes first, so it starts at the first dispatch at or after 900 s.
  EXPECT_EQ(aged.executions[1].wait_ms, 900 * 1000);
  EXPECT_EQ(aged.metrics.completed, 3601);
  EXPECT_LT(aged.metrics.wait_max_ms, starved.metrics.wait_max_ms);
}

// Two nodes and three jobs, worked by hand:
//   n0: 2 cores at 1/core-second; n1: 1 core at 2/core-second.
//   e0 (2 cores, 10 s) at 0 s: only n0 fits; runs 0..10.
//   e1 (1 core, 5 s) at 0 s, reads data set "d" (100 MB, on n0 only): n0 is
//      full, so n1; the copy takes 1 s at 100 MB/s; runs 0..6.
//   e2 (2 cores, 1 s) at 1 s: nothing fits until e0 ends; runs 10..11 on n0,
//      past its deadline of 5 s.
TEST(SimulatorTest, HandMadeScenarioHasTheKnownAnswer) {
  std::vector<model::HypervisorNode> nodes = {Node("n0", 2000, 1.0), Node("n1", 1000, 2.0)};
  nodes[0].data_sets.push_back(model::DataSet{"d", 100'000'000});
  Trace trace;
  trace.arrivals = {Job("e0", 0, 2000, 10'000, 60'000), Job("e1", 0, 1000, 5'000, 60'000),
                    Job("e2", 1000, 2000, 1'000, 5'000)};
  trace.arrivals[1].request.data_keys = {"d"};
  trace.data_sets = {model::DataSet{"d", 100'000'000}};
  SimOptions options;
  options.transfer_bytes_per_s = 100e6;

  for (const std::string& name : {"seed", "tuned", "round-robin", "random"}) {
    SCOPED_TRACE(name);
    auto policy = Policy(name);
    const SimResult r = Simulate(nodes, trace, *policy, options);
    const Metrics& m = r.metrics;
    EXPECT_EQ(m.arrivals, 3);
    EXPECT_EQ(m.completed, 3);
    EXPECT_EQ(m.makespan_ms, 11'000);
    EXPECT_EQ(m.wait_p50_ms, 0);
    EXPECT_EQ(m.wait_p99_ms, 9'000);
    EXPECT_EQ(m.wait_max_ms, 9'000);
    EXPECT_EQ(m.bytes_moved, 100'000'000);
    EXPECT_EQ(m.slo_misses, 1);
    EXPECT_EQ(m.reruns, 0);
    // e0 and e1 at 0 s, e2 at 10 s; at 1 s and 6 s no node had 2 cores
    // free, so the policy was not asked.
    EXPECT_EQ(m.decisions, 3);
    // Reserved core-ms: 2*10000 + 1*6000 + 2*1000 = 28e6 of 3 * 11000.
    EXPECT_DOUBLE_EQ(m.utilisation, 28e6 / 33e6);
    EXPECT_DOUBLE_EQ(m.cost, 2 * 10 * 1.0 + 1 * 6 * 2.0 + 2 * 1 * 1.0);

    ASSERT_EQ(r.executions.size(), 3u);
    EXPECT_EQ(r.executions[0].node_id, "n0");
    EXPECT_EQ(r.executions[0].finish_ms, 10'000);
    EXPECT_EQ(r.executions[1].node_id, "n1");
    EXPECT_EQ(r.executions[1].finish_ms, 6'000);
    EXPECT_EQ(r.executions[1].bytes_moved, 100'000'000);
    EXPECT_EQ(r.executions[2].node_id, "n0");
    EXPECT_EQ(r.executions[2].wait_ms, 9'000);
    EXPECT_EQ(r.executions[2].finish_ms, 11'000);
    EXPECT_TRUE(r.executions[2].missed_slo);
  }
}

// A node fails under a running job, which runs again from the start on the
// other node; the failed node's capacity leaves the utilisation's
// denominator while it is down.
TEST(SimulatorTest, FailureRerunsTheLostExecution) {
  std::vector<model::HypervisorNode> nodes = {Node("n0", 2000, 0), Node("n1", 1000, 0)};
  Trace trace;
  trace.arrivals = {Job("e0", 0, 1000, 10'000, 12'000)};
  trace.failures = {Failure{.time_ms = 4'000, .node = 0, .repair_ms = 2'000}};
  auto policy = Policy("seed");
  const SimResult r = Simulate(nodes, trace, *policy);
  EXPECT_EQ(r.metrics.completed, 1);
  EXPECT_EQ(r.metrics.reruns, 1);
  EXPECT_EQ(r.metrics.makespan_ms, 14'000);
  EXPECT_EQ(r.metrics.slo_misses, 1);
  EXPECT_EQ(r.executions[0].attempts, 2);
  EXPECT_EQ(r.executions[0].node_id, "n1");
  EXPECT_EQ(r.executions[0].wait_ms, 0);
  // Busy 1000 * (4000 + 10000); online 3000 * 4000 + 1000 * 2000 + 3000 * 8000.
  EXPECT_DOUBLE_EQ(r.metrics.utilisation, 14e6 / 38e6);
}

TEST(SimulatorTest, RoundRobinTakesFeasibleNodesInTurn) {
  std::vector<model::HypervisorNode> nodes = {Node("n0", 4000, 0), Node("n1", 4000, 0),
                                              Node("n2", 4000, 0)};
  nodes[1].security.trust_level = 9;
  Trace trace;
  for (int i = 0; i < 4; ++i) {
    trace.arrivals.push_back(Job("e" + std::to_string(i), i, 1000, 100'000, 1 << 30));
  }
  trace.arrivals[2].request.security.min_trust_level = 5;  // only n1
  auto policy = Policy("round-robin");
  const SimResult r = Simulate(nodes, trace, *policy);
  std::vector<std::string> placed;
  for (const auto& x : r.executions) placed.push_back(x.node_id);
  EXPECT_THAT(placed, ::testing::ElementsAre("n0", "n1", "n1", "n2"));
}

TEST(SimulatorTest, UnknownPolicyIsRejectedWithTheKnownNames) {
  auto policy = MakePolicy("fastest", 1);
  ASSERT_FALSE(policy.ok());
  EXPECT_EQ(policy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(policy.status().message()),
              ::testing::HasSubstr("random, round-robin, seed, tuned, bidding"));
}

}  // namespace
}  // namespace flotilla::sim
