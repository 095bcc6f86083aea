#include "scheduler/node_selection.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;
using model::Resources;

// Keeps the "no node fits" summary to one readable line.
constexpr size_t kMaxReasonChars = 300;

// "512 MiB", "1.5 GiB", "100 B": binary units, one decimal unless exact.
std::string FormatBytes(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024 && bytes > -1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (std::fabs(value) >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  if (value == std::floor(value)) return absl::StrFormat("%.0f %s", value, kUnits[unit]);
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

// "100 Mbit/s": decimal units, as links are sold.
std::string FormatBandwidth(int64_t bps) {
  static constexpr const char* kUnits[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
  double value = static_cast<double>(bps);
  size_t unit = 0;
  while (std::fabs(value) >= 1000 && unit + 1 < std::size(kUnits)) {
    value /= 1000;
    ++unit;
  }
  if (value == std::floor(value)) return absl::StrFormat("%.0f %s", value, kUnits[unit]);
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatCpu(int64_t millis) { return absl::StrCat(millis, "m"); }

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Returns the first resource dimension of `demand` that `pool` cannot hold,
// in words ("needs 4000m cpu, 1500m free"), or "" when all fit. `free_word`
// is "free" against available resources and "total" against capacity.
//
// Bandwidth: a demand of 0 never filters, and a node reporting bandwidth 0
// does not know its link speed, which we treat as unlimited rather than as
// "no bandwidth at all", so only a known, smaller figure filters.
std::string ResourceShortfall(const Resources& demand, const Resources& pool,
                              const char* free_word) {
  if (demand.cpu_millis > pool.cpu_millis) {
    return absl::StrCat("needs ", FormatCpu(demand.cpu_millis), " cpu, ",
                        FormatCpu(pool.cpu_millis), " ", free_word);
  }
  if (demand.memory_bytes > pool.memory_bytes) {
    return absl::StrCat("needs ", FormatBytes(demand.memory_bytes), " memory, ",
                        FormatBytes(pool.memory_bytes), " ", free_word);
  }
  if (demand.storage_bytes > pool.storage_bytes) {
    return absl::StrCat("needs ", FormatBytes(demand.storage_bytes), " storage, ",
                        FormatBytes(pool.storage_bytes), " ", free_word);
  }
  if (demand.bandwidth_bps > 0 && pool.bandwidth_bps > 0 &&
      demand.bandwidth_bps > pool.bandwidth_bps) {
    return absl::StrCat("needs ", FormatBandwidth(demand.bandwidth_bps), " bandwidth, ",
                        FormatBandwidth(pool.bandwidth_bps), " ", free_word);
  }
  return "";
}

// Returns why the node's security profile refuses the request (trust, then
// tenant, then capabilities), or "" when it matches.
std::string SecurityMismatch(const ExecutionRequest& request, const HypervisorNode& node) {
  const model::SecurityProfile& profile = node.security;
  if (profile.trust_level < request.security.min_trust_level) {
    return absl::StrFormat("trust level %d < required %d", profile.trust_level,
                           request.security.min_trust_level);
  }
  if (!profile.allowed_tenants.empty() && !Contains(profile.allowed_tenants, request.user_id)) {
    return absl::StrCat("tenant '", request.user_id,
                        "' not allowed (allowed: ", absl::StrJoin(profile.allowed_tenants, ", "),
                        ")");
  }
  for (const std::string& capability : request.security.required_capabilities) {
    if (!Contains(profile.capabilities, capability)) {
      return absl::StrCat("lacks capability '", capability, "'");
    }
  }
  return "";
}

// The hard filters in order; returns the first failure, or "" if the node
// can take the request now.
std::string FirstFailingFilter(const ExecutionRequest& request, const HypervisorNode& node) {
  if (node.status != model::NodeStatus::kOnline) return "node is offline";
  std::string shortfall = ResourceShortfall(request.resources, node.available, "free");
  if (!shortfall.empty()) return shortfall;
  return SecurityMismatch(request, node);
}

double FreeFraction(int64_t available, int64_t capacity) {
  if (capacity <= 0) return 0;
  return std::clamp(static_cast<double>(available) / static_cast<double>(capacity), 0.0, 1.0);
}

// Data locality over the nodes of one Select call. A key's size is the
// largest size any node reports for it; a node's locality is the share of
// the request's data bytes it holds. When the request names no data, or its
// data has no known size, locality falls back to the share of keys held
// (0 everywhere when no node holds any), so it never distorts the ranking.
class Locality {
 public:
  Locality(const ExecutionRequest& request, std::span<const HypervisorNode> nodes) {
    for (const std::string& key : request.data_keys) {
      if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) keys_.push_back(key);
    }
    for (const HypervisorNode& node : nodes) {
      for (const model::DataSet& data : node.data_sets) {
        if (!Contains(keys_, data.key)) continue;
        int64_t& size = size_by_key_[data.key];
        size = std::max(size, std::max<int64_t>(data.size_bytes, 0));
      }
    }
    for (const std::string& key : keys_) {
      auto it = size_by_key_.find(key);
      if (it != size_by_key_.end()) total_bytes_ += static_cast<double>(it->second);
    }
  }

  bool has_data() const { return !keys_.empty(); }

  // Returns 0..1 for `node`.
  double Score(const HypervisorNode& node) const {
    if (keys_.empty()) return 0;
    std::set<std::string> held;
    for (const model::DataSet& data : node.data_sets) {
      if (Contains(keys_, data.key)) held.insert(data.key);
    }
    if (total_bytes_ > 0) {
      double bytes = 0;
      for (const std::string& key : held) bytes += static_cast<double>(size_by_key_.at(key));
      return bytes / total_bytes_;
    }
    return static_cast<double>(held.size()) / static_cast<double>(keys_.size());
  }

 private:
  std::vector<std::string> keys_;  // the request's keys, without duplicates
  std::unordered_map<std::string, int64_t> size_by_key_;
  double total_bytes_ = 0;
};

// Returns true if candidate `a` should be preferred over `b`: higher score,
// then fewer running executions, then the smaller id.
bool Better(const CandidateVerdict& a, const HypervisorNode& node_a, const CandidateVerdict& b,
            const HypervisorNode& node_b) {
  if (a.score != b.score) return a.score > b.score;
  if (node_a.running_executions != node_b.running_executions) {
    return node_a.running_executions < node_b.running_executions;
  }
  return node_a.id < node_b.id;
}

std::string NoFitReason(const std::vector<CandidateVerdict>& candidates) {
  if (candidates.empty()) return "no node fits now: no nodes are known";
  std::string reason = "no node fits now: ";
  for (size_t i = 0; i < candidates.size(); ++i) {
    std::string item = absl::StrCat(i == 0 ? "" : ", ", candidates[i].node_id, ": ",
                                    candidates[i].rejected_because);
    std::string more = absl::StrFormat(", and %d more", candidates.size() - i);
    // Leave room for the "and N more" tail unless this is the last item.
    size_t budget = i + 1 == candidates.size() ? kMaxReasonChars : kMaxReasonChars - more.size();
    if (i > 0 && reason.size() + item.size() > budget) {
      absl::StrAppend(&reason, more);
      return reason;
    }
    absl::StrAppend(&reason, item);
  }
  return reason;
}

}  // namespace

absl::StatusOr<Weights> Weights::FromMap(const std::map<std::string, double>& values) {
  Weights weights;
  for (const auto& [key, value] : values) {
    double* slot = nullptr;
    if (key == "cpu") {
      slot = &weights.cpu;
    } else if (key == "memory") {
      slot = &weights.memory;
    } else if (key == "security") {
      slot = &weights.security;
    } else if (key == "locality") {
      slot = &weights.locality;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown scheduler weight '", key,
                                                     "' (known: cpu, memory, security, locality)"));
    }
    if (!std::isfinite(value) || value < 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "scheduler weight '%s' must be a finite number >= 0, got %g", key, value));
    }
    *slot = value;
  }
  if (weights.cpu + weights.memory + weights.security + weights.locality <= 0) {
    return absl::InvalidArgumentError(
        "scheduler weights cpu, memory, security and locality are all zero; at least one must "
        "be positive");
  }
  return weights;
}

