#include "sandbox/linux/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "sandbox/linux/io_net_stats.h"

namespace flotilla::sandbox::isolation {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kCfsPeriodUs = 100000;
// The shortest quota the kernel accepts (cpu.cfs_quota_us, cpu.max).
constexpr int64_t kMinCfsQuotaUs = 1000;

std::string JoinPath(absl::string_view a, absl::string_view b) {
  std::string out(a);
  while (!out.empty() && out.back() == '/') out.pop_back();
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (b.empty()) return out.empty() ? "/" : out;
  return absl::StrCat(out, "/", b);
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }


// Returns 0 or the errno of the failed open or write.
int WriteFileErrno(const std::string& path, absl::string_view value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return errno;
  if (write(fd.get(), value.data(), value.size()) < 0) return errno;
  return 0;
}

absl::Status WriteFile(const std::string& path, absl::string_view value) {
  int err = WriteFileErrno(path, value);
  if (err != 0) return ErrnoError(err, absl::StrCat("write \"", value, "\" to"), path);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ReadInt(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (trimmed == "max") return INT64_MAX;
  int64_t value = 0;
  if (!absl::SimpleAtoi(trimmed, &value)) {
    return absl::InternalError(absl::StrCat("parse `", path, "`: not a number: ", trimmed));
  }
  return value;
}

// The value of `key` in a "key value" per line file (memory.events, cpu.stat).
absl::StatusOr<int64_t> ReadKeyed(const std::string& path, absl::string_view key) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(line, ' ');
    int64_t value = 0;
    if (kv.first == key && absl::SimpleAtoi(kv.second, &value)) return value;
  }
  return absl::NotFoundError(absl::StrCat("`", path, "` has no ", key));
}

