// The KvStore contract (src/kv/kv.h), run against both implementations:
// MemoryKv with a ManualClock, and RedisKv against a real redis-server that
// the test binary starts on loopback (redis_server.h). Time-dependent cases
// move the fake clock for MemoryKv and sleep briefly for Redis, whose TTLs
// run on the server's clock. Redis-only cases (key layout, connection
// failures) follow the contract suite.

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/clock.h"
#include "kv/kv.h"
#include "kv/memory_kv.h"
#include "kv/redis_kv.h"
#include "kv/watcher.h"
#include "unit/kv/durable_backend.h"
#include "unit/kv/redis_server.h"

namespace flotilla::kv {
namespace {

using ::flotilla::kv::testing::Backend;
using ::flotilla::kv::testing::BackendName;
using ::flotilla::kv::testing::DurableBackend;
using ::flotilla::kv::testing::FreeLoopbackPort;
using ::flotilla::kv::testing::RedisServer;
using ::flotilla::kv::testing::SharedRedisServer;
using ::flotilla::kv::testing::UniquePrefix;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Keys(const ListResult& result) {
  std::vector<std::string> keys;
  for (const KeyEntry& entry : result.entries) keys.push_back(entry.key);
  return keys;
}

std::string Describe(const WatchEvent& event) {
  return absl::StrCat(EventTypeName(event.type), " ", event.key, "=", event.value, " v",
                      event.version, " r", event.revision);
}

class KvContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  static constexpr int64_t kTtlMs = 150;

  void SetUp() override {
    if (GetParam() == Backend::kRedis) {
      server_ = SharedRedisServer();
      FLOTILLA_REQUIRE_REDIS(server_);
    }
    limits_.max_value_bytes = 4096;
    kv_ = MakeStore(limits_);
    ASSERT_NE(kv_, nullptr);
  }

  std::unique_ptr<KvStore> MakeStore(const KvLimits& limits) {
    if (GetParam() == Backend::kMemory) return std::make_unique<MemoryKv>(&clock_, limits);
    if (GetParam() == Backend::kDurableMemory) return durable_.Make(&clock_, limits);
    RedisKvOptions options;
    options.redis.port = server_->port();
    options.redis.key_prefix = UniquePrefix("kvtest");
    options.limits = limits;
    absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
    EXPECT_TRUE(kv.ok()) << kv.status();
    return kv.ok() ? std::move(*kv) : nullptr;
  }

  // Lets ms pass for TTLs: the fake clock of MemoryKv, real time for Redis.
  void Elapse(int64_t ms) {
    if (GetParam() != Backend::kRedis) {
      clock_.AdvanceMs(ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }

  // Collects at least n events after `after`, waiting up to 5 s in all.
  std::vector<WatchEvent> Collect(absl::string_view ns, absl::string_view prefix, int64_t after,
                                  size_t n) {
    std::vector<WatchEvent> events;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (events.size() < n && std::chrono::steady_clock::now() < deadline) {
      WatchOptions options;
      options.timeout_ms = 200;
      absl::StatusOr<WatchResult> result = kv_->WaitForChange(ns, prefix, after, options);
      EXPECT_TRUE(result.ok()) << result.status();
      if (!result.ok()) break;
      events.insert(events.end(), result->events.begin(), result->events.end());
      after = result->revision;
    }
    return events;
  }

  ManualClock clock_;
  RedisServer* server_ = nullptr;
  KvLimits limits_;
  DurableBackend durable_;  // Outlives the stores it made.
  std::unique_ptr<KvStore> kv_;
};

TEST_P(KvContractTest, GetPutRoundTrip) {
  absl::StatusOr<std::optional<Entry>> missing = kv_->Get("wf-1", "state");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  absl::StatusOr<int64_t> v1 = kv_->Put("wf-1", "state", "running");
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_GT(*v1, 0);
  absl::StatusOr<std::optional<Entry>> got = kv_->Get("wf-1", "state");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->value, "running");
  EXPECT_EQ((*got)->version, *v1);
  EXPECT_EQ((*got)->expires_at_ms, 0);

  absl::StatusOr<int64_t> v2 = kv_->Put("wf-1", "state", "done");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_GT(*v2, *v1);
  EXPECT_EQ((*kv_->Get("wf-1", "state"))->value, "done");

  // Values are bytes: NULs and the empty value survive; keys may be binary.
  const std::string binary("a\0b\xff", 4);
  ASSERT_TRUE(kv_->Put("wf-1", "bin\x01", binary).ok());
  EXPECT_EQ((*kv_->Get("wf-1", "bin\x01"))->value, binary);
  ASSERT_TRUE(kv_->Put("wf-1", "empty", "").ok());
  ASSERT_TRUE(kv_->Get("wf-1", "empty")->has_value());
  EXPECT_EQ((*kv_->Get("wf-1", "empty"))->value, "");
}

TEST_P(KvContractTest, CompareAndSetSucceedsAndConflictsWithExactError) {
  PutOptions create;
  create.if_version = kMustNotExist;
  absl::StatusOr<int64_t> v1 = kv_->Put("wf-1", "leader", "a", create);
  ASSERT_TRUE(v1.ok()) << v1.status();

  absl::StatusOr<int64_t> again = kv_->Put("wf-1", "leader", "b", create);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.status().message(),
            absl::StrCat("version mismatch: have ", *v1,
                         ", expected 0 (put key \"leader\" in namespace \"wf-1\")"));

