// FaultInjectingStore: a Store that forwards to a real one and fails writes
// on demand, as LevelDB's fault-injection Env does for syncs. Tests use it to
// prove that a write that failed is never acknowledged and never lost
// silently.
//
// Arm it with FailWrites(n): the next n write calls (every method that
// changes the database) fail with Unavailable, as a
// full or failing disk would, without reaching the real store. Or FailAll()
// until Heal(). Reads always pass. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "store/store.h"

namespace flotilla::store {

class FaultInjectingStore final : public Store {
 public:
  explicit FaultInjectingStore(std::unique_ptr<Store> real) : real_(std::move(real)) {}

  void FailWrites(int n) { fail_next_ = n; }
  void FailAll() { fail_all_ = true; }
  void Heal() {
    fail_all_ = false;
    fail_next_ = 0;
  }
  // DeleteFinishedExecutions deletes at most n a call from now on (0: no
  // cap), as the etcd store does inside a transaction.
  void CapDeletesPerCall(int n) { delete_cap_ = n; }
  // Writes that were refused so far.
  int failed() const { return failed_; }
  Store* real() { return real_.get(); }

  absl::Status UpsertNode(const NodeRecord& node) override {
    if (auto st = Fault("upsert node " + node.id); !st.ok()) return st;
    return real_->UpsertNode(node);
  }
  absl::StatusOr<std::vector<NodeRecord>> LoadNodes() override { return real_->LoadNodes(); }
  absl::Status InsertExecution(ExecutionRecord* rec) override {
    if (auto st = Fault("insert execution " + rec->id); !st.ok()) return st;
    return real_->InsertExecution(rec);
  }
  absl::Status UpdateExecution(const ExecutionRecord& rec) override {
    if (auto st = Fault("update execution " + rec.id); !st.ok()) return st;
    return real_->UpdateExecution(rec);
  }
  absl::StatusOr<std::optional<ExecutionRecord>> GetExecution(const std::string& id) override {
    return real_->GetExecution(id);
  }
  absl::StatusOr<std::vector<ExecutionRecord>> LoadUnfinished() override {
    return real_->LoadUnfinished();
  }
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ListFilter& filter) override {
    return real_->ListExecutions(filter);
  }
  absl::Status PutAttempt(const AttemptRecord& attempt) override {
    if (auto st = Fault("put attempt " + attempt.execution_id); !st.ok()) return st;
    return real_->PutAttempt(attempt);
  }
  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(const std::string& id) override {
    return real_->ListAttempts(id);
  }
  absl::Status PutResult(const std::string& id, uint32_t attempt, const std::string& result,
                         const std::string& summary) override {
    if (auto st = Fault("put result " + id); !st.ok()) return st;
    return real_->PutResult(id, attempt, result, summary);
  }
  absl::StatusOr<std::optional<std::string>> GetResultSummary(const std::string& id,
                                                              uint32_t attempt) override {
    return real_->GetResultSummary(id, attempt);
  }
  absl::StatusOr<std::optional<std::string>> GetResult(const std::string& id,
                                                       uint32_t attempt) override {
    return real_->GetResult(id, attempt);
  }
  absl::Status PutDocument(const DocumentRecord& doc) override {
    if (auto st = Fault("put document " + doc.key); !st.ok()) return st;
    return real_->PutDocument(doc);
  }
  absl::StatusOr<std::optional<DocumentRecord>> GetDocument(const std::string& kind,
                                                            const std::string& key) override {
    return real_->GetDocument(kind, key);
  }
  absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(const std::string& kind) override {
    return real_->ListDocuments(kind);
  }
  absl::StatusOr<bool> DeleteDocument(const std::string& kind, const std::string& key) override {
    if (auto st = Fault("delete document " + key); !st.ok()) return st;
    return real_->DeleteDocument(kind, key);
  }
  absl::StatusOr<int> DeleteFinishedExecutions(int64_t finished_before_ms, int64_t keep_newest,
                                               int limit) override {
    if (auto st = Fault("delete finished executions"); !st.ok()) return st;
    const int cap = delete_cap_.load();
    if (cap > 0 && (limit < 0 || limit > cap)) limit = cap;
    return real_->DeleteFinishedExecutions(finished_before_ms, keep_newest, limit);
  }
  absl::StatusOr<int> DeleteDocumentsBefore(const std::string& kind, int64_t updated_before_ms,
                                            int limit) override {
    if (auto st = Fault("delete old documents"); !st.ok()) return st;
    return real_->DeleteDocumentsBefore(kind, updated_before_ms, limit);
  }
  absl::Status Transaction(absl::FunctionRef<absl::Status()> body) override {
    // A fresh FunctionRef over a lambda: forwarding `body` itself makes
    // Debian's abseil pick its converting constructor (a ref to a ref).
    return real_->Transaction([&]() { return body(); });
  }

 private:
  absl::Status Fault(const std::string& what) {
    if (fail_all_ || fail_next_.fetch_sub(1) > 0) {
      ++failed_;
      return absl::UnavailableError(absl::StrCat(what, ": injected disk failure"));
    }
    fail_next_ = std::max(0, fail_next_.load());
    return absl::OkStatus();
  }

  std::unique_ptr<Store> real_;
  std::atomic<int> fail_next_{0};
  std::atomic<bool> fail_all_{false};
  std::atomic<int> delete_cap_{0};
  std::atomic<int> failed_{0};
};

}  // namespace flotilla::store
