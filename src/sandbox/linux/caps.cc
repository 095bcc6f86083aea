#include "sandbox/linux/caps.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace flotilla::sandbox::isolation {

const char* CapStepName(CapStep step) {
  switch (step) {
    case CapStep::kSecurebits:
      return "prctl PR_SET_SECUREBITS";
    case CapStep::kBoundingSet:
      return "prctl PR_CAPBSET_DROP";
    case CapStep::kAmbient:
      return "prctl PR_CAP_AMBIENT_CLEAR_ALL";
    case CapStep::kSetgroups:
      return "setgroups";
    case CapStep::kSetresgid:
      return "setresgid";
    case CapStep::kSetresuid:
      return "setresuid";
    case CapStep::kCapset:
      return "capset";
  }
  return "?";
}

int LastCapability() {
  int bits = static_cast<int>(cap_max_bits());
  return bits > 0 ? bits - 1 : CAP_LAST_CAP;
}

int DropPrivileges(uid_t uid, gid_t gid, int last_cap, CapStep* failed) {
  auto fail = [&](CapStep step) {
    *failed = step;
    return errno;
  };
  const unsigned long securebits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                                   SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                   SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, securebits, 0, 0, 0) != 0) return fail(CapStep::kSecurebits);
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return fail(CapStep::kBoundingSet);
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return fail(CapStep::kAmbient);
  // Raw system calls, not glibc's wrappers: those broadcast the change to
  // every thread glibc believes exists (the parent's, which the child lacks)
  // and may block on a lock another parent thread held at clone time.
  if (syscall(SYS_setgroups, 0, nullptr) != 0) return fail(CapStep::kSetgroups);
  if (syscall(SYS_setresgid, gid, gid, gid) != 0) return fail(CapStep::kSetresgid);
  if (syscall(SYS_setresuid, uid, uid, uid) != 0) return fail(CapStep::kSetresuid);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) return fail(CapStep::kCapset);
  return 0;
}

int SetNoNewPrivs() { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 ? 0 : errno; }

}  // namespace flotilla::sandbox::isolation
