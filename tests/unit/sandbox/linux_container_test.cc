// Tests of the Linux container (src/sandbox/linux/): each launches /bin/sh
// (or /usr/bin/python3) inside a container and checks what it can see and
// do from its output. They need root and namespaces; without them they skip
// loudly. Every test checks that its cgroups and root directory are gone
// afterwards and that no process of it survives.
#include <fcntl.h>
#include <linux/filter.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox/linux/cgroups.h"
#include "sandbox/linux/container.h"
#include "sandbox/linux/seccomp.h"

namespace flotilla::sandbox {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool PathExists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

// Why the container tests cannot run here, or "" if they can.
std::string Unavailable() {
  if (geteuid() != 0) return "not running as root";
  pid_t pid = fork();
  if (pid == 0) {
    _exit(unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                  CLONE_NEWCGROUP) == 0
              ? 0
              : 1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "unshare of namespaces failed";
  auto layout = DetectHostLayout(HostLayout{});
  if (!layout.ok()) return std::string(layout.status().message());
  return "";
}

struct RunResult {
  ContainerExit exit;
  std::string out;
  std::string err;
  ContainerUsage usage;
};

// key=value lines of `text`.
std::map<std::string, std::string> Facts(const std::string& text) {
  std::map<std::string, std::string> facts;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    facts[kv.first] = kv.second;
  }
  return facts;
}

class LinuxContainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    why_unavailable_ = new std::string(Unavailable());
    if (!why_unavailable_->empty()) return;
    HostLayout paths;
    paths.runtime_dir = absl::StrCat("/tmp/flotilla-ct-", getpid());
    paths.cgroup_parent = absl::StrCat("flotilla-test-", getpid());
    layout_ = new HostLayout(*DetectHostLayout(paths));
  }

  static void TearDownTestSuite() {
    if (layout_ == nullptr) return;
    // The shared parents our containers were put under.
    const isolation::CgroupHost& host = layout_->cgroups;
    std::vector<std::string> parents;
    if (!host.unified.empty()) {
      parents.push_back(absl::StrCat(host.unified, host.own_unified == "/" ? "" : host.own_unified,
                                     "/", layout_->cgroup_parent));
    }
    for (const auto& [controller, mount] : host.v1) {
      std::string own = host.own_v1.at(controller);
      parents.push_back(absl::StrCat(mount, own == "/" ? "" : own, "/", layout_->cgroup_parent));
    }
    for (const std::string& dir : parents) rmdir(dir.c_str());
    for (const std::string& dir : parents) EXPECT_FALSE(PathExists(dir)) << dir;
    rmdir(layout_->runtime_dir.c_str());
    EXPECT_FALSE(PathExists(layout_->runtime_dir));
    delete layout_;
    layout_ = nullptr;
  }

  void SetUp() override {
    if (!why_unavailable_->empty()) {
      GTEST_SKIP() << "\n\n*** SKIPPED: LinuxContainer tests need root and Linux namespaces: "
                   << *why_unavailable_ << " ***\n";
    }
  }

  ContainerSpec ShellSpec(const std::string& script) {
    ContainerSpec spec;
    spec.id = absl::StrCat("t", getpid(), "-", counter_++);
    spec.program_path = "/bin/sh";
    spec.argv = {"sh", "-c", script};
    spec.env = {{"PATH", "/usr/bin:/bin"}, {"FLOTILLA_TEST", "yes"}};
    return spec;
  }

  // Runs `spec` with stdout and stderr captured, calls `during` while it
  // runs, and checks that the container left nothing behind.
  RunResult Run(ContainerSpec spec, std::function<void(Container&)> during = nullptr,
                std::chrono::milliseconds timeout = 20s) {
    RunResult result;
    int out[2], err[2];
    EXPECT_EQ(pipe2(out, O_CLOEXEC), 0);
    EXPECT_EQ(pipe2(err, O_CLOEXEC), 0);
    spec.fds.push_back({out[1], 1});
    spec.fds.push_back({err[1], 2});
    auto launched = Container::Launch(spec, *layout_);
    close(out[1]);
    close(err[1]);
    if (!launched.ok()) {
      ADD_FAILURE() << launched.status();
      close(out[0]);
      close(err[0]);
      return result;
    }
    std::unique_ptr<Container> container = std::move(*launched);
    std::vector<std::string> dirs = container->CgroupDirsForTest();
    EXPECT_FALSE(dirs.empty());
    std::string root_dir = container->root_dir();
    pid_t pid = container->pid();
    if (during) during(*container);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* sinks[2] = {&result.out, &result.err};
    int open_fds = 2;
    while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
      if (poll(fds, 2, 100) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (fds[i].fd < 0 || fds[i].revents == 0) continue;
        char buf[4096];
        ssize_t n = read(fds[i].fd, buf, sizeof(buf));
        if (n > 0) {
          sinks[i]->append(buf, n);
        } else {
          close(fds[i].fd);
          fds[i].fd = -1;
          --open_fds;
        }
      }
    }
    for (auto& fd : fds) {
      if (fd.fd >= 0) close(fd.fd);
    }
    auto exit = container->Wait(open_fds == 0 ? 5000ms : 0ms);
    EXPECT_TRUE(exit.ok()) << exit.status() << "\nstdout: " << result.out
                           << "\nstderr: " << result.err;
    if (exit.ok()) result.exit = *exit;
    auto usage = container->Usage();
    EXPECT_TRUE(usage.ok()) << usage.status();
    if (usage.ok()) result.usage = *usage;
    container.reset();
    for (const std::string& dir : dirs) EXPECT_FALSE(PathExists(dir)) << dir << " left behind";
    EXPECT_FALSE(PathExists(root_dir)) << root_dir << " left behind";
    EXPECT_NE(kill(pid, 0), 0) << "the container's init " << pid << " survived";
    return result;
  }

  static std::string* why_unavailable_;
  static HostLayout* layout_;
  static std::atomic<int> counter_;
};

