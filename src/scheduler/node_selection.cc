#include "scheduler/node_selection.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flotilla::scheduler {
namespace {

// A 64-bit mix (splitmix64's finaliser) of the request's hash and the node
// id's: std::hash of a string alone is not mixed well enough for its order
// to look random across nodes with similar names.
uint64_t TieHash(uint64_t request_hash, const std::string& node_id) {
  uint64_t x = request_hash ^ (std::hash<std::string>{}(node_id) + 0x9e3779b97f4a7c15ULL);
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

using model::ExecutionRequest;
using model::HypervisorNode;
using model::PlacementMode;
using model::Resources;

// Keeps the "no node fits" summary to one readable line.
constexpr size_t kMaxReasonChars = 300;

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

void AddUnique(std::vector<std::string>* list, const std::string& value) {
  if (!Contains(*list, value)) list->push_back(value);
}

const char* ModeName(PlacementMode mode) {
  switch (mode) {
    case PlacementMode::kScore:
      return "score";
    case PlacementMode::kBid:
      return "bid";
    case PlacementMode::kCheapest:
      return "cheapest";
  }
  return "score";
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

std::string PartsText(const CandidateVerdict& verdict) {
  std::vector<std::string> parts;
  for (const auto& [name, points] : verdict.parts) {
    parts.push_back(absl::StrFormat("%s %.1f", name, points));
  }
  return absl::StrFormat("score %.1f (%s)", verdict.score, absl::StrJoin(parts, ", "));
}

}  // namespace

absl::Status SelectionOptions::Validate() const {
  if (top_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler top_k must be >= 1, got ", top_k));
  }
  if (bid_k < 1) {
    return absl::InvalidArgumentError(absl::StrCat("scheduler bid_k must be >= 1, got ", bid_k));
  }
  if (!std::isfinite(tie_epsilon) || tie_epsilon < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("scheduler tie_epsilon must be a finite number >= 0, got %g", tie_epsilon));
  }
  if (!std::isfinite(time_price_per_s) || time_price_per_s < 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "scheduler time_price_per_s must be a finite number >= 0, got %g", time_price_per_s));
  }
  return absl::OkStatus();
}

NodeSelection::NodeSelection(Weights weights, SelectionOptions options)
    : NodeSelection(weights, options, DefaultFilters()) {}

NodeSelection::NodeSelection(Weights weights, SelectionOptions options, FilterChain filters)
    : weights_(weights),
      options_(options),
      filters_(std::move(filters)),
      ever_filters_(EverFeasibleFilters()),
      scorers_(ScorersFor(weights, options.strategy)) {
  for (const WeightedScorer& s : scorers_) weight_sum_ += s.weight;
  needs_latency_ = weights_.latency > 0;
  needs_cost_ = weights_.cost > 0;
}

size_t NodeSelection::SampleSize(size_t n) const {
  if (options_.sample_k > 0) return options_.sample_k;
  // ceil(log2 n) for n >= 2.
  const size_t log2 = n <= 1 ? 0 : std::bit_width(n - 1);
  return std::max<size_t>(2, 2 * log2);
}

Decision NodeSelection::Select(const ExecutionRequest& request,
                               std::span<const HypervisorNode> nodes) const {
  Scratch scratch;
  return SelectWith(request, nodes, nullptr, default_predictor_, scratch);
}

Decision NodeSelection::Select(const ExecutionRequest& request,
                               std::span<const HypervisorNode> nodes, std::mt19937_64* rng,
                               const LatencyPredictor* predictor) {
  return SelectWith(request, nodes, rng, predictor != nullptr ? *predictor : default_predictor_,
                    scratch_);
}

