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
#include "absl/strings/str_format.h"
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

  // A result over the store's bound is refused, naming the bound; smaller
  // ones go on (larger than one Txn: chunked, see the tests below).
  ExecutionRecord rec = Execution("big");
  ASSERT_TRUE(store->InsertExecution(&rec).ok());
  absl::Status big = store->PutResult("big", 1, std::string((64 << 20) + 1, 'x'), "");
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted) << big;
  EXPECT_THAT(std::string(big.message()), HasSubstr("put result big/1"));
  EXPECT_THAT(std::string(big.message()), HasSubstr("at most 67108864 bytes (64 MiB)"));
  EXPECT_FALSE(store->GetResult("big", 1)->has_value());
  EXPECT_TRUE(store->PutResult("big", 1, std::string(2 << 20, 'x'), "").ok());
  EXPECT_EQ(OpenOrDie(fence)->GetResult("big", 1)->value_or(""), std::string(2 << 20, 'x'));

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


// Bytes that differ from chunk to chunk, so a chunk read from the wrong place
// cannot pass for the right one.
std::string Pattern(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

class EtcdStoreChunkTest : public EtcdStoreTest {
 protected:
  void SetUp() override {
    EtcdStoreTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    ASSERT_TRUE(client_->Put("/flotilla/leader", "me").ok());
    fence_ = {"/flotilla/leader", client_->Range("/flotilla/leader", "")->kvs[0].create_revision};
    store_ = OpenOrDie(fence_);
    ASSERT_NE(store_, nullptr);
  }
  // Keys under kPrefix + sub (e.g. "c/": every chunk).
  size_t Keys(const std::string& sub) {
    const std::string from = std::string(kPrefix) + sub;
    auto r = client_->Range(from, etcd::PrefixEnd(from));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->kvs.size() : 0;
  }
  std::vector<etcd::KeyValue> Chunks() {
    const std::string from = std::string(kPrefix) + "c/";
    return client_->Range(from, etcd::PrefixEnd(from)).value().kvs;
  }

  EtcdFence fence_;
  std::unique_ptr<Store> store_;
};

// A 5 MiB result (four times etcd's request limit) is stored in chunks,
// read back whole, by this store and by a new one (a restart, or the next
// leader); replacing it leaves only the new chunks; deleting the execution
// leaves none.
TEST_F(EtcdStoreChunkTest, AFiveMibResultRoundTripsAcrossARestart) {
  ExecutionRecord rec = Execution("x");
  rec.state = model::ExecutionState::kSucceeded;
  ASSERT_TRUE(store_->InsertExecution(&rec).ok());
  const std::string five = Pattern(5 << 20, 1);
  const Clock::time_point t0 = Clock::now();
  ASSERT_TRUE(store_->PutResult("x", 1, five, "summary").ok());
  const auto put_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(Keys("c/"), 10u);
  EXPECT_EQ(Keys("o/"), 0u);
  absl::StatusOr<std::optional<std::string>> got = store_->GetResult("x", 1);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_TRUE(**got == five) << "the bytes read back differ";
  EXPECT_EQ(store_->GetResultSummary("x", 1)->value_or(""), "summary");
  std::cerr << "5 MiB result: put " << put_ms << " ms\n";

  std::unique_ptr<Store> restarted = OpenOrDie(fence_);
  ASSERT_NE(restarted, nullptr);
  got = restarted->GetResult("x", 1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->has_value() && **got == five);
  EXPECT_EQ(restarted->GetResultSummary("x", 1)->value_or(""), "summary");
  restarted.reset();

  // Replaced by another large one: only its chunks stay.
  const std::string three = Pattern(3 << 20, 2);
  ASSERT_TRUE(store_->PutResult("x", 1, three, "s2").ok());
  EXPECT_EQ(Keys("c/"), 6u);
  EXPECT_TRUE(store_->GetResult("x", 1)->value_or("") == three);
  // By a small one: no chunk stays.
  ASSERT_TRUE(store_->PutResult("x", 1, "small", "s3").ok());
  EXPECT_EQ(Keys("c/"), 0u);
  EXPECT_EQ(Keys("m/"), 0u);
  EXPECT_EQ(store_->GetResult("x", 1)->value_or(""), "small");
  // And large again, over the small one.
  ASSERT_TRUE(store_->PutResult("x", 1, three, "s4").ok());
  EXPECT_EQ(Keys("o/"), 0u);
  EXPECT_TRUE(OpenOrDie(fence_)->GetResult("x", 1)->value_or("") == three);

  ASSERT_EQ(store_->DeleteFinishedExecutions(0, 0, -1).value_or(-1), 1);
  EXPECT_EQ(Keys("c/"), 0u);
  EXPECT_EQ(Keys("m/"), 0u);
  EXPECT_EQ(Keys("r/"), 0u);
  EXPECT_FALSE(store_->GetResult("x", 1)->has_value());
}

// A chunk changed or lost behind the store's back is reported as DataLoss,
// naming what is wrong; wrong bytes are never returned.
TEST_F(EtcdStoreChunkTest, ACorruptOrMissingChunkIsDataLossNotData) {
  ExecutionRecord rec = Execution("x");
  ASSERT_TRUE(store_->InsertExecution(&rec).ok());
  ASSERT_TRUE(store_->PutResult("x", 2, Pattern(2 << 20, 3), "").ok());
  std::vector<etcd::KeyValue> chunks = Chunks();
  ASSERT_EQ(chunks.size(), 4u);

  std::string flipped = chunks[1].value;
  flipped[1000] ^= 1;
  ASSERT_TRUE(client_->Put(chunks[1].key, flipped).ok());
  absl::StatusOr<std::optional<std::string>> got = store_->GetResult("x", 2);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("CRC-32C"));
  // GetResultSummary of a result stored without a summary reads the bytes.
  EXPECT_EQ(store_->GetResultSummary("x", 2).status().code(), absl::StatusCode::kDataLoss);

  ASSERT_TRUE(client_->Put(chunks[1].key, chunks[1].value).ok());
  EXPECT_TRUE(store_->GetResult("x", 2).ok());
  ASSERT_TRUE(client_->Delete(chunks[2].key).ok());
  got = OpenOrDie(fence_)->GetResult("x", 2);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("chunk 2 of 4"));
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("missing"));

  ASSERT_TRUE(client_->Delete(chunks[3].key).ok());  // the last one: a short result
  ASSERT_TRUE(client_->Put(chunks[2].key, chunks[2].value).ok());
  got = store_->GetResult("x", 2);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << got.status();
  EXPECT_THAT(std::string(got.status().message()), HasSubstr("etcd holds 3 chunks"));
}

