// The Store contract (src/store/store.h), run against every backend: SQLite
// (a file in a temporary directory) and etcd (a real 3-member cluster started
// once for the binary; each test gets its own key prefix and fence). The
// SQLite-only tests (schema, WAL, SIGKILL) stay in sqlite_store_test.cc; the
// etcd-only ones (fencing, member loss, seq across leaders) follow the
// shared ones here.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/model.h"
#include "store/etcd/etcd_store.h"
#include "store/store.h"
#include "unit/store/store_test_records.h"
#include "support/etcd_cluster.h"
#include "support/temp_dir.h"

namespace flotilla::store {
namespace {

using ::flotilla::store::testing::Attempt;
using ::flotilla::store::testing::Binary;
using ::flotilla::store::testing::ExpectSameExecution;
using ::flotilla::store::testing::MakeExecution;
using ::flotilla::store::testing::Node;

using model::ExecutionState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using TempDir = ::flotilla::testing::TempDir;
using ::flotilla::testing::EtcdCluster;

// One etcd cluster for every test of the binary that needs one, started on
// first use and killed when the tests end.
class SharedEtcd : public ::testing::Environment {
 public:
  static SharedEtcd* Get() {
    static SharedEtcd* env = static_cast<SharedEtcd*>(
        ::testing::AddGlobalTestEnvironment(new SharedEtcd()));
    return env;
  }
  // Null (and why in *reason) if there is no etcd.
  EtcdCluster* cluster(std::string* reason) {
    if (!started_) {
      started_ = true;
      cluster_ = std::make_unique<EtcdCluster>();
      status_ = cluster_->Start();
      if (!status_.ok()) cluster_.reset();
    }
    *reason = std::string(status_.message());
    return cluster_.get();
  }
  void TearDown() override { cluster_.reset(); }

 private:
  bool started_ = false;
  absl::Status status_;
  std::unique_ptr<EtcdCluster> cluster_;
};
[[maybe_unused]] SharedEtcd* const kRegisterEnvironment = SharedEtcd::Get();

// A fence as a won election leaves it: a key and its create_revision.
absl::StatusOr<EtcdFence> MakeFence(etcd::EtcdClient& client, const std::string& key) {
  auto rev = client.Put(key, "test leader");
  if (!rev.ok()) return rev.status();
  auto kv = client.Range(key, "");
  if (!kv.ok()) return kv.status();
  return EtcdFence{key, kv->kvs.at(0).create_revision};
}

std::string UniqueName() {
  static std::atomic<int> n{0};
  return absl::StrCat(getpid(), "-", ++n);
}

class StoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "etcd") {
      std::string reason;
      cluster_ = SharedEtcd::Get()->cluster(&reason);
      if (cluster_ == nullptr && absl::StrContains(reason, "no etcd binary")) {
        GTEST_SKIP() << "SKIPPING etcd store test: " << reason;
      }
      ASSERT_NE(cluster_, nullptr) << reason;
      auto client = cluster_->Client();
      ASSERT_TRUE(client.ok()) << client.status();
      client_ = *client;
      const std::string name = UniqueName();
      prefix_ = absl::StrCat("/conformance/", name, "/");
      auto fence = MakeFence(*client_, absl::StrCat("/conformance-leader/", name));
      ASSERT_TRUE(fence.ok()) << fence.status();
      fence_ = *fence;
    }
  }

  // A fresh, empty store.
  std::unique_ptr<Store> Open() { return Reopen(); }
  // The store last opened, opened again (a restarted or new leader).
  std::unique_ptr<Store> Reopen() {
    absl::StatusOr<std::unique_ptr<Store>> store =
        GetParam() == "etcd" ? OpenEtcdStore(client_, prefix_, fence_)
                             : OpenSqliteStore(dir_.File("store.db"), Durability::kProcessCrash);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    return std::move(store).value();
  }

  TempDir dir_;
  EtcdCluster* cluster_ = nullptr;
  std::shared_ptr<etcd::EtcdClient> client_;
  std::string prefix_;
  EtcdFence fence_;
};


