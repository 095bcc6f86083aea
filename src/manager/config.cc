#include "manager/config.h"

#include <yaml-cpp/yaml.h>

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/transport_yaml.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"
#include "scheduler/load_balancer.h"
#include "scheduler/pending_queue.h"

namespace flotilla::manager {

namespace {

absl::Status ReadMs(const YAML::Node& root, const std::string& where, const std::string& key,
                    std::chrono::milliseconds* out) {
  int64_t ms = out->count();
  RETURN_IF_ERROR(ReadYaml(root, where, key, &ms));
  *out = std::chrono::milliseconds(ms);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ManagerConfig> LoadManagerConfig(const std::string& path) {
  ManagerConfig c;
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path, "manager config"));
  if (!root || root.IsNull()) return c;
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping"));
  const std::string where = path + ": ";
  RETURN_IF_ERROR(CheckKnownKeys(
      root, where,
      {"grpc_listen", "http_listen", "db_path", "durability", "lease_timeout_ms",
       "heartbeat_interval_ms", "dispatch_grace_ms", "scheduler", "default_resources",
       "default_timeout_ms", "max_timeout_ms", "max_request_bytes", "state", "functions",
       "max_queued", "attempt_grace_ms", "max_attempts", "retention", "tls", "auth", "limits", "ha"}));
  RETURN_IF_ERROR(ReadYaml(root, where, "grpc_listen", &c.grpc_listen));
  RETURN_IF_ERROR(ReadYaml(root, where, "http_listen", &c.http_listen));
  RETURN_IF_ERROR(ReadYaml(root, where, "db_path", &c.db_path));
  std::string durability = "process_crash";
  RETURN_IF_ERROR(ReadYaml(root, where, "durability", &durability));
  if (durability == "process_crash") {
    c.durability = store::Durability::kProcessCrash;
  } else if (durability == "power_loss") {
    c.durability = store::Durability::kPowerLoss;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "durability: '", durability, "' is not one of process_crash, power_loss"));
  }
  RETURN_IF_ERROR(ReadMs(root, where, "lease_timeout_ms", &c.lease_timeout));
  RETURN_IF_ERROR(ReadMs(root, where, "heartbeat_interval_ms", &c.heartbeat_interval));
  RETURN_IF_ERROR(ReadMs(root, where, "dispatch_grace_ms", &c.dispatch_grace));
  if (const YAML::Node sched = root["scheduler"]) {
    const std::string w = where + "scheduler.";
    RETURN_IF_ERROR(CheckKnownKeys(
        sched, w,
        {"weights", "strategy", "top_k", "tie_epsilon", "sampling_threshold", "sample_k", "bid_k",
         "time_price_per_s", "aging_points_per_second", "preemption", "preemption_min_gap",
         "load_balancing", "overload_margin"}));
    std::string strategy = "least_allocated";
    RETURN_IF_ERROR(ReadYaml(sched, w, "strategy", &strategy));
    if (strategy == "least_allocated") {
      c.selection.strategy = scheduler::AllocationStrategy::kLeastAllocated;
    } else if (strategy == "most_allocated") {
      c.selection.strategy = scheduler::AllocationStrategy::kMostAllocated;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          w, "strategy: '", strategy, "' is not one of least_allocated, most_allocated"));
    }
    RETURN_IF_ERROR(ReadYaml(sched, w, "top_k", &c.selection.top_k));
    RETURN_IF_ERROR(ReadYaml(sched, w, "tie_epsilon", &c.selection.tie_epsilon));
    RETURN_IF_ERROR(ReadYaml(sched, w, "sampling_threshold", &c.selection.sampling_threshold));
    RETURN_IF_ERROR(ReadYaml(sched, w, "sample_k", &c.selection.sample_k));
    RETURN_IF_ERROR(ReadYaml(sched, w, "bid_k", &c.selection.bid_k));
    RETURN_IF_ERROR(ReadYaml(sched, w, "time_price_per_s", &c.selection.time_price_per_s));
    RETURN_IF_ERROR(ReadYaml(sched, w, "aging_points_per_second", &c.aging_points_per_second));
    RETURN_IF_ERROR(ReadYaml(sched, w, "preemption", &c.preemption));
    RETURN_IF_ERROR(ReadYaml(sched, w, "preemption_min_gap", &c.preemption_min_gap));
    RETURN_IF_ERROR(ReadYaml(sched, w, "load_balancing", &c.load_balancing));
    RETURN_IF_ERROR(ReadYaml(sched, w, "overload_margin", &c.overload_margin));
    if (const YAML::Node w = sched["weights"]) {
      std::map<std::string, double> weights;
      for (const auto& kv : w) {
        const std::string key = kv.first.as<std::string>();
        double value = 0;
        RETURN_IF_ERROR(ReadYaml(w, where + "scheduler.weights.", key, &value));
        weights[key] = value;
      }
      auto parsed = scheduler::Weights::FromMap(weights);
      if (!parsed.ok()) return Annotate(parsed.status(), where + "scheduler.weights");
      c.weights = *parsed;
    }
  }
  if (const YAML::Node r = root["default_resources"]) {
    RETURN_IF_ERROR(CheckKnownKeys(r, where + "default_resources.", {"cpu_millis", "memory_bytes"}));
    RETURN_IF_ERROR(ReadYaml(r, where + "default_resources.", "cpu_millis",
                             &c.default_resources.cpu_millis));
    RETURN_IF_ERROR(ReadYaml(r, where + "default_resources.", "memory_bytes",
                             &c.default_resources.memory_bytes));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "default_timeout_ms", &c.default_timeout_ms));
  RETURN_IF_ERROR(ReadYaml(root, where, "max_timeout_ms", &c.max_timeout_ms));
  RETURN_IF_ERROR(ReadYaml(root, where, "max_request_bytes", &c.max_request_bytes));
  RETURN_IF_ERROR(ReadYaml(root, where, "max_queued", &c.max_queued));
  RETURN_IF_ERROR(ReadMs(root, where, "attempt_grace_ms", &c.attempt_grace));
  RETURN_IF_ERROR(ReadYaml(root, where, "max_attempts", &c.max_attempts));
  if (const YAML::Node r = root["retention"]) {
    const std::string w = where + "retention.";
    RETURN_IF_ERROR(CheckKnownKeys(r, w, {"max_age_ms", "max_count", "interval_ms"}));
    RETURN_IF_ERROR(ReadMs(r, w, "max_age_ms", &c.retention_max_age));
    RETURN_IF_ERROR(ReadYaml(r, w, "max_count", &c.retention_max_count));
    RETURN_IF_ERROR(ReadMs(r, w, "interval_ms", &c.retention_interval));
  }
  if (const YAML::Node st = root["state"]) {
    const std::string w = where + "state.";
    RETURN_IF_ERROR(CheckKnownKeys(st, w, {"backend", "redis_address", "redis_key_prefix"}));
    RETURN_IF_ERROR(ReadYaml(st, w, "backend", &c.state_backend));
    RETURN_IF_ERROR(ReadYaml(st, w, "redis_address", &c.redis_address));
    RETURN_IF_ERROR(ReadYaml(st, w, "redis_key_prefix", &c.redis_key_prefix));
  }
  if (const YAML::Node fn = root["functions"]) {
    const std::string w = where + "functions.";
    RETURN_IF_ERROR(CheckKnownKeys(fn, w, {"max_tries", "max_instances", "target_concurrency",
                                           "min_piece_cost"}));
    RETURN_IF_ERROR(ReadYaml(fn, w, "max_tries", &c.workflow_max_tries));
    RETURN_IF_ERROR(ReadYaml(fn, w, "max_instances", &c.function_max_instances));
    RETURN_IF_ERROR(ReadYaml(fn, w, "target_concurrency", &c.function_target_concurrency));
    RETURN_IF_ERROR(ReadYaml(fn, w, "min_piece_cost", &c.split_min_piece_cost));
  }
  if (const YAML::Node l = root["limits"]) {
    const std::string w = where + "limits.";
    RETURN_IF_ERROR(
        CheckKnownKeys(l, w,
                       {"tenant_max_unfinished", "tenant_submits_per_second", "tenant_submit_burst",
                        "tenant_kv_max_keys", "tenant_kv_max_bytes", "queue_max_length",
                        "tenant_queue_max_messages", "tenant_max_cpu_millis",
                        "tenant_max_memory_bytes"}));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_queue_max_messages", &c.tenant_queue_max_messages));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_kv_max_keys", &c.tenant_kv_max_keys));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_kv_max_bytes", &c.tenant_kv_max_bytes));
    RETURN_IF_ERROR(ReadYaml(l, w, "queue_max_length", &c.queue_max_length));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_max_unfinished", &c.tenant_max_unfinished));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_submits_per_second", &c.tenant_submits_per_second));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_submit_burst", &c.tenant_submit_burst));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_max_cpu_millis", &c.tenant_max_cpu_millis));
    RETURN_IF_ERROR(ReadYaml(l, w, "tenant_max_memory_bytes", &c.tenant_max_memory_bytes));
    if (c.tenant_max_unfinished < 0 || c.tenant_submits_per_second < 0 || c.tenant_submit_burst < 0 ||
        c.tenant_max_cpu_millis < 0 || c.tenant_max_memory_bytes < 0) {
      return absl::InvalidArgumentError(absl::StrCat(w, "values must not be negative"));
    }
  }
  if (const YAML::Node h = root["ha"]) {
    const std::string w = where + "ha.";
    RETURN_IF_ERROR(
        CheckKnownKeys(h, w, {"etcd", "id", "advertise", "lease_ttl_ms", "prefix"}));
    RETURN_IF_ERROR(ReadYaml(h, w, "etcd", &c.ha.etcd));
    RETURN_IF_ERROR(ReadYaml(h, w, "id", &c.ha.id));
    RETURN_IF_ERROR(ReadYaml(h, w, "advertise", &c.ha.advertise));
    RETURN_IF_ERROR(ReadMs(h, w, "lease_ttl_ms", &c.ha.lease_ttl));
    RETURN_IF_ERROR(ReadYaml(h, w, "prefix", &c.ha.prefix));
  }
  RETURN_IF_ERROR(auth::ReadTransportYaml(root, where, &c.transport));
  if (const YAML::Node a = root["auth"]) {
    const std::string w = where + "auth.";
    RETURN_IF_ERROR(CheckKnownKeys(a, w, {"users_file", "metrics"}));
    RETURN_IF_ERROR(ReadYaml(a, w, "users_file", &c.users_file));
    std::string metrics = "open";
    RETURN_IF_ERROR(ReadYaml(a, w, "metrics", &metrics));
    if (metrics != "open" && metrics != "token") {
      return absl::InvalidArgumentError(
          absl::StrCat(w, "metrics: '", metrics, "' is not one of open, token"));
    }
    c.metrics_need_token = metrics == "token";
  }
  RETURN_IF_ERROR(Annotate(Validate(c), path));
  return c;
}

