#include "pool/linux_instance.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "checkpoint/channel.h"
#include "common/ids.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "sandbox/guest_client.h"

namespace flotilla::pool {

namespace {

constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kResetTimeout = std::chrono::seconds(3);
// A guest answers PAUSE between two frames; a busy one within milliseconds.
constexpr auto kPauseTimeout = std::chrono::seconds(5);
constexpr int kChannelFd = 3;  // the guest's --fd

class LinuxInstance final : public Instance {
 public:
  LinuxInstance(std::unique_ptr<sandbox::Container> container,
                std::unique_ptr<sandbox::GuestClient> client, const EnvironmentTemplate& t,
                const LinuxInstanceOptions& options, bool checkpointable,
                std::unique_ptr<sandbox::isolation::EgressNetwork> egress = nullptr)
      : egress_(std::move(egress)),
        container_(std::move(container)),
        client_(std::move(client)),
        template_(t),
        options_(options),
        checkpointable_(checkpointable) {}

  ~LinuxInstance() override {
    (void)client_->Shutdown();
    // Whatever the guest left (or a guest that would not exit) dies with the
    // cgroup; the Container's destructor removes it and the root directory.
    (void)container_->Kill();
    egress_.reset();  // its namespace is gone with the container
  }

  absl::StatusOr<sandbox::TaskOutcome> Run(const sandbox::TaskSpec& spec, sandbox::OutputSink& sink,
                                           const sandbox::CancelToken& cancel) override {
    const sandbox::TaskSpec task = TaskWithTemplate(spec, template_);
    const auto mode = spec.python ? sandbox::GuestClient::Mode::kPythonForkServer
                                  : sandbox::GuestClient::Mode::kExec;
    auto before = container_->Usage();
    const auto started = std::chrono::steady_clock::now();
    auto outcome = client_->Run(task, mode, sink, cancel);
    return Finish(std::move(outcome), spec, before, started);
  }

  absl::StatusOr<sandbox::TaskOutcome> ResumeRestored(const sandbox::TaskSpec& spec,
                                                      const sandbox::TaskCheckpoint& from,
                                                      sandbox::OutputSink& sink,
                                                      const sandbox::CancelToken& cancel) override {
    auto before = container_->Usage();
    const auto started = std::chrono::steady_clock::now();
    sandbox::PausePoint point{spec.id, from.stdout_data, from.stderr_data};
    return Finish(client_->ResumeRestored(spec, point, sink, cancel), spec, before, started);
  }

  absl::StatusOr<sandbox::TaskCheckpoint> Checkpoint(const std::string& image_dir) override {
    if (!options_.checkpointer)
      return absl::FailedPreconditionError(options_.checkpoint_unavailable);
    if (!checkpointable_) {
      return absl::FailedPreconditionError(
          "the sandbox shares the host's network (network egress) and cannot be checkpointed");
    }
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    if (held_) return absl::FailedPreconditionError("a checkpoint of this task is in progress");
    // The guest stops at a frame boundary first, so the image holds no
    // half-sent frame and the output received so far is exactly its count.
    ASSIGN_OR_RETURN(sandbox::PausePoint point, client_->Pause(kPauseTimeout));
    checkpoint::CheckpointRequest req;
    req.init_pid = container_->pid();
    req.id = point.task_id;
    req.channel_fd = kChannelFd;
    req.image_dir = image_dir;
    req.after = checkpoint::AfterCheckpoint::kLeaveRunning;
    auto image = options_.checkpointer->Checkpoint(req);
    if (!image.ok()) {
      client_->Resume();
      return image.status();
    }
    // Held until EndCheckpoint: the source must not run ahead of its image.
    if (absl::Status st = container_->Freeze(); !st.ok()) {
      spdlog::warn("checkpoint of {}: could not freeze the source ({}); its guest stays paused",
                   point.task_id, st.message());
    }
    held_ = true;
    sandbox::TaskCheckpoint out;
    out.image_dir = image->dir;
    out.image_bytes = image->bytes;
    out.checkpoint_us = image->took.count();
    out.stdout_data = std::move(point.stdout_data);
    out.stderr_data = std::move(point.stderr_data);
    out.memory_limit_bytes = memory_limit_.load();
    out.cpu_limit_millis = cpu_limit_.load();
    return out;
  }

