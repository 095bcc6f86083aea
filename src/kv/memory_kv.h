// MemoryKv: the embedded KvStore, held in the memory of the process that owns
// it (the manager, which serves it to functions over gRPC/REST).
//
// Durability: given a KvPersistence (the manager passes one over its Store,
// store_persistence.h), every write — put, delete, compare-and-set, TTL,
// DeleteNamespace — is persisted before it is acknowledged or becomes
// visible, and Restore() rebuilds the store at start: keys, values, versions
// (so compare-and-set by version works across a restart), expiries (entries
// expired by then are dropped), namespace revisions and tenant usage. A
// persist that fails is not acknowledged: the write returns Unavailable and
// memory keeps the state it had. The event history is not persisted: after a
// restart a watch from an older revision answers OutOfRange ("compacted").
// Without a KvPersistence nothing is persisted (tests, tools).
//
// Expiries are not written one by one: an entry that expires is dropped from
// memory (a kExpire event with its own revision) and its record stays in the
// store until the next write of its namespace deletes it, or until Restore
// drops it. Restore counts every expired record it drops as one revision on
// top of the persisted one, so a restored revision is never below one a
// client has seen and versions are never reused.
//
// Time comes from a Clock, so tests drive TTLs with a ManualClock. Expired
// entries are invisible at once and are removed (recording kExpire events)
// whenever their namespace is touched, or by Sweep(), which the owner may
// call periodically so that watchers of idle namespaces hear of expiries.
//
// Tenant quotas (kv.h) are counted per namespace and per tenant under the
// store's mutex, so the check and the write are one step.
//
// Thread-safety: all methods may be called concurrently; mu_ guards the
// whole store, and each namespace has a condition variable on which its
// watchers wait. Writes are ordered by write_mu_, which is held across the
// persist while mu_ is not: a writer decides its outcome under mu_, releases
// mu_ for the store's I/O, and applies the change under mu_ again. That is
// safe because write_mu_ keeps every other write out of that window, and
// the one change readers make — reaping expired entries —
// is held off for the namespace being persisted (Namespace::persisting;
// Get and List hide expired entries themselves), so the state the writer
// decided on is still the state it applies to, and the store sees changes in
// the order memory makes them. Readers and watchers never wait for disk.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/clock.h"
#include "kv/kv.h"
#include "kv/persistence.h"

namespace flotilla::kv {

class MemoryKv final : public KvStore {
 public:
  // clock must outlive the store; nullptr means the wall clock. persistence
  // (may be nullptr: nothing is persisted) must outlive the store too.
  explicit MemoryKv(const Clock* clock = nullptr, KvLimits limits = {},
                    KvPersistence* persistence = nullptr);
  ~MemoryKv() override;

  MemoryKv(const MemoryKv&) = delete;
  MemoryKv& operator=(const MemoryKv&) = delete;

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

  // Removes the entries of every namespace that have expired by the clock's
  // now, recording a kExpire event for each and waking their watchers.
  // Returns how many were removed.
  size_t Sweep();

  // Loads what the KvPersistence holds into this (empty) store, dropping
  // entries that have expired by the clock's now (and deleting their
  // records). Call once, before serving. FailedPrecondition without a
  // KvPersistence or on a store that is not empty; otherwise the Load's
  // error.
  absl::Status Restore();

  // How many namespaces the store holds (with or without keys).
  size_t NamespaceCountForTest();

 private:
  struct Item {
    std::string value;
    int64_t version = 0;
    int64_t expires_at_ms = 0;
  };
  // Live keys and their key + value bytes.
  struct Usage {
    uint64_t keys = 0;
    uint64_t bytes = 0;
  };
  struct Namespace {
    // TenantOfNamespace of its name.
    std::string tenant;
    Usage usage;
    std::map<std::string, Item, std::less<>> items;
    // (expires_at_ms, key) of every item with a TTL.
    std::set<std::pair<int64_t, std::string>> expiry;
    // The last KvLimits::event_history events, revisions consecutive.
    std::deque<WatchEvent> history;
    int64_t revision = 0;
    // A write of this namespace is being persisted: its items must not
    // change (no reaping) until the writer applies it.
    bool persisting = false;
    absl::CondVar changed;
  };

  std::shared_ptr<Namespace> FindLocked(absl::string_view ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Namespace> FindOrCreateLocked(absl::string_view ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the items of space that have expired by now, unless a write of
  // it is being persisted; returns how many, and appends their keys to
  // reaped when given.
  size_t ReapLocked(Namespace& space, int64_t now, std::vector<std::string>* reaped = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reaps what has expired in every namespace of `tenant`: before a put is
  // refused for the tenant's quota, so that entries expired elsewhere, not
  // yet reaped, do not count against it.
  void ReapTenantLocked(const std::string& tenant, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets space's key to value at version ++revision; returns the version.
  int64_t ApplyPutLocked(Namespace& space, absl::string_view key, absl::string_view value,
                         int64_t expires_at_ms) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Persists change with mu_ released (space->persisting set meanwhile);
  // returns its status with mu_ held again.
  absl::Status PersistUnlocked(Namespace& space, const KvChange& change)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_, write_mu_);
  void RemoveItemLocked(Namespace& space, std::map<std::string, Item, std::less<>>::iterator it,
                        EventType type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordLocked(Namespace& space, WatchEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns why, after dropping space (ns) if the refused put created it.
  absl::Status RefusePutLocked(absl::string_view ns, std::shared_ptr<Namespace> space,
                               absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds (or with a negative sign, removes) keys and bytes to space and its
  // tenant; a tenant left with nothing is forgotten, so usage_ holds only
  // tenants with live keys.
  void ChargeLocked(Namespace& space, int64_t keys, int64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RealClock real_clock_;
  const Clock* const clock_;
  const KvLimits limits_;
  KvPersistence* const persistence_;

  // Orders writes (see the header comment); taken before mu_.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Namespace>, std::less<>> namespaces_ ABSL_GUARDED_BY(mu_);
  // Per tenant, the sum of its namespaces' usage.
  std::map<std::string, Usage, std::less<>> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::kv
