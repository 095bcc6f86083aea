#include "kv/memory_kv.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace flotilla::kv {
namespace {

bool Expired(int64_t expires_at_ms, int64_t now) {
  return expires_at_ms != 0 && expires_at_ms <= now;
}

// The Unavailable of a write whose persist failed.
absl::Status NotPersisted(absl::string_view op, absl::string_view ns, absl::string_view key,
                          const absl::Status& why) {
  return absl::UnavailableError(absl::StrCat(
      op, " of key \"", key, "\" in namespace \"", ns,
      "\" was not persisted, so nothing changed; retry once the manager's store is writable: ",
      why.message()));
}

}  // namespace

MemoryKv::MemoryKv(const Clock* clock, KvLimits limits, KvPersistence* persistence)
    : clock_(clock != nullptr ? clock : &real_clock_), limits_(limits), persistence_(persistence) {}

MemoryKv::~MemoryKv() = default;

std::shared_ptr<MemoryKv::Namespace> MemoryKv::FindLocked(absl::string_view ns) {
  auto it = namespaces_.find(ns);
  return it == namespaces_.end() ? nullptr : it->second;
}

std::shared_ptr<MemoryKv::Namespace> MemoryKv::FindOrCreateLocked(absl::string_view ns) {
  auto it = namespaces_.find(ns);
  if (it != namespaces_.end()) return it->second;
  auto space = std::make_shared<Namespace>();
  space->tenant = TenantOfNamespace(ns);
  namespaces_.emplace(std::string(ns), space);
  return space;
}

void MemoryKv::RecordLocked(Namespace& space, WatchEvent event) {
  space.history.push_back(std::move(event));
  while (space.history.size() > std::max<size_t>(limits_.event_history, 1)) {
    space.history.pop_front();
  }
  space.changed.SignalAll();
}

void MemoryKv::ChargeLocked(Namespace& space, int64_t keys, int64_t bytes) {
  // Unsigned arithmetic wraps, so adding a negative delta subtracts.
  space.usage.keys += static_cast<uint64_t>(keys);
  space.usage.bytes += static_cast<uint64_t>(bytes);
  Usage& tenant = usage_[space.tenant];
  tenant.keys += static_cast<uint64_t>(keys);
  tenant.bytes += static_cast<uint64_t>(bytes);
  if (tenant.keys == 0) usage_.erase(space.tenant);
}

void MemoryKv::RemoveItemLocked(Namespace& space,
                                std::map<std::string, Item, std::less<>>::iterator it,
                                EventType type) {
  if (it->second.expires_at_ms != 0) space.expiry.erase({it->second.expires_at_ms, it->first});
  WatchEvent event;
  event.type = type;
  event.key = it->first;
  event.version = it->second.version;
  event.revision = ++space.revision;
  ChargeLocked(space, -1, -static_cast<int64_t>(it->first.size() + it->second.value.size()));
  space.items.erase(it);
  RecordLocked(space, std::move(event));
}

void MemoryKv::ReapTenantLocked(const std::string& tenant, int64_t now) {
  // Only on the way to a refusal: a scan of every namespace. Their records
  // in the store go with the next write of each namespace, as after Sweep.
  for (auto& [name, other] : namespaces_) {
    if (other->tenant == tenant) ReapLocked(*other, now);
  }
}

size_t MemoryKv::ReapLocked(Namespace& space, int64_t now, std::vector<std::string>* reaped) {
  // A writer is persisting a change decided on these items; Get and List
  // hide what has expired meanwhile, and the next touch reaps it.
  if (space.persisting) return 0;
  size_t removed = 0;
  while (!space.expiry.empty() && space.expiry.begin()->first <= now) {
    auto item = space.items.find(space.expiry.begin()->second);
    if (item == space.items.end()) {  // Unreachable: the index follows the items.
      space.expiry.erase(space.expiry.begin());
      continue;
    }
    if (reaped != nullptr) reaped->push_back(item->first);
    RemoveItemLocked(space, item, EventType::kExpire);
    ++removed;
  }
  return removed;
}

