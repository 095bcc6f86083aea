#include "agent/config.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "auth/transport_yaml.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"
#include "wire/endpoints.h"

namespace flotilla::agent {

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  AgentConfig c;
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path, "agent config"));
  if (!root || root.IsNull()) return c;
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping"));
  const std::string where = path + ": ";
  RETURN_IF_ERROR(CheckKnownKeys(root, where,
                                 {"node_id",
                                  "manager",
                                  "listen",
                                  "advertise",
                                  "labels",
                                  "security",
                                  "data_sets",
                                  "tls",
                                  "resources",
                                  "work_dir",
                                  "output_limit_bytes",
                                  "heartbeat_interval_ms",
                                  "isolation",
                                  "trusted_development_node",
                                  "templates_dir",
                                  "guest_binary",
                                  "default_template",
                                  "vm_kernel",
                                  "vm_initrd",
                                  "vm_rootfs",
                                  "vm_jail",
                                  "sandbox_uid",
                                  "cost",
                                  "resize",
                                  "checkpoint"}));
  if (const YAML::Node cp = root["checkpoint"]) {
    const std::string w = where + "checkpoint.";
    RETURN_IF_ERROR(CheckKnownKeys(cp, w,
                                   {"criu_path", "image_dir", "fault_injection", "timeout_floor_ms",
                                    "timeout_cap_ms", "probe_timeout_ms"}));
    RETURN_IF_ERROR(ReadYaml(cp, w, "criu_path", &c.checkpoint.criu_path));
    RETURN_IF_ERROR(ReadYaml(cp, w, "image_dir", &c.checkpoint.image_dir));
    RETURN_IF_ERROR(ReadYaml(cp, w, "fault_injection", &c.checkpoint.fault_injection));
    auto ms = [&](const char* key, std::chrono::milliseconds* into) -> absl::Status {
      int64_t v = into->count();
      RETURN_IF_ERROR(ReadYaml(cp, w, key, &v));
      if (v <= 0 || v > 3'600'000) {
        return absl::InvalidArgumentError(
            absl::StrCat(w, key, ": ", v, " is out of range (1 to 3600000 ms)"));
      }
      *into = std::chrono::milliseconds(v);
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(ms("timeout_floor_ms", &c.checkpoint.timeout_floor));
    RETURN_IF_ERROR(ms("timeout_cap_ms", &c.checkpoint.timeout_cap));
    RETURN_IF_ERROR(ms("probe_timeout_ms", &c.checkpoint.probe_timeout));
  }
  if (const YAML::Node rz = root["resize"]) {
    const std::string w = where + "resize.";
    monitor::ResizeOptions& o = c.resize;
    RETURN_IF_ERROR(CheckKnownKeys(
        rz, w,
        {"enabled", "raise_risk", "horizon_s", "level", "headroom", "lower_utilisation",
         "lower_after_ms", "lower_margin", "min_step_bytes", "cooldown_ms",
         "cpu_raise_utilisation", "min_cpu_step_millis", "max_memory_bytes", "max_cpu_millis",
         "interval_ms", "host_reserve_bytes"}));
    RETURN_IF_ERROR(ReadYaml(rz, w, "enabled", &o.enabled));
    RETURN_IF_ERROR(ReadYaml(rz, w, "raise_risk", &o.raise_risk));
    RETURN_IF_ERROR(ReadYaml(rz, w, "horizon_s", &o.horizon_s));
    RETURN_IF_ERROR(ReadYaml(rz, w, "level", &o.level));
    RETURN_IF_ERROR(ReadYaml(rz, w, "headroom", &o.headroom));
    RETURN_IF_ERROR(ReadYaml(rz, w, "lower_utilisation", &o.lower_utilisation));
    RETURN_IF_ERROR(ReadYaml(rz, w, "lower_after_ms", &o.lower_after_ms));
    RETURN_IF_ERROR(ReadYaml(rz, w, "lower_margin", &o.lower_margin));
    RETURN_IF_ERROR(ReadYaml(rz, w, "min_step_bytes", &o.min_step_bytes));
    RETURN_IF_ERROR(ReadYaml(rz, w, "cooldown_ms", &o.cooldown_ms));
    RETURN_IF_ERROR(ReadYaml(rz, w, "cpu_raise_utilisation", &o.cpu_raise_utilisation));
    RETURN_IF_ERROR(ReadYaml(rz, w, "min_cpu_step_millis", &o.min_cpu_step_millis));
    RETURN_IF_ERROR(ReadYaml(rz, w, "max_memory_bytes", &o.max_memory_bytes));
    RETURN_IF_ERROR(ReadYaml(rz, w, "max_cpu_millis", &o.max_cpu_millis));
    RETURN_IF_ERROR(ReadYaml(rz, w, "interval_ms", &o.interval_ms));
    RETURN_IF_ERROR(ReadYaml(rz, w, "host_reserve_bytes", &o.host_reserve_bytes));
  }
  if (const YAML::Node cost = root["cost"]) {
    const std::string w = where + "cost.";
    RETURN_IF_ERROR(CheckKnownKeys(cost, w, {"per_cpu_second", "per_gib_second"}));
    RETURN_IF_ERROR(ReadYaml(cost, w, "per_cpu_second", &c.cost.per_cpu_second));
    RETURN_IF_ERROR(ReadYaml(cost, w, "per_gib_second", &c.cost.per_gib_second));
    if (c.cost.per_cpu_second < 0 || c.cost.per_gib_second < 0) {
      return absl::InvalidArgumentError(w + " prices must be >= 0");
    }
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "isolation", &c.isolation));
  RETURN_IF_ERROR(ReadYaml(root, where, "trusted_development_node", &c.trusted_development_node));
  RETURN_IF_ERROR(ReadYaml(root, where, "templates_dir", &c.templates_dir));
  RETURN_IF_ERROR(ReadYaml(root, where, "guest_binary", &c.guest_binary));
  RETURN_IF_ERROR(ReadYaml(root, where, "vm_kernel", &c.vm_kernel));
  RETURN_IF_ERROR(ReadYaml(root, where, "vm_initrd", &c.vm_initrd));
  RETURN_IF_ERROR(ReadYaml(root, where, "vm_rootfs", &c.vm_rootfs));
  RETURN_IF_ERROR(ReadYaml(root, where, "vm_jail", &c.vm_jail));
  RETURN_IF_ERROR(ReadYaml(root, where, "default_template", &c.default_template));
  RETURN_IF_ERROR(ReadYaml(root, where, "sandbox_uid", &c.sandbox_uid));
  RETURN_IF_ERROR(ReadYaml(root, where, "node_id", &c.node_id));
  RETURN_IF_ERROR(ReadYaml(root, where, "manager", &c.manager));
  RETURN_IF_ERROR(ReadYaml(root, where, "listen", &c.listen));
  RETURN_IF_ERROR(auth::ReadTransportYaml(root, where, &c.transport));
  RETURN_IF_ERROR(ReadYaml(root, where, "advertise", &c.advertise));
  RETURN_IF_ERROR(ReadYaml(root, where, "labels", &c.labels));
  if (const YAML::Node sec = root["security"]) {
    const std::string w = where + "security.";
    RETURN_IF_ERROR(CheckKnownKeys(sec, w, {"trust_level", "allowed_tenants", "capabilities"}));
    RETURN_IF_ERROR(ReadYaml(sec, w, "trust_level", &c.trust_level));
    RETURN_IF_ERROR(ReadYaml(sec, w, "allowed_tenants", &c.allowed_tenants));
    RETURN_IF_ERROR(ReadYaml(sec, w, "capabilities", &c.capabilities));
  }
  if (const YAML::Node ds = root["data_sets"]) {
    if (!ds.IsSequence()) {
      return absl::InvalidArgumentError(where + "data_sets: expected a list of {key, size_bytes}");
    }
    for (size_t i = 0; i < ds.size(); ++i) {
      const std::string w = absl::StrCat(where, "data_sets[", i, "].");
      RETURN_IF_ERROR(CheckKnownKeys(ds[i], w, {"key", "size_bytes"}));
      model::DataSet d;
      RETURN_IF_ERROR(ReadYaml(ds[i], w, "key", &d.key));
      RETURN_IF_ERROR(ReadYaml(ds[i], w, "size_bytes", &d.size_bytes));
      if (d.key.empty()) return absl::InvalidArgumentError(w + "key: must not be empty");
      if (d.size_bytes < 0) return absl::InvalidArgumentError(w + "size_bytes: must be >= 0");
      c.data_sets.push_back(d);
    }
  }
  if (const YAML::Node r = root["resources"]) {
    const std::string w = where + "resources.";
    RETURN_IF_ERROR(CheckKnownKeys(r, w, {"cpu_millis", "memory_bytes", "storage_bytes", "bandwidth_bps"}));
    RETURN_IF_ERROR(ReadYaml(r, w, "cpu_millis", &c.resources.cpu_millis));
    RETURN_IF_ERROR(ReadYaml(r, w, "memory_bytes", &c.resources.memory_bytes));
    RETURN_IF_ERROR(ReadYaml(r, w, "storage_bytes", &c.resources.storage_bytes));
    RETURN_IF_ERROR(ReadYaml(r, w, "bandwidth_bps", &c.resources.bandwidth_bps));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "work_dir", &c.work_dir));
  RETURN_IF_ERROR(ReadYaml(root, where, "output_limit_bytes", &c.output_limit_bytes));
  int64_t hb = c.heartbeat_interval.count();
  RETURN_IF_ERROR(ReadYaml(root, where, "heartbeat_interval_ms", &hb));
  c.heartbeat_interval = std::chrono::milliseconds(hb);
  RETURN_IF_ERROR(Annotate(Validate(c), path));
  return c;
}

