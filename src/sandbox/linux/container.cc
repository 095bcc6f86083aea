#include "sandbox/linux/container.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "sandbox/linux/caps.h"
#include "sandbox/linux/child.h"
#include "sandbox/linux/io_net_stats.h"
#include "sandbox/linux/mounts.h"
#include "sandbox/linux/seccomp.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace flotilla::sandbox {
namespace {

using isolation::ChildError;
using isolation::ChildPlan;
using isolation::ChildStep;
using isolation::UniqueFd;

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

absl::Status Validate(const ContainerSpec& spec) {
  if (!ValidId(spec.id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("container id `", spec.id, "` must be 1-128 of [A-Za-z0-9._-]"));
  }
  auto invalid = [&](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("container ", spec.id, ": ", parts...));
  };
  if (spec.uid == 0 || spec.gid == 0) return invalid("uid and gid must not be 0");
  if (spec.argv.empty()) return invalid("argv is empty");
  if (spec.program_fd < 0 && (spec.program_path.empty() || spec.program_path[0] != '/')) {
    return invalid("program_path `", spec.program_path, "` must be absolute (or set program_fd)");
  }
  if (spec.hostname.empty() || spec.hostname.size() > 64) {
    return invalid("hostname `", spec.hostname, "` must be 1-64 characters");
  }
  if (spec.fds.size() + 3 > isolation::kMaxFdMappings) return invalid("too many fds");
  std::set<int> targets;
  for (const FdMapping& fd : spec.fds) {
    if (fd.source < 0 || fd.target < 0 || fd.target >= 1024 || !targets.insert(fd.target).second) {
      return invalid("fd mapping ", fd.source, " -> ", fd.target, " is invalid or a duplicate");
    }
  }
  for (const auto& [key, value] : spec.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return invalid("environment name `", key, "` is empty or contains '='");
    }
  }
  return absl::OkStatus();
}

// What the child's error was about, for "<op> `<object>`: <strerror>".
struct Described {
  std::string op;
  std::string object;
};

Described Describe(const ChildError& error, const ContainerSpec& spec,
                   const std::vector<isolation::RootfsOp>& rootfs,
                   const std::vector<std::string>& join_paths,
                   const std::vector<RlimitSetting>& rlimits, const std::string& root_dir) {
  auto at = [](const auto& list, int index) -> const auto* {
    return index >= 0 && static_cast<size_t>(index) < list.size() ? &list[index] : nullptr;
  };
  switch (static_cast<ChildStep>(error.step)) {
    case ChildStep::kSignals:
      return {"reset signal handlers", ""};
    case ChildStep::kParentDeathSignal:
      return {"prctl PR_SET_PDEATHSIG", ""};
    case ChildStep::kJoinCgroup: {
      const std::string* path = at(join_paths, error.index);
      return {"write \"0\" to", path ? *path : "cgroup.procs"};
    }
    case ChildStep::kSetsid:
      return {"setsid", ""};
    case ChildStep::kUnshareCgroupNs:
      return {"unshare", "CLONE_NEWCGROUP"};
    case ChildStep::kMountPrivate:
      return {"make mounts private under", "/"};
    case ChildStep::kRootfs: {
      const isolation::RootfsOp* op = at(rootfs, error.index);
      if (op == nullptr) return {"build rootfs", root_dir};
      return {op->Describe(), op->target};
    }
    case ChildStep::kHostname:
      return {"sethostname", spec.hostname};
    case ChildStep::kLoopback:
      return {"bring up interface", "lo"};
    case ChildStep::kPivotRoot:
      return {"pivot_root", root_dir};
    case ChildStep::kChdir:
      return {"chdir", spec.workdir};
    case ChildStep::kFds:
      return {"install fd", error.index >= 0 ? absl::StrCat(error.index) : "table"};
    case ChildStep::kRlimits: {
      const RlimitSetting* limit = at(rlimits, error.index);
      return {"setrlimit", limit ? isolation::RlimitName(limit->resource) : "?"};
    }
    case ChildStep::kDropPrivileges:
      return {isolation::CapStepName(static_cast<isolation::CapStep>(error.index)),
              absl::StrCat("uid ", spec.uid, " gid ", spec.gid)};
    case ChildStep::kNoNewPrivs:
      return {"prctl", "PR_SET_NO_NEW_PRIVS"};
    case ChildStep::kSeccomp:
      return {"seccomp", "SECCOMP_SET_MODE_FILTER"};
    case ChildStep::kExec:
      return {"execve",
              spec.program_fd >= 0 ? absl::StrCat("fd ", spec.program_fd) : spec.program_path};
  }
  return {absl::StrCat("step ", error.step), ""};
}

}  // namespace

absl::StatusOr<HostLayout> DetectHostLayout(HostLayout paths) {
  ASSIGN_OR_RETURN(paths.cgroups, isolation::DetectCgroupHost(paths.proc_dir, paths.cgroup_root));
  return paths;
}

