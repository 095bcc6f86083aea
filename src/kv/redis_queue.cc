// RedisQueue: the MessageQueue (queue.h) on Redis Streams; the key layout is
// in queue.h. Consumer groups are created lazily (XGROUP CREATE ... 0
// MKSTREAM, BUSYGROUP ignored) and remembered per process; a NOGROUP reply
// (the queue was deleted meanwhile) forgets and recreates the group.
//
// XREADGROUP and XAUTOCLAIM are retried after a wire failure (Retry::kSafe)
// although they change the group: a delivery whose reply was lost leaves the
// message pending under this consumer, and it is redelivered after the
// visibility timeout like any unacknowledged message. Send (a script that
// trims released messages, checks the caps and XADDs) is not retried, since
// a retry could send the message twice; Ack (XACK, then the trim) is.
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "kv/kv.h"
#include "kv/queue.h"
#include "kv/redis_client.h"

namespace flotilla::kv {
namespace {

// Shared by the scripts: KEYS[1] = the stream, KEYS[2] = its tenant's hash
// {held}. trim() releases the messages every group has acked, with all
// before them (XTRIM MINID to the oldest message some group still holds,
// pending or not yet delivered), and takes them off the tenant's count.
// Before any group exists nothing is released: the messages wait for the
// first group.
#define FLOTILLA_QUEUE_LUA_PRELUDE                                                        \
  "local stream, tenant_key = KEYS[1], KEYS[2]\n"                                         \
  "local function parse(id)\n"                                                            \
  "  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"                                 \
  "  return tonumber(ms), tonumber(seq), ms\n"                                            \
  "end\n"                                                                                 \
  "local function release(n)\n"                                                           \
  "  if n <= 0 then return end\n"                                                         \
  "  if redis.call('HINCRBY', tenant_key, 'held', -n) <= 0 then\n"                        \
  "    redis.call('DEL', tenant_key)\n"                                                   \
  "  end\n"                                                                               \
  "end\n"                                                                                 \
  "local function trim()\n"                                                               \
  "  if redis.call('EXISTS', stream) == 0 then return end\n"                              \
  "  local keep_ms, keep_seq, keep_id = nil, nil, nil\n"                                  \
  "  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do\n"                   \
  "    local name, pending, last = nil, 0, '0-0'\n"                                       \
  "    for i = 1, #info, 2 do\n"                                                          \
  "      if info[i] == 'name' then name = info[i + 1]\n"                                  \
  "      elseif info[i] == 'pending' then pending = tonumber(info[i + 1])\n"              \
  "      elseif info[i] == 'last-delivered-id' then last = info[i + 1] end\n"             \
  "    end\n"                                                                             \
  "    local ms, seq, id\n"                                                               \
  "    if pending > 0 then\n"                                                             \
  "      id = redis.call('XPENDING', stream, name)[2]\n"                                  \
  "      ms, seq = parse(id)\n"                                                           \
  "    else\n"                                                                            \
  "      local ms_text\n"                                                                 \
  "      ms, seq, ms_text = parse(last)\n"                                                \
  "      seq = seq + 1\n"                                                                 \
  "      id = ms_text .. '-' .. string.format('%d', seq)\n"                               \
  "    end\n"                                                                             \
  "    if keep_ms == nil or ms < keep_ms or (ms == keep_ms and seq < keep_seq) then\n"    \
  "      keep_ms, keep_seq, keep_id = ms, seq, id\n"                                      \
  "    end\n"                                                                             \
  "  end\n"                                                                               \
  "  if keep_id ~= nil then release(redis.call('XTRIM', stream, 'MINID', keep_id)) end\n" \
  "end\n"

// Send: trims, then appends unless the queue or its tenant is full, in one
// atomic step. ARGV = payload, the queue's cap, the tenant's cap. Returns
// {1, id}, {0, length} when the queue is full, {2, held} when the tenant is.
const RedisScript kSendScript = {"queue_send", FLOTILLA_QUEUE_LUA_PRELUDE R"lua(
local payload, cap, tenant_cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
trim()
local length = redis.call('XLEN', stream)
if length >= cap then return {0, length} end
local held = tonumber(redis.call('HGET', tenant_key, 'held') or '0')
if held >= tenant_cap then return {2, held} end
local id = redis.call('XADD', stream, '*', 'p', payload)
redis.call('HINCRBY', tenant_key, 'held', 1)
return {1, id}
)lua"};

// Ack: XACK, then trims what that released. ARGV = group, id. Returns
// {acked (0 or 1)}, or {-1, error} for an error reply of XACK (NOGROUP).
const RedisScript kAckScript = {"queue_ack", FLOTILLA_QUEUE_LUA_PRELUDE R"lua(
local acked = redis.pcall('XACK', stream, ARGV[1], ARGV[2])
if type(acked) == 'table' and acked.err then return {-1, acked.err} end
if acked == 1 then trim() end
return {acked}
)lua"};

// DeleteQueue: the stream and its messages' place in the tenant's count.
const RedisScript kDeleteQueueScript = {"queue_delete", FLOTILLA_QUEUE_LUA_PRELUDE R"lua(
release(redis.call('XLEN', stream))
redis.call('DEL', stream)
return 0
)lua"};

#undef FLOTILLA_QUEUE_LUA_PRELUDE

// XAUTOCLAIM scans at most 10 * COUNT pending entries per call; this bounds
// the calls one Receive makes to find due redeliveries.
constexpr int kMaxAutoclaimRounds = 8;

bool IsStreamId(absl::string_view id) {
  size_t dash = id.find('-');
  if (dash == absl::string_view::npos || dash == 0 || dash + 1 == id.size()) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    if (i != dash && (id[i] < '0' || id[i] > '9')) return false;
  }
  return true;
}

absl::StatusOr<const redisReply*> Element(const redisReply* reply, size_t index,
                                          absl::string_view what) {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || index >= reply->elements) {
    return absl::InternalError(absl::StrCat("redis ", what, ": expected an array of more than ",
                                            index, " elements, got ", DescribeReply(reply)));
  }
  return reply->element[index];
}

