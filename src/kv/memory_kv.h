// MemoryKv: the embedded KvStore, held in the memory of the process that owns
// it (the manager, which serves it to functions over gRPC/REST). Nothing is
// persisted: a manager restart loses function state, as with any embedded
// cache; use RedisKv where state must outlive the manager.
//
// Time comes from a Clock, so tests drive TTLs with a ManualClock. Expired
// entries are invisible at once and are removed (recording kExpire events)
// whenever their namespace is touched, or by Sweep(), which the owner may
// call periodically so that watchers of idle namespaces hear of expiries.
//
// Tenant quotas (kv.h) are counted per namespace and per tenant under the
// store's mutex, so the check and the write are one step.
//
// Thread-safety: all methods may be called concurrently; one mutex guards
// the whole store, and each namespace has a condition variable on which its
// watchers wait.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/clock.h"
#include "kv/kv.h"

namespace flotilla::kv {

class MemoryKv final : public KvStore {
 public:
  // clock must outlive the store; nullptr means the wall clock.
  explicit MemoryKv(const Clock* clock = nullptr, KvLimits limits = {});
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
    absl::CondVar changed;
  };

  std::shared_ptr<Namespace> FindLocked(absl::string_view ns) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Namespace> FindOrCreateLocked(absl::string_view ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes the items of space that have expired by now; returns how many.
  size_t ReapLocked(Namespace& space, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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

  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Namespace>, std::less<>> namespaces_ ABSL_GUARDED_BY(mu_);
  // Per tenant, the sum of its namespaces' usage.
  std::map<std::string, Usage, std::less<>> usage_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::kv
