// The MessageQueue contract (src/kv/queue.h), run against both
// implementations: the embedded queue with a ManualClock, and the Redis
// Streams queue against a real redis-server on loopback. Visibility timeouts
// pass on the fake clock for the embedded queue and in real time (short) for
// Redis.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/clock.h"
#include "kv/queue.h"
#include "unit/kv/redis_server.h"

namespace flotilla::kv {
namespace {

using ::flotilla::kv::testing::FreeLoopbackPort;
using ::flotilla::kv::testing::RedisServer;
using ::flotilla::kv::testing::Backend;
using ::flotilla::kv::testing::BackendName;
using ::flotilla::kv::testing::SharedRedisServer;
using ::flotilla::kv::testing::UniquePrefix;
using ::testing::HasSubstr;


std::vector<std::string> Payloads(const std::vector<QueueMessage>& messages) {
  std::vector<std::string> payloads;
  for (const QueueMessage& message : messages) payloads.push_back(message.payload);
  return payloads;
}

class QueueContractTest : public ::testing::TestWithParam<Backend> {
 protected:
  static constexpr int64_t kVisibilityMs = 200;

  void SetUp() override {
    if (GetParam() == Backend::kRedis) {
      server_ = SharedRedisServer();
      FLOTILLA_REQUIRE_REDIS(server_);
    }
    QueueOptions options;
    options.visibility_timeout_ms = kVisibilityMs;
    options.max_payload_bytes = 1024;
    queue_ = MakeQueue(options);
    ASSERT_NE(queue_, nullptr);
  }

  std::unique_ptr<MessageQueue> MakeQueue(const QueueOptions& options) {
    absl::StatusOr<std::unique_ptr<MessageQueue>> queue;
    if (GetParam() == Backend::kMemory) {
      queue = MakeMemoryQueue(&clock_, options);
    } else {
      RedisOptions redis;
      redis.port = server_->port();
      redis.key_prefix = UniquePrefix("qtest");
      queue = MakeRedisQueue(redis, options);
    }
    EXPECT_TRUE(queue.ok()) << queue.status();
    return queue.ok() ? std::move(*queue) : nullptr;
  }

  void Elapse(int64_t ms) {
    if (GetParam() == Backend::kMemory) {
      clock_.AdvanceMs(ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }

  std::vector<QueueMessage> Receive(absl::string_view group, absl::string_view consumer,
                                    size_t max = 10) {
    ReceiveOptions options;
    options.max_messages = max;
    absl::StatusOr<std::vector<QueueMessage>> messages =
        queue_->Receive("wf-1/jobs", group, consumer, options);
    EXPECT_TRUE(messages.ok()) << messages.status();
    return messages.ok() ? *messages : std::vector<QueueMessage>{};
  }

  ManualClock clock_;
  RedisServer* server_ = nullptr;
  std::unique_ptr<MessageQueue> queue_;
};

TEST_P(QueueContractTest, SendReceiveAckInOrder) {
  std::vector<std::string> ids;
  for (const char* payload : {"one", "two", "three"}) {
    absl::StatusOr<std::string> id = queue_->Send("wf-1/jobs", payload);
    ASSERT_TRUE(id.ok()) << id.status();
    ids.push_back(*id);
  }
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 3u);

  // The group is created by its first Receive, after the sends: it still
  // gets them all.
  std::vector<QueueMessage> got = Receive("workers", "w1");
  EXPECT_THAT(Payloads(got), ::testing::ElementsAre("one", "two", "three"));
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].id, ids[i]);
    EXPECT_EQ(got[i].delivery_count, 1);
    EXPECT_TRUE(queue_->Ack("wf-1/jobs", "workers", got[i].id).ok());
  }
  EXPECT_TRUE(Receive("workers", "w2").empty());
  Elapse(kVisibilityMs + 100);
  EXPECT_TRUE(Receive("workers", "w2").empty()) << "acked messages came back";

  // A binary payload survives.
  const std::string binary("x\0y", 3);
  ASSERT_TRUE(queue_->Send("wf-1/jobs", binary).ok());
  got = Receive("workers", "w1");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload, binary);
}

TEST_P(QueueContractTest, UnackedMessageIsRedeliveredAfterVisibilityTimeout) {
  ASSERT_TRUE(queue_->Send("wf-1/jobs", "a").ok());
  ASSERT_TRUE(queue_->Send("wf-1/jobs", "b").ok());
  std::vector<QueueMessage> first = Receive("workers", "crashy");
  ASSERT_EQ(first.size(), 2u);
  ASSERT_TRUE(queue_->Ack("wf-1/jobs", "workers", first[0].id).ok());

  // Still invisible to others inside the visibility timeout.
  EXPECT_TRUE(Receive("workers", "healthy").empty());

  Elapse(kVisibilityMs + 100);
  std::vector<QueueMessage> again = Receive("workers", "healthy");
  ASSERT_EQ(again.size(), 1u) << "the unacked message was not redelivered";
  EXPECT_EQ(again[0].id, first[1].id);
  EXPECT_EQ(again[0].payload, "b");
  EXPECT_EQ(again[0].delivery_count, 2);

  ASSERT_TRUE(queue_->Ack("wf-1/jobs", "workers", again[0].id).ok());
  absl::Status twice = queue_->Ack("wf-1/jobs", "workers", again[0].id);
  EXPECT_EQ(twice.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(twice.message(), HasSubstr("not pending"));
  Elapse(kVisibilityMs + 100);
  EXPECT_TRUE(Receive("workers", "healthy").empty());
}

TEST_P(QueueContractTest, EveryGroupSeesEveryMessage) {
  ASSERT_TRUE(queue_->Send("wf-1/jobs", "m").ok());
  std::vector<QueueMessage> a = Receive("audit", "x");
  std::vector<QueueMessage> b = Receive("workers", "y");
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].id, b[0].id);
  // Acking in one group leaves the other's pending message alone.
  ASSERT_TRUE(queue_->Ack("wf-1/jobs", "audit", a[0].id).ok());
  EXPECT_TRUE(queue_->Ack("wf-1/jobs", "workers", b[0].id).ok());
}

