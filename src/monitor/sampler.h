// Sampler: the agent's monitoring thread. Every `period` (100 ms: 10 Hz) it
// samples each tracked task through `sample` (the sandbox's cgroups) into a
// UsageRing of its own, and the host: cpu from <proc>/stat and MemAvailable
// through `mem_available`. Summaries() turns the rings into what the agent
// reports to the manager (cores in use, memory, peak, pids, risk, io and
// network bytes per second).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "monitor/usage.h"
#include "monitor/usage_ring.h"

namespace flotilla::monitor {

// Cumulative cpu ticks of the host from the first line of /proc/stat.
struct HostCpuTicks {
  uint64_t busy = 0;  // all but idle and iowait
  uint64_t total = 0;
  int cpus = 0;  // cpuN lines
};
// Parses /proc/stat's content; nullopt when it has no "cpu " line.
std::optional<HostCpuTicks> ParseProcStat(const std::string& content);
// Cores busy between two readings: Δbusy / Δtotal · cpus.
double HostCoresBetween(const HostCpuTicks& a, const HostCpuTicks& b);

struct TaskSummary {
  std::string key;  // the sandbox task id
  std::string execution_id;
  uint32_t attempt = 0;
  double cpu_cores = 0;
  int64_t memory_bytes = 0;
  int64_t memory_limit_bytes = 0;
  int64_t memory_peak_bytes = 0;
  int64_t pids = 0;
  double risk = 0;
  int samples = 0;
  IoNetRates rates;  // block io and network bytes per second, last second
};

struct HostSummary {
  double cpu_cores_used = 0;
  int64_t memory_available_bytes = 0;
};

class Sampler {
 public:
  using SampleFn = std::function<std::optional<UsageSample>(const std::string& key)>;
  using MemAvailableFn = std::function<std::optional<int64_t>()>;

  Sampler(SampleFn sample, MemAvailableFn mem_available, std::string proc_root = "/proc",
          std::chrono::milliseconds period = std::chrono::milliseconds(100),
          size_t ring_capacity = 600);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  void Start();
  void Stop();  // idempotent

  // Starts sampling task `key`; `fallback_limit` is used when the sandbox
  // does not report a memory limit (the request's memory).
  void Track(const std::string& key, const std::string& execution_id, uint32_t attempt,
             int64_t fallback_limit);
  void Untrack(const std::string& key);

  // Takes one round of samples now (the thread calls this every period).
  void SampleOnce();

  // One summary per tracked task with at least one sample.
  std::vector<TaskSummary> Summaries(const RiskOptions& risk = {}) const;
  HostSummary Host() const;
  // A copy of task `key`'s ring (the resize policy reads it); nullopt when
  // the task is not tracked.
  std::optional<UsageRing> RingOf(const std::string& key) const;

 private:
  struct Tracked {
    std::string execution_id;
    uint32_t attempt = 0;
    int64_t fallback_limit = 0;
    UsageRing ring;
  };
  void Loop();

  const SampleFn sample_;
  const MemAvailableFn mem_available_;
  const std::string proc_root_;
  const std::chrono::milliseconds period_;
  const size_t ring_capacity_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                 // guarded by mu_
  std::map<std::string, Tracked> tasks_;  // guarded by mu_
  std::optional<HostCpuTicks> last_cpu_;  // guarded by mu_
  int64_t last_cpu_ms_ = 0;               // guarded by mu_
  HostSummary host_;                      // guarded by mu_
  std::thread thread_;
};

}  // namespace flotilla::monitor
