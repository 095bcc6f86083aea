#include "sandbox/linux/rlimits.h"

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flotilla::sandbox::isolation {

std::vector<RlimitSetting> DefaultRlimits() {
  return {{RLIMIT_NOFILE, 1024},
          {RLIMIT_CORE, 0},
          {RLIMIT_NICE, 0},
          {RLIMIT_RTPRIO, 0},
          {RLIMIT_MEMLOCK, 64 << 10}};
}

std::string RlimitName(int resource) {
  switch (resource) {
    case RLIMIT_NOFILE:
      return "RLIMIT_NOFILE";
    case RLIMIT_CORE:
      return "RLIMIT_CORE";
    case RLIMIT_NICE:
      return "RLIMIT_NICE";
    case RLIMIT_RTPRIO:
      return "RLIMIT_RTPRIO";
    case RLIMIT_MEMLOCK:
      return "RLIMIT_MEMLOCK";
    case RLIMIT_FSIZE:
      return "RLIMIT_FSIZE";
    case RLIMIT_NPROC:
      return "RLIMIT_NPROC";
    case RLIMIT_AS:
      return "RLIMIT_AS";
    case RLIMIT_STACK:
      return "RLIMIT_STACK";
    case RLIMIT_CPU:
      return "RLIMIT_CPU";
    case RLIMIT_DATA:
      return "RLIMIT_DATA";
    case RLIMIT_MSGQUEUE:
      return "RLIMIT_MSGQUEUE";
    case RLIMIT_SIGPENDING:
      return "RLIMIT_SIGPENDING";
    default:
      return absl::StrCat("rlimit ", resource);
  }
}

absl::StatusOr<std::vector<RlimitSetting>> ClampRlimits(const std::vector<RlimitSetting>& wanted) {
  std::vector<RlimitSetting> out;
  for (const RlimitSetting& limit : wanted) {
    struct rlimit current;
    if (getrlimit(limit.resource, &current) != 0) {
      return ErrnoError(errno, "getrlimit", RlimitName(limit.resource));
    }
    rlim_t value = limit.value;
    if (current.rlim_max != RLIM_INFINITY && (value == RLIM_INFINITY || value > current.rlim_max)) {
      value = current.rlim_max;
    }
    out.push_back({limit.resource, value});
  }
  return out;
}

int ApplyRlimits(const RlimitSetting* limits, size_t n, size_t* failed) {
  for (size_t i = 0; i < n; ++i) {
    struct rlimit value = {limits[i].value, limits[i].value};
    if (setrlimit(limits[i].resource, &value) != 0) {
      *failed = i;
      return errno;
    }
  }
  return 0;
}

}  // namespace flotilla::sandbox::isolation
