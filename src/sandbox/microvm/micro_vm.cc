#include "sandbox/microvm/micro_vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "sandbox/microvm/disks.h"

namespace flotilla::sandbox::microvm {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kConsoleScanLimit = 1 << 20;
constexpr size_t kMaxQmpLine = 1 << 20;
constexpr auto kPollStep = std::chrono::milliseconds(5);

int MsUntil(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}

std::string ReadTail(const std::string& path, size_t max) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  struct stat st;
  if (fstat(fd.get(), &st) < 0) return "";
  off_t from = st.st_size > static_cast<off_t>(max) ? st.st_size - static_cast<off_t>(max) : 0;
  std::string out(static_cast<size_t>(st.st_size - from), '\0');
  ssize_t n = pread(fd.get(), out.data(), out.size(), from);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string ResolveInPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = getenv("PATH");
  std::string search = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= search.size()) {
    size_t colon = search.find(':', start);
    if (colon == std::string::npos) colon = search.size();
    std::string candidate = search.substr(start, colon - start) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = colon + 1;
  }
  return name;
}

// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not
// the process. VMs outlive the pool and worker threads that create them, so
// every QEMU is forked by this one thread, which lives as long as the
// process (joined by the static destructor at exit).
class Launcher {
 public:
  static Launcher& Get() {
    static Launcher launcher;
    return launcher;
  }

  absl::StatusOr<pid_t> Spawn(std::vector<std::string> argv, int log_fd) {
    return Run([&argv, log_fd] { return SpawnHere(argv, log_fd); });
  }

  // Runs `f` on the launcher thread and returns its result: whatever it
  // forks gets PR_SET_PDEATHSIG against a thread that lives as long as the
  // process.
  template <typename F>
  auto Run(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The caller waits for the result below, so the task outlives this.
      queue_.push_back([&task] { task(); });
    }
    cv_.notify_one();
    return result.get();
  }

 private:
  Launcher() : thread_([this] { Loop(); }) {}
  ~Launcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }

  static absl::StatusOr<pid_t> SpawnHere(const std::vector<std::string>& args, int log_fd) {
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!devnull.valid()) return ErrnoError(errno, "open", "/dev/null");
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return ErrnoError(errno, "fork", "qemu");
    if (pid == 0) {
      // Async-signal-safe calls only from here to execv.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      if (dup2(devnull.get(), 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) _exit(127);
      close_range(3, ~0u, 0);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return pid;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  std::thread thread_;
};

absl::StatusOr<UniqueFd> ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path `", path, "` is longer than ",
                                                   sizeof(addr.sun_path) - 1,
                                                   " bytes; use a shorter run directory"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket", path);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    return ErrnoError(errno, "connect", path);
  }
  return fd;
}

// Where a jailed QEMU finds its files: each is bound at its path below
// /vm in the jail's root (LaunchJailed).
constexpr char kJailKernel[] = "/vm/vmlinux";
constexpr char kJailInitrd[] = "/vm/initrd";
constexpr char kJailMemory[] = "/vm/memory";
constexpr char kJailRootfs[] = "/vm/rootfs";
constexpr char kScratchFile[] = "scratch.img";  // in the run directory
constexpr char kJailRunDir[] = "/vm/run";

// `c` as the jailed QEMU sees it.
MicroVmConfig JailView(const MicroVmConfig& c) {
  MicroVmConfig view = c;
  view.kernel = kJailKernel;
  view.initrd = kJailInitrd;
  view.run_dir = kJailRunDir;
  if (!view.memory_file.empty()) view.memory_file = kJailMemory;
  if (!view.rootfs.empty()) view.rootfs = kJailRootfs;
  return view;
}

std::atomic<uint64_t> next_jail_id{1};

