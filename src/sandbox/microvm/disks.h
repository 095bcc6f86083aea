// The micro-VM's disks, host side: the scratch disk's image and its per-VM
// copies. The read-only root image is built by scripts/build-guest-rootfs.
//
// A scratch disk is an ext4 image made once per size (MakeScratchImage,
// mke2fs under a deadline) and copied sparsely for each VM (CopySparse),
// so that the VM a snapshot was taken from and every VM restored from it
// start with byte-identical disks: the guest kernel read the disk's first
// blocks when it probed it before the snapshot, and those blocks stay in
// its cache in every restored copy.
//
// Thread-safe: the functions share no state.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace flotilla::sandbox::microvm {

// The smallest scratch disk made: below this ext4's metadata is most of it.
inline constexpr int64_t kMinScratchBytes = 8ll << 20;

// Makes `path` (which must not exist) an empty ext4 file system of `bytes`
// (rounded up to a MiB, at least kMinScratchBytes) with no journal and lazy
// inode tables: a sparse file of a few hundred KiB. Runs `mke2fs` (found in
// PATH, /sbin or /usr/sbin), SIGKILLed at `deadline`. On error nothing is
// left at `path`.
absl::Status MakeScratchImage(const std::string& path, int64_t bytes,
                              std::chrono::steady_clock::time_point deadline,
                              const std::string& mke2fs = "mke2fs");

// Copies `from` to a new file `to` (mode 0600, owned by uid:gid when they
// are not -1), keeping its holes: only the extents SEEK_DATA finds are
// copied. On error nothing is left at `to`.
absl::Status CopySparse(const std::string& from, const std::string& to, uid_t uid = -1,
                        gid_t gid = -1);

}  // namespace flotilla::sandbox::microvm
