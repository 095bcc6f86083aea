// flotilla-guest: the first process inside every sandbox. It speaks the
// guest protocol (protocol.h) with the agent on one fd, runs one task at a
// time, streams its output, reports how it ended with its wall time, CPU
// time and peak memory, kills and reaps everything the task left, cleans the
// working directory and waits for the next task.
//
//   flotilla-guest [--fd 3 | --device /dev/vport0p1] [--workdir /work]
//                  [--scratch /dev/vdb]
//                  [--python-preload mod1,mod2] [--python python3]
//
// --device is the micro-VM's channel, a virtio-serial port. Its fd is left
// blocking on purpose: until the agent connects to the host end, the
// port's write blocks (and poll reports POLLHUP), so the HELLO write is
// where a freshly booted or snapshot-restored VM waits for its agent.
//
// --scratch names a micro-VM's scratch disk (an ext4 image the agent made
// for this VM), mounted over the working directory on SEED or before the
// first task, whichever comes first, and never before: a VM snapshotted
// with the disk mounted would wake, in every restored copy, with ext4's
// view of the snapshotted VM's disk over a fresh one.
//
// Why it is shaped this way:
//  - It is single-threaded: one poll loop over the agent fd, a signalfd for
//    SIGCHLD, the task's pipes and the Python server's socket. With one
//    thread, the code between fork and exec may do anything a normal
//    program does, and there is no lock to hold across fork.
//  - As PID 1 of a pid namespace it inherits every orphan; outside one (in
//    tests) it makes itself a child subreaper, so orphans of the task come
//    to it either way and it reaps every zombie, not just its child.
//  - It is not dumpable: tasks run as the same uid and must not ptrace it
//    or write its memory through /proc/<pid>/mem.
//  - After the task's first process exits, everything else it left running
//    is killed before EXIT is sent, so the next task starts in an empty
//    sandbox. The warm Python fork server is the one process spared.
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "guest/guest.h"

namespace flotilla::guest {
namespace {

constexpr char kSoftware[] = "flotilla-guest 0.1.0";
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";
// How long output is still drained after the task ended and its leftovers
// were killed; only a process we could not kill can hold a pipe longer.
constexpr int64_t kDrainGraceUs = 500'000;
// How long killing and reaping the task's leftovers may take.
constexpr int64_t kKillAllTimeoutUs = 5'000'000;
// How long a killed task may take to be reported dead before the guest
// gives up on it (only a Python server that stopped answering does this).
// Shorter than GuestClient's default guest_grace, so the guest reports
// before the agent gives up on it.
constexpr int64_t kKilledTaskGraceUs = 2'000'000;
constexpr int64_t kHandshakeTimeoutUs = 30'000'000;
constexpr size_t kMaxErrorText = 2048;

struct Options {
  int fd = 3;
  std::string device;  // opened instead of --fd when given
  std::string workdir = "/work";
  std::string scratch;  // a block device mounted over workdir (micro-VMs)
  std::vector<std::string> python_preload;
  bool preload_given = false;
  std::string python = "python3";
};

bool ParseOptions(int argc, char** argv, Options* options) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (i + 1 >= argc) {
      Log("option %s needs a value", argv[i]);
      return false;
    }
    const char* value = argv[++i];
    if (arg == "--fd") {
      char* end = nullptr;
      long fd = strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || fd < 0 || fd > 65535) {
        Log("--fd: `%s` is not a file descriptor number", value);
        return false;
      }
      options->fd = static_cast<int>(fd);
    } else if (arg == "--device") {
      options->device = value;
    } else if (arg == "--workdir") {
      options->workdir = value;
    } else if (arg == "--scratch") {
      options->scratch = value;
    } else if (arg == "--python") {
      options->python = value;
    } else if (arg == "--python-preload") {
      options->preload_given = true;
      std::string_view list = value;
      while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view name = list.substr(0, comma);
        if (!name.empty()) options->python_preload.emplace_back(name);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      }
    } else {
      Log("unknown option %s; usage: flotilla-guest [--fd N | --device PATH] [--workdir DIR] "
          "[--scratch DEV] [--python-preload mod1,mod2] [--python PYTHON]",
          argv[i - 1]);
      return false;
    }
  }
  return true;
}

