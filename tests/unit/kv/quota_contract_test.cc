// Tenant key-value quotas (kv.h "Tenant quotas") and queue length caps
// (queue.h "Length cap"), run against both implementations: the in-memory
// ones and Redis on a real redis-server (redis_server.h).

#include <atomic>
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
#include "kv/queue.h"
#include "kv/redis_client.h"
#include "kv/redis_kv.h"
#include "unit/kv/durable_backend.h"
#include "unit/kv/redis_server.h"

namespace flotilla::kv {
namespace {

using ::flotilla::kv::testing::Backend;
using ::flotilla::kv::testing::BackendName;
using ::flotilla::kv::testing::DurableBackend;
using ::flotilla::kv::testing::RedisServer;
using ::flotilla::kv::testing::SharedRedisServer;
using ::flotilla::kv::testing::UniquePrefix;
using ::testing::HasSubstr;

void ExpectQuota(const absl::Status& status, absl::string_view config_key) {
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(config_key)));
}

class KvQuotaTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kRedis) {
      server_ = SharedRedisServer();
      FLOTILLA_REQUIRE_REDIS(server_);
    }
  }

  std::unique_ptr<KvStore> MakeStore(size_t max_keys, size_t max_bytes) {
    KvLimits limits;
    limits.tenant_max_keys = max_keys;
    limits.tenant_max_bytes = max_bytes;
    if (GetParam() == Backend::kMemory) return std::make_unique<MemoryKv>(&clock_, limits);
    if (GetParam() == Backend::kDurableMemory) return durable_.Make(&clock_, limits);
    RedisKvOptions options;
    options.redis.port = server_->port();
    prefix_ = UniquePrefix("kvquota");
    options.redis.key_prefix = prefix_;
    options.limits = limits;
    absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
    EXPECT_TRUE(kv.ok()) << kv.status();
    return kv.ok() ? std::move(*kv) : nullptr;
  }

  void Elapse(int64_t ms) {
    if (GetParam() != Backend::kRedis) {
      clock_.AdvanceMs(ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }

  ManualClock clock_;
  RedisServer* server_ = nullptr;
  std::string prefix_;
  DurableBackend durable_;  // Declared before any store a test holds.
};

TEST_P(KvQuotaTest, TenantOfNamespace) {
  EXPECT_EQ(TenantOfNamespace("acme~cache"), "acme");
  EXPECT_EQ(TenantOfNamespace("acme~a~b"), "acme");
  EXPECT_EQ(TenantOfNamespace("cache"), "default");
  EXPECT_EQ(TenantOfNamespace("wf-12"), "default");
}

TEST_P(KvQuotaTest, KeyQuotaSpansTheTenantsNamespacesAndNothingIsHalfWritten) {
  std::unique_ptr<KvStore> kv = MakeStore(3, 1 << 20);
  ASSERT_NE(kv, nullptr);
  ASSERT_TRUE(kv->Put("acme~a", "k1", "v").ok());
  ASSERT_TRUE(kv->Put("acme~a", "k2", "v").ok());
  ASSERT_TRUE(kv->Put("acme~b", "k3", "v").ok());
  absl::StatusOr<ListResult> before = kv->List("acme~a", "");
  ASSERT_TRUE(before.ok()) << before.status();

  absl::StatusOr<int64_t> over = kv->Put("acme~a", "k4", "v");
  ExpectQuota(over.status(), "limits.tenant_kv_max_keys");
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("tenant \"acme\""));
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("3 keys"));
  ExpectQuota(kv->Put("acme~c", "k", "v").status(), "limits.tenant_kv_max_keys");
  // Nothing of the refused put is visible: no key, no revision, no event.
  EXPECT_FALSE(kv->Get("acme~a", "k4")->has_value());
  absl::StatusOr<ListResult> after = kv->List("acme~a", "");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->revision, before->revision);
  EXPECT_EQ(after->entries.size(), 2u);
  absl::StatusOr<WatchResult> events = kv->WaitForChange("acme~a", "", before->revision);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(events->events.empty());

  // Overwriting an existing key adds no key.
  EXPECT_TRUE(kv->Put("acme~a", "k1", "v2").ok());
  // Other tenants, and tenant default, have quotas of their own.
  EXPECT_TRUE(kv->Put("other~a", "k4", "v").ok());
  EXPECT_TRUE(kv->Put("plain", "k4", "v").ok());

  // A delete gives the key back.
  ASSERT_TRUE(*kv->Delete("acme~b", "k3"));
  EXPECT_TRUE(kv->Put("acme~a", "k4", "v").ok());
  ExpectQuota(kv->Put("acme~a", "k5", "v").status(), "limits.tenant_kv_max_keys");
}

