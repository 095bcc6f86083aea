// Seccomp: the system-call filter every container runs under. A denylist on
// top of the other layers (no capabilities, an unprivileged uid), aimed at
// the kernel's attack surface that an unprivileged process still reaches:
//   EPERM   mounts and the new mount API, namespaces (unshare, setns, clone
//           with any CLONE_NEW* flag), ptrace and cross-process memory,
//           bpf, keyrings, perf_event_open, userfaultfd, io_uring, kexec,
//           reboot, modules, swap, acct, syslog, clock setting, quotactl,
//           file handles, lookup_dcookie, vhangup, chroot, kcmp,
//           pidfd_getfd, iopl/ioperm, ioctl TIOCSTI/TIOCLINUX, and
//           personality flags that weaken ASLR or make data executable,
//           modify_ldt, move_pages, migrate_pages
//   EAFNOSUPPORT  socket() of any family but AF_UNIX, AF_INET, AF_INET6 and
//           AF_NETLINK with NETLINK_ROUTE (no AF_ALG, AF_VSOCK, AF_PACKET,
//           AF_KEY, AF_BLUETOOTH, other netlink protocols, ...)
//   ENOSYS  clone3, whose flags live in memory a filter cannot read: libc
//           then falls back to clone, whose flags it can
//   KILL    any non-native ABI (i386 int 0x80, x32), where the syscall
//           numbers differ and the rules above would not apply
// The filter is compiled with libseccomp in the parent (it allocates) and
// installed by the child as raw BPF just before execve.
#pragma once

#include <linux/filter.h>

#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::sandbox::isolation {

// Compiles the filter described above. Errors name the failing rule.
absl::StatusOr<std::vector<sock_filter>> CompileSeccompFilter();

// The same filter, compiled once per process and never changed after: every
// container gets it, and compiling costs more than the rest of a launch.
absl::StatusOr<const std::vector<sock_filter>*> DefaultSeccompFilter();

// Child side, async-signal-safe; needs no_new_privs or CAP_SYS_ADMIN.
// Returns 0 or an errno.
int InstallSeccompFilter(const sock_fprog* program);

}  // namespace flotilla::sandbox::isolation
