// Mounts: the container's root filesystem, assembled in the child's private
// mount namespace and entered with pivot_root.
//
// The parent compiles the root into a flat list of RootfsOps (every path and
// option string made before clone); the child executes them in order with
// plain system calls and, on the first failure, reports the op's index, so
// the parent can name the exact mount that failed. Nothing of this reaches
// the host: the child first makes its whole mount tree MS_PRIVATE, and all
// mounts live in its namespace, which dies with the container.
//
// The root itself is a small tmpfs on the container's (empty) directory under
// the runtime dir, remounted read-only once populated:
//   /usr, /bin, ... read-only binds of the host's (or a template rootfs's)
//                   top-level directories; symlinks (Debian's /bin -> usr/bin)
//                   recreated as symlinks
//   /etc            generated passwd, group, hosts, resolv.conf, nsswitch.conf
//                   and read-only binds of ld.so.cache and alternatives, never
//                   the host's /etc as a whole (shadow stays out)
//   /tmp, /work     tmpfs with a size cap, owned by the sandbox user
//   /dev            null, zero, full, random, urandom, tty (mknod), fd and
//                   std* symlinks, /dev/shm (capped tmpfs), /dev/pts
//   /proc           a procfs of the container's pid namespace, hidepid, with
//                   the kernel's host-wide files masked (kMaskedProcPaths)
//                   and its tunables read-only (kReadOnlyProcPaths)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::sandbox::isolation {

struct RootfsOp {
  enum class Kind {
    kMkdir,            // mkdir(target, mode)
    kSymlink,          // symlink(source, target)
    kWriteFile,        // create target (mode) holding data
    kCreateFile,       // an empty file to bind a file onto
    kMknod,            // character device `device` at target (mode)
    kBindReadOnly,     // bind source on target, then make it (recursively) read-only
    kBindWritable,     // bind source on target, nosuid and nodev but writable
    kMount,            // mount(source, target, fstype, flags, data)
    kRemountReadOnly,  // make the mount at target read-only (the root, at the end)
    kMaskPath,         // hide target if it exists: source (/dev/null) bound over a
                       // file, an empty read-only tmpfs over a directory
    kReadOnlyPath,     // bind target on itself read-only, if it exists
  };
  Kind kind;
  std::string source;
  std::string target;  // a host path under the new root
  std::string fstype;
  std::string data;  // mount options or file content
  unsigned long flags = 0;
  mode_t mode = 0;
  dev_t device = 0;

  // "mount tmpfs", "bind", ...: the operation, for error messages.
  std::string Describe() const;
};

// One more host file or directory in the root, at `target` (a path inside
// it). The micro-VM jail's kernel, snapshot files and run directory.
struct BindMount {
  enum class Access { kReadOnly, kWritable };
  std::string source;
  std::string target;
  Access access = Access::kReadOnly;
};

// A character device every sandbox gets in /dev. Restores accept exactly
// these in a root skeleton (checkpoint/tar_check.h).
struct DeviceNode {
  const char* path;
  unsigned major;
  unsigned minor;
};

struct RootfsSpec {
  std::string root_dir;  // host path of the (empty) directory to build the root on
  // Read-only binds from the host ("/usr", ...). Paths that are symlinks on
  // the host are recreated as symlinks; missing ones are skipped.
  std::vector<std::string> host_binds;
  // If set, the top-level entries of this directory are bound read-only
  // instead of host_binds, and its own /etc is used instead of a generated one.
  std::string template_rootfs;
  std::string hostname;
  uid_t uid = 65534;
  gid_t gid = 65534;
  std::string user_name = "sandbox";
  std::string workdir = "/work";
  uint64_t tmp_bytes = 64 << 20;
  uint64_t workdir_bytes = 256 << 20;
  uint64_t shm_bytes = 16 << 20;
  bool dev_pts = true;
  // subset=pid hides /proc/meminfo, /proc/sys and friends, which some
  // runtimes read at startup; off by default.
  bool proc_subset_pid = false;
  // Bound after everything else, before the root turns read-only.
  std::vector<BindMount> binds;
  // More device nodes in /dev, mode 0666, beside SandboxDeviceNodes(): the
  // micro-VM jail's /dev/kvm. Only the sandbox's own /dev has them, so the
  // host's node keeps its owner and mode.
  std::vector<DeviceNode> devices;
};

const std::vector<DeviceNode>& SandboxDeviceNodes();

// /proc paths that expose or change the whole host, not the sandbox: masked
// (kcore, keys, sysrq-trigger, ...) or made read-only (sys, irq, ...). The
// lists follow runc's and crun's defaults (maskedPaths, readonlyPaths).
extern const char* const kMaskedProcPaths[];
extern const size_t kMaskedProcPathCount;
extern const char* const kReadOnlyProcPaths[];
extern const size_t kReadOnlyProcPathCount;

// Compiles `spec` into the ops that build the root. Reads the host (lstat of
// host_binds, readdir of template_rootfs) but changes nothing.
absl::StatusOr<std::vector<RootfsOp>> PlanRootfs(const RootfsSpec& spec);

// Child side, async-signal-safe. Each returns 0 or an errno.
int MakeMountsPrivate();
// Runs ops[0..n) in order; on failure stores the failed op's index.
int ApplyRootfs(const RootfsOp* ops, size_t n, size_t* failed_index);
// Makes root_dir the root: pivot_root(".", ".") then detaches the old root.
int PivotRoot(const char* root_dir);

}  // namespace flotilla::sandbox::isolation
