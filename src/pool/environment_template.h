// EnvironmentTemplate: a reusable execution environment an agent loads from
// YAML (templates/*.yaml): the root file system, the runtime, environment
// variables, files to place, default limits, the network policy and the
// warm-pool sizing. Executions name a template; warm pools are per template.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sandbox/sandbox.h"

namespace flotilla::pool {

enum class Lifecycle {
  kReuse,    // after a task, park the sandbox for the same tenant and function
  kDestroy,  // after a task, destroy the sandbox
};

enum class NetworkPolicy {
  kNone,  // loopback only
  // A NAT to the outside (sandbox/linux/egress.h), when the request asks and
  // the node grants it.
  kEgress,
};

enum class Isolation {
  kContainer,  // a Linux container (sandbox/linux), the default
  kMicroVm,    // a QEMU microvm (sandbox/microvm), restored from a snapshot
};

struct TemplateLimits {
  int64_t cpu_millis = 1000;
  int64_t memory_bytes = 256ll << 20;
  int64_t pids = 256;
  int64_t tmp_bytes = 64ll << 20;   // tmpfs /tmp
  int64_t work_bytes = 64ll << 20;  // tmpfs working directory
  std::chrono::milliseconds timeout{60000};
};

struct EnvironmentTemplate {
  std::string name;
  std::string description;
  std::string runtime = "shell";  // shell | python3
  std::string rootfs = "host";    // "host": read-only binds of /usr, /lib, /bin; or a directory
  std::map<std::string, std::string> env;
  std::vector<sandbox::TaskFile> files;
  TemplateLimits limits;
  NetworkPolicy network = NetworkPolicy::kNone;
  std::vector<std::string> python_preload;  // modules the fork-server imports once
  int pool_min = 0;
  int pool_max = 4;
  Lifecycle lifecycle = Lifecycle::kReuse;
  // `isolation: microvm`: a VM of limits.memory and ceil(limits.cpu) vCPUs.
  Isolation isolation = Isolation::kContainer;
  std::string source_path;  // the file it was loaded from
};

// Parses one template file. Errors name the file and the key.
absl::StatusOr<EnvironmentTemplate> LoadTemplate(const std::string& path);

// Loads every *.yaml in `dir`, sorted by name. Duplicate names are an error.
absl::StatusOr<std::vector<EnvironmentTemplate>> LoadTemplates(const std::string& dir);

// `spec` as run in a sandbox of `t`: the template's environment with the
// request's on top (except HOME and PATH, which name paths inside the
// template's image and stay the template's), the template's files first.
sandbox::TaskSpec TaskWithTemplate(const sandbox::TaskSpec& spec, const EnvironmentTemplate& t);

const char* ToString(Lifecycle l);
const char* ToString(NetworkPolicy n);
const char* ToString(Isolation i);

}  // namespace flotilla::pool
