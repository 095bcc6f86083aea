// Trace: a generated cluster of HypervisorNodes and a workload to run on it,
// for the scheduling simulator.
//
// Everything is drawn from std::mt19937_64 streams seeded from
// TraceOptions::seed alone, so the same options give the same cluster and
// the same trace on every machine (the draws avoid std::*_distribution,
// whose output the standard leaves to the library). Time is simulated
// milliseconds from 0.
//
// The workload models what makes placement hard:
//   - arrivals: a Poisson process whose rate follows a day-like sine
//     (diurnal amplitude and period), plus bursts of simultaneous arrivals;
//   - durations: Pareto (heavy-tailed), capped, so a few executions run far
//     longer than the median;
//   - data: data sets of Pareto-distributed size, each replicated on
//     `data_replication` random nodes; a request reads a few of them, the
//     popular ones more often;
//   - constraints: a mix of priorities, minimum trust, required
//     capabilities, preferred regions and bid-mode placement;
//   - nodes: capacity classes, trust levels, regions and prices differ, and
//     nodes fail and are repaired (exponential up and down times).
//
// Pure: no I/O, no clock, no threads; thread-compatible value types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/model.h"

namespace flotilla::sim {

struct TraceOptions {
  uint64_t seed = 1;

  // --- cluster ---
  int nodes = 100;
  // Capacity classes, drawn in these proportions: small 4 cores / 8 GiB,
  // medium 8 cores / 32 GiB, large 16 cores / 64 GiB.
  double small_fraction = 0.4;
  double medium_fraction = 0.4;  // the rest are large
  // Nodes with trust level 8 (the rest get 3..6); requests asking for a
  // minimum trust ask for 7.
  double trusted_fraction = 0.3;
  // Nodes granting "network-egress"; a further `gpu_fraction` grant "gpu".
  double egress_fraction = 0.7;
  double gpu_fraction = 0.1;
  std::vector<std::string> regions = {"eu-west", "us-east", "ap-south"};
  // Price per core-second; each node's price is this times a factor drawn
  // uniformly from [1 - cost_spread, 1 + cost_spread], larger classes a bit
  // cheaper per core.
  double cost_per_cpu_second = 0.00005;
  double cost_spread = 0.5;
  int64_t node_bandwidth_bps = 1'000'000'000;  // 1 Gbit/s links

  // --- arrivals ---
  double duration_s = 1800;          // arrivals fall in [0, duration_s)
  double arrival_rate_per_s = 10.0;  // mean base Poisson rate, bursts excluded
  double diurnal_amplitude = 0.5;    // 0..1: rate swings by +-amplitude
  double diurnal_period_s = 1000;    // a compressed "day"
  // After each arrival, with this probability, `burst_size` more arrive at
  // the same instant (a fan-out, a cron tick).
  double burst_probability = 0.005;
  int burst_size = 20;

  // --- durations: Pareto(shape, scale), capped ---
  double duration_shape = 1.5;   // < 2: infinite variance before the cap
  double duration_scale_s = 10;  // the minimum duration
  double max_duration_s = 900;

  // --- data ---
  int data_sets = 200;
  double data_size_shape = 1.2;              // Pareto shape of data set sizes
  int64_t data_size_min_bytes = 64ll << 20;  // 64 MiB
  int64_t data_size_max_bytes = 32ll << 30;  // 32 GiB cap
  int data_replication = 2;                  // replicas on distinct random nodes
  double data_request_fraction = 0.5;        // requests that read data
  int max_data_keys = 3;                     // 1..max keys per such request

  // --- request mix ---
  double high_priority_fraction = 0.1;  // priority 90
  double low_priority_fraction = 0.3;   // priority 10; the rest 50
  double min_trust_fraction = 0.1;
  double capability_fraction = 0.1;
  double preferred_region_fraction = 0.2;
  double bid_fraction = 0.1;  // placement.mode = kBid
  int tenants = 10;

  // --- SLO: deadline = arrival + slo_factor * duration + slo_grace ---
  double slo_factor = 1.5;
  double slo_grace_s = 60;

  // --- failures: per node, exponential up time and repair time ---
  double failures_per_node_hour = 0.2;
  double mean_repair_s = 300;

  // Returns OK, or InvalidArgument naming the first bad field and its value.
  absl::Status Validate() const;
};

struct Arrival {
  int64_t time_ms = 0;
  model::ExecutionRequest request;  // id "e<index>"; resources, data, constraints
  int64_t duration_ms = 0;          // run time once started, data transfer excluded
  int64_t deadline_ms = 0;          // SLO: should finish by then
};

// Node `node` (an index into the generated cluster) goes offline at
// `time_ms` and comes back `repair_ms` later, its data intact and whatever
// ran on it lost.
struct Failure {
  int64_t time_ms = 0;
  size_t node = 0;
  int64_t repair_ms = 0;
};

struct Trace {
  std::vector<Arrival> arrivals;  // by time, then index
  std::vector<Failure> failures;  // by time, then node; a node's outages never overlap
  // Size of each data set by key, as the nodes report it.
  std::vector<model::DataSet> data_sets;
};

// Returns `options.nodes` online nodes "n000", "n001", ... with capacity,
// security profile, region label, cost and their replicas of the data sets.
// Deterministic in `options`.
std::vector<model::HypervisorNode> GenerateCluster(const TraceOptions& options);

// Returns the arrivals and failures for a cluster from GenerateCluster(options).
// Deterministic in `options`; independent of how the cluster was used.
Trace GenerateTrace(const TraceOptions& options);

}  // namespace flotilla::sim
