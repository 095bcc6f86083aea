// Tests of the Manager's logic (src/manager/manager.cc) over the real SQLite
// Store and a fake AgentClientFactory: validation, placement, dispatch,
// results, leases, reconciliation with agents' reports, cancel, watch,
// recovery after a restart, and metrics.
//
// No background threads: Start() is never called. Time is driven with
// DispatchOnceForTest() and CheckLeasesForTest(), a 50 ms lease and short
// sleeps where a lease or a grace period must run out.

#include "manager/manager.h"
#include "unit/manager/manager_fixture.h"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/agent_client.h"
#include "manager/config.h"
#include "spdlog/spdlog.h"
#include "store/store.h"

namespace flotilla::manager {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// ------------------------------------------------------------- validation

TEST_F(ManagerTest, SubmitRejectsEmptyCode) {
  v1::ExecutionRequest r;
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("code is empty"));
  EXPECT_THAT(resp.status().message(), HasSubstr("argv"));
}

TEST_F(ManagerTest, SubmitRejectsBothArgvAndSource) {
  v1::ExecutionRequest r = Shell();
  r.mutable_code()->add_argv("/bin/true");
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("both argv and source"));
}

TEST_F(ManagerTest, SubmitRejectsUnknownRuntimeAndListsKnownOnes) {
  v1::ExecutionRequest r = Shell("puts 1");
  r.mutable_code()->set_runtime("ruby");
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("unknown runtime 'ruby'"));
  EXPECT_THAT(resp.status().message(), HasSubstr("python3"));
  EXPECT_THAT(resp.status().message(), HasSubstr("shell"));
}

TEST_F(ManagerTest, SubmitRejectsPriorityOutOfRange) {
  for (int priority : {-1, 101}) {
    v1::ExecutionRequest r = Shell();
    r.set_priority(priority);
    absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
    ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument) << priority;
    EXPECT_THAT(resp.status().message(), HasSubstr("priority"));
    EXPECT_THAT(resp.status().message(), HasSubstr("0 (lowest) to 100"));
  }
  v1::ExecutionRequest edge = Shell();
  edge.set_priority(100);
  EXPECT_TRUE(Submit(edge).ok());
}

TEST_F(ManagerTest, SubmitRejectsNegativeResources) {
  v1::ExecutionRequest r = Shell();
  r.mutable_resources()->set_memory_bytes(-1);
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("must not be negative"));
}

TEST_F(ManagerTest, SubmitRejectsTimeoutAboveMax) {
  config_.max_timeout_ms = 60'000;
  v1::ExecutionRequest r = Shell();
  r.set_timeout_ms(60'001);
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("timeout_ms 60001"));
  EXPECT_THAT(resp.status().message(), HasSubstr("max_timeout_ms 60000"));
}

TEST_F(ManagerTest, SubmitRejectsBadRequestId) {
  for (const std::string& id :
       std::vector<std::string>{"has space", "a/b", std::string(129, 'x')}) {
    v1::ExecutionRequest r = Shell();
    r.set_request_id(id);
    absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
    ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(resp.status().message(), HasSubstr("request_id"));
    EXPECT_THAT(resp.status().message(), HasSubstr("[A-Za-z0-9._:-]"));
  }
}

TEST_F(ManagerTest, SubmitRejectsFilePathsOutsideTheWorkingDirectory) {
  for (const std::string path : {"../x", "a/../../b", "a/..", "..", "/etc/passwd", ""}) {
    v1::ExecutionRequest r = Shell();
    r.mutable_dependencies()->add_files()->set_path(path);
    absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
    ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument) << path;
    EXPECT_THAT(resp.status().message(), HasSubstr("must be relative"));
    EXPECT_THAT(resp.status().message(), HasSubstr("'" + path + "'"));
  }
  // Dots inside a name are not a parent reference.
  v1::ExecutionRequest ok = Shell();
  ok.mutable_dependencies()->add_files()->set_path("..hidden/a..b/c.txt");
  EXPECT_TRUE(Submit(ok).ok());
}

TEST_F(ManagerTest, SubmitRejectsOversizedRequestNamingTheLimit) {
  config_.max_request_bytes = 1024;
  v1::ExecutionRequest r = Shell();
  r.set_stdin(std::string(4096, 'x'));
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("at most 1024"));
  EXPECT_THAT(resp.status().message(), HasSubstr("max_request_bytes"));
}

TEST_F(ManagerTest, SubmitRejectsDemandNoNodeCanEverMeet) {
  Register(NodeSpec("a", /*trust=*/3, /*cpu_millis=*/4000));
  Register(NodeSpec("b", /*trust=*/4, /*cpu_millis=*/2000));

  v1::ExecutionRequest cpu = Shell();
  cpu.mutable_resources()->set_cpu_millis(64000);
  absl::StatusOr<v1::SubmitResponse> resp = Submit(cpu);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(resp.status().message(), HasSubstr("64000m"));
  EXPECT_THAT(resp.status().message(), HasSubstr("4000m"));

  v1::ExecutionRequest trust = Shell();
  trust.mutable_security()->set_min_trust_level(8);
  resp = Submit(trust);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(resp.status().message(), HasSubstr("trust 8"));
  EXPECT_THAT(resp.status().message(), HasSubstr("has 4"));

  // Neither was recorded.
  absl::StatusOr<std::vector<v1::Execution>> all = mgr().ListExecutions({});
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(*all, IsEmpty());
}

TEST_F(ManagerTest, SubmitWithNoNodesIsQueued) {
  v1::ExecutionRequest r = Shell();
  r.mutable_resources()->set_cpu_millis(64000);
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->execution().state(), v1::EXECUTION_QUEUED);
  EXPECT_FALSE(resp->already_existed());
  EXPECT_THAT(resp->execution().id(), HasSubstr("ex-"));

  mgr().DispatchOnceForTest();
  v1::Execution e = GetOk(resp->execution().id());
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_EQ(e.attempt(), 0u);
  EXPECT_THAT(e.placement().reason(), HasSubstr("no node"));
  EXPECT_THAT(agents_->tasks(), IsEmpty());
}

