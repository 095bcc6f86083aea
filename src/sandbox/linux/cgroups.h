// Cgroups: one container's groups, in whichever layout the host has.
//
//  kLegacy   cgroup v1 only: limits and accounting in per-controller groups,
//            freeze through the v1 freezer, kill by freezing and signalling
//            every pid (a frozen group cannot fork, so nothing escapes).
//  kHybrid   v1 controllers plus a controller-free cgroup v2 hierarchy
//            (this development machine: /sys/fs/cgroup/unified): limits and
//            accounting in v1, and a v2 group for an atomic cgroup.kill and
//            cgroup.freeze of the whole tree.
//  kUnified  pure cgroup v2: one group does everything; the controllers are
//            enabled in the parents' cgroup.subtree_control.
//
// Where the groups go: <hierarchy>/<caller's own cgroup>/<parent>/<name> by
// default, so the container is accounted below the agent's own limits; the
// parent ("flotilla") is shared and kept, <name> is per container.
//
// Thread-safety: a CgroupSet is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sandbox/linux/fds.h"

namespace flotilla::sandbox::isolation {

enum class CgroupMode { kLegacy, kHybrid, kUnified };

const char* CgroupModeName(CgroupMode mode);

// The host's cgroup mounts and where the calling process sits in them.
struct CgroupHost {
  CgroupMode mode = CgroupMode::kUnified;
  std::string unified;                        // the cgroup2 mount point; empty in kLegacy
  std::string own_unified;                    // the caller's group in it ("/" at the top)
  std::map<std::string, std::string> v1;      // controller -> its hierarchy's mount point
  std::map<std::string, std::string> own_v1;  // controller -> the caller's group in it
};

// Parses /proc/self/mountinfo and /proc/self/cgroup text; only cgroup mounts
// under `cgroup_root` count. Returns an error if there is no cgroup mount.
absl::StatusOr<CgroupHost> ParseCgroupHost(absl::string_view mountinfo,
                                           absl::string_view self_cgroup,
                                           const std::string& cgroup_root);
// Reads <proc_dir>/self/mountinfo and <proc_dir>/self/cgroup.
absl::StatusOr<CgroupHost> DetectCgroupHost(const std::string& proc_dir,
                                            const std::string& cgroup_root);

struct CgroupLimits {
  int64_t cpu_millis = 0;    // CPU time per second of wall time, 1000 = one CPU; 0: none
  int64_t memory_bytes = 0;  // 0: none. Swap is held at 0 where the host allows it
  int64_t pids_max = 0;      // 0: none
  int io_weight = 0;         // 0: leave; applied only where an io/blkio weight file exists
};

struct CgroupUsage {
  int64_t cpu_usage_us = 0;
  int64_t memory_current_bytes = 0;
  int64_t memory_peak_bytes = -1;  // -1 where the kernel keeps no peak (v2 before 5.19)
  int64_t pids_current = 0;
  int64_t oom_kills = 0;
  // Block io bytes from v1 blkio.throttle.io_service_bytes or v2 io.stat;
  // -1 where the group has neither (Container then sums /proc/<pid>/io).
  int64_t io_read_bytes = -1;
  int64_t io_write_bytes = -1;
  // Filled by Container::Usage from /proc/<init>/net/dev; -1: unreadable.
  int64_t net_rx_bytes = -1;
  int64_t net_tx_bytes = -1;
};

class CgroupSet {
 public:
  // Creates <...>/<parent>/<name> in every hierarchy needed for `limits` and
  // for accounting, and applies the limits. A limit whose controller the host
  // lacks is an error (FailedPrecondition). On error nothing is left behind.
  static absl::StatusOr<std::unique_ptr<CgroupSet>> Create(const CgroupHost& host,
                                                           const std::string& parent,
                                                           const std::string& name,
                                                           const CgroupLimits& limits);
  // Kills whatever is left and removes the groups (best effort, logged).
  ~CgroupSet();
  CgroupSet(const CgroupSet&) = delete;
  CgroupSet& operator=(const CgroupSet&) = delete;

  // Opens the cgroup.procs files the child writes "0" to, to join them. With
  // a v2 group, that one is left out: the child is cloned into it instead.
  absl::StatusOr<std::vector<UniqueFd>> OpenJoinFds() const;
  const std::vector<std::string>& join_paths() const { return join_paths_; }
  // An O_DIRECTORY fd of the v2 group for CLONE_INTO_CGROUP; -1 in kLegacy.
  int unified_fd() const { return unified_fd_.get(); }

  // SIGKILLs every process in the groups and returns once none is left.
  absl::Status Kill();
  // Returns once every process is frozen / thawed.
  absl::Status Freeze();
  absl::Status Thaw();
  absl::StatusOr<CgroupUsage> Usage() const;
  // The cgroup.procs file listing the group's processes (for the /proc io
  // fallback).
  std::string ProcsFile() const;
  // Changes the memory and cpu limits of a running group in place (adaptive
  // allocation); a field of 0 is left as it is. Lowering memory below what
  // the group uses fails (EBUSY) and leaves the old limit.
  absl::Status UpdateLimits(const CgroupLimits& limits);
  // The directories, for tests and logs.
  std::vector<std::string> Dirs() const;
  // Kills, then removes the directories (retrying while exiting tasks keep
  // them busy, up to `timeout`).
  absl::Status Remove(std::chrono::milliseconds timeout);

 private:
  CgroupSet() = default;
  absl::Status KillAllPids();
  absl::Status WaitEmpty(std::chrono::milliseconds timeout) const;

  CgroupMode mode_ = CgroupMode::kUnified;
  std::string unified_dir_;                // the v2 group, empty in kLegacy
  std::map<std::string, std::string> v1_;  // controller -> group dir
  std::vector<std::string> created_;       // in creation order
  std::vector<std::string> join_paths_;
  UniqueFd unified_fd_;
  bool removed_ = false;
};

}  // namespace flotilla::sandbox::isolation
