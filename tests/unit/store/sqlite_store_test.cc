// Tests of what only the SQLite Store (src/store/sqlite_store.cc) does:
// files, schema version, WAL, durability across reopen and across a
// SIGKILLed writer. The contract every backend keeps (round-trips, error
// codes, ordering, transactions, concurrency) is store_conformance_test.cc.

#include <signal.h>
#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_dir.h"
#include "model/model.h"
#include "store/store.h"
#include "unit/store/store_test_records.h"

namespace flotilla::store {
namespace {

using ::flotilla::store::testing::Attempt;
using ::flotilla::store::testing::Binary;
using ::flotilla::store::testing::ExpectSameExecution;
using ::flotilla::store::testing::MakeExecution;
using ::flotilla::store::testing::Node;

using model::ExecutionState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using TempDir = ::flotilla::testing::TempDir;

std::unique_ptr<Store> OpenOrDie(const std::string& path,
                                 Durability durability = Durability::kProcessCrash) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenSqliteStore(path, durability);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  return std::move(store).value();
}


TEST(SqliteStoreTest, DocumentsPutGetListDeleteAndSurviveReopen) {
  TempDir dir;
  const std::string path = dir.File("docs.db");
  {
    auto store = OpenOrDie(path);
    ASSERT_TRUE(store->PutDocument({"function", "b", std::string("x\0y", 3), 5}).ok());
    ASSERT_TRUE(store->PutDocument({"function", "a", "1", 6}).ok());
    ASSERT_TRUE(store->PutDocument({"workflow", "a", "w", 7}).ok());
    ASSERT_TRUE(store->PutDocument({"function", "a", "2", 8}).ok());  // replaces
  }
  auto store = OpenOrDie(path);
  auto list = store->ListDocuments("function");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "a");
  EXPECT_EQ((*list)[0].body, "2");
  EXPECT_EQ((*list)[0].updated_ms, 8);
  EXPECT_EQ((*list)[1].body, std::string("x\0y", 3));
  auto one = store->GetDocument("workflow", "a");
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->body, "w");
  auto deleted = store->DeleteDocument("function", "a");
  ASSERT_TRUE(deleted.ok());
  EXPECT_TRUE(*deleted);
  deleted = store->DeleteDocument("function", "a");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  auto missing = store->GetDocument("function", "a");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST(SqliteStoreTest, DurableAcrossReopen) {
  TempDir dir;
  const std::string path = dir.File("flotilla.db");
  ExecutionRecord rec = MakeExecution("ex-durable", ExecutionState::kRunning);
  rec.placement = Binary("placement");
  {
    auto store = OpenOrDie(path, Durability::kPowerLoss);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->InsertExecution(&rec).ok());
    ASSERT_TRUE(store->PutAttempt(Attempt(rec.id, 1, "n")).ok());
    ASSERT_TRUE(store->PutResult(rec.id, 1, Binary("result"), "").ok());
    ASSERT_TRUE(store->UpsertNode(Node("n", Binary("spec"))).ok());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  auto got = store->GetExecution(rec.id);
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameExecution(**got, rec);
  EXPECT_EQ(store->ListAttempts(rec.id)->size(), 1u);
  EXPECT_EQ(**store->GetResult(rec.id, 1), Binary("result"));
  ASSERT_EQ(store->LoadNodes()->size(), 1u);
  EXPECT_EQ(store->LoadNodes()->front().spec, Binary("spec"));

  // seq keeps increasing across reopen (AUTOINCREMENT never reuses).
  ExecutionRecord next = MakeExecution("ex-next");
  ASSERT_TRUE(store->InsertExecution(&next).ok());
  EXPECT_GT(next.seq, rec.seq);
}

TEST(SqliteStoreTest, FileDatabaseUsesWalAndRecordsSchemaVersion) {
  TempDir dir;
  const std::string path = dir.File("wal.db");
  { ASSERT_NE(OpenOrDie(path), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto query = [&](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    std::string out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return out;
  };
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query("PRAGMA user_version"), "3");
  sqlite3_close(db);
}

TEST(SqliteStoreTest, NewerSchemaVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.File("future.db");
  { ASSERT_NE(OpenOrDie(path), nullptr); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=999", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  auto store = OpenSqliteStore(path, Durability::kProcessCrash);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("999"));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
}

TEST(SqliteStoreTest, OpenInMissingDirectoryNamesThePath) {
  TempDir dir;
  const std::string path = dir.File("no/such/dir/flotilla.db");
  auto store = OpenSqliteStore(path, Durability::kProcessCrash);
  ASSERT_FALSE(store.ok());
  std::string message(store.status().message());
  EXPECT_THAT(message, HasSubstr(path));
  EXPECT_THAT(message, HasSubstr("does not exist"));
}

TEST(SqliteStoreTest, OpenNonDatabaseFileFails) {
  TempDir dir;
  const std::string path = dir.File("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(4096, 'x');
  }
  auto store = OpenSqliteStore(path, Durability::kProcessCrash);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(std::string(store.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("not a database"));
}

// A child process inserts executions and acknowledges each commit over a
// pipe; the parent SIGKILLs it mid-stream. Every acknowledged execution must
// be in the database afterwards (synchronous=NORMAL survives process death).
TEST(SqliteStoreTest, AcknowledgedWritesSurviveSigkill) {
  TempDir dir;
  const std::string path = dir.File("crash.db");
  constexpr int kMaxInserts = 100000;  // far more than it gets through
  constexpr int kKillAfter = 200;

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    auto store = OpenSqliteStore(path, Durability::kProcessCrash);
    if (!store.ok()) _exit(2);
    for (int i = 0; i < kMaxInserts; ++i) {
      ExecutionRecord rec = MakeExecution(absl::StrCat("crash-", i));
      if (!(*store)->InsertExecution(&rec).ok()) _exit(3);
      if (i % 2 == 0) {
        rec.state = ExecutionState::kRunning;
        if (!(*store)->UpdateExecution(rec).ok()) _exit(4);
      }
      int32_t ack = i;
      if (write(fds[1], &ack, sizeof(ack)) != sizeof(ack)) _exit(5);
    }
    _exit(0);
  }
  close(fds[1]);

  std::vector<int32_t> acked;
  auto read_ack = [&]() {
    int32_t ack;
    ssize_t n;
    do {
      n = read(fds[0], &ack, sizeof(ack));
    } while (n < 0 && errno == EINTR);
    if (n != sizeof(ack)) return false;
    acked.push_back(ack);
    return true;
  };
  while (static_cast<int>(acked.size()) < kKillAfter && read_ack()) {
  }
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  // Acks already in the pipe were sent after their commits too.
  while (read_ack()) {
  }
  close(fds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exited early with status " << WEXITSTATUS(wstatus);
  ASSERT_GE(acked.size(), static_cast<size_t>(kKillAfter));

  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  for (int32_t i : acked) {
    auto got = store->GetExecution(absl::StrCat("crash-", i));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(got->has_value()) << "acknowledged execution crash-" << i << " lost";
    EXPECT_EQ((*got)->request, Binary(absl::StrCat("request-crash-", i)));
    EXPECT_EQ((*got)->state, i % 2 == 0 ? ExecutionState::kRunning : ExecutionState::kQueued);
  }
  // The database is intact and writable after recovery.
  ExecutionRecord after = MakeExecution("after-crash");
  EXPECT_TRUE(store->InsertExecution(&after).ok());
  auto unfinished = store->LoadUnfinished();
  ASSERT_TRUE(unfinished.ok()) << unfinished.status();
  EXPECT_GE(unfinished->size(), acked.size() + 1);
}

}  // namespace
}  // namespace flotilla::store
