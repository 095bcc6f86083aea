// Micro-VM sandboxes under QEMU TCG: boot, snapshot, restore, tasks, limits,
// a hostile guest channel, QEMU's jail seen from the host, and that no QEMU
// process, cgroup or file outlives a test.
// Skipped, loudly, only where QEMU or the guest kernel is missing.
#include <dirent.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pool/microvm_instance.h"
#include "pool/warm_pool.h"
#include "sandbox/guest_client.h"
#include "sandbox/microvm/disks.h"
#include "sandbox/microvm/micro_vm.h"

namespace flotilla::pool {
namespace {

using sandbox::microvm::Accel;
using sandbox::microvm::MicroVm;
using sandbox::microvm::MicroVmConfig;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// A 128 MiB VM of the build's kernel and initramfs, run from `run_dir`.
MicroVmConfig SmallVm(const std::string& run_dir) {
  MicroVmConfig c;
  c.kernel = FLOTILLA_VM_KERNEL;
  c.initrd = FLOTILLA_VM_INITRD;
  c.memory_mib = 128;
  c.run_dir = run_dir;
  return c;
}

// Jails `c`'s QEMU, its roots made under `roots`, as the agent does.
absl::Status Jail(MicroVmConfig& c, const std::string& roots) {
  sandbox::HostLayout paths;
  paths.runtime_dir = roots;
  absl::StatusOr<sandbox::HostLayout> layout = sandbox::DetectHostLayout(paths);
  if (!layout.ok()) return layout.status();
  c.jail.emplace();
  c.jail->layout = *std::move(layout);
  return absl::OkStatus();
}

std::string MissingPrerequisite() {
  if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
    return "qemu-system-x86_64 is not installed (scripts/install-deps installs qemu-system-x86)";
  }
  if (access(FLOTILLA_VM_KERNEL, R_OK) != 0) {
    return std::string("no guest kernel at ") + FLOTILLA_VM_KERNEL +
           " (run scripts/fetch-guest-kernel)";
  }
  if (access(FLOTILLA_VM_INITRD, R_OK) != 0) {
    return std::string("no guest initramfs at ") + FLOTILLA_VM_INITRD +
           " (build the guest-initramfs target)";
  }
  return "";
}

#define SKIP_WITHOUT_QEMU()                                                     \
  do {                                                                          \
    if (std::string why = MissingPrerequisite(); !why.empty()) {                \
      fprintf(stderr, "\n*** SKIPPING micro-VM test: %s ***\n\n", why.c_str()); \
      GTEST_SKIP() << why;                                                      \
    }                                                                           \
  } while (0)

// Pids of live processes whose command line mentions `needle`.
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.find(needle) == std::string::npos) continue;
    std::ifstream st("/proc/" + std::string(e->d_name) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
    size_t close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') continue;
    out.push_back(pid);
  }
  closedir(d);
  return out;
}

class Sink : public sandbox::OutputSink {
 public:
  void OnOutput(sandbox::Stream s, int64_t, std::string_view d) override {
    (s == sandbox::Stream::kStdout ? out : err) += d;
  }
  std::string out, err;
};

sandbox::TaskSpec Task(std::vector<std::string> argv,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  sandbox::TaskSpec t;
  t.id = "vm-test";
  t.argv = std::move(argv);
  t.timeout = timeout;
  return t;
}

EnvironmentTemplate VmTemplate(int64_t memory_mib = 256) {
  EnvironmentTemplate t;
  t.name = "vm";
  t.isolation = Isolation::kMicroVm;
  t.limits.memory_bytes = memory_mib << 20;
  t.limits.cpu_millis = 1000;
  t.lifecycle = Lifecycle::kDestroy;
  return t;
}

// A suite's factory: TCG (the KVM probe has a test of its own), its run
// directory under `run_root`.
MicroVmInstanceOptions SuiteOptions(const std::string& run_root) {
  MicroVmInstanceOptions o;
  o.kernel = FLOTILLA_VM_KERNEL;
  o.initrd = FLOTILLA_VM_INITRD;
  o.run_root = run_root + "/vms";
  o.accel = Accel::kTcg;
  return o;
}

