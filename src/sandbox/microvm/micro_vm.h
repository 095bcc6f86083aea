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
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace flotilla::sandbox::microvm {

enum class Accel { kTcg, kKvm };
const char* ToString(Accel a);

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
  std::string extra_append;  // more kernel command line
  int64_t tsc_khz = 0;       // the guest's TSC frequency; 0: the host's (HostTscKhz)
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
  // migration to `exec:cat > path`): all of it, or, for a kSharedFile VM,
  // all but its RAM, which is then the memory file. The VM stays paused;
  // kill it after.
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
  // The last `max` bytes of the console, for error messages.
  std::string ConsoleTail(size_t max = 2048) const;

  // The QEMU command line for `config` (tests, logs).
  static std::vector<std::string> CommandLine(const MicroVmConfig& config);

 private:
  MicroVm(MicroVmConfig config, pid_t pid) : config_(std::move(config)), pid_(pid) {}
  absl::Status ConnectQmp(std::chrono::steady_clock::time_point deadline);
  absl::Status StartIncoming(std::chrono::steady_clock::time_point deadline);
  absl::StatusOr<std::string> ReadQmpLine(std::chrono::steady_clock::time_point deadline);
  std::string QemuLogTail() const;

  const MicroVmConfig config_;
  const pid_t pid_;
  std::mutex kill_mu_;
  bool reaped_ = false;  // guarded by kill_mu_
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

}  // namespace flotilla::sandbox::microvm
