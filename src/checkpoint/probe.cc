#include "checkpoint/probe.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "checkpoint/child.h"
#include "checkpoint/criu_process.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/status_macros.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

namespace flotilla::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds Since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t);
}

ProbeResult Unavailable(std::string reason) {
  ProbeResult r;
  r.state = CheckpointState::kUnavailable;
  r.reason = std::move(reason);
  return r;
}

// The reason for a failed step: a hung step says "timed out" first, since
// that is what an operator has to recognise (a CRIU that passes its check
// but hangs in a dump).
std::string StepFailure(const std::string& step, const absl::Status& st) {
  if (absl::IsDeadlineExceeded(st)) return absl::StrCat(step, " timed out: ", st.message());
  if (absl::IsCancelled(st)) return absl::StrCat("cancelled during ", step);
  return absl::StrCat(step, " failed: ", st.message());
}

// Starts `program 600` in a session of its own with only /dev/null open,
// and returns once it runs the program (not a copy of the caller: CRIU must
// dump a small process, not the agent's forked address space).
absl::StatusOr<Child> StartTinyProcess(const std::string& program) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return ErrnoError(errno, "pipe2", "probe process");
  UniqueFd ready_read(ready[0]);
  UniqueFd ready_write(ready[1]);
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", "probe process");
  if (pid == 0) {
    // Its own session: CRIU dumps and restores it whole, with no job
    // control ties to the agent (no --shell-job).
    int err = 0;
    if (setsid() < 0) err = errno;
    int null = open("/dev/null", O_RDWR);
    if (err == 0 && (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)) {
      err = errno;
    }
    // Nothing else open: an inherited socket would be an external resource.
    if (err == 0) {
      const int keep = ready_write.get();
      if (keep > 3) syscall(SYS_close_range, 3, keep - 1, 0);
      syscall(SYS_close_range, keep + 1, ~0U, 0);
    }
    if (err == 0) {
      const char* name = strrchr(program.c_str(), '/');
      execl(program.c_str(), name ? name + 1 : program.c_str(), "600", static_cast<char*>(nullptr));
      err = errno;
    }
    (void)!write(ready_write.get(), &err, sizeof(err));
    _exit(127);
  }
  ready_write.Reset();
  ASSIGN_OR_RETURN(Child child, Child::Adopt(pid, "the probe's test process"));
  int err = 0;
  ssize_t n;
  while ((n = read(ready_read.get(), &err, sizeof(err))) < 0 && errno == EINTR) {
  }
  if (n == sizeof(err)) return ErrnoError(err, "start the probe's test process", program);
  return child;
}

// The state letter of /proc/<pid>/stat ('?' if unreadable).
char ProcessState(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string stat = buffer.str();
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : '?';
}

