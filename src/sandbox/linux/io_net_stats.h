// Block io and network counters of one sandbox, read from the files the
// kernel keeps for it: cgroup v1 blkio.throttle.io_service_bytes, cgroup v2
// io.stat, /proc/<pid>/io (the fallback where the sandbox has no io
// accounting group) and /proc/<pid>/net/dev of its init (its own network
// namespace). The parsers are pure; the readers take the group directories
// and the proc root as parameters, so tests point them at fake files.
//
// Caveats of the sources, measured on a 6.x kernel in hybrid mode: v1 blkio
// charges buffered writeback to the root group (only direct io and reads
// that miss the page cache land in the sandbox's group), and a sandbox's
// /work is a tmpfs, which no block counter sees at all.
//
// Thread-safe (no state).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::sandbox::isolation {

struct IoBytes {
  int64_t read = 0;
  int64_t written = 0;
};

struct NetBytes {
  int64_t rx = 0;
  int64_t tx = 0;
};

// Sums the "<maj:min> Read|Write <n>" lines of every device of a v1
// blkio.throttle.io_service_bytes (its "Total" lines are left out).
IoBytes ParseBlkioServiceBytes(absl::string_view content);
// Sums rbytes= and wbytes= of every device line of a v2 io.stat.
IoBytes ParseIoStat(absl::string_view content);
// read_bytes and write_bytes of one /proc/<pid>/io.
IoBytes ParseProcIo(absl::string_view content);
// Sums receive and transmit bytes over every interface of a
// /proc/<pid>/net/dev. InvalidArgument if it has no interface line.
absl::StatusOr<NetBytes> ParseNetDev(absl::string_view content);

// Returns the io of a group from <blkio_dir>/blkio.throttle.io_service_bytes
// when blkio_dir is not empty, otherwise from <unified_dir>/io.stat when that
// file exists; nullopt when neither source exists; the read's error when a
// source cannot be read (a blkio group without its file is an error, not a
// missing source).
absl::StatusOr<std::optional<IoBytes>> ReadCgroupIo(const std::string& blkio_dir,
                                     const std::string& unified_dir);
// Sums <proc_dir>/<pid>/io over the pids listed in `procs_file` (a
// cgroup.procs). A process that exited between the listing and the read is
// skipped; its io is then missing from the sum, so rates over such sums must
// clamp at 0.
absl::StatusOr<IoBytes> SumProcIo(const std::string& proc_dir, const std::string& procs_file);
// The traffic of the network namespace of `pid`: <proc_dir>/<pid>/net/dev.
absl::StatusOr<NetBytes> ReadNetDev(const std::string& proc_dir, pid_t pid);

}  // namespace flotilla::sandbox::isolation
