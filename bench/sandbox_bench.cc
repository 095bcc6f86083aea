// Cold and warm start of Flotilla's Linux sandboxes, side by side with the
// peers, in one run on one machine (bench/run.sh sandbox). Must run as root.
//
// Every iteration runs each case once, in a shuffled order, so that all of
// them see the same machine state; the slow cases (peers, Python cold) run
// on every k-th iteration only. Times are wall-clock, steady_clock, per case:
//
//   Flotilla (src/pool, src/sandbox, the real flotilla-guest):
//     cold        LinuxInstanceFactory::Create (Container::Launch of the
//                 guest + GuestClient handshake) of the shell template, Run
//                 argv {"true"}, destroy; create, run and destroy separately
//     split       the same steps by hand, to time Launch and the handshake
//                 apart: Container::Launch with the factory's spec, then
//                 GuestClient::Handshake
//     launch      Container::Launch of /bin/true as the init (no guest),
//                 until exec, until its exit (pidfd), and the destroy
//     warm        a pre-created instance running {"true"} again and again
//                 (Instance::Run only), and WarmPool (min 1, reuse) Acquire +
//                 Run + Release (Release resets the guest: a RESET round trip)
//     python      `python3 -c pass`: cold = Create of the python template
//                 (its fork-server starts and imports the preloads) + Run in
//                 exec mode; also Create of the shell template + exec (no
//                 server); warm = a pre-created python instance, TaskSpec.python
//                 (the fork-server), Run only and through a WarmPool
//   Peers (fork + execve + waitpid of the tool from this process):
//     fork/exec of /bin/true and of /usr/bin/python3 -c pass;
//     bwrap --unshare-all (ro binds of /usr and the usual symlinks);
//     crun run and runc run of a minimal OCI bundle (config.json from
//     `crun spec` / `runc spec`, edited: args /bin/true, no terminal,
//     read-only root with ro binds of the host's /usr, linux.cgroupsPath set).
//     On a cgroup v1+v2 "hybrid" host crun refuses to run ("cgroups in hybrid
//     mode"); there it runs in a private mount namespace with
//     /sys/fs/cgroup/unified unmounted, made in the forked child before exec.
//
// Prints a markdown table (p50, p99, mean in ms, and ratios) and the targets
// of the issue; --json writes the raw samples' summary.
//
// Cleans up: every container, cgroup (<hierarchy>/flotilla/sbench.<pid>,
// <hierarchy>/flotilla-sbench-<pid>-{crun,runc}) and the temp dir.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "pool/environment_template.h"
#include "pool/linux_instance.h"
#include "pool/warm_pool.h"
#include "sandbox/guest_client.h"
#include "sandbox/linux/cgroups.h"
#include "sandbox/linux/container.h"
#include "sandbox/linux/namespaces.h"
#include "sandbox/sandbox.h"
#include "spdlog/spdlog.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef FLOTILLA_TEMPLATES_DIR
#define FLOTILLA_TEMPLATES_DIR "templates"
#endif
#ifndef FLOTILLA_GUEST_BIN
#define FLOTILLA_GUEST_BIN "flotilla-guest"
#endif

