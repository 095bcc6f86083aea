#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "sandbox/sandbox.h"
#include "spdlog/spdlog.h"

namespace flotilla::sandbox {

CancelToken::CancelToken() {
  fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Without an eventfd Run still sees cancelled() on its next bounded poll
  // wakeup; only the promptness is lost, so this is a warning, not a failure.
  if (fd_ < 0) spdlog::warn("eventfd for a cancel token: {}", std::strerror(errno));
}

CancelToken::~CancelToken() {
  if (fd_ >= 0) close(fd_);
}

void CancelToken::Cancel() {
  if (cancelled_.exchange(true)) return;
  if (fd_ < 0) return;
  // The counter is never read back, so the fd stays readable for every
  // poller from now on. EAGAIN (counter full) cannot happen with one write.
  uint64_t one = 1;
  ssize_t n;
  do {
    n = write(fd_, &one, sizeof(one));
  } while (n < 0 && errno == EINTR);
}

}  // namespace flotilla::sandbox
