// MessageQueue: named queues between the running pieces of a workflow, with
// consumer groups and at-least-once delivery. Two implementations share this
// contract and one test suite (tests/unit/kv/queue_contract_test.cc):
//   MemoryQueue (MakeMemoryQueue)  embedded in the manager, in its memory;
//   RedisQueue  (MakeRedisQueue)   one Redis stream per queue (Redis >= 6.2).
//
// Semantics (the model is Redis Streams consumer groups; the embedded
// implementation follows it):
//   - Send appends a message and returns its id. Ids are opaque strings,
//     unique within the queue, increasing in send order.
//   - Every consumer group sees every message of the queue. A group is
//     created by its first Receive and starts at the beginning of the queue,
//     so messages sent before anyone listened are not lost.
//   - Within a group each message is delivered to one consumer at a time.
//     A delivered message stays pending until some consumer of the group
//     Acks it. If it is not acked within QueueOptions::visibility_timeout_ms
//     of its (latest) delivery, it becomes deliverable again, to whichever
//     consumer of the group receives next, with delivery_count + 1.
//     Delivery is therefore at-least-once: a consumer that crashes after
//     processing but before Ack causes a redelivery, so handlers must be
//     idempotent (the message id is a natural deduplication key).
//   - Receive returns due redeliveries first (oldest first), then new
//     messages in send order, up to max_messages. With block_ms > 0 it
//     waits that long for at least one; an empty result is not an error.
//     A redelivery may be noticed up to one visibility timeout late while a
//     Receive is blocked (Redis checks pending messages in such slices).
//   - Ack by any consumer of the group removes the message from the group's
//     pending list, even if it was redelivered meanwhile; NotFound if the id
//     is not pending in the group (never delivered, or already acked).
//   - The queue never drops a message some group has yet to acknowledge.
//     A message is released once every existing consumer group has acked
//     it and every message before it (the oldest message still pending or
//     not yet delivered in some group marks where the queue starts; Redis
//     trims the stream to it with XTRIM MINID). Before any group exists
//     nothing is released. A group created later starts at the oldest
//     message still held, not at the first ever sent.
//   - Length cap: a queue holds at most QueueOptions::max_length messages.
//     A Send to a full queue fails with ResourceExhausted naming the cap and
//     sends nothing; acks that release messages make room again. One
//     message left unacked holds the messages after it in the count until
//     it is acked (after a redelivery, if its consumer died). Queues belong
//     to tenants as key-value namespaces do (TenantOfNamespace in kv.h:
//     "acme~jobs" is acme's), and the queues of one tenant together hold at
//     most QueueOptions::tenant_max_messages messages; a Send over that
//     fails alike, naming the tenant's cap.
//   - DeleteQueue removes the queue with its groups; a later Send or
//     Receive starts a new, empty one.
//
// Names (queue, group, consumer): 1..QueueOptions::max_name_bytes of
// printable ASCII (0x21..0x7e) except '{' and '}'. Payloads: up to
// max_payload_bytes of any bytes. Violations are InvalidArgument.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kv/clock.h"
#include "kv/redis_client.h"

namespace flotilla::kv {

struct QueueOptions {
  int64_t visibility_timeout_ms = 30'000;
  size_t max_name_bytes = 256;
  size_t max_payload_bytes = 1 << 20;
  size_t max_receive = 1000;
  // The most messages one queue holds (see "Length cap"); at least 1.
  size_t max_length = 100'000;
  // The most messages a tenant's queues hold together; at least 1.
  size_t tenant_max_messages = 1'000'000;
};

struct QueueMessage {
  std::string id;
  std::string payload;
  // 1 on the first delivery, 2 on the first redelivery, ...
  int64_t delivery_count = 0;
};

struct ReceiveOptions {
  // 1..QueueOptions::max_receive.
  size_t max_messages = 1;
  // How long to wait when nothing is deliverable; 0 = return at once.
  int64_t block_ms = 0;
};

class MessageQueue {
 public:
  virtual ~MessageQueue() = default;

  // Appends payload to queue and returns the new message's id.
  virtual absl::StatusOr<std::string> Send(absl::string_view queue, absl::string_view payload) = 0;

  // Delivers up to options.max_messages messages of queue to consumer, a
  // member of group (see the header comment).
  virtual absl::StatusOr<std::vector<QueueMessage>> Receive(absl::string_view queue,
                                                            absl::string_view group,
                                                            absl::string_view consumer,
                                                            const ReceiveOptions& options = {}) = 0;

  // Acknowledges message id in group: it will not be delivered to the group
  // again. NotFound if it is not pending there.
  virtual absl::Status Ack(absl::string_view queue, absl::string_view group,
                           absl::string_view id) = 0;

  // Removes queue, its messages and its groups. OK if it does not exist.
  virtual absl::Status DeleteQueue(absl::string_view queue) = 0;
};

// The embedded queue. clock (the time base of visibility timeouts) must
// outlive it; nullptr means the wall clock. Blocking in Receive is measured
// in real time. InvalidArgument for bad options.
absl::StatusOr<std::unique_ptr<MessageQueue>> MakeMemoryQueue(const Clock* clock = nullptr,
                                                              const QueueOptions& options = {});

// The Redis queue. Key layout (P = RedisOptions::key_prefix, Q = the queue):
//   P:q:{Q}   stream; entries {p: payload}, ids assigned by Redis (XADD *);
//             consumer groups are the stream's groups (XGROUP CREATE ... 0
//             MKSTREAM), delivery by XREADGROUP, redelivery by XAUTOCLAIM
//             with min-idle = visibility_timeout_ms, Ack by XACK.
//   P:qquota:<T>  hash {held}: the messages tenant T's queues hold; Send,
//             Ack and DeleteQueue are Lua scripts that trim released
//             messages (XTRIM MINID), check the caps and keep it in step.
// Connects (and PINGs) first: Unavailable if the server cannot be reached.
absl::StatusOr<std::unique_ptr<MessageQueue>> MakeRedisQueue(const RedisOptions& redis,
                                                             const QueueOptions& options = {});

// Validation shared by the implementations (InvalidArgument, or OK).
absl::Status ValidateQueueName(absl::string_view what, absl::string_view name,
                               const QueueOptions& options);
absl::Status ValidateQueueOptions(const QueueOptions& options);
absl::Status ValidatePayload(absl::string_view payload, const QueueOptions& options);
// The ResourceExhausted of a Send to a full queue.
absl::Status QueueFull(absl::string_view queue, uint64_t length, const QueueOptions& options);
// The ResourceExhausted of a Send when the queue's tenant holds its cap.
absl::Status TenantQueuesFull(absl::string_view queue, uint64_t held, const QueueOptions& options);
absl::Status ValidateReceive(absl::string_view queue, absl::string_view group,
                             absl::string_view consumer, const ReceiveOptions& receive,
                             const QueueOptions& options);

}  // namespace flotilla::kv
