// SqliteStore: the Store of store.h over one SQLite connection in WAL mode.
//
// Thread-safety: one absl::Mutex (mu_) guards the connection and its cached
// statements; every public method takes it for the duration of the call.
// Transaction() takes it for the whole body and records the calling thread as
// the transaction's owner; Store calls made by the owner from inside the body
// see that they already hold mu_ and do not lock again, so they run inside the
// transaction instead of deadlocking. A call from any other thread waits for
// the transaction to end, which is why the body's Store calls must come from
// the thread that called Transaction(). A nested Transaction() on the owner
// thread is refused (FailedPrecondition) rather than deadlocking.
//
// Durability: WAL with synchronous=NORMAL makes a committed transaction
// survive a killed process (the WAL is written before COMMIT returns, only
// fsync is deferred); synchronous=FULL fsyncs the WAL at every commit, which
// is what power loss needs.
//
// Statements are prepared once at open (SQLITE_PREPARE_PERSISTENT) and reset
// after each use, so no read statement keeps a read transaction open and
// blocks WAL checkpoints.

#include <sqlite3.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "model/model.h"
#include "spdlog/spdlog.h"
#include "store/store.h"

namespace flotilla::store {
namespace {

// ---------------------------------------------------------------------------
// Schema. Migration i (0-based) moves the database from user_version i to
// i + 1; append new migrations, never edit a released one.

constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE nodes (
  id TEXT PRIMARY KEY NOT NULL,
  spec BLOB NOT NULL,
  status TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  last_heartbeat_ms INTEGER NOT NULL
);
CREATE TABLE executions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT UNIQUE NOT NULL,
  user_id TEXT NOT NULL,
  priority INTEGER NOT NULL,
  request BLOB NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  placement BLOB NOT NULL,
  error TEXT NOT NULL,
  cancel_requested INTEGER NOT NULL,
  submitted_ms INTEGER NOT NULL,
  assigned_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL
);
CREATE INDEX executions_by_state ON executions (state);
CREATE TABLE attempts (
  execution_id TEXT NOT NULL
    REFERENCES executions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  assigned_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  PRIMARY KEY (execution_id, attempt)
);
CREATE TABLE results (
  execution_id TEXT NOT NULL
    REFERENCES executions (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
  attempt INTEGER NOT NULL,
  result BLOB NOT NULL,
  PRIMARY KEY (execution_id, attempt)
);
)sql",
    // 2: documents — functions and workflows, one serialized body per key.
    R"sql(
CREATE TABLE documents (
  kind TEXT NOT NULL,
  key TEXT NOT NULL,
  body BLOB NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
);
)sql",
    // 3: a small summary of each result, so that listings do not read whole
    // outputs.
    R"sql(
ALTER TABLE results ADD COLUMN summary BLOB NOT NULL DEFAULT x'';
)sql",
};
constexpr int kSchemaVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

constexpr int kBusyTimeoutMs = 5000;

// The columns ReadExecution expects, in its order.
#define FLOTILLA_EXECUTION_COLUMNS                                                   \
  "seq, id, user_id, priority, request, state, attempt, node_id, placement, error, " \
  "cancel_requested, submitted_ms, assigned_ms, started_ms, finished_ms"

constexpr const char* kUpsertNodeSql =
    "INSERT INTO nodes (id, spec, status, epoch, last_heartbeat_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, status = excluded.status, "
    "epoch = excluded.epoch, last_heartbeat_ms = excluded.last_heartbeat_ms";
constexpr const char* kLoadNodesSql =
    "SELECT id, spec, status, epoch, last_heartbeat_ms FROM nodes ORDER BY id";
// InsertExecution and UpdateExecution share BindExecution's parameter numbering.
constexpr const char* kInsertExecutionSql =
    "INSERT INTO executions (id, user_id, priority, request, state, attempt, node_id, placement, "
    "error, cancel_requested, submitted_ms, assigned_ms, started_ms, finished_ms) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
constexpr const char* kUpdateExecutionSql =
    "UPDATE executions SET user_id = ?2, priority = ?3, request = ?4, state = ?5, attempt = ?6, "
    "node_id = ?7, placement = ?8, error = ?9, cancel_requested = ?10, submitted_ms = ?11, "
    "assigned_ms = ?12, started_ms = ?13, finished_ms = ?14 WHERE id = ?1";
constexpr const char* kGetExecutionSql =
    "SELECT " FLOTILLA_EXECUTION_COLUMNS " FROM executions WHERE id = ?1";
