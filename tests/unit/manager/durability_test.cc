// Persist-then-ack: with a Store that fails writes on demand (the
// FaultInjectingStore), a write that failed is never acknowledged — no
// submit reply, no ACCEPTED verdict, no cancel reply, no task sent — and is
// never lost silently: the caller is told to retry, and the retry records it.
// Also the bounds of issue 10: admission control, the manager-side attempt
// deadline, retention of finished executions. Time is a FakeClock.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/manager.h"
#include "manager/writer.h"
#include "store/fault_injecting_store.h"
#include "unit/manager/manager_fixture.h"

namespace flotilla::manager {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

class DurabilityTest : public ManagerTest {
 protected:
  void SetUp() override {
    ManagerTest::SetUp();
    clock_ = &fake_clock_;
    wrap_store_ = true;
    mgr();
  }

  // The execution as a freshly opened store sees it (what a restarted
  // manager would find).
  std::optional<store::ExecutionRecord> Stored(const std::string& id) {
    auto rec = fault_->real()->GetExecution(id);
    EXPECT_TRUE(rec.ok()) << rec.status();
    return rec.ok() ? *rec : std::nullopt;
  }

  FakeClock fake_clock_;
};

TEST_F(DurabilityTest, FailedSubmitWriteIsNotAcknowledgedAndLeavesNothingBehind) {
  Register(NodeSpec("n1"));
  fault_->FailWrites(1);
  v1::ExecutionRequest r = Shell();
  r.set_request_id("job-1");
  absl::StatusOr<v1::SubmitResponse> resp = Submit(r);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kUnavailable) << resp.status();
  EXPECT_THAT(resp.status().message(), HasSubstr("could not record"));
  EXPECT_EQ(mgr().Get("job-1").status().code(), absl::StatusCode::kNotFound);
  mgr().DispatchOnceForTest();
  EXPECT_TRUE(agents_->tasks().empty()) << "an unrecorded execution was dispatched";

  // The client's retry (same request id) is recorded and runs.
  resp = Submit(r);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_FALSE(resp->already_existed());
  ASSERT_TRUE(Stored("job-1").has_value());
  mgr().DispatchOnceForTest();
  EXPECT_THAT(agents_->tasks(), SizeIs(1));
}

TEST_F(DurabilityTest, FailedDispatchWriteSendsNothingAndRequeues) {
  Register(NodeSpec("n1"));
  const std::string id = SubmitOk();
  fault_->FailWrites(1);
  mgr().DispatchOnceForTest();
  EXPECT_TRUE(agents_->tasks().empty()) << "a task was sent before its assignment was recorded";
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_QUEUED);
  EXPECT_THAT(e.error(), HasSubstr("could not be recorded"));
  mgr().DispatchOnceForTest();
  ASSERT_THAT(agents_->tasks(), SizeIs(1));
  EXPECT_EQ(Stored(id)->state, model::ExecutionState::kAssigned);
  EXPECT_EQ(Stored(id)->attempt, agents_->tasks()[0].request.attempt());
}

TEST_F(DurabilityTest, FailedResultWriteIsNotAcceptedAndTheRetryRecordsIt) {
  const uint64_t epoch = Register(NodeSpec("n1"));
  const std::string id = SubmitOk();
  mgr().DispatchOnceForTest();
  ASSERT_THAT(agents_->tasks(), SizeIs(1));
  const uint32_t attempt = agents_->tasks()[0].request.attempt();
  ASSERT_TRUE(Report("n1", epoch, {Task(id, attempt)}).ok());

  fault_->FailWrites(1);
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  *req.add_results() = Exited(id, attempt, 0);
  absl::StatusOr<v1::SendResultsResponse> resp = mgr().SendResults(req);
  ASSERT_EQ(resp.status().code(), absl::StatusCode::kUnavailable)
      << "a result whose write failed was answered " << resp.status();
  EXPECT_EQ(Stored(id)->state, model::ExecutionState::kRunning);

  // The agent kept it and sends it again: now it is recorded and accepted.
  EXPECT_EQ(SendResult("n1", Exited(id, attempt, 0)), v1::RESULT_ACCEPTED);
  EXPECT_EQ(Stored(id)->state, model::ExecutionState::kSucceeded);
  auto blob = fault_->real()->GetResult(id, attempt);
  ASSERT_TRUE(blob.ok() && blob->has_value());
  EXPECT_EQ(GetOk(id).result().stdout(), "out");
  // A third copy is a duplicate, not a second result.
  EXPECT_EQ(SendResult("n1", Exited(id, attempt, 0)), v1::RESULT_DUPLICATE);
}

TEST_F(DurabilityTest, FailedCancelWriteIsNotAcknowledged) {
  const std::string id = SubmitOk();  // no node: stays queued
  fault_->FailWrites(1);
  absl::StatusOr<v1::Execution> c = mgr().Cancel(id);
  ASSERT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_EQ(Stored(id)->state, model::ExecutionState::kQueued);
  c = mgr().Cancel(id);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state(), v1::EXECUTION_CANCELLED);
  EXPECT_EQ(Stored(id)->state, model::ExecutionState::kCancelled);
}

