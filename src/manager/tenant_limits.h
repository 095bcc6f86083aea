// Per-tenant admission: a bound on a tenant's unfinished executions (queued,
// assigned or running) and a token bucket on its submissions, so that one
// tenant cannot fill the queue or the database that all tenants share.
//
// Resource quotas: the CPU and memory that a tenant's placed executions
// (assigned or running) reserve together. They act at dispatch, not at
// submit: work beyond the quota stays queued, with a waiting reason that
// names the quota, and runs as the tenant's earlier work ends (as with
// Nomad's quotas, not Kubernetes' refusal at creation). Only a request that
// alone exceeds a quota, and so could never run, is refused at submit.
//
// Pure: the manager calls it under its lock with its clock's time.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "model/model.h"

namespace flotilla::manager {

class TenantLimits {
 public:
  struct Options {
    int64_t max_unfinished = 10'000;  // per tenant; 0: no bound
    double submits_per_second = 0;    // refill rate; 0: no rate limit
    double burst = 0;                 // bucket size (at least 1 when rate-limited)
    int64_t max_cpu_millis = 0;       // placed at once, per tenant; 0: no quota
    int64_t max_memory_bytes = 0;     // likewise
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

  // InvalidArgument when `r` alone exceeds a resource quota (it could never
  // be placed), naming the quota's key.
  absl::Status CheckRequest(const std::string& tenant, const model::Resources& r) const;
  // Whether placing `r` now keeps the tenant within its quotas.
  bool Fits(const std::string& tenant, const model::Resources& r) const;
  // Why placing `r` now would exceed the tenant's quota, or "" if it fits.
  std::string WhyNotPlaceable(const std::string& tenant, const model::Resources& r) const;
  // Counts `r` as placed / no longer placed for `tenant`. Each Place is
  // matched by one Unplace (the manager marks the execution that holds it).
  void Place(const std::string& tenant, const model::Resources& r);
  void Unplace(const std::string& tenant, const model::Resources& r);
  model::Resources Placed(const std::string& tenant) const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t at_ms = 0;
  };
  const Options o_;
  std::map<std::string, int64_t> unfinished_;
  std::map<std::string, Bucket> buckets_;
  std::map<std::string, model::Resources> placed_;
};

}  // namespace flotilla::manager
