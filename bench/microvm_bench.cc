// Micro-VMs against themselves and the Linux sandbox, in one run on one
// machine (bench/run.sh microvm; needs root for the Linux sandbox):
//
//   cold boot     MicroVmInstanceFactory::Create with snapshots off: QEMU
//                 start, kernel boot, /init, guest HELLO/READY handshake
//   restore       Create from the shape's snapshot: QEMU start with
//                 -incoming, state load (RAM mapped copy-on-write from the
//                 snapshot's memory file), handshake, SEED
//   no-op, VM     a restored VM running {"true"} again and again: Run only,
//                 and Run + Reset (the RESET round trip a reused sandbox pays)
//   no-op, Linux  the same on a warm Linux container of templates/shell.yaml,
//                 interleaved with the VM's iterations
//   jail          with --jail-compare N: QEMU start to its QMP answer and a
//                 restore to guest ready, jailed and unjailed interleaved,
//                 beside fork+exec of /bin/true (the cost the jail adds:
//                 namespaces, a root of binds, a cgroup, privileges dropped)
//   python        with --rootfs and --python N: a fresh VM of a factory with
//                 the root image, restored from its snapshot, to the end of
//                 its first `python3 -c 'print(2**100)'` (Create + Run), and
//                 the same through the guest's Python fork server (the
//                 function path, main.py); beside it the host's fork+exec
//                 of the same python3 -c, and the image's size; and the
//                 same on VMs that ran the Python warm-up before Create
//                 returned (MicroVmInstanceOptions::warm_up)
//   idle VM       VmRSS and Pss (smaps_rollup) of QEMU for N restored idle
//                 VMs, 1 s after their handshake; Pss counts the pages the
//                 VMs share (the snapshot's RAM, QEMU's binary) once in all
//
// Prints a markdown table; every QEMU is killed and every file removed
// before it exits.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "pool/environment_template.h"
#include "pool/linux_instance.h"
#include "pool/microvm_instance.h"
#include "sandbox/linux/container.h"
#include "sandbox/microvm/micro_vm.h"

namespace flotilla {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Series {
  std::vector<double> ms;
  double Quantile(double q) const {
    if (ms.empty()) return NAN;
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
    return v[std::min(v.size() - 1, rank == 0 ? 0 : rank - 1)];
  }
};

class NullSink : public sandbox::OutputSink {
 public:
  void OnOutput(sandbox::Stream, int64_t, std::string_view) override {}
};

sandbox::TaskSpec TrueTask() {
  sandbox::TaskSpec t;
  t.id = "bench";
  t.argv = {"true"};
  t.timeout = std::chrono::seconds(30);
  return t;
}

// Pss: QEMU's share of pages it maps with others (the kernel and initrd
// files, libraries); Rss counts them whole in every VM.
int64_t ProcKb(pid_t pid, const char* file, const char* key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/", file));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(strlen(key)));
  }
  return -1;
}

pid_t QemuPidUnder(const std::string& run_root) {
  // The newest qemu whose command line names run_root.
  pid_t found = -1;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    pid_t pid = atoi(e.path().filename().c_str());
    if (pid <= 0) continue;
    std::ifstream in(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmd.rfind("/usr/bin/qemu", 0) == 0 && cmd.find(run_root) != std::string::npos) {
      found = std::max(found, pid);
    }
  }
  return found;
}

void Row(const char* name, const Series& s, const char* note = "") {
  std::printf("| %s | %zu | %.1f | %.1f | %s |\n", name, s.ms.size(), s.Quantile(0.5),
              s.Quantile(0.99), note);
}

