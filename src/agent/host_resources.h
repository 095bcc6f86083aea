// Reads what this host can give to executions: cpus and memory from /proc
// and the cgroup limits that bind this process, storage from the file system
// of the work directory.
//
// The file system roots are parameters so tests can point them at fakes in a
// temporary directory (as Firecracker's jailer does with /proc/mounts).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "model/model.h"

namespace flotilla::agent {

struct HostPaths {
  std::string proc = "/proc";
  std::string cgroup = "/sys/fs/cgroup";
  std::string work_dir = "/tmp";  // storage is measured where tasks run
};

// Returns the host's capacity: cpu = min(cpus in this process's affinity
// mask, cgroup cpu quota) * 1000; memory = min(MemTotal, cgroup memory
// limit); storage = free bytes of work_dir's file system; bandwidth = 0
// (not measured; configuration supplies it). Works on cgroup v1, hybrid and
// pure v2 hosts; a missing cgroup file means "no limit".
absl::StatusOr<model::Resources> DetectHostResources(const HostPaths& paths);

// Returns MemAvailable from <proc>/meminfo in bytes.
absl::StatusOr<int64_t> ReadMemAvailable(const std::string& proc_root);

// Returns the 1-minute load average from <proc>/loadavg.
absl::StatusOr<double> ReadLoadAverage(const std::string& proc_root);

}  // namespace flotilla::agent
