// Externals: what a sandbox container uses from outside its own namespaces,
// found in /proc at checkpoint time and written beside the image (the
// manifest) so Restore, possibly on another agent, can hand CRIU the same
// resources again.
//
//   mounts   read-only binds of host paths (/usr, /etc/ld.so.cache, ...):
//            CRIU's "mnt[<mountpoint>]:<key>" on dump, "mnt[<key>]:<host
//            path>" on restore. Without them a restore of the mount
//            namespace fails (see PLATFORM.md, "mnt: BUG").
//   files    the host /dev/null the container's stdio was opened on: CRIU's
//            "file[<mnt_id>:<inode>]", inherited on restore.
//   channel  the init's socket to the agent, and the net namespace it lives
//            in: "unix[<ino>]" and "net[<ino>]", replaced on restore.
//
// Pure parsing (ParseExternalMounts, Manifest text) is separate from the
// /proc reading (FindExternals) so tests can feed it plain strings.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::checkpoint {

struct ExternalMount {
  std::string key;        // "m0", "m1", ...
  std::string mountpoint;  // inside the container
  std::string host_path;  // the bound path on the host
};

struct ExternalFile {
  std::string key;  // CRIU's "file[<mnt_id hex>:<inode hex>]"
  std::string path;  // on the host, to reopen on restore ("/dev/null")
};

struct Manifest {
  std::vector<ExternalMount> mounts;
  std::vector<ExternalFile> files;
  uint64_t channel_inode = 0;  // the init's end of its channel
  uint64_t netns_inode = 0;
  uint64_t root_bytes = 1 << 20;  // size of the root tmpfs to restore on

  std::string Serialize() const;
  static absl::StatusOr<Manifest> Parse(absl::string_view text);
};

// What a restore on this agent accepts in a manifest. The manifest comes
// with the image from another agent, so it is hostile input: it decides
// which host paths are bound into the new sandbox and which host files CRIU
// reopens for it.
struct ManifestPolicy {
  // Host paths this agent itself binds into sandboxes: a mount's host path
  // must be one of them or lie below one.
  std::vector<std::string> bind_sources;
  uint64_t max_root_bytes = 64 << 20;
  size_t max_mounts = 256;
};

// The binds of a sandbox on the host's root (sandbox::ContainerSpec's
// host_binds and the generated /etc's two binds).
ManifestPolicy DefaultManifestPolicy();

// Returns OK if `m` names only what `policy` allows: mount keys `m<N>`,
// mount points that are clean absolute paths inside the sandbox's root
// (not /, not under /proc, /sys or /dev), host paths at or below a bind
// source, `file[<hex>:<hex>]` keys for /dev/null only, and a root size up to
// the cap. Otherwise InvalidArgument naming the field and the value.
absl::Status ValidateManifest(const Manifest& m, const ManifestPolicy& policy);

// Filesystems a container mounts for itself (CRIU dumps their content or
// recreates them); everything else in its mountinfo is a bind from the host.
bool IsOwnFilesystem(absl::string_view fstype);

// Returns the external binds of a container's /proc/<pid>/mountinfo. Host
// paths are the mounts' roots, so they must come from the host's root
// filesystem: `host_root_dev` ("major:minor") is checked against each.
absl::StatusOr<std::vector<ExternalMount>> ParseExternalMounts(absl::string_view mountinfo,
                                                               absl::string_view host_root_dev);

// Reads the container of `init_pid` in `proc_dir` and returns its manifest.
absl::StatusOr<Manifest> FindExternals(const std::string& proc_dir, pid_t init_pid,
                                       int channel_fd);

}  // namespace flotilla::checkpoint
