// Writer: the manager's single writer to its Store, with group commit.
//
// Every durable change of the manager's state is a WriteBatch — a list of
// Store operations that must commit together — handed to Enqueue(). One
// committer at a time takes every batch waiting at that moment and commits
// them in one Store transaction (group commit: concurrent submits and results
// share one WAL sync), then runs each batch's completion with its own status.
// If the group transaction fails, each batch is retried alone, so one bad
// batch (say, an insert of an id that exists) fails only its own caller.
//
// Who commits (leader/follower, as LevelDB's DBImpl::Write): a caller waiting
// on its ticket whose batch is still queued and who finds no commit in
// progress commits the queue itself, on its own thread — so an uncontended
// acknowledged write costs no hand-off to another thread. Batches nobody
// waits for (Enqueue with awaited = false) wake the writer thread instead.
//
// The contract the manager builds on:
//   - batches commit in the order Write() was called (FIFO);
//   - a completion runs after its batch is durable (OK) or has definitely not
//     been applied (error); it runs on the writer thread with no writer lock
//     held, so it may take the manager's lock and call Write() again;
//   - the manager acknowledges nothing before the completion said OK.
//
// Enqueue() only queues (memory), so it may be called with the manager's
// lock held — which is how the manager keeps writes of one execution in the
// order its state changed. Waiting happens after that lock is released.
// Before Start() (unit tests drive the manager without threads) and after
// Stop(), nothing commits until someone calls Drain() or waits on a ticket,
// which then commits on the calling thread.
//
// Thread-safety: all methods may be called from any thread; Drain() and
// Ticket::Wait() must not be called with the manager's lock held.
#pragma once

#include <cstdint>
#include <deque>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace flotilla::manager {

struct WriteBatch {
  struct InsertExecution {
    store::ExecutionRecord rec;  // rec.seq is set by the commit
  };
  struct UpdateExecution {
    store::ExecutionRecord rec;
  };
  struct PutAttempt {
    store::AttemptRecord attempt;
  };
  struct PutResult {
    std::string id;
    uint32_t attempt = 0;
    std::string blob;
    std::string summary;  // the result without its output (listings)
  };
  struct UpsertNode {
    store::NodeRecord node;
  };
  struct PutDocument {
    store::DocumentRecord doc;
  };
  struct DeleteFinished {
    int64_t finished_before_ms = 0;
    int64_t keep_newest = 0;
    int limit = 0;
    int deleted = 0;  // set by the commit
  };
  using Op = std::variant<InsertExecution, UpdateExecution, PutAttempt, PutResult, UpsertNode,
                          PutDocument, DeleteFinished>;

  std::vector<Op> ops;
  // What the batch is for, in error messages ("submit of ex-1").
  std::string what;

  bool empty() const { return ops.empty(); }
  size_t size() const { return ops.size(); }
};

class Writer {
 public:
  // Runs once the batch is durable (OK) or was not applied (error), before
  // the batch's ticket is signalled. `batch` is the committed batch: inserts
  // carry their seq.
  using Done = std::function<void(const absl::Status& status, WriteBatch& batch)>;

  // The outcome of one batch, to wait for.
  class Ticket {
   public:
    // Blocks until the batch committed or failed (committing it, and what
    // is queued before it, on this thread when no commit is in progress);
    // returns its status.
    absl::Status Wait();
    // The committed batch (valid after Wait()).
    WriteBatch& batch() { return batch_; }

   private:
    friend class Writer;
    Writer* writer_ = nullptr;
    absl::Mutex mu_;
    absl::CondVar cv_;
    bool finished_ = false;
    std::atomic<bool> done_{false};  // finished_, readable without mu_
    absl::Status status_;
    WriteBatch batch_;
  };

  struct Options {
    // At most this many batches share one transaction.
    size_t max_group = 256;
  };

  Writer(store::Store* store, Options options);
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  void Start();
  // Commits what is queued, then stops the thread. Idempotent.
  void Stop();

  // Queues `batch`; `done` (may be empty) runs after the commit. Never blocks
  // and never touches the store. `awaited`: the caller will Wait() on the
  // ticket (and so lead the commit); otherwise the writer thread commits it.
  std::shared_ptr<Ticket> Enqueue(WriteBatch batch, Done done = nullptr, bool awaited = false);
  // Without a writer thread: commits everything queued, on this thread.
  // With one: returns at once.
  void Drain();
  // Batches queued and not yet taken by a commit (admission control reads it).
  size_t backlog() const;

  struct Stats {
    uint64_t batches = 0;
    uint64_t groups = 0;     // transactions that committed
    uint64_t failures = 0;   // batches that failed
  };
  Stats stats() const;

 private:
  struct Pending {
    std::shared_ptr<Ticket> ticket;
    Done done;
  };

  void Loop();
  // Ticket::Wait's part: leads commits until `t` is done.
  void CommitUntilDone(Ticket* t);
  // Commits a group taken by TakeGroupLocked, then ends the commit in
  // progress. Called without mu_.
  void CommitTaken(std::vector<Pending>& group);
  // Takes up to max_group queued batches and marks a commit in progress.
  std::vector<Pending> TakeGroupLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits `group` (one transaction, or one per batch after a failure) and
  // runs the completions. Called without mu_.
  void CommitGroup(std::vector<Pending>& group);
  absl::Status Apply(WriteBatch& batch);

  store::Store* const store_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool committing_ ABSL_GUARDED_BY(mu_) = false;  // one committer at a time
  bool background_ ABSL_GUARDED_BY(mu_) = false;  // a batch nobody waits for is queued
  absl::CondVar committed_cv_;  // a commit ended
  Stats stats_ ABSL_GUARDED_BY(mu_);
  absl::CondVar work_cv_;
  std::thread thread_;
};

}  // namespace flotilla::manager
