// MemoryQueue: the embedded MessageQueue (queue.h). One mutex guards every
// queue; each queue has a condition variable that Send signals. Message ids
// are the decimal sequence number of the message in its queue (from 1).
// Released messages are popped from the front of the queue's deque by Send
// and Ack (TrimLocked), so memory follows the length cap.
#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "kv/kv.h"
#include "kv/queue.h"

namespace flotilla::kv {
namespace {

class MemoryQueue final : public MessageQueue {
 public:
  MemoryQueue(const Clock* clock, const QueueOptions& options)
      : clock_(clock != nullptr ? clock : &real_clock_), options_(options) {}

  absl::StatusOr<std::string> Send(absl::string_view queue, absl::string_view payload) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    RETURN_IF_ERROR(ValidatePayload(payload, options_));
    absl::MutexLock lock(&mu_);
    std::shared_ptr<Queue> q = FindOrCreateLocked(queue);
    TrimLocked(*q);
    if (q->payloads.size() >= options_.max_length) {
      return QueueFull(queue, q->payloads.size(), options_);
    }
    auto held = held_.find(q->tenant);
    if (held != held_.end() && held->second >= options_.tenant_max_messages) {
      absl::Status full = TenantQueuesFull(queue, held->second, options_);
      // Drop the queue again if this send made it, so refused sends to
      // ever new names cannot grow the table.
      if (q->payloads.empty() && q->groups.empty() && q->first_seq == 1 && q.use_count() == 2) {
        queues_.erase(queues_.find(queue));
      }
      return full;
    }
    q->payloads.emplace_back(payload);
    ++held_[q->tenant];
    q->changed.SignalAll();
    return absl::StrCat(q->EndSeq());
  }

  absl::StatusOr<std::vector<QueueMessage>> Receive(absl::string_view queue,
                                                    absl::string_view group,
                                                    absl::string_view consumer,
                                                    const ReceiveOptions& options) override {
    RETURN_IF_ERROR(ValidateReceive(queue, group, consumer, options, options_));
    const absl::Time deadline = absl::Now() + absl::Milliseconds(options.block_ms);
    absl::MutexLock lock(&mu_);
    while (true) {
      // Looked up afresh each round: DeleteQueue may have replaced it.
      std::shared_ptr<Queue> q = FindOrCreateLocked(queue);
      // A new group starts at the oldest message still held.
      auto [it, created] = q->groups.try_emplace(std::string(group));
      Group& g = it->second;
      if (created) g.last_delivered = q->first_seq - 1;
      const int64_t now_ms = clock_->NowMs();
      std::vector<QueueMessage> out = DeliverLocked(*q, g, consumer, options.max_messages, now_ms);
      if (!out.empty()) return out;
      const absl::Time now = absl::Now();
      if (now >= deadline) return out;
      absl::Time wake = deadline;
      for (const auto& [seq, pending] : g.pending) {
        wake = std::min(
            wake, now + absl::Milliseconds(std::max<int64_t>(pending.deadline_ms - now_ms, 1)));
      }
      q->changed.WaitWithDeadline(&mu_, wake);
    }
  }

