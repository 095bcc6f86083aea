// The durable embedded key-value store (memory_kv.h, "Durability"): a
// MemoryKv that writes through StoreKvPersistence to a real SQLite Store in a
// temporary directory, torn down and restored as a manager restart does.
// Faults come from FaultInjectingStore, which refuses writes on demand.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/clock.h"
#include "kv/kv.h"
#include "kv/memory_kv.h"
#include "kv/store_persistence.h"
#include "store/fault_injecting_store.h"
#include "store/store.h"
#include "support/temp_dir.h"

namespace flotilla::kv {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kNs[] = "acme~app";

// One "manager process": the Store (behind a fault injector), its
// persistence and the MemoryKv, opened on a state directory.
class Process {
 public:
  Process(const std::string& db, const Clock* clock, const KvLimits& limits = {}) {
    auto sqlite = store::OpenSqliteStore(db, store::Durability::kProcessCrash);
    EXPECT_TRUE(sqlite.ok()) << sqlite.status();
    store_ = std::make_unique<store::FaultInjectingStore>(std::move(*sqlite));
    persistence_ = std::make_unique<StoreKvPersistence>(store_.get());
    kv_ = std::make_unique<MemoryKv>(clock, limits, persistence_.get());
  }

  MemoryKv& kv() { return *kv_; }
  store::FaultInjectingStore& store() { return *store_; }

 private:
  std::unique_ptr<store::FaultInjectingStore> store_;
  std::unique_ptr<StoreKvPersistence> persistence_;
  std::unique_ptr<MemoryKv> kv_;
};

class DurableKvTest : public ::testing::Test {
 protected:
  DurableKvTest() : clock_(1'000'000) {}

  std::unique_ptr<Process> Start(const KvLimits& limits = {}) {
    auto process = std::make_unique<Process>(dir_.File("state.db"), &clock_, limits);
    absl::Status restored = process->kv().Restore();
    EXPECT_TRUE(restored.ok()) << restored;
    return process;
  }