NodeSelection::NodeSelection(Weights weights) : weights_(weights) {}

Decision NodeSelection::Select(const ExecutionRequest& request,
                               std::span<const HypervisorNode> nodes) const {
  Decision decision;
  decision.candidates.reserve(nodes.size());
  const Locality locality(request, nodes);
  const double weight_sum = weights_.cpu + weights_.memory + weights_.security + weights_.locality;

  for (size_t i = 0; i < nodes.size(); ++i) {
    const HypervisorNode& node = nodes[i];
    CandidateVerdict verdict;
    verdict.node_id = node.id;
    verdict.rejected_because = FirstFailingFilter(request, node);
    verdict.feasible = verdict.rejected_because.empty();
    if (verdict.feasible) {
      // Every survivor matched the security filter, so security is 1 for
      // all of them. A scorer for the security margin (trust above the
      // minimum) arrives with the full scheduler.
      const std::pair<const char*, std::pair<double, double>> scorers[] = {
          {"cpu",
           {weights_.cpu, FreeFraction(node.available.cpu_millis, node.capacity.cpu_millis)}},
          {"memory",
           {weights_.memory,
            FreeFraction(node.available.memory_bytes, node.capacity.memory_bytes)}},
          {"security", {weights_.security, 1.0}},
          {"locality", {weights_.locality, locality.Score(node)}},
      };
      for (const auto& [name, weighted] : scorers) {
        const auto [weight, value] = weighted;
        double points = weight_sum > 0 ? 100 * weight * value / weight_sum : 0;
        verdict.parts.emplace_back(name, points);
        verdict.score += points;
      }
      if (!decision.chosen.has_value() ||
          Better(verdict, node, decision.candidates[*decision.chosen], nodes[*decision.chosen])) {
        decision.chosen = i;
      }
    }
    decision.candidates.push_back(std::move(verdict));
  }

  if (!decision.chosen.has_value()) {
    decision.reason = NoFitReason(decision.candidates);
    return decision;
  }

  const CandidateVerdict& best = decision.candidates[*decision.chosen];
  decision.node_id = best.node_id;
  decision.score = best.score;
  std::vector<std::string> parts;
  for (const auto& [name, points] : best.parts) {
    parts.push_back(absl::StrFormat("%s %.1f", name, points));
  }
  decision.reason =
      absl::StrFormat("%s: score %.1f (%s)", best.node_id, best.score, absl::StrJoin(parts, ", "));
  if (locality.has_data()) {
    absl::StrAppend(&decision.reason,
                    absl::StrFormat("; holds %.0f%% of the input data",
                                    100 * locality.Score(nodes[*decision.chosen])));
  }
  int others = 0;
  for (const CandidateVerdict& c : decision.candidates) others += c.feasible ? 1 : 0;
  --others;
  if (others > 0) {
    absl::StrAppend(&decision.reason, absl::StrFormat("; best of %d fitting nodes", others + 1));
  }
  return decision;
}

