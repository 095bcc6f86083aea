#include "monitor/resize_policy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "predict/holt_winters.h"

namespace flotilla::monitor {

namespace {

constexpr int64_t kMiB = 1 << 20;

int64_t RoundUpMi(double bytes) {
  if (!(bytes > 0)) return 0;
  return static_cast<int64_t>(std::ceil(bytes / kMiB)) * kMiB;
}

// Highest memory of the samples taken at or after `since_ms`.
int64_t PeakSince(const UsageRing& ring, int64_t since_ms) {
  int64_t peak = 0;
  for (size_t i = ring.size(); i-- > 0;) {
    const UsageSample& s = ring.at(i);
    if (s.t_ms < since_ms) break;
    peak = std::max(peak, s.memory_bytes);
  }
  return peak;
}

std::string Millicores(int64_t m) { return absl::StrCat(m, "m"); }

}  // namespace

std::string FormatMi(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30) && bytes % (int64_t{1} << 30) == 0) {
    return absl::StrCat(bytes >> 30, "Gi");
  }
  if (bytes >= (int64_t{4} << 30)) return absl::StrFormat("%.1fGi", bytes / double(1 << 30));
  return absl::StrCat((bytes + kMiB / 2) / kMiB, "Mi");
}

absl::Status ValidateResizeOptions(const ResizeOptions& o) {
  auto bad = [](const std::string& key, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("resize.", key, ": ", why));
  };
  if (!(o.raise_risk > 0 && o.raise_risk < 1)) return bad("raise_risk", "must be in (0, 1)");
  if (!(o.horizon_s > 0)) return bad("horizon_s", "must be > 0");
  if (!(o.level > 0 && o.level < 1)) return bad("level", "must be in (0, 1)");
  if (!(o.headroom >= 0)) return bad("headroom", "must be >= 0");
  if (!(o.lower_utilisation > 0 && o.lower_utilisation < 1)) {
    return bad("lower_utilisation", "must be in (0, 1)");
  }
  // A lowered limit must leave the peak well inside it, or the next sample
  // would raise it again (oscillation).
  if (!(o.lower_margin >= 1.5)) return bad("lower_margin", "must be >= 1.5");
  if (o.lower_utilisation * o.lower_margin >= 1) {
    return bad("lower_margin", "lower_utilisation x lower_margin must be < 1, or a lowered "
                               "limit could be lowered again at once");
  }
  // The ring holds 60 s at 10 Hz: a longer window could never be covered.
  if (o.lower_after_ms < 1000 || o.lower_after_ms > 55000) {
    return bad("lower_after_ms", "must be in 1000..55000 (the sample ring covers 60 s)");
  }
  if (o.min_step_bytes < 0) return bad("min_step_bytes", "must be >= 0");
  if (o.cooldown_ms < 0) return bad("cooldown_ms", "must be >= 0");
  if (!(o.cpu_raise_utilisation > 0 && o.cpu_raise_utilisation <= 1)) {
    return bad("cpu_raise_utilisation", "must be in (0, 1]");
  }
  if (o.min_cpu_step_millis < 1) return bad("min_cpu_step_millis", "must be >= 1");
  if (o.max_memory_bytes < 0 || o.max_cpu_millis < 0) return bad("max_*", "must be >= 0");
  if (o.interval_ms < 50) return bad("interval_ms", "must be >= 50");
  if (o.host_reserve_bytes < 0) return bad("host_reserve_bytes", "must be >= 0");
  return absl::OkStatus();
}