// Gives the jail's uid what QEMU must write: its run directory (sockets,
// console) and the memory file, made here when it does not exist yet so
// that there is something to bind.
absl::Status PrepareJailFiles(const MicroVmConfig& config) {
  const JailConfig& jail = *config.jail;
  if (chown(config.run_dir.c_str(), jail.uid, jail.gid) != 0) {
    return ErrnoError(errno, "chown", config.run_dir);
  }
  if (config.memory == MicroVmConfig::Memory::kAnonymous) return absl::OkStatus();
  UniqueFd memory(
      open(config.memory_file.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!memory.valid()) return ErrnoError(errno, "open", config.memory_file);
  if (fchown(memory.get(), jail.uid, jail.gid) != 0) {
    return ErrnoError(errno, "chown", config.memory_file);
  }
  return absl::OkStatus();
}

// Starts QEMU as the init of a Container (namespaces, root, cgroup, uid,
// no capabilities, no_new_privs, seccomp): the jail. Runs on the launcher
// thread, for PR_SET_PDEATHSIG.
absl::StatusOr<std::unique_ptr<Container>> LaunchJailed(const MicroVmConfig& config, int log_fd) {
  const JailConfig& jail = *config.jail;
  const std::string qemu = ResolveInPath(config.qemu);
  UniqueFd program(open(qemu.c_str(), O_PATH | O_CLOEXEC));
  if (!program.valid()) return ErrnoError(errno, "open", qemu);
  ContainerSpec spec;
  // Unique among this host's jails: the id names the cgroup and root dir.
  spec.id = absl::StrCat("qemu-", getpid(), "-", next_jail_id.fetch_add(1));
  // QEMU's binary, its libraries and its firmware (/usr/share/qemu); with
  // merged /usr, /lib and /lib64 are symlinks into it.
  spec.host_binds = {"/usr", "/lib", "/lib64"};
  spec.hostname = "vm";
  spec.user_name = "qemu";
  spec.uid = jail.uid;
  spec.gid = jail.gid;
  // QEMU writes nothing but its run directory: keep the tmpfs mounts tiny.
  spec.workdir_bytes = 1 << 20;
  spec.tmp_bytes = 1 << 20;
  spec.shm_bytes = 1 << 20;
  spec.dev_pts = false;
  using Access = isolation::BindMount::Access;
  // Bind sources must be absolute; a configuration may name relative ones.
  auto absolute = [](const std::string& path) {
    std::error_code ec;
    std::filesystem::path p = std::filesystem::absolute(path, ec);
    return ec ? path : p.lexically_normal().string();
  };
  spec.binds = {{absolute(config.kernel), kJailKernel, Access::kReadOnly},
                {absolute(config.initrd), kJailInitrd, Access::kReadOnly},
                {absolute(config.run_dir), kJailRunDir, Access::kWritable}};
  if (!config.rootfs.empty()) {
    // Read-only twice: the bind, and QEMU's readonly=on, which also makes
    // the guest's disk read-only (VIRTIO_BLK_F_RO).
    spec.binds.push_back({absolute(config.rootfs), kJailRootfs, Access::kReadOnly});
  }
  if (config.memory != MicroVmConfig::Memory::kAnonymous) {
    // Writable even for a copy-on-write restore: QEMU 7.2 opens the file
    // O_RDWR (its readonly= makes the guest's RAM read-only too). Its pages
    // still reach no other VM: share=off maps them MAP_PRIVATE.
    spec.binds.push_back({absolute(config.memory_file), kJailMemory, Access::kWritable});
  }
  if (config.accel == Accel::kKvm) spec.devices.push_back({"/dev/kvm", 10, 232});
  spec.network = NetworkNamespace::kNew;
  spec.limits.pids_max = jail.pids_max;
  spec.program_fd = program.get();
  spec.argv = MicroVm::CommandLine(config);
  spec.env = {{"PATH", "/usr/bin"}};
  spec.fds = {{log_fd, 1}, {log_fd, 2}};
  spec.seccomp = true;
  spec.parent_death_signal = SIGKILL;
  return Container::Launch(spec, jail.layout);
}

}  // namespace

