#include "scheduler/filters.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;
using model::NodeStatus;
using ::testing::ElementsAre;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;

HypervisorNode Node() {
  HypervisorNode node;
  node.id = "agent-1";
  node.status = NodeStatus::kOnline;
  node.capacity = {.cpu_millis = 4000, .memory_bytes = 8 * kGiB, .storage_bytes = 100 * kGiB};
  node.available = node.capacity;
  node.security.trust_level = 5;
  node.security.isolation = "process";
  node.labels["region"] = "us-east";
  return node;
}

ExecutionRequest Request() {
  ExecutionRequest request;
  request.user_id = "alice";
  request.resources = {.cpu_millis = 500, .memory_bytes = 256 * kMiB};
  return request;
}

// Returns "" when `filter` passes, otherwise its reason; also checks that the
// verdict does not depend on whether a reason was asked for.
std::string Reason(const Filter& filter, const ExecutionRequest& request,
                   const HypervisorNode& node) {
  std::string reason = "unset";
  const bool passed = filter.Check(request, node, &reason);
  EXPECT_EQ(passed, filter.Check(request, node, nullptr)) << filter.name();
  if (passed) {
    EXPECT_EQ(reason, "unset") << "a passing filter leaves the reason alone";
    return "";
  }
  return reason;
}

TEST(OnlineFilterTest, OnlinePassesOfflineFails) {
  HypervisorNode node = Node();
  EXPECT_EQ(Reason(OnlineFilter(), Request(), node), "");
  node.status = NodeStatus::kOffline;
  EXPECT_EQ(Reason(OnlineFilter(), Request(), node), "node is offline");
}

TEST(NotDrainingFilterTest, DrainingFails) {
  HypervisorNode node = Node();
  EXPECT_EQ(Reason(NotDrainingFilter(), Request(), node), "");
  node.draining = true;
  EXPECT_EQ(Reason(NotDrainingFilter(), Request(), node), "node is draining");
}

TEST(ResourceFitFilterTest, EachDimensionWithNumbers) {
  const ResourceFitFilter filter;
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  EXPECT_EQ(Reason(filter, request, node), "");

  request.resources.cpu_millis = 4000;
  node.available.cpu_millis = 1500;
  EXPECT_EQ(Reason(filter, request, node), "needs 4000m cpu, 1500m free");

  node = Node();
  request = Request();
  request.resources.memory_bytes = 512 * kMiB;
  node.available.memory_bytes = 128 * kMiB;
  EXPECT_EQ(Reason(filter, request, node), "needs 512 MiB memory, 128 MiB free");

  node = Node();
  request = Request();
  request.resources.storage_bytes = 2 * kGiB;
  node.available.storage_bytes = kGiB + kGiB / 2;
  EXPECT_EQ(Reason(filter, request, node), "needs 2 GiB storage, 1.5 GiB free");

  node = Node();
  request = Request();
  request.resources.bandwidth_bps = 100'000'000;
  node.available.bandwidth_bps = 50'000'000;
  EXPECT_EQ(Reason(filter, request, node), "needs 100 Mbit/s bandwidth, 50 Mbit/s free");
}

TEST(ResourceFitFilterTest, ExactFitPasses) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  request.resources = node.available;
  EXPECT_EQ(Reason(ResourceFitFilter(), request, node), "");
}

TEST(ResourceFitFilterTest, UnknownBandwidthIsUnlimited) {
  HypervisorNode node = Node();
  node.available.bandwidth_bps = 0;
  ExecutionRequest request = Request();
  request.resources.bandwidth_bps = 10'000'000'000;
  EXPECT_EQ(Reason(ResourceFitFilter(), request, node), "");
}

TEST(ResourceFitFilterTest, CapacityPoolIgnoresReservations) {
  const ResourceFitFilter filter(ResourceFitFilter::Pool::kCapacity);
  HypervisorNode node = Node();
  node.available = {};
  ExecutionRequest request = Request();
  EXPECT_EQ(Reason(filter, request, node), "");
  request.resources.cpu_millis = 8000;
  EXPECT_EQ(Reason(filter, request, node), "needs 8000m cpu, 4000m total");
}

TEST(TrustFilterTest, BelowMinimumFails) {
  HypervisorNode node = Node();
  node.security.trust_level = 2;
  ExecutionRequest request = Request();
  request.security.min_trust_level = 5;
  EXPECT_EQ(Reason(TrustFilter(), request, node), "trust level 2 < required 5");
  node.security.trust_level = 5;
  EXPECT_EQ(Reason(TrustFilter(), request, node), "");
}

TEST(TenantFilterTest, AllowListIsTheNodesSide) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  request.user_id = "bob";
  EXPECT_EQ(Reason(TenantFilter(), request, node), "") << "an empty list admits everyone";
  node.security.allowed_tenants = {"alice"};
  EXPECT_EQ(Reason(TenantFilter(), request, node), "tenant 'bob' not allowed (allowed: alice)");
  request.user_id = "alice";
  EXPECT_EQ(Reason(TenantFilter(), request, node), "");
}

