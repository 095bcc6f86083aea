#include "kv/redis_kv.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace flotilla::kv {
namespace {

// Shared by every script. KEYS[1..8] = rev, events, ttl, ttlver, keys, sizes,
// usage, tenant usage; ARGV[1] = the namespace base "P:kv:{N}:", ARGV[2] =
// the event history.
#define FLOTILLA_KV_LUA_PRELUDE                                                         \
  "local base = ARGV[1]\n"                                                              \
  "local history = tonumber(ARGV[2])\n"                                                 \
  "local rev_key, events_key, ttl_key, ttlver_key, keys_key =\n"                        \
  "  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"                                     \
  "local sizes_key, usage_key, tenant_key = KEYS[6], KEYS[7], KEYS[8]\n"                \
  "local t = redis.call('TIME')\n"                                                      \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"             \
  "local function record(kind, key, value, version, rev)\n"                             \
  "  redis.call('XADD', events_key, 'MAXLEN', history, rev .. '-0',\n"                  \
  "             't', kind, 'k', key, 'v', value, 'ver', version)\n"                     \
  "end\n"                                                                               \
  "local function charge(keys, bytes)\n"                                                \
  "  redis.call('HINCRBY', usage_key, 'keys', keys)\n"                                  \
  "  redis.call('HINCRBY', usage_key, 'bytes', bytes)\n"                                \
  "  local left = redis.call('HINCRBY', tenant_key, 'keys', keys)\n"                    \
  "  redis.call('HINCRBY', tenant_key, 'bytes', bytes)\n"                               \
  "  if left <= 0 then redis.call('DEL', tenant_key) end\n"                             \
  "end\n"                                                                               \
  "local function unsize(key)\n"                                                        \
  "  local size = tonumber(redis.call('HGET', sizes_key, key) or '0')\n"                \
  "  redis.call('HDEL', sizes_key, key)\n"                                              \
  "  return size\n"                                                                     \
  "end\n"                                                                               \
  "local function remove(key, kind, version)\n"                                         \
  "  redis.call('DEL', base .. 'k:' .. key)\n"                                          \
  "  redis.call('ZREM', ttl_key, key)\n"                                                \
  "  redis.call('HDEL', ttlver_key, key)\n"                                             \
  "  redis.call('ZREM', keys_key, key)\n"                                               \
  "  charge(-1, -unsize(key))\n"                                                        \
  "  local rev = redis.call('INCR', rev_key)\n"                                         \
  "  record(kind, key, '', version, rev)\n"                                             \
  "  return rev\n"                                                                      \
  "end\n"                                                                               \
  "local function reap()\n"                                                             \
  "  local due = redis.call('ZRANGEBYSCORE', ttl_key, '-inf', now, 'LIMIT', 0, 1000)\n" \
  "  for _, key in ipairs(due) do\n"                                                    \
  "    remove(key, 'expire', tonumber(redis.call('HGET', ttlver_key, key) or '0'))\n"   \
  "  end\n"                                                                             \
  "end\n"

// KEYS[9] = the entry; ARGV[3..8] = key, value, ttl_ms, if_version, the
// tenant's max keys and max bytes. Returns {0, have} on a version mismatch,
// {2, keys held} over the key quota, {3, bytes held, bytes added} over the
// byte quota, else {1, version, expires_at}. Only growth is checked.
const RedisScript kPutScript = {"kv_put", FLOTILLA_KV_LUA_PRELUDE R"lua(
reap()
local key, value = ARGV[3], ARGV[4]
local ttl, if_version = tonumber(ARGV[5]), tonumber(ARGV[6])
local max_keys, max_bytes = tonumber(ARGV[7]), tonumber(ARGV[8])
local have = tonumber(redis.call('HGET', KEYS[9], 'ver') or '0')
if if_version >= 0 and have ~= if_version then return {0, have} end
local added_keys, old_size = 0, 0
if have == 0 then added_keys = 1 else old_size = tonumber(redis.call('HGET', sizes_key, key) or '0') end
local new_size = #key + #value
local delta = new_size - old_size
if added_keys == 1 or delta > 0 then
  local held = redis.call('HMGET', tenant_key, 'keys', 'bytes')
  local held_keys, held_bytes = tonumber(held[1] or '0'), tonumber(held[2] or '0')
  if added_keys == 1 and held_keys + 1 > max_keys then return {2, held_keys} end
  if delta > 0 and held_bytes + delta > max_bytes then return {3, held_bytes, delta} end
end
redis.call('HSET', sizes_key, key, new_size)
charge(added_keys, delta)
local rev = redis.call('INCR', rev_key)
local exp = 0
if ttl > 0 then exp = now + ttl end
redis.call('HSET', KEYS[9], 'v', value, 'ver', rev, 'exp', exp)
if exp > 0 then
  redis.call('PEXPIREAT', KEYS[9], exp)
  redis.call('ZADD', ttl_key, exp, key)
  redis.call('HSET', ttlver_key, key, rev)
else
  redis.call('PERSIST', KEYS[9])
  redis.call('ZREM', ttl_key, key)
  redis.call('HDEL', ttlver_key, key)
end
redis.call('ZADD', keys_key, 0, key)
record('put', key, value, rev, rev)
return {1, rev, exp}
)lua"};

// KEYS[9] = the entry; ARGV[3..4] = key, if_version.
// Returns {0, have} on a version mismatch, else {1, revision or 0 if absent}.
const RedisScript kDeleteScript = {"kv_delete", FLOTILLA_KV_LUA_PRELUDE R"lua(
reap()
local key, if_version = ARGV[3], tonumber(ARGV[4])
local have = tonumber(redis.call('HGET', KEYS[9], 'ver') or '0')
if if_version >= 0 and have ~= if_version then
  if have == 0 and if_version == 0 then return {1, 0} end
  return {0, have}
end
if have == 0 then return {1, 0} end
return {1, remove(key, 'delete', have)}
)lua"};

// ARGV[3..4] = prefix, limit. Returns {revision, truncated, key, value,
// version, expires_at, key, ...}.
const RedisScript kListScript = {"kv_list", FLOTILLA_KV_LUA_PRELUDE R"lua(
reap()
local prefix, limit = ARGV[3], tonumber(ARGV[4])
local min = '-'
if prefix ~= '' then min = '[' .. prefix end
local keys = redis.call('ZRANGEBYLEX', keys_key, min, '+', 'LIMIT', 0, limit + 1)
local out = {tonumber(redis.call('GET', rev_key) or '0'), 0}
local n = 0
for _, key in ipairs(keys) do
  if string.sub(key, 1, #prefix) ~= prefix then break end
  if n == limit then
    out[2] = 1
    break
  end
  local f = redis.call('HMGET', base .. 'k:' .. key, 'v', 'ver', 'exp')
  if f[2] then
    table.insert(out, key)
    table.insert(out, f[1])
    table.insert(out, tonumber(f[2]))
    table.insert(out, tonumber(f[3] or '0'))
    n = n + 1
  end
end
return out
)lua"};

// Returns {revision, oldest revision in the event log or 0, next TTL
// deadline or 0, server now}.
const RedisScript kWatchScript = {"kv_watch", FLOTILLA_KV_LUA_PRELUDE R"lua(
reap()
local rev = tonumber(redis.call('GET', rev_key) or '0')
local oldest = 0
local first = redis.call('XRANGE', events_key, '-', '+', 'COUNT', 1)
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local next_exp = 0
local due = redis.call('ZRANGE', ttl_key, 0, 0, 'WITHSCORES')
if #due > 0 then next_exp = tonumber(due[2]) end
return {rev, oldest, next_exp, now}
)lua"};

// Drops up to 1000 entries per call, giving their space back to the tenant,
// then the namespace's own keys. Returns 1 while entries remain.
const RedisScript kDropScript = {"kv_drop_namespace", FLOTILLA_KV_LUA_PRELUDE R"lua(
local keys = redis.call('ZRANGE', keys_key, 0, 999)
local bytes = 0
for _, key in ipairs(keys) do
  redis.call('DEL', base .. 'k:' .. key)
  bytes = bytes + unsize(key)
end
if #keys > 0 then
  redis.call('ZREM', keys_key, unpack(keys))
  charge(-#keys, -bytes)
end
if #keys == 1000 then return 1 end
redis.call('DEL', rev_key, events_key, ttl_key, ttlver_key, keys_key, sizes_key, usage_key)
return 0
)lua"};

#undef FLOTILLA_KV_LUA_PRELUDE

absl::StatusOr<const redisReply*> ArrayElement(const redisReply* reply, size_t index,
                                               absl::string_view what) {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || index >= reply->elements) {
    return absl::InternalError(absl::StrCat("redis ", what, ": expected an array of more than ",
                                            index, " elements, got ", DescribeReply(reply)));
  }
  return reply->element[index];
}

// "<revision>-0" -> revision.
absl::StatusOr<int64_t> RevisionOfStreamId(const redisReply* id) {
  std::string text = ReplyString(id);
  int64_t revision = 0;
  if (!absl::SimpleAtoi(absl::string_view(text).substr(0, text.find('-')), &revision)) {
    return absl::InternalError(absl::StrCat("redis XREAD: bad event id \"", text, "\""));
  }
  return revision;
}

absl::StatusOr<WatchEvent> ParseEvent(const redisReply* entry) {
  ASSIGN_OR_RETURN(const redisReply* id, ArrayElement(entry, 0, "XREAD entry"));
  ASSIGN_OR_RETURN(const redisReply* fields, ArrayElement(entry, 1, "XREAD entry"));
  WatchEvent event;
  ASSIGN_OR_RETURN(event.revision, RevisionOfStreamId(id));
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const std::string name = ReplyString(fields->element[i]);
    const redisReply* value = fields->element[i + 1];
    if (name == "t") {
      const std::string type = ReplyString(value);
      event.type = type == "put"      ? EventType::kPut
                   : type == "delete" ? EventType::kDelete
                                      : EventType::kExpire;
    } else if (name == "k") {
      event.key = ReplyString(value);
    } else if (name == "v") {
      event.value = ReplyString(value);
    } else if (name == "ver") {
      ASSIGN_OR_RETURN(event.version, ReplyNumber(value, "XREAD event version"));
    }
  }
  return event;
}

}  // namespace

