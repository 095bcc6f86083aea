#include "kv/store_persistence.h"

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
  return store_->Transaction([&]() -> absl::Status {
    if (change.drop_namespace) {
      ASSIGN_OR_RETURN(std::vector<store::DocumentRecord> docs, store_->ListDocuments(kind));
      for (const store::DocumentRecord& doc : docs) {
        RETURN_IF_ERROR(store_->DeleteDocument(kind, doc.key).status());
      }
      return store_->DeleteDocument(kNamespaceKind, change.ns).status();
    }
    for (const std::string& key : change.deletes) {
      RETURN_IF_ERROR(store_->DeleteDocument(kind, key).status());
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
