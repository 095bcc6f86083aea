// Adaptive allocation end to end: a Python task whose memory grows past its
// template's limit (python: 512 MiB) is resized in place before it reaches
// the limit and succeeds; the same program on an agent without resizing is
// OOM-killed (so the first half can fail); on a node with no room the task
// is marked as needing migration.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

const char kResize[] =
    "resize:\n  enabled: true\n  raise_risk: 0.5\n  horizon_s: 10\n  interval_ms: 200\n";

struct Seen {
  int resizes = 0;
  bool needs_migration = false;
  std::string first_resize, last_resize, pressure;
  int64_t max_limit = 0;
};

Seen Watch(FederationHarness& h, const std::string& id, std::chrono::seconds timeout,
           bool stop_on_migration) {
  Seen seen;
  FederationHarness::WaitUntil(timeout, [&] {
    v1::Execution e;
    if (!h.Get(id, &e).ok()) return false;
    if (e.state() >= v1::EXECUTION_SUCCEEDED) return true;
    if (!e.has_usage()) return false;
    const auto& u = e.usage();
    seen.resizes = std::max(seen.resizes, u.resizes());
    seen.max_limit = std::max(seen.max_limit, u.memory_limit_bytes());
    if (!u.last_resize().empty()) {
      if (seen.first_resize.empty()) seen.first_resize = u.last_resize();
      seen.last_resize = u.last_resize();
    }
    if (u.needs_migration()) {
      seen.needs_migration = true;
      seen.pressure = u.pressure_reason();
    }
    return stop_on_migration && seen.needs_migration;
  });
  return seen;
}

std::string Source() {
  return "import time\n"
         "chunks = []\n"
         "for _ in range(70):\n"
         "    chunks.append(bytearray(10 * 1000 * 1000))\n"
         "    time.sleep(0.1)\n"
         "print('grew to', len(chunks) * 10, 'MB')\n";
}

TEST(ResizeTest, GrowingTaskIsResizedBeforeItsLimitAndSucceedsButIsKilledWithoutResizing) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  FederationHarness h;
  h.StartManager();
  AgentSpec plain;
  plain.id = "plain";
  h.StartAgent(plain);
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source(Source());
  r.set_user_id("tester");
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(r, &resp).ok());
  auto done = h.WaitAllDone({resp.execution().id()}, std::chrono::seconds(60));
  ASSERT_EQ(done.size(), 1u);
  const v1::Execution& killed = done.begin()->second;
  EXPECT_NE(killed.state(), v1::EXECUTION_SUCCEEDED) << killed.DebugString();
  EXPECT_NE(killed.result().stderr().find("out of memory"), std::string::npos)
      << killed.result().stderr();

  AgentSpec adaptive;
  adaptive.id = "adaptive";
  adaptive.extra_config = kResize;
  h.StartAgent(adaptive);
  h.KillAgent("plain");  // the next run must land on the resizing agent
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    v1::ListNodesResponse nodes;
    if (!h.ListNodes(&nodes).ok()) return false;
    for (const auto& n : nodes.nodes()) {
      if (n.id() == "adaptive" && n.status() == v1::NODE_ONLINE) return true;
    }
    return false;
  }));
  // Wait for the manager to declare "plain" lost so nothing goes there.
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    v1::ListNodesResponse nodes;
    if (!h.ListNodes(&nodes).ok()) return false;
    for (const auto& n : nodes.nodes()) {
      if (n.id() == "plain" && n.status() == v1::NODE_ONLINE) return false;
    }
    return true;
  }));
  v1::SubmitResponse resp2;
  ASSERT_TRUE(h.Submit(r, &resp2).ok());
  const std::string id = resp2.execution().id();
  Seen seen = Watch(h, id, std::chrono::seconds(60), false);
  auto done2 = h.WaitAllDone({id}, std::chrono::seconds(30));
  ASSERT_EQ(done2.size(), 1u);
  const v1::Execution& e = done2[id];
  std::fprintf(stderr, "resizes %d, max limit %lld MiB, last: %s\n", seen.resizes,
               static_cast<long long>(seen.max_limit >> 20), seen.last_resize.c_str());
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << e.DebugString() << h.ReadLog("adaptive.log");
  EXPECT_EQ(e.node_id(), "adaptive");
  EXPECT_NE(e.result().stdout().find("grew to 700 MB"), std::string::npos);
  EXPECT_GE(seen.resizes, 1);
  EXPECT_GT(seen.max_limit, 512ll << 20);
  // The first change is from the template's limit, because of the forecast.
  EXPECT_NE(seen.first_resize.find("memory 512Mi -> "), std::string::npos) << seen.first_resize;
  EXPECT_NE(seen.first_resize.find("forecast upper"), std::string::npos) << seen.first_resize;
  EXPECT_FALSE(seen.needs_migration);
}

TEST(ResizeTest, NoRoomOnTheNodeMarksTheTaskAsNeedingMigration) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  FederationHarness h;
  h.StartManager();
  AgentSpec full;
  full.id = "full";
  full.memory_bytes = 300ll << 20;  // the request's 256 MiB leaves 44 MiB of room
  full.extra_config = kResize;
  h.StartAgent(full);
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");
  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source(Source());
  r.set_user_id("tester");
  r.mutable_resources()->set_memory_bytes(256ll << 20);
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(r, &resp).ok());
  const std::string id = resp.execution().id();
  Seen seen = Watch(h, id, std::chrono::seconds(30), true);
  EXPECT_TRUE(seen.needs_migration) << h.ReadLog("full.log");
  EXPECT_NE(seen.pressure.find("needs migration"), std::string::npos) << seen.pressure;
  v1::CancelResponse cancelled;
  (void)h.Cancel(id, &cancelled);
  h.WaitAllDone({id}, std::chrono::seconds(20));
}

}  // namespace
}  // namespace flotilla::testing