TEST_F(ManagerTest, SubmitAppliesDefaultsDurably) {
  v1::ExecutionRequest r = Shell();
  r.set_request_id("job-1");
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_TRUE(resp.ok()) << resp.status();
  const v1::ExecutionRequest& got = resp->execution().request();
  EXPECT_EQ(resp->execution().id(), "job-1");
  EXPECT_EQ(got.resources().cpu_millis(), 100);
  EXPECT_EQ(got.resources().memory_bytes(), 64ll << 20);
  EXPECT_EQ(got.timeout_ms(), 300'000);
  EXPECT_EQ(got.user_id(), "anonymous");

  // A second manager on the same file (the first one still open, as after a
  // crash that left its connection behind) sees it queued, with its defaults.
  std::unique_ptr<Manager> second = NewManager();
  ASSERT_TRUE(second->Recover().ok());
  absl::StatusOr<v1::Execution> e = second->Get("job-1");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->state(), v1::EXECUTION_QUEUED);
  EXPECT_EQ(e->request().resources().cpu_millis(), 100);
  EXPECT_EQ(e->request().resources().memory_bytes(), 64ll << 20);
  EXPECT_EQ(e->request().timeout_ms(), 300'000);
  EXPECT_THAT(second->RenderMetrics(), HasSubstr("flotilla_queue_depth 1\n"));
}

TEST_F(ManagerTest, SubmitIsIdempotentByRequestId) {
  v1::ExecutionRequest r = Shell();
  r.set_request_id("same");
  absl::StatusOr<v1::SubmitResponse> first = Submit(r);
  absl::StatusOr<v1::SubmitResponse> again = Submit(r);
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_FALSE(first->already_existed());
  EXPECT_TRUE(again->already_existed());
  EXPECT_EQ(again->execution().id(), "same");

  // Also once it has finished: the stored execution comes back.
  Register(NodeSpec("a"));
  mgr().DispatchOnceForTest();
  ASSERT_EQ(SendResult("a", Exited("same", 1, 0)), v1::RESULT_ACCEPTED);
  absl::StatusOr<v1::SubmitResponse> late = Submit(r);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_TRUE(late->already_existed());
  EXPECT_EQ(late->execution().state(), v1::EXECUTION_SUCCEEDED);
  EXPECT_THAT(agents_->tasks(), SizeIs(1));
}

// -------------------------------------------------------------- placement

TEST_F(ManagerTest, PlacementPrefersTheNodeHoldingTheData) {
  Register(NodeSpec("a"));
  v1::HypervisorNode b = NodeSpec("b");
  auto* ds = b.mutable_data()->add_data_sets();
  ds->set_key("genome");
  ds->set_size_bytes(kGiB);
  Register(b);

  v1::ExecutionRequest r = Shell();
  r.mutable_dependencies()->add_data_keys("genome");
  const std::string id = SubmitOk(r);
  mgr().DispatchOnceForTest();

  std::vector<FakeAgents::TaskCall> tasks = agents_->tasks();
  ASSERT_THAT(tasks, SizeIs(1));
  EXPECT_EQ(tasks[0].address, AddressOf("b"));
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.node_id(), "b");
  EXPECT_EQ(e.placement().node_id(), "b");
  EXPECT_THAT(e.placement().reason(), HasSubstr("holds 100% of the input data"));
  ASSERT_EQ(e.placement().candidates_size(), 2);
  for (const v1::CandidateScore& c : e.placement().candidates()) {
    EXPECT_TRUE(c.feasible()) << c.node_id();
    ASSERT_TRUE(c.parts().count("locality")) << c.node_id();
    EXPECT_EQ(c.parts().at("locality") > 0, c.node_id() == "b") << c.node_id();
  }
  EXPECT_GT(e.placement().score(), 0);
}

TEST_F(ManagerTest, PlacementSkipsNodesBelowTheMinimumTrust) {
  Register(NodeSpec("a", /*trust=*/2));  // wins ties on id, so trust must decide
  Register(NodeSpec("b", /*trust=*/8));
  v1::ExecutionRequest r = Shell();
  r.mutable_security()->set_min_trust_level(5);
  const std::string id = SubmitOk(r);
  mgr().DispatchOnceForTest();

  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.node_id(), "b");
  ASSERT_EQ(e.placement().candidates_size(), 2);
  const v1::CandidateScore& a = e.placement().candidates(0);
  EXPECT_EQ(a.node_id(), "a");
  EXPECT_FALSE(a.feasible());
  EXPECT_THAT(a.rejected_because(), HasSubstr("trust level 2 < required 5"));
  ASSERT_THAT(agents_->tasks(), SizeIs(1));
  EXPECT_EQ(agents_->tasks()[0].address, AddressOf("b"));
}

TEST_F(ManagerTest, PlacementWaitsWhenNoNodeHasRoomNow) {
  Register(NodeSpec("a", 5, /*cpu_millis=*/250));
  const std::string first = SubmitOk();   // 100m
  const std::string second = SubmitOk();  // 100m
  const std::string third = SubmitOk();   // 100m: does not fit beside the others
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(first).state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(GetOk(second).state(), v1::EXECUTION_ASSIGNED);
  v1::Execution waiting = GetOk(third);
  EXPECT_EQ(waiting.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(waiting.placement().reason(), HasSubstr("needs 100m cpu, 50m free"));

  // A result frees the reservation; the next round places the third.
  ASSERT_EQ(SendResult("a", Exited(first, 1, 0)), v1::RESULT_ACCEPTED);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(third).state(), v1::EXECUTION_ASSIGNED);
}

// --------------------------------------------------------------- dispatch

