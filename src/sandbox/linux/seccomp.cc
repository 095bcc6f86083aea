#include "sandbox/linux/seccomp.h"

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <linux/netlink.h>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sandbox/linux/fds.h"

namespace flotilla::sandbox::isolation {
namespace {

// Denied outright with EPERM. Names libseccomp does not know (older
// versions) are skipped: the kernel predating them has no such call either.
constexpr const char* kDenied[] = {
    // Mounts, old and new API.
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "chroot",
    // Namespaces.
    "unshare", "setns",
    // Other processes.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "process_madvise",
    // Kernel attack surface reachable without privileges.
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "lookup_dcookie", "name_to_handle_at",
    "open_by_handle_at", "fanotify_init",
    // The machine as a whole.
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
    "create_module", "swapon", "swapoff", "acct", "syslog", "settimeofday", "clock_settime",
    "adjtimex", "clock_adjtime", "quotactl", "quotactl_fd", "vhangup", "iopl", "ioperm", "uselib",
    "nfsservctl", "_sysctl",
    // Old or rarely needed ways into the kernel: 16-bit segments (a long
    // history of bugs), moving other processes' pages, NUMA policy of pages
    // a task does not own, and obsolete information calls.
    "modify_ldt", "move_pages", "migrate_pages", "ustat", "sysfs", "get_kernel_syms",
    "query_module"};

// Socket families a task may open: local sockets, IP, and route netlink
// (getaddrinfo and Python's socket module ask it for interfaces). Every
// other family (AF_ALG's kernel crypto, AF_VSOCK, AF_PACKET, AF_KEY,
// AF_BLUETOOTH, AF_TIPC, AF_RDS, ...) is a protocol implementation in the
// kernel that no task needs and that has had its share of exploits; it
// fails with EAFNOSUPPORT, as on a kernel built without it.
constexpr uint64_t kAllowedFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
constexpr uint64_t kLastFamily = 63;  // beyond AF_MAX of any kernel to come

constexpr uint64_t kNamespaceFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

// personality() flags that disable ASLR, map page zero or make reads imply
// execute.
constexpr uint64_t kBadPersonality[] = {ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO, ADDR_COMPAT_LAYOUT,
                                        READ_IMPLIES_EXEC};

class Filter {
 public:
  Filter() : ctx_(seccomp_init(SCMP_ACT_ALLOW)) {}
  ~Filter() {
    if (ctx_ != nullptr) seccomp_release(ctx_);
  }
  scmp_filter_ctx get() const { return ctx_; }

  absl::Status Rule(uint32_t action, const char* name, std::initializer_list<scmp_arg_cmp> args) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return absl::OkStatus();
    int rc = seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()),
                                    args.size() == 0 ? nullptr : args.begin());
    if (rc != 0) return ErrnoError(-rc, "seccomp_rule_add", name);
    return absl::OkStatus();
  }

 private:
  scmp_filter_ctx ctx_;
};

}  // namespace

absl::StatusOr<std::vector<sock_filter>> CompileSeccompFilter() {
  Filter filter;
  if (filter.get() == nullptr) return absl::InternalError("seccomp_init failed");
  // Only the native ABI: libseccomp sends every other one (and, on x86_64,
  // x32 numbers) to the bad-arch action.
  int rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) return ErrnoError(-rc, "seccomp_attr_set", "SCMP_FLTATR_ACT_BADARCH");
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDenied) RETURN_IF_ERROR(filter.Rule(eperm, name, {}));
  RETURN_IF_ERROR(filter.Rule(SCMP_ACT_ERRNO(ENOSYS), "clone3", {}));
  for (uint64_t flag : kNamespaceFlags) {
    RETURN_IF_ERROR(filter.Rule(eperm, "clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)}));
  }
  // The family is an int: compare the low 32 bits only.
  const uint32_t no_family = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  for (uint64_t family = 0; family <= kLastFamily; ++family) {
    if (std::find(std::begin(kAllowedFamilies), std::end(kAllowedFamilies), family) !=
        std::end(kAllowedFamilies)) {
      continue;
    }
    RETURN_IF_ERROR(
        filter.Rule(no_family, "socket", {SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffULL, family)}));
  }
  RETURN_IF_ERROR(filter.Rule(no_family, "socket", {SCMP_A0(SCMP_CMP_GT, kLastFamily)}));
  // Netlink: only NETLINK_ROUTE (0). The others reach audit, uevents,
  // crypto, netfilter and more.
  RETURN_IF_ERROR(filter.Rule(no_family, "socket",
                              {SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffULL, AF_NETLINK),
                               SCMP_A2(SCMP_CMP_NE, NETLINK_ROUTE)}));
  // ioctl's request is an unsigned int: compare the low 32 bits only, so
  // garbage in the upper half cannot slip past.
  for (uint64_t request : {TIOCSTI, TIOCLINUX}) {
    RETURN_IF_ERROR(
        filter.Rule(eperm, "ioctl", {SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, request)}));
  }
  // personality(0xffffffff) only reads the persona. An ALLOW rule would
  // equal the default action and be dropped, so it is LOG (allow and log);
  // libseccomp tests this exact match before the flag rules below.
  RETURN_IF_ERROR(filter.Rule(SCMP_ACT_LOG, "personality",
                              {SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffULL, 0xffffffffULL)}));
  for (uint64_t flag : kBadPersonality) {
    RETURN_IF_ERROR(filter.Rule(eperm, "personality", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)}));
  }

  UniqueFd memfd(memfd_create("flotilla-seccomp", MFD_CLOEXEC));
  if (!memfd.valid()) return ErrnoError(errno, "memfd_create", "flotilla-seccomp");
  rc = seccomp_export_bpf(filter.get(), memfd.get());
  if (rc != 0) return ErrnoError(-rc, "seccomp_export_bpf");
  struct stat st;
  if (fstat(memfd.get(), &st) != 0) return ErrnoError(errno, "fstat", "flotilla-seccomp");
  std::vector<sock_filter> program(static_cast<size_t>(st.st_size) / sizeof(sock_filter));
  ssize_t n = pread(memfd.get(), program.data(), program.size() * sizeof(sock_filter), 0);
  if (n != static_cast<ssize_t>(program.size() * sizeof(sock_filter))) {
    return ErrnoError(n < 0 ? errno : EIO, "read", "flotilla-seccomp");
  }
  return program;
}

absl::StatusOr<const std::vector<sock_filter>*> DefaultSeccompFilter() {
  static const absl::StatusOr<std::vector<sock_filter>>* compiled =
      new absl::StatusOr<std::vector<sock_filter>>(CompileSeccompFilter());
  if (!compiled->ok()) return compiled->status();
  return &compiled->value();
}

int InstallSeccompFilter(const sock_fprog* program) {
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, program) == 0 ? 0 : errno;
}

}  // namespace flotilla::sandbox::isolation
