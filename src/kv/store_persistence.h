// StoreKvPersistence: KvPersistence over the manager's Store, so the embedded
// key-value store is durable wherever the manager's state is (SQLite WAL by
// default, etcd for HA replicas) and a new leader restores what the old one
// acknowledged.
//
// Layout, as Store documents (one record per key, written through; no journal
// to compact):
//   kind "kv-ns",     key <namespace>  body: the namespace's revision (decimal)
//   kind "kv:<namespace>", key <key>   body: "<version> <expires_at_ms>\n<value>"
// A namespace's kind holds only its own keys, so Load and DeleteNamespace read
// one namespace at a time through the Store's (kind, key) index. Namespace
// names are printable ASCII without spaces (kv.h), keys any bytes but NUL; the
// body carries the value as raw bytes after the first newline.
//
// Each KvChange is one Store transaction: the entries and the namespace's
// revision commit together or not at all. Two cases keep within the etcd
// Store's bound on one transaction (etcd's --max-txn-ops): a dropped
// namespace of any size is still one transaction (the etcd Store turns
// "every key of a kind deleted" into one range delete); a change deleting
// more than kMaxDeletesPerTransaction keys (reaped expired keys) deletes all
// but the last kMaxDeletesPerTransaction of them in earlier transactions of
// their own, which is safe because they had expired (store_persistence.cc).
//
// Thread-safety: as the Store; the store must outlive this object.
#pragma once

#include <string>
#include <vector>

#include "kv/persistence.h"
#include "store/store.h"

namespace flotilla::kv {

class StoreKvPersistence final : public KvPersistence {
 public:
  explicit StoreKvPersistence(store::Store* store) : store_(store) {}

  absl::Status Persist(const KvChange& change) override;
  absl::StatusOr<std::vector<PersistedNamespace>> Load() override;

  // The document kinds (exposed for tests that look at the Store directly).
  static constexpr const char* kNamespaceKind = "kv-ns";
  static std::string EntryKind(const std::string& ns) { return "kv:" + ns; }
  // Under the etcd Store's 124 writes a transaction, with room for the puts
  // and the namespace's revision.
  static constexpr size_t kMaxDeletesPerTransaction = 100;

 private:
  store::Store* const store_;
};

}  // namespace flotilla::kv
