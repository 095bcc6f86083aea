// The JSON shapes of GET /v1/nodes and /v1/executions/ID (manager/rest_json.h)
// on made-up wire values: what docs/api.md promises, the placement's order,
// and output tails that stay valid UTF-8.
#include "manager/rest_json.h"

#include <gtest/gtest.h>

namespace flotilla::manager {
namespace {

TEST(RestJsonTest, ANodeShowsRegionResourcesTrustIsolationPoolsAndCheckpoint) {
  v1::HypervisorNode n;
  n.set_id("n1");
  (*n.mutable_labels())["region"] = "eu-west";
  n.set_status(v1::NODE_ONLINE);
  n.mutable_resources()->mutable_capacity()->set_cpu_millis(4000);
  n.mutable_resources()->mutable_available()->set_cpu_millis(1500);
  n.mutable_security()->set_trust_level(7);
  n.mutable_security()->set_isolation("linux");
  n.mutable_microvm()->set_available(true);
  n.mutable_checkpoint()->set_state(v1::CHECKPOINT_AVAILABLE);
  auto* pool = n.add_pools();
  pool->set_template_name("python");
  pool->set_idle(2);
  pool->set_hit_rate(0.75);

  nlohmann::json j = NodeToJson(n);
  EXPECT_EQ(j["region"], "eu-west");
  EXPECT_EQ(j["zone"], "");
  EXPECT_EQ(j["status"], "online");
  EXPECT_EQ(j["capacity"]["cpu_millis"], 4000);
  EXPECT_EQ(j["free"]["cpu_millis"], 1500);
  EXPECT_EQ(j["trust"], 7);
  EXPECT_EQ(j["isolation"], nlohmann::json({"linux", "microvm"}));
  EXPECT_EQ(j["checkpoint"]["state"], "available");
  ASSERT_EQ(j["warm_pools"].size(), 1u);
  EXPECT_EQ(j["warm_pools"][0]["template"], "python");
  EXPECT_EQ(j["warm_pools"][0]["hit_rate"], 0.75);
}

TEST(RestJsonTest, PlacementListsTheChosenNodeFirstThenFeasibleByScoreThenRejected) {
  v1::Execution e;
  e.set_id("acme:job1");
  e.set_state(v1::EXECUTION_RUNNING);
  e.set_node_id("b");
  v1::Placement* p = e.mutable_placement();
  p->set_node_id("b");
  auto add = [p](const std::string& node, bool feasible, double score) {
    v1::CandidateScore* c = p->add_candidates();
    c->set_node_id(node);
    c->set_feasible(feasible);
    c->set_score(score);
    (*c->mutable_parts())["cpu"] = score / 2;
    if (!feasible) c->set_rejected_because("trust");
  };
  add("r", false, 0);
  add("a", true, 80);  // scored higher, but the bid or a preemption chose b
  add("c", true, 90);
  add("b", true, 70);

  nlohmann::json j = ExecutionToJson(e, 1024);
  EXPECT_EQ(j["state"], "running");
  std::vector<std::string> order;
  for (const auto& c : j["placement"]["candidates"]) order.push_back(c["node"]);
  EXPECT_EQ(order, (std::vector<std::string>{"b", "c", "a", "r"}));
  EXPECT_EQ(j["placement"]["candidates"][0]["parts"]["cpu"], 35.0);
  EXPECT_EQ(j["placement"]["candidates"][3]["rejected_because"], "trust");
  EXPECT_FALSE(j.contains("result"));
}

TEST(RestJsonTest, OutputTailsKeepTheEndAndCutAtACharacterBoundary) {
  v1::Execution e;
  e.set_state(v1::EXECUTION_SUCCEEDED);
  e.mutable_result()->set_termination(v1::TERMINATION_EXITED);
  e.mutable_result()->set_stdout("abc\xc3\xa9z");  // "abcéz": é is two bytes
  nlohmann::json j = ExecutionToJson(e, 2);
  EXPECT_EQ(j["output"]["stdout_tail"], "z") << "half of é is dropped, not sent";
  EXPECT_TRUE(j["output"]["truncated"].get<bool>());
  EXPECT_EQ(j["output"]["stdout_bytes"], 6);
  EXPECT_EQ(ExecutionToJson(e, 3)["output"]["stdout_tail"], "\xc3\xa9z");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["result"]["termination"], "exited");
}

}  // namespace
}  // namespace flotilla::manager