absl::Status Validate(const ManagerConfig& c) {
  auto positive = [](const char* key, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(key, ": must be > 0, got ", v));
  };
  RETURN_IF_ERROR(positive("lease_timeout_ms", c.lease_timeout.count()));
  RETURN_IF_ERROR(positive("heartbeat_interval_ms", c.heartbeat_interval.count()));
  RETURN_IF_ERROR(positive("dispatch_grace_ms", c.dispatch_grace.count()));
  RETURN_IF_ERROR(positive("default_resources.cpu_millis", c.default_resources.cpu_millis));
  RETURN_IF_ERROR(positive("default_resources.memory_bytes", c.default_resources.memory_bytes));
  RETURN_IF_ERROR(positive("default_timeout_ms", c.default_timeout_ms));
  RETURN_IF_ERROR(positive("max_timeout_ms", c.max_timeout_ms));
  RETURN_IF_ERROR(positive("max_request_bytes", c.max_request_bytes));
  RETURN_IF_ERROR(positive("max_queued", c.max_queued));
  RETURN_IF_ERROR(positive("attempt_grace_ms", c.attempt_grace.count()));
  RETURN_IF_ERROR(positive("max_attempts", c.max_attempts));
  RETURN_IF_ERROR(positive("retention.max_age_ms", c.retention_max_age.count()));
  RETURN_IF_ERROR(positive("retention.max_count", c.retention_max_count));
  RETURN_IF_ERROR(positive("retention.interval_ms", c.retention_interval.count()));
  RETURN_IF_ERROR(positive("limits.tenant_kv_max_keys", c.tenant_kv_max_keys));
  RETURN_IF_ERROR(positive("limits.tenant_kv_max_bytes", c.tenant_kv_max_bytes));
  RETURN_IF_ERROR(positive("limits.queue_max_length", c.queue_max_length));
  RETURN_IF_ERROR(positive("limits.tenant_queue_max_messages", c.tenant_queue_max_messages));
  if (c.heartbeat_interval >= c.lease_timeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "heartbeat_interval_ms (", c.heartbeat_interval.count(),
        ") must be shorter than lease_timeout_ms (", c.lease_timeout.count(), ")"));
  }
  if (c.default_timeout_ms > c.max_timeout_ms) {
    return absl::InvalidArgumentError("default_timeout_ms must not exceed max_timeout_ms");
  }
  RETURN_IF_ERROR(Annotate(c.selection.Validate(), "scheduler"));
  scheduler::PendingQueue::Options queue{.aging_points_per_second = c.aging_points_per_second};
  RETURN_IF_ERROR(Annotate(queue.Validate(), "scheduler"));
  scheduler::LoadBalancerOptions lb;
  lb.overload_margin = c.overload_margin;
  RETURN_IF_ERROR(Annotate(lb.Validate(), "scheduler"));
  if (c.preemption_min_gap < 1 || c.preemption_min_gap > 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheduler.preemption_min_gap: ", c.preemption_min_gap, " is out of range 1..100"));
  }
  if (c.state_backend != "embedded" && c.state_backend != "redis") {
    return absl::InvalidArgumentError(absl::StrCat("state.backend: '", c.state_backend,
                                                   "' is not one of embedded, redis"));
  }
  RETURN_IF_ERROR(positive("functions.max_tries", c.workflow_max_tries));
  RETURN_IF_ERROR(positive("functions.max_instances", c.function_max_instances));
  if (c.function_target_concurrency <= 0) {
    return absl::InvalidArgumentError("functions.target_concurrency: must be > 0");
  }
  if (c.split_min_piece_cost < 0) {
    return absl::InvalidArgumentError("functions.min_piece_cost: must not be negative");
  }
  if (c.grpc_listen.empty()) return absl::InvalidArgumentError("grpc_listen: must not be empty");
  if (c.db_path.empty()) return absl::InvalidArgumentError("db_path: must not be empty");
  if (c.ha.enabled()) {
    for (const std::string& e : c.ha.etcd) {
      if (e.empty() || e.find(':') == std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("ha.etcd: '", e, "' is not host:port"));
      }
    }
    if (c.ha.lease_ttl < std::chrono::seconds(2) || c.ha.lease_ttl > std::chrono::seconds(60)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ha.lease_ttl_ms: ", c.ha.lease_ttl.count(), " is out of range 2000..60000"));
    }
    if (c.ha.prefix.empty() || c.ha.prefix.front() != '/' || c.ha.prefix.back() != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("ha.prefix: '", c.ha.prefix, "' must start and end with '/'"));
    }
    // Standbys do not listen, so nothing learns a port picked at bind time:
    // agents and clients list every replica's address in advance.
    if (absl::EndsWith(c.grpc_listen, ":0")) {
      return absl::InvalidArgumentError(
          "ha: grpc_listen needs a fixed port (agents and clients list every replica's address)");
    }
    // Every replica must see the same keys and queues: the embedded store
    // lives in one process's memory and would vanish with a failover.
    if (c.state_backend != "redis") {
      return absl::InvalidArgumentError(
          "ha: needs state.backend: redis (the embedded key-value store lives in one manager's "
          "memory; the replicas must share theirs)");
    }
  }
  return absl::OkStatus();
}

}  // namespace flotilla::manager