const char* ToString(Accel a) { return a == Accel::kKvm ? "kvm" : "tcg"; }

int64_t HostTscKhz() {
  static const int64_t khz = [] {
    // Against CLOCK_MONOTONIC_RAW over 50 ms: about 0.1% off, far better
    // than the guest's time running at a fixed guess's ratio to the host's.
    timespec a, b;
    clock_gettime(CLOCK_MONOTONIC_RAW, &a);
    const uint64_t t0 = __rdtsc();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    clock_gettime(CLOCK_MONOTONIC_RAW, &b);
    const uint64_t t1 = __rdtsc();
    const int64_t ns = (b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec);
    return ns > 0 ? static_cast<int64_t>((t1 - t0) * 1000000 / static_cast<uint64_t>(ns)) : 0;
  }();
  return khz;
}

std::vector<std::string> MicroVm::CommandLine(const MicroVmConfig& config) {
  const MicroVmConfig c = config.jail ? JailView(config) : config;
  const std::string& dir = c.run_dir;
  std::vector<std::string> argv = {
      ResolveInPath(c.qemu),
      // No option ROMs, no PCI, no firmware: the kernel is entered through
      // its PVH note. rtc=on and pit=on: without them the boot takes ~2 s
      // longer under TCG (PLATFORM.md).
      "-M", "microvm,x-option-roms=off,isa-serial=on,pit=on,rtc=on",
      "-m", absl::StrCat(c.memory_mib), "-smp", absl::StrCat(std::max(1, c.vcpus)),
      "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
      // A snapshot is taken from a stopped VM; with the run state in the
      // stream a restore would stay paused until a QMP `cont`. Without it
      // the restored VM runs as soon as its state is loaded.
      "-global", "migration.store-global-state=off",
      "-chardev", absl::StrCat("file,id=con,path=", dir, "/console.log"),
      "-serial", "chardev:con",
      "-qmp", absl::StrCat("unix:", dir, "/qmp.sock,server=on,wait=off"),
      "-chardev", absl::StrCat("socket,id=agent,path=", dir, "/agent.sock,server=on,wait=off"),
      "-device", "virtio-serial-device",
      "-device", "virtserialport,chardev=agent,name=agent0",
      "-kernel", c.kernel, "-initrd", c.initrd,
      // tsc_early_khz: without it about one TCG boot in six hangs
      // calibrating. Under TCG the guest's TSC ticks at the host's rate, and
      // microvm has no HPET to refine a wrong guess: the guest's clocks run
      // at (host TSC / this value) of real time, so it must be the host's.
      "-append", absl::StrCat("console=ttyS0 quiet reboot=t panic=-1 tsc_early_khz=",
                              c.tsc_khz > 0 ? c.tsc_khz : HostTscKhz(),
                              c.extra_append.empty() ? "" : " ", c.extra_append)};
  // QEMU's option syntax doubles a comma inside a value.
  auto escaped = [](const std::string& path) { return absl::StrReplaceAll(path, {{",", ",,"}}); };
  if (!c.rootfs.empty()) {
    // Shared by every VM: QEMU takes only a shared lock on a read-only
    // image, and the host's page cache holds one copy of it for all.
    for (std::string a :
         {std::string("-drive"),
          absl::StrCat("if=none,id=root,format=raw,readonly=on,file=", escaped(c.rootfs)),
          std::string("-device"),
          std::string("virtio-blk-device,drive=root,serial=flotilla-root")}) {
      argv.push_back(std::move(a));
    }
  }
  if (!c.scratch_image.empty()) {
    // cache=unsafe: the disk dies with the VM, so a guest's flush need not
    // reach the host's disk.
    for (std::string a : {std::string("-drive"),
                          absl::StrCat("if=none,id=scratch,format=raw,cache=unsafe,file=",
                                       escaped(dir), "/", kScratchFile),
                          std::string("-device"),
                          std::string("virtio-blk-device,drive=scratch,serial=flotilla-scratch")}) {
      argv.push_back(std::move(a));
    }
  }
  if (c.memory != MicroVmConfig::Memory::kAnonymous) {
    argv[2] += ",memory-backend=mem";
    argv.push_back("-object");
    argv.push_back(absl::StrCat(
        "memory-backend-file,id=mem,size=", c.memory_mib, "M,mem-path=", c.memory_file,
        ",share=", c.memory == MicroVmConfig::Memory::kSharedFile ? "on" : "off"));
  }
  if (c.accel == Accel::kKvm) {
    // arch-capabilities makes some nested hosts refuse the vCPU.
    for (const char* a : {"-accel", "kvm", "-cpu", "host,-arch-capabilities"}) argv.push_back(a);
  } else {
    for (const char* a : {"-accel", "tcg"}) argv.push_back(a);
  }
  if (c.jail) {
    argv.push_back("-sandbox");
    argv.push_back(kQemuSandboxOption);
    // Its paths are the jail's; the host's run directory in its name tells
    // ps (and the tests) which VM a QEMU process is.
    argv.push_back("-name");
    argv.push_back(absl::StrReplaceAll(config.run_dir, {{",", ",,"}}));
  }
  if (!c.incoming.empty()) {
    // The stream is started over QMP once its capabilities match the
    // snapshot's (Start).
    argv.push_back("-incoming");
    argv.push_back("defer");
  }
  return argv;
}