int64_t MemoryKv::ApplyPutLocked(Namespace& space, absl::string_view key, absl::string_view value,
                                 int64_t expires_at_ms) {
  auto it = space.items.find(key);
  if (it == space.items.end()) {
    it = space.items.emplace(std::string(key), Item{}).first;
  } else if (it->second.expires_at_ms != 0) {
    space.expiry.erase({it->second.expires_at_ms, it->first});
  }
  Item& item = it->second;
  item.value = std::string(value);
  item.version = ++space.revision;
  item.expires_at_ms = expires_at_ms;
  if (item.expires_at_ms != 0) space.expiry.emplace(item.expires_at_ms, it->first);

  WatchEvent event;
  event.type = EventType::kPut;
  event.key = it->first;
  event.value = item.value;
  event.version = item.version;
  event.revision = item.version;
  RecordLocked(space, std::move(event));
  return item.version;
}

absl::Status MemoryKv::PersistUnlocked(Namespace& space, const KvChange& change) {
  space.persisting = true;
  mu_.Unlock();
  absl::Status status = persistence_->Persist(change);
  mu_.Lock();
  space.persisting = false;
  return status;
}

absl::Status MemoryKv::Restore() {
  if (persistence_ == nullptr) {
    return absl::FailedPreconditionError(
        "kv restore: this store has no persistence to restore from");
  }
  ASSIGN_OR_RETURN(std::vector<PersistedNamespace> loaded, persistence_->Load());
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  if (!namespaces_.empty()) {
    return absl::FailedPreconditionError("kv restore: the store already holds namespaces");
  }
  const int64_t now = clock_->NowMs();
  std::vector<KvChange> cleanups;
  for (PersistedNamespace& persisted : loaded) {
    std::shared_ptr<Namespace> space = FindOrCreateLocked(persisted.ns);
    int64_t revision = persisted.revision;
    KvChange cleanup;
    for (KeyEntry& e : persisted.entries) {
      revision = std::max(revision, e.entry.version);
      if (Expired(e.entry.expires_at_ms, now)) {
        cleanup.deletes.push_back(std::move(e.key));
        continue;
      }
      // Quotas are not enforced here: what was acknowledged stays, even if
      // the limits were lowered since; growth is refused until usage fits.
      ChargeLocked(*space, 1, static_cast<int64_t>(e.key.size() + e.entry.value.size()));
      if (e.entry.expires_at_ms != 0) space->expiry.emplace(e.entry.expires_at_ms, e.key);
      space->items.emplace(std::move(e.key),
                           Item{std::move(e.entry.value), e.entry.version, e.entry.expires_at_ms});
    }
    // Each dropped record may be an expiry that was never persisted: count
    // it, so the revision is at least the one clients saw (header comment).
    space->revision = revision + static_cast<int64_t>(cleanup.deletes.size());
    if (!cleanup.deletes.empty()) {
      cleanup.ns = persisted.ns;
      cleanup.revision = space->revision;
      cleanups.push_back(std::move(cleanup));
    }
  }
  // Under the locks, which is harmless: Restore runs before anyone is served.
  for (const KvChange& cleanup : cleanups) {
    RETURN_IF_ERROR(Annotate(
        persistence_->Persist(cleanup),
        absl::StrCat("kv restore: dropping expired keys of namespace \"", cleanup.ns, "\"")));
  }
  return absl::OkStatus();
}

absl::Status MemoryKv::RefusePutLocked(absl::string_view ns, std::shared_ptr<Namespace> space,
                                       absl::Status why) {
  // The put may have made the namespace; drop it again unless it holds
  // something or someone (a watcher) holds it, so refused puts to ever new
  // names cannot grow the table.
  if (space->items.empty() && space->revision == 0 && space.use_count() == 2) {
    namespaces_.erase(namespaces_.find(ns));
  }
  return why;
}

size_t MemoryKv::NamespaceCountForTest() {
  absl::MutexLock lock(&mu_);
  return namespaces_.size();
}

absl::StatusOr<std::optional<Entry>> MemoryKv::Get(absl::string_view ns, absl::string_view key) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Namespace> space = FindLocked(ns);
  if (space == nullptr) return std::nullopt;
  const int64_t now = clock_->NowMs();
  ReapLocked(*space, now);
  auto it = space->items.find(key);
  if (it == space->items.end() || Expired(it->second.expires_at_ms, now)) return std::nullopt;
  return Entry{it->second.value, it->second.version, it->second.expires_at_ms};
}