  absl::Status Ack(absl::string_view queue, absl::string_view group,
                   absl::string_view id) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    RETURN_IF_ERROR(ValidateQueueName("consumer group", group, options_));
    uint64_t seq = 0;
    if (!absl::SimpleAtoi(id, &seq) || seq == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "message id \"%s\" is not an id this queue issued (a decimal number)", id));
    }
    absl::MutexLock lock(&mu_);
    auto q = queues_.find(queue);
    if (q != queues_.end()) {
      auto g = q->second->groups.find(group);
      if (g != q->second->groups.end() && g->second.pending.erase(seq) == 1) {
        TrimLocked(*q->second);
        return absl::OkStatus();
      }
    }
    return absl::NotFoundError(
        absl::StrFormat("ack of message %s in queue \"%s\" group \"%s\": not pending (never "
                        "delivered to the group, or already acked)",
                        id, queue, group));
  }

  absl::Status DeleteQueue(absl::string_view queue) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    absl::MutexLock lock(&mu_);
    auto it = queues_.find(queue);
    if (it == queues_.end()) return absl::OkStatus();
    ReleaseLocked(it->second->tenant, it->second->payloads.size());
    it->second->changed.SignalAll();
    queues_.erase(it);
    return absl::OkStatus();
  }

 private:
  struct Pending {
    std::string consumer;
    int64_t deadline_ms = 0;
    int64_t delivery_count = 0;
  };
  struct Group {
    // Sequence number of the last message delivered for the first time.
    uint64_t last_delivered = 0;
    // Delivered and not yet acked, by sequence number.
    std::map<uint64_t, Pending> pending;
  };
  struct Queue {
    // TenantOfNamespace of its name.
    std::string tenant;
    // Messages still held; the seq of payloads[i] is first_seq + i.
    std::deque<std::string> payloads;
    uint64_t first_seq = 1;
    std::map<std::string, Group, std::less<>> groups;
    absl::CondVar changed;
    // The seq of the newest message (first_seq - 1 when none was sent).
    uint64_t EndSeq() const { return first_seq - 1 + payloads.size(); }
  };

  // Releases the messages every group has acked, with all before them.
  void TrimLocked(Queue& q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (q.groups.empty()) return;  // Kept for the first group to come.
    uint64_t keep_from = q.EndSeq() + 1;
    for (const auto& [name, g] : q.groups) {
      // Pending seqs are all <= last_delivered.
      keep_from =
          std::min(keep_from, g.pending.empty() ? g.last_delivered + 1 : g.pending.begin()->first);
    }
    size_t released = 0;
    while (q.first_seq < keep_from && !q.payloads.empty()) {
      q.payloads.pop_front();
      ++q.first_seq;
      ++released;
    }
    ReleaseLocked(q.tenant, released);
  }

  // Takes n messages off tenant's count; a tenant with none is forgotten.
  void ReleaseLocked(const std::string& tenant, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (n == 0) return;
    auto it = held_.find(tenant);
    if (it == held_.end()) return;  // Unreachable: every held message was counted.
    it->second -= std::min(it->second, n);
    if (it->second == 0) held_.erase(it);
  }

  std::shared_ptr<Queue> FindOrCreateLocked(absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = queues_.find(name);
    if (it != queues_.end()) return it->second;
    auto q = std::make_shared<Queue>();
    q->tenant = TenantOfNamespace(name);
    queues_.emplace(std::string(name), q);
    return q;
  }

  std::vector<QueueMessage> DeliverLocked(Queue& q, Group& g, absl::string_view consumer,
                                          size_t max, int64_t now_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<QueueMessage> out;
    // Redeliveries first, oldest first.
    for (auto& [seq, pending] : g.pending) {
      if (out.size() == max) break;
      if (pending.deadline_ms > now_ms) continue;
      pending.consumer = std::string(consumer);
      pending.deadline_ms = now_ms + options_.visibility_timeout_ms;
      ++pending.delivery_count;
      out.push_back(
          QueueMessage{absl::StrCat(seq), q.payloads[seq - q.first_seq], pending.delivery_count});
    }
    while (out.size() < max && g.last_delivered < q.EndSeq()) {
      const uint64_t seq = ++g.last_delivered;
      g.pending[seq] = Pending{std::string(consumer), now_ms + options_.visibility_timeout_ms, 1};
      out.push_back(QueueMessage{absl::StrCat(seq), q.payloads[seq - q.first_seq], 1});
    }
    return out;
  }

  RealClock real_clock_;
  const Clock* const clock_;
  const QueueOptions options_;

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Queue>, std::less<>> queues_ ABSL_GUARDED_BY(mu_);
  // Per tenant, the messages its queues hold together.
  std::map<std::string, size_t, std::less<>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<MessageQueue>> MakeMemoryQueue(const Clock* clock,
                                                              const QueueOptions& options) {
  RETURN_IF_ERROR(ValidateQueueOptions(options));
  return std::make_unique<MemoryQueue>(clock, options);
}

}  // namespace flotilla::kv
