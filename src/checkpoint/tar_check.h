// TarCheck: decides whether a tar archive from a checkpoint image may be
// unpacked, by reading its headers alone, before tar ever sees it.
//
// A checkpoint image comes from another agent and is hostile input
// (ARCHITECTURE.md, "Trust boundary"). GNU tar guards against some tricks
// by itself, but not all and not by contract, so this is the gate: a pure
// function over the archive's bytes (no I/O, no allocation beyond the
// archive's own size), easy to test with hand-made archives and to fuzz.
//
// Refused: absolute names and `..` components (in the name, a GNU long name
// or a pax `path`); entries below a symlink declared earlier in the archive
// (tar would write through it); symlinks whose target, resolved against the
// archive's root as the container will see it, leaves that root; hard links
// to anything but an earlier regular file of the archive; fifos, sockets,
// block devices, and character devices other than the policy's exact
// (path, major, minor) list; setuid/setgid files; sparse, multi-volume and
// unknown entry types; file-capability and trusted.* xattrs; a bad header
// checksum; and truncated archives.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flotilla::checkpoint {

struct AllowedDevice {
  std::string path;  // as the container sees it: "/dev/null"
  unsigned major = 0;
  unsigned minor = 0;
};

struct TarPolicy {
  std::vector<AllowedDevice> char_devices;
  uint64_t max_entries = 100000;
};

// The policy for a sandbox's root skeleton (root_archive.h): the device
// nodes a launched sandbox gets (sandbox/linux/mounts.h), nothing else.
TarPolicy RootSkeletonTarPolicy();

// Returns OK if every entry of `archive` passes `policy`; otherwise
// InvalidArgument naming the entry and the reason.
absl::Status CheckTarArchive(absl::string_view archive, const TarPolicy& policy);

}  // namespace flotilla::checkpoint