  absl::Status EndCheckpoint(bool moved) override {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    if (!held_) return absl::FailedPreconditionError("no checkpoint of this task is in progress");
    held_ = false;
    if (moved) {
      // The restored copy carries on elsewhere: this one ends, and Run
      // reports that it moved rather than how it ended.
      moved_ = true;
      return container_->Kill();
    }
    absl::Status thawed = container_->Thaw();
    client_->Resume();
    return thawed;
  }

 private:
  absl::StatusOr<sandbox::TaskOutcome> Finish(absl::StatusOr<sandbox::TaskOutcome> outcome,
                                              const sandbox::TaskSpec& spec,
                                              const absl::StatusOr<sandbox::ContainerUsage>& before,
                                              std::chrono::steady_clock::time_point started) {
    if (moved_) {
      return absl::AbortedError(
          absl::StrCat("task ", spec.id, " moved to another node; this copy was stopped"));
    }
    if (!outcome.ok() && outcome.status().code() == absl::StatusCode::kDeadlineExceeded &&
        std::chrono::steady_clock::now() - started >= spec.timeout) {
      // The guest shares the sandbox's cpu quota with the task: under a fork
      // bomb it can report late. Past the task's own timeout this is a
      // time-out, not a failure to start; the sandbox (now unhealthy) is
      // destroyed on release, and its cgroup with everything in it.
      (void)container_->Kill();
      sandbox::TaskOutcome timed_out;
      timed_out.termination = sandbox::Termination::kTimedOut;
      timed_out.signal = SIGKILL;
      timed_out.wall_time_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - started)
                                   .count();
      return timed_out;
    }
    if (outcome.ok() && outcome->termination == sandbox::Termination::kSignaled && before.ok()) {
      auto after = container_->Usage();
      if (after.ok() && after->oom_kills > before->oom_kills) {
        outcome->stderr_data += absl::StrCat("\n[flotilla] killed: out of memory (limit ",
                                             memory_limit_.load() >> 20, " MiB)\n");
      }
    }
    return outcome;
  }

 public:
  bool Reset() override {
    // A resized sandbox goes back to its template's limits before it is
    // parked: the next task gets what the template promises, no more.
    if (memory_limit_.load() != template_.limits.memory_bytes ||
        cpu_limit_.load() != template_.limits.cpu_millis) {
      model::Resources back;
      back.memory_bytes = template_.limits.memory_bytes;
      back.cpu_millis = template_.limits.cpu_millis;
      if (!Resize(back).ok()) return false;
    }
    return client_->healthy() && client_->Reset(kResetTimeout).ok();
  }

  absl::Status Resize(const model::Resources& limits) override {
    sandbox::isolation::CgroupLimits l;
    l.memory_bytes = limits.memory_bytes;
    l.cpu_millis = limits.cpu_millis;
    RETURN_IF_ERROR(container_->UpdateLimits(l));
    if (l.memory_bytes > 0) memory_limit_ = l.memory_bytes;
    if (l.cpu_millis > 0) cpu_limit_ = l.cpu_millis;
    return absl::OkStatus();
  }
  bool healthy() const override { return client_->healthy(); }
  // The limits a restored instance runs under (the source's, resized or not).
  void NoteLimits(const model::Resources& limits) {
    memory_limit_ = limits.memory_bytes;
    cpu_limit_ = limits.cpu_millis;
  }

  std::optional<monitor::UsageSample> Usage() const override {
    auto u = container_->Usage();
    if (!u.ok()) return std::nullopt;
    monitor::UsageSample s;
    s.t_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
    s.cpu_usage_us = u->cpu_usage_us;
    s.memory_bytes = u->memory_current_bytes;
    s.memory_limit_bytes = memory_limit_.load();
    s.cpu_limit_millis = cpu_limit_.load();
    s.pids = u->pids_current;
    s.io_read_bytes = u->io_read_bytes;
    s.io_write_bytes = u->io_write_bytes;
    s.net_rx_bytes = u->net_rx_bytes;
    s.net_tx_bytes = u->net_tx_bytes;
    return s;
  }

