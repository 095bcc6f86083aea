// The hostile suite: programs that try to break out of, exhaust or take
// down the Linux sandbox, run through a real manager and a real agent (the
// flotilla binary, default isolation: containers from warm pools).
//
// Every TEST is one hostile program with the verdict it must get: the
// final state, the exit code or signal, and what it printed about what it
// observed (each program prints the errno of every attempt, so a failure
// message says what went wrong). After every test, TearDown checks that
//   (a) nothing of it is left running on the host: no process anywhere
//       carries its marker (HOSTILE_MARKER=<marker> in its environment),
//       the agent's sandboxes hold nothing but their guests (PID 1) and
//       Python fork servers, and no process runs as the sandbox uid outside
//       a flotilla cgroup;
//   (b) no file was written outside its sandbox: programs try to write
//       <dir>/<marker> into host paths (a host directory made for the
//       suite, /tmp, /var/tmp, /dev/shm, /run, /) and none may appear;
//   (c) the agent still serves: `true` succeeds within seconds and the
//       node is online.
//
// C programs are compiled on the host at test time with `cc -static` and
// shipped in the request's files (mode 0755).
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "sandbox/linux/container.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kAgent[] = "hostile-a";
constexpr char kTenant[] = "hostile";
constexpr uid_t kSandboxUid = 65534;
constexpr int kPidsMax = 256;  // templates/shell.yaml and python.yaml
constexpr size_t kOutputLimit = 1 << 20;

// ---------------------------------------------------------------- host helpers

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (struct dirent* e = readdir(dir)) {
    char* end = nullptr;
    long pid = strtol(e->d_name, &end, 10);
    if (*end == '\0' && pid > 0) pids.push_back(static_cast<pid_t>(pid));
  }
  closedir(dir);
  return pids;
}

struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
  uid_t uid = static_cast<uid_t>(-1);
  std::string comm;
  std::string cmdline;  // NULs as spaces
  std::string cgroup;   // /proc/N/cgroup
  bool ok = false;
};

ProcInfo ReadProc(pid_t pid) {
  ProcInfo p;
  p.pid = pid;
  const std::string base = absl::StrCat("/proc/", pid);
  std::string stat = ReadFile(base + "/stat");
  size_t open = stat.find('('), close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 4 > stat.size()) return p;
  p.comm = stat.substr(open + 1, close - open - 1);
  p.state = stat[close + 2];
  p.ppid = static_cast<pid_t>(atoi(stat.c_str() + close + 4));
  for (absl::string_view line : absl::StrSplit(ReadFile(base + "/status"), '\n')) {
    if (absl::ConsumePrefix(&line, "Uid:")) p.uid = static_cast<uid_t>(atol(std::string(line).c_str()));
  }
  p.cmdline = ReadFile(base + "/cmdline");
  for (char& c : p.cmdline) {
    if (c == '\0') c = ' ';
  }
  p.cgroup = ReadFile(base + "/cgroup");
  p.ok = true;
  return p;
}

std::string Describe(const ProcInfo& p) {
  return absl::StrCat("pid ", p.pid, " ppid ", p.ppid, " uid ", p.uid, " state ",
                      std::string(1, p.state), " comm '", p.comm, "' cmdline '",
                      p.cmdline.substr(0, 120), "'");
}

// Runs a host command, returns its exit status and output.
int Sh(const std::string& command, std::string* output) {
  FILE* f = popen((command + " 2>&1").c_str(), "r");
  if (f == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) output->append(buf, n);
  int status = pclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The integer after `label` in `text`, or -1.
int64_t NumberAfter(const std::string& text, const std::string& label) {
  size_t at = text.find(label);
  if (at == std::string::npos) return -1;
  return atoll(text.c_str() + at + label.size());
}

// ---------------------------------------------------------------- C programs

// One static prober for the system calls the sandbox must deny: each
// argument names one attempt; it prints "<attempt>: <ERRNO> (<text>)" or
// "<attempt>: OK".
constexpr char kProbeSource[] = R"C(
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void report(const char* what, long rc, int err) {
  if (rc < 0) {
    const char* name = strerrorname_np(err);
    printf("%s: %s (%s)\n", what, name ? name : "?", strerror(err));
  } else {
    printf("%s: OK (%ld)\n", what, rc);
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  for (int i = 1; i < argc; ++i) {
    const char* op = argv[i];
    long rc = -1;
    errno = ENOSYS;
    if (!strcmp(op, "io_uring_setup")) {
      char params[120] = {0};
      rc = syscall(SYS_io_uring_setup, 8, params);
    } else if (!strcmp(op, "bpf")) {
      uint32_t attr[32] = {2 /* BPF_MAP_TYPE_ARRAY */, 4, 8, 1};
      rc = syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, attr, sizeof(attr));
    } else if (!strcmp(op, "bpf_prog_load")) {
      uint32_t attr[32] = {1 /* BPF_PROG_TYPE_SOCKET_FILTER */};
      rc = syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, attr, sizeof(attr));
    } else if (!strcmp(op, "perf_event_open")) {
      uint32_t attr[32] = {1 /* PERF_TYPE_SOFTWARE */, 128 /* size */};
      rc = syscall(SYS_perf_event_open, attr, 0, -1, -1, 0);
    } else if (!strcmp(op, "userfaultfd")) {
      rc = syscall(SYS_userfaultfd, 0);
    } else if (!strcmp(op, "add_key")) {
      rc = syscall(SYS_add_key, "user", "hostile", "x", 1, -2 /* process keyring */);
    } else if (!strncmp(op, "ptrace_attach:", 14)) {
      rc = ptrace(PTRACE_ATTACH, atoi(op + 14), 0, 0);
    } else if (!strncmp(op, "ptrace_seize:", 13)) {
      rc = ptrace(PTRACE_SEIZE, atoi(op + 13), 0, 0);
    } else if (!strncmp(op, "process_vm_readv:", 17)) {
      char buf[16];
      struct iovec local = {buf, sizeof(buf)}, remote = {(void*)0x400000, sizeof(buf)};
      rc = process_vm_readv(atoi(op + 17), &local, 1, &remote, 1, 0);
    } else if (!strncmp(op, "kill0:", 6)) {
      rc = kill(atoi(op + 6), 0);
    } else if (!strcmp(op, "mount_tmpfs")) {
      rc = mount("none", "/tmp", "tmpfs", 0, "size=1m");
    } else if (!strcmp(op, "remount_root_rw")) {
      rc = mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL);
    } else if (!strcmp(op, "mount_proc")) {
      rc = mount("proc", "/tmp", "proc", 0, NULL);
    } else if (!strcmp(op, "umount_work")) {
      rc = umount2("/work", MNT_DETACH);
    } else if (!strcmp(op, "unshare_user")) {
      rc = unshare(CLONE_NEWUSER);
    } else if (!strcmp(op, "unshare_mnt")) {
      rc = unshare(CLONE_NEWNS);
    } else if (!strcmp(op, "unshare_net")) {
      rc = unshare(CLONE_NEWNET);
    } else if (!strcmp(op, "unshare_pid")) {
      rc = unshare(CLONE_NEWPID);
    } else if (!strcmp(op, "clone_newuser")) {
      rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
      if (rc == 0) _exit(0);
      if (rc > 0) waitpid((pid_t)rc, NULL, 0);
    } else if (!strcmp(op, "setns_net")) {
      int fd = open("/proc/self/ns/net", O_RDONLY);
      rc = fd < 0 ? -1 : setns(fd, 0);
    } else if (!strcmp(op, "setns_mnt_pid1")) {
      int fd = open("/proc/1/ns/mnt", O_RDONLY);
      rc = fd < 0 ? -1 : setns(fd, 0);
    } else if (!strcmp(op, "chroot")) {
      rc = chroot("/tmp");
    } else if (!strcmp(op, "pivot_root")) {
      rc = syscall(SYS_pivot_root, "/tmp", "/tmp");
    } else if (!strcmp(op, "setuid0")) {
      rc = syscall(SYS_setuid, 0);
    } else if (!strcmp(op, "setresuid0")) {
      rc = syscall(SYS_setresuid, 0, 0, 0);
    } else if (!strcmp(op, "setgid0")) {
      rc = syscall(SYS_setgid, 0);
    } else if (!strcmp(op, "sched_fifo")) {
      struct sched_param sp = {.sched_priority = 99};
      rc = sched_setscheduler(0, SCHED_FIFO, &sp);
    } else if (!strcmp(op, "sched_rr")) {
      struct sched_param sp = {.sched_priority = 1};
      rc = sched_setscheduler(0, SCHED_RR, &sp);
    } else if (!strcmp(op, "nice-20")) {
      rc = setpriority(PRIO_PROCESS, 0, -20);
    } else if (!strcmp(op, "nice-1")) {
      rc = setpriority(PRIO_PROCESS, 0, -1);
    } else if (!strcmp(op, "raise_rlimit_nofile")) {
      struct rlimit r = {1 << 20, 1 << 20};
      rc = setrlimit(RLIMIT_NOFILE, &r);
    } else if (!strcmp(op, "open_self_exe_wronly")) {
      rc = open("/proc/self/exe", O_WRONLY);
    } else if (!strcmp(op, "open_self_exe_rdwr")) {
      rc = open("/proc/self/exe", O_RDWR);
    } else if (!strcmp(op, "truncate_self_exe")) {
      rc = truncate("/proc/self/exe", 0);
    } else if (!strcmp(op, "open_pid1_exe_wronly")) {
      rc = open("/proc/1/exe", O_WRONLY);
    } else if (!strcmp(op, "open_bin_sh_wronly")) {
      rc = open("/bin/sh", O_WRONLY);
    } else if (!strcmp(op, "tiocsti_pty")) {
      int m = posix_openpt(O_RDWR | O_NOCTTY);
      if (m >= 0 && grantpt(m) == 0 && unlockpt(m) == 0) {
        int s = open(ptsname(m), O_RDWR | O_NOCTTY);
        char c = 'x';
        rc = s < 0 ? -1 : ioctl(s, TIOCSTI, &c);
      }
    } else if (!strcmp(op, "tiocsti_stdin")) {
      char c = 'x';
      rc = ioctl(0, TIOCSTI, &c);
    } else if (!strcmp(op, "tioclinux")) {
      char c = 7;
      rc = ioctl(0, TIOCLINUX, &c);
    } else if (!strcmp(op, "list_fds")) {
      for (int fd = 0; fd < 4096; ++fd) {
        char path[64], target[512];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n < 0) continue;
        target[n] = 0;
        printf("fd %d -> %s\n", fd, target);
      }
      continue;
    } else if (!strcmp(op, "mknod_disk")) {
      rc = mknod("/tmp/disk", S_IFBLK | 0600, makedev(253, 0));
    } else if (!strcmp(op, "mknod_mem")) {
      rc = mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1));
    } else if (!strcmp(op, "segfault")) {
      struct rlimit core = {RLIM_INFINITY, RLIM_INFINITY};
      long raised = setrlimit(RLIMIT_CORE, &core);
      report("raise RLIMIT_CORE", raised, errno);
      *(volatile int*)8 = 1;
    } else if (!strcmp(op, "signal_pid1_all")) {
      int sent = 0, refused = 0;
      for (int sig = 1; sig <= 64; ++sig) {
        if (kill(1, sig) == 0) ++sent; else ++refused;
      }
      printf("signals to pid 1: %d sent, %d refused\n", sent, refused);
      continue;
    } else if (!strcmp(op, "kill_all")) {
      pid_t child = fork();
      if (child == 0) {
        for (;;) pause();
      }
      rc = kill(-1, SIGKILL);
      int err = errno;
      int status = 0;
      waitpid(child, &status, 0);
      report("kill(-1, SIGKILL)", rc, err);
      printf("own child: %s %d\n", WIFSIGNALED(status) ? "killed by signal" : "exited",
             WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
      printf("still alive as pid %d\n", (int)getpid());
      continue;
    } else {
      printf("%s: unknown probe\n", op);
      return 2;
    }
    report(op, rc, errno);
  }
  return 0;
}
)C";

