#include "checkpoint/root_archive.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "checkpoint/child.h"
#include "checkpoint/tar_check.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif

namespace flotilla::checkpoint {
namespace {

constexpr char kTar[] = "/usr/bin/tar";

// Waits for tar (killing it at the deadline) and says how it ended.
absl::Status Wait(pid_t pid, const std::string& what, std::chrono::milliseconds deadline) {
  ASSIGN_OR_RETURN(Child child, Child::Adopt(pid, what));
  ASSIGN_OR_RETURN(int status, child.Wait(Child::Clock::now() + deadline, deadline));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, " ", DescribeWaitStatus(status)));
}

}  // namespace

absl::Status SaveRoot(const std::string& proc_dir, pid_t init_pid, const std::string& tar_path,
                      std::chrono::milliseconds deadline) {
  const std::string ns_path = absl::StrCat(proc_dir, "/", init_pid, "/ns/mnt");
  UniqueFd ns(open(ns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return ErrnoError(errno, "open", ns_path);
  UniqueFd host_root(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!host_root.valid()) return ErrnoError(errno, "open", "/");
  UniqueFd out(open(tar_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!out.valid()) return ErrnoError(errno, "create", tar_path);

  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2");
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", "root archive");
  if (pid == 0) {
    auto fail = [&](int step) {
      int report[2] = {step, errno};
      (void)!write(err_write.get(), report, sizeof(report));
      _exit(126);
    };
    if (StartOwnGroupInChild() != 0) fail(7);
    if (setns(ns.get(), CLONE_NEWNS) != 0) fail(1);
    // The root mount alone, detached: none of its submounts come along.
    int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE));
    if (tree < 0) fail(2);
    // Back to the host's root for the tar binary, then into the clone.
    if (fchdir(host_root.get()) != 0 || chroot(".") != 0) fail(3);
    if (fchdir(tree) != 0) fail(4);
    if (dup2(out.get(), 1) < 0) fail(5);
    execl(kTar, "tar", "--numeric-owner", "--xattrs", "-cf", "-", ".", static_cast<char*>(nullptr));
    fail(6);
  }
  err_write.Reset();
  // The wait comes first: a hung tar holds the pipe's write end open, and
  // only the kill at the deadline closes it.
  absl::Status waited = Wait(pid, "tar of the container's root", deadline);
  int report[2] = {0, 0};
  ssize_t n = read(err_read.get(), report, sizeof(report));
  if (n == sizeof(report)) {
    static const char* kSteps[] = {"", "setns mount namespace of", "open_tree `/` in", "chroot host root from",
                                   "fchdir root clone of", "dup2 output for", "execve `/usr/bin/tar` for",
                                   "setpgid for the tar of"};
    unlink(tar_path.c_str());
    return ErrnoError(report[1], kSteps[report[0]], absl::StrCat("pid ", init_pid));
  }
  if (!waited.ok()) unlink(tar_path.c_str());
  return waited;
}

absl::Status RestoreRoot(const std::string& tar_path, const std::string& root_dir, uint64_t bytes,
                         std::chrono::milliseconds deadline) {
  // The bytes are read once, checked, and handed to tar from a sealed
  // memfd: the file cannot change between the check and the unpack.
  UniqueFd file(open(tar_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!file.valid()) return ErrnoError(errno, "open", tar_path);
  struct stat st;
  if (fstat(file.get(), &st) != 0) return ErrnoError(errno, "fstat", tar_path);
  // tar's headers and padding add a block or two per entry to the content.
  const uint64_t max_tar = bytes + (8u << 20);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > max_tar) {
    return absl::InvalidArgumentError(absl::StrCat(
        "root archive `", tar_path, "` is not a regular file of at most ", max_tar, " bytes"));
  }
  std::string archive(static_cast<size_t>(st.st_size), '\0');
  for (size_t done = 0; done < archive.size();) {
    ssize_t n = read(file.get(), archive.data() + done, archive.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError(n < 0 ? errno : EIO, "read", tar_path);
    done += static_cast<size_t>(n);
  }
  if (absl::Status st = CheckTarArchive(archive, RootSkeletonTarPolicy()); !st.ok()) {
    return Annotate(st, absl::StrCat("root archive `", tar_path, "` is refused"));
  }
  UniqueFd sealed(memfd_create("flotilla-root-tar", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!sealed.valid()) return ErrnoError(errno, "memfd_create", "flotilla-root-tar");
  for (size_t done = 0; done < archive.size();) {
    ssize_t n = write(sealed.get(), archive.data() + done, archive.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError(n < 0 ? errno : EIO, "write", "flotilla-root-tar");
    done += static_cast<size_t>(n);
  }
  if (fcntl(sealed.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) !=
          0 ||
      lseek(sealed.get(), 0, SEEK_SET) != 0) {
    return ErrnoError(errno, "seal", "flotilla-root-tar");
  }

  const std::string options = absl::StrCat("size=", bytes, ",mode=0755");
  if (mount("flotilla-root", root_dir.c_str(), "tmpfs", MS_NOSUID, options.c_str()) != 0) {
    return ErrnoError(errno, "mount tmpfs on", root_dir);
  }
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    umount2(root_dir.c_str(), MNT_DETACH);
    return ErrnoError(err, "fork", "root unpack");
  }
  if (pid == 0) {
    if (StartOwnGroupInChild() != 0) _exit(126);
    if (dup2(sealed.get(), 0) != 0) _exit(126);
    // --no-same-owner: everything belongs to the agent's user, whatever
    // the archive says; -p keeps modes, which the check found free of
    // setuid and setgid bits.
    execl(kTar, "tar", "--numeric-owner", "--no-same-owner", "--xattrs", "-xpf", "-", "-C",
          root_dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  absl::Status waited = Wait(pid, absl::StrCat("unpack `", tar_path, "` on ", root_dir), deadline);
  if (!waited.ok()) umount2(root_dir.c_str(), MNT_DETACH);
  return waited;
}

}  // namespace flotilla::checkpoint