absl::StatusOr<int64_t> MemoryKv::Put(absl::string_view ns, absl::string_view key,
                                      absl::string_view value, const PutOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  RETURN_IF_ERROR(ValidateValue(value, limits_));
  RETURN_IF_ERROR(ValidatePutOptions(options));
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Namespace> space = FindOrCreateLocked(ns);
  const int64_t now = clock_->NowMs();
  std::vector<std::string> reaped;
  ReapLocked(*space, now, &reaped);
  auto it = space->items.find(key);
  const int64_t have = it == space->items.end() ? 0 : it->second.version;
  if (options.if_version != kAnyVersion && have != options.if_version) {
    return RefusePutLocked(ns, std::move(space),
                           VersionMismatch(have, options.if_version, "put", ns, key));
  }
  // Quota: only growth is checked, so a put that shrinks always succeeds.
  const bool created = it == space->items.end();
  const uint64_t old_bytes = created ? 0 : key.size() + it->second.value.size();
  const uint64_t new_bytes = key.size() + value.size();
  if (created || new_bytes > old_bytes) {
    auto usage = [&] {
      auto u = usage_.find(space->tenant);
      return u == usage_.end() ? Usage{} : u->second;
    };
    auto over = [&](const Usage& held) {
      return (created && held.keys + 1 > limits_.tenant_max_keys) ||
             (new_bytes > old_bytes &&
              held.bytes + (new_bytes - old_bytes) > limits_.tenant_max_bytes);
    };
    Usage held = usage();
    if (over(held)) {
      ReapTenantLocked(space->tenant, now);
      held = usage();
    }
    if (created && held.keys + 1 > limits_.tenant_max_keys) {
      absl::Status over =
          QuotaExceeded(space->tenant, "keys", held.keys, 1, limits_.tenant_max_keys, ns, key);
      return RefusePutLocked(ns, std::move(space), std::move(over));
    }
    if (new_bytes > old_bytes && held.bytes + (new_bytes - old_bytes) > limits_.tenant_max_bytes) {
      absl::Status over = QuotaExceeded(space->tenant, "bytes", held.bytes, new_bytes - old_bytes,
                                        limits_.tenant_max_bytes, ns, key);
      return RefusePutLocked(ns, std::move(space), std::move(over));
    }
  }
  const int64_t expires_at_ms = options.ttl_ms > 0 ? now + options.ttl_ms : 0;
  if (persistence_ != nullptr) {
    KvChange change;
    change.ns = std::string(ns);
    change.revision = space->revision + 1;
    change.deletes = std::move(reaped);
    change.puts.push_back(
        KeyEntry{std::string(key), Entry{std::string(value), change.revision, expires_at_ms}});
    if (absl::Status persisted = PersistUnlocked(*space, change); !persisted.ok()) {
      return RefusePutLocked(ns, std::move(space), NotPersisted("put", ns, key, persisted));
    }
  }
  ChargeLocked(*space, created ? 1 : 0,
               static_cast<int64_t>(new_bytes) - static_cast<int64_t>(old_bytes));
  return ApplyPutLocked(*space, key, value, expires_at_ms);
}

absl::StatusOr<bool> MemoryKv::Delete(absl::string_view ns, absl::string_view key,
                                      const DeleteOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidateKey(key, limits_));
  RETURN_IF_ERROR(ValidateIfVersion(options.if_version));
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  std::shared_ptr<Namespace> space = FindLocked(ns);
  if (space == nullptr) {
    if (options.if_version > 0) return VersionMismatch(0, options.if_version, "delete", ns, key);
    return false;
  }
  std::vector<std::string> reaped;
  ReapLocked(*space, clock_->NowMs(), &reaped);
  auto it = space->items.find(key);
  const int64_t have = it == space->items.end() ? 0 : it->second.version;
  if (options.if_version != kAnyVersion && have != options.if_version) {
    if (have == 0 && options.if_version == kMustNotExist) return false;
    return VersionMismatch(have, options.if_version, "delete", ns, key);
  }
  if (it == space->items.end()) return false;
  if (persistence_ != nullptr) {
    KvChange change;
    change.ns = std::string(ns);
    change.revision = space->revision + 1;
    change.deletes = std::move(reaped);
    change.deletes.push_back(std::string(key));
    if (absl::Status persisted = PersistUnlocked(*space, change); !persisted.ok()) {
      return NotPersisted("delete", ns, key, persisted);
    }
    it = space->items.find(key);  // Unchanged meanwhile (header comment); looked up for clarity.
  }
  RemoveItemLocked(*space, it, EventType::kDelete);
  return true;
}

