#include "predict/holt_winters.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "predict/nelder_mead.h"

namespace flotilla::predict {
namespace {

// statsmodels' LOWER_BOUND: α stays in [ε, 1-ε].
const double kEpsilon = std::sqrt(std::numeric_limits<double>::epsilon());

// Least-squares line through (t = 1..10, v[0..9]); returns {intercept, slope}.
std::pair<double, double> LineThroughFirstTen(std::span<const double> v) {
  double st = 0, sv = 0, stt = 0, stv = 0;
  for (int i = 0; i < 10; ++i) {
    const double t = i + 1;
    st += t;
    sv += v[i];
    stt += t * t;
    stv += t * v[i];
  }
  const double slope = (10 * stv - st * sv) / (10 * stt - st * st);
  return {(sv - slope * st) / 10, slope};
}

void Unpack(std::span<const double> u, bool seasonal, HoltWintersParams& p) {
  auto clamp01 = [](double v) { return std::clamp(v, 0.0, 1.0); };
  p.alpha = kEpsilon + clamp01(u[0]) * (1 - 2 * kEpsilon);
  p.beta = clamp01(u[1]) * p.alpha;
  p.gamma = seasonal ? clamp01(u[2]) * (1 - p.alpha) : 0;
}

}  // namespace

int HoltWintersForecaster::MinObservations() const {
  if (season_ == 0) return 10;
  return std::max({10, 2 * season_, 10 + 2 * (season_ / 2)});
}

absl::StatusOr<HoltWintersParams> HoltWintersForecaster::HeuristicInitialisationForTest(
    std::span<const double> series, int season) {
  HoltWintersForecaster model(season);
  const int m = model.season_;
  RETURN_IF_ERROR(ValidateSeries(
      series, model.MinObservations(),
      m > 0 ? absl::StrCat("holt-winters with season ", m) : std::string("holt-winters")));
  HoltWintersParams p;
  if (m == 0) {
    std::tie(p.initial_level, p.initial_trend) = LineThroughFirstTen(series);
    return p;
  }
  const int n = static_cast<int>(series.size());
  const int min_obs = 10 + 2 * (m / 2);
  const int cycles = std::max(std::min(5, n / m), (min_obs + m - 1) / m);
  const int len = std::min(n, cycles * m);
  // Centred moving average; for even m the 2×m average (half weights at the
  // ends), which is what pandas' rolling(m, center=True) followed by
  // shift(-1).rolling(2) computes.
  const int half = m / 2;
  std::vector<double> trend(len, std::numeric_limits<double>::quiet_NaN());
  for (int i = half; i + half < len; ++i) {
    double sum = 0;
    if (m % 2 == 1) {
      for (int j = i - half; j <= i + half; ++j) sum += series[j];
    } else {
      sum = 0.5 * series[i - half] + 0.5 * series[i + half];
      for (int j = i - half + 1; j <= i + half - 1; ++j) sum += series[j];
    }
    trend[i] = sum / m;
  }
  p.initial_seasonals.assign(m, 0);
  for (int j = 0; j < m; ++j) {
    double sum = 0;
    int count = 0;
    for (int i = j; i < len; i += m) {
      if (std::isnan(trend[i])) continue;
      sum += series[i] - trend[i];
      ++count;
    }
    p.initial_seasonals[j] = sum / count;  // count >= 1: len >= 2m
  }
  const double mean =
      std::accumulate(p.initial_seasonals.begin(), p.initial_seasonals.end(), 0.0) / m;
  for (double& s : p.initial_seasonals) s -= mean;
  std::vector<double> smoothed;
  for (double v : trend) {
    if (!std::isnan(v)) smoothed.push_back(v);
  }
  // len - 2·half >= 10 by min_obs.
  std::tie(p.initial_level, p.initial_trend) = LineThroughFirstTen(smoothed);
  return p;
}

double HoltWintersForecaster::Smooth(std::span<const double> y, const HoltWintersParams& p,
                                     bool keep) {
  const size_t m = season_;
  double l = p.initial_level;
  double b = p.initial_trend;
  // A ring of the last m seasonals: ring[t % m] holds s[t-m] when y[t] is
  // processed (t = 0-based index of y).
  std::vector<double> ring(p.initial_seasonals);
  if (keep) fitted_.assign(y.size(), 0);
  double sse = 0;
  for (size_t t = 0; t < y.size(); ++t) {
    const double s_old = m ? ring[t % m] : 0;
    const double pred = l + b + s_old;
    const double e = y[t] - pred;
    sse += e * e;
    if (keep) fitted_[t] = pred;
    const double l_new = p.alpha * (y[t] - s_old) + (1 - p.alpha) * (l + b);
    if (m) ring[t % m] = p.gamma * (y[t] - l - b) + (1 - p.gamma) * s_old;
    b = p.beta * (l_new - l) + (1 - p.beta) * b;
    l = l_new;
  }
  if (keep) {
    level_ = l;
    trend_ = b;
    seasons_.assign(m, 0);
    // s[n-m+1..n]: the ring entry for index n - m + k is ring[(n + k) % m].
    for (size_t k = 0; k < m; ++k) seasons_[k] = ring[(y.size() + k) % m];
  }
  return sse;
}

absl::Status HoltWintersForecaster::Fit(std::span<const double> series) {
  fitted_ok_ = false;
  ASSIGN_OR_RETURN(HoltWintersParams init, HeuristicInitialisationForTest(series, season_));
  const bool seasonal = season_ > 0;
  const size_t dims = seasonal ? 3 : 2;

  HoltWintersParams trial = init;
  auto sse = [&](std::span<const double> u) {
    Unpack(u, seasonal, trial);
    // Outside the unit box the parameters are clamped; the penalty keeps
    // the simplex from wandering off along a flat clamped direction.
    double outside = 0;
    for (double v : u) outside += std::max(0.0, -v) + std::max(0.0, v - 1);
    return Smooth(series, trial, /*keep=*/false) * (1 + outside);
  };

  // Grid: 11 points per axis, so that Nelder–Mead starts in the right basin
  // (the SSE surface of seasonal data often has several).
  struct Start {
    double value;
    std::vector<double> u;
  };
  std::vector<Start> starts;
  std::vector<double> u(dims);
  const int steps = 11;
  const int total = seasonal ? steps * steps * steps : steps * steps;
  for (int i = 0; i < total; ++i) {
    int rest = i;
    for (size_t k = 0; k < dims; ++k) {
      u[k] = (rest % steps) / static_cast<double>(steps - 1);
      rest /= steps;
    }
    starts.push_back({sse(u), u});
  }
  std::partial_sort(starts.begin(), starts.begin() + 3, starts.end(),
                    [](const Start& a, const Start& b) { return a.value < b.value; });
  NelderMeadResult best;
  best.value = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 3; ++i) {
    NelderMeadOptions options;
    options.initial_step = 0.05;
    NelderMeadResult r = NelderMead(sse, starts[i].u, options);
    if (r.value < best.value) best = r;
  }

