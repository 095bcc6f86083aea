// The guest's working directory: placing task files and cleaning up after
// a task, both through directory fds with O_NOFOLLOW on every component.
//
// The task runs as the same uid as the guest, so anything it leaves behind
// (a read-only directory, a symlink to /etc, a ten-thousand-level tree) the
// guest can remove, provided it never resolves a path the task controls:
//  - unlinkat on a symlink removes the link, never its target;
//  - directories are entered with openat(O_DIRECTORY | O_NOFOLLOW);
//  - a directory the task made unreadable is chmod'ed only after fstatat
//    with AT_SYMLINK_NOFOLLOW saw a directory there, and cleanup runs after
//    every process of the task is dead, so nothing can swap it in between;
//  - recursion is depth-bounded (one fd per level): a deeper subtree is
//    moved up to the root with renameat2(RENAME_NOREPLACE) and removed in a
//    later pass.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "guest/guest.h"

namespace flotilla::guest {

void Log(const char* format, ...) {
  char buf[1024];
  int n = snprintf(buf, sizeof(buf), "flotilla-guest: ");
  va_list ap;
  va_start(ap, format);
  int m = vsnprintf(buf + n, sizeof(buf) - n - 1, format, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : std::min<size_t>(m, sizeof(buf) - n - 2));
  buf[len++] = '\n';
  ssize_t unused = write(STDERR_FILENO, buf, len);
  (void)unused;
}

std::string ErrnoMessage(std::string_view op, std::string_view object, int err) {
  std::string out(op);
  if (!object.empty()) {
    out += " `";
    out += object;
    out += "`";
  }
  out += ": ";
  out += strerror(err);
  return out;
}

int64_t MonotonicUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

namespace {

constexpr size_t kMaxPathLength = 4096;
// Directory levels entered at once while cleaning (one fd each).
constexpr int kMaxCleanDepth = 64;
// Cleaning passes over the root; each can go kMaxCleanDepth levels deeper.
constexpr int kMaxCleanPasses = 4096;

std::vector<std::string_view> Components(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part != ".") parts.push_back(part);
    start = slash + 1;
  }
  return parts;
}

bool StartFailed(StartError* error, int err, std::string message) {
  error->err = err;
  error->message = std::move(message);
  return false;
}

}  // namespace

bool ValidateRelativePath(std::string_view path, bool allow_empty, std::string* error) {
  if (path.empty()) {
    if (allow_empty) return true;
    *error = "the path is empty";
    return false;
  }
  if (path.size() > kMaxPathLength) {
    *error = "the path is longer than 4096 bytes";
    return false;
  }
  if (path.find('\0') != std::string_view::npos) {
    *error = "the path contains a NUL byte";
    return false;
  }
  if (path.front() == '/') {
    *error = "the path must be relative to the working directory";
    return false;
  }
  for (std::string_view part : Components(path)) {
    if (part.empty()) {
      *error = "the path has an empty component (\"//\" or a trailing '/')";
      return false;
    }
    if (part == "..") {
      *error = "\"..\" is not allowed in the path";
      return false;
    }
  }
  return true;
}

Fd OpenDirBeneath(int root_fd, std::string_view rel, StartError* error) {
  Fd cur(openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) {
    StartFailed(error, errno, ErrnoMessage("open", "the working directory", errno));
    return Fd();
  }
  if (rel.empty()) return cur;
  for (std::string_view part : Components(rel)) {
    std::string name(part);
    if (mkdirat(cur.get(), name.c_str(), 0755) < 0 && errno != EEXIST) {
      StartFailed(error, errno, ErrnoMessage("mkdir", rel, errno));
      return Fd();
    }
    Fd next(openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next.valid()) {
      // ELOOP or ENOTDIR: a symlink or a file where a directory should be.
      StartFailed(error, errno, ErrnoMessage("open directory", rel, errno));
      return Fd();
    }
    cur = std::move(next);
  }
  return cur;
}

