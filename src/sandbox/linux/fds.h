// Fds: ownership of file descriptors on the parent side (UniqueFd), and the
// child's last fd step: exactly fds 0-2 plus the passed ones (the guest's
// socket as fd 3) survive execve; every other inherited descriptor of the
// (multithreaded) agent is closed on exec.
#pragma once

#include <unistd.h>

#include "common/unique_fd.h"

#include <cstddef>
#include <utility>

namespace flotilla::sandbox::isolation {

using ::flotilla::UniqueFd;

// One fd the container's program gets: `source` (the parent's) at `target`.
struct FdMapping {
  int source;
  int target;
};

inline constexpr size_t kMaxFdMappings = 32;

// Child side, async-signal-safe. Installs `mappings` (n <= kMaxFdMappings,
// targets distinct) and marks every other fd close-on-exec. `keep` points to
// fds the child still needs until execve (the error pipe, the program's fd):
// they are moved above the highest target if a target would clobber them,
// and updated in place. Returns 0 or an errno; *failed_target names the
// target being installed (-1 when the failure was not about one target).
int InstallFds(const FdMapping* mappings, size_t n, int* const* keep, size_t n_keep,
               int* failed_target);

}  // namespace flotilla::sandbox::isolation
