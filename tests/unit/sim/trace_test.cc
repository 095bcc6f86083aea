#include "sim/trace.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::sim {
namespace {

TraceOptions Small() {
  TraceOptions o;
  o.nodes = 20;
  o.duration_s = 200;
  o.arrival_rate_per_s = 5;
  return o;
}

bool SameRequest(const model::ExecutionRequest& a, const model::ExecutionRequest& b) {
  return a.id == b.id && a.user_id == b.user_id && a.priority == b.priority &&
         a.resources == b.resources && a.data_keys == b.data_keys &&
         a.security.min_trust_level == b.security.min_trust_level &&
         a.security.required_capabilities == b.security.required_capabilities &&
         a.placement.preferred_regions == b.placement.preferred_regions &&
         a.placement.mode == b.placement.mode && a.template_name == b.template_name &&
         a.function == b.function;
}

TEST(TraceTest, SameSeedSameTrace) {
  const Trace a = GenerateTrace(Small());
  const Trace b = GenerateTrace(Small());
  ASSERT_EQ(a.arrivals.size(), b.arrivals.size());
  for (size_t i = 0; i < a.arrivals.size(); ++i) {
    EXPECT_EQ(a.arrivals[i].time_ms, b.arrivals[i].time_ms);
    EXPECT_EQ(a.arrivals[i].duration_ms, b.arrivals[i].duration_ms);
    EXPECT_EQ(a.arrivals[i].deadline_ms, b.arrivals[i].deadline_ms);
    EXPECT_TRUE(SameRequest(a.arrivals[i].request, b.arrivals[i].request)) << i;
  }
  ASSERT_EQ(a.failures.size(), b.failures.size());
  for (size_t i = 0; i < a.failures.size(); ++i) {
    EXPECT_EQ(a.failures[i].time_ms, b.failures[i].time_ms);
    EXPECT_EQ(a.failures[i].node, b.failures[i].node);
    EXPECT_EQ(a.failures[i].repair_ms, b.failures[i].repair_ms);
  }
}

TEST(TraceTest, DifferentSeedDifferentTrace) {
  TraceOptions other = Small();
  other.seed = 2;
  const Trace a = GenerateTrace(Small());
  const Trace b = GenerateTrace(other);
  bool differ = a.arrivals.size() != b.arrivals.size();
  for (size_t i = 0; !differ && i < a.arrivals.size(); ++i) {
    differ = a.arrivals[i].time_ms != b.arrivals[i].time_ms ||
             a.arrivals[i].duration_ms != b.arrivals[i].duration_ms;
  }
  EXPECT_TRUE(differ);
}

TEST(TraceTest, ArrivalsAreOrderedWithinTheWindowAndWellFormed) {
  const TraceOptions o = Small();
  const Trace t = GenerateTrace(o);
  // 5/s over 200 s, plus bursts: roughly 1000.
  EXPECT_GT(t.arrivals.size(), 700u);
  EXPECT_LT(t.arrivals.size(), 1600u);
  for (size_t i = 0; i < t.arrivals.size(); ++i) {
    const Arrival& a = t.arrivals[i];
    if (i > 0) EXPECT_LE(t.arrivals[i - 1].time_ms, a.time_ms);
    EXPECT_GE(a.time_ms, 0);
    EXPECT_LT(a.time_ms, 200'000);
    EXPECT_EQ(a.request.id, "e" + std::to_string(i));
    EXPECT_GE(a.duration_ms, o.duration_scale_s * 1000);
    EXPECT_LE(a.duration_ms, o.max_duration_s * 1000);
    EXPECT_GT(a.deadline_ms, a.time_ms + a.duration_ms);
    EXPECT_GT(a.request.resources.cpu_millis, 0);
    EXPECT_LE(a.request.data_keys.size(), static_cast<size_t>(o.max_data_keys));
  }
}

TEST(TraceTest, DurationsAreHeavyTailed) {
  TraceOptions o = Small();
  o.duration_s = 2000;
  const Trace t = GenerateTrace(o);
  std::vector<int64_t> d;
  for (const Arrival& a : t.arrivals) d.push_back(a.duration_ms);
  std::sort(d.begin(), d.end());
  const int64_t median = d[d.size() / 2];
  const int64_t p999 = d[d.size() * 999 / 1000];
  // Pareto(1.5): the median is 2^(1/1.5) = 1.59 times the minimum, the
  // 99.9th percentile 100 times it (capped at 90 here).
  EXPECT_LT(median, 3 * o.duration_scale_s * 1000);
  EXPECT_GT(p999, 20 * median);
}

TEST(TraceTest, EachDataSetHasItsReplicas) {
  TraceOptions o = Small();
  o.data_sets = 30;
  o.data_replication = 3;
  const auto nodes = GenerateCluster(o);
  ASSERT_EQ(nodes.size(), 20u);
  std::map<std::string, int> copies;
  for (const auto& n : nodes) {
    EXPECT_EQ(n.status, model::NodeStatus::kOnline);
    EXPECT_EQ(n.available, n.capacity);
    EXPECT_TRUE(n.labels.contains("region"));
    for (const auto& d : n.data_sets) ++copies[d.key];
  }
  ASSERT_EQ(copies.size(), 30u);
  for (const auto& [key, count] : copies) EXPECT_EQ(count, 3) << key;
}

TEST(TraceTest, FailuresOfOneNodeDoNotOverlap) {
  TraceOptions o = Small();
  o.failures_per_node_hour = 20;
  o.mean_repair_s = 30;
  const Trace t = GenerateTrace(o);
  ASSERT_FALSE(t.failures.empty());
  std::map<size_t, int64_t> up_again;
  for (const Failure& f : t.failures) {
    EXPECT_LT(f.node, 20u);
    EXPECT_GE(f.repair_ms, 1000);
    EXPECT_GE(f.time_ms, up_again[f.node]);
    up_again[f.node] = f.time_ms + f.repair_ms;
  }
}

TEST(TraceTest, ValidateNamesTheBadField) {
  TraceOptions o;
  EXPECT_TRUE(o.Validate().ok());
  o.diurnal_amplitude = 1.5;
  absl::Status st = o.Validate();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), ::testing::HasSubstr("diurnal_amplitude = 1.5"));
  o = TraceOptions{};
  o.nodes = 0;
  EXPECT_THAT(std::string(o.Validate().message()), ::testing::HasSubstr("nodes"));
}

}  // namespace
}  // namespace flotilla::sim
