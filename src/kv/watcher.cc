#include "kv/watcher.h"

#include <utility>

namespace flotilla::kv {

Watcher::Watcher(KvStore* store, std::string ns, std::string prefix, int64_t after_revision,
                 EventFn on_event, ErrorFn on_error, int64_t poll_ms)
    : store_(store),
      ns_(std::move(ns)),
      prefix_(std::move(prefix)),
      on_event_(std::move(on_event)),
      on_error_(std::move(on_error)),
      poll_ms_(poll_ms > 0 ? poll_ms : 200),
      revision_(after_revision) {
  thread_ = std::thread([this] { Run(); });
}

Watcher::~Watcher() { Stop(); }

void Watcher::Stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

void Watcher::Run() {
  WatchOptions options;
  options.timeout_ms = poll_ms_;
  while (!stop_.load(std::memory_order_acquire)) {
    absl::StatusOr<WatchResult> result =
        store_->WaitForChange(ns_, prefix_, revision_.load(std::memory_order_acquire), options);
    if (!result.ok()) {
      if (!stop_.load(std::memory_order_acquire) && on_error_) on_error_(result.status());
      return;
    }
    for (const WatchEvent& event : result->events) {
      if (stop_.load(std::memory_order_acquire)) return;
      on_event_(event);
      revision_.store(event.revision, std::memory_order_release);
    }
    revision_.store(result->revision, std::memory_order_release);
  }
}

}  // namespace flotilla::kv