  params_ = init;
  Unpack(best.x, seasonal, params_);
  sse_ = Smooth(series, params_, /*keep=*/true);
  const double k = seasonal ? 4 + season_ + 1 : 4;
  sigma2_ = sse_ / std::max(1.0, static_cast<double>(series.size()) - k);
  fitted_ok_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ForecastPoint>> HoltWintersForecaster::Forecast(int horizon,
                                                                           double level) const {
  RETURN_IF_ERROR(ValidateForecastRequest(horizon, level));
  if (!fitted_ok_)
    return absl::FailedPreconditionError("holt-winters: Forecast before a successful Fit");
  const int m = season_;
  std::vector<ForecastPoint> points(horizon);
  double sum_c2 = 0;  // Σ_{j<h} c_j²
  for (int h = 1; h <= horizon; ++h) {
    ForecastPoint& p = points[h - 1];
    p.step = h;
    p.mean = level_ + h * trend_ + (m ? seasons_[(h - 1) % m] : 0);
    p.stddev = std::sqrt(sigma2_ * (1 + sum_c2));
    const double c = params_.alpha * (1 + h * params_.beta) + (m && h % m == 0 ? params_.gamma : 0);
    sum_c2 += c * c;
  }
  SetIntervals(points, level);
  return points;
}

std::vector<FittedParameter> HoltWintersForecaster::Parameters() const {
  std::vector<FittedParameter> out = {{"alpha", params_.alpha}, {"beta", params_.beta}};
  if (season_) out.push_back({"gamma", params_.gamma});
  out.push_back({"season", static_cast<double>(season_)});
  out.push_back({"initial_level", params_.initial_level});
  out.push_back({"initial_trend", params_.initial_trend});
  out.push_back({"sse", sse_});
  out.push_back({"sigma2", sigma2_});
  return out;
}

}  // namespace flotilla::predict
