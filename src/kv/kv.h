// KvStore: the shared state of running functions and workflows — a versioned
// key-value store split into namespaces (one per workflow), with
// compare-and-set, TTLs and watches. Two implementations share this contract
// and one test suite (tests/unit/kv/kv_contract_test.cc):
//   MemoryKv (memory_kv.h)  embedded in the manager; held in its memory and,
//                           in the manager, persisted through its Store.
//   RedisKv  (redis_kv.h)   Redis, for clusters larger than one manager.
//
// Data model
//   namespace -> key -> Entry{value, version, expires_at_ms}.
//   Every namespace has a revision counter that starts at 0 and grows by one
//   with every change in it: a put, a delete, or the expiry of a TTL. A
//   key's version is the namespace revision of the write that produced its
//   current value, so versions only grow and are never reused inside a
//   namespace (deleting and re-creating a key does not bring an old version
//   back, so a stale compare-and-set cannot succeed; no ABA).
//   DeleteNamespace drops the namespace's keys, history and revision; a
//   namespace written afterwards starts again from revision 0.
//
// Compare-and-set
//   PutOptions::if_version / DeleteOptions::if_version:
//     kAnyVersion (-1)    unconditional;
//     kMustNotExist (0)   only if the key does not exist (create);
//     N > 0               only if the key's current version is N.
//   A failed condition returns FailedPrecondition with the message
//   `version mismatch: have V, expected N (<op> key "<k>" in namespace "<ns>")`
//   where V is the current version (0 if absent). Callers retry with the
//   version they read (see the CAS loop in the tests).
//
// TTL
//   PutOptions::ttl_ms > 0 makes the entry expire ttl_ms after the put (a
//   later put without a TTL makes it permanent again). An expired entry is
//   invisible to Get and List at once, and its removal is recorded as a
//   kExpire event, with its own revision, the next time the namespace is
//   touched (any call naming it, a WaitForChange on it, or MemoryKv::Sweep).
//
// Watch
//   WaitForChange(ns, prefix, after_revision, options) returns the events of
//   the namespace with revision > after_revision whose key starts with
//   prefix, in revision order; if there are none it blocks up to
//   options.timeout_ms for one and then returns an empty list (a timeout is
//   not an error). WatchResult::revision is where the next call continues
//   from: pass it back as after_revision to see every later change exactly
//   once. The pattern for a consistent view is List (which returns the
//   revision it read at), then WaitForChange from that revision. Each
//   namespace keeps its last KvLimits::event_history events; asking for
//   older ones returns OutOfRange ("compacted": re-List and watch from the
//   new revision), as does an after_revision ahead of the namespace's
//   revision (the namespace was deleted). A restored MemoryKv keeps no
//   history, so every after_revision below its revision is compacted.
//   Watcher (watcher.h) wraps this in a thread with a callback.
//
// Tenant quotas
//   Namespaces belong to tenants: the tenant of "acme~cache" is "acme" (the
//   REST gateway scopes a tenant's namespaces so, see manager/rest.cc), and
//   a namespace without '~' belongs to tenant "default" (TenantOfNamespace).
//   Across all its namespaces a tenant holds at most
//   KvLimits::tenant_max_keys live keys and tenant_max_bytes bytes, counting
//   key + value of every live entry. A Put that would go over either bound
//   fails with ResourceExhausted naming the bound, the tenant and its usage,
//   and changes nothing (no event, no revision); a Put that shrinks or keeps
//   a value's size is always allowed. Delete, TTL expiry and DeleteNamespace
//   give the space back; an expired entry stops counting when it is reaped
//   (the next call naming its namespace, or MemoryKv::Sweep; MemoryKv also
//   reaps all of a tenant's namespaces before refusing it a put). Both
//   implementations check and update usage atomically with the write, so
//   concurrent writers cannot together exceed a quota.
//
// Validation (errors are InvalidArgument and name the limit):
//   namespace: 1..KvLimits::max_namespace_bytes of printable ASCII
//              (0x21..0x7e) except '{' and '}' (Redis uses them to keep one
//              namespace in one cluster slot);
//   key:       1..max_key_bytes of any bytes except NUL;
//   value:     0..max_value_bytes of any bytes (1 MiB by default).
//
// Thread-safety: every method of every implementation may be called from
// any thread concurrently; WaitForChange blocks only its caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::kv {

inline constexpr int64_t kAnyVersion = -1;
inline constexpr int64_t kMustNotExist = 0;

// Size limits and history length shared by both implementations.
struct KvLimits {
  size_t max_namespace_bytes = 256;
  size_t max_key_bytes = 1024;
  size_t max_value_bytes = 1 << 20;
  // The most entries one List returns, and the default when limit is 0.
  size_t max_list_entries = 10'000;
  // Events kept per namespace for WaitForChange. Put events carry their
  // value, so the history costs up to event_history x the values written.
  size_t event_history = 1'000;
  // Per tenant, over all its namespaces (see "Tenant quotas"): live keys,
  // and bytes of their keys plus values. Both must be at least 1.
  size_t tenant_max_keys = 100'000;
  size_t tenant_max_bytes = size_t{256} << 20;
};

// The tenant a namespace counts toward: the text before its first '~', or
// "default" when it has none.
std::string TenantOfNamespace(absl::string_view ns);