TEST(CapabilityFilterTest, NamesTheFirstMissing) {
  HypervisorNode node = Node();
  node.security.capabilities = {"network-egress"};
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"network-egress", "gpu", "fuse"};
  EXPECT_EQ(Reason(CapabilityFilter(), request, node), "lacks capability 'gpu'");
  node.security.capabilities = {"gpu", "fuse", "network-egress"};
  EXPECT_EQ(Reason(CapabilityFilter(), request, node), "");
}

TEST(CapabilityFilterTest, LeavesIsolationToItsOwnFilter) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  request.security.required_capabilities = {"isolation:microvm"};
  EXPECT_EQ(Reason(CapabilityFilter(), request, node), "");
}

TEST(IsolationFilterTest, RequiresTheNamedKind) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  EXPECT_EQ(Reason(IsolationFilter(), request, node), "") << "no isolation asked for";
  request.security.required_capabilities = {"gpu", "isolation:microvm"};
  EXPECT_EQ(Reason(IsolationFilter(), request, node),
            "isolation 'microvm' not offered (node gives 'process')");
  node.security.isolation = "microvm";
  EXPECT_EQ(Reason(IsolationFilter(), request, node), "");
  node.security.isolation = "";
  EXPECT_EQ(Reason(IsolationFilter(), request, node),
            "isolation 'microvm' not offered (node gives none)");
}

TEST(IsolationFilterTest, KindParsing) {
  EXPECT_EQ(IsolationKind("isolation:microvm"), "microvm");
  EXPECT_EQ(IsolationKind("isolation:"), "");
  EXPECT_EQ(IsolationKind("gpu"), "");
  EXPECT_EQ(IsolationKind("isolatio"), "");
}

TEST(RegionFilterTest, RequiredRegionsAreHard) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  EXPECT_EQ(Reason(RegionFilter(), request, node), "") << "no regions required";
  request.placement.required_regions = {"eu-west"};
  EXPECT_EQ(Reason(RegionFilter(), request, node),
            "region 'us-east' not in required regions (eu-west)");
  request.placement.required_regions = {"eu-west", "us-east"};
  EXPECT_EQ(Reason(RegionFilter(), request, node), "");
  node.labels.clear();
  EXPECT_EQ(Reason(RegionFilter(), request, node),
            "node has no region label; required regions (eu-west, us-east)");
}

TEST(RegionFilterTest, PreferredRegionsDoNotFilter) {
  HypervisorNode node = Node();
  ExecutionRequest request = Request();
  request.placement.preferred_regions = {"eu-west"};
  EXPECT_EQ(Reason(RegionFilter(), request, node), "");
}

std::vector<std::string> Names(const FilterChain& chain) {
  std::vector<std::string> names;
  for (const auto& f : chain) names.push_back(f->name());
  return names;
}

TEST(FilterChainTest, DefaultOrder) {
  EXPECT_THAT(Names(DefaultFilters()),
              ElementsAre("online", "draining", "resources", "trust", "tenant", "capabilities",
                          "isolation", "region"));
  EXPECT_THAT(Names(EverFeasibleFilters()),
              ElementsAre("resources", "trust", "tenant", "capabilities", "isolation", "region"));
}

TEST(FilterChainTest, FirstFailureIsTheReason) {
  HypervisorNode node = Node();
  node.status = NodeStatus::kOffline;
  node.draining = true;
  ExecutionRequest request = Request();
  request.security.min_trust_level = 9;
  std::string reason;
  EXPECT_FALSE(PassesAll(DefaultFilters(), request, node, &reason));
  EXPECT_EQ(reason, "node is offline");
  node.status = NodeStatus::kOnline;
  EXPECT_FALSE(PassesAll(DefaultFilters(), request, node, &reason));
  EXPECT_EQ(reason, "node is draining");
  EXPECT_FALSE(PassesAll(EverFeasibleFilters(), request, node, &reason));
  EXPECT_EQ(reason, "trust level 5 < required 9");
  request.security.min_trust_level = 0;
  EXPECT_TRUE(PassesAll(EverFeasibleFilters(), request, node, &reason));
}

TEST(FormatTest, Units) {
  EXPECT_EQ(FormatBytes(100), "100 B");
  EXPECT_EQ(FormatBytes(2048), "2 KiB");
  EXPECT_EQ(FormatBytes(kGiB + kGiB / 2), "1.5 GiB");
  EXPECT_EQ(FormatBandwidth(1'000'000'000), "1 Gbit/s");
  EXPECT_EQ(FormatBandwidth(1'500'000), "1.5 Mbit/s");
  EXPECT_EQ(FormatCpu(250), "250m");
}

}  // namespace
}  // namespace flotilla::scheduler
