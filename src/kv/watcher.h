// Watcher: the callback form of a watch. It runs KvStore::WaitForChange in
// a thread of its own and calls on_event for every change under a prefix of
// a namespace, in revision order, each exactly once. It works unchanged on
// every KvStore, since it uses only the interface.
//
// If the watch fails (the history was compacted, the namespace was deleted,
// the store is unreachable), on_error is called once with the status and the
// Watcher stops; the usual recovery is List, then a new Watcher from the
// revision List returned.
//
// Callbacks run on the Watcher's thread, one at a time; they must not
// destroy the Watcher. Stop() (and the destructor) return once the thread
// has ended, within about poll_ms, and no callback runs after that.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "kv/kv.h"

namespace flotilla::kv {

class Watcher {
 public:
  using EventFn = std::function<void(const WatchEvent&)>;
  using ErrorFn = std::function<void(const absl::Status&)>;

  // store must outlive the Watcher. poll_ms bounds how long Stop() waits.
  Watcher(KvStore* store, std::string ns, std::string prefix, int64_t after_revision,
          EventFn on_event, ErrorFn on_error, int64_t poll_ms = 200);
  ~Watcher();

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void Stop();

  // The revision up to which events have been delivered.
  int64_t revision() const { return revision_.load(std::memory_order_acquire); }

 private:
  void Run();

  KvStore* const store_;
  const std::string ns_;
  const std::string prefix_;
  const EventFn on_event_;
  const ErrorFn on_error_;
  const int64_t poll_ms_;
  std::atomic<int64_t> revision_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace flotilla::kv
