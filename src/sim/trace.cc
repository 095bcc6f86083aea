#include "sim/trace.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::sim {
namespace {

using model::DataSet;
using model::ExecutionRequest;
using model::HypervisorNode;

constexpr int64_t kGiB = 1ll << 30;

// Independent streams per purpose, so that changing how many draws one part
// makes (say, more nodes) does not reshuffle the others.
enum class Stream : uint64_t { kNodes = 1, kDataSets, kReplicas, kArrivals, kFailures };

// SplitMix64: turns (seed, stream) into a well-mixed engine seed.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::mt19937_64 Engine(uint64_t seed, Stream stream) {
  return std::mt19937_64(Mix(seed ^ Mix(static_cast<uint64_t>(stream))));
}

// The std distributions are implementation-defined; these draws are not, so
// a seed means the same trace with any standard library.
double Uniform(std::mt19937_64& rng) {  // [0, 1)
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}
bool Chance(std::mt19937_64& rng, double p) { return Uniform(rng) < p; }
size_t Index(std::mt19937_64& rng, size_t n) { return n == 0 ? 0 : rng() % n; }
double Exponential(std::mt19937_64& rng, double mean) { return -mean * std::log1p(-Uniform(rng)); }
// Pareto(shape, scale): scale / U^(1/shape), U in (0, 1].
double Pareto(std::mt19937_64& rng, double shape, double scale) {
  return scale / std::pow(1.0 - Uniform(rng), 1.0 / shape);
}

template <typename T>
const T& Weighted(std::mt19937_64& rng, const std::vector<std::pair<T, double>>& choices) {
  double total = 0;
  for (const auto& [value, weight] : choices) total += weight;
  double u = Uniform(rng) * total;
  for (const auto& [value, weight] : choices) {
    if (u < weight) return value;
    u -= weight;
  }
  return choices.back().first;
}

std::string NodeId(size_t i) { return absl::StrFormat("n%03d", i); }
std::string DataKey(size_t i) { return absl::StrFormat("ds%03d", i); }

std::vector<DataSet> MakeDataSets(const TraceOptions& o) {
  std::mt19937_64 rng = Engine(o.seed, Stream::kDataSets);
  std::vector<DataSet> sets;
  sets.reserve(o.data_sets);
  for (int i = 0; i < o.data_sets; ++i) {
    double size = Pareto(rng, o.data_size_shape, static_cast<double>(o.data_size_min_bytes));
    size = std::min(size, static_cast<double>(o.data_size_max_bytes));
    sets.push_back(DataSet{DataKey(i), static_cast<int64_t>(size)});
  }
  return sets;
}

// Resources per request: cpu from a few common sizes, memory per core from a
// few ratios; both skewed to the small end as real function workloads are.
model::Resources DrawResources(std::mt19937_64& rng) {
  static const std::vector<std::pair<int64_t, double>> kCpu = {
      {250, 0.10}, {500, 0.20}, {1000, 0.30}, {2000, 0.20}, {4000, 0.15}, {8000, 0.05}};
  static const std::vector<std::pair<int64_t, double>> kMiBPerCore = {
      {512, 0.3}, {1024, 0.35}, {2048, 0.25}, {4096, 0.1}};
  model::Resources r;
  r.cpu_millis = Weighted(rng, kCpu);
  r.memory_bytes = r.cpu_millis * Weighted(rng, kMiBPerCore) * (1ll << 20) / 1000;
  r.storage_bytes = 1 * kGiB;
  return r;
}

// Data keys for one request: 1..max distinct keys, popular sets (low
// indices) more often: index = floor(count * u^2).
std::vector<std::string> DrawDataKeys(std::mt19937_64& rng, const TraceOptions& o) {
  std::vector<std::string> keys;
  if (o.data_sets <= 0 || !Chance(rng, o.data_request_fraction)) return keys;
  int want = 1 + static_cast<int>(Index(rng, std::max(o.max_data_keys, 1)));
  want = std::min(want, o.data_sets);
  while (static_cast<int>(keys.size()) < want) {
    double u = Uniform(rng);
    std::string key = DataKey(static_cast<size_t>(u * u * o.data_sets));
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(std::move(key));
  }
  return keys;
}