// Parses one stream entry [id, [field, value, ...]] into a message; returns
// nullopt for an entry whose message was deleted (nil).
absl::StatusOr<std::optional<QueueMessage>> ParseEntry(const redisReply* entry,
                                                       absl::string_view what) {
  if (entry == nullptr || entry->type == REDIS_REPLY_NIL) return std::nullopt;
  ASSIGN_OR_RETURN(const redisReply* id, Element(entry, 0, what));
  ASSIGN_OR_RETURN(const redisReply* fields, Element(entry, 1, what));
  if (fields->type != REDIS_REPLY_ARRAY) return std::nullopt;  // Deleted meanwhile.
  QueueMessage message;
  message.id = ReplyString(id);
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (ReplyString(fields->element[i]) == "p")
      message.payload = ReplyString(fields->element[i + 1]);
  }
  return message;
}

class RedisQueue final : public MessageQueue {
 public:
  RedisQueue(std::unique_ptr<RedisClient> client, const QueueOptions& options)
      : client_(std::move(client)), options_(options) {}

  absl::StatusOr<std::string> Send(absl::string_view queue, absl::string_view payload) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    RETURN_IF_ERROR(ValidatePayload(payload, options_));
    // Not retried, since a retry could send the message twice.
    ASSIGN_OR_RETURN(RedisReplyPtr reply,
                     client_->Eval(kSendScript, Keys(queue),
                                   {std::string(payload), absl::StrCat(options_.max_length),
                                    absl::StrCat(options_.tenant_max_messages)},
                                   RedisClient::Retry::kNever));
    constexpr absl::string_view kWhat = "EVALSHA queue_send";
    ASSIGN_OR_RETURN(const redisReply* ok, Element(reply.get(), 0, kWhat));
    ASSIGN_OR_RETURN(const redisReply* result, Element(reply.get(), 1, kWhat));
    ASSIGN_OR_RETURN(const int64_t sent, ReplyInteger(ok, kWhat));
    if (sent == 0 || sent == 2) {
      ASSIGN_OR_RETURN(const int64_t count, ReplyInteger(result, kWhat));
      if (sent == 0) return QueueFull(queue, static_cast<uint64_t>(count), options_);
      return TenantQueuesFull(queue, static_cast<uint64_t>(count), options_);
    }
    if (result->type != REDIS_REPLY_STRING) {
      return absl::InternalError(absl::StrCat("redis ", kWhat, " on ", client_->address(), ": got ",
                                              DescribeReply(result)));
    }
    return ReplyString(result);
  }

  absl::StatusOr<std::vector<QueueMessage>> Receive(absl::string_view queue,
                                                    absl::string_view group,
                                                    absl::string_view consumer,
                                                    const ReceiveOptions& options) override {
    RETURN_IF_ERROR(ValidateReceive(queue, group, consumer, options, options_));
    const absl::Time deadline = absl::Now() + absl::Milliseconds(options.block_ms);
    const std::string key = StreamKey(queue);
    while (true) {
      RETURN_IF_ERROR(EnsureGroup(key, group));
      std::vector<QueueMessage> out;
      absl::Status claimed = ClaimDue(key, group, consumer, options.max_messages, out);
      if (absl::StrContains(claimed.message(), "NOGROUP")) {
        ForgetGroup(key, group);
        continue;
      }
      RETURN_IF_ERROR(claimed);
      if (out.size() >= options.max_messages) return out;

      int64_t block_ms = 0;
      if (out.empty()) {
        // Block in slices of one visibility timeout, so that messages whose
        // consumer died are reclaimed while we wait.
        block_ms = std::min(absl::ToInt64Milliseconds(deadline - absl::Now()),
                            options_.visibility_timeout_ms);
      }
      std::vector<std::string> args = {
          "XREADGROUP",          "GROUP", std::string(group),
          std::string(consumer), "COUNT", absl::StrCat(options.max_messages - out.size())};
      if (block_ms > 0) args.insert(args.end(), {"BLOCK", absl::StrCat(block_ms)});
      args.insert(args.end(), {"STREAMS", key, ">"});
      ASSIGN_OR_RETURN(RedisReplyPtr reply,
                       client_->CommandAllowingErrorReply(args, RedisClient::Retry::kSafe,
                                                          std::max<int64_t>(block_ms, 0)));
      if (reply->type == REDIS_REPLY_ERROR) {
        const std::string error = ReplyString(reply.get());
        // NOGROUP: deleted before we read; UNBLOCKED: deleted while we blocked.
        if (absl::StrContains(error, "NOGROUP") || absl::StrContains(error, "UNBLOCKED")) {
          ForgetGroup(key, group);
          if (!out.empty()) return out;
          continue;
        }
        return absl::InternalError(
            absl::StrCat("redis XREADGROUP on ", client_->address(), ": ", error));
      }
      if (reply->type == REDIS_REPLY_ARRAY) {
        ASSIGN_OR_RETURN(const redisReply* stream, Element(reply.get(), 0, "XREADGROUP"));
        ASSIGN_OR_RETURN(const redisReply* entries, Element(stream, 1, "XREADGROUP"));
        for (size_t i = 0; i < entries->elements; ++i) {
          ASSIGN_OR_RETURN(std::optional<QueueMessage> message,
                           ParseEntry(entries->element[i], "XREADGROUP"));
          if (!message.has_value()) continue;
          message->delivery_count = 1;
          out.push_back(std::move(*message));
        }
      }
      if (!out.empty() || absl::Now() >= deadline) return out;
    }
  }

  absl::Status Ack(absl::string_view queue, absl::string_view group,
                   absl::string_view id) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    RETURN_IF_ERROR(ValidateQueueName("consumer group", group, options_));
    if (!IsStreamId(id)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("message id \"%s\" is not an id this queue issued (<ms>-<seq>)", id));
    }
    // Retried: a repeated XACK finds nothing pending and changes nothing.
    ASSIGN_OR_RETURN(RedisReplyPtr reply,
                     client_->Eval(kAckScript, Keys(queue), {std::string(group), std::string(id)},
                                   RedisClient::Retry::kSafe));
    constexpr absl::string_view kWhat = "EVALSHA queue_ack";
    ASSIGN_OR_RETURN(const redisReply* acked, Element(reply.get(), 0, kWhat));
    ASSIGN_OR_RETURN(const int64_t count, ReplyInteger(acked, kWhat));
    if (count == 1) return absl::OkStatus();
    if (count < 0) {
      ASSIGN_OR_RETURN(const redisReply* error, Element(reply.get(), 1, kWhat));
      if (!absl::StrContains(ReplyString(error), "NOGROUP")) {
        return absl::InternalError(
            absl::StrCat("redis XACK on ", client_->address(), ": ", ReplyString(error)));
      }
    }
    return absl::NotFoundError(
        absl::StrFormat("ack of message %s in queue \"%s\" group \"%s\": not pending (never "
                        "delivered to the group, or already acked)",
                        id, queue, group));
  }

  absl::Status DeleteQueue(absl::string_view queue) override {
    RETURN_IF_ERROR(ValidateQueueName("queue name", queue, options_));
    const std::string key = StreamKey(queue);
    RETURN_IF_ERROR(
        client_->Eval(kDeleteQueueScript, Keys(queue), {}, RedisClient::Retry::kSafe).status());
    absl::MutexLock lock(&mu_);
    for (auto it = groups_.lower_bound({key, ""}); it != groups_.end() && it->first == key;) {
      it = groups_.erase(it);
    }
    return absl::OkStatus();
  }

 private:
  std::string StreamKey(absl::string_view queue) const {
    return absl::StrCat(client_->options().key_prefix, ":q:{", queue, "}");
  }
  // The stream and its tenant's hash, as the scripts expect them.
  std::vector<std::string> Keys(absl::string_view queue) const {
    return {StreamKey(queue),
            absl::StrCat(client_->options().key_prefix, ":qquota:", TenantOfNamespace(queue))};
  }

  absl::Status EnsureGroup(const std::string& key, absl::string_view group) {
    std::pair<std::string, std::string> id(key, std::string(group));
    {
      absl::MutexLock lock(&mu_);
      if (groups_.count(id) != 0) return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(RedisReplyPtr reply, client_->CommandAllowingErrorReply(
                                              {"XGROUP", "CREATE", key, id.second, "0", "MKSTREAM"},
                                              RedisClient::Retry::kSafe));
    if (reply->type == REDIS_REPLY_ERROR &&
        !absl::StartsWith(ReplyString(reply.get()), "BUSYGROUP")) {
      return absl::InternalError(absl::StrCat("redis XGROUP CREATE on ", client_->address(), ": ",
                                              ReplyString(reply.get())));
    }
    absl::MutexLock lock(&mu_);
    groups_.insert(std::move(id));
    return absl::OkStatus();
  }

  void ForgetGroup(const std::string& key, absl::string_view group) {
    absl::MutexLock lock(&mu_);
    groups_.erase({key, std::string(group)});
  }

  // Claims for consumer the group's messages idle for a visibility timeout,
  // appending them to out (up to max in all).
  absl::Status ClaimDue(const std::string& key, absl::string_view group, absl::string_view consumer,
                        size_t max, std::vector<QueueMessage>& out) {
    std::string cursor = "0-0";
    for (int round = 0; round < kMaxAutoclaimRounds && out.size() < max; ++round) {
      ASSIGN_OR_RETURN(
          RedisReplyPtr reply,
          client_->Command({"XAUTOCLAIM", key, std::string(group), std::string(consumer),
                            absl::StrCat(options_.visibility_timeout_ms), cursor, "COUNT",
                            absl::StrCat(max - out.size())},
                           RedisClient::Retry::kSafe));
      ASSIGN_OR_RETURN(const redisReply* next, Element(reply.get(), 0, "XAUTOCLAIM"));
      ASSIGN_OR_RETURN(const redisReply* entries, Element(reply.get(), 1, "XAUTOCLAIM"));
      for (size_t i = 0; i < entries->elements; ++i) {
        ASSIGN_OR_RETURN(std::optional<QueueMessage> message,
                         ParseEntry(entries->element[i], "XAUTOCLAIM"));
        if (!message.has_value()) continue;
        ASSIGN_OR_RETURN(message->delivery_count, DeliveryCount(key, group, message->id));
        out.push_back(std::move(*message));
      }
      cursor = ReplyString(next);
      if (cursor == "0-0") break;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> DeliveryCount(const std::string& key, absl::string_view group,
                                        const std::string& id) {
    ASSIGN_OR_RETURN(RedisReplyPtr reply,
                     client_->Command({"XPENDING", key, std::string(group), id, id, "1"},
                                      RedisClient::Retry::kSafe));
    ASSIGN_OR_RETURN(const redisReply* entry, Element(reply.get(), 0, "XPENDING"));
    ASSIGN_OR_RETURN(const redisReply* count, Element(entry, 3, "XPENDING"));
    return ReplyInteger(count, "XPENDING delivery count");
  }

  std::unique_ptr<RedisClient> client_;
  const QueueOptions options_;

  absl::Mutex mu_;
  // (stream key, group) pairs known to exist.
  std::set<std::pair<std::string, std::string>> groups_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<MessageQueue>> MakeRedisQueue(const RedisOptions& redis,
                                                             const QueueOptions& options) {
  RETURN_IF_ERROR(ValidateQueueOptions(options));
  ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client, RedisClient::Connect(redis));
  return std::unique_ptr<MessageQueue>(new RedisQueue(std::move(client), options));
}

}  // namespace flotilla::kv