TEST_F(ManagerTest, DispatchSendsAttemptOneToTheChosenNode) {
  const uint64_t epoch = Register(NodeSpec("a"));
  v1::ExecutionRequest r = Shell("echo dispatched");
  const std::string id = SubmitOk(r);
  mgr().DispatchOnceForTest();

  std::vector<FakeAgents::TaskCall> tasks = agents_->tasks();
  ASSERT_THAT(tasks, SizeIs(1));
  EXPECT_EQ(tasks[0].address, AddressOf("a"));
  EXPECT_EQ(tasks[0].request.execution_id(), id);
  EXPECT_EQ(tasks[0].request.attempt(), 1u);
  EXPECT_EQ(tasks[0].request.node_epoch(), epoch);
  EXPECT_EQ(tasks[0].request.request().code().source(), "echo dispatched");
  EXPECT_EQ(tasks[0].request.request().resources().cpu_millis(), 100);

  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(e.attempt(), 1u);
  EXPECT_EQ(e.node_id(), "a");

  // Nothing is sent twice.
  mgr().DispatchOnceForTest();
  EXPECT_THAT(agents_->tasks(), SizeIs(1));
}

TEST_F(ManagerTest, UnavailableDispatchRequeuesAndTheNextUsesAttemptTwo) {
  Register(NodeSpec("a"));
  Register(NodeSpec("b", /*trust=*/6));  // over-qualified: a matches better
  agents_->ReplyTo(AddressOf("a"), absl::UnavailableError("connection refused"));
  const std::string id = SubmitOk();

  mgr().DispatchOnceForTest();  // to a, which fails
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_EQ(e.attempt(), 1u);
  EXPECT_THAT(e.error(), HasSubstr("connection refused"));

  mgr().DispatchOnceForTest();  // a is suspect for a while: b
  std::vector<FakeAgents::TaskCall> tasks = agents_->tasks();
  ASSERT_THAT(tasks, SizeIs(2));
  EXPECT_EQ(tasks[0].address, AddressOf("a"));
  EXPECT_EQ(tasks[0].request.attempt(), 1u);
  EXPECT_EQ(tasks[1].address, AddressOf("b"));
  EXPECT_EQ(tasks[1].request.attempt(), 2u);
  e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(e.attempt(), 2u);
  EXPECT_EQ(e.node_id(), "b");
}

TEST_F(ManagerTest, RepeatedRefusalFailsTheExecution) {
  Register(NodeSpec("a"));
  agents_->ReplyTo(AddressOf("a"), absl::InvalidArgumentError("sandbox kind not supported"));
  const std::string id = SubmitOk();
  for (int i = 0; i < 3; ++i) mgr().DispatchOnceForTest();
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_FAILED);
  EXPECT_EQ(e.attempt(), 3u);
  EXPECT_THAT(e.error(), HasSubstr("refused it: sandbox kind not supported"));
}

TEST_F(ManagerTest, LateDispatchFailureOfAnOldAttemptIsIgnored) {
  Register(NodeSpec("a"));
  agents_->HoldFor(AddressOf("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();  // attempt 1, held
  Register(NodeSpec("a"));      // restarted without it: re-queued
  mgr().DispatchOnceForTest();  // attempt 2, held
  ASSERT_EQ(GetOk(id).attempt(), 2u);

  agents_->CompleteHeld(0, absl::UnavailableError("old channel broke"));
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(e.attempt(), 2u);

  agents_->CompleteHeld(1, absl::OkStatus());
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_ASSIGNED);
}

// ---------------------------------------------------------------- results

TEST_F(ManagerTest, ResultsEndTheExecutionByTermination) {
  Register(NodeSpec("a"));
  struct Case {
    v1::ExecutionResult (*result)(const std::string&);
    v1::ExecutionState want;
  };
  const Case cases[] = {
      {[](const std::string& id) { return Exited(id, 1, 0); }, v1::EXECUTION_SUCCEEDED},
      {[](const std::string& id) { return Exited(id, 1, 3); }, v1::EXECUTION_FAILED},
      {[](const std::string& id) { return Ended(id, 1, v1::TERMINATION_TIMED_OUT); },
       v1::EXECUTION_TIMED_OUT},
      {[](const std::string& id) { return Ended(id, 1, v1::TERMINATION_CANCELLED); },
       v1::EXECUTION_CANCELLED},
      {[](const std::string& id) { return Ended(id, 1, v1::TERMINATION_SIGNALED); },
       v1::EXECUTION_FAILED},
      {[](const std::string& id) { return Ended(id, 1, v1::TERMINATION_START_FAILED); },
       v1::EXECUTION_FAILED},
  };
  for (const Case& c : cases) {
    const std::string id = SubmitOk();
    mgr().DispatchOnceForTest();
    ASSERT_EQ(GetOk(id).state(), v1::EXECUTION_ASSIGNED);
    EXPECT_EQ(SendResult("a", c.result(id)), v1::RESULT_ACCEPTED);
    v1::Execution e = GetOk(id);
    EXPECT_EQ(e.state(), c.want) << v1::ExecutionState_Name(c.want);
    EXPECT_EQ(e.result().stdout(), "out");
    EXPECT_EQ(e.result().node_id(), "a");
    EXPECT_GT(e.finished_unix_ms(), 0);

    // The agent retries (its confirmation was lost): a duplicate, no change.
    EXPECT_EQ(SendResult("a", c.result(id)), v1::RESULT_DUPLICATE);
    EXPECT_EQ(GetOk(id).state(), c.want);
  }
}

TEST_F(ManagerTest, ResultsFromAnotherNodeOrAnOlderAttemptAreStale) {
  Register(NodeSpec("a"));
  Register(NodeSpec("b", /*trust=*/6));  // over-qualified: a matches better
  v1::HypervisorNode only_a = NodeSpec("a");
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_EQ(GetOk(id).node_id(), "a");

  EXPECT_EQ(SendResult("b", Exited(id, 1, 0)), v1::RESULT_STALE);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_ASSIGNED);

  Register(only_a);  // a restarted without it: attempt 2 follows
  mgr().DispatchOnceForTest();
  v1::Execution e = GetOk(id);
  ASSERT_EQ(e.attempt(), 2u);
  const std::string node = e.node_id();
  EXPECT_EQ(SendResult(node, Exited(id, 1, 0)), v1::RESULT_STALE);
  EXPECT_EQ(SendResult(node, Exited(id, 2, 7)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_FAILED);
  // Once finished, results of other attempts or nodes are still stale.
  EXPECT_EQ(SendResult(node, Exited(id, 1, 0)), v1::RESULT_STALE);
  EXPECT_EQ(SendResult(node == "a" ? "b" : "a", Exited(id, 2, 0)), v1::RESULT_STALE);
  EXPECT_EQ(SendResult("a", Exited("never-submitted", 1, 0)), v1::RESULT_STALE);
  EXPECT_THAT(mgr().RenderMetrics(), HasSubstr("flotilla_stale_results_total 5\n"));
}

TEST_F(ManagerTest, OutputAndStartedMarkItRunningAndGetShowsOutputSoFar) {
  const uint64_t epoch = Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();

  v1::SendOutputRequest started;
  started.set_node_id("a");
  *started.add_started() = Task(id, 1);
  mgr().SendOutput(started);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_RUNNING);

  Output("a", id, 1, v1::OUTPUT_STDOUT, 0, "par");
  Output("a", id, 1, v1::OUTPUT_STDOUT, 3, "tial");
  Output("a", id, 1, v1::OUTPUT_STDOUT, 0, "par");   // a repeat
  Output("a", id, 1, v1::OUTPUT_STDOUT, 99, "gap");  // after a lost batch
  Output("b", id, 1, v1::OUTPUT_STDOUT, 7, "other node");
  Output("a", id, 1, v1::OUTPUT_STDERR, 0, "warn");
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.result().stdout(), "partial");
  EXPECT_EQ(e.result().stderr(), "warn");

  // Running is reported also by the heartbeat, which keeps it.
  absl::StatusOr<v1::ReportStatusResponse> report = Report("a", epoch, {Task(id, 1)});
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->cancel(), IsEmpty());
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_RUNNING);
}

