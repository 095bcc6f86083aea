#include "sim/prewarm_sim.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <memory>
#include <queue>
#include <random>

#include "absl/strings/str_cat.h"

namespace flotilla::sim {

namespace {

constexpr double kDay = 86400;
constexpr double kPi = 3.14159265358979323846;
constexpr double kNever = std::numeric_limits<double>::infinity();

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser: independent streams per seed
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double Exponential(std::mt19937_64& rng, double mean) { return -mean * std::log1p(-Uniform(rng)); }
double LogUniform(std::mt19937_64& rng, double lo, double hi) {
  return lo * std::exp(Uniform(rng) * std::log(hi / lo));
}

struct FunctionShape {
  double base = 0;
  double amplitude = 0;
  double phase = 0;         // fraction of a day where the sine peaks... shifted
  bool sleeps = false;
  double sleep_start = 0;   // fraction of a day
  double duration_mean = 0;
};

double CycleRate(const FunctionShape& f, const PrewarmTraceOptions& o, double t) {
  const double day_pos = std::fmod(t / kDay, 1.0);
  if (f.sleeps) {
    const double len = o.idle_hours / 24;
    const double rel = std::fmod(day_pos - f.sleep_start + 1.0, 1.0);
    if (rel < len) return 0;
  }
  return f.base * std::max(0.0, 1 + f.amplitude * std::sin(2 * kPi * (day_pos - f.phase)));
}

// A policy's view: per function, the idle target now and the keep-alive of
// idle sandboxes beyond it.
class Policy {
 public:
  virtual ~Policy() = default;
  virtual void OnArrival(int f, double t) = 0;
  virtual int Target(int f, double t) = 0;
  virtual double KeepAlive() const = 0;
};

class FixedKeepAlive final : public Policy {
 public:
  explicit FixedKeepAlive(double keep) : keep_(keep) {}
  void OnArrival(int, double) override {}
  int Target(int, double) override { return 0; }
  double KeepAlive() const override { return keep_; }

 private:
  double keep_;
};

class Reactive final : public Policy {
 public:
  Reactive(int functions, const PrewarmSimOptions& o) : recent_(functions), o_(o) {}
  void OnArrival(int f, double t) override { recent_[f].push_back(t); }
  int Target(int f, double t) override {
    auto& q = recent_[f];
    while (!q.empty() && q.front() <= t - o_.reactive_window_s) q.pop_front();
    const double rate = static_cast<double>(q.size()) / o_.reactive_window_s;
    return predict::PoissonQuantile(rate * o_.start_time_s, o_.predictive.quantile);
  }
  double KeepAlive() const override { return o_.reactive_keep_alive_s; }

 private:
  std::vector<std::deque<double>> recent_;
  PrewarmSimOptions o_;
};

class Predictive final : public Policy {
 public:
  Predictive(int functions, predict::PrewarmOptions o) : planner_(o) {
    for (int i = 0; i < functions; ++i) keys_.push_back(absl::StrCat("f", i));
  }
  void OnArrival(int f, double t) override { planner_.Record(keys_[f], Ms(t)); }
  int Target(int f, double t) override { return planner_.PlanKey(keys_[f], Ms(t)).min_idle; }
  double KeepAlive() const override { return 0; }

 private:
  static int64_t Ms(double t) { return static_cast<int64_t>(std::llround(t * 1000)); }
  predict::PrewarmPlanner planner_;
  std::vector<std::string> keys_;
};

struct Idle {
  double since = 0;
  double expire = kNever;
};
struct Making {
  double start = 0;
  double ready = 0;
};
struct Pool {
  std::vector<Idle> idle;  // oldest first; warm starts take the back
  std::deque<Making> making;
  int target = 0;
};

class Run {
 public:
  Run(const PrewarmTrace& trace, Policy& policy, const PrewarmSimOptions& o, std::string name)
      : trace_(trace), policy_(policy), o_(o), pools_(trace.base_rate_per_s.size()) {
    m_.policy = std::move(name);
  }

  PrewarmMetrics Go() {
    using Done = std::pair<double, int>;  // end time, function
    std::priority_queue<Done, std::vector<Done>, std::greater<Done>> running;
    double next_tick = 0;
    size_t i = 0;
    const auto& inv = trace_.invocations;
    while (true) {
      const double t_arrival = i < inv.size() ? inv[i].t_s : kNever;
      const double t_done = running.empty() ? kNever : running.top().first;
      const double t_tick = next_tick < trace_.duration_s ? next_tick : kNever;
      const double t = std::min({t_arrival, t_done, t_tick});
      if (t == kNever) break;
      if (t == t_done) {
        const int f = running.top().second;
        running.pop();
        Park(f, t);
      } else if (t == t_tick) {
        for (int f = 0; f < static_cast<int>(pools_.size()); ++f) Tick(f, t);
        next_tick += o_.plan_interval_s;
      } else {
        const Invocation& a = inv[i++];
        policy_.OnArrival(a.function, t);
        const double start = Acquire(a.function, t);
        running.push({start + a.duration_s, a.function});
      }
    }
    const double end = trace_.duration_s;
    for (auto& p : pools_) {
      for (const Idle& s : p.idle) m_.idle_sandbox_s += std::max(0.0, std::min(s.expire, end) - s.since);
      for (const Making& mk : p.making) m_.idle_sandbox_s += std::max(0.0, end - mk.start);
    }
    m_.cold_start_rate = m_.invocations ? double(m_.cold_starts) / double(m_.invocations) : 0;
    return m_;
  }

