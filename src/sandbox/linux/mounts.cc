#include "sandbox/linux/mounts.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

namespace flotilla::sandbox::isolation {
namespace {

using Kind = RootfsOp::Kind;

bool IsCleanAbsolute(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

// Appends ops in a fixed order; remembers which directories it made so that
// nested paths get their parents exactly once.
class Planner {
 public:
  explicit Planner(std::string root) : root_(std::move(root)) {}

  std::string Under(const std::string& path) const { return root_ + path; }

  void Mkdirs(const std::string& path, mode_t mode = 0755) {
    std::string sofar;
    for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
      absl::StrAppend(&sofar, "/", part);
      if (!made_.insert(sofar).second) continue;
      ops_.push_back({Kind::kMkdir, "", Under(sofar), "", "", 0, mode, 0});
    }
  }
  void Symlink(const std::string& link_text, const std::string& path) {
    ops_.push_back({Kind::kSymlink, link_text, Under(path), "", "", 0, 0, 0});
  }
  void WriteFile(const std::string& path, std::string content, mode_t mode = 0644) {
    ops_.push_back({Kind::kWriteFile, "", Under(path), "", std::move(content), 0, mode, 0});
  }
  void Mknod(const std::string& path, unsigned major, unsigned minor) {
    ops_.push_back({Kind::kMknod, "", Under(path), "", "", 0, 0666, makedev(major, minor)});
  }
  void Mount(const std::string& source, const std::string& path, const std::string& fstype,
             unsigned long flags, std::string data) {
    ops_.push_back({Kind::kMount, source, Under(path), fstype, std::move(data), flags, 0, 0});
  }
  // Binds a host directory or file (read-only unless asked), or recreates a
  // symlink.
  absl::Status BindFromHost(const std::string& host_path, const std::string& path,
                            BindMount::Access access = BindMount::Access::kReadOnly) {
    struct stat st;
    if (lstat(host_path.c_str(), &st) != 0) {
      if (errno == ENOENT) return absl::OkStatus();
      return ErrnoError(errno, "lstat", host_path);
    }
    std::string parent = path.substr(0, path.rfind('/'));
    Mkdirs(parent);
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlink(host_path.c_str(), target, sizeof(target) - 1);
      if (n < 0) return ErrnoError(errno, "readlink", host_path);
      Symlink(std::string(target, n), path);
      return absl::OkStatus();
    }
    if (S_ISDIR(st.st_mode)) {
      Mkdirs(path);
    } else if (S_ISREG(st.st_mode)) {
      ops_.push_back({Kind::kCreateFile, "", Under(path), "", "", 0, 0644, 0});
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("bind `", host_path, "`: not a directory, file or symlink"));
    }
    const Kind kind =
        access == BindMount::Access::kWritable ? Kind::kBindWritable : Kind::kBindReadOnly;
    ops_.push_back({kind, host_path, Under(path), "", "", 0, 0, 0});
    return absl::OkStatus();
  }
  void Push(RootfsOp op) { ops_.push_back(std::move(op)); }
  void RemountRootReadOnly() {
    ops_.push_back({Kind::kRemountReadOnly, "", root_, "", "", 0, 0, 0});
  }

  std::vector<RootfsOp> Take() && { return std::move(ops_); }

 private:
  std::string root_;
  std::set<std::string> made_;
  std::vector<RootfsOp> ops_;
};

std::string TmpfsOptions(uint64_t bytes, const char* mode, uid_t uid, gid_t gid) {
  return absl::StrCat("size=", bytes, ",mode=", mode, ",uid=", uid, ",gid=", gid);
}

absl::Status PlanTemplate(const RootfsSpec& spec, Planner& plan) {
  DIR* dir = opendir(spec.template_rootfs.c_str());
  if (dir == nullptr) return ErrnoError(errno, "opendir", spec.template_rootfs);
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(dir)) names.emplace_back(entry->d_name);
  closedir(dir);
  std::sort(names.begin(), names.end());
  // What the container gets fresh rather than from the template.
  std::string work_top = spec.workdir.substr(1, spec.workdir.find('/', 1) - 1);
  static const std::set<std::string> kOwn = {".", "..", "dev", "proc", "sys", "tmp"};
  for (const std::string& name : names) {
    if (kOwn.count(name) != 0 || name == work_top) continue;
    RETURN_IF_ERROR(plan.BindFromHost(absl::StrCat(spec.template_rootfs, "/", name), "/" + name));
  }
  return absl::OkStatus();
}

