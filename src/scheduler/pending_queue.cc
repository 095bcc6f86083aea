#include "scheduler/pending_queue.h"

#include <algorithm>
#include <utility>

namespace flotilla::scheduler {

bool PendingQueue::Order::operator()(const Entry& a, const Entry& b) const {
  if (a.priority != b.priority) return a.priority > b.priority;
  if (a.seq != b.seq) return a.seq < b.seq;
  return a.id < b.id;
}

bool PendingQueue::Push(Entry entry) {
  if (by_id_.contains(entry.id)) return false;
  ordered_.insert(entry);
  std::string id = entry.id;
  by_id_.emplace(std::move(id), std::move(entry));
  return true;
}

bool PendingQueue::Remove(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  ordered_.erase(it->second);
  by_id_.erase(it);
  return true;
}

bool PendingQueue::Contains(const std::string& id) const { return by_id_.contains(id); }

size_t PendingQueue::size() const { return by_id_.size(); }

bool PendingQueue::empty() const { return by_id_.empty(); }

std::vector<PendingQueue::Entry> PendingQueue::Peek(size_t limit) const {
  std::vector<Entry> out;
  out.reserve(std::min(limit, ordered_.size()));
  for (auto it = ordered_.begin(); it != ordered_.end() && out.size() < limit; ++it) {
    out.push_back(*it);
  }
  return out;
}

}  // namespace flotilla::scheduler
