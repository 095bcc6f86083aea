// MicroVmInstanceFactory: warm-pool instances that are QEMU micro-VMs
// (sandbox/microvm/micro_vm.h) with flotilla-guest as their PID 1, driven
// over a virtio-serial port by the same GuestClient as containers.
//
// Provisioning is by snapshot restore: per VM shape (memory, vCPUs) the
// factory boots one VM until its guest waits for an agent, snapshots it, and
// restores every later VM of that shape from the snapshot (~10x faster than
// a boot under TCG), its RAM mapped copy-on-write from the snapshot's
// memory file. A restored guest is sent SEED (wall clock, entropy)
// before its first task, since every restore wakes with the snapshot's.
//
// With a root image (options.rootfs) a VM of a template whose rootfs is
// "host" boots into that image, read-only, and gets a scratch disk of the
// template's work size mounted at /work: a sparse copy, made in the VM's
// run directory and removed with it, of one empty ext4 image per size.
//
// A VM whose task timed out or whose guest broke the protocol is never
// reused: the pool destroys it, which kills QEMU.
//
// Thread-safe: Create may run on many threads at once; the first Create of
// a shape makes its snapshot while the others of that shape wait.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "pool/warm_pool.h"
#include "sandbox/microvm/micro_vm.h"

namespace flotilla::pool {

struct MicroVmInstanceOptions {
  std::string qemu = "qemu-system-x86_64";
  std::string kernel;  // vmlinux (scripts/fetch-guest-kernel)
  std::string initrd;  // the build's guest-initramfs.cpio
  // The build's guest-rootfs.img (python3, busybox, flotilla-guest); ""
  // runs tasks in the initramfs (busybox only) with /work on a tmpfs.
  std::string rootfs;
  // What a VM with the root image runs before Create hands it out when it
  // is made ahead of demand (InstanceOptions::ahead_of_demand, a pool
  // refill). kPython: one `python3 -c pass` and one Python function through
  // the fork server. Under TCG a restored VM starts with an empty
  // translation cache (it is not in the snapshot): its first Python task
  // pays ~0.5-1 s of translation, the second ~40-250 ms. kPython moves that
  // cost off the request's path; a VM made for a waiting request skips it.
  enum class WarmUp { kNone, kPython };
  WarmUp warm_up = WarmUp::kNone;
  // Made by the factory, removed with it: VM run directories and snapshots.
  // Keep it short: it prefixes unix socket paths (108 bytes at most).
  std::string run_root;
  // nullopt: a KVM probe boot decides once (sandbox::microvm::ProbeAccel).
  std::optional<sandbox::microvm::Accel> accel;
  // A KVM boot reaches the guest in well under a second; a host where it
  // cannot hangs rather than fails.
  std::chrono::milliseconds probe_timeout{5000};
  // The boot that makes a shape's snapshot: with the root image it also
  // starts the Python fork server under TCG (4-15 s on a loaded 2-core host).
  std::chrono::milliseconds boot_timeout{60000};
  std::chrono::milliseconds restore_timeout{15000};
  // False: every VM boots cold (the baseline the benchmarks compare with).
  bool snapshots = true;
  // kRequired: every QEMU runs jailed (sandbox/microvm/micro_vm.h) and the
  // factory is refused, with the reason, where a jailed probe VM fails.
  // kOff: QEMU runs as a plain child of the agent, with its privileges; an
  // explicit, logged decision.
  enum class Jail { kRequired, kOff };
  Jail jail = Jail::kRequired;
  uid_t jail_uid = 65534;
  gid_t jail_gid = 65534;
  std::chrono::milliseconds jail_probe_timeout{10000};
  // Restored VMs map the snapshot's RAM file copy-on-write (sharing its
  // pages) instead of each loading a copy of it from the stream. Its cost:
  // one RAM file per shape in run_root, as large as what the guest touched.
  bool share_snapshot_memory = true;
};

// What the agent reports about its micro-VMs.
struct MicroVmStatus {
  sandbox::microvm::Accel accel = sandbox::microvm::Accel::kTcg;
  std::string accel_reason;  // why not KVM, when TCG
  bool jailed = false;
  std::string jail;  // how QEMU is confined, or why it is not
  uint64_t snapshots_made = 0;
  uint64_t restores = 0;
  uint64_t cold_boots = 0;
  uint64_t failures = 0;
  double last_snapshot_ms = 0;
  double last_restore_ms = 0;  // QEMU start → guest handshake done (and SEED)
  uint64_t warm_ups = 0;       // VMs that ran the Python warm-up (warm_up)
  double last_warm_up_ms = 0;  // its two tasks and RESETs, after the restore
  double last_boot_ms = 0;
};

class MicroVmInstanceFactory : public InstanceFactory {
 public:
  virtual MicroVmStatus status() const = 0;
};

// Checks the kernel and initramfs, makes run_root, proves the jail with a
// jailed probe VM (FailedPrecondition with the reason where it fails and
// the jail is required) and decides the accelerator (which may take a probe
// boot of up to probe_timeout).
absl::StatusOr<std::unique_ptr<MicroVmInstanceFactory>> NewMicroVmInstanceFactory(
    MicroVmInstanceOptions options);

// The VM shape of a template: memory in MiB (at least 128: the guest kernel
// needs about 60) and vCPUs (ceil of its cpu limit).
int64_t VmMemoryMib(const EnvironmentTemplate& t);
int VmCpus(const EnvironmentTemplate& t);

}  // namespace flotilla::pool