absl::StatusOr<std::unique_ptr<Container>> Container::Launch(const ContainerSpec& spec,
                                                             const HostLayout& layout) {
  RETURN_IF_ERROR(Validate(spec));
  const std::string context = absl::StrCat("container ", spec.id);
  const sock_fprog* seccomp = nullptr;
  sock_fprog seccomp_program = {};
  if (spec.seccomp) {
    auto filter = isolation::DefaultSeccompFilter();
    if (!filter.ok()) return Annotate(filter.status(), context);
    seccomp_program.len = static_cast<unsigned short>((*filter)->size());
    seccomp_program.filter = const_cast<sock_filter*>((*filter)->data());
    seccomp = &seccomp_program;
  }

  std::unique_ptr<Container> container(new Container(spec.id));
  if (access(layout.runtime_dir.c_str(), F_OK) != 0) {
    if (absl::Status status = MkdirParents(layout.runtime_dir); !status.ok()) {
      return Annotate(status, context);
    }
  }
  std::string root_dir = absl::StrCat(layout.runtime_dir, "/", spec.id);
  if (mkdir(root_dir.c_str(), 0755) != 0) {
    return Annotate(ErrnoError(errno, "mkdir", root_dir), context);
  }
  container->root_dir_ = root_dir;
  container->proc_dir_ = layout.proc_dir;

  isolation::RootfsSpec rootfs_spec;
  rootfs_spec.root_dir = root_dir;
  rootfs_spec.host_binds = spec.host_binds;
  rootfs_spec.template_rootfs = spec.template_rootfs;
  rootfs_spec.hostname = spec.hostname;
  rootfs_spec.uid = spec.uid;
  rootfs_spec.gid = spec.gid;
  rootfs_spec.user_name = spec.user_name;
  rootfs_spec.workdir = spec.workdir;
  rootfs_spec.tmp_bytes = spec.tmp_bytes;
  rootfs_spec.workdir_bytes = spec.workdir_bytes;
  rootfs_spec.shm_bytes = spec.shm_bytes;
  rootfs_spec.dev_pts = spec.dev_pts;
  rootfs_spec.proc_subset_pid = spec.proc_subset_pid;
  rootfs_spec.binds = spec.binds;
  rootfs_spec.devices = spec.devices;
  auto rootfs = isolation::PlanRootfs(rootfs_spec);
  if (!rootfs.ok()) return Annotate(rootfs.status(), context);
  auto rlimits = isolation::ClampRlimits(spec.rlimits);
  if (!rlimits.ok()) return Annotate(rlimits.status(), context);

  auto cgroups =
      isolation::CgroupSet::Create(layout.cgroups, layout.cgroup_parent, spec.id, spec.limits);
  if (!cgroups.ok()) return Annotate(cgroups.status(), context);
  container->cgroups_ = std::move(*cgroups);
  auto join = container->cgroups_->OpenJoinFds();
  if (!join.ok()) return Annotate(join.status(), context);
  std::vector<int> join_fds;
  for (const UniqueFd& fd : *join) join_fds.push_back(fd.get());

  // Everything the child reads, made now: it may not allocate.
  std::vector<FdMapping> fds = spec.fds;
  UniqueFd dev_null;
  for (int target = 0; target <= 2; ++target) {
    bool given = std::any_of(fds.begin(), fds.end(),
                             [&](const FdMapping& fd) { return fd.target == target; });
    if (given) continue;
    if (!dev_null.valid()) {
      dev_null.Reset(open("/dev/null", O_RDWR | O_CLOEXEC));
      if (!dev_null.valid()) return Annotate(ErrnoError(errno, "open", "/dev/null"), context);
    }
    fds.push_back({dev_null.get(), target});
  }
  std::vector<std::string> env_strings;
  for (const auto& [key, value] : spec.env) env_strings.push_back(absl::StrCat(key, "=", value));
  std::vector<char*> argv;
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& var : env_strings) envp.push_back(const_cast<char*>(var.c_str()));
  envp.push_back(nullptr);

  int error_pipe[2];
  if (pipe2(error_pipe, O_CLOEXEC) != 0) return Annotate(ErrnoError(errno, "pipe2"), context);
  UniqueFd error_read(error_pipe[0]);
  UniqueFd error_write(error_pipe[1]);

  ChildPlan plan;
  plan.join_fds = join_fds.data();
  plan.n_join_fds = join_fds.size();
  plan.rootfs = rootfs->data();
  plan.n_rootfs = rootfs->size();
  plan.root_dir = root_dir.c_str();
  plan.hostname = spec.hostname.c_str();
  plan.hostname_len = spec.hostname.size();
  plan.loopback = spec.network == NetworkNamespace::kNew;
  plan.workdir = spec.workdir.c_str();
  plan.fds = fds.data();
  plan.n_fds = fds.size();
  plan.rlimits = rlimits->data();
  plan.n_rlimits = rlimits->size();
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.last_cap = isolation::LastCapability();
  plan.seccomp = seccomp;
  plan.program_fd = spec.program_fd;
  plan.program_path = spec.program_path.c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.error_fd = error_write.get();
  plan.parent_death_signal = spec.parent_death_signal;

  isolation::CloneOptions clone_options;
  clone_options.network = spec.network;
  clone_options.cgroup_fd = container->cgroups_->unified_fd();
  // No handler of ours may run in the child before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  auto cloned = isolation::CloneIntoNamespaces(clone_options);
  if (cloned.ok() && cloned->pid == 0) isolation::RunChild(plan);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (!cloned.ok()) return Annotate(cloned.status(), context);
  container->pid_ = cloned->pid;
  container->pidfd_.Reset(cloned->pidfd);
  error_write.Reset();

  ChildError error;
  ssize_t n;
  do {
    n = read(error_read.get(), &error, sizeof(error));
  } while (n < 0 && errno == EINTR);
  if (n == 0) return container;  // EOF: execve closed the pipe
  if (n != sizeof(error)) {
    return Annotate(ErrnoError(n < 0 ? errno : EIO, "read the error pipe of", "child"), context);
  }
  Described what =
      Describe(error, spec, *rootfs, container->cgroups_->join_paths(), *rlimits, root_dir);
  return Annotate(ErrnoError(error.err, what.op, what.object), context);
  // ~Container reaps the child and removes the cgroups and root_dir.
}

