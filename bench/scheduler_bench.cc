// Placement decisions per second of NodeSelection, and the placement quality
// lost by power-of-k sampling.
//
//   BM_Select/full/N      every node examined (sampling off)
//   BM_Select/sampled/N   power-of-k sampling (k = 2 * ceil(log2 N))
//   BM_SelectAllScorers/full/1000, BM_SelectBid/full/1000: the other costs
//   BM_SamplingQuality/N  mean and worst score (0..100 points) lost by the
//                         sampled choice against the full scan's best
//
// The hot path as the issue sets it: one core, collect_candidates off, node
// state updated in place (each placement reserves its resources on the
// chosen node and releases them `kRunning` decisions later), so the cluster
// stays in a steady state of partial use rather than filling up.
//
// Targets: >= 20,000 decisions/s at 1,000 nodes full scan; >= 50,000/s at
// 10,000 nodes sampled.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"
#include "model/model.h"
#include "scheduler/node_selection.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kGiB = int64_t{1} << 30;
constexpr size_t kRequests = 4096;  // distinct requests, cycled

template <typename T>
const T& Pick(std::mt19937_64& rng, const std::vector<T>& from) {
  return from[rng() % from.size()];
}

// A heterogeneous cluster: 4..32 cores, 8..128 GiB, 0..90% already in use,
// 2% offline, 1% draining, trust 0..10, four regions, some tenant allow
// lists, GPUs, micro-VMs, prices, warm pools and cached data sets.
std::vector<HypervisorNode> MakeCluster(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  const std::vector<int64_t> cores = {4, 8, 16, 32};
  const std::vector<int64_t> gib = {8, 16, 32, 64, 128};
  const std::vector<std::string> regions = {"us-east", "us-west", "eu-west", "ap-south"};
  const std::vector<std::string> templates = {"python3", "shell", "node", "ruby", "java"};
  std::vector<HypervisorNode> nodes(n);
  for (size_t i = 0; i < n; ++i) {
    HypervisorNode& node = nodes[i];
    node.id = absl::StrFormat("node-%05d", i);
    node.address = absl::StrFormat("10.0.%d.%d:7000", i / 250, i % 250);
    node.status = unit(rng) < 0.02 ? model::NodeStatus::kOffline : model::NodeStatus::kOnline;
    node.draining = unit(rng) < 0.01;
    node.capacity = {.cpu_millis = 1000 * Pick(rng, cores),
                     .memory_bytes = kGiB * Pick(rng, gib),
                     .storage_bytes = 500 * kGiB,
                     .bandwidth_bps = 10'000'000'000};
    const double used = 0.9 * unit(rng);
    node.available = node.capacity;
    node.available.cpu_millis -= static_cast<int64_t>(used * node.capacity.cpu_millis);
    node.available.memory_bytes -= static_cast<int64_t>(used * node.capacity.memory_bytes);
    node.running_executions = static_cast<int>(rng() % 12);
    node.security.trust_level = static_cast<int>(rng() % 11);
    if (unit(rng) < 0.1) node.security.allowed_tenants = {"alice", "bob"};
    node.security.capabilities = {"network-egress"};
    if (unit(rng) < 0.3) node.security.capabilities.push_back("gpu");
    node.security.isolation = unit(rng) < 0.3 ? "microvm" : "process";
    node.labels["region"] = Pick(rng, regions);
    node.labels["zone"] = node.labels["region"] + "-" + std::to_string(rng() % 3);
    node.cost = {.per_cpu_second = 0.00001 * (1 + rng() % 10),
                 .per_gib_second = 0.000001 * (1 + rng() % 10)};
    for (const std::string& t : templates) {
      if (unit(rng) < 0.3) node.warm_sandboxes[t] = static_cast<int>(rng() % 4);
    }
    if (unit(rng) < 0.1) {
      for (int d = 0; d < 3; ++d) {
        node.data_sets.push_back(
            {absl::StrFormat("dataset/%d", rng() % 50), static_cast<int64_t>(rng() % 1000) * kMiB});
      }
    }
  }
  return nodes;
}

// Mostly small requests; 10% need a GPU, 5% a micro-VM, 5% a required
// region, 30% name data, half prefer a region.
std::vector<ExecutionRequest> MakeRequests(
    size_t count, uint64_t seed, model::PlacementMode mode = model::PlacementMode::kScore) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0, 1);
  const std::vector<int64_t> cpu = {250, 500, 500, 1000, 1000, 2000, 4000};
  const std::vector<int64_t> mem_mib = {128, 256, 512, 1024, 2048, 4096, 8192};
  const std::vector<std::string> tenants = {"alice", "bob", "carol", "dave"};
  const std::vector<std::string> regions = {"us-east", "us-west", "eu-west", "ap-south"};
  const std::vector<std::string> templates = {"python3", "shell", "node", "ruby", "java"};
  std::vector<ExecutionRequest> requests(count);
  for (size_t i = 0; i < count; ++i) {
    ExecutionRequest& r = requests[i];
    r.id = absl::StrFormat("ex-%06d", i);
    r.user_id = Pick(rng, tenants);
    r.resources = {.cpu_millis = Pick(rng, cpu), .memory_bytes = kMiB * Pick(rng, mem_mib)};
    r.security.min_trust_level = static_cast<int>(rng() % 7);
    if (unit(rng) < 0.1) r.security.required_capabilities.push_back("gpu");
    if (unit(rng) < 0.05) r.security.required_capabilities.push_back("isolation:microvm");
    if (unit(rng) < 0.05) r.placement.required_regions = {Pick(rng, regions)};
    if (unit(rng) < 0.5) r.placement.preferred_regions = {Pick(rng, regions), Pick(rng, regions)};
    if (unit(rng) < 0.3) {
      r.data_keys = {absl::StrFormat("dataset/%d", rng() % 50),
                     absl::StrFormat("dataset/%d", rng() % 50)};
    }
    r.template_name = Pick(rng, templates);
    r.placement.mode = mode;
    r.placement.latency_bound_ms = 500;
  }
  return requests;
}