absl::StatusOr<std::unique_ptr<MicroVm>> MicroVm::Start(const MicroVmConfig& config,
                                                        Clock::time_point deadline) {
  if (config.kernel.empty() || access(config.kernel.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "guest kernel `", config.kernel, "` is not readable; run scripts/fetch-guest-kernel"));
  }
  if (config.initrd.empty() || access(config.initrd.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "guest initramfs `", config.initrd, "` is not readable; build the guest-initramfs target"));
  }
  if (!config.rootfs.empty() && access(config.rootfs.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "guest root image `", config.rootfs, "` is not readable; build the guest-rootfs target"));
  }
  if (config.jail && (config.jail->uid == 0 || config.jail->gid == 0)) {
    return absl::InvalidArgumentError("jail: the uid and gid must not be 0");
  }
  if (mkdir(config.run_dir.c_str(), 0700) < 0) {
    return ErrnoError(errno, "mkdir", config.run_dir);
  }
  const std::string log_path = config.run_dir + "/qemu.log";
  UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!log.valid()) {
    absl::Status st = ErrnoError(errno, "open", log_path);
    std::error_code ec;
    std::filesystem::remove_all(config.run_dir, ec);
    return st;
  }
  auto cleanup = [&](absl::Status st) {
    std::error_code ec;
    std::filesystem::remove_all(config.run_dir, ec);
    return st;
  };
  if (!config.scratch_image.empty()) {
    const uid_t uid = config.jail ? config.jail->uid : static_cast<uid_t>(-1);
    const gid_t gid = config.jail ? config.jail->gid : static_cast<gid_t>(-1);
    if (absl::Status st =
            CopySparse(config.scratch_image, config.run_dir + "/" + kScratchFile, uid, gid);
        !st.ok()) {
      return cleanup(Annotate(st, "the scratch disk"));
    }
  }
  std::unique_ptr<Container> jail;
  pid_t pid = 0;
  if (config.jail) {
    if (absl::Status st = PrepareJailFiles(config); !st.ok()) return cleanup(st);
    auto launched = Launcher::Get().Run([&] { return LaunchJailed(config, log.get()); });
    if (!launched.ok()) {
      return cleanup(Annotate(launched.status(), "jail qemu"));
    }
    jail = std::move(*launched);
    pid = jail->pid();
  } else {
    auto spawned = Launcher::Get().Spawn(CommandLine(config), log.get());
    if (!spawned.ok()) return cleanup(spawned.status());
    pid = *spawned;
  }
  std::unique_ptr<MicroVm> vm(new MicroVm(config, pid, std::move(jail)));
  absl::Status st = vm->ConnectQmp(deadline);
  if (st.ok() && !config.incoming.empty()) st = vm->StartIncoming(deadline);
  if (!st.ok()) {
    std::string tail = vm->QemuLogTail();
    vm->Kill();
    return absl::Status(st.code(), absl::StrCat("start qemu: ", st.message(),
                                                tail.empty() ? "" : "; qemu said: ", tail));
  }
  return vm;
}