TEST_P(KvQuotaTest, ByteQuotaCountsKeysAndValuesAndOnlyGrowthIsChecked) {
  std::unique_ptr<KvStore> kv = MakeStore(100, 20);
  ASSERT_NE(kv, nullptr);
  ASSERT_TRUE(kv->Put("acme~a", "k1", "12345678").ok());  // 10 bytes
  ASSERT_TRUE(kv->Put("acme~b", "k2", "12345678").ok());  // 20 bytes
  absl::StatusOr<int64_t> over = kv->Put("acme~a", "k", "");
  ExpectQuota(over.status(), "limits.tenant_kv_max_bytes");
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("20 bytes"));

  // Growing a value over the quota fails and keeps the old value.
  ExpectQuota(kv->Put("acme~a", "k1", "123456789").status(), "limits.tenant_kv_max_bytes");
  EXPECT_EQ((*kv->Get("acme~a", "k1"))->value, "12345678");
  // Shrinking always succeeds and frees the difference.
  ASSERT_TRUE(kv->Put("acme~a", "k1", "1234").ok());  // 16 bytes
  EXPECT_TRUE(kv->Put("acme~a", "k3", "12").ok());    // 20 bytes
  ExpectQuota(kv->Put("acme~a", "k4", "").status(), "limits.tenant_kv_max_bytes");
  // A value of the same size is allowed at the limit.
  EXPECT_TRUE(kv->Put("acme~a", "k3", "ab").ok());
}

TEST_P(KvQuotaTest, ExpiryAndDeleteNamespaceGiveSpaceBack) {
  std::unique_ptr<KvStore> kv = MakeStore(2, 1 << 20);
  ASSERT_NE(kv, nullptr);
  PutOptions ttl;
  ttl.ttl_ms = 100;
  ASSERT_TRUE(kv->Put("acme~a", "short", "v", ttl).ok());
  ASSERT_TRUE(kv->Put("acme~a", "long", "v").ok());
  ExpectQuota(kv->Put("acme~a", "x", "v").status(), "limits.tenant_kv_max_keys");
  Elapse(250);
  EXPECT_TRUE(kv->Put("acme~a", "x", "v").ok()) << "the expired key should be reaped";

  ASSERT_TRUE(kv->DeleteNamespace("acme~a").ok());
  EXPECT_TRUE(kv->Put("acme~b", "y", "v").ok());
  EXPECT_TRUE(kv->Put("acme~b", "z", "v").ok());
  ExpectQuota(kv->Put("acme~b", "w", "v").status(), "limits.tenant_kv_max_keys");
}