// Ends a suite: its factory first, then a check that no QEMU outlived it.
void TearDownSuite(MicroVmInstanceFactory*& factory, const std::string& run_root) {
  delete factory;
  factory = nullptr;
  if (!run_root.empty()) {
    EXPECT_THAT(ProcessesMentioning(run_root), ::testing::IsEmpty())
        << "a QEMU process outlived the suite";
    std::filesystem::remove_all(run_root);
  }
}

// One factory (and so one snapshot per shape) for the whole suite: a TCG
// boot on a loaded 2-core machine takes seconds, a restore a fraction.
class MicroVmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MissingPrerequisite().empty()) return;
    char tmpl[] = "/tmp/fvm.XXXXXX";
    run_root_ = mkdtemp(tmpl);
    auto f = NewMicroVmInstanceFactory(SuiteOptions(run_root_));
    ASSERT_TRUE(f.ok()) << f.status();
    factory_ = f->release();
  }
  static void TearDownTestSuite() { TearDownSuite(factory_, run_root_); }
  void SetUp() override { SKIP_WITHOUT_QEMU(); }

  // The QEMU processes of VMs restored by the suite's factory.
  static std::vector<pid_t> RestoredQemus() { return ProcessesMentioning(run_root_ + "/vms/vm-"); }

  std::unique_ptr<Instance> NewVm(const EnvironmentTemplate& t = VmTemplate()) {
    auto vm = factory_->Create(t, {});
    EXPECT_TRUE(vm.ok()) << vm.status();
    return vm.ok() ? std::move(*vm) : nullptr;
  }

  static inline MicroVmInstanceFactory* factory_ = nullptr;
  static inline std::string run_root_;
};

TEST_F(MicroVmTest, RestoredVmRunsTasksReportsExitAndOutputAndLeavesNothing) {
  auto vm = NewVm();
  ASSERT_NE(vm, nullptr);
  EXPECT_EQ(factory_->status().snapshots_made, 1u);
  EXPECT_GE(factory_->status().restores, 1u);

  Sink sink;
  sandbox::CancelToken cancel;
  auto uname = vm->Run(Task({"uname", "-a"}), sink, cancel);
  ASSERT_TRUE(uname.ok()) << uname.status();
  EXPECT_EQ(uname->termination, sandbox::Termination::kExited);
  EXPECT_EQ(uname->exit_code, 0);
  // The guest kernel, not the host's.
  EXPECT_THAT(uname->stdout_data, HasSubstr("cloud-amd64"));
  EXPECT_EQ(sink.out, uname->stdout_data);  // streamed as it came

  ASSERT_TRUE(vm->Reset());
  auto mixed = vm->Run(Task({"sh", "-c", "echo to-out; echo to-err >&2; exit 3"}), sink, cancel);
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  EXPECT_EQ(mixed->termination, sandbox::Termination::kExited);
  EXPECT_EQ(mixed->exit_code, 3);
  EXPECT_EQ(mixed->stdout_data, "to-out\n");
  EXPECT_EQ(mixed->stderr_data, "to-err\n");

  // SEED set the wall clock: the guest's date is today's, not the snapshot's.
  ASSERT_TRUE(vm->Reset());
  auto date = vm->Run(Task({"date", "+%s"}), sink, cancel);
  ASSERT_TRUE(date.ok()) << date.status();
  const int64_t guest_now = atoll(date->stdout_data.c_str());
  EXPECT_NEAR(static_cast<double>(guest_now), static_cast<double>(time(nullptr)), 5.0);

  ASSERT_TRUE(vm->Reset());
  auto missing = vm->Run(Task({"no-such-binary"}), sink, cancel);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound) << missing.status();

  vm.reset();
  EXPECT_THAT(ProcessesMentioning(run_root_), ::testing::IsEmpty());
  // The snapshot (state and RAM file) stays, the factory's, and the
  // (empty) directory of the jails' roots; no VM run directory does.
  for (const auto& e : std::filesystem::directory_iterator(run_root_ + "/vms")) {
    if (e.path().filename() == "roots") {
      EXPECT_TRUE(std::filesystem::is_empty(e.path()));
      continue;
    }
    EXPECT_TRUE(e.path().extension() == ".snap" || e.path().extension() == ".ram") << e.path();
  }
}

