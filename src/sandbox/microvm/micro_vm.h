// MicroVm: one QEMU `microvm` process running the Flotilla guest kernel and
// initramfs, with flotilla-guest on a virtio-serial port whose host end is a
// unix socket in the VM's own run directory.
//
// Every call that waits has a deadline, and the kill path is always there:
// Kill() (and the destructor) SIGKILLs QEMU, reaps it and removes the run
// directory. QEMU is also started with PR_SET_PDEATHSIG(SIGKILL) from one
// long-lived launcher thread, so no QEMU outlives the process that started
// it, even one that crashed.
//
// Jailed (MicroVmConfig::jail), QEMU runs as Firecracker's jailer runs its
// VMM: as the init of its own mount, pid, ipc, uts, cgroup and network
// namespaces (sandbox/linux/container.h does the work), in a root that holds
// only /usr, /lib, its kernel, initramfs, root image, memory file and run
// directory (at /vm/...), in a cgroup of its own, as an unprivileged uid with no
// capabilities and no_new_privs, under the containers' seccomp denylist and
// QEMU's own `-sandbox` filter on top. /dev/kvm is a node in the jail's own
// /dev. The QMP and agent sockets stay reachable from the host: they are
// path-bound unix sockets in the run directory, which the jail sees bound
// at /vm/run. Snapshot files never enter the jail: the agent opens them and
// passes the fd over QMP (getfd), since QEMU may not spawn `cat`.
//
// Disks (optional): a root image, attached read-only (virtio-blk, serial
// flotilla-root; the guest's /init switches root to it) and shared by every
// VM, bound read-only into the jail; and a scratch disk, a sparse copy of
// `scratch_image` that Start makes in the run directory (so the jail sees
// it through the run directory's bind, and Kill removes it with the rest),
// serial flotilla-scratch, which the guest mounts over /work. Drives are
// opened by path when QEMU starts, so a restore attaches the same ones: it
// runs the command line the snapshot's VM ran.
//
// What crosses from the guest is hostile: the agent channel is handed to a
// GuestClient (which bounds every frame); the console is only ever searched
// for a marker, a bounded number of bytes from its start.
//
// Thread-safety: a MicroVm is used by one thread at a time, except Kill()
// and pid(), which may be called from any thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"
#include "sandbox/linux/container.h"

namespace flotilla::sandbox::microvm {

enum class Accel { kTcg, kKvm };
const char* ToString(Accel a);

// Where and as whom a jailed QEMU runs.
struct JailConfig {
  uid_t uid = 65534;  // nobody; never 0
  gid_t gid = 65534;
  // The cgroup layout (DetectHostLayout) and runtime_dir, which holds each
  // jail's (empty, host-side) root directory while it runs.
  HostLayout layout;
  // QEMU's threads count as pids: a vCPU each, the main loop, RCU, workers.
  int64_t pids_max = 256;
};

// QEMU's seccomp filter, as QEMU's -sandbox spells it: the default
// allowlist-of-denials plus obsolete system calls, set*id, fork/exec and
// scheduler/affinity changes denied.
inline constexpr char kQemuSandboxOption[] =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

struct MicroVmConfig {
  std::string qemu = "qemu-system-x86_64";
  std::string kernel;  // a plain vmlinux (PVH boot)
  std::string initrd;
  Accel accel = Accel::kTcg;
  int64_t memory_mib = 256;
  int vcpus = 1;
  // Created by Start, owned by the VM and removed by Kill: the QMP and agent
  // sockets, the console log and QEMU's own log.
  std::string run_dir;
  // A snapshot (MicroVm::Snapshot) to restore instead of booting. The rest
  // of the configuration must be the one the snapshot was taken with, but
  // a snapshot of a kSharedFile VM is restored with kPrivateFile.
  std::string incoming;
  // Guest RAM. kSharedFile maps `memory_file` shared: the guest's memory is
  // that file, and a snapshot leaves it out of the stream (x-ignore-shared).
  // kPrivateFile maps it copy-on-write: VMs restored from one snapshot share
  // its pages in the host's page cache and own only what they write, as
  // Firecracker's MAP_PRIVATE snapshot memory does. The file must not
  // change while any VM maps it.
  enum class Memory { kAnonymous, kSharedFile, kPrivateFile };
  Memory memory = Memory::kAnonymous;
  std::string memory_file;
  // The root image (scripts/build-guest-rootfs); "" boots into the
  // initramfs alone. It must not be written while a VM or a snapshot uses
  // it: guests cache its blocks. Replace it by rename instead (the build
  // does); the pool keys snapshots by the image's inode and mtime.
  std::string rootfs;
  // An image (disks.h, MakeScratchImage) that Start copies, sparsely, to
  // <run_dir>/scratch.img as the VM's writable scratch disk; "" for none. A
  // snapshot's VMs must all start from the same image.
  std::string scratch_image;
  std::string extra_append;  // more kernel command line
  int64_t tsc_khz = 0;       // the guest's TSC frequency; 0: the host's (HostTscKhz)
  // Set: QEMU runs jailed (see the top of this file); the run directory and
  // a memory file it makes are owned by the jail's uid. Unset: QEMU is a
  // plain child of the caller, with the caller's privileges.
  std::optional<JailConfig> jail;
};

// The host's TSC frequency in kHz, measured once.
int64_t HostTscKhz();

// The console line the guest prints once it waits for its agent: a booted
// VM is ready to be snapshotted from then on.
inline constexpr std::string_view kGuestWaitingMarker = "flotilla-guest: waiting for the agent";

class MicroVm {
 public:
  // Starts QEMU and waits until its QMP socket answers (the process is up;
  // the guest is still booting or restoring). On error nothing is left.
  static absl::StatusOr<std::unique_ptr<MicroVm>> Start(
      const MicroVmConfig& config, std::chrono::steady_clock::time_point deadline);