std::vector<std::string> Ids(const std::vector<ExecutionRecord>& recs) {
  std::vector<std::string> ids;
  for (const ExecutionRecord& r : recs) ids.push_back(r.id);
  return ids;
}

TEST_P(StoreConformanceTest, ExecutionRoundTripsEveryField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);

  ExecutionRecord rec;
  rec.id = "ex-1";
  rec.user_id = "tenant-a";
  rec.priority = 93;
  rec.request = Binary("request");
  rec.state = ExecutionState::kRunning;
  rec.attempt = 3;
  rec.node_id = "node-7";
  rec.placement = Binary("placement");
  rec.error = "oops: it broke";
  rec.cancel_requested = true;
  rec.submitted_ms = 1'700'000'000'001;
  rec.assigned_ms = 1'700'000'000'002;
  rec.started_ms = 1'700'000'000'003;
  rec.finished_ms = -4;
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  EXPECT_GT(rec.seq, 0u);
  ASSERT_EQ(rec.request.size(), std::string("request").size() + 9);

  auto got = store->GetExecution("ex-1");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  ExpectSameExecution(**got, rec);

  // Every state survives the text column.
  for (ExecutionState s :
       {ExecutionState::kQueued, ExecutionState::kAssigned, ExecutionState::kRunning,
        ExecutionState::kSucceeded, ExecutionState::kFailed, ExecutionState::kTimedOut,
        ExecutionState::kCancelled}) {
    rec.state = s;
    ASSERT_TRUE(store->UpdateExecution(rec).ok());
    auto again = store->GetExecution("ex-1");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ((*again)->state, s) << model::ToString(s);
  }
}

TEST_P(StoreConformanceTest, EmptyBlobsAndStringsRoundTrip) {
  auto store = Open();
  ExecutionRecord rec;
  rec.id = "ex-empty";
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  auto got = store->GetExecution("ex-empty");
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameExecution(**got, rec);
}

TEST_P(StoreConformanceTest, GetMissingExecutionIsNullopt) {
  auto store = Open();
  auto got = store->GetExecution("nope");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

TEST_P(StoreConformanceTest, SeqIncreasesWithSubmission) {
  auto store = Open();
  ExecutionRecord a = MakeExecution("a"), b = MakeExecution("b"), c = MakeExecution("c");
  ASSERT_TRUE(store->InsertExecution(&a).ok());
  ASSERT_TRUE(store->InsertExecution(&b).ok());
  ASSERT_TRUE(store->InsertExecution(&c).ok());
  EXPECT_LT(a.seq, b.seq);
  EXPECT_LT(b.seq, c.seq);
}

TEST_P(StoreConformanceTest, DuplicateInsertIsAlreadyExistsNamingTheId) {
  auto store = Open();
  ExecutionRecord rec = MakeExecution("ex-dup");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  uint64_t first_seq = rec.seq;

  ExecutionRecord again = MakeExecution("ex-dup");
  again.user_id = "mallory";
  absl::Status status = store->InsertExecution(&again);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("ex-dup"));

  auto got = store->GetExecution("ex-dup");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->user_id, "alice");
  EXPECT_EQ((*got)->seq, first_seq);
}

TEST_P(StoreConformanceTest, UpdateOverwritesEverythingButSeq) {
  auto store = Open();
  ExecutionRecord rec = MakeExecution("ex-u");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());

  ExecutionRecord changed = rec;
  changed.seq = rec.seq + 1000;  // ignored
  changed.state = ExecutionState::kFailed;
  changed.error = "boom";
  changed.placement = Binary("p");
  changed.attempt = 2;
  changed.finished_ms = 99;
  ASSERT_TRUE(store->UpdateExecution(changed).ok());

  auto got = store->GetExecution("ex-u");
  ASSERT_TRUE(got.ok() && got->has_value());
  changed.seq = rec.seq;
  ExpectSameExecution(**got, changed);
}