 private:
  // Brings pool f to time t: finished pre-creations become idle, expired
  // idle sandboxes are destroyed (their idle time ends at expiry).
  void Settle(int f, double t) {
    Pool& p = pools_[f];
    while (!p.making.empty() && p.making.front().ready <= t) {
      const Making mk = p.making.front();
      p.making.pop_front();
      m_.idle_sandbox_s += mk.ready - mk.start;
      Add(p, Idle{mk.ready, ExpiryFor(p, mk.ready)});
    }
    auto keep = std::remove_if(p.idle.begin(), p.idle.end(), [&](const Idle& s) {
      if (s.expire > t) return false;
      m_.idle_sandbox_s += std::max(0.0, s.expire - s.since);
      return true;
    });
    p.idle.erase(keep, p.idle.end());
  }

  // Sandboxes within the target are kept without expiry.
  double ExpiryFor(const Pool& p, double since) const {
    return static_cast<int>(p.idle.size()) < p.target ? kNever : since + policy_.KeepAlive();
  }
  static void Add(Pool& p, Idle s) {
    // Keep the list ordered by `since` (pre-creations can finish out of order
    // with parks).
    auto at = std::upper_bound(p.idle.begin(), p.idle.end(), s.since,
                               [](double v, const Idle& x) { return v < x.since; });
    p.idle.insert(at, s);
  }

  double Acquire(int f, double t) {
    Settle(f, t);
    Pool& p = pools_[f];
    ++m_.invocations;
    if (!p.idle.empty()) {
      m_.idle_sandbox_s += t - p.idle.back().since;
      p.idle.pop_back();
      Refill(p, t);
      return t;
    }
    ++m_.cold_starts;
    if (!p.making.empty()) {  // one is on its way: wait for it
      const Making mk = p.making.front();
      p.making.pop_front();
      m_.idle_sandbox_s += t - mk.start;
      m_.cold_wait_s += mk.ready - t;
      return mk.ready;
    }
    ++m_.sandboxes_created;
    m_.cold_wait_s += o_.start_time_s;
    return t + o_.start_time_s;
  }

  void Park(int f, double t) {
    Settle(f, t);
    Pool& p = pools_[f];
    Add(p, Idle{t, ExpiryFor(p, t)});
    Settle(f, t);  // a keep-alive of 0 destroys it at once
  }

  void Tick(int f, double t) {
    Settle(f, t);
    Pool& p = pools_[f];
    p.target = policy_.Target(f, t);
    const int n = static_cast<int>(p.idle.size());
    for (int k = 0; k < n; ++k) {
      Idle& s = p.idle[static_cast<size_t>(k)];
      if (k >= n - p.target) {
        s.expire = kNever;  // the newest `target` are kept
      } else if (s.expire == kNever) {
        s.expire = std::max(t, s.since + policy_.KeepAlive());
      }
    }
    Settle(f, t);
    Refill(p, t);
  }

  // Makes sandboxes until the target is idle or on its way, as the agent's
  // refill loop does.
  void Refill(Pool& p, double t) {
    for (int missing = p.target - static_cast<int>(p.idle.size() + p.making.size()); missing > 0;
         --missing) {
      p.making.push_back({t, t + o_.start_time_s});
      ++m_.sandboxes_created;
    }
  }

  const PrewarmTrace& trace_;
  Policy& policy_;
  const PrewarmSimOptions o_;
  std::vector<Pool> pools_;
  PrewarmMetrics m_;
};

}  // namespace

absl::Status PrewarmTraceOptions::Validate() const {
  auto bad = [](const char* key, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("--", key, ": ", why));
  };
  if (functions < 1 || functions > 10000) return bad("functions", "must be in 1..10000");
  if (!(days > 0 && days <= 60)) return bad("days", "must be in (0, 60]");
  if (!(min_rate_per_s > 0 && max_rate_per_s >= min_rate_per_s && max_rate_per_s <= 1000)) {
    return bad("rate", "need 0 < min rate <= max rate <= 1000/s");
  }
  if (!(diurnal_amplitude >= 0.5)) return bad("diurnal-amplitude", "must be >= 0.5");
  if (!(idle_fraction >= 0 && idle_fraction <= 1)) return bad("idle-fraction", "must be in [0, 1]");
  if (!(idle_hours >= 0 && idle_hours < 24)) return bad("idle-hours", "must be in [0, 24)");
  if (!(bursts_per_day >= 0) || !(burst_s > 0) || !(burst_multiplier >= 1)) {
    return bad("bursts", "need bursts_per_day >= 0, burst_s > 0, multiplier >= 1");
  }
  if (!(min_duration_s > 0 && max_duration_s >= min_duration_s)) {
    return bad("duration", "need 0 < min duration <= max duration");
  }
  return absl::OkStatus();
}

