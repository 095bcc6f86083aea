// Applying a ShardPlacement's CPU set to a running process, and reading it
// back. sched_setaffinity(2) only: the agent will also put each shard's
// sandbox in a cpuset cgroup (which a process inside cannot widen), but
// affinity is what a process started outside a sandbox — a benchmark, a
// test, a shard run by hand — can be given.
#pragma once

#include <sys/types.h>

#include <set>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::shard {

// Restricts process `pid` (0: the caller) to `cpus`. InvalidArgument for an
// empty set or an id outside [0, CPU_SETSIZE); errno errors name the pid.
absl::Status ApplyCpuAffinity(pid_t pid, const std::set<int>& cpus);

// The CPUs process `pid` (0: the caller) may run on.
absl::StatusOr<std::set<int>> CpuAffinity(pid_t pid);

}  // namespace flotilla::shard