TEST_P(KvQuotaTest, ConcurrentWritersCannotTogetherExceedTheQuota) {
  constexpr size_t kMaxKeys = 40;
  std::unique_ptr<KvStore> kv = MakeStore(kMaxKeys, 1 << 20);
  ASSERT_NE(kv, nullptr);
  std::atomic<int> ok{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 6; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < 15; ++i) {
        absl::StatusOr<int64_t> put =
            kv->Put(absl::StrCat("acme~ns", w % 3), absl::StrCat("w", w, "-", i), "v");
        if (put.ok()) {
          ++ok;
        } else if (put.status().code() == absl::StatusCode::kResourceExhausted) {
          ++refused;
        } else {
          ++other;
        }
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_EQ(ok.load(), static_cast<int>(kMaxKeys));
  EXPECT_EQ(refused.load(), 90 - static_cast<int>(kMaxKeys));
  EXPECT_EQ(other.load(), 0);
  size_t live = 0;
  for (int n = 0; n < 3; ++n) live += kv->List(absl::StrCat("acme~ns", n), "")->entries.size();
  EXPECT_EQ(live, kMaxKeys);
}

INSTANTIATE_TEST_SUITE_P(Backends, KvQuotaTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis,
                                           Backend::kDurableMemory),
                         BackendName);

// Refused puts leave nothing behind in MemoryKv, not even a namespace, so
// puts to ever new names by a tenant at its quota cannot grow the store.
TEST(MemoryKvQuotaTest, RefusedPutsLeaveNoNamespaceBehind) {
  KvLimits limits;
  limits.tenant_max_keys = 1;
  MemoryKv kv(nullptr, limits);
  ASSERT_TRUE(kv.Put("acme~a", "k", "v").ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(kv.Put(absl::StrCat("acme~n", i), "k", "v").ok());
    PutOptions cas;
    cas.if_version = 7;
    ASSERT_FALSE(kv.Put(absl::StrCat("beta~n", i), "k", "v", cas).ok());
  }
  EXPECT_EQ(kv.NamespaceCountForTest(), 1u);
}

// A key expired in a namespace nothing has named since does not count
// against its tenant's quota in MemoryKv: a put about to be refused reaps
// the tenant's namespaces first. (RedisKv counts it until its namespace is
// next named: kv.h.)
TEST(MemoryKvQuotaTest, AKeyExpiredInAnotherNamespaceStopsCounting) {
  KvLimits limits;
  limits.tenant_max_keys = 2;
  ManualClock clock;
  MemoryKv kv(&clock, limits);
  PutOptions ttl;
  ttl.ttl_ms = 100;
  ASSERT_TRUE(kv.Put("acme~a", "short", "v", ttl).ok());
  ASSERT_TRUE(kv.Put("acme~a", "long", "v").ok());
  ExpectQuota(kv.Put("acme~b", "x", "v").status(), "limits.tenant_kv_max_keys");
  clock.AdvanceMs(250);
  EXPECT_TRUE(kv.Put("acme~b", "x", "v").ok()) << "a key expired in acme~a still counted";
  ExpectQuota(kv.Put("acme~b", "y", "v").status(), "limits.tenant_kv_max_keys");
}

// The counters live in Redis hashes (redis_kv.h): check them directly.
TEST(RedisKvQuotaTest, UsageHashesFollowWritesAndDeletes) {
  RedisServer* server = SharedRedisServer();
  FLOTILLA_REQUIRE_REDIS(server);
  RedisKvOptions options;
  options.redis.port = server->port();
  options.redis.key_prefix = UniquePrefix("kvusage");
  absl::StatusOr<std::unique_ptr<RedisKv>> kv = RedisKv::Connect(options);
  ASSERT_TRUE(kv.ok()) << kv.status();
  absl::StatusOr<std::unique_ptr<RedisClient>> raw = RedisClient::Connect(options.redis);
  ASSERT_TRUE(raw.ok()) << raw.status();
  auto field = [&](const std::string& key, const char* name) -> std::string {
    absl::StatusOr<RedisReplyPtr> reply =
        (*raw)->Command({"HGET", key, name}, RedisClient::Retry::kSafe);
    EXPECT_TRUE(reply.ok()) << reply.status();
    return reply.ok() ? ReplyString(reply->get()) : "";
  };
  const std::string tenant = absl::StrCat(options.redis.key_prefix, ":kvquota:acme");
  const std::string ns = absl::StrCat(options.redis.key_prefix, ":kv:{acme~a}:usage");

  ASSERT_TRUE((*kv)->Put("acme~a", "key", "value").ok());
  ASSERT_TRUE((*kv)->Put("acme~b", "k", "").ok());
  EXPECT_EQ(field(tenant, "keys"), "2");
  EXPECT_EQ(field(tenant, "bytes"), "9");
  EXPECT_EQ(field(ns, "keys"), "1");
  EXPECT_EQ(field(ns, "bytes"), "8");
  ASSERT_TRUE((*kv)->Put("acme~a", "key", "v").ok());
  EXPECT_EQ(field(tenant, "bytes"), "5");
  ASSERT_TRUE((*kv)->DeleteNamespace("acme~a").ok());
  EXPECT_EQ(field(tenant, "keys"), "1");
  EXPECT_EQ(field(tenant, "bytes"), "1");
  ASSERT_TRUE(*(*kv)->Delete("acme~b", "k"));
  EXPECT_EQ(field(tenant, "keys"), "") << "a tenant with no keys has no hash";
}

