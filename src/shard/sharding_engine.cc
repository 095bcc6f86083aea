#include "shard/sharding_engine.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::shard {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Above any λ·ΔW a real stage reaches (10^7 msg/s × 10^6 µs).
constexpr double kSaturatedScore = 1e18;

// What the engine knows of one stage while it plans.
struct StageWork {
  const Stage* stage = nullptr;
  double rate = 0;        // λ, messages/s; 0 unknown
  double service_us = 0;  // S; 0 unknown
  double demand = 0;      // cores
  int64_t memory = 0;     // one instance, without its share of state
  int64_t io = 0;
  int shards = 1;
  int max_shards = 1;
  std::string cap_reason;   // why max_shards is what it is
  std::string stop_reason;  // why the greedy loop stopped adding shards
  bool done = false;

  bool has_model() const { return rate > 0 && service_us > 0; }
  double rho(int n) const { return demand / n; }
};

int64_t ShardCpu(const StageWork& w, int n, const ShardingOptions& o) {
  double want = std::ceil(1000.0 * w.rho(n) * o.cpu_headroom);
  return std::max<int64_t>(o.min_shard_cpu_millis,
                           std::min<int64_t>(1000, static_cast<int64_t>(want)));
}

int64_t StageCpu(const StageWork& w, int n, const ShardingOptions& o) {
  return n * ShardCpu(w, n, o);
}

int64_t StateShare(const StageWork& w, int n) {
  if (!w.stage->state || w.stage->state->scope != StateScope::kKeyed) {
    return w.stage->state ? w.stage->state->size_bytes : 0;
  }
  return (w.stage->state->size_bytes + n - 1) / n;
}

int64_t StageMemory(const StageWork& w, int n) { return n * (w.memory + StateShare(w, n)); }

std::string Cores(double c) { return absl::StrFormat("%.2f", c); }
std::string Us(double us) {
  return std::isinf(us) ? "unbounded (saturated)" : absl::StrFormat("%.1f µs", us);
}

// Fills rate, service time, demand and the cap of one stage.
StageWork Describe(const Stage& stage, const StageMeasurement* m) {
  StageWork w;
  w.stage = &stage;
  w.memory = stage.resources.memory_bytes;
  w.io = stage.resources.io_bytes_per_s;
  w.demand = stage.resources.cpu_millis / 1000.0;
  if (m != nullptr) {
    w.rate = m->messages_per_s;
    if (m->memory_bytes > 0) w.memory = m->memory_bytes;
    if (m->io_bytes_per_s > 0) w.io = m->io_bytes_per_s;
    if (m->service_time_us > 0) {
      w.service_us = m->service_time_us;
    } else if (w.rate > 0 && m->cpu_millis > 0) {
      w.service_us = (m->cpu_millis / 1000.0) / w.rate * 1e6;
    }
    if (w.has_model()) {
      w.demand = w.rate * w.service_us / 1e6;
    } else if (m->cpu_millis > 0) {
      w.demand = m->cpu_millis / 1000.0;
    }
  }
  w.max_shards = stage.partitions;
  w.cap_reason =
      absl::StrCat("its ", stage.partitions, " key partition", stage.partitions == 1 ? "" : "s");
  if (stage.max_shards > 0 && stage.max_shards < w.max_shards) {
    w.max_shards = stage.max_shards;
    w.cap_reason = absl::StrCat("max_shards ", stage.max_shards);
  }
  if (stage.state && stage.state->scope == StateScope::kGlobal) {
    w.max_shards = 1;
    w.cap_reason = absl::StrCat("its global state '", stage.state->name, "'");
  }
  return w;
}

// Score of adding one shard to `w`: latency-weighted time saved per second.
// Saturated stages come first, most over-committed first.
// Without a rate there is no latency model: a stage then gets shards until
// each one's CPU, with headroom, fits in one core.
double Gain(const StageWork& w, double o_headroom, double* saved_us) {
  int n = w.shards;
  if (!w.has_model()) {
    *saved_us = kInf;
    return w.rho(n) * o_headroom > 1.0 ? kSaturatedScore * w.rho(n) : 0;
  }
  double now = ExpectedLatencyUs(w.service_us, w.rho(n));
  double next = ExpectedLatencyUs(w.service_us, w.rho(n + 1));
  if (std::isinf(now)) {
    *saved_us = kInf;
    return kSaturatedScore * w.rho(n);
  }
  *saved_us = now - next;
  return w.rate * (now - next);
}

}  // namespace

double ExpectedLatencyUs(double service_us, double rho) {
  if (rho >= 1.0) return kInf;
  return service_us / (1.0 - rho);
}

