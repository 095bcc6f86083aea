// The CRIU implementation of Checkpointer. The steps of each direction are
// a flat list; each either succeeds or says which step failed.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "checkpoint/channel.h"
#include "checkpoint/checkpointer.h"
#include "checkpoint/child.h"
#include "checkpoint/criu_process.h"
#include "checkpoint/externals.h"
#include "checkpoint/root_archive.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/status_macros.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace flotilla::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kManifest[] = "flotilla-manifest";
constexpr char kRootTar[] = "flotilla-root.tar";
constexpr char kNetnsKey[] = "flotilla-netns";
// Fixed numbers for the fds CRIU inherits on restore.
constexpr int kChannelFd = 10;
constexpr int kNetnsFd = 11;
constexpr int kFirstFileFd = 12;

std::chrono::microseconds Since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

absl::StatusOr<std::string> Slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoError(errno, "open", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return ErrnoError(errno ? errno : EIO, "write", path);
  return absl::OkStatus();
}

int64_t DirBytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (entry.is_regular_file(ec)) total += static_cast<int64_t>(entry.file_size(ec));
  }
  return total;
}

// The real uid and gid of `pid` (its first Uid:/Gid: fields).
absl::Status TaskIds(const std::string& proc_dir, pid_t pid, int* uid, int* gid) {
  ASSIGN_OR_RETURN(std::string status, Slurp(absl::StrCat(proc_dir, "/", pid, "/status")));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    int* into = absl::ConsumePrefix(&line, "Uid:") ? uid : absl::ConsumePrefix(&line, "Gid:") ? gid : nullptr;
    if (into == nullptr) continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t', absl::SkipEmpty());
    if (f.empty() || !absl::SimpleAtoi(f[0], into)) {
      return absl::InternalError(absl::StrCat("bad id line in /proc/", pid, "/status"));
    }
  }
  return absl::OkStatus();
}

// One task (thread) of the tree being dumped, as /proc shows it.
struct TaskState {
  char state = '?';     // the state letter of /proc/<pid>/task/<tid>/stat
  pid_t tracer = 0;     // TracerPid
};

// The processes of the tree rooted at `root` (by PPid, from /proc/*/stat),
// root first.
std::vector<pid_t> TreeOf(const std::string& proc_dir, pid_t root) {
  std::multimap<pid_t, pid_t> children;
  if (DIR* d = opendir(proc_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      int pid = 0;
      if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
      auto stat = Slurp(absl::StrCat(proc_dir, "/", pid, "/stat"));
      if (!stat.ok()) continue;
      // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
      const size_t close = stat->rfind(')');
      if (close == std::string::npos) continue;
      std::vector<absl::string_view> f =
          absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
      int ppid = 0;
      if (f.size() > 1 && absl::SimpleAtoi(f[1], &ppid)) children.emplace(ppid, pid);
    }
    closedir(d);
  }
  std::vector<pid_t> tree = {root};
  for (size_t i = 0; i < tree.size(); ++i) {
    auto [from, to] = children.equal_range(tree[i]);
    for (auto it = from; it != to; ++it) tree.push_back(it->second);
  }
  return tree;
}

// Calls fn(task_dir, tid) for every thread of every process of the tree;
// task_dir is "<proc>/<pid>/task".
template <typename Fn>
void ForEachThread(const std::string& proc_dir, pid_t root, Fn fn) {
  for (pid_t pid : TreeOf(proc_dir, root)) {
    const std::string task_dir = absl::StrCat(proc_dir, "/", pid, "/task");
    DIR* d = opendir(task_dir.c_str());
    if (d == nullptr) continue;
    while (dirent* e = readdir(d)) {
      int tid = 0;
      if (absl::SimpleAtoi(e->d_name, &tid)) fn(task_dir, static_cast<pid_t>(tid));
    }
    closedir(d);
  }
}

