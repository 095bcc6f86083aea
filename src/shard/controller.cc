#include "shard/controller.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace flotilla::shard {
namespace {

struct Dim {
  const char* name;
  const char* unit;
  int64_t scale;  // printed value = raw / scale
};
constexpr Dim kCpu{"cpu", "m", 1};
constexpr Dim kMem{"memory", " MiB", 1 << 20};

std::string Show(const Dim& d, int64_t v) { return absl::StrCat(v / d.scale, d.unit); }

int64_t Scaled(int64_t v, double f) {
  return static_cast<int64_t>(std::ceil(static_cast<double>(v) * f));
}

}  // namespace

int64_t PredictNext(const std::vector<int64_t>& history, double alpha, double beta) {
  if (history.empty()) return 0;
  double level = static_cast<double>(history[0]);
  double trend = history.size() > 1 ? static_cast<double>(history[1] - history[0]) : 0;
  for (size_t i = 1; i < history.size(); ++i) {
    double prev = level;
    level = alpha * static_cast<double>(history[i]) + (1 - alpha) * (level + trend);
    trend = beta * (level - prev) + (1 - beta) * trend;
  }
  double next = level + trend;
  // A sudden drop is believed halfway at a time: lowering a limit too early
  // costs a throttled shard, keeping it a round longer costs only slack.
  double floor = static_cast<double>(history.back()) / 2;
  return static_cast<int64_t>(std::llround(std::max(next, floor)));
}

const char* ActionName(Action action) {
  switch (action) {
    case Action::kKeep:
      return "keep";
    case Action::kRaise:
      return "raise";
    case Action::kLower:
      return "lower";
    case Action::kMove:
      return "move";
  }
  return "?";
}

std::vector<ResourceDecision> Decide(const std::vector<ShardUsage>& shards,
                                     const NodeCapacity& node, const ControllerOptions& options) {
  const size_t n = shards.size();
  std::vector<ResourceDecision> out(n);
  // Per dimension: limit, prediction, last sample.
  struct Row {
    int64_t limit[2];
    int64_t predicted[2];
    int64_t last[2];
    std::vector<std::string> notes;
    bool lowered = false;
    bool raised = false;
    bool short_of_room = false;
  };
  std::vector<Row> rows(n);
  const Dim dims[2] = {kCpu, kMem};
  const int64_t capacity[2] = {node.cpu_millis, node.memory_bytes};
  const int64_t minimum[2] = {options.min_cpu_millis, options.min_memory_bytes};
  int64_t committed[2] = {0, 0};

  for (size_t i = 0; i < n; ++i) {
    const ShardUsage& s = shards[i];
    const std::vector<int64_t>* hist[2] = {&s.cpu_millis_history, &s.memory_bytes_history};
    rows[i].limit[0] = s.cpu_limit_millis;
    rows[i].limit[1] = s.memory_limit_bytes;
    for (int d = 0; d < 2; ++d) {
      rows[i].predicted[d] =
          PredictNext(*hist[d], options.smoothing_level, options.smoothing_trend);
      rows[i].last[d] = hist[d]->empty() ? 0 : hist[d]->back();
      committed[d] += rows[i].limit[d];
    }
  }

  // 1. Lower the limits of shards using under half of them, and predicted
  // to stay under: the room goes back to the node for this round's raises.
  for (size_t i = 0; i < n; ++i) {
    Row& r = rows[i];
    for (int d = 0; d < 2; ++d) {
      const Dim& dim = dims[d];
      bool has_history =
          d == 0 ? !shards[i].cpu_millis_history.empty() : !shards[i].memory_bytes_history.empty();
      if (!has_history || r.limit[d] <= 0) continue;
      double below = options.lower_below_fraction * static_cast<double>(r.limit[d]);
      if (static_cast<double>(r.last[d]) >= below || static_cast<double>(r.predicted[d]) >= below)
        continue;
      int64_t target =
          std::max(minimum[d], Scaled(std::max(r.predicted[d], r.last[d]), options.headroom));
      if (target >= r.limit[d]) continue;
      r.notes.push_back(absl::StrCat(dim.name, " ", Show(dim, r.limit[d]), " -> ",
                                     Show(dim, target), ": using ", Show(dim, r.last[d]),
                                     ", predicted ", Show(dim, r.predicted[d]),
                                     ", under half the limit"));
      committed[d] -= r.limit[d] - target;
      r.limit[d] = target;
      r.lowered = true;
    }
  }

  // 2. Raise, highest priority first; ties to the larger deficit.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto deficit = [&](size_t i) {
    return std::max<int64_t>(0, rows[i].predicted[0] - rows[i].limit[0]);
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (shards[a].priority != shards[b].priority) return shards[a].priority > shards[b].priority;
    return deficit(a) > deficit(b);
  });
  for (size_t i : order) {
    Row& r = rows[i];
    for (int d = 0; d < 2; ++d) {
      const Dim& dim = dims[d];
      if (r.predicted[d] <= r.limit[d] || r.limit[d] <= 0) continue;
      int64_t want = Scaled(r.predicted[d], options.headroom);
      int64_t room = std::max<int64_t>(0, capacity[d] - committed[d]);
      int64_t grant = std::min(want, r.limit[d] + room);
      if (grant > r.limit[d]) {
        r.notes.push_back(absl::StrCat(
            dim.name, " ", Show(dim, r.limit[d]), " -> ", Show(dim, grant), ": predicted ",
            Show(dim, r.predicted[d]), " is over the limit",
            grant < want
                ? absl::StrCat(" (wanted ", Show(dim, want), ", the node had only that room)")
                : ""));
        committed[d] += grant - r.limit[d];
        r.limit[d] = grant;
        r.raised = true;
      }
      if (r.limit[d] < r.predicted[d]) {
        r.short_of_room = true;
        r.notes.push_back(absl::StrCat(
            "the node cannot serve it: predicted ", dim.name, " ", Show(dim, r.predicted[d]),
            ", at most ", Show(dim, r.limit[d]), " available at priority ", shards[i].priority));
      }
    }
  }

  for (size_t i = 0; i < n; ++i) {
    const Row& r = rows[i];
    ResourceDecision& d = out[i];
    d.shard = shards[i].shard;
    d.predicted_cpu_millis = r.predicted[0];
    d.predicted_memory_bytes = r.predicted[1];
    if (r.short_of_room) {
      // It keeps what room the node had (the limits below) until the
      // caller moves it.
      d.action = Action::kMove;
      d.cpu_limit_millis = r.limit[0];
      d.memory_limit_bytes = r.limit[1];
      d.reason = absl::StrCat("move: ", r.notes.back());
      continue;
    }
    d.cpu_limit_millis = r.limit[0];
    d.memory_limit_bytes = r.limit[1];
    d.action = r.raised ? Action::kRaise : r.lowered ? Action::kLower : Action::kKeep;
    if (r.notes.empty()) {
      d.reason = absl::StrCat("keep: cpu ", r.last[0], "m used, predicted ", r.predicted[0],
                              "m, limit ", r.limit[0], "m");
    } else {
      d.reason = absl::StrCat(ActionName(d.action), ": ");
      for (size_t k = 0; k < r.notes.size(); ++k) d.reason += (k ? "; " : "") + r.notes[k];
    }
  }
  return out;
}

}  // namespace flotilla::shard
