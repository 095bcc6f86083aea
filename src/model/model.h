// The plain data model shared by the pure cores (scheduler, queue) and the
// shells (manager, agent, store). It mirrors proto/flotilla/v1/types.proto,
// which stays the wire contract; src/wire converts between the two.
// Value types only: no I/O, no locking, copy freely.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flotilla::model {

struct Resources {
  int64_t cpu_millis = 0;  // 1000 = one core
  int64_t memory_bytes = 0;
  int64_t storage_bytes = 0;
  int64_t bandwidth_bps = 0;

  // Returns true if every dimension of this demand is <= the same one of `available`.
  bool FitsIn(const Resources& available) const {
    return cpu_millis <= available.cpu_millis && memory_bytes <= available.memory_bytes &&
           storage_bytes <= available.storage_bytes && bandwidth_bps <= available.bandwidth_bps;
  }
  Resources& operator+=(const Resources& o) {
    cpu_millis += o.cpu_millis;
    memory_bytes += o.memory_bytes;
    storage_bytes += o.storage_bytes;
    bandwidth_bps += o.bandwidth_bps;
    return *this;
  }
  Resources& operator-=(const Resources& o) {
    cpu_millis -= o.cpu_millis;
    memory_bytes -= o.memory_bytes;
    storage_bytes -= o.storage_bytes;
    bandwidth_bps -= o.bandwidth_bps;
    return *this;
  }
  friend Resources operator+(Resources a, const Resources& b) { return a += b; }
  friend Resources operator-(Resources a, const Resources& b) { return a -= b; }
  bool operator==(const Resources&) const = default;
};

struct SecurityProfile {
  int trust_level = 0;                       // 0 .. 10
  std::vector<std::string> allowed_tenants;  // empty: every tenant
  std::vector<std::string> capabilities;     // e.g. "network-egress"
  std::string isolation;                     // sandbox kind
};

struct DataSet {
  std::string key;
  int64_t size_bytes = 0;
};

enum class NodeStatus { kOnline, kOffline };

// Price per resource-second, in arbitrary currency units.
struct Cost {
  double per_cpu_second = 0;  // per core-second
  double per_gib_second = 0;  // per GiB of memory per second
};

struct HypervisorNode {
  std::string id;
  std::string address;
  Resources capacity;
  Resources available;  // capacity less reservations of running executions
  SecurityProfile security;
  std::vector<DataSet> data_sets;
  NodeStatus status = NodeStatus::kOffline;
  std::map<std::string, std::string> labels;  // "region", "zone", ...
  uint64_t epoch = 0;
  int running_executions = 0;
  int64_t last_heartbeat_ms = 0;
  Cost cost;
  std::map<std::string, int> warm_sandboxes;  // idle sandboxes by template name
  bool draining = false;                      // takes no new work
};

enum class PlacementMode { kScore, kBid, kCheapest };

struct PlacementPreferences {
  std::vector<std::string> preferred_regions;  // soft
  std::vector<std::string> required_regions;   // hard
  PlacementMode mode = PlacementMode::kScore;
  int64_t latency_bound_ms = 0;  // for kCheapest; 0: none
};

struct SecurityContext {
  int min_trust_level = 0;
  std::vector<std::string> required_capabilities;
};

// What the scheduler needs to know of an ExecutionRequest. The full request
// (code, files, env) travels as its wire form beside it.
struct ExecutionRequest {
  std::string id;
  std::string user_id;  // the tenant
  SecurityContext security;
  int priority = 0;  // 0 .. 100, higher first
  Resources resources;
  std::vector<std::string> data_keys;
  PlacementPreferences placement;
  std::string template_name;  // warm-pool affinity
  std::string function;       // latency-model key; empty: the request's name
  int64_t input_bytes = 0;
  int64_t timeout_ms = 0;
};

enum class ExecutionState {
  kQueued,
  kAssigned,
  kRunning,
  kSucceeded,
  kFailed,
  kTimedOut,
  kCancelled,
};

inline bool IsTerminal(ExecutionState s) {
  return s == ExecutionState::kSucceeded || s == ExecutionState::kFailed ||
         s == ExecutionState::kTimedOut || s == ExecutionState::kCancelled;
}

// "queued", "assigned", ... as stored and printed.
const char* ToString(ExecutionState s);
// Parses ToString's output; returns false if `text` names no state.
bool ParseExecutionState(const std::string& text, ExecutionState* out);
const char* ToString(NodeStatus s);

}  // namespace flotilla::model
