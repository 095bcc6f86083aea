#include "common/files.h"

#include <sys/stat.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace flotilla {

absl::Status MkdirParents(const std::string& path) {
  std::string sofar;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    absl::StrAppend(&sofar, "/", part);
    if (mkdir(sofar.c_str(), 0755) != 0 && errno != EEXIST)
      return ErrnoError(errno, "mkdir", sofar);
  }
  return absl::OkStatus();
}

}  // namespace flotilla