// ----------------------------------------------------------------- leases

TEST_F(ManagerTest, LostNodeIsOfflineAndItsExecutionMovesOn) {
  const uint64_t epoch_a = Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_EQ(GetOk(id).node_id(), "a");
  const uint64_t epoch_b = Register(NodeSpec("b"));

  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(Report("b", epoch_b).ok());  // b keeps its lease; a is silent
  mgr().CheckLeasesForTest();

  std::vector<v1::HypervisorNode> nodes = mgr().ListNodes();
  ASSERT_THAT(nodes, SizeIs(2));
  EXPECT_EQ(nodes[0].id(), "a");
  EXPECT_EQ(nodes[0].status(), v1::NODE_OFFLINE);
  EXPECT_EQ(nodes[1].status(), v1::NODE_ONLINE);
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(e.error(), HasSubstr("node a was lost"));

  mgr().DispatchOnceForTest();
  e = GetOk(id);
  EXPECT_EQ(e.node_id(), "b");
  EXPECT_EQ(e.attempt(), 2u);
  ASSERT_THAT(agents_->tasks(), SizeIs(2));
  EXPECT_EQ(agents_->tasks()[1].address, AddressOf("b"));
  EXPECT_EQ(agents_->tasks()[1].request.attempt(), 2u);

  // The lost node comes back with its late result, and its heartbeat.
  EXPECT_EQ(SendResult("a", Exited(id, 1, 0)), v1::RESULT_STALE);
  absl::StatusOr<v1::ReportStatusResponse> report = Report("a", epoch_a, {Task(id, 1)});
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(report.status().message(), HasSubstr("register again"));

  EXPECT_EQ(SendResult("b", Exited(id, 2, 0)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_SUCCEEDED);
  EXPECT_THAT(mgr().RenderMetrics(), HasSubstr("flotilla_executions_requeued_total 1\n"));
}

TEST_F(ManagerTest, ReportStatusFromUnknownNodeOrOldEpochIsRefused) {
  absl::StatusOr<v1::ReportStatusResponse> r = Report("ghost", 1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("register first"));

  const uint64_t first = Register(NodeSpec("a"));
  const uint64_t second = Register(NodeSpec("a"));
  EXPECT_EQ(second, first + 1);
  EXPECT_EQ(Report("a", first).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Report("a", second).ok());
}

TEST_F(ManagerTest, RegisterNodeRejectsBadSpecs) {
  v1::RegisterNodeRequest req;
  *req.mutable_node() = NodeSpec("bad id");
  EXPECT_EQ(mgr().RegisterNode(req).status().code(), absl::StatusCode::kInvalidArgument);
  *req.mutable_node() = NodeSpec("a", 5, /*cpu_millis=*/0);
  absl::StatusOr<v1::RegisterNodeResponse> resp = mgr().RegisterNode(req);
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(resp.status().message(), HasSubstr("no capacity"));
  *req.mutable_node() = NodeSpec("a", /*trust=*/11);
  EXPECT_EQ(mgr().RegisterNode(req).status().code(), absl::StatusCode::kInvalidArgument);
  *req.mutable_node() = NodeSpec("a");
  resp = mgr().RegisterNode(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->lease_timeout_ms(), 50);
  EXPECT_EQ(resp->heartbeat_interval_ms(), 10);
}

// --------------------------------------------------------- reconciliation

TEST_F(ManagerTest, ReportStatusCancelsTasksOfOldAttempts) {
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  const std::string gone = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_TRUE(mgr().Cancel(gone).ok());
  ASSERT_EQ(SendResult("a", Ended(gone, 1, v1::TERMINATION_CANCELLED)), v1::RESULT_ACCEPTED);
  const uint64_t epoch = Register(NodeSpec("a"), {Task(gone, 1)});  // without `id`
  ASSERT_EQ(GetOk(id).state(), v1::EXECUTION_QUEUED);
  mgr().DispatchOnceForTest();
  ASSERT_EQ(GetOk(id).attempt(), 2u);

  absl::StatusOr<v1::ReportStatusResponse> report =
      Report("a", epoch, {Task(id, 1), Task(id, 2), Task(gone, 1), Task("other", 4, true)});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cancel_size(), 2);
  EXPECT_EQ(report->cancel(0).execution_id(), id);
  EXPECT_EQ(report->cancel(0).attempt(), 1u);
  EXPECT_EQ(report->cancel(1).execution_id(), gone);
  // The current attempt was reported: it runs.
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_RUNNING);
}

