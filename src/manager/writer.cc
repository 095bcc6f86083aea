#include "manager/writer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/failpoint.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace flotilla::manager {

Writer::Writer(store::Store* store, Options options) : store_(store), options_(options) {}

Writer::~Writer() { Stop(); }

void Writer::Start() {
  absl::MutexLock lock(&mu_);
  if (running_ || stopping_) return;
  running_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Writer::Stop() {
  bool was_running;
  {
    absl::MutexLock lock(&mu_);
    was_running = running_;
    if (was_running) {
      stopping_ = true;
      work_cv_.SignalAll();
    }
  }
  if (was_running && thread_.joinable()) thread_.join();
  {
    absl::MutexLock lock(&mu_);
    running_ = false;
  }
  Drain();  // anything queued after the thread's last look, or never started
}

std::shared_ptr<Writer::Ticket> Writer::Enqueue(WriteBatch batch, Done done, bool awaited) {
  auto ticket = std::make_shared<Ticket>();
  ticket->writer_ = this;
  ticket->batch_ = std::move(batch);
  if (ticket->batch_.empty() && !done) {
    ticket->finished_ = true;  // nothing to write, nothing to run
    ticket->done_ = true;
    return ticket;
  }
  absl::MutexLock lock(&mu_);
  queue_.push_back({ticket, std::move(done)});
  if (!awaited) {
    background_ = true;
    work_cv_.Signal();
  }
  return ticket;
}

std::vector<Writer::Pending> Writer::TakeGroupLocked() {
  std::vector<Pending> group;
  while (!queue_.empty() && group.size() < options_.max_group) {
    group.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  if (queue_.empty()) background_ = false;
  committing_ = !group.empty();
  return group;
}

void Writer::CommitUntilDone(Ticket* t) {
  while (!t->done_.load()) {
    std::vector<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      while (committing_ && !t->done_.load()) committed_cv_.Wait(&mu_);
      if (t->done_.load()) return;
      group = TakeGroupLocked();
    }
    if (group.empty()) continue;  // taken and finished by another committer meanwhile
    CommitTaken(group);
  }
}

void Writer::Drain() {
  // Without a thread, or stopping: commit everything queued, here.
  {
    absl::MutexLock lock(&mu_);
    if (running_ && !stopping_) return;
  }
  while (true) {
    std::vector<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      while (committing_) committed_cv_.Wait(&mu_);
      group = TakeGroupLocked();
    }
    if (group.empty()) return;
    CommitTaken(group);
  }
}

void Writer::CommitTaken(std::vector<Pending>& group) {
  CommitGroup(group);
  absl::MutexLock lock(&mu_);
  committing_ = false;
  committed_cv_.SignalAll();
}

size_t Writer::backlog() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

absl::Status Writer::Ticket::Wait() {
  writer_->CommitUntilDone(this);
  absl::MutexLock lock(&mu_);
  while (!finished_) cv_.Wait(&mu_);
  return status_;
}

Writer::Stats Writer::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void Writer::Loop() {
  while (true) {
    std::vector<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      // Only batches nobody waits for wake this thread; awaited ones are
      // committed by their waiters (but ride along when they are queued).
      while (!stopping_ && (!background_ || committing_)) {
        if (committing_) {
          committed_cv_.Wait(&mu_);
        } else {
          work_cv_.Wait(&mu_);
        }
      }
      if (stopping_) {
        while (committing_) committed_cv_.Wait(&mu_);
        if (queue_.empty()) return;  // stopping, and everything is committed
      }
      group = TakeGroupLocked();
    }
    if (group.empty()) continue;
    CommitTaken(group);
  }
}

absl::Status Writer::Apply(WriteBatch& batch) {
  for (auto& op : batch.ops) {
    absl::Status st = std::visit(
        [&](auto& o) -> absl::Status {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, WriteBatch::InsertExecution>) {
            return store_->InsertExecution(&o.rec);
          } else if constexpr (std::is_same_v<T, WriteBatch::UpdateExecution>) {
            return store_->UpdateExecution(o.rec);
          } else if constexpr (std::is_same_v<T, WriteBatch::PutAttempt>) {
            return store_->PutAttempt(o.attempt);
          } else if constexpr (std::is_same_v<T, WriteBatch::PutResult>) {
            return store_->PutResult(o.id, o.attempt, o.blob, o.summary);
          } else if constexpr (std::is_same_v<T, WriteBatch::UpsertNode>) {
            return store_->UpsertNode(o.node);
          } else if constexpr (std::is_same_v<T, WriteBatch::PutDocument>) {
            return store_->PutDocument(o.doc);
          } else {
            absl::StatusOr<int> n =
                store_->DeleteFinishedExecutions(o.finished_before_ms, o.keep_newest, o.limit);
            if (!n.ok()) return n.status();
            o.deleted = *n;
            return absl::OkStatus();
          }
        },
        op);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

void Writer::CommitGroup(std::vector<Pending>& group) {
  std::vector<absl::Status> statuses(group.size());
  Failpoint("writer.before_commit");
  absl::Status st = store_->Transaction([&]() -> absl::Status {
    for (auto& p : group) RETURN_IF_ERROR(Apply(p.ticket->batch_));
    return absl::OkStatus();
  });
  uint64_t groups = st.ok() ? 1 : 0;
  if (!st.ok() && group.size() > 1) {
    // Find the batches that fail on their own; the others commit.
    for (size_t i = 0; i < group.size(); ++i) {
      statuses[i] = store_->Transaction([&] { return Apply(group[i].ticket->batch_); });
      if (statuses[i].ok()) ++groups;
    }
  } else {
    for (auto& s : statuses) s = st;
  }
  Failpoint("writer.after_commit");
  uint64_t failures = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    if (!statuses[i].ok()) {
      ++failures;
      const std::string& what = group[i].ticket->batch_.what;
      statuses[i] =
          Annotate(statuses[i], what.empty() ? std::string("write") : absl::StrCat("write of ", what));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.batches += group.size();
    stats_.groups += groups;
    stats_.failures += failures;
  }
  for (size_t i = 0; i < group.size(); ++i) {
    Ticket& t = *group[i].ticket;
    if (group[i].done) group[i].done(statuses[i], t.batch_);
    absl::MutexLock lock(&t.mu_);
    t.status_ = statuses[i];
    t.finished_ = true;
    t.done_ = true;
    t.cv_.SignalAll();
  }
}

}  // namespace flotilla::manager