absl::Status Validate(const AgentConfig& c) {
  if (!c.node_id.empty() && !IsValidId(c.node_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node_id: '", c.node_id, "' is not valid: use 1-128 characters from [A-Za-z0-9._:-]"));
  }
  if (c.manager.empty()) return absl::InvalidArgumentError("manager: must not be empty");
  if (auto list = wire::ParseEndpointList(c.manager); !list.ok()) {
    return Annotate(list.status(), "manager");
  }
  if (c.trust_level < 0 || c.trust_level > 10) {
    return absl::InvalidArgumentError(
        absl::StrCat("security.trust_level: ", c.trust_level, " is out of range 0..10"));
  }
  const auto& r = c.resources;
  if (r.cpu_millis < 0 || r.memory_bytes < 0 || r.storage_bytes < 0 || r.bandwidth_bps < 0) {
    return absl::InvalidArgumentError("resources: values must not be negative");
  }
  if (c.output_limit_bytes == 0) {
    return absl::InvalidArgumentError("output_limit_bytes: must be > 0");
  }
  if (c.isolation != "linux" && c.isolation != "process" && c.isolation != "microvm") {
    return absl::InvalidArgumentError(
        absl::StrCat("isolation: '", c.isolation, "' is not one of linux, microvm, process"));
  }
  if (c.isolation == "process" && !c.trusted_development_node) {
    return absl::InvalidArgumentError(
        "isolation: process runs untrusted code on the host without a sandbox; it is allowed "
        "only on a node marked trusted_development_node: true");
  }
  if (c.vm_jail != "required" && c.vm_jail != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("vm_jail: '", c.vm_jail, "' is not one of required, off"));
  }
  if (c.sandbox_uid <= 0) {
    return absl::InvalidArgumentError("sandbox_uid: must be an unprivileged uid (> 0)");
  }
  if (c.heartbeat_interval.count() <= 0) {
    return absl::InvalidArgumentError("heartbeat_interval_ms: must be > 0");
  }
  if (c.resize.enabled) RETURN_IF_ERROR(monitor::ValidateResizeOptions(c.resize));
  return absl::OkStatus();
}

}  // namespace flotilla::agent
