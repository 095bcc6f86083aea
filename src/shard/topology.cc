#include "shard/topology.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace flotilla::shard {
namespace {

// Returns the trimmed content of root/rel, or nullopt when it does not exist
// or cannot be read (hidden by a container or VM).
std::optional<std::string> ReadSys(const std::string& root, const std::string& rel) {
  auto text = ReadWholeFile(root + "/" + rel);
  if (!text.ok()) return std::nullopt;
  return std::string(absl::StripAsciiWhitespace(*text));
}

absl::StatusOr<int> ReadSysInt(const std::string& root, const std::string& rel, int fallback) {
  auto text = ReadSys(root, rel);
  if (!text) return fallback;
  int v = 0;
  if (!absl::SimpleAtoi(*text, &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat(root, "/", rel, ": expected an integer, got '", *text, "'"));
  }
  return v;
}

absl::StatusOr<std::set<int>> ReadSysList(const std::string& root, const std::string& rel) {
  auto text = ReadSys(root, rel);
  if (!text) return std::set<int>{};
  auto list = ParseCpuList(*text);
  if (!list.ok())
    return absl::InvalidArgumentError(absl::StrCat(root, "/", rel, ": ", list.status().message()));
  return list;
}

// Groups CPUs into cores and LLCs from per-CPU sibling and cache lists.
void Assemble(CpuTopology* t, const std::map<int, std::set<int>>& siblings,
              const std::map<int, std::set<int>>& llc_of) {
  std::map<std::set<int>, int> core_index;
  std::map<std::set<int>, int> llc_index;
  for (LogicalCpu& cpu : t->cpus) {
    std::set<int> sib = siblings.count(cpu.id) ? siblings.at(cpu.id) : std::set<int>{cpu.id};
    sib.insert(cpu.id);
    auto [cit, new_core] = core_index.emplace(sib, static_cast<int>(t->cores.size()));
    if (new_core) {
      PhysicalCore core;
      core.numa_node = cpu.numa_node;
      t->cores.push_back(core);
    }
    cpu.core = cit->second;
    t->cores[cpu.core].cpus.push_back(cpu.id);
    std::set<int> llc = llc_of.count(cpu.id) ? llc_of.at(cpu.id) : std::set<int>{};
    if (llc.empty()) llc = sib;  // no cache info: a core is its own group
    auto [lit, new_llc] = llc_index.emplace(llc, static_cast<int>(t->llcs.size()));
    if (new_llc) t->llcs.emplace_back();
    cpu.llc = lit->second;
    t->llcs[cpu.llc].push_back(cpu.id);
    t->cores[cpu.core].llc = cpu.llc;
  }
}

}  // namespace

absl::StatusOr<std::set<int>> ParseCpuList(const std::string& text) {
  std::set<int> out;
  std::string trimmed(absl::StripAsciiWhitespace(text));
  if (trimmed.empty()) return out;
  for (absl::string_view part : absl::StrSplit(trimmed, ',')) {
    std::vector<std::string> ends = absl::StrSplit(part, '-');
    int lo = 0;
    int hi = 0;
    bool ok = ends.size() == 1   ? absl::SimpleAtoi(ends[0], &lo) && (hi = lo, true)
              : ends.size() == 2 ? absl::SimpleAtoi(ends[0], &lo) && absl::SimpleAtoi(ends[1], &hi)
                                 : false;
    if (!ok || lo < 0 || hi < lo || hi > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "' is not a CPU list (e.g. 0-3,8)"));
    }
    for (int c = lo; c <= hi; ++c) out.insert(c);
  }
  return out;
}

std::string FormatCpuList(const std::set<int>& cpus) {
  std::string out;
  auto it = cpus.begin();
  while (it != cpus.end()) {
    int lo = *it;
    int hi = lo;
    ++it;
    while (it != cpus.end() && *it == hi + 1) hi = *it++;
    if (!out.empty()) out += ",";
    out += lo == hi ? absl::StrCat(lo) : absl::StrCat(lo, "-", hi);
  }
  return out;
}