// --- Queue length caps --------------------------------------------------------

class QueueCapTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::kRedis) {
      server_ = SharedRedisServer();
      FLOTILLA_REQUIRE_REDIS(server_);
    }
    QueueOptions options;
    options.max_length = 3;
    options.tenant_max_messages = 5;
    if (GetParam() == Backend::kMemory) {
      absl::StatusOr<std::unique_ptr<MessageQueue>> queue = MakeMemoryQueue(&clock_, options);
      ASSERT_TRUE(queue.ok()) << queue.status();
      queue_ = std::move(*queue);
    } else {
      RedisOptions redis;
      redis.port = server_->port();
      redis.key_prefix = UniquePrefix("qcap");
      absl::StatusOr<std::unique_ptr<MessageQueue>> queue = MakeRedisQueue(redis, options);
      ASSERT_TRUE(queue.ok()) << queue.status();
      queue_ = std::move(*queue);
    }
  }

  std::vector<QueueMessage> Receive(absl::string_view group, size_t max = 10) {
    ReceiveOptions options;
    options.max_messages = max;
    absl::StatusOr<std::vector<QueueMessage>> messages =
        queue_->Receive("jobs", group, "c1", options);
    EXPECT_TRUE(messages.ok()) << messages.status();
    return messages.ok() ? *messages : std::vector<QueueMessage>{};
  }

  void Fill(int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(queue_->Send("jobs", absl::StrCat("m", i)).ok()) << i;
    }
  }

  ManualClock clock_;
  RedisServer* server_ = nullptr;
  std::unique_ptr<MessageQueue> queue_;
};

TEST_P(QueueCapTest, SendToAFullQueueFailsAndSendsNothing) {
  Fill(3);
  absl::StatusOr<std::string> over = queue_->Send("jobs", "extra");
  ExpectQuota(over.status(), "limits.queue_max_length");
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("queue \"jobs\" is full"));
  // Other queues have caps of their own.
  EXPECT_TRUE(queue_->Send("other", "x").ok());
  // Nothing of the refused send arrives.
  std::vector<QueueMessage> got = Receive("g");
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.back().payload, "m2");
}

TEST_P(QueueCapTest, AckedMessagesMakeRoom) {
  Fill(3);
  std::vector<QueueMessage> got = Receive("g", 2);
  ASSERT_EQ(got.size(), 2u);
  // Delivered but not acked: still held.
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
  ASSERT_TRUE(queue_->Ack("jobs", "g", got[0].id).ok());
  ASSERT_TRUE(queue_->Ack("jobs", "g", got[1].id).ok());
  ASSERT_TRUE(queue_->Send("jobs", "m3").ok());
  ASSERT_TRUE(queue_->Send("jobs", "m4").ok());
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
  std::vector<std::string> rest;
  for (const QueueMessage& m : Receive("g")) rest.push_back(m.payload);
  EXPECT_THAT(rest, ::testing::ElementsAre("m2", "m3", "m4"));
}

