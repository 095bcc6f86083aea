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