absl::Status PlanEtc(const RootfsSpec& spec, Planner& plan) {
  plan.Mkdirs("/etc");
  plan.WriteFile("/etc/passwd", absl::StrCat("root:x:0:0:root:/root:/usr/sbin/nologin\n",
                                             spec.user_name, ":x:", spec.uid, ":", spec.gid, ":",
                                             spec.user_name, ":", spec.workdir, ":/bin/sh\n"));
  plan.WriteFile("/etc/group", absl::StrCat("root:x:0:\n", spec.user_name, ":x:", spec.gid, ":\n"));
  plan.WriteFile("/etc/hosts", absl::StrCat("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t",
                                            spec.hostname, "\n"));
  plan.WriteFile("/etc/hostname", absl::StrCat(spec.hostname, "\n"));
  plan.WriteFile("/etc/resolv.conf", "");
  plan.WriteFile("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n");
  for (const char* path : {"/etc/ld.so.cache", "/etc/alternatives"}) {
    RETURN_IF_ERROR(plan.BindFromHost(path, path));
  }
  return absl::OkStatus();
}

void PlanDev(const RootfsSpec& spec, Planner& plan) {
  plan.Mkdirs("/dev");
  for (const DeviceNode& d : SandboxDeviceNodes()) plan.Mknod(d.path, d.major, d.minor);
  for (const DeviceNode& d : spec.devices) plan.Mknod(d.path, d.major, d.minor);
  plan.Symlink("/proc/self/fd", "/dev/fd");
  plan.Symlink("/proc/self/fd/0", "/dev/stdin");
  plan.Symlink("/proc/self/fd/1", "/dev/stdout");
  plan.Symlink("/proc/self/fd/2", "/dev/stderr");
  plan.Mkdirs("/dev/shm", 01777);
  plan.Mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
             TmpfsOptions(spec.shm_bytes, "1777", spec.uid, spec.gid));
  if (spec.dev_pts) {
    plan.Mkdirs("/dev/pts");
    plan.Mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620");
    plan.Symlink("pts/ptmx", "/dev/ptmx");
  }
}

// The sandbox's own /proc is still the host kernel's: these files are the
// same in every pid namespace. Whether each exists depends on the kernel's
// configuration, so the child skips missing ones.
void PlanProcMasks(Planner& plan) {
  for (size_t i = 0; i < kMaskedProcPathCount; ++i) {
    plan.Push({Kind::kMaskPath, plan.Under("/dev/null"), plan.Under(kMaskedProcPaths[i]), "tmpfs",
               "size=4k,mode=0555", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, 0, 0});
  }
  for (size_t i = 0; i < kReadOnlyProcPathCount; ++i) {
    const std::string path = plan.Under(kReadOnlyProcPaths[i]);
    plan.Push({Kind::kReadOnlyPath, path, path, "", "", 0, 0, 0});
  }
}

}  // namespace

