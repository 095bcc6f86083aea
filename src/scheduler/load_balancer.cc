#include "scheduler/load_balancer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace flotilla::scheduler {
namespace {

// used / capacity in 0..1, or -1 when the node does not report the dimension.
double Share(int64_t capacity, int64_t available) {
  if (capacity <= 0) return -1;
  const double used = static_cast<double>(capacity - available) / static_cast<double>(capacity);
  return std::clamp(used, 0.0, 1.0);
}

absl::Status CheckFraction(const char* name, double value, bool allow_zero) {
  if (!std::isfinite(value) || value < 0 || value > 1 || (!allow_zero && value == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("load balancer option ", name, " must be in ",
                                                   allow_zero ? "[0, 1]" : "(0, 1]", ", got ",
                                                   value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadBalancerOptions::Validate() const {
  if (absl::Status s = CheckFraction("overload_margin", overload_margin, false); !s.ok()) return s;
  if (absl::Status s = CheckFraction("overload_absolute", overload_absolute, false); !s.ok()) {
    return s;
  }
  return CheckFraction("hysteresis", hysteresis, true);
}

const NodeBalance* BalanceReport::Find(const std::string& node_id) const {
  for (const NodeBalance& n : nodes) {
    if (n.node_id == node_id) return &n;
  }
  return nullptr;
}

LoadBalancer::LoadBalancer(LoadBalancerOptions options) : options_(options) {}

BalanceReport LoadBalancer::Analyze(std::span<const model::HypervisorNode> nodes,
                                    const BalanceReport* previous) const {
  BalanceReport report;
  double total_cpu = 0;
  double total_memory = 0;
  std::vector<const model::HypervisorNode*> online;
  for (const model::HypervisorNode& node : nodes) {
    if (node.status != model::NodeStatus::kOnline) continue;
    if (node.capacity.cpu_millis <= 0 && node.capacity.memory_bytes <= 0) continue;
    online.push_back(&node);
    total_cpu += static_cast<double>(std::max<int64_t>(0, node.capacity.cpu_millis));
    total_memory += static_cast<double>(std::max<int64_t>(0, node.capacity.memory_bytes));
  }
  if (online.empty()) return report;

  double total_load = 0;
  for (const model::HypervisorNode* node : online) {
    NodeBalance b;
    b.node_id = node->id;
    const double cpu = Share(node->capacity.cpu_millis, node->available.cpu_millis);
    const double memory = Share(node->capacity.memory_bytes, node->available.memory_bytes);
    b.cpu_utilisation = std::max(0.0, cpu);
    b.memory_utilisation = std::max(0.0, memory);
    b.utilisation = std::max(b.cpu_utilisation, b.memory_utilisation);
    // A dimension nobody reports drops out of the capacity share.
    double parts = 0;
    if (total_cpu > 0) {
      b.target_share += std::max<int64_t>(0, node->capacity.cpu_millis) / total_cpu;
      ++parts;
    }
    if (total_memory > 0) {
      b.target_share += std::max<int64_t>(0, node->capacity.memory_bytes) / total_memory;
      ++parts;
    }
    b.target_share /= parts;
    b.accepts_work = !node->draining;
    total_load += b.target_share * b.utilisation;
    report.nodes.push_back(std::move(b));
  }
  report.average_utilisation = total_load;  // Σ c_i u_i with Σ c_i = 1

  const double average = report.average_utilisation;
  const double relative_limit = average + options_.overload_margin;
  double total_free = 0;
  for (NodeBalance& b : report.nodes) {
    b.load_share = total_load > 0 ? b.target_share * b.utilisation / total_load : 0;
    double limit = std::min(relative_limit, options_.overload_absolute);
    const NodeBalance* before = previous ? previous->Find(b.node_id) : nullptr;
    if (before && before->overloaded) limit -= options_.hysteresis;
    b.overloaded = b.utilisation > limit;
    b.penalty = b.overloaded
                    ? 1.0
                    : std::clamp((b.utilisation - average) / options_.overload_margin, 0.0, 1.0);
    if (b.accepts_work && !b.overloaded) {
      b.suggested_weight = b.target_share * (1.0 - b.utilisation);
      total_free += b.suggested_weight;
    }
  }
  for (NodeBalance& b : report.nodes) {
    b.suggested_weight = total_free > 0 ? b.suggested_weight / total_free : 0;
  }
  return report;
}

std::vector<std::string> LoadBalancer::AvoidSet(const BalanceReport& report) {
  std::vector<std::string> avoid;
  bool someone_can_take_work = false;
  for (const NodeBalance& b : report.nodes) {
    if (!b.accepts_work) continue;
    if (b.overloaded) {
      avoid.push_back(b.node_id);
    } else {
      someone_can_take_work = true;
    }
  }
  if (!someone_can_take_work) avoid.clear();
  return avoid;
}

std::map<std::string, double> LoadBalancer::Penalties(const BalanceReport& report) {
  std::map<std::string, double> penalties;
  for (const NodeBalance& b : report.nodes) penalties[b.node_id] = b.penalty;
  return penalties;
}

}  // namespace flotilla::scheduler