// Inside a transaction the chunks are written at once and the manifest with
// the body: a body that fails leaves neither (no result, no chunks); one
// that commits is read back whole, and the body itself reads its result.
TEST_F(EtcdStoreChunkTest, AChunkedResultCommitsWithItsTransactionOrNotAtAll) {
  ExecutionRecord rec = Execution("x");
  ASSERT_TRUE(store_->InsertExecution(&rec).ok());
  const std::string big = Pattern(3 << 20, 4);
  absl::Status failed = store_->Transaction([&]() -> absl::Status {
    if (absl::Status s = store_->PutResult("x", 1, big, "s"); !s.ok()) return s;
    return absl::InternalError("the body fails");
  });
  EXPECT_EQ(failed.code(), absl::StatusCode::kInternal);
  EXPECT_FALSE(store_->GetResult("x", 1)->has_value());
  EXPECT_EQ(Keys("c/"), 0u);
  EXPECT_EQ(Keys("m/"), 0u);

  std::string seen_in_body;
  ASSERT_TRUE(store_->Transaction([&]() -> absl::Status {
                      if (absl::Status s = store_->PutResult("x", 1, big, "s"); !s.ok()) return s;
                      seen_in_body = store_->GetResult("x", 1)->value_or("");
                      ExecutionRecord other = Execution("y");
                      return store_->InsertExecution(&other);
                    })
                  .ok());
  EXPECT_TRUE(seen_in_body == big);
  EXPECT_TRUE(OpenOrDie(fence_)->GetResult("x", 1)->value_or("") == big);
  EXPECT_EQ(Keys("c/"), 6u);
}