TEST_F(MicroVmTest, TwoRestoresOfOneSnapshotDrawDifferentRandomness) {
  auto a = NewVm();
  auto b = NewVm();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Sink sink;
  sandbox::CancelToken cancel;
  auto task = Task({"sh", "-c", "head -c 16 /dev/urandom | od -An -tx1"});
  auto ra = a->Run(task, sink, cancel);
  auto rb = b->Run(task, sink, cancel);
  ASSERT_TRUE(ra.ok() && rb.ok()) << ra.status() << " " << rb.status();
  EXPECT_EQ(ra->exit_code, 0);
  EXPECT_FALSE(ra->stdout_data.empty());
  EXPECT_NE(ra->stdout_data, rb->stdout_data);
}

TEST_F(MicroVmTest, TimeoutKillsTheTaskAndTheVmIsNotReused) {
  auto vm = NewVm();
  ASSERT_NE(vm, nullptr);
  Sink sink;
  sandbox::CancelToken cancel;
  const auto started = Clock::now();
  auto r = vm->Run(Task({"sleep", "60"}, std::chrono::milliseconds(1500)), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->termination, sandbox::Termination::kTimedOut);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(15));
  EXPECT_FALSE(vm->healthy());
  EXPECT_FALSE(vm->Reset());
  vm.reset();
  EXPECT_THAT(ProcessesMentioning(run_root_), ::testing::IsEmpty());
}

TEST_F(MicroVmTest, MemoryHogIsKilledInsideTheVmAndTheGuestSurvives) {
  auto vm = NewVm(VmTemplate(128));
  ASSERT_NE(vm, nullptr);
  Sink sink;
  sandbox::CancelToken cancel;
  // dd touches its whole 400 MB buffer in a 128 MiB VM: the guest kernel's
  // OOM killer ends it; the host never gives QEMU more than the VM's memory.
  auto r =
      vm->Run(Task({"dd", "if=/dev/zero", "of=/dev/null", "bs=400M", "count=1"}), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->termination, sandbox::Termination::kSignaled) << r->stderr_data;
  EXPECT_EQ(r->signal, SIGKILL);
  EXPECT_THAT(r->stderr_data, HasSubstr("OOM killer"));
  auto* mvm = vm.get();
  auto usage = mvm->Usage();
  ASSERT_TRUE(usage.has_value());
  EXPECT_LT(usage->memory_bytes, (128ll + 160) << 20) << "QEMU grew past the VM's memory";
  ASSERT_TRUE(vm->Reset());
  auto alive = vm->Run(Task({"echo", "alive"}), sink, cancel);
  ASSERT_TRUE(alive.ok()) << alive.status();
  EXPECT_EQ(alive->stdout_data, "alive\n");
}

TEST_F(MicroVmTest, ATaskCannotOpenTheAgentChannel) {
  auto vm = NewVm();
  ASSERT_NE(vm, nullptr);
  Sink sink;
  sandbox::CancelToken cancel;
  // virtio-serial allows one opener per port, and the guest holds it.
  auto r = vm->Run(Task({"sh", "-c", "echo junk > /dev/vport0p1"}), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(r->exit_code, 0);
  EXPECT_TRUE(vm->healthy());
}

// A guest that floods its channel with garbage (a compromised kernel or
// guest): the agent's side must fail the handshake cleanly, not crash,
// hang or buffer without bound.
TEST_F(MicroVmTest, GarbageFloodOnTheSerialChannelIsRejected) {
  MicroVmConfig c = SmallVm(run_root_ + "/flood");
  // Init is a shell that loads the virtio modules and writes random bytes,
  // then frames with huge lengths, at the port for ever.
  c.extra_append =
      "rdinit=/bin/sh -- -c \"mount -t devtmpfs d /dev; for m in $(cat /lib/modules/order); do "
      "insmod /lib/modules/$m; done; while :; do head -c 65536 /dev/urandom; "
      "printf '\\377\\377\\377\\177\\001'; done > /dev/vport0p1\"";
  auto vm = MicroVm::Start(c, Clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto fd = (*vm)->ConnectAgent(Clock::now() + std::chrono::seconds(20));
  ASSERT_TRUE(fd.ok()) << fd.status();
  sandbox::GuestClient client(fd->Release());
  const auto started = Clock::now();
  absl::Status st = client.Handshake(std::chrono::seconds(25));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.code(), absl::StatusCode::kDeadlineExceeded)
      << st << "; console: " << (*vm)->ConsoleTail();
  EXPECT_FALSE(client.healthy());
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(25));
  (*vm)->Kill();
  EXPECT_FALSE(std::filesystem::exists(c.run_dir));
}

