// PendingQueue: the executions waiting for a node, highest priority first and
// first-come-first-served within a priority.
//
// Pure and single-threaded (thread-compatible): the manager guards it with
// its own mutex. Operations are O(log n).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace flotilla::scheduler {

class PendingQueue {
 public:
  struct Entry {
    std::string id;
    int priority = 0;
    uint64_t seq = 0;  // submission order; smaller is older
  };

  // Adds an entry. Returns false (and changes nothing) if the id is queued.
  bool Push(Entry entry);
  // Removes the id. Returns false if it was not queued.
  bool Remove(const std::string& id);
  bool Contains(const std::string& id) const;
  size_t size() const;
  bool empty() const;

  // Returns up to `limit` entries in dispatch order (priority desc, seq asc).
  std::vector<Entry> Peek(size_t limit) const;

 private:
  struct Order {
    bool operator()(const Entry& a, const Entry& b) const;
  };
  std::set<Entry, Order> ordered_;
  std::unordered_map<std::string, Entry> by_id_;
};

}  // namespace flotilla::scheduler