CpuTopology CpuTopology::Uniform(int cores, int smt, int numa_nodes) {
  CpuTopology t;
  t.numa_nodes = std::max(1, numa_nodes);
  int per_node = std::max(1, cores / t.numa_nodes);
  std::map<int, std::set<int>> siblings;
  std::map<int, std::set<int>> llc_of;
  for (int thread = 0; thread < smt; ++thread) {
    for (int c = 0; c < cores; ++c) {
      LogicalCpu cpu;
      cpu.id = thread * cores + c;
      cpu.numa_node = std::min(c / per_node, t.numa_nodes - 1);
      t.cpus.push_back(cpu);
      for (int s = 0; s < smt; ++s) siblings[cpu.id].insert(s * cores + c);
    }
  }
  for (const LogicalCpu& cpu : t.cpus) {
    for (const LogicalCpu& other : t.cpus) {
      if (other.numa_node == cpu.numa_node) llc_of[cpu.id].insert(other.id);
    }
  }
  std::sort(t.cpus.begin(), t.cpus.end(), [](auto& a, auto& b) { return a.id < b.id; });
  Assemble(&t, siblings, llc_of);
  return t;
}

absl::StatusOr<CpuTopology> SysfsTopologyReader::Read() const {
  const std::string cpu_dir = "devices/system/cpu";
  auto online_text = ReadSys(root_, cpu_dir + "/online");
  if (!online_text) {
    return absl::NotFoundError(
        absl::StrCat("read `", root_, "/", cpu_dir, "/online`: no CPU list (is sysfs mounted?)"));
  }
  auto online = ParseCpuList(*online_text);
  if (!online.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(root_, "/", cpu_dir, "/online: ", online.status().message()));
  }
  if (online->empty())
    return absl::InvalidArgumentError(absl::StrCat(root_, "/", cpu_dir, "/online: empty"));

  CpuTopology t;
  std::map<int, int> numa_of;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(root_ + "/devices/system/node", ec)) {
    std::string name = entry.path().filename().string();
    int node = 0;
    if (name.rfind("node", 0) != 0 || !absl::SimpleAtoi(name.substr(4), &node)) continue;
    ASSIGN_OR_RETURN(std::set<int> cpus,
                     ReadSysList(root_, "devices/system/node/" + name + "/cpulist"));
    for (int c : cpus) numa_of[c] = node;
    t.numa_nodes = std::max(t.numa_nodes, node + 1);
  }

  std::map<int, std::set<int>> siblings;
  std::map<int, std::set<int>> llc_of;
  for (int id : *online) {
    std::string dir = absl::StrCat(cpu_dir, "/cpu", id);
    LogicalCpu cpu;
    cpu.id = id;
    ASSIGN_OR_RETURN(cpu.package, ReadSysInt(root_, dir + "/topology/physical_package_id", 0));
    cpu.numa_node = numa_of.count(id) ? numa_of[id] : 0;
    ASSIGN_OR_RETURN(siblings[id], ReadSysList(root_, dir + "/topology/thread_siblings_list"));
    // Keep only online siblings: an offline sibling cannot be pinned to.
    std::erase_if(siblings[id], [&](int c) { return !online->count(c); });
    // The last-level cache is the unified cache of the highest level.
    int best_level = -1;
    for (int index = 0; index < 8; ++index) {
      std::string cache = absl::StrCat(dir, "/cache/index", index);
      auto type = ReadSys(root_, cache + "/type");
      if (!type) continue;
      if (*type == "Instruction") continue;
      ASSIGN_OR_RETURN(int level, ReadSysInt(root_, cache + "/level", 0));
      if (level <= best_level) continue;
      ASSIGN_OR_RETURN(std::set<int> shared, ReadSysList(root_, cache + "/shared_cpu_list"));
      std::erase_if(shared, [&](int c) { return !online->count(c); });
      best_level = level;
      llc_of[id] = shared;
    }
    t.cpus.push_back(cpu);
  }
  Assemble(&t, siblings, llc_of);
  return t;
}

}  // namespace flotilla::shard
