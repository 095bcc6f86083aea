// Autoscaler: how many instances of one function should exist, from its
// observed concurrency — pure, time passed in.
//
// The policy is Knative's pod autoscaler (KPA): concurrency is averaged over
// a stable window (default 60 s) and a panic window (default 6 s). Normally
// the desired count is ceil(stable average / target concurrency per
// instance). When the panic window's desired count reaches panic_threshold
// times the instances there are, the autoscaler panics: it follows the
// panic window, and never scales down while panicking, until a whole stable
// window has passed without the condition. With no load for a stable window
// plus scale_to_zero_grace_ms it goes to min_instances (0 by default).
// The result is clamped to [min_instances, max_instances].
//
// Not thread-safe: one owner calls Observe and Decide.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

namespace flotilla::scheduler {

struct AutoscalerOptions {
  double target_concurrency = 1.0;  // in-flight invocations one instance serves
  int64_t stable_window_ms = 60'000;
  int64_t panic_window_ms = 6'000;
  double panic_threshold = 2.0;
  int min_instances = 0;
  int max_instances = 10;
  int64_t scale_to_zero_grace_ms = 30'000;
};

struct AutoscaleDecision {
  int desired = 0;
  bool panic = false;
  double stable_concurrency = 0;  // averages over the windows
  double panic_concurrency = 0;
  std::string reason;             // one line, for listings and logs
};

class Autoscaler {
 public:
  explicit Autoscaler(AutoscalerOptions options);

  // Records the function's in-flight invocations (queued + running) at now_ms.
  // Samples must come in non-decreasing time order.
  void Observe(int64_t now_ms, double concurrency);

  // The desired instance count, given the instances that exist now.
  AutoscaleDecision Decide(int64_t now_ms, int current_instances);

  const AutoscalerOptions& options() const { return options_; }

 private:
  struct Sample {
    int64_t at_ms;
    double concurrency;
  };
  double Average(int64_t now_ms, int64_t window_ms) const;

  AutoscalerOptions options_;
  std::deque<Sample> samples_;
  bool panic_ = false;
  int64_t panic_since_ms_ = 0;       // last time the panic condition held
  int panic_floor_ = 0;              // highest desired count while panicking
  int64_t last_load_ms_ = -1;        // last sample with concurrency > 0
};

}  // namespace flotilla::scheduler
