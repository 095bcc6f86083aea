#include "wire/convert.h"

namespace flotilla::wire {

model::Resources FromProto(const v1::Resources& r) {
  return {.cpu_millis = r.cpu_millis(),
          .memory_bytes = r.memory_bytes(),
          .storage_bytes = r.storage_bytes(),
          .bandwidth_bps = r.bandwidth_bps()};
}

void ToProto(const model::Resources& r, v1::Resources* out) {
  out->set_cpu_millis(r.cpu_millis);
  out->set_memory_bytes(r.memory_bytes);
  out->set_storage_bytes(r.storage_bytes);
  out->set_bandwidth_bps(r.bandwidth_bps);
}

model::HypervisorNode FromProto(const v1::HypervisorNode& n) {
  model::HypervisorNode m;
  m.id = n.id();
  m.address = n.address();
  m.capacity = FromProto(n.resources().capacity());
  m.available = FromProto(n.resources().available());
  m.security.trust_level = n.security().trust_level();
  m.security.allowed_tenants.assign(n.security().allowed_tenants().begin(),
                                    n.security().allowed_tenants().end());
  m.security.capabilities.assign(n.security().capabilities().begin(),
                                 n.security().capabilities().end());
  m.security.isolation = n.security().isolation();
  for (const auto& d : n.data().data_sets()) m.data_sets.push_back({d.key(), d.size_bytes()});
  m.status = n.status() == v1::NODE_ONLINE ? model::NodeStatus::kOnline
                                           : model::NodeStatus::kOffline;
  m.labels.insert(n.labels().begin(), n.labels().end());
  m.epoch = n.epoch();
  m.running_executions = n.running_executions();
  m.last_heartbeat_ms = n.last_heartbeat_unix_ms();
  m.cost.per_cpu_second = n.cost().per_cpu_second();
  m.cost.per_gib_second = n.cost().per_gib_second();
  m.warm_sandboxes.insert(n.warm_sandboxes().begin(), n.warm_sandboxes().end());
  m.draining = n.draining();
  return m;
}

void ToProto(const model::HypervisorNode& m, v1::HypervisorNode* n) {
  n->set_id(m.id);
  n->set_address(m.address);
  ToProto(m.capacity, n->mutable_resources()->mutable_capacity());
  ToProto(m.available, n->mutable_resources()->mutable_available());
  auto* sec = n->mutable_security();
  sec->set_trust_level(m.security.trust_level);
  sec->clear_allowed_tenants();
  for (const auto& t : m.security.allowed_tenants) sec->add_allowed_tenants(t);
  sec->clear_capabilities();
  for (const auto& c : m.security.capabilities) sec->add_capabilities(c);
  sec->set_isolation(m.security.isolation);
  n->mutable_data()->clear_data_sets();
  for (const auto& d : m.data_sets) {
    auto* ds = n->mutable_data()->add_data_sets();
    ds->set_key(d.key);
    ds->set_size_bytes(d.size_bytes);
  }
  n->set_status(m.status == model::NodeStatus::kOnline ? v1::NODE_ONLINE : v1::NODE_OFFLINE);
  n->set_busy(m.running_executions > 0);
  n->mutable_labels()->clear();
  for (const auto& [k, v] : m.labels) (*n->mutable_labels())[k] = v;
  n->set_epoch(m.epoch);
  n->set_running_executions(m.running_executions);
  n->set_last_heartbeat_unix_ms(m.last_heartbeat_ms);
  n->mutable_cost()->set_per_cpu_second(m.cost.per_cpu_second);
  n->mutable_cost()->set_per_gib_second(m.cost.per_gib_second);
  n->mutable_warm_sandboxes()->clear();
  for (const auto& [k, v] : m.warm_sandboxes) (*n->mutable_warm_sandboxes())[k] = v;
  n->set_draining(m.draining);
}

model::ExecutionRequest FromProto(const v1::ExecutionRequest& r) {
  model::ExecutionRequest m;
  m.id = r.request_id();
  m.user_id = r.user_id();
  m.security.min_trust_level = r.security().min_trust_level();
  m.security.required_capabilities.assign(r.security().required_capabilities().begin(),
                                          r.security().required_capabilities().end());
  m.priority = r.priority();
  m.resources = FromProto(r.resources());
  m.data_keys.assign(r.dependencies().data_keys().begin(), r.dependencies().data_keys().end());
  const auto& p = r.placement();
  m.placement.preferred_regions.assign(p.preferred_regions().begin(), p.preferred_regions().end());
  m.placement.required_regions.assign(p.required_regions().begin(), p.required_regions().end());
  m.placement.mode = p.mode() == v1::PLACEMENT_BID        ? model::PlacementMode::kBid
                     : p.mode() == v1::PLACEMENT_CHEAPEST ? model::PlacementMode::kCheapest
                                                          : model::PlacementMode::kScore;
  m.placement.latency_bound_ms = p.latency_bound_ms();
  m.template_name = r.template_name();
  m.function = r.function().empty() ? r.name() : r.function();
  m.input_bytes = r.input_bytes();
  m.timeout_ms = r.timeout_ms();
  return m;
}

v1::ExecutionState ToProto(model::ExecutionState s) {
  switch (s) {
    case model::ExecutionState::kQueued: return v1::EXECUTION_QUEUED;
    case model::ExecutionState::kAssigned: return v1::EXECUTION_ASSIGNED;
    case model::ExecutionState::kRunning: return v1::EXECUTION_RUNNING;
    case model::ExecutionState::kSucceeded: return v1::EXECUTION_SUCCEEDED;
    case model::ExecutionState::kFailed: return v1::EXECUTION_FAILED;
    case model::ExecutionState::kTimedOut: return v1::EXECUTION_TIMED_OUT;
    case model::ExecutionState::kCancelled: return v1::EXECUTION_CANCELLED;
  }
  return v1::EXECUTION_STATE_UNSPECIFIED;
}

model::ExecutionState FromProto(v1::ExecutionState s) {
  switch (s) {
    case v1::EXECUTION_ASSIGNED: return model::ExecutionState::kAssigned;
    case v1::EXECUTION_RUNNING: return model::ExecutionState::kRunning;
    case v1::EXECUTION_SUCCEEDED: return model::ExecutionState::kSucceeded;
    case v1::EXECUTION_FAILED: return model::ExecutionState::kFailed;
    case v1::EXECUTION_TIMED_OUT: return model::ExecutionState::kTimedOut;
    case v1::EXECUTION_CANCELLED: return model::ExecutionState::kCancelled;
    default: return model::ExecutionState::kQueued;
  }
}

const char* StateName(v1::ExecutionState s) {
  if (s == v1::EXECUTION_STATE_UNSPECIFIED) return "unknown";
  return model::ToString(FromProto(s));
}

}  // namespace flotilla::wire
