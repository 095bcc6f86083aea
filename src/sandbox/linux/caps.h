// Caps: the child's last privileged steps, turning root into the sandbox user
// with no capabilities at all.
//
// Order matters: securebits and the bounding set need CAP_SETPCAP, setgroups
// and setresgid need CAP_SETGID, setresuid needs CAP_SETUID, so they run in
// that order while the child is still root; setresuid to a non-zero uid then
// clears the permitted, effective and ambient sets, and an explicit capset
// clears the inheritable set, which the uid change leaves alone. Securebits
// (NOROOT, locked) keep execve from ever granting capabilities back.
// no_new_privs comes last (seccomp needs it, and it blocks setuid binaries).
#pragma once

#include <sys/types.h>

namespace flotilla::sandbox::isolation {

enum class CapStep {
  kSecurebits,
  kBoundingSet,
  kAmbient,
  kSetgroups,
  kSetresgid,
  kSetresuid,
  kCapset
};

const char* CapStepName(CapStep step);

// Returns /proc/sys/kernel/cap_last_cap (through libcap).
int LastCapability();

// Child side, async-signal-safe. Returns 0, or an errno with *failed set.
int DropPrivileges(uid_t uid, gid_t gid, int last_cap, CapStep* failed);

// Child side: PR_SET_NO_NEW_PRIVS. Returns 0 or an errno.
int SetNoNewPrivs();

}  // namespace flotilla::sandbox::isolation