std::string* LinuxContainerTest::why_unavailable_ = nullptr;
HostLayout* LinuxContainerTest::layout_ = nullptr;
std::atomic<int> LinuxContainerTest::counter_{0};

TEST_F(LinuxContainerTest, SeesOnlyItselfAsUnprivilegedUserWithoutCapabilities) {
  ContainerSpec spec = ShellSpec(
      "echo pid=$$; echo procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ');"
      "echo hostname=$(cat /proc/sys/kernel/hostname); echo uid=$(id -u); echo gid=$(id -g);"
      "if cat /etc/shadow >/dev/null 2>&1; then echo shadow=readable; else echo shadow=denied; fi;"
      "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status "
      "  | tr -d ' \\t' | tr ':' '=';"
      "echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ');"
      "if touch /usr/x 2>/dev/null; then echo usr=writable; else echo usr=readonly; fi;"
      "if touch /x 2>/dev/null; then echo root=writable; else echo root=readonly; fi;"
      "echo a > /tmp/a && echo tmp=ok; echo b > /work/b && echo work=ok;"
      "echo cwd=$(pwd); echo mounts=$(wc -l < /proc/self/mountinfo);"
      "echo cgroup=$(cat /proc/self/cgroup | cut -d: -f3 | sort -u | tr '\\n' ' ');"
      "if [ -e /etc/passwd ] && [ -e /dev/null ] && [ -L /bin ]; then echo layout=ok; fi;"
      "env | sort | tr '\\n' ' ' | sed 's/^/env=/'; echo");
  spec.hostname = "box-under-test";
  std::string host_mounts = ReadAll("/proc/self/mountinfo");
  std::string mounts_while_running;
  RunResult run =
      Run(spec, [&](Container&) { mounts_while_running = ReadAll("/proc/self/mountinfo"); });
  EXPECT_EQ(mounts_while_running, host_mounts) << "a mount leaked into the host's namespace";
  EXPECT_FALSE(run.exit.signaled);
  EXPECT_EQ(run.exit.code, 0) << run.err;
  auto facts = Facts(run.out);
  EXPECT_EQ(facts["pid"], "1");
  for (absl::string_view pid : absl::StrSplit(facts["procs"], ' ', absl::SkipEmpty())) {
    int value = std::atoi(std::string(pid).c_str());
    EXPECT_LT(value, 20) << "a foreign process is visible: " << facts["procs"];
  }
  EXPECT_THAT(facts["procs"], HasSubstr("1 "));
  EXPECT_EQ(facts["hostname"], "box-under-test");
  EXPECT_EQ(facts["uid"], "65534");
  EXPECT_EQ(facts["gid"], "65534");
  EXPECT_EQ(facts["shadow"], "denied");
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(facts[set], "0000000000000000") << set;
  }
  EXPECT_EQ(facts["NoNewPrivs"], "1");
  EXPECT_EQ(facts["Seccomp"], "2");
  EXPECT_EQ(facts["ifaces"], "lo");
  EXPECT_EQ(facts["usr"], "readonly");
  EXPECT_EQ(facts["root"], "readonly");
  EXPECT_EQ(facts["tmp"], "ok");
  EXPECT_EQ(facts["work"], "ok");
  EXPECT_EQ(facts["cwd"], "/work");
  EXPECT_EQ(facts["cgroup"], "/");
  EXPECT_EQ(facts["layout"], "ok");
  EXPECT_EQ(facts["env"], "FLOTILLA_TEST=yes PATH=/usr/bin:/bin PWD=/work ")
      << "only the given environment (and the shell's own PWD)";
}