TEST_P(StoreConformanceTest, UpdateMissingIsNotFound) {
  auto store = Open();
  absl::Status status = store->UpdateExecution(MakeExecution("ghost"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("ghost"));
}

TEST_P(StoreConformanceTest, LoadUnfinishedFiltersAndOrdersBySeq) {
  auto store = Open();
  const std::vector<std::pair<std::string, ExecutionState>> rows = {
      {"e1", ExecutionState::kRunning},  {"e2", ExecutionState::kSucceeded},
      {"e3", ExecutionState::kQueued},   {"e4", ExecutionState::kFailed},
      {"e5", ExecutionState::kAssigned}, {"e6", ExecutionState::kCancelled},
      {"e7", ExecutionState::kTimedOut}, {"e8", ExecutionState::kQueued},
  };
  for (const auto& [id, state] : rows) {
    ExecutionRecord rec = MakeExecution(id, state);
    ASSERT_TRUE(store->InsertExecution(&rec).ok());
  }
  // Moving e1 to a terminal state removes it; moving e2 back to queued keeps
  // its original place in seq order.
  auto e1 = store->GetExecution("e1");
  (*e1)->state = ExecutionState::kSucceeded;
  ASSERT_TRUE(store->UpdateExecution(**e1).ok());
  auto e2 = store->GetExecution("e2");
  (*e2)->state = ExecutionState::kQueued;
  ASSERT_TRUE(store->UpdateExecution(**e2).ok());

  auto unfinished = store->LoadUnfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_THAT(Ids(*unfinished), ElementsAre("e2", "e3", "e5", "e8"));
  for (size_t i = 1; i < unfinished->size(); ++i) {
    EXPECT_LT((*unfinished)[i - 1].seq, (*unfinished)[i].seq);
  }
}

TEST_P(StoreConformanceTest, ListExecutionsFiltersLimitsAndOrdersNewestFirst) {
  auto store = Open();
  for (int i = 0; i < 150; ++i) {
    ExecutionState state = i % 3 == 0   ? ExecutionState::kQueued
                           : i % 3 == 1 ? ExecutionState::kSucceeded
                                        : ExecutionState::kFailed;
    ExecutionRecord rec = MakeExecution(absl::StrCat("ex-", i), state);
    ASSERT_TRUE(store->InsertExecution(&rec).ok());
  }

  auto all = store->ListExecutions({});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 100u);  // the default limit
  EXPECT_EQ(all->front().id, "ex-149");
  for (size_t i = 1; i < all->size(); ++i) EXPECT_GT((*all)[i - 1].seq, (*all)[i].seq);

  auto zero = store->ListExecutions({.states = {}, .limit = 0});
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->size(), 100u);
  auto negative = store->ListExecutions({.states = {}, .limit = -5});
  ASSERT_TRUE(negative.ok());
  EXPECT_EQ(negative->size(), 100u);

  auto three = store->ListExecutions({.states = {}, .limit = 3});
  ASSERT_TRUE(three.ok());
  EXPECT_THAT(Ids(*three), ElementsAre("ex-149", "ex-148", "ex-147"));

  auto queued = store->ListExecutions({.states = {ExecutionState::kQueued}, .limit = 4});
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_THAT(Ids(*queued), ElementsAre("ex-147", "ex-144", "ex-141", "ex-138"));

  auto two_states = store->ListExecutions(
      {.states = {ExecutionState::kFailed, ExecutionState::kQueued}, .limit = 1000});
  ASSERT_TRUE(two_states.ok());
  EXPECT_EQ(two_states->size(), 100u);
  for (const ExecutionRecord& r : *two_states) EXPECT_NE(r.state, ExecutionState::kSucceeded);
  EXPECT_EQ(two_states->front().id, "ex-149");

  auto none = store->ListExecutions({.states = {ExecutionState::kRunning}, .limit = 10});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreConformanceTest, NodesUpsertAndLoad) {
  auto store = Open();
  NodeRecord n1{.id = "node-b",
                .spec = Binary("spec-b"),
                .status = model::NodeStatus::kOnline,
                .epoch = (uint64_t{1} << 40) + 3,
                .last_heartbeat_ms = 12345};
  NodeRecord n2 = Node("node-a");
  ASSERT_TRUE(store->UpsertNode(n1).ok());
  ASSERT_TRUE(store->UpsertNode(n2).ok());
  n1.status = model::NodeStatus::kOffline;
  n1.epoch += 1;
  n1.spec = Binary("spec-b2");
  ASSERT_TRUE(store->UpsertNode(n1).ok());

  auto nodes = store->LoadNodes();
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  ASSERT_EQ(nodes->size(), 2u);
  const NodeRecord& b = (*nodes)[0].id == "node-b" ? (*nodes)[0] : (*nodes)[1];
  const NodeRecord& a = (*nodes)[0].id == "node-a" ? (*nodes)[0] : (*nodes)[1];
  EXPECT_EQ(b.spec, n1.spec);
  EXPECT_EQ(b.status, model::NodeStatus::kOffline);
  EXPECT_EQ(b.epoch, n1.epoch);
  EXPECT_EQ(b.last_heartbeat_ms, 12345);
  EXPECT_EQ(a.id, "node-a");
  EXPECT_EQ(a.spec, "");
}