// The ResourceExhausted of a Put over a tenant quota. `which` is "keys" or
// "bytes"; have/limit in that unit.
absl::Status QuotaExceeded(absl::string_view tenant, absl::string_view which, uint64_t have,
                           uint64_t adding, uint64_t limit, absl::string_view ns,
                           absl::string_view key);

struct Entry {
  std::string value;
  int64_t version = 0;
  // When the entry expires (ms since the Unix epoch, by the store's clock:
  // the Clock of a MemoryKv, the server's for Redis); 0 if it never does.
  int64_t expires_at_ms = 0;
};

struct KeyEntry {
  std::string key;
  Entry entry;
};

struct PutOptions {
  // 0 = no expiry; must not be negative.
  int64_t ttl_ms = 0;
  // kAnyVersion, kMustNotExist or the version the key must be at.
  int64_t if_version = kAnyVersion;
};

struct DeleteOptions {
  int64_t if_version = kAnyVersion;
};

struct ListOptions {
  // At most this many entries (0 = KvLimits::max_list_entries; more than
  // that is InvalidArgument).
  size_t limit = 0;
};

struct ListResult {
  // Sorted by key (bytewise).
  std::vector<KeyEntry> entries;
  // True if more keys matched than were returned.
  bool truncated = false;
  // The namespace revision the listing reflects.
  int64_t revision = 0;
};

enum class EventType { kPut, kDelete, kExpire };

// "put", "delete" or "expire".
absl::string_view EventTypeName(EventType type);

struct WatchEvent {
  EventType type = EventType::kPut;
  std::string key;
  // The new value for kPut; empty otherwise.
  std::string value;
  // kPut: the new version (== revision). kDelete/kExpire: the version that
  // was removed.
  int64_t version = 0;
  // The namespace revision of this change.
  int64_t revision = 0;
};

struct WatchOptions {
  // How long to block when nothing matches yet; 0 = return at once.
  int64_t timeout_ms = 0;
  // The most events one call returns.
  size_t max_events = 1000;
};

struct WatchResult {
  std::vector<WatchEvent> events;
  // Pass back as after_revision to continue. At least after_revision; may be
  // past the last returned event when later events did not match the prefix.
  int64_t revision = 0;
};

class KvStore {
 public:
  virtual ~KvStore() = default;

  // Returns the live entry at ns/key, or nullopt if there is none (never set,
  // deleted or expired).
  virtual absl::StatusOr<std::optional<Entry>> Get(absl::string_view ns, absl::string_view key) = 0;

  // Sets ns/key to value and returns its new version; FailedPrecondition if
  // options.if_version does not hold (see the header comment).
  virtual absl::StatusOr<int64_t> Put(absl::string_view ns, absl::string_view key,
                                      absl::string_view value, const PutOptions& options = {}) = 0;

  // Removes ns/key. Returns true if it existed and was removed, false if
  // there was nothing to remove (not an error for kAnyVersion/kMustNotExist);
  // FailedPrecondition if options.if_version does not hold (a version N > 0
  // that is not current, or kMustNotExist on an existing key).
  virtual absl::StatusOr<bool> Delete(absl::string_view ns, absl::string_view key,
                                      const DeleteOptions& options = {}) = 0;

  // Returns the live entries of ns whose key starts with prefix ("" = all).
  virtual absl::StatusOr<ListResult> List(absl::string_view ns, absl::string_view prefix,
                                          const ListOptions& options = {}) = 0;

  // Returns the changes after after_revision under prefix, blocking up to
  // options.timeout_ms for the first one (see the header comment).
  virtual absl::StatusOr<WatchResult> WaitForChange(absl::string_view ns, absl::string_view prefix,
                                                    int64_t after_revision,
                                                    const WatchOptions& options = {}) = 0;

  // Removes every key, event and the revision of ns (the end of a workflow).
  // Blocked watchers of ns get OutOfRange once they notice. Deleting an
  // absent namespace is OK.
  virtual absl::Status DeleteNamespace(absl::string_view ns) = 0;
};

// Validation shared by the implementations. Each returns InvalidArgument
// naming the limit and the offending size or byte, or OK.
absl::Status ValidateNamespace(absl::string_view ns, const KvLimits& limits);
absl::Status ValidateKey(absl::string_view key, const KvLimits& limits);
// A key prefix: like a key, but may be empty.
absl::Status ValidatePrefix(absl::string_view prefix, const KvLimits& limits);
absl::Status ValidateValue(absl::string_view value, const KvLimits& limits);
absl::Status ValidatePutOptions(const PutOptions& options);
absl::Status ValidateIfVersion(int64_t if_version);
// Returns the effective List limit for options.limit, or InvalidArgument.
absl::StatusOr<size_t> EffectiveListLimit(const ListOptions& options, const KvLimits& limits);
absl::Status ValidateWatchOptions(int64_t after_revision, const WatchOptions& options);

// The FailedPrecondition of a failed compare-and-set, in the documented form.
absl::Status VersionMismatch(int64_t have, int64_t expected, absl::string_view op,
                             absl::string_view ns, absl::string_view key);

// The OutOfRange of a watch that cannot be served.
absl::Status WatchCompacted(absl::string_view ns, int64_t after_revision, int64_t oldest_available);
absl::Status WatchAhead(absl::string_view ns, int64_t after_revision, int64_t current);

}  // namespace flotilla::kv