TEST_F(LinuxContainerTest, TmpAndWorkAreCapped) {
  ContainerSpec spec = ShellSpec(
      "head -c 3000000 /dev/zero > /tmp/big; echo tmp=$?;"
      "head -c 3000000 /dev/zero > /work/big; echo work=$?;"
      "rm /work/big; head -c 1000000 /dev/zero > /work/small; echo small=$?");
  spec.tmp_bytes = 2 << 20;
  spec.workdir_bytes = 2 << 20;
  RunResult run = Run(spec);
  auto facts = Facts(run.out);
  EXPECT_EQ(facts["tmp"], "1");
  EXPECT_EQ(facts["work"], "1");
  EXPECT_EQ(facts["small"], "0") << "rewriting under the cap must work";
  EXPECT_THAT(run.err, HasSubstr("No space left on device"));
}

TEST_F(LinuxContainerTest, MemoryHogIsOomKilled) {
  ContainerSpec spec = ShellSpec("/usr/bin/python3 -c 'b = bytearray(256 << 20); print(len(b))'");
  spec.limits.memory_bytes = 64 << 20;
  RunResult run = Run(spec);
  EXPECT_EQ(run.out, "");
  // sh is the init and reports its child's SIGKILL as 128 + 9.
  EXPECT_TRUE((run.exit.signaled && run.exit.signal == SIGKILL) || run.exit.code == 128 + SIGKILL)
      << "code " << run.exit.code << " stderr " << run.err;
  EXPECT_GE(run.usage.oom_kills, 1);
  EXPECT_LE(run.usage.memory_peak_bytes, 64 << 20);
}

TEST_F(LinuxContainerTest, ForkBombIsBoundedAndKillRemovesEverything) {
  ContainerSpec spec = ShellSpec("(b() { b | b & }; b) 2>/dev/null; exec sleep 60");
  spec.limits.pids_max = 32;
  spec.limits.cpu_millis = 500;
  RunResult run = Run(spec, [](Container& container) {
    std::this_thread::sleep_for(300ms);
    auto usage = container.Usage();
    ASSERT_TRUE(usage.ok()) << usage.status();
    EXPECT_LE(usage->pids_current, 32);
    EXPECT_GT(usage->pids_current, 1);
    ASSERT_TRUE(container.Kill().ok());
    // The init stays a zombie, counted in pids.current, until reaped.
    ASSERT_TRUE(container.Wait(2000ms).ok());
    auto after = container.Usage();
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(after->pids_current, 0);
  });
  EXPECT_TRUE(run.exit.signaled);
  EXPECT_EQ(run.exit.signal, SIGKILL);
}