  PutOptions cas;
  cas.if_version = *v1;
  absl::StatusOr<int64_t> v2 = kv_->Put("wf-1", "leader", "c", cas);
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_GT(*v2, *v1);

  // The same (now stale) version again: refused, value unchanged.
  absl::StatusOr<int64_t> stale = kv_->Put("wf-1", "leader", "d", cas);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(stale.status().message(),
            absl::StrCat("version mismatch: have ", *v2, ", expected ", *v1,
                         " (put key \"leader\" in namespace \"wf-1\")"));
  EXPECT_EQ((*kv_->Get("wf-1", "leader"))->value, "c");

  // A version on an absent key.
  PutOptions ghost;
  ghost.if_version = 7;
  EXPECT_EQ(kv_->Put("wf-1", "absent", "x", ghost).status().message(),
            "version mismatch: have 0, expected 7 (put key \"absent\" in namespace \"wf-1\")");
}

TEST_P(KvContractTest, DeleteWithVersionAndNoVersionReuse) {
  absl::StatusOr<bool> nothing = kv_->Delete("wf-1", "k");
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_FALSE(*nothing);

  const int64_t v1 = *kv_->Put("wf-1", "k", "one");
  const int64_t v2 = *kv_->Put("wf-1", "k", "two");
  DeleteOptions stale;
  stale.if_version = v1;
  absl::StatusOr<bool> refused = kv_->Delete("wf-1", "k", stale);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            absl::StrCat("version mismatch: have ", v2, ", expected ", v1,
                         " (delete key \"k\" in namespace \"wf-1\")"));
  ASSERT_TRUE(kv_->Get("wf-1", "k")->has_value());

  DeleteOptions current;
  current.if_version = v2;
  absl::StatusOr<bool> deleted = kv_->Delete("wf-1", "k", current);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  EXPECT_FALSE(kv_->Get("wf-1", "k")->has_value());

