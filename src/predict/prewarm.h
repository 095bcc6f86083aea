// Predictive pre-warming (issue 6, item 6): forecasts the invocation rate
// of each key (an environment template, or a function) and sizes its warm
// pool ahead of demand.
//
// Each key's invocations are counted in buckets of `bucket_s` seconds. The
// rate of the coming bucket is forecast from the completed buckets:
//   - Holt-Winters with a daily season (season = 86400 / bucket_s buckets)
//     once there are `min_seasons` days of history: it sees the morning
//     ramp before it happens;
//   - Holt's linear method (no season) on shorter histories of at least 10
//     buckets; then the mean of the buckets so far; with no completed bucket
//     only the recent rate counts.
// A model is refitted every `refit_s` (fitting Holt-Winters on a week of
// buckets is milliseconds, too slow to do per invocation); in between, the
// forecast step of the current bucket is read from the last fit.
//
// Target: the rate planned for is λ = max(upper bound of the `level`
// interval of the bucket's forecast, the rate of the last `recent_s`) — the
// second term is the reactive floor that catches bursts no model foresees.
// A sandbox takes `start_time_s` to make and the pool's owner refills it
// within `refill_delay_s` of an instance being taken (the agent's refill
// loop), so the idle pool must absorb the arrivals of
// W = start_time_s + refill_delay_s:
//
//   min_idle = 1 + Poisson quantile of λ·W at `quantile`
//
// (the arrival that takes an idle sandbox starts its replacement; with k
// idle the k-th arrival within W is the first cold one), when that quantile
// is > 0 or an arrival within `keep_horizon_s` is likely (P = 1 -
// exp(-λ_mean · keep_horizon_s) >= keep_probability, with λ_mean the
// forecast's mean rate or the recent rate, whichever is higher). Otherwise
// the target is 0: the keep-alive shrinks to nothing when idleness is
// forecast. Capped at `max_idle`.
//
// Pure: no I/O, no clock (time is passed in, in ms of any monotonic
// origin), no randomness. Thread-compatible.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "predict/forecaster.h"

namespace flotilla::predict {

struct PrewarmOptions {
  double bucket_s = 600;         // 10 minutes; a day is 144 buckets
  int min_seasons = 2;           // days of history before Holt-Winters is used
  int history_buckets = 7 * 144;  // kept per key (a week)
  double refit_s = 3600;
  double level = 0.8;            // forecast interval whose upper bound is planned for
  double recent_s = 60;          // the reactive floor's window
  double start_time_s = 1;       // time to make one sandbox
  double refill_delay_s = 0.1;
  double quantile = 0.95;
  double keep_horizon_s = 600;
  double keep_probability = 0.6;
  int max_idle = 16;
};

// InvalidArgument naming the bad option ("prewarm.bucket_s: must be > 0").
absl::Status ValidatePrewarmOptions(const PrewarmOptions& o);

// The smallest k with P(Poisson(mean) <= k) >= q (normal approximation with
// continuity correction above mean 200).
int PoissonQuantile(double mean, double q);

struct PrewarmTarget {
  std::string key;
  int min_idle = 0;
  double forecast_per_s = 0;  // the forecast's mean rate for the current bucket
  double upper_per_s = 0;     // its upper bound
  double recent_per_s = 0;    // the reactive floor
  std::string model;          // "holt-winters(144)", "holt", "mean", "none"
  std::string reason;         // one line: "forecast 0.52/s (upper 0.71/s), recent 0.40/s over 11s"
};

class PrewarmPlanner {
 public:
  explicit PrewarmPlanner(PrewarmOptions options = {});

  // Counts `n` invocations of `key` at `now_ms` (calls must not go back in
  // time by more than a bucket; earlier ones count in the current bucket).
  void Record(const std::string& key, int64_t now_ms, int n = 1);
  // The target of every key seen, refitting models that are due.
  std::vector<PrewarmTarget> Plan(int64_t now_ms);
  // The target of one key (min_idle 0 for an unknown key).
  PrewarmTarget PlanKey(const std::string& key, int64_t now_ms);

  const PrewarmOptions& options() const { return options_; }
  // Forgets keys with no invocation for a whole history.
  void Prune(int64_t now_ms);

 private:
  struct Series {
    int64_t origin_ms = 0;          // start of bucket 0
    int64_t first_bucket = 0;       // index of counts.front()
    std::deque<double> counts;      // completed and current buckets
    std::deque<int64_t> recent_ms;  // invocation times in the reactive window
    int64_t last_ms = 0;
    // The last fit: forecasts for buckets fit_bucket, fit_bucket + 1, ...
    std::unique_ptr<Forecaster> model;
    std::string model_name = "none";
    int64_t fit_bucket = -1;
    int64_t fit_ms = 0;
    std::vector<ForecastPoint> forecast;
    double mean_rate = 0;  // of the completed buckets, for the "mean" model
  };
  int64_t BucketOf(const Series& s, int64_t t_ms) const;
  void Advance(Series& s, int64_t now_ms);
  void Refit(Series& s, int64_t current_bucket, int64_t now_ms);
  PrewarmTarget Target(const std::string& key, Series& s, int64_t now_ms);

  PrewarmOptions options_;
  int season_ = 0;
  std::map<std::string, Series> series_;
};

}  // namespace flotilla::predict
