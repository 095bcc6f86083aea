#include "pool/microvm_instance.h"

#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "sandbox/guest_client.h"
#include "sandbox/microvm/disks.h"

namespace flotilla::pool {
namespace {

using Clock = std::chrono::steady_clock;
using sandbox::microvm::MicroVm;
using sandbox::microvm::MicroVmConfig;

// Roomier than a container's: a TCG guest on a loaded host is slow.
constexpr auto kResetTimeout = std::chrono::seconds(10);
constexpr auto kSeedTimeout = std::chrono::seconds(2);
constexpr size_t kSeedBytes = 64;
constexpr auto kScratchImageTimeout = std::chrono::seconds(20);

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

class MicroVmInstance final : public Instance {
 public:
  MicroVmInstance(std::unique_ptr<MicroVm> vm, std::unique_ptr<sandbox::GuestClient> client,
                  const EnvironmentTemplate& t)
      : vm_(std::move(vm)), client_(std::move(client)), template_(t) {}

  ~MicroVmInstance() override {
    (void)client_->Shutdown();
    vm_->Kill();
  }

  absl::StatusOr<sandbox::TaskOutcome> Run(const sandbox::TaskSpec& spec, sandbox::OutputSink& sink,
                                           const sandbox::CancelToken& cancel) override {
    const sandbox::TaskSpec task = TaskWithTemplate(spec, template_);
    const auto mode = spec.python ? sandbox::GuestClient::Mode::kPythonForkServer
                                  : sandbox::GuestClient::Mode::kExec;
    const auto started = Clock::now();
    auto outcome = client_->Run(task, mode, sink, cancel);
    if (!outcome.ok() && outcome.status().code() == absl::StatusCode::kDeadlineExceeded &&
        Clock::now() - started >= spec.timeout) {
      // The guest did not report within the timeout and its graces: the VM
      // itself is stuck or starved. Killing QEMU is the kill path.
      vm_->Kill();
      sandbox::TaskOutcome timed_out;
      timed_out.termination = sandbox::Termination::kTimedOut;
      timed_out.signal = SIGKILL;
      timed_out.wall_time_us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
      return timed_out;
    }
    if (outcome.ok() && outcome->termination == sandbox::Termination::kTimedOut) {
      // Whatever the task left in guest memory or kernel state stays
      // there; a VM that hit its timeout is not handed to anyone again.
      poisoned_ = true;
    }
    if (outcome.ok() && outcome->termination == sandbox::Termination::kSignaled &&
        outcome->signal == SIGKILL) {
      // The guest kernel's OOM killer is the usual sender inside a VM.
      outcome->stderr_data +=
          absl::StrCat("\n[flotilla] killed (SIGKILL; in a micro-VM of ", vm_->config().memory_mib,
                       " MiB this is usually the guest's OOM killer)\n");
    }
    return outcome;
  }

  bool Reset() override {
    if (poisoned_ || !client_->healthy() || !vm_->running()) return false;
    return client_->Reset(kResetTimeout).ok();
  }

  bool healthy() const override { return !poisoned_ && client_->healthy(); }

  std::optional<monitor::UsageSample> Usage() const override {
    auto rss = vm_->RssBytes();
    if (!rss.ok()) return std::nullopt;
    monitor::UsageSample s;
    s.memory_bytes = *rss;
    return s;
  }

 private:
  std::unique_ptr<MicroVm> vm_;
  std::unique_ptr<sandbox::GuestClient> client_;
  const EnvironmentTemplate template_;
  std::atomic<bool> poisoned_{false};
};

class Factory final : public MicroVmInstanceFactory {
 public:
  Factory(MicroVmInstanceOptions options, sandbox::microvm::AccelProbe accel,
          std::optional<sandbox::microvm::JailConfig> jail, std::string jail_summary)
      : options_(std::move(options)),
        accel_(std::move(accel)),
        jail_(std::move(jail)),
        jail_summary_(std::move(jail_summary)) {}

