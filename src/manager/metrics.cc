#include "manager/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::manager {

namespace {
std::vector<double> LatencyBounds() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(value < 0 ? 0 : value * 1e6),
                        std::memory_order_relaxed);
}

void Histogram::Render(const std::string& name, std::string* out) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    absl::StrAppend(out, name, "_bucket{le=\"", absl::StrFormat("%g", bounds_[i]), "\"} ",
                    cumulative, "\n");
  }
  cumulative += buckets_.back().load(std::memory_order_relaxed);
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", cumulative, "\n");
  absl::StrAppend(out, name, "_sum ",
                  absl::StrFormat("%.6f", sum_micros_.load(std::memory_order_relaxed) / 1e6),
                  "\n");
  absl::StrAppend(out, name, "_count ", count_.load(std::memory_order_relaxed), "\n");
}

Metrics::Metrics() : placement_latency_(LatencyBounds()), end_to_end_latency_(LatencyBounds()) {}

void Metrics::CountOutcome(const std::string& outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  ++outcomes_[outcome];
}

std::string Metrics::Render(const Gauges& g) const {
  std::string out;
  absl::StrAppend(&out, "# HELP flotilla_nodes Nodes known to the manager, by status.\n",
                  "# TYPE flotilla_nodes gauge\n");
  for (const char* status : {"online", "offline"}) {
    auto it = g.nodes_by_status.find(status);
    absl::StrAppend(&out, "flotilla_nodes{status=\"", status, "\"} ",
                    it == g.nodes_by_status.end() ? 0 : it->second, "\n");
  }
  absl::StrAppend(&out, "# HELP flotilla_queue_depth Executions waiting for a node.\n",
                  "# TYPE flotilla_queue_depth gauge\n", "flotilla_queue_depth ", g.queue_depth,
                  "\n");
  absl::StrAppend(&out, "# HELP flotilla_executions_running Executions assigned or running.\n",
                  "# TYPE flotilla_executions_running gauge\n", "flotilla_executions_running ",
                  g.running, "\n");
  absl::StrAppend(&out, "# HELP flotilla_executions_submitted_total Executions accepted.\n",
                  "# TYPE flotilla_executions_submitted_total counter\n",
                  "flotilla_executions_submitted_total ", submitted_.load(), "\n");
  absl::StrAppend(&out,
                  "# HELP flotilla_executions_total Finished executions, by outcome.\n",
                  "# TYPE flotilla_executions_total counter\n");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const char* outcome : {"succeeded", "failed", "timed_out", "cancelled"}) {
      auto it = outcomes_.find(outcome);
      absl::StrAppend(&out, "flotilla_executions_total{outcome=\"", outcome, "\"} ",
                      it == outcomes_.end() ? 0 : it->second, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP flotilla_executions_requeued_total Attempts re-queued (node lost, "
                  "dispatch failed).\n",
                  "# TYPE flotilla_executions_requeued_total counter\n",
                  "flotilla_executions_requeued_total ", requeued_.load(), "\n");
  absl::StrAppend(&out,
                  "# HELP flotilla_stale_results_total Results rejected as from an older "
                  "attempt.\n",
                  "# TYPE flotilla_stale_results_total counter\n",
                  "flotilla_stale_results_total ", stale_results_.load(), "\n");
  absl::StrAppend(&out,
                  "# HELP flotilla_submits_rejected_total Submits refused by admission control "
                  "(queue full).\n",
                  "# TYPE flotilla_submits_rejected_total counter\n",
                  "flotilla_submits_rejected_total ", rejected_.load(), "\n");
  absl::StrAppend(&out,
                  "# HELP flotilla_store_write_batches_total Write batches the writer committed "
                  "or failed.\n",
                  "# TYPE flotilla_store_write_batches_total counter\n",
                  "flotilla_store_write_batches_total ", g.write_batches, "\n",
                  "# HELP flotilla_store_transactions_total Store transactions committed (group "
                  "commit: several batches each).\n",
                  "# TYPE flotilla_store_transactions_total counter\n",
                  "flotilla_store_transactions_total ", g.write_groups, "\n",
                  "# HELP flotilla_store_write_failures_total Write batches that failed (never "
                  "acknowledged).\n",
                  "# TYPE flotilla_store_write_failures_total counter\n",
                  "flotilla_store_write_failures_total ", g.write_failures, "\n",
                  "# HELP flotilla_store_write_backlog Write batches waiting for the writer.\n",
                  "# TYPE flotilla_store_write_backlog gauge\n",
                  "flotilla_store_write_backlog ", g.write_backlog, "\n");
  absl::StrAppend(&out, "# HELP flotilla_preemptions_total Executions evicted for higher priority.\n",
                  "# TYPE flotilla_preemptions_total counter\n", "flotilla_preemptions_total ",
                  g.preemptions, "\n");
  absl::StrAppend(&out,
                  "# HELP flotilla_nodes_overloaded Nodes the load balancer steers work away from.\n",
                  "# TYPE flotilla_nodes_overloaded gauge\n", "flotilla_nodes_overloaded ",
                  g.overloaded_nodes, "\n");
  if (g.latency_model_mae_ms >= 0) {
    absl::StrAppend(
        &out,
        "# HELP flotilla_latency_model_mae_ms Held-out mean absolute error of the latency model "
        "(last 20% of recent executions), and of the per-function mean as a baseline.\n",
        "# TYPE flotilla_latency_model_mae_ms gauge\n",
        absl::StrFormat("flotilla_latency_model_mae_ms{model=\"regression\"} %.3f\n",
                        g.latency_model_mae_ms),
        absl::StrFormat("flotilla_latency_model_mae_ms{model=\"function_mean\"} %.3f\n",
                        g.latency_baseline_mae_ms),
        "flotilla_latency_model_samples ", g.latency_model_samples, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP flotilla_placement_latency_seconds From queued to sent to a node.\n",
                  "# TYPE flotilla_placement_latency_seconds histogram\n");
  placement_latency_.Render("flotilla_placement_latency_seconds", &out);
  absl::StrAppend(&out,
                  "# HELP flotilla_end_to_end_latency_seconds From submit to result recorded.\n",
                  "# TYPE flotilla_end_to_end_latency_seconds histogram\n");
  end_to_end_latency_.Render("flotilla_end_to_end_latency_seconds", &out);
  return out;
}

}  // namespace flotilla::manager
