#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "cli/request_file.h"
#include "fuzz_targets.h"

namespace flotilla::fuzz {

int FuzzRequestYaml(const uint8_t* data, size_t size) {
  // LoadRequestFile takes a path: a memfd gives the bytes one without
  // touching the disk.
  const int fd = memfd_create("fuzz-request", MFD_CLOEXEC);
  if (fd < 0) return 0;
  for (size_t done = 0; done < size;) {
    const ssize_t n = write(fd, data + done, size - done);
    if (n <= 0) {
      close(fd);
      return 0;
    }
    done += static_cast<size_t>(n);
  }
  (void)cli::LoadRequestFile(absl::StrCat("/proc/self/fd/", fd));
  close(fd);
  return 0;
}

}  // namespace flotilla::fuzz
