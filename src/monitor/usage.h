// UsageSample: one reading of a running sandbox's resource usage, taken from
// its cgroups (cpu.stat, memory.current, pids.current, blkio/io.stat) and
// its network namespace (/proc/<init>/net/dev). Plain data, shared by
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
  // Cumulative counters; -1: no source for them in this sandbox.
  int64_t io_read_bytes = -1;
  int64_t io_write_bytes = -1;
  int64_t net_rx_bytes = -1;  // the sandbox's network namespace, all interfaces
  int64_t net_tx_bytes = -1;
};

}  // namespace flotilla::monitor