TEST_P(StoreConformanceTest, AttemptsUpsertAndListInOrder) {
  auto store = Open();
  ExecutionRecord rec = MakeExecution("ex-a");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());

  AttemptRecord a2 = Attempt("ex-a", 2, "n2");
  a2.assigned_ms = 20;
  AttemptRecord a1{.execution_id = "ex-a",
                   .attempt = 1,
                   .node_id = "n1",
                   .assigned_ms = 10,
                   .ended_ms = 15,
                   .outcome = "node_lost"};
  ASSERT_TRUE(store->PutAttempt(a2).ok());
  ASSERT_TRUE(store->PutAttempt(a1).ok());
  a2.ended_ms = 30;
  a2.outcome = "succeeded";
  ASSERT_TRUE(store->PutAttempt(a2).ok());

  auto attempts = store->ListAttempts("ex-a");
  ASSERT_TRUE(attempts.ok()) << attempts.status();
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].attempt, 1u);
  EXPECT_EQ((*attempts)[0].node_id, "n1");
  EXPECT_EQ((*attempts)[0].ended_ms, 15);
  EXPECT_EQ((*attempts)[0].outcome, "node_lost");
  EXPECT_EQ((*attempts)[1].attempt, 2u);
  EXPECT_EQ((*attempts)[1].execution_id, "ex-a");
  EXPECT_EQ((*attempts)[1].assigned_ms, 20);
  EXPECT_EQ((*attempts)[1].ended_ms, 30);
  EXPECT_EQ((*attempts)[1].outcome, "succeeded");

  auto none = store->ListAttempts("other");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreConformanceTest, ResultSummaryIsWhatListingsReadAndFallsBackToTheResult) {
  auto store = Open();
  ExecutionRecord rec = MakeExecution("ex-s");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  ASSERT_TRUE(store->PutResult("ex-s", 1, Binary("whole result"), "summary").ok());
  ASSERT_TRUE(store->PutResult("ex-s", 2, Binary("no summary"), "").ok());
  auto s1 = store->GetResultSummary("ex-s", 1);
  ASSERT_TRUE(s1.ok() && s1->has_value()) << s1.status();
  EXPECT_EQ(**s1, "summary");
  auto s2 = store->GetResultSummary("ex-s", 2);
  ASSERT_TRUE(s2.ok() && s2->has_value());
  EXPECT_EQ(**s2, Binary("no summary"));
  auto s3 = store->GetResultSummary("ex-s", 3);
  ASSERT_TRUE(s3.ok());
  EXPECT_FALSE(s3->has_value());
}

TEST_P(StoreConformanceTest, DeleteFinishedKeepsUnfinishedAndTheNewest) {
  auto store = Open();
  for (int i = 0; i < 5; ++i) {
    ExecutionRecord rec = MakeExecution("done-" + std::to_string(i));
    ASSERT_TRUE(store->InsertExecution(&rec).ok());
    rec.state = model::ExecutionState::kSucceeded;
    rec.finished_ms = 1000 + i;
    ASSERT_TRUE(store->UpdateExecution(rec).ok());
    ASSERT_TRUE(store->PutResult(rec.id, 1, "r", "").ok());
  }
  ExecutionRecord waiting = MakeExecution("waiting");
  ASSERT_TRUE(store->InsertExecution(&waiting).ok());
  // Keep the newest 3 finished: done-0 and done-1 go, with their results.
  auto n = store->DeleteFinishedExecutions(/*finished_before_ms=*/0, /*keep_newest=*/3, 100);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_FALSE(store->GetExecution("done-0")->has_value());
  EXPECT_FALSE(store->GetResult("done-1", 1)->has_value());
  EXPECT_TRUE(store->GetExecution("done-2")->has_value());
  // By age: finished before 1004 (done-2, done-3); at most `limit` per call.
  n = store->DeleteFinishedExecutions(1004, 1000, 1);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  n = store->DeleteFinishedExecutions(1004, 1000, 100);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  EXPECT_TRUE(store->GetExecution("done-4")->has_value());
  EXPECT_TRUE(store->GetExecution("waiting")->has_value());
}

