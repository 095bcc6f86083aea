// WatchHub: the manager's watch streams, one queue per stream, fed on every
// change of the execution they watch — no thread per stream and no polling.
//
// A stream is a WatchSink (the gRPC callback reactor in services.cc, or the
// blocking adapter behind Manager::Watch). Notify() turns an execution's new
// state into the events each of its streams has not seen yet — a state,
// attempt or node change, new output, the final event with the whole
// execution — and pushes them. The hub keeps, per stream, only a cursor
// (what it has sent); the output itself stays in the manager.
//
// Thread-safety: none of its own. The manager calls every method with its
// state lock held, so WatchSink::Push runs under that lock and must only
// queue (never call back into the manager).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "flotilla/v1/api.pb.h"

namespace flotilla::manager {

namespace v1 = ::flotilla::v1;

class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Takes `events` in order. `end` set: the stream is over after them (OK
  // when the execution ended; an error when the manager stops or the stream
  // fell behind); no further Push follows.
  virtual void Push(std::vector<v1::WatchEvent> events, std::optional<absl::Status> end) = 0;
};

// What a stream can see of one execution at one moment.
struct WatchView {
  std::string id;
  v1::ExecutionState state = v1::EXECUTION_STATE_UNSPECIFIED;
  uint32_t attempt = 0;
  std::string node_id;
  const std::string* output[2] = {nullptr, nullptr};  // live stdout, stderr
  // Set once the end is durable: the final event carries it.
  const v1::Execution* final_execution = nullptr;
};

class WatchHub {
 public:
  // Streams per execution and in all: bounds on what a caller can open.
  static constexpr size_t kMaxPerExecution = 256;
  static constexpr size_t kMaxStreams = 16384;

  // Adds `sink` for `view.id` and pushes what it should see now.
  // ResourceExhausted past the bounds.
  absl::Status Add(const WatchView& view, bool with_output, WatchSink* sink);
  // Removes `sink` (no-op when it ended already).
  void Remove(const std::string& id, WatchSink* sink);
  // Pushes to every stream of `view.id` what is new to it; ends them after
  // the final event.
  void Notify(const WatchView& view);
  // Ends every stream with `status` (the manager stops).
  void CloseAll(const absl::Status& status);

  size_t size() const { return total_; }
  bool Watched(const std::string& id) const { return streams_.count(id) > 0; }

 private:
  struct Stream {
    WatchSink* sink = nullptr;
    bool with_output = false;
    bool first = true;
    v1::ExecutionState state = v1::EXECUTION_STATE_UNSPECIFIED;
    uint32_t attempt = 0;
    std::string node_id;
    size_t sent[2] = {0, 0};
  };
  // Returns whether `s` is over after the events it was just pushed.
  static bool Feed(const WatchView& view, Stream& s);

  std::map<std::string, std::vector<Stream>> streams_;
  size_t total_ = 0;
};

}  // namespace flotilla::manager
