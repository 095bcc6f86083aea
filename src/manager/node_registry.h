// NodeRegistry: the federation's HypervisorNodes as the manager holds them —
// registration spec, epoch, lease (last heartbeat), reservations of the
// executions assigned to each node, dispatch suspicion, and the data keys a
// node produced (for the locality scorer).
//
// Pure: no I/O, no clock reads (time is passed in), no lock of its own. The
// manager owns one and uses it under its state lock; tests use it with plain
// values. Bounded: at most kMaxNodes nodes, kMaxDataKeys produced keys each.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/types.pb.h"
#include "model/model.h"

namespace flotilla::manager {

namespace v1 = ::flotilla::v1;

struct NodeState {
  v1::HypervisorNode spec;  // as registered, plus what its reports update
  model::HypervisorNode node;
  model::Resources reserved;
  std::set<std::string> assigned;  // execution ids of its current attempts
  int64_t last_heartbeat_mono_ms = 0;
  int64_t suspect_until_mono_ms = 0;  // a dispatch to it failed: skip it until then
  model::Resources reported_available;
  double load_average = 0;
  // Given to the node at registration; migration tokens for images sent to
  // it are signed with it (auth/migration_token.h).
  std::string migration_key;
};

class NodeRegistry {
 public:
  static constexpr size_t kMaxNodes = 10000;
  static constexpr size_t kMaxDataKeys = 4096;

  // The node `id`, or nullptr.
  NodeState* Find(const std::string& id);
  const NodeState* Find(const std::string& id) const;
  // The node `id` for a (re-)registration, created when new. ResourceExhausted
  // when a new node would pass kMaxNodes.
  absl::StatusOr<NodeState*> ForRegistration(const std::string& id);
  // Restores a node from the store (recovery).
  NodeState& Restore(const std::string& id);

  // Nodes whose lease ran out at `now_mono_ms`: marked offline and returned,
  // with how long each was silent.
  struct Expired {
    NodeState* node;
    int64_t silent_ms;
  };
  std::vector<Expired> ExpireLeases(int64_t now_mono_ms, int64_t lease_timeout_ms);

  // The scheduler's snapshot at `now_mono_ms`: free = capacity - reserved,
  // suspect nodes offline, produced keys as data sets; sorted by id.
  std::vector<model::HypervisorNode> Views(int64_t now_mono_ms) const;
  // Every node's registered view (for "could any node ever run this").
  std::vector<model::HypervisorNode> All() const;

  // Assigns / releases execution `id` on `node`; Release returns whether it
  // was assigned there.
  void Assign(NodeState& node, const std::string& id, const model::Resources& r);
  bool Release(NodeState& node, const std::string& id, const model::Resources& r);

  void AddData(const std::string& node_id, const std::string& key, int64_t bytes);
  void ForgetData(const std::string& key_prefix);

  size_t size() const { return nodes_.size(); }
  template <typename F>
  void ForEach(F&& f) {
    for (auto& [id, ns] : nodes_) f(*ns);
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [id, ns] : nodes_) f(static_cast<const NodeState&>(*ns));
  }

 private:
  std::unordered_map<std::string, std::unique_ptr<NodeState>> nodes_;
  // node id -> produced key -> bytes.
  std::unordered_map<std::string, std::map<std::string, int64_t>> data_;
};

}  // namespace flotilla::manager
