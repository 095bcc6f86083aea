#include "agent/host_resources.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace flotilla::agent {
namespace {

// cgroup v1 reports "no memory limit" as a page-rounded INT64_MAX; anything
// this large is no limit at all.
constexpr int64_t kNoLimitThreshold = int64_t{1} << 62;

// Returns the file's content; NotFound (from ENOENT) when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "open", path);
  std::string content;
  char buf[4096];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return ErrnoError(err, "read", path);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return content;
}

// Returns the content of a file that may legitimately be absent: nullopt if
// it does not exist.
absl::StatusOr<std::optional<std::string>> ReadOptionalFile(const std::string& path) {
  absl::StatusOr<std::string> content = ReadFile(path);
  if (absl::IsNotFound(content.status())) return std::optional<std::string>();
  if (!content.ok()) return content.status();
  return std::optional<std::string>(*std::move(content));
}

absl::Status ParseError(const std::string& path, absl::string_view what) {
  return absl::DataLossError(absl::StrCat("parse `", path, "`: ", what));
}

// Returns the value in kB of `key` in a /proc/meminfo text, in bytes.
absl::StatusOr<int64_t> MeminfoBytes(const std::string& proc_root, absl::string_view key) {
  std::string path = proc_root + "/meminfo";
  ASSIGN_OR_RETURN(std::string content, ReadFile(path));
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) continue;
    line = absl::StripAsciiWhitespace(line);
    absl::ConsumeSuffix(&line, "kB");
    int64_t kb = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &kb) || kb < 0) {
      return ParseError(path, absl::StrCat("bad ", key, " line"));
    }
    return kb * 1024;
  }
  return ParseError(path, absl::StrCat("no ", key, " line"));
}

// Where this process sits in the cgroup hierarchies, from <proc>/self/cgroup.
struct CgroupMembership {
  std::optional<std::string> v2_path;  // the "0::/path" line
  // v1: controller -> (the hierarchy's controller list, path). The list
  // ("cpu,cpuacct") names the mount directory when no per-controller
  // symlink exists.
  std::map<std::string, std::pair<std::string, std::string>> v1;
};

absl::StatusOr<CgroupMembership> ParseCgroupMembership(const std::string& path,
                                                       const std::string& content) {
  CgroupMembership membership;
  for (absl::string_view line : absl::StrSplit(content, '\n', absl::SkipWhitespace())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) return ParseError(path, absl::StrCat("bad line \"", line, "\""));
    std::string cgroup_path(absl::StripTrailingAsciiWhitespace(fields[2]));
    if (fields[0] == "0" && fields[1].empty()) {
      membership.v2_path = cgroup_path;
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(fields[1], ',')) {
      if (controller.empty() || absl::StartsWith(controller, "name=")) continue;
      membership.v1[std::string(controller)] = {std::string(fields[1]), cgroup_path};
    }
  }
  return membership;
}

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

// Returns `path` and its ancestors, deepest first, ending with "" (the
// root of the mount). A limit of any ancestor binds this process too; and
// inside a container the mount may be rooted at our own group, so the deep
// paths simply do not exist there and the root holds our limit.
std::vector<std::string> SelfAndAncestors(const std::string& path) {
  std::vector<std::string> out;
  std::string p(absl::StripSuffix(path, "/"));
  while (!p.empty()) {
    out.push_back(p);
    size_t slash = p.rfind('/');
    p = slash == std::string::npos ? "" : p.substr(0, slash);
  }
  out.push_back("");
  return out;
}

// The directories holding this process's cgroup settings, per version.
struct CgroupDirs {
  std::optional<std::string> v2_mount;  // the v2 hierarchy's mount point
  std::optional<std::string> v2_path;
  std::optional<std::string> v1_cpu_mount;
  std::optional<std::string> v1_cpu_path;
  std::optional<std::string> v1_memory_mount;
  std::optional<std::string> v1_memory_path;
};

std::optional<std::string> V1Mount(const std::string& cgroup_root, const CgroupMembership& m,
                                   const std::string& controller) {
  auto it = m.v1.find(controller);
  if (it == m.v1.end()) return std::nullopt;
  for (const std::string& name : {controller, it->second.first}) {
    std::string dir = cgroup_root + "/" + name;
    if (IsDirectory(dir)) return dir;
  }
  return std::nullopt;
}