void NodeSelection::Evaluate(const ExecutionRequest& request, std::span<const HypervisorNode> nodes,
                             std::span<const uint32_t> subset, const LatencyPredictor& predictor,
                             Scratch& scratch, Decision* decision) const {
  const bool collect = options_.collect_candidates;
  const bool predict = needs_latency_ || collect || request.placement.mode != PlacementMode::kScore;
  const bool price = needs_cost_ || collect || request.placement.mode != PlacementMode::kScore;
  const size_t count = subset.empty() ? nodes.size() : subset.size();
  scratch.feasible.clear();
  scratch.locality.Reset(request);
  if (collect) {
    decision->candidates.clear();
    decision->candidates.reserve(count);
  }

  ScoringContext context;
  context.locality = &scratch.locality;
  // Pass 1: filters, and the per-decision facts scorers normalise by.
  for (size_t k = 0; k < count; ++k) {
    const uint32_t i = subset.empty() ? static_cast<uint32_t>(k) : subset[k];
    const HypervisorNode& node = nodes[i];
    scratch.locality.Observe(node);
    Feasible f{.index = i};
    if (collect) {
      CandidateVerdict& verdict = decision->candidates.emplace_back();
      verdict.node_id = node.id;
      verdict.index = i;
      verdict.feasible = PassesAll(filters_, request, node, &verdict.rejected_because);
      if (!verdict.feasible) continue;
      f.verdict = static_cast<int32_t>(decision->candidates.size() - 1);
    } else if (!PassesAll(filters_, request, node, nullptr)) {
      continue;
    }
    if (predict) f.predicted_ms = predictor.PredictMs(request, node);
    if (price) f.cost_per_s = CostPerSecond(request, node);
    context.max_predicted_ms = std::max(context.max_predicted_ms, f.predicted_ms);
    context.max_cost_per_s = std::max(context.max_cost_per_s, f.cost_per_s);
    scratch.feasible.push_back(f);
  }

  // Pass 2: scores.
  for (Feasible& f : scratch.feasible) {
    const HypervisorNode& node = nodes[f.index];
    context.predicted_ms = f.predicted_ms;
    CandidateVerdict* verdict = f.verdict >= 0 ? &decision->candidates[f.verdict] : nullptr;
    double score = 0;
    for (const WeightedScorer& s : scorers_) {
      const double points = 100 * s.weight * s.scorer->Score(request, node, context) / weight_sum_;
      score += points;
      if (verdict != nullptr) verdict->parts.emplace_back(s.scorer->name(), points);
    }
    f.score = score;
    if (verdict != nullptr) {
      verdict->score = score;
      verdict->predicted_ms = f.predicted_ms;
      verdict->cost_per_s = f.cost_per_s;
    }
  }
}

