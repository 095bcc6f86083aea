#include "checkpoint/criu_process.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace flotilla::checkpoint {
namespace {

constexpr char kKdat[] = "criu.kdat";

// Child side (after fork in a threaded process): only system calls.
int CopyFile(const char* from, const char* to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return -1;
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    close(in);
    return -1;
  }
  char buf[8192];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) {
    if (write(out, buf, static_cast<size_t>(n)) != n) break;
  }
  close(in);
  close(out);
  return n == 0 ? 0 : -1;
}

// Child side: a private mount namespace with a tmpfs on /run for CRIU's
// kernel-feature cache.
int PrivateRun() {
  if (unshare(CLONE_NEWNS) != 0) return -1;
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return -1;
  return mount("criu-run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755");
}

std::string ReadTail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::Status WaitChild(pid_t pid, const std::string& what) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoError(errno, "waitpid", what);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": could not start criu"));
  }
  return absl::InternalError(absl::StrCat(
      what, WIFEXITED(status) ? absl::StrCat(" exited with status ", WEXITSTATUS(status))
                              : absl::StrCat(" was killed by signal ", WTERMSIG(status))));
}

}  // namespace

std::string FirstCriuError(const std::string& log) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, "Error (")) continue;
    // Logged on every run here: the agent cannot raise its own RLIMIT_NOFILE.
    if (absl::StrContains(line, "Can't setup RLIMIT_NOFILE for self")) continue;
    return std::string(absl::StripLeadingAsciiWhitespace(line));
  }
  return "";
}

absl::Status CriuProcess::EnsureKdatCache() {
  const std::string cache = absl::StrCat(state_dir_, "/", kKdat);
  if (access(cache.c_str(), R_OK) == 0) return absl::OkStatus();
  RETURN_IF_ERROR(MkdirParents(state_dir_));
  const std::string tmp = absl::StrCat(cache, ".", getpid());
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", "criu check");
  if (pid == 0) {
    if (PrivateRun() != 0) _exit(126);
    pid_t check = fork();
    if (check == 0) {
      int null = open("/dev/null", O_RDWR);
      dup2(null, 1);
      dup2(null, 2);
      execl(criu_path_.c_str(), criu_path_.c_str(), "check", static_cast<char*>(nullptr));
      _exit(127);
    }
    int status = 0;
    if (check < 0 || waitpid(check, &status, 0) < 0) _exit(126);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 126);
    _exit(CopyFile("/run/criu.kdat", tmp.c_str()) == 0 ? 0 : 125);
  }
  absl::Status waited = WaitChild(pid, absl::StrCat("`", criu_path_, " check`"));
  if (!waited.ok()) {
    unlink(tmp.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat(waited.message(), ": criu does not work on this kernel (run scripts/build-criu)"));
  }
  if (rename(tmp.c_str(), cache.c_str()) != 0) return ErrnoError(errno, "rename", cache);
  return absl::OkStatus();
}

absl::Status CriuProcess::Run(const std::string& what, const CriuRun& run) {
  if (access(criu_path_.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": criu is not installed at ", criu_path_, " (run scripts/build-criu)"));
  }
  RETURN_IF_ERROR(EnsureKdatCache());
  const std::string cache = absl::StrCat(state_dir_, "/", kKdat);
  std::vector<std::string> argv_strings = {criu_path_};
  argv_strings.insert(argv_strings.end(), run.args.begin(), run.args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", what);
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int fd : run.join_cgroup_fds) {
      if (write(fd, "0", 1) != 1) _exit(126);
    }
    // Only a run with changed ids needs the cache; a restore runs as root
    // and must see the host's /run, where the sandbox roots live.
    if (run.real_uid >= 0) {
      if (PrivateRun() != 0) _exit(126);
      if (CopyFile(cache.c_str(), "/run/criu.kdat") != 0) _exit(126);
    }
    // Inherited fds: dup to the targets without CLOEXEC. Sources are moved
    // high first so a target cannot clobber a later source.
    std::vector<int> moved;
    for (const auto& [source, target] : run.inherit) {
      int high = fcntl(source, F_DUPFD_CLOEXEC, 512);
      if (high < 0) _exit(126);
      moved.push_back(high);
    }
    for (size_t i = 0; i < moved.size(); ++i) {
      if (dup2(moved[i], run.inherit[i].second) < 0) _exit(126);
    }
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (run.real_gid >= 0) {
      if (setgroups(0, nullptr) != 0 || setresgid(run.real_gid, 0, 0) != 0) _exit(126);
    }
    if (run.real_uid >= 0 && setresuid(run.real_uid, 0, 0) != 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  absl::Status waited = WaitChild(pid, absl::StrCat(what, ": criu"));
  if (waited.ok()) return waited;
  std::string line = FirstCriuError(ReadTail(run.log_path));
  if (line.empty()) return Annotate(waited, absl::StrCat("see ", run.log_path));
  const bool unsupported = absl::StrContains(line, "not supported") ||
                           absl::StrContains(line, "Can't dump") ||
                           absl::StrContains(line, "not found") ||
                           absl::StrContains(line, "Can't lookup");
  std::string message = absl::StrCat(what, ": criu failed: ", line, " (log: ", run.log_path, ")");
  return unsupported ? absl::UnimplementedError(absl::StrCat("unsupported resource: ", message))
                     : absl::InternalError(message);
}

}  // namespace flotilla::checkpoint