ResizeDecision DecideResize(const ResizeInput& in, const ResizeOptions& o) {
  ResizeDecision d;
  d.memory_limit_bytes = in.memory_limit_bytes;
  d.cpu_limit_millis = in.cpu_limit_millis;
  if (!o.enabled || in.ring == nullptr || in.ring->empty() || in.memory_limit_bytes <= 0) return d;
  const UsageRing& ring = *in.ring;
  const bool cooling = in.last_change_ms > 0 && in.now_ms - in.last_change_ms < o.cooldown_ms;
  std::vector<std::string> why;
  bool raised = false, lowered = false;

  // Memory, upwards.
  const bool risky = in.risk >= o.raise_risk;
  if (risky && !cooling) {
    int64_t want = RoundUpMi(static_cast<double>(in.memory_upper_bytes) * (1 + o.headroom));
    want = std::max(want, in.memory_limit_bytes + o.min_step_bytes);
    if (o.max_memory_bytes > 0) want = std::min(want, o.max_memory_bytes);
    const int64_t need = want - in.memory_limit_bytes;
    const int64_t room = std::max<int64_t>(0, in.room_memory_bytes);
    const std::string forecast = absl::StrFormat(
        "risk %.2f >= %.2f, forecast upper %s in %.0fs", in.risk, o.raise_risk,
        FormatMi(in.memory_upper_bytes), o.horizon_s);
    if (need > room) {
      d.needs_migration = true;
      int64_t partial = in.memory_limit_bytes + room / kMiB * kMiB;
      if (o.max_memory_bytes > 0) partial = std::min(partial, o.max_memory_bytes);
      if (partial - in.memory_limit_bytes >= std::max<int64_t>(o.min_step_bytes, kMiB)) {
        d.memory_limit_bytes = partial;
        raised = true;
        why.push_back(absl::StrCat("memory ", FormatMi(in.memory_limit_bytes), " -> ",
                                   FormatMi(partial), " (all the room left)"));
      }
      why.push_back(absl::StrCat(forecast, "; needs ", FormatMi(want), ", the node has room for ",
                                 FormatMi(in.memory_limit_bytes + room), ": needs migration"));
    } else if (need > 0) {
      d.memory_limit_bytes = want;
      raised = true;
      why.push_back(absl::StrCat("memory ", FormatMi(in.memory_limit_bytes), " -> ",
                                 FormatMi(want), ": ", forecast));
    }
  }

  // Memory, downwards: only after a quiet window the ring fully covers.
  const int64_t since = in.now_ms - o.lower_after_ms;
  const bool window_covered = ring.at(0).t_ms <= since;
  const bool settled = in.last_change_ms == 0 || in.now_ms - in.last_change_ms >= o.lower_after_ms;
  if (!risky && !cooling && window_covered && settled &&
      in.memory_limit_bytes > in.memory_floor_bytes) {
    const int64_t peak = PeakSince(ring, since);
    if (static_cast<double>(peak) < o.lower_utilisation * static_cast<double>(in.memory_limit_bytes)) {
      const int64_t want =
          std::max(in.memory_floor_bytes, RoundUpMi(static_cast<double>(peak) * o.lower_margin));
      if (in.memory_limit_bytes - want >= std::max<int64_t>(o.min_step_bytes, 1)) {
        d.memory_limit_bytes = want;
        lowered = true;
        why.push_back(absl::StrFormat("memory %s -> %s: peak %s < %.0f%% of the limit for %ds",
                                      FormatMi(in.memory_limit_bytes), FormatMi(want),
                                      FormatMi(peak), 100 * o.lower_utilisation,
                                      o.lower_after_ms / 1000));
      }
    }
  }

  // Cpu: the quota is raised when the task runs into it, lowered when idle.
  if (in.cpu_limit_millis > 0 && !cooling) {
    const int64_t used = static_cast<int64_t>(std::llround(ring.CpuCores(1000) * 1000));
    const int64_t room = std::max<int64_t>(0, in.room_cpu_millis);
    if (static_cast<double>(used) >= o.cpu_raise_utilisation * static_cast<double>(in.cpu_limit_millis)) {
      int64_t want = std::min(in.cpu_limit_millis * 2, in.cpu_limit_millis + room);
      if (o.max_cpu_millis > 0) want = std::min(want, o.max_cpu_millis);
      if (want - in.cpu_limit_millis >= o.min_cpu_step_millis) {
        d.cpu_limit_millis = want;
        raised = true;
        why.push_back(absl::StrFormat("cpu %s -> %s: using %s of it", Millicores(in.cpu_limit_millis),
                                      Millicores(want), Millicores(used)));
      }
    } else if (window_covered && settled && in.cpu_limit_millis > in.cpu_floor_millis) {
      const int64_t avg =
          static_cast<int64_t>(std::llround(ring.CpuCores(o.lower_after_ms) * 1000));
      if (static_cast<double>(avg) < o.lower_utilisation * static_cast<double>(in.cpu_limit_millis)) {
        const int64_t want = std::max(in.cpu_floor_millis,
                                      static_cast<int64_t>(std::ceil(avg * o.lower_margin)));
        if (in.cpu_limit_millis - want >= o.min_cpu_step_millis) {
          d.cpu_limit_millis = want;
          lowered = true;
          why.push_back(absl::StrFormat("cpu %s -> %s: using %s", Millicores(in.cpu_limit_millis),
                                        Millicores(want), Millicores(avg)));
        }
      }
    }
  }

  d.action = raised ? ResizeAction::kRaise : lowered ? ResizeAction::kLower : ResizeAction::kNone;
  for (const auto& w : why) absl::StrAppend(&d.reason, d.reason.empty() ? "" : "; ", w);
  return d;
}

int64_t MemoryUpperBound(const UsageRing& ring, double horizon_s, double level, size_t min_samples,
                         size_t fit_window) {
  if (ring.size() < std::max<size_t>(min_samples, 2)) return 0;
  std::vector<double> series = ring.MemorySeries(fit_window);
  const size_t n = series.size();
  const UsageSample& first = ring.at(ring.size() - n);
  const UsageSample& last = ring.at(ring.size() - 1);
  const double step_s = static_cast<double>(last.t_ms - first.t_ms) / 1000.0 / double(n - 1);
  if (!(step_s > 0)) return last.memory_bytes;
  for (double& v : series) v /= kMiB;  // better conditioned, as MemoryRisk fits it
  predict::HoltWintersForecaster holt(0);
  if (!holt.Fit(series).ok()) return last.memory_bytes;
  const int horizon = std::max(1, static_cast<int>(std::ceil(horizon_s / step_s)));
  auto forecast = holt.Forecast(horizon, level);
  if (!forecast.ok()) return last.memory_bytes;
  double upper = static_cast<double>(last.memory_bytes) / kMiB;
  for (const auto& p : *forecast) {
    if (std::isfinite(p.upper)) upper = std::max(upper, p.upper);
  }
  return static_cast<int64_t>(upper * kMiB);
}

}  // namespace flotilla::monitor