Decision NodeSelection::SelectWith(const ExecutionRequest& request,
                                   std::span<const HypervisorNode> nodes, std::mt19937_64* rng,
                                   const LatencyPredictor& predictor, Scratch& scratch) const {
  Decision decision;
  const PlacementMode mode = request.placement.mode;
  decision.mode = ModeName(mode);
  const bool collect = options_.collect_candidates;
  const size_t n = nodes.size();
  // Grown once to the cluster's size (a fallback from a sample scans all),
  // so later decisions on a cluster of this size do not allocate.
  scratch.feasible.reserve(n);
  scratch.pool.reserve(n);

  // Power-of-k choices: a uniform sample without replacement (Floyd's
  // algorithm), kept in input order so candidates read like a full scan.
  std::string fallback_note;
  const size_t k = SampleSize(n);
  if (rng != nullptr && n > options_.sampling_threshold && k < n) {
    scratch.sample.clear();
    scratch.sample.reserve(k);
    for (size_t j = n - k; j < n; ++j) {
      const uint32_t t = static_cast<uint32_t>(std::uniform_int_distribution<size_t>(0, j)(*rng));
      const bool taken =
          std::find(scratch.sample.begin(), scratch.sample.end(), t) != scratch.sample.end();
      scratch.sample.push_back(taken ? static_cast<uint32_t>(j) : t);
    }
    std::sort(scratch.sample.begin(), scratch.sample.end());
    Evaluate(request, nodes, scratch.sample, predictor, scratch, &decision);
    decision.sampled = !scratch.feasible.empty();
    if (!decision.sampled && collect) {
      fallback_note =
          absl::StrFormat("; no node of a sample of %d fit, so all %d were scanned", k, n);
    }
  }
  if (!decision.sampled) Evaluate(request, nodes, {}, predictor, scratch, &decision);

  std::vector<Feasible>& feasible = scratch.feasible;
  if (feasible.empty()) {
    decision.reason = collect ? NoFitReason(decision.candidates) : "no node fits now";
    return decision;
  }

  // Higher score, then fewer running executions, then the larger rendezvous
  // hash of (request, node), then the smaller id. The hash spreads requests
  // that tie over every tied node (the smallest id alone sent a burst of
  // short tasks to one node: none was running long enough to count), yet a
  // request meets the same order on every retry and on every manager.
  // Hashed only when two nodes tie, so decisions without ties pay nothing.
  const uint64_t request_hash = std::hash<std::string>{}(request.id);
  // Everything after the score: also the order among near-ties below.
  auto calmer = [&](const Feasible& a, const Feasible& b) {
    const HypervisorNode& na = nodes[a.index];
    const HypervisorNode& nb = nodes[b.index];
    if (na.running_executions != nb.running_executions) {
      return na.running_executions < nb.running_executions;
    }
    const uint64_t ta = TieHash(request_hash, na.id);
    const uint64_t tb = TieHash(request_hash, nb.id);
    if (ta != tb) return ta > tb;
    return na.id < nb.id;
  };
  auto better = [&](const Feasible& a, const Feasible& b) {
    if (a.score != b.score) return a.score > b.score;
    return calmer(a, b);
  };
  auto better_at = [&](uint32_t a, uint32_t b) { return better(feasible[a], feasible[b]); };
  size_t best = 0;
  for (size_t i = 1; i < feasible.size(); ++i) {
    if (better(feasible[i], feasible[best])) best = i;
  }

  size_t chosen = best;
  std::string mode_note;
  std::vector<uint32_t>& pool = scratch.pool;
  if (mode == PlacementMode::kScore && options_.top_k > 1 && rng != nullptr) {
    pool.clear();
    const double floor = feasible[best].score - options_.tie_epsilon;
    for (size_t i = 0; i < feasible.size(); ++i) {
      if (feasible[i].score >= floor) pool.push_back(static_cast<uint32_t>(i));
    }
    const size_t take = std::min(pool.size(), static_cast<size_t>(options_.top_k));
    std::partial_sort(pool.begin(), pool.begin() + take, pool.end(), better_at);
    chosen = pool[std::uniform_int_distribution<size_t>(0, take - 1)(*rng)];
    if (collect && take > 1) {
      mode_note = absl::StrFormat("; drawn at random among the %d best within %.1f points", take,
                                  options_.tie_epsilon);
    }
  } else if (mode == PlacementMode::kScore && options_.tie_epsilon > 0) {
    // Deterministic near-ties: scores within tie_epsilon points of the best
    // count as equal, and the node with fewer running executions, then the
    // rendezvous hash, takes the request. Scores of idle nodes differ by
    // noise (each agent samples its host's free memory at its own moment),
    // and without a band that noise alone decided: one node took every short
    // task (busiest 4.5x the mean share over 50 nodes).
    const double floor = feasible[best].score - options_.tie_epsilon;
    for (size_t i = 0; i < feasible.size(); ++i) {
      if (i != chosen && feasible[i].score >= floor && calmer(feasible[i], feasible[chosen])) {
        chosen = i;
      }
    }
    if (collect && chosen != best) {
      mode_note = absl::StrFormat(
          "; within %.1f points of the best (%s, %.1f): a tie, given to fewer running "
          "executions, then the request's hash",
          options_.tie_epsilon, nodes[feasible[best].index].id, feasible[best].score);
    }
  } else if (mode == PlacementMode::kBid) {
    pool.clear();
    for (size_t i = 0; i < feasible.size(); ++i) pool.push_back(static_cast<uint32_t>(i));
    const size_t take = std::min(pool.size(), static_cast<size_t>(std::max(1, options_.bid_k)));
    std::partial_sort(pool.begin(), pool.begin() + take, pool.end(), better_at);
    double best_bid = std::numeric_limits<double>::infinity();
    for (size_t b = 0; b < take; ++b) {
      const Feasible& f = feasible[pool[b]];
      const double seconds = f.predicted_ms / 1000.0;
      const double bid = f.cost_per_s * seconds + seconds * options_.time_price_per_s;
      if (f.verdict >= 0) decision.candidates[f.verdict].bid = bid;
      if (bid < best_bid) {  // strict: an equal bid loses to the better score
        best_bid = bid;
        chosen = pool[b];
      }
    }
    if (collect) {
      const Feasible& f = feasible[chosen];
      mode_note =
          absl::StrFormat("; lowest bid %.4g of %d (predicted %.0f ms at %.4g/s, time at %.4g/s)",
                          best_bid, take, f.predicted_ms, f.cost_per_s, options_.time_price_per_s);
    }
  } else if (mode == PlacementMode::kCheapest) {
    const int64_t bound = request.placement.latency_bound_ms;
    std::optional<size_t> cheapest;
    size_t fastest = best;
    for (size_t i = 0; i < feasible.size(); ++i) {
      const Feasible& f = feasible[i];
      const Feasible& q = feasible[fastest];
      if (f.predicted_ms < q.predicted_ms || (f.predicted_ms == q.predicted_ms && better(f, q))) {
        fastest = i;
      }
      if (bound > 0 && f.predicted_ms > static_cast<double>(bound)) continue;
      if (!cheapest.has_value()) {
        cheapest = i;
        continue;
      }
      const Feasible& c = feasible[*cheapest];
      if (f.cost_per_s < c.cost_per_s || (f.cost_per_s == c.cost_per_s && better(f, c))) {
        cheapest = i;
      }
    }
    chosen = cheapest.value_or(fastest);
    if (collect) {
      const Feasible& f = feasible[chosen];
      if (!cheapest.has_value()) {
        mode_note = absl::StrFormat(
            "; no node meets the %d ms latency bound, so the fastest was chosen (predicted %.0f "
            "ms, %.4g/s)",
            bound, f.predicted_ms, f.cost_per_s);
      } else if (bound > 0) {
        mode_note = absl::StrFormat(
            "; cheapest at %.4g/s within the %d ms latency bound "
            "(predicted %.0f ms)",
            f.cost_per_s, bound, f.predicted_ms);
      } else {
        mode_note = absl::StrFormat("; cheapest at %.4g/s (predicted %.0f ms, no latency bound)",
                                    f.cost_per_s, f.predicted_ms);
      }
    }
  }

  const Feasible& winner = feasible[chosen];
  decision.chosen = winner.index;
  decision.node_id = nodes[winner.index].id;
  decision.score = winner.score;
  if (!collect) return decision;

  const CandidateVerdict& verdict = decision.candidates[winner.verdict];
  decision.reason = absl::StrCat(verdict.node_id, ": ", PartsText(verdict));
  if (scratch.locality.has_data()) {
    absl::StrAppend(&decision.reason,
                    absl::StrFormat("; holds %.0f%% of the input data",
                                    100 * scratch.locality.Fraction(nodes[winner.index])));
  }
  absl::StrAppend(&decision.reason, mode_note);
  if (feasible.size() > 1) {
    absl::StrAppend(&decision.reason,
                    absl::StrFormat("; best of %d fitting nodes", feasible.size()));
  }
  if (decision.sampled) {
    absl::StrAppend(&decision.reason, absl::StrFormat("; sampled %d of %d nodes", k, n));
  }
  absl::StrAppend(&decision.reason, fallback_note);
  return decision;
}