TEST_P(StoreConformanceTest, ResultsUpsertPerAttempt) {
  auto store = Open();
  ExecutionRecord rec = MakeExecution("ex-r");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());

  ASSERT_TRUE(store->PutResult("ex-r", 1, Binary("first"), "").ok());
  ASSERT_TRUE(store->PutResult("ex-r", 2, Binary("second"), "").ok());
  ASSERT_TRUE(store->PutResult("ex-r", 1, Binary("first-again"), "").ok());

  auto r1 = store->GetResult("ex-r", 1);
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r1->has_value());
  EXPECT_EQ(**r1, Binary("first-again"));
  auto r2 = store->GetResult("ex-r", 2);
  ASSERT_TRUE(r2.ok() && r2->has_value());
  EXPECT_EQ(**r2, Binary("second"));
  auto r3 = store->GetResult("ex-r", 3);
  ASSERT_TRUE(r3.ok());
  EXPECT_FALSE(r3->has_value());

  ASSERT_TRUE(store->PutResult("ex-r", 4, "", "").ok());
  auto r4 = store->GetResult("ex-r", 4);
  ASSERT_TRUE(r4.ok() && r4->has_value());
  EXPECT_EQ(**r4, "");
}

TEST_P(StoreConformanceTest, AttemptsAndResultsNeedAnExecution) {
  auto store = Open();
  absl::Status attempt = store->PutAttempt(Attempt("ghost", 1));
  EXPECT_FALSE(attempt.ok());
  EXPECT_THAT(std::string(attempt.message()), HasSubstr("ghost"));
  absl::Status result = store->PutResult("ghost", 1, "r", "");
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.message()), HasSubstr("put result ghost/1"));
}

