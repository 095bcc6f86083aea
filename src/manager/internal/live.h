// Manager::Live, the in-memory record of one unfinished execution, and the
// small helpers the manager's source files share. Internal to the manager:
// only src/manager/manager*.cc include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "manager/manager.h"
#include "model/model.h"

namespace flotilla::manager {

// Live output kept per stream and attempt; the final result carries the rest.
constexpr size_t kLiveOutputCap = 4u << 20;

inline int StreamIndex(v1::OutputStream s) { return s == v1::OUTPUT_STDERR ? 1 : 0; }

inline model::ExecutionState StateFromResult(const v1::ExecutionResult& r,
                                             bool cancel_requested) {
  using model::ExecutionState;
  switch (r.termination()) {
    case v1::TERMINATION_EXITED:
      return r.exit_code() == 0 ? ExecutionState::kSucceeded : ExecutionState::kFailed;
    case v1::TERMINATION_TIMED_OUT:
      return ExecutionState::kTimedOut;
    case v1::TERMINATION_CANCELLED:
      return ExecutionState::kCancelled;
    case v1::TERMINATION_SIGNALED:
      return cancel_requested ? ExecutionState::kCancelled : ExecutionState::kFailed;
    default:
      return ExecutionState::kFailed;
  }
}

struct Manager::Live {
  store::ExecutionRecord rec;
  v1::ExecutionRequest request;
  model::ExecutionRequest sched;
  v1::Placement placement;
  std::string waiting_reason;  // why it is still queued (last round), not persisted
  std::string output[2];       // live stdout/stderr of the current attempt
  std::optional<v1::ExecutionResult> result;
  uint64_t version = 0;
  int64_t queued_mono_ms = 0;    // when it (re-)entered the queue
  int64_t assigned_mono_ms = 0;  // when the current attempt was sent
  int dispatch_failures = 0;
  std::optional<scheduler::LatencyFeatures> features;  // of the current attempt
  // The agent's latest usage report of the current attempt; in memory only.
  std::optional<v1::TaskUsage> usage;
  // Accepted in memory, its insert not yet durable: not in the queue yet.
  bool inserting = false;
  // Terminal in memory, its end not yet durable (or its write failed: then
  // a retry of the result or cancel writes it again).
  bool finishing = false;
  // Its resources count toward the tenant's CPU and memory quotas (set when
  // placed on a node, cleared when released from it).
  bool quota_held = false;
  // Passed over at dispatch for its tenant's quota (waiting_reason says so).
  bool quota_held_back = false;
};

}  // namespace flotilla::manager
