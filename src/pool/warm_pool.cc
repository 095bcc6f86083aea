#include "pool/warm_pool.h"

#include "common/status_macros.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/logging.h"

namespace flotilla::pool {

namespace {

constexpr size_t kSamples = 1024;

std::string Owner(const std::string& tenant, const std::string& function) {
  return tenant + "\n" + function;
}

double Percentile(std::vector<int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return static_cast<double>(v[std::min(i, v.size() - 1)]);
}

}  // namespace

WarmPool::WarmPool(EnvironmentTemplate t, InstanceFactory* factory)
    : template_(std::move(t)), factory_(factory) {
  stats_.template_name = template_.name;
}

WarmPool::~WarmPool() { Drain(); }

void WarmPool::RecordStart(bool warm, int64_t us) {
  auto& ring = warm ? warm_starts_ : cold_starts_;
  size_t& next = warm ? warm_next_ : cold_next_;
  if (ring.size() < kSamples) {
    ring.push_back(us);
  } else {
    ring[next] = us;
  }
  next = (next + 1) % kSamples;
}

absl::StatusOr<WarmPool::Lease> WarmPool::Acquire(const std::string& tenant,
                                                  const std::string& function,
                                                  const InstanceOptions& options,
                                                  std::chrono::milliseconds wait) {
  const int64_t t0 = MonotonicUs();
  const auto deadline = std::chrono::steady_clock::now() + wait;
  Lease lease;
  if (!options.network_egress) {
    std::unique_lock<std::mutex> lock(mu_);
    const std::string owner = Owner(tenant, function);
    while (true) {
      // Prefer an instance this tenant's function used before (its caches
      // are warm), then a fresh one. Never another tenant's.
      auto pick =
          std::find_if(idle_.begin(), idle_.end(), [&](const Parked& p) { return p.owner == owner; });
      if (pick == idle_.end()) {
        pick = std::find_if(idle_.begin(), idle_.end(), [](const Parked& p) { return p.owner.empty(); });
      }
      if (pick != idle_.end()) {
        lease.instance = std::move(pick->instance);
        idle_.erase(pick);
        lease.warm = true;
        ++busy_;
        ++stats_.hits;
        lease.start_us = MonotonicUs() - t0;
        RecordStart(true, lease.start_us);
        return lease;
      }
      const bool full = busy_ + creating_ + static_cast<int>(idle_.size()) >= template_.pool_max;
      if (!full || !idle_.empty()) break;  // room to create (evicting another owner's if needed)
      if (released_.wait_until(lock, deadline) == std::cv_status::timeout) {
        ++stats_.misses;
        return absl::ResourceExhaustedError(absl::StrCat(
            "template '", template_.name, "': all ", template_.pool_max,
            " sandboxes stayed busy for ", wait.count(), " ms (pool.max); raise pool.max"));
      }
    }
    ++stats_.misses;
    ++creating_;
  }
  // A cold start. A parked instance of another owner is evicted to make room.
  std::unique_ptr<Instance> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!options.network_egress &&
        busy_ + creating_ + static_cast<int>(idle_.size()) > template_.pool_max && !idle_.empty()) {
      evicted = std::move(idle_.front().instance);
      idle_.pop_front();
      ++stats_.destroyed;
    }
  }
  evicted.reset();
  auto created = factory_->Create(template_, options);
  std::lock_guard<std::mutex> lock(mu_);
  if (!options.network_egress) --creating_;
  if (!created.ok()) {
    ++stats_.create_failures;
    return created.status();
  }
  ++stats_.created;
  ++busy_;
  lease.instance = std::move(created).value();
  lease.warm = false;
  lease.start_us = MonotonicUs() - t0;
  RecordStart(false, lease.start_us);
  return lease;
}

void WarmPool::Release(Lease lease, const std::string& tenant, const std::string& function,
                       const InstanceOptions& options) {
  bool keep = template_.lifecycle == Lifecycle::kReuse && !options.network_egress &&
              lease.instance && lease.instance->healthy() && lease.instance->Reset();
  std::unique_ptr<Instance> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --busy_;
    if (keep && busy_ + static_cast<int>(idle_.size()) < template_.pool_max) {
      idle_.push_back({std::move(lease.instance), Owner(tenant, function)});
    } else {
      doomed = std::move(lease.instance);
      ++stats_.destroyed;
    }
  }
  released_.notify_all();
}

int WarmPool::Refill() {
  int made = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      int fresh = static_cast<int>(std::count_if(idle_.begin(), idle_.end(),
                                                 [](const Parked& p) { return p.owner.empty(); }));
      if (fresh + creating_ >= std::max(template_.pool_min, target_idle_) ||
          busy_ + creating_ + static_cast<int>(idle_.size()) >= template_.pool_max) {
        return made;
      }
      ++creating_;
    }
    InstanceOptions ahead;
    ahead.ahead_of_demand = true;
    auto created = factory_->Create(template_, ahead);
    std::lock_guard<std::mutex> lock(mu_);
    --creating_;
    if (!created.ok()) {
      ++stats_.create_failures;
      spdlog::warn("pool {}: could not pre-create a sandbox: {}", template_.name,
                   created.status().message());
      return made;
    }
    ++stats_.created;
    idle_.push_back({std::move(created).value(), ""});
    ++made;
  }
}