absl::StatusOr<ShardPlan> PlanShards(const ComponentSpec& spec,
                                     const std::map<std::string, StageMeasurement>& measured,
                                     const NodeResources& node, const ShardingOptions& options) {
  if (node.cpu_millis <= 0) {
    return absl::InvalidArgumentError("plan shards: the node offers no CPU");
  }
  for (const auto& [name, m] : measured) {
    if (spec.FindStage(name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("plan shards: measurements name stage '", name,
                                                     "', which ", spec.name, " does not have"));
    }
  }
  ShardPlan plan;
  plan.component = spec.name;

  int64_t cpu_budget = node.cpu_millis - options.reserve_cpu_millis;
  std::string cpu_budget_why = absl::StrCat("the node's ", node.cpu_millis, "m");
  if (options.reserve_cpu_millis > 0) {
    absl::StrAppend(&cpu_budget_why, " less ", options.reserve_cpu_millis, "m reserved");
  }
  if (spec.usage.cpu_limit_millis > 0 && spec.usage.cpu_limit_millis < cpu_budget) {
    cpu_budget = spec.usage.cpu_limit_millis;
    cpu_budget_why = absl::StrCat("the component's limit of ", cpu_budget, "m");
  }
  int64_t mem_budget =
      node.memory_bytes > 0 ? node.memory_bytes : std::numeric_limits<int64_t>::max();
  if (spec.usage.memory_limit_bytes > 0)
    mem_budget = std::min(mem_budget, spec.usage.memory_limit_bytes);

  std::vector<StageWork> work;
  for (const Stage& stage : spec.stages) {
    auto it = measured.find(stage.name);
    work.push_back(Describe(stage, it == measured.end() ? nullptr : &it->second));
  }

  int64_t cpu_used = 0;
  int64_t mem_used = 0;
  for (const StageWork& w : work) {
    cpu_used += StageCpu(w, 1, options);
    mem_used += StageMemory(w, 1);
  }
  if (cpu_used > cpu_budget) {
    plan.warnings.push_back(absl::StrCat("one shard per stage already needs ", cpu_used,
                                         "m of CPU, over ", cpu_budget_why,
                                         ": the node cannot serve this component; place it on a "
                                         "larger node"));
  }
  if (mem_used > mem_budget) {
    plan.warnings.push_back(absl::StrCat("one shard per stage already needs ", mem_used >> 20,
                                         " MiB of memory, over the ", mem_budget >> 20,
                                         " MiB the node or the component's limit allows"));
  }

  // Greedy: one shard at a time, to the stage where it saves the most.
  for (;;) {
    StageWork* best = nullptr;
    double best_score = 0;
    for (StageWork& w : work) {
      if (w.done) continue;
      if (w.shards >= w.max_shards) {
        w.done = true;
        w.stop_reason = absl::StrCat("capped at ", w.max_shards, " by ", w.cap_reason);
        continue;
      }
      double saved_us = 0;
      double score = Gain(w, options.cpu_headroom, &saved_us);
      if (!w.has_model() && score == 0) {
        w.done = true;
        w.stop_reason = "enough shards for its CPU demand (no measured rate, so no latency model)";
        continue;
      }
      if (w.has_model() && saved_us < options.min_saved_us) {
        w.done = true;
        w.stop_reason = absl::StrFormat(
            "stopped: shard %d would save %.2f µs a message, under the %.1f µs one more shard "
            "costs",
            w.shards + 1, saved_us, options.min_saved_us);
        continue;
      }
      int64_t extra_cpu = StageCpu(w, w.shards + 1, options) - StageCpu(w, w.shards, options);
      int64_t extra_mem = StageMemory(w, w.shards + 1) - StageMemory(w, w.shards);
      if (cpu_used + extra_cpu > cpu_budget) {
        w.done = true;
        w.stop_reason = cpu_used > cpu_budget
                            ? absl::StrCat("stopped by CPU contention: the stages already need ",
                                           cpu_used, "m, more than ", cpu_budget_why)
                            : absl::StrCat("stopped by CPU contention: shard ", w.shards + 1,
                                           " needs ", extra_cpu, "m more, and ", cpu_used, "m of ",
                                           cpu_budget_why, " are taken");
        continue;
      }
      if (mem_used + extra_mem > mem_budget) {
        w.done = true;
        w.stop_reason = absl::StrCat("stopped by memory: shard ", w.shards + 1, " needs ",
                                     extra_mem >> 20, " MiB more");
        continue;
      }
      if (best == nullptr || score > best_score) {
        best = &w;
        best_score = score;
      }
    }
    if (best == nullptr) break;
    cpu_used += StageCpu(*best, best->shards + 1, options) - StageCpu(*best, best->shards, options);
    mem_used += StageMemory(*best, best->shards + 1) - StageMemory(*best, best->shards);
    ++best->shards;
  }

  // Shards, stage decisions and reasons.
  std::map<std::string, std::vector<const ShardDefinition*>> by_stage;
  std::map<std::string, double> stage_latency;
  for (const StageWork& w : work) {
    StageDecision d;
    d.stage = w.stage->name;
    d.shards = w.shards;
    d.demand_cores = w.demand;
    d.service_time_us = w.service_us;
    if (w.has_model()) {
      d.latency_one_shard_us = ExpectedLatencyUs(w.service_us, w.rho(1));
      d.latency_chosen_us = ExpectedLatencyUs(w.service_us, w.rho(w.shards));
      stage_latency[d.stage] = d.latency_chosen_us;
      d.reasons.push_back(absl::StrFormat("demand %s cores (%.0f msg/s × %.1f µs)", Cores(w.demand),
                                          w.rate, w.service_us));
      d.reasons.push_back(w.shards == 1
                              ? absl::StrCat("1 shard: expected latency ", Us(d.latency_chosen_us))
                              : absl::StrCat(w.shards, " shards: expected latency ",
                                             Us(d.latency_one_shard_us), " with one shard, ",
                                             Us(d.latency_chosen_us), " with ", w.shards));
    } else {
      d.reasons.push_back(absl::StrCat("demand ", Cores(w.demand),
                                       " cores (declared or measured CPU; no message rate)"));
    }
    d.saturated = w.rho(w.shards) >= 1.0;
    if (!w.stop_reason.empty()) d.reasons.push_back(w.stop_reason);
    if (d.saturated) {
      d.reasons.push_back(absl::StrCat("saturated: each shard needs ", Cores(w.rho(w.shards)),
                                       " cores of work and can use one; the stage needs more "
                                       "shards or a larger node"));
      plan.warnings.push_back(absl::StrCat("stage ", d.stage, " is saturated with ", w.shards,
                                           w.shards == 1 ? " shard" : " shards"));
    }
    plan.stages.push_back(d);

    const int p = w.stage->partitions;
    for (int i = 0; i < w.shards; ++i) {
      ShardDefinition s;
      s.stage = w.stage->name;
      s.index = i;
      s.id = absl::StrCat(s.stage, "/", i);
      s.code = w.stage->code;
      s.partitions = {static_cast<int>(int64_t{i} * p / w.shards),
                      static_cast<int>(int64_t{i + 1} * p / w.shards)};
      s.cpu_millis = ShardCpu(w, w.shards, options);
      s.memory_bytes = w.memory + StateShare(w, w.shards);
      s.io_bytes_per_s = w.io / w.shards;
      s.data = w.stage->data;
      s.state = w.stage->state ? w.stage->state->name : "";
      s.expected_utilisation = w.rho(w.shards);
      plan.cpu_millis += s.cpu_millis;
      plan.memory_bytes += s.memory_bytes;
      plan.shards.push_back(std::move(s));
    }
  }
  for (const ShardDefinition& s : plan.shards) by_stage[s.stage].push_back(&s);

  for (const Edge& edge : spec.edges) {
    for (const ShardDefinition* a : by_stage[edge.from]) {
      for (const ShardDefinition* b : by_stage[edge.to]) {
        if (edge.routing == Routing::kKey && (a->partitions.end <= b->partitions.begin ||
                                              b->partitions.end <= a->partitions.begin)) {
          continue;
        }
        plan.edges.push_back({a->id, b->id, edge.routing});
      }
    }
  }

  // Slowest source-to-sink path, in stage order of a topological sort (the
  // parser guarantees a DAG; spec order need not be topological).
  bool all_modelled = stage_latency.size() == spec.stages.size();
  if (all_modelled) {
    std::map<std::string, double> arrive;  // latency up to and including the stage
    std::map<std::string, int> indegree;
    for (const Stage& s : spec.stages) indegree[s.name] = 0;
    for (const Edge& e : spec.edges) ++indegree[e.to];
    std::vector<std::string> ready;
    for (const Stage& s : spec.stages) {
      if (indegree[s.name] == 0) {
        ready.push_back(s.name);
        arrive[s.name] = stage_latency[s.name];
      }
    }
    while (!ready.empty()) {
      std::string n = ready.back();
      ready.pop_back();
      plan.path_latency_us = std::max(plan.path_latency_us, arrive[n]);
      for (const Edge& e : spec.edges) {
        if (e.from != n) continue;
        arrive[e.to] =
            std::max(arrive[e.to], arrive[n] + options.hop_latency_us + stage_latency[e.to]);
        if (--indegree[e.to] == 0) ready.push_back(e.to);
      }
    }
    if (spec.usage.slo_latency_p99_us > 0 && !std::isinf(plan.path_latency_us)) {
      // For an M/M/1 queue the p99 of the time in system is ln(100) ≈ 4.6
      // times its mean.
      double p99 = plan.path_latency_us * std::log(100.0);
      if (p99 > spec.usage.slo_latency_p99_us) {
        plan.warnings.push_back(absl::StrFormat(
            "expected p99 latency %.0f µs (4.6 × the %.0f µs mean of the slowest path) is over the "
            "SLO of %d µs",
            p99, plan.path_latency_us, spec.usage.slo_latency_p99_us));
      }
    }
  }
  return plan;
}

}  // namespace flotilla::shard