RedisKv::RedisKv(std::unique_ptr<RedisClient> client, const KvLimits& limits)
    : client_(std::move(client)), limits_(limits) {}

RedisKv::~RedisKv() = default;

absl::StatusOr<std::unique_ptr<RedisKv>> RedisKv::Connect(const RedisKvOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<RedisClient> client, RedisClient::Connect(options.redis));
  return std::unique_ptr<RedisKv>(new RedisKv(std::move(client), options.limits));
}

std::string RedisKv::Base(absl::string_view ns) const {
  return absl::StrCat(client_->options().key_prefix, ":kv:{", ns, "}:");
}

std::vector<std::string> RedisKv::NamespaceKeys(absl::string_view ns) const {
  const std::string base = Base(ns);
  return {absl::StrCat(base, "rev"),
          absl::StrCat(base, "events"),
          absl::StrCat(base, "ttl"),
          absl::StrCat(base, "ttlver"),
          absl::StrCat(base, "keys"),
          absl::StrCat(base, "sizes"),
          absl::StrCat(base, "usage"),
          absl::StrCat(client_->options().key_prefix, ":kvquota:", TenantOfNamespace(ns))};
}

absl::StatusOr<std::optional<Entry>> RedisKv::Get(absl::string_view ns, absl::string_view key) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  ASSIGN_OR_RETURN(RedisReplyPtr reply,
                   client_->Command({"HMGET", absl::StrCat(Base(ns), "k:", key), "v", "ver", "exp"},
                                    RedisClient::Retry::kSafe));
  ASSIGN_OR_RETURN(const redisReply* value, ArrayElement(reply.get(), 0, "HMGET"));
  ASSIGN_OR_RETURN(const redisReply* version, ArrayElement(reply.get(), 1, "HMGET"));
  ASSIGN_OR_RETURN(const redisReply* expires, ArrayElement(reply.get(), 2, "HMGET"));
  if (version->type == REDIS_REPLY_NIL) return std::nullopt;
  Entry entry;
  entry.value = ReplyString(value);
  ASSIGN_OR_RETURN(entry.version, ReplyNumber(version, "HMGET version"));
  if (expires->type != REDIS_REPLY_NIL) {
    ASSIGN_OR_RETURN(entry.expires_at_ms, ReplyNumber(expires, "HMGET expiry"));
  }
  return entry;
}