constexpr const char* kLoadUnfinishedSql =
    "SELECT " FLOTILLA_EXECUTION_COLUMNS
    " FROM executions WHERE state IN ('queued', 'assigned', 'running') ORDER BY seq";
constexpr const char* kListAllSql =
    "SELECT " FLOTILLA_EXECUTION_COLUMNS
    " FROM executions WHERE (?2 = '' OR user_id = ?2) ORDER BY seq DESC LIMIT ?1";
// ?2 is a JSON array of state names, so one cached statement serves any filter.
constexpr const char* kListStatesSql =
    "SELECT " FLOTILLA_EXECUTION_COLUMNS
    " FROM executions WHERE state IN (SELECT value FROM json_each(?2)) "
    "AND (?3 = '' OR user_id = ?3) ORDER BY seq DESC LIMIT ?1";
constexpr const char* kPutAttemptSql =
    "INSERT INTO attempts (execution_id, attempt, node_id, assigned_ms, ended_ms, outcome) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (execution_id, attempt) DO UPDATE SET "
    "node_id = excluded.node_id, assigned_ms = excluded.assigned_ms, "
    "ended_ms = excluded.ended_ms, outcome = excluded.outcome";
constexpr const char* kListAttemptsSql =
    "SELECT execution_id, attempt, node_id, assigned_ms, ended_ms, outcome FROM attempts "
    "WHERE execution_id = ?1 ORDER BY attempt";
constexpr const char* kPutResultSql =
    "INSERT INTO results (execution_id, attempt, result, summary) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (execution_id, attempt) DO UPDATE SET result = excluded.result, "
    "summary = excluded.summary";
constexpr const char* kGetResultSummarySql =
    "SELECT CASE WHEN length(summary) > 0 THEN summary ELSE result END FROM results "
    "WHERE execution_id = ?1 AND attempt = ?2";
constexpr const char* kGetResultSql =
    "SELECT result FROM results WHERE execution_id = ?1 AND attempt = ?2";

constexpr const char* kPutDocumentSql =
    "INSERT INTO documents (kind, key, body, updated_ms) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms";
constexpr const char* kGetDocumentSql =
    "SELECT kind, key, body, updated_ms FROM documents WHERE kind = ?1 AND key = ?2";
constexpr const char* kListDocumentsSql =
    "SELECT kind, key, body, updated_ms FROM documents WHERE kind = ?1 ORDER BY key";
constexpr const char* kDeleteFinishedSql =
    "DELETE FROM executions WHERE seq IN (SELECT seq FROM executions "
    "WHERE state IN ('succeeded', 'failed', 'timed_out', 'cancelled') AND (finished_ms < ?1 "
    "OR seq <= COALESCE((SELECT seq FROM executions WHERE state IN ('succeeded', 'failed', "
    "'timed_out', 'cancelled') ORDER BY seq DESC LIMIT 1 OFFSET ?2), -1)) ORDER BY seq LIMIT ?3)";
constexpr const char* kDeleteDocumentsBeforeSql =
    "DELETE FROM documents WHERE rowid IN (SELECT rowid FROM documents WHERE kind = ?1 AND "
    "updated_ms < ?2 ORDER BY updated_ms LIMIT ?3)";
constexpr const char* kDeleteDocumentSql = "DELETE FROM documents WHERE kind = ?1 AND key = ?2";

#undef FLOTILLA_EXECUTION_COLUMNS

// ---------------------------------------------------------------------------
// Errors.

absl::StatusCode CodeForSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_TOOBIG:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_INTERRUPT:
      return absl::StatusCode::kCancelled;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "<context>: <sqlite message>". Must be called before any other call on `db`
// replaces its error message.
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view context) {
  const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeForSqlite(rc), absl::StrCat(context, ": ", message));
}

// ---------------------------------------------------------------------------
// RAII for sqlite3* and sqlite3_stmt*.

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using DbPtr = std::unique_ptr<sqlite3, DbCloser>;

struct StmtFinalizer {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

absl::StatusOr<StmtPtr> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  StmtPtr stmt(raw);
  if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat("prepare `", sql, "`"));
  return stmt;
}