const std::vector<DeviceNode>& SandboxDeviceNodes() {
  static const std::vector<DeviceNode> kNodes = {{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},
                                                 {"/dev/full", 1, 7},   {"/dev/random", 1, 8},
                                                 {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
  return kNodes;
}

// runc's and crun's maskedPaths, with sysrq-trigger masked rather than
// read-only (a task has no business writing it at all) and the kernel's
// symbol and page tables added.
const char* const kMaskedProcPaths[] = {
    "/proc/acpi",       "/proc/asound",       "/proc/interrupts", "/proc/kcore",
    "/proc/keys",       "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi",        "/proc/sysrq-trigger", "/proc/kallsyms",
    "/proc/kmsg",       "/proc/kpagecgroup",  "/proc/kpagecount", "/proc/kpageflags",
};
const size_t kMaskedProcPathCount = sizeof(kMaskedProcPaths) / sizeof(kMaskedProcPaths[0]);
// runc's and crun's readonlyPaths.
const char* const kReadOnlyProcPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"};
const size_t kReadOnlyProcPathCount = sizeof(kReadOnlyProcPaths) / sizeof(kReadOnlyProcPaths[0]);

std::string RootfsOp::Describe() const {
  switch (kind) {
    case Kind::kMkdir:
      return "mkdir";
    case Kind::kSymlink:
      return absl::StrCat("symlink ", source, " at");
    case Kind::kWriteFile:
      return "write";
    case Kind::kCreateFile:
      return "create";
    case Kind::kMknod:
      return "mknod";
    case Kind::kBindReadOnly:
      return absl::StrCat("bind read-only ", source, " on");
    case Kind::kBindWritable:
      return absl::StrCat("bind ", source, " on");
    case Kind::kMount:
      return absl::StrCat("mount ", fstype, " (", data, ") on");
    case Kind::kRemountReadOnly:
      return "remount read-only";
    case Kind::kMaskPath:
      return "mask";
    case Kind::kReadOnlyPath:
      return "make read-only";
  }
  return "?";
}

absl::StatusOr<std::vector<RootfsOp>> PlanRootfs(const RootfsSpec& spec) {
  if (!IsCleanAbsolute(spec.root_dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("root_dir `", spec.root_dir, "` is not absolute"));
  }
  if (!IsCleanAbsolute(spec.workdir) || spec.workdir == "/") {
    return absl::InvalidArgumentError(
        absl::StrCat("workdir `", spec.workdir, "` must be an absolute path below /"));
  }
  Planner plan(spec.root_dir);
  plan.Mount("tmpfs", "", "tmpfs", MS_NOSUID, "size=1m,mode=0755");
  if (!spec.template_rootfs.empty()) {
    if (!IsCleanAbsolute(spec.template_rootfs)) {
      return absl::InvalidArgumentError(
          absl::StrCat("template_rootfs `", spec.template_rootfs, "` is not absolute"));
    }
    RETURN_IF_ERROR(PlanTemplate(spec, plan));
  } else {
    for (const std::string& path : spec.host_binds) {
      if (!IsCleanAbsolute(path) || path == "/" || path == "/etc" || path.rfind("/etc/", 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "host bind `", path, "`: must be an absolute path, not / and not under /etc"));
      }
      RETURN_IF_ERROR(plan.BindFromHost(path, path));
    }
    RETURN_IF_ERROR(PlanEtc(spec, plan));
  }
  plan.Mkdirs("/tmp", 01777);
  plan.Mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
             TmpfsOptions(spec.tmp_bytes, "1777", spec.uid, spec.gid));
  plan.Mkdirs(spec.workdir);
  plan.Mount("tmpfs", spec.workdir, "tmpfs", MS_NOSUID | MS_NODEV,
             TmpfsOptions(spec.workdir_bytes, "0755", spec.uid, spec.gid));
  PlanDev(spec, plan);
  plan.Mkdirs("/proc", 0555);
  // hidepid=invisible: a process of the sandbox user sees no other user's
  // processes even if one were in its pid namespace.
  plan.Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
             spec.proc_subset_pid ? "hidepid=invisible,subset=pid" : "hidepid=invisible");
  PlanProcMasks(plan);
  for (const BindMount& bind : spec.binds) {
    if (!IsCleanAbsolute(bind.source) || !IsCleanAbsolute(bind.target) || bind.target == "/") {
      return absl::InvalidArgumentError(absl::StrCat("bind `", bind.source, "` on `", bind.target,
                                                     "`: both must be absolute, the target not /"));
    }
    RETURN_IF_ERROR(plan.BindFromHost(bind.source, bind.target, bind.access));
  }
  plan.RemountRootReadOnly();
  return std::move(plan).Take();
}

// ---- child side: async-signal-safe from here on ----

