#include "scheduler/filters.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flotilla::scheduler {
namespace {

using model::ExecutionRequest;
using model::HypervisorNode;
using model::Resources;

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Callers format a reason only when one is asked for (reason != null): the
// hot path passes null and must not pay for strings.
bool Fail(std::string* reason, std::string text) {
  *reason = std::move(text);
  return false;
}

}  // namespace

std::string FormatBytes(int64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024 && bytes > -1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (std::fabs(value) >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  if (value == std::floor(value)) return absl::StrFormat("%.0f %s", value, kUnits[unit]);
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatBandwidth(int64_t bps) {
  static constexpr const char* kUnits[] = {"bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"};
  double value = static_cast<double>(bps);
  size_t unit = 0;
  while (std::fabs(value) >= 1000 && unit + 1 < std::size(kUnits)) {
    value /= 1000;
    ++unit;
  }
  if (value == std::floor(value)) return absl::StrFormat("%.0f %s", value, kUnits[unit]);
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatCpu(int64_t millis) { return absl::StrCat(millis, "m"); }

std::string_view IsolationKind(const std::string& capability) {
  std::string_view view = capability;
  if (view.substr(0, kIsolationCapabilityPrefix.size()) != kIsolationCapabilityPrefix) return {};
  return view.substr(kIsolationCapabilityPrefix.size());
}

const std::string* NodeRegion(const HypervisorNode& node) {
  // "region" fits the small-string buffer, so the lookup key costs no allocation.
  auto it = node.labels.find("region");
  return it == node.labels.end() ? nullptr : &it->second;
}

bool OnlineFilter::Check(const ExecutionRequest&, const HypervisorNode& node,
                         std::string* reason) const {
  if (node.status == model::NodeStatus::kOnline) return true;
  return reason != nullptr && Fail(reason, "node is offline");
}

bool NotDrainingFilter::Check(const ExecutionRequest&, const HypervisorNode& node,
                              std::string* reason) const {
  if (!node.draining) return true;
  return reason != nullptr && Fail(reason, "node is draining");
}

bool ResourceFitFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                              std::string* reason) const {
  const Resources& demand = request.resources;
  const Resources& pool = pool_ == Pool::kAvailable ? node.available : node.capacity;
  const bool bandwidth_fits = demand.bandwidth_bps <= 0 || pool.bandwidth_bps <= 0 ||
                              demand.bandwidth_bps <= pool.bandwidth_bps;
  if (demand.cpu_millis <= pool.cpu_millis && demand.memory_bytes <= pool.memory_bytes &&
      demand.storage_bytes <= pool.storage_bytes && bandwidth_fits) {
    return true;
  }
  if (reason == nullptr) return false;
  const char* word = pool_ == Pool::kAvailable ? "free" : "total";
  if (demand.cpu_millis > pool.cpu_millis) {
    return Fail(reason, absl::StrCat("needs ", FormatCpu(demand.cpu_millis), " cpu, ",
                                     FormatCpu(pool.cpu_millis), " ", word));
  }
  if (demand.memory_bytes > pool.memory_bytes) {
    return Fail(reason, absl::StrCat("needs ", FormatBytes(demand.memory_bytes), " memory, ",
                                     FormatBytes(pool.memory_bytes), " ", word));
  }
  if (demand.storage_bytes > pool.storage_bytes) {
    return Fail(reason, absl::StrCat("needs ", FormatBytes(demand.storage_bytes), " storage, ",
                                     FormatBytes(pool.storage_bytes), " ", word));
  }
  return Fail(reason, absl::StrCat("needs ", FormatBandwidth(demand.bandwidth_bps), " bandwidth, ",
                                   FormatBandwidth(pool.bandwidth_bps), " ", word));
}

bool TrustFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                        std::string* reason) const {
  if (node.security.trust_level >= request.security.min_trust_level) return true;
  if (reason == nullptr) return false;
  return Fail(reason, absl::StrFormat("trust level %d < required %d", node.security.trust_level,
                                      request.security.min_trust_level));
}

bool TenantFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                         std::string* reason) const {
  const std::vector<std::string>& allowed = node.security.allowed_tenants;
  if (allowed.empty() || Contains(allowed, request.user_id)) return true;
  if (reason == nullptr) return false;
  return Fail(reason, absl::StrCat("tenant '", request.user_id,
                                   "' not allowed (allowed: ", absl::StrJoin(allowed, ", "), ")"));
}

bool CapabilityFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                             std::string* reason) const {
  for (const std::string& capability : request.security.required_capabilities) {
    if (!IsolationKind(capability).empty()) continue;
    if (!Contains(node.security.capabilities, capability)) {
      if (reason == nullptr) return false;
      return Fail(reason, absl::StrCat("lacks capability '", capability, "'"));
    }
  }
  return true;
}

bool IsolationFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                            std::string* reason) const {
  for (const std::string& capability : request.security.required_capabilities) {
    const std::string_view kind = IsolationKind(capability);
    if (kind.empty() || kind == node.security.isolation) continue;
    if (reason == nullptr) return false;
    const std::string& offered = node.security.isolation;
    return Fail(reason,
                absl::StrCat("isolation '", std::string(kind), "' not offered (node gives ",
                             offered.empty() ? "none" : absl::StrCat("'", offered, "'"), ")"));
  }
  return true;
}

bool RegionFilter::Check(const ExecutionRequest& request, const HypervisorNode& node,
                         std::string* reason) const {
  const std::vector<std::string>& required = request.placement.required_regions;
  if (required.empty()) return true;
  const std::string* region = NodeRegion(node);
  if (region != nullptr && Contains(required, *region)) return true;
  if (reason == nullptr) return false;
  if (region == nullptr) {
    return Fail(reason, absl::StrCat("node has no region label; required regions (",
                                     absl::StrJoin(required, ", "), ")"));
  }
  return Fail(reason, absl::StrCat("region '", *region, "' not in required regions (",
                                   absl::StrJoin(required, ", "), ")"));
}

FilterChain DefaultFilters() {
  return {
      std::make_shared<OnlineFilter>(),
      std::make_shared<NotDrainingFilter>(),
      std::make_shared<ResourceFitFilter>(ResourceFitFilter::Pool::kAvailable),
      std::make_shared<TrustFilter>(),
      std::make_shared<TenantFilter>(),
      std::make_shared<CapabilityFilter>(),
      std::make_shared<IsolationFilter>(),
      std::make_shared<RegionFilter>(),
  };
}

FilterChain EverFeasibleFilters() {
  return {
      std::make_shared<ResourceFitFilter>(ResourceFitFilter::Pool::kCapacity),
      std::make_shared<TrustFilter>(),
      std::make_shared<TenantFilter>(),
      std::make_shared<CapabilityFilter>(),
      std::make_shared<IsolationFilter>(),
      std::make_shared<RegionFilter>(),
  };
}

bool PassesAll(const FilterChain& chain, const ExecutionRequest& request,
               const HypervisorNode& node, std::string* reason) {
  for (const auto& filter : chain) {
    if (!filter->Check(request, node, reason)) return false;
  }
  return true;
}

}  // namespace flotilla::scheduler
