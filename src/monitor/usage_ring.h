// UsageRing: a bounded ring of UsageSamples of one execution (default 600:
// 60 s at the sampler's 10 Hz), oldest first, and the figures derived from
// it: cpu cores in use (Δcpu_usage_us / Δt), io and network bytes per
// second (Δbytes / Δt), peak memory, and the risk that
// memory exceeds the limit within the next seconds.
//
// Risk (issue 6): Holt's linear method (predict::HoltWintersForecaster, no
// season) is fitted on the last `fit_window` memory samples, in MiB, at the
// ring's own resolution (the sampler's 100 ms); its forecast for the next
// `seconds` (steps = seconds / resolution) is read by predict::RiskWithin as
// P(any step exceeds the limit) under independence (an upper bound). If
// Holt cannot be fitted, the naive random walk is used. Fewer than
// `min_samples` samples, or no limit: 0.
//
// Pure: no I/O, no clock. Thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "monitor/usage.h"

namespace flotilla::monitor {

struct IoNetRates {
  int64_t io_read_bps = 0;
  int64_t io_write_bps = 0;
  int64_t net_rx_bps = 0;
  int64_t net_tx_bps = 0;
};

class UsageRing {
 public:
  explicit UsageRing(size_t capacity = 600);

  // Appends a sample, dropping the oldest when full. Samples whose time is
  // not after the latest one's are ignored.
  void Add(const UsageSample& s);

  size_t size() const { return size_; }
  size_t capacity() const { return buf_.size(); }
  bool empty() const { return size_ == 0; }
  // i = 0 is the oldest kept sample.
  const UsageSample& at(size_t i) const;
  std::optional<UsageSample> Latest() const;
  std::vector<UsageSample> Samples() const;

  // Cores in use over the last `window_ms` (from the latest sample back to
  // the oldest sample at most window_ms older); 0 with fewer than 2 samples.
  double CpuCores(int64_t window_ms = 1000) const;
  // Block io and network bytes per second over the last `window_ms`, on
  // the same window as CpuCores.
  IoNetRates Rates(int64_t window_ms = 1000) const;
  // Highest memory seen since the ring was made (also samples since dropped).
  int64_t PeakMemory() const { return peak_memory_; }
  // The memory of the last n samples (all when fewer), oldest first.
  std::vector<double> MemorySeries(size_t n) const;

 private:
  std::vector<UsageSample> buf_;
  size_t start_ = 0;
  size_t size_ = 0;
  int64_t peak_memory_ = 0;
};

// Bytes per second between two samples, per counter: 0 where either sample
// lacks the counter (-1), b is not after a, or the counter went back (a
// process whose /proc io was summed exited).
IoNetRates RatesBetween(const UsageSample& a, const UsageSample& b);

// Cores used between two samples of one sandbox: Δcpu_usage_us / Δt. 0 when
// b is not after a or the counter went back.
double CpuCoresBetween(const UsageSample& a, const UsageSample& b);

struct RiskOptions {
  double seconds = 10;      // the horizon
  size_t min_samples = 20;  // fewer: risk 0
  size_t fit_window = 100;  // samples the model is fitted on
};

// The probability that memory exceeds `limit_bytes` within options.seconds,
// as described above. 0 when limit_bytes <= 0 or too few samples.
double MemoryRisk(const UsageRing& ring, int64_t limit_bytes, const RiskOptions& options = {});

}  // namespace flotilla::monitor
