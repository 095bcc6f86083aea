#include "manager/tenant_limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::manager {

absl::Status TenantLimits::Admit(const std::string& tenant, int64_t now_ms) {
  int64_t& n = unfinished_[tenant];
  if (o_.max_unfinished > 0 && n >= o_.max_unfinished) {
    if (n == 0) unfinished_.erase(tenant);
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant ", tenant, " has ", n, " unfinished executions (limits.tenant_max_unfinished ",
        o_.max_unfinished, "); retry when some have ended"));
  }
  if (o_.submits_per_second > 0) {
    const double burst = std::max(1.0, o_.burst);
    if (buckets_.size() >= kMaxTenants && !buckets_.count(tenant)) {
      // A full bucket is the same as none: drop those first.
      for (auto it = buckets_.begin(); it != buckets_.end();) {
        const double refilled = it->second.tokens + (now_ms - it->second.at_ms) / 1000.0 * o_.submits_per_second;
        it = refilled >= burst ? buckets_.erase(it) : std::next(it);
      }
    }
    auto [it, fresh] = buckets_.try_emplace(tenant, Bucket{burst, now_ms});
    Bucket& b = it->second;
    if (!fresh) {
      b.tokens = std::min(burst, b.tokens + std::max<int64_t>(0, now_ms - b.at_ms) / 1000.0 *
                                                o_.submits_per_second);
      b.at_ms = now_ms;
    }
    if (b.tokens < 1.0) {
      if (n == 0) unfinished_.erase(tenant);
      const double wait_s = (1.0 - b.tokens) / o_.submits_per_second;
      return absl::ResourceExhaustedError(absl::StrFormat(
          "tenant %s submits faster than %.6g per second (limits.tenant_submits_per_second); "
          "retry in %.3g s",
          tenant, o_.submits_per_second, wait_s));
    }
    b.tokens -= 1.0;
  }
  ++n;
  return absl::OkStatus();
}

void TenantLimits::Finished(const std::string& tenant) {
  auto it = unfinished_.find(tenant);
  if (it == unfinished_.end()) return;
  if (--it->second <= 0) unfinished_.erase(it);
}

int64_t TenantLimits::Unfinished(const std::string& tenant) const {
  auto it = unfinished_.find(tenant);
  return it == unfinished_.end() ? 0 : it->second;
}

}  // namespace flotilla::manager

namespace flotilla::manager {
namespace {

std::string Cpu(int64_t millis) { return absl::StrCat(millis, "m CPU"); }
std::string Mem(int64_t bytes) {
  return bytes % (1 << 20) == 0 ? absl::StrCat(bytes >> 20, " MiB") : absl::StrCat(bytes, " bytes");
}

}  // namespace

absl::Status TenantLimits::CheckRequest(const std::string& tenant,
                                        const model::Resources& r) const {
  if (o_.max_cpu_millis > 0 && r.cpu_millis > o_.max_cpu_millis) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request asks for ", Cpu(r.cpu_millis), ", more than tenant ", tenant,
        "'s whole quota of ", Cpu(o_.max_cpu_millis),
        " (limits.tenant_max_cpu_millis): it could never run"));
  }
  if (o_.max_memory_bytes > 0 && r.memory_bytes > o_.max_memory_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request asks for ", Mem(r.memory_bytes), " of memory, more than tenant ", tenant,
        "'s whole quota of ", Mem(o_.max_memory_bytes),
        " (limits.tenant_max_memory_bytes): it could never run"));
  }
  return absl::OkStatus();
}

bool TenantLimits::Fits(const std::string& tenant, const model::Resources& r) const {
  if (o_.max_cpu_millis <= 0 && o_.max_memory_bytes <= 0) return true;
  const model::Resources held = Placed(tenant);
  return (o_.max_cpu_millis <= 0 || held.cpu_millis + r.cpu_millis <= o_.max_cpu_millis) &&
         (o_.max_memory_bytes <= 0 || held.memory_bytes + r.memory_bytes <= o_.max_memory_bytes);
}

std::string TenantLimits::WhyNotPlaceable(const std::string& tenant,
                                          const model::Resources& r) const {
  if (o_.max_cpu_millis <= 0 && o_.max_memory_bytes <= 0) return "";
  const model::Resources held = Placed(tenant);
  if (o_.max_cpu_millis > 0 && held.cpu_millis + r.cpu_millis > o_.max_cpu_millis) {
    return absl::StrCat("tenant ", tenant, "'s running work holds ", Cpu(held.cpu_millis), " of its ",
                        Cpu(o_.max_cpu_millis), " quota (limits.tenant_max_cpu_millis); this needs ",
                        Cpu(r.cpu_millis), " and waits for some of it to end");
  }
  if (o_.max_memory_bytes > 0 && held.memory_bytes + r.memory_bytes > o_.max_memory_bytes) {
    return absl::StrCat("tenant ", tenant, "'s running work holds ", Mem(held.memory_bytes),
                        " of its ", Mem(o_.max_memory_bytes),
                        " memory quota (limits.tenant_max_memory_bytes); this needs ",
                        Mem(r.memory_bytes), " and waits for some of it to end");
  }
  return "";
}

void TenantLimits::Place(const std::string& tenant, const model::Resources& r) {
  model::Resources& held = placed_[tenant];
  held.cpu_millis += r.cpu_millis;
  held.memory_bytes += r.memory_bytes;
}

void TenantLimits::Unplace(const std::string& tenant, const model::Resources& r) {
  auto it = placed_.find(tenant);
  if (it == placed_.end()) return;
  it->second.cpu_millis = std::max<int64_t>(0, it->second.cpu_millis - r.cpu_millis);
  it->second.memory_bytes = std::max<int64_t>(0, it->second.memory_bytes - r.memory_bytes);
  if (it->second.cpu_millis == 0 && it->second.memory_bytes == 0) placed_.erase(it);
}

model::Resources TenantLimits::Placed(const std::string& tenant) const {
  auto it = placed_.find(tenant);
  return it == placed_.end() ? model::Resources{} : it->second;
}

}  // namespace flotilla::manager