TEST_F(MicroVmTest, WarmPoolOfVmsHandsOutRestoredVmsAndDestroysAfterUse) {
  EnvironmentTemplate t = VmTemplate();
  t.pool_min = 1;
  t.pool_max = 2;
  WarmPool pool(t, factory_);
  EXPECT_EQ(pool.Refill(), 1);
  auto lease = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(lease->warm);
  Sink sink;
  sandbox::CancelToken cancel;
  auto r = lease->instance->Run(Task({"true"}), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  pool.Release(std::move(*lease), "alice", "f", {});
  EXPECT_EQ(pool.Stats().idle, 0);  // destroy lifecycle
  pool.Drain();
  EXPECT_THAT(ProcessesMentioning(run_root_ + "/vms/vm-"), ::testing::IsEmpty());
}

// VMs with the root image (python3) and a scratch disk: a second factory,
// so its snapshot is taken with both drives attached.
class MicroVmRootfsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MissingPrerequisite().empty() || access(FLOTILLA_VM_ROOTFS, R_OK) != 0) return;
    char tmpl[] = "/tmp/fvr.XXXXXX";
    run_root_ = mkdtemp(tmpl);
    MicroVmInstanceOptions o = SuiteOptions(run_root_);
    o.rootfs = FLOTILLA_VM_ROOTFS;
    // Pool refills run it; the tests' direct Creates do not.
    o.warm_up = MicroVmInstanceOptions::WarmUp::kPython;
    auto f = NewMicroVmInstanceFactory(o);
    ASSERT_TRUE(f.ok()) << f.status();
    factory_ = f->release();
  }
  static void TearDownTestSuite() { TearDownSuite(factory_, run_root_); }
  void SetUp() override {
    SKIP_WITHOUT_QEMU();
    if (access(FLOTILLA_VM_ROOTFS, R_OK) != 0) {
      fprintf(stderr, "\n*** SKIPPING micro-VM root image test: no %s (build guest-rootfs) ***\n\n",
              FLOTILLA_VM_ROOTFS);
      GTEST_SKIP() << "no root image";
    }
    ASSERT_NE(factory_, nullptr);
  }

  // A task in a pool VM, restored from the suite's snapshot.
  static EnvironmentTemplate Template() {
    EnvironmentTemplate t = VmTemplate();
    t.limits.work_bytes = 96ll << 20;
    return t;
  }

  // The run directories of the factory's live VMs.
  static std::vector<std::string> VmRunDirs() {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(run_root_ + "/vms")) {
      if (e.path().filename().string().rfind("vm-", 0) == 0) out.push_back(e.path().string());
    }
    return out;
  }

  static inline MicroVmInstanceFactory* factory_ = nullptr;
  static inline std::string run_root_;
};

TEST_F(MicroVmRootfsTest, RestoredPoolVmRunsPythonFromTheRootImage) {
  EnvironmentTemplate t = Template();
  t.pool_min = 1;
  t.pool_max = 1;
  WarmPool pool(t, factory_);
  const uint64_t warm_ups = factory_->status().warm_ups;
  ASSERT_EQ(pool.Refill(), 1);
  EXPECT_GE(factory_->status().restores, 1u);
  EXPECT_EQ(factory_->status().snapshots_made, 1u);
  // A refill is made ahead of demand: it ran the Python warm-up.
  EXPECT_EQ(factory_->status().warm_ups, warm_ups + 1);
  EXPECT_GT(factory_->status().last_warm_up_ms, 0);
  auto lease = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(lease->warm);
  Sink sink;
  sandbox::CancelToken cancel;
  auto r = lease->instance->Run(Task({"python3", "-c", "print(2**100)"}), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->termination, sandbox::Termination::kExited) << r->stderr_data;
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_EQ(r->stdout_data, "1267650600228229401496703205376\n");

  // The Python function path: the guest's fork server, in the VM.
  ASSERT_TRUE(lease->instance->Reset());
  sandbox::TaskSpec fn = Task({"python3", "main.py"});
  fn.python = true;
  fn.files.push_back(
      {"main.py", "import sys, json\nprint(json.dumps({'v': sys.version_info[0]}))\n", 0644});
  auto f = lease->instance->Run(fn, sink, cancel);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->exit_code, 0) << f->stderr_data;
  EXPECT_EQ(f->stdout_data, "{\"v\": 3}\n");
  pool.Release(std::move(*lease), "alice", "f", {});
  pool.Drain();
  EXPECT_THAT(ProcessesMentioning(run_root_ + "/vms/vm-"), ::testing::IsEmpty());
  EXPECT_THAT(VmRunDirs(), ::testing::IsEmpty());
}