  ~Factory() override {
    std::error_code ec;
    std::filesystem::remove_all(options_.run_root, ec);
  }

  MicroVmStatus status() const override {
    std::lock_guard<std::mutex> lock(stats_mu_);
    MicroVmStatus s = stats_;
    s.accel = accel_.accel;
    s.accel_reason = accel_.reason;
    s.jailed = jail_.has_value();
    s.jail = jail_summary_;
    return s;
  }

  absl::StatusOr<std::unique_ptr<Instance>> Create(const EnvironmentTemplate& t,
                                                   const InstanceOptions& o) override {
    if (o.network_egress) {
      return absl::FailedPreconditionError(
          absl::StrCat("template '", t.name,
                       "' runs in micro-VMs, which have no network yet; "
                       "use a linux template for network egress"));
    }
    MicroVmConfig config = BaseConfig(t);
    if (!config.rootfs.empty()) {
      auto scratch = EnsureScratchImage(t.limits.work_bytes);
      if (!scratch.ok()) {
        Count(&MicroVmStatus::failures);
        return Annotate(scratch.status(), absl::StrCat("template '", t.name, "'"));
      }
      config.scratch_image = *scratch;
    }
    std::string snapshot;
    if (options_.snapshots) {
      auto made = EnsureSnapshot(config);
      if (!made.ok()) {
        Count(&MicroVmStatus::failures);
        return Annotate(made.status(), absl::StrCat("template '", t.name, "'"));
      }
      snapshot = made->state;
      if (!made->memory.empty()) {
        config.memory = MicroVmConfig::Memory::kPrivateFile;
        config.memory_file = made->memory;
      }
    }
    config.run_dir = NewRunDir("vm");
    config.incoming = snapshot;
    const auto started = Clock::now();
    const auto deadline =
        started + (snapshot.empty() ? options_.boot_timeout : options_.restore_timeout);
    // Only a VM no request waits for: one that is would pay for it.
    const auto warm_up = o.ahead_of_demand && !config.rootfs.empty()
                             ? options_.warm_up
                             : MicroVmInstanceOptions::WarmUp::kNone;
    auto instance = Provision(config, t, deadline);
    const double provision_ms = MsSince(started);
    const auto warm_started = Clock::now();
    if (instance.ok() && warm_up == MicroVmInstanceOptions::WarmUp::kPython) {
      if (absl::Status st = WarmUpPython(**instance, deadline); !st.ok()) instance = st;
    }
    std::lock_guard<std::mutex> lock(stats_mu_);
    if (!instance.ok()) {
      ++stats_.failures;
      return Annotate(instance.status(), absl::StrCat("template '", t.name, "'"));
    }
    if (snapshot.empty()) {
      ++stats_.cold_boots;
      stats_.last_boot_ms = provision_ms;
    } else {
      ++stats_.restores;
      stats_.last_restore_ms = provision_ms;
    }
    if (warm_up != MicroVmInstanceOptions::WarmUp::kNone) {
      ++stats_.warm_ups;
      stats_.last_warm_up_ms = MsSince(warm_started);
    }
    return instance;
  }

 private:
  MicroVmConfig BaseConfig(const EnvironmentTemplate& t) const {
    MicroVmConfig c;
    c.qemu = options_.qemu;
    c.kernel = options_.kernel;
    c.initrd = options_.initrd;
    c.accel = accel_.accel;
    c.memory_mib = VmMemoryMib(t);
    c.vcpus = VmCpus(t);
    c.jail = jail_;
    // A template with a root directory of its own has no image yet.
    if (t.rootfs == "host") c.rootfs = options_.rootfs;
    return c;
  }