  testing::TempDir dir_{"durable_kv"};
  ManualClock clock_;
};

TEST_F(DurableKvTest, RestoresKeysValuesVersionsExpiriesAndRevisions) {
  int64_t expires_at = 0;
  {
    auto first = Start();
    MemoryKv& kv = first->kv();
    ASSERT_EQ(kv.Put(kNs, "x", "1").value(), 1);
    ASSERT_EQ(kv.Put(kNs, "y", std::string("bin\0ary\n", 8), PutOptions{.ttl_ms = 60'000}).value(),
              2);
    ASSERT_EQ(kv.Put(kNs, "z", "3").value(), 3);
    ASSERT_TRUE(kv.Delete(kNs, "z").value());                                   // revision 4
    ASSERT_EQ(kv.Put(kNs, "x", "11", PutOptions{.if_version = 1}).value(), 5);  // CAS
    ASSERT_EQ(kv.Put("other", "k", "v").value(), 1);
    ASSERT_EQ(kv.Put("gone", "k", "v").value(), 1);
    ASSERT_TRUE(kv.DeleteNamespace("gone").ok());
    expires_at = kv.Get(kNs, "y").value()->expires_at_ms;
  }  // The process ends; nothing is flushed on the way out.

  auto second = Start();
  MemoryKv& kv = second->kv();
  EXPECT_EQ(kv.NamespaceCountForTest(), 2u);
  std::optional<Entry> x = kv.Get(kNs, "x").value();
  ASSERT_TRUE(x.has_value());
  EXPECT_EQ(x->value, "11");
  EXPECT_EQ(x->version, 5);
  std::optional<Entry> y = kv.Get(kNs, "y").value();
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ(y->value, std::string("bin\0ary\n", 8));
  EXPECT_EQ(y->version, 2);
  EXPECT_EQ(y->expires_at_ms, expires_at);
  EXPECT_FALSE(kv.Get(kNs, "z").value().has_value());
  EXPECT_EQ(kv.List(kNs, "").value().revision, 5);
  EXPECT_THAT(kv.List("gone", "").value().entries, IsEmpty());

  // Compare-and-set by version keeps working, and versions are not reused.
  absl::StatusOr<int64_t> stale = kv.Put(kNs, "x", "old", PutOptions{.if_version = 1});
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition) << stale.status();
  EXPECT_EQ(kv.Put(kNs, "x", "12", PutOptions{.if_version = 5}).value(), 6);
  EXPECT_EQ(kv.Put(kNs, "z", "again").value(), 7);

  // The TTL still runs on the restored entry.
  clock_.AdvanceMs(60'001);
  EXPECT_FALSE(kv.Get(kNs, "y").value().has_value());
}

TEST_F(DurableKvTest, RestoreDropsExpiredEntriesAndKeepsTheRevisionAhead) {
  {
    auto first = Start();
    ASSERT_EQ(first->kv().Put(kNs, "short", "v", PutOptions{.ttl_ms = 100}).value(), 1);
    ASSERT_EQ(first->kv().Put(kNs, "long", "v").value(), 2);
  }
  clock_.AdvanceMs(200);
  auto second = Start();
  MemoryKv& kv = second->kv();
  EXPECT_FALSE(kv.Get(kNs, "short").value().has_value());
  // The expiry happened while nobody watched: it takes revision 3, so a new
  // write cannot take a version a client might have seen.
  EXPECT_EQ(kv.List(kNs, "").value().revision, 3);
  EXPECT_EQ(kv.Put(kNs, "new", "v").value(), 4);
  // Its record is gone from the store too.
  auto docs = second->store().ListDocuments(StoreKvPersistence::EntryKind(kNs));
  ASSERT_TRUE(docs.ok()) << docs.status();
  std::vector<std::string> keys;
  for (const auto& doc : *docs) keys.push_back(doc.key);
  EXPECT_THAT(keys, ::testing::ElementsAre("long", "new"));
}

// Regression: WaitForChange read history.front() of a namespace whose history
// was empty, as it is after a restore.
TEST_F(DurableKvTest, WatchFromBeforeARestoreIsCompactedNotACrash) {
  { ASSERT_TRUE(Start()->kv().Put(kNs, "k", "v").ok()); }
  auto second = Start();
  MemoryKv& kv = second->kv();
  absl::StatusOr<WatchResult> old = kv.WaitForChange(kNs, "", 0);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange) << old.status();
  EXPECT_THAT(old.status().message(), HasSubstr("compacted"));

  absl::StatusOr<WatchResult> current = kv.WaitForChange(kNs, "", 1);
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_THAT(current->events, IsEmpty());
  ASSERT_TRUE(kv.Put(kNs, "k", "w").ok());
  current = kv.WaitForChange(kNs, "", 1);
  ASSERT_TRUE(current.ok()) << current.status();
  ASSERT_EQ(current->events.size(), 1u);
  EXPECT_EQ(current->events[0].version, 2);
  EXPECT_EQ(current->events[0].value, "w");
}

TEST_F(DurableKvTest, TenantQuotasAreRecomputedOnRestore) {
  KvLimits limits;
  limits.tenant_max_keys = 2;
  limits.tenant_max_bytes = 100;
  {
    auto first = Start(limits);
    ASSERT_TRUE(first->kv().Put("acme~a", "k1", "v").ok());
    ASSERT_TRUE(first->kv().Put("acme~b", "k2", "v").ok());
  }
  auto second = Start(limits);
  MemoryKv& kv = second->kv();
  absl::StatusOr<int64_t> over = kv.Put("acme~a", "k3", "v");
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
  EXPECT_THAT(over.status().message(), HasSubstr("acme"));
  // Another tenant is not charged for acme's keys.
  EXPECT_TRUE(kv.Put("other~a", "k", "v").ok());
  ASSERT_TRUE(kv.Delete("acme~b", "k2").value());
  EXPECT_TRUE(kv.Put("acme~a", "k3", "v").ok());
  over = kv.Put("acme~a", "big", std::string(100, 'x'));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted) << over.status();
}

TEST_F(DurableKvTest, AWriteThatIsNotPersistedIsRefusedAndNotKept) {
  auto process = Start();
  MemoryKv& kv = process->kv();
  ASSERT_EQ(kv.Put(kNs, "k", "v1").value(), 1);
  const size_t namespaces = kv.NamespaceCountForTest();

  process->store().FailAll();
  absl::StatusOr<int64_t> put = kv.Put(kNs, "k", "v2");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable) << put.status();
  EXPECT_THAT(put.status().message(), HasSubstr("not persisted"));
  EXPECT_THAT(put.status().message(), HasSubstr("injected disk failure"));
  EXPECT_EQ(kv.Put(kNs, "new", "v").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(kv.Put("fresh", "k", "v").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(kv.Delete(kNs, "k").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(kv.DeleteNamespace(kNs).code(), absl::StatusCode::kUnavailable);

  // Memory kept the acknowledged state only: no value, key, namespace,
  // revision or event of a refused write.
  EXPECT_EQ(kv.Get(kNs, "k").value()->value, "v1");
  EXPECT_FALSE(kv.Get(kNs, "new").value().has_value());
  EXPECT_EQ(kv.NamespaceCountForTest(), namespaces);
  ListResult listed = kv.List(kNs, "").value();
  EXPECT_EQ(listed.revision, 1);
  EXPECT_THAT(kv.WaitForChange(kNs, "", 1).value().events, IsEmpty());

  process->store().Heal();
  EXPECT_EQ(kv.Put(kNs, "k", "v3", PutOptions{.if_version = 1}).value(), 2);
  process.reset();
  auto restarted = Start();
  EXPECT_EQ(restarted->kv().Get(kNs, "k").value()->value, "v3");
  EXPECT_EQ(restarted->kv().List(kNs, "").value().revision, 2);
}

TEST_F(DurableKvTest, ConcurrentWritersRestoreToWhatWasAcknowledged) {
  constexpr int kThreads = 4;
  constexpr int kPuts = 100;
  std::vector<std::vector<int64_t>> acked(kThreads);
  {
    auto first = Start();
    MemoryKv& kv = first->kv();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&kv, &acked, t] {
        for (int i = 0; i < kPuts; ++i) {
          // Threads share keys, so the store must see puts in memory's order.
          auto version = kv.Put(kNs, absl::StrCat("k", i % 10), absl::StrCat(t, ":", i));
          if (version.ok()) acked[t].push_back(*version);
        }
      });
    }
    // A reader and a watcher run meanwhile and never wait for the disk's writes.
    std::thread reader([&kv] {
      int64_t after = 0;
      while (after < kThreads * kPuts) {
        auto r = kv.WaitForChange(kNs, "", after, WatchOptions{.timeout_ms = 5'000});
        if (!r.ok()) break;
        after = r->revision;
      }
    });
    for (auto& th : threads) th.join();
    reader.join();
    ListResult before = kv.List(kNs, "").value();
    ASSERT_EQ(before.revision, kThreads * kPuts);

    auto second = Start();  // Reads the same database while the first is open.
    ListResult after = second->kv().List(kNs, "").value();
    EXPECT_EQ(after.revision, before.revision);
    ASSERT_EQ(after.entries.size(), before.entries.size());
    for (size_t i = 0; i < after.entries.size(); ++i) {
      EXPECT_EQ(after.entries[i].key, before.entries[i].key);
      EXPECT_EQ(after.entries[i].entry.value, before.entries[i].entry.value);
      EXPECT_EQ(after.entries[i].entry.version, before.entries[i].entry.version);
    }
  }
  for (const auto& versions : acked) EXPECT_EQ(versions.size(), static_cast<size_t>(kPuts));
}

TEST_F(DurableKvTest, RestoreNeedsPersistenceAndAnEmptyStore) {
  MemoryKv plain(&clock_);
  EXPECT_EQ(plain.Restore().code(), absl::StatusCode::kFailedPrecondition);
  auto process = Start();
  ASSERT_TRUE(process->kv().Put(kNs, "k", "v").ok());
  EXPECT_EQ(process->kv().Restore().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flotilla::kv
