// RedisKv: the KvStore on a Redis server (>= 6.2; Lua scripts and streams),
// for clusters that outgrow one manager's embedded store.
//
// Key layout (P = RedisOptions::key_prefix, N = the namespace). The braces
// make N a Redis Cluster hash tag, so a namespace's keys share one slot and
// its scripts stay atomic there too:
//   P:kv:{N}:k:<key>   hash {v: value, ver: version, exp: expires_at_ms or 0};
//                      PEXPIREAT'd to exp when the entry has a TTL
//   P:kv:{N}:rev       string: the namespace revision (INCR)
//   P:kv:{N}:keys      zset of live keys, all score 0 (ZRANGEBYLEX for List)
//   P:kv:{N}:ttl       zset key -> expires_at_ms, of entries with a TTL
//   P:kv:{N}:ttlver    hash key -> version, of entries with a TTL (so the
//                      expire event can name the version Redis already evicted)
//   P:kv:{N}:sizes     hash key -> bytes of key + value, of every live key
//                      (what a removal gives back to the quota, even after
//                      Redis evicted an expired entry's hash)
//   P:kv:{N}:usage     hash {keys, bytes}: the namespace's live keys and bytes
//   P:kvquota:<T>      hash {keys, bytes}: the same summed over the namespaces
//                      of tenant T (TenantOfNamespace); deleted at 0 keys
//   P:kv:{N}:events    stream, one entry per change with ID "<revision>-0"
//                      and fields {t: put|delete|expire, k, v, ver};
//                      trimmed to KvLimits::event_history (exact MAXLEN)
//
// Every write, List and watch runs a Lua script (EVALSHA) that first reaps
// the namespace's due TTLs — removing them and appending their expire events
// — so compare-and-set, revision and event log change together atomically.
// Quotas are checked and charged inside the same scripts, so concurrent
// writers (from any number of managers) cannot together exceed them. The
// tenant hash lies outside the namespace's hash slot: RedisKv talks to one
// Redis server (or a primary with replicas), not to Redis Cluster.
// Time is the server's (TIME inside scripts), so clients need no clock sync.
// Get is a plain HMGET: Redis's own expiry already hides expired entries.
// WaitForChange is XREAD BLOCK on the events stream from "<revision>-0",
// waking early at the next due TTL so expire events are produced even in an
// idle namespace.
//
// Failure: errors name the command and Redis's error text (redis_client.h).
// A write that fails on the wire returns Unavailable and may or may not have
// been applied; reads are retried once on a fresh connection.
//
// Thread-safety: all methods may be called concurrently (connection pool).
#pragma once

#include <memory>

#include "kv/kv.h"
#include "kv/redis_client.h"

namespace flotilla::kv {

struct RedisKvOptions {
  RedisOptions redis;
  KvLimits limits;
};

class RedisKv final : public KvStore {
 public:
  // Connects (and PINGs) with options.redis; Unavailable if the server
  // cannot be reached, InvalidArgument for bad options.
  static absl::StatusOr<std::unique_ptr<RedisKv>> Connect(const RedisKvOptions& options);
  ~RedisKv() override;

  absl::StatusOr<std::optional<Entry>> Get(absl::string_view ns, absl::string_view key) override;
  absl::StatusOr<int64_t> Put(absl::string_view ns, absl::string_view key, absl::string_view value,
                              const PutOptions& options = {}) override;
  absl::StatusOr<bool> Delete(absl::string_view ns, absl::string_view key,
                              const DeleteOptions& options = {}) override;
  absl::StatusOr<ListResult> List(absl::string_view ns, absl::string_view prefix,
                                  const ListOptions& options = {}) override;
  absl::StatusOr<WatchResult> WaitForChange(absl::string_view ns, absl::string_view prefix,
                                            int64_t after_revision,
                                            const WatchOptions& options = {}) override;
  absl::Status DeleteNamespace(absl::string_view ns) override;

 private:
  RedisKv(std::unique_ptr<RedisClient> client, const KvLimits& limits);

  // "P:kv:{N}:"
  std::string Base(absl::string_view ns) const;
  // The fixed keys of a namespace, in the order the scripts expect:
  // rev, events, ttl, ttlver, keys, sizes, usage, the tenant's quota hash.
  std::vector<std::string> NamespaceKeys(absl::string_view ns) const;

  std::unique_ptr<RedisClient> client_;
  const KvLimits limits_;
};

}  // namespace flotilla::kv
