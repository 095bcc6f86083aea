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

// io and network rates reach Get: the task sends 1 MB over its own loopback
// every 100 ms (its network namespace's net/dev) and writes a few MB in
// /work. /work is a tmpfs, which no block counter sees, and cgroup v1 blkio
// charges buffered writeback to the root group, so io_write_bps is only
// reported, not required; the network rates are.
TEST(MonitorTest, GetShowsNetworkAndIoRatesOfARunningExecution) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  FederationHarness h;
  h.StartManager();
  AgentSpec agent;
  agent.id = "solo";
  h.StartAgent(agent);
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source(
      "import os, socket, time\n"
      "srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n"
      "cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()\n"
      "chunk = b'x' * (1 << 20)\n"
      "for i in range(300):\n"
      "    cli.sendall(chunk)\n"
      "    got = 0\n"
      "    while got < len(chunk): got += len(conn.recv(1 << 20))\n"
      "    with open('/work/blob', 'wb') as f:\n"
      "        f.write(chunk); f.flush(); os.fsync(f.fileno())\n"
      "    time.sleep(0.1)\n");
  r.set_user_id("tester");
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(r, &resp).ok());
  const std::string id = resp.execution().id();

  int64_t max_rx = 0, max_tx = 0, max_write = 0, max_read = 0;
  const bool seen = FederationHarness::WaitUntil(std::chrono::seconds(30), [&] {
    v1::Execution e;
    if (!h.Get(id, &e).ok()) return false;
    EXPECT_LT(e.state(), v1::EXECUTION_SUCCEEDED) << e.DebugString();
    if (e.state() >= v1::EXECUTION_SUCCEEDED) return true;
    if (!e.has_usage()) return false;
    max_rx = std::max(max_rx, e.usage().net_rx_bps());
    max_tx = std::max(max_tx, e.usage().net_tx_bps());
    max_read = std::max(max_read, e.usage().io_read_bps());
    max_write = std::max(max_write, e.usage().io_write_bps());
    return max_rx > 1'000'000 && max_tx > 1'000'000 && e.usage().samples() >= 30;
  });
  std::fprintf(stderr, "max rates: net rx %lld B/s, tx %lld B/s; io read %lld B/s, write %lld B/s\n",
               static_cast<long long>(max_rx), static_cast<long long>(max_tx),
               static_cast<long long>(max_read), static_cast<long long>(max_write));
  EXPECT_TRUE(seen);
  // About 10 MB/s each way over loopback: rx and tx of lo count it once each.
  EXPECT_GT(max_rx, 1'000'000);
  EXPECT_GT(max_tx, 1'000'000);
  if (max_write == 0) {
    std::fprintf(stderr,
                 "NOTE: io_write_bps stayed 0: the writes went to a tmpfs /work (or the host "
                 "charges writeback to the root blkio group); io is not checked here\n");
  }

  v1::CancelResponse cancelled;
  ASSERT_TRUE(h.Cancel(id, &cancelled).ok());
  auto done = h.WaitAllDone({id}, std::chrono::seconds(10));
  ASSERT_EQ(done.size(), 1u);
}

}  // namespace
}  // namespace flotilla::testing