// One use of a cached statement: binds parameters, steps through rows, and
// resets the statement (and clears its bindings) when it goes out of scope.
// The first binding error is kept and reported by the next Step().
class Use {
 public:
  Use(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  // Binds bytes as TEXT or BLOB. std::string::data() is never null, so an
  // empty string binds as an empty value rather than NULL.
  Use& Text(int index, const std::string& value) {
    return Check(sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8));
  }
  Use& Blob(int index, const std::string& value) {
    return Check(sqlite3_bind_blob64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT));
  }
  Use& Int(int index, int64_t value) { return Check(sqlite3_bind_int64(stmt_, index, value)); }

  // Returns true if a row is ready, false once the statement is done, or an
  // error "<context>: <sqlite message>".
  absl::StatusOr<bool> Step(absl::string_view context) {
    if (bind_rc_ != SQLITE_OK) return SqliteError(db_, bind_rc_, context);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, context);
  }
  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view context) {
    absl::StatusOr<bool> row = Step(context);
    if (!row.ok()) return row.status();
    return absl::OkStatus();
  }
  int last_error() const { return sqlite3_extended_errcode(db_); }

  int64_t ColumnInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  // Any column's bytes, NULs included; NULL reads as empty.
  std::string ColumnBytes(int i) const {
    const void* data = sqlite3_column_blob(stmt_, i);
    int size = sqlite3_column_bytes(stmt_, i);
    if (data == nullptr || size <= 0) return std::string();
    return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
  }

 private:
  Use& Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
    return *this;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

absl::Status Exec(sqlite3* db, const char* sql, absl::string_view context) {
  char* message = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string text = message != nullptr ? message : sqlite3_errstr(rc);
  sqlite3_free(message);
  return absl::Status(CodeForSqlite(rc), absl::StrCat(context, ": ", text));
}

// Runs a one-row query (a PRAGMA) and returns its first column as text.
absl::StatusOr<std::string> QueryText(sqlite3* db, const char* sql, absl::string_view context) {
  ASSIGN_OR_RETURN(StmtPtr stmt, Prepare(db, sql));
  Use use(db, stmt.get());
  ASSIGN_OR_RETURN(bool row, use.Step(context));
  if (!row) return absl::InternalError(absl::StrCat(context, ": `", sql, "` returned no row"));
  return use.ColumnBytes(0);
}

// ---------------------------------------------------------------------------
// Row <-> record.

void BindExecution(Use& use, const ExecutionRecord& rec) {
  use.Text(1, rec.id)
      .Text(2, rec.user_id)
      .Int(3, rec.priority)
      .Blob(4, rec.request)
      .Text(5, model::ToString(rec.state))
      .Int(6, rec.attempt)
      .Text(7, rec.node_id)
      .Blob(8, rec.placement)
      .Text(9, rec.error)
      .Int(10, rec.cancel_requested ? 1 : 0)
      .Int(11, rec.submitted_ms)
      .Int(12, rec.assigned_ms)
      .Int(13, rec.started_ms)
      .Int(14, rec.finished_ms);
}

absl::StatusOr<ExecutionRecord> ReadExecution(const Use& row) {
  ExecutionRecord rec;
  rec.seq = static_cast<uint64_t>(row.ColumnInt(0));
  rec.id = row.ColumnBytes(1);
  rec.user_id = row.ColumnBytes(2);
  rec.priority = static_cast<int>(row.ColumnInt(3));
  rec.request = row.ColumnBytes(4);
  std::string state = row.ColumnBytes(5);
  if (!model::ParseExecutionState(state, &rec.state)) {
    return absl::DataLossError(
        absl::StrCat("read execution ", rec.id, ": unknown state '", state, "'"));
  }
  rec.attempt = static_cast<uint32_t>(row.ColumnInt(6));
  rec.node_id = row.ColumnBytes(7);
  rec.placement = row.ColumnBytes(8);
  rec.error = row.ColumnBytes(9);
  rec.cancel_requested = row.ColumnInt(10) != 0;
  rec.submitted_ms = row.ColumnInt(11);
  rec.assigned_ms = row.ColumnInt(12);
  rec.started_ms = row.ColumnInt(13);
  rec.finished_ms = row.ColumnInt(14);
  return rec;
}

absl::StatusOr<std::vector<ExecutionRecord>> ReadExecutions(Use& use, absl::string_view context) {
  std::vector<ExecutionRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, use.Step(context));
    if (!row) return out;
    ASSIGN_OR_RETURN(ExecutionRecord rec, ReadExecution(use));
    out.push_back(std::move(rec));
  }
}

absl::StatusOr<model::NodeStatus> ParseNodeStatus(const std::string& id, const std::string& text) {
  if (text == model::ToString(model::NodeStatus::kOnline)) return model::NodeStatus::kOnline;
  if (text == model::ToString(model::NodeStatus::kOffline)) return model::NodeStatus::kOffline;
  return absl::DataLossError(absl::StrCat("read node ", id, ": unknown status '", text, "'"));
}