TEST_P(QueueContractTest, MaxMessagesAndBlockingReceive) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue_->Send("wf-1/jobs", absl::StrCat(i)).ok());
  EXPECT_EQ(Receive("workers", "w", 2).size(), 2u);
  EXPECT_EQ(Receive("workers", "w", 10).size(), 3u);

  absl::StatusOr<std::vector<QueueMessage>> got;
  std::thread receiver([&] {
    ReceiveOptions options;
    options.block_ms = 5000;
    got = queue_->Receive("wf-1/late", "workers", "w", options);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto sent_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(queue_->Send("wf-1/late", "wake").ok());
  receiver.join();
  EXPECT_LT(std::chrono::steady_clock::now() - sent_at, std::chrono::seconds(2));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].payload, "wake");

  ReceiveOptions brief;
  brief.block_ms = 50;
  absl::StatusOr<std::vector<QueueMessage>> none =
      queue_->Receive("wf-1/late", "workers", "w", brief);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
}

TEST_P(QueueContractTest, ConcurrentConsumersShareWorkWithoutDuplicates) {
  QueueOptions slow;
  slow.visibility_timeout_ms = 30'000;
  std::unique_ptr<MessageQueue> queue = MakeQueue(slow);
  ASSERT_NE(queue, nullptr);
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(queue->Send("work", absl::StrCat(i)).ok());
  absl::Mutex mu;
  std::map<std::string, int> seen;
  std::atomic<int> errors{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < 4; ++c) {
    consumers.emplace_back([&, c] {
      ReceiveOptions options;
      options.max_messages = 7;
      while (true) {
        absl::StatusOr<std::vector<QueueMessage>> got =
            queue->Receive("work", "pool", absl::StrCat("c", c), options);
        if (!got.ok()) {
          ++errors;
          return;
        }
        if (got->empty()) return;
        for (const QueueMessage& message : *got) {
          {
            absl::MutexLock lock(&mu);
            ++seen[message.payload];
          }
          if (!queue->Ack("work", "pool", message.id).ok()) ++errors;
        }
      }
    });
  }
  for (std::thread& consumer : consumers) consumer.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kMessages));
  for (const auto& [payload, count] : seen) EXPECT_EQ(count, 1) << payload;
}

TEST_P(QueueContractTest, DeleteQueueDropsMessagesAndGroups) {
  ASSERT_TRUE(queue_->Send("wf-1/jobs", "old").ok());
  std::vector<QueueMessage> got = Receive("workers", "w");
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(queue_->DeleteQueue("wf-1/jobs").ok());
  EXPECT_EQ(queue_->Ack("wf-1/jobs", "workers", got[0].id).code(), absl::StatusCode::kNotFound);
  Elapse(kVisibilityMs + 100);
  EXPECT_TRUE(Receive("workers", "w").empty());
  ASSERT_TRUE(queue_->Send("wf-1/jobs", "new").ok());
  EXPECT_THAT(Payloads(Receive("workers", "w")), ::testing::ElementsAre("new"));
  EXPECT_TRUE(queue_->DeleteQueue("never-existed").ok());
}

TEST_P(QueueContractTest, ValidationErrors) {
  auto expect_invalid = [](const absl::Status& status, absl::string_view fragment) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(fragment));
  };
  expect_invalid(queue_->Send("", "p").status(), "queue name must not be empty");
  expect_invalid(queue_->Send("a b", "p").status(), "byte 0x20");
  expect_invalid(queue_->Send("q", std::string(1025, 'p')).status(),
                 "payload is 1025 bytes; the limit is 1024");
  ReceiveOptions zero;
  zero.max_messages = 0;
  expect_invalid(queue_->Receive("q", "g", "c", zero).status(), "max_messages 0");
  expect_invalid(queue_->Receive("q", "", "c").status(), "consumer group must not be empty");
  expect_invalid(queue_->Receive("q", "g", "{c}").status(), "consumer");
  expect_invalid(queue_->Ack("q", "g", "not-an-id"), "not an id this queue issued");
  QueueOptions bad;
  bad.visibility_timeout_ms = 0;
  EXPECT_EQ(MakeMemoryQueue(nullptr, bad).status().code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, QueueContractTest,
                         ::testing::Values(Backend::kMemory, Backend::kRedis), BackendName);

TEST(RedisQueueConnectTest, ClosedPortIsAClearUnavailableError) {
  RedisOptions redis;
  redis.port = FreeLoopbackPort();
  redis.connect_attempts = 1;
  absl::StatusOr<std::unique_ptr<MessageQueue>> queue = MakeRedisQueue(redis);
  EXPECT_EQ(queue.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(queue.status().message(),
              HasSubstr(absl::StrCat("redis connect 127.0.0.1:", redis.port)));
}

}  // namespace
}  // namespace flotilla::kv