absl::StatusOr<std::unique_ptr<Container>> Container::AdoptRestored(
    std::string id, pid_t pid, std::unique_ptr<isolation::CgroupSet> cgroups,
    std::string root_dir) {
  std::unique_ptr<Container> container(new Container(std::move(id)));
  container->cgroups_ = std::move(cgroups);
  container->root_dir_ = std::move(root_dir);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    return Annotate(ErrnoError(errno, "pidfd_open", absl::StrCat(pid)),
                    absl::StrCat("container ", container->id_));
  }
  container->pid_ = pid;
  container->pidfd_.Reset(pidfd);
  return container;
}

Container::~Container() {
  if (pidfd_.valid() && !exit_.has_value()) {
    absl::Status killed = Kill();
    if (!killed.ok()) spdlog::warn("container {}: {}", id_, killed.ToString());
    siginfo_t info;
    while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED) != 0 &&
           errno == EINTR) {
    }
  }
  cgroups_.reset();  // kills what is left and removes the groups
  if (!root_dir_.empty() && rmdir(root_dir_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("container {}: rmdir `{}`: {}", id_, root_dir_, strerror(errno));
  }
}

absl::Status Container::Kill() {
  // The init's death takes its pid namespace along; the cgroup kill also
  // catches a tree caught mid-fork.
  if (pidfd_.valid()) {
    // ESRCH once the init was reaped: nothing to do.
    syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  }
  if (cgroups_ == nullptr) return absl::OkStatus();
  return Annotate(cgroups_->Kill(), absl::StrCat("container ", id_));
}

absl::Status Container::Freeze() {
  return Annotate(cgroups_->Freeze(), absl::StrCat("container ", id_));
}

absl::Status Container::Thaw() {
  return Annotate(cgroups_->Thaw(), absl::StrCat("container ", id_));
}

absl::StatusOr<ContainerUsage> Container::Usage() const {
  auto usage = cgroups_->Usage();
  if (!usage.ok()) return Annotate(usage.status(), absl::StrCat("container ", id_));
  // No io accounting group: the io of the processes alive now (and of the
  // children they reaped).
  if (usage->io_read_bytes < 0) {
    if (auto io = isolation::SumProcIo(proc_dir_, cgroups_->ProcsFile()); io.ok()) {
      usage->io_read_bytes = io->read;
      usage->io_write_bytes = io->written;
    }
  }
  // The init's net/dev is its network namespace's: every interface in it.
  if (auto net = isolation::ReadNetDev(proc_dir_, pid_); net.ok()) {
    usage->net_rx_bytes = net->rx;
    usage->net_tx_bytes = net->tx;
  }
  return usage;
}

absl::Status Container::UpdateLimits(const isolation::CgroupLimits& limits) {
  return Annotate(cgroups_->UpdateLimits(limits), absl::StrCat("container ", id_));
}

absl::StatusOr<ContainerExit> Container::Wait(std::chrono::milliseconds timeout) {
  if (exit_.has_value()) return *exit_;
  using Clock = std::chrono::steady_clock;
  const bool forever = timeout == std::chrono::milliseconds::max();
  const auto deadline = forever ? Clock::time_point::max() : Clock::now() + timeout;
  for (;;) {
    int wait_ms = -1;
    if (!forever) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      wait_ms = static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT_MAX));
    }
    struct pollfd pfd = {pidfd_.get(), POLLIN, 0};
    int ready = poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return ErrnoError(errno, "poll the pidfd of container", id_);
    if (ready > 0) break;
    if (!forever && Clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("container ", id_, ": still running after ", timeout.count(), " ms"));
    }
  }
  siginfo_t info = {};
  while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED) != 0) {
    if (errno != EINTR) return ErrnoError(errno, "waitid the pidfd of container", id_);
  }
  ContainerExit exit;
  if (info.si_code == CLD_EXITED) {
    exit.code = info.si_status;
  } else {
    exit.signaled = true;
    exit.signal = info.si_status;
  }
  exit_ = exit;
  return exit;
}

}  // namespace flotilla::sandbox