absl::StatusOr<int64_t> RedisKv::Put(absl::string_view ns, absl::string_view key,
                                     absl::string_view value, const PutOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  RETURN_IF_ERROR(ValidateValue(value, limits_));
  RETURN_IF_ERROR(ValidatePutOptions(options));
  const std::string base = Base(ns);
  std::vector<std::string> keys = NamespaceKeys(ns);
  keys.push_back(absl::StrCat(base, "k:", key));
  ASSIGN_OR_RETURN(
      RedisReplyPtr reply,
      client_->Eval(
          kPutScript, keys,
          {base, absl::StrCat(std::max<size_t>(limits_.event_history, 1)), std::string(key),
           std::string(value), absl::StrCat(options.ttl_ms), absl::StrCat(options.if_version),
           absl::StrCat(limits_.tenant_max_keys), absl::StrCat(limits_.tenant_max_bytes)},
          RedisClient::Retry::kNever));
  constexpr absl::string_view kWhat = "EVALSHA kv_put";
  ASSIGN_OR_RETURN(const redisReply* ok, ArrayElement(reply.get(), 0, kWhat));
  ASSIGN_OR_RETURN(const redisReply* version, ArrayElement(reply.get(), 1, kWhat));
  ASSIGN_OR_RETURN(int64_t number, ReplyInteger(version, kWhat));
  switch (ok->integer) {
    case 0:
      return VersionMismatch(number, options.if_version, "put", ns, key);
    case 2:
      return QuotaExceeded(TenantOfNamespace(ns), "keys", static_cast<uint64_t>(number), 1,
                           limits_.tenant_max_keys, ns, key);
    case 3: {
      ASSIGN_OR_RETURN(const redisReply* adding, ArrayElement(reply.get(), 2, kWhat));
      ASSIGN_OR_RETURN(int64_t added, ReplyInteger(adding, kWhat));
      return QuotaExceeded(TenantOfNamespace(ns), "bytes", static_cast<uint64_t>(number),
                           static_cast<uint64_t>(added), limits_.tenant_max_bytes, ns, key);
    }
    default:
      return number;
  }
}