// A deposed leader's chunks are refused like its other writes.
TEST_F(EtcdStoreChunkTest, ADeposedLeadersChunksAreRefused) {
  ExecutionRecord rec = Execution("x");
  ASSERT_TRUE(store_->InsertExecution(&rec).ok());
  ASSERT_TRUE(client_->Delete("/flotilla/leader").ok());
  ASSERT_TRUE(client_->Put("/flotilla/leader", "other").ok());
  absl::Status late = store_->PutResult("x", 1, Pattern(2 << 20, 5), "");
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
  EXPECT_THAT(std::string(late.message()), HasSubstr("lost leadership"));
  EXPECT_EQ(Keys("c/"), 0u);
}

// A key-value namespace of 1,000 keys (etcd takes 128 operations a Txn) is
// dropped in one transaction: the etcd Store deletes the kind it empties
// with one range delete. A transaction that deletes most but not all of a
// kind is still bounded.
TEST_F(EtcdStoreChunkTest, ANamespaceOfAThousandKeysIsDroppedAtomically) {
  const std::string kind = kv::StoreKvPersistence::EntryKind("acme~big");
  for (int batch = 0; batch < 10; ++batch) {
    ASSERT_TRUE(store_->Transaction([&]() -> absl::Status {
                        for (int i = batch * 100; i < batch * 100 + 100; ++i) {
                          absl::Status s = store_->PutDocument(
                              {kind, absl::StrFormat("k%04d", i), absl::StrCat(i + 1, " 0\nv"), 1});
                          if (!s.ok()) return s;
                        }
                        return absl::OkStatus();
                      })
                    .ok());
  }
  ASSERT_TRUE(store_->PutDocument({kv::StoreKvPersistence::kNamespaceKind, "acme~big", "1000", 1}).ok());
  // A neighbour whose kind shares a prefix with it as a string stays.
  ASSERT_TRUE(store_->PutDocument({kv::StoreKvPersistence::EntryKind("acme~bigger"), "k", "1 0\nv", 1}).ok());
  ASSERT_TRUE(store_->PutDocument({kv::StoreKvPersistence::kNamespaceKind, "acme~bigger", "1", 1}).ok());

  absl::Status most = store_->Transaction([&]() -> absl::Status {
    for (int i = 0; i < 999; ++i) {
      auto s = store_->DeleteDocument(kind, absl::StrFormat("k%04d", i));
      if (!s.ok()) return s.status();
    }
    return absl::OkStatus();
  });
  EXPECT_EQ(most.code(), absl::StatusCode::kResourceExhausted) << most;
  EXPECT_EQ(store_->ListDocuments(kind)->size(), 1000u);

  kv::StoreKvPersistence persistence(store_.get());
  kv::MemoryKv kv(nullptr, {}, &persistence);
  ASSERT_TRUE(kv.Restore().ok());
  ASSERT_EQ(kv.Get("acme~big", "k0999").value().value_or(kv::Entry{}).value, "v");
  const Clock::time_point t0 = Clock::now();
  absl::Status dropped = kv.DeleteNamespace("acme~big");
  ASSERT_TRUE(dropped.ok()) << dropped;
  std::cerr << "drop of 1000 keys: "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count() << " ms\n";
  EXPECT_FALSE(kv.Get("acme~big", "k0001").value().has_value());

  std::unique_ptr<Store> next = OpenOrDie(fence_);
  ASSERT_NE(next, nullptr);
  EXPECT_TRUE(next->ListDocuments(kind)->empty());
  const std::string from = std::string(kPrefix) + "d/";
  EXPECT_EQ(client_->Range(from, etcd::PrefixEnd(from)).value().kvs.size(), 2u)
      << "the other namespace's key and revision, and nothing else";
  kv::StoreKvPersistence persistence_next(next.get());
  kv::MemoryKv kv_next(nullptr, {}, &persistence_next);
  ASSERT_TRUE(kv_next.Restore().ok());
  EXPECT_FALSE(kv_next.Get("acme~big", "k0001").value().has_value());
  EXPECT_EQ(kv_next.Get("acme~bigger", "k").value().value_or(kv::Entry{}).value, "v");
}