MicroVm::~MicroVm() { Kill(); }

void MicroVm::Kill() {
  std::lock_guard<std::mutex> lock(kill_mu_);
  if (reaped_) return;
  qmp_.Reset();
  if (jail_) {
    // The pidfd's SIGKILL and the cgroup's kill; the destructor reaps QEMU
    // and removes the cgroup and the jail's root directory.
    if (absl::Status st = jail_->Kill(); !st.ok()) spdlog::warn("micro-VM: {}", st.ToString());
    jail_.reset();
  } else {
    kill(pid_, SIGKILL);
    // SIGKILL cannot be ignored; the reap only waits for the kernel to tear
    // the process down.
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  reaped_ = true;
  std::error_code ec;
  std::filesystem::remove_all(config_.run_dir, ec);
}

bool MicroVm::running() {
  std::lock_guard<std::mutex> lock(kill_mu_);
  if (reaped_) return false;
  if (jail_) {
    // Reaps through the pidfd; Kill then only removes what is left.
    return !jail_->Wait(std::chrono::milliseconds(0)).ok();
  }
  int status;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    // Reaped here: Kill must not signal a pid that may be reused.
    reaped_ = true;
    return false;
  }
  return true;
}

absl::StatusOr<int64_t> MicroVm::RssBytes() const {
  std::ifstream in(absl::StrCat("/proc/", pid_, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return absl::NotFoundError(absl::StrCat("qemu ", pid_, " is gone"));
}

std::string MicroVm::scratch_path() const {
  return config_.scratch_image.empty() ? "" : config_.run_dir + "/" + kScratchFile;
}

std::string MicroVm::ConsoleTail(size_t max) const {
  return ReadTail(config_.run_dir + "/console.log", max);
}

std::string MicroVm::ConsoleReport() const {
  // A guest that dies panics the kernel, and the panic's stack trace fills
  // any short tail; the reason is in the lines init and the guest wrote
  // before it, so those come first.
  const std::string console = ReadTail(config_.run_dir + "/console.log", kConsoleScanLimit);
  std::string ours;
  size_t kept = 0;
  std::istringstream lines(console);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("flotilla-init:") == std::string::npos &&
        line.find("flotilla-guest:") == std::string::npos) {
      continue;
    }
    if (++kept > 8) break;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    absl::StrAppend(&ours, line, "\n");
  }
  std::string tail = console.size() > 768 ? console.substr(console.size() - 768) : console;
  return ours.empty() ? tail : absl::StrCat("guest said:\n", ours, "...\n", tail);
}

std::string MicroVm::QemuLogTail() const { return ReadTail(config_.run_dir + "/qemu.log", 1024); }