  // Re-created, the key gets a fresh, higher version: a CAS holding the old
  // one cannot succeed (no ABA).
  const int64_t v3 = *kv_->Put("wf-1", "k", "three");
  EXPECT_GT(v3, v2);
  PutOptions old;
  old.if_version = v1;
  EXPECT_EQ(kv_->Put("wf-1", "k", "x", old).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(KvContractTest, TtlExpiryHidesEntryAndReportsExpireEvent) {
  const int64_t start = kv_->List("wf-1", "").value().revision;
  PutOptions ttl;
  ttl.ttl_ms = kTtlMs;
  const int64_t version = *kv_->Put("wf-1", "lease", "held", ttl);
  ASSERT_TRUE(kv_->Put("wf-1", "keep", "forever", ttl).ok());
  ASSERT_TRUE(kv_->Put("wf-1", "keep", "forever").ok());  // A put without TTL clears it.

  absl::StatusOr<std::optional<Entry>> live = kv_->Get("wf-1", "lease");
  ASSERT_TRUE(live.ok() && live->has_value());
  EXPECT_GT((*live)->expires_at_ms, 0);
  EXPECT_EQ((*kv_->Get("wf-1", "keep"))->expires_at_ms, 0);

  Elapse(kTtlMs + 100);
  // Redis expires on its own clock; allow it a bounded moment beyond the TTL.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (kv_->Get("wf-1", "lease")->has_value() && std::chrono::steady_clock::now() < deadline) {
    Elapse(20);
  }
  EXPECT_FALSE(kv_->Get("wf-1", "lease")->has_value());
  EXPECT_THAT(Keys(*kv_->List("wf-1", "")), ElementsAre("keep"));

  std::vector<WatchEvent> events = Collect("wf-1", "lease", start, 2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, EventType::kPut);
  EXPECT_EQ(events[1].type, EventType::kExpire) << Describe(events[1]);
  EXPECT_EQ(events[1].key, "lease");
  EXPECT_EQ(events[1].version, version);
  EXPECT_GT(events[1].revision, events[0].revision);
}

TEST_P(KvContractTest, ExpiredKeyCanBeCreatedAgain) {
  PutOptions ttl;
  ttl.ttl_ms = kTtlMs;
  ASSERT_TRUE(kv_->Put("wf-1", "lock", "a", ttl).ok());
  PutOptions create;
  create.if_version = kMustNotExist;
  EXPECT_EQ(kv_->Put("wf-1", "lock", "b", create).status().code(),
            absl::StatusCode::kFailedPrecondition);
  Elapse(kTtlMs + 100);
  absl::StatusOr<int64_t> again = kv_->Put("wf-1", "lock", "b", create);
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_P(KvContractTest, NamespacesAreIsolatedAndDeletable) {
  ASSERT_TRUE(kv_->Put("wf-a", "x", "from a").ok());
  ASSERT_TRUE(kv_->Put("wf-b", "x", "from b").ok());
  EXPECT_EQ((*kv_->Get("wf-a", "x"))->value, "from a");
  EXPECT_EQ((*kv_->Get("wf-b", "x"))->value, "from b");
  EXPECT_EQ(kv_->List("wf-a", "")->entries.size(), 1u);

  ASSERT_TRUE(kv_->DeleteNamespace("wf-a").ok());
  EXPECT_FALSE(kv_->Get("wf-a", "x")->has_value());
  absl::StatusOr<ListResult> gone = kv_->List("wf-a", "");
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_TRUE(gone->entries.empty());
  EXPECT_EQ(gone->revision, 0);
  EXPECT_EQ((*kv_->Get("wf-b", "x"))->value, "from b");
  EXPECT_TRUE(kv_->DeleteNamespace("never-existed").ok());

  // The namespace can be used again from scratch.
  absl::StatusOr<int64_t> fresh = kv_->Put("wf-a", "y", "again");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(*fresh, 1);
}

TEST_P(KvContractTest, DeleteNamespaceWithManyKeys) {
  for (int i = 0; i < 1500; ++i) ASSERT_TRUE(kv_->Put("big", absl::StrCat("k", i), "v").ok());
  ASSERT_TRUE(kv_->DeleteNamespace("big").ok());
  EXPECT_TRUE(kv_->List("big", "")->entries.empty());
  EXPECT_FALSE(kv_->Get("big", "k1499")->has_value());
}

TEST_P(KvContractTest, ListWithPrefixSortedAndLimited) {
  for (const char* key : {"task/2", "task/1", "result/1", "task/10", "task", "tasks"}) {
    ASSERT_TRUE(kv_->Put("wf-1", key, absl::StrCat("v-", key)).ok());
  }
  absl::StatusOr<ListResult> tasks = kv_->List("wf-1", "task/");
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  EXPECT_THAT(Keys(*tasks), ElementsAre("task/1", "task/10", "task/2"));
  EXPECT_FALSE(tasks->truncated);
  EXPECT_EQ(tasks->entries[0].entry.value, "v-task/1");
  EXPECT_EQ(tasks->revision, 6);

  ListOptions two;
  two.limit = 2;
  absl::StatusOr<ListResult> limited = kv_->List("wf-1", "task", two);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_THAT(Keys(*limited), ElementsAre("task", "task/1"));
  EXPECT_TRUE(limited->truncated);

  EXPECT_EQ(kv_->List("wf-1", "")->entries.size(), 6u);
  EXPECT_TRUE(kv_->List("wf-1", "zzz")->entries.empty());
  EXPECT_TRUE(kv_->List("no-such-ns", "")->entries.empty());
}

TEST_P(KvContractTest, WatchSeesPutDeleteExpireInOrder) {
  const int64_t start = kv_->List("wf-1", "")->revision;
  PutOptions ttl;
  ttl.ttl_ms = kTtlMs;
  const int64_t vx = *kv_->Put("wf-1", "x", "1");
  const int64_t vy = *kv_->Put("wf-1", "y", "2", ttl);
  ASSERT_TRUE(kv_->Delete("wf-1", "x").ok());
  Elapse(kTtlMs + 100);

  std::vector<WatchEvent> events = Collect("wf-1", "", start, 4);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].type, EventType::kPut);
  EXPECT_EQ(events[0].key, "x");
  EXPECT_EQ(events[0].value, "1");
  EXPECT_EQ(events[0].version, vx);
  EXPECT_EQ(events[1].type, EventType::kPut);
  EXPECT_EQ(events[1].key, "y");
  EXPECT_EQ(events[2].type, EventType::kDelete);
  EXPECT_EQ(events[2].key, "x");
  EXPECT_EQ(events[2].version, vx);
  EXPECT_EQ(events[3].type, EventType::kExpire);
  EXPECT_EQ(events[3].key, "y");
  EXPECT_EQ(events[3].version, vy);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].revision, start + 1 + static_cast<int64_t>(i)) << Describe(events[i]);
  }
}

