// The /sys topology reader against fake sysfs trees in a temporary
// directory: SMT siblings, last-level caches, NUMA nodes, missing files,
// malformed files. And the CPU-list codec.
#include "shard/topology.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "support/temp_dir.h"

namespace flotilla::shard {
namespace {

using flotilla::testing::TempDir;

void Put(const std::filesystem::path& root, const std::string& rel, const std::string& text) {
  std::filesystem::path p = root / rel;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text << "\n";
}

// A 2-socket host: 4 cores a socket, 2 threads a core, Linux numbering
// (thread 0 of every core first). One L3 per socket, per-core L2, L1i
// and L1d.
void WriteTwoSocketHost(const std::filesystem::path& root) {
  Put(root, "devices/system/cpu/online", "0-15");
  for (int cpu = 0; cpu < 16; ++cpu) {
    int core = cpu % 8;
    int socket = core / 4;
    std::string dir = "devices/system/cpu/cpu" + std::to_string(cpu);
    Put(root, dir + "/topology/core_id", std::to_string(core % 4));
    Put(root, dir + "/topology/physical_package_id", std::to_string(socket));
    Put(root, dir + "/topology/thread_siblings_list",
        std::to_string(core) + "," + std::to_string(core + 8));
    std::string pair = std::to_string(core) + "," + std::to_string(core + 8);
    std::string l3 = socket == 0 ? "0-3,8-11" : "4-7,12-15";
    const char* kinds[][3] = {{"1", "Data", nullptr},
                              {"1", "Instruction", nullptr},
                              {"2", "Unified", nullptr},
                              {"3", "Unified", nullptr}};
    for (int i = 0; i < 4; ++i) {
      std::string c = dir + "/cache/index" + std::to_string(i);
      Put(root, c + "/level", kinds[i][0]);
      Put(root, c + "/type", kinds[i][1]);
      Put(root, c + "/shared_cpu_list", i == 3 ? l3 : pair);
    }
  }
  Put(root, "devices/system/node/node0/cpulist", "0-3,8-11");
  Put(root, "devices/system/node/node1/cpulist", "4-7,12-15");
}

TEST(CpuListTest, ParsesAndFormats) {
  auto list = ParseCpuList("0-3,8,10-11\n");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, (std::set<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(FormatCpuList(*list), "0-3,8,10-11");
  EXPECT_EQ(FormatCpuList({}), "");
  EXPECT_EQ(FormatCpuList({5}), "5");
  EXPECT_TRUE(ParseCpuList("")->empty());
  for (const char* bad : {"a", "3-1", "1-", "-1", "1,,2", "0-99999", "1-2-3"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(ParseCpuList(bad).status())) << bad;
  }
}

TEST(SysfsTopologyReaderTest, ReadsCoresSiblingsCachesAndNuma) {
  TempDir dir;
  WriteTwoSocketHost(dir.path());
  auto t = SysfsTopologyReader(dir.path().string()).Read();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->cpus.size(), 16u);
  EXPECT_EQ(t->numa_nodes, 2);
  ASSERT_EQ(t->cores.size(), 8u);
  EXPECT_EQ(t->cores[0].cpus, (std::vector<int>{0, 8}));
  EXPECT_EQ(t->cores[5].cpus, (std::vector<int>{5, 13}));
  EXPECT_EQ(t->cores[5].numa_node, 1);
  ASSERT_EQ(t->llcs.size(), 2u);  // the L3s, not the per-core L2s
  EXPECT_EQ(t->llcs[t->cpus[9].llc].size(), 8u);
  EXPECT_EQ(t->cpus[12].package, 1);
  EXPECT_EQ(t->cpus[12].numa_node, 1);
  EXPECT_EQ(t->cpus[12].core, t->cpus[4].core);
}

TEST(SysfsTopologyReaderTest, OfflineCpusAreLeftOut) {
  TempDir dir;
  WriteTwoSocketHost(dir.path());
  Put(dir.path(), "devices/system/cpu/online", "0-7");  // SMT switched off
  auto t = SysfsTopologyReader(dir.path().string()).Read();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->cpus.size(), 8u);
  ASSERT_EQ(t->cores.size(), 8u);
  for (const PhysicalCore& core : t->cores) EXPECT_EQ(core.cpus.size(), 1u);
}

TEST(SysfsTopologyReaderTest, HiddenTopologyFilesMeanOneCoreEachOneNode) {
  TempDir dir;
  Put(dir.path(), "devices/system/cpu/online", "0-3");  // what a small VM may show
  auto t = SysfsTopologyReader(dir.path().string()).Read();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->cpus.size(), 4u);
  EXPECT_EQ(t->cores.size(), 4u);
  EXPECT_EQ(t->numa_nodes, 1);
}

TEST(SysfsTopologyReaderTest, ErrorsNameTheFile) {
  TempDir dir;
  auto missing = SysfsTopologyReader(dir.path().string()).Read();
  EXPECT_TRUE(absl::IsNotFound(missing.status())) << missing.status();
  EXPECT_NE(missing.status().message().find("devices/system/cpu/online"), std::string::npos);

  Put(dir.path(), "devices/system/cpu/online", "0-1");
  Put(dir.path(), "devices/system/cpu/cpu1/topology/thread_siblings_list", "one");
  auto bad = SysfsTopologyReader(dir.path().string()).Read();
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
  EXPECT_NE(bad.status().message().find("cpu1/topology/thread_siblings_list"), std::string::npos);
}

TEST(SysfsTopologyReaderTest, ReadsThisMachine) {
  // Whatever the host is, its /sys gives at least one CPU.
  auto t = SysfsTopologyReader("/sys").Read();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_GE(t->cpus.size(), 1u);
  EXPECT_GE(t->cores.size(), 1u);
}

TEST(CpuTopologyTest, UniformMatchesLinuxNumbering) {
  CpuTopology t = CpuTopology::Uniform(4, 2, 2);
  ASSERT_EQ(t.cpus.size(), 8u);
  ASSERT_EQ(t.cores.size(), 4u);
  EXPECT_EQ(t.cores[1].cpus, (std::vector<int>{1, 5}));
  EXPECT_EQ(t.cores[3].numa_node, 1);
  EXPECT_EQ(t.llcs.size(), 2u);
}

}  // namespace
}  // namespace flotilla::shard