  ~MicroVm();
  MicroVm(const MicroVm&) = delete;
  MicroVm& operator=(const MicroVm&) = delete;

  // Connects to the host end of the guest's channel; the returned fd is the
  // GuestClient's. Only one connection at a time is served by QEMU.
  absl::StatusOr<UniqueFd> ConnectAgent(std::chrono::steady_clock::time_point deadline);

  // Waits until `marker` appears in the first 1 MiB of the console.
  // DeadlineExceeded with the console's tail when it does not, or when QEMU
  // exits first.
  absl::Status WaitForConsole(std::string_view marker,
                              std::chrono::steady_clock::time_point deadline);

  // Pauses the VM and writes its state to `path` (QMP stop, then a
  // migration to an fd of `path` the caller opens and passes over QMP): all of it, or, for a
  // kSharedFile VM, all but its RAM, which is then the memory file. The VM stays paused; kill it
  // after.
  absl::Status Snapshot(const std::string& path, std::chrono::steady_clock::time_point deadline);

  // Sends a QMP command (a JSON object) and returns the "return" member as
  // JSON text, or the QMP error.
  absl::StatusOr<std::string> Qmp(const std::string& command,
                                  std::chrono::steady_clock::time_point deadline);

  // SIGKILLs QEMU, reaps it and removes the run directory. Idempotent.
  void Kill();

  // True while QEMU has not exited.
  bool running();
  pid_t pid() const { return pid_; }
  const MicroVmConfig& config() const { return config_; }
  // QEMU's resident set size (VmRSS), or an error once it is gone.
  absl::StatusOr<int64_t> RssBytes() const;
  // The scratch disk's file on the host, "" when the VM has none.
  std::string scratch_path() const;
  // The last `max` bytes of the console, for error messages.
  std::string ConsoleTail(size_t max = 2048) const;
  // For errors: the lines init and flotilla-guest printed, then the tail.
  std::string ConsoleReport() const;

  // The QEMU command line for `config` (tests, logs), with the paths QEMU
  // sees: inside the jail's root for a jailed VM.
  static std::vector<std::string> CommandLine(const MicroVmConfig& config);

 private:
  MicroVm(MicroVmConfig config, pid_t pid, std::unique_ptr<Container> jail)
      : config_(std::move(config)), pid_(pid), jail_(std::move(jail)) {}
  absl::Status ConnectQmp(std::chrono::steady_clock::time_point deadline);
  absl::Status StartIncoming(std::chrono::steady_clock::time_point deadline);
  absl::StatusOr<std::string> ReadQmpLine(std::chrono::steady_clock::time_point deadline);
  // Opens `path` with `flags` and hands the fd to QEMU as `name` (QMP
  // getfd, over SCM_RIGHTS), for a `fd:name` migration URI.
  absl::Status PassFile(const std::string& name, const std::string& path, int flags,
                        std::chrono::steady_clock::time_point deadline);
  absl::StatusOr<std::string> QmpWithFd(const std::string& command, int fd,
                                        std::chrono::steady_clock::time_point deadline);
  std::string QemuLogTail() const;

  const MicroVmConfig config_;
  const pid_t pid_;
  std::mutex kill_mu_;
  bool reaped_ = false;  // guarded by kill_mu_
  // The jail (its namespaces' init is QEMU, its cgroup, its root dir);
  // null for an unjailed VM. Guarded by kill_mu_ once Start returned.
  std::unique_ptr<Container> jail_;
  UniqueFd qmp_;
  std::string qmp_buffer_;
};

// Decides the accelerator once: a real short boot under KVM (a stock kernel
// cannot boot on some nested hosts where /dev/kvm exists) that must reach
// the guest's waiting marker before `deadline`; TCG otherwise. `reason`
// says why KVM was not chosen.
struct AccelProbe {
  Accel accel = Accel::kTcg;
  std::string reason;
  int64_t probe_ms = 0;
};
AccelProbe ProbeAccel(MicroVmConfig config, std::chrono::milliseconds timeout);

// Returns OK if `pid` runs as `jail` asks: its uid and gid, no effective,
// permitted or bounding capability, no_new_privs, a seccomp filter, and
// mount, pid, net, ipc, uts and cgroup namespaces other than this
// process's. Otherwise FailedPrecondition naming the first difference.
// Reads <proc_dir>/<pid>/{status,ns/*}.
absl::Status CheckJailed(pid_t pid, const JailConfig& jail, const std::string& proc_dir = "/proc");

// Proves that QEMU can be jailed here with a real attempt: starts a jailed
// VM of `config` (its jail must be set), waits for its QMP socket, checks
// it with CheckJailed and kills it. The error says which step failed.
absl::Status ProbeJail(MicroVmConfig config, std::chrono::steady_clock::time_point deadline);

}  // namespace flotilla::sandbox::microvm
