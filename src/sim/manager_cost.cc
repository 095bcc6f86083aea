#include "sim/manager_cost.h"

#include "absl/strings/str_cat.h"

namespace flotilla::sim {

absl::Status ManagerCosts::Validate() const {
  if (base_rss_kib < 0 || kib_per_idle_node < 0 || cpu_ms_per_node_second < 0 ||
      cpu_ms_per_task < 0) {
    return absl::InvalidArgumentError("manager costs must not be negative");
  }
  if (heartbeat_interval_s <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("heartbeat interval ", heartbeat_interval_s, " s: must be positive"));
  }
  return absl::OkStatus();
}

ManagerLoad Extrapolate(const ManagerCosts& costs, int64_t nodes, double tasks_per_s,
                        double heartbeat_interval_s) {
  const double interval =
      heartbeat_interval_s > 0 ? heartbeat_interval_s : costs.heartbeat_interval_s;
  ManagerLoad load;
  load.nodes = nodes;
  load.tasks_per_s = tasks_per_s;
  load.rss_mib = (costs.base_rss_kib + static_cast<double>(nodes) * costs.kib_per_idle_node) / 1024;
  // A node's heartbeat costs the same whatever the interval: fewer of them
  // per second cost proportionally less.
  load.heartbeat_cores = static_cast<double>(nodes) * costs.cpu_ms_per_node_second / 1000 *
                         (costs.heartbeat_interval_s / interval);
  load.task_cores = tasks_per_s * costs.cpu_ms_per_task / 1000;
  return load;
}

}  // namespace flotilla::sim