TEST_F(DurabilityTest, FailedRegistrationIsNotAcknowledged) {
  fault_->FailWrites(1);
  v1::RegisterNodeRequest req;
  *req.mutable_node() = NodeSpec("n1");
  EXPECT_EQ(mgr().RegisterNode(req).status().code(), absl::StatusCode::kUnavailable);
  auto again = mgr().RegisterNode(req);
  ASSERT_TRUE(again.ok()) << again.status();
  auto nodes = fault_->real()->LoadNodes();
  ASSERT_TRUE(nodes.ok());
  ASSERT_THAT(*nodes, SizeIs(1));
  EXPECT_EQ((*nodes)[0].epoch, again->epoch());
}

TEST_F(DurabilityTest, AdmissionControlRefusesPastMaxQueuedWithARetryHint) {
  mgr_.reset();
  config_.max_queued = 2;
  mgr();
  SubmitOk();
  SubmitOk();
  absl::StatusOr<v1::SubmitResponse> third = Submit(Shell());
  ASSERT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("max_queued 2"));
  EXPECT_THAT(third.status().message(), HasSubstr("retry"));
  EXPECT_THAT(mgr().RenderMetrics(), HasSubstr("flotilla_submits_rejected_total 1"));
}

TEST_F(DurabilityTest, LostAttemptIsRequeuedAfterItsTimeoutPlusGraceThenFailed) {
  mgr_.reset();
  config_.attempt_grace = std::chrono::milliseconds(1000);
  config_.max_attempts = 2;
  config_.lease_timeout = std::chrono::milliseconds(1'000'000);  // the node stays online
  mgr();
  const uint64_t epoch = Register(NodeSpec("n1"));
  v1::ExecutionRequest r = Shell("sleep 1000");
  r.set_timeout_ms(5000);
  const std::string id = SubmitOk(r);
  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    mgr().DispatchOnceForTest();
    ASSERT_THAT(agents_->tasks(), SizeIs(attempt));
    ASSERT_TRUE(Report("n1", epoch, {Task(id, attempt)}).ok());
    fake_clock_.Advance(std::chrono::milliseconds(5000));
    mgr().CheckLeasesForTest();
    EXPECT_EQ(GetOk(id).attempt(), attempt) << "lost before timeout + grace";
    fake_clock_.Advance(std::chrono::milliseconds(1001));
    mgr().CheckLeasesForTest();
    ASSERT_THAT(agents_->cancels(), SizeIs(attempt));
    EXPECT_EQ(agents_->cancels().back().request.attempt(), attempt);
  }
  v1::Execution e = GetOk(id);
  EXPECT_EQ(e.state(), v1::EXECUTION_FAILED);
  EXPECT_THAT(e.error(), HasSubstr("gave up after 2 attempts"));
  auto attempts = fault_->real()->ListAttempts(id);
  ASSERT_TRUE(attempts.ok());
  ASSERT_THAT(*attempts, SizeIs(2));
  EXPECT_EQ((*attempts)[0].outcome, "attempt_deadline");
  EXPECT_EQ((*attempts)[1].outcome, "attempt_deadline");
}

TEST_F(DurabilityTest, RetentionDeletesTheOldestFinishedAndKeepsUnfinished) {
  mgr_.reset();
  config_.retention_max_count = 2;
  mgr();
  std::vector<std::string> done;
  for (int i = 0; i < 4; ++i) {
    const std::string id = SubmitOk();
    ASSERT_TRUE(mgr().Cancel(id).ok());
    done.push_back(id);
  }
  const std::string waiting = SubmitOk();
  absl::StatusOr<int> deleted = mgr().RunRetentionForTest();
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  EXPECT_FALSE(Stored(done[0]).has_value());
  EXPECT_FALSE(Stored(done[1]).has_value());
  EXPECT_TRUE(Stored(done[2]).has_value());
  EXPECT_TRUE(Stored(done[3]).has_value());
  EXPECT_TRUE(Stored(waiting).has_value());
  EXPECT_EQ(mgr().Get(done[0]).status().code(), absl::StatusCode::kNotFound);

  // By age: everything finished more than max_age ago goes.
  fake_clock_.Advance(config_.retention_max_age + std::chrono::milliseconds(1));
  deleted = mgr().RunRetentionForTest();
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 2);
  EXPECT_TRUE(Stored(waiting).has_value());
}

// The etcd store deletes only what fits in one etcd Txn per call inside the
// writer's transaction; retention repeats its rounds until nothing is left
// to delete. Before, one round a minute deleted a few dozen at most.
TEST_F(DurabilityTest, RetentionRepeatsRoundsWhileTheStoreDeletesInPart) {
  mgr_.reset();
  config_.retention_max_count = 2;
  mgr();
  fault_->CapDeletesPerCall(1);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(mgr().Cancel(SubmitOk()).ok());
  absl::StatusOr<int> deleted = mgr().RunRetentionForTest();
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 4);
}

