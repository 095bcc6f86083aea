#include "sandbox/linux/fds.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/syscall.h>

#include <cerrno>

namespace flotilla::sandbox::isolation {

int InstallFds(const FdMapping* mappings, size_t n, int* const* keep, size_t n_keep,
               int* failed_target) {
  *failed_target = -1;
  if (n > kMaxFdMappings) return EINVAL;
  int max_target = 2;
  for (size_t i = 0; i < n; ++i) {
    if (mappings[i].target > max_target) max_target = mappings[i].target;
  }
  // Sources and kept fds at or below max_target could be overwritten by a
  // dup2 into a target before they are used: move them all above it first.
  int sources[kMaxFdMappings];
  for (size_t i = 0; i < n; ++i) {
    sources[i] = mappings[i].source;
    if (sources[i] > max_target) continue;
    int moved = fcntl(sources[i], F_DUPFD_CLOEXEC, max_target + 1);
    if (moved < 0) {
      *failed_target = mappings[i].target;
      return errno;
    }
    sources[i] = moved;
  }
  for (size_t i = 0; i < n_keep; ++i) {
    if (*keep[i] < 0 || *keep[i] > max_target) continue;
    int moved = fcntl(*keep[i], F_DUPFD_CLOEXEC, max_target + 1);
    if (moved < 0) return errno;
    *keep[i] = moved;
  }
  // Whatever sits in 0..max_target and is not a target must go now; above
  // max_target everything (our copies included) is closed by execve.
  for (int fd = 0; fd <= max_target; ++fd) {
    bool is_target = false;
    for (size_t i = 0; i < n; ++i) is_target |= mappings[i].target == fd;
    if (!is_target) close(fd);
  }
  for (size_t i = 0; i < n; ++i) {
    // dup2 clears FD_CLOEXEC on the new descriptor.
    if (dup2(sources[i], mappings[i].target) < 0) {
      *failed_target = mappings[i].target;
      return errno;
    }
  }
  if (syscall(SYS_close_range, max_target + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0) return errno;
  return 0;
}

}  // namespace flotilla::sandbox::isolation
