// Metrics: counters, gauges and histograms rendered in the Prometheus text
// exposition format (version 0.0.4). Thread-safe; recording is lock-free
// apart from a label lookup for labelled counters.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace flotilla::manager {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends name_bucket/_sum/_count lines.
  void Render(const std::string& name, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> buckets_;  // one per bound, plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};
};

class Metrics {
 public:
  Metrics();

  void CountSubmitted() { submitted_.fetch_add(1); }
  void CountOutcome(const std::string& outcome);  // "succeeded", "failed", ...
  void CountRequeued() { requeued_.fetch_add(1); }
  void CountStaleResult() { stale_results_.fetch_add(1); }
  // A submit refused by admission control (the queue is full).
  void CountRejected() { rejected_.fetch_add(1); }
  Histogram& placement_latency() { return placement_latency_; }
  Histogram& end_to_end_latency() { return end_to_end_latency_; }

  // Values read at render time (nodes by status, queue depth).
  struct Gauges {
    std::map<std::string, int64_t> nodes_by_status;
    int64_t queue_depth = 0;
    int64_t running = 0;
    int64_t preemptions = 0;
    int64_t overloaded_nodes = 0;
    double latency_model_mae_ms = -1;  // held-out error; -1 until enough samples
    double latency_baseline_mae_ms = -1;
    int64_t latency_model_samples = 0;
    // The writer: batches committed, transactions, failed batches, backlog.
    int64_t write_batches = 0;
    int64_t write_groups = 0;
    int64_t write_failures = 0;
    int64_t write_backlog = 0;
  };
  std::string Render(const Gauges& gauges) const;

 private:
  std::atomic<uint64_t> submitted_{0};
  std::atomic<uint64_t> requeued_{0};
  std::atomic<uint64_t> stale_results_{0};
  std::atomic<uint64_t> rejected_{0};
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> outcomes_;  // guarded by mu_
  Histogram placement_latency_;
  Histogram end_to_end_latency_;
};

}  // namespace flotilla::manager