TEST_F(LinuxContainerTest, SeccompDeniesEscapeHatchesAndOnlyGivenFdsAreOpen) {
  int extra[2];
  ASSERT_EQ(pipe2(extra, O_CLOEXEC), 0);
  // Some fds of ours the container must not get, at low and high numbers.
  int stray_low = dup(extra[1]);
  int stray_high = fcntl(extra[1], F_DUPFD, 300);
  ContainerSpec spec;
  spec.env = {{"ONLY", "this"}};
  spec.fds.push_back({extra[0], 3});
  spec.id = absl::StrCat("t", getpid(), "-", counter_++);
  spec.program_path = "/usr/bin/python3";
  spec.argv = {"python3", "-S", "-c", R"(
import ctypes, os
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("fds=" + " ".join(str(fd) for fd in range(1024) if is_open(fd)))
# The environment as exec'd (Python itself adds LC_CTYPE to os.environ).
print("env=" + open("/proc/self/environ").read().replace("\0", " ").strip())
libc = ctypes.CDLL(None, use_errno=True)
sc = libc.syscall
sc.restype = ctypes.c_long
def report(name, ret):
    print("%s=%s" % (name, "ok" if ret >= 0 else os.strerror(ctypes.get_errno())))
report("unshare_user", libc.unshare(0x10000000))
report("unshare_ns", libc.unshare(0x00020000))
report("mount", libc.mount(b"none", b"/tmp", b"tmpfs", 0, None))
report("ptrace", libc.ptrace(16, 1, 0, 0))
report("clone3", sc(435, 0, 0))
report("clone_newuser", sc(56, 0x10000000 | 17, 0, 0, 0, 0))
report("setns", libc.setns(0, 0))
report("bpf", sc(321, 0, 0, 0))
report("io_uring_setup", sc(425, 1, 0))
report("keyctl", sc(250, 0, 0, 0, 0, 0))
report("perf_event_open", sc(298, 0, 0, -1, -1, 0))
report("userfaultfd", sc(323, 0))
report("tiocsti", libc.ioctl(0, 0x5412, ctypes.byref(ctypes.c_char(b"x"))))
report("personality_query", libc.personality(0xffffffff))
report("personality_norandom", libc.personality(0x0040000))
pid = os.fork()
if pid == 0:
    os._exit(7)
report("fork", 0 if os.waitpid(pid, 0)[1] >> 8 == 7 else -1)
)"};
  RunResult run = Run(spec);
  close(extra[0]);
  close(extra[1]);
  close(stray_low);
  close(stray_high);
  EXPECT_EQ(run.exit.code, 0) << run.err;
  auto facts = Facts(run.out);
  EXPECT_EQ(facts["fds"], "0 1 2 3");
  EXPECT_EQ(facts["env"], "ONLY=this") << "exactly the given environment";
  for (const char* call : {"unshare_user", "unshare_ns", "mount", "ptrace", "clone_newuser",
                           "setns", "bpf", "io_uring_setup", "keyctl", "perf_event_open",
                           "userfaultfd", "tiocsti", "personality_norandom"}) {
    EXPECT_EQ(facts[call], "Operation not permitted") << call;
  }
  EXPECT_EQ(facts["clone3"], "Function not implemented");
  EXPECT_EQ(facts["personality_query"], "ok");
  EXPECT_EQ(facts["fork"], "ok");
}

TEST_F(LinuxContainerTest, FreezeStopsEverythingAndThawResumes) {
  ContainerSpec spec = ShellSpec("while :; do echo x; sleep 0.01; done");
  std::string frozen_output = "unset";
  RunResult run = Run(spec, [&](Container& container) {
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(container.Freeze().ok());
    // Drain what was written before the freeze, then expect silence.
    std::this_thread::sleep_for(20ms);
    auto usage_before = container.Usage();
    std::this_thread::sleep_for(150ms);
    auto usage_after = container.Usage();
    ASSERT_TRUE(usage_before.ok() && usage_after.ok());
    EXPECT_EQ(usage_before->cpu_usage_us, usage_after->cpu_usage_us) << "ran while frozen";
    ASSERT_TRUE(container.Thaw().ok());
    std::this_thread::sleep_for(100ms);
    auto usage_thawed = container.Usage();
    ASSERT_TRUE(usage_thawed.ok());
    EXPECT_GT(usage_thawed->cpu_usage_us, usage_after->cpu_usage_us) << "did not resume";
    ASSERT_TRUE(container.Kill().ok());
  });
  EXPECT_TRUE(run.exit.signaled);
}

