// The manager's watch streams: Subscribe, Unsubscribe and the blocking Watch
// adapter (the streams themselves live in WatchHub).
#include <deque>

#include "common/logging.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/failpoint.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "manager/internal/live.h"
#include "manager/manager.h"
#include "wire/convert.h"

namespace flotilla::manager {

using model::ExecutionState;

namespace {

v1::WatchEvent FinalEvent(const v1::Execution& e) {
  v1::WatchEvent ev;
  ev.set_state(e.state());
  ev.set_attempt(e.attempt());
  ev.set_node_id(e.node_id());
  *ev.mutable_execution() = e;
  return ev;
}

// The blocking adapter behind Manager::Watch: a queue the calling thread
// drains.
class BlockingSink final : public WatchSink {
 public:
  void Push(std::vector<v1::WatchEvent> events, std::optional<absl::Status> end) override {
    absl::MutexLock lock(&mu_);
    for (auto& e : events) queue_.push_back(std::move(e));
    if (end) end_ = std::move(end);
    cv_.Signal();
  }
  // Waits up to `timeout` for events; moves them to `out`. Returns the end
  // status once the stream is over and drained.
  std::optional<absl::Status> Take(absl::Duration timeout, std::vector<v1::WatchEvent>* out) {
    absl::MutexLock lock(&mu_);
    if (queue_.empty() && !end_) cv_.WaitWithTimeout(&mu_, timeout);
    out->assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
    queue_.clear();
    return end_;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<v1::WatchEvent> queue_;
  std::optional<absl::Status> end_;
};

}  // namespace

absl::Status Manager::Subscribe(const std::string& id, bool with_output, WatchSink* sink) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::UnavailableError("the manager is shutting down; watch again");
    if (auto it = live_.find(id); it != live_.end() && !it->second->inserting) {
      Live& live = *it->second;
      WatchView view;
      view.id = id;
      view.state = wire::ToProto(live.rec.state);
      view.attempt = live.rec.attempt;
      view.node_id = live.rec.node_id;
      view.output[0] = &live.output[0];
      view.output[1] = &live.output[1];
      if (live.finishing) {
        // Its end is not durable yet: show the state before it (running, or
        // queued when it never ran) until it is.
        view.state = live.rec.attempt > 0 ? v1::EXECUTION_RUNNING : v1::EXECUTION_QUEUED;
      }
      return watch_hub_.Add(view, with_output, sink);
    }
  }
  ASSIGN_OR_RETURN(v1::Execution done, LoadFinished(id));
  sink->Push({FinalEvent(done)}, absl::OkStatus());
  return absl::OkStatus();
}

void Manager::Unsubscribe(const std::string& id, WatchSink* sink) {
  absl::MutexLock lock(&mu_);
  watch_hub_.Remove(id, sink);
}

absl::Status Manager::Watch(const std::string& id, bool with_output,
                            const std::function<bool(const v1::WatchEvent&)>& send,
                            const std::function<bool()>& cancelled) {
  BlockingSink sink;
  RETURN_IF_ERROR(Subscribe(id, with_output, &sink));
  std::vector<v1::WatchEvent> events;
  while (true) {
    // The timeout only bounds how late a cancelled caller is noticed.
    std::optional<absl::Status> end = sink.Take(absl::Milliseconds(200), &events);
    for (const auto& ev : events) {
      if (!send(ev)) {
        Unsubscribe(id, &sink);
        return absl::OkStatus();
      }
    }
    if (end) return *end;
    if (cancelled()) {
      Unsubscribe(id, &sink);
      return absl::OkStatus();
    }
  }
}

}  // namespace flotilla::manager
