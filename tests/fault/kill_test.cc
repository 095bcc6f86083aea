// Faults with real processes: an agent killed with SIGKILL mid-run, and the
// manager killed with SIGKILL and restarted on its database. Nothing
// accepted is lost; nothing is reported twice.
#include <gtest/gtest.h>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

TEST(Fault, AgentKilledMidRunItsTasksFinishElsewhere) {
  FederationHarness h;
  h.StartManager(/*lease_timeout_ms=*/1500);
  h.StartAgent({.id = "a1", .cpu_millis = 1000});
  h.StartAgent({.id = "a2", .cpu_millis = 1000});
  h.StartAgent({.id = "a3", .cpu_millis = 1000});
  ASSERT_TRUE(h.WaitOnline(3));
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    auto r = FederationHarness::Shell("sleep 2; echo done-$FLOTILLA_ATTEMPT");
    r.mutable_resources()->set_cpu_millis(250);  // 4 per node at once
    v1::SubmitResponse resp;
    ASSERT_TRUE(h.Submit(r, &resp).ok());
    ids.push_back(resp.execution().id());
  }
  // Wait until a1 runs something, then kill it.
  std::set<std::string> on_a1;
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(15), [&] {
    on_a1.clear();
    for (const auto& id : ids) {
      v1::Execution e;
      if (h.Get(id, &e).ok() && e.node_id() == "a1" && e.state() == v1::EXECUTION_RUNNING) {
        on_a1.insert(id);
      }
    }
    return !on_a1.empty();
  }));
  h.KillAgent("a1");
  auto done = h.WaitAllDone(ids, std::chrono::seconds(90));
  ASSERT_EQ(done.size(), ids.size()) << h.ReadLog("manager.log");
  for (const auto& [id, e] : done) {
    ASSERT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id << " " << e.error();
    EXPECT_NE(e.node_id(), "a1") << id << " finished on the killed agent?";
    EXPECT_EQ(e.result().stdout(), "done-" + std::to_string(e.attempt()) + "\n");
    if (on_a1.count(id)) {
      EXPECT_GE(e.attempt(), 2u) << id << " ran on a1 and must have been re-run";
    }
  }
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(h.ListNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) {
    if (n.id() == "a1") EXPECT_EQ(n.status(), v1::NODE_OFFLINE);
  }
}

TEST(Fault, ManagerKilledAndRestartedLosesNothing) {
  FederationHarness h;
  h.StartManager(/*lease_timeout_ms=*/3000);
  h.StartAgent({.id = "a1"});
  h.StartAgent({.id = "a2"});
  ASSERT_TRUE(h.WaitOnline(2));
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    auto r = FederationHarness::Shell("sleep 1; echo ok");
    r.mutable_resources()->set_cpu_millis(200);  // 10 per node at once: the rest queue
    v1::SubmitResponse resp;
    ASSERT_TRUE(h.Submit(r, &resp).ok());
    ids.push_back(resp.execution().id());
  }
  // Some run, some are queued, when the manager dies.
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(10), [&] {
    v1::Execution e;
    return h.Get(ids.front(), &e).ok() && e.state() == v1::EXECUTION_RUNNING;
  }));
  const std::string address = h.manager_address();
  h.KillManager();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // tasks finish meanwhile
  h.StartManager(/*lease_timeout_ms=*/3000, address);
  auto done = h.WaitAllDone(ids, std::chrono::seconds(90));
  ASSERT_EQ(done.size(), ids.size()) << h.ReadLog("manager.log");
  for (const auto& [id, e] : done) {
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id << " " << e.error();
    EXPECT_EQ(e.result().stdout(), "ok\n") << id;
  }
  // Accepting after the restart still works.
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(FederationHarness::Command({"true"}), &resp).ok());
  EXPECT_EQ(h.WaitAllDone({resp.execution().id()}, std::chrono::seconds(20)).size(), 1u);
}

}  // namespace
}  // namespace flotilla::testing