TEST_P(KvContractTest, WatchFromRevisionWithPrefix) {
  const int64_t r1 = *kv_->Put("wf-1", "a/1", "x");
  ASSERT_TRUE(kv_->Put("wf-1", "b/1", "y").ok());
  const int64_t r3 = *kv_->Put("wf-1", "a/2", "z");
  ASSERT_TRUE(kv_->Put("wf-1", "b/2", "w").ok());

  absl::StatusOr<WatchResult> all_a = kv_->WaitForChange("wf-1", "a/", 0);
  ASSERT_TRUE(all_a.ok()) << all_a.status();
  ASSERT_EQ(all_a->events.size(), 2u);
  EXPECT_EQ(all_a->events[0].revision, r1);
  EXPECT_EQ(all_a->events[1].revision, r3);
  // The cursor passes the non-matching b/2 too.
  EXPECT_EQ(all_a->revision, 4);

  absl::StatusOr<WatchResult> after_first = kv_->WaitForChange("wf-1", "a/", r1);
  ASSERT_TRUE(after_first.ok()) << after_first.status();
  ASSERT_EQ(after_first->events.size(), 1u);
  EXPECT_EQ(after_first->events[0].key, "a/2");

  WatchOptions one;
  one.max_events = 1;
  absl::StatusOr<WatchResult> limited = kv_->WaitForChange("wf-1", "", 0, one);
  ASSERT_TRUE(limited.ok()) << limited.status();
  ASSERT_EQ(limited->events.size(), 1u);
  EXPECT_EQ(limited->revision, 1);

  // Nothing new: returns empty at the timeout, cursor unchanged.
  WatchOptions brief;
  brief.timeout_ms = 50;
  absl::StatusOr<WatchResult> idle = kv_->WaitForChange("wf-1", "", 4, brief);
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_TRUE(idle->events.empty());
  EXPECT_EQ(idle->revision, 4);
}