absl::Status MicroVm::ConnectQmp(Clock::time_point deadline) {
  const std::string path = config_.run_dir + "/qmp.sock";
  while (true) {
    auto fd = ConnectUnix(path);
    if (fd.ok()) {
      qmp_ = std::move(*fd);
      break;
    }
    if (!running()) return absl::UnavailableError("qemu exited before its QMP socket opened");
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("qemu's QMP socket did not open in time (", fd.status().message(), ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // The greeting, then capabilities negotiation leaves command mode.
  ASSIGN_OR_RETURN(std::string greeting, ReadQmpLine(deadline));
  if (greeting.find("\"QMP\"") == std::string::npos) {
    return absl::DataLossError(absl::StrCat("unexpected QMP greeting: ", greeting.substr(0, 200)));
  }
  return Qmp(R"({"execute":"qmp_capabilities"})", deadline).status();
}

absl::StatusOr<std::string> MicroVm::ReadQmpLine(Clock::time_point deadline) {
  while (true) {
    size_t nl = qmp_buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = qmp_buffer_.substr(0, nl);
      qmp_buffer_.erase(0, nl + 1);
      return line;
    }
    if (qmp_buffer_.size() > kMaxQmpLine) return absl::DataLossError("QMP line over 1 MiB");
    pollfd p{qmp_.get(), POLLIN, 0};
    int r = poll(&p, 1, MsUntil(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoError(errno, "poll", "qmp");
    if (r == 0) return absl::DeadlineExceededError("qemu did not answer on QMP in time");
    char buf[4096];
    ssize_t n = read(qmp_.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::UnavailableError("qemu closed its QMP socket");
    qmp_buffer_.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> MicroVm::Qmp(const std::string& command, Clock::time_point deadline) {
  return QmpWithFd(command, -1, deadline);
}

absl::StatusOr<std::string> MicroVm::QmpWithFd(const std::string& command, int fd,
                                               Clock::time_point deadline) {
  if (!qmp_.valid()) return absl::FailedPreconditionError("no QMP connection to qemu");
  std::string line = command + "\n";
  size_t done = 0;
  while (done < line.size()) {
    iovec iov = {line.data() + done, line.size() - done};
    msghdr msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0 && done == 0) {
      // QEMU keeps an fd that arrives with a command for that command.
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n = sendmsg(qmp_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError(errno, "send", "qmp");
    done += static_cast<size_t>(n);
  }
  while (true) {
    ASSIGN_OR_RETURN(std::string reply, ReadQmpLine(deadline));
    auto json = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || !json.is_object()) {
      return absl::DataLossError(absl::StrCat("bad QMP reply: ", reply.substr(0, 200)));
    }
    if (json.contains("event")) continue;  // asynchronous; not an answer
    if (json.contains("error")) {
      return absl::InternalError(absl::StrCat("qemu refused ", command, ": ",
                                              json["error"].value("desc", reply)));
    }
    if (json.contains("return")) return json["return"].dump();
  }
}

absl::Status MicroVm::PassFile(const std::string& name, const std::string& path, int flags,
                               Clock::time_point deadline) {
  UniqueFd file(open(path.c_str(), flags | O_CLOEXEC, 0600));
  if (!file.valid()) return ErrnoError(errno, "open", path);
  nlohmann::json getfd = {{"execute", "getfd"}, {"arguments", {{"fdname", name}}}};
  return QmpWithFd(getfd.dump(), file.get(), deadline).status();
}

absl::StatusOr<UniqueFd> MicroVm::ConnectAgent(Clock::time_point deadline) {
  const std::string path = config_.run_dir + "/agent.sock";
  while (true) {
    auto fd = ConnectUnix(path);
    if (fd.ok()) return fd;
    if (!running()) return absl::UnavailableError("qemu exited before the agent socket opened");
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the VM's agent socket did not open in time: ", fd.status().message()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

absl::Status MicroVm::WaitForConsole(std::string_view marker, Clock::time_point deadline) {
  const std::string path = config_.run_dir + "/console.log";
  while (true) {
    std::string head;
    if (UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC)); fd.valid()) {
      head.resize(kConsoleScanLimit);
      ssize_t n = pread(fd.get(), head.data(), head.size(), 0);
      head.resize(n > 0 ? static_cast<size_t>(n) : 0);
    }
    if (head.find(marker) != std::string::npos) return absl::OkStatus();
    if (!running()) {
      return absl::UnavailableError(absl::StrCat("the VM stopped before `", std::string(marker),
                                                 "`; console: ", ConsoleReport()));
    }
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("no `", std::string(marker),
                                                      "` on the VM's console in time; console: ",
                                                      ConsoleReport()));
    }
    std::this_thread::sleep_for(kPollStep);
  }
}

namespace {
constexpr char kIgnoreSharedMemory[] =
    R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":)"
    R"([{"capability":"x-ignore-shared","state":true}]}})";
}  // namespace

absl::Status MicroVm::StartIncoming(Clock::time_point deadline) {
  // A snapshot without RAM (taken from a kSharedFile VM) must be loaded
  // with the same capability; the RAM comes from the mapped file.
  if (config_.memory == MicroVmConfig::Memory::kPrivateFile) {
    RETURN_IF_ERROR(Qmp(kIgnoreSharedMemory, deadline).status());
  }
  // The agent opens the snapshot and hands QEMU the fd: a jailed QEMU
  // neither sees the file nor may spawn a `cat` to read it.
  RETURN_IF_ERROR(PassFile("incoming", config_.incoming, O_RDONLY, deadline));
  return Qmp(R"({"execute":"migrate-incoming","arguments":{"uri":"fd:incoming"}})", deadline)
      .status();
}

absl::Status MicroVm::Snapshot(const std::string& path, Clock::time_point deadline) {
  RETURN_IF_ERROR(Qmp(R"({"execute":"stop"})", deadline).status());
  if (config_.memory == MicroVmConfig::Memory::kSharedFile) {
    RETURN_IF_ERROR(Qmp(kIgnoreSharedMemory, deadline).status());
  }
  // The default migration bandwidth cap (128 MiB/s) throttles a copy into a
  // local file for nothing; the VM is stopped, so there is no downtime to trade.
  RETURN_IF_ERROR(Qmp(R"({"execute":"migrate-set-parameters","arguments":{"max-bandwidth":)"
                      R"(107374182400}})",
                      deadline)
                      .status());
  RETURN_IF_ERROR(PassFile("snapshot", path, O_WRONLY | O_CREAT | O_TRUNC, deadline));
  RETURN_IF_ERROR(
      Qmp(R"({"execute":"migrate","arguments":{"uri":"fd:snapshot"}})", deadline).status());
  while (true) {
    ASSIGN_OR_RETURN(std::string reply, Qmp(R"({"execute":"query-migrate"})", deadline));
    auto json = nlohmann::json::parse(reply, nullptr, false);
    std::string status = json.is_object() ? json.value("status", "") : "";
    if (status == "completed") return absl::OkStatus();
    if (status == "failed" || status == "cancelled") {
      return absl::InternalError(absl::StrCat("snapshot to `", path, "` ", status, ": ",
                                              json.value("error-desc", std::string("no reason"))));
    }
    if (Clock::now() >= deadline) {
      (void)Qmp(R"({"execute":"migrate_cancel"})", Clock::now() + std::chrono::seconds(1));
      return absl::DeadlineExceededError(absl::StrCat("snapshot to `", path, "` took too long"));
    }
    std::this_thread::sleep_for(kPollStep);
  }
}

AccelProbe ProbeAccel(MicroVmConfig config, std::chrono::milliseconds timeout) {
  AccelProbe probe;
  const auto started = Clock::now();
  auto done = [&](std::string reason) {
    probe.reason = std::move(reason);
    probe.probe_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    return probe;
  };
  UniqueFd kvm(open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) return done(absl::StrCat("/dev/kvm: ", strerror(errno)));
  kvm.Reset();
  config.accel = Accel::kKvm;
  config.incoming.clear();
  const auto deadline = started + timeout;
  auto vm = MicroVm::Start(config, deadline);
  if (!vm.ok()) return done(absl::StrCat("a KVM boot did not start: ", vm.status().message()));
  // A vCPU that KVM cannot run pauses the VM with an error rather than
  // ending QEMU; look for that in QEMU's log between short waits.
  absl::Status booted;
  while (true) {
    auto slice = std::min(deadline, Clock::now() + std::chrono::milliseconds(100));
    booted = (*vm)->WaitForConsole(kGuestWaitingMarker, slice);
    if (booted.ok() || Clock::now() >= deadline) break;
    std::string log = ReadTail(config.run_dir + "/qemu.log", 4096);
    if (log.find("internal error") != std::string::npos ||
        log.find("emulation failure") != std::string::npos) {
      booted = absl::InternalError(log.substr(0, log.find('\n')));
      break;
    }
    if (!(*vm)->running()) break;
  }
  (*vm)->Kill();
  if (!booted.ok()) {
    return done(absl::StrCat("a KVM boot did not reach the guest: ", booted.message()));
  }
  probe.accel = Accel::kKvm;
  return done("");
}

namespace {

// The value of `key` (e.g. "Uid:") in a /proc/<pid>/status text.
std::string StatusField(const std::string& status, const std::string& key) {
  size_t at = status.find("\n" + key);
  if (at == std::string::npos) return "";
  at += key.size() + 1;
  size_t end = status.find('\n', at);
  std::string value = status.substr(at, end == std::string::npos ? std::string::npos : end - at);
  size_t first = value.find_first_not_of(" \t");
  return first == std::string::npos ? "" : value.substr(first);
}

}  // namespace

absl::Status CheckJailed(pid_t pid, const JailConfig& jail, const std::string& proc_dir) {
  const std::string dir = absl::StrCat(proc_dir, "/", pid);
  std::ifstream in(dir + "/status");
  std::string status((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (status.empty()) return absl::NotFoundError(absl::StrCat("qemu ", pid, " is gone"));
  status = "\n" + status;
  auto differs = [&](const std::string& what, const std::string& got, const std::string& want) {
    return absl::FailedPreconditionError(
        absl::StrCat("qemu ", pid, " is not jailed: ", what, " is `", got, "`, not `", want, "`"));
  };
  const std::string uid = absl::StrCat(jail.uid), gid = absl::StrCat(jail.gid);
  const std::string uids = absl::StrCat(uid, "\t", uid, "\t", uid, "\t", uid);
  const std::string gids = absl::StrCat(gid, "\t", gid, "\t", gid, "\t", gid);
  if (StatusField(status, "Uid:") != uids) return differs("Uid", StatusField(status, "Uid:"), uids);
  if (StatusField(status, "Gid:") != gids) return differs("Gid", StatusField(status, "Gid:"), gids);
  for (const char* key : {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"}) {
    const std::string caps = StatusField(status, key);
    if (caps.find_first_not_of('0') != std::string::npos) return differs(key, caps, "0...0");
  }
  if (StatusField(status, "NoNewPrivs:") != "1") {
    return differs("NoNewPrivs", StatusField(status, "NoNewPrivs:"), "1");
  }
  if (StatusField(status, "Seccomp:") != "2") {
    return differs("Seccomp", StatusField(status, "Seccomp:"), "2");
  }
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts", "cgroup"}) {
    struct stat self, other;
    const std::string mine = absl::StrCat(proc_dir, "/self/ns/", ns);
    const std::string theirs = absl::StrCat(dir, "/ns/", ns);
    if (stat(mine.c_str(), &self) != 0) return ErrnoError(errno, "stat", mine);
    if (stat(theirs.c_str(), &other) != 0) return ErrnoError(errno, "stat", theirs);
    if (self.st_ino == other.st_ino && self.st_dev == other.st_dev) {
      return absl::FailedPreconditionError(
          absl::StrCat("qemu ", pid, " is not jailed: it shares the ", ns, " namespace"));
    }
  }
  return absl::OkStatus();
}

absl::Status ProbeJail(MicroVmConfig config, Clock::time_point deadline) {
  if (!config.jail) return absl::InvalidArgumentError("ProbeJail: the config has no jail");
  config.incoming.clear();
  auto vm = MicroVm::Start(config, deadline);
  if (!vm.ok()) return Annotate(vm.status(), "a jailed qemu did not start");
  absl::Status checked = CheckJailed((*vm)->pid(), *config.jail);
  (*vm)->Kill();
  return checked;
}

}  // namespace flotilla::sandbox::microvm