void WarmPool::SetTargetIdle(int target) {
  std::lock_guard<std::mutex> lock(mu_);
  target_idle_ = std::max(0, target);
}

void WarmPool::Drain() {
  std::deque<Parked> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    doomed.swap(idle_);
    stats_.destroyed += doomed.size();
  }
}

PoolStats WarmPool::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  PoolStats s = stats_;
  s.idle = static_cast<int>(idle_.size());
  s.busy = busy_;
  s.warm_start_p50_us = Percentile(warm_starts_, 0.5);
  s.warm_start_p99_us = Percentile(warm_starts_, 0.99);
  s.cold_start_p50_us = Percentile(cold_starts_, 0.5);
  s.cold_start_p99_us = Percentile(cold_starts_, 0.99);
  return s;
}

PooledSandbox::PooledSandbox(std::vector<WarmPool*> pools, std::string default_template,
                             std::string kind)
    : pools_(std::move(pools)), default_template_(std::move(default_template)), kind_(std::move(kind)) {}

absl::StatusOr<WarmPool*> PooledSandbox::PoolFor(const sandbox::TaskSpec& spec) {
  const std::string& name = spec.template_name.empty() ? default_template_ : spec.template_name;
  WarmPool* pool = nullptr;
  for (WarmPool* p : pools_) {
    if (p->environment().name == name) pool = p;
  }
  if (!pool) {
    std::string known;
    for (WarmPool* p : pools_) absl::StrAppend(&known, known.empty() ? "" : ", ", p->environment().name);
    return absl::NotFoundError(
        absl::StrCat("no environment template '", name, "' on this node (known: ", known, ")"));
  }
  return pool;
}

absl::StatusOr<sandbox::TaskOutcome> PooledSandbox::Run(const sandbox::TaskSpec& spec,
                                                        sandbox::OutputSink& sink,
                                                        const sandbox::CancelToken& cancel) {
  ASSIGN_OR_RETURN(WarmPool * pool, PoolFor(spec));
  InstanceOptions options{.network_egress = spec.network_egress};
  auto lease = pool->Acquire(spec.tenant, spec.function, options);
  if (!lease.ok()) return lease.status();
  spdlog::debug("[{}] {} sandbox from pool {} in {} us", spec.id, lease->warm ? "warm" : "cold",
                pool->environment().name, lease->start_us);
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_[spec.id] = lease->instance.get();
  }
  auto outcome = lease->instance->Run(spec, sink, cancel);
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_.erase(spec.id);
  }
  pool->Release(std::move(*lease), spec.tenant, spec.function, options);
  return outcome;
}

std::optional<monitor::UsageSample> PooledSandbox::Sample(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(task_id);
  if (it == running_.end()) return std::nullopt;
  return it->second->Usage();
}

absl::Status PooledSandbox::Resize(const std::string& task_id, const model::Resources& limits) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(task_id);
  if (it == running_.end()) {
    return absl::NotFoundError(absl::StrCat("task ", task_id, " is not running here"));
  }
  return it->second->Resize(limits);
}

absl::StatusOr<sandbox::TaskCheckpoint> PooledSandbox::Checkpoint(const std::string& task_id,
                                                                  const std::string& image_dir) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(task_id);
  if (it == running_.end()) {
    return absl::NotFoundError(absl::StrCat("task ", task_id, " is not running here"));
  }
  return it->second->Checkpoint(image_dir);
}

absl::Status PooledSandbox::EndCheckpoint(const std::string& task_id, bool moved) {
  std::lock_guard<std::mutex> lock(running_mu_);
  auto it = running_.find(task_id);
  if (it == running_.end()) {
    return absl::NotFoundError(absl::StrCat("task ", task_id, " is not running here"));
  }
  return it->second->EndCheckpoint(moved);
}

absl::StatusOr<sandbox::TaskOutcome> PooledSandbox::RunRestored(
    const sandbox::TaskSpec& spec, const sandbox::TaskCheckpoint& from,
    const std::function<bool()>& go, sandbox::OutputSink& sink,
    const sandbox::CancelToken& cancel) {
  ASSIGN_OR_RETURN(WarmPool * pool, PoolFor(spec));
  ASSIGN_OR_RETURN(std::unique_ptr<Instance> instance, pool->Restore(from));
  // Until `go`, the restored guest stays paused: nothing it does is seen.
  // A refusal destroys the instance (the destructor kills its cgroup).
  if (!go()) return absl::AbortedError(absl::StrCat("task ", spec.id, ": the restore was called off"));
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_[spec.id] = instance.get();
  }
  auto outcome = instance->ResumeRestored(spec, from, sink, cancel);
  {
    std::lock_guard<std::mutex> lock(running_mu_);
    running_.erase(spec.id);
  }
  return outcome;
}

}  // namespace flotilla::pool
