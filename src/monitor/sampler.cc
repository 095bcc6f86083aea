#include "monitor/sampler.h"

#include <fstream>
#include <sstream>

namespace flotilla::monitor {

namespace {
int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::optional<HostCpuTicks> ParseProcStat(const std::string& content) {
  std::istringstream in(content);
  std::string line;
  std::optional<HostCpuTicks> out;
  while (std::getline(in, line)) {
    if (line.rfind("cpu ", 0) == 0) {
      std::istringstream f(line.substr(4));
      HostCpuTicks t;
      uint64_t v = 0;
      for (int i = 0; f >> v; ++i) {
        // user nice system idle iowait irq softirq steal (guest* are in user).
        if (i >= 8) break;
        t.total += v;
        if (i != 3 && i != 4) t.busy += v;
      }
      out = t;
    } else if (line.rfind("cpu", 0) == 0 && out) {
      ++out->cpus;
    }
  }
  return out;
}

double HostCoresBetween(const HostCpuTicks& a, const HostCpuTicks& b) {
  if (b.total <= a.total || b.busy < a.busy) return 0;
  return static_cast<double>(b.busy - a.busy) / static_cast<double>(b.total - a.total) *
         static_cast<double>(b.cpus > 0 ? b.cpus : 1);
}

Sampler::Sampler(SampleFn sample, MemAvailableFn mem_available, std::string proc_root,
                 std::chrono::milliseconds period, size_t ring_capacity)
    : sample_(std::move(sample)),
      mem_available_(std::move(mem_available)),
      proc_root_(std::move(proc_root)),
      period_(period),
      ring_capacity_(ring_capacity) {}

Sampler::~Sampler() { Stop(); }

void Sampler::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Sampler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void Sampler::Track(const std::string& key, const std::string& execution_id, uint32_t attempt,
                    int64_t fallback_limit) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.insert_or_assign(
      key, Tracked{execution_id, attempt, fallback_limit, UsageRing(ring_capacity_)});
}

void Sampler::Untrack(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.erase(key);
}

void Sampler::SampleOnce() {
  std::vector<std::string> keys;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, t] : tasks_) keys.push_back(k);
  }
  // Sample outside the lock: reading cgroup files may be slow.
  std::vector<std::pair<std::string, UsageSample>> samples;
  for (const auto& k : keys) {
    if (auto s = sample_(k)) samples.emplace_back(k, *s);
  }
  std::optional<HostCpuTicks> cpu;
  {
    std::ifstream in(proc_root_ + "/stat");
    std::stringstream ss;
    ss << in.rdbuf();
    if (in) cpu = ParseProcStat(ss.str());
  }
  std::optional<int64_t> mem = mem_available_ ? mem_available_() : std::nullopt;
  const int64_t now = SteadyMs();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [k, s] : samples) {
    auto it = tasks_.find(k);
    if (it != tasks_.end()) it->second.ring.Add(s);
  }
  if (cpu) {
    // Host cores over about the last second.
    if (last_cpu_ && now - last_cpu_ms_ >= 1000) {
      host_.cpu_cores_used = HostCoresBetween(*last_cpu_, *cpu);
      last_cpu_ = cpu;
      last_cpu_ms_ = now;
    } else if (!last_cpu_) {
      last_cpu_ = cpu;
      last_cpu_ms_ = now;
    }
  }
  if (mem) host_.memory_available_bytes = *mem;
}

std::optional<UsageRing> Sampler::RingOf(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = tasks_.find(key);
  if (it == tasks_.end()) return std::nullopt;
  return it->second.ring;
}

std::vector<TaskSummary> Sampler::Summaries(const RiskOptions& risk) const {
  std::vector<std::pair<TaskSummary, UsageRing>> copies;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [k, t] : tasks_) {
      auto latest = t.ring.Latest();
      if (!latest) continue;
      TaskSummary s;
      s.key = k;
      s.execution_id = t.execution_id;
      s.attempt = t.attempt;
      s.cpu_cores = t.ring.CpuCores(1000);
      s.rates = t.ring.Rates(1000);
      s.memory_bytes = latest->memory_bytes;
      s.memory_limit_bytes =
          latest->memory_limit_bytes > 0 ? latest->memory_limit_bytes : t.fallback_limit;
      s.memory_peak_bytes = t.ring.PeakMemory();
      s.pids = latest->pids;
      s.samples = static_cast<int>(t.ring.size());
      copies.emplace_back(std::move(s), t.ring);
    }
  }
  // The forecasts run outside the lock.
  std::vector<TaskSummary> out;
  for (auto& [s, ring] : copies) {
    s.risk = MemoryRisk(ring, s.memory_limit_bytes, risk);
    out.push_back(std::move(s));
  }
  return out;
}

HostSummary Sampler::Host() const {
  std::lock_guard<std::mutex> lock(mu_);
  return host_;
}

void Sampler::Loop() {
  while (true) {
    SampleOnce();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, period_, [&] { return stopping_; });
    if (stopping_) return;
  }
}

}  // namespace flotilla::monitor