TEST_F(MicroVmRootfsTest, TheGuestCannotWriteTheRootImage) {
  struct stat before;
  ASSERT_EQ(stat(FLOTILLA_VM_ROOTFS, &before), 0);
  const uint64_t warm_ups = factory_->status().warm_ups;
  auto vm = factory_->Create(Template(), {});
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(factory_->status().warm_ups, warm_ups) << "a Create for a request was warmed up";
  Sink sink;
  sandbox::CancelToken cancel;
  // Through the file system, through a remount, and to the disk itself
  // past the guest kernel's read-only flag: QEMU's readonly=on refuses it.
  auto r = (*vm)->Run(
      Task({"sh", "-c",
            "root=$(awk '$2 == \"/\" {print $1}' /proc/mounts); echo root=$root; "
            "echo x > /usr/flotilla-write && echo WROTE-FILE; "
            "mount -o remount,rw / && echo REMOUNTED; "
            "blockdev --setrw $root 2>/dev/null; "
            "dd if=/dev/zero of=$root bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null "
            "&& echo WROTE-DISK; echo done"}),
      sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_THAT(r->stdout_data, HasSubstr("root=/dev/vd"));
  EXPECT_THAT(r->stdout_data, HasSubstr("done"));
  EXPECT_THAT(r->stdout_data, ::testing::Not(HasSubstr("WROTE-FILE")));
  EXPECT_THAT(r->stdout_data, ::testing::Not(HasSubstr("REMOUNTED")));
  EXPECT_THAT(r->stdout_data, ::testing::Not(HasSubstr("WROTE-DISK")));
  vm->reset();
  struct stat after;
  ASSERT_EQ(stat(FLOTILLA_VM_ROOTFS, &after), 0);
  EXPECT_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
}

TEST_F(MicroVmRootfsTest, ScratchDiskIsTheWorkDirAndGoesWithTheVm) {
  auto vm = factory_->Create(Template(), {});
  ASSERT_TRUE(vm.ok()) << vm.status();
  std::vector<std::string> dirs = VmRunDirs();
  ASSERT_EQ(dirs.size(), 1u);
  const std::string scratch = dirs[0] + "/scratch.img";
  struct stat st;
  ASSERT_EQ(stat(scratch.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 96ll << 20);
  EXPECT_LT(st.st_blocks * 512, 8ll << 20) << "the scratch disk is not sparse";
  const int64_t allocated_before = st.st_blocks * 512;
  Sink sink;
  sandbox::CancelToken cancel;
  // 80 MB: more than the 64 MiB tmpfs /work was, within the 96 MiB disk.
  auto r = (*vm)->Run(Task({"sh", "-c",
                            "awk '$2 == \"/work\" {print $1, $3}' /proc/mounts; "
                            "dd if=/dev/zero of=big bs=1M count=80 2>/dev/null && sync && "
                            "ls -l big | awk '{print $5}'"}),
                      sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_THAT(r->stdout_data, ::testing::ContainsRegex("/dev/vd[a-z] ext4\n83886080\n"));
  ASSERT_EQ(stat(scratch.c_str(), &st), 0);
  EXPECT_GT(st.st_blocks * 512 - allocated_before, 60ll << 20) << "the writes missed the file";
  // Between tasks the work dir is emptied, on the disk as on a tmpfs.
  ASSERT_TRUE((*vm)->Reset());
  auto ls = (*vm)->Run(Task({"ls", "-A", "/work"}), sink, cancel);
  ASSERT_TRUE(ls.ok()) << ls.status();
  EXPECT_EQ(ls->stdout_data, "");
  vm->reset();
  EXPECT_FALSE(std::filesystem::exists(scratch));
  EXPECT_FALSE(std::filesystem::exists(dirs[0]));
  EXPECT_THAT(ProcessesMentioning(run_root_ + "/vms/vm-"), ::testing::IsEmpty());
}

// A cold boot (no snapshot, no SEED), unjailed, with both disks: the guest
// mounts the scratch disk before its first task instead.
TEST_F(MicroVmRootfsTest, ColdBootedVmMountsItsScratchDiskBeforeTheFirstTask) {
  MicroVmConfig c = SmallVm(run_root_ + "/cold");
  c.memory_mib = 256;
  c.rootfs = FLOTILLA_VM_ROOTFS;
  const std::string image = run_root_ + "/cold-scratch.img";
  ASSERT_TRUE(
      sandbox::microvm::MakeScratchImage(image, 16ll << 20, Clock::now() + std::chrono::seconds(20))
          .ok());
  c.scratch_image = image;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  auto vm = MicroVm::Start(c, deadline);
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_TRUE(std::filesystem::exists(c.run_dir + "/scratch.img"));
  auto fd = (*vm)->ConnectAgent(deadline);
  ASSERT_TRUE(fd.ok()) << fd.status();
  sandbox::GuestClient client(fd->Release());
  ASSERT_TRUE(client.Handshake(std::chrono::seconds(60)).ok()) << (*vm)->ConsoleReport();
  Sink sink;
  sandbox::CancelToken cancel;
  auto r = client.Run(Task({"sh", "-c",
                            "awk '$2 == \"/work\" && $3 == \"ext4\" {print \"scratch\"}' "
                            "/proc/mounts; python3 -c 'print(6*7)'"},
                           std::chrono::seconds(60)),
                      sandbox::GuestClient::Mode::kExec, sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_data;
  EXPECT_EQ(r->stdout_data, "scratch\n42\n");
  (void)client.Shutdown();
  (*vm)->Kill();
  EXPECT_FALSE(std::filesystem::exists(c.run_dir));
  EXPECT_THAT(ProcessesMentioning(c.run_dir), ::testing::IsEmpty());
}

// Reads /proc/<pid>/<file> whole.
std::string ProcFile(pid_t pid, const std::string& file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The value after `key` in /proc/<pid>/status, whitespace trimmed.
std::string StatusOf(pid_t pid, const std::string& key) {
  std::string status = "\n" + ProcFile(pid, "status");
  size_t at = status.find("\n" + key + ":");
  if (at == std::string::npos) return "";
  at += key.size() + 2;
  std::string value = status.substr(at, status.find('\n', at) - at);
  size_t first = value.find_first_not_of(" \t");
  return first == std::string::npos ? "" : value.substr(first);
}

std::string NsOf(const std::string& pid, const char* ns) {
  char link[256] = {};
  ssize_t n = readlink(("/proc/" + pid + "/ns/" + ns).c_str(), link, sizeof(link) - 1);
  return n > 0 ? std::string(link, n) : "";
}

// Everything the jail promises, checked from the host without the code
// under test (CheckJailed has its own test below).
void ExpectJailed(pid_t qemu) {
  SCOPED_TRACE("qemu pid " + std::to_string(qemu));
  EXPECT_EQ(StatusOf(qemu, "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(StatusOf(qemu, "Gid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(StatusOf(qemu, "Seccomp"), "2");
  EXPECT_EQ(StatusOf(qemu, "NoNewPrivs"), "1");
  EXPECT_EQ(StatusOf(qemu, "CapEff"), "0000000000000000");
  EXPECT_EQ(StatusOf(qemu, "CapPrm"), "0000000000000000");
  EXPECT_EQ(StatusOf(qemu, "CapBnd"), "0000000000000000");
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts", "cgroup"}) {
    EXPECT_NE(NsOf(std::to_string(qemu), ns), NsOf("self", ns)) << ns;
    EXPECT_FALSE(NsOf(std::to_string(qemu), ns).empty()) << ns;
  }
  // Its own cgroup: every hierarchy's line names a group of the jail's,
  // not the test's.
  const std::string mine = ProcFile(getpid(), "cgroup");
  const std::string theirs = ProcFile(qemu, "cgroup");
  EXPECT_NE(theirs, mine);
  EXPECT_THAT(theirs, HasSubstr("/flotilla/qemu-"));
  // pid 1 of its namespace: its own pid there.
  EXPECT_THAT(ProcFile(qemu, "status"), ::testing::ContainsRegex("NSpid:\t[0-9]+\t1\n"));
  // Its root holds only what it needs: no /home, /etc/shadow, /root.
  const std::string root = "/proc/" + std::to_string(qemu) + "/root";
  EXPECT_TRUE(std::filesystem::exists(root + "/vm/vmlinux"));
  EXPECT_TRUE(std::filesystem::exists(root + "/vm/run/agent.sock"));
  EXPECT_FALSE(std::filesystem::exists(root + "/etc/shadow"));
  EXPECT_FALSE(std::filesystem::exists(root + "/root"));
  EXPECT_FALSE(std::filesystem::exists(root + "/home"));
  EXPECT_FALSE(std::filesystem::exists(root + "/tmp/fvm"));
  // QEMU's own filter is on.
  EXPECT_THAT(ProcFile(qemu, "cmdline"), HasSubstr(sandbox::microvm::kQemuSandboxOption));
}

TEST_F(MicroVmTest, RestoredPoolVmRunsJailedAndRunsTasks) {
  EXPECT_TRUE(factory_->status().jailed) << factory_->status().jail;
  const auto before = RestoredQemus();
  auto vm = NewVm();
  ASSERT_NE(vm, nullptr);
  EXPECT_GE(factory_->status().restores, 1u);
  std::vector<pid_t> now = RestoredQemus();
  std::vector<pid_t> mine;
  for (pid_t p : now) {
    if (std::find(before.begin(), before.end(), p) == before.end()) mine.push_back(p);
  }
  ASSERT_EQ(mine.size(), 1u);
  ExpectJailed(mine[0]);
  EXPECT_TRUE(sandbox::microvm::CheckJailed(mine[0], {}).ok());
  Sink sink;
  sandbox::CancelToken cancel;
  auto r = vm->Run(Task({"sh", "-c", "echo jailed-ok"}), sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->stdout_data, "jailed-ok\n");
  vm.reset();
  EXPECT_THAT(ProcessesMentioning(run_root_), ::testing::IsEmpty());
  // The jail's cgroup and root directory went with it.
  EXPECT_TRUE(std::filesystem::is_empty(run_root_ + "/vms/roots"));
}

// A cold-booted jailed VM (no snapshot), started directly: jailed from its
// first instruction, a task runs, and Kill leaves no process, cgroup or
// directory.
TEST_F(MicroVmTest, ColdBootedJailedVmRunsATaskAndLeavesNothing) {
  MicroVmConfig c = SmallVm(run_root_ + "/jailed");
  const absl::Status jailed = Jail(c, run_root_ + "/roots");
  ASSERT_TRUE(jailed.ok()) << jailed;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  auto vm = MicroVm::Start(c, deadline);
  ASSERT_TRUE(vm.ok()) << vm.status();
  ExpectJailed((*vm)->pid());
  const std::string cgroup = ProcFile((*vm)->pid(), "cgroup");
  auto fd = (*vm)->ConnectAgent(deadline);
  ASSERT_TRUE(fd.ok()) << fd.status();
  sandbox::GuestClient client(fd->Release());
  ASSERT_TRUE(client.Handshake(std::chrono::seconds(30)).ok()) << (*vm)->ConsoleTail();
  Sink sink;
  sandbox::CancelToken cancel;
  auto r = client.Run(Task({"echo", "cold"}), sandbox::GuestClient::Mode::kExec, sink, cancel);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_data, "cold\n");
  (void)client.Shutdown();
  (*vm)->Kill();
  EXPECT_FALSE(std::filesystem::exists(c.run_dir));
  EXPECT_TRUE(std::filesystem::is_empty(run_root_ + "/roots"));
  // Every hierarchy's group of the jail is gone (in the hierarchies it
  // had none of, QEMU sat in the test's own group).
  std::istringstream lines(cgroup);
  int groups = 0;
  for (std::string line; std::getline(lines, line);) {
    std::string path = line.substr(line.rfind(':') + 1);
    if (path.find("/flotilla/qemu-") == std::string::npos) continue;
    ++groups;
    std::vector<std::string> roots = {"/sys/fs/cgroup"};
    for (const auto& e : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
      roots.push_back(e.path().string());
    }
    for (const std::string& root : roots) {
      EXPECT_FALSE(std::filesystem::exists(root + path)) << root << path;
    }
  }
  EXPECT_GT(groups, 0) << cgroup;
  std::filesystem::remove_all(run_root_ + "/roots");
}

// A jail that cannot be set up (here: root as the jail's uid) refuses
// micro-VMs with the reason rather than running QEMU unjailed.
TEST(MicroVmJail, AFactoryWhoseJailFailsIsRefusedWithTheReason) {
  SKIP_WITHOUT_QEMU();
  char tmpl[] = "/tmp/fvj.XXXXXX";
  std::string root = mkdtemp(tmpl);
  MicroVmInstanceOptions o;
  o.kernel = FLOTILLA_VM_KERNEL;
  o.initrd = FLOTILLA_VM_INITRD;
  o.run_root = root + "/vms";
  o.accel = Accel::kTcg;
  o.jail_uid = 0;
  auto f = NewMicroVmInstanceFactory(o);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("QEMU cannot be jailed"));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("must not be 0"));
  EXPECT_THAT(ProcessesMentioning(root), ::testing::IsEmpty());
  std::filesystem::remove_all(root);
}

TEST(MicroVmJail, CheckJailedRefusesAnUnjailedProcess) {
  // This test process: root, in the host's namespaces.
  absl::Status st = sandbox::microvm::CheckJailed(getpid(), {});
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("is not jailed"));
}

TEST(MicroVmProbe, KvmProbeDecidesWithinItsDeadline) {
  SKIP_WITHOUT_QEMU();
  char tmpl[] = "/tmp/fvp.XXXXXX";
  std::string root = mkdtemp(tmpl);
  MicroVmConfig c = SmallVm(root + "/probe");
  const auto started = Clock::now();
  auto probe = sandbox::microvm::ProbeAccel(c, std::chrono::seconds(5));
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(8));
  fprintf(stderr, "KVM probe: %s (%s) in %lld ms\n", sandbox::microvm::ToString(probe.accel),
          probe.reason.c_str(), static_cast<long long>(probe.probe_ms));
  if (probe.accel == Accel::kTcg) EXPECT_FALSE(probe.reason.empty());
  EXPECT_THAT(ProcessesMentioning(root), ::testing::IsEmpty());
  std::filesystem::remove_all(root);
}

// Jailed, QEMU reaches KVM through the jail's own /dev/kvm node: whatever
// the probe decides, it is not for want of access to the device.
TEST(MicroVmProbe, JailedKvmProbeCanOpenKvm) {
  SKIP_WITHOUT_QEMU();
  if (access("/dev/kvm", R_OK | W_OK) != 0) GTEST_SKIP() << "no usable /dev/kvm on this host";
  char tmpl[] = "/tmp/fvk.XXXXXX";
  std::string root = mkdtemp(tmpl);
  MicroVmConfig c = SmallVm(root + "/probe");
  const absl::Status jailed = Jail(c, root + "/roots");
  ASSERT_TRUE(jailed.ok()) << jailed;
  auto probe = sandbox::microvm::ProbeAccel(c, std::chrono::seconds(5));
  fprintf(stderr, "jailed KVM probe: %s (%s)\n", sandbox::microvm::ToString(probe.accel),
          probe.reason.c_str());
  EXPECT_THAT(probe.reason, ::testing::Not(HasSubstr("Could not access KVM")));
  EXPECT_THAT(probe.reason, ::testing::Not(HasSubstr("Permission denied")));
  EXPECT_THAT(ProcessesMentioning(root), ::testing::IsEmpty());
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace flotilla::pool