TEST_F(ManagerTest, AssignedExecutionTheNodeNeverReportsIsRequeuedAfterGrace) {
  config_.dispatch_grace = std::chrono::milliseconds(300);
  const uint64_t epoch = Register(NodeSpec("a"));
  const std::string lost = SubmitOk();
  const std::string kept = SubmitOk();
  mgr().DispatchOnceForTest();

  // Within the grace the agent may simply not have it yet.
  ASSERT_TRUE(Report("a", epoch, {Task(kept, 1)}).ok());
  EXPECT_EQ(GetOk(lost).state(), v1::EXECUTION_ASSIGNED);

  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  ASSERT_TRUE(Report("a", epoch, {Task(kept, 1)}).ok());
  v1::Execution e = GetOk(lost);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(e.error(), HasSubstr("never reported attempt 1"));
  EXPECT_EQ(GetOk(kept).state(), v1::EXECUTION_RUNNING);

  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(lost).attempt(), 2u);
}

TEST_F(ManagerTest, ReRegisteringWithoutTheTaskRequeuesAtOnce) {
  Register(NodeSpec("a"));
  const std::string dropped = SubmitOk();
  const std::string held = SubmitOk();
  mgr().DispatchOnceForTest();

  Register(NodeSpec("a"), {Task(held, 1)});
  v1::Execution e = GetOk(dropped);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(e.error(), HasSubstr("restarted without it"));
  e = GetOk(held);
  EXPECT_EQ(e.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(e.attempt(), 1u);
  EXPECT_EQ(SendResult("a", Exited(held, 1, 0)), v1::RESULT_ACCEPTED);
}

// ----------------------------------------------------------------- cancel

TEST_F(ManagerTest, CancelQueuedEndsItAtOnce) {
  const std::string id = SubmitOk();
  absl::StatusOr<v1::Execution> e = mgr().Cancel(id);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->state(), v1::EXECUTION_CANCELLED);
  EXPECT_TRUE(e->cancel_requested());
  EXPECT_THAT(e->error(), HasSubstr("before it started"));
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_CANCELLED);

  // It never reaches a node.
  Register(NodeSpec("a"));
  mgr().DispatchOnceForTest();
  EXPECT_THAT(agents_->tasks(), IsEmpty());
}

TEST_F(ManagerTest, CancelAssignedAsksTheNodeAndTheResultEndsIt) {
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();

  absl::StatusOr<v1::Execution> e = mgr().Cancel(id);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->state(), v1::EXECUTION_ASSIGNED);
  EXPECT_TRUE(e->cancel_requested());
  std::vector<FakeAgents::CancelCall> cancels = agents_->cancels();
  ASSERT_THAT(cancels, SizeIs(1));
  EXPECT_EQ(cancels[0].address, AddressOf("a"));
  EXPECT_EQ(cancels[0].request.execution_id(), id);
  EXPECT_EQ(cancels[0].request.attempt(), 1u);

  // Killed by the sandbox's signal, after a cancel: cancelled, not failed.
  EXPECT_EQ(SendResult("a", Ended(id, 1, v1::TERMINATION_SIGNALED)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_CANCELLED);
}

TEST_F(ManagerTest, ReportStatusRepeatsACancelTheAgentMissed) {
  // The CancelTask call can fail, or reach the agent before the task does;
  // the node's next report still has the task running: it is told again.
  const uint64_t epoch = Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  const std::string other = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_TRUE(mgr().Cancel(id).ok());

  absl::StatusOr<v1::ReportStatusResponse> report =
      Report("a", epoch, {Task(id, 1), Task(other, 1)});
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->cancel_size(), 1);
  EXPECT_EQ(report->cancel(0).execution_id(), id);
  EXPECT_EQ(report->cancel(0).attempt(), 1u);
  // Still the node's current attempt: its result is what ends it.
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.node_id(), "a");
  EXPECT_TRUE(e.cancel_requested());
  EXPECT_EQ(SendResult("a", Ended(id, 1, v1::TERMINATION_CANCELLED)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_CANCELLED);
}

TEST_F(ManagerTest, CancelRequestedThenNodeLostEndsCancelledNotRequeued) {
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_TRUE(mgr().Cancel(id).ok());

  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  mgr().CheckLeasesForTest();
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_CANCELLED);
  EXPECT_THAT(e.error(), HasSubstr("was lost"));
  mgr().DispatchOnceForTest();
  EXPECT_THAT(agents_->tasks(), SizeIs(1));
}

TEST_F(ManagerTest, CancelThenFailedDispatchEndsCancelled) {
  Register(NodeSpec("a"));
  agents_->HoldFor(AddressOf("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_TRUE(mgr().Cancel(id).ok());
  EXPECT_THAT(agents_->cancels(), SizeIs(1));

  agents_->CompleteHeld(0, absl::UnavailableError("connection reset"));
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_CANCELLED);
  EXPECT_THAT(e.error(), HasSubstr("connection reset"));
}

TEST_F(ManagerTest, CancelFinishedOrUnknownIsRefused) {
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_EQ(SendResult("a", Exited(id, 1, 0)), v1::RESULT_ACCEPTED);

  absl::StatusOr<v1::Execution> e = mgr().Cancel(id);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(e.status().message(), HasSubstr("already finished"));
  EXPECT_THAT(e.status().message(), HasSubstr("succeeded"));

  e = mgr().Cancel("no-such-id");
  EXPECT_EQ(e.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(e.status().message(), HasSubstr("no-such-id"));
  EXPECT_EQ(mgr().Get("no-such-id").status().code(), absl::StatusCode::kNotFound);
}

// ------------------------------------------------------------------ watch

// Events a Watch delivered, collected from its thread.
class EventLog {
 public:
  bool Add(const v1::WatchEvent& ev) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(ev);
    cv_.notify_all();
    return true;
  }
  // Waits (bounded) until `pred` holds over the events so far.
  bool WaitFor(const std::function<bool(const std::vector<v1::WatchEvent>&)>& pred) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(5), [&] { return pred(events_); });
  }
  std::vector<v1::WatchEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<v1::WatchEvent> events_;
};