  // The empty scratch image of `bytes`, made the first time it is asked for.
  absl::StatusOr<std::string> EnsureScratchImage(int64_t bytes) {
    const int64_t mib = std::max(sandbox::microvm::kMinScratchBytes, bytes + (1 << 20) - 1) >> 20;
    std::lock_guard<std::mutex> lock(scratch_mu_);
    auto it = scratch_images_.find(mib);
    if (it != scratch_images_.end()) return it->second;
    const std::string path = absl::StrCat(options_.run_root, "/scratch-", mib, "m.img");
    RETURN_IF_ERROR(
        sandbox::microvm::MakeScratchImage(path, mib << 20, Clock::now() + kScratchImageTimeout));
    scratch_images_.emplace(mib, path);
    return path;
  }

  std::string NewRunDir(const char* what) {
    return absl::StrCat(options_.run_root, "/", what, "-", next_id_.fetch_add(1));
  }

  void Count(uint64_t MicroVmStatus::*field) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    ++(stats_.*field);
  }

  // Starts QEMU (cold or restoring), connects the guest channel, shakes
  // hands and, after a restore, seeds the guest's clock and randomness.
  absl::StatusOr<std::unique_ptr<Instance>> Provision(const MicroVmConfig& config,
                                                      const EnvironmentTemplate& t,
                                                      Clock::time_point deadline) {
    ASSIGN_OR_RETURN(std::unique_ptr<MicroVm> vm, MicroVm::Start(config, deadline));
    auto fd = vm->ConnectAgent(deadline);
    if (!fd.ok()) return fd.status();
    auto client = std::make_unique<sandbox::GuestClient>(fd->Release());
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (absl::Status st = client->Handshake(std::max(left, std::chrono::milliseconds(1)));
        !st.ok()) {
      return absl::Status(st.code(), absl::StrCat("the VM's guest did not answer: ", st.message(),
                                                  "; console: ", vm->ConsoleTail(512)));
    }
    if (!config.incoming.empty()) {
      guest::Seed seed;
      seed.realtime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
      seed.entropy.resize(kSeedBytes);
      if (getrandom(seed.entropy.data(), seed.entropy.size(), 0) !=
          static_cast<ssize_t>(seed.entropy.size())) {
        return ErrnoError(errno, "getrandom", "the guest's seed");
      }
      RETURN_IF_ERROR(client->Seed(seed, kSeedTimeout));
    }
    return std::unique_ptr<Instance>(new MicroVmInstance(std::move(vm), std::move(client), t));
  }

