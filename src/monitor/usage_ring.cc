#include "monitor/usage_ring.h"

#include <algorithm>
#include <cmath>

#include "predict/holt_winters.h"
#include "predict/naive.h"
#include "predict/risk.h"

namespace flotilla::monitor {

UsageRing::UsageRing(size_t capacity) : buf_(std::max<size_t>(capacity, 2)) {}

void UsageRing::Add(const UsageSample& s) {
  if (size_ > 0 && s.t_ms <= at(size_ - 1).t_ms) return;
  if (size_ < buf_.size()) {
    buf_[(start_ + size_) % buf_.size()] = s;
    ++size_;
  } else {
    buf_[start_] = s;
    start_ = (start_ + 1) % buf_.size();
  }
  peak_memory_ = std::max(peak_memory_, s.memory_bytes);
}

const UsageSample& UsageRing::at(size_t i) const { return buf_[(start_ + i) % buf_.size()]; }

std::optional<UsageSample> UsageRing::Latest() const {
  if (size_ == 0) return std::nullopt;
  return at(size_ - 1);
}

std::vector<UsageSample> UsageRing::Samples() const {
  std::vector<UsageSample> out;
  out.reserve(size_);
  for (size_t i = 0; i < size_; ++i) out.push_back(at(i));
  return out;
}

double UsageRing::CpuCores(int64_t window_ms) const {
  if (size_ < 2) return 0;
  const UsageSample& last = at(size_ - 1);
  size_t first = size_ - 2;
  while (first > 0 && last.t_ms - at(first - 1).t_ms <= window_ms) --first;
  return CpuCoresBetween(at(first), last);
}

IoNetRates UsageRing::Rates(int64_t window_ms) const {
  if (size_ < 2) return {};
  const UsageSample& last = at(size_ - 1);
  size_t first = size_ - 2;
  while (first > 0 && last.t_ms - at(first - 1).t_ms <= window_ms) --first;
  return RatesBetween(at(first), last);
}

std::vector<double> UsageRing::MemorySeries(size_t n) const {
  n = std::min(n, size_);
  std::vector<double> out;
  out.reserve(n);
  for (size_t i = size_ - n; i < size_; ++i) out.push_back(static_cast<double>(at(i).memory_bytes));
  return out;
}

namespace {
int64_t PerSecond(int64_t a, int64_t b, int64_t dt_ms) {
  if (a < 0 || b < a) return 0;
  return (b - a) * 1000 / dt_ms;
}
}  // namespace

IoNetRates RatesBetween(const UsageSample& a, const UsageSample& b) {
  const int64_t dt_ms = b.t_ms - a.t_ms;
  if (dt_ms <= 0) return {};
  IoNetRates r;
  r.io_read_bps = PerSecond(a.io_read_bytes, b.io_read_bytes, dt_ms);
  r.io_write_bps = PerSecond(a.io_write_bytes, b.io_write_bytes, dt_ms);
  r.net_rx_bps = PerSecond(a.net_rx_bytes, b.net_rx_bytes, dt_ms);
  r.net_tx_bps = PerSecond(a.net_tx_bytes, b.net_tx_bytes, dt_ms);
  return r;
}

double CpuCoresBetween(const UsageSample& a, const UsageSample& b) {
  const int64_t dt_ms = b.t_ms - a.t_ms;
  const int64_t dcpu_us = b.cpu_usage_us - a.cpu_usage_us;
  if (dt_ms <= 0 || dcpu_us < 0) return 0;
  return static_cast<double>(dcpu_us) / (static_cast<double>(dt_ms) * 1000.0);
}

double MemoryRisk(const UsageRing& ring, int64_t limit_bytes, const RiskOptions& options) {
  if (limit_bytes <= 0 || ring.size() < std::max<size_t>(options.min_samples, 2)) return 0;
  std::vector<double> series = ring.MemorySeries(options.fit_window);
  // The ring's resolution: the mean spacing of the fitted samples.
  const size_t n = series.size();
  const UsageSample& first = ring.at(ring.size() - n);
  const UsageSample& last = ring.at(ring.size() - 1);
  const double step_seconds =
      static_cast<double>(last.t_ms - first.t_ms) / 1000.0 / static_cast<double>(n - 1);
  if (!(step_seconds > 0)) return 0;
  constexpr double kMiB = 1 << 20;  // fit in MiB: better conditioned
  for (double& v : series) v /= kMiB;
  const double limit = static_cast<double>(limit_bytes) / kMiB;
  const int horizon = std::max(1, static_cast<int>(std::ceil(options.seconds / step_seconds)));

  predict::HoltWintersForecaster holt(0);
  predict::NaiveForecaster naive(0);
  predict::Forecaster* model = &holt;
  if (!holt.Fit(series).ok()) {
    if (!naive.Fit(series).ok()) return 0;
    model = &naive;
  }
  auto forecast = model->Forecast(horizon, 0.95);
  if (!forecast.ok()) return 0;
  auto risk = predict::RiskWithin(*forecast, limit, options.seconds, step_seconds);
  if (!risk.ok() || !std::isfinite(risk->probability)) return 0;
  return std::clamp(risk->probability, 0.0, 1.0) + 0.0;  // + 0.0: never -0
}

}  // namespace flotilla::monitor
