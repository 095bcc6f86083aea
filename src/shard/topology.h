// CpuTopology: the CPUs of one node as placement sees them — logical CPUs,
// the physical core each belongs to (its SMT siblings), the caches it
// shares and its NUMA node.
//
// TopologyReader is the interface in front of the OS; SysfsTopologyReader
// reads Linux's /sys under a root directory given as a parameter, so tests
// build a fake tree in a temporary directory (as Firecracker's jailer takes
// /proc/mounts). Files read, relative to the root:
//   devices/system/cpu/online                          "0-7"
//   devices/system/cpu/cpuN/topology/core_id           "3"
//   devices/system/cpu/cpuN/topology/physical_package_id
//   devices/system/cpu/cpuN/topology/thread_siblings_list "3,7"
//   devices/system/cpu/cpuN/cache/indexK/{level,type,shared_cpu_list}
//   devices/system/node/nodeM/cpulist                  (absent: one node)
// A missing topology or cache file is not an error (containers and VMs
// often hide them): the CPU is then its own core, in package 0.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::shard {

struct LogicalCpu {
  int id = 0;
  int package = 0;
  int core = 0;  // index into CpuTopology::cores
  int numa_node = 0;
  int llc = 0;  // index into CpuTopology::llcs (last-level cache group)
};

struct PhysicalCore {
  std::vector<int> cpus;  // SMT siblings, ascending
  int numa_node = 0;
  int llc = 0;
};

struct CpuTopology {
  std::vector<LogicalCpu> cpus;        // ascending id
  std::vector<PhysicalCore> cores;     // ordered by lowest CPU id
  std::vector<std::vector<int>> llcs;  // CPUs sharing each last-level cache
  int numa_nodes = 1;

  // Makes a topology of `cores` cores with `smt` threads each, split evenly
  // over `numa_nodes` nodes, one last-level cache per node; CPU ids follow
  // Linux's usual order (all first threads, then all second threads).
  static CpuTopology Uniform(int cores, int smt, int numa_nodes);
};

// Parses a Linux CPU list ("0-3,8,10-11") into ids. InvalidArgument on
// malformed text or a range that runs backwards.
absl::StatusOr<std::set<int>> ParseCpuList(const std::string& text);
// Formats ids as a Linux CPU list, ranges collapsed ("0-3,8").
std::string FormatCpuList(const std::set<int>& cpus);

class TopologyReader {
 public:
  virtual ~TopologyReader() = default;
  virtual absl::StatusOr<CpuTopology> Read() const = 0;
};

class SysfsTopologyReader : public TopologyReader {
 public:
  // `sysfs_root` is "/sys" on a real host.
  explicit SysfsTopologyReader(std::string sysfs_root) : root_(std::move(sysfs_root)) {}
  // Returns the topology; NotFound when the online CPU list cannot be read,
  // InvalidArgument (naming the file) when a file holds malformed text.
  absl::StatusOr<CpuTopology> Read() const override;

 private:
  std::string root_;
};

}  // namespace flotilla::shard
