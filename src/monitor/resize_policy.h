// ResizePolicy: adaptive allocation (issue 6, item 4). From one running
// execution's recent usage, the forecast of its memory, its risk score, its
// current limits, the floor it asked for and the room the node has left, it
// decides whether to change the sandbox's limits in place:
//
//   raise   risk >= raise_risk and the node has room: the new memory limit
//           covers the forecast's upper bound over the horizon plus
//           `headroom` (never less than current + min_step). Cpu is raised
//           the same way when the task uses >= cpu_raise_utilisation of its
//           quota.
//   lower   for the last `lower_after_ms` (a window the ring must cover)
//           memory stayed under lower_utilisation · limit: the limit goes
//           down to max(floor, peak in the window · lower_margin), giving
//           the room back. Cpu likewise.
//   migrate risk is high and the room cannot cover the forecast: the task
//           is marked as needing migration (a partial raise is still made
//           when the room allows at least min_step: it buys time).
//
// Hysteresis: the raise threshold sits far above where a lowered limit puts
// the risk (lower_margin >= 1.5 keeps the peak well inside it), changes
// smaller than min_step are not made, no change follows another within
// cooldown_ms, and no lowering within lower_after_ms of the last change.
//
// Pure: no I/O, no clock (now is passed in). Thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "monitor/usage_ring.h"

namespace flotilla::monitor {

struct ResizeOptions {
  bool enabled = false;
  double raise_risk = 0.5;       // P(exceed within horizon) that triggers a raise
  double horizon_s = 10;         // how far ahead the forecast must be covered
  double level = 0.95;           // the forecast interval whose upper bound is covered
  double headroom = 0.25;        // new limit = upper bound · (1 + headroom)
  double lower_utilisation = 0.4;  // "well under the limit"
  int64_t lower_after_ms = 20000;  // ... for this long (at most the ring's span)
  double lower_margin = 2.0;       // lowered limit = peak in the window · this
  int64_t min_step_bytes = 16ll << 20;
  int64_t cooldown_ms = 1000;
  double cpu_raise_utilisation = 0.9;  // of the cpu quota, over the last second
  int64_t min_cpu_step_millis = 100;
  int64_t max_memory_bytes = 0;  // 0: no cap but the room
  int64_t max_cpu_millis = 0;    // 0: no cap but the room
  // Used by the agent, not by DecideResize: how often it evaluates, and how
  // much of the host's MemAvailable it never hands out.
  int64_t interval_ms = 250;
  int64_t host_reserve_bytes = 256ll << 20;
};

// Returns InvalidArgument naming the bad key ("resize.raise_risk: ...").
absl::Status ValidateResizeOptions(const ResizeOptions& o);

struct ResizeInput {
  int64_t now_ms = 0;                // same clock as the ring's samples
  const UsageRing* ring = nullptr;   // the execution's samples; required
  double risk = 0;                   // MemoryRisk against memory_limit_bytes
  int64_t memory_upper_bytes = 0;    // forecast upper bound over the horizon
  int64_t memory_limit_bytes = 0;    // current
  int64_t memory_floor_bytes = 0;    // never below: the template's limit / request
  int64_t cpu_limit_millis = 0;      // current; 0: no cpu limit, not resized
  int64_t cpu_floor_millis = 0;
  int64_t room_memory_bytes = 0;     // what the node can still give
  int64_t room_cpu_millis = 0;
  int64_t last_change_ms = 0;        // 0: never changed
};

enum class ResizeAction { kNone, kRaise, kLower };

struct ResizeDecision {
  ResizeAction action = ResizeAction::kNone;
  int64_t memory_limit_bytes = 0;  // the limits to apply (= current when unchanged)
  int64_t cpu_limit_millis = 0;
  bool needs_migration = false;
  // One line for logs and `flotilla top`: "memory 256Mi -> 384Mi: risk 0.82
  // >= 0.50, forecast upper 301Mi in 10s"; for needs_migration, why.
  std::string reason;
};

ResizeDecision DecideResize(const ResizeInput& in, const ResizeOptions& o);

// The upper bound of the `level` interval of a Holt forecast of the ring's
// memory over the next `horizon_s` (the highest upper bound of any step), in
// bytes; the latest sample's memory when the model cannot be fitted, 0 with
// fewer than `min_samples` samples.
int64_t MemoryUpperBound(const UsageRing& ring, double horizon_s, double level,
                         size_t min_samples = 20, size_t fit_window = 100);

// "256Mi", "1.5Gi": the units of templates and configs.
std::string FormatMi(int64_t bytes);

}  // namespace flotilla::monitor