absl::StatusOr<bool> RedisKv::Delete(absl::string_view ns, absl::string_view key,
                                     const DeleteOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  RETURN_IF_ERROR(ValidateIfVersion(options.if_version));
  const std::string base = Base(ns);
  std::vector<std::string> keys = NamespaceKeys(ns);
  keys.push_back(absl::StrCat(base, "k:", key));
  ASSIGN_OR_RETURN(RedisReplyPtr reply,
                   client_->Eval(kDeleteScript, keys,
                                 {base, absl::StrCat(std::max<size_t>(limits_.event_history, 1)),
                                  std::string(key), absl::StrCat(options.if_version)},
                                 RedisClient::Retry::kNever));
  ASSIGN_OR_RETURN(const redisReply* ok, ArrayElement(reply.get(), 0, "EVALSHA kv_delete"));
  ASSIGN_OR_RETURN(const redisReply* number, ArrayElement(reply.get(), 1, "EVALSHA kv_delete"));
  ASSIGN_OR_RETURN(int64_t value, ReplyInteger(number, "EVALSHA kv_delete"));
  if (ok->integer == 0) return VersionMismatch(value, options.if_version, "delete", ns, key);
  return value != 0;
}

absl::StatusOr<ListResult> RedisKv::List(absl::string_view ns, absl::string_view prefix,
                                         const ListOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
  ASSIGN_OR_RETURN(const size_t limit, EffectiveListLimit(options, limits_));
  ASSIGN_OR_RETURN(
      RedisReplyPtr reply,
      client_->Eval(kListScript, NamespaceKeys(ns),
                    {Base(ns), absl::StrCat(std::max<size_t>(limits_.event_history, 1)),
                     std::string(prefix), absl::StrCat(limit)},
                    RedisClient::Retry::kSafe));
  constexpr absl::string_view kWhat = "EVALSHA kv_list";
  ListResult result;
  ASSIGN_OR_RETURN(const redisReply* revision, ArrayElement(reply.get(), 0, kWhat));
  ASSIGN_OR_RETURN(const redisReply* truncated, ArrayElement(reply.get(), 1, kWhat));
  ASSIGN_OR_RETURN(result.revision, ReplyInteger(revision, kWhat));
  result.truncated = truncated->type == REDIS_REPLY_INTEGER && truncated->integer != 0;
  for (size_t i = 2; i + 3 < reply->elements; i += 4) {
    KeyEntry item;
    item.key = ReplyString(reply->element[i]);
    item.entry.value = ReplyString(reply->element[i + 1]);
    ASSIGN_OR_RETURN(item.entry.version, ReplyInteger(reply->element[i + 2], kWhat));
    ASSIGN_OR_RETURN(item.entry.expires_at_ms, ReplyInteger(reply->element[i + 3], kWhat));
    result.entries.push_back(std::move(item));
  }
  return result;
}

