// AgentConfig: every setting of `flotilla agent`, loaded from YAML
// (docs/configuration.md) and validated in one place.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/pki.h"
#include "model/model.h"
#include "monitor/resize_policy.h"

namespace flotilla::agent {

struct AgentConfig {
  std::string node_id;                   // default: the host name
  // The manager's gRPC address; for an HA federation every replica's,
  // comma-separated ("10.0.0.1:7070,10.0.0.2:7070"): the agent follows the leader.
  std::string manager = "127.0.0.1:7070";
  std::string listen = "127.0.0.1:0";    // AgentService; port 0 picks one
  std::string advertise;                 // address given to the manager; default: bound address
  // Mutual TLS with the manager and the other agents (tls: {ca, cert, key});
  // the certificate names this node (`flotilla ca issue node ID`).
  // `tls.insecure: true` is the development mode, logged loudly.
  auth::Transport transport;
  std::map<std::string, std::string> labels;  // region, zone, ...
  int trust_level = 0;
  std::vector<std::string> allowed_tenants;
  std::vector<std::string> capabilities;
  std::vector<model::DataSet> data_sets;
  // Overrides of detected capacity; 0 keeps what was detected.
  model::Resources resources;
  model::Cost cost;  // price per resource-second, for bid and cheapest placement
  std::string work_dir;  // where task directories are made; default $TMPDIR/flotilla-<node_id>
  size_t output_limit_bytes = 1 << 20;
  std::chrono::milliseconds heartbeat_interval{1000};  // until the manager says otherwise
  std::string ready_file;  // JSON {address, node_id, pid} written once registered
  // "linux": every task in a Linux sandbox (namespaces, cgroups, seccomp)
  // from a warm pool. "process": unisolated child processes, allowed only
  // with trusted_development_node, and the node says so in its status.
  // "microvm": every template's tasks in QEMU micro-VMs (the node's
  // isolation kind is then "microvm"). On a "linux" node, templates that say
  // `isolation: microvm` run in VMs when the node can start them.
  std::string isolation = "linux";
  // The micro-VM guest kernel (scripts/fetch-guest-kernel) and initramfs
  // (the build's guest-initramfs.cpio; default: beside the flotilla binary).
  std::string vm_kernel = "/var/cache/flotilla/vm/current/vmlinux";
  std::string vm_initrd;
  // The micro-VMs' read-only root image with python3 (the build's
  // guest-rootfs.img; default: beside the flotilla binary when it is there;
  // "none": tasks run in the initramfs, busybox only).
  std::string vm_rootfs;
  // "required": QEMU runs jailed (namespaces, own root and cgroup, uid
  // 65534, no capabilities, seccomp) and micro-VMs are refused, with the
  // reason, where the jail cannot be set up. "off": QEMU runs with the
  // agent's privileges, logged and shown in the node's micro-VM status.
  std::string vm_jail = "required";
  bool trusted_development_node = false;
  std::string templates_dir;   // default: the templates shipped with flotilla
  std::string guest_binary;    // default: flotilla-guest beside the flotilla binary
  std::string default_template = "shell";
  int64_t sandbox_uid = 65534;  // the unprivileged user code runs as
  // Adaptive allocation: raise / lower running sandboxes' limits in place
  // (the `resize:` section; off unless resize.enabled).
  monitor::ResizeOptions resize;
  // Migration by checkpoint and restore (the `checkpoint:` section).
  struct Checkpoint {
    std::string criu_path = "/usr/local/sbin/criu";  // scripts/build-criu installs it there
    std::string image_dir;  // where images are written and received; default <work_dir>/checkpoints
    // Honour MigrateTaskRequest.fail_after (tests of the failure paths only).
    bool fault_injection = false;
    // Deadlines of CRIU runs (checkpoint/criu_process.h): a dump or
    // restore gets timeout_floor plus time per GiB of memory, at most
    // timeout_cap; each step of the start-up probe gets probe_timeout.
    std::chrono::milliseconds timeout_floor{30'000};   // timeout_floor_ms
    std::chrono::milliseconds timeout_cap{300'000};    // timeout_cap_ms
    std::chrono::milliseconds probe_timeout{5'000};    // probe_timeout_ms
  } checkpoint;
};

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);
absl::Status Validate(const AgentConfig& config);

}  // namespace flotilla::agent