TEST_F(DurabilityTest, TasksPlacedOnOneNodeInOneRoundTravelInOneCall) {
  Register(NodeSpec("n1"));
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(SubmitOk());
  mgr().DispatchOnceForTest();
  ASSERT_THAT(agents_->tasks(), SizeIs(4));
  EXPECT_EQ(agents_->batches(), (std::vector<size_t>{4}));
  for (const auto& id : ids) EXPECT_EQ(GetOk(id).state(), v1::EXECUTION_ASSIGNED);
  // A lone task goes as a plain RequestTask.
  SubmitOk();
  mgr().DispatchOnceForTest();
  EXPECT_THAT(agents_->tasks(), SizeIs(5));
  EXPECT_THAT(agents_->batches(), SizeIs(1));
}

// ------------------------------------------------------------------ Writer

class WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto real = store::OpenSqliteStore(":memory:", store::Durability::kProcessCrash);
    ASSERT_TRUE(real.ok()) << real.status();
    store_ = std::make_unique<store::FaultInjectingStore>(std::move(*real));
  }
  static WriteBatch Insert(const std::string& id) {
    store::ExecutionRecord rec;
    rec.id = id;
    rec.user_id = "u";
    rec.request = "r";
    WriteBatch w;
    w.what = "insert " + id;
    w.ops.push_back(WriteBatch::InsertExecution{rec});
    return w;
  }
  std::unique_ptr<store::FaultInjectingStore> store_;
};

TEST_F(WriterTest, InlineWithoutAThreadCommitsOnWait) {
  Writer writer(store_.get(), {});
  auto ticket = writer.Enqueue(Insert("a"));
  EXPECT_EQ(writer.backlog(), 1u);
  ASSERT_TRUE(ticket->Wait().ok());
  EXPECT_GT(std::get<WriteBatch::InsertExecution>(ticket->batch().ops[0]).rec.seq, 0u);
  EXPECT_EQ(writer.backlog(), 0u);
}

TEST_F(WriterTest, GroupCommitIsolatesTheBatchThatFails) {
  Writer writer(store_.get(), {});
  // Three batches in one group; the middle one inserts an id that exists.
  ASSERT_TRUE(writer.Enqueue(Insert("dup"))->Wait().ok());
  std::vector<std::string> order;
  auto done = [&](const std::string& name) {
    return [&order, name](const absl::Status& st, WriteBatch&) {
      order.push_back(name + (st.ok() ? ":ok" : ":failed"));
    };
  };
  auto a = writer.Enqueue(Insert("a"), done("a"));
  auto b = writer.Enqueue(Insert("dup"), done("b"));
  auto c = writer.Enqueue(Insert("c"), done("c"));
  writer.Drain();
  EXPECT_TRUE(a->Wait().ok());
  EXPECT_EQ(b->Wait().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(b->Wait().message(), HasSubstr("write of insert dup"));
  EXPECT_TRUE(c->Wait().ok());
  EXPECT_EQ(order, (std::vector<std::string>{"a:ok", "b:failed", "c:ok"}));
  EXPECT_TRUE(store_->real()->GetExecution("a")->has_value());
  EXPECT_TRUE(store_->real()->GetExecution("c")->has_value());
  EXPECT_EQ(writer.stats().failures, 1u);
}

TEST_F(WriterTest, ThreadCommitsInOrderAndStopDrains) {
  Writer writer(store_.get(), {});
  std::vector<std::shared_ptr<Writer::Ticket>> tickets;
  // Queued before the thread starts, so its first look takes them all.
  for (int i = 0; i < 200; ++i) tickets.push_back(writer.Enqueue(Insert("x" + std::to_string(i))));
  writer.Start();
  uint64_t last_seq = 0;
  for (auto& t : tickets) {
    ASSERT_TRUE(t->Wait().ok());
    const uint64_t seq = std::get<WriteBatch::InsertExecution>(t->batch().ops[0]).rec.seq;
    EXPECT_GT(seq, last_seq) << "batches committed out of order";
    last_seq = seq;
  }
  EXPECT_EQ(writer.stats().groups, 1u) << "200 waiting batches did not share one transaction";
  auto late = writer.Enqueue(Insert("late"));
  writer.Stop();
  EXPECT_TRUE(late->Wait().ok());
}

TEST_F(WriterTest, FailedWriteReachesItsCompletion) {
  Writer writer(store_.get(), {});
  store_->FailWrites(1);
  absl::Status seen;
  auto t = writer.Enqueue(Insert("a"), [&](const absl::Status& st, WriteBatch&) { seen = st; });
  EXPECT_EQ(t->Wait().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(seen.message(), HasSubstr("injected disk failure"));
  EXPECT_FALSE(store_->real()->GetExecution("a")->has_value());
}

}  // namespace
}  // namespace flotilla::manager