TEST_P(StoreConformanceTest, TransactionCommitsEverything) {
  auto store = Open();
  absl::Status status = store->Transaction([&]() -> absl::Status {
    ExecutionRecord rec = MakeExecution("t1");
    if (absl::Status s = store->InsertExecution(&rec); !s.ok()) return s;
    if (absl::Status s = store->PutAttempt(Attempt("t1", 1)); !s.ok()) {
      return s;
    }
    // Reads inside the body see the body's writes.
    auto got = store->GetExecution("t1");
    if (!got.ok() || !got->has_value()) return absl::InternalError("t1 not visible");
    rec.state = ExecutionState::kAssigned;
    return store->UpdateExecution(rec);
  });
  ASSERT_TRUE(status.ok()) << status;

  auto got = store->GetExecution("t1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->state, ExecutionState::kAssigned);
  auto attempts = store->ListAttempts("t1");
  ASSERT_TRUE(attempts.ok());
  EXPECT_EQ(attempts->size(), 1u);
}

TEST_P(StoreConformanceTest, TransactionRollsBackWhenBodyFails) {
  auto store = Open();
  ExecutionRecord before = MakeExecution("before");
  ASSERT_TRUE(store->InsertExecution(&before).ok());

  absl::Status status = store->Transaction([&]() -> absl::Status {
    ExecutionRecord rec = MakeExecution("t2");
    if (absl::Status s = store->InsertExecution(&rec); !s.ok()) return s;
    if (absl::Status s = store->PutResult("t2", 1, "r", ""); !s.ok()) return s;
    before.state = ExecutionState::kCancelled;
    if (absl::Status s = store->UpdateExecution(before); !s.ok()) return s;
    if (absl::Status s = store->UpsertNode(Node("n")); !s.ok()) return s;
    return absl::AbortedError("changed my mind");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(status.message(), "changed my mind");

  auto t2 = store->GetExecution("t2");
  ASSERT_TRUE(t2.ok());
  EXPECT_FALSE(t2->has_value());
  auto result = store->GetResult("t2", 1);
  ASSERT_TRUE(result.ok());
  EXPECT_FALSE(result->has_value());
  auto b = store->GetExecution("before");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->state, ExecutionState::kQueued);
  auto nodes = store->LoadNodes();
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());

  // The store is usable afterwards, inside and outside transactions.
  ExecutionRecord after = MakeExecution("after");
  EXPECT_TRUE(store->Transaction([&] { return store->InsertExecution(&after); }).ok());
  EXPECT_TRUE(store->GetExecution("after")->has_value());
}

TEST_P(StoreConformanceTest, TransactionRollsBackWhenAStoreCallFails) {
  auto store = Open();
  ExecutionRecord dup = MakeExecution("dup");
  ASSERT_TRUE(store->InsertExecution(&dup).ok());
  absl::Status status = store->Transaction([&]() -> absl::Status {
    ExecutionRecord fresh = MakeExecution("fresh");
    if (absl::Status s = store->InsertExecution(&fresh); !s.ok()) return s;
    ExecutionRecord again = MakeExecution("dup");
    return store->InsertExecution(&again);
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(store->GetExecution("fresh")->has_value());
}

TEST_P(StoreConformanceTest, NestedTransactionIsRefusedNotDeadlocked) {
  auto store = Open();
  absl::Status inner;
  absl::Status outer = store->Transaction([&]() -> absl::Status {
    ExecutionRecord rec = MakeExecution("outer");
    if (absl::Status s = store->InsertExecution(&rec); !s.ok()) return s;
    inner = store->Transaction([] { return absl::OkStatus(); });
    return absl::OkStatus();
  });
  EXPECT_TRUE(outer.ok()) << outer;
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition) << inner;
  EXPECT_TRUE(store->GetExecution("outer")->has_value());
}

TEST_P(StoreConformanceTest, TransactionIsolatesOtherThreads) {
  auto store = Open();
  std::atomic<bool> in_body{false};
  std::atomic<bool> reader_done{false};
  std::optional<bool> reader_saw;
  std::thread reader;
  absl::Status status = store->Transaction([&]() -> absl::Status {
    ExecutionRecord rec = MakeExecution("iso");
    if (absl::Status s = store->InsertExecution(&rec); !s.ok()) return s;
    reader = std::thread([&] {
      in_body = true;
      auto got = store->GetExecution("iso");  // waits for the transaction
      reader_saw = got.ok() && got->has_value();
      reader_done = true;
    });
    while (!in_body) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_FALSE(reader_done.load());
    return absl::OkStatus();
  });
  reader.join();
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_TRUE(reader_saw.has_value());
  EXPECT_TRUE(*reader_saw);
}

TEST_P(StoreConformanceTest, ConcurrentInsertsUpdatesAndTransactions) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 60;
  std::atomic<int> failures{0};
  std::vector<std::vector<uint64_t>> seqs(kThreads);

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ExecutionRecord rec = MakeExecution(absl::StrCat("c-", t, "-", i));
        absl::Status s;
        if (i % 3 == 0) {
          // Insert, attempt and result together.
          s = store->Transaction([&]() -> absl::Status {
            if (absl::Status st = store->InsertExecution(&rec); !st.ok()) return st;
            if (absl::Status st = store->PutAttempt(Attempt(rec.id, 1)); !st.ok()) {
              return st;
            }
            return store->PutResult(rec.id, 1, Binary(rec.id), "");
          });
        } else {
          s = store->InsertExecution(&rec);
        }
        if (!s.ok()) {
          ++failures;
          continue;
        }
        seqs[t].push_back(rec.seq);
        rec.state = ExecutionState::kSucceeded;
        rec.attempt = 1;
        if (!store->UpdateExecution(rec).ok()) ++failures;
        if (!store->ListExecutions({.states = {}, .limit = 5}).ok()) ++failures;
        if (!store->GetExecution(rec.id).ok()) ++failures;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);

  std::set<uint64_t> unique;
  for (const auto& v : seqs) {
    EXPECT_EQ(v.size(), static_cast<size_t>(kPerThread));
    for (size_t i = 1; i < v.size(); ++i) EXPECT_LT(v[i - 1], v[i]);
    unique.insert(v.begin(), v.end());
  }
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kPerThread));

  auto all = store->ListExecutions({.states = {ExecutionState::kSucceeded}, .limit = 10000});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), static_cast<size_t>(kThreads * kPerThread));
  auto unfinished = store->LoadUnfinished();
  ASSERT_TRUE(unfinished.ok());
  EXPECT_TRUE(unfinished->empty());
  auto result = store->GetResult("c-3-0", 1);
  ASSERT_TRUE(result.ok() && result->has_value());
  EXPECT_EQ(**result, Binary("c-3-0"));
}