absl::StatusOr<ListResult> MemoryKv::List(absl::string_view ns, absl::string_view prefix,
                                          const ListOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
  ASSIGN_OR_RETURN(const size_t limit, EffectiveListLimit(options, limits_));
  absl::MutexLock lock(&mu_);
  ListResult result;
  std::shared_ptr<Namespace> space = FindLocked(ns);
  if (space == nullptr) return result;
  const int64_t now = clock_->NowMs();
  ReapLocked(*space, now);
  result.revision = space->revision;
  for (auto it = space->items.lower_bound(prefix);
       it != space->items.end() && absl::string_view(it->first).substr(0, prefix.size()) == prefix;
       ++it) {
    if (Expired(it->second.expires_at_ms, now)) continue;
    if (result.entries.size() == limit) {
      result.truncated = true;
      break;
    }
    result.entries.push_back(
        KeyEntry{it->first, Entry{it->second.value, it->second.version, it->second.expires_at_ms}});
  }
  return result;
}

absl::StatusOr<WatchResult> MemoryKv::WaitForChange(absl::string_view ns, absl::string_view prefix,
                                                    int64_t after_revision,
                                                    const WatchOptions& options) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  RETURN_IF_ERROR(ValidatePrefix(prefix, limits_));
  RETURN_IF_ERROR(ValidateWatchOptions(after_revision, options));
  const absl::Time deadline = absl::Now() + absl::Milliseconds(options.timeout_ms);
  WatchResult result;
  result.revision = after_revision;

  absl::MutexLock lock(&mu_);
  while (true) {
    // Looked up afresh each round: DeleteNamespace may have replaced it.
    std::shared_ptr<Namespace> space = FindLocked(ns);
    if (space == nullptr && after_revision > 0) return WatchAhead(ns, after_revision, 0);
    if (space == nullptr) space = FindOrCreateLocked(ns);
    const int64_t now_ms = clock_->NowMs();
    ReapLocked(*space, now_ms);
    if (result.revision > space->revision) return WatchAhead(ns, result.revision, space->revision);
    if (result.revision < space->revision) {
      // The history is empty after a Restore (it is not persisted): every
      // revision before the current one is gone.
      const int64_t oldest =
          space->history.empty() ? space->revision + 1 : space->history.front().revision;
      if (result.revision + 1 < oldest) return WatchCompacted(ns, result.revision, oldest);
      for (size_t i = static_cast<size_t>(result.revision + 1 - oldest);
           i < space->history.size() && result.events.size() < options.max_events; ++i) {
        const WatchEvent& event = space->history[i];
        result.revision = event.revision;
        if (absl::string_view(event.key).substr(0, prefix.size()) == prefix) {
          result.events.push_back(event);
        }
      }
      if (!result.events.empty()) return result;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) return result;
    // Wake for the next expiry too, so a watcher of an idle namespace hears it.
    absl::Time wake = deadline;
    if (!space->expiry.empty()) {
      wake = std::min(wake, now + absl::Milliseconds(
                                      std::max<int64_t>(space->expiry.begin()->first - now_ms, 1)));
    }
    space->changed.WaitWithDeadline(&mu_, wake);
  }
}

absl::Status MemoryKv::DeleteNamespace(absl::string_view ns) {
  RETURN_IF_ERROR(ValidateNamespace(ns, limits_));
  absl::MutexLock write(&write_mu_);
  absl::MutexLock lock(&mu_);
  auto it = namespaces_.find(ns);
  if (it == namespaces_.end()) return absl::OkStatus();
  if (persistence_ != nullptr) {
    KvChange change;
    change.ns = std::string(ns);
    change.drop_namespace = true;
    if (absl::Status persisted = PersistUnlocked(*it->second, change); !persisted.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "delete of namespace \"", ns,
          "\" was not persisted, so nothing changed; retry once the manager's store is writable: ",
          persisted.message()));
    }
    // Only writers remove namespaces, and write_mu_ kept them out.
    it = namespaces_.find(ns);
  }
  // Watchers wake, find the namespace gone and report it.
  it->second->changed.SignalAll();
  ChargeLocked(*it->second, -static_cast<int64_t>(it->second->usage.keys),
               -static_cast<int64_t>(it->second->usage.bytes));
  namespaces_.erase(it);
  return absl::OkStatus();
}

size_t MemoryKv::Sweep() {
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  size_t removed = 0;
  for (auto& [name, space] : namespaces_) removed += ReapLocked(*space, now);
  return removed;
}

}  // namespace flotilla::kv
