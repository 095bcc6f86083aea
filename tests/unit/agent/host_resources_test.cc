#include "agent/host_resources.h"

#include <sched.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::agent {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kGiB = int64_t{1} << 30;
constexpr int64_t kMemTotalKb = 16 * 1024 * 1024;  // 16 GiB
constexpr char kV1Unlimited[] = "9223372036854771712\n";

int64_t AffinityMillis() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  return CPU_COUNT(&set) * 1000;
}

// A fake /proc and /sys/fs/cgroup in a temporary directory.
class HostResourcesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ =
        (std::filesystem::path(::testing::TempDir()) / "host_resources_test-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    root_ = templ;
    paths_.proc = root_ + "/proc";
    paths_.cgroup = root_ + "/cgroup";
    paths_.work_dir = root_;
    std::filesystem::create_directories(paths_.cgroup);
    Write("proc/meminfo", "MemTotal:       " + std::to_string(kMemTotalKb) +
                              " kB\nMemFree:         1000 kB\nMemAvailable:    8388608 kB\n");
    Write("proc/loadavg", "0.52 0.58 0.59 1/467 12345\n");
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  void Write(const std::string& relative, const std::string& content) {
    std::filesystem::path path = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << content;
  }

  model::Resources Detect() {
    auto resources = DetectHostResources(paths_);
    EXPECT_TRUE(resources.ok()) << resources.status();
    return resources.value_or(model::Resources{});
  }

  // A cgroup v1 host, as on Debian with systemd's legacy layout.
  void MakeV1(const std::string& cpu_quota, const std::string& memory_limit) {
    Write("proc/self/cgroup",
          "9:name=systemd:/system.slice/agent.service\n"
          "4:memory:/system.slice/agent.service\n"
          "2:cpu,cpuacct:/system.slice/agent.service\n");
    Write("cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    Write("cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    Write("cgroup/cpu,cpuacct/system.slice/agent.service/cpu.cfs_quota_us", cpu_quota);
    Write("cgroup/cpu,cpuacct/system.slice/agent.service/cpu.cfs_period_us", "100000\n");
    Write("cgroup/memory/memory.limit_in_bytes", kV1Unlimited);
    Write("cgroup/memory/system.slice/agent.service/memory.limit_in_bytes", memory_limit);
  }

  // A pure cgroup v2 host.
  void MakeV2(const std::string& cpu_max, const std::string& memory_max) {
    Write("proc/self/cgroup", "0::/user.slice/agent.scope\n");
    Write("cgroup/cgroup.controllers", "cpuset cpu io memory pids\n");
    Write("cgroup/user.slice/agent.scope/cpu.max", cpu_max);
    Write("cgroup/user.slice/agent.scope/memory.max", memory_max);
  }

  std::string root_;
  HostPaths paths_;
};

TEST_F(HostResourcesTest, V1WithoutLimitsGivesAffinityAndMemTotal) {
  MakeV1("-1\n", kV1Unlimited);
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
  EXPECT_GT(r.storage_bytes, 0);
  EXPECT_EQ(r.bandwidth_bps, 0);
}

TEST_F(HostResourcesTest, V1QuotaAndMemoryLimitBind) {
  MakeV1("50000\n", std::to_string(kGiB) + "\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, 500);
  EXPECT_EQ(r.memory_bytes, kGiB);
}

TEST_F(HostResourcesTest, V1PerControllerMountIsFoundByItsName) {
  // Mounted as cgroup/cpu (or a cpu -> cpu,cpuacct symlink) rather than
  // under the combined name.
  Write("proc/self/cgroup", "2:cpu,cpuacct:/job\n");
  Write("cgroup/cpu/job/cpu.cfs_quota_us", "150000\n");
  Write("cgroup/cpu/job/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(Detect().cpu_millis, std::min<int64_t>(AffinityMillis(), 1500));
}

TEST_F(HostResourcesTest, AnAncestorsLimitBindsToo) {
  MakeV1("-1\n", std::to_string(4 * kGiB) + "\n");
  Write("cgroup/memory/system.slice/memory.limit_in_bytes", std::to_string(2 * kGiB) + "\n");
  EXPECT_EQ(Detect().memory_bytes, 2 * kGiB);
}

TEST_F(HostResourcesTest, ContainerMountRootedAtOwnGroupUsesTheRootsLimit) {
  // Without a cgroup namespace /proc/self/cgroup names the host's path, but
  // the container sees only its own group at the mount root.
  Write("proc/self/cgroup", "4:memory:/docker/abc123\n");
  Write("cgroup/memory/memory.limit_in_bytes", std::to_string(3 * kGiB) + "\n");
  EXPECT_EQ(Detect().memory_bytes, 3 * kGiB);
}

TEST_F(HostResourcesTest, HybridReadsV1ControllersAndTheUnifiedTree) {
  MakeV1("-1\n", std::to_string(6 * kGiB) + "\n");
  Write("proc/self/cgroup",
        "9:name=systemd:/system.slice/agent.service\n"
        "4:memory:/system.slice/agent.service\n"
        "2:cpu,cpuacct:/system.slice/agent.service\n"
        "0::/system.slice/agent.service\n");
  Write("cgroup/unified/cgroup.controllers", "hugetlb\n");
  Write("cgroup/unified/system.slice/agent.service/cpu.max", "100000 100000\n");
  Write("cgroup/unified/system.slice/agent.service/memory.max", std::to_string(5 * kGiB) + "\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, 1000);
  EXPECT_EQ(r.memory_bytes, 5 * kGiB);
}

TEST_F(HostResourcesTest, HybridWithoutUnifiedFilesHasNoV2Limits) {
  MakeV1("-1\n", kV1Unlimited);
  Write("proc/self/cgroup", "4:memory:/\n2:cpu,cpuacct:/\n0::/\n");
  std::filesystem::create_directories(paths_.cgroup + "/unified");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
}

TEST_F(HostResourcesTest, V2WithoutLimits) {
  MakeV2("max 100000\n", "max\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
}

TEST_F(HostResourcesTest, V2WithLimits) {
  MakeV2("50000 100000\n", std::to_string(kGiB) + "\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, 500);
  EXPECT_EQ(r.memory_bytes, kGiB);
}

TEST_F(HostResourcesTest, V2LimitAboveTheHostDoesNotRaiseIt) {
  MakeV2("6400000 100000\n", std::to_string(1024 * kGiB) + "\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
}

TEST_F(HostResourcesTest, V2ParentLimitBinds) {
  MakeV2("max 100000\n", "max\n");
  Write("cgroup/user.slice/cpu.max", "25000 100000\n");
  EXPECT_EQ(Detect().cpu_millis, 250);
}

TEST_F(HostResourcesTest, MissingCgroupFilesMeanNoLimit) {
  Write("proc/self/cgroup", "4:memory:/gone\n2:cpu,cpuacct:/gone\n0::/gone\n");
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
}

TEST_F(HostResourcesTest, MissingSelfCgroupMeansNoLimit) {
  model::Resources r = Detect();
  EXPECT_EQ(r.cpu_millis, AffinityMillis());
  EXPECT_EQ(r.memory_bytes, kMemTotalKb * 1024);
}

TEST_F(HostResourcesTest, UnparsableCgroupFileIsAnErrorNamingIt) {
  MakeV2("lots 100000\n", "max\n");
  auto r = DetectHostResources(paths_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("cpu.max"));
}

TEST_F(HostResourcesTest, MissingMeminfoIsAnErrorNamingIt) {
  std::filesystem::remove(paths_.proc + "/meminfo");
  auto r = DetectHostResources(paths_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(paths_.proc + "/meminfo"));
}

TEST_F(HostResourcesTest, UnparsableMeminfoIsAnErrorNamingIt) {
  Write("proc/meminfo", "MemTotal: many kB\n");
  auto r = DetectHostResources(paths_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(paths_.proc + "/meminfo"));
  Write("proc/meminfo", "MemFree: 12 kB\n");
  r = DetectHostResources(paths_);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("MemTotal"));
}

TEST_F(HostResourcesTest, StorageOfAWorkDirNotMadeYetIsItsFileSystems) {
  paths_.work_dir = root_ + "/not/made/yet";
  EXPECT_GT(Detect().storage_bytes, 0);
}

TEST_F(HostResourcesTest, ReadsMemAvailable) {
  auto available = ReadMemAvailable(paths_.proc);
  ASSERT_TRUE(available.ok()) << available.status();
  EXPECT_EQ(*available, int64_t{8388608} * 1024);
  EXPECT_FALSE(ReadMemAvailable(root_ + "/nowhere").ok());
}

TEST_F(HostResourcesTest, ReadsLoadAverage) {
  auto load = ReadLoadAverage(paths_.proc);
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_DOUBLE_EQ(*load, 0.52);
  Write("proc/loadavg", "garbage\n");
  load = ReadLoadAverage(paths_.proc);
  ASSERT_FALSE(load.ok());
  EXPECT_THAT(std::string(load.status().message()), HasSubstr("loadavg"));
}

TEST(RealHostResourcesTest, ReportsSomethingUsable) {
  auto r = DetectHostResources(HostPaths{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->cpu_millis, 1000);
  EXPECT_GT(r->memory_bytes, 0);
  EXPECT_GT(r->storage_bytes, 0);
  auto available = ReadMemAvailable("/proc");
  ASSERT_TRUE(available.ok()) << available.status();
  EXPECT_GT(*available, 0);
  auto load = ReadLoadAverage("/proc");
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_GE(*load, 0.0);
}

}  // namespace
}  // namespace flotilla::agent
