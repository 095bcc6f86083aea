#include "sandbox/microvm/disks.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace flotilla::sandbox::microvm {
namespace {

using Clock = std::chrono::steady_clock;

// mke2fs lives in /sbin, which a non-root agent's PATH often lacks.
std::string FindTool(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  std::vector<std::string> dirs;
  if (const char* path = getenv("PATH"); path != nullptr && *path != '\0') {
    std::string p = path;
    for (size_t start = 0; start <= p.size();) {
      size_t colon = p.find(':', start);
      if (colon == std::string::npos) colon = p.size();
      dirs.push_back(p.substr(start, colon - start));
      start = colon + 1;
    }
  }
  for (const char* d : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) dirs.emplace_back(d);
  for (const std::string& d : dirs) {
    std::string candidate = d + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// Runs argv, SIGKILLing it at the deadline. An exit status other than 0 is
// an error quoting the start of what it printed.
absl::Status RunWithDeadline(const std::vector<std::string>& args, Clock::time_point deadline) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) return ErrnoError(errno, "pipe", args[0]);
  UniqueFd read_end(pipefd[0]), write_end(pipefd[1]);
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devnull.valid()) return ErrnoError(errno, "open", "/dev/null");
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", args[0]);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (dup2(devnull.get(), 0) < 0 || dup2(write_end.get(), 1) < 0 ||
        dup2(write_end.get(), 2) < 0) {
      _exit(127);
    }
    close_range(3, ~0u, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  write_end.Reset();
  fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  std::string output;
  int status = 0;
  while (true) {
    char buf[512];
    ssize_t n;
    while ((n = read(read_end.get(), buf, sizeof(buf))) > 0) {
      if (output.size() < 2048) output.append(buf, static_cast<size_t>(n));
    }
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return ErrnoError(errno, "waitpid", args[0]);
    if (Clock::now() >= deadline) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return absl::DeadlineExceededError(absl::StrCat(args[0], " did not finish in time"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return absl::InternalError(
      absl::StrCat(args[0],
                   WIFEXITED(status) ? absl::StrCat(" exited ", WEXITSTATUS(status))
                                     : absl::StrCat(" killed by signal ", WTERMSIG(status)),
                   output.empty() ? "" : ": ", output));
}

}  // namespace

absl::Status MakeScratchImage(const std::string& path, int64_t bytes, Clock::time_point deadline,
                              const std::string& mke2fs) {
  const std::string tool = FindTool(mke2fs);
  if (tool.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("`", mke2fs, "` was not found; install e2fsprogs (scripts/install-deps)"));
  }
  const int64_t mib = std::max<int64_t>(kMinScratchBytes, bytes + (1 << 20) - 1) >> 20;
  {
    UniqueFd file(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!file.valid()) return ErrnoError(errno, "create", path);
  }
  // -E nodiscard: a file has nothing to discard; lazy_itable_init with the
  // guest's noinit_itable leaves the inode tables as holes.
  absl::Status st = RunWithDeadline(
      {tool, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-L", "flotilla-scratch",
       "-E", "lazy_itable_init=1,nodiscard,root_owner=0:0", path, absl::StrCat(mib, "M")},
      deadline);
  if (!st.ok()) {
    unlink(path.c_str());
    return Annotate(st, absl::StrCat("make the scratch disk image `", path, "`"));
  }
  return absl::OkStatus();
}

absl::Status CopySparse(const std::string& from, const std::string& to, uid_t uid, gid_t gid) {
  UniqueFd in(open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return ErrnoError(errno, "open", from);
  struct stat st;
  if (fstat(in.get(), &st) < 0) return ErrnoError(errno, "stat", from);
  UniqueFd out(open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out.valid()) return ErrnoError(errno, "create", to);
  auto fail = [&](int err, const char* op) {
    absl::Status s = ErrnoError(err, op, to);
    out.Reset();
    unlink(to.c_str());
    return s;
  };
  if (uid != static_cast<uid_t>(-1) && fchown(out.get(), uid, gid) < 0) {
    return fail(errno, "chown");
  }
  if (ftruncate(out.get(), st.st_size) < 0) return fail(errno, "truncate");
  off_t at = 0;
  while (at < st.st_size) {
    off_t data = lseek(in.get(), at, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole is left
    if (data < 0) return fail(errno, "seek data in");
    off_t hole = lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return fail(errno, "seek hole in");
    off_t src = data, dst = data;
    while (src < hole) {
      ssize_t n =
          copy_file_range(in.get(), &src, out.get(), &dst, static_cast<size_t>(hole - src), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(errno, "copy into");
      if (n == 0) break;  // the source shrank: it must not change while in use
    }
    at = hole;
  }
  return absl::OkStatus();
}

}  // namespace flotilla::sandbox::microvm