std::string StreamText(const std::vector<v1::WatchEvent>& events, v1::OutputStream stream) {
  std::string text;
  for (const auto& ev : events) {
    if (!ev.has_output() || ev.output().stream() != stream) continue;
    EXPECT_EQ(ev.output().offset(), static_cast<int64_t>(text.size()));
    text += ev.output().data();
  }
  return text;
}

TEST_F(ManagerTest, WatchStreamsStatesOutputAndTheFinalExecution) {
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();

  EventLog log;
  std::atomic<bool> give_up{false};
  std::atomic<bool> finished{false};
  absl::Status watch_status = absl::UnknownError("not returned");
  std::thread watcher([&] {
    watch_status = mgr().Watch(
        id, /*with_output=*/true, [&](const v1::WatchEvent& ev) { return log.Add(ev); },
        [&] { return give_up.load(); });
    finished = true;
  });
  auto has_stdout = [&](const std::string& want) {
    return log.WaitFor([&](const auto& events) {
      std::string text;
      for (const auto& ev : events) {
        if (ev.has_output() && ev.output().stream() == v1::OUTPUT_STDOUT)
          text += ev.output().data();
      }
      return text == want;
    });
  };

  EXPECT_TRUE(log.WaitFor([](const auto& events) { return !events.empty(); }));
  v1::SendOutputRequest started;
  started.set_node_id("a");
  *started.add_started() = Task(id, 1);
  mgr().SendOutput(started);
  EXPECT_TRUE(log.WaitFor(
      [](const auto& events) { return events.back().state() == v1::EXECUTION_RUNNING; }));
  Output("a", id, 1, v1::OUTPUT_STDOUT, 0, "hello ");
  EXPECT_TRUE(has_stdout("hello "));
  Output("a", id, 1, v1::OUTPUT_STDOUT, 0, "hello ");  // a repeat, dropped
  Output("a", id, 1, v1::OUTPUT_STDOUT, 6, "world\n");
  EXPECT_TRUE(has_stdout("hello world\n"));
  Output("a", id, 1, v1::OUTPUT_STDERR, 0, "careful");
  EXPECT_TRUE(log.WaitFor([](const auto& events) {
    return events.back().has_output() && events.back().output().stream() == v1::OUTPUT_STDERR;
  }));

  v1::ExecutionResult result = Exited(id, 1, 0);
  result.set_stdout("hello world\n");
  ASSERT_EQ(SendResult("a", result), v1::RESULT_ACCEPTED);
  EXPECT_TRUE(log.WaitFor([](const auto& events) { return events.back().has_execution(); }));
  for (int i = 0; i < 500 && !finished; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  give_up = true;  // bounds the join if Watch did not return by itself
  watcher.join();
  EXPECT_TRUE(finished);
  EXPECT_TRUE(watch_status.ok()) << watch_status;

  std::vector<v1::WatchEvent> events = log.events();
  std::vector<v1::ExecutionState> states;
  for (const auto& ev : events) {
    if (!ev.has_output() && !ev.has_execution()) states.push_back(ev.state());
    EXPECT_EQ(ev.attempt(), 1u);
    EXPECT_EQ(ev.node_id(), "a");
  }
  EXPECT_THAT(states,
              ElementsAre(v1::EXECUTION_ASSIGNED, v1::EXECUTION_RUNNING, v1::EXECUTION_SUCCEEDED));
  EXPECT_EQ(StreamText(events, v1::OUTPUT_STDOUT), "hello world\n");
  EXPECT_EQ(StreamText(events, v1::OUTPUT_STDERR), "careful");
  const v1::WatchEvent& last = events.back();
  ASSERT_TRUE(last.has_execution());
  EXPECT_EQ(last.execution().id(), id);
  EXPECT_EQ(last.execution().state(), v1::EXECUTION_SUCCEEDED);
  EXPECT_EQ(last.execution().result().stdout(), "hello world\n");
}

TEST_F(ManagerTest, WatchOfAFinishedExecutionSendsOneFinalEvent) {
  const std::string id = SubmitOk();
  ASSERT_TRUE(mgr().Cancel(id).ok());
  std::vector<v1::WatchEvent> events;
  absl::Status st = mgr().Watch(
      id, true,
      [&](const v1::WatchEvent& ev) {
        events.push_back(ev);
        return true;
      },
      [] { return false; });
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].state(), v1::EXECUTION_CANCELLED);
  EXPECT_EQ(events[0].execution().id(), id);

  st = mgr().Watch(
      "missing", true, [](const v1::WatchEvent&) { return true; }, [] { return false; });
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------- recover