TEST_F(LinuxContainerTest, RunsAProgramFromAnFdOutsideTheRoot) {
  // This test binary lies outside the container's root; it runs from an fd
  // opened before pivot_root, as the guest binary does.
  int program = open("/proc/self/exe", O_PATH | O_CLOEXEC);
  ASSERT_GE(program, 0);
  ContainerSpec spec = ShellSpec("");
  spec.program_path.clear();
  spec.program_fd = program;
  spec.argv = {"unit_sandbox_test", "--gtest_list_tests", "--gtest_filter=CgroupHost*"};
  RunResult run = Run(spec);
  close(program);
  EXPECT_EQ(run.exit.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("ParsesHybridUnifiedAndLegacyLayouts"));
}

TEST_F(LinuxContainerTest, TemplateRootfsIsBoundReadOnly) {
  // The host's own root as the template: its top-level entries are bound,
  // its /etc is used as is, and /tmp, /work, /dev and /proc are the container's.
  ContainerSpec spec = ShellSpec(
      "[ -x /usr/bin/env ] && echo usr=ok; [ -L /bin ] && echo bin=symlink;"
      "[ -e /etc/os-release ] && echo etc_from=template; touch /etc/x 2>/dev/null || echo "
      "etc=readonly;"
      "echo > /work/a && echo work=ok; echo pid=$$");
  spec.template_rootfs = "/";
  RunResult run = Run(spec);
  auto facts = Facts(run.out);
  EXPECT_EQ(facts["usr"], "ok") << run.err;
  EXPECT_EQ(facts["bin"], "symlink");
  EXPECT_EQ(facts["etc_from"], "template");
  EXPECT_EQ(facts["etc"], "readonly");
  EXPECT_EQ(facts["work"], "ok");
  EXPECT_EQ(facts["pid"], "1");
}

TEST_F(LinuxContainerTest, ExtraBindsAndDevicesAppearWithTheirAccess) {
  // The micro-VM jail's shape: a host file read-only, a host directory
  // writable, one more device node in the container's own /dev.
  char tmpl[] = "/tmp/fcb.XXXXXX";
  const std::string host = mkdtemp(tmpl);
  { std::ofstream(host + "/file") << "from-host"; }
  ASSERT_EQ(mkdir((host + "/dir").c_str(), 0777), 0);
  ASSERT_EQ(chmod((host + "/dir").c_str(), 0777), 0);
  ContainerSpec spec = ShellSpec(
      "echo file=$(cat /vm/file); echo x 2>/dev/null > /vm/file || echo file_write=denied;"
      "echo inside > /vm/dir/new && echo dir_write=ok;"
      "echo x > /dev/extra && [ -c /dev/extra ] && echo dev=ok");
  using Access = isolation::BindMount::Access;
  spec.binds = {{host + "/file", "/vm/file", Access::kReadOnly},
                {host + "/dir", "/vm/dir", Access::kWritable}};
  spec.devices = {{"/dev/extra", 1, 3}};
  RunResult run = Run(spec);
  auto facts = Facts(run.out);
  EXPECT_EQ(facts["file"], "from-host") << run.err;
  EXPECT_EQ(facts["file_write"], "denied");
  EXPECT_EQ(facts["dir_write"], "ok");
  EXPECT_EQ(facts["dev"], "ok");
  std::ifstream written(host + "/dir/new");
  std::string line;
  std::getline(written, line);
  EXPECT_EQ(line, "inside");
  std::filesystem::remove_all(host);
}

TEST_F(LinuxContainerTest, LaunchErrorNamesStepAndLeavesNothing) {
  ContainerSpec spec = ShellSpec("true");
  spec.program_path = "/no/such/program";
  auto launched = Container::Launch(spec, *layout_);
  ASSERT_FALSE(launched.ok());
  EXPECT_EQ(launched.status().message(),
            absl::StrCat("container ", spec.id,
                         ": execve `/no/such/program`: No such file or directory"));
  EXPECT_FALSE(PathExists(absl::StrCat(layout_->runtime_dir, "/", spec.id)));

  ContainerSpec bad_workdir = ShellSpec("true");
  bad_workdir.workdir = "/proc/work";  // /proc is mounted after the workdir: mkdir fails later
  bad_workdir.host_binds = {"/usr", "/no-such-dir", "/bin"};
  bad_workdir.template_rootfs = "/no/such/template";
  launched = Container::Launch(bad_workdir, *layout_);
  ASSERT_FALSE(launched.ok());
  EXPECT_THAT(launched.status().message(), HasSubstr("opendir `/no/such/template`"));
  EXPECT_FALSE(PathExists(absl::StrCat(layout_->runtime_dir, "/", bad_workdir.id)));
}

