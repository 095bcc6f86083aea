// ResultAssembler: puts back together the results that agents send in slices
// (federation.proto's ResultChunk) because they are too large for one
// SendResults call, so that the manager records a whole ExecutionResult as it
// does for small ones.
//
// A partial result is kept per (node, execution id, attempt). Its slices may
// repeat and arrive out of order; every answer names the first byte still
// missing (next_offset), which is where the agent sends from next. Everything
// from the wire is treated as hostile: sizes, offsets and totals are checked
// before any byte is copied, and the assembled bytes must parse as the
// ExecutionResult that the slices claimed to carry.
//
// Bounds: at most max_entries partial results and max_buffered_bytes in all
// (a new result reserves its whole total_bytes up front, so one that has
// started can always finish); a result larger than max_result_bytes is
// refused; a partial result that receives nothing for idle_expiry is dropped.
//
// Thread-safe. Holds its mutex for memory work only. Time is passed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "flotilla/v1/federation.pb.h"

namespace flotilla::manager {

struct ResultAssemblerOptions {
  // The largest serialized result accepted: stdout and stderr at the agents'
  // output caps plus headroom. Also bounded by what Get can send back (64 MiB).
  int64_t max_result_bytes = int64_t{32} << 20;
  int64_t max_buffered_bytes = int64_t{128} << 20;
  size_t max_entries = 64;
  std::chrono::milliseconds idle_expiry{120000};
  // Disjoint byte ranges one partial result may hold; a slice that would add
  // more is not stored (the agent is told to send from next_offset). An agent
  // sends in order, so it never holds more than two.
  size_t max_ranges = 16;
};

// One slice as it came off the wire. `data` is only read during Add.
struct ResultSlice {
  std::string execution_id;
  uint32_t attempt = 0;
  int64_t offset = 0;
  int64_t total_bytes = 0;
  std::string_view data;
  bool last = false;
};

ResultSlice SliceOf(const flotilla::v1::ResultChunk& chunk);

struct SliceOutcome {
  enum class Kind {
    kPartial,   // stored (or already held, or ignored as out of range); send next_offset
    kComplete,  // `result` holds the whole result; the entry is gone
    kBusy,      // no room now; send again later from next_offset
    kRejected,  // invalid or too large; `error` says why
  };
  Kind kind = Kind::kPartial;
  int64_t next_offset = 0;
  std::string error;
  std::optional<flotilla::v1::ExecutionResult> result;
};

class ResultAssembler {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ResultAssembler(ResultAssemblerOptions options = {});

  // Adds one slice sent by `node_id` at `now`. Returns kComplete with the
  // parsed result when it was the last missing piece; kRejected (the partial
  // result, if any, is dropped) when the slice or the assembled result is
  // invalid; kBusy when a new result does not fit the bounds.
  SliceOutcome Add(const std::string& node_id, const ResultSlice& slice, Clock::time_point now);

  size_t entries() const;
  int64_t buffered_bytes() const;

 private:
  using Key = std::tuple<std::string, std::string, uint32_t>;  // node, execution, attempt
  struct Entry {
    int64_t total = 0;                  // reserved in buffered_
    std::string bytes;                  // total long until handed out
    std::map<int64_t, int64_t> ranges;  // start -> end, disjoint and not touching
    Clock::time_point touched;
  };

  void ExpireLocked(Clock::time_point now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseLocked(std::map<Key, Entry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SliceOutcome StoreLocked(std::map<Key, Entry>::iterator it, const ResultSlice& slice)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SliceOutcome FinishLocked(std::map<Key, Entry>::iterator it, const ResultSlice& slice)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ResultAssemblerOptions options_;
  mutable absl::Mutex mu_;
  std::map<Key, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
};

// The FederationService.SendResults handler around the assembler: whole
// results and completed chunked ones go to `record` in one request (the
// manager's SendResults); partial chunks are answered here. Returns record's
// error if it fails (the agent sends again: a completed result is simply
// assembled anew) and an Internal error if record answers with the wrong
// number of verdicts.
absl::StatusOr<flotilla::v1::SendResultsResponse> HandleSendResults(
    ResultAssembler& assembler, const flotilla::v1::SendResultsRequest& request,
    ResultAssembler::Clock::time_point now,
    const std::function<absl::StatusOr<flotilla::v1::SendResultsResponse>(
        const flotilla::v1::SendResultsRequest&)>& record);

}  // namespace flotilla::manager