absl::StatusOr<CgroupDirs> FindCgroupDirs(const HostPaths& paths) {
  std::string self_cgroup = paths.proc + "/self/cgroup";
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadOptionalFile(self_cgroup));
  CgroupDirs dirs;
  if (!content) return dirs;  // not in any cgroup hierarchy: no limits
  ASSIGN_OR_RETURN(CgroupMembership m, ParseCgroupMembership(self_cgroup, *content));

  if (m.v2_path) {
    // Pure v2 mounts the hierarchy at the root; hybrid hosts under unified/.
    if (IsDirectory(paths.cgroup) &&
        std::filesystem::exists(paths.cgroup + "/cgroup.controllers")) {
      dirs.v2_mount = paths.cgroup;
    } else if (IsDirectory(paths.cgroup + "/unified")) {
      dirs.v2_mount = paths.cgroup + "/unified";
    }
    dirs.v2_path = m.v2_path;
  }
  if (auto mount = V1Mount(paths.cgroup, m, "cpu")) {
    dirs.v1_cpu_mount = mount;
    dirs.v1_cpu_path = m.v1["cpu"].second;
  }
  if (auto mount = V1Mount(paths.cgroup, m, "memory")) {
    dirs.v1_memory_mount = mount;
    dirs.v1_memory_path = m.v1["memory"].second;
  }
  return dirs;
}

absl::StatusOr<int64_t> ParseInt(const std::string& path, absl::string_view text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value)) {
    return ParseError(path, absl::StrCat("not an integer: \"", text, "\""));
  }
  return value;
}

// Returns the cpu limit in millis of a v2 cpu.max file ("max 100000" or
// "<quota> <period>"); nullopt if the file is missing or says "max".
absl::StatusOr<std::optional<int64_t>> V2CpuLimit(const std::string& file) {
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadOptionalFile(file));
  if (!content) return std::optional<int64_t>();
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(*content), ' ', absl::SkipEmpty());
  if (fields.empty() || fields.size() > 2) return ParseError(file, "expected \"<quota> <period>\"");
  if (fields[0] == "max") return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t quota, ParseInt(file, fields[0]));
  int64_t period = 100000;  // the kernel's default when only the quota is written
  if (fields.size() == 2) {
    ASSIGN_OR_RETURN(period, ParseInt(file, fields[1]));
  }
  if (quota <= 0 || period <= 0) return ParseError(file, "quota and period must be positive");
  return std::optional<int64_t>(quota * 1000 / period);
}

// Returns the cpu limit in millis of a v1 cpu directory; nullopt if the
// quota is missing or -1.
absl::StatusOr<std::optional<int64_t>> V1CpuLimit(const std::string& dir) {
  std::string quota_file = dir + "/cpu.cfs_quota_us";
  std::string period_file = dir + "/cpu.cfs_period_us";
  ASSIGN_OR_RETURN(std::optional<std::string> quota_text, ReadOptionalFile(quota_file));
  if (!quota_text) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t quota, ParseInt(quota_file, *quota_text));
  if (quota < 0) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(std::optional<std::string> period_text, ReadOptionalFile(period_file));
  if (!period_text) return std::optional<int64_t>();
  ASSIGN_OR_RETURN(int64_t period, ParseInt(period_file, *period_text));
  if (quota == 0 || period <= 0) return ParseError(quota_file, "quota and period must be positive");
  return std::optional<int64_t>(quota * 1000 / period);
}

// Returns the memory limit in a v2 memory.max or v1 memory.limit_in_bytes
// file; nullopt if the file is missing, "max", or huge.
absl::StatusOr<std::optional<int64_t>> MemoryLimit(const std::string& file) {
  ASSIGN_OR_RETURN(std::optional<std::string> content, ReadOptionalFile(file));
  if (!content) return std::optional<int64_t>();
  absl::string_view text = absl::StripAsciiWhitespace(*content);
  if (text == "max") return std::optional<int64_t>();
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) {
    return ParseError(file, absl::StrCat("not a byte count: \"", text, "\""));
  }
  if (value >= static_cast<uint64_t>(kNoLimitThreshold)) return std::optional<int64_t>();
  return std::optional<int64_t>(static_cast<int64_t>(value));
}