  // Runs the two Python paths once (see MicroVmInstanceOptions::warm_up),
  // as a request would: through the instance, then its RESET.
  static absl::Status WarmUpPython(Instance& vm, Clock::time_point deadline) {
    class Discard : public sandbox::OutputSink {
     public:
      void OnOutput(sandbox::Stream, int64_t, std::string_view) override {}
    } sink;
    sandbox::CancelToken cancel;
    sandbox::TaskSpec exec;
    exec.id = "warm-up";
    exec.argv = {"python3", "-c", "pass"};
    sandbox::TaskSpec function = exec;
    function.argv = {"python3", "main.py"};
    function.python = true;
    function.files.push_back({"main.py", "pass\n", 0644});
    for (sandbox::TaskSpec* spec : {&exec, &function}) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= std::chrono::milliseconds(0)) {
        return absl::DeadlineExceededError("the VM's Python warm-up did not finish in time");
      }
      spec->timeout = left;
      auto r = vm.Run(*spec, sink, cancel);
      if (!r.ok()) return Annotate(r.status(), "Python warm-up");
      if (r->termination != sandbox::Termination::kExited || r->exit_code != 0) {
        return absl::InternalError(absl::StrCat("Python warm-up `", absl::StrJoin(spec->argv, " "),
                                                "` failed: ", r->stderr_data.substr(0, 300)));
      }
      if (!vm.Reset()) return absl::InternalError("Python warm-up: the VM did not reset");
    }
    return absl::OkStatus();
  }

  struct Snapshot {
    std::string state;   // the migration stream
    std::string memory;  // the guest RAM file; "" when it is in the stream
  };

  // Returns the snapshot of `config`'s shape, booting and snapshotting a VM
  // the first time. One boot per shape even when many Creates race.
  absl::StatusOr<Snapshot> EnsureSnapshot(const MicroVmConfig& shape) {
    // The disks are part of the shape: a snapshot is restored only with
    // the drives it was taken with.
    std::string key = absl::StrCat(shape.memory_mib, "m", shape.vcpus, "c");
    if (!shape.rootfs.empty()) {
      // Which image, too: a rebuilt one (a new inode, by rename) must not
      // be read through a snapshot whose guest cached the old one's blocks.
      struct stat st;
      if (stat(shape.rootfs.c_str(), &st) != 0) return ErrnoError(errno, "stat", shape.rootfs);
      absl::StrAppend(&key, "-root", st.st_ino, ".", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
    }
    if (!shape.scratch_image.empty()) {
      absl::StrAppend(&key, "-", std::filesystem::path(shape.scratch_image).stem().string());
    }
    std::shared_ptr<SnapshotSlot> slot;
    {
      std::lock_guard<std::mutex> lock(snapshots_mu_);
      auto& s = snapshots_[key];
      if (!s) s = std::make_shared<SnapshotSlot>();
      slot = s;
    }
    std::lock_guard<std::mutex> lock(slot->mu);
    if (!slot->snapshot.state.empty()) return slot->snapshot;
    const auto started = Clock::now();
    const auto deadline = started + options_.boot_timeout;
    MicroVmConfig config = shape;
    config.run_dir = NewRunDir("boot");
    Snapshot made;
    made.state = absl::StrCat(options_.run_root, "/", key, ".snap");
    if (options_.share_snapshot_memory) {
      made.memory = absl::StrCat(options_.run_root, "/", key, ".ram");
      config.memory = MicroVmConfig::Memory::kSharedFile;
      config.memory_file = made.memory;
    }
    auto boot_and_snapshot = [&]() -> absl::Status {
      ASSIGN_OR_RETURN(std::unique_ptr<MicroVm> vm, MicroVm::Start(config, deadline));
      RETURN_IF_ERROR(vm->WaitForConsole(sandbox::microvm::kGuestWaitingMarker, deadline));
      absl::Status st = vm->Snapshot(made.state, deadline);
      // The memory file is final once its only writer is gone.
      vm->Kill();
      return st;
    };
    if (absl::Status st = boot_and_snapshot(); !st.ok()) {
      unlink(made.state.c_str());
      if (!made.memory.empty()) unlink(made.memory.c_str());
      return st;
    }
    slot->snapshot = made;
    const std::string path = made.state;
    spdlog::info("micro-VM snapshot {} ({} MiB, {} vCPU, {}) made in {:.0f} ms", path,
                 shape.memory_mib, shape.vcpus, sandbox::microvm::ToString(shape.accel),
                 MsSince(started));
    std::lock_guard<std::mutex> stats_lock(stats_mu_);
    ++stats_.snapshots_made;
    stats_.last_snapshot_ms = MsSince(started);
    return made;
  }

  struct SnapshotSlot {
    std::mutex mu;
    Snapshot snapshot;  // guarded by mu; empty until made
  };

  const MicroVmInstanceOptions options_;
  const sandbox::microvm::AccelProbe accel_;
  const std::optional<sandbox::microvm::JailConfig> jail_;
  const std::string jail_summary_;
  std::atomic<uint64_t> next_id_{1};
  std::mutex scratch_mu_;
  std::map<int64_t, std::string> scratch_images_;  // MiB → image; guarded by scratch_mu_
  std::mutex snapshots_mu_;
  std::map<std::string, std::shared_ptr<SnapshotSlot>> snapshots_;  // guarded by snapshots_mu_
  mutable std::mutex stats_mu_;
  MicroVmStatus stats_;  // guarded by stats_mu_
};