bool ValidName(absl::string_view name) {
  if (name.empty() || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool ValidParent(absl::string_view parent) {
  for (absl::string_view part : absl::StrSplit(parent, '/', absl::SkipEmpty())) {
    if (!ValidName(part)) return false;
  }
  return true;
}

// Makes each controller of `wanted` usable by the children of every group
// from `top` down to `bottom` (bottom inside top). Controllers the host does
// not offer are an error only if `required` lists them.
absl::Status EnableControllers(const std::string& top, const std::string& bottom,
                               const std::set<std::string>& wanted,
                               const std::set<std::string>& required) {
  std::vector<std::string> levels = {top};
  std::string sofar = top;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(bottom).substr(top.size()), '/', absl::SkipEmpty())) {
    sofar = JoinPath(sofar, part);
    levels.push_back(sofar);
  }
  for (const std::string& level : levels) {
    ASSIGN_OR_RETURN(std::string available, ReadWholeFile(JoinPath(level, "cgroup.controllers")));
    ASSIGN_OR_RETURN(std::string enabled, ReadWholeFile(JoinPath(level, "cgroup.subtree_control")));
    std::set<std::string> have =
        absl::StrSplit(available, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    std::set<std::string> on = absl::StrSplit(enabled, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    for (const std::string& controller : wanted) {
      if (on.count(controller) != 0) continue;
      if (have.count(controller) == 0) {
        if (required.count(controller) == 0) continue;
        return absl::FailedPreconditionError(absl::StrCat(
            "cgroup v2 controller `", controller, "` is not available in `", level,
            "`: delegate it to the agent's cgroup (cgroup.subtree_control of its parents)"));
      }
      std::string file = JoinPath(level, "cgroup.subtree_control");
      std::string value = absl::StrCat("+", controller);
      int err = WriteFileErrno(file, value);
      if (err == EBUSY) {
        // cgroup v2's "no internal processes" rule.
        return Annotate(ErrnoError(err, absl::StrCat("write \"", value, "\" to"), file),
                        absl::StrCat("`", level,
                                     "` holds processes, so it cannot hand controllers to its "
                                     "children: run the agent in a leaf cgroup and point "
                                     "cgroup_parent at a sibling of it"));
      }
      if (err != 0) return ErrnoError(err, absl::StrCat("write \"", value, "\" to"), file);
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* CgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kLegacy:
      return "legacy (cgroup v1)";
    case CgroupMode::kHybrid:
      return "hybrid (cgroup v1 + controller-free v2)";
    case CgroupMode::kUnified:
      return "unified (cgroup v2)";
  }
  return "?";
}

absl::StatusOr<CgroupHost> ParseCgroupHost(absl::string_view mountinfo,
                                           absl::string_view self_cgroup,
                                           const std::string& cgroup_root) {
  static const std::set<std::string> kControllers = {
      "cpu",   "cpuacct",    "cpuset",   "memory",  "devices", "freezer", "net_cls",
      "blkio", "perf_event", "net_prio", "hugetlb", "pids",    "rdma",    "misc"};
  CgroupHost host;
  std::string unified_root = "/";
  std::map<std::string, std::string> v1_root;  // controller -> the mount's root in its hierarchy
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> halves = absl::StrSplit(line, " - ");
    std::vector<absl::string_view> left = absl::StrSplit(halves.first, ' ');
    std::vector<absl::string_view> right = absl::StrSplit(halves.second, ' ');
    if (left.size() < 5 || right.size() < 3) continue;
    std::string mount_point(left[4]);
    if (mount_point != cgroup_root && mount_point.rfind(cgroup_root + "/", 0) != 0) continue;
    if (right[0] == "cgroup2") {
      host.unified = mount_point;
      unified_root = std::string(left[3]);
    } else if (right[0] == "cgroup") {
      for (absl::string_view option : absl::StrSplit(right[2], ',')) {
        std::string controller(option);
        if (kControllers.count(controller) == 0) continue;
        host.v1[controller] = mount_point;
        v1_root[controller] = std::string(left[3]);
      }
    }
  }
  // A mount whose root is a subgroup (inside another cgroup namespace) shows
  // our own path relative to that root.
  auto relative = [](const std::string& root, absl::string_view path) -> std::string {
    if (root == "/" || root.empty()) return std::string(path);
    if (path.substr(0, root.size()) == root) {
      std::string rest(path.substr(root.size()));
      return rest.empty() ? "/" : rest;
    }
    return std::string(path);
  };
  host.own_unified = "/";
  for (absl::string_view line : absl::StrSplit(self_cgroup, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    if (fields[0] == "0" && fields[1].empty()) {
      host.own_unified = relative(unified_root, fields[2]);
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(fields[1], ',')) {
      std::string name(controller);
      if (host.v1.count(name) != 0) host.own_v1[name] = relative(v1_root[name], fields[2]);
    }
  }
  for (const auto& [controller, mount_point] : host.v1) {
    if (host.own_v1.count(controller) == 0) host.own_v1[controller] = "/";
  }
  if (!host.v1.empty()) {
    host.mode = host.unified.empty() ? CgroupMode::kLegacy : CgroupMode::kHybrid;
  } else if (!host.unified.empty()) {
    host.mode = CgroupMode::kUnified;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("no cgroup filesystem is mounted under `", cgroup_root, "`"));
  }
  return host;
}

absl::StatusOr<CgroupHost> DetectCgroupHost(const std::string& proc_dir,
                                            const std::string& cgroup_root) {
  ASSIGN_OR_RETURN(std::string mountinfo, ReadWholeFile(JoinPath(proc_dir, "self/mountinfo")));
  ASSIGN_OR_RETURN(std::string self_cgroup, ReadWholeFile(JoinPath(proc_dir, "self/cgroup")));
  return ParseCgroupHost(mountinfo, self_cgroup, cgroup_root);
}

absl::StatusOr<std::unique_ptr<CgroupSet>> CgroupSet::Create(const CgroupHost& host,
                                                             const std::string& parent,
                                                             const std::string& name,
                                                             const CgroupLimits& limits) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup name `", name, "` is not [A-Za-z0-9._-]+"));
  }
  if (!ValidParent(parent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup parent `", parent, "` is not a relative path"));
  }
  std::unique_ptr<CgroupSet> set(new CgroupSet());
  set->mode_ = host.mode;
  std::set<std::string> required;
  if (limits.cpu_millis > 0) required.insert("cpu");
  if (limits.memory_bytes > 0) required.insert("memory");
  if (limits.pids_max > 0) required.insert("pids");

  auto make_group = [&](const std::string& mount,
                        const std::string& own) -> absl::StatusOr<std::string> {
    std::string base = JoinPath(JoinPath(mount, own), parent);
    // The shared parent exists after the first container: one stat, not a
    // mkdir per path component.
    if (!Exists(base)) RETURN_IF_ERROR(MkdirParents(base));
    std::string dir = JoinPath(base, name);
    if (mkdir(dir.c_str(), 0755) != 0) return ErrnoError(errno, "mkdir", dir);
    set->created_.push_back(dir);
    return dir;
  };

  if (host.mode == CgroupMode::kUnified) {
    // io for io.stat (monitoring) where the host delegates it.
    std::set<std::string> wanted = {"memory", "pids", "io"};
    wanted.insert(required.begin(), required.end());
    std::string top = JoinPath(host.unified, host.own_unified);
    RETURN_IF_ERROR(EnableControllers(top, JoinPath(top, parent), wanted, required));
  } else {
    // blkio for blkio.throttle.io_service_bytes (monitoring): one more
    // mkdir and cgroup.procs write per sandbox.
    std::set<std::string> wanted = {"memory", "pids", "cpuacct", "blkio"};
    wanted.insert(required.begin(), required.end());
    if (host.mode == CgroupMode::kLegacy) wanted.insert("freezer");
    for (const std::string& controller : required) {
      if (host.v1.count(controller) == 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cgroup v1 controller `", controller, "` is not mounted under the cgroup root"));
      }
    }
    std::map<std::string, std::string> by_mount;  // co-mounted controllers share a group
    for (const std::string& controller : wanted) {
      auto it = host.v1.find(controller);
      if (it == host.v1.end()) continue;
      auto made = by_mount.find(it->second);
      if (made == by_mount.end()) {
        ASSIGN_OR_RETURN(std::string dir, make_group(it->second, host.own_v1.at(controller)));
        made = by_mount.emplace(it->second, dir).first;
        set->join_paths_.push_back(JoinPath(dir, "cgroup.procs"));
      }
      set->v1_[controller] = made->second;
    }
  }
  if (!host.unified.empty()) {
    ASSIGN_OR_RETURN(set->unified_dir_, make_group(host.unified, host.own_unified));
    set->unified_fd_.Reset(open(set->unified_dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!set->unified_fd_.valid()) return ErrnoError(errno, "open", set->unified_dir_);
  }

  // Limits: v1 where the controller lives there, v2 otherwise.
  auto dir_of = [&](const std::string& v1_controller) -> std::string {
    auto it = set->v1_.find(v1_controller);
    return it != set->v1_.end() ? it->second : std::string();
  };
  const bool v2 = host.mode == CgroupMode::kUnified;
  if (limits.cpu_millis > 0) {
    int64_t quota = std::max(kMinCfsQuotaUs, limits.cpu_millis * kCfsPeriodUs / 1000);
    if (v2) {
      RETURN_IF_ERROR(WriteFile(JoinPath(set->unified_dir_, "cpu.max"),
                                absl::StrCat(quota, " ", kCfsPeriodUs)));
    } else {
      RETURN_IF_ERROR(
          WriteFile(JoinPath(dir_of("cpu"), "cpu.cfs_period_us"), absl::StrCat(kCfsPeriodUs)));
      RETURN_IF_ERROR(WriteFile(JoinPath(dir_of("cpu"), "cpu.cfs_quota_us"), absl::StrCat(quota)));
    }
  }
  if (limits.memory_bytes > 0) {
    std::string value = absl::StrCat(limits.memory_bytes);
    if (v2) {
      RETURN_IF_ERROR(WriteFile(JoinPath(set->unified_dir_, "memory.max"), value));
      std::string swap = JoinPath(set->unified_dir_, "memory.swap.max");
      if (Exists(swap)) RETURN_IF_ERROR(WriteFile(swap, "0"));
    } else {
      RETURN_IF_ERROR(WriteFile(JoinPath(dir_of("memory"), "memory.limit_in_bytes"), value));
      // memory+swap no higher than memory: no swap. Absent without swap accounting.
      std::string memsw = JoinPath(dir_of("memory"), "memory.memsw.limit_in_bytes");
      if (Exists(memsw)) RETURN_IF_ERROR(WriteFile(memsw, value));
    }
  }
  if (limits.pids_max > 0) {
    std::string dir = v2 ? set->unified_dir_ : dir_of("pids");
    RETURN_IF_ERROR(WriteFile(JoinPath(dir, "pids.max"), absl::StrCat(limits.pids_max)));
  }
  if (limits.io_weight > 0) {
    std::string dir = v2 ? set->unified_dir_ : dir_of("blkio");
    std::vector<std::pair<std::string, std::string>> candidates =
        v2 ? std::vector<std::pair<std::string, std::string>>{{"io.weight",
                                                               absl::StrCat("default ",
                                                                            limits.io_weight)},
                                                              {"io.bfq.weight",
                                                               absl::StrCat(limits.io_weight)}}
           : std::vector<std::pair<std::string, std::string>>{
                 {"blkio.weight", absl::StrCat(limits.io_weight)},
                 {"blkio.bfq.weight", absl::StrCat(limits.io_weight)}};
    for (const auto& [file, value] : candidates) {
      if (dir.empty() || !Exists(JoinPath(dir, file))) continue;
      RETURN_IF_ERROR(WriteFile(JoinPath(dir, file), value));
      break;
    }
  }
  return set;
}

CgroupSet::~CgroupSet() {
  absl::Status status = Remove(std::chrono::milliseconds(5000));
  if (!status.ok()) spdlog::warn("cgroup cleanup: {}", status.ToString());
}

absl::StatusOr<std::vector<UniqueFd>> CgroupSet::OpenJoinFds() const {
  std::vector<UniqueFd> fds;
  for (const std::string& path : join_paths_) {
    UniqueFd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoError(errno, "open", path);
    fds.push_back(std::move(fd));
  }
  return fds;
}

std::vector<std::string> CgroupSet::Dirs() const { return created_; }

absl::Status CgroupSet::WaitEmpty(std::chrono::milliseconds timeout) const {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    bool empty = true;
    if (!unified_dir_.empty()) {
      ASSIGN_OR_RETURN(int64_t populated,
                       ReadKeyed(JoinPath(unified_dir_, "cgroup.events"), "populated"));
      empty = populated == 0;
    } else {
      for (const std::string& path : join_paths_) {
        ASSIGN_OR_RETURN(std::string procs, ReadWholeFile(path));
        empty &= procs.empty();
      }
    }
    if (empty) return absl::OkStatus();
    if (Clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "cgroup `", created_.empty() ? "" : created_[0], "` still has processes after kill"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

absl::Status CgroupSet::KillAllPids() {
  // Without cgroup.kill: freeze first, so no process forks between our
  // reading cgroup.procs and signalling what it listed.
  bool frozen = v1_.count("freezer") != 0 && Freeze().ok();
  std::string procs = join_paths_.empty() ? "" : join_paths_.front();
  if (v1_.count("freezer") != 0) procs = JoinPath(v1_["freezer"], "cgroup.procs");
  for (int round = 0; round < 1000 && !procs.empty(); ++round) {
    ASSIGN_OR_RETURN(std::string text, ReadWholeFile(procs));
    if (text.empty()) break;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      pid_t pid = 0;
      if (absl::SimpleAtoi(line, &pid) && pid > 0) kill(pid, SIGKILL);
    }
    // v1 frozen tasks act on SIGKILL only once thawed.
    if (frozen) {
      RETURN_IF_ERROR(Thaw());
      frozen = false;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (frozen) RETURN_IF_ERROR(Thaw());
  return WaitEmpty(std::chrono::milliseconds(2000));
}

absl::Status CgroupSet::Kill() {
  if (!unified_dir_.empty()) {
    std::string kill_file = JoinPath(unified_dir_, "cgroup.kill");
    if (Exists(kill_file)) {
      RETURN_IF_ERROR(WriteFile(kill_file, "1"));
      return WaitEmpty(std::chrono::milliseconds(2000));
    }
  }
  return KillAllPids();
}

absl::Status CgroupSet::Freeze() {
  auto deadline = Clock::now() + std::chrono::seconds(2);
  if (!unified_dir_.empty() && Exists(JoinPath(unified_dir_, "cgroup.freeze"))) {
    RETURN_IF_ERROR(WriteFile(JoinPath(unified_dir_, "cgroup.freeze"), "1"));
    for (;;) {
      ASSIGN_OR_RETURN(int64_t frozen,
                       ReadKeyed(JoinPath(unified_dir_, "cgroup.events"), "frozen"));
      if (frozen == 1) return absl::OkStatus();
      if (Clock::now() > deadline)
        return absl::DeadlineExceededError(
            absl::StrCat("freeze `", unified_dir_, "`: not frozen after 2 s"));
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  auto it = v1_.find("freezer");
  if (it == v1_.end()) {
    return absl::FailedPreconditionError(
        "freeze: the host has neither cgroup.freeze nor a v1 freezer");
  }
  std::string state = JoinPath(it->second, "freezer.state");
  RETURN_IF_ERROR(WriteFile(state, "FROZEN"));
  for (;;) {
    ASSIGN_OR_RETURN(std::string now, ReadWholeFile(state));
    if (absl::StripAsciiWhitespace(now) == "FROZEN") return absl::OkStatus();
    if (Clock::now() > deadline)
      return absl::DeadlineExceededError(absl::StrCat("freeze `", state, "`: still ", now));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

absl::Status CgroupSet::Thaw() {
  if (!unified_dir_.empty() && Exists(JoinPath(unified_dir_, "cgroup.freeze"))) {
    return WriteFile(JoinPath(unified_dir_, "cgroup.freeze"), "0");
  }
  auto it = v1_.find("freezer");
  if (it == v1_.end()) {
    return absl::FailedPreconditionError(
        "thaw: the host has neither cgroup.freeze nor a v1 freezer");
  }
  return WriteFile(JoinPath(it->second, "freezer.state"), "THAWED");
}

absl::StatusOr<CgroupUsage> CgroupSet::Usage() const {
  CgroupUsage usage;
  auto v1 = [&](const char* controller) -> std::string {
    auto it = v1_.find(controller);
    return it == v1_.end() ? std::string() : it->second;
  };
  if (std::string dir = v1("cpuacct"); !dir.empty()) {
    ASSIGN_OR_RETURN(int64_t ns, ReadInt(JoinPath(dir, "cpuacct.usage")));
    usage.cpu_usage_us = ns / 1000;
  } else if (!unified_dir_.empty()) {
    // cpu.stat's usage_usec is kept in every v2 group, controller or not.
    ASSIGN_OR_RETURN(usage.cpu_usage_us,
                     ReadKeyed(JoinPath(unified_dir_, "cpu.stat"), "usage_usec"));
  }
  if (std::string dir = v1("memory"); !dir.empty()) {
    ASSIGN_OR_RETURN(usage.memory_current_bytes, ReadInt(JoinPath(dir, "memory.usage_in_bytes")));
    ASSIGN_OR_RETURN(usage.memory_peak_bytes, ReadInt(JoinPath(dir, "memory.max_usage_in_bytes")));
    auto oom = ReadKeyed(JoinPath(dir, "memory.oom_control"), "oom_kill");
    if (oom.ok()) usage.oom_kills = *oom;
  } else if (mode_ == CgroupMode::kUnified && Exists(JoinPath(unified_dir_, "memory.current"))) {
    ASSIGN_OR_RETURN(usage.memory_current_bytes, ReadInt(JoinPath(unified_dir_, "memory.current")));
    std::string peak = JoinPath(unified_dir_, "memory.peak");
    if (Exists(peak)) {
      ASSIGN_OR_RETURN(usage.memory_peak_bytes, ReadInt(peak));
    }
    ASSIGN_OR_RETURN(usage.oom_kills,
                     ReadKeyed(JoinPath(unified_dir_, "memory.events"), "oom_kill"));
  }
  if (std::string dir = v1("pids"); !dir.empty()) {
    ASSIGN_OR_RETURN(usage.pids_current, ReadInt(JoinPath(dir, "pids.current")));
  } else if (mode_ == CgroupMode::kUnified && Exists(JoinPath(unified_dir_, "pids.current"))) {
    ASSIGN_OR_RETURN(usage.pids_current, ReadInt(JoinPath(unified_dir_, "pids.current")));
  }
  // v2 io.stat only in unified mode: a hybrid host's v2 groups have no io.
  auto io = ReadCgroupIo(v1("blkio"), mode_ == CgroupMode::kUnified ? unified_dir_ : "");
  if (!io.ok()) return io.status();
  if (io->has_value()) {
    usage.io_read_bytes = (*io)->read;
    usage.io_write_bytes = (*io)->written;
  }
  return usage;
}

std::string CgroupSet::ProcsFile() const {
  if (!unified_dir_.empty()) return JoinPath(unified_dir_, "cgroup.procs");
  return join_paths_.empty() ? std::string() : join_paths_.front();
}

absl::Status CgroupSet::UpdateLimits(const CgroupLimits& limits) {
  auto v1 = [&](const char* controller) -> std::string {
    auto it = v1_.find(controller);
    return it == v1_.end() ? std::string() : it->second;
  };
  if (limits.memory_bytes > 0) {
    const std::string value = absl::StrCat(limits.memory_bytes);
    if (std::string dir = v1("memory"); !dir.empty()) {
      // v1 keeps memsw.limit >= limit at every moment: raise memsw first,
      // lower it last.
      const std::string limit = JoinPath(dir, "memory.limit_in_bytes");
      const std::string memsw = JoinPath(dir, "memory.memsw.limit_in_bytes");
      const bool has_memsw = Exists(memsw);
      ASSIGN_OR_RETURN(int64_t current, ReadInt(limit));
      if (limits.memory_bytes >= current) {
        if (has_memsw) RETURN_IF_ERROR(WriteFile(memsw, value));
        RETURN_IF_ERROR(WriteFile(limit, value));
      } else {
        RETURN_IF_ERROR(WriteFile(limit, value));
        if (has_memsw) RETURN_IF_ERROR(WriteFile(memsw, value));
      }
    } else if (!unified_dir_.empty() && Exists(JoinPath(unified_dir_, "memory.max"))) {
      RETURN_IF_ERROR(WriteFile(JoinPath(unified_dir_, "memory.max"), value));
    } else {
      return absl::FailedPreconditionError("update limits: the group has no memory controller");
    }
  }
  if (limits.cpu_millis > 0) {
    const int64_t quota = std::max(kMinCfsQuotaUs, limits.cpu_millis * kCfsPeriodUs / 1000);
    if (std::string dir = v1("cpu"); !dir.empty()) {
      RETURN_IF_ERROR(WriteFile(JoinPath(dir, "cpu.cfs_quota_us"), absl::StrCat(quota)));
    } else if (!unified_dir_.empty() && Exists(JoinPath(unified_dir_, "cpu.max"))) {
      RETURN_IF_ERROR(WriteFile(JoinPath(unified_dir_, "cpu.max"),
                                absl::StrCat(quota, " ", kCfsPeriodUs)));
    } else {
      return absl::FailedPreconditionError("update limits: the group has no cpu controller");
    }
  }
  return absl::OkStatus();
}

absl::Status CgroupSet::Remove(std::chrono::milliseconds timeout) {
  if (removed_) return absl::OkStatus();
  removed_ = true;
  absl::Status result;
  if (!created_.empty()) {
    absl::Status killed = Kill();
    if (!killed.ok()) result = killed;
  }
  unified_fd_.Reset();
  auto deadline = Clock::now() + timeout;
  for (auto it = created_.rbegin(); it != created_.rend(); ++it) {
    // An exiting task can keep a group busy for a moment after it left
    // cgroup.procs.
    while (rmdir(it->c_str()) != 0 && errno != ENOENT) {
      if (errno != EBUSY || Clock::now() > deadline) {
        if (result.ok()) result = ErrnoError(errno, "rmdir", *it);
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }
  created_.clear();
  return result;
}

}  // namespace flotilla::sandbox::isolation