// 300 keys that expired while no manager ran: the restore's clean-up (one
// change deleting all 300) is persisted in several transactions, not refused
// by etcd's bound, so the manager starts.
TEST_F(EtcdStoreChunkTest, ThreeHundredExpiredKeysAreDroppedOnRestore) {
  const std::string kind = kv::StoreKvPersistence::EntryKind("acme~ttl");
  for (int batch = 0; batch < 3; ++batch) {
    ASSERT_TRUE(store_->Transaction([&]() -> absl::Status {
                        for (int i = batch * 100; i < batch * 100 + 100; ++i) {
                          absl::Status s = store_->PutDocument(
                              {kind, absl::StrFormat("k%04d", i), absl::StrCat(i + 1, " 1000\nv"), 1});
                          if (!s.ok()) return s;
                        }
                        return absl::OkStatus();
                      })
                    .ok());
  }
  ASSERT_TRUE(store_->PutDocument({kind, "live", "301 0\nv", 1}).ok());
  ASSERT_TRUE(store_->PutDocument({kv::StoreKvPersistence::kNamespaceKind, "acme~ttl", "301", 1}).ok());
  kv::StoreKvPersistence persistence(store_.get());
  kv::MemoryKv kv(nullptr, {}, &persistence);
  absl::Status restored = kv.Restore();
  ASSERT_TRUE(restored.ok()) << restored;
  auto left = OpenOrDie(fence_)->ListDocuments(kind);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ(left->front().key, "live");
}

// The manager's retention runs inside its writer's transactions: there the
// store deletes as many finished executions as fit and says how many, and
// repeated rounds delete them all (before, more than ~30 failed every time).
TEST_F(EtcdStoreChunkTest, RetentionInsideATransactionDeletesWhatFits) {
  for (int batch = 0; batch < 2; ++batch) {
    ASSERT_TRUE(store_->Transaction([&]() -> absl::Status {
                        for (int i = batch * 50; i < batch * 50 + 50; ++i) {
                          ExecutionRecord done = Execution(absl::StrCat("done-", i));
                          done.state = model::ExecutionState::kSucceeded;
                          if (absl::Status s = store_->InsertExecution(&done); !s.ok()) return s;
                        }
                        return absl::OkStatus();
                      })
                    .ok());
  }
  int total = 0;
  for (int round = 0; round < 20 && total < 100; ++round) {
    int n = -1;
    absl::Status s = store_->Transaction([&]() -> absl::Status {
      absl::StatusOr<int> d = store_->DeleteFinishedExecutions(0, 0, 10000);
      if (!d.ok()) return d.status();
      n = *d;
      return absl::OkStatus();
    });
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_GT(n, 0);
    total += n;
  }
  EXPECT_EQ(total, 100);
  EXPECT_TRUE(OpenOrDie(fence_)->ListExecutions({})->empty());
}

// Chunks that no manifest names (a leader killed between its chunks and its
// manifest) are deleted when the next store opens; a committed result's are
// kept.
TEST_F(EtcdStoreChunkTest, OrphanedChunksAreSweptWhenAStoreOpens) {
  ExecutionRecord rec = Execution("x");
  ASSERT_TRUE(store_->InsertExecution(&rec).ok());
  const std::string kept = Pattern(1 << 20, 6);
  ASSERT_TRUE(store_->PutResult("x", 1, kept, "").ok());
  ASSERT_EQ(Keys("c/"), 2u);
  const std::string orphan = std::string(kPrefix) + "c/1:x/0000000002/deadbeef-1/";
  ASSERT_TRUE(client_->Put(orphan + "000000", "a").ok());
  ASSERT_TRUE(client_->Put(orphan + "000001", "b").ok());
  ASSERT_TRUE(client_->Put(std::string(kPrefix) + "c/1:y/0000000001/cafe-7/000000", "c").ok());
  ASSERT_EQ(Keys("c/"), 5u);
  std::unique_ptr<Store> next = OpenOrDie(fence_);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(Keys("c/"), 2u);
  EXPECT_TRUE(next->GetResult("x", 1)->value_or("") == kept);
}

}  // namespace
}  // namespace flotilla::store