 private:
  std::unique_ptr<sandbox::isolation::EgressNetwork> egress_;  // set for network egress
  std::unique_ptr<sandbox::Container> container_;
  std::unique_ptr<sandbox::GuestClient> client_;
  const EnvironmentTemplate& template_;
  const LinuxInstanceOptions& options_;
  const bool checkpointable_;
  std::mutex checkpoint_mu_;
  bool held_ = false;  // guarded by checkpoint_mu_: between Checkpoint and EndCheckpoint
  std::atomic<bool> moved_{false};  // EndCheckpoint(moved) killed it
  // The limits in force: the template's until Resize changes them.
  std::atomic<int64_t> memory_limit_{template_.limits.memory_bytes};
  std::atomic<int64_t> cpu_limit_{template_.limits.cpu_millis};
};

// Copies the guest binary to <root>/<fnv-1a of its bytes>/flotilla-guest
// (once; a copy already there is kept) and returns that path.
absl::StatusOr<std::string> StageGuest(const std::string& binary, const std::string& root) {
  std::ifstream in(binary, std::ios::binary);
  if (!in) return ErrnoError(errno, "open", binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  char hex[17];
  snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  const std::string dir = absl::StrCat(root, "/", hex);
  const std::string path = dir + "/flotilla-guest";
  std::error_code ec;
  if (std::filesystem::file_size(path, ec) == bytes.size() && !ec) return path;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
  const std::string tmp = absl::StrCat(path, ".", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) return ErrnoError(errno, "write", tmp);
  }
  chmod(tmp.c_str(), 0755);
  chmod(dir.c_str(), 0755);
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(errno, "rename", tmp);
  return path;
}

class LinuxInstanceFactory final : public InstanceFactory {
 public:
  LinuxInstanceFactory(LinuxInstanceOptions options, int guest_fd)
      : options_(std::move(options)), guest_fd_(guest_fd) {
    if (options_.checkpointer) {
      auto staged = StageGuest(options_.guest_binary, options_.guest_stage_root);
      if (staged.ok()) {
        staged_guest_ = *staged;
      } else {
        spdlog::warn(
            "staging the guest for checkpointable sandboxes: {}; their checkpoints will fail",
            staged.status().message());
      }
    }
  }
  ~LinuxInstanceFactory() override { close(guest_fd_); }