// Explains SQLITE_CANTOPEN, whose own message ("unable to open database
// file") does not say why.
std::string CantOpenHint(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  if (!std::filesystem::exists(parent, ec)) {
    return absl::StrCat(" (directory `", parent.string(),
                        "` does not exist; create it or choose another path)");
  }
  if (!std::filesystem::is_directory(parent, ec)) {
    return absl::StrCat(" (`", parent.string(), "` is not a directory)");
  }
  return " (check the path and the permissions of its directory)";
}

// ---------------------------------------------------------------------------

class SqliteStore final : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                                     Durability durability);

  absl::Status UpsertNode(const NodeRecord& node) override;
  absl::StatusOr<std::vector<NodeRecord>> LoadNodes() override;
  absl::Status InsertExecution(ExecutionRecord* rec) override;
  absl::Status UpdateExecution(const ExecutionRecord& rec) override;
  absl::StatusOr<std::optional<ExecutionRecord>> GetExecution(const std::string& id) override;
  absl::StatusOr<std::vector<ExecutionRecord>> LoadUnfinished() override;
  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ListFilter& filter) override;
  absl::Status PutAttempt(const AttemptRecord& attempt) override;
  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(const std::string& id) override;
  absl::Status PutResult(const std::string& id, uint32_t attempt, const std::string& result,
                         const std::string& summary) override;
  absl::StatusOr<std::optional<std::string>> GetResultSummary(const std::string& id,
                                                              uint32_t attempt) override;
  absl::StatusOr<std::optional<std::string>> GetResult(const std::string& id,
                                                       uint32_t attempt) override;
  absl::Status PutDocument(const DocumentRecord& doc) override;
  absl::StatusOr<std::optional<DocumentRecord>> GetDocument(const std::string& kind,
                                                            const std::string& key) override;
  absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(const std::string& kind) override;
  absl::StatusOr<bool> DeleteDocument(const std::string& kind, const std::string& key) override;
  absl::StatusOr<int> DeleteFinishedExecutions(int64_t finished_before_ms, int64_t keep_newest,
                                               int limit) override;
  absl::StatusOr<int> DeleteDocumentsBefore(const std::string& kind, int64_t updated_before_ms,
                                            int limit) override;
  absl::Status Transaction(absl::FunctionRef<absl::Status()> body) override;

 private:
  // Holds mu_ for one Store call: locks it, unless this thread is already
  // inside a Transaction() body and so holds it (see the file comment).
  // That conditional cannot be expressed to -Wthread-safety, hence the
  // suppressions; to the analysis it acquires mu_.
  class ABSL_SCOPED_LOCKABLE Access {
   public:
    explicit Access(SqliteStore* store)
        ABSL_EXCLUSIVE_LOCK_FUNCTION(store->mu_) ABSL_NO_THREAD_SAFETY_ANALYSIS
        : store_(store),
          locked_(store->txn_owner_.load() != std::this_thread::get_id()) {
      if (locked_) store_->mu_.Lock();
    }
    ~Access() ABSL_UNLOCK_FUNCTION() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      if (locked_) store_->mu_.Unlock();
    }
    Access(const Access&) = delete;
    Access& operator=(const Access&) = delete;

   private:
    SqliteStore* store_;
    bool locked_;
  };

  struct Statements {
    StmtPtr upsert_node, load_nodes, insert_execution, update_execution, get_execution,
        load_unfinished, list_all, list_states, put_attempt, list_attempts, put_result, get_result, get_result_summary,
        put_document, get_document, list_documents, delete_document, delete_finished,
        delete_documents_before, begin, commit, rollback;
  };

  SqliteStore(DbPtr db, Statements stmts) : db_(std::move(db)), stmts_(std::move(stmts)) {}

  static absl::Status Configure(sqlite3* db, const std::string& path, Durability durability);
  static absl::Status Migrate(sqlite3* db, const std::string& path);
  static absl::StatusOr<Statements> PrepareAll(sqlite3* db);

  // Rolls back the open transaction, if SQLite has not already done so (it
  // does on some errors, e.g. SQLITE_FULL).
  void RollbackLocked(absl::string_view why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  // The thread running a Transaction() body, or a default id when none is.
  // Written only with mu_ held; read without it, which is safe because only
  // the owner can ever find its own id there.
  std::atomic<std::thread::id> txn_owner_{};
  // Declared before stmts_ so the statements are finalized before the
  // connection closes.
  DbPtr db_ ABSL_GUARDED_BY(mu_);
  Statements stmts_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<Store>> SqliteStore::Open(const std::string& path,
                                                         Durability durability) {
  const std::string context = absl::StrCat("open sqlite store `", path, "`");
  sqlite3* raw = nullptr;
  // NOMUTEX: mu_ serialises every use of the connection already.
  int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db.get(), rc, context);
    if ((rc & 0xff) == SQLITE_CANTOPEN) {
      return absl::Status(status.code(), absl::StrCat(status.message(), CantOpenHint(path)));
    }
    return status;
  }
  sqlite3_extended_result_codes(db.get(), 1);

  RETURN_IF_ERROR(Annotate(Configure(db.get(), path, durability), context));
  RETURN_IF_ERROR(Annotate(Migrate(db.get(), path), context));
  absl::StatusOr<Statements> stmts = PrepareAll(db.get());
  if (!stmts.ok()) return Annotate(stmts.status(), context);
  return std::unique_ptr<Store>(new SqliteStore(std::move(db), std::move(*stmts)));
}