constexpr char kForkBombSource[] = R"C(
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t self = getpid();
  long forks = 0;
  int reported = 0;
  printf("fork bomb from pid %d\n", (int)self);
  for (;;) {
    pid_t pid = fork();
    if (getpid() != self) continue;
    if (pid > 0) ++forks;
    if (pid < 0 && !reported) {
      printf("fork failed after %ld forks: %s\n", forks, strerror(errno));
      reported = 1;
    }
  }
}
)C";

constexpr char kThreadBombSource[] = R"C(
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
static void* idle(void* arg) { for (;;) pause(); return arg; }
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 << 10);
  long n = 0;
  for (;;) {
    pthread_t t;
    int rc = pthread_create(&t, &attr, idle, NULL);
    if (rc != 0) {
      printf("pthread_create failed after %ld threads: %s\n", n, strerror(rc));
      break;
    }
    ++n;
  }
  for (;;) pause();
}
)C";

constexpr char kMemoryHogSource[] = R"C(
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  long want_mib = argc > 1 ? atol(argv[1]) : 2560;
  size_t chunk = 32u << 20, total = 0;
  while ((long)(total >> 20) < want_mib) {
    char* p = malloc(chunk);
    if (p == NULL) {
      printf("malloc failed at %zu MiB\n", total >> 20);
      return 3;
    }
    memset(p, 0x5a, chunk);
    total += chunk;
    printf("touched %zu MiB\n", total >> 20);
  }
  printf("SURVIVED with %zu MiB\n", total >> 20);
  return 0;
}
)C";

constexpr char kSchedFifoLoopSource[] = R"C(
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  struct sched_param sp = {.sched_priority = 99};
  if (sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
    printf("sched_setscheduler(SCHED_FIFO, 99): %s\n", strerror(errno));
  } else {
    printf("SCHED_FIFO GRANTED\n");
  }
  if (setpriority(PRIO_PROCESS, 0, -20) != 0) printf("setpriority(-20): %s\n", strerror(errno));
  printf("policy %d nice %d; spinning\n", sched_getscheduler(0), getpriority(PRIO_PROCESS, 0));
  for (volatile unsigned long i = 0;; ++i) {
  }
}
)C";

// ---------------------------------------------------------------- the fixture

class Hostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    h_ = new FederationHarness();
    h_->StartManager();
    h_->StartAgent({.id = kAgent, .region = "hostile", .trust = 5, .data = {}, .cpu_millis = 2000});
    ASSERT_TRUE(h_->WaitOnline(1)) << h_->ReadLog("manager.log") << h_->ReadLog(std::string(kAgent) + ".log");
    agent_pid_ = h_->agent_pid(kAgent);
    agent_key_ = absl::StrCat(kAgent, ".", agent_pid_);
    v1::ListNodesResponse nodes;
    ASSERT_TRUE(h_->ListNodes(&nodes).ok());
    for (const auto& n : nodes.nodes()) {
      if (n.id() == kAgent) agent_address_ = n.address();
    }
    ASSERT_FALSE(agent_address_.empty());
    escape_dir_ = absl::StrCat("/tmp/hostile-", getpid(), "-escape");
    mkdir(escape_dir_.c_str(), 0777);
    chmod(escape_dir_.c_str(), 0777);  // writable by anyone: only isolation keeps it empty
    for (pid_t pid : AllPids()) {
      ProcInfo p = ReadProc(pid);
      if (p.ok && p.uid == kSandboxUid) baseline_sandbox_uid_.insert(pid);
    }
    guest_before_ = GuestBinaryFingerprint();
    pids_cgroup_ = AgentPidsCgroup();
    ASSERT_FALSE(pids_cgroup_.empty()) << "no pids cgroup found for the agent's sandboxes";
  }

  static void TearDownTestSuite() {
    EXPECT_EQ(GuestBinaryFingerprint(), guest_before_) << "the guest binary on the host changed";
    delete h_;  // stops the agent gracefully: it destroys its pools
    h_ = nullptr;
    // Nothing of any sandbox outlives the agent: no process in its groups,
    // no group, no runtime directory.
    std::vector<std::string> left;
    bool gone = FederationHarness::WaitUntil(seconds(10), [&] {
      left.clear();
      for (pid_t pid : AllPids()) {
        ProcInfo p = ReadProc(pid);
        if (p.ok && p.state != 'Z' && p.cgroup.find("/flotilla/" + agent_key_ + "/") != std::string::npos) {
          left.push_back(Describe(p));
        }
      }
      return left.empty() && !Exists(pids_cgroup_) && !Exists("/run/flotilla/" + agent_key_);
    });
    EXPECT_TRUE(gone) << "after the agent stopped: " << absl::StrJoin(left, "\n") << "; cgroup "
                      << pids_cgroup_ << (Exists(pids_cgroup_) ? " still there" : " gone")
                      << "; /run/flotilla/" << agent_key_
                      << (Exists("/run/flotilla/" + agent_key_) ? " still there" : " gone");
    std::error_code ec;
    std::filesystem::remove_all(escape_dir_, ec);
    binaries_.clear();  // they lived in the harness's directory
    baseline_sandbox_uid_.clear();
  }

  void SetUp() override {
    ASSERT_NE(h_, nullptr);
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    marker_ = absl::StrCat("HOSTILE_", info->name(), "_", getpid());
  }

  void TearDown() override {
    if (h_ == nullptr) return;
    CheckNothingLeftRunning();
    CheckNothingWrittenOutside();
    CheckAgentServes();
  }

  // ---- requests

  v1::ExecutionRequest Shell(const std::string& source) {
    v1::ExecutionRequest r = FederationHarness::Shell(source);
    Decorate(&r);
    return r;
  }
  v1::ExecutionRequest Python(const std::string& source) {
    v1::ExecutionRequest r;
    r.mutable_code()->set_runtime("python3");
    r.mutable_code()->set_source(source);
    Decorate(&r);
    return r;
  }
  v1::ExecutionRequest Command(std::vector<std::string> argv) {
    v1::ExecutionRequest r = FederationHarness::Command(std::move(argv));
    Decorate(&r);
    return r;
  }
  void Decorate(v1::ExecutionRequest* r) {
    r->set_user_id(kTenant);
    r->set_function(marker_);
    r->set_name(marker_);
    r->set_timeout_ms(20000);
    (*r->mutable_env())["HOSTILE_MARKER"] = marker_;
    (*r->mutable_env())["HOSTILE_ESCAPE_DIR"] = escape_dir_;
  }
  // Adds a C program, compiled here, as ./<name> in the working directory.
  static void AddBinary(v1::ExecutionRequest* r, const std::string& name, const char* source) {
    auto* f = r->mutable_dependencies()->add_files();
    f->set_path(name);
    f->set_mode(0755);
    f->set_content(Compile(name, source));
  }

  // Submits and waits for the end; the execution (state UNSPECIFIED if it
  // did not end in time).
  // Runs `r` as the admin of tenant default, or as the user holding `token`.
  v1::Execution Run(v1::ExecutionRequest r, seconds wait = seconds(60), const std::string& token = "") {
    r.set_request_id(absl::StrCat(marker_, "-", ++runs_));
    v1::SubmitResponse resp;
    grpc::Status st = h_->Submit(r, &resp, token);
    EXPECT_TRUE(st.ok()) << st.error_message();
    if (!st.ok()) return {};
    const std::string id = resp.execution().id();
    auto done = h_->WaitAllDone({id}, wait);
    EXPECT_EQ(done.size(), 1u) << id << " did not end within " << wait.count() << " s";
    if (done.empty()) return {};
    last_ = done[id];
    const auto& res = last_.result();
    std::cout << "[ verdict ] " << v1::ExecutionState_Name(last_.state()) << " / "
              << v1::Termination_Name(res.termination()) << " exit " << res.exit_code() << " signal "
              << res.signal() << ", " << res.wall_time_us() / 1000 << " ms, stdout "
              << res.stdout().size() << " B" << (res.stdout_truncated() ? " (truncated)" : "")
              << std::endl;
    if (getenv("HOSTILE_VERBOSE") != nullptr) std::cout << Show(last_) << std::endl;
    return last_;
  }

  static std::string Show(const v1::Execution& e) {
    const auto& r = e.result();
    return absl::StrCat("\n  state ", v1::ExecutionState_Name(e.state()), ", termination ",
                        v1::Termination_Name(r.termination()), ", exit ", r.exit_code(),
                        ", signal ", r.signal(), ", wall ", r.wall_time_us() / 1000, " ms",
                        e.error().empty() ? "" : ", error: " + e.error(),
                        r.error().empty() ? "" : ", result error: " + r.error(),
                        "\n  stdout (", r.stdout().size(), " bytes", r.stdout_truncated() ? ", truncated" : "",
                        "):\n", r.stdout().substr(0, 3000), "\n  stderr (", r.stderr().size(),
                        " bytes):\n", r.stderr().substr(0, 3000));
  }

  // ---- C programs

  static std::string Compile(const std::string& name, const char* source) {
    auto it = binaries_.find(name);
    if (it == binaries_.end()) {
      const std::string src = absl::StrCat(h_->dir(), "/", name, ".c");
      const std::string bin = absl::StrCat(h_->dir(), "/", name);
      std::ofstream(src) << source;
      std::string out;
      int rc = Sh(absl::StrCat("cc -static -Os -s -pthread -o ", bin, " ", src), &out);
      EXPECT_EQ(rc, 0) << "cc failed for " << name << ":\n" << out;
      it = binaries_.emplace(name, bin).first;
    }
    std::string bytes = ReadFile(it->second);
    EXPECT_GT(bytes.size(), 0u) << name;
    EXPECT_LT(bytes.size(), 3u << 20) << name << " is too large for a request";
    return bytes;
  }

  // ---- host-side observation

  // The cgroup directory (pids controller) holding this agent's sandboxes.
  static std::string AgentPidsCgroup() {
    auto layout = sandbox::DetectHostLayout({});
    if (!layout.ok()) return "";
    const auto& c = layout->cgroups;
    auto join = [](const std::string& mount, const std::string& own) {
      return absl::StrCat(mount, own == "/" ? "" : own, "/flotilla/", agent_key_);
    };
    if (c.v1.count("pids")) {
      auto own = c.own_v1.find("pids");
      return join(c.v1.at("pids"), own == c.own_v1.end() ? "/" : own->second);
    }
    if (!c.unified.empty()) return join(c.unified, c.own_unified);
    return "";
  }

  // The largest pids.current of any of the agent's sandboxes right now.
  static int64_t MaxSandboxPids() {
    const std::string& dir = pids_cgroup_;
    int64_t most = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (!e.is_directory()) continue;
      std::string v = ReadFile((e.path() / "pids.current").string());
      if (!v.empty()) most = std::max<int64_t>(most, atoll(v.c_str()));
    }
    return most;
  }

  // Samples MaxSandboxPids in the background while a test runs.
  class PidsSampler {
   public:
    PidsSampler()
        : thread_([this] {
            while (!stop_) {
              max_ = std::max<int64_t>(max_, MaxSandboxPids());
              std::this_thread::sleep_for(milliseconds(10));
            }
          }) {}
    ~PidsSampler() { Stop(); }
    int64_t Stop() {
      stop_ = true;
      if (thread_.joinable()) thread_.join();
      return max_;
    }

   private:
    std::atomic<bool> stop_{false};
    std::atomic<int64_t> max_{0};
    std::thread thread_;
  };

  // Host processes that carry `marker` in their environment or command line.
  static std::vector<std::string> MarkedProcesses(const std::string& marker) {
    std::vector<std::string> found;
    for (pid_t pid : AllPids()) {
      if (pid == getpid()) continue;
      const std::string base = absl::StrCat("/proc/", pid);
      std::string env = ReadFile(base + "/environ");
      std::string cmd = ReadFile(base + "/cmdline");
      if (env.find(marker) == std::string::npos && cmd.find(marker) == std::string::npos) continue;
      ProcInfo p = ReadProc(pid);
      if (p.ok && p.state != 'Z') found.push_back(Describe(p));
    }
    return found;
  }

  // Processes in this agent's sandboxes other than each sandbox's guest
  // (PID 1, a child of the agent) and its Python fork server (a python3
  // child of a guest).
  static std::vector<std::string> SandboxLeftovers() {
    const std::string key = absl::StrCat("/flotilla/", agent_key_, "/");
    std::vector<ProcInfo> in;
    std::set<pid_t> guests;
    for (pid_t pid : AllPids()) {
      ProcInfo p = ReadProc(pid);
      if (!p.ok || p.cgroup.find(key) == std::string::npos) continue;
      if (p.ppid == agent_pid_ && p.comm == "flotilla-guest") {
        guests.insert(pid);
        continue;
      }
      in.push_back(p);
    }
    std::vector<std::string> left;
    for (const ProcInfo& p : in) {
      if (p.state == 'Z') continue;
      bool server = guests.count(p.ppid) && p.comm.rfind("python3", 0) == 0 &&
                    p.cmdline.find("_set_dumpable") != std::string::npos;
      if (!server) left.push_back(Describe(p));
    }
    return left;
  }

  // Processes of the sandbox uid outside every flotilla cgroup: escapees.
  static std::vector<std::string> UnconfinedSandboxUid() {
    std::vector<std::string> found;
    for (pid_t pid : AllPids()) {
      if (baseline_sandbox_uid_.count(pid)) continue;
      ProcInfo p = ReadProc(pid);
      if (!p.ok || p.uid != kSandboxUid || p.state == 'Z') continue;
      if (p.cgroup.find("flotilla") != std::string::npos) continue;
      found.push_back(Describe(p) + "\n    cgroup: " + p.cgroup);
    }
    return found;
  }

  static std::string GuestBinaryFingerprint() {
    struct stat st;
    std::string guest = std::string(FLOTILLA_BIN);
    guest = guest.substr(0, guest.rfind('/')) + "/flotilla-guest";
    if (stat(guest.c_str(), &st) != 0) return "missing";
    return absl::StrCat(st.st_size, "/", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "/",
                        std::hash<std::string>()(ReadFile(guest)));
  }

  void CheckNothingLeftRunning() {
    std::vector<std::string> marked, leftovers, unconfined;
    bool clean = FederationHarness::WaitUntil(seconds(10), [&] {
      marked = MarkedProcesses(marker_);
      leftovers = SandboxLeftovers();
      unconfined = UnconfinedSandboxUid();
      return marked.empty() && leftovers.empty() && unconfined.empty();
    });
    EXPECT_TRUE(clean) << "left running after the task ended:\n  with the marker: "
                       << absl::StrJoin(marked, "\n    ") << "\n  in the sandboxes: "
                       << absl::StrJoin(leftovers, "\n    ")
                       << "\n  sandbox uid outside flotilla cgroups: "
                       << absl::StrJoin(unconfined, "\n    ");
  }

  void CheckNothingWrittenOutside() {
    std::vector<std::string> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(escape_dir_, ec)) {
      found.push_back(e.path().string());
    }
    for (const char* dir : {"/tmp", "/var/tmp", "/dev/shm", "/run", "", "/root"}) {
      const std::string path = absl::StrCat(dir, "/", marker_);
      if (Exists(path)) found.push_back(path);
    }
    for (auto it = std::filesystem::recursive_directory_iterator(
             h_->dir(), std::filesystem::directory_options::skip_permission_denied, ec);
         it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) break;
      if (it->path().filename().string().find(marker_) != std::string::npos) {
        found.push_back(it->path().string());
      }
    }
    EXPECT_TRUE(found.empty()) << "written outside the sandbox: " << absl::StrJoin(found, ", ");
  }

  void CheckAgentServes() {
    v1::ExecutionRequest probe = FederationHarness::Command({"true"});
    probe.set_user_id(kTenant);
    probe.set_function("hostile-probe");
    probe.set_timeout_ms(10000);
    probe.set_request_id(absl::StrCat(marker_, "-probe"));
    auto t0 = std::chrono::steady_clock::now();
    v1::SubmitResponse resp;
    grpc::Status st = h_->Submit(probe, &resp);
    ASSERT_TRUE(st.ok()) << "the manager no longer accepts work: " << st.error_message();
    auto done = h_->WaitAllDone({resp.execution().id()}, seconds(15));
    ASSERT_EQ(done.size(), 1u) << "`true` did not finish within 15 s after the hostile program";
    const auto& e = done.begin()->second;
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << "`true` after the hostile program:" << Show(e);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(8)) << "`true` was slow";
    EXPECT_EQ(e.node_id(), kAgent);
    std::string stat = ReadFile(absl::StrCat("/proc/", agent_pid_, "/stat"));
    size_t close = stat.rfind(')');
    ASSERT_NE(close, std::string::npos) << "the agent process is gone";
    EXPECT_NE(stat[close + 2], 'Z') << "the agent died";
    v1::ListNodesResponse nodes;
    ASSERT_TRUE(h_->ListNodes(&nodes).ok());
    bool online = false;
    for (const auto& n : nodes.nodes()) online |= n.id() == kAgent && n.status() == v1::NODE_ONLINE;
    EXPECT_TRUE(online) << "the agent is not online";
  }

  static int Port(const std::string& address) {
    return std::stoi(address.substr(address.rfind(':') + 1));
  }

  static FederationHarness* h_;
  static pid_t agent_pid_;
  static std::string agent_key_;
  static std::string agent_address_;
  static std::string escape_dir_;
  static std::set<pid_t> baseline_sandbox_uid_;
  static std::map<std::string, std::string> binaries_;
  static std::string guest_before_;
  static std::string pids_cgroup_;

  std::string marker_;
  int runs_ = 0;
  v1::Execution last_;
};

