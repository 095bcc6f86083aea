#include "migrate/target.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::migrate {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
}  // namespace

double PricePerSecond(const Demand& d, double per_cpu_second, double per_gib_second) {
  return per_cpu_second * d.cpu_cores + per_gib_second * (static_cast<double>(d.memory_bytes) / kGiB);
}

Scored ScoreNode(const Demand& d, double stall_price_per_s, const Candidate& c, const Options& o) {
  Scored s;
  s.node_id = c.node_id;
  if (!c.online) {
    s.why_not = "offline";
  } else if (!c.can_restore) {
    s.why_not = "cannot restore checkpoints";
  } else if (!c.checkpoint_unavailable.empty()) {
    s.why_not = absl::StrCat("checkpointing ", c.checkpoint_unavailable);
  } else if (c.free_memory_bytes < d.memory_bytes) {
    s.why_not = absl::StrFormat("%d MiB free < %d MiB predicted", c.free_memory_bytes >> 20,
                                d.memory_bytes >> 20);
  } else if (c.free_cpu_cores + 1e-9 < d.cpu_cores) {
    s.why_not = absl::StrFormat("%.2f cores free < %.2f predicted", c.free_cpu_cores, d.cpu_cores);
  } else {
    s.feasible = true;
  }
  const double bw = c.bandwidth_bytes_per_s > 0 ? c.bandwidth_bytes_per_s : o.default_bandwidth_bytes_per_s;
  const double gib = static_cast<double>(std::max<int64_t>(d.image_bytes, 0)) / kGiB;
  const double restore = c.restore_s > 0 ? c.restore_s : o.restore_base_s + o.restore_s_per_gib * gib;
  s.migration_s = static_cast<double>(std::max<int64_t>(d.image_bytes, 0)) / bw + restore;
  s.migration_cost = s.migration_s * stall_price_per_s;
  s.run_cost = PricePerSecond(d, c.per_cpu_second, c.per_gib_second) * std::max(d.remaining_s, 0.0);
  s.cost = s.run_cost + s.migration_cost;
  return s;
}

absl::Status CheckSource(const std::string& source, const std::vector<Candidate>& candidates) {
  for (const Candidate& c : candidates) {
    if (c.node_id != source) continue;
    if (c.checkpoint_unavailable.empty()) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("node ", source, " cannot checkpoint: checkpointing ",
                                                      c.checkpoint_unavailable));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("node ", source, " is not among the candidates: nothing says it can checkpoint"));
}

absl::StatusOr<Choice> ChooseTarget(const Demand& d, const std::string& source,
                                    double source_per_cpu_second, double source_per_gib_second,
                                    const std::vector<Candidate>& candidates, const Options& o) {
  // A source described among the candidates must be able to checkpoint.
  for (const Candidate& c : candidates) {
    if (c.node_id == source && !c.checkpoint_unavailable.empty()) return CheckSource(source, candidates);
  }
  const double stall = PricePerSecond(d, source_per_cpu_second, source_per_gib_second);
  Choice choice;
  for (const Candidate& c : candidates) {
    if (c.node_id == source) continue;
    choice.ranked.push_back(ScoreNode(d, stall, c, o));
  }
  std::map<std::string, int64_t> free_memory;
  for (const Candidate& c : candidates) free_memory[c.node_id] = c.free_memory_bytes;
  std::sort(choice.ranked.begin(), choice.ranked.end(), [&](const Scored& a, const Scored& b) {
    if (a.feasible != b.feasible) return a.feasible;
    if (a.cost != b.cost) return a.cost < b.cost;
    if (free_memory[a.node_id] != free_memory[b.node_id]) {
      return free_memory[a.node_id] > free_memory[b.node_id];
    }
    return a.node_id < b.node_id;
  });
  if (choice.ranked.empty() || !choice.ranked.front().feasible) {
    std::string why;
    for (const Scored& s : choice.ranked) absl::StrAppend(&why, why.empty() ? "" : "; ", s.node_id, ": ", s.why_not);
    return absl::NotFoundError(absl::StrCat("no node can take the execution",
                                            why.empty() ? " (no other node)" : ": " + why));
  }
  choice.best = choice.ranked.front();
  choice.node_id = choice.best.node_id;
  choice.reason = absl::StrFormat(
      "cheapest feasible node %s: cost %.6g = run %.6g + migration %.6g (%.2f s)", choice.node_id,
      choice.best.cost, choice.best.run_cost, choice.best.migration_cost, choice.best.migration_s);
  return choice;
}

}  // namespace flotilla::migrate
