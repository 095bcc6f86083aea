// What only the etcd Store (src/store/etcd/etcd_store.cc) does, against a
// real 3-member etcd cluster: fencing of a deposed leader, writes through the
// loss of a member, seq across leaders, the Txn bounds, noticing writes it
// did not make, and the embedded key-value store carried across a failover.

#include "store/etcd/etcd_store.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ha/election.h"
#include "kv/memory_kv.h"
#include "kv/store_persistence.h"
#include "support/cut_off_etcd_client.h"
#include "support/etcd_cluster.h"

namespace flotilla::store {
namespace {

using ::flotilla::testing::CutOffClient;
using ::flotilla::testing::EtcdCluster;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kPrefix[] = "/flotilla/store/";

ExecutionRecord Execution(const std::string& id) {
  ExecutionRecord rec;
  rec.id = id;
  rec.user_id = "alice";
  rec.request = "request-" + id;
  return rec;
}

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = cluster_.Start();
    if (started.code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << "SKIPPING etcd test: " << started.message();
    }
    ASSERT_TRUE(started.ok()) << started;
    auto client = cluster_.Client();
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }
  static ha::ElectionOptions Options() {
    ha::ElectionOptions o;
    o.key = "/flotilla/leader";
    o.ttl = milliseconds(2000);
    return o;
  }
  std::unique_ptr<Store> OpenOrDie(const EtcdFence& fence) {
    auto store = OpenEtcdStore(client_, kPrefix, fence);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  EtcdCluster cluster_;
  std::shared_ptr<etcd::EtcdClient> client_;
};

// Leader a is cut off from etcd (its renewals fail) while its store still
// reaches etcd: the worst case for fencing. b takes over; every write of a's
// store from then on fails, and b's store holds everything a acknowledged.
TEST_F(EtcdStoreTest, ADeposedLeadersWritesFailAndTheNewLeaderHasEverythingAcknowledged) {
  auto cut = std::make_shared<CutOffClient>(client_);
  ha::LeaderElection a(cut, Options());
  ha::LeaderElection b(client_, Options());
  auto a_won = a.Campaign("a", "addr-a", nullptr, nullptr, Clock::now() + milliseconds(5000));
  ASSERT_TRUE(a_won.ok()) << a_won.status();
  auto store_a = OpenOrDie({a_won->key, a_won->epoch});
  ASSERT_NE(store_a, nullptr);
  ExecutionRecord e1 = Execution("e1"), e2 = Execution("e2");
  ASSERT_TRUE(store_a->InsertExecution(&e1).ok());
  ASSERT_TRUE(store_a->InsertExecution(&e2).ok());
  ASSERT_TRUE(store_a->PutResult("e1", 1, "result", "").ok());

  cut->cut = true;
  auto b_won = b.Campaign("b", "addr-b", nullptr, nullptr, Clock::now() + milliseconds(10000));
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  EXPECT_FALSE(a.IsLeader());

  ExecutionRecord late = Execution("late");
  absl::Status refused = store_a->InsertExecution(&late);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("lost leadership"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr(absl::StrCat(b_won->epoch)));
  // Every later write too, and nothing of them shows in a's own reads.
  EXPECT_EQ(store_a->UpdateExecution(e1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_a->Transaction([&] { return store_a->UpsertNode(NodeRecord{"n", "", model::NodeStatus::kOnline, 1, 0}); }).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store_a->GetExecution("late")->has_value());
  // A store cannot even be opened with the old fence.
  auto stale = OpenEtcdStore(client_, kPrefix, {a_won->key, a_won->epoch});
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();

  auto store_b = OpenOrDie({b_won->key, b_won->epoch});
  ASSERT_NE(store_b, nullptr);
  EXPECT_TRUE(store_b->GetExecution("e1")->has_value());
  EXPECT_TRUE(store_b->GetExecution("e2")->has_value());
  EXPECT_FALSE(store_b->GetExecution("late")->has_value());
  EXPECT_EQ(**store_b->GetResult("e1", 1), "result");
  ExecutionRecord e3 = Execution("e3");
  ASSERT_TRUE(store_b->InsertExecution(&e3).ok());
  EXPECT_GT(e3.seq, e2.seq);
  EXPECT_TRUE(store_b->LoadNodes()->empty());
}

// A leader that knows it lost (still_leading false) writes nothing, at once,
// even while etcd would still take its writes.
TEST_F(EtcdStoreTest, AFenceKnownLostRefusesWritesAtOnce) {
  ha::LeaderElection a(client_, Options());
  auto won = a.Campaign("a", "addr-a", nullptr, nullptr, Clock::now() + milliseconds(5000));
  ASSERT_TRUE(won.ok()) << won.status();
  std::atomic<bool> leading{true};
  auto store = OpenOrDie({won->key, won->epoch, [&leading] { return leading.load(); }});
  ASSERT_NE(store, nullptr);
  ExecutionRecord e1 = Execution("e1"), e2 = Execution("e2");
  ASSERT_TRUE(store->InsertExecution(&e1).ok());
  leading = false;
  const auto t0 = Clock::now();
  absl::Status refused = store->InsertExecution(&e2);
  EXPECT_LT(Clock::now() - t0, milliseconds(100));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("lost leadership"));
  leading = true;  // once lost, lost for good
  EXPECT_EQ(store->UpdateExecution(e1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store->GetExecution("e2")->has_value());
}

// 2 of 3 members are a quorum: the store keeps writing while one is killed,
// and every acknowledged write is there for the next leader.
TEST_F(EtcdStoreTest, WritesContinueWhileAMemberIsKilled) {
  ASSERT_TRUE(client_->Put("/flotilla/leader", "me").ok());
  const EtcdFence fence{"/flotilla/leader", client_->Range("/flotilla/leader", "")->kvs[0].create_revision};
  auto store = OpenOrDie(fence);
  ASSERT_NE(store, nullptr);
  std::atomic<int> acked{0};
  std::atomic<bool> stop{false};
  absl::Status failure;
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      ExecutionRecord rec = Execution(absl::StrCat("w-", i));
      absl::Status s = store->InsertExecution(&rec);
      if (s.ok()) {
        rec.state = model::ExecutionState::kRunning;
        s = store->UpdateExecution(rec);
      }
      if (!s.ok()) {
        failure = s;
        return;
      }
      acked = i + 1;
    }
  });
  while (acked < 30) std::this_thread::sleep_for(milliseconds(2));
  // The member the client talks to: the failover is part of what is tested.
  int victim = 0;
  while (cluster_.endpoint(victim) != client_->current_endpoint()) ++victim;
  ASSERT_TRUE(cluster_.Kill(victim).ok());
  const int at_kill = acked;
  // Generous: under a loaded machine one write pair takes tens of ms.
  const auto end = Clock::now() + milliseconds(15000);
  while (acked < at_kill + 40 && failure.ok() && Clock::now() < end) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  stop = true;
  writer.join();
  EXPECT_TRUE(failure.ok()) << failure;
  EXPECT_GE(acked.load(), at_kill + 40);

  auto reopened = OpenOrDie(fence);
  ASSERT_NE(reopened, nullptr);
  auto all = reopened->ListExecutions({.states = {}, .limit = 1 << 20, .user_id = ""});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_GE(static_cast<int>(all->size()), acked.load());
  for (int i = 0; i < acked; ++i) {
    auto got = reopened->GetExecution(absl::StrCat("w-", i));
    ASSERT_TRUE(got.ok() && got->has_value()) << "acknowledged w-" << i << " lost";
    EXPECT_EQ((*got)->state, model::ExecutionState::kRunning);
  }
}