TEST_P(KvContractTest, WatchBlocksUntilAChange) {
  absl::StatusOr<WatchResult> result;
  std::thread watcher([&] {
    WatchOptions options;
    options.timeout_ms = 5000;
    result = kv_->WaitForChange("wf-1", "done", 0, options);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(kv_->Put("wf-1", "other", "ignored").ok());
  const auto put_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(kv_->Put("wf-1", "done", "yes").ok());
  watcher.join();
  EXPECT_LT(std::chrono::steady_clock::now() - put_at, std::chrono::seconds(2));
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->events.size(), 1u);
  EXPECT_EQ(result->events[0].key, "done");
  EXPECT_EQ(result->events[0].value, "yes");
}

TEST_P(KvContractTest, WatchOfCompactedHistoryIsOutOfRange) {
  KvLimits small = limits_;
  small.event_history = 3;
  std::unique_ptr<KvStore> kv = MakeStore(small);
  ASSERT_NE(kv, nullptr);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(kv->Put("wf-1", "k", absl::StrCat(i)).ok());
  absl::StatusOr<WatchResult> old = kv->WaitForChange("wf-1", "", 0);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(old.status().message(), HasSubstr("compacted"));
  absl::StatusOr<WatchResult> recent = kv->WaitForChange("wf-1", "", 3);
  ASSERT_TRUE(recent.ok()) << recent.status();
  EXPECT_EQ(recent->events.size(), 3u);
}

TEST_P(KvContractTest, WatchAheadOfDeletedNamespaceIsOutOfRange) {
  ASSERT_TRUE(kv_->Put("wf-1", "k", "v").ok());
  ASSERT_TRUE(kv_->Put("wf-1", "k", "w").ok());
  ASSERT_TRUE(kv_->DeleteNamespace("wf-1").ok());
  absl::StatusOr<WatchResult> result = kv_->WaitForChange("wf-1", "", 2);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(result.status().message(), HasSubstr("deleted"));
}

TEST_P(KvContractTest, WatcherCallsBackInOrder) {
  absl::Mutex mu;
  std::vector<std::string> seen;
  absl::Status error;
  {
    Watcher watcher(
        kv_.get(), "wf-1", "", 0,
        [&](const WatchEvent& event) {
          absl::MutexLock lock(&mu);
          seen.push_back(absl::StrCat(EventTypeName(event.type), ":", event.key));
        },
        [&](const absl::Status& status) {
          absl::MutexLock lock(&mu);
          error = status;
        },
        50);
    ASSERT_TRUE(kv_->Put("wf-1", "a", "1").ok());
    ASSERT_TRUE(kv_->Put("wf-1", "b", "2").ok());
    ASSERT_TRUE(kv_->Delete("wf-1", "a").ok());
    absl::MutexLock lock(&mu);
    auto three = [&seen] { return seen.size() >= 3; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(5)));
  }
  EXPECT_THAT(seen, ElementsAre("put:a", "put:b", "delete:a"));
  EXPECT_TRUE(error.ok()) << error;
}