// The jail's configuration, proven by starting a jailed probe VM.
absl::StatusOr<sandbox::microvm::JailConfig> MakeJail(const MicroVmInstanceOptions& options,
                                                      MicroVmConfig probe) {
  sandbox::HostLayout paths;
  paths.runtime_dir = options.run_root + "/roots";
  sandbox::microvm::JailConfig jail;
  jail.uid = options.jail_uid;
  jail.gid = options.jail_gid;
  ASSIGN_OR_RETURN(jail.layout, sandbox::DetectHostLayout(paths));
  probe.jail = jail;
  const auto started = Clock::now();
  RETURN_IF_ERROR(sandbox::microvm::ProbeJail(probe, started + options.jail_probe_timeout));
  spdlog::info("micro-VMs: QEMU jailed (uid {}, cgroups {}); jailed probe VM in {:.0f} ms",
               jail.uid, sandbox::isolation::CgroupModeName(jail.layout.cgroups.mode),
               MsSince(started));
  return jail;
}

}  // namespace

int64_t VmMemoryMib(const EnvironmentTemplate& t) {
  return std::max<int64_t>(128, (t.limits.memory_bytes + (1 << 20) - 1) >> 20);
}

int VmCpus(const EnvironmentTemplate& t) {
  return static_cast<int>(std::max<int64_t>(1, (t.limits.cpu_millis + 999) / 1000));
}

absl::StatusOr<std::unique_ptr<MicroVmInstanceFactory>> NewMicroVmInstanceFactory(
    MicroVmInstanceOptions options) {
  for (const auto& [what, path] :
       {std::pair<const char*, std::string>{"guest kernel", options.kernel},
        {"guest initramfs", options.initrd},
        {"guest root image", options.rootfs.empty() ? "-" : options.rootfs}}) {
    if (path == "-") continue;  // no root image: optional
    if (path.empty() || access(path.c_str(), R_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " `", path,
                       "` is not readable; run scripts/fetch-guest-kernel and build the "
                       "guest-initramfs and guest-rootfs targets"));
    }
  }
  if (options.run_root.empty()) return absl::InvalidArgumentError("run_root: empty");
  std::error_code ec;
  std::filesystem::create_directories(options.run_root, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("mkdir `", options.run_root, "`: ", ec.message()));
  }
  chmod(options.run_root.c_str(), 0700);
  MicroVmConfig probe;
  probe.qemu = options.qemu;
  probe.kernel = options.kernel;
  probe.initrd = options.initrd;
  probe.memory_mib = 128;
  probe.run_dir = options.run_root + "/probe";
  std::string jail_summary;
  if (options.jail == MicroVmInstanceOptions::Jail::kRequired) {
    auto jail = MakeJail(options, probe);
    if (!jail.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "micro-VMs refused: QEMU cannot be jailed on this host (", jail.status().message(),
          "); fix that, or turn the micro-VM jail off to run QEMU unjailed"));
    }
    probe.jail = *jail;
    jail_summary = absl::StrCat("namespaces, cgroup, uid ", jail->uid,
                                ", no capabilities, no_new_privs, seccomp (qemu -sandbox ",
                                sandbox::microvm::kQemuSandboxOption, ")");
  } else {
    jail_summary = "off by configuration: QEMU runs with the agent's privileges";
    spdlog::warn(
        "micro-VMs: the QEMU jail is off by configuration; QEMU runs with the "
        "agent's privileges and namespaces");
  }
  sandbox::microvm::AccelProbe accel;
  if (options.accel) {
    accel.accel = *options.accel;
    accel.reason = "set by configuration";
  } else {
    accel = sandbox::microvm::ProbeAccel(probe, options.probe_timeout);
    spdlog::info("micro-VMs: {} ({}; probe {} ms)", sandbox::microvm::ToString(accel.accel),
                 accel.reason.empty() ? "a KVM boot worked" : accel.reason, accel.probe_ms);
  }
  std::optional<sandbox::microvm::JailConfig> jail = probe.jail;
  return std::unique_ptr<MicroVmInstanceFactory>(
      new Factory(std::move(options), std::move(accel), std::move(jail), std::move(jail_summary)));
}

}  // namespace flotilla::pool