Arrival MakeArrival(std::mt19937_64& rng, const TraceOptions& o, size_t index, int64_t time_ms) {
  static const std::vector<std::string> kTemplates = {"python", "node", "shell", "java"};
  Arrival a;
  a.time_ms = time_ms;
  ExecutionRequest& r = a.request;
  r.id = absl::StrCat("e", index);
  r.user_id = absl::StrCat("tenant", Index(rng, std::max(o.tenants, 1)));
  double p = Uniform(rng);
  r.priority = p < o.high_priority_fraction                             ? 90
               : p < o.high_priority_fraction + o.low_priority_fraction ? 10
                                                                        : 50;
  r.resources = DrawResources(rng);
  r.data_keys = DrawDataKeys(rng, o);
  if (Chance(rng, o.min_trust_fraction)) r.security.min_trust_level = 7;
  if (Chance(rng, o.capability_fraction)) {
    r.security.required_capabilities.push_back(Chance(rng, 0.8) ? "network-egress" : "gpu");
  }
  if (!o.regions.empty() && Chance(rng, o.preferred_region_fraction)) {
    r.placement.preferred_regions.push_back(o.regions[Index(rng, o.regions.size())]);
  }
  if (Chance(rng, o.bid_fraction)) r.placement.mode = model::PlacementMode::kBid;
  r.template_name = kTemplates[Index(rng, kTemplates.size())];
  r.function = absl::StrCat("fn", Index(rng, 50));

  double duration_s = Pareto(rng, o.duration_shape, o.duration_scale_s);
  duration_s = std::min(duration_s, o.max_duration_s);
  a.duration_ms = std::max<int64_t>(1, std::llround(duration_s * 1000));
  a.deadline_ms = time_ms + std::llround(o.slo_factor * static_cast<double>(a.duration_ms) +
                                         o.slo_grace_s * 1000);
  return a;
}

// Non-homogeneous Poisson arrivals by thinning (Lewis and Shedler, 1979):
// candidates at the peak rate, each kept with probability rate(t) / peak.
std::vector<Arrival> MakeArrivals(const TraceOptions& o) {
  std::mt19937_64 rng = Engine(o.seed, Stream::kArrivals);
  std::vector<Arrival> arrivals;
  const double peak = o.arrival_rate_per_s * (1 + o.diurnal_amplitude);
  if (peak <= 0) return arrivals;
  double t = 0;
  while (true) {
    t += Exponential(rng, 1.0 / peak);
    if (t >= o.duration_s) break;
    double rate =
        o.arrival_rate_per_s *
        (1 + o.diurnal_amplitude * std::sin(2 * std::numbers::pi * t / o.diurnal_period_s));
    if (!Chance(rng, rate / peak)) continue;
    const int64_t time_ms = static_cast<int64_t>(t * 1000);
    int count = 1 + (Chance(rng, o.burst_probability) ? o.burst_size : 0);
    for (int i = 0; i < count; ++i) {
      arrivals.push_back(MakeArrival(rng, o, arrivals.size(), time_ms));
    }
  }
  return arrivals;
}

std::vector<Failure> MakeFailures(const TraceOptions& o) {
  std::mt19937_64 rng = Engine(o.seed, Stream::kFailures);
  std::vector<Failure> failures;
  if (o.failures_per_node_hour <= 0) return failures;
  const double mean_up_s = 3600.0 / o.failures_per_node_hour;
  for (int node = 0; node < o.nodes; ++node) {
    double t = Exponential(rng, mean_up_s);
    while (t < o.duration_s) {
      double repair_s = std::max(1.0, Exponential(rng, o.mean_repair_s));
      failures.push_back(Failure{static_cast<int64_t>(t * 1000), static_cast<size_t>(node),
                                 static_cast<int64_t>(repair_s * 1000)});
      t += repair_s + Exponential(rng, mean_up_s);
    }
  }
  std::sort(failures.begin(), failures.end(), [](const Failure& a, const Failure& b) {
    return std::tie(a.time_ms, a.node) < std::tie(b.time_ms, b.node);
  });
  return failures;
}

