// Per-tenant admission: a bound on a tenant's unfinished executions (queued,
// assigned or running) and a token bucket on its submissions, so that one
// tenant cannot fill the queue or the database that all tenants share.
// Pure: the manager calls it under its lock with its clock's time.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"

namespace flotilla::manager {

class TenantLimits {
 public:
  struct Options {
    int64_t max_unfinished = 10'000;  // per tenant; 0: no bound
    double submits_per_second = 0;    // refill rate; 0: no rate limit
    double burst = 0;                 // bucket size (at least 1 when rate-limited)
  };
  // Tenants tracked at most; the bucket of an idle tenant is dropped first.
  static constexpr size_t kMaxTenants = 100'000;

  TenantLimits() : TenantLimits(Options()) {}
  explicit TenantLimits(Options o) : o_(o) {}

  // Admits one submission of `tenant` at `now_ms` and counts it unfinished,
  // or ResourceExhausted saying which bound and when to retry.
  absl::Status Admit(const std::string& tenant, int64_t now_ms);
  // Counts an execution recovered at start (no check).
  void Restore(const std::string& tenant) { ++unfinished_[tenant]; }
  // The execution ended (or was never recorded).
  void Finished(const std::string& tenant);
  int64_t Unfinished(const std::string& tenant) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;
  };
  const Options o_;
  std::map<std::string, int64_t> unfinished_;
  std::map<std::string, Bucket> buckets_;
};

}  // namespace flotilla::manager