TEST_P(StoreConformanceTest, DocumentsPutGetListDeleteAndSurviveReopen) {
  {
    auto store = Open();
    ASSERT_TRUE(store->PutDocument({"function", "b", std::string("x\0y", 3), 5}).ok());
    ASSERT_TRUE(store->PutDocument({"function", "a", "1", 6}).ok());
    ASSERT_TRUE(store->PutDocument({"workflow", "a", "w", 7}).ok());
    ASSERT_TRUE(store->PutDocument({"function", "a", "2", 8}).ok());  // replaces
  }
  auto store = Reopen();
  auto list = store->ListDocuments("function");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "a");
  EXPECT_EQ((*list)[0].body, "2");
  EXPECT_EQ((*list)[0].updated_ms, 8);
  EXPECT_EQ((*list)[1].body, std::string("x\0y", 3));
  auto deleted = store->DeleteDocument("function", "a");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
  deleted = store->DeleteDocument("function", "a");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  EXPECT_FALSE(store->GetDocument("function", "a")->has_value());
  EXPECT_EQ(store->DeleteDocumentsBefore("function", 6, 10).value_or(-1), 1);
  EXPECT_TRUE(store->ListDocuments("function")->empty());
  EXPECT_EQ(store->ListDocuments("workflow")->size(), 1u);
}

TEST_P(StoreConformanceTest, EverythingSurvivesReopenAndSeqKeepsIncreasing) {
  ExecutionRecord rec = MakeExecution("ex-durable", ExecutionState::kRunning);
  rec.placement = Binary("placement");
  ExecutionRecord deleted = MakeExecution("ex-deleted-later");
  {
    auto store = Open();
    ASSERT_TRUE(store->InsertExecution(&rec).ok());
    ASSERT_TRUE(store->PutAttempt(Attempt(rec.id, 1, "n")).ok());
    ASSERT_TRUE(store->PutResult(rec.id, 1, Binary("result"), "sum").ok());
    ASSERT_TRUE(store->UpsertNode(Node("n", Binary("spec"))).ok());
    ASSERT_TRUE(store->InsertExecution(&deleted).ok());
    deleted.state = ExecutionState::kSucceeded;
    ASSERT_TRUE(store->UpdateExecution(deleted).ok());
    ASSERT_EQ(store->DeleteFinishedExecutions(0, 0, 10).value_or(-1), 1);
  }
  auto store = Reopen();
  auto got = store->GetExecution(rec.id);
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameExecution(**got, rec);
  EXPECT_EQ(store->ListAttempts(rec.id)->size(), 1u);
  EXPECT_EQ(**store->GetResult(rec.id, 1), Binary("result"));
  EXPECT_EQ(**store->GetResultSummary(rec.id, 1), "sum");
  ASSERT_EQ(store->LoadNodes()->size(), 1u);
  EXPECT_EQ(store->LoadNodes()->front().spec, Binary("spec"));
  // The newest execution was deleted; its seq is still not reused.
  ExecutionRecord next = MakeExecution("ex-next");
  ASSERT_TRUE(store->InsertExecution(&next).ok());
  EXPECT_GT(next.seq, deleted.seq);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreConformanceTest, ::testing::Values("sqlite", "etcd"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace flotilla::store