FederationHarness* Hostile::h_ = nullptr;
pid_t Hostile::agent_pid_ = 0;
std::string Hostile::agent_key_;
std::string Hostile::agent_address_;
std::string Hostile::escape_dir_;
std::set<pid_t> Hostile::baseline_sandbox_uid_;
std::map<std::string, std::string> Hostile::binaries_;
std::string Hostile::guest_before_;
std::string Hostile::pids_cgroup_;

// Every shell program starts by trying to write <dir>/<marker> into host
// paths; TearDown asserts none of them exists on the host.
constexpr char kShellEscapeTries[] = R"SH(
mkdir -p "$HOSTILE_ESCAPE_DIR" 2>/dev/null
for d in "$HOSTILE_ESCAPE_DIR" /tmp /var/tmp /dev/shm /run / /root; do
  (echo escaped > "$d/$HOSTILE_MARKER") 2>/dev/null && echo "wrote $d/$HOSTILE_MARKER (inside the sandbox)"
done
)SH";

constexpr char kPythonEscapeTries[] = R"PY(
import os
os.makedirs(os.environ["HOSTILE_ESCAPE_DIR"], exist_ok=True)
for d in (os.environ["HOSTILE_ESCAPE_DIR"], "/tmp", "/var/tmp", "/dev/shm", "/run", "/", "/root"):
    try:
        with open(os.path.join(d, os.environ["HOSTILE_MARKER"]), "w") as f:
            f.write("escaped")
        print("wrote %s/%s (inside the sandbox)" % (d, os.environ["HOSTILE_MARKER"]))
    except OSError:
        pass
)PY";

std::string WithEscapeTries(const std::string& script) { return kShellEscapeTries + script; }
std::string PyWithEscapeTries(const std::string& script) { return kPythonEscapeTries + script; }

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "missing '" << (needle) << "'" << Show(last_)
#define EXPECT_HASNT(haystack, needle) \
  EXPECT_EQ(std::string(haystack).find(needle), std::string::npos) << "unexpected '" << (needle) << "'" << Show(last_)

// ============================================================ process limits

TEST_F(Hostile, ShellForkBombIsCappedByPidsMaxAndEndedByTheTimeout) {
  auto r = Shell(WithEscapeTries("exec bash -c ':(){ :|:& };:; sleep 60'"));
  r.set_timeout_ms(3000);
  PidsSampler sampler;
  auto e = Run(r);
  int64_t peak = sampler.Stop();
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_EQ(e.result().termination(), v1::TERMINATION_TIMED_OUT);
  EXPECT_LE(peak, kPidsMax) << "pids.current went past pids.max";
  EXPECT_GE(peak, 50) << "the bomb never got going (peak " << peak << " processes)";
  std::cout << "[ shell fork bomb ] peak " << peak << " processes in the sandbox" << std::endl;
}

TEST_F(Hostile, CForkBombFailsWithEagainAtPidsMax) {
  auto r = Shell(WithEscapeTries("exec ./forkbomb"));
  AddBinary(&r, "forkbomb", kForkBombSource);
  r.set_timeout_ms(3000);
  PidsSampler sampler;
  auto e = Run(r);
  int64_t peak = sampler.Stop();
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_HAS(e.result().stdout(), "fork failed after");
  EXPECT_HAS(e.result().stdout(), "Resource temporarily unavailable");
  EXPECT_LE(peak, kPidsMax);
  EXPECT_GE(peak, kPidsMax - 10) << "the bomb should reach the cap";
}