// Best effort: a guest without CAP_SYS_TIME / CAP_SYS_ADMIN (a container)
// keeps the host's clock and pool anyway; a VM's guest is root.
void ApplySeed(const Seed& seed) {
  if (seed.realtime_ns > 0) {
    timespec ts{static_cast<time_t>(seed.realtime_ns / 1000000000),
                static_cast<long>(seed.realtime_ns % 1000000000)};
    if (clock_settime(CLOCK_REALTIME, &ts) < 0) {
      Log("%s", ErrnoMessage("clock_settime", "CLOCK_REALTIME", errno).c_str());
    }
  }
  if (seed.entropy.empty()) return;
  Fd random(open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  if (!random.valid()) {
    Log("%s", ErrnoMessage("open", "/dev/urandom", errno).c_str());
    return;
  }
  // Credited entropy, then a forced reseed: two VMs restored from one
  // snapshot must not hand out the same random bytes.
  std::string buf(sizeof(rand_pool_info) + seed.entropy.size(), '\0');
  auto* info = reinterpret_cast<rand_pool_info*>(buf.data());
  info->entropy_count = static_cast<int>(seed.entropy.size() * 8);
  info->buf_size = static_cast<int>(seed.entropy.size());
  memcpy(info->buf, seed.entropy.data(), seed.entropy.size());
  if (ioctl(random.get(), RNDADDENTROPY, info) < 0) {
    // Uncredited, but still mixed in.
    if (write(random.get(), seed.entropy.data(), seed.entropy.size()) < 0) {
      Log("%s", ErrnoMessage("write", "/dev/urandom", errno).c_str());
    }
  }
  (void)ioctl(random.get(), RNDRESEEDCRNG);
}

int64_t TimevalUs(const timeval& tv) {
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

// Reads the pids of our children from /proc/thread-self/children (the
// kernel's own list; one thread, so it is all of them). Returns false if
// /proc is not there.
bool ListChildren(std::vector<pid_t>* kids) {
  Fd fd(open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  if (n < 0) return false;
  const char* p = text.c_str();
  while (*p != '\0') {
    char* end = nullptr;
    long pid = strtol(p, &end, 10);
    if (end == p) break;
    if (pid > 0) kids->push_back(static_cast<pid_t>(pid));
    p = end;
  }
  return true;
}

// Everything the exec'd child needs, built before fork.
struct ExecPlan {
  std::vector<std::string> candidates;  // the paths execve tries, in order
  std::vector<std::string> argv_strings;
  std::vector<std::string> env_strings;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

ExecPlan MakeExecPlan(const RunRequest& run) {
  ExecPlan plan;
  plan.argv_strings = run.argv;
  std::string search = kDefaultPath;
  for (const auto& [key, value] : run.env) {
    plan.env_strings.push_back(key + "=" + value);
    if (key == "PATH") search = value;
  }
  // execvpe would search the guest's PATH, not the task's, so the search is
  // done here, the way execvpe does it, with the task's environment.
  const std::string& name = run.argv.front();
  if (name.empty() || name.find('/') != std::string::npos) {
    plan.candidates.push_back(name);
  } else {
    size_t start = 0;
    while (start <= search.size()) {
      size_t colon = search.find(':', start);
      if (colon == std::string::npos) colon = search.size();
      std::string dir = search.substr(start, colon - start);
      plan.candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + name);
      start = colon + 1;
    }
  }
  for (std::string& s : plan.argv_strings) plan.argv.push_back(s.data());
  plan.argv.push_back(nullptr);
  for (std::string& s : plan.env_strings) plan.envp.push_back(s.data());
  plan.envp.push_back(nullptr);
  return plan;
}

enum class ChildStep : int { kSetsid = 1, kChdir, kDupStdio, kExec };

struct ChildReport {
  int step = 0;
  int err = 0;
};

[[noreturn]] void ChildFail(int report_fd, ChildStep step, int err) {
  ChildReport report{static_cast<int>(step), err};
  ssize_t n;
  do {
    n = write(report_fd, &report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  _exit(127);
}

[[noreturn]] void ExecChild(const ExecPlan& plan, int stdin_fd, int stdout_fd, int stderr_fd,
                            int cwd_fd, int report_fd) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (setsid() < 0) ChildFail(report_fd, ChildStep::kSetsid, errno);
  if (fchdir(cwd_fd) < 0) ChildFail(report_fd, ChildStep::kChdir, errno);
  if (dup2(stdin_fd, STDIN_FILENO) < 0 || dup2(stdout_fd, STDOUT_FILENO) < 0 ||
      dup2(stderr_fd, STDERR_FILENO) < 0) {
    ChildFail(report_fd, ChildStep::kDupStdio, errno);
  }
  // Every other fd of the guest is close-on-exec; this is the belt to that.
  syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */);
  int err = ENOENT;
  for (const std::string& path : plan.candidates) {
    execve(path.c_str(), plan.argv.data(), plan.envp.data());
    // As execvpe: keep looking past a missing or inaccessible entry.
    if (errno == EACCES) {
      err = EACCES;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      err = errno;
      break;
    }
  }
  ChildFail(report_fd, ChildStep::kExec, err);
}

StartError StepError(const ChildReport& report, const RunRequest& run) {
  const std::string& name = run.argv.front();
  switch (static_cast<ChildStep>(report.step)) {
    case ChildStep::kSetsid:
      return {report.err, ErrnoMessage("setsid", "", report.err)};
    case ChildStep::kChdir:
      return {report.err, ErrnoMessage("chdir", run.working_dir, report.err)};
    case ChildStep::kDupStdio:
      return {report.err, ErrnoMessage("dup2", "stdio", report.err)};
    case ChildStep::kExec:
      if (report.err == ENOENT && name.find('/') == std::string::npos) {
        return {ENOENT, "exec `" + name + "`: not found in the task's PATH"};
      }
      return {report.err, ErrnoMessage("exec", name, report.err)};
  }
  return {report.err, ErrnoMessage("start the task", name, report.err)};
}

// Returns an error message if the RUN cannot be run as given.
std::optional<std::string> ValidateRun(const RunRequest& run) {
  if (run.argv.empty()) return "the task has an empty argv";
  if (run.timeout_ms == 0) return "the task's timeout must be positive";
  for (const std::string& a : run.argv) {
    if (a.find('\0') != std::string::npos) return "an argv element contains a NUL byte";
  }
  for (const auto& [key, value] : run.env) {
    if (key.empty() || key.find('=') != std::string::npos || key.find('\0') != std::string::npos) {
      return "environment variable name `" + key + "` is empty or contains '=' or NUL";
    }
    if (value.find('\0') != std::string::npos) {
      return "environment variable `" + key + "` contains a NUL byte";
    }
  }
  std::string why;
  if (!ValidateRelativePath(run.working_dir, /*allow_empty=*/true, &why)) {
    return "working directory `" + run.working_dir + "`: " + why;
  }
  for (const RunFile& f : run.files) {
    if (!ValidateRelativePath(f.path, /*allow_empty=*/false, &why)) {
      return "task file `" + f.path + "`: " + why;
    }
  }
  return std::nullopt;
}

struct Pipe {
  Fd read;
  Fd write;
};

bool MakePipe(Pipe* p, StartError* error) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) {
    *error = {errno, ErrnoMessage("pipe2", "", errno)};
    return false;
  }
  p->read = Fd(fds[0]);
  p->write = Fd(fds[1]);
  return true;
}

void SetNonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int PollTimeoutMs(int64_t now_us, int64_t until_us) {
  if (until_us <= now_us) return 0;
  return static_cast<int>(std::min<int64_t>((until_us - now_us + 999) / 1000, 1 << 30));
}

// Why the guest leaves its main loop.
enum class Quit { kNo, kShutdown, kPeerGone, kProtocolError };

class Guest {
 public:
  explicit Guest(Options options)
      : options_(std::move(options)),
        python_(options_.python, options_.python_preload),
        agent_fd_(options_.fd) {}

  int Main();

 private:
  // --- Setup and the idle loop. ---
  bool Setup();
  bool OpenWorkdir();
  // Mounts --scratch over the working directory once; true when there is
  // none or it is mounted.
  bool MountScratch(StartError* error);
  bool Handshake();
  Quit Serve();
  Quit OnIdleFrame(const Frame& frame);
  bool Send(const std::string& frame);
  void SendReady();
  void ProtocolError(const std::string& message);

  // --- One task. ---
  Quit RunTask(const RunRequest& run);
  bool Start(const RunRequest& run, Pipe* in, Pipe* out, Pipe* err, StartError* error);
  Quit Supervise();
  Quit OnTaskFrame(const Frame& frame);
  // Reads and handles the agent's frames; kNo while the channel is open.
  Quit ReadAgentFrames();
  Quit HandleBufferedFrames();
  void Pause();
  void Resume();
  void ReadOutput(int index);
  void PumpStdin();
  void SignalTask(int sig);
  void OnLeaderExit(int wait_status);
  void OnPythonEvent(PythonServer::Event event);
  void Enforce(int64_t now);
  void SendExit();

  // --- Processes. ---
  void ReapZombies();
  void Account(const rusage& ru);
  void KillAllDescendants(bool spare_python);

  const Options options_;
  PythonServer python_;
  Fd agent_;
  int agent_fd_;
  FrameReader reader_;
  Fd sigchld_;
  Fd root_;
  mode_t root_mode_ = 0755;
  bool scratch_mounted_ = false;
  bool pid1_ = false;
  uint64_t tasks_run_ = 0;
  std::string pending_cleanup_error_;

  // The task in flight.
  struct Task {
    bool active = false;
    RunMode mode = RunMode::kExec;
    pid_t leader = 0;
    bool leader_done = false;
    int wait_status = 0;
    int64_t start_us = 0;
    int64_t exit_us = 0;
    int64_t deadline_us = 0;
    int64_t kill_at_us = 0;      // SIGKILL after a cancel's grace; 0 if none
    int64_t give_up_us = 0;      // stop waiting for a killed task; 0 if none
    int64_t drain_until_us = 0;  // set once the leader is done
    std::optional<Termination> kill_reason;
    Fd stdin_fd;
    size_t stdin_offset = 0;
    Fd out[2];
    uint64_t seen[2] = {0, 0};
    bool truncated[2] = {false, false};
    int64_t cpu_us = 0;
    int64_t max_rss_bytes = 0;
    // Between PAUSE and RESUME (see protocol.h): nothing is sent or reaped.
    bool paused = false;
    int64_t paused_at_us = 0;
  } task_;
  const RunRequest* run_ = nullptr;
  PythonServer::TaskEnd python_end_;
};

int Guest::Main() {
  if (!Setup()) return 1;
  const bool vm = !options_.device.empty();
  if (options_.preload_given && vm) {
    // Before the marker, so the VM is snapshotted with the server (and
    // the interpreter's pages in the guest's page cache) warm: every
    // restored VM's first Python task is a fork. Its `random` reseeds in
    // each task (CPython's register_at_fork), from the kernel pool SEED
    // stirs per VM.
    StartError error;
    if (!python_.Ensure(&error)) Log("%s", error.message.c_str());
  }
  if (vm) {
    // The agent waits for this line on the console before it snapshots a
    // VM: from here on the guest only waits for its agent.
    Log("waiting for the agent on %s", options_.device.c_str());
  }
  if (!Handshake()) return 2;
  if (options_.preload_given && !vm) {
    StartError error;
    if (!python_.Ensure(&error)) Log("%s", error.message.c_str());
  }
  SendReady();
  Quit quit = Serve();
  KillAllDescendants(/*spare_python=*/false);
  return quit == Quit::kProtocolError ? 2 : 0;
}

bool Guest::Setup() {
  agent_ = Fd(agent_fd_);
  if (fcntl(agent_.get(), F_SETFD, FD_CLOEXEC) < 0) {
    Log("%s", ErrnoMessage("fcntl", "--fd " + std::to_string(agent_fd_), errno).c_str());
    return false;
  }
  pid1_ = getpid() == 1;
  // PID 1 gets orphans anyway; elsewhere, ask for them.
  if (!pid1_ && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
    Log("%s", ErrnoMessage("prctl", "PR_SET_CHILD_SUBREAPER", errno).c_str());
  }
  if (prctl(PR_SET_DUMPABLE, 0) < 0) {
    Log("%s", ErrnoMessage("prctl", "PR_SET_DUMPABLE", errno).c_str());
    return false;
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  sigchld_ = Fd(signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigchld_.valid()) {
    Log("%s", ErrnoMessage("signalfd", "SIGCHLD", errno).c_str());
    return false;
  }
  if (mkdir(options_.workdir.c_str(), 0755) < 0 && errno != EEXIST) {
    Log("%s", ErrnoMessage("mkdir", options_.workdir, errno).c_str());
    return false;
  }
  return OpenWorkdir();
}

bool Guest::OpenWorkdir() {
  root_ = Fd(open(options_.workdir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st;
  if (!root_.valid() || fstat(root_.get(), &st) < 0) {
    Log("%s", ErrnoMessage("open", options_.workdir, errno).c_str());
    return false;
  }
  root_mode_ = st.st_mode & 07777;
  std::string error;
  pending_cleanup_error_.clear();
  if (!CleanDirectory(root_.get(), root_mode_, &error)) pending_cleanup_error_ = error;
  return true;
}

bool Guest::MountScratch(StartError* error) {
  if (options_.scratch.empty() || scratch_mounted_) return true;
  // noinit_itable: the image was made with lazy inode tables, and zeroing
  // them in the background would only grow the host's sparse file.
  if (mount(options_.scratch.c_str(), options_.workdir.c_str(), "ext4", MS_NOSUID | MS_NODEV,
            "noinit_itable") < 0) {
    *error = {errno, ErrnoMessage("mount scratch disk " + options_.scratch + " on",
                                  options_.workdir, errno)};
    Log("%s", error->message.c_str());
    return false;
  }
  scratch_mounted_ = true;
  // The old fd is the tmpfs underneath; the new root also loses mke2fs's
  // lost+found, which a task would otherwise find in its directory.
  if (!OpenWorkdir()) {
    *error = {EIO, "open the scratch disk's root " + options_.workdir};
    return false;
  }
  return true;
}

bool Guest::Send(const std::string& frame) {
  std::string error;
  if (WriteFully(agent_.get(), frame, -1, &error)) return true;
  // EPIPE/ECONNRESET: the agent closed the channel, which ends the guest.
  if (errno != EPIPE && errno != ECONNRESET) Log("%s", error.c_str());
  return false;
}

void Guest::ProtocolError(const std::string& message) {
  Log("protocol error: %s", message.c_str());
  std::string error;
  WriteFully(agent_.get(), EncodeError({message}), 1000, &error);
}

bool Guest::Handshake() {
  if (!Send(EncodeHello({kProtocolVersion, kSoftware}))) return false;
  int64_t deadline = MonotonicUs() + kHandshakeTimeoutUs;
  while (true) {
    Frame frame;
    std::string error;
    FrameReader::Result r = reader_.Next(&frame, &error);
    if (r == FrameReader::Result::kError) {
      ProtocolError(error);
      return false;
    }
    if (r == FrameReader::Result::kFrame) {
      Hello hello;
      if (frame.type != MessageType::kHello) {
        ProtocolError("expected HELLO, got " + std::string(MessageTypeName(frame.type)));
        return false;
      }
      if (!DecodeHello(frame.payload, &hello, &error)) {
        ProtocolError("bad HELLO: " + error);
        return false;
      }
      if (!CheckHello(hello, "agent", &error)) {
        ProtocolError(error);
        return false;
      }
      return true;
    }
    int64_t now = MonotonicUs();
    if (now >= deadline) {
      Log("no HELLO from the agent within %lld s", (long long)(kHandshakeTimeoutUs / 1000000));
      return false;
    }
    pollfd p{agent_.get(), POLLIN, 0};
    if (poll(&p, 1, PollTimeoutMs(now, deadline)) <= 0) continue;
    ssize_t n = reader_.ReadFrom(agent_.get());
    if (n == 0) return false;
    if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
  }
}

void Guest::SendReady() {
  Ready ready;
  ready.tasks_run = tasks_run_;
  ready.python_server_warm = python_.running();
  ready.clean = pending_cleanup_error_.empty();
  ready.cleanup_error = pending_cleanup_error_;
  Send(EncodeReady(ready));
}

Quit Guest::Serve() {
  while (true) {
    Frame frame;
    std::string error;
    while (true) {
      FrameReader::Result r = reader_.Next(&frame, &error);
      if (r == FrameReader::Result::kNeedMore) break;
      if (r == FrameReader::Result::kError) {
        ProtocolError(error);
        return Quit::kProtocolError;
      }
      Quit quit = OnIdleFrame(frame);
      if (quit != Quit::kNo) return quit;
    }
    pollfd fds[3] = {{agent_.get(), POLLIN, 0}, {sigchld_.get(), POLLIN, 0}, {-1, 0, 0}};
    // A server that dies while idle is noticed (EOF) and restarted later.
    if (python_.running()) fds[2] = {python_.sock(), POLLIN, 0};
    if (poll(fds, 3, -1) < 0 && errno != EINTR) {
      Log("%s", ErrnoMessage("poll", "", errno).c_str());
      return Quit::kPeerGone;
    }
    if (fds[1].revents != 0) ReapZombies();
    if (fds[2].revents != 0) {
      PythonServer::TaskEnd unused;
      python_.OnReadable(0, &unused);  // only EOF or garbage can come now
    }
    if (fds[0].revents != 0) {
      ssize_t n = reader_.ReadFrom(agent_.get());
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return Quit::kPeerGone;
    }
  }
}

Quit Guest::OnIdleFrame(const Frame& frame) {
  std::string error;
  switch (frame.type) {
    case MessageType::kRun: {
      RunRequest run;
      if (!DecodeRun(frame.payload, &run, &error)) {
        ProtocolError("bad RUN: " + error);
        return Quit::kProtocolError;
      }
      return RunTask(run);
    }
    case MessageType::kReset:
      pending_cleanup_error_.clear();
      KillAllDescendants(/*spare_python=*/true);
      if (!CleanDirectory(root_.get(), root_mode_, &error)) pending_cleanup_error_ = error;
      SendReady();
      return Quit::kNo;
    case MessageType::kPing: {
      Ping ping;
      if (!DecodePing(frame.payload, &ping, &error)) {
        ProtocolError("bad PING: " + error);
        return Quit::kProtocolError;
      }
      return Send(EncodePong(ping)) ? Quit::kNo : Quit::kPeerGone;
    }
    case MessageType::kCancel:
      return Quit::kNo;  // the task it meant already ended
    case MessageType::kPause:
      // The task ended before the PAUSE arrived: nothing to hold.
      return Send(EncodePaused({})) ? Quit::kNo : Quit::kPeerGone;
    case MessageType::kResume:
      return Quit::kNo;
    case MessageType::kSeed: {
      Seed seed;
      if (!DecodeSeed(frame.payload, &seed, &error)) {
        ProtocolError("bad SEED: " + error);
        return Quit::kProtocolError;
      }
      ApplySeed(seed);
      // A restored VM: its scratch disk can be mounted now, before the
      // first task is waiting for it. A failure is reported to that task.
      StartError unused;
      (void)MountScratch(&unused);
      return Quit::kNo;
    }
    case MessageType::kShutdown:
      return Quit::kShutdown;
    default:
      ProtocolError("unexpected " + std::string(MessageTypeName(frame.type)) +
                    " while no task runs");
      return Quit::kProtocolError;
  }
}

// --- One task. ---

Quit Guest::RunTask(const RunRequest& run) {
  task_ = Task();
  run_ = &run;
  task_.mode = run.mode;
  Pipe in, out, err;
  StartError start_error;
  bool started = MountScratch(&start_error) && Start(run, &in, &out, &err, &start_error);
  Quit quit = Quit::kNo;
  if (started) {
    quit = Supervise();
  } else {
    KillAllDescendants(/*spare_python=*/true);
    Exit exit;
    exit.termination = Termination::kStartFailed;
    exit.error_errno = start_error.err;
    exit.error = start_error.message.substr(0, kMaxErrorText);
    if (!Send(EncodeExit(exit))) quit = Quit::kPeerGone;
  }
  task_ = Task();
  run_ = nullptr;
  if (quit != Quit::kNo) return quit;
  ++tasks_run_;
  std::string error;
  pending_cleanup_error_.clear();
  if (!CleanDirectory(root_.get(), root_mode_, &error)) pending_cleanup_error_ = error;
  SendReady();
  return Quit::kNo;
}

bool Guest::Start(const RunRequest& run, Pipe* in, Pipe* out, Pipe* err, StartError* error) {
  if (std::optional<std::string> why = ValidateRun(run)) {
    *error = {EINVAL, *why};
    return false;
  }
  for (const RunFile& f : run.files) {
    if (!WriteFileBeneath(root_.get(), f, error)) return false;
  }
  Fd cwd = OpenDirBeneath(root_.get(), run.working_dir, error);
  if (!cwd.valid()) return false;
  if (!MakePipe(in, error) || !MakePipe(out, error) || !MakePipe(err, error)) return false;

  if (run.mode == RunMode::kPythonForkServer) {
    if (!python_.Ensure(error)) return false;
    int fds[4] = {in->read.get(), out->write.get(), err->write.get(), cwd.get()};
    task_.start_us = MonotonicUs();
    if (!python_.Launch(run.argv, run.env, fds, &task_.leader, error)) return false;
  } else {
    ExecPlan plan = MakeExecPlan(run);
    Pipe report;
    if (!MakePipe(&report, error)) return false;
    task_.start_us = MonotonicUs();
    pid_t pid = fork();
    if (pid < 0) {
      *error = {errno, ErrnoMessage("fork", run.argv.front(), errno)};
      return false;
    }
    if (pid == 0) {
      ExecChild(plan, in->read.get(), out->write.get(), err->write.get(), cwd.get(),
                report.write.get());
    }
    task_.leader = pid;
    report.write.Reset();
    // EOF means exec succeeded (the pipe is close-on-exec); a report means
    // a setup step failed. The child does only a few syscalls before
    // either, so this read is short.
    ChildReport child_report;
    ssize_t n;
    do {
      n = read(report.read.get(), &child_report, sizeof(child_report));
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof(child_report))) {
      *error = StepError(child_report, run);
      return false;  // the child exits 127; KillAllDescendants reaps it
    }
  }
  task_.active = true;
  task_.deadline_us =
      task_.start_us +
      static_cast<int64_t>(std::min<uint64_t>(run.timeout_ms, uint64_t{1} << 40)) * 1000;
  in->read.Reset();
  out->write.Reset();
  err->write.Reset();
  task_.stdin_fd = std::move(in->write);
  task_.out[0] = std::move(out->read);
  task_.out[1] = std::move(err->read);
  SetNonBlocking(task_.stdin_fd.get());
  SetNonBlocking(task_.out[0].get());
  SetNonBlocking(task_.out[1].get());
  if (run.stdin_data.empty()) task_.stdin_fd.Reset();
  return true;
}

Quit Guest::Supervise() {
  enum Slot { kAgent, kSigchld, kOut, kErr, kStdin, kPython, kSlots };
  // The read that brought RUN may have brought the frames after it too (a
  // CANCEL sent right behind it). They are the task's, and poll would not
  // report them: the bytes have left the socket.
  if (Quit quit = HandleBufferedFrames(); quit != Quit::kNo) return quit;
  while (true) {
    if (task_.paused) {
      // Only the channel: the task's pipes, its exit and its deadlines wait
      // for RESUME, so the state a checkpoint takes is a frame boundary.
      pollfd p{agent_.get(), POLLIN, 0};
      if (poll(&p, 1, -1) < 0 && errno != EINTR) {
        Log("%s", ErrnoMessage("poll", "", errno).c_str());
        return Quit::kPeerGone;
      }
      if (p.revents != 0) {
        Quit quit = ReadAgentFrames();
        if (quit != Quit::kNo) return quit;
      }
      if (!agent_.valid()) return Quit::kPeerGone;
      continue;
    }
    bool drained = !task_.out[0].valid() && !task_.out[1].valid();
    int64_t now = MonotonicUs();
    if (task_.leader_done && (drained || now >= task_.drain_until_us)) break;

    pollfd fds[kSlots];
    for (pollfd& p : fds) p = {-1, 0, 0};
    fds[kAgent] = {agent_.get(), POLLIN, 0};
    fds[kSigchld] = {sigchld_.get(), POLLIN, 0};
    fds[kOut] = {task_.out[0].get(), POLLIN, 0};
    fds[kErr] = {task_.out[1].get(), POLLIN, 0};
    fds[kStdin] = {task_.stdin_fd.get(), POLLOUT, 0};
    bool python_task = task_.mode == RunMode::kPythonForkServer;
    if (python_task && python_.running() && !task_.leader_done) {
      fds[kPython] = {python_.sock(), POLLIN, 0};
    }
    if (python_task && !task_.leader_done && python_.has_buffered_line()) {
      OnPythonEvent(python_.TakeBuffered(task_.leader, &python_end_));
      continue;
    }
    int64_t until = task_.leader_done ? task_.drain_until_us : INT64_MAX;
    if (!task_.leader_done) {
      if (!task_.kill_reason) until = task_.deadline_us;
      if (task_.kill_at_us != 0) until = std::min(until, task_.kill_at_us);
      if (task_.give_up_us != 0) until = std::min(until, task_.give_up_us);
    }
    int rc = poll(fds, kSlots, until == INT64_MAX ? -1 : PollTimeoutMs(now, until));
    if (rc < 0 && errno != EINTR) {
      Log("%s", ErrnoMessage("poll", "", errno).c_str());
      return Quit::kPeerGone;
    }
    if (rc > 0) {
      if (fds[kOut].revents != 0) ReadOutput(0);
      if (fds[kErr].revents != 0) ReadOutput(1);
      if (fds[kStdin].revents != 0) PumpStdin();
      if (fds[kPython].revents != 0) OnPythonEvent(python_.OnReadable(task_.leader, &python_end_));
      if (fds[kSigchld].revents != 0) ReapZombies();
      if (fds[kAgent].revents != 0) {
        Quit quit = ReadAgentFrames();
        if (quit != Quit::kNo) return quit;
      }
    }
    if (!agent_.valid()) return Quit::kPeerGone;  // a send failed
    if (!task_.leader_done) Enforce(MonotonicUs());
  }
  SendExit();
  return agent_.valid() ? Quit::kNo : Quit::kPeerGone;
}

Quit Guest::ReadAgentFrames() {
  ssize_t n = reader_.ReadFrom(agent_.get());
  if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return Quit::kPeerGone;
  return HandleBufferedFrames();
}

Quit Guest::HandleBufferedFrames() {
  Frame frame;
  std::string error;
  FrameReader::Result r;
  while ((r = reader_.Next(&frame, &error)) == FrameReader::Result::kFrame) {
    Quit quit = OnTaskFrame(frame);
    if (quit != Quit::kNo) return quit;
  }
  if (r == FrameReader::Result::kError) {
    ProtocolError(error);
    return Quit::kProtocolError;
  }
  return Quit::kNo;
}

void Guest::Pause() {
  if (task_.paused) return;
  Paused paused;
  paused.running = true;
  paused.task_id = run_->task_id;
  const uint64_t limit = run_->output_limit_bytes;
  paused.stdout_sent = std::min(task_.seen[0], limit);
  paused.stderr_sent = std::min(task_.seen[1], limit);
  task_.paused = true;
  task_.paused_at_us = MonotonicUs();
  if (!Send(EncodePaused(paused))) agent_.Reset();
}

void Guest::Resume() {
  if (!task_.paused) return;
  // The task's clock stood still while paused (frozen, or not yet restored
  // on another host whose monotonic clock differs): its deadlines move by
  // the pause, so a migration costs the task none of its timeout.
  const int64_t shift = MonotonicUs() - task_.paused_at_us;
  task_.deadline_us += shift;
  task_.start_us += shift;
  if (task_.kill_at_us != 0) task_.kill_at_us += shift;
  if (task_.give_up_us != 0) task_.give_up_us += shift;
  if (task_.drain_until_us != 0) task_.drain_until_us += shift;
  if (task_.exit_us != 0) task_.exit_us += shift;
  task_.paused = false;
}

Quit Guest::OnTaskFrame(const Frame& frame) {
  std::string error;
  switch (frame.type) {
    case MessageType::kPause:
    case MessageType::kResume:
      if (!DecodeEmpty(frame.payload, &error)) {
        ProtocolError(std::string("bad ") + std::string(MessageTypeName(frame.type)) + ": " + error);
        return Quit::kProtocolError;
      }
      if (frame.type == MessageType::kPause) {
        Pause();
      } else {
        Resume();
      }
      return agent_.valid() ? Quit::kNo : Quit::kPeerGone;
    case MessageType::kCancel: {
      Cancel cancel;
      if (!DecodeCancel(frame.payload, &cancel, &error)) {
        ProtocolError("bad CANCEL: " + error);
        return Quit::kProtocolError;
      }
      if (task_.leader_done || task_.kill_reason) return Quit::kNo;
      task_.kill_reason = Termination::kCancelled;
      SignalTask(SIGTERM);
      task_.kill_at_us = MonotonicUs() + static_cast<int64_t>(cancel.grace_ms) * 1000;
      return Quit::kNo;
    }
    case MessageType::kPing: {
      Ping ping;
      if (!DecodePing(frame.payload, &ping, &error)) {
        ProtocolError("bad PING: " + error);
        return Quit::kProtocolError;
      }
      return Send(EncodePong(ping)) ? Quit::kNo : Quit::kPeerGone;
    }
    case MessageType::kShutdown:
      return Quit::kShutdown;
    default:
      ProtocolError("unexpected " + std::string(MessageTypeName(frame.type)) +
                    " while a task runs");
      return Quit::kProtocolError;
  }
}

void Guest::ReadOutput(int index) {
  char buf[kMaxOutputChunk];
  Fd& fd = task_.out[index];
  ssize_t n = read(fd.get(), buf, sizeof(buf));
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    fd.Reset();  // EOF, or an error no retry would fix
    return;
  }
  uint64_t limit = run_->output_limit_bytes;
  uint64_t seen = task_.seen[index];
  uint64_t keep = seen < limit ? std::min<uint64_t>(static_cast<uint64_t>(n), limit - seen) : 0;
  if (keep > 0) {
    Output output;
    output.stream = index == 0 ? OutputStream::kStdout : OutputStream::kStderr;
    output.offset = seen;
    output.data.assign(buf, keep);
    if (!Send(EncodeOutput(output))) agent_.Reset();
  }
  // Past the limit the pipe is still drained, so the task never blocks on
  // a full pipe; the bytes are dropped.
  if (keep < static_cast<uint64_t>(n)) task_.truncated[index] = true;
  task_.seen[index] += static_cast<uint64_t>(n);
}

// Stdin is written as the pipe takes it, never blocking: a task that does
// not read its stdin must not stall the loop. EPIPE (SIGPIPE is ignored)
// means the task closed it; the rest is dropped.
void Guest::PumpStdin() {
  const std::string& data = run_->stdin_data;
  while (task_.stdin_offset < data.size()) {
    size_t chunk = std::min<size_t>(64 * 1024, data.size() - task_.stdin_offset);
    ssize_t n = write(task_.stdin_fd.get(), data.data() + task_.stdin_offset, chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) break;
    task_.stdin_offset += static_cast<size_t>(n);
  }
  task_.stdin_fd.Reset();
}

// Signals the task's process group, or the task alone if it has not made
// its group yet (it has no descendants then either).
void Guest::SignalTask(int sig) {
  if (task_.leader <= 0 || task_.leader_done) return;
  if (kill(-task_.leader, sig) < 0) kill(task_.leader, sig);
}

void Guest::Enforce(int64_t now) {
  if (!task_.kill_reason && now >= task_.deadline_us) {
    task_.kill_reason = Termination::kTimedOut;
    SignalTask(SIGKILL);
    task_.give_up_us = now + kKilledTaskGraceUs;
  }
  if (task_.kill_at_us != 0 && now >= task_.kill_at_us) {
    SignalTask(SIGKILL);
    task_.kill_at_us = 0;
    task_.give_up_us = now + kKilledTaskGraceUs;
  }
  if (task_.give_up_us != 0 && now >= task_.give_up_us) {
    // Only a Python server that stopped reporting gets here: the task was
    // SIGKILLed seconds ago. Take the server down with everything else.
    Log("task %d was killed but not reported dead; restarting the python server", task_.leader);
    python_.Kill();
    OnLeaderExit(W_EXITCODE(0, SIGKILL));
  }
}

void Guest::OnPythonEvent(PythonServer::Event event) {
  if (event == PythonServer::Event::kDied && task_.active && !task_.leader_done &&
      kill(task_.leader, 0) < 0 && errno == ESRCH) {
    // The server reaped the task and died before it said so: its status is
    // gone. (A task still running, or a zombie, re-parents to us and
    // ReapZombies sees it end.)
    Log("task %d ended as its python fork server was killed; its exit status is lost",
        task_.leader);
    OnLeaderExit(W_EXITCODE(0, SIGKILL));
    return;
  }
  if (event != PythonServer::Event::kTaskEnded) return;
  task_.cpu_us += python_end_.cpu_us;
  task_.max_rss_bytes = std::max(task_.max_rss_bytes, python_end_.max_rss_bytes);
  OnLeaderExit(python_end_.wait_status);
}

void Guest::OnLeaderExit(int wait_status) {
  if (task_.leader_done) return;
  task_.leader_done = true;
  task_.wait_status = wait_status;
  task_.exit_us = MonotonicUs();
  task_.stdin_fd.Reset();
  // Whatever the task left running (a daemon, a `sleep &`, a setsid'ed
  // grandchild) goes with it: the next task gets an empty sandbox, and the
  // output pipes reach EOF once no process holds them.
  KillAllDescendants(/*spare_python=*/true);
  task_.drain_until_us = MonotonicUs() + kDrainGraceUs;
}

void Guest::SendExit() {
  Exit exit;
  int status = task_.wait_status;
  if (WIFEXITED(status)) {
    exit.termination = Termination::kExited;
    exit.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit.termination = Termination::kSignaled;
    exit.signal = WTERMSIG(status);
  }
  // A task we killed reports why we killed it, even if it exited on its
  // own in the meantime (e.g. it handled the cancel's SIGTERM).
  if (task_.kill_reason) exit.termination = *task_.kill_reason;
  exit.wall_us = task_.exit_us - task_.start_us;
  exit.cpu_us = task_.cpu_us;
  exit.peak_rss_bytes = task_.max_rss_bytes;
  exit.stdout_truncated = task_.truncated[0];
  exit.stderr_truncated = task_.truncated[1];
  if (!Send(EncodeExit(exit))) agent_.Reset();
}

// --- Processes. ---

void Guest::Account(const rusage& ru) {
  if (!task_.active) return;
  task_.cpu_us += TimevalUs(ru.ru_utime) + TimevalUs(ru.ru_stime);
  task_.max_rss_bytes = std::max<int64_t>(task_.max_rss_bytes, int64_t{ru.ru_maxrss} * 1024);
}

// Reaps every exited child: the task, orphans that re-parented to us, a
// dead Python server. The task's leader is first looked at without being
// reaped (WNOWAIT), so its process group is killed while its pid still
// holds the group id and cannot be reused.
void Guest::ReapZombies() {
  signalfd_siginfo info;
  while (read(sigchld_.get(), &info, sizeof(info)) > 0) {
  }
  bool exec_leader = task_.active && !task_.leader_done && task_.mode == RunMode::kExec;
  if (exec_leader) {
    siginfo_t si{};
    if (waitid(P_PID, task_.leader, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        si.si_pid == task_.leader) {
      kill(-task_.leader, SIGKILL);
    }
  }
  while (true) {
    int status = 0;
    rusage ru{};
    pid_t pid = wait4(-1, &status, WNOHANG | __WALL, &ru);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;
    if (pid == python_.pid()) {
      Log("python fork server %d exited (status %d); it restarts with the next python task", pid,
          status);
      python_.OnReaped();
      continue;
    }
    Account(ru);
    // In Python mode the leader is the server's child; it is ours only if
    // the server died and it re-parented to us.
    if (task_.active && pid == task_.leader) OnLeaderExit(status);
  }
}

// Kills and reaps every descendant but (if spare_python) the Python
// server. Each round SIGKILLs our current children; their own children
// then re-parent to us and are killed in the next round. As PID 1 with no
// server to spare, kill(-1) does it in one go (it skips PID 1 itself).
void Guest::KillAllDescendants(bool spare_python) {
  int64_t deadline = MonotonicUs() + kKillAllTimeoutUs;
  if (!spare_python) python_.Kill();
  bool everyone = pid1_ && !python_.running();
  while (true) {
    ReapZombies();
    std::vector<pid_t> kids;
    if (!everyone && !ListChildren(&kids)) {
      // No /proc: as PID 1 fall back to kill(-1) at the cost of the warm
      // server; elsewhere only the process group can be reached.
      if (!pid1_) return;
      Log("/proc is not mounted; killing every process, the python server too");
      python_.Kill();
      everyone = true;
    }
    if (everyone) {
      if (kill(-1, SIGKILL) < 0 && errno == ESRCH) {
        ReapZombies();
        return;
      }
      // As a machine's real PID 1 (a micro-VM), kill(-1) also "signals" the
      // kernel threads and so never fails with ESRCH. Every process left
      // there is re-parented to us, so no children (zombies reaped) is the
      // end.
      std::vector<pid_t> left;
      if (ListChildren(&left) && left.empty()) return;
    } else {
      kids.erase(std::remove(kids.begin(), kids.end(), python_.pid()), kids.end());
      if (kids.empty()) return;
      for (pid_t kid : kids) kill(kid, SIGKILL);
    }
    int64_t now = MonotonicUs();
    if (now >= deadline) {
      Log("descendants still alive after %lld s of SIGKILL",
          (long long)(kKillAllTimeoutUs / 1000000));
      return;
    }
    // Wait for SIGCHLD (bounded); a short timeout also covers a process
    // that re-parented to us without a signal we noticed.
    pollfd p{sigchld_.get(), POLLIN, 0};
    poll(&p, 1, std::min(PollTimeoutMs(now, deadline), 10));
  }
}

}  // namespace
}  // namespace flotilla::guest

int main(int argc, char** argv) {
  flotilla::guest::Options options;
  if (!flotilla::guest::ParseOptions(argc, argv, &options)) return 64;
  if (!options.device.empty()) {
    // virtio_console creates the port's device node before it lists the
    // port, and until then open() fails with ENXIO; under TCG on a loaded
    // host that window lasts long enough to be hit. So a bounded retry.
    int fd = -1;
    for (int tries = 0; tries < 2000; ++tries) {
      fd = open(options.device.c_str(), O_RDWR | O_CLOEXEC | O_NOCTTY);
      if (fd >= 0 || (errno != ENXIO && errno != ENOENT)) break;
      usleep(10000);
    }
    if (fd < 0) {
      flotilla::guest::Log(
          "%s", flotilla::guest::ErrnoMessage("open", options.device, errno).c_str());
      return 1;
    }
    options.fd = fd;
  }
  flotilla::guest::Guest guest(std::move(options));
  return guest.Main();
}
