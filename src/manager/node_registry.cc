#include "manager/node_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace flotilla::manager {

NodeState* NodeRegistry::Find(const std::string& id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

const NodeState* NodeRegistry::Find(const std::string& id) const {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : it->second.get();
}

absl::StatusOr<NodeState*> NodeRegistry::ForRegistration(const std::string& id) {
  auto& slot = nodes_[id];
  if (!slot) {
    if (nodes_.size() > kMaxNodes) {
      nodes_.erase(id);
      return absl::ResourceExhaustedError(absl::StrCat(
          "the federation has ", nodes_.size(), " nodes, the most one manager keeps"));
    }
    slot = std::make_unique<NodeState>();
  }
  return slot.get();
}

NodeState& NodeRegistry::Restore(const std::string& id) {
  auto& slot = nodes_[id];
  slot = std::make_unique<NodeState>();
  return *slot;
}

std::vector<NodeRegistry::Expired> NodeRegistry::ExpireLeases(int64_t now_mono_ms,
                                                              int64_t lease_timeout_ms) {
  std::vector<Expired> out;
  for (auto& [id, ns] : nodes_) {
    if (ns->node.status != model::NodeStatus::kOnline) continue;
    const int64_t silent = now_mono_ms - ns->last_heartbeat_mono_ms;
    if (silent <= lease_timeout_ms) continue;
    ns->node.status = model::NodeStatus::kOffline;
    out.push_back({ns.get(), silent});
  }
  return out;
}

std::vector<model::HypervisorNode> NodeRegistry::Views(int64_t now_mono_ms) const {
  std::vector<model::HypervisorNode> views;
  views.reserve(nodes_.size());
  for (const auto& [id, ns] : nodes_) {
    model::HypervisorNode v = ns->node;
    v.available = ns->node.capacity - ns->reserved;
    v.running_executions = static_cast<int>(ns->assigned.size());
    if (ns->suspect_until_mono_ms > now_mono_ms) v.status = model::NodeStatus::kOffline;
    if (auto data = data_.find(id); data != data_.end()) {
      for (const auto& [key, bytes] : data->second) v.data_sets.push_back({key, bytes});
    }
    views.push_back(std::move(v));
  }
  std::sort(views.begin(), views.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return views;
}

std::vector<model::HypervisorNode> NodeRegistry::All() const {
  std::vector<model::HypervisorNode> all;
  all.reserve(nodes_.size());
  for (const auto& [id, ns] : nodes_) all.push_back(ns->node);
  return all;
}

void NodeRegistry::Assign(NodeState& node, const std::string& id, const model::Resources& r) {
  if (node.assigned.insert(id).second) node.reserved += r;
}

bool NodeRegistry::Release(NodeState& node, const std::string& id, const model::Resources& r) {
  if (node.assigned.erase(id) == 0) return false;
  node.reserved -= r;
  return true;
}

void NodeRegistry::AddData(const std::string& node_id, const std::string& key, int64_t bytes) {
  auto& keys = data_[node_id];
  // Bounded: the lowest-sorting keys go first; locality is a preference, so
  // forgetting some only costs a less local placement.
  if (keys.size() >= kMaxDataKeys && !keys.count(key)) keys.erase(keys.begin());
  keys[key] = bytes;
}

void NodeRegistry::ForgetData(const std::string& key_prefix) {
  for (auto& [node, keys] : data_) {
    for (auto it = keys.lower_bound(key_prefix);
         it != keys.end() && it->first.compare(0, key_prefix.size(), key_prefix) == 0;) {
      it = keys.erase(it);
    }
  }
}

}  // namespace flotilla::manager