TEST_F(ManagerTest, RecoverKeepsAssignmentsAndDispatchesTheQueue) {
  const uint64_t epoch = Register(NodeSpec("a", 5, /*cpu_millis=*/250));
  const std::string assigned = SubmitOk();
  mgr().DispatchOnceForTest();
  const std::string queued = SubmitOk();
  const std::string no_room = SubmitOk();  // 3 x 100m > 250m
  ASSERT_EQ(GetOk(assigned).state(), v1::EXECUTION_ASSIGNED);
  mgr_.reset();  // the manager dies; the agent keeps running `assigned`
  agents_->Clear();

  ASSERT_TRUE(mgr().Recover().ok());
  v1::Execution a = GetOk(assigned);
  EXPECT_EQ(a.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(a.node_id(), "a");
  EXPECT_EQ(a.attempt(), 1u);
  EXPECT_EQ(a.placement().node_id(), "a");
  EXPECT_EQ(GetOk(queued).state(), v1::EXECUTION_QUEUED);
  std::vector<v1::HypervisorNode> nodes = mgr().ListNodes();
  ASSERT_THAT(nodes, SizeIs(1));
  EXPECT_EQ(nodes[0].status(), v1::NODE_ONLINE);
  EXPECT_EQ(nodes[0].epoch(), epoch);

  mgr().DispatchOnceForTest();
  std::vector<FakeAgents::TaskCall> tasks = agents_->tasks();
  ASSERT_THAT(tasks, SizeIs(1));  // `assigned` still holds its reservation
  EXPECT_EQ(tasks[0].request.execution_id(), queued);
  EXPECT_EQ(tasks[0].request.attempt(), 1u);
  EXPECT_EQ(GetOk(no_room).state(), v1::EXECUTION_QUEUED);

  // The node registered with the manager that died: its next report asks it
  // to register again (for a fresh migration key), and registering with what
  // it holds keeps both executions its own. Its result carries over.
  absl::Status report = Report("a", epoch, {Task(assigned, 1), Task(queued, 1)}).status();
  EXPECT_EQ(report.code(), absl::StatusCode::kFailedPrecondition) << report;
  EXPECT_THAT(std::string(report.message()), HasSubstr("register again"));
  const uint64_t again = Register(NodeSpec("a", 5, 250), {Task(assigned, 1), Task(queued, 1)});
  EXPECT_GT(again, epoch);
  ASSERT_TRUE(Report("a", again, {Task(assigned, 1), Task(queued, 1)}).ok());
  EXPECT_EQ(GetOk(queued).node_id(), "a");  // still its first attempt, on a
  EXPECT_EQ(GetOk(queued).attempt(), 1u);
  EXPECT_EQ(SendResult("a", Exited(assigned, 1, 0)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(GetOk(assigned).state(), v1::EXECUTION_SUCCEEDED);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(no_room).state(), v1::EXECUTION_ASSIGNED);
}

TEST_F(ManagerTest, RecoverRequeuesExecutionsOfLostNodesAfterTheLease) {
  config_.lease_timeout = std::chrono::milliseconds(300);  // "not yet" must hold
  Register(NodeSpec("a"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  mgr_.reset();

  ASSERT_TRUE(mgr().Recover().ok());
  mgr().CheckLeasesForTest();  // a fresh lease: not yet
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_ASSIGNED);
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  mgr().CheckLeasesForTest();
  EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_QUEUED);
}

TEST_F(ManagerTest, RecoverRequeuesExecutionsOfANodeStoredOffline) {
  // CheckLeases persists "offline" before it re-queues the node's
  // executions; a crash in between leaves assigned executions on an offline
  // node, which no lease check would ever look at again.
  const v1::HypervisorNode spec = NodeSpec("a");
  Register(spec);
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  mgr_.reset();
  {
    absl::StatusOr<std::unique_ptr<store::Store>> store =
        store::OpenSqliteStore(config_.db_path, store::Durability::kProcessCrash);
    ASSERT_TRUE(store.ok()) << store.status();
    store::NodeRecord rec{.id = "a",
                          .spec = spec.SerializeAsString(),
                          .status = model::NodeStatus::kOffline,
                          .epoch = 1};
    ASSERT_TRUE((*store)->UpsertNode(rec).ok());
  }

  ASSERT_TRUE(mgr().Recover().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  mgr().CheckLeasesForTest();
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_EQ(e.attempt(), 1u);

  Register(NodeSpec("b"));
  mgr().DispatchOnceForTest();
  e = GetOk(id);
  EXPECT_EQ(e.node_id(), "b");
  EXPECT_EQ(e.attempt(), 2u);
}

// ---------------------------------------------------------------- metrics

TEST_F(ManagerTest, RenderMetricsShowsNodesQueueAndHistograms) {
  Register(NodeSpec("a"));
  Register(NodeSpec("b"));
  const std::string id = SubmitOk();
  SubmitOk();
  std::string text = mgr().RenderMetrics();
  EXPECT_THAT(text, HasSubstr("flotilla_nodes{status=\"online\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_nodes{status=\"offline\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_queue_depth 2\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_executions_submitted_total 2\n"));

  mgr().DispatchOnceForTest();
  ASSERT_EQ(SendResult(GetOk(id).node_id(), Exited(id, 1, 0)), v1::RESULT_ACCEPTED);
  text = mgr().RenderMetrics();
  EXPECT_THAT(text, HasSubstr("flotilla_queue_depth 0\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_executions_running 1\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_executions_total{outcome=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE flotilla_placement_latency_seconds histogram\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_placement_latency_seconds_count 2\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_placement_latency_seconds_bucket{le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("flotilla_end_to_end_latency_seconds_count 1\n"));
}

}  // namespace
}  // namespace flotilla::manager

namespace flotilla::manager {
namespace {

// ------------------------------------------------- scheduler integration

TEST_F(ManagerTest, PreemptionEvictsLowerPriorityWorkAndRequeuesIt) {
  config_.preemption = true;
  Register(NodeSpec("n1", 5, 1000));
  v1::ExecutionRequest low = Shell("sleep 100");
  low.set_priority(10);
  low.mutable_resources()->set_cpu_millis(1000);
  const std::string low_id = SubmitOk(low);
  mgr().DispatchOnceForTest();
  ASSERT_EQ(GetOk(low_id).state(), v1::EXECUTION_ASSIGNED);

  v1::ExecutionRequest urgent = Shell("echo now");
  urgent.set_priority(90);
  urgent.mutable_resources()->set_cpu_millis(1000);
  const std::string urgent_id = SubmitOk(urgent);
  mgr().DispatchOnceForTest();

  v1::Execution u = GetOk(urgent_id);
  EXPECT_EQ(u.state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(u.node_id(), "n1");
  ASSERT_EQ(u.placement().preempted_size(), 1);
  EXPECT_EQ(u.placement().preempted(0), low_id);
  v1::Execution l = GetOk(low_id);
  EXPECT_EQ(l.state(), v1::EXECUTION_QUEUED);  // re-queued, not lost
  EXPECT_THAT(l.error(), HasSubstr("preempted"));
  bool cancelled = false;
  for (const auto& c : agents_->cancels()) cancelled |= c.request.execution_id() == low_id;
  EXPECT_TRUE(cancelled) << "the victim's agent must be told to stop it";
  // The victim's late result for attempt 1 is stale; it runs again later.
  EXPECT_EQ(SendResult("n1", Exited(low_id, 1, 0)), v1::RESULT_STALE);
  EXPECT_EQ(SendResult("n1", Exited(urgent_id, 1, 0)), v1::RESULT_ACCEPTED);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(low_id).attempt(), 2u);
  EXPECT_THAT(mgr().RenderMetrics(), HasSubstr("flotilla_preemptions_total 1"));
}

TEST_F(ManagerTest, NoPreemptionWithinTheGapOrWhenDisabled) {
  config_.preemption = true;
  Register(NodeSpec("n1", 5, 1000));
  v1::ExecutionRequest a = Shell();
  a.set_priority(50);
  a.mutable_resources()->set_cpu_millis(1000);
  const std::string a_id = SubmitOk(a);
  mgr().DispatchOnceForTest();
  v1::ExecutionRequest b = a;
  b.set_priority(59);  // only 9 points above
  const std::string b_id = SubmitOk(b);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(a_id).state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(GetOk(b_id).state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(GetOk(b_id).placement().reason(), HasSubstr("no node fits now"));
}

TEST_F(ManagerTest, PlacementRecordsModeAndBids) {
  Register(NodeSpec("n1"));
  Register(NodeSpec("n2"));
  v1::ExecutionRequest r = Shell();
  r.mutable_placement()->set_mode(v1::PLACEMENT_BID);
  const std::string id = SubmitOk(r);
  mgr().DispatchOnceForTest();
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.placement().mode(), "bid");
  int bids = 0;
  for (const auto& c : e.placement().candidates()) bids += c.bid() != 0;
  EXPECT_GE(bids, 1);
}

TEST_F(ManagerTest, LearnsLatencyAndReportsHeldOutError) {
  Register(NodeSpec("n1"));
  for (int i = 0; i < 30; ++i) {
    v1::ExecutionRequest r = Shell();
    r.set_function("f");
    const std::string id = SubmitOk(r);
    mgr().DispatchOnceForTest();
    v1::ExecutionResult res = Exited(id, 1, 0);
    res.set_wall_time_us(20000 + (i % 3) * 1000);
    ASSERT_EQ(SendResult("n1", res), v1::RESULT_ACCEPTED);
  }
  const std::string m = mgr().RenderMetrics();
  EXPECT_THAT(m, HasSubstr("flotilla_latency_model_mae_ms{model=\"regression\"}"));
  EXPECT_THAT(m, HasSubstr("flotilla_latency_model_samples 30"));
}

}  // namespace
}  // namespace flotilla::manager

namespace flotilla::manager {
namespace {

TEST_F(ManagerTest, TenantCpuQuotaKeepsItsExtraWorkQueuedWithoutHoldingUpOthers) {
  config_.tenant_max_cpu_millis = 1000;
  Register(NodeSpec("n1", 5, 8000));
  auto as = [](const std::string& tenant, int64_t cpu) {
    v1::ExecutionRequest r = Shell();
    r.set_user_id(tenant);
    r.mutable_resources()->set_cpu_millis(cpu);
    return r;
  };
  const std::string a1 = SubmitOk(as("acme", 600));
  const std::string a2 = SubmitOk(as("acme", 600));
  const std::string b1 = SubmitOk(as("zeta", 600));
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(a1).state(), v1::EXECUTION_ASSIGNED);
  EXPECT_EQ(GetOk(b1).state(), v1::EXECUTION_ASSIGNED) << "another tenant's work was held up";
  v1::Execution waiting = GetOk(a2);
  EXPECT_EQ(waiting.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(waiting.placement().reason(), HasSubstr("limits.tenant_max_cpu_millis"));

  // Too big for the whole quota: refused at submit, saying so.
  absl::StatusOr<v1::SubmitResponse> huge = Submit(as("acme", 1500));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument) << huge.status();
  EXPECT_THAT(huge.status().message(), HasSubstr("could never run"));

  // a1 ends: its CPU goes back to the tenant and a2 runs.
  EXPECT_EQ(SendResult("n1", Exited(a1, 1, 0)), v1::RESULT_ACCEPTED);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(a2).state(), v1::EXECUTION_ASSIGNED);
}

TEST_F(ManagerTest, TenantQuotaIsRebuiltFromRecoveredExecutions) {
  config_.tenant_max_cpu_millis = 1000;
  Register(NodeSpec("n1", 5, 8000));
  v1::ExecutionRequest r = Shell();
  r.set_user_id("acme");
  r.mutable_resources()->set_cpu_millis(700);
  const std::string a1 = SubmitOk(r);
  mgr().DispatchOnceForTest();
  ASSERT_EQ(GetOk(a1).state(), v1::EXECUTION_ASSIGNED);
  mgr_.reset();
  // The restarted manager knows a1 still holds 700m of acme's 1000m.
  ASSERT_TRUE(mgr().Recover().ok());
  const std::string a2 = SubmitOk(r);
  mgr().DispatchOnceForTest();
  EXPECT_EQ(GetOk(a2).state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(GetOk(a2).placement().reason(), HasSubstr("700m CPU of its 1000m"));
}

}  // namespace
}  // namespace flotilla::manager