// Every thread of every process of the tree, with its state and tracer.
std::map<pid_t, TaskState> TasksOf(const std::string& proc_dir, pid_t root) {
  std::map<pid_t, TaskState> tasks;
  ForEachThread(proc_dir, root, [&](const std::string& task_dir, pid_t tid) {
    auto status = Slurp(absl::StrCat(task_dir, "/", tid, "/status"));
    if (!status.ok()) return;
    TaskState t;
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      if (absl::ConsumePrefix(&line, "State:")) {
        line = absl::StripLeadingAsciiWhitespace(line);
        if (!line.empty()) t.state = line[0];
      } else if (absl::ConsumePrefix(&line, "TracerPid:")) {
        int tracer = 0;
        if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &tracer)) t.tracer = tracer;
      }
    }
    tasks[tid] = t;
  });
  return tasks;
}

// Resident bytes of the tree (statm), what a dump has to write.
int64_t ResidentBytes(const std::string& proc_dir, pid_t root) {
  int64_t pages = 0;
  for (pid_t pid : TreeOf(proc_dir, root)) {
    auto statm = Slurp(absl::StrCat(proc_dir, "/", pid, "/statm"));
    if (!statm.ok()) continue;
    std::vector<absl::string_view> f = absl::StrSplit(*statm, ' ');
    int64_t resident = 0;
    if (f.size() > 1 && absl::SimpleAtoi(f[1], &resident)) pages += resident;
  }
  return pages * sysconf(_SC_PAGESIZE);
}

// After CRIU was killed in the middle of a dump, puts the tree back as far
// as it can be put back. What a killed CRIU leaves:
// - ptrace: the tracer's death detaches its tracees (the kernel's
//   exit_ptrace, done before CRIU became a zombie, so before we reaped it);
//   a task that was in a ptrace stop is woken, unless a group stop is
//   pending, and then it stays stopped ('T').
// - the parasite: a task that runs CRIU's parasite daemon sees its control
//   socket close and returns to its own code through the signal frame CRIU
//   built (compel's parasite "cures itself"), leaving only the blob's
//   mapping behind.
// - an injected system call: to map the parasite (and to unmap it again)
//   compel writes "syscall; int3" over the task's code at the start of its
//   first executable mapping (dump.log: "Parasite syscall_ip at ..."),
//   points the task's registers at it and lets it run to the int3, then
//   puts code and registers back. Killed in between, CRIU leaves the task
//   with those registers; detached, it runs the int3, the SIGTRAP is no
//   longer caught by a tracer, and the task dies of it. Nothing outside
//   CRIU knows the registers to put back, so that task is lost:
//   DeadAfterKilledDump finds it.
// - the freezer: this checkpointer does not ask CRIU to freeze cgroups, so
//   none is left frozen (the caller thaws its own freeze).
// So: wait (until `give_up`) until no task has a tracer, then SIGCONT every
// task that is stopped now but was not before the dump. Returns what it
// did, for the error message.
std::string ReleaseAfterKilledDump(const std::string& proc_dir, pid_t root,
                                   const std::map<pid_t, TaskState>& before,
                                   Clock::time_point give_up) {
  std::map<pid_t, TaskState> now = TasksOf(proc_dir, root);
  auto traced = [&] {
    for (const auto& [tid, t] : now) {
      if (t.tracer != 0) return true;
    }
    return false;
  };
  // No event says "detached"; the detach is normally done already, so this
  // loop runs at most a few rounds.
  while (traced() && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    now = TasksOf(proc_dir, root);
  }
  int continued = 0;
  for (const auto& [tid, t] : now) {
    auto was = before.find(tid);
    const bool stopped_before = was != before.end() && was->second.state == 'T';
    if ((t.state == 'T' || t.state == 't') && !stopped_before) {
      if (kill(tid, SIGCONT) == 0) ++continued;
    }
  }
  std::string what = absl::StrCat(now.size(), " task(s) released");
  if (continued > 0) absl::StrAppend(&what, ", ", continued, " continued with SIGCONT");
  if (traced()) absl::StrAppend(&what, "; some are still traced");
  return what;
}

