// The unisolated process sandbox: fork + exec of the task in its own session
// and process group, in a fresh working directory, supervised by one poll
// loop per Run over the output pipes, a pidfd of the child and the cancel
// token's eventfd.
//
// Why it is shaped this way:
//  - Everything the child needs (argv, envp, the PATH candidates) is built
//    before fork, so the child only makes async-signal-safe calls: the agent
//    is multithreaded and another thread may hold malloc's lock at fork.
//  - The child reports a failed setup step to the parent as (step, errno)
//    over a close-on-exec pipe (as nsjail does), so Run can say which step
//    failed; EOF on that pipe means exec succeeded.
//  - Each Run reaps only its own child, through its pidfd (waitid P_PIDFD):
//    several Runs are in flight on different threads and other code of the
//    agent may spawn children too, so there is no waitpid(-1) reaper. The
//    child stays a zombie until that waitid, which keeps its pid (and so its
//    process group id) from being reused while we still signal it.
//  - Signals go to the whole process group (kill(-pgid)), which takes down
//    the task's descendants unless they left the group with setsid().
//    Isolation of the whole tree (cgroup.kill) is the Linux sandbox's job.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "sandbox/sandbox.h"
#include "spdlog/spdlog.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace flotilla::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
constexpr size_t kIoChunk = 64 * 1024;
// How long a cancelled task gets between SIGTERM and SIGKILL.
constexpr auto kCancelGrace = std::chrono::seconds(2);
// How long output is still drained after the child exited: descendants that
// left the process group may hold the pipes open forever.
constexpr auto kDrainGrace = std::chrono::milliseconds(500);
// Poll wakeup when the cancel token has no eventfd (it could not be made).
constexpr auto kCancelPollInterval = std::chrono::milliseconds(50);


struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// Returns `fd` moved to a number >= 3 if it was one of 0/1/2 (possible when
// the agent runs with a closed stdio), so that the child's dup2 onto 0/1/2
// never meets its own source.
absl::Status MoveAboveStdio(UniqueFd& fd) {
  if (fd.get() > STDERR_FILENO) return absl::OkStatus();
  int moved = fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return ErrnoError(errno, "fcntl F_DUPFD_CLOEXEC");
  fd = UniqueFd(moved);
  return absl::OkStatus();
}

absl::Status SetNonBlocking(const UniqueFd& fd) {
  int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoError(errno, "fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

// Returns a close-on-exec pipe whose ends are both above stdio.
absl::StatusOr<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return ErrnoError(errno, "pipe2");
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  RETURN_IF_ERROR(MoveAboveStdio(p.read));
  RETURN_IF_ERROR(MoveAboveStdio(p.write));
  return p;
}

// Makes every directory under `dir` writable and searchable so a task that
// chmod'ed its own directories cannot make the cleanup fail.
void MakeTreeRemovable(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ec);
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) MakeTreeRemovable(it->path());
  }
}