TEST_F(EtcdStoreTest, ATransactionOverEtcdsBoundsIsRefusedAndChangesNothing) {
  ASSERT_TRUE(client_->Put("/flotilla/leader", "me").ok());
  const EtcdFence fence{"/flotilla/leader", client_->Range("/flotilla/leader", "")->kvs[0].create_revision};
  auto store = OpenOrDie(fence);
  ASSERT_NE(store, nullptr);
  absl::Status status = store->Transaction([&]() -> absl::Status {
    for (int i = 0; i < etcd::kMaxTxnOps; ++i) {
      ExecutionRecord rec = Execution(absl::StrCat("t-", i));
      if (absl::Status s = store->InsertExecution(&rec); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("at most"));
  EXPECT_TRUE(store->ListExecutions({})->empty());

  ExecutionRecord rec = Execution("big");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  absl::Status big = store->PutResult("big", 1, std::string(2 << 20, 'x'), "");
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted) << big;
  EXPECT_THAT(std::string(big.message()), HasSubstr("put result big/1"));
  // The store goes on.
  EXPECT_TRUE(store->PutResult("big", 1, std::string(100 << 10, 'x'), "").ok());
  EXPECT_TRUE(OpenOrDie(fence)->GetResult("big", 1)->has_value());

  // Deleting many finished executions takes several Txns, transparently.
  for (int i = 0; i < 150; ++i) {
    ExecutionRecord done = Execution(absl::StrCat("done-", i));
    done.state = model::ExecutionState::kSucceeded;
    ASSERT_TRUE(store->InsertExecution(&done).ok());
    ASSERT_TRUE(store->PutAttempt(AttemptRecord{done.id, 1, "node", 0, 0, ""}).ok());
  }
  auto deleted = store->DeleteFinishedExecutions(0, 0, -1);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 150);
  auto left = OpenOrDie(fence)->ListExecutions({.states = {}, .limit = 1000, .user_id = ""});
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().id, "big");
}

