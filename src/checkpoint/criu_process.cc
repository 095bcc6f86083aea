#include "checkpoint/criu_process.h"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "checkpoint/child.h"
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

// An exit status as a Status: OK for 0, FailedPrecondition for 127 (exec
// failed), Internal otherwise.
absl::Status ExitStatus(int status, const std::string& what) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": could not start criu"));
  }
  return absl::InternalError(absl::StrCat(what, " ", DescribeWaitStatus(status)));
}

}  // namespace

std::chrono::milliseconds CriuDeadlines::For(int64_t bytes) const {
  const double gib = static_cast<double>(std::max<int64_t>(bytes, 0)) / (1024.0 * 1024.0 * 1024.0);
  const auto scaled = floor + std::chrono::milliseconds(static_cast<int64_t>(gib * per_gib.count()));
  return std::min(scaled, std::max(cap, floor));
}

std::string LogTail(const std::string& path, int lines) {
  const std::string log = ReadTail(path);
  std::vector<absl::string_view> all = absl::StrSplit(log, '\n', absl::SkipWhitespace());
  const size_t from = all.size() > static_cast<size_t>(lines) ? all.size() - lines : 0;
  std::vector<absl::string_view> tail(all.begin() + static_cast<std::ptrdiff_t>(from), all.end());
  for (auto& line : tail) line = absl::StripAsciiWhitespace(line);
  return absl::StrJoin(tail, " | ");
}

std::string FirstCriuError(const std::string& log) {
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (!absl::StrContains(line, "Error (")) continue;
    // Logged on every run here: the agent cannot raise its own RLIMIT_NOFILE.
    if (absl::StrContains(line, "Can't setup RLIMIT_NOFILE for self")) continue;
    return std::string(absl::StripLeadingAsciiWhitespace(line));
  }
  return "";
}

absl::Status CriuProcess::EnsureKdatCache(int cancel_fd) {
  const std::string cache = absl::StrCat(state_dir_, "/", kKdat);
  if (access(cache.c_str(), R_OK) == 0) return absl::OkStatus();
  RETURN_IF_ERROR(MkdirParents(state_dir_));
  const std::string tmp = absl::StrCat(cache, ".", getpid());
  const std::string what = absl::StrCat("`", criu_path_, " check`");
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", what);
  if (pid == 0) {
    // Its own group: a hung check is killed with the criu it forked.
    if (StartOwnGroupInChild() != 0) _exit(126);
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
  ASSIGN_OR_RETURN(Child child, Child::Adopt(pid, what));
  absl::StatusOr<int> status =
      child.Wait(std::chrono::steady_clock::now() + check_deadline_, check_deadline_, cancel_fd);
  absl::Status waited = status.ok() ? ExitStatus(*status, what) : status.status();
  if (!waited.ok()) {
    unlink(tmp.c_str());
    if (absl::IsDeadlineExceeded(waited) || absl::IsCancelled(waited)) return waited;
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
  if (run.deadline.count() <= 0 || run.args.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a criu run needs a step and a deadline"));
  }
  RETURN_IF_ERROR(Annotate(EnsureKdatCache(run.cancel_fd), what));
  const std::string step = absl::StrCat("criu ", run.args[0]);
  const std::string cache = absl::StrCat(state_dir_, "/", kKdat);
  std::vector<std::string> argv_strings = {criu_path_};
  argv_strings.insert(argv_strings.end(), run.args.begin(), run.args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // The environment is built here: the forked child of a threaded process
  // must not allocate (setenv).
  std::vector<std::string> env_strings = run.env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", what);
  if (pid == 0) {
    // Its own group: a kill at the deadline reaches the helpers CRIU forks.
    if (StartOwnGroupInChild() != 0) _exit(126);
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
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  ASSIGN_OR_RETURN(Child child, Child::Adopt(pid, step));
  absl::StatusOr<int> status = child.Wait(std::chrono::steady_clock::now() + run.deadline,
                                          run.deadline, run.cancel_fd);
  if (!status.ok()) {
    const std::string tail = LogTail(run.log_path);
    return absl::Status(status.status().code(),
                        absl::StrCat(what, ": ", status.status().message(), " (log ends: ",
                                     tail.empty() ? "<empty>" : tail, "; log: ", run.log_path, ")"));
  }
  absl::Status waited = ExitStatus(*status, absl::StrCat(what, ": ", step));
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
