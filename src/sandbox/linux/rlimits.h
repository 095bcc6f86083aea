// Rlimits: per-process limits the container starts with. They can only be
// lowered here (the agent lacks CAP_SYS_RESOURCE on some hosts, and a
// container never needs more than the agent has), so the parent clamps each
// requested value to its own hard limit before clone and the child just sets
// them. RLIMIT_NPROC is left alone: it counts every process of the uid on
// the whole host, and all containers share the sandbox uid; pids.max bounds
// the container's process count instead.
#pragma once

#include <sys/resource.h>

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::sandbox::isolation {

struct RlimitSetting {
  int resource;  // RLIMIT_*
  rlim_t value;  // soft = hard
};

// The container's defaults: NOFILE 1024, CORE 0, NICE 0, RTPRIO 0,
// MEMLOCK 64 KiB, FSIZE unlimited (tmpfs sizes cap files).
std::vector<RlimitSetting> DefaultRlimits();

// Returns `wanted` with each value lowered to the caller's current hard
// limit (never raised). Errors name the resource.
absl::StatusOr<std::vector<RlimitSetting>> ClampRlimits(const std::vector<RlimitSetting>& wanted);

// "RLIMIT_NOFILE", for error messages.
std::string RlimitName(int resource);

// Child side, async-signal-safe: 0 or an errno, *failed the index.
int ApplyRlimits(const RlimitSetting* limits, size_t n, size_t* failed);

}  // namespace flotilla::sandbox::isolation
