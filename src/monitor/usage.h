// UsageSample: one reading of a running sandbox's resource usage, taken from
// its cgroups (cpu.stat, memory.current, pids.current). Plain data, shared by
// the sandbox layer (which takes samples) and monitor/ (which keeps them).
#pragma once

#include <cstdint>

namespace flotilla::monitor {

struct UsageSample {
  int64_t t_ms = 0;                // steady-clock milliseconds when taken
  int64_t cpu_usage_us = 0;        // cumulative cpu time of the sandbox
  int64_t memory_bytes = 0;        // memory.current
  int64_t memory_limit_bytes = 0;  // the sandbox's memory limit; 0: unknown
  int64_t cpu_limit_millis = 0;    // its cpu quota (1000 = one core); 0: unknown or none
  int64_t pids = 0;
};

}  // namespace flotilla::monitor