// Two stores under one fence stand for a write this store did not make (or
// one of its own that timed out and was applied late): the next write fails
// with Aborted, the store reloads, and a retry sees both.
TEST_F(EtcdStoreTest, AWriteItDidNotMakeIsNoticedAndReloaded) {
  ASSERT_TRUE(client_->Put("/flotilla/leader", "me").ok());
  const EtcdFence fence{"/flotilla/leader", client_->Range("/flotilla/leader", "")->kvs[0].create_revision};
  auto one = OpenOrDie(fence);
  auto other = OpenOrDie(fence);
  ASSERT_TRUE(one && other);
  ASSERT_TRUE(other->PutDocument({"function", "f", "body", 1}).ok());
  ExecutionRecord rec = Execution("x");
  absl::Status aborted = one->InsertExecution(&rec);
  EXPECT_EQ(aborted.code(), absl::StatusCode::kAborted) << aborted;
  EXPECT_THAT(std::string(aborted.message()), HasSubstr("retry"));
  EXPECT_FALSE(one->GetExecution("x")->has_value());
  ASSERT_TRUE(one->InsertExecution(&rec).ok());
  EXPECT_TRUE(one->GetDocument("function", "f")->has_value());
}

TEST_F(EtcdStoreTest, OpenChecksItsArguments) {
  EXPECT_EQ(OpenEtcdStore(client_, "no-slash", {"/l", 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenEtcdStore(client_, kPrefix, {"/l", 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(OpenEtcdStore(client_, kPrefix, {"/flotilla/store/leader", 5}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto missing = OpenEtcdStore(client_, kPrefix, {"/no/such/leader", 5});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition) << missing.status();
}

// The embedded key-value store writes through the leader's store: a new
// leader restores every key the old one acknowledged, with its version, and
// the deposed leader's writes are refused, not acknowledged.
TEST_F(EtcdStoreTest, TheNewLeaderRestoresTheKeyValueStoreTheOldOneAcknowledged) {
  auto cut = std::make_shared<CutOffClient>(client_);
  ha::LeaderElection a(cut, Options());
  ha::LeaderElection b(client_, Options());
  auto a_won = a.Campaign("a", "addr-a", nullptr, nullptr, Clock::now() + milliseconds(5000));
  ASSERT_TRUE(a_won.ok()) << a_won.status();
  auto store_a = OpenOrDie({a_won->key, a_won->epoch});
  ASSERT_NE(store_a, nullptr);
  kv::StoreKvPersistence persistence_a(store_a.get());
  kv::MemoryKv kv_a(nullptr, {}, &persistence_a);
  ASSERT_TRUE(kv_a.Restore().ok());
  ASSERT_EQ(kv_a.Put("acme~s", "k", "v1").value(), 1);
  ASSERT_EQ(kv_a.Put("acme~s", "k", "v2", kv::PutOptions{.if_version = 1}).value(), 2);
  ASSERT_EQ(kv_a.Put("acme~s", "t", "x", kv::PutOptions{.ttl_ms = 600'000}).value(), 3);

  cut->cut = true;
  auto b_won = b.Campaign("b", "addr-b", nullptr, nullptr, Clock::now() + milliseconds(10000));
  ASSERT_TRUE(b_won.ok()) << b_won.status();
  absl::StatusOr<int64_t> late = kv_a.Put("acme~s", "k", "late");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable) << late.status();
  EXPECT_THAT(std::string(late.status().message()), HasSubstr("lost leadership"));
  EXPECT_EQ(kv_a.Get("acme~s", "k").value()->value, "v2");

  auto store_b = OpenOrDie({b_won->key, b_won->epoch});
  ASSERT_NE(store_b, nullptr);
  kv::StoreKvPersistence persistence_b(store_b.get());
  kv::MemoryKv kv_b(nullptr, {}, &persistence_b);
  ASSERT_TRUE(kv_b.Restore().ok());
  std::optional<kv::Entry> k = kv_b.Get("acme~s", "k").value();
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->value, "v2");
  EXPECT_EQ(k->version, 2);
  EXPECT_EQ(kv_b.Get("acme~s", "t").value()->version, 3);
  EXPECT_EQ(kv_b.Put("acme~s", "k", "v3", kv::PutOptions{.if_version = 2}).value(), 4);
}

}  // namespace
}  // namespace flotilla::store