// One dump and restore of a fresh test process under `dir`. On success
// fills `result` (kAvailable and the times); otherwise `step` names the
// step that failed.
absl::Status DumpAndRestore(CriuProcess& criu, const ProbeOptions& o, const std::string& dir,
                            const std::vector<std::string>& env, ProbeResult* result,
                            std::string* step) {
  *step = "making the probe's image directory";
  RETURN_IF_ERROR(MkdirParents(dir));
  *step = "starting a test process";
  ASSIGN_OR_RETURN(Child tiny, StartTinyProcess(o.program));
  const pid_t pid = tiny.pid();
  const std::string what = absl::StrCat("checkpoint probe (pid ", pid, ")");
  CriuRun dump;
  dump.log_path = dir + "/dump.log";
  dump.deadline = o.dump_deadline;
  dump.cancel_fd = o.cancel_fd;
  dump.env = env;
  // Without --leave-running CRIU kills the task once its image is whole,
  // which frees its pid for the restore.
  dump.args = {"dump", "-t", absl::StrCat(pid), "-D", dir, "-o", "dump.log", "-v4",
               "--manage-cgroups=ignore"};
  *step = "criu dump";
  const auto dump_start = Clock::now();
  absl::Status dumped = criu.Run(what, dump);
  result->dump_took = Since(dump_start);
  tiny.Kill();  // reaps it (CRIU killed it after a good dump)
  RETURN_IF_ERROR(dumped);

  const std::string pidfile = dir + "/restored.pid";
  CriuRun restore;
  restore.log_path = dir + "/restore.log";
  restore.deadline = o.restore_deadline;
  restore.cancel_fd = o.cancel_fd;
  restore.env = env;
  // A sibling of criu: the restored process becomes our child, to reap.
  restore.args = {"restore", "-D", dir, "-o", "restore.log", "-v4", "--restore-detached",
                  "--restore-sibling", "--pidfile", pidfile, "--manage-cgroups=ignore"};
  *step = "criu restore";
  const auto restore_start = Clock::now();
  absl::Status restored = criu.Run(what, restore);
  result->restore_took = Since(restore_start);
  // The restored process, whatever happened: own it, so that it is killed
  // and reaped on every way out.
  int restored_pid = 0;
  if (auto text = ReadWholeFile(pidfile); text.ok()) {
    (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &restored_pid);
  }
  std::optional<Child> copy;
  if (restored_pid > 0) {
    auto adopted = Child::Adopt(restored_pid, "the probe's restored process");
    if (adopted.ok()) copy.emplace(std::move(*adopted));
  }
  RETURN_IF_ERROR(restored);
  *step = "checking the restored process";
  if (!copy) {
    return absl::InternalError(
        absl::StrCat("criu restore reported success but left no process (pidfile ", pidfile, ")"));
  }
  // Sleeping in its nanosleep, as it was dumped: not stopped, not dead.
  const char state = ProcessState(restored_pid);
  if (state != 'S' && state != 'R') {
    return absl::InternalError(absl::StrCat("the restored test process (pid ", restored_pid,
                                            ") is in state '", std::string(1, state),
                                            "', not running"));
  }
  copy->Kill();
  result->state = CheckpointState::kAvailable;
  return absl::OkStatus();
}

}  // namespace

std::string Describe(const ProbeResult& r) {
  switch (r.state) {
    case CheckpointState::kProbing:
      return "probing";
    case CheckpointState::kAvailable:
      return r.no_breakpoints ? "available (without hardware breakpoints)" : "available";
    case CheckpointState::kUnavailable:
      return absl::StrCat("unavailable (", r.reason, ")");
  }
  return "unknown";
}

ProbeResult ProbeCheckpointing(const ProbeOptions& o) {
  if (access(o.criu_path.c_str(), X_OK) != 0) {
    return Unavailable(absl::StrCat("criu is not installed at ", o.criu_path, ": ",
                                    strerror(errno), " (run scripts/build-criu)"));
  }
  if (geteuid() != 0) return Unavailable("checkpointing needs root (CRIU); the agent is not root");
  const std::string dir = absl::StrCat(o.work_dir, "/probe.", getpid());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (absl::Status st = MkdirParents(dir); !st.ok()) {
    return Unavailable(StepFailure("making the probe's directory", st));
  }
  struct RemoveDir {
    std::string dir;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } remove_dir{dir};

  // A fresh state directory: `criu check` runs every time (a cached result
  // may be from another kernel).
  CriuProcess criu(o.criu_path, dir + "/state", o.check_deadline);
  if (absl::Status st = criu.EnsureKdatCache(o.cancel_fd); !st.ok()) {
    return Unavailable(StepFailure("criu check", st));
  }

  ProbeResult result;
  std::string step;
  absl::Status st = DumpAndRestore(criu, o, dir + "/with-breakpoints", {}, &result, &step);
  if (st.ok()) return result;
  const std::string first = StepFailure(step, st);
  if (!absl::IsDeadlineExceeded(st) || step != "criu dump" || !o.try_without_breakpoints) {
    return Unavailable(first);
  }
  // CRIU's compel waits for the cured task to trap at its rt_sigreturn, by
  // default with a hardware breakpoint; where that trap never comes the
  // dump hangs. Syscall tracing reaches the same point without one.
  spdlog::warn("checkpoint probe: {}; trying again without hardware breakpoints", first);
  ProbeResult again;
  st = DumpAndRestore(criu, o, dir + "/without-breakpoints", {kNoBreakpointsEnv}, &again, &step);
  if (!st.ok()) {
    return Unavailable(absl::StrCat(first, "; without hardware breakpoints (", kNoBreakpointsEnv,
                                    ") too: ", StepFailure(step, st)));
  }
  again.no_breakpoints = true;
  again.reason = first;
  return again;
}