TEST_P(KvContractTest, ConcurrentCasIncrementsLoseNoUpdate) {
  constexpr int kThreads = 8;
  constexpr int kIncrements = 40;
  std::atomic<int> conflicts{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        while (true) {
          absl::StatusOr<std::optional<Entry>> current = kv_->Get("wf-1", "counter");
          if (!current.ok()) {
            ++errors;
            return;
          }
          int value = 0;
          PutOptions options;
          options.if_version = kMustNotExist;
          if (current->has_value()) {
            value = std::stoi((*current)->value);
            options.if_version = (*current)->version;
          }
          absl::StatusOr<int64_t> put =
              kv_->Put("wf-1", "counter", std::to_string(value + 1), options);
          if (put.ok()) break;
          if (put.status().code() != absl::StatusCode::kFailedPrecondition) {
            ++errors;
            return;
          }
          ++conflicts;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ((*kv_->Get("wf-1", "counter"))->value, std::to_string(kThreads * kIncrements));
  // Every successful put is one revision; failed CAS attempts add none.
  EXPECT_EQ(kv_->List("wf-1", "")->revision, kThreads * kIncrements);
}

TEST_P(KvContractTest, ValidationErrorsNameTheProblem) {
  auto expect_invalid = [](const absl::Status& status, absl::string_view fragment) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(fragment));
  };
  expect_invalid(kv_->Put("", "k", "v").status(), "namespace must not be empty");
  expect_invalid(kv_->Put("wf 1", "k", "v").status(), "byte 0x20 at offset 2");
  expect_invalid(kv_->Put("wf{1}", "k", "v").status(), "'{' or '}'");
  expect_invalid(kv_->Put(std::string(300, 'n'), "k", "v").status(),
                 "is 300 bytes; the limit is 256");
  expect_invalid(kv_->Put("wf-1", "", "v").status(), "key must not be empty");
  expect_invalid(kv_->Put("wf-1", std::string("a\0b", 3), "v").status(), "NUL byte at offset 1");
  expect_invalid(kv_->Get("wf-1", std::string(1025, 'k')).status(),
                 "is 1025 bytes; the limit is 1024");
  expect_invalid(kv_->Put("wf-1", "k", std::string(4097, 'v')).status(),
                 "value is 4097 bytes; the limit is 4096");
  EXPECT_TRUE(kv_->Put("wf-1", "k", std::string(4096, 'v')).ok());
  PutOptions negative_ttl;
  negative_ttl.ttl_ms = -5;
  expect_invalid(kv_->Put("wf-1", "k", "v", negative_ttl).status(), "ttl_ms -5 is negative");
  PutOptions bad_version;
  bad_version.if_version = -2;
  expect_invalid(kv_->Put("wf-1", "k", "v", bad_version).status(), "if_version -2 is invalid");
  ListOptions huge;
  huge.limit = 10'001;
  expect_invalid(kv_->List("wf-1", "", huge).status(), "list limit 10001");
  expect_invalid(kv_->WaitForChange("wf-1", "", -1).status(), "after_revision -1");
  expect_invalid(kv_->DeleteNamespace(""), "namespace must not be empty");
  expect_invalid(kv_->List("wf-1", std::string("\0", 1)).status(), "key prefix");
}

INSTANTIATE_TEST_SUITE_P(Backends, KvContractTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis,
                                           Backend::kDurableMemory),
                         BackendName);

// --- MemoryKv only ----------------------------------------------------------

TEST(MemoryKvTest, SweepReportsExpiriesToWatchersOfIdleNamespaces) {
  ManualClock clock;
  MemoryKv kv(&clock);
  PutOptions ttl;
  ttl.ttl_ms = 1000;
  ASSERT_TRUE(kv.Put("wf-1", "a", "1", ttl).ok());
  ASSERT_TRUE(kv.Put("wf-2", "b", "2", ttl).ok());
  EXPECT_EQ(kv.Sweep(), 0u);
  clock.AdvanceMs(1000);
  EXPECT_EQ(kv.Sweep(), 2u);
  absl::StatusOr<WatchResult> events = kv.WaitForChange("wf-2", "", 1);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->events.size(), 1u);
  EXPECT_EQ(events->events[0].type, EventType::kExpire);
  EXPECT_EQ(events->events[0].key, "b");
}

// --- RedisKv only ------------------------------------------------------------

class RedisKvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = SharedRedisServer();
    FLOTILLA_REQUIRE_REDIS(server_);
  }

  // Runs one command on a raw connection to the shared server.
  std::string Raw(const std::vector<std::string>& args) {
    timeval tv{1, 0};
    redisContext* context = redisConnectWithTimeout("127.0.0.1", server_->port(), tv);
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& arg : args) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(args.size()), argv.data(), lengths.data()));
    std::string out = reply == nullptr                     ? "no reply"
                      : reply->type == REDIS_REPLY_INTEGER ? std::to_string(reply->integer)
                      : reply->str != nullptr              ? std::string(reply->str, reply->len)
                      : reply->type == REDIS_REPLY_NIL     ? "nil"
                                                           : "array";
    if (reply != nullptr) freeReplyObject(reply);
    redisFree(context);
    return out;
  }

  RedisServer* server_ = nullptr;
};