TEST_F(Hostile, PythonForkLoopIsCappedByPidsMax) {
  auto r = Python(PyWithEscapeTries(R"PY(
import os, sys, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print("fork failed after %d children: %s" % (n, e.strerror), flush=True)
        break
    if pid == 0:
        time.sleep(3600)
        os._exit(0)
    n += 1
time.sleep(3600)
)PY"));
  r.set_timeout_ms(3000);
  PidsSampler sampler;
  auto e = Run(r);
  int64_t peak = sampler.Stop();
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_HAS(e.result().stdout(), "fork failed after");
  EXPECT_HAS(e.result().stdout(), "Resource temporarily unavailable");
  EXPECT_LE(peak, kPidsMax);
}

TEST_F(Hostile, ThreadBombIsCappedByPidsMaxToo) {
  auto r = Shell(WithEscapeTries("exec ./threadbomb"));
  AddBinary(&r, "threadbomb", kThreadBombSource);
  r.set_timeout_ms(3000);
  PidsSampler sampler;
  auto e = Run(r);
  int64_t peak = sampler.Stop();
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_HAS(e.result().stdout(), "pthread_create failed after");
  EXPECT_HAS(e.result().stdout(), "Resource temporarily unavailable");
  int64_t threads = NumberAfter(e.result().stdout(), "failed after ");
  EXPECT_GT(threads, 100);
  EXPECT_LT(threads, kPidsMax) << "threads count against pids.max";
  EXPECT_LE(peak, kPidsMax);
}

TEST_F(Hostile, MemoryHogAtTenTimesTheLimitIsOomKilled) {
  auto r = Shell(WithEscapeTries("exec ./memhog 2560"));  // shell template: 256 MiB
  AddBinary(&r, "memhog", kMemoryHogSource);
  r.set_timeout_ms(20000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_FAILED) << Show(e);
  EXPECT_EQ(e.result().termination(), v1::TERMINATION_SIGNALED) << Show(e);
  EXPECT_EQ(e.result().signal(), SIGKILL);
  EXPECT_HAS(e.result().stderr(), "[flotilla] killed: out of memory");
  EXPECT_HASNT(e.result().stdout(), "SURVIVED");
  EXPECT_HASNT(e.result().stdout(), "touched 320 MiB");
  EXPECT_LT(e.result().peak_memory_bytes(), 300ll << 20) << Show(e);
}

// ============================================================ file systems

TEST_F(Hostile, FillingDevShmStopsAtItsCap) {
  auto r = Shell(WithEscapeTries(R"SH(
dd if=/dev/zero of=/dev/shm/fill-$HOSTILE_MARKER bs=1M count=1024 2>&1 | grep -v records
echo "dd status: $?"
echo "shm bytes: $(stat -c %s /dev/shm/fill-$HOSTILE_MARKER)"
exit 0
)SH"));
  r.set_timeout_ms(10000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "No space left on device");
  int64_t shm = NumberAfter(e.result().stdout(), "shm bytes: ");
  EXPECT_LE(shm, 16 << 20) << Show(e);  // the template's 16 MiB /dev/shm, less the marker file
  EXPECT_GE(shm, 15 << 20) << Show(e);
  EXPECT_FALSE(Exists("/dev/shm/fill-" + marker_));
}

TEST_F(Hostile, OutputFloodIsTruncatedAtTheOutputLimit) {
  auto r = Command({"yes", "flood"});
  r.set_timeout_ms(2000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_EQ(e.result().stdout().size(), kOutputLimit);
  EXPECT_TRUE(e.result().stdout_truncated());
  EXPECT_EQ(e.result().stdout().substr(0, 12), "flood\nflood\n");
}

TEST_F(Hostile, FillingTheDiskStopsAtTheTmpfsCaps) {
  auto r = Shell(WithEscapeTries(R"SH(
for d in /work /tmp; do
  dd if=/dev/zero of=$d/fill bs=1M count=4096 2>&1 | grep -v records
  echo "$d bytes: $(stat -c %s $d/fill)"
done
echo "a" > /work/after-full 2>&1 || echo "write after full failed"
exit 0
)SH"));
  r.set_timeout_ms(15000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "No space left on device");
  for (const char* dir : {"/work bytes: ", "/tmp bytes: "}) {
    int64_t bytes = NumberAfter(e.result().stdout(), dir);
    EXPECT_LE(bytes, 64 << 20) << dir << Show(e);  // tmp: 64Mi, work: 64Mi
    EXPECT_GE(bytes, 63 << 20) << dir << Show(e);
  }
  EXPECT_HAS(e.result().stdout(), "write after full failed");
  // The same function gets the same (cleaned) sandbox: /work is empty again.
  auto again = Run(Shell("ls -A /work; echo \"work used: $(du -sk /work | cut -f1) KiB\""));
  EXPECT_EQ(again.state(), v1::EXECUTION_SUCCEEDED) << Show(again);
  EXPECT_HASNT(again.result().stdout(), "fill");
  EXPECT_HAS(again.result().stdout(), "main.sh");
}

TEST_F(Hostile, AMillionFilesHitTheCapAndCleanupStaysFast) {
  auto r = Python(PyWithEscapeTries(R"PY(
import os, sys
n = 0
try:
    for i in range(1000000):
        open("/work/f%07d" % i, "w").close()
        n += 1
        if n % 50000 == 0:
            print("created", n, flush=True)
except OSError as e:
    print("stopped after %d files: %s" % (n, e.strerror), flush=True)
    sys.exit(3)
print("CREATED ALL", n)
)PY"));
  r.set_timeout_ms(4000);
  auto e = Run(r);
  const bool capped = e.state() == v1::EXECUTION_TIMED_OUT ||
                      (e.state() == v1::EXECUTION_FAILED &&
                       (e.result().signal() == SIGKILL || e.result().exit_code() == 3));
  EXPECT_TRUE(capped) << "expected a timeout, an OOM kill or ENOSPC/ENOMEM" << Show(e);
  EXPECT_HASNT(e.result().stdout(), "CREATED ALL");
  // The next task of the same function (the same sandbox if it could be
  // cleaned in time, else a new one) starts with an empty /work, fast.
  auto t0 = std::chrono::steady_clock::now();
  auto next = Run(Python("import os; print('files left:', len(os.listdir('/work')) - 1)"));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(next.state(), v1::EXECUTION_SUCCEEDED) << Show(next);
  EXPECT_HAS(next.result().stdout(), "files left: 0");
  EXPECT_LT(took, seconds(8)) << "the next task waited for the clean-up";
}

// ============================================================ time limits

TEST_F(Hostile, BusyLoopTimesOut) {
  auto r = Shell(WithEscapeTries("while :; do :; done"));
  r.set_timeout_ms(1500);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_GE(e.result().wall_time_us(), 1'400'000);
  EXPECT_LT(e.result().wall_time_us(), 4'000'000);
}

TEST_F(Hostile, SleepForeverTimesOut) {
  auto r = Shell(WithEscapeTries("sleep infinity"));
  r.set_timeout_ms(1000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_LT(e.result().wall_time_us(), 4'000'000);
}

TEST_F(Hostile, SchedFifoIsDeniedAndTheSpinTimesOut) {
  auto r = Shell(WithEscapeTries("exec ./fifo"));
  AddBinary(&r, "fifo", kSchedFifoLoopSource);
  r.set_timeout_ms(2000);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_TIMED_OUT) << Show(e);
  EXPECT_HAS(e.result().stdout(), "sched_setscheduler(SCHED_FIFO, 99): Operation not permitted");
  EXPECT_HAS(e.result().stdout(), "policy 0 nice 0");
  EXPECT_HASNT(e.result().stdout(), "GRANTED");
}

TEST_F(Hostile, NiceMinusTwentyIsDenied) {
  auto r = Shell(WithEscapeTries(R"SH(
nice -n -20 sh -c 'echo "niceness inside: $(cut -d" " -f19 /proc/self/stat)"'
./probe nice-20 nice-1 sched_rr raise_rlimit_nofile
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stderr(), "cannot set niceness: Permission denied");
  EXPECT_HAS(e.result().stdout(), "niceness inside: 0");
  EXPECT_HAS(e.result().stdout(), "nice-20: EACCES");
  EXPECT_HAS(e.result().stdout(), "nice-1: EACCES");
  EXPECT_HAS(e.result().stdout(), "sched_rr: EPERM");
  EXPECT_HAS(e.result().stdout(), "raise_rlimit_nofile: EPERM");
}

// ============================================================ network

TEST_F(Hostile, OutsideAddressesAreUnreachable) {
  auto e = Run(Python(PyWithEscapeTries(R"PY(
import socket
for family, addr in ((socket.AF_INET, ("192.0.2.1", 80)), (socket.AF_INET, ("10.255.255.1", 80)),
                     (socket.AF_INET6, ("2001:db8::1", 80))):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(addr)
        print("CONNECTED", addr)
    except OSError as e:
        print("tcp", addr[0], "->", e.strerror or e)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("8.8.8.8", 53))
    print("UDP SENT")
except OSError as e:
    print("udp 8.8.8.8 ->", e.strerror)
try:
    print("RESOLVED", socket.getaddrinfo("example.com", 80))
except OSError as e:
    print("dns ->", e)
print("interfaces:", sorted(name for _, name in socket.if_nameindex()))
)PY")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "tcp 192.0.2.1 -> Network is unreachable");
  EXPECT_HAS(out, "tcp 10.255.255.1 -> Network is unreachable");
  EXPECT_HAS(out, "tcp 2001:db8::1 -> Network is unreachable");
  EXPECT_HAS(out, "udp 8.8.8.8 -> Network is unreachable");
  EXPECT_HAS(out, "interfaces: ['lo']");
  EXPECT_HASNT(out, "CONNECTED");
  EXPECT_HASNT(out, "UDP SENT");
  EXPECT_HASNT(out, "RESOLVED");
  EXPECT_LT(e.result().wall_time_us(), 3'000'000) << "unreachable must fail at once, not time out";
}

TEST_F(Hostile, ManagerAndAgentPortsAreNotReachable) {
  const int manager = Port(h_->manager_address()), http = Port(h_->http_address()),
            agent = Port(agent_address_);
  auto e = Run(Python(PyWithEscapeTries(absl::StrCat(R"PY(
import socket
for name, port in (("manager", )PY", manager, R"PY(), ("manager-http", )PY", http, R"PY(), ("agent", )PY",
                                                  agent, R"PY()):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        print("CONNECTED to the", name, "port", port)
    except OSError as e:
        print(name, port, "->", e.strerror or e)
)PY"))));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, absl::StrCat("manager ", manager, " -> Connection refused"));
  EXPECT_HAS(out, absl::StrCat("manager-http ", http, " -> Connection refused"));
  EXPECT_HAS(out, absl::StrCat("agent ", agent, " -> Connection refused"));
  EXPECT_HASNT(out, "CONNECTED");
}

TEST_F(Hostile, RawAndPacketSocketsAreDenied) {
  auto e = Run(Python(PyWithEscapeTries(R"PY(
import socket
for name, args in (("raw icmp", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                   ("raw tcp", (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)),
                   ("raw6", (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)),
                   ("packet", (socket.AF_PACKET, socket.SOCK_RAW, 0x0300))):
    try:
        socket.socket(*args)
        print(name, "OPENED")
    except OSError as e:
        print(name, "->", e.strerror)
)PY")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* s : {"raw icmp", "raw tcp", "raw6"}) {
    EXPECT_HAS(out, absl::StrCat(s, " -> Operation not permitted"));
  }
  // AF_PACKET is not even reached: seccomp refuses the family.
  EXPECT_HAS(out, "packet -> Address family not supported by protocol");
  EXPECT_HASNT(out, "OPENED");
}

TEST_F(Hostile, KernelSocketFamiliesAreDenied) {
  auto e = Run(Python(PyWithEscapeTries(R"PY(
import ctypes, socket
for name, args in (("alg", (38, socket.SOCK_SEQPACKET, 0)),
                   ("vsock", (40, socket.SOCK_STREAM, 0)),
                   ("key", (15, socket.SOCK_RAW, 2)),
                   ("bluetooth", (31, socket.SOCK_RAW, 1)),
                   ("tipc", (30, socket.SOCK_RDM, 0)),
                   ("netlink audit", (socket.AF_NETLINK, socket.SOCK_RAW, 9)),
                   ("netlink uevent", (socket.AF_NETLINK, socket.SOCK_DGRAM, 15)),
                   ("family 200", (200, socket.SOCK_STREAM, 0)),
                   ("netlink route", (socket.AF_NETLINK, socket.SOCK_RAW, 0)),
                   ("unix", (socket.AF_UNIX, socket.SOCK_STREAM, 0)),
                   ("inet6", (socket.AF_INET6, socket.SOCK_DGRAM, 0))):
    try:
        socket.socket(*args).close()
        print(name, "OPENED")
    except OSError as e:
        print(name, "->", e.strerror)
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(16)
rc = libc.syscall(154, 1, buf, 16)  # modify_ldt(write)
print("modify_ldt ->", rc, ctypes.get_errno())
)PY")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* s : {"alg", "vsock", "key", "bluetooth", "tipc", "netlink audit",
                        "netlink uevent", "family 200"}) {
    EXPECT_HAS(out, absl::StrCat(s, " -> Address family not supported by protocol"));
  }
  for (const char* s : {"netlink route", "unix", "inet6"}) EXPECT_HAS(out, absl::StrCat(s, " OPENED"));
  EXPECT_HAS(out, absl::StrCat("modify_ldt -> -1 ", EPERM));
}

TEST_F(Hostile, NetlinkCannotChangeLinksOrAddresses) {
  const std::string ifname = absl::StrCat("hx", getpid() % 100000);
  auto e = Run(Python(PyWithEscapeTries(absl::StrCat("IFNAME = '", ifname, "'\n", R"PY(
import errno, socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
print("netlink socket opened")
def attr(kind, data):
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((4 - n % 4) % 4)
def request(kind, flags, body, seq):
    s.send(struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body)
    data = s.recv(65536)
    _, t, _, _, _ = struct.unpack("=IHHII", data[:16])
    if t == 2:  # NLMSG_ERROR
        return -struct.unpack("=i", data[16:20])[0]
    return None
REQ, ACK, EXCL, CREATE = 1, 4, 0x200, 0x400
link = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + attr(3, IFNAME.encode() + b"\0") + attr(18, attr(1, b"dummy\0"))
e = request(16, REQ | ACK | CREATE | EXCL, link, 1)  # RTM_NEWLINK
print("RTM_NEWLINK dummy:", errno.errorcode.get(e, e))
addr = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, socket.if_nametoindex("lo"))
ip = socket.inet_aton("10.123.45.67")
e = request(20, REQ | ACK | CREATE | EXCL, addr + attr(2, ip) + attr(1, ip), 2)  # RTM_NEWADDR
print("RTM_NEWADDR:", errno.errorcode.get(e, e))
route = struct.pack("=BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 4, 0, 1, 0)
e = request(24, REQ | ACK | CREATE, route + attr(4, struct.pack("=I", socket.if_nametoindex("lo"))), 3)  # RTM_NEWROUTE default dev lo
print("RTM_NEWROUTE:", errno.errorcode.get(e, e))
down = struct.pack("=BxHiII", 0, 0, socket.if_nametoindex("lo"), 0, 1)  # IFF_UP cleared
e = request(16, REQ | ACK, down, 4)
print("RTM_NEWLINK lo down:", errno.errorcode.get(e, e))
print("interfaces:", sorted(n for _, n in socket.if_nameindex()))
)PY"))));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "netlink socket opened");
  EXPECT_HAS(out, "RTM_NEWLINK dummy: EPERM");
  EXPECT_HAS(out, "RTM_NEWADDR: EPERM");
  EXPECT_HAS(out, "RTM_NEWROUTE: EPERM");
  EXPECT_HAS(out, "RTM_NEWLINK lo down: EPERM");
  EXPECT_HAS(out, "interfaces: ['lo']");
  EXPECT_FALSE(Exists("/sys/class/net/" + ifname)) << "a link appeared on the host";
  std::string addrs;
  if (Sh("ip -o addr show", &addrs) == 0) {
    EXPECT_HASNT(addrs, "10.123.45.67");
  }
}

// ============================================================ secrets of others

TEST_F(Hostile, EtcShadowIsNotThere) {
  auto e = Run(Shell(WithEscapeTries(R"SH(
for f in /etc/shadow /etc/gshadow /etc/sudoers /root/.ssh/id_rsa /proc/1/root/etc/shadow /var/lib/flotilla; do
  if out=$(cat "$f" 2>&1); then echo "READ $f"; else echo "denied $f: ${out##*: }"; fi
done
echo "etc: $(ls /etc | tr '\n' ' ')"
grep -c . /etc/passwd
)SH")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "denied /etc/shadow: No such file or directory");
  EXPECT_HAS(out, "denied /proc/1/root/etc/shadow: No such file or directory");
  EXPECT_HASNT(out, "READ ");
  EXPECT_HASNT(out, "shadow ");  // not listed in /etc
  EXPECT_HAS(out, "\n2\n") << "the sandbox's /etc/passwd has only root and the sandbox user";
}

TEST_F(Hostile, OtherProcessesEnvironIsNotReadable) {
  // A victim in another tenant's sandbox holds a secret in its environment.
  const std::string secret = marker_ + "-VICTIM-SECRET";
  v1::ExecutionRequest victim = FederationHarness::Shell("sleep 20");
  victim.set_user_id("victim");
  victim.set_function(marker_ + "-victim");
  victim.set_timeout_ms(20000);
  (*victim.mutable_env())["VICTIM_SECRET"] = secret;
  (*victim.mutable_env())["HOSTILE_MARKER"] = marker_;
  victim.set_request_id(marker_ + "-victim");
  v1::SubmitResponse vresp;
  ASSERT_TRUE(h_->Submit(victim, &vresp).ok());
  const std::string vid = vresp.execution().id();
  ASSERT_TRUE(FederationHarness::WaitUntil(seconds(10), [&] {
    v1::Execution v;
    return h_->Get(vid, &v).ok() && v.state() == v1::EXECUTION_RUNNING;
  }));
  // The detectors TearDown relies on see a running sandbox process: the
  // victim carries the marker and is no guest.
  // "running" is reported when the agent accepts the task, a moment before
  // its process exists in the sandbox: wait for it (bounded).
  EXPECT_TRUE(FederationHarness::WaitUntil(seconds(5), [&] { return !MarkedProcesses(marker_).empty(); }))
      << "the marker scan cannot see sandbox processes";
  EXPECT_FALSE(SandboxLeftovers().empty()) << "the sandbox scan cannot see sandbox processes";
  auto e = Run(Python(PyWithEscapeTries(absl::StrCat(
      "AGENT, MANAGER, SECRET = ", agent_pid_, ", ", h_->manager_pid(), ", '", secret, "'\n", R"PY(
import os, subprocess
sibling = subprocess.Popen(["sleep", "30"], env={"MINE": "1"})
targets = {"guest": 1, "fork server": os.getppid(), "agent": AGENT, "manager": MANAGER,
           "own child": sibling.pid}
for name, pid in targets.items():
    for what in ("environ", "mem", "cmdline"):
        try:
            with open("/proc/%d/%s" % (pid, what), "rb") as f:
                data = f.read(4096)
            print("%s %s: READ %d bytes" % (name, what, len(data)))
        except OSError as e:
            print("%s %s: %s" % (name, what, e.strerror))
seen = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("visible pids:", seen)
leaked = False
for p in seen:
    try:
        with open("/proc/%d/environ" % p, "rb") as f:
            leaked |= SECRET.encode() in f.read()
    except OSError:
        pass
print("victim secret found:", leaked)
sibling.kill()
)PY"))));
  v1::CancelResponse cancelled;
  h_->Cancel(vid, &cancelled);
  h_->WaitAllDone({vid}, seconds(10));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* who : {"guest", "fork server", "agent", "manager"}) {
    for (const char* what : {"environ", "mem", "cmdline"}) {
      EXPECT_HAS(out, absl::StrCat(who, " ", what, ": No such file or directory"));
    }
  }
  EXPECT_HAS(out, "own child environ: READ");  // its own processes stay visible
  EXPECT_HAS(out, "victim secret found: False");
}

TEST_F(Hostile, PtraceOfTheGuestAndTheAgentIsDenied) {
  auto r = Shell(WithEscapeTries(absl::StrCat(
      "./probe ptrace_attach:1 ptrace_seize:1 process_vm_readv:1 ptrace_attach:", agent_pid_,
      " ptrace_seize:", agent_pid_, " process_vm_readv:", agent_pid_, " kill0:", agent_pid_, "\n", "sleep 30 & ./probe ptrace_attach:$!; kill $!\n")));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const std::string& pid : {std::string("1"), std::to_string(agent_pid_)}) {
    EXPECT_HAS(out, "ptrace_attach:" + pid + ": EPERM");
    EXPECT_HAS(out, "ptrace_seize:" + pid + ": EPERM");
    EXPECT_HAS(out, "process_vm_readv:" + pid + ": EPERM");
  }
  EXPECT_HAS(out, absl::StrCat("kill0:", agent_pid_, ": ESRCH"));  // not in its pid namespace
  EXPECT_HASNT(out, ": OK");
}

// ============================================================ privileges

TEST_F(Hostile, MountUnshareSetnsAreDenied) {
  auto r = Shell(WithEscapeTries(R"SH(
./probe mount_tmpfs remount_root_rw mount_proc umount_work unshare_user unshare_mnt unshare_net \
        unshare_pid clone_newuser setns_net setns_mnt_pid1 chroot pivot_root
unshare -Ur id 2>&1 | sed 's/^/unshare -Ur: /'
echo $$ > /sys/fs/cgroup/cgroup.procs 2>/dev/null && echo "JOINED THE HOST CGROUP" || echo "cgroup escape: denied"
touch /usr/hostile 2>&1 | sed 's/^/touch: /'
grep -c . /proc/self/mountinfo
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* op : {"mount_tmpfs", "remount_root_rw", "mount_proc", "umount_work", "unshare_user",
                         "unshare_mnt", "unshare_net", "unshare_pid", "clone_newuser", "setns_net",
                         "chroot", "pivot_root"}) {
    EXPECT_HAS(out, absl::StrCat(op, ": EPERM"));
  }
  EXPECT_HAS(out, "setns_mnt_pid1: ENOENT");  // PID 1 is not even visible
  EXPECT_HAS(out, "unshare -Ur: unshare: unshare failed: Operation not permitted");
  EXPECT_HAS(out, "cgroup escape: denied");
  EXPECT_HAS(out, "Read-only file system");
  EXPECT_FALSE(Exists("/usr/hostile"));
}

TEST_F(Hostile, SetuidBinariesGiveNoRoot) {
  auto r = Shell(WithEscapeTries(R"SH(
ls -l /usr/bin/su /usr/bin/passwd /usr/bin/mount | cut -c1-10
grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status
/usr/bin/su root -c 'id -u > /work/su-ran' </dev/null >/dev/null 2>&1; echo "su exit $?"
/usr/bin/passwd -S root >/dev/null 2>&1; echo "passwd exit $?"
/usr/bin/mount -t tmpfs none /tmp >/dev/null 2>&1; echo "mount exit $?"
test -e /work/su-ran && echo "SU RAN AS $(cat /work/su-ran)"
./probe setuid0 setresuid0 setgid0
cp /usr/bin/id ./myid && chmod 4755 ./myid && ./myid -u | sed 's/^/setuid copy: /'
echo "uid $(id -u) euid $(id -un)"
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "-rwsr-xr-x");  // the host's setuid bits are visible ...
  EXPECT_HAS(out, "NoNewPrivs:\t1");  // ... and ignored
  EXPECT_HAS(out, "CapEff:\t0000000000000000");
  EXPECT_HAS(out, "CapBnd:\t0000000000000000");
  for (const char* tool : {"su", "passwd", "mount"}) {
    EXPECT_HASNT(out, absl::StrCat(tool, " exit 0\n"));
  }
  EXPECT_HASNT(out, "SU RAN");
  EXPECT_HAS(out, "setuid0: EPERM");
  EXPECT_HAS(out, "setresuid0: EPERM");
  EXPECT_HAS(out, "setgid0: EPERM");
  EXPECT_HAS(out, "setuid copy: 65534");
  EXPECT_HAS(out, "uid 65534 euid sandbox");
}

// ============================================================ the agent's own files

TEST_F(Hostile, PlantedSymlinksNeverLeadTheNextTaskOutside) {
  // Task 1 plants symlinks where the next task's files go and at a
  // host-looking path, then leaves.
  auto plant = Shell(WithEscapeTries(R"SH(
ln -s /etc/passwd data.txt
ln -s "$HOSTILE_ESCAPE_DIR" sub
ln -s "$HOSTILE_ESCAPE_DIR/planted" main.py
ln -s / root-link
mkdir -p /tmp/state && echo "token-$HOSTILE_MARKER" > /tmp/state/token
ls -l /work | sed 's/^/planted: /'
)SH"));
  auto e = Run(plant);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "data.txt -> /etc/passwd");

  // Task 2, same tenant and function (so the pooled sandbox is reused),
  // brings files at those very paths.
  auto check = Shell(R"SH(
echo "reused sandbox: $(cat /tmp/state/token 2>/dev/null || echo no)"
ls -lA /work | sed 's/^/work: /'
test -L data.txt && echo "data.txt IS A SYMLINK" || echo "data.txt: $(cat data.txt)"
test -L sub && echo "sub IS A SYMLINK" || echo "sub/inner.txt: $(cat sub/inner.txt)"
test -e root-link && echo "ROOT-LINK SURVIVED"
test -e "$HOSTILE_ESCAPE_DIR/inner.txt" && echo "INNER WENT THROUGH THE LINK"
echo "passwd lines: $(grep -c . /etc/passwd)"
)SH");
  auto* f1 = check.mutable_dependencies()->add_files();
  f1->set_path("data.txt");
  f1->set_content("payload-1");
  auto* f2 = check.mutable_dependencies()->add_files();
  f2->set_path("sub/inner.txt");
  f2->set_content("payload-2");
  e = Run(check);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "data.txt: payload-1");
  EXPECT_HAS(out, "sub/inner.txt: payload-2");
  EXPECT_HASNT(out, "SYMLINK");
  EXPECT_HASNT(out, "ROOT-LINK SURVIVED");
  EXPECT_HASNT(out, "INNER WENT THROUGH");
  EXPECT_HAS(out, "passwd lines: 2");
  std::cout << "[ symlink ] " << out.substr(0, out.find('\n')) << std::endl;
  EXPECT_FALSE(Exists(escape_dir_ + "/planted"));
  EXPECT_FALSE(Exists(escape_dir_ + "/inner.txt"));
}

TEST_F(Hostile, FilesThatTraverseAreRejectedAtSubmit) {
  for (const char* path : {"../escape", "/etc/cron.d/hostile", "a/../../escape", "sub/..", "..",
                           ""}) {
    auto r = Shell("true");
    auto* f = r.mutable_dependencies()->add_files();
    f->set_path(path);
    f->set_content("x");
    r.set_request_id(absl::StrCat(marker_, "-", ++runs_));
    v1::SubmitResponse resp;
    grpc::Status st = h_->Submit(r, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "path '" << path << "'";
    EXPECT_NE(st.error_message().find("dependencies.files"), std::string::npos) << st.error_message();
  }
  // What passes the manager's check is still confined by the guest: a
  // file below a directory the request itself makes.
  auto r = Shell("cat deep/er/file");
  auto* f = r.mutable_dependencies()->add_files();
  f->set_path("deep/er/file");
  f->set_content("inside");
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_EQ(e.result().stdout(), "inside");
}

TEST_F(Hostile, WritingProcSelfExeFails) {
  auto r = Shell(WithEscapeTries(R"SH(
./probe open_self_exe_wronly open_self_exe_rdwr truncate_self_exe open_pid1_exe_wronly open_bin_sh_wronly
python3 -c 'open("/proc/self/exe", "r+b")' 2>&1 | tail -1 | sed 's/^/python: /'
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "open_self_exe_wronly: ETXTBSY");
  EXPECT_HAS(out, "open_self_exe_rdwr: ETXTBSY");
  EXPECT_HAS(out, "truncate_self_exe: ETXTBSY");
  EXPECT_HAS(out, "open_pid1_exe_wronly: ENOENT");
  EXPECT_HAS(out, "open_bin_sh_wronly: E");  // EROFS or EACCES
  EXPECT_HAS(out, "python: PermissionError");
  EXPECT_HASNT(out, ": OK");
}

// ============================================================ processes

TEST_F(Hostile, DoubleForkSetsidEscapeeIsKilled) {
  auto e = Run(Shell(WithEscapeTries(R"SH(
(setsid sleep 1000 &)
(setsid nohup sleep 1001 >/dev/null 2>&1 &)
sleep 0.2
echo "escapees started: $(ps -o args= -u sandbox | grep -c '^sleep 100[01]')"
exit 0
)SH")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "escapees started: 2");
  // Killed before the result is sent: visible at once, not after a settle.
  EXPECT_TRUE(MarkedProcesses(marker_).empty()) << absl::StrJoin(MarkedProcesses(marker_), "\n");
}

TEST_F(Hostile, PythonDoubleForkDaemonIsKilled) {
  auto e = Run(Python(PyWithEscapeTries(R"PY(
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "1000"])
    os._exit(0)
time.sleep(0.3)
print("daemonized; parent leaves")
)PY")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "daemonized");
  EXPECT_TRUE(MarkedProcesses(marker_).empty()) << absl::StrJoin(MarkedProcesses(marker_), "\n");
}

TEST_F(Hostile, KillMinusOneSparesTheGuestAndTheAgent) {
  auto r = Shell(WithEscapeTries("exec ./probe kill_all"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "kill(-1, SIGKILL): OK");
  EXPECT_HAS(e.result().stdout(), "own child: killed by signal 9");
  EXPECT_HAS(e.result().stdout(), "still alive");
  // The same sandbox (its guest survived) runs the next task.
  auto next = Run(Shell("echo next"));
  EXPECT_EQ(next.state(), v1::EXECUTION_SUCCEEDED) << Show(next);
  EXPECT_EQ(next.result().stdout(), "next\n");
}

TEST_F(Hostile, KillMinusOneFromPythonKillsOnlyItsFellowsInTheSandbox) {
  auto e = Run(Python(PyWithEscapeTries(R"PY(
import os, signal
os.kill(-1, signal.SIGKILL)
print("kill(-1) done; still alive")
)PY")));
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e) << h_->ReadLog(std::string(kAgent) + ".log");
  EXPECT_HAS(e.result().stdout(), "still alive");
  // The fork server it killed is started again for the next Python task.
  auto next = Run(Python("print('python again')"));
  EXPECT_EQ(next.state(), v1::EXECUTION_SUCCEEDED) << Show(next);
  EXPECT_EQ(next.result().stdout(), "python again\n");
}

TEST_F(Hostile, SignalsToTheGuestAreIgnored) {
  auto r = Shell(WithEscapeTries(
      "echo \"token-$HOSTILE_MARKER\" > /tmp/token\n./probe signal_pid1_all\nsleep 0.2; echo still here"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "signals to pid 1:");
  EXPECT_HAS(e.result().stdout(), "still here");
  // The guest ignored every signal (PID 1 of its namespace has no default
  // actions): the same sandbox, with its /tmp token, serves the next task.
  auto next = Run(Shell("cat /tmp/token"));
  EXPECT_EQ(next.state(), v1::EXECUTION_SUCCEEDED) << Show(next);
  EXPECT_EQ(next.result().stdout(), "token-" + marker_ + "\n") << "the sandbox was replaced";
}

// ============================================================ kernel attack surface

TEST_F(Hostile, TiocstiIsDenied) {
  auto r = Shell(WithEscapeTries(R"SH(
./probe tiocsti_pty tiocsti_stdin tioclinux
python3 -c '
import fcntl, os, termios
m, s = os.openpty()
try:
    fcntl.ioctl(s, termios.TIOCSTI, b"x")
    print("python TIOCSTI: OK")
except OSError as e:
    print("python TIOCSTI:", e.strerror)
'
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "tiocsti_pty: EPERM");
  EXPECT_HAS(out, "tiocsti_stdin: EPERM");
  EXPECT_HAS(out, "tioclinux: EPERM");
  EXPECT_HAS(out, "python TIOCSTI: Operation not permitted");
}

TEST_F(Hostile, IoUringIsDenied) {
  auto r = Shell(WithEscapeTries("./probe io_uring_setup"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HAS(e.result().stdout(), "io_uring_setup: EPERM");
}

TEST_F(Hostile, BpfAndOtherKernelInterfacesAreDenied) {
  auto r = Shell(WithEscapeTries("./probe bpf bpf_prog_load perf_event_open userfaultfd add_key"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* op : {"bpf", "bpf_prog_load", "perf_event_open", "userfaultfd", "add_key"}) {
    EXPECT_HAS(out, absl::StrCat(op, ": EPERM"));
  }
}

TEST_F(Hostile, OnlyStdioFdsAreInherited) {
  auto r = Shell(WithEscapeTries("exec ./probe list_fds"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HAS(out, "fd 0 -> ");
  EXPECT_HAS(out, "fd 2 -> pipe:");
  EXPECT_HASNT(out, "fd 3 ");  // not the guest's channel to the agent, nothing else
  EXPECT_HASNT(out, "socket:");
  auto py = Run(Python(PyWithEscapeTries(R"PY(
import os
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
for fd in fds:
    try:
        print("fd %d -> %s" % (fd, os.readlink("/proc/self/fd/%d" % fd)))
    except OSError:
        pass
)PY")));
  EXPECT_EQ(py.state(), v1::EXECUTION_SUCCEEDED) << Show(py);
  EXPECT_HASNT(py.result().stdout(), "socket:");  // neither the guest's nor the fork server's
  EXPECT_HAS(py.result().stdout(), "fd 2 -> pipe:");
}

TEST_F(Hostile, ProcSysAndDevicesAreOutOfReach) {
  auto r = Shell(WithEscapeTries(R"SH(
for f in /proc/sysrq-trigger /proc/sys/vm/drop_caches /proc/sys/kernel/core_pattern /sys/kernel/uevent_helper; do
  (echo 1 > "$f") 2>/dev/null && echo "WROTE $f" || echo "write $f: denied"
done
head -c 16 /proc/kcore >/dev/null 2>&1 && echo "READ KCORE" || echo "kcore: denied"
echo "dev: $(ls /dev | tr '
' ' ')"
./probe mknod_disk mknod_mem
ls /sys 2>&1 | head -1
)SH"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  EXPECT_HASNT(out, "WROTE");
  EXPECT_HASNT(out, "READ KCORE");
  EXPECT_HAS(out, "dev: fd full null ptmx pts random shm stderr stdin stdout tty urandom zero");
  EXPECT_HAS(out, "mknod_disk: EPERM");
  EXPECT_HAS(out, "mknod_mem: EPERM");
  EXPECT_HAS(out, "No such file or directory");  // no /sys at all
  std::string pattern = ReadFile("/proc/sys/kernel/core_pattern");
  EXPECT_NE(pattern, "1\n") << "the host's core_pattern changed";
}

TEST_F(Hostile, HostWideProcFilesAreMasked) {
  // timer_list, sched_debug, keys and kallsyms are world-readable on the
  // host; the masks make them unreadable even for a task that could read
  // them. Which of these files exist depends on the kernel's configuration.
  auto r = Shell(WithEscapeTries(R"SH(
for f in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/kallsyms; do
  if [ -e "$f" ]; then
    n=$(head -c 4096 "$f" 2>/dev/null | wc -c)
    echo "read $f: $n bytes"
  fi
done
(echo b > /proc/sysrq-trigger) 2>/dev/null && echo "WROTE sysrq" || echo "sysrq: denied"
(echo 1 > /proc/sys/vm/drop_caches) 2>&1 | grep -o "Read-only file system" | head -1
grep -E ' /proc/(kcore|keys|timer_list|sched_debug|kallsyms|sysrq-trigger|sys|acpi|scsi) ' /proc/self/mountinfo |
  awk '{print "mounted", $5}'
)SH"));
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  const std::string& out = e.result().stdout();
  for (const char* f : {"kcore", "keys", "timer_list", "sched_debug", "kallsyms"}) {
    if (!Exists(absl::StrCat("/proc/", f))) continue;
    EXPECT_HAS(out, absl::StrCat("read /proc/", f, ": 0 bytes"));
    EXPECT_HAS(out, absl::StrCat("mounted /proc/", f));
  }
  EXPECT_HAS(out, "sysrq: denied");
  EXPECT_HASNT(out, "WROTE");
  // Kernels built without magic SysRq (this CI's among them) have no file.
  if (Exists("/proc/sysrq-trigger")) EXPECT_HAS(out, "mounted /proc/sysrq-trigger");
  EXPECT_HAS(out, "mounted /proc/sys\n");
  EXPECT_HAS(out, "Read-only file system");
}

TEST_F(Hostile, CrashLeavesNoCoreDump) {
  auto r = Shell(WithEscapeTries("cd /work && exec ./probe segfault"));
  AddBinary(&r, "probe", kProbeSource);
  auto e = Run(r);
  EXPECT_EQ(e.state(), v1::EXECUTION_FAILED) << Show(e);
  EXPECT_EQ(e.result().termination(), v1::TERMINATION_SIGNALED);
  EXPECT_EQ(e.result().signal(), SIGSEGV);
  EXPECT_HAS(e.result().stdout(), "raise RLIMIT_CORE: EPERM");
  auto after = Run(Shell("ls /work /tmp | grep -c core || true"));
  EXPECT_EQ(after.result().stdout(), "0\n") << Show(after);
}

TEST_F(Hostile, NetworkEgressIsRefusedWhereTheNodeDoesNotGrantIt) {
  auto r = Shell("echo should not run");
  r.mutable_security()->add_required_capabilities("network-egress");
  r.set_request_id(absl::StrCat(marker_, "-", ++runs_));
  v1::SubmitResponse resp;
  grpc::Status st = h_->Submit(r, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("no node can ever run this"), std::string::npos)
      << st.error_message();
}

// ============================================================ tenants

TEST_F(Hostile, AnotherTenantNeverGetsTheSandbox) {
  auto mine = Run(Shell(WithEscapeTries(
      "echo \"secret-$HOSTILE_MARKER\" > /tmp/left-behind; echo \"secret\" > /dev/shm/left-behind")));
  EXPECT_EQ(mine.state(), v1::EXECUTION_SUCCEEDED) << Show(mine);
  // Same function, another tenant: never the same sandbox.
  auto other = Shell("cat /tmp/left-behind /dev/shm/left-behind 2>&1; echo \"tmp: $(ls -A /tmp | tr '\\n' ' ')\"");
  const std::string someone_else = h_->AddUser(absl::StrCat("other-", runs_), "someone-else");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the users file is re-read each second
  auto e = Run(other, seconds(60), someone_else);
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << Show(e);
  EXPECT_HASNT(e.result().stdout(), "secret");
  EXPECT_HAS(e.result().stdout(), "No such file or directory");
}

}  // namespace
}  // namespace flotilla::testing