int Main(int argc, char** argv) {
  CLI::App app{"micro-VM benchmark"};
  std::string kernel = "/var/cache/flotilla/vm/current/vmlinux", initrd, guest, templates;
  int cold_n = 3, restore_n = 10, noop_n = 200, idle_n = 4, jail_n = 0, python_n = 0;
  std::string rootfs;
  app.add_option("--kernel", kernel);
  app.add_option("--initrd", initrd)->required();
  app.add_option("--guest", guest, "flotilla-guest, for the Linux sandbox")->required();
  app.add_option("--templates", templates)->required();
  app.add_option("--cold", cold_n);
  app.add_option("--restores", restore_n);
  app.add_option("--noop", noop_n);
  app.add_option("--idle", idle_n);
  app.add_option("--jail-compare", jail_n, "jailed vs unjailed QEMU starts and restores, each");
  app.add_option("--rootfs", rootfs, "the guest-rootfs.img, for --python");
  app.add_option("--python", python_n, "fresh restored VMs to their first Python task, each path");
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/fmb.XXXXXX";
  const std::string root = mkdtemp(tmpl);
  using Jail = pool::MicroVmInstanceOptions::Jail;
  auto make = [&](const char* name, bool snapshots, Jail jail = Jail::kRequired,
                  const std::string& image = "",
                  pool::MicroVmInstanceOptions::WarmUp warm_up =
                      pool::MicroVmInstanceOptions::WarmUp::kNone) {
    pool::MicroVmInstanceOptions o;
    o.warm_up = warm_up;
    o.jail = jail;
    o.kernel = kernel;
    o.initrd = initrd;
    o.rootfs = image;
    o.run_root = root + "/" + name;
    o.accel = sandbox::microvm::Accel::kTcg;
    o.snapshots = snapshots;
    return pool::NewMicroVmInstanceFactory(o);
  };
  auto cold_factory = make("c", false);
  auto warm_factory = make("w", true);
  if (!cold_factory.ok() || !warm_factory.ok()) {
    std::fprintf(stderr, "microvm_bench: %s %s\n", cold_factory.status().ToString().c_str(),
                 warm_factory.status().ToString().c_str());
    return 2;
  }
  pool::EnvironmentTemplate vm_t;
  vm_t.name = "vm";
  vm_t.isolation = pool::Isolation::kMicroVm;
  vm_t.limits.memory_bytes = 256ll << 20;
  vm_t.limits.cpu_millis = 1000;

  NullSink sink;
  sandbox::CancelToken cancel;
  Series cold, restore, vm_run, vm_cycle, linux_run, linux_cycle;
  std::vector<std::string> notes;

  for (int i = 0; i < cold_n; ++i) {
    auto t0 = Clock::now();
    auto vm = (*cold_factory)->Create(vm_t, {});
    if (!vm.ok()) {
      std::fprintf(stderr, "cold boot: %s\n", vm.status().ToString().c_str());
      return 1;
    }
    cold.ms.push_back(MsSince(t0));
  }
  {
    auto t0 = Clock::now();
    auto first = (*warm_factory)->Create(vm_t, {});  // makes the snapshot
    if (!first.ok()) {
      std::fprintf(stderr, "snapshot: %s\n", first.status().ToString().c_str());
      return 1;
    }
    notes.push_back(absl::StrCat("first Create of the shape (boot + snapshot + restore): ",
                                 static_cast<int>(MsSince(t0)), " ms; of which boot + snapshot ",
                                 static_cast<int>((*warm_factory)->status().last_snapshot_ms),
                                 " ms"));
  }
  for (int i = 0; i < restore_n; ++i) {
    auto t0 = Clock::now();
    auto vm = (*warm_factory)->Create(vm_t, {});
    if (!vm.ok()) {
      std::fprintf(stderr, "restore: %s\n", vm.status().ToString().c_str());
      return 1;
    }
    restore.ms.push_back(MsSince(t0));
  }

  // The jail's cost, jailed and unjailed interleaved, fork+exec beside.
  Series start_jailed, start_plain, restore_jailed, restore_plain, fork_exec;
  if (jail_n > 0) {
    auto plain_factory = make("u", true, Jail::kOff);
    if (!plain_factory.ok()) return 1;
    sandbox::HostLayout paths;
    paths.runtime_dir = root + "/roots";
    auto layout = sandbox::DetectHostLayout(paths);
    if (!layout.ok()) return 1;
    for (auto* f : {&*warm_factory, &*plain_factory}) {
      if (!(*f)->Create(vm_t, {}).ok()) return 1;  // the snapshot
    }
    for (int i = 0; i < jail_n; ++i) {
      for (bool jailed : {true, false}) {
        sandbox::microvm::MicroVmConfig c;
        c.kernel = kernel;
        c.initrd = initrd;
        c.run_dir = absl::StrCat(root, "/start-", i, jailed ? "j" : "u");
        if (jailed) {
          c.jail.emplace();
          c.jail->layout = *layout;
        }
        auto t0 = Clock::now();
        auto vm = sandbox::microvm::MicroVm::Start(c, t0 + std::chrono::seconds(30));
        if (!vm.ok()) {
          std::fprintf(stderr, "start: %s\n", vm.status().ToString().c_str());
          return 1;
        }
        (jailed ? start_jailed : start_plain).ms.push_back(MsSince(t0));
        (*vm)->Kill();
        auto& factory = jailed ? *warm_factory : *plain_factory;
        t0 = Clock::now();
        auto restored = factory->Create(vm_t, {});
        if (!restored.ok()) {
          std::fprintf(stderr, "restore: %s\n", restored.status().ToString().c_str());
          return 1;
        }
        (jailed ? restore_jailed : restore_plain).ms.push_back(MsSince(t0));
      }
      auto t0 = Clock::now();
      pid_t pid = fork();
      if (pid == 0) {
        execl("/bin/true", "true", nullptr);
        _exit(127);
      }
      int status;
      waitpid(pid, &status, 0);
      fork_exec.ms.push_back(MsSince(t0));
    }
    plain_factory->reset();
  }

  // Restore to the first Python task, on the root image: VMs handed out
  // as restored, and VMs that ran the Python warm-up first.
  struct PySeries {
    Series total, first_run, second_run;
  };
  PySeries py_exec, py_fn, warm_exec, warm_fn;
  Series host_python, warm_create;
  using WarmUp = pool::MicroVmInstanceOptions::WarmUp;
  if (python_n > 0 && !rootfs.empty()) {
    auto py_factory = make("p", true, Jail::kRequired, rootfs);
    auto warm_factory_py = make("q", true, Jail::kRequired, rootfs, WarmUp::kPython);
    if (!py_factory.ok() || !warm_factory_py.ok()) {
      std::fprintf(stderr, "python factory: %s %s\n", py_factory.status().ToString().c_str(),
                   warm_factory_py.status().ToString().c_str());
      return 1;
    }
    for (auto* f : {&*py_factory, &*warm_factory_py}) {
      auto t0 = Clock::now();
      if (!(*f)->Create(vm_t, {}).ok()) return 1;  // the snapshot
      if (f == &*py_factory) {
        notes.push_back(absl::StrCat("root image VM: boot + snapshot ",
                                     static_cast<int>((*f)->status().last_snapshot_ms),
                                     " ms (first Create ", static_cast<int>(MsSince(t0)), " ms)"));
      }
    }
    sandbox::TaskSpec py = TrueTask();
    py.argv = {"python3", "-c", "print(2**100)"};
    sandbox::TaskSpec fn = TrueTask();
    fn.argv = {"python3", "main.py"};
    fn.python = true;
    fn.files.push_back({"main.py", "print(2**100)\n", 0644});
    for (int i = 0; i < python_n; ++i) {
      for (auto [factory, spec, series] :
           {std::tuple{&*py_factory, &py, &py_exec}, std::tuple{&*py_factory, &fn, &py_fn},
            std::tuple{&*warm_factory_py, &py, &warm_exec},
            std::tuple{&*warm_factory_py, &fn, &warm_fn}}) {
        auto t0 = Clock::now();
        pool::InstanceOptions ahead;
        ahead.ahead_of_demand = true;  // as a pool refill makes them
        auto vm = (*factory)->Create(vm_t, ahead);
        if (!vm.ok()) {
          std::fprintf(stderr, "python restore: %s\n", vm.status().ToString().c_str());
          return 1;
        }
        if (factory == &*warm_factory_py) warm_create.ms.push_back(MsSince(t0));
        auto t1 = Clock::now();
        auto r = (*vm)->Run(*spec, sink, cancel);
        if (!r.ok() || r->exit_code != 0 || r->stdout_data != "1267650600228229401496703205376\n") {
          std::fprintf(stderr, "python task: %s %s\n", r.status().ToString().c_str(),
                       r.ok() ? r->stderr_data.c_str() : "");
          return 1;
        }
        series->total.ms.push_back(MsSince(t0));
        series->first_run.ms.push_back(MsSince(t1));
        if (!(*vm)->Reset()) return 1;
        t1 = Clock::now();
        r = (*vm)->Run(*spec, sink, cancel);
        if (!r.ok() || r->exit_code != 0) return 1;
        series->second_run.ms.push_back(MsSince(t1));
      }
      auto t0 = Clock::now();
      pid_t pid = fork();
      if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl("/usr/bin/python3", "python3", "-c", "print(2**100)", nullptr);
        _exit(127);
      }
      int status;
      waitpid(pid, &status, 0);
      host_python.ms.push_back(MsSince(t0));
    }
    struct stat st;
    if (stat(rootfs.c_str(), &st) == 0) {
      notes.push_back(absl::StrCat("root image ", rootfs, ": ", st.st_size >> 20, " MiB (",
                                   (st.st_blocks * 512) >> 20, " MiB allocated)"));
    }
    py_factory->reset();
    warm_factory_py->reset();
  }

  // The Linux sandbox beside it.
  auto shell_t = pool::LoadTemplate(templates + "/shell.yaml");
  pool::LinuxInstanceOptions lo;
  lo.guest_binary = guest;
  const std::string key = absl::StrCat("vmbench.", getpid());
  lo.layout.runtime_dir = absl::StrCat("/run/flotilla/", key);
  lo.layout.cgroup_parent = absl::StrCat("flotilla/", key);
  auto layout = sandbox::DetectHostLayout(lo.layout);
  std::unique_ptr<pool::InstanceFactory> linux_factory;
  if (shell_t.ok() && layout.ok()) {
    auto f = pool::NewLinuxInstanceFactory(lo);
    if (f.ok()) linux_factory = std::move(*f);
  }
  {
    auto vm = (*warm_factory)->Create(vm_t, {});
    std::unique_ptr<pool::Instance> box;
    if (linux_factory) {
      auto b = linux_factory->Create(*shell_t, {});
      if (b.ok()) box = std::move(*b);
    }
    if (!box) notes.push_back("no Linux sandbox on this host (needs root and cgroups)");
    if (!vm.ok()) return 1;
    for (int i = 0; i < noop_n; ++i) {
      auto t0 = Clock::now();
      auto r = (*vm)->Run(TrueTask(), sink, cancel);
      if (!r.ok() || r->exit_code != 0) return 1;
      vm_run.ms.push_back(MsSince(t0));
      if (!(*vm)->Reset()) return 1;
      vm_cycle.ms.push_back(MsSince(t0));
      if (box) {
        t0 = Clock::now();
        auto lr = box->Run(TrueTask(), sink, cancel);
        if (!lr.ok() || lr->exit_code != 0) return 1;
        linux_run.ms.push_back(MsSince(t0));
        if (!box->Reset()) return 1;
        linux_cycle.ms.push_back(MsSince(t0));
      }
    }
  }

  // Idle VMs' memory.
  std::vector<std::unique_ptr<pool::Instance>> idle;
  std::vector<pid_t> pids;
  std::vector<int64_t> rss_kb, pss_kb, anon_kb;
  for (int i = 0; i < idle_n; ++i) {
    auto vm = (*warm_factory)->Create(vm_t, {});
    if (!vm.ok()) return 1;
    idle.push_back(std::move(*vm));
    pids.push_back(QemuPidUnder(root + "/w/vm-"));
  }
  // All of them up and idle first, so that Pss splits the shared pages
  // among the N VMs that share them.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (pid_t pid : pids) {
    rss_kb.push_back(ProcKb(pid, "status", "VmRSS:"));
    pss_kb.push_back(ProcKb(pid, "smaps_rollup", "Pss:"));
    anon_kb.push_back(ProcKb(pid, "smaps_rollup", "Pss_Anon:"));
  }
  idle.clear();
  auto mean = [](const std::vector<int64_t>& v) {
    double s = 0;
    for (int64_t x : v) s += static_cast<double>(x);
    return v.empty() ? NAN : s / static_cast<double>(v.size()) / 1024.0;
  };

  std::printf("\n| case | n | p50 ms | p99 ms | note |\n|---|---|---|---|---|\n");
  Row("VM cold boot to guest ready", cold);
  Row("VM restore from snapshot to guest ready", restore);
  Row("no-op in a pooled VM: Run", vm_run);
  Row("no-op in a pooled VM: Run + Reset", vm_cycle);
  Row("no-op in a warm Linux sandbox: Run", linux_run);
  Row("no-op in a warm Linux sandbox: Run + Reset", linux_cycle);
  if (jail_n > 0) {
    Row("QEMU start to QMP answer, jailed", start_jailed);
    Row("QEMU start to QMP answer, unjailed", start_plain);
    Row("VM restore to guest ready, jailed", restore_jailed);
    Row("VM restore to guest ready, unjailed", restore_plain);
    Row("fork+exec+wait of /bin/true", fork_exec);
  }
  if (!py_exec.total.ms.empty()) {
    Row("restored VM: restore to first `python3 -c` done (Create + Run)", py_exec.total);
    Row("  of which the first Run", py_exec.first_run);
    Row("  the same VM's second Run", py_exec.second_run);
    Row("restored VM: restore to first Python function done (fork server)", py_fn.total);
    Row("  of which the first Run", py_fn.first_run);
    Row("  the same VM's second Run", py_fn.second_run);
    Row("warmed-up VM: Create (restore + Python warm-up)", warm_create);
    Row("warmed-up VM: first `python3 -c` Run", warm_exec.first_run);
    Row("warmed-up VM: first Python function Run", warm_fn.first_run);
    Row("host fork+exec+wait of python3 -c", host_python);
  }
  std::printf("\nrestore vs cold boot (p50): %.1fx faster (target >= 8x)\n",
              cold.Quantile(0.5) / restore.Quantile(0.5));
  std::printf("no-op p50, VM vs Linux: %.1f ms vs %.1f ms (target <= 20 ms under TCG)\n",
              vm_run.Quantile(0.5), linux_run.Quantile(0.5));
  std::printf("idle VM (256 MiB guest, TCG), mean of %d side by side: VmRSS %.1f MiB, Pss %.1f "
              "MiB, of which private (Pss_Anon) %.1f MiB (target <= 40 MiB)\n",
              idle_n, mean(rss_kb), mean(pss_kb), mean(anon_kb));
  for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
  linux_factory.reset();
  if (layout.ok()) pool::RemoveSandboxRoot(*layout);
  cold_factory->reset();
  warm_factory->reset();
  std::filesystem::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace flotilla

int main(int argc, char** argv) { return flotilla::Main(argc, argv); }
