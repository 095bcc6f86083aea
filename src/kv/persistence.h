// KvPersistence: where a MemoryKv keeps its state durable, so that a
// manager restart loses no acknowledged key (memory_kv.h says when it is
// called). The manager's implementation, StoreKvPersistence
// (store_persistence.h), writes through the manager's Store: SQLite by
// default, etcd in HA mode.
//
// The state persisted is what a restart needs and no more: per namespace its
// revision and its live entries (key, value, version, expiry). The event
// history is not kept; a watcher that continues from before a restart is told
// its history was compacted (kv.h, "Watch").
//
// Thread-safety: MemoryKv calls Persist from one thread at a time (it orders
// its writes, see memory_kv.h) and Load once, before it serves; an
// implementation needs no locking of its own beyond what its Store has.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/kv.h"

namespace flotilla::kv {

// One acknowledged change of one namespace, applied atomically.
struct KvChange {
  std::string ns;
  // The namespace was deleted: every entry and its revision go. The other
  // fields are unused.
  bool drop_namespace = false;
  // The namespace's revision after the change.
  int64_t revision = 0;
  // Entries written (whole: value, version and expiry).
  std::vector<KeyEntry> puts;
  // Keys removed (deleted, or found expired on the way).
  std::vector<std::string> deletes;
};

// One namespace as it was last persisted.
struct PersistedNamespace {
  std::string ns;
  int64_t revision = 0;
  std::vector<KeyEntry> entries;
};

class KvPersistence {
 public:
  virtual ~KvPersistence() = default;

  // Makes change durable; returns OK only once it is (a crash afterwards
  // keeps it), or an error when it was not applied at all.
  virtual absl::Status Persist(const KvChange& change) = 0;

  // Returns every persisted namespace, in no particular order.
  virtual absl::StatusOr<std::vector<PersistedNamespace>> Load() = 0;
};

}  // namespace flotilla::kv
