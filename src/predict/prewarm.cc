#include "predict/prewarm.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "predict/holt_winters.h"

namespace flotilla::predict {

absl::Status ValidatePrewarmOptions(const PrewarmOptions& o) {
  auto bad = [](const char* key, const char* why) {
    return absl::InvalidArgumentError(absl::StrCat("prewarm.", key, ": ", why));
  };
  if (!(o.bucket_s >= 1)) return bad("bucket_s", "must be >= 1");
  if (o.min_seasons < 2) return bad("min_seasons", "must be >= 2 (Holt-Winters needs two seasons)");
  if (o.history_buckets < 10) return bad("history_buckets", "must be >= 10");
  if (!(o.refit_s >= o.bucket_s)) return bad("refit_s", "must be >= bucket_s");
  if (!(o.level > 0 && o.level < 1)) return bad("level", "must be in (0, 1)");
  if (!(o.recent_s > 0)) return bad("recent_s", "must be > 0");
  if (!(o.start_time_s >= 0)) return bad("start_time_s", "must be >= 0");
  if (!(o.refill_delay_s >= 0)) return bad("refill_delay_s", "must be >= 0");
  if (!(o.quantile > 0 && o.quantile < 1)) return bad("quantile", "must be in (0, 1)");
  if (!(o.keep_horizon_s >= 0)) return bad("keep_horizon_s", "must be >= 0");
  if (!(o.keep_probability > 0 && o.keep_probability <= 1)) {
    return bad("keep_probability", "must be in (0, 1]");
  }
  if (o.max_idle < 0) return bad("max_idle", "must be >= 0");
  return absl::OkStatus();
}

int PoissonQuantile(double mean, double q) {
  if (!(mean > 0)) return 0;
  if (mean > 200) {
    return std::max(0, static_cast<int>(std::ceil(mean + NormalQuantile(q) * std::sqrt(mean) - 0.5)));
  }
  double p = std::exp(-mean);  // P(0)
  double cdf = p;
  int k = 0;
  while (cdf < q && k < 100000) {
    ++k;
    p *= mean / k;
    cdf += p;
  }
  return k;
}

PrewarmPlanner::PrewarmPlanner(PrewarmOptions options) : options_(options) {
  const double per_day = 86400.0 / options_.bucket_s;
  // A daily season only when the bucket divides the day.
  season_ = std::abs(per_day - std::round(per_day)) < 1e-9 ? static_cast<int>(std::round(per_day)) : 0;
  if (season_ < 2) season_ = 0;
}

int64_t PrewarmPlanner::BucketOf(const Series& s, int64_t t_ms) const {
  const double bucket_ms = options_.bucket_s * 1000;
  return static_cast<int64_t>(std::floor(static_cast<double>(t_ms - s.origin_ms) / bucket_ms));
}

void PrewarmPlanner::Advance(Series& s, int64_t now_ms) {
  const int64_t current = BucketOf(s, now_ms);
  if (s.counts.empty()) {
    s.first_bucket = current;
    s.counts.push_back(0);
  }
  while (s.first_bucket + static_cast<int64_t>(s.counts.size()) <= current) {
    s.counts.push_back(0);
    // A gap longer than the history: nothing older is worth walking through.
    if (static_cast<int>(s.counts.size()) > options_.history_buckets + 1) {
      const int64_t missing = current - (s.first_bucket + static_cast<int64_t>(s.counts.size()) - 1);
      if (missing > options_.history_buckets) {
        s.counts.assign(static_cast<size_t>(options_.history_buckets) + 1, 0);
        s.first_bucket = current - options_.history_buckets;
      }
    }
  }
  while (static_cast<int>(s.counts.size()) > options_.history_buckets + 1) {
    s.counts.pop_front();
    ++s.first_bucket;
  }
  const int64_t since = now_ms - static_cast<int64_t>(options_.recent_s * 1000);
  while (!s.recent_ms.empty() && s.recent_ms.front() <= since) s.recent_ms.pop_front();
}

void PrewarmPlanner::Record(const std::string& key, int64_t now_ms, int n) {
  if (n <= 0) return;
  Series& s = series_[key];
  Advance(s, now_ms);
  s.counts.back() += n;
  s.last_ms = std::max(s.last_ms, now_ms);
  // The reactive window needs times, not counts; a huge n is one burst at one instant.
  for (int i = 0; i < std::min(n, 100000); ++i) s.recent_ms.push_back(now_ms);
}

void PrewarmPlanner::Refit(Series& s, int64_t current_bucket, int64_t now_ms) {
  std::vector<double> done(s.counts.begin(), s.counts.end() - 1);  // completed buckets
  const int horizon = static_cast<int>(std::ceil(options_.refit_s / options_.bucket_s)) + 2;
  s.fit_bucket = current_bucket;
  s.fit_ms = now_ms;
  s.forecast.clear();
  s.model.reset();
  s.model_name = "none";
  const int n = static_cast<int>(done.size());
  s.mean_rate = 0;
  if (n > 0) {
    double sum = 0;
    for (double c : done) sum += c;
    s.mean_rate = sum / n / options_.bucket_s;
    s.model_name = "mean";
  }
  auto try_fit = [&](int season, const char* name) {
    auto m = std::make_unique<HoltWintersForecaster>(season);
    if (n < m->MinObservations() || !m->Fit(done).ok()) return false;
    auto f = m->Forecast(horizon, options_.level);
    if (!f.ok()) return false;
    s.forecast = std::move(*f);
    s.model = std::move(m);
    s.model_name = season > 0 ? absl::StrCat(name, "(", season, ")") : std::string(name);
    return true;
  };
  if (season_ > 0 && n >= options_.min_seasons * season_ && try_fit(season_, "holt-winters")) return;
  (void)try_fit(0, "holt");
}

PrewarmTarget PrewarmPlanner::Target(const std::string& key, Series& s, int64_t now_ms) {
  Advance(s, now_ms);
  const int64_t current = s.first_bucket + static_cast<int64_t>(s.counts.size()) - 1;
  const bool stale = s.fit_bucket < 0 || now_ms - s.fit_ms >= options_.refit_s * 1000 ||
                     current - s.fit_bucket >= static_cast<int64_t>(s.forecast.size()) ||
                     (s.model_name == "mean" && current != s.fit_bucket) ||
                     (s.model_name == "none" && s.counts.size() > 1);
  if (stale) Refit(s, current, now_ms);

  PrewarmTarget t;
  t.key = key;
  t.model = s.model_name;
  const int64_t h = current - s.fit_bucket;
  if (!s.forecast.empty() && h >= 0 && h < static_cast<int64_t>(s.forecast.size())) {
    const ForecastPoint& p = s.forecast[static_cast<size_t>(h)];
    t.forecast_per_s = std::max(0.0, p.mean) / options_.bucket_s;
    t.upper_per_s = std::max(0.0, p.upper) / options_.bucket_s;
  } else if (s.model_name == "mean") {
    // Poisson counts: the interval of a mean count c is about c ± z·sqrt(c).
    const double c = s.mean_rate * options_.bucket_s;
    const double z = NormalQuantile(0.5 + options_.level / 2);
    t.forecast_per_s = s.mean_rate;
    t.upper_per_s = (c + z * std::sqrt(c)) / options_.bucket_s;
  }
  t.recent_per_s = static_cast<double>(s.recent_ms.size()) / options_.recent_s;

  const double lambda = std::max(t.upper_per_s, t.recent_per_s);
  const double window = options_.start_time_s + options_.refill_delay_s;
  // With k idle, the arrival that takes one starts a refill; the next k - 1
  // arrivals within the window are warm and the k-th is cold. So k = 1 +
  // the quantile of the window's arrivals keeps P(cold) <= 1 - quantile.
  const int quantile = PoissonQuantile(lambda * window, options_.quantile);
  const double likely = std::max(t.forecast_per_s, t.recent_per_s);
  const double p_soon = 1 - std::exp(-likely * options_.keep_horizon_s);
  int idle = 0;
  if (quantile > 0 || p_soon >= options_.keep_probability) idle = 1 + quantile;
  t.min_idle = std::min(idle, options_.max_idle);
  t.reason = absl::StrFormat("%s forecast %.3g/s (upper %.3g/s), recent %.3g/s: %d idle", t.model,
                             t.forecast_per_s, t.upper_per_s, t.recent_per_s, t.min_idle);
  return t;
}

PrewarmTarget PrewarmPlanner::PlanKey(const std::string& key, int64_t now_ms) {
  auto it = series_.find(key);
  if (it == series_.end()) {
    PrewarmTarget t;
    t.key = key;
    t.model = "none";
    t.reason = "no invocations seen";
    return t;
  }
  return Target(key, it->second, now_ms);
}

std::vector<PrewarmTarget> PrewarmPlanner::Plan(int64_t now_ms) {
  std::vector<PrewarmTarget> out;
  out.reserve(series_.size());
  for (auto& [key, s] : series_) out.push_back(Target(key, s, now_ms));
  return out;
}

void PrewarmPlanner::Prune(int64_t now_ms) {
  const int64_t horizon_ms = static_cast<int64_t>(options_.history_buckets * options_.bucket_s * 1000);
  for (auto it = series_.begin(); it != series_.end();) {
    if (now_ms - it->second.last_ms > horizon_ms) {
      it = series_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace flotilla::predict