TEST_F(LinuxContainerTest, LegacyCgroupsFreezeAndKillWithoutCgroupV2) {
  HostLayout legacy = *layout_;
  if (legacy.cgroups.v1.count("freezer") == 0) GTEST_SKIP() << "no v1 freezer here";
  legacy.cgroups.mode = CgroupMode::kLegacy;
  legacy.cgroups.unified.clear();
  ContainerSpec spec = ShellSpec("sleep 60 & sleep 60 & wait");
  spec.limits.pids_max = 16;
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  spec.fds.push_back({out[1], 1});
  auto launched = Container::Launch(spec, legacy);
  close(out[1]);
  close(out[0]);
  ASSERT_TRUE(launched.ok()) << launched.status();
  std::unique_ptr<Container> container = std::move(*launched);
  std::vector<std::string> dirs = container->CgroupDirsForTest();
  for (const std::string& dir : dirs) EXPECT_THAT(dir, ::testing::Not(HasSubstr("unified")));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(container->Freeze().ok());
  ASSERT_TRUE(container->Thaw().ok());
  auto usage = container->Usage();
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->pids_current, 3);
  // Every sandbox has an io source (its blkio group here) and its own
  // network namespace's net/dev.
  EXPECT_GE(usage->io_read_bytes, 0);
  EXPECT_GE(usage->io_write_bytes, 0);
  EXPECT_GE(usage->net_rx_bytes, 0);
  EXPECT_GE(usage->net_tx_bytes, 0);
  ASSERT_TRUE(container->Kill().ok());
  auto exit = container->Wait(2000ms);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->signaled);
  container.reset();
  for (const std::string& dir : dirs) EXPECT_FALSE(PathExists(dir)) << dir;
}

TEST_F(LinuxContainerTest, UnifiedModeWithoutControllersSaysWhatToDelegate) {
  if (layout_->cgroups.unified.empty()) GTEST_SKIP() << "no cgroup v2 here";
  HostLayout unified = *layout_;
  unified.cgroups.mode = CgroupMode::kUnified;
  unified.cgroups.v1.clear();
  unified.cgroups.own_v1.clear();
  std::string controllers = ReadAll(unified.cgroups.unified + "/cgroup.controllers");
  if (absl::StrContains(controllers, "memory")) GTEST_SKIP() << "v2 has a memory controller";
  ContainerSpec spec = ShellSpec("true");
  spec.limits.memory_bytes = 64 << 20;
  auto launched = Container::Launch(spec, unified);
  ASSERT_FALSE(launched.ok());
  EXPECT_THAT(launched.status().message(),
              HasSubstr("cgroup v2 controller `memory` is not available"));
  // Without limits it runs, and kill, freeze and accounting work through v2 alone.
  ContainerSpec plain = ShellSpec("exec sleep 60");
  RunResult run = Run(plain, [&](Container& container) {
    ASSERT_TRUE(container.Freeze().ok());
    ASSERT_TRUE(container.Thaw().ok());
    ASSERT_TRUE(container.Kill().ok());
  });
  EXPECT_TRUE(run.exit.signaled);
}