absl::Status NodeSelection::CheckEverFeasible(const ExecutionRequest& request,
                                              std::span<const HypervisorNode> nodes) const {
  if (nodes.empty()) return absl::OkStatus();
  std::vector<std::pair<std::string, std::string>> failures;  // node id, why
  for (const HypervisorNode& node : nodes) {
    std::string why = ResourceShortfall(request.resources, node.capacity, "total");
    if (why.empty()) why = SecurityMismatch(request, node);
    if (why.empty()) return absl::OkStatus();
    failures.emplace_back(node.id, std::move(why));
  }

  // Say which single requirement no node meets, so the user knows what to
  // change; fall back to per-node reasons when only the combination fails.
  const Resources& demand = request.resources;
  Resources largest;
  int max_trust = std::numeric_limits<int>::min();
  bool bandwidth_unknown = false;
  bool tenant_allowed = false;
  for (const HypervisorNode& node : nodes) {
    largest.cpu_millis = std::max(largest.cpu_millis, node.capacity.cpu_millis);
    largest.memory_bytes = std::max(largest.memory_bytes, node.capacity.memory_bytes);
    largest.storage_bytes = std::max(largest.storage_bytes, node.capacity.storage_bytes);
    largest.bandwidth_bps = std::max(largest.bandwidth_bps, node.capacity.bandwidth_bps);
    bandwidth_unknown |= node.capacity.bandwidth_bps <= 0;
    max_trust = std::max(max_trust, node.security.trust_level);
    tenant_allowed |= node.security.allowed_tenants.empty() ||
                      Contains(node.security.allowed_tenants, request.user_id);
  }
  std::vector<std::string> missing;
  if (demand.cpu_millis > largest.cpu_millis) {
    missing.push_back(absl::StrCat("it asks for ", FormatCpu(demand.cpu_millis),
                                   " cpu but the largest node has ",
                                   FormatCpu(largest.cpu_millis)));
  }
  if (demand.memory_bytes > largest.memory_bytes) {
    missing.push_back(absl::StrCat("it asks for ", FormatBytes(demand.memory_bytes),
                                   " memory but the largest node has ",
                                   FormatBytes(largest.memory_bytes)));
  }
  if (demand.storage_bytes > largest.storage_bytes) {
    missing.push_back(absl::StrCat("it asks for ", FormatBytes(demand.storage_bytes),
                                   " storage but the largest node has ",
                                   FormatBytes(largest.storage_bytes)));
  }
  if (demand.bandwidth_bps > 0 && !bandwidth_unknown &&
      demand.bandwidth_bps > largest.bandwidth_bps) {
    missing.push_back(absl::StrCat("it asks for ", FormatBandwidth(demand.bandwidth_bps),
                                   " bandwidth but the fastest node has ",
                                   FormatBandwidth(largest.bandwidth_bps)));
  }
  if (request.security.min_trust_level > max_trust) {
    missing.push_back(
        absl::StrFormat("it asks for minimum trust %d but the most trusted node has %d",
                        request.security.min_trust_level, max_trust));
  }
  if (!tenant_allowed) {
    missing.push_back(absl::StrCat("no node allows tenant '", request.user_id, "'"));
  }
  for (const std::string& capability : request.security.required_capabilities) {
    bool offered = false;
    for (const HypervisorNode& node : nodes) {
      offered |= Contains(node.security.capabilities, capability);
    }
    if (!offered) missing.push_back(absl::StrCat("no node has capability '", capability, "'"));
  }

  std::string message = "no node can ever run this: ";
  if (!missing.empty()) {
    absl::StrAppend(&message, absl::StrJoin(missing, "; "));
  } else {
    absl::StrAppend(&message, "no single node meets all of its requirements (");
    for (size_t i = 0; i < failures.size(); ++i) {
      std::string item =
          absl::StrCat(i == 0 ? "" : ", ", failures[i].first, ": ", failures[i].second);
      if (i > 0 && message.size() + item.size() > kMaxReasonChars) {
        absl::StrAppend(&message, absl::StrFormat(", and %d more", failures.size() - i));
        break;
      }
      absl::StrAppend(&message, item);
    }
    absl::StrAppend(&message, ")");
  }
  return absl::FailedPreconditionError(message);
}

}  // namespace flotilla::scheduler