PrewarmTrace GeneratePrewarmTrace(const PrewarmTraceOptions& o) {
  PrewarmTrace trace;
  trace.duration_s = o.days * kDay;
  std::mt19937_64 shapes(Mix(o.seed ^ 0x70726577ULL));
  std::vector<FunctionShape> fs(static_cast<size_t>(o.functions));
  for (auto& f : fs) {
    f.base = LogUniform(shapes, o.min_rate_per_s, o.max_rate_per_s);
    f.amplitude = 0.5 + Uniform(shapes) * (o.diurnal_amplitude - 0.5);
    // Peak around 14:00 ± 2 h: sin peaks at a quarter cycle past the phase.
    f.phase = (14.0 / 24 - 0.25) + (Uniform(shapes) - 0.5) * (4.0 / 24);
    f.sleeps = Uniform(shapes) < o.idle_fraction;
    f.sleep_start = (22.0 + Uniform(shapes) * 4) / 24;  // falls asleep 22:00-02:00
    f.duration_mean = LogUniform(shapes, o.min_duration_s, o.max_duration_s);
    trace.base_rate_per_s.push_back(f.base);
  }
  for (int i = 0; i < o.functions; ++i) {
    const FunctionShape& f = fs[static_cast<size_t>(i)];
    std::mt19937_64 rng(Mix(o.seed * 1000003ULL + static_cast<uint64_t>(i)));
    // The cycle: a Poisson process thinned from its peak rate.
    const double peak = f.base * (1 + f.amplitude);
    for (double t = Exponential(rng, 1 / peak); t < trace.duration_s; t += Exponential(rng, 1 / peak)) {
      if (Uniform(rng) * peak < CycleRate(f, o, t)) {
        trace.invocations.push_back({t, i, Exponential(rng, f.duration_mean)});
      }
    }
    // Bursts: unforeseeable by construction (uniform in time).
    if (o.bursts_per_day > 0) {
      const double rate = std::max(o.burst_multiplier * f.base, o.burst_min_rate_per_s);
      for (double b = Exponential(rng, kDay / o.bursts_per_day); b < trace.duration_s;
           b += Exponential(rng, kDay / o.bursts_per_day)) {
        const double end = std::min(b + o.burst_s, trace.duration_s);
        for (double t = b + Exponential(rng, 1 / rate); t < end; t += Exponential(rng, 1 / rate)) {
          trace.invocations.push_back({t, i, Exponential(rng, f.duration_mean)});
        }
      }
    }
  }
  std::sort(trace.invocations.begin(), trace.invocations.end(),
            [](const Invocation& a, const Invocation& b) {
              return a.t_s != b.t_s ? a.t_s < b.t_s : a.function < b.function;
            });
  return trace;
}

std::vector<std::string> PrewarmPolicyNames() { return {"fixed-10m", "reactive", "predictive"}; }

absl::StatusOr<PrewarmMetrics> SimulatePrewarm(const PrewarmTrace& trace, const std::string& policy,
                                               const PrewarmSimOptions& options) {
  PrewarmSimOptions o = options;
  o.predictive.start_time_s = o.start_time_s;
  o.predictive.refill_delay_s = 0;  // the simulated pools refill the moment one is taken
  if (absl::Status st = predict::ValidatePrewarmOptions(o.predictive); !st.ok()) return st;
  if (!(o.start_time_s >= 0) || !(o.plan_interval_s > 0)) {
    return absl::InvalidArgumentError("start time must be >= 0 and the plan interval > 0");
  }
  const int functions = static_cast<int>(trace.base_rate_per_s.size());
  std::unique_ptr<Policy> p;
  if (policy == "fixed-10m") {
    p = std::make_unique<FixedKeepAlive>(o.fixed_keep_alive_s);
  } else if (policy == "reactive") {
    p = std::make_unique<Reactive>(functions, o);
  } else if (policy == "predictive") {
    p = std::make_unique<Predictive>(functions, o.predictive);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown pre-warming policy '", policy, "' (fixed-10m, reactive, predictive)"));
  }
  return Run(trace, *p, o, policy).Go();
}

}  // namespace flotilla::sim