absl::Status SqliteStore::Configure(sqlite3* db, const std::string& path, Durability durability) {
  // The busy timeout comes first so that switching to WAL waits for another
  // connection's lock instead of failing at once.
  int rc = sqlite3_busy_timeout(db, kBusyTimeoutMs);
  if (rc != SQLITE_OK) return SqliteError(db, rc, "set busy_timeout");

  ASSIGN_OR_RETURN(std::string mode,
                   QueryText(db, "PRAGMA journal_mode=WAL", "set journal_mode=WAL"));
  // An in-memory database has no file for a WAL and reports "memory".
  const char* filename = sqlite3_db_filename(db, "main");
  bool in_memory = filename == nullptr || filename[0] == '\0';
  if (mode != "wal" && !(in_memory && mode == "memory")) {
    return absl::FailedPreconditionError(
        absl::StrCat("set journal_mode=WAL: SQLite kept journal_mode '", mode, "' for `", path,
                     "`; WAL needs a local file system with shared-memory support"));
  }

  const char* synchronous = durability == Durability::kPowerLoss ? "PRAGMA synchronous=FULL"
                                                                 : "PRAGMA synchronous=NORMAL";
  RETURN_IF_ERROR(Exec(db, synchronous, "set synchronous"));
  RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys=ON", "set foreign_keys"));
  ASSIGN_OR_RETURN(std::string fk, QueryText(db, "PRAGMA foreign_keys", "read foreign_keys"));
  if (fk != "1") {
    return absl::FailedPreconditionError(
        "set foreign_keys: this SQLite build does not enforce foreign keys");
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Migrate(sqlite3* db, const std::string& path) {
  // IMMEDIATE takes the write lock before reading user_version, so two
  // processes opening a new database cannot both run migration 1.
  RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", "begin schema migration"));
  auto migrate = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::string text, QueryText(db, "PRAGMA user_version", "read schema version"));
    int version = 0;
    if (!absl::SimpleAtoi(text, &version)) {
      return absl::DataLossError(absl::StrCat("read schema version: not a number: '", text, "'"));
    }
    if (version > kSchemaVersion) {
      return absl::FailedPreconditionError(
          absl::StrCat("schema version ", version, " is newer than this build supports (",
                       kSchemaVersion, "); run a newer flotilla or point it at another database"));
    }
    for (int v = version; v < kSchemaVersion; ++v) {
      RETURN_IF_ERROR(Exec(db, kMigrations[v], absl::StrCat("migrate schema to version ", v + 1)));
      std::string set_version = absl::StrCat("PRAGMA user_version=", v + 1);
      RETURN_IF_ERROR(Exec(db, set_version.c_str(), "set schema version"));
      if (version > 0) spdlog::info("store `{}`: migrated schema to version {}", path, v + 1);
    }
    return absl::OkStatus();
  };
  absl::Status status = migrate();
  if (!status.ok()) {
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }
  return Exec(db, "COMMIT", "commit schema migration");
}