absl::Status Bad(const char* field, double value, const char* want) {
  return absl::InvalidArgumentError(
      absl::StrFormat("trace option %s = %g is invalid: want %s", field, value, want));
}

bool IsFraction(double v) { return std::isfinite(v) && v >= 0 && v <= 1; }

}  // namespace

absl::Status TraceOptions::Validate() const {
  if (nodes < 1) return Bad("nodes", nodes, ">= 1");
  if (!IsFraction(small_fraction)) return Bad("small_fraction", small_fraction, "0..1");
  if (!IsFraction(medium_fraction) || small_fraction + medium_fraction > 1) {
    return Bad("medium_fraction", medium_fraction, "0..1 - small_fraction");
  }
  if (!IsFraction(trusted_fraction)) return Bad("trusted_fraction", trusted_fraction, "0..1");
  if (!IsFraction(egress_fraction)) return Bad("egress_fraction", egress_fraction, "0..1");
  if (!IsFraction(gpu_fraction)) return Bad("gpu_fraction", gpu_fraction, "0..1");
  if (!(cost_per_cpu_second >= 0)) return Bad("cost_per_cpu_second", cost_per_cpu_second, ">= 0");
  if (!IsFraction(cost_spread)) return Bad("cost_spread", cost_spread, "0..1");
  if (!(duration_s > 0) || !std::isfinite(duration_s)) return Bad("duration_s", duration_s, "> 0");
  if (!(arrival_rate_per_s > 0) || !std::isfinite(arrival_rate_per_s)) {
    return Bad("arrival_rate_per_s", arrival_rate_per_s, "> 0");
  }
  if (!IsFraction(diurnal_amplitude)) return Bad("diurnal_amplitude", diurnal_amplitude, "0..1");
  if (!(diurnal_period_s > 0)) return Bad("diurnal_period_s", diurnal_period_s, "> 0");
  if (!IsFraction(burst_probability)) return Bad("burst_probability", burst_probability, "0..1");
  if (burst_size < 0) return Bad("burst_size", burst_size, ">= 0");
  if (!(duration_shape > 0)) return Bad("duration_shape", duration_shape, "> 0");
  if (!(duration_scale_s > 0)) return Bad("duration_scale_s", duration_scale_s, "> 0");
  if (!(max_duration_s >= duration_scale_s)) {
    return Bad("max_duration_s", max_duration_s, ">= duration_scale_s");
  }
  if (data_sets < 0) return Bad("data_sets", data_sets, ">= 0");
  if (!(data_size_shape > 0)) return Bad("data_size_shape", data_size_shape, "> 0");
  if (data_size_min_bytes < 0) return Bad("data_size_min_bytes", data_size_min_bytes, ">= 0");
  if (data_size_max_bytes < data_size_min_bytes) {
    return Bad("data_size_max_bytes", data_size_max_bytes, ">= data_size_min_bytes");
  }
  if (data_replication < 1) return Bad("data_replication", data_replication, ">= 1");
  if (!IsFraction(data_request_fraction)) {
    return Bad("data_request_fraction", data_request_fraction, "0..1");
  }
  if (max_data_keys < 1) return Bad("max_data_keys", max_data_keys, ">= 1");
  if (!IsFraction(high_priority_fraction)) {
    return Bad("high_priority_fraction", high_priority_fraction, "0..1");
  }
  if (!IsFraction(low_priority_fraction) || high_priority_fraction + low_priority_fraction > 1) {
    return Bad("low_priority_fraction", low_priority_fraction, "0..1 - high_priority_fraction");
  }
  if (!IsFraction(min_trust_fraction)) return Bad("min_trust_fraction", min_trust_fraction, "0..1");
  if (!IsFraction(capability_fraction)) {
    return Bad("capability_fraction", capability_fraction, "0..1");
  }
  if (!IsFraction(preferred_region_fraction)) {
    return Bad("preferred_region_fraction", preferred_region_fraction, "0..1");
  }
  if (!IsFraction(bid_fraction)) return Bad("bid_fraction", bid_fraction, "0..1");
  if (tenants < 1) return Bad("tenants", tenants, ">= 1");
  if (!(slo_factor >= 1)) return Bad("slo_factor", slo_factor, ">= 1");
  if (!(slo_grace_s >= 0)) return Bad("slo_grace_s", slo_grace_s, ">= 0");
  if (!(failures_per_node_hour >= 0) || !std::isfinite(failures_per_node_hour)) {
    return Bad("failures_per_node_hour", failures_per_node_hour, ">= 0");
  }
  if (!(mean_repair_s > 0)) return Bad("mean_repair_s", mean_repair_s, "> 0");
  return absl::OkStatus();
}