TEST_F(RedisKvTest, KeyLayoutIsAsDocumented) {
  RedisKvOptions options;
  options.redis.port = server_->port();
  options.redis.key_prefix = UniquePrefix("kvtest");
  absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
  ASSERT_TRUE(kv.ok()) << kv.status();
  PutOptions ttl;
  ttl.ttl_ms = 60'000;
  ASSERT_TRUE((*kv)->Put("wf-7", "out/x", "hello", ttl).ok());
  const std::string base = absl::StrCat(options.redis.key_prefix, ":kv:{wf-7}:");
  EXPECT_EQ(Raw({"HGET", base + "k:out/x", "v"}), "hello");
  EXPECT_EQ(Raw({"HGET", base + "k:out/x", "ver"}), "1");
  EXPECT_EQ(Raw({"GET", base + "rev"}), "1");
  EXPECT_EQ(Raw({"ZCARD", base + "keys"}), "1");
  EXPECT_EQ(Raw({"ZCARD", base + "ttl"}), "1");
  EXPECT_EQ(Raw({"HGET", base + "ttlver", "out/x"}), "1");
  EXPECT_EQ(Raw({"XLEN", base + "events"}), "1");
  EXPECT_NE(Raw({"PTTL", base + "k:out/x"}), "-1");
  ASSERT_TRUE((*kv)->DeleteNamespace("wf-7").ok());
  EXPECT_EQ(Raw({"EXISTS", base + "k:out/x", base + "rev", base + "keys", base + "events"}), "0");
}

TEST(RedisKvConnectTest, ClosedPortIsAClearUnavailableError) {
  const int port = FreeLoopbackPort();  // Nothing listens there.
  RedisKvOptions options;
  options.redis.port = port;
  options.redis.connect_attempts = 2;
  options.redis.connect_backoff_ms = 1;
  absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(kv.status().message(), HasSubstr(absl::StrCat("redis connect 127.0.0.1:", port)));
  EXPECT_THAT(kv.status().message(), HasSubstr("Connection refused"));
  EXPECT_THAT(kv.status().message(), HasSubstr("(2 attempts)"));

  options.redis.port = 0;
  EXPECT_EQ(RedisKv::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RedisKvConnectTest, LostServerNamesTheCommandAndRecovers) {
  if (testing::FindRedisServer().empty()) GTEST_SKIP() << "*** redis-server NOT INSTALLED ***";
  RedisServer server;
  ASSERT_TRUE(server.Start().ok());
  RedisKvOptions options;
  options.redis.port = server.port();
  options.redis.connect_attempts = 1;
  absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
  ASSERT_TRUE(kv.ok()) << kv.status();
  ASSERT_TRUE((*kv)->Put("wf-1", "k", "v").ok());

  server.Stop();
  absl::StatusOr<int64_t> put = (*kv)->Put("wf-1", "k", "w");
  EXPECT_EQ(put.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(put.status().message(), HasSubstr("redis EVALSHA kv_put on 127.0.0.1:"));
  absl::StatusOr<std::optional<Entry>> get = (*kv)->Get("wf-1", "k");
  EXPECT_EQ(get.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(get.status().message(), HasSubstr("redis HMGET: redis connect 127.0.0.1:"));
  EXPECT_THAT(get.status().message(), HasSubstr("Connection refused (1 attempt)"));

  // Back on the same port, empty (no persistence): the client reconnects and
  // reloads its scripts (NOSCRIPT) by itself.
  ASSERT_TRUE(server.Start(options.redis.port).ok());
  absl::StatusOr<int64_t> again = (*kv)->Put("wf-1", "k", "x");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*(*kv)->Get("wf-1", "k"))->value, "x");
  server.Stop();
  server.RemoveDir();
}

}  // namespace
}  // namespace flotilla::kv
