// Live resource monitoring end to end: the agent samples a running Linux
// sandbox at 10 Hz and the manager shows the usage (and the risk of
// exceeding the memory limit) in Get while the execution runs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

TEST(MonitorTest, GetShowsLiveUsageAndRiskOfARunningExecution) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  FederationHarness h;
  h.StartManager();
  AgentSpec agent;
  agent.id = "solo";
  h.StartAgent(agent);
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  // Grows by 5 MB every 100 ms up to 150 MB (in the python template: 512 MiB
  // limit), then sleeps.
  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source(
      "import time\n"
      "chunks = []\n"
      "for _ in range(30):\n"
      "    chunks.append(bytearray(5 * 1000 * 1000))\n"
      "    time.sleep(0.1)\n"
      "time.sleep(30)\n");
  r.set_user_id("tester");
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(r, &resp).ok());
  const std::string id = resp.execution().id();

  int64_t max_memory = 0;
  double max_risk = 0;
  v1::TaskUsage last;
  const bool seen = FederationHarness::WaitUntil(std::chrono::seconds(30), [&] {
    v1::Execution e;
    if (!h.Get(id, &e).ok()) return false;
    EXPECT_LT(e.state(), v1::EXECUTION_SUCCEEDED) << e.DebugString();
    if (e.state() >= v1::EXECUTION_SUCCEEDED) return true;
    if (!e.has_usage()) return false;
    if (e.usage().sampled_unix_ms() != last.sampled_unix_ms()) {
      std::fprintf(
          stderr, "usage: mem %lld MB, limit %lld MB, cpu %.2f, pids %lld, risk %.4g, n %d\n",
          static_cast<long long>(e.usage().memory_bytes() / 1000000),
          static_cast<long long>(e.usage().memory_limit_bytes() / 1000000), e.usage().cpu_cores(),
          static_cast<long long>(e.usage().pids()), e.usage().risk(), e.usage().samples());
    }
    last = e.usage();
    max_memory = std::max(max_memory, e.usage().memory_bytes());
    max_risk = std::max(max_risk, e.usage().risk());
    return max_memory > 50'000'000 && max_risk > 0;
  });
  EXPECT_TRUE(seen);
  EXPECT_GT(max_memory, 50'000'000);
  EXPECT_GT(max_risk, 0);
  EXPECT_EQ(last.execution_id(), id);
  EXPECT_EQ(last.memory_limit_bytes(), 512ll << 20);
  EXPECT_GE(last.memory_peak_bytes(), last.memory_bytes());
  EXPECT_GE(last.pids(), 1);

  // The node shows host usage.
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(h.ListNodes(&nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_GT(nodes.nodes(0).memory_available_bytes(), 0);

  v1::CancelResponse cancelled;
  ASSERT_TRUE(h.Cancel(id, &cancelled).ok());
  auto done = h.WaitAllDone({id}, std::chrono::seconds(10));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_FALSE(done[id].has_usage());  // only while running
}

}  // namespace
}  // namespace flotilla::testing
