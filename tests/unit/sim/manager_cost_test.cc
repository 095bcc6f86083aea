#include "sim/manager_cost.h"

#include <gtest/gtest.h>

namespace flotilla::sim {
namespace {

ManagerCosts Measured() {
  ManagerCosts c;
  c.base_rss_kib = 20 * 1024;
  c.kib_per_idle_node = 40;
  c.cpu_ms_per_node_second = 0.5;
  c.heartbeat_interval_s = 1;
  c.cpu_ms_per_task = 2;
  return c;
}

TEST(ManagerCostTest, GrowsLinearlyWithNodesAndTaskRate) {
  const ManagerLoad l = Extrapolate(Measured(), 10000, 100);
  EXPECT_DOUBLE_EQ(l.rss_mib, 20 + 10000 * 40.0 / 1024);
  EXPECT_DOUBLE_EQ(l.heartbeat_cores, 10000 * 0.5 / 1000);
  EXPECT_DOUBLE_EQ(l.task_cores, 100 * 2.0 / 1000);
  EXPECT_DOUBLE_EQ(l.cores(), 5.2);
}

TEST(ManagerCostTest, SlowerHeartbeatsCostProportionallyLess) {
  const ManagerLoad every_second = Extrapolate(Measured(), 1000, 0);
  const ManagerLoad every_5s = Extrapolate(Measured(), 1000, 0, 5);
  EXPECT_DOUBLE_EQ(every_5s.heartbeat_cores, every_second.heartbeat_cores / 5);
  EXPECT_DOUBLE_EQ(every_5s.rss_mib, every_second.rss_mib);
}

TEST(ManagerCostTest, RejectsNonsense) {
  ManagerCosts c = Measured();
  EXPECT_TRUE(c.Validate().ok());
  c.heartbeat_interval_s = 0;
  EXPECT_FALSE(c.Validate().ok());
  c = Measured();
  c.kib_per_idle_node = -1;
  EXPECT_FALSE(c.Validate().ok());
}

}  // namespace
}  // namespace flotilla::sim
