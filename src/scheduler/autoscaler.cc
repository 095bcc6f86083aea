#include "scheduler/autoscaler.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace flotilla::scheduler {

Autoscaler::Autoscaler(AutoscalerOptions options) : options_(options) {
  if (options_.target_concurrency <= 0) options_.target_concurrency = 1;
  if (options_.panic_window_ms <= 0) options_.panic_window_ms = 1;
  if (options_.stable_window_ms < options_.panic_window_ms) {
    options_.stable_window_ms = options_.panic_window_ms;
  }
  options_.min_instances = std::max(0, options_.min_instances);
  options_.max_instances = std::max(options_.min_instances, options_.max_instances);
}

void Autoscaler::Observe(int64_t now_ms, double concurrency) {
  samples_.push_back({now_ms, std::max(0.0, concurrency)});
  if (concurrency > 0) last_load_ms_ = now_ms;
  while (!samples_.empty() && samples_.front().at_ms < now_ms - options_.stable_window_ms) {
    samples_.pop_front();
  }
}

double Autoscaler::Average(int64_t now_ms, int64_t window_ms) const {
  double sum = 0;
  int n = 0;
  for (auto it = samples_.rbegin(); it != samples_.rend(); ++it) {
    if (it->at_ms < now_ms - window_ms) break;
    sum += it->concurrency;
    n++;
  }
  return n == 0 ? 0 : sum / n;
}

AutoscaleDecision Autoscaler::Decide(int64_t now_ms, int current_instances) {
  AutoscaleDecision d;
  d.stable_concurrency = Average(now_ms, options_.stable_window_ms);
  d.panic_concurrency = Average(now_ms, options_.panic_window_ms);
  const double t = options_.target_concurrency;
  int stable = static_cast<int>(std::ceil(d.stable_concurrency / t - 1e-9));
  int panic = static_cast<int>(std::ceil(d.panic_concurrency / t - 1e-9));

  bool condition = panic >= options_.panic_threshold * std::max(1, current_instances) && panic > 0;
  if (condition) {
    if (!panic_) panic_floor_ = 0;
    panic_ = true;
    panic_since_ms_ = now_ms;
  } else if (panic_ && now_ms - panic_since_ms_ >= options_.stable_window_ms) {
    panic_ = false;
  }

  int desired = stable;
  if (panic_) {
    desired = std::max({panic, panic_floor_, current_instances});
    panic_floor_ = desired;
    d.reason = absl::StrFormat("panic: %.2f in flight over %ds (target %.1f per instance)",
                               d.panic_concurrency, options_.panic_window_ms / 1000, t);
  } else if (d.stable_concurrency == 0) {
    bool idle_long = last_load_ms_ < 0 ||
                     now_ms - last_load_ms_ >= options_.stable_window_ms +
                                                   options_.scale_to_zero_grace_ms;
    desired = idle_long ? 0 : std::max(current_instances, 1);
    d.reason = idle_long ? "idle: scaled to the floor" : "idle: within the grace period";
  } else {
    d.reason = absl::StrFormat("stable: %.2f in flight over %ds (target %.1f per instance)",
                               d.stable_concurrency, options_.stable_window_ms / 1000, t);
  }
  d.panic = panic_;
  d.desired = std::clamp(desired, options_.min_instances, options_.max_instances);
  return d;
}

}  // namespace flotilla::scheduler
