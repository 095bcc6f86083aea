// NodeRegistry on plain values: leases expire at the given time, views
// subtract reservations and hide suspect nodes, data keys are bounded.
#include "manager/node_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::manager {
namespace {

using ::testing::SizeIs;

NodeState& Online(NodeRegistry& reg, const std::string& id, int64_t heartbeat_ms) {
  NodeState& ns = **reg.ForRegistration(id);
  ns.node.id = id;
  ns.node.status = model::NodeStatus::kOnline;
  ns.node.capacity = {.cpu_millis = 4000, .memory_bytes = 1 << 30};
  ns.last_heartbeat_mono_ms = heartbeat_ms;
  return ns;
}

TEST(NodeRegistryTest, LeasesExpireOnlyPastTheTimeoutAndOnce) {
  NodeRegistry reg;
  Online(reg, "a", 1000);
  Online(reg, "b", 1500);
  EXPECT_TRUE(reg.ExpireLeases(2000, 1000).empty());
  auto expired = reg.ExpireLeases(2001, 1000);
  ASSERT_THAT(expired, SizeIs(1));
  EXPECT_EQ(expired[0].node->node.id, "a");
  EXPECT_EQ(expired[0].silent_ms, 1001);
  EXPECT_EQ(reg.Find("a")->node.status, model::NodeStatus::kOffline);
  EXPECT_THAT(reg.ExpireLeases(5000, 1000), SizeIs(1)) << "only b is left to expire";
}

TEST(NodeRegistryTest, ViewsSubtractReservationsAndHideSuspectNodes) {
  NodeRegistry reg;
  NodeState& a = Online(reg, "a", 0);
  Online(reg, "b", 0);
  reg.Assign(a, "ex-1", {.cpu_millis = 1000, .memory_bytes = 1 << 20});
  reg.Assign(a, "ex-1", {.cpu_millis = 1000, .memory_bytes = 1 << 20});  // once only
  reg.Find("b")->suspect_until_mono_ms = 500;
  auto views = reg.Views(100);
  ASSERT_THAT(views, SizeIs(2));
  EXPECT_EQ(views[0].id, "a");
  EXPECT_EQ(views[0].available.cpu_millis, 3000);
  EXPECT_EQ(views[0].running_executions, 1);
  EXPECT_EQ(views[1].status, model::NodeStatus::kOffline);
  EXPECT_EQ(reg.Views(600)[1].status, model::NodeStatus::kOnline);
  EXPECT_TRUE(reg.Release(a, "ex-1", {.cpu_millis = 1000, .memory_bytes = 1 << 20}));
  EXPECT_FALSE(reg.Release(a, "ex-1", {.cpu_millis = 1000, .memory_bytes = 1 << 20}));
  EXPECT_EQ(reg.Views(600)[0].available.cpu_millis, 4000);
}

TEST(NodeRegistryTest, DataKeysAreBoundedAndForgottenByPrefix) {
  NodeRegistry reg;
  Online(reg, "a", 0);
  for (size_t i = 0; i < NodeRegistry::kMaxDataKeys + 10; ++i) {
    reg.AddData("a", "wf-1/" + std::to_string(100000 + i), 1);
  }
  EXPECT_THAT(reg.Views(0)[0].data_sets, SizeIs(NodeRegistry::kMaxDataKeys));
  reg.AddData("a", "wf-2/x", 7);
  reg.ForgetData("wf-1/");
  auto data = reg.Views(0)[0].data_sets;
  ASSERT_THAT(data, SizeIs(1));
  EXPECT_EQ(data[0].key, "wf-2/x");
}

}  // namespace
}  // namespace flotilla::manager