absl::StatusOr<SqliteStore::Statements> SqliteStore::PrepareAll(sqlite3* db) {
  Statements s;
  ASSIGN_OR_RETURN(s.upsert_node, Prepare(db, kUpsertNodeSql));
  ASSIGN_OR_RETURN(s.load_nodes, Prepare(db, kLoadNodesSql));
  ASSIGN_OR_RETURN(s.insert_execution, Prepare(db, kInsertExecutionSql));
  ASSIGN_OR_RETURN(s.update_execution, Prepare(db, kUpdateExecutionSql));
  ASSIGN_OR_RETURN(s.get_execution, Prepare(db, kGetExecutionSql));
  ASSIGN_OR_RETURN(s.load_unfinished, Prepare(db, kLoadUnfinishedSql));
  ASSIGN_OR_RETURN(s.list_all, Prepare(db, kListAllSql));
  ASSIGN_OR_RETURN(s.list_states, Prepare(db, kListStatesSql));
  ASSIGN_OR_RETURN(s.put_attempt, Prepare(db, kPutAttemptSql));
  ASSIGN_OR_RETURN(s.list_attempts, Prepare(db, kListAttemptsSql));
  ASSIGN_OR_RETURN(s.put_result, Prepare(db, kPutResultSql));
  ASSIGN_OR_RETURN(s.get_result, Prepare(db, kGetResultSql));
  ASSIGN_OR_RETURN(s.get_result_summary, Prepare(db, kGetResultSummarySql));
  ASSIGN_OR_RETURN(s.put_document, Prepare(db, kPutDocumentSql));
  ASSIGN_OR_RETURN(s.get_document, Prepare(db, kGetDocumentSql));
  ASSIGN_OR_RETURN(s.list_documents, Prepare(db, kListDocumentsSql));
  ASSIGN_OR_RETURN(s.delete_document, Prepare(db, kDeleteDocumentSql));
  ASSIGN_OR_RETURN(s.delete_finished, Prepare(db, kDeleteFinishedSql));
  ASSIGN_OR_RETURN(s.delete_documents_before, Prepare(db, kDeleteDocumentsBeforeSql));
  // IMMEDIATE: take the write lock at BEGIN, so a transaction never fails
  // half-way with SQLITE_BUSY when upgrading from a read lock.
  ASSIGN_OR_RETURN(s.begin, Prepare(db, "BEGIN IMMEDIATE"));
  ASSIGN_OR_RETURN(s.commit, Prepare(db, "COMMIT"));
  ASSIGN_OR_RETURN(s.rollback, Prepare(db, "ROLLBACK"));
  return s;
}

absl::Status SqliteStore::UpsertNode(const NodeRecord& node) {
  Access access(this);
  Use use(db_.get(), stmts_.upsert_node.get());
  use.Text(1, node.id)
      .Blob(2, node.spec)
      .Text(3, model::ToString(node.status))
      .Int(4, static_cast<int64_t>(node.epoch))
      .Int(5, node.last_heartbeat_ms);
  return use.Run(absl::StrCat("upsert node ", node.id));
}

absl::StatusOr<std::vector<NodeRecord>> SqliteStore::LoadNodes() {
  Access access(this);
  Use use(db_.get(), stmts_.load_nodes.get());
  std::vector<NodeRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, use.Step("load nodes"));
    if (!row) return out;
    NodeRecord node;
    node.id = use.ColumnBytes(0);
    node.spec = use.ColumnBytes(1);
    ASSIGN_OR_RETURN(node.status, ParseNodeStatus(node.id, use.ColumnBytes(2)));
    node.epoch = static_cast<uint64_t>(use.ColumnInt(3));
    node.last_heartbeat_ms = use.ColumnInt(4);
    out.push_back(std::move(node));
  }
}

absl::Status SqliteStore::InsertExecution(ExecutionRecord* rec) {
  Access access(this);
  Use use(db_.get(), stmts_.insert_execution.get());
  BindExecution(use, *rec);
  const std::string context = absl::StrCat("insert execution ", rec->id);
  absl::Status status = use.Run(context);
  if (!status.ok()) {
    if (use.last_error() == SQLITE_CONSTRAINT_UNIQUE) {
      return absl::AlreadyExistsError(
          absl::StrCat(context, ": an execution with id ", rec->id, " already exists"));
    }
    return status;
  }
  rec->seq = static_cast<uint64_t>(sqlite3_last_insert_rowid(db_.get()));
  return absl::OkStatus();
}

