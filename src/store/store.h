// Store: the manager's durable control state (nodes, executions, attempts,
// results; the queue is the executions whose state is "queued", ordered by
// priority and seq).
//
// A write that returned OK is durable against a crash of the manager process
// (SQLite WAL). Implementations are thread-safe: calls may come from any
// thread. Transaction() runs a body whose Store calls commit or roll back
// together; calls inside the body must come from the calling thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model.h"

namespace flotilla::store {

struct NodeRecord {
  std::string id;
  std::string spec;  // serialized flotilla.v1.HypervisorNode
  model::NodeStatus status = model::NodeStatus::kOffline;
  uint64_t epoch = 0;
  int64_t last_heartbeat_ms = 0;
};

struct ExecutionRecord {
  std::string id;
  uint64_t seq = 0;  // assigned by InsertExecution: increasing submission order
  std::string user_id;
  int priority = 0;
  std::string request;  // serialized flotilla.v1.ExecutionRequest
  model::ExecutionState state = model::ExecutionState::kQueued;
  uint32_t attempt = 0;
  std::string node_id;
  std::string placement;  // serialized flotilla.v1.Placement, may be empty
  std::string error;
  bool cancel_requested = false;
  int64_t submitted_ms = 0;
  int64_t assigned_ms = 0;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
};

struct AttemptRecord {
  std::string execution_id;
  uint32_t attempt = 0;
  std::string node_id;
  int64_t assigned_ms = 0;
  int64_t ended_ms = 0;   // 0 while open
  std::string outcome;    // "", "succeeded", "node_lost", "dispatch_failed", ...
};

// A named document: functions ("function") and workflows ("workflow") are
// kept this way, each one serialized body under (kind, key).
struct DocumentRecord {
  std::string kind;
  std::string key;
  std::string body;
  int64_t updated_ms = 0;
};

struct ListFilter {
  std::vector<model::ExecutionState> states;  // empty: every state
  int limit = 100;                            // newest (highest seq) first
  std::string user_id;                        // the tenant; "" for every tenant
};

class Store {
 public:
  virtual ~Store() = default;

  virtual absl::Status UpsertNode(const NodeRecord& node) = 0;
  virtual absl::StatusOr<std::vector<NodeRecord>> LoadNodes() = 0;

  // Inserts a new execution and sets rec->seq. AlreadyExists if the id is taken.
  virtual absl::Status InsertExecution(ExecutionRecord* rec) = 0;
  // Overwrites the row with rec.id (every column but seq). NotFound if absent.
  virtual absl::Status UpdateExecution(const ExecutionRecord& rec) = 0;
  // Returns nullopt if there is no such execution.
  virtual absl::StatusOr<std::optional<ExecutionRecord>> GetExecution(const std::string& id) = 0;
  // Every execution in queued, assigned or running state, in seq order.
  virtual absl::StatusOr<std::vector<ExecutionRecord>> LoadUnfinished() = 0;
  virtual absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ListFilter& filter) = 0;

  // Inserts or replaces the attempt row keyed (execution_id, attempt).
  virtual absl::Status PutAttempt(const AttemptRecord& attempt) = 0;
  virtual absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(const std::string& id) = 0;

  // Stores the result of one attempt (serialized flotilla.v1.ExecutionResult),
  // replacing any earlier one for the same (id, attempt). `summary` is a
  // small form of it for listings (the same message without its output);
  // empty: listings read the whole result.
  virtual absl::Status PutResult(const std::string& id, uint32_t attempt,
                                 const std::string& result, const std::string& summary) = 0;
  // The summary of the given attempt's result (the whole result when none
  // was stored with it); nullopt if there is no result.
  virtual absl::StatusOr<std::optional<std::string>> GetResultSummary(const std::string& id,
                                                                      uint32_t attempt) = 0;
  // The result of the given attempt; nullopt if none.
  virtual absl::StatusOr<std::optional<std::string>> GetResult(const std::string& id,
                                                               uint32_t attempt) = 0;

  // Inserts or replaces the document (kind, key).
  virtual absl::Status PutDocument(const DocumentRecord& doc) = 0;
  // nullopt if there is no such document.
  virtual absl::StatusOr<std::optional<DocumentRecord>> GetDocument(const std::string& kind,
                                                                    const std::string& key) = 0;
  // Every document of `kind`, ordered by key.
  virtual absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(const std::string& kind) = 0;
  // Returns whether a document was there to delete.
  virtual absl::StatusOr<bool> DeleteDocument(const std::string& kind, const std::string& key) = 0;

  // Deletes finished executions (with their attempts and results) that
  // finished before `finished_before_ms`, and those older than the newest
  // `keep_newest` finished ones; at most `limit` in one call. Returns how many
  // were deleted. Unfinished executions are never deleted.
  virtual absl::StatusOr<int> DeleteFinishedExecutions(int64_t finished_before_ms,
                                                       int64_t keep_newest, int limit) = 0;
  // Deletes documents of `kind` last updated before `updated_before_ms`, at
  // most `limit`, oldest first. Returns how many.
  virtual absl::StatusOr<int> DeleteDocumentsBefore(const std::string& kind,
                                                    int64_t updated_before_ms, int limit) = 0;

  // Runs body in one transaction: commits if it returns OK, else rolls back
  // and returns its error. Not reentrant.
  virtual absl::Status Transaction(absl::FunctionRef<absl::Status()> body) = 0;
};

enum class Durability {
  kProcessCrash,  // synchronous=NORMAL: survives a killed process, not power loss
  kPowerLoss,     // synchronous=FULL: fsync at every commit
};

// Opens (creating if needed) the SQLite database at `path` in WAL mode and
// migrates its schema. ":memory:" gives a private in-memory database.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                                       Durability durability);

}  // namespace flotilla::store
