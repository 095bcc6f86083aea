// A real manager and real agents on loopback: the path of one execution,
// end to end, and at volume.
#include <gtest/gtest.h>
#include <httplib.h>

#include <set>

#include "support/federation_harness.h"
#include "support/manager_http.h"

namespace flotilla::testing {
namespace {

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.StartManager();
    h_.StartAgent({.id = "eu", .region = "eu-west", .trust = 3, .data = {{"climate", 2ll << 30}}});
    h_.StartAgent({.id = "us", .region = "us-east", .trust = 5, .data = {{"genomes", 3ll << 30}}});
    h_.StartAgent({.id = "ap", .region = "ap-south", .trust = 8});
    ASSERT_TRUE(h_.WaitOnline(3)) << h_.ReadLog("manager.log");
  }
  FederationHarness h_;
};

TEST_F(FederationTest, RunsTwoHundredTasksEachExactlyOnce) {
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    auto r = FederationHarness::Shell("echo task-$FLOTILLA_EXECUTION_ID on $FLOTILLA_NODE_ID");
    r.set_request_id("t" + std::to_string(i));
    v1::SubmitResponse resp;
    ASSERT_TRUE(h_.Submit(r, &resp).ok());
    ids.push_back(resp.execution().id());
  }
  auto done = h_.WaitAllDone(ids, std::chrono::seconds(120));
  ASSERT_EQ(done.size(), ids.size());
  std::set<std::string> nodes;
  for (const auto& [id, e] : done) {
    ASSERT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id << ": " << e.error();
    EXPECT_EQ(e.attempt(), 1u) << id;
    EXPECT_EQ(e.result().stdout(), "task-" + id + " on " + e.node_id() + "\n");
    nodes.insert(e.node_id());
  }
  EXPECT_GE(nodes.size(), 2u) << "200 tasks should not all land on one node";
}

TEST_F(FederationTest, PlacesByDataLocalityAndTrust) {
  auto local = FederationHarness::Command({"true"});
  local.mutable_dependencies()->add_data_keys("genomes");
  auto trusted = FederationHarness::Command({"true"});
  trusted.mutable_security()->set_min_trust_level(7);
  v1::SubmitResponse a, b;
  ASSERT_TRUE(h_.Submit(local, &a).ok());
  ASSERT_TRUE(h_.Submit(trusted, &b).ok());
  auto done = h_.WaitAllDone({a.execution().id(), b.execution().id()}, std::chrono::seconds(30));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[a.execution().id()].node_id(), "us");
  const auto& placed = done[b.execution().id()];
  EXPECT_EQ(placed.node_id(), "ap");
  int rejected = 0;
  for (const auto& c : placed.placement().candidates()) {
    if (!c.feasible()) {
      ++rejected;
      EXPECT_NE(c.rejected_because().find("trust"), std::string::npos) << c.rejected_because();
    }
  }
  EXPECT_EQ(rejected, 2);
}

TEST_F(FederationTest, WatchStreamsOutputBeforeTheEnd) {
  auto r = FederationHarness::Shell("echo first; sleep 1; echo second");
  v1::SubmitResponse resp;
  ASSERT_TRUE(h_.Submit(r, &resp).ok());
  v1::WatchRequest req;
  req.set_execution_id(resp.execution().id());
  req.set_output(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = h_.stub()->Watch(&ctx, req);
  v1::WatchEvent ev;
  std::string streamed;
  bool saw_running = false, first_before_end = false;
  v1::Execution final;
  while (reader->Read(&ev)) {
    if (ev.state() == v1::EXECUTION_RUNNING) saw_running = true;
    if (ev.has_output()) {
      streamed += ev.output().data();
      if (streamed == "first\n") first_before_end = true;
    }
    if (ev.has_execution()) final = ev.execution();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(saw_running);
  EXPECT_TRUE(first_before_end) << "output arrived only at the end: '" << streamed << "'";
  EXPECT_EQ(final.state(), v1::EXECUTION_SUCCEEDED);
  EXPECT_EQ(final.result().stdout(), "first\nsecond\n");
}

TEST_F(FederationTest, CancelStopsARunningExecution) {
  v1::SubmitResponse resp;
  ASSERT_TRUE(h_.Submit(FederationHarness::Command({"sleep", "30"}), &resp).ok());
  const std::string id = resp.execution().id();
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(10), [&] {
    v1::Execution e;
    return h_.Get(id, &e).ok() && e.state() == v1::EXECUTION_RUNNING;
  }));
  v1::CancelResponse cancelled;
  ASSERT_TRUE(h_.Cancel(id, &cancelled).ok());
  auto done = h_.WaitAllDone({id}, std::chrono::seconds(10));
  ASSERT_EQ(done.size(), 1u) << id << "\nMANAGER\n" << h_.ReadLog("manager.log") << "\nAGENTS\n" << h_.ReadLog("eu.log") << h_.ReadLog("us.log") << h_.ReadLog("ap.log");
  EXPECT_EQ(done[id].state(), v1::EXECUTION_CANCELLED);
  EXPECT_LT(done[id].result().wall_time_us(), 10'000'000);
}

TEST_F(FederationTest, BadInputGetsAClearError) {
  v1::SubmitResponse resp;
  auto unknown = FederationHarness::Shell("x");
  unknown.mutable_code()->set_runtime("ruby");
  grpc::Status st = h_.Submit(unknown, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("unknown runtime 'ruby'"), std::string::npos);

  auto huge = FederationHarness::Command({"true"});
  huge.mutable_resources()->set_memory_bytes(1ll << 50);
  st = h_.Submit(huge, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(st.error_message().find("no node can ever run this"), std::string::npos)
      << st.error_message();

  auto big = FederationHarness::Command({"true"});
  big.set_stdin(std::string(5 << 20, 'x'));
  st = h_.Submit(big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("max_request_bytes"), std::string::npos) << st.error_message();

  v1::Execution e;
  st = h_.Get("ex-nope", &e);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(FederationTest, ServesHealthAndMetrics) {
  v1::SubmitResponse resp;
  ASSERT_TRUE(h_.Submit(FederationHarness::Command({"true"}), &resp).ok());
  ASSERT_EQ(h_.WaitAllDone({resp.execution().id()}, std::chrono::seconds(10)).size(), 1u);
  httplib::Client http = ManagerHttp(h_);
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("flotilla_nodes{status=\"online\"} 3"), std::string::npos);
  EXPECT_NE(metrics->body.find("flotilla_executions_total{outcome=\"succeeded\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("flotilla_end_to_end_latency_seconds_count 1"), std::string::npos);
}

}  // namespace
}  // namespace flotilla::testing
