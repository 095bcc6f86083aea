// ManagerConfig: every setting of `flotilla manager`, typed and validated in
// one place. Loaded from YAML (docs/configuration.md); errors name the key
// and the bad value.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/pki.h"
#include "model/model.h"
#include "scheduler/node_selection.h"
#include "store/store.h"

namespace flotilla::manager {

// High availability (`ha:`): several manager replicas share their state in
// an etcd cluster and elect one leader with an etcd lease; the others stand
// by and take over when it goes. Off (the single-manager SQLite default)
// while `etcd` is empty.
struct HaConfig {
  std::vector<std::string> etcd;  // etcd client endpoints, "host:port"
  // This replica's name in the election; default: its advertised address.
  std::string id;
  // The address agents and clients reach this replica at (its grpc_listen
  // when that names a host, else required).
  std::string advertise;
  // A dead leader is replaced about this long (plus up to 0.5 s of etcd's
  // lease sweep) after its last renewal; etcd rounds it up to whole seconds.
  std::chrono::milliseconds lease_ttl{3000};
  std::string prefix = "/flotilla/";          // keys: <prefix>leader, <prefix>store/
  bool enabled() const { return !etcd.empty(); }
};

struct ManagerConfig {
  // This manager's term as leader (set by RunManager from the election, not
  // read from YAML; 0 for a single manager). It goes with every request to an
  // agent and every answer to one, so agents refuse a deposed leader.
  uint64_t manager_epoch = 0;
  HaConfig ha;
  std::string grpc_listen = "127.0.0.1:7070";  // port 0 picks a free one
  std::string http_listen = "127.0.0.1:7071";  // /healthz, /metrics; "" disables
  std::string db_path = "flotilla.db";
  store::Durability durability = store::Durability::kProcessCrash;
  // An agent silent for this long is offline; its executions are re-queued.
  std::chrono::milliseconds lease_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{1000};  // told to agents
  // An execution sent to a node that the node's reports have not mentioned
  // for this long is taken as never received, and re-queued.
  std::chrono::milliseconds dispatch_grace{5000};
  // The seed's weights plus geo: a request's preferred regions (a function's
  // geo_preference) must outweigh small differences in load and locality.
  // Requests that prefer no region score 0 on geo everywhere, so it changes
  // nothing for them.
  scheduler::Weights weights{.geo = 0.5};
  scheduler::SelectionOptions selection;  // strategy, top_k, sampling, bidding
  double aging_points_per_second = 0.1;  // queue ageing; 0: strict priorities
  bool preemption = false;                // evict work >= min gap lower to place urgent work
  int preemption_min_gap = 10;
  bool load_balancing = true;             // steer queued work away from overloaded nodes
  double overload_margin = 0.2;           // above the federation's average utilisation
  model::Resources default_resources{.cpu_millis = 100, .memory_bytes = 64ll << 20};
  int64_t default_timeout_ms = 300'000;
  int64_t max_timeout_ms = 24ll * 3600 * 1000;
  int64_t max_request_bytes = 4ll << 20;
  // Admission control: a submit that would make more than this many
  // executions wait (queued, or being recorded) is refused with
  // RESOURCE_EXHAUSTED and a retry hint; what was accepted is never dropped.
  int64_t max_queued = 100'000;
  // Per tenant: at most this many unfinished executions (0: no bound), and
  // submissions at most at this rate with this burst (0: no rate limit).
  int64_t tenant_max_unfinished = 10'000;
  double tenant_submits_per_second = 0;
  double tenant_submit_burst = 0;
  // Per tenant: CPU and memory that its placed (assigned or running)
  // executions reserve together; more waits in the queue (0: no quota).
  int64_t tenant_max_cpu_millis = 0;
  int64_t tenant_max_memory_bytes = 0;
  // Per tenant, over all its key-value namespaces: live keys, and bytes of
  // keys plus values (kv/kv.h "Tenant quotas"). Per queue: messages held
  // until every consumer group has acked them (kv/queue.h "Length cap").
  int64_t tenant_kv_max_keys = 100'000;
  int64_t tenant_kv_max_bytes = 256ll << 20;
  int64_t queue_max_length = 100'000;
  // Per tenant: messages held by all its queues together.
  int64_t tenant_queue_max_messages = 1'000'000;
  // A running attempt whose node has not returned a result by its timeout
  // plus this grace is taken as lost: cancelled on its node and re-queued
  // (or failed after max_attempts).
  std::chrono::milliseconds attempt_grace{30000};
  int max_attempts = 3;
  // Retention of finished executions (with their attempts and results):
  // deleted once older than retention_max_age, and beyond the newest
  // retention_max_count. Checked every retention_interval.
  std::chrono::milliseconds retention_max_age{7ll * 24 * 3600 * 1000};
  int64_t retention_max_count = 1'000'000;
  std::chrono::milliseconds retention_interval{60000};
  std::string ready_file;  // written (JSON: grpc, http, pid) once serving
  // Shared state of functions and workflows (key-value store and queues):
  // "embedded" (in the manager's memory) or "redis" at redis_address.
  std::string state_backend = "embedded";
  std::string redis_address = "127.0.0.1:6379";
  std::string redis_key_prefix = "flotilla";
  // Workflows (the orchestrator).
  int workflow_max_tries = 3;
  int function_max_instances = 16;    // in-flight executions per function
  double function_target_concurrency = 1.0;
  double split_min_piece_cost = 3.0;  // pieces below this merge (cost units ~ ms)
  // Security (docs/security.md). gRPC is mutual TLS under the federation's
  // CA: nodes present certificates, users bearer tokens from users_file.
  // `tls.insecure: true` turns all of it off: a development mode, logged
  // loudly, in which every caller is the admin of tenant "default".
  auth::Transport transport;
  std::string users_file;
  bool metrics_need_token = false;  // auth.metrics: "open" (default) or "token"
};

// Returns the defaults overridden by the YAML file at `path`.
absl::StatusOr<ManagerConfig> LoadManagerConfig(const std::string& path);

// Checks cross-field rules (positive durations, limits). Names the key.
absl::Status Validate(const ManagerConfig& config);

}  // namespace flotilla::manager