bool WriteFileBeneath(int root_fd, const RunFile& file, StartError* error) {
  std::string_view path = file.path;
  size_t slash = path.rfind('/');
  std::string_view dir =
      slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
  std::string base(slash == std::string_view::npos ? path : path.substr(slash + 1));
  Fd dir_fd = OpenDirBeneath(root_fd, dir, error);
  if (!dir_fd.valid()) return false;
  Fd fd(openat(dir_fd.get(), base.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
               0600));
  if (!fd.valid()) return StartFailed(error, errno, ErrnoMessage("create task file", path, errno));
  size_t done = 0;
  while (done < file.content.size()) {
    ssize_t n = write(fd.get(), file.content.data() + done, file.content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return StartFailed(error, errno, ErrnoMessage("write task file", path, errno));
    done += static_cast<size_t>(n);
  }
  // fchmod, not open's mode, so the umask does not strip the exec bits.
  if (fchmod(fd.get(), file.mode & 07777) < 0) {
    return StartFailed(error, errno, ErrnoMessage("chmod task file", path, errno));
  }
  return true;
}

namespace {

class Cleaner {
 public:
  explicit Cleaner(int root_fd) : root_(root_fd) {}

  // Returns true if the root is empty at the end.
  bool Run(std::string* error) {
    for (int pass = 0; pass < kMaxCleanPasses; ++pass) {
      moved_ = false;
      EmptyDir(root_, 0);
      if (!moved_) break;  // nothing deep is left for another pass
    }
    std::vector<std::string> left;
    if (ListNames(root_, &left) && left.empty()) return true;
    std::string first = left.empty() ? std::string() : " (`" + left.front() + "`)";
    *error = error_.empty() ? "the working directory is not empty after cleaning" + first : error_;
    return false;
  }

 private:
  void Note(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }

  bool ListNames(int dir_fd, std::vector<std::string>* names) {
    // fdopendir takes the fd; a dup shares the offset, hence the rewind.
    int dup_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) {
      Note(ErrnoMessage("dup", "a directory fd", errno));
      return false;
    }
    DIR* dir = fdopendir(dup_fd);
    if (dir == nullptr) {
      close(dup_fd);
      Note(ErrnoMessage("opendir", "the working directory", errno));
      return false;
    }
    rewinddir(dir);
    while (dirent* e = readdir(dir)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      names->emplace_back(e->d_name);
    }
    closedir(dir);
    return true;
  }

  // Returns true if dir_fd is empty afterwards.
  bool EmptyDir(int dir_fd, int depth) {
    std::vector<std::string> names;
    if (!ListNames(dir_fd, &names)) return false;
    bool empty = true;
    for (const std::string& name : names) {
      if (!RemoveEntry(dir_fd, name, depth)) empty = false;
    }
    return empty;
  }

  bool RemoveEntry(int dir_fd, const std::string& name, int depth) {
    const char* n = name.c_str();
    if (unlinkat(dir_fd, n, 0) == 0 || errno == ENOENT) return true;
    if (errno != EISDIR && errno != EPERM) {
      Note(ErrnoMessage("unlink", name, errno));
      return false;
    }
    if (depth + 1 >= kMaxCleanDepth) return MoveToRoot(dir_fd, name);
    Fd sub(openat(dir_fd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub.valid() && errno == EACCES) {
      // A directory the task made unreadable: make it ours again.
      struct stat st;
      if (fstatat(dir_fd, n, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
          fchmodat(dir_fd, n, 0700, 0) == 0) {
        sub = Fd(openat(dir_fd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      }
    }
    if (!sub.valid()) {
      Note(ErrnoMessage("open directory", name, errno));
      return false;
    }
    // Entries of a read-only directory cannot be unlinked.
    if (fchmod(sub.get(), 0700) < 0) {
      Note(ErrnoMessage("chmod", name, errno));
      return false;
    }
    EmptyDir(sub.get(), depth + 1);
    sub.Reset();
    if (unlinkat(dir_fd, n, AT_REMOVEDIR) == 0 || errno == ENOENT) return true;
    Note(ErrnoMessage("rmdir", name, errno));
    return false;
  }

  bool MoveToRoot(int dir_fd, const std::string& name) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      std::string target = ".flotilla-clean-" + std::to_string(counter_++);
      if (renameat2(dir_fd, name.c_str(), root_, target.c_str(), RENAME_NOREPLACE) == 0) {
        moved_ = true;
        return false;  // the parent stays non-empty until this pass ends
      }
      if (errno != EEXIST) break;
    }
    Note(ErrnoMessage("move a deep directory up", name, errno));
    return false;
  }

  const int root_;
  bool moved_ = false;
  uint64_t counter_ = 0;
  std::string error_;
};

}  // namespace

bool CleanDirectory(int root_fd, mode_t root_mode, std::string* error) {
  struct stat st;
  if (fstat(root_fd, &st) == 0 && st.st_nlink == 0) {
    *error = "the working directory was removed by the task";
    return false;
  }
  // The task may have made the root read-only; the owner bits are needed to
  // empty it, and its mode is restored afterwards.
  if (fchmod(root_fd, 0700) < 0) {
    *error = ErrnoMessage("chmod", "the working directory", errno);
    return false;
  }
  Cleaner cleaner(root_fd);
  bool ok = cleaner.Run(error);
  if (fchmod(root_fd, root_mode & 07777) < 0 && ok) {
    *error = ErrnoMessage("chmod", "the working directory", errno);
    return false;
  }
  return ok;
}

}  // namespace flotilla::guest