absl::Status SqliteStore::UpdateExecution(const ExecutionRecord& rec) {
  Access access(this);
  Use use(db_.get(), stmts_.update_execution.get());
  BindExecution(use, rec);
  const std::string context = absl::StrCat("update execution ", rec.id);
  RETURN_IF_ERROR(use.Run(context));
  if (sqlite3_changes(db_.get()) == 0) {
    return absl::NotFoundError(absl::StrCat(context, ": no such execution"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ExecutionRecord>> SqliteStore::GetExecution(const std::string& id) {
  Access access(this);
  Use use(db_.get(), stmts_.get_execution.get());
  use.Text(1, id);
  ASSIGN_OR_RETURN(bool row, use.Step(absl::StrCat("get execution ", id)));
  if (!row) return std::optional<ExecutionRecord>();
  ASSIGN_OR_RETURN(ExecutionRecord rec, ReadExecution(use));
  return std::optional<ExecutionRecord>(std::move(rec));
}

absl::StatusOr<std::vector<ExecutionRecord>> SqliteStore::LoadUnfinished() {
  Access access(this);
  Use use(db_.get(), stmts_.load_unfinished.get());
  return ReadExecutions(use, "load unfinished executions");
}

absl::StatusOr<std::vector<ExecutionRecord>> SqliteStore::ListExecutions(const ListFilter& filter) {
  const int64_t limit = filter.limit > 0 ? filter.limit : 100;
  Access access(this);
  if (filter.states.empty()) {
    Use use(db_.get(), stmts_.list_all.get());
    use.Int(1, limit).Text(2, filter.user_id);
    return ReadExecutions(use, "list executions");
  }
  // State names are plain identifiers, so they need no JSON escaping.
  std::string states = "[";
  for (size_t i = 0; i < filter.states.size(); ++i) {
    absl::StrAppend(&states, i == 0 ? "" : ",", "\"", model::ToString(filter.states[i]), "\"");
  }
  states += "]";
  Use use(db_.get(), stmts_.list_states.get());
  use.Int(1, limit).Text(2, states).Text(3, filter.user_id);
  return ReadExecutions(use, absl::StrCat("list executions in states ", states));
}

absl::Status SqliteStore::PutAttempt(const AttemptRecord& attempt) {
  Access access(this);
  Use use(db_.get(), stmts_.put_attempt.get());
  use.Text(1, attempt.execution_id)
      .Int(2, attempt.attempt)
      .Text(3, attempt.node_id)
      .Int(4, attempt.assigned_ms)
      .Int(5, attempt.ended_ms)
      .Text(6, attempt.outcome);
  return use.Run(absl::StrCat("put attempt ", attempt.execution_id, "/", attempt.attempt));
}

absl::StatusOr<std::vector<AttemptRecord>> SqliteStore::ListAttempts(const std::string& id) {
  Access access(this);
  Use use(db_.get(), stmts_.list_attempts.get());
  use.Text(1, id);
  const std::string context = absl::StrCat("list attempts of ", id);
  std::vector<AttemptRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, use.Step(context));
    if (!row) return out;
    AttemptRecord a;
    a.execution_id = use.ColumnBytes(0);
    a.attempt = static_cast<uint32_t>(use.ColumnInt(1));
    a.node_id = use.ColumnBytes(2);
    a.assigned_ms = use.ColumnInt(3);
    a.ended_ms = use.ColumnInt(4);
    a.outcome = use.ColumnBytes(5);
    out.push_back(std::move(a));
  }
}

absl::Status SqliteStore::PutResult(const std::string& id, uint32_t attempt,
                                    const std::string& result, const std::string& summary) {
  Access access(this);
  Use use(db_.get(), stmts_.put_result.get());
  use.Text(1, id).Int(2, attempt).Blob(3, result).Blob(4, summary);
  return use.Run(absl::StrCat("put result ", id, "/", attempt));
}

absl::StatusOr<std::optional<std::string>> SqliteStore::GetResultSummary(const std::string& id,
                                                                         uint32_t attempt) {
  Access access(this);
  Use use(db_.get(), stmts_.get_result_summary.get());
  use.Text(1, id).Int(2, attempt);
  ASSIGN_OR_RETURN(bool row, use.Step(absl::StrCat("get result summary ", id, "/", attempt)));
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(use.ColumnBytes(0));
}

absl::StatusOr<std::optional<std::string>> SqliteStore::GetResult(const std::string& id,
                                                                  uint32_t attempt) {
  Access access(this);
  Use use(db_.get(), stmts_.get_result.get());
  use.Text(1, id).Int(2, attempt);
  ASSIGN_OR_RETURN(bool row, use.Step(absl::StrCat("get result ", id, "/", attempt)));
  if (!row) return std::optional<std::string>();
  return std::optional<std::string>(use.ColumnBytes(0));
}

absl::Status SqliteStore::PutDocument(const DocumentRecord& doc) {
  Access access(this);
  Use use(db_.get(), stmts_.put_document.get());
  use.Text(1, doc.kind).Text(2, doc.key).Blob(3, doc.body).Int(4, doc.updated_ms);
  return use.Run(absl::StrCat("put ", doc.kind, " ", doc.key));
}

absl::StatusOr<std::optional<DocumentRecord>> SqliteStore::GetDocument(const std::string& kind,
                                                                       const std::string& key) {
  Access access(this);
  Use use(db_.get(), stmts_.get_document.get());
  use.Text(1, kind).Text(2, key);
  ASSIGN_OR_RETURN(bool row, use.Step(absl::StrCat("get ", kind, " ", key)));
  if (!row) return std::optional<DocumentRecord>();
  return std::optional<DocumentRecord>(DocumentRecord{use.ColumnBytes(0), use.ColumnBytes(1),
                                                      use.ColumnBytes(2), use.ColumnInt(3)});
}

absl::StatusOr<std::vector<DocumentRecord>> SqliteStore::ListDocuments(const std::string& kind) {
  Access access(this);
  Use use(db_.get(), stmts_.list_documents.get());
  use.Text(1, kind);
  std::vector<DocumentRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, use.Step(absl::StrCat("list ", kind)));
    if (!row) return out;
    out.push_back(DocumentRecord{use.ColumnBytes(0), use.ColumnBytes(1), use.ColumnBytes(2),
                                 use.ColumnInt(3)});
  }
}