using LimitReader = absl::StatusOr<std::optional<int64_t>> (*)(const std::string&);

// Lowers `value` to the tightest limit that `read` finds in the group at
// `mount`/`path` or any of its ancestors.
absl::Status ApplyHierarchyLimit(const std::string& mount, const std::string& path,
                                 const std::string& file, LimitReader read, int64_t& value) {
  for (const std::string& group : SelfAndAncestors(path)) {
    std::string dir = mount + group;
    std::string target = file.empty() ? dir : dir + "/" + file;
    ASSIGN_OR_RETURN(std::optional<int64_t> limit, read(target));
    if (limit) value = std::min(value, *limit);
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> AffinityCpus() {
  for (int ncpus = 1024; ncpus <= (1 << 20); ncpus *= 2) {
    cpu_set_t* set = CPU_ALLOC(ncpus);
    size_t size = CPU_ALLOC_SIZE(ncpus);
    int rc = sched_getaffinity(0, size, set);
    int err = errno;
    int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    if (rc == 0) return count;
    if (err != EINVAL) return ErrnoError(err, "sched_getaffinity");
  }
  return absl::InternalError("sched_getaffinity: the cpu mask is larger than 2^20 cpus");
}

// Returns the nearest existing directory at or above `path`: the work
// directory may not have been made yet, and it will live on that file system.
std::string NearestExisting(std::string path) {
  std::error_code ec;
  while (!path.empty() && !std::filesystem::exists(path, ec)) {
    std::string parent = std::filesystem::path(path).parent_path().string();
    if (parent == path) break;
    path = parent;
  }
  return path.empty() ? "." : path;
}

}  // namespace

absl::StatusOr<model::Resources> DetectHostResources(const HostPaths& paths) {
  model::Resources host;
  ASSIGN_OR_RETURN(int64_t cpus, AffinityCpus());
  host.cpu_millis = cpus * 1000;
  ASSIGN_OR_RETURN(host.memory_bytes, MeminfoBytes(paths.proc, "MemTotal"));

  ASSIGN_OR_RETURN(CgroupDirs dirs, FindCgroupDirs(paths));
  if (dirs.v2_mount) {
    RETURN_IF_ERROR(
        ApplyHierarchyLimit(*dirs.v2_mount, *dirs.v2_path, "cpu.max", V2CpuLimit, host.cpu_millis));
    RETURN_IF_ERROR(ApplyHierarchyLimit(*dirs.v2_mount, *dirs.v2_path, "memory.max", MemoryLimit,
                                        host.memory_bytes));
  }
  if (dirs.v1_cpu_mount) {
    RETURN_IF_ERROR(ApplyHierarchyLimit(*dirs.v1_cpu_mount, *dirs.v1_cpu_path, "", V1CpuLimit,
                                        host.cpu_millis));
  }
  if (dirs.v1_memory_mount) {
    RETURN_IF_ERROR(ApplyHierarchyLimit(*dirs.v1_memory_mount, *dirs.v1_memory_path,
                                        "memory.limit_in_bytes", MemoryLimit, host.memory_bytes));
  }

  std::string storage_dir = NearestExisting(paths.work_dir);
  struct statvfs fs;
  if (statvfs(storage_dir.c_str(), &fs) < 0) return ErrnoError(errno, "statvfs", storage_dir);
  host.storage_bytes = static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
  host.bandwidth_bps = 0;
  return host;
}

absl::StatusOr<int64_t> ReadMemAvailable(const std::string& proc_root) {
  return MeminfoBytes(proc_root, "MemAvailable");
}

absl::StatusOr<double> ReadLoadAverage(const std::string& proc_root) {
  std::string path = proc_root + "/loadavg";
  ASSIGN_OR_RETURN(std::string content, ReadFile(path));
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(content), ' ', absl::SkipEmpty());
  double load = 0;
  if (fields.empty() || !absl::SimpleAtod(fields[0], &load) || load < 0) {
    return ParseError(path, "expected the 1-minute load average first");
  }
  return load;
}

}  // namespace flotilla::agent