std::vector<HypervisorNode> GenerateCluster(const TraceOptions& o) {
  std::mt19937_64 rng = Engine(o.seed, Stream::kNodes);
  std::vector<HypervisorNode> nodes(std::max(o.nodes, 0));
  for (size_t i = 0; i < nodes.size(); ++i) {
    HypervisorNode& n = nodes[i];
    n.id = NodeId(i);
    n.address = absl::StrCat("sim://", n.id);
    double u = Uniform(rng);
    int cores = u < o.small_fraction ? 4 : u < o.small_fraction + o.medium_fraction ? 8 : 16;
    int64_t gib = cores == 4 ? 8 : cores == 8 ? 32 : 64;
    n.capacity =
        model::Resources{cores * 1000ll, gib * kGiB, cores * 25 * kGiB, o.node_bandwidth_bps};
    n.available = n.capacity;
    n.security.trust_level =
        Chance(rng, o.trusted_fraction) ? 8 : 3 + static_cast<int>(Index(rng, 4));
    if (Chance(rng, o.egress_fraction)) n.security.capabilities.push_back("network-egress");
    if (Chance(rng, o.gpu_fraction)) n.security.capabilities.push_back("gpu");
    n.security.isolation = "container";
    if (!o.regions.empty()) n.labels["region"] = o.regions[Index(rng, o.regions.size())];
    // Bigger machines are cheaper per core, as with cloud instance families.
    double class_discount = cores == 4 ? 1.0 : cores == 8 ? 0.9 : 0.8;
    double spread = 1 - o.cost_spread + 2 * o.cost_spread * Uniform(rng);
    n.cost.per_cpu_second = o.cost_per_cpu_second * class_discount * spread;
    n.cost.per_gib_second = n.cost.per_cpu_second / 4;
    n.status = model::NodeStatus::kOnline;
    n.epoch = 1;
  }

  // Each data set on `data_replication` distinct random nodes.
  std::mt19937_64 replicas = Engine(o.seed, Stream::kReplicas);
  std::vector<size_t> order(nodes.size());
  for (const DataSet& data : MakeDataSets(o)) {
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    size_t copies = std::min(static_cast<size_t>(o.data_replication), nodes.size());
    for (size_t i = 0; i < copies; ++i) {  // partial Fisher-Yates
      std::swap(order[i], order[i + Index(replicas, order.size() - i)]);
      nodes[order[i]].data_sets.push_back(data);
    }
  }
  return nodes;
}

Trace GenerateTrace(const TraceOptions& o) {
  Trace trace;
  trace.arrivals = MakeArrivals(o);
  trace.failures = MakeFailures(o);
  trace.data_sets = MakeDataSets(o);
  return trace;
}

}  // namespace flotilla::sim