SelectionOptions HotPath(bool sampled) {
  SelectionOptions options;
  options.collect_candidates = false;
  options.sampling_threshold = sampled ? 0 : std::numeric_limits<size_t>::max();
  return options;
}

// Runs decisions against a cluster kept in a steady state: each placement
// reserves its resources on the chosen node (an incremental update of the
// snapshot) and is released kRunning placements later.
void RunDecisions(benchmark::State& state, NodeSelection selection,
                  const std::vector<ExecutionRequest>& requests) {
  std::vector<HypervisorNode> nodes = MakeCluster(static_cast<size_t>(state.range(0)), 1);
  struct Placement {
    uint32_t node = 0;
    model::Resources resources;
    bool live = false;
  };
  const size_t kRunning = nodes.size();  // about one running execution per node
  std::vector<Placement> running(kRunning);
  size_t next = 0;
  size_t request = 0;
  int64_t placed = 0;
  std::mt19937_64 rng(7);
  for (auto _ : state) {
    const ExecutionRequest& r = requests[request++ % requests.size()];
    const Decision d = selection.Select(r, nodes, &rng);
    benchmark::DoNotOptimize(d.chosen);
    Placement& slot = running[next++ % kRunning];
    if (slot.live) {
      HypervisorNode& done = nodes[slot.node];
      done.available += slot.resources;
      --done.running_executions;
    }
    slot.live = d.chosen.has_value();
    if (!slot.live) continue;
    ++placed;
    slot.node = static_cast<uint32_t>(*d.chosen);
    slot.resources = r.resources;
    nodes[slot.node].available -= r.resources;
    ++nodes[slot.node].running_executions;
  }
  state.counters["decisions/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["placed%"] = 100.0 * static_cast<double>(placed) /
                              static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

void BM_Select(benchmark::State& state, bool sampled) {
  RunDecisions(state, NodeSelection(Weights{}, HotPath(sampled)), MakeRequests(kRequests, 2));
}
BENCHMARK_CAPTURE(BM_Select, full, false)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK_CAPTURE(BM_Select, sampled, true)->Arg(100)->Arg(1000)->Arg(10000);

void BM_SelectAllScorers(benchmark::State& state, bool sampled) {
  const Weights all{.cpu = 0.3,
                    .memory = 0.3,
                    .security = 0.2,
                    .locality = 0.2,
                    .geo = 0.2,
                    .warm = 0.2,
                    .latency = 0.2,
                    .cost = 0.2,
                    .balance = 0.2};
  SelectionOptions options = HotPath(sampled);
  options.top_k = 3;
  RunDecisions(state, NodeSelection(all, options), MakeRequests(kRequests, 2));
}
BENCHMARK_CAPTURE(BM_SelectAllScorers, full, false)->Arg(1000)->Arg(10000);
BENCHMARK_CAPTURE(BM_SelectAllScorers, sampled, true)->Arg(10000);

void BM_SelectBid(benchmark::State& state, bool sampled) {
  RunDecisions(state, NodeSelection(Weights{}, HotPath(sampled)),
               MakeRequests(kRequests, 2, model::PlacementMode::kBid));
}
BENCHMARK_CAPTURE(BM_SelectBid, full, false)->Arg(1000);

void BM_SelectCheapest(benchmark::State& state, bool sampled) {
  RunDecisions(state, NodeSelection(Weights{}, HotPath(sampled)),
               MakeRequests(kRequests, 2, model::PlacementMode::kCheapest));
}
BENCHMARK_CAPTURE(BM_SelectCheapest, full, false)->Arg(1000);

// The quality measurement, not a speed one: over many random requests on a
// fixed cluster, how many score points the sampled choice is worth less than
// the full scan's best, both judged by the full scan's scores (so the
// sampled decision's narrower view of data-set sizes does not flatter it).
void BM_SamplingQuality(benchmark::State& state) {
  const std::vector<HypervisorNode> nodes = MakeCluster(static_cast<size_t>(state.range(0)), 1);
  const std::vector<ExecutionRequest> requests = MakeRequests(2000, 3);
  SelectionOptions sampled_options = HotPath(/*sampled=*/true);
  NodeSelection sampled(Weights{}, sampled_options);
  SelectionOptions full_options;  // collect_candidates: every node's score
  full_options.sampling_threshold = std::numeric_limits<size_t>::max();
  NodeSelection full(Weights{}, full_options);
  std::mt19937_64 rng(5);
  double loss_sum = 0;
  double loss_max = 0;
  double best_sum = 0;
  double data_loss_sum = 0;  // requests that name data sets
  int64_t data_compared = 0;
  int64_t compared = 0;
  int64_t same = 0;
  int64_t fallbacks = 0;
  for (auto _ : state) {
    for (const ExecutionRequest& r : requests) {
      const Decision best = full.Select(r, nodes, nullptr);
      const Decision pick = sampled.Select(r, nodes, &rng);
      if (!best.chosen.has_value() || !pick.chosen.has_value()) continue;
      const double loss = best.score - best.candidates[*pick.chosen].score;
      loss_sum += loss;
      loss_max = std::max(loss_max, loss);
      best_sum += best.score;
      ++compared;
      if (!r.data_keys.empty()) {
        data_loss_sum += loss;
        ++data_compared;
      }
      same += *best.chosen == *pick.chosen ? 1 : 0;
      fallbacks += pick.sampled ? 0 : 1;
    }
  }
  const double c = static_cast<double>(std::max<int64_t>(1, compared));
  state.counters["mean_loss_points"] = loss_sum / c;
  state.counters["max_loss_points"] = loss_max;
  state.counters["mean_best_points"] = best_sum / c;
  state.counters["mean_loss_with_data"] =
      data_loss_sum / static_cast<double>(std::max<int64_t>(1, data_compared));
  state.counters["mean_loss_without_data"] =
      (loss_sum - data_loss_sum) /
      static_cast<double>(std::max<int64_t>(1, compared - data_compared));
  state.counters["same_choice%"] = 100.0 * static_cast<double>(same) / c;
  state.counters["fallback%"] = 100.0 * static_cast<double>(fallbacks) / c;
  state.counters["decisions"] = c;
}
BENCHMARK(BM_SamplingQuality)
    ->Arg(100)
    ->Arg(1000)
    ->Arg(10000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flotilla::scheduler
