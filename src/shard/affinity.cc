#include "shard/affinity.h"

#include <sched.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "shard/topology.h"

namespace flotilla::shard {

absl::Status ApplyCpuAffinity(pid_t pid, const std::set<int>& cpus) {
  if (cpus.empty()) return absl::InvalidArgumentError("cpu affinity: the CPU set is empty");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
      return absl::InvalidArgumentError(
          absl::StrCat("cpu affinity: CPU ", cpu, " is out of range"));
    }
    CPU_SET(cpu, &set);
  }
  if (sched_setaffinity(pid, sizeof(set), &set) != 0) {
    return ErrnoError(errno, absl::StrCat("sched_setaffinity(", FormatCpuList(cpus), ")"),
                      absl::StrCat("pid ", pid));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::set<int>> CpuAffinity(pid_t pid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(pid, sizeof(set), &set) != 0) {
    return ErrnoError(errno, "sched_getaffinity", absl::StrCat("pid ", pid));
  }
  std::set<int> out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) out.insert(cpu);
  }
  return out;
}

}  // namespace flotilla::shard