absl::StatusOr<WatchResult> RedisKv::WaitForChange(absl::string_view ns, absl::string_view prefix,
                                                   int64_t after_revision,
                                                   const WatchOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
  RETURN_IF_ERROR(ValidateWatchOptions(after_revision, options));
  const absl::Time deadline = absl::Now() + absl::Milliseconds(options.timeout_ms);
  const std::vector<std::string> keys = NamespaceKeys(ns);
  const std::string& events_key = keys[1];
  const std::string history = absl::StrCat(std::max<size_t>(limits_.event_history, 1));
  constexpr absl::string_view kWhat = "EVALSHA kv_watch";
  WatchResult result;
  result.revision = after_revision;
  while (true) {
    // Reaps due TTLs, so their expire events are in the log before we read.
    ASSIGN_OR_RETURN(RedisReplyPtr state, client_->Eval(kWatchScript, keys, {Base(ns), history},
                                                        RedisClient::Retry::kSafe));
    ASSIGN_OR_RETURN(const redisReply* rev_reply, ArrayElement(state.get(), 0, kWhat));
    ASSIGN_OR_RETURN(const redisReply* oldest_reply, ArrayElement(state.get(), 1, kWhat));
    ASSIGN_OR_RETURN(const redisReply* next_reply, ArrayElement(state.get(), 2, kWhat));
    ASSIGN_OR_RETURN(const redisReply* now_reply, ArrayElement(state.get(), 3, kWhat));
    ASSIGN_OR_RETURN(const int64_t revision, ReplyInteger(rev_reply, kWhat));
    ASSIGN_OR_RETURN(const int64_t oldest, ReplyInteger(oldest_reply, kWhat));
    ASSIGN_OR_RETURN(const int64_t next_expiry, ReplyInteger(next_reply, kWhat));
    ASSIGN_OR_RETURN(const int64_t server_now, ReplyInteger(now_reply, kWhat));

    if (result.revision > revision) return WatchAhead(ns, result.revision, revision);
    if (result.revision < revision && (oldest == 0 || oldest > result.revision + 1)) {
      return WatchCompacted(ns, result.revision, oldest == 0 ? revision + 1 : oldest);
    }
    int64_t block_ms = 0;
    if (result.revision == revision) {
      const int64_t remaining = absl::ToInt64Milliseconds(deadline - absl::Now());
      if (remaining <= 0) return result;
      block_ms = remaining;
      // Wake at the next TTL deadline to reap it and report its expiry.
      if (next_expiry > 0) block_ms = std::clamp<int64_t>(next_expiry - server_now, 1, block_ms);
    }
    std::vector<std::string> args = {"XREAD", "COUNT", absl::StrCat(options.max_events)};
    if (block_ms > 0) {
      args.push_back("BLOCK");
      args.push_back(absl::StrCat(block_ms));
    }
    args.insert(args.end(), {"STREAMS", events_key, absl::StrCat(result.revision, "-0")});
    ASSIGN_OR_RETURN(RedisReplyPtr read,
                     client_->Command(args, RedisClient::Retry::kSafe, block_ms));
    if (read->type == REDIS_REPLY_NIL) continue;  // Timed out; re-check and maybe return.
    ASSIGN_OR_RETURN(const redisReply* stream, ArrayElement(read.get(), 0, "XREAD"));
    ASSIGN_OR_RETURN(const redisReply* entries, ArrayElement(stream, 1, "XREAD"));
    for (size_t i = 0; i < entries->elements; ++i) {
      ASSIGN_OR_RETURN(WatchEvent event, ParseEvent(entries->element[i]));
      // Revisions are consecutive in the log; a gap means it was trimmed.
      if (event.revision != result.revision + 1) {
        return WatchCompacted(ns, result.revision, event.revision);
      }
      result.revision = event.revision;
      if (absl::string_view(event.key).substr(0, prefix.size()) == prefix) {
        result.events.push_back(std::move(event));
      }
    }
    if (!result.events.empty()) return result;
  }
}

absl::Status RedisKv::DeleteNamespace(absl::string_view ns) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  const std::vector<std::string> keys = NamespaceKeys(ns);
  const std::vector<std::string> args = {Base(ns), "1"};
  while (true) {
    ASSIGN_OR_RETURN(RedisReplyPtr reply,
                     client_->Eval(kDropScript, keys, args, RedisClient::Retry::kSafe));
    ASSIGN_OR_RETURN(int64_t more, ReplyInteger(reply.get(), "EVALSHA kv_drop_namespace"));
    if (more == 0) return absl::OkStatus();
  }
}

}  // namespace flotilla::kv
