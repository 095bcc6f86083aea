#include "scheduler/preemption.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;
using model::Resources;

constexpr size_t kDims = 4;  // cpu, memory, storage, bandwidth
using Vec = std::array<int64_t, kDims>;

Vec ToVec(const Resources& r) {
  return {r.cpu_millis, r.memory_bytes, r.storage_bytes, r.bandwidth_bps};
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// The request's non-resource requirements, checked here rather than through
// NodeSelection's filters so that preemption has no say in, and no
// dependency on, how normal placement evolves. A node failing any of them
// must never be chosen, whatever low-priority work it runs.
bool NodeMayRun(const ExecutionRequest& request, const HypervisorNode& node) {
  if (node.status != model::NodeStatus::kOnline || node.draining) return false;
  const model::SecurityProfile& profile = node.security;
  if (profile.trust_level < request.security.min_trust_level) return false;
  if (!profile.allowed_tenants.empty() && !Contains(profile.allowed_tenants, request.user_id)) {
    return false;
  }
  for (const std::string& capability : request.security.required_capabilities) {
    if (!Contains(profile.capabilities, capability)) return false;
  }
  const auto& regions = request.placement.required_regions;
  if (!regions.empty()) {
    auto region = node.labels.find("region");
    if (region == node.labels.end() || !Contains(regions, region->second)) return false;
  }
  return true;
}

struct Victim {
  const RunningExecution* execution;
  Vec amount;
  double size;
};

// A candidate victim set on one node, with the keys plans are ranked by.
struct Choice {
  std::vector<size_t> picked;  // indexes into the node's victims
  double size = 0;
  int max_priority = -1;
  std::vector<std::string> ids;  // sorted, the last tiebreak
};

// Sizes are sums of doubles; rounding noise counts as a tie.
constexpr double kSizeEpsilon = 1e-9;

// Returns -1, 0 or 1 as `a` is a better, equally good or worse victim set
// than `b` by count, then total size, then highest victim priority.
int CompareCost(const Choice& a, const Choice& b) {
  if (a.picked.size() != b.picked.size()) return a.picked.size() < b.picked.size() ? -1 : 1;
  if (std::fabs(a.size - b.size) > kSizeEpsilon) return a.size < b.size ? -1 : 1;
  if (a.max_priority != b.max_priority) return a.max_priority < b.max_priority ? -1 : 1;
  return 0;
}

// Within one node: CompareCost, then victim ids, so the choice is
// deterministic whatever order `running` lists them in.
bool Better(const Choice& a, const Choice& b) {
  if (int c = CompareCost(a, b); c != 0) return c < 0;
  return a.ids < b.ids;
}

class NodePlanner {
 public:
  NodePlanner(const ExecutionRequest& request, const HypervisorNode& node,
              std::vector<Victim> victims, const PreemptionOptions& options)
      : victims_(std::move(victims)), options_(options) {
    const Vec demand = ToVec(request.resources);
    const Vec available = ToVec(node.available);
    for (size_t d = 0; d < kDims; ++d) {
      // Bandwidth is "not tracked" when the request asks none or the node
      // reports no link speed, as in NodeSelection.
      const bool untracked = d == 3 && (demand[d] <= 0 || node.capacity.bandwidth_bps <= 0);
      missing_[d] = untracked ? 0 : std::max<int64_t>(0, demand[d] - available[d]);
    }
  }

  // Returns the best victim set, or nullopt when even all of them fall short.
  std::optional<Choice> Plan() {
    std::vector<size_t> every(victims_.size());
    for (size_t i = 0; i < victims_.size(); ++i) every[i] = i;
    if (!Covers(every)) return std::nullopt;
    std::optional<Choice> best = Exact();
    if (!best) best = Greedy();
    if (options_.max_victims > 0 && best &&
        best->picked.size() > static_cast<size_t>(options_.max_victims)) {
      return std::nullopt;
    }
    return best;
  }

 private:
  bool Covers(const std::vector<size_t>& picked) const {
    for (size_t d = 0; d < kDims; ++d) {
      if (missing_[d] == 0) continue;
      int64_t freed = 0;
      for (size_t i : picked) freed += victims_[i].amount[d];
      if (freed < missing_[d]) return false;
    }
    return true;
  }

  Choice MakeChoice(std::vector<size_t> picked) const {
    Choice c;
    for (size_t i : picked) {
      c.size += victims_[i].size;
      c.max_priority = std::max(c.max_priority, victims_[i].execution->priority);
      c.ids.push_back(victims_[i].execution->id);
    }
    std::sort(c.ids.begin(), c.ids.end());
    c.picked = std::move(picked);
    return c;
  }

  // The smallest k any set could have: in each short dimension, the k
  // largest victims must already cover what is missing.
  size_t LowerBound() const {
    size_t bound = 0;
    for (size_t d = 0; d < kDims; ++d) {
      if (missing_[d] == 0) continue;
      std::vector<int64_t> amounts;
      for (const Victim& v : victims_) amounts.push_back(v.amount[d]);
      std::sort(amounts.rbegin(), amounts.rend());
      int64_t sum = 0;
      size_t k = 0;
      while (sum < missing_[d] && k < amounts.size()) sum += amounts[k++];
      bound = std::max(bound, k);
    }
    return bound;
  }

  static int64_t Binomial(size_t n, size_t k) {
    constexpr int64_t kCap = std::numeric_limits<int64_t>::max() / 64;
    k = std::min(k, n - k);
    int64_t result = 1;
    for (size_t i = 1; i <= k; ++i) {
      result = result * static_cast<int64_t>(n - k + i) / static_cast<int64_t>(i);
      if (result > kCap) return kCap;
    }
    return result;
  }

  // Every subset of each size from the lower bound up, stopping at the first
  // size that has a covering subset. Returns nullopt if the budget ran out.
  std::optional<Choice> Exact() const {
    const size_t n = victims_.size();
    int64_t budget = options_.max_subsets_per_node;
    for (size_t k = LowerBound(); k <= n; ++k) {
      if (k == 0) return MakeChoice({});
      budget -= Binomial(n, k);
      if (budget < 0) return std::nullopt;
      std::optional<Choice> best;
      std::vector<size_t> idx(k);
      for (size_t i = 0; i < k; ++i) idx[i] = i;
      while (true) {
        if (Covers(idx)) {
          Choice c = MakeChoice(idx);
          if (!best || Better(c, *best)) best = std::move(c);
        }
        // Next combination in lexicographic order.
        size_t i = k;
        while (i > 0 && idx[i - 1] == n - k + i - 1) --i;
        if (i == 0) break;
        ++idx[i - 1];
        for (size_t j = i; j < k; ++j) idx[j] = idx[j - 1] + 1;
      }
      if (best) return best;
    }
    return std::nullopt;  // unreachable: the whole set covers
  }

  // Largest share of what is still missing first; then drop, biggest first,
  // any victim the others make unnecessary.
  Choice Greedy() const {
    Vec still = missing_;
    std::vector<bool> taken(victims_.size(), false);
    std::vector<size_t> picked;
    auto short_anywhere = [&still] {
      return std::any_of(still.begin(), still.end(), [](int64_t v) { return v > 0; });
    };
    while (short_anywhere()) {
      std::optional<size_t> pick;
      double pick_gain = -1;
      for (size_t i = 0; i < victims_.size(); ++i) {
        if (taken[i]) continue;
        double gain = 0;
        for (size_t d = 0; d < kDims; ++d) {
          if (still[d] <= 0) continue;
          gain += static_cast<double>(std::min(victims_[i].amount[d], still[d])) /
                  static_cast<double>(missing_[d]);
        }
        const bool better = !pick || gain > pick_gain ||
                            (gain == pick_gain &&
                             std::tie(victims_[i].size, victims_[i].execution->id) <
                                 std::tie(victims_[*pick].size, victims_[*pick].execution->id));
        if (better) {
          pick = i;
          pick_gain = gain;
        }
      }
      taken[*pick] = true;
      picked.push_back(*pick);
      for (size_t d = 0; d < kDims; ++d) still[d] -= victims_[*pick].amount[d];
    }
    std::sort(picked.begin(), picked.end(),
              [this](size_t a, size_t b) { return victims_[a].size > victims_[b].size; });
    for (size_t i = 0; i < picked.size();) {
      std::vector<size_t> without = picked;
      without.erase(without.begin() + static_cast<std::ptrdiff_t>(i));
      if (Covers(without)) {
        picked = std::move(without);
      } else {
        ++i;
      }
    }
    return MakeChoice(std::move(picked));
  }

  std::vector<Victim> victims_;
  const PreemptionOptions& options_;
  Vec missing_{};
};

std::string FormatMiB(int64_t bytes) {
  return absl::StrFormat("%.0f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
}

}  // namespace

std::optional<PreemptionPlan> PlanPreemption(const ExecutionRequest& request,
                                             std::span<const HypervisorNode> nodes,
                                             std::span<const RunningExecution> running,
                                             const PreemptionOptions& options) {
  double total_cpu = 0;
  double total_memory = 0;
  for (const HypervisorNode& node : nodes) {
    total_cpu += static_cast<double>(std::max<int64_t>(0, node.capacity.cpu_millis));
    total_memory += static_cast<double>(std::max<int64_t>(0, node.capacity.memory_bytes));
  }
  auto size_of = [&](const Resources& r) {
    double size = 0;
    if (total_cpu > 0) size += static_cast<double>(r.cpu_millis) / total_cpu;
    if (total_memory > 0) size += static_cast<double>(r.memory_bytes) / total_memory;
    return size;
  };
  // A gap below 1 would let equals evict each other and thrash; never allowed.
  const int64_t max_victim_priority =
      static_cast<int64_t>(request.priority) - std::max<int64_t>(1, options.min_priority_gap);

  std::unordered_map<std::string, std::vector<const RunningExecution*>> eligible_by_node;
  for (const RunningExecution& r : running) {
    if (r.priority <= max_victim_priority) eligible_by_node[r.node_id].push_back(&r);
  }

  std::optional<PreemptionPlan> best_plan;
  std::optional<Choice> best_choice;
  for (const HypervisorNode& node : nodes) {
    if (!NodeMayRun(request, node)) continue;
    std::vector<Victim> victims;
    if (auto it = eligible_by_node.find(node.id); it != eligible_by_node.end()) {
      for (const RunningExecution* r : it->second) {
        victims.push_back({r, ToVec(r->resources), size_of(r->resources)});
      }
    }
    std::optional<Choice> choice = NodePlanner(request, node, victims, options).Plan();
    if (!choice) continue;
    // Across nodes the victims' ids mean nothing; equal cost goes to the
    // smaller node id.
    const int cost = best_choice ? CompareCost(*choice, *best_choice) : -1;
    const bool better = cost < 0 || (cost == 0 && node.id < best_plan->node_id);
    if (!better) continue;

    PreemptionPlan plan;
    plan.node_id = node.id;
    std::vector<size_t> order = choice->picked;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return std::tie(victims[a].size, victims[a].execution->id) <
             std::tie(victims[b].size, victims[b].execution->id);
    });
    for (size_t i : order) {
      plan.victims.push_back(victims[i].execution->id);
      plan.freed += victims[i].execution->resources;
    }
    plan.evicted_size = choice->size;
    plan.max_victim_priority = choice->max_priority;
    if (plan.victims.empty()) {
      plan.reason = absl::StrCat("node ", node.id, " has room without preemption");
    } else {
      plan.reason = absl::StrCat("evict ", plan.victims.size(),
                                 " execution(s) of priority <= ", plan.max_victim_priority, " on ",
                                 node.id, ", freeing ", plan.freed.cpu_millis, "m cpu and ",
                                 FormatMiB(plan.freed.memory_bytes), ", for priority ",
                                 request.priority, " (gap >= ", options.min_priority_gap, ")");
    }
    best_plan = std::move(plan);
    best_choice = std::move(choice);
  }
  return best_plan;
}

}  // namespace flotilla::scheduler