// Whether a thread has run since a moment, and whether it is dying.
struct ThreadRun {
  char state = '?';      // as in TaskState
  bool exiting = false;  // PF_EXITING: in do_exit (a fatal signal, or its namespace's init died)
  int64_t switches = 0;  // voluntary + involuntary context switches
};

constexpr unsigned kPfExiting = 0x4;  // include/linux/sched.h

// The state and PF_EXITING of /proc/<pid>/stat (or .../task/<tid>/stat);
// false if it cannot be read (the task is gone).
bool ReadStateAndExiting(const std::string& stat_path, char* state, bool* exiting) {
  auto stat = Slurp(stat_path);
  if (!stat.ok()) return false;
  // "pid (comm) S ppid pgrp session tty tpgid flags ...": comm may hold
  // spaces and parentheses.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) return false;
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
  unsigned flags = 0;
  if (f.size() < 7 || f[0].empty() || !absl::SimpleAtoi(f[6], &flags)) return false;
  *state = f[0][0];
  *exiting = (flags & kPfExiting) != 0;
  return true;
}

// Every thread of every process of the tree.
std::map<pid_t, ThreadRun> ThreadRunsOf(const std::string& proc_dir, pid_t root) {
  std::map<pid_t, ThreadRun> threads;
  ForEachThread(proc_dir, root, [&](const std::string& task_dir, pid_t tid) {
    ThreadRun t;
    if (!ReadStateAndExiting(absl::StrCat(task_dir, "/", tid, "/stat"), &t.state, &t.exiting)) {
      return;
    }
    auto status = Slurp(absl::StrCat(task_dir, "/", tid, "/status"));
    if (!status.ok()) return;
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      if (!absl::ConsumePrefix(&line, "voluntary_ctxt_switches:") &&
          !absl::ConsumePrefix(&line, "nonvoluntary_ctxt_switches:")) {
        continue;
      }
      int64_t n = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &n)) t.switches += n;
    }
    threads[tid] = t;
  });
  return threads;
}