namespace {

using namespace flotilla;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

double UsSince(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// ---- samples

struct Series {
  std::vector<double> us;
  double Quantile(double q) const {
    if (us.empty()) return 0;
    std::vector<double> v = us;
    std::sort(v.begin(), v.end());
    // Nearest rank: p99 of 200 samples is the 198th smallest.
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
  }
  double Mean() const {
    double s = 0;
    for (double x : us) s += x;
    return us.empty() ? 0 : s / static_cast<double>(us.size());
  }
};

std::map<std::string, Series> g_series;
void Record(const std::string& name, double us) { g_series[name].us.push_back(us); }

// ---- plain processes (the peers)

struct ProcResult {
  double us = 0;
  int status = 0;
  std::string err;  // the child's stderr, when it failed
  bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

// What a child does between fork and exec.
enum class PreExec { kNone, kPrivateMountNsWithoutUnified };

// fork + execv + waitpid; stdin/stdout /dev/null, stderr to a memfd read on failure.
ProcResult RunProcess(const std::vector<std::string>& argv, PreExec pre = PreExec::kNone,
                      const std::string& cwd = "") {
  ProcResult r;
  int err_fd = memfd_create("sbench-stderr", MFD_CLOEXEC);
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  auto t0 = Clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(err_fd, 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    if (pre == PreExec::kPrivateMountNsWithoutUnified) {
      // As `unshare -m sh -c 'umount /sys/fs/cgroup/unified; crun ...'`, in-process:
      // private propagation first, so the umount stays in this namespace.
      if (unshare(CLONE_NEWNS) != 0) _exit(125);
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) _exit(125);
      umount2("/sys/fs/cgroup/unified", MNT_DETACH);
    }
    execv(args[0], args.data());
    dprintf(2, "execv %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.us = UsSince(t0, Clock::now());
  r.status = status;
  if (!r.ok()) {
    char buf[4096];
    ssize_t n = pread(err_fd, buf, sizeof(buf) - 1, 0);
    r.err = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
    while (!r.err.empty() && (r.err.back() == '\n' || r.err.back() == ' ')) r.err.pop_back();
    if (r.err.empty()) r.err = absl::StrCat("wait status ", status);
  }
  close(err_fd);
  close(null_fd);
  return r;
}

// posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK), no page-table copy) + waitpid.
ProcResult SpawnProcess(const std::vector<std::string>& argv) {
  ProcResult r;
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  auto t0 = Clock::now();
  pid_t pid = 0;
  int err = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) {
    r.status = 127 << 8;
    r.err = absl::StrCat("posix_spawn ", argv[0], ": ", strerror(err));
    return r;
  }
  while (waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  r.us = UsSince(t0, Clock::now());
  if (!r.ok()) r.err = absl::StrCat("wait status ", r.status);
  return r;
}

std::string FindTool(const std::string& name) {
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::string p = absl::StrCat(dir, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// ---- OCI bundles for crun and runc

struct OciPeer {
  std::string name;  // crun | runc
  std::string tool;  // its path
  std::string bundle;
  std::string state_root;
  std::string cgroup;  // linux.cgroupsPath
  PreExec pre = PreExec::kNone;
  std::string skipped;  // why it cannot run here; "" if it can
  int seq = 0;

  std::vector<std::string> RunArgv(const std::string& id) const {
    return {tool, "--root", state_root, "run", "--bundle", bundle, id};
  }
};

// Makes <tmp>/<name>/{config.json,rootfs} from `<name> spec`.
std::string MakeBundle(OciPeer& p, const std::string& tmp) {
  p.bundle = absl::StrCat(tmp, "/", p.name, "-bundle");
  p.state_root = absl::StrCat(tmp, "/", p.name, "-state");
  fs::create_directories(p.bundle + "/rootfs");
  fs::create_directories(p.state_root);
  ProcResult spec = RunProcess({p.tool, "spec"}, PreExec::kNone, p.bundle);
  if (!spec.ok()) return absl::StrCat("`", p.name, " spec` failed: ", spec.err);
  nlohmann::json c;
  {
    std::ifstream in(p.bundle + "/config.json");
    c = nlohmann::json::parse(in, nullptr, false);
  }
  if (c.is_discarded()) return absl::StrCat("`", p.name, " spec` wrote unreadable JSON");
  c["process"]["args"] = {"/bin/true"};
  c["process"]["terminal"] = false;
  c["root"] = {{"path", "rootfs"}, {"readonly", true}};
  // The host's /usr read-only; Debian's merged-/usr symlinks recreated, as
  // Flotilla's own rootfs does (mounts.h).
  for (const char* host : {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"}) {
    std::error_code ec;
    auto st = fs::symlink_status(host, ec);
    if (ec || !fs::exists(st)) continue;
    std::string in_root = p.bundle + "/rootfs" + host;
    if (fs::is_symlink(st)) {
      fs::create_symlink(fs::read_symlink(host), in_root, ec);
    } else {
      fs::create_directories(in_root, ec);
      c["mounts"].push_back({{"destination", host},
                             {"type", "bind"},
                             {"source", host},
                             {"options", {"bind", "ro", "nosuid", "nodev"}}});
    }
  }
  for (const char* d : {"proc", "dev", "sys", "tmp"}) fs::create_directories(p.bundle + "/rootfs/" + d);
  c["linux"]["cgroupsPath"] = p.cgroup;
  std::ofstream(p.bundle + "/config.json") << c.dump(2);
  return "";
}

// Runs the peer once to see whether it works here, picking the crun workaround if needed.
void ProbeOci(OciPeer& p) {
  if (p.tool.empty()) {
    p.skipped = absl::StrCat(p.name, " is not installed (apt-get install ", p.name, ")");
    return;
  }
  std::string id = absl::StrCat("sbench-", getpid(), "-probe-", p.name);
  ProcResult r = RunProcess(p.RunArgv(id), p.pre);
  if (!r.ok() && p.name == "crun" && access("/sys/fs/cgroup/unified", F_OK) == 0) {
    RunProcess({p.tool, "--root", p.state_root, "delete", "-f", id});
    std::string first = r.err;
    p.pre = PreExec::kPrivateMountNsWithoutUnified;
    r = RunProcess(p.RunArgv(id), p.pre);
    if (r.ok()) {
      std::fprintf(stderr, "sandbox_bench: crun: plain `crun run` failed (%s); using a private mount "
                           "namespace without /sys/fs/cgroup/unified\n", first.c_str());
    }
  }
  if (!r.ok()) {
    RunProcess({p.tool, "--root", p.state_root, "delete", "-f", id}, p.pre);
    p.skipped = absl::StrCat("`", p.name, " run` failed here: ", r.err);
  }
}

// ---- Flotilla

class NullSink : public sandbox::OutputSink {
 public:
  void OnOutput(sandbox::Stream, int64_t, std::string_view) override {}
};

sandbox::TaskSpec TrueTask() {
  sandbox::TaskSpec t;
  t.id = "sbench/true";
  t.argv = {"true"};
  t.timeout = std::chrono::seconds(10);
  return t;
}

sandbox::TaskSpec PythonTask(bool fork_server) {
  sandbox::TaskSpec t;
  t.id = "sbench/python";
  t.argv = {"python3", "-c", "pass"};
  t.python = fork_server;
  t.timeout = std::chrono::seconds(20);
  return t;
}

absl::Status CheckOutcome(const absl::StatusOr<sandbox::TaskOutcome>& o, const char* what) {
  if (!o.ok()) return absl::Status(o.status().code(), absl::StrCat(what, ": ", o.status().message()));
  if (o->termination != sandbox::Termination::kExited || o->exit_code != 0) {
    return absl::InternalError(absl::StrCat(what, ": termination ", static_cast<int>(o->termination),
                                            " exit code ", o->exit_code, " stderr: ", o->stderr_data));
  }
  return absl::OkStatus();
}

// The container spec LinuxInstanceFactory::Create builds for a template (kept in step by hand).
sandbox::ContainerSpec GuestSpec(const pool::EnvironmentTemplate& t, int guest_fd, int channel_fd) {
  sandbox::ContainerSpec spec;
  spec.id = NewId("sbx-");
  spec.workdir = "/work";
  spec.workdir_bytes = static_cast<uint64_t>(t.limits.work_bytes);
  spec.tmp_bytes = static_cast<uint64_t>(t.limits.tmp_bytes);
  spec.network = sandbox::NetworkNamespace::kNew;
  spec.limits.cpu_millis = t.limits.cpu_millis;
  spec.limits.memory_bytes = t.limits.memory_bytes;
  spec.limits.pids_max = t.limits.pids;
  spec.program_fd = guest_fd;
  spec.argv = {"flotilla-guest", "--fd", "3", "--workdir", "/work"};
  spec.env = t.env;
  spec.fds = {{channel_fd, 3}};
  return spec;
}

struct Case {
  std::string name;
  bool slow = false;
  std::function<absl::Status()> run;
};

std::string Ms(double us) { return absl::StrFormat("%.2f", us / 1000.0); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Cold and warm start of Flotilla's Linux sandboxes against fork/exec, bwrap, crun, runc"};
  std::string guest = FLOTILLA_GUEST_BIN;
  std::string templates = FLOTILLA_TEMPLATES_DIR;
  int n = 200, n_slow = 100, warmup = 5;
  std::string json_path;
  bool no_peers = false;
  std::vector<std::string> only;
  app.add_option("--guest", guest, "the static flotilla-guest binary")->capture_default_str();
  app.add_option("--templates", templates, "directory of shell.yaml and python.yaml")->capture_default_str();
  app.add_option("-n,--iterations", n, "iterations of the fast cases")->capture_default_str();
  app.add_option("--slow-iterations", n_slow, "iterations of the slow cases (peers, Python cold)")
      ->capture_default_str();
  app.add_option("--warmup", warmup, "unrecorded iterations first")->capture_default_str();
  app.add_option("--json", json_path, "also write the figures as JSON here");
  app.add_flag("--no-peers", no_peers, "skip bwrap, crun and runc");
  app.add_option("--only", only, "run only these cases (names as in errors: cold, split, launch, warm, ...)");
  CLI11_PARSE(app, argc, argv);
  n_slow = std::clamp(n_slow, 1, n);

  spdlog::set_level(spdlog::level::warn);
  if (geteuid() != 0) {
    std::fprintf(stderr, "sandbox_bench: must run as root (containers, cgroups)\n");
    return 2;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  auto shell_t = pool::LoadTemplate(templates + "/shell.yaml");
  auto python_t = pool::LoadTemplate(templates + "/python.yaml");
  if (!shell_t.ok() || !python_t.ok()) {
    std::fprintf(stderr, "sandbox_bench: templates: %s %s\n", shell_t.status().ToString().c_str(),
                 python_t.status().ToString().c_str());
    return 2;
  }
  // Pools of exactly one parked instance, reused by one tenant/function.
  for (auto* t : {&*shell_t, &*python_t}) {
    t->pool_min = 1;
    t->pool_max = 2;
    t->lifecycle = pool::Lifecycle::kReuse;
  }

  const std::string key = absl::StrCat("sbench.", getpid());
  pool::LinuxInstanceOptions lo;
  lo.guest_binary = guest;
  lo.layout.runtime_dir = absl::StrCat("/run/flotilla/", key);
  lo.layout.cgroup_parent = absl::StrCat("flotilla/", key);
  auto layout = sandbox::DetectHostLayout(lo.layout);
  if (!layout.ok()) {
    std::fprintf(stderr, "sandbox_bench: %s\n", layout.status().ToString().c_str());
    return 2;
  }
  auto factory = pool::NewLinuxInstanceFactory(lo);
  if (!factory.ok()) {
    std::fprintf(stderr, "sandbox_bench: %s\n", factory.status().ToString().c_str());
    return 2;
  }
  int guest_fd = open(guest.c_str(), O_PATH | O_CLOEXEC);

  // Temp dir for the peers' bundles.
  char tmp_template[] = "/tmp/flotilla-sbench-XXXXXX";
  std::string tmp = mkdtemp(tmp_template);

  int rc = 0;
  std::vector<std::string> notes;
  {
    NullSink sink;
    sandbox::CancelToken cancel;
    const auto shell_task = TrueTask();
    const auto py_exec = PythonTask(false);
    const auto py_server = PythonTask(true);

    // Long-lived instances for the warm cases.
    auto shell_warm = (*factory)->Create(*shell_t, {});
    auto python_warm = (*factory)->Create(*python_t, {});
    pool::WarmPool shell_pool(*shell_t, factory->get());
    pool::WarmPool python_pool(*python_t, factory->get());
    if (!shell_warm.ok() || !python_warm.ok()) {
      std::fprintf(stderr, "sandbox_bench: creating the warm instances: %s %s\n",
                   shell_warm.status().ToString().c_str(), python_warm.status().ToString().c_str());
      rc = 1;
    } else {
      shell_pool.Refill();
      python_pool.Refill();
    }

    // ---- peers
    std::string bwrap = FindTool("bwrap");
    std::string bwrap_skipped;
    std::vector<std::string> bwrap_argv = {bwrap, "--unshare-all", "--ro-bind", "/usr", "/usr",
                                           "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
                                           "--symlink", "usr/lib64", "/lib64", "--proc", "/proc",
                                           "--dev", "/dev", "/bin/true"};
    OciPeer crun, runc;
    crun.name = "crun";
    crun.tool = FindTool("crun");
    runc.name = "runc";
    runc.tool = FindTool("runc");
    crun.cgroup = absl::StrCat("/flotilla-sbench-", getpid(), "-crun");
    runc.cgroup = absl::StrCat("/flotilla-sbench-", getpid(), "-runc");
    if (no_peers) {
      bwrap_skipped = crun.skipped = runc.skipped = "--no-peers";
    } else {
      if (bwrap.empty()) {
        bwrap_skipped = "bwrap is not installed (apt-get install bubblewrap)";
      } else if (ProcResult r = RunProcess(bwrap_argv); !r.ok()) {
        bwrap_skipped = absl::StrCat("bwrap failed here: ", r.err);
      }
      for (OciPeer* p : {&crun, &runc}) {
        if (!p->tool.empty()) {
          if (std::string why = MakeBundle(*p, tmp); !why.empty()) p->skipped = why;
        }
        if (p->skipped.empty()) ProbeOci(*p);
      }
    }
    for (const auto& [name, why] : {std::pair<std::string, std::string>{"bwrap", bwrap_skipped},
                                    {"crun", crun.skipped}, {"runc", runc.skipped}}) {
      if (!why.empty()) {
        notes.push_back(absl::StrCat(name, " left out: ", why));
        std::fprintf(stderr, "sandbox_bench: %s left out: %s\n", name.c_str(), why.c_str());
      }
    }
    if (crun.skipped.empty() && crun.pre == PreExec::kPrivateMountNsWithoutUnified) {
      notes.push_back(
          "crun refuses this cgroup v1+v2 hybrid host (\"cgroups in hybrid mode\"); it ran in a "
          "private mount namespace with /sys/fs/cgroup/unified unmounted (unshare(CLONE_NEWNS), "
          "MS_PRIVATE, umount2 in the forked child before exec), as `unshare -m sh -c 'umount "
          "/sys/fs/cgroup/unified; crun run ...'` but without the extra sh and umount processes");
    }

    // ---- the cases
    std::vector<Case> cases;
    auto proc_case = [&](std::string name, std::string series, std::vector<std::string> argv,
                         bool slow, PreExec pre = PreExec::kNone) {
      cases.push_back({name, slow, [argv, series, pre, name]() -> absl::Status {
                         ProcResult r = RunProcess(argv, pre);
                         if (!r.ok()) return absl::InternalError(absl::StrCat(name, ": ", r.err));
                         Record(series, r.us);
                         return absl::OkStatus();
                       }});
    };
    proc_case("fork/exec true", "peer.forkexec", {"/bin/true"}, false);
    proc_case("fork/exec python3", "peer.py.forkexec", {"/usr/bin/python3", "-c", "pass"}, true);
    if (bwrap_skipped.empty()) proc_case("bwrap", "peer.bwrap", bwrap_argv, true);
    for (OciPeer* p : {&crun, &runc}) {
      if (!p->skipped.empty()) continue;
      cases.push_back({p->name, true, [p]() -> absl::Status {
                         std::string id = absl::StrCat("sbench-", getpid(), "-", p->seq++);
                         ProcResult r = RunProcess(p->RunArgv(id), p->pre);
                         if (!r.ok()) {
                           RunProcess({p->tool, "--root", p->state_root, "delete", "-f", id}, p->pre);
                           return absl::InternalError(absl::StrCat(p->name, " run: ", r.err));
                         }
                         Record("peer." + p->name, r.us);
                         return absl::OkStatus();
                       }});
    }

    cases.push_back({"posix_spawn true", false, []() -> absl::Status {
                       ProcResult r = SpawnProcess({"/bin/true"});
                       if (!r.ok()) return absl::InternalError(r.err);
                       Record("peer.posix_spawn", r.us);
                       return absl::OkStatus();
                     }});
    cases.push_back({"posix_spawn static", false, []() -> absl::Status {
                       ProcResult r = SpawnProcess({"/usr/sbin/ldconfig", "--version"});
                       if (!r.ok()) return absl::InternalError(r.err);
                       Record("peer.posix_spawn_static", r.us);
                       return absl::OkStatus();
                     }});

    // Pieces of Container::Launch, for where its time goes: the cgroups
    // alone, and a bare clone3 into the same namespaces (the child exits at once).
    cases.push_back({"cgroups", false, [&]() -> absl::Status {
                       sandbox::isolation::CgroupLimits limits;
                       limits.cpu_millis = shell_t->limits.cpu_millis;
                       limits.memory_bytes = shell_t->limits.memory_bytes;
                       limits.pids_max = shell_t->limits.pids;
                       auto t0 = Clock::now();
                       auto cg = sandbox::isolation::CgroupSet::Create(layout->cgroups, layout->cgroup_parent,
                                                                       NewId("cg-"), limits);
                       auto t1 = Clock::now();
                       if (!cg.ok()) return cg.status();
                       cg->reset();
                       auto t2 = Clock::now();
                       Record("cgroups.create", UsSince(t0, t1));
                       Record("cgroups.remove", UsSince(t1, t2));
                       return absl::OkStatus();
                     }});
    auto clone_case = [&](std::string series, sandbox::NetworkNamespace net) {
      cases.push_back({series, false, [series, net]() -> absl::Status {
                         sandbox::isolation::CloneOptions o;
                         o.network = net;
                         auto t0 = Clock::now();
                         auto c = sandbox::isolation::CloneIntoNamespaces(o);
                         if (c.ok() && c->pid == 0) _exit(0);
                         if (!c.ok()) return c.status();
                         siginfo_t info;
                         while (waitid(static_cast<idtype_t>(P_PIDFD), c->pidfd, &info, WEXITED) != 0 &&
                                errno == EINTR) {
                         }
                         auto t1 = Clock::now();
                         close(c->pidfd);
                         Record(series, UsSince(t0, t1));
                         return absl::OkStatus();
                       }});
    };
    clone_case("clone.ns", sandbox::NetworkNamespace::kNew);
    clone_case("clone.ns_hostnet", sandbox::NetworkNamespace::kHost);

    // Flotilla cold: factory Create + Run true + destroy.
    auto cold_case = [&](std::string prefix, const pool::EnvironmentTemplate* t,
                         const sandbox::TaskSpec* task, bool slow) {
      cases.push_back({prefix, slow, [&, prefix, t, task]() -> absl::Status {
                         auto t0 = Clock::now();
                         auto inst = (*factory)->Create(*t, {});
                         auto t1 = Clock::now();
                         if (!inst.ok()) return inst.status();
                         auto out = (*inst)->Run(*task, sink, cancel);
                         auto t2 = Clock::now();
                         inst->reset();
                         auto t3 = Clock::now();
                         if (auto st = CheckOutcome(out, prefix.c_str()); !st.ok()) return st;
                         Record(prefix + ".create", UsSince(t0, t1));
                         Record(prefix + ".run", UsSince(t1, t2));
                         Record(prefix + ".create_run", UsSince(t0, t2));
                         Record(prefix + ".destroy", UsSince(t2, t3));
                         return absl::OkStatus();
                       }});
    };
    cold_case("cold", &*shell_t, &shell_task, false);
    cold_case("py.cold", &*python_t, &py_exec, true);
    cold_case("py.cold_shell", &*shell_t, &py_exec, true);

    // The factory's steps by hand: Launch of the guest container, then the handshake.
    cases.push_back({"split", false, [&]() -> absl::Status {
                       int fds[2];
                       if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
                         return absl::InternalError("socketpair");
                       }
                       auto spec = GuestSpec(*shell_t, guest_fd, fds[1]);
                       auto t0 = Clock::now();
                       auto c = sandbox::Container::Launch(spec, *layout);
                       auto t1 = Clock::now();
                       close(fds[1]);
                       if (!c.ok()) {
                         close(fds[0]);
                         return c.status();
                       }
                       sandbox::GuestClient client(fds[0]);
                       absl::Status hs = client.Handshake(std::chrono::seconds(10));
                       auto t2 = Clock::now();
                       (void)client.Shutdown();
                       (void)(*c)->Kill();
                       c->reset();
                       auto t3 = Clock::now();
                       if (!hs.ok()) return hs;
                       Record("split.launch", UsSince(t0, t1));
                       Record("split.handshake", UsSince(t1, t2));
                       Record("split.destroy", UsSince(t2, t3));
                       return absl::OkStatus();
                     }});

    // Container::Launch of /bin/true itself as the init: no guest.
    cases.push_back({"launch", false, [&]() -> absl::Status {
                       sandbox::ContainerSpec spec = GuestSpec(*shell_t, -1, -1);
                       spec.program_fd = -1;
                       spec.program_path = "/bin/true";
                       spec.argv = {"/bin/true"};
                       spec.fds.clear();
                       auto t0 = Clock::now();
                       auto c = sandbox::Container::Launch(spec, *layout);
                       auto t1 = Clock::now();
                       if (!c.ok()) return c.status();
                       auto exit = (*c)->Wait(std::chrono::seconds(10));
                       auto t2 = Clock::now();
                       c->reset();
                       auto t3 = Clock::now();
                       if (!exit.ok()) return exit.status();
                       if (exit->signaled || exit->code != 0) {
                         return absl::InternalError(absl::StrCat("launch /bin/true: exit ", exit->code,
                                                                 " signal ", exit->signal));
                       }
                       Record("launch.exec", UsSince(t0, t1));
                       Record("launch.exit", UsSince(t0, t2));
                       Record("launch.destroy", UsSince(t2, t3));
                       return absl::OkStatus();
                     }});

    cases.push_back({"launch_hostnet", false, [&]() -> absl::Status {
                       sandbox::ContainerSpec spec = GuestSpec(*shell_t, -1, -1);
                       spec.program_fd = -1;
                       spec.program_path = "/bin/true";
                       spec.argv = {"/bin/true"};
                       spec.fds.clear();
                       spec.network = sandbox::NetworkNamespace::kHost;
                       auto t0 = Clock::now();
                       auto c = sandbox::Container::Launch(spec, *layout);
                       auto t1 = Clock::now();
                       if (!c.ok()) return c.status();
                       auto exit = (*c)->Wait(std::chrono::seconds(10));
                       c->reset();
                       if (!exit.ok()) return exit.status();
                       Record("launch_hostnet.exec", UsSince(t0, t1));
                       return absl::OkStatus();
                     }});

    // Warm: the same instance again and again; and through a WarmPool.
    if (rc == 0) {
      cases.push_back({"warm", false, [&]() -> absl::Status {
                         auto t0 = Clock::now();
                         auto out = (*shell_warm)->Run(shell_task, sink, cancel);
                         auto t1 = Clock::now();
                         RETURN_IF_ERROR(CheckOutcome(out, "warm run"));
                         Record("warm.run", UsSince(t0, t1));
                         Record("warm.guest_wall", static_cast<double>(out->wall_time_us));
                         return absl::OkStatus();
                       }});
      // The same with a static binary (no ld.so): how much of the warm start is the dynamic exec.
      cases.push_back({"warm_static", false, [&]() -> absl::Status {
                         sandbox::TaskSpec task = shell_task;
                         task.argv = {"/usr/sbin/ldconfig", "--version"};
                         auto t0 = Clock::now();
                         auto out = (*shell_warm)->Run(task, sink, cancel);
                         auto t1 = Clock::now();
                         RETURN_IF_ERROR(CheckOutcome(out, "warm run of a static binary"));
                         Record("warm_static.run", UsSince(t0, t1));
                         Record("warm_static.guest_wall", static_cast<double>(out->wall_time_us));
                         return absl::OkStatus();
                       }});
      auto pool_case = [&](std::string prefix, pool::WarmPool* p, const sandbox::TaskSpec* task) {
        cases.push_back({prefix, false, [&, prefix, p, task]() -> absl::Status {
                           auto t0 = Clock::now();
                           auto lease = p->Acquire("bench", "noop", {});
                           auto t1 = Clock::now();
                           if (!lease.ok()) return lease.status();
                           bool warm = lease->warm;
                           auto out = lease->instance->Run(*task, sink, cancel);
                           auto t2 = Clock::now();
                           p->Release(std::move(*lease), "bench", "noop", {});
                           auto t3 = Clock::now();
                           RETURN_IF_ERROR(CheckOutcome(out, prefix.c_str()));
                           if (!warm) return absl::InternalError(prefix + ": the pool handed out a cold instance");
                           Record(prefix + ".acquire", UsSince(t0, t1));
                           Record(prefix + ".run", UsSince(t1, t2));
                           Record(prefix + ".release", UsSince(t2, t3));
                           Record(prefix + ".total", UsSince(t0, t3));
                           return absl::OkStatus();
                         }});
      };
      pool_case("pool", &shell_pool, &shell_task);
      cases.push_back({"py.warm", false, [&]() -> absl::Status {
                         auto t0 = Clock::now();
                         auto out = (*python_warm)->Run(py_server, sink, cancel);
                         auto t1 = Clock::now();
                         RETURN_IF_ERROR(CheckOutcome(out, "python warm run"));
                         Record("py.warm.run", UsSince(t0, t1));
                         Record("py.warm.guest_wall", static_cast<double>(out->wall_time_us));
                         return absl::OkStatus();
                       }});
      pool_case("py.pool", &python_pool, &py_server);
      cases.push_back({"py.warm_exec", true, [&]() -> absl::Status {
                         auto t0 = Clock::now();
                         auto out = (*python_warm)->Run(py_exec, sink, cancel);
                         auto t1 = Clock::now();
                         RETURN_IF_ERROR(CheckOutcome(out, "python warm exec run"));
                         Record("py.warm_exec.run", UsSince(t0, t1));
                         return absl::OkStatus();
                       }});
    }

    if (!only.empty()) {
      std::erase_if(cases, [&](const Case& c) {
        return std::find(only.begin(), only.end(), c.name) == only.end();
      });
    }

    // ---- the loop
    const int stride = std::max(1, n / n_slow);
    int slow_done = 0;
    std::vector<size_t> order(cases.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937 rng(20261124);
    auto started = Clock::now();
    for (int i = -warmup; i < n && rc == 0 && !g_stop; ++i) {
      bool slow_round = i < 0 || (i % stride == 0 && slow_done < n_slow);
      if (i >= 0 && slow_round) ++slow_done;
      // A new order every iteration: no case always follows the same one
      // (a sandbox's destroy leaves work behind, e.g. the kernel's
      // asynchronous network-namespace cleanup, that the next case meets).
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t j = 0; j < order.size() && rc == 0; ++j) {
        Case& c = cases[order[j]];
        if (c.slow && !slow_round) continue;
        absl::Status st = c.run();
        if (!st.ok()) {
          std::fprintf(stderr, "sandbox_bench: %s: %s\n", c.name.c_str(), st.ToString().c_str());
          rc = 1;
        }
      }
      if (i == -1) g_series.clear();  // drop the warm-up samples
    }
    const double elapsed_s = UsSince(started, Clock::now()) / 1e6;

    // ---- report
    auto p50 = [](const std::string& s) {
      auto it = g_series.find(s);
      return it == g_series.end() ? 0.0 : it->second.Quantile(0.5);
    };
    auto ratio = [&](const std::string& s, const std::string& base) -> std::string {
      double b = p50(base);
      if (b <= 0 || p50(s) <= 0) return "-";
      return absl::StrFormat("%.2fx", p50(s) / b);
    };
    struct Row {
      std::string series, label, what;
    };
    const std::vector<Row> rows = {
        {"", "**Cold start, no-op**", ""},
        {"cold.create_run", "**Flotilla cold**: Create + Run `true`", "LinuxInstanceFactory::Create (container + guest handshake), then Instance::Run"},
        {"cold.create", "&nbsp;&nbsp;Create", "Container::Launch of flotilla-guest + GuestClient::Handshake"},
        {"split.launch", "&nbsp;&nbsp;&nbsp;&nbsp;Container::Launch of the guest", "by hand, same spec: cgroups, clone into 6 namespaces, rootfs, pivot_root, seccomp, exec"},
        {"split.handshake", "&nbsp;&nbsp;&nbsp;&nbsp;GuestClient::Handshake", "guest start (static), HELLO both ways, first READY"},
        {"cold.run", "&nbsp;&nbsp;Run `true` (first task)", "RUN frame, guest fork/exec of true, EXIT"},
        {"cold.destroy", "&nbsp;&nbsp;destroy (not in the start)", "SHUTDOWN, kill, reap, remove cgroups and root dir"},
        {"launch.exit", "Container::Launch of /bin/true, to its exit", "no guest: the container alone, /bin/true as the init"},
        {"launch.exec", "&nbsp;&nbsp;Launch, to exec", "Launch returns once the init exec'd"},
        {"launch.destroy", "&nbsp;&nbsp;destroy (not in the start)", "reap, remove cgroups and root dir"},
        {"launch_hostnet.exec", "&nbsp;&nbsp;Launch, to exec, without a new net namespace", "NetworkNamespace::kHost (what egress requests get)"},
        {"cgroups.create", "&nbsp;&nbsp;piece: CgroupSet::Create alone", "mkdir + limits in each hierarchy it uses (v1 and/or v2)"},
        {"cgroups.remove", "&nbsp;&nbsp;piece: CgroupSet removal alone", "empty groups: rmdir in each hierarchy"},
        {"clone.ns", "&nbsp;&nbsp;piece: clone3 into the namespaces, exit, wait", "pid, mount, ipc, uts, net (as Launch): no rootfs, no exec"},
        {"clone.ns_hostnet", "&nbsp;&nbsp;piece: the same without CLONE_NEWNET", ""},
        {"peer.forkexec", "fork/exec `/bin/true`", "fork + execve + waitpid from the bench"},
        {"peer.posix_spawn", "posix_spawn `/bin/true`", "vfork-style: no page-table copy"},
        {"peer.posix_spawn_static", "posix_spawn of a static binary", "`/usr/sbin/ldconfig --version` (static-pie)"},
        {"peer.bwrap", "`bwrap --unshare-all` `/bin/true`", "ro-bind /usr, /proc, /dev; user, pid, net, ipc, uts, cgroup namespaces"},
        {"peer.crun", "`crun run` `/bin/true`", "OCI bundle: ro root, ro bind /usr, default namespaces, cgroupsPath"},
        {"peer.runc", "`runc run` `/bin/true`", "the same bundle"},
        {"", "**Warm start, no-op**", ""},
        {"warm.run", "**Flotilla warm**: Instance::Run `true`", "a parked sandbox: RUN, fork/exec in the guest, EXIT (+ waiting for the previous READY)"},
        {"warm.guest_wall", "&nbsp;&nbsp;of which the guest's fork → exit of `true`", "TaskOutcome.wall_time_us, measured in the guest"},
        {"warm_static.run", "&nbsp;&nbsp;the same Run of a static binary", "`/usr/sbin/ldconfig --version` (static-pie): no dynamic loader"},
        {"warm_static.guest_wall", "&nbsp;&nbsp;&nbsp;&nbsp;of which the guest's fork → exit", ""},
        {"pool.total", "WarmPool Acquire + Run + Release", "what PooledSandbox::Run does per task"},
        {"pool.acquire", "&nbsp;&nbsp;Acquire", "take the parked instance"},
        {"pool.run", "&nbsp;&nbsp;Run", ""},
        {"pool.release", "&nbsp;&nbsp;Release", "Reset: a RESET round trip (the guest cleans /work), park"},
        {"", "**`python3 -c pass`**", ""},
        {"py.cold.create_run", "**Flotilla Python cold**: Create (python template) + Run, exec mode", "the fork-server starts during Create"},
        {"py.cold.create", "&nbsp;&nbsp;Create", "container + guest + python3 fork-server with the template's preloads"},
        {"py.cold.run", "&nbsp;&nbsp;Run, exec mode", "guest fork/exec of python3"},
        {"py.cold_shell.create_run", "Flotilla Python cold in the shell template (no fork-server)", "Create + exec of python3"},
        {"py.warm.run", "**Flotilla Python warm**: Run, fork-server", "TaskSpec.python: a fork of the warm interpreter"},
        {"py.warm.guest_wall", "&nbsp;&nbsp;of which the guest's launch → exit", "TaskOutcome.wall_time_us: fork of the server's child, the task, its exit report"},
        {"py.pool.total", "&nbsp;&nbsp;WarmPool Acquire + Run + Release, fork-server", ""},
        {"py.warm_exec.run", "Flotilla Python warm instance, exec mode", "a parked sandbox, fork/exec of python3 in it"},
        {"peer.py.forkexec", "fork/exec `/usr/bin/python3 -c pass`", "no sandbox"},
    };
    std::printf("| case | n | p50 ms | p99 ms | mean ms | p50 / fork-exec | p50 / bwrap | p50 / crun | p50 / runc | what it is |\n");
    std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
    nlohmann::json out_json;
    std::string pending_header;
    for (const Row& r : rows) {
      if (r.series.empty()) {
        pending_header = absl::StrCat("| ", r.label, " | | | | | | | | | |\n");
        continue;
      }
      auto it = g_series.find(r.series);
      if (it == g_series.end() || it->second.us.empty()) continue;
      std::printf("%s", pending_header.c_str());
      pending_header.clear();
      const Series& s = it->second;
      const bool py = r.series.rfind("py.", 0) == 0 || r.series == "peer.py.forkexec";
      std::string base = py ? "peer.py.forkexec" : "peer.forkexec";
      std::printf("| %s | %zu | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.label.c_str(), s.us.size(),
                  Ms(s.Quantile(0.5)).c_str(), Ms(s.Quantile(0.99)).c_str(), Ms(s.Mean()).c_str(),
                  ratio(r.series, base).c_str(), py ? "-" : ratio(r.series, "peer.bwrap").c_str(),
                  py ? "-" : ratio(r.series, "peer.crun").c_str(),
                  py ? "-" : ratio(r.series, "peer.runc").c_str(), r.what.c_str());
      out_json["series"][r.series] = {{"n", s.us.size()},
                                      {"p50_us", s.Quantile(0.5)},
                                      {"p99_us", s.Quantile(0.99)},
                                      {"mean_us", s.Mean()}};
    }
    std::printf("\n(p50 / fork-exec of the Python rows is against fork/exec of python3.)\n\n");

    struct Target {
      std::string what, series;
      double limit_ms;
    };
    const std::vector<Target> targets = {
        {"isolated cold start p50 ≤ 3 ms (Create + Run `true`)", "cold.create_run", 3.0},
        {"warm start p50 ≤ 0.3 ms (Instance::Run `true` in a parked sandbox)", "warm.run", 0.3},
        {"warm start p50 ≤ 0.3 ms (WarmPool Acquire + Run + Release)", "pool.total", 0.3},
        {"Python warm start p50 ≤ 5 ms (fork-server Run)", "py.warm.run", 5.0},
    };
    std::printf("| target | measured p50 | met? |\n|---|---|---|\n");
    for (const Target& t : targets) {
      double v = p50(t.series) / 1000.0;
      std::printf("| %s | %.2f ms | %s |\n", t.what.c_str(), v, v > 0 && v <= t.limit_ms ? "yes" : "no");
    }
    std::printf("\nIterations: %d (slow cases: %d, every %d), %d warm-up; %.1f s.\n", n, slow_done, stride,
                warmup, elapsed_s);
    for (const auto& note : notes) std::printf("Note: %s.\n", note.c_str());
    if (!json_path.empty()) {
      out_json["notes"] = notes;
      out_json["elapsed_s"] = elapsed_s;
      std::ofstream(json_path) << out_json.dump(2) << "\n";
    }
    // Instances and pools are destroyed here.
    if (shell_warm.ok()) shell_warm->reset();
    if (python_warm.ok()) python_warm->reset();
    shell_pool.Drain();
    python_pool.Drain();

    // ---- clean up the peers' state
    for (OciPeer* p : {&crun, &runc}) {
      if (p->tool.empty() || p->state_root.empty()) continue;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(p->state_root, ec)) {
        RunProcess({p->tool, "--root", p->state_root, "delete", "-f", e.path().filename().string()}, p->pre);
      }
      // The runtimes remove their container cgroups on delete; make sure.
      for (const auto& e : fs::directory_iterator("/sys/fs/cgroup", ec)) {
        std::string dir = e.path().string() + p->cgroup;
        if (access(dir.c_str(), F_OK) == 0 && rmdir(dir.c_str()) != 0) {
          std::fprintf(stderr, "sandbox_bench: could not remove %s: %s\n", dir.c_str(), strerror(errno));
        }
      }
    }
  }
  factory->reset();
  if (guest_fd >= 0) close(guest_fd);
  pool::RemoveSandboxRoot(*layout);
  // The bundles' rootfs dirs are empty mount points on the host (the binds
  // lived in the runtimes' own mount namespaces).
  std::error_code ec;
  if (tmp.rfind("/tmp/flotilla-sbench-", 0) == 0) fs::remove_all(tmp, ec);
  return rc;
}