ProbeResult Availability::Get() const {
  absl::MutexLock lock(&mu_);
  return result_;
}

void Availability::Set(ProbeResult result) {
  absl::MutexLock lock(&mu_);
  result_ = std::move(result);
}

BackgroundProbe::BackgroundProbe(ProbeOptions options, std::shared_ptr<Availability> into)
    : cancel_(eventfd(0, EFD_CLOEXEC)) {
  if (!cancel_.valid()) {
    into->Set(Unavailable(ErrnoError(errno, "eventfd", "checkpoint probe").ToString()));
    return;
  }
  options.cancel_fd = cancel_.get();
  thread_ = std::thread([options = std::move(options), into = std::move(into)] {
    spdlog::info("checkpoint probe: dump and restore of a test process with {}", options.criu_path);
    ProbeResult result = ProbeCheckpointing(options);
    if (result.state == CheckpointState::kAvailable) {
      spdlog::info("checkpoint probe: {} (dump {} ms, restore {} ms){}", Describe(result),
                   result.dump_took.count() / 1000, result.restore_took.count() / 1000,
                   result.no_breakpoints ? absl::StrCat("; with them: ", result.reason) : "");
    } else {
      spdlog::warn("checkpoint probe: {}; this node will not checkpoint or migrate",
                   Describe(result));
    }
    into->Set(std::move(result));
  });
}

BackgroundProbe::~BackgroundProbe() {
  if (cancel_.valid()) {
    const uint64_t one = 1;
    (void)!write(cancel_.get(), &one, sizeof(one));
  }
  if (thread_.joinable()) thread_.join();
}

namespace {

class GatedCheckpointer final : public Checkpointer {
 public:
  GatedCheckpointer(CheckpointerFactory make, std::shared_ptr<const Availability> a,
                    std::string node_id)
      : make_(std::move(make)), availability_(std::move(a)), node_id_(std::move(node_id)) {}

  absl::StatusOr<CheckpointImage> Checkpoint(const CheckpointRequest& request) override {
    ASSIGN_OR_RETURN(Checkpointer * inner, Inner());
    return inner->Checkpoint(request);
  }
  absl::StatusOr<RestoredSandbox> Restore(const RestoreRequest& request) override {
    ASSIGN_OR_RETURN(Checkpointer * inner, Inner());
    return inner->Restore(request);
  }

 private:
  absl::StatusOr<Checkpointer*> Inner() {
    const ProbeResult r = availability_->Get();
    if (r.state != CheckpointState::kAvailable) {
      return absl::FailedPreconditionError(
          absl::StrCat("node ", node_id_, " cannot checkpoint: checkpointing is ", Describe(r)));
    }
    absl::MutexLock lock(&mu_);
    if (!inner_) inner_ = make_(r);
    return inner_.get();
  }

  const CheckpointerFactory make_;
  std::shared_ptr<const Availability> availability_;
  const std::string node_id_;
  absl::Mutex mu_;
  std::unique_ptr<Checkpointer> inner_ ABSL_GUARDED_BY(mu_);  // made once, then kept
};

}  // namespace

std::unique_ptr<Checkpointer> NewGatedCheckpointer(CheckpointerFactory make,
                                                   std::shared_ptr<const Availability> availability,
                                                   std::string node_id) {
  return std::make_unique<GatedCheckpointer>(std::move(make), std::move(availability),
                                             std::move(node_id));
}

}  // namespace flotilla::checkpoint