int MakeMountsPrivate() {
  // Before anything is mounted: no mount event may propagate to the host.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  return 0;
}

namespace {

int WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

int Bind(const RootfsOp& op) {
  if (mount(op.source.c_str(), op.target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return errno;
  }
  // mount_setattr makes the bind and everything below it read-only in one
  // call; a plain remount would leave sub-mounts of the source writable.
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (op.kind == Kind::kBindWritable) attr.attr_set &= ~MOUNT_ATTR_RDONLY;
  if (syscall(SYS_mount_setattr, AT_FDCWD, op.target.c_str(), AT_RECURSIVE, &attr, sizeof(attr)) ==
      0) {
    return 0;
  }
  if (errno != ENOSYS) return errno;
  const unsigned long read_only = op.kind == Kind::kBindWritable ? 0 : MS_RDONLY;
  if (mount(nullptr, op.target.c_str(), nullptr,
            MS_REMOUNT | MS_BIND | read_only | MS_NOSUID | MS_NODEV, nullptr) != 0) {
    return errno;
  }
  return 0;
}

// Hides a host-wide /proc file or directory from the sandbox. A missing
// path is fine: the kernel was built without it.
int MaskPath(const RootfsOp& op) {
  struct stat st;
  if (lstat(op.target.c_str(), &st) != 0) return errno == ENOENT ? 0 : errno;
  if (S_ISDIR(st.st_mode)) {
    return mount("tmpfs", op.target.c_str(), op.fstype.c_str(), op.flags, op.data.c_str()) == 0
               ? 0
               : errno;
  }
  if (mount(op.source.c_str(), op.target.c_str(), nullptr, MS_BIND, nullptr) != 0) return errno;
  // nodev as well: opening the mask fails instead of reading /dev/null.
  if (mount(nullptr, op.target.c_str(), nullptr,
            MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return errno;
  }
  return 0;
}

int ApplyOne(const RootfsOp& op) {
  const char* target = op.target.c_str();
  switch (op.kind) {
    case Kind::kMkdir:
      if (mkdir(target, op.mode) != 0 && errno != EEXIST) return errno;
      return 0;
    case Kind::kSymlink:
      return symlink(op.source.c_str(), target) == 0 ? 0 : errno;
    case Kind::kWriteFile:
    case Kind::kCreateFile: {
      int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, op.mode);
      if (fd < 0) return errno;
      int err = WriteAll(fd, op.data.data(), op.data.size());
      close(fd);
      return err;
    }
    case Kind::kMknod:
      return mknod(target, S_IFCHR | op.mode, op.device) == 0 ? 0 : errno;
    case Kind::kBindReadOnly:
    case Kind::kBindWritable:
      return Bind(op);
    case Kind::kMount:
      return mount(op.source.c_str(), target, op.fstype.c_str(), op.flags, op.data.c_str()) == 0
                 ? 0
                 : errno;
    case Kind::kRemountReadOnly:
      return mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID,
                   nullptr) == 0
                 ? 0
                 : errno;
    case Kind::kMaskPath:
      return MaskPath(op);
    case Kind::kReadOnlyPath: {
      struct stat st;
      if (lstat(target, &st) != 0) return errno == ENOENT ? 0 : errno;
      return Bind(op);
    }
  }
  return EINVAL;
}

}  // namespace

int ApplyRootfs(const RootfsOp* ops, size_t n, size_t* failed_index) {
  for (size_t i = 0; i < n; ++i) {
    int err = ApplyOne(ops[i]);
    if (err != 0) {
      *failed_index = i;
      return err;
    }
  }
  return 0;
}

int PivotRoot(const char* root_dir) {
  // pivot_root(".", ".") stacks the old root on the new one; detaching "."
  // then drops the old root, so no path leads back to the host's tree.
  if (chdir(root_dir) != 0) return errno;
  if (syscall(SYS_pivot_root, ".", ".") != 0) return errno;
  if (umount2(".", MNT_DETACH) != 0) return errno;
  if (chdir("/") != 0) return errno;
  return 0;
}

}  // namespace flotilla::sandbox::isolation