  absl::StatusOr<std::unique_ptr<Instance>> Create(const EnvironmentTemplate& t,
                                                   const InstanceOptions& o) override {
    if (o.network_egress && t.network != NetworkPolicy::kEgress) {
      return absl::FailedPreconditionError(absl::StrCat(
          "template '", t.name, "' does not allow network egress (its network policy is none)"));
    }
    sandbox::ContainerSpec spec;
    spec.id = NewId("sbx-");
    if (t.rootfs != "host") spec.template_rootfs = t.rootfs;
    spec.workdir = "/work";
    spec.workdir_bytes = static_cast<uint64_t>(t.limits.work_bytes);
    spec.tmp_bytes = static_cast<uint64_t>(t.limits.tmp_bytes);
    // Egress too gets a namespace of its own, connected below; the host's
    // would put the task beside the control plane's loopback ports.
    spec.network = sandbox::NetworkNamespace::kNew;
    spec.limits.cpu_millis = t.limits.cpu_millis;
    spec.limits.memory_bytes = t.limits.memory_bytes;
    spec.limits.pids_max = t.limits.pids;
    spec.uid = options_.uid;
    spec.gid = options_.uid;
    spec.program_fd = guest_fd_;
    spec.argv = {"flotilla-guest", "--fd", "3", "--workdir", "/work"};
    if (t.runtime == "python3") {
      spec.argv.push_back("--python");
      spec.argv.push_back("/usr/bin/python3");
      if (!t.python_preload.empty()) {
        spec.argv.push_back("--python-preload");
        spec.argv.push_back(absl::StrJoin(t.python_preload, ","));
      }
    }
    spec.env = t.env;
    std::unique_ptr<sandbox::Container> container;
    int agent_end = -1;
    // slirp4netns, outside the sandbox, holds its tap device: CRIU could
    // not move that.
    const bool checkpointable = !o.network_egress;
    if (checkpointable && !staged_guest_.empty() && spec.template_rootfs.empty()) {
      const std::string dir = staged_guest_.substr(0, staged_guest_.rfind('/'));
      spec.host_binds.push_back(dir);
      spec.program_fd = -1;
      spec.program_path = staged_guest_;
    }
    if (checkpointable) {
      // The channel is made inside the sandbox's own net namespace, where
      // CRIU can see it (checkpoint/channel.h).
      auto launched = checkpoint::LaunchCheckpointable(spec, options_.layout, kChannelFd);
      if (!launched.ok())
        return Annotate(launched.status(), absl::StrCat("template '", t.name, "'"));
      container = std::move(launched->container);
      agent_end = launched->channel.Release();
    } else {
      int fds[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        return ErrnoError(errno, "socketpair");
      }
      spec.fds = {{fds[1], kChannelFd}};
      auto launched = sandbox::Container::Launch(spec, options_.layout);
      close(fds[1]);
      if (!launched.ok()) {
        close(fds[0]);
        return Annotate(launched.status(), absl::StrCat("template '", t.name, "'"));
      }
      container = std::move(*launched);
      agent_end = fds[0];
    }
    auto client = std::make_unique<sandbox::GuestClient>(agent_end);
    if (absl::Status st = client->Handshake(kHandshakeTimeout); !st.ok()) {
      (void)container->Kill();
      return Annotate(st, absl::StrCat("template '", t.name, "': the guest did not start"));
    }
    std::unique_ptr<sandbox::isolation::EgressNetwork> egress;
    if (o.network_egress) {
      auto attached = sandbox::isolation::EgressNetwork::Attach(container->pid(), options_.egress);
      if (!attached.ok()) {
        (void)container->Kill();
        return Annotate(attached.status(), absl::StrCat("template '", t.name, "': network egress"));
      }
      egress = std::move(*attached);
    }
    return std::unique_ptr<Instance>(new LinuxInstance(
        std::move(container), std::move(client), t, options_, checkpointable, std::move(egress)));
  }

  absl::StatusOr<std::unique_ptr<Instance>> Restore(const EnvironmentTemplate& t,
                                                    const sandbox::TaskCheckpoint& from) override {
    if (!options_.checkpointer)
      return absl::FailedPreconditionError(options_.checkpoint_unavailable);
    checkpoint::RestoreRequest req;
    req.image_dir = from.image_dir;
    req.id = NewId("sbx-");
    req.layout = options_.layout;
    req.limits.cpu_millis = from.cpu_limit_millis > 0 ? from.cpu_limit_millis : t.limits.cpu_millis;
    req.limits.memory_bytes =
        from.memory_limit_bytes > 0 ? from.memory_limit_bytes : t.limits.memory_bytes;
    req.limits.pids_max = t.limits.pids;
    // The image may bind only what this agent's own sandboxes bind.
    if (!staged_guest_.empty()) {
      req.manifest_policy.bind_sources.push_back(staged_guest_.substr(0, staged_guest_.rfind('/')));
    }
    if (t.rootfs != "host") req.manifest_policy.bind_sources.push_back(t.rootfs);
    ASSIGN_OR_RETURN(checkpoint::RestoredSandbox restored, options_.checkpointer->Restore(req));
    auto client = std::make_unique<sandbox::GuestClient>(restored.channel.Release());
    auto instance = std::make_unique<LinuxInstance>(std::move(restored.container),
                                                    std::move(client), t, options_, true);
    model::Resources limits;
    limits.memory_bytes = req.limits.memory_bytes;
    limits.cpu_millis = req.limits.cpu_millis;
    instance->NoteLimits(limits);
    return std::unique_ptr<Instance>(std::move(instance));
  }

