#include "scheduler/pending_queue.h"

#include <algorithm>
#include <cmath>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flotilla::scheduler {

PriorityClass ClassOf(int priority) {
  if (priority < 30) return PriorityClass::kBatch;
  if (priority < 70) return PriorityClass::kNormal;
  return PriorityClass::kUrgent;
}

const char* ToString(PriorityClass c) {
  switch (c) {
    case PriorityClass::kBatch:
      return "batch";
    case PriorityClass::kNormal:
      return "normal";
    case PriorityClass::kUrgent:
      return "urgent";
  }
  return "unknown";
}

absl::Status PendingQueue::Options::Validate() const {
  if (!std::isfinite(aging_points_per_second) || aging_points_per_second < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "aging_points_per_second must be a finite number >= 0, got ", aging_points_per_second));
  }
  return absl::OkStatus();
}

PendingQueue::PendingQueue(Options options) : options_(options) {
  if (!options_.Validate().ok()) options_.aging_points_per_second = 0;
}

bool PendingQueue::FifoOrder::operator()(const Entry& a, const Entry& b) const {
  if (a.enqueued_ms != b.enqueued_ms) return a.enqueued_ms < b.enqueued_ms;
  if (a.seq != b.seq) return a.seq < b.seq;
  return a.id < b.id;
}

bool PendingQueue::Push(Entry entry) {
  if (by_id_.contains(entry.id)) return false;
  buckets_[entry.priority].insert(entry);
  std::string id = entry.id;
  by_id_.emplace(std::move(id), std::move(entry));
  return true;
}

bool PendingQueue::Remove(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  auto bucket = buckets_.find(it->second.priority);
  bucket->second.erase(it->second);
  if (bucket->second.empty()) buckets_.erase(bucket);
  by_id_.erase(it);
  return true;
}

bool PendingQueue::Contains(const std::string& id) const { return by_id_.contains(id); }

size_t PendingQueue::size() const { return by_id_.size(); }

bool PendingQueue::empty() const { return by_id_.empty(); }

std::vector<PendingQueue::Entry> PendingQueue::Peek(size_t limit) const {
  return Merge(limit, /*now_ms=*/0, /*rate=*/0);
}

std::vector<PendingQueue::Entry> PendingQueue::Peek(size_t limit, int64_t now_ms) const {
  return Merge(limit, now_ms, options_.aging_points_per_second);
}

namespace {

double Effective(int priority, int64_t enqueued_ms, int64_t now_ms, double rate) {
  if (priority >= kMaxPriority) return priority;
  const double age_s = static_cast<double>(std::max<int64_t>(0, now_ms - enqueued_ms)) / 1000.0;
  return std::min<double>(kMaxPriority, priority + age_s * rate);
}

}  // namespace

double PendingQueue::EffectivePriority(const Entry& entry, int64_t now_ms) const {
  return Effective(entry.priority, entry.enqueued_ms, now_ms, options_.aging_points_per_second);
}

int64_t PendingQueue::AgeToReachCapMs(int priority) const {
  if (priority >= kMaxPriority) return 0;
  if (options_.aging_points_per_second <= 0) return -1;
  return static_cast<int64_t>(
      std::ceil((kMaxPriority - priority) * 1000.0 / options_.aging_points_per_second));
}

std::vector<PendingQueue::Entry> PendingQueue::PeekIf(
    size_t limit, int64_t now_ms, size_t max_scan,
    const std::function<bool(const Entry&)>& take) const {
  return Merge(limit, now_ms, options_.aging_points_per_second, max_scan, &take);
}

std::vector<PendingQueue::Entry> PendingQueue::Merge(
    size_t limit, int64_t now_ms, double rate, size_t max_scan,
    const std::function<bool(const Entry&)>* take) const {
  struct Head {
    double effective;
    Bucket::const_iterator it;
    Bucket::const_iterator end;
  };
  // std::priority_queue pops the largest, so "less" means "dispatched later".
  auto later = [](const Head& a, const Head& b) {
    if (a.effective != b.effective) return a.effective < b.effective;
    const Entry& x = *a.it;
    const Entry& y = *b.it;
    if (x.enqueued_ms != y.enqueued_ms) return x.enqueued_ms > y.enqueued_ms;
    if (x.seq != y.seq) return x.seq > y.seq;
    return x.id > y.id;
  };
  std::vector<Head> heads;
  heads.reserve(buckets_.size());
  for (const auto& [priority, bucket] : buckets_) {
    auto it = bucket.begin();
    heads.push_back({Effective(priority, it->enqueued_ms, now_ms, rate), it, bucket.end()});
  }
  std::priority_queue<Head, std::vector<Head>, decltype(later)> frontier(later, std::move(heads));

  std::vector<Entry> out;
  out.reserve(std::min(limit, by_id_.size()));
  size_t scanned = 0;
  while (out.size() < limit && scanned < max_scan && !frontier.empty()) {
    Head head = frontier.top();
    frontier.pop();
    ++scanned;
    if (take == nullptr || (*take)(*head.it)) out.push_back(*head.it);
    if (++head.it == head.end) continue;
    head.effective = Effective(head.it->priority, head.it->enqueued_ms, now_ms, rate);
    frontier.push(head);
  }
  return out;
}

}  // namespace flotilla::scheduler