TEST(CgroupHostTest, ParsesHybridUnifiedAndLegacyLayouts) {
  const std::string mountinfo =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
      "50 1 0:40 / /elsewhere rw - cgroup cgroup rw,pids\n";
  const std::string self = "4:memory:/agent\n2:cpu,cpuacct:/\n1:name=systemd:/\n0::/agent.slice\n";
  auto hybrid = isolation::ParseCgroupHost(mountinfo, self, "/sys/fs/cgroup");
  ASSERT_TRUE(hybrid.ok()) << hybrid.status();
  EXPECT_EQ(hybrid->mode, CgroupMode::kHybrid);
  EXPECT_EQ(hybrid->unified, "/sys/fs/cgroup/unified");
  EXPECT_EQ(hybrid->own_unified, "/agent.slice");
  EXPECT_EQ(hybrid->v1.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_EQ(hybrid->own_v1.at("memory"), "/agent");
  EXPECT_EQ(hybrid->v1.count("pids"), 0u) << "mounts outside the cgroup root do not count";

  auto unified =
      isolation::ParseCgroupHost("30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
                                 "0::/a/b\n", "/sys/fs/cgroup");
  ASSERT_TRUE(unified.ok());
  EXPECT_EQ(unified->mode, CgroupMode::kUnified);
  EXPECT_EQ(unified->own_unified, "/a/b");

  auto legacy = isolation::ParseCgroupHost(
      "35 31 0:32 /sub /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
      "4:memory:/sub/agent\n", "/sys/fs/cgroup");
  ASSERT_TRUE(legacy.ok());
  EXPECT_EQ(legacy->mode, CgroupMode::kLegacy);
  EXPECT_EQ(legacy->own_v1.at("memory"), "/agent") << "relative to the mount's root";

  EXPECT_FALSE(isolation::ParseCgroupHost("", "", "/sys/fs/cgroup").ok());
}

TEST(SeccompFilterTest, RejectsForeignArchitecturesAndX32) {
  auto filter = isolation::CompileSeccompFilter();
  ASSERT_TRUE(filter.ok()) << filter.status();
  bool checks_x32 = false;
  for (const sock_filter& insn : *filter) checks_x32 |= insn.k == 0x40000000;
  EXPECT_TRUE(checks_x32) << "no x32 syscall-bit check in the filter";
  EXPECT_GT(filter->size(), 50u);
}

// Launch -> exit of /bin/true, for the report; not a pass/fail test. Run with
// --gtest_also_run_disabled_tests --gtest_filter='*LaunchLatency*'.
TEST_F(LinuxContainerTest, DISABLED_LaunchLatency) {
  struct Variant {
    const char* name;
    std::function<void(ContainerSpec&)> apply;
  };
  std::vector<Variant> variants = {
      {"default (all namespaces, seccomp, cgroups)", [](ContainerSpec&) {}},
      {"host network (no CLONE_NEWNET)",
       [](ContainerSpec& spec) { spec.network = NetworkNamespace::kHost; }},
      {"no seccomp", [](ContainerSpec& spec) { spec.seccomp = false; }},
      {"limits set (cpu, memory, pids)", [](ContainerSpec& spec) {
         spec.limits.cpu_millis = 1000;
         spec.limits.memory_bytes = 256 << 20;
         spec.limits.pids_max = 64;
       }}};
  for (const Variant& variant : variants) {
    std::vector<double> to_launched, to_exit, to_cleaned;
    for (int i = 0; i < 200; ++i) {
      ContainerSpec spec = ShellSpec("");
      spec.program_path = "/bin/true";
      spec.argv = {"true"};
      variant.apply(spec);
      auto start = std::chrono::steady_clock::now();
      auto launched = Container::Launch(spec, *layout_);
      ASSERT_TRUE(launched.ok()) << launched.status();
      to_launched.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
      auto exit = (*launched)->Wait(5000ms);
      auto done = std::chrono::steady_clock::now();
      ASSERT_TRUE(exit.ok());
      launched->reset();
      auto cleaned = std::chrono::steady_clock::now();
      to_exit.push_back(std::chrono::duration<double, std::milli>(done - start).count());
      to_cleaned.push_back(std::chrono::duration<double, std::milli>(cleaned - start).count());
    }
    std::sort(to_launched.begin(), to_launched.end());
    std::sort(to_exit.begin(), to_exit.end());
    std::sort(to_cleaned.begin(), to_cleaned.end());
    std::printf(
        "%-45s launch->exit p50 %.3f ms p90 %.3f ms p99 %.3f ms | launch (to exec) p50 %.3f ms "
        "| +cleanup p50 %.3f ms\n",
        variant.name, to_exit[100], to_exit[180], to_exit[198], to_launched[100], to_cleaned[100]);
  }
}

}  // namespace
}  // namespace flotilla::sandbox