absl::Status NodeSelection::CheckEverFeasible(const ExecutionRequest& request,
                                              std::span<const HypervisorNode> nodes) const {
  if (nodes.empty()) return absl::OkStatus();
  std::vector<std::pair<std::string, std::string>> failures;  // node id, why
  for (const HypervisorNode& node : nodes) {
    std::string why;
    if (PassesAll(ever_filters_, request, node, &why)) return absl::OkStatus();
    failures.emplace_back(node.id, std::move(why));
  }

  // Say which single requirement no node meets, so the user knows what to
  // change; fall back to per-node reasons when only the combination fails.
  const Resources& demand = request.resources;
  Resources largest;
  int max_trust = std::numeric_limits<int>::min();
  bool bandwidth_unknown = false;
  bool tenant_allowed = false;
  std::vector<std::string> isolations;  // offered by some node
  std::vector<std::string> regions;     // of some node
  for (const HypervisorNode& node : nodes) {
    largest.cpu_millis = std::max(largest.cpu_millis, node.capacity.cpu_millis);
    largest.memory_bytes = std::max(largest.memory_bytes, node.capacity.memory_bytes);
    largest.storage_bytes = std::max(largest.storage_bytes, node.capacity.storage_bytes);
    largest.bandwidth_bps = std::max(largest.bandwidth_bps, node.capacity.bandwidth_bps);
    bandwidth_unknown |= node.capacity.bandwidth_bps <= 0;
    max_trust = std::max(max_trust, node.security.trust_level);
    tenant_allowed |= node.security.allowed_tenants.empty() ||
                      Contains(node.security.allowed_tenants, request.user_id);
    if (!node.security.isolation.empty()) AddUnique(&isolations, node.security.isolation);
    if (const std::string* region = NodeRegion(node)) AddUnique(&regions, *region);
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
    const std::string_view kind = IsolationKind(capability);
    if (!kind.empty()) {
      if (Contains(isolations, std::string(kind))) continue;
      missing.push_back(absl::StrCat(
          "no node offers isolation '", std::string(kind),
          "' (offered: ", isolations.empty() ? "none" : absl::StrJoin(isolations, ", "), ")"));
      continue;
    }
    bool offered = false;
    for (const HypervisorNode& node : nodes) {
      offered |= Contains(node.security.capabilities, capability);
    }
    if (!offered) missing.push_back(absl::StrCat("no node has capability '", capability, "'"));
  }
  const std::vector<std::string>& required_regions = request.placement.required_regions;
  if (!required_regions.empty() &&
      std::none_of(regions.begin(), regions.end(),
                   [&](const std::string& r) { return Contains(required_regions, r); })) {
    missing.push_back(absl::StrCat(
        "no node is in the required regions (", absl::StrJoin(required_regions, ", "),
        "); nodes are in: ", regions.empty() ? "no region" : absl::StrJoin(regions, ", ")));
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
