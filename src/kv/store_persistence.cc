#include "kv/store_persistence.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace flotilla::kv {
namespace {

std::string EncodeEntry(const Entry& entry) {
  return absl::StrCat(entry.version, " ", entry.expires_at_ms, "\n", entry.value);
}

absl::StatusOr<Entry> DecodeEntry(const std::string& ns, const std::string& key,
                                  const std::string& body) {
  const size_t newline = body.find('\n');
  const size_t space = body.find(' ');
  Entry entry;
  if (newline == std::string::npos || space == std::string::npos || space > newline ||
      !absl::SimpleAtoi(absl::string_view(body).substr(0, space), &entry.version) ||
      !absl::SimpleAtoi(absl::string_view(body).substr(space + 1, newline - space - 1),
                        &entry.expires_at_ms)) {
    return absl::DataLossError(
        absl::StrCat("kv entry \"", key, "\" of namespace \"", ns,
                     "\" in the store is not \"<version> <expiry>\\n<value>\""));
  }
  entry.value = body.substr(newline + 1);
  return entry;
}

}  // namespace

absl::Status StoreKvPersistence::Persist(const KvChange& change) {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const std::string kind = EntryKind(change.ns);
  // A change that deletes more keys than one transaction of the etcd Store
  // may hold (etcd's --max-txn-ops) comes from reaping: every delete but the
  // last is a key found expired (MemoryKv puts the one key a caller deleted
  // last). Those go first, in transactions of their own: an expired key is
  // gone whether or not its record is (restore drops expired records), so a
  // failure half-way loses nothing that was live. The rest of the change
  // stays one transaction.
  size_t first_kept = 0;
  if (!change.drop_namespace && change.deletes.size() > kMaxDeletesPerTransaction) {
    first_kept = change.deletes.size() - kMaxDeletesPerTransaction;
    for (size_t from = 0; from < first_kept; from += kMaxDeletesPerTransaction) {
      const size_t to = std::min(first_kept, from + kMaxDeletesPerTransaction);
      RETURN_IF_ERROR(store_->Transaction([&]() -> absl::Status {
        for (size_t i = from; i < to; ++i) {
          RETURN_IF_ERROR(store_->DeleteDocument(kind, change.deletes[i]).status());
        }
        return absl::OkStatus();
      }));
    }
  }
  return store_->Transaction([&]() -> absl::Status {
    if (change.drop_namespace) {
      // One transaction whatever the namespace's size: the etcd Store
      // deletes a kind it empties with one range delete.
      ASSIGN_OR_RETURN(std::vector<store::DocumentRecord> docs, store_->ListDocuments(kind));
      for (const store::DocumentRecord& doc : docs) {
        RETURN_IF_ERROR(store_->DeleteDocument(kind, doc.key).status());
      }
      return store_->DeleteDocument(kNamespaceKind, change.ns).status();
    }
    for (size_t i = first_kept; i < change.deletes.size(); ++i) {
      RETURN_IF_ERROR(store_->DeleteDocument(kind, change.deletes[i]).status());
    }
    for (const KeyEntry& put : change.puts) {
      RETURN_IF_ERROR(store_->PutDocument(
          store::DocumentRecord{kind, put.key, EncodeEntry(put.entry), now_ms}));
    }
    return store_->PutDocument(
        store::DocumentRecord{kNamespaceKind, change.ns, absl::StrCat(change.revision), now_ms});
  });
}

absl::StatusOr<std::vector<PersistedNamespace>> StoreKvPersistence::Load() {
  ASSIGN_OR_RETURN(std::vector<store::DocumentRecord> spaces,
                   store_->ListDocuments(kNamespaceKind));
  std::vector<PersistedNamespace> out;
  out.reserve(spaces.size());
  for (const store::DocumentRecord& doc : spaces) {
    PersistedNamespace space;
    space.ns = doc.key;
    if (!absl::SimpleAtoi(doc.body, &space.revision) || space.revision < 0) {
      return absl::DataLossError(absl::StrCat("kv namespace \"", doc.key,
                                              "\" in the store has revision \"", doc.body,
                                              "\", not a count"));
    }
    ASSIGN_OR_RETURN(std::vector<store::DocumentRecord> entries,
                     store_->ListDocuments(EntryKind(space.ns)));
    space.entries.reserve(entries.size());
    for (store::DocumentRecord& e : entries) {
      ASSIGN_OR_RETURN(Entry entry, DecodeEntry(space.ns, e.key, e.body));
      space.entries.push_back(KeyEntry{std::move(e.key), std::move(entry)});
    }
    out.push_back(std::move(space));
  }
  return out;
}

}  // namespace flotilla::kv