TEST_P(QueueCapTest, AnUnackedMessageHoldsTheOnesAfterIt) {
  Fill(3);
  std::vector<QueueMessage> got = Receive("g", 3);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(queue_->Ack("jobs", "g", got[1].id).ok());
  ASSERT_TRUE(queue_->Ack("jobs", "g", got[2].id).ok());
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
  ASSERT_TRUE(queue_->Ack("jobs", "g", got[0].id).ok());
  Fill(3);
}

TEST_P(QueueCapTest, EveryGroupMustAckAndNewGroupsStartAtTheOldestHeld) {
  Fill(3);
  std::vector<QueueMessage> a = Receive("a", 3);
  ASSERT_EQ(Receive("b", 1).size(), 1u);  // b holds m0 pending, m1..m2 unread
  for (const QueueMessage& m : a) ASSERT_TRUE(queue_->Ack("jobs", "a", m.id).ok());
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
  std::vector<QueueMessage> b = Receive("b", 3);  // m1, m2
  ASSERT_EQ(b.size(), 2u);
  for (const QueueMessage& m : b) ASSERT_TRUE(queue_->Ack("jobs", "b", m.id).ok());
  // m0 is still pending in b.
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
}

TEST_P(QueueCapTest, WithoutGroupsNothingIsReleased) {
  Fill(3);
  ExpectQuota(queue_->Send("jobs", "x").status(), "limits.queue_max_length");
  // The first group sees every message sent before it.
  EXPECT_EQ(Receive("late").size(), 3u);
}

TEST_P(QueueCapTest, AGroupCreatedAfterReleaseStartsAtTheOldestHeld) {
  Fill(3);
  std::vector<QueueMessage> got = Receive("a", 2);
  for (const QueueMessage& m : got) ASSERT_TRUE(queue_->Ack("jobs", "a", m.id).ok());
  ASSERT_TRUE(queue_->Send("jobs", "m3").ok());  // releases m0, m1
  std::vector<std::string> late;
  for (const QueueMessage& m : Receive("late")) late.push_back(m.payload);
  EXPECT_THAT(late, ::testing::ElementsAre("m2", "m3"));
}

TEST_P(QueueCapTest, ATenantsQueuesShareItsCap) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue_->Send("acme~a", "m").ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(queue_->Send("acme~b", "m").ok());
  absl::StatusOr<std::string> over = queue_->Send("acme~c", "m");
  ExpectQuota(over.status(), "limits.tenant_queue_max_messages");
  EXPECT_THAT(std::string(over.status().message()), HasSubstr("tenant \"acme\""));
  // Other tenants have caps of their own.
  EXPECT_TRUE(queue_->Send("beta~a", "m").ok());
  EXPECT_TRUE(queue_->Send("jobs", "m").ok());
  // An ack that releases a message makes room in the tenant's count.
  ReceiveOptions one;
  absl::StatusOr<std::vector<QueueMessage>> got = queue_->Receive("acme~a", "g", "c", one);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  ASSERT_TRUE(queue_->Ack("acme~a", "g", (*got)[0].id).ok());
  EXPECT_TRUE(queue_->Send("acme~c", "m").ok());
  ExpectQuota(queue_->Send("acme~c", "m").status(), "limits.tenant_queue_max_messages");
  // So does deleting a queue.
  ASSERT_TRUE(queue_->DeleteQueue("acme~b").ok());
  EXPECT_TRUE(queue_->Send("acme~c", "m").ok());
  EXPECT_TRUE(queue_->Send("acme~c", "m").ok());
  ExpectQuota(queue_->Send("acme~d", "m").status(), "limits.tenant_queue_max_messages");
}

INSTANTIATE_TEST_SUITE_P(Backends, QueueCapTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis), BackendName);

}  // namespace
}  // namespace flotilla::kv