// Waits until every thread of the tree has run since CRIU let go of it, or
// until `give_up`. Why: a task left in an injected system call (see
// ReleaseAfterKilledDump) dies only once it runs again, and on a loaded
// host the scheduler may take a while after CRIU was reaped. A thread has
// run once it is no longer runnable ('R': woken by the detach, maybe not
// yet scheduled), or has switched context since, or is dying, or is gone.
// One that computes without a pause is switched out at its next preemption.
void WaitUntilEveryThreadRan(const std::string& proc_dir, pid_t root, Clock::time_point give_up) {
  const std::map<pid_t, ThreadRun> start = ThreadRunsOf(proc_dir, root);
  while (true) {
    const std::map<pid_t, ThreadRun> now = ThreadRunsOf(proc_dir, root);
    bool all_ran = true;
    for (const auto& [tid, then] : start) {
      auto it = now.find(tid);
      if (it == now.end()) continue;
      const ThreadRun& t = it->second;
      if (t.state == 'R' && !t.exiting && t.switches == then.switches) {
        all_ran = false;
        break;
      }
    }
    if (all_ran || Clock::now() >= give_up) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// A process of the tree, held by a pidfd from before the dump: that it
// ended is then never confused with a new process that took its pid.
struct WatchedProcess {
  pid_t pid = 0;
  UniqueFd pidfd;
};

std::vector<WatchedProcess> WatchTree(const std::string& proc_dir, pid_t root) {
  std::vector<WatchedProcess> watched;
  for (pid_t pid : TreeOf(proc_dir, root)) {
    UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (fd.valid()) watched.push_back({pid, std::move(fd)});
  }
  return watched;
}

bool Ended(const WatchedProcess& p, int timeout_ms) {
  pollfd fd = {p.pidfd.get(), POLLIN, 0};
  while (true) {
    const int n = poll(&fd, 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

// How an ended process ended: its wait status if it is the caller's child
// (looked at, not reaped: its owner reaps it), otherwise only that it ended.
std::string DescribeEnd(const WatchedProcess& p) {
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(p.pidfd.get()), &info,
             WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid != 0) {
    if (info.si_code == CLD_EXITED) return absl::StrCat("exited with status ", info.si_status);
    const char* name = sigabbrev_np(info.si_status);
    return absl::StrCat("was killed by signal ", info.si_status,
                        name != nullptr ? absl::StrCat(" (SIG", name, ")") : "");
  }
  return "has ended";
}

// After a killed dump and ReleaseAfterKilledDump: the processes of the tree
// that did not survive it (see there why one may not), each as "its init
// (pid 7) was killed by signal 5 (SIGTRAP)"; empty when every one lives on.
// Waits until `give_up` at most: for every thread to run once, and for a
// dying process to end (a dying init first waits for the rest of its pid
// namespace to be killed).
std::vector<std::string> DeadAfterKilledDump(const std::string& proc_dir, pid_t root,
                                             const std::vector<WatchedProcess>& watched,
                                             Clock::time_point give_up) {
  WaitUntilEveryThreadRan(proc_dir, root, give_up);
  std::vector<std::string> dead;
  for (const WatchedProcess& p : watched) {
    // Only the init's death is the sandbox's: other processes of the tree
    // end by themselves all the time (a task's `sleep`), and a task the
    // killed dump left to die (SIGTRAP) is reported by the guest as its end.
    if (p.pid != root) continue;
    if (!Ended(p, 0)) {
      // Until the pidfd says it ended, /proc/<pid> is still this process.
      char state = '?';
      bool exiting = false;
      const bool read =
          ReadStateAndExiting(absl::StrCat(proc_dir, "/", p.pid, "/stat"), &state, &exiting);
      const bool dying = read && (exiting || state == 'Z' || state == 'X');
      if (!dying && !Ended(p, 0)) continue;
    }
    // A dying init first waits for the rest of its pid namespace to die.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(give_up - Clock::now());
    const bool ended = Ended(p, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    const std::string who =
        p.pid == root ? absl::StrCat("its init (pid ", p.pid, ")") : absl::StrCat("pid ", p.pid);
    dead.push_back(absl::StrCat(who, " ", ended ? DescribeEnd(p) : "is exiting"));
  }
  return dead;
}

// The error of a dump that was killed (`killed`: at its deadline, or
// cancelled), once the tree has been released: the same code and "the
// sandbox carries on" when every process of the tree lives on; DataLoss,
// naming the dead, when one did not survive (the caller must treat the
// sandbox's task as failed: it did not end by itself).
absl::Status AfterKilledDump(const absl::Status& killed, const std::string& proc,
                             const CheckpointRequest& request,
                             const std::map<pid_t, TaskState>& before,
                             const std::vector<WatchedProcess>& watched) {
  // Bounds the whole clean-up: normally it takes a few milliseconds.
  const auto give_up = Clock::now() + std::chrono::seconds(2);
  const std::string released = ReleaseAfterKilledDump(proc, request.init_pid, before, give_up);
  const std::vector<std::string> dead =
      DeadAfterKilledDump(proc, request.init_pid, watched, give_up);
  if (dead.empty()) {
    spdlog::warn("sandbox {}: criu dump killed: {}; {}", request.id, killed.message(), released);
    return absl::Status(
        killed.code(), absl::StrCat(killed.message(), "; the sandbox carries on (", released, ")"));
  }
  const std::string died = absl::StrJoin(dead, ", ");
  spdlog::error("sandbox {}: criu dump killed: {}; the sandbox died with it: {}", request.id,
                killed.message(), died);
  return absl::DataLossError(absl::StrCat(
      killed.message(), "; the sandbox died with the killed dump: ", died,
      " (criu was killed while its code ran in the task, which cannot be undone; the task is "
      "lost and must be reported as failed)"));
}

// Removes a half-made image on every early return of Checkpoint.
class ImageDirGuard {
 public:
  explicit ImageDirGuard(std::string dir) : dir_(std::move(dir)) {}
  ~ImageDirGuard() {
    if (dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void Keep() { dir_.clear(); }

 private:
  std::string dir_;
};

// Unmounts and removes a restore's root directory unless it was handed on.
class RootDirGuard {
 public:
  explicit RootDirGuard(std::string dir) : dir_(std::move(dir)) {}
  ~RootDirGuard() {
    if (dir_.empty()) return;
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    rmdir(dir_.c_str());
  }
  void set_mounted() { mounted_ = true; }
  // The restored tree holds its own copy of the root: the host's can go.
  std::string Release() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    return std::exchange(dir_, "");
  }

 private:
  std::string dir_;
  bool mounted_ = false;
};

class CriuCheckpointer final : public Checkpointer {
 public:
  explicit CriuCheckpointer(CriuOptions options)
      : options_(std::move(options)),
        criu_(options_.criu_path, options_.state_dir, options_.deadlines.check) {}

  absl::StatusOr<CheckpointImage> Checkpoint(const CheckpointRequest& request) override {
    const std::string context = absl::StrCat("checkpoint of sandbox ", request.id);
    const auto start = Clock::now();
    const std::string proc = "/proc";
    auto manifest = FindExternals(proc, request.init_pid, request.channel_fd);
    if (!manifest.ok()) return Annotate(manifest.status(), context);
    int uid = -1, gid = -1;
    if (absl::Status st = TaskIds(proc, request.init_pid, &uid, &gid); !st.ok()) {
      return Annotate(st, context);
    }
    if (mkdir(request.image_dir.c_str(), 0700) != 0 && !(errno == EEXIST && IsEmptyDir(request.image_dir))) {
      return Annotate(ErrnoError(errno, "mkdir", request.image_dir), context);
    }
    ImageDirGuard guard(request.image_dir);
    // The root skeleton is read-only once the sandbox runs, so reading it
    // before the dump is as good as during.
    const std::string root_tar = absl::StrCat(request.image_dir, "/", kRootTar);
    if (absl::Status st = SaveRoot(proc, request.init_pid, root_tar, options_.deadlines.root_tar);
        !st.ok()) {
      return Annotate(st, context);
    }
    if (absl::Status st = WriteText(absl::StrCat(request.image_dir, "/", kManifest),
                                    manifest->Serialize());
        !st.ok()) {
      return Annotate(st, context);
    }

    CriuRun run;
    run.log_path = absl::StrCat(request.image_dir, "/dump.log");
    run.deadline = options_.deadlines.For(ResidentBytes(proc, request.init_pid));
    if (options_.no_breakpoints) run.env.push_back(kNoBreakpointsEnv);
    run.real_uid = uid;
    run.real_gid = gid;
    run.args = {"dump", "-t", absl::StrCat(request.init_pid), "-D", request.image_dir, "-o",
                "dump.log", "-v4",
                // Sandboxes have only loopback: nothing to lock.
                "--network-lock", "skip",
                // The cgroups are the agent's to recreate (limits may differ
                // on the target), not CRIU's.
                "--manage-cgroups=ignore", "--ext-unix-sk", "--external",
                absl::StrCat("unix[", manifest->channel_inode, "]"), "--external",
                absl::StrCat("net[", manifest->netns_inode, "]:", kNetnsKey)};
    for (const ExternalMount& m : manifest->mounts) {
      run.args.push_back("--external");
      run.args.push_back(absl::StrCat("mnt[", m.mountpoint, "]:", m.key));
    }
    for (const ExternalFile& f : manifest->files) {
      run.args.push_back("--external");
      run.args.push_back(f.key);
    }
    if (request.after == AfterCheckpoint::kLeaveRunning) run.args.push_back("--leave-running");
    const std::map<pid_t, TaskState> before = TasksOf(proc, request.init_pid);
    const std::vector<WatchedProcess> watched = WatchTree(proc, request.init_pid);
    if (absl::Status st = criu_.Run(context, run); !st.ok()) {
      if (absl::IsDeadlineExceeded(st) || absl::IsCancelled(st)) {
        st = AfterKilledDump(st, proc, request, before, watched);
      }
      // Keep the log for the operator: the image itself is useless.
      std::error_code ec;
      const std::string kept = absl::StrCat(request.image_dir, ".failed.log");
      std::filesystem::copy_file(run.log_path, kept, std::filesystem::copy_options::overwrite_existing, ec);
      if (!ec) {
        std::string message(st.message());
        size_t at = message.find(run.log_path);
        if (at != std::string::npos) message.replace(at, run.log_path.size(), kept);
        st = absl::Status(st.code(), message);
      }
      return st;
    }
    guard.Keep();
    CheckpointImage image;
    image.dir = request.image_dir;
    image.bytes = DirBytes(request.image_dir);
    image.took = Since(start);
    spdlog::info("sandbox {}: checkpointed to {} ({} bytes, {} ms)", request.id, image.dir,
                 image.bytes, image.took.count() / 1000);
    return image;
  }

  absl::StatusOr<RestoredSandbox> Restore(const RestoreRequest& request) override {
    const std::string context = absl::StrCat("restore of sandbox ", request.id);
    const auto start = Clock::now();
    auto text = Slurp(absl::StrCat(request.image_dir, "/", kManifest));
    if (!text.ok()) return Annotate(text.status(), absl::StrCat(context, ": not a sandbox image"));
    auto manifest = Manifest::Parse(*text);
    if (!manifest.ok()) return Annotate(manifest.status(), context);
    if (absl::Status st = ValidateManifest(*manifest, request.manifest_policy); !st.ok()) {
      return Annotate(st, context);
    }
    for (const ExternalMount& m : manifest->mounts) {
      if (access(m.host_path.c_str(), F_OK) != 0) {
        return Annotate(ErrnoError(errno, "find the bind source", m.host_path),
                        absl::StrCat(context, ": this agent lacks a path the sandbox binds"));
      }
    }
    auto channel = NewChannelNamespace();
    if (!channel.ok()) return Annotate(channel.status(), context);

    auto cgroups = sandbox::isolation::CgroupSet::Create(
        request.layout.cgroups, request.layout.cgroup_parent, request.id, request.limits);
    if (!cgroups.ok()) return Annotate(cgroups.status(), context);
    auto join = (*cgroups)->OpenJoinFds();
    if (!join.ok()) return Annotate(join.status(), context);

    if (access(request.layout.runtime_dir.c_str(), F_OK) != 0) {
      if (absl::Status st = MkdirParents(request.layout.runtime_dir); !st.ok()) {
        return Annotate(st, context);
      }
    }
    const std::string root_dir = absl::StrCat(request.layout.runtime_dir, "/", request.id);
    if (mkdir(root_dir.c_str(), 0755) != 0) {
      return Annotate(ErrnoError(errno, "mkdir", root_dir), context);
    }
    RootDirGuard root_guard(root_dir);
    if (absl::Status st = RestoreRoot(absl::StrCat(request.image_dir, "/", kRootTar), root_dir,
                                      manifest->root_bytes, options_.deadlines.root_tar);
        !st.ok()) {
      return Annotate(st, context);
    }
    root_guard.set_mounted();

    std::vector<UniqueFd> files;
    CriuRun run;
    const std::string pidfile = absl::StrCat(request.image_dir, "/restored.pid");
    unlink(pidfile.c_str());
    run.log_path = absl::StrCat(request.image_dir, "/restore.log");
    // Half-restored tasks of a killed restore are in the new cgroups, which
    // the guard of `cgroups` kills and removes.
    run.deadline = options_.deadlines.For(DirBytes(request.image_dir));
    if (options_.no_breakpoints) run.env.push_back(kNoBreakpointsEnv);
    run.args = {"restore", "-D", request.image_dir, "-o", "restore.log", "-v4",
                // Detached, and a sibling of criu: the restored init becomes
                // the caller's child, like a launched container's.
                "--restore-detached", "--restore-sibling", "--pidfile", pidfile, "--root", root_dir,
                "--manage-cgroups=ignore", "--ext-unix-sk", "--inherit-fd",
                absl::StrCat("fd[", kChannelFd, "]:socket:[", manifest->channel_inode, "]"),
                "--inherit-fd", absl::StrCat("fd[", kNetnsFd, "]:", kNetnsKey)};
    run.inherit = {{channel->sandbox_end.get(), kChannelFd}, {channel->netns.get(), kNetnsFd}};
    for (const ExternalFile& f : manifest->files) {
      UniqueFd fd(open(f.path.c_str(), O_RDWR | O_CLOEXEC));
      if (!fd.valid()) return Annotate(ErrnoError(errno, "open", f.path), context);
      const int target = kFirstFileFd + static_cast<int>(files.size());
      run.inherit.push_back({fd.get(), target});
      run.args.push_back("--inherit-fd");
      run.args.push_back(absl::StrCat("fd[", target, "]:", f.key));
      files.push_back(std::move(fd));
    }
    for (const ExternalMount& m : manifest->mounts) {
      run.args.push_back("--external");
      run.args.push_back(absl::StrCat("mnt[", m.key, "]:", m.host_path));
    }
    // criu runs inside the new cgroups; the tasks it forks stay there.
    for (const UniqueFd& fd : *join) run.join_cgroup_fds.push_back(fd.get());
    if (absl::Status st = criu_.Run(context, run); !st.ok()) return st;

    auto pid_text = Slurp(pidfile);
    int pid = 0;
    if (!pid_text.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*pid_text), &pid) || pid <= 0) {
      return absl::InternalError(absl::StrCat(context, ": criu wrote no pid to ", pidfile));
    }
    auto container = sandbox::Container::AdoptRestored(request.id, pid, std::move(*cgroups),
                                                       root_guard.Release());
    if (!container.ok()) return Annotate(container.status(), context);
    RestoredSandbox restored;
    restored.container = std::move(*container);
    restored.channel = std::move(channel->agent_end);
    restored.took = Since(start);
    spdlog::info("sandbox {}: restored from {} as pid {} ({} ms)", request.id, request.image_dir,
                 pid, restored.took.count() / 1000);
    return restored;
  }

 private:
  static bool IsEmptyDir(const std::string& dir) {
    std::error_code ec;
    return std::filesystem::is_empty(dir, ec) && !ec;
  }

  const CriuOptions options_;
  CriuProcess criu_;
};

}  // namespace

absl::Status CriuAvailable(const std::string& criu_path, std::chrono::milliseconds deadline) {
  if (access(criu_path.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("criu is not installed at ", criu_path, " (run scripts/build-criu)"));
  }
  const std::string what = absl::StrCat("`", criu_path, " check`");
  pid_t pid = fork();
  if (pid < 0) return ErrnoError(errno, "fork", what);
  if (pid == 0) {
    if (StartOwnGroupInChild() != 0) _exit(126);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    execl(criu_path.c_str(), criu_path.c_str(), "check", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSIGN_OR_RETURN(Child child, Child::Adopt(pid, what));
  ASSIGN_OR_RETURN(int status, child.Wait(Child::Clock::now() + deadline, deadline));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(what, " ", DescribeWaitStatus(status),
                                                      " (scripts/build-criu builds one that works)"));
  }
  return absl::OkStatus();
}

std::unique_ptr<Checkpointer> NewCriuCheckpointer(CriuOptions options) {
  return std::make_unique<CriuCheckpointer>(std::move(options));
}

}  // namespace flotilla::checkpoint
