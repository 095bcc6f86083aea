// Pre-warming simulator (issue 6, item 6): generated invocation traces of
// many functions — daily cycles, nightly idle periods, bursts — run against
// warm-pool policies, counting cold starts and idle sandbox-seconds.
//
// Model. Each function has a pool of its own (as serverless platforms keep
// per-function containers). An invocation takes an idle sandbox of its
// function if there is one (a warm start; the most recently parked one
// first), else it is a cold start: it waits `start_time_s` for a new
// sandbox, or for one a policy is already making. When an invocation ends
// its sandbox is parked idle. Every `plan_interval_s` a policy names, per
// function, a target of idle sandboxes to keep (made ahead, each taking
// start_time_s, and again whenever one is taken, as the agent's refill
// loop does) and how long idle sandboxes beyond the target live
// (keep-alive). Idle sandbox-seconds sum the time sandboxes sit parked or
// are being made ahead without a waiting invocation.
//
// Policies compared:
//   fixed-10m   no pre-warming; an idle sandbox lives 10 minutes
//               (OpenWhisk's and Lambda-like keep-alive).
//   reactive    target from the last minute's arrival rate only (the
//               quantile rule of predict/prewarm.h with no forecast); idle
//               sandboxes beyond it live 60 s.
//   predictive  predict::PrewarmPlanner (forecast + reactive floor); idle
//               sandboxes beyond the target are destroyed at once.
//
// Deterministic: everything is drawn from std::mt19937_64 seeded from the
// options' seed alone, without std::*_distribution. Pure; no clock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "predict/prewarm.h"

namespace flotilla::sim {

struct PrewarmTraceOptions {
  uint64_t seed = 1;
  int functions = 24;
  double days = 4;
  // Mean base rates are log-uniform in [min, max] per function.
  double min_rate_per_s = 1.0 / 3600;
  double max_rate_per_s = 0.5;
  // Daily cycle: rate · max(0, 1 + A·sin(2π(t/day - phase))), A uniform in
  // [0.5, diurnal_amplitude], phase near midday ± 2 h.
  double diurnal_amplitude = 1.0;
  // This fraction of functions sleeps `idle_hours` every night (rate 0).
  double idle_fraction = 0.4;
  double idle_hours = 8;
  // Bursts: a Poisson number per function and day, each `burst_s` long at
  // max(burst_multiplier · base, burst_min_rate_per_s).
  double bursts_per_day = 3;
  double burst_s = 120;
  double burst_multiplier = 20;
  double burst_min_rate_per_s = 0.2;
  // Execution times: exponential, mean log-uniform in [min, max] per function.
  double min_duration_s = 0.05;
  double max_duration_s = 3;

  absl::Status Validate() const;
};

struct Invocation {
  double t_s = 0;
  int function = 0;
  double duration_s = 0;
};

struct PrewarmTrace {
  std::vector<Invocation> invocations;  // sorted by time
  std::vector<double> base_rate_per_s;  // per function
  double duration_s = 0;
};

PrewarmTrace GeneratePrewarmTrace(const PrewarmTraceOptions& o);

struct PrewarmSimOptions {
  double start_time_s = 1.0;      // making one sandbox
  double plan_interval_s = 10;
  double fixed_keep_alive_s = 600;
  double reactive_window_s = 60;
  double reactive_keep_alive_s = 60;
  predict::PrewarmOptions predictive;  // start_time_s is copied in
};

struct PrewarmMetrics {
  std::string policy;
  int64_t invocations = 0;
  int64_t cold_starts = 0;
  double cold_start_rate = 0;
  double idle_sandbox_s = 0;
  int64_t sandboxes_created = 0;
  double cold_wait_s = 0;  // total time invocations waited for a sandbox
};

std::vector<std::string> PrewarmPolicyNames();  // fixed-10m, reactive, predictive

// Runs `policy` (one of PrewarmPolicyNames) over `trace`.
absl::StatusOr<PrewarmMetrics> SimulatePrewarm(const PrewarmTrace& trace, const std::string& policy,
                                               const PrewarmSimOptions& options);

}  // namespace flotilla::sim