// A fresh per-task working directory, removed with everything in it when
// this object goes away.
class TaskDir {
 public:
  static absl::StatusOr<TaskDir> Create(const std::string& root) {
    if (root.empty()) {
      return absl::FailedPreconditionError("the process sandbox has no work_root configured");
    }
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (ec) return ErrnoError(ec.value(), "mkdir", root);
    std::string templ = (std::filesystem::path(root) / "task-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) return ErrnoError(errno, "mkdtemp", templ);
    return TaskDir(std::move(templ));
  }

  TaskDir(TaskDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TaskDir& operator=(TaskDir&&) = delete;
  ~TaskDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    if (!ec) return;
    MakeTreeRemovable(path_);
    std::filesystem::remove_all(path_, ec);
    if (ec) spdlog::warn("remove task directory `{}`: {}", path_, ec.message());
  }

  const std::string& path() const { return path_; }

 private:
  explicit TaskDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Returns InvalidArgument unless `path` is a relative path that stays inside
// the working directory.
absl::Status ValidateTaskFilePath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("task file with an empty path");
  if (path.front() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("task file `", path, "`: the path must be relative to the working directory"));
  }
  if (path.back() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("task file `", path, "`: names a directory"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("task file `", path, "`: \"..\" is not allowed in a task file path"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "write", path);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteTaskFile(const std::string& dir, const TaskFile& file) {
  std::filesystem::path full = std::filesystem::path(dir) / file.path;
  std::error_code ec;
  std::filesystem::create_directories(full.parent_path(), ec);
  if (ec) return ErrnoError(ec.value(), "mkdir", full.parent_path().string());
  UniqueFd fd(open(full.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return ErrnoError(errno, "open", full.string());
  RETURN_IF_ERROR(WriteAll(fd.get(), file.content, full.string()));
  // fchmod, not open's mode, so the umask does not strip the exec bits.
  if (fchmod(fd.get(), file.mode & 07777) < 0) return ErrnoError(errno, "fchmod", full.string());
  return absl::OkStatus();
}

// --- The child side: only async-signal-safe calls after fork. ---

enum class ChildStep : int {
  kSetsid = 1,
  kParentDeathSignal,
  kParentGone,
  kChdir,
  kDupStdio,
  kCloseFds,
  kSignals,
  kCoreLimit,
  kExec,
};

struct ChildError {
  int step = 0;
  int err = 0;
};

// Everything the child reads, prepared before fork. The char* arrays point
// into the strings owned here.
struct ExecPlan {
  std::vector<std::string> argv_strings;
  std::vector<std::string> env_strings;
  std::vector<std::string> candidates;  // the paths execve tries, in order
  std::string workdir;
  std::vector<char*> argv;
  std::vector<char*> envp;
  pid_t parent = 0;
};

ExecPlan MakeExecPlan(const TaskSpec& spec, const std::string& workdir) {
  ExecPlan plan;
  plan.argv_strings = spec.argv;
  for (const auto& [key, value] : spec.env) plan.env_strings.push_back(key + "=" + value);
  plan.workdir = workdir;
  plan.parent = getpid();

  // execvpe would search the agent's PATH, not the task's, so the search is
  // done here, the way execvpe does it, with the task's environment.
  const std::string& name = spec.argv.front();
  if (name.empty() || name.find('/') != std::string::npos) {
    plan.candidates.push_back(name);
  } else {
    auto path_it = spec.env.find("PATH");
    std::string search = path_it == spec.env.end() ? kDefaultPath : path_it->second;
    for (absl::string_view dir : absl::StrSplit(search, ':')) {
      // An empty PATH element means the current (working) directory.
      std::string prefix = dir.empty() ? "." : std::string(dir);
      plan.candidates.push_back(prefix + "/" + name);
    }
  }

  for (auto& s : plan.argv_strings) plan.argv.push_back(s.data());
  plan.argv.push_back(nullptr);
  for (auto& s : plan.env_strings) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  return plan;
}

[[noreturn]] void ChildFail(int report_fd, ChildStep step, int err) {
  ChildError report{static_cast<int>(step), err};
  ssize_t n;
  do {
    n = write(report_fd, &report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

int CloseFdRange(unsigned first, unsigned last) {
  if (first > last) return 0;
  return static_cast<int>(syscall(SYS_close_range, first, last, 0));
}

[[noreturn]] void ChildMain(const ExecPlan& plan, int stdin_fd, int stdout_fd, int stderr_fd,
                            int report_fd) {
  if (setsid() < 0) ChildFail(report_fd, ChildStep::kSetsid, errno);
  // The death signal follows the thread that forked, which is the thread
  // blocked in Run for the whole life of the task.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
    ChildFail(report_fd, ChildStep::kParentDeathSignal, errno);
  }
  if (getppid() != plan.parent) ChildFail(report_fd, ChildStep::kParentGone, ESRCH);
  if (chdir(plan.workdir.c_str()) < 0) ChildFail(report_fd, ChildStep::kChdir, errno);
  if (dup2(stdin_fd, STDIN_FILENO) < 0 || dup2(stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(stderr_fd, STDERR_FILENO) < 0) {
    ChildFail(report_fd, ChildStep::kDupStdio, errno);
  }
  // Close everything else but the report pipe (close-on-exec, so exec
  // closes it and the parent sees EOF): the agent's sockets and other
  // tasks' pipes must not leak into this task.
  unsigned report = static_cast<unsigned>(report_fd);
  if (CloseFdRange(3, report - 1) < 0 || CloseFdRange(report + 1, ~0U) < 0) {
    ChildFail(report_fd, ChildStep::kCloseFds, errno);
  }
  // Ignored dispositions and the blocked mask survive exec; the task must
  // start with the defaults whatever the agent set for itself.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &dfl, nullptr);  // fails harmlessly for libc-reserved signals
  }
  sigset_t empty;
  sigemptyset(&empty);
  if (sigprocmask(SIG_SETMASK, &empty, nullptr) < 0) {
    ChildFail(report_fd, ChildStep::kSignals, errno);
  }
  // Of spec.limits a plain process can enforce nothing well: RLIMIT_AS
  // counts reserved address space, not memory (it breaks JVMs, Go and
  // sanitizers long before they use the memory), and RLIMIT_CPU is per
  // process, not per tree. Memory and CPU are left to the Linux sandbox's
  // cgroups; here only core dumps are turned off, so a crashing task does
  // not write a core file of its whole memory into the working directory.
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) < 0) ChildFail(report_fd, ChildStep::kCoreLimit, errno);

  // execvpe's rules: EACCES on one candidate is remembered while the search
  // goes on; a missing file or directory moves on; anything else stops it.
  int err = ENOENT;
  for (const std::string& candidate : plan.candidates) {
    execve(candidate.c_str(), plan.argv.data(), plan.envp.data());
    if (errno == EACCES) {
      err = EACCES;
      continue;
    }
    if (errno == ENOENT || errno == ENOTDIR || errno == ESTALE || errno == ENODEV ||
        errno == ETIMEDOUT) {
      continue;
    }
    err = errno;
    break;
  }
  ChildFail(report_fd, ChildStep::kExec, err);
}

absl::Status ChildStepError(const ChildError& report, const ExecPlan& plan) {
  switch (static_cast<ChildStep>(report.step)) {
    case ChildStep::kSetsid:
      return ErrnoError(report.err, "setsid");
    case ChildStep::kParentDeathSignal:
      return ErrnoError(report.err, "prctl PR_SET_PDEATHSIG");
    case ChildStep::kParentGone:
      return absl::AbortedError("the agent's thread exited while the task was starting");
    case ChildStep::kChdir:
      return ErrnoError(report.err, "chdir", plan.workdir);
    case ChildStep::kDupStdio:
      return ErrnoError(report.err, "dup2 stdio");
    case ChildStep::kCloseFds:
      return ErrnoError(report.err, "close_range");
    case ChildStep::kSignals:
      return ErrnoError(report.err, "sigprocmask");
    case ChildStep::kCoreLimit:
      return ErrnoError(report.err, "setrlimit RLIMIT_CORE");
    case ChildStep::kExec:
      return ErrnoError(report.err, "exec", plan.argv_strings.front());
  }
  return absl::InternalError(absl::StrCat("the task's child reported an unknown step ", report.step,
                                          ": ", std::strerror(report.err)));
}

// --- The parent side. ---

struct ExitInfo {
  siginfo_t info;
  struct rusage usage;
};

// The forked child: owns its pidfd, signals its process group, and reaps it.
// If it is destroyed unreaped (an error path), it kills the group and reaps,
// so no Run leaves a process or a zombie behind.
class ChildProcess {
 public:
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (reaped_) return;
    Signal(SIGKILL);
    (void)Reap();
  }

  int pidfd() const { return pidfd_.get(); }

  // Sends `sig` to the child's process group, or to the child alone if it
  // has not reached setsid() yet (the group does not exist then, and the
  // child has no descendants either).
  void Signal(int sig) {
    if (reaped_) return;
    if (kill(-pid_, sig) == 0) return;
    if (!pidfd_.valid() || syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) < 0) {
      kill(pid_, sig);
    }
  }

  // Waits for the child to exit and reaps it, with its resource usage.
  absl::StatusOr<ExitInfo> Reap() {
    ExitInfo ended{};
    long rc;
    do {
      rc = pidfd_.valid()
               ? syscall(SYS_waitid, P_PIDFD, pidfd_.get(), &ended.info, WEXITED, &ended.usage)
               : syscall(SYS_waitid, P_PID, pid_, &ended.info, WEXITED, &ended.usage);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0) return ErrnoError(errno, "waitid", std::to_string(pid_));
    reaped_ = true;
    return ended;
  }

 private:
  pid_t pid_;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

// Writes to a pipe without the agent getting SIGPIPE when the task closed
// its stdin: SIGPIPE is blocked in this thread for the write, and one that
// the write raised is taken off the pending set before unblocking. (A pipe
// has no MSG_NOSIGNAL.)
ssize_t WriteWithoutSigpipe(int fd, const char* data, size_t size) {
  sigset_t pipe_set, old_mask, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE);
  ssize_t n = write(fd, data, size);
  int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  errno = err;
  return n;
}

int PollTimeoutMs(Clock::time_point now, Clock::time_point until) {
  if (until <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

// One output stream of the task: its pipe, where kept bytes go, and how many
// bytes the task wrote to it so far (kept or not).
struct OutputStream {
  Stream stream;
  UniqueFd fd;
  std::string* data;
  bool* truncated;
  int64_t seen = 0;
};

// The poll loop of one Run. Ends when the child has exited and its output
// is drained (or the drain grace is over), or when the child reports that
// it could not start.
class Supervisor {
 public:
  Supervisor(const TaskSpec& spec, OutputSink& sink, const CancelToken& cancel, ChildProcess& child,
             Clock::time_point start, TaskOutcome& outcome)
      : spec_(spec),
        sink_(sink),
        cancel_(cancel),
        child_(child),
        deadline_(start + spec.timeout),
        outcome_(outcome) {}

  // Returns the child's start error, if it reported one; otherwise OK once
  // the child exited and its output is drained.
  absl::Status Run(UniqueFd stdin_fd, UniqueFd stdout_fd, UniqueFd stderr_fd, UniqueFd report_fd,
                   const ExecPlan& plan) {
    stdin_ = std::move(stdin_fd);
    streams_[0] = {Stream::kStdout, std::move(stdout_fd), &outcome_.stdout_data,
                   &outcome_.stdout_truncated};
    streams_[1] = {Stream::kStderr, std::move(stderr_fd), &outcome_.stderr_data,
                   &outcome_.stderr_truncated};
    report_ = std::move(report_fd);
    if (spec_.stdin_data.empty()) stdin_.Reset();

    while (!Done()) {
      RETURN_IF_ERROR(PollOnce());
      if (start_error_) return ChildStepError(*start_error_, plan);
      Clock::time_point now = Clock::now();
      if (!exited_) Enforce(now);
    }
    return absl::OkStatus();
  }

  std::optional<Termination> kill_reason() const { return kill_reason_; }
  Clock::time_point exit_time() const { return exit_time_; }

 private:
  bool Done() const {
    if (!exited_) return false;
    bool drained = !streams_[0].fd.valid() && !streams_[1].fd.valid();
    return drained || Clock::now() >= drain_until_;
  }

  absl::Status PollOnce() {
    enum Slot { kStdoutSlot, kStderrSlot, kStdinSlot, kReportSlot, kPidSlot, kCancelSlot, kSlots };
    pollfd fds[kSlots];
    for (auto& p : fds) p = {-1, 0, 0};  // negative fds are ignored by poll
    for (int i = 0; i < 2; ++i) fds[i] = {streams_[i].fd.get(), POLLIN, 0};
    fds[kStdinSlot] = {stdin_.get(), POLLOUT, 0};
    fds[kReportSlot] = {report_.get(), POLLIN, 0};
    if (!exited_) fds[kPidSlot] = {child_.pidfd(), POLLIN, 0};
    bool watch_cancel = !exited_ && !kill_reason_;
    if (watch_cancel) fds[kCancelSlot] = {cancel_.fd(), POLLIN, 0};

    int rc = poll(fds, kSlots, NextTimeoutMs(watch_cancel));
    if (rc < 0 && errno == EINTR) return absl::OkStatus();
    if (rc < 0) return ErrnoError(errno, "poll");

    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents != 0) ReadOutput(streams_[i]);
    }
    if (fds[kStdinSlot].revents != 0) PumpStdin();
    if (fds[kReportSlot].revents != 0) ReadReport();
    if (fds[kPidSlot].revents != 0) OnExit();
    return absl::OkStatus();
  }

  int NextTimeoutMs(bool watch_cancel) const {
    Clock::time_point now = Clock::now();
    Clock::time_point until = Clock::time_point::max();
    if (exited_) {
      until = drain_until_;
    } else {
      if (!kill_reason_) until = deadline_;
      if (kill_at_) until = std::min(until, *kill_at_);
    }
    if (watch_cancel && cancel_.fd() < 0) until = std::min(until, now + kCancelPollInterval);
    if (until == Clock::time_point::max()) return -1;
    return PollTimeoutMs(now, until);
  }

  // Applies the deadline, a cancel request and the SIGKILL after a cancel's
  // grace period.
  void Enforce(Clock::time_point now) {
    if (!kill_reason_ && cancel_.cancelled()) {
      kill_reason_ = Termination::kCancelled;
      child_.Signal(SIGTERM);
      kill_at_ = now + kCancelGrace;
    }
    if (!kill_reason_ && now >= deadline_) {
      kill_reason_ = Termination::kTimedOut;
      child_.Signal(SIGKILL);
    }
    if (kill_at_ && now >= *kill_at_) {
      child_.Signal(SIGKILL);
      kill_at_.reset();
    }
  }

  void OnExit() {
    exited_ = true;
    exit_time_ = Clock::now();
    drain_until_ = exit_time_ + kDrainGrace;
    // Leftover descendants in the task's group go with it; the zombie
    // leader still holds the group id, so this cannot hit another group.
    child_.Signal(SIGKILL);
    stdin_.Reset();
    // The report, if any, was written before the child exited.
    ReadReport();
  }

  void ReadOutput(OutputStream& s) {
    char buf[kIoChunk];
    ssize_t n = read(s.fd.get(), buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      s.fd.Reset();  // EOF, or an error that no retry would fix
      return;
    }
    size_t limit = spec_.output_limit_bytes;
    size_t seen = static_cast<size_t>(s.seen);
    size_t keep = seen < limit ? std::min(static_cast<size_t>(n), limit - seen) : 0;
    if (keep > 0) {
      s.data->append(buf, keep);
      sink_.OnOutput(s.stream, s.seen, std::string_view(buf, keep));
    }
    if (keep < static_cast<size_t>(n)) *s.truncated = true;
    s.seen += n;
  }

  // Stdin is written as the pipe takes it, never blocking: a task that does
  // not read its stdin must not stall the loop. If the task closes stdin
  // (EPIPE), the rest of stdin_data is dropped.
  void PumpStdin() {
    const std::string& data = spec_.stdin_data;
    while (stdin_offset_ < data.size()) {
      size_t chunk = std::min(kIoChunk, data.size() - stdin_offset_);
      ssize_t n = WriteWithoutSigpipe(stdin_.get(), data.data() + stdin_offset_, chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;
      if (n < 0) break;  // EPIPE: the task will not read the rest
      stdin_offset_ += static_cast<size_t>(n);
    }
    stdin_.Reset();
  }

  void ReadReport() {
    if (!report_.valid()) return;
    ChildError report;
    ssize_t n;
    do {
      n = read(report_.get(), &report, sizeof(report));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) return;
    if (n == static_cast<ssize_t>(sizeof(report))) start_error_ = report;
    report_.Reset();  // EOF: exec succeeded
  }

  const TaskSpec& spec_;
  OutputSink& sink_;
  const CancelToken& cancel_;
  ChildProcess& child_;
  const Clock::time_point deadline_;
  TaskOutcome& outcome_;

  UniqueFd stdin_;
  size_t stdin_offset_ = 0;
  OutputStream streams_[2];
  UniqueFd report_;
  std::optional<ChildError> start_error_;

  bool exited_ = false;
  Clock::time_point exit_time_;
  Clock::time_point drain_until_;
  std::optional<Termination> kill_reason_;
  std::optional<Clock::time_point> kill_at_;
};

int64_t Micros(const timeval& tv) {
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + static_cast<int64_t>(tv.tv_usec);
}

class ProcessSandbox : public Sandbox {
 public:
  explicit ProcessSandbox(ProcessSandboxOptions options) : options_(std::move(options)) {}

  absl::StatusOr<TaskOutcome> Run(const TaskSpec& spec, OutputSink& sink,
                                  const CancelToken& cancel) override {
    if (spec.argv.empty()) return absl::InvalidArgumentError("task has an empty argv");
    if (spec.timeout.count() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("task timeout must be positive, got ", spec.timeout.count(), " ms"));
    }
    for (const TaskFile& file : spec.files) RETURN_IF_ERROR(ValidateTaskFilePath(file.path));
    if (cancel.cancelled()) {
      TaskOutcome outcome;
      outcome.termination = Termination::kCancelled;
      return outcome;
    }

    ASSIGN_OR_RETURN(TaskDir dir, TaskDir::Create(options_.work_root));
    for (const TaskFile& file : spec.files) RETURN_IF_ERROR(WriteTaskFile(dir.path(), file));
    ExecPlan plan = MakeExecPlan(spec, dir.path());

    ASSIGN_OR_RETURN(Pipe in, MakePipe());
    ASSIGN_OR_RETURN(Pipe out, MakePipe());
    ASSIGN_OR_RETURN(Pipe err, MakePipe());
    ASSIGN_OR_RETURN(Pipe report, MakePipe());
    RETURN_IF_ERROR(SetNonBlocking(in.write));
    RETURN_IF_ERROR(SetNonBlocking(out.read));
    RETURN_IF_ERROR(SetNonBlocking(err.read));
    RETURN_IF_ERROR(SetNonBlocking(report.read));

    Clock::time_point start = Clock::now();
    pid_t pid = fork();
    if (pid < 0) return ErrnoError(errno, "fork", plan.argv_strings.front());
    if (pid == 0) {
      ChildMain(plan, in.read.get(), out.write.get(), err.write.get(), report.write.get());
    }
    // Nobody else reaps our child, so the pid is ours until waitid.
    int pidfd_raw = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    int pidfd_errno = errno;
    ChildProcess child(pid, UniqueFd(pidfd_raw));
    if (pidfd_raw < 0) return ErrnoError(pidfd_errno, "pidfd_open", std::to_string(pid));
    in.read.Reset();
    out.write.Reset();
    err.write.Reset();
    report.write.Reset();

    TaskOutcome outcome;
    Supervisor supervisor(spec, sink, cancel, child, start, outcome);
    RETURN_IF_ERROR(supervisor.Run(std::move(in.write), std::move(out.read), std::move(err.read),
                                   std::move(report.read), plan));
    ASSIGN_OR_RETURN(ExitInfo ended, child.Reap());

    outcome.wall_time_us =
        std::chrono::duration_cast<std::chrono::microseconds>(supervisor.exit_time() - start)
            .count();
    outcome.cpu_time_us = Micros(ended.usage.ru_utime) + Micros(ended.usage.ru_stime);
    outcome.peak_memory_bytes = static_cast<int64_t>(ended.usage.ru_maxrss) * 1024;
    if (ended.info.si_code == CLD_EXITED) {
      outcome.termination = Termination::kExited;
      outcome.exit_code = ended.info.si_status;
    } else {
      outcome.termination = Termination::kSignaled;
      outcome.signal = ended.info.si_status;
    }
    // A task we killed reports why we killed it, even if it exited on its
    // own in the meantime (e.g. it handled the cancel's SIGTERM).
    if (supervisor.kill_reason()) outcome.termination = *supervisor.kill_reason();
    spdlog::debug("task {} ended: termination={} exit_code={} signal={} wall={}us cpu={}us",
                  spec.id, static_cast<int>(outcome.termination), outcome.exit_code, outcome.signal,
                  outcome.wall_time_us, outcome.cpu_time_us);
    return outcome;
  }

  std::string_view kind() const override { return "process"; }

 private:
  const ProcessSandboxOptions options_;
};

}  // namespace

std::unique_ptr<Sandbox> NewProcessSandbox(ProcessSandboxOptions options) {
  return std::make_unique<ProcessSandbox>(std::move(options));
}

}  // namespace flotilla::sandbox
