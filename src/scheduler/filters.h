// Filters: the hard constraints of placement. A Filter says whether one
// HypervisorNode may take one ExecutionRequest, and if not, why, in words a
// user can act on ("needs 4000m cpu, 1500m free").
//
// Security matches both ways, as in HTCondor's two-sided requirements: the
// request asks things of the node (trust at least its minimum, capabilities,
// an isolation kind) and the node asks things of the request (its tenant is
// on the node's allow list).
//
// The request's required isolation kind travels as a capability: a required
// capability "isolation:KIND" means node.security.isolation must equal KIND
// (e.g. "isolation:microvm"). Such capabilities are checked by
// IsolationFilter only; CapabilityFilter skips them, so a node need not list
// "isolation:..." among its capabilities.
//
// Filters are stateless and immutable: every method is const and may be
// called concurrently. Pure: no I/O, no clock.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"

namespace flotilla::scheduler {

class Filter {
 public:
  virtual ~Filter() = default;

  // A short stable name ("resources", "trust", ...) for logs and metrics.
  virtual const char* name() const = 0;

  // Returns true if `node` may take `request`. Otherwise returns false and,
  // when `reason` is non-null, sets *reason to why, with numbers. Passing
  // null skips formatting, which is what the hot path does.
  virtual bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
                     std::string* reason) const = 0;
};

using FilterChain = std::vector<std::shared_ptr<const Filter>>;

// "node is offline" unless the node is online.
class OnlineFilter final : public Filter {
 public:
  const char* name() const override { return "online"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// "node is draining" when the node takes no new work.
class NotDrainingFilter final : public Filter {
 public:
  const char* name() const override { return "draining"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// The request's resources fit the node's free resources (kAvailable: "needs
// 4000m cpu, 1500m free") or its total capacity (kCapacity: "... 2000m
// total", for "could it ever run here"). Checked in the order cpu, memory,
// storage, bandwidth; the first shortfall is reported.
//
// Bandwidth: a demand of 0 never filters, and a node reporting bandwidth 0
// does not know its link speed, which counts as unlimited rather than as "no
// bandwidth at all", so only a known, smaller figure filters.
class ResourceFitFilter final : public Filter {
 public:
  enum class Pool { kAvailable, kCapacity };
  explicit ResourceFitFilter(Pool pool = Pool::kAvailable) : pool_(pool) {}
  const char* name() const override { return "resources"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;

 private:
  Pool pool_;
};

// "trust level 2 < required 5".
class TrustFilter final : public Filter {
 public:
  const char* name() const override { return "trust"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// The node's side of the match: "tenant 'bob' not allowed (allowed: alice)".
// An empty allow list admits every tenant.
class TenantFilter final : public Filter {
 public:
  const char* name() const override { return "tenant"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// "lacks capability 'gpu'": the first required capability the node does not
// grant. "isolation:KIND" capabilities are left to IsolationFilter.
class CapabilityFilter final : public Filter {
 public:
  const char* name() const override { return "capabilities"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// "isolation 'microvm' not offered (node gives 'process')": every required
// capability "isolation:KIND" must equal the node's isolation kind.
class IsolationFilter final : public Filter {
 public:
  const char* name() const override { return "isolation"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// Hard geography: when the request names required regions, the node's
// labels["region"] must be one of them: "region 'us-east' not in required
// regions (eu-west)". A node without a region label fails such a request.
class RegionFilter final : public Filter {
 public:
  const char* name() const override { return "region"; }
  bool Check(const model::ExecutionRequest& request, const model::HypervisorNode& node,
             std::string* reason) const override;
};

// The chain NodeSelection runs by default, in order: online, not draining,
// resources fit what is available, trust, tenant, capabilities, isolation,
// region. The first failure is the node's reason.
FilterChain DefaultFilters();

// The chain for "could this ever run on the node": what a node is, not what
// it is doing now. Resources against capacity, then trust, tenant,
// capabilities, isolation, region; online and draining are left out.
FilterChain EverFeasibleFilters();

// Runs `chain` in order; returns true if every filter passes. Otherwise
// false, with the first failure's reason in *reason when non-null.
bool PassesAll(const FilterChain& chain, const model::ExecutionRequest& request,
               const model::HypervisorNode& node, std::string* reason);

// The prefix of a required capability that names an isolation kind.
inline constexpr std::string_view kIsolationCapabilityPrefix = "isolation:";

// Returns the KIND of "isolation:KIND", or an empty view when `capability`
// is not an isolation requirement.
std::string_view IsolationKind(const std::string& capability);

// The node's labels["region"], or null when it has none.
const std::string* NodeRegion(const model::HypervisorNode& node);

// Formatting shared by the reasons: "512 MiB", "1.5 GiB", "100 B" (binary
// units, one decimal unless exact); "100 Mbit/s" (decimal units, as links are
// sold); "4000m" (milli-cores).
std::string FormatBytes(int64_t bytes);
std::string FormatBandwidth(int64_t bps);
std::string FormatCpu(int64_t millis);

}  // namespace flotilla::scheduler