 private:
  const LinuxInstanceOptions options_;
  const int guest_fd_;
  std::string staged_guest_;  // empty: sandboxes run the guest from guest_fd_
};

// The directories that hold <cgroup_parent>/<key> in every hierarchy.
std::vector<std::string> CgroupBases(const sandbox::HostLayout& l, const std::string& parent) {
  std::vector<std::string> out;
  auto join = [&](const std::string& mount, const std::string& own) {
    std::string own_dir = own == "/" ? "" : own;
    out.push_back(mount + own_dir + "/" + parent);
  };
  if (!l.cgroups.unified.empty()) join(l.cgroups.unified, l.cgroups.own_unified);
  for (const auto& [ctrl, mount] : l.cgroups.v1) {
    auto own = l.cgroups.own_v1.find(ctrl);
    join(mount, own == l.cgroups.own_v1.end() ? "/" : own->second);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool PidAlive(const std::string& key) {
  auto dot = key.rfind('.');
  if (dot == std::string::npos) return true;  // not ours: leave it
  int pid = 0;
  try {
    pid = std::stoi(key.substr(dot + 1));
  } catch (...) {
    return true;
  }
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

// Kills every process in `dir` and its sub-groups, then removes them, deepest first.
void RemoveCgroupTree(const std::filesystem::path& dir) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory()) RemoveCgroupTree(entry.path());
  }
  std::ofstream(dir / "cgroup.kill") << "1";  // v2; a no-op error on v1
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::ifstream procs(dir / "cgroup.procs");
    bool any = false;
    for (int pid; procs >> pid;) {
      kill(pid, SIGKILL);
      any = true;
    }
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (!any && errno != EBUSY) return;
    usleep(20000);
  }
}

}  // namespace

std::string SandboxRootKey(const std::string& node_id) {
  return absl::StrCat(node_id, ".", getpid());
}

int CleanStaleSandboxRoots(const sandbox::HostLayout& detected, const std::string& runtime_root,
                           const std::string& cgroup_parent_root) {
  std::set<std::string> stale;
  std::error_code ec;
  std::vector<std::string> bases = CgroupBases(detected, cgroup_parent_root);
  for (const auto& base : bases) {
    for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
      if (e.is_directory() && !PidAlive(e.path().filename())) stale.insert(e.path().filename());
    }
  }
  for (const auto& e : std::filesystem::directory_iterator(runtime_root, ec)) {
    if (e.is_directory() && !PidAlive(e.path().filename())) stale.insert(e.path().filename());
  }
  for (const auto& key : stale) {
    for (const auto& base : bases) RemoveCgroupTree(std::filesystem::path(base) / key);
    // Container roots are empty mount points on the host (their mounts live
    // in the containers' own mount namespaces), so plain removal is safe.
    std::filesystem::remove_all(std::filesystem::path(runtime_root) / key, ec);
    spdlog::info("removed the sandboxes left by a dead agent ({})", key);
  }
  return static_cast<int>(stale.size());
}

void RemoveSandboxRoot(const sandbox::HostLayout& detected) {
  for (const auto& base : CgroupBases(detected, detected.cgroup_parent)) {
    RemoveCgroupTree(base);
  }
  std::error_code ec;
  std::filesystem::remove_all(detected.runtime_dir, ec);
}

absl::StatusOr<std::unique_ptr<InstanceFactory>> NewLinuxInstanceFactory(
    LinuxInstanceOptions options) {
  int fd = open(options.guest_binary.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    return Annotate(ErrnoError(errno, "open", options.guest_binary),
                    "the sandbox guest binary is missing (set guest_binary in the agent config)");
  }
  auto layout = sandbox::DetectHostLayout(options.layout);
  if (!layout.ok()) {
    close(fd);
    return Annotate(layout.status(), "detecting the cgroup layout");
  }
  options.layout = *layout;
  return std::unique_ptr<InstanceFactory>(new LinuxInstanceFactory(std::move(options), fd));
}

}  // namespace flotilla::pool
