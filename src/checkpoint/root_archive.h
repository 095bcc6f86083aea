// RootArchive: the container's root skeleton (the small read-only tmpfs
// with /etc's generated files, /dev's nodes and the empty mount points),
// saved beside the image and unpacked onto a fresh tmpfs on restore.
//
// CRIU does not dump the root mount of a mount namespace: it restores the
// tree on whatever --root names. The skeleton is read with the root mount
// alone (open_tree of "/" inside the container's mount namespace, without
// its submounts), so the binds and tmpfs mounted on it are not copied.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace flotilla::checkpoint {

// Writes a tar of the root mount of `init_pid`'s mount namespace to
// `tar_path`. tar is killed at `deadline` (DeadlineExceeded).
absl::Status SaveRoot(const std::string& proc_dir, pid_t init_pid, const std::string& tar_path,
                      std::chrono::milliseconds deadline);

// Reads `tar_path` (at most `bytes` plus tar's overhead), refuses it unless
// CheckTarArchive passes it under RootSkeletonTarPolicy (tar_check.h), then
// mounts a nosuid tmpfs of `bytes` on the (existing, empty) `root_dir` and
// unpacks exactly the bytes that were checked into it, with the extracting
// user as owner; tar is killed at `deadline` (DeadlineExceeded). On error
// nothing stays mounted. The root cannot be nodev: the sandbox's /dev nodes
// live on it, which is why the archive may hold exactly those.
absl::Status RestoreRoot(const std::string& tar_path, const std::string& root_dir, uint64_t bytes,
                         std::chrono::milliseconds deadline);

}  // namespace flotilla::checkpoint
