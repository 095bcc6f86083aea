// PendingQueue: the executions waiting for a node, in dispatch order.
//
// Order. Every entry has a base priority (0..100, higher first) and the time
// it was queued. Its effective priority at time `now` is
//
//   effective = min(100, priority + age_seconds * aging_points_per_second)
//
// (an entry whose base priority is already above 100 keeps it). Peek(limit,
// now_ms) returns entries by effective priority descending, then oldest
// enqueued_ms first, then smallest seq, then id. Because ageing stops at 100
// and ties at 100 go to the older entry, nothing starves: an entry of
// priority p sits at the cap after AgeToReachCapMs(p), and from then on only
// entries queued before it (a finite set) can be dispatched ahead of it,
// however much newer work of any priority keeps arriving.
//
// Within one priority the order is FIFO: enqueued_ms, then seq. Ageing never
// reorders two entries of the same priority, since the older one has aged at
// least as much.
//
// Peek(limit) without a time is the strict priority order (no ageing):
// priority descending, then enqueued_ms, seq, id, as before ageing existed.
//
// Priority classes name the bands users pick from: batch 0..29, normal
// 30..69, urgent 70..100 (ClassOf). They are labels for the API, metrics and
// preemption policy; the queue orders by the number, not the class.
//
// Cost: entries sit in one FIFO bucket per distinct priority (at most 101 for
// valid priorities). Only the head of a bucket can be the next entry overall,
// so Peek is a k-way merge over the bucket heads: O(b + limit·log b) for b
// non-empty buckets, independent of the queue's length. Push and Remove are
// O(log n).
//
// Pure and single-threaded (thread-compatible): no clock reads, time is
// passed in. The manager guards it with its own mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"

namespace flotilla::scheduler {

inline constexpr int kMinPriority = 0;
inline constexpr int kMaxPriority = 100;

// The named bands of the 0..100 priority scale.
enum class PriorityClass {
  kBatch,   // 0..29: throughput work that may wait and may be preempted
  kNormal,  // 30..69: the default for interactive submissions
  kUrgent,  // 70..100: latency-critical; may preempt batch work (gap >= 10)
};

// Returns the class of `priority`; values below 0 count as batch and values
// above 100 as urgent.
PriorityClass ClassOf(int priority);
// "batch", "normal", "urgent".
const char* ToString(PriorityClass c);

class PendingQueue {
 public:
  struct Entry {
    std::string id;
    int priority = 0;
    uint64_t seq = 0;         // submission order; smaller is older
    int64_t enqueued_ms = 0;  // when it (first) joined the queue; the start of its age
  };

  struct Options {
    // Effective-priority points gained per second of waiting. The default,
    // one point per 10 s, lifts a priority-0 entry to the cap in 1000 s
    // (under 17 minutes) and a batch entry past the whole batch band in at
    // most 5 minutes, while an urgent entry submitted now still overtakes
    // anything that has waited less than (its priority gap) * 10 s.
    // 0 disables ageing (strict priorities; low priorities can starve).
    double aging_points_per_second = 0.1;

    // Returns InvalidArgument naming the field if the rate is negative or
    // not finite.
    absl::Status Validate() const;
  };

  PendingQueue() = default;
  // Requires options.Validate().ok(); an invalid rate is treated as 0.
  explicit PendingQueue(Options options);

  // Adds an entry. Returns false (and changes nothing) if the id is queued.
  // A preempted or retried execution should be pushed with its original seq
  // and enqueued_ms so it keeps its place and the age it has earned.
  bool Push(Entry entry);
  // Removes the id. Returns false if it was not queued.
  bool Remove(const std::string& id);
  bool Contains(const std::string& id) const;
  size_t size() const;
  bool empty() const;

  // Returns up to `limit` entries in strict priority order (no ageing).
  std::vector<Entry> Peek(size_t limit) const;
  // Returns up to `limit` entries in dispatch order at `now_ms`, with ageing
  // (see the top of this file). Entries whose enqueued_ms is after `now_ms`
  // have age 0.
  std::vector<Entry> Peek(size_t limit, int64_t now_ms) const;
  // The same order, keeping only the entries `take` accepts, and looking at
  // no more than `max_scan` entries in all. The manager passes over the
  // entries of a tenant at its CPU or memory quota this way, so that the
  // tenant's backlog does not hold up other tenants' work behind it (up to
  // `max_scan` deep).
  std::vector<Entry> PeekIf(size_t limit, int64_t now_ms, size_t max_scan,
                            const std::function<bool(const Entry&)>& take) const;

  // Returns the entry's effective priority at `now_ms` under this queue's rate.
  double EffectivePriority(const Entry& entry, int64_t now_ms) const;
  // Returns how long an entry of `priority` waits before its effective
  // priority reaches the cap of 100: 0 when priority >= 100, and -1 (never)
  // when ageing is off.
  int64_t AgeToReachCapMs(int priority) const;

  const Options& options() const { return options_; }

 private:
  // Bucket order: FIFO by enqueued_ms, then seq, then id. It agrees with the
  // global order inside one priority, which is what makes the merge exact.
  struct FifoOrder {
    bool operator()(const Entry& a, const Entry& b) const;
  };
  using Bucket = std::set<Entry, FifoOrder>;

  std::vector<Entry> Merge(size_t limit, int64_t now_ms, double rate, size_t max_scan = SIZE_MAX,
                           const std::function<bool(const Entry&)>* take = nullptr) const;

  Options options_;
  std::map<int, Bucket> buckets_;  // by priority; never holds an empty bucket
  std::unordered_map<std::string, Entry> by_id_;
};

}  // namespace flotilla::scheduler