absl::StatusOr<bool> SqliteStore::DeleteDocument(const std::string& kind, const std::string& key) {
  Access access(this);
  Use use(db_.get(), stmts_.delete_document.get());
  use.Text(1, kind).Text(2, key);
  RETURN_IF_ERROR(use.Run(absl::StrCat("delete ", kind, " ", key)));
  return sqlite3_changes(db_.get()) > 0;
}

absl::StatusOr<int> SqliteStore::DeleteFinishedExecutions(int64_t finished_before_ms,
                                                          int64_t keep_newest, int limit) {
  Access access(this);
  Use use(db_.get(), stmts_.delete_finished.get());
  use.Int(1, finished_before_ms).Int(2, std::max<int64_t>(0, keep_newest)).Int(3, limit);
  RETURN_IF_ERROR(use.Run("delete finished executions"));
  return sqlite3_changes(db_.get());
}

absl::StatusOr<int> SqliteStore::DeleteDocumentsBefore(const std::string& kind,
                                                       int64_t updated_before_ms, int limit) {
  Access access(this);
  Use use(db_.get(), stmts_.delete_documents_before.get());
  use.Text(1, kind).Int(2, updated_before_ms).Int(3, limit);
  RETURN_IF_ERROR(use.Run(absl::StrCat("delete old ", kind, " documents")));
  return sqlite3_changes(db_.get());
}

absl::Status SqliteStore::Transaction(absl::FunctionRef<absl::Status()> body) {
  if (txn_owner_.load() == std::this_thread::get_id()) {
    return absl::FailedPreconditionError(
        "begin transaction: already inside a transaction on this thread; Transaction() is not "
        "reentrant, call the Store directly from the body");
  }
  absl::MutexLock lock(&mu_);
  {
    Use begin(db_.get(), stmts_.begin.get());
    RETURN_IF_ERROR(begin.Run("begin transaction"));
  }

  txn_owner_.store(std::this_thread::get_id());
  absl::Status status = body();
  txn_owner_.store(std::thread::id());

  if (!status.ok()) {
    RollbackLocked(status.message());
    return status;
  }
  absl::Status commit;
  {
    Use use(db_.get(), stmts_.commit.get());
    commit = use.Run("commit transaction");
  }
  if (!commit.ok()) RollbackLocked(commit.message());
  return commit;
}

void SqliteStore::RollbackLocked(absl::string_view why) {
  if (sqlite3_get_autocommit(db_.get())) return;  // SQLite rolled back already
  Use use(db_.get(), stmts_.rollback.get());
  absl::Status status = use.Run("roll back transaction");
  if (!status.ok()) {
    // Nothing better to do: the caller gets the error that caused the
    // rollback, which matters more than this one.
    spdlog::error("store: {} (rolling back after: {})", std::string(status.message()),
                  std::string(why));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path,
                                                       Durability durability) {
  return SqliteStore::Open(path, durability);
}

}  // namespace flotilla::store
