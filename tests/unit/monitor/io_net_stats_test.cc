// The sandbox's io and network counters from fake cgroup and proc files, and
// the rates the ring and the sampler derive from them.
#include "sandbox/linux/io_net_stats.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "monitor/sampler.h"
#include "monitor/usage_ring.h"

namespace flotilla {
namespace {

using sandbox::isolation::IoBytes;
using sandbox::isolation::NetBytes;

constexpr char kBlkio[] =
    "8:0 Read 4096\n8:0 Write 1048576\n8:0 Sync 0\n8:0 Async 1052672\n8:0 Discard 0\n"
    "8:0 Total 1052672\n"
    "253:1 Read 512\n253:1 Write 2048\n253:1 Total 2560\n"
    "Total 1055232\n";
constexpr char kIoStat[] =
    "8:0 rbytes=90112 wbytes=4096 rios=10 wios=1 dbytes=0 dios=0\n"
    "253:1 rbytes=8192 wbytes=3000000 rios=2 wios=50 dbytes=0 dios=0\n";
constexpr char kNetDev[] =
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs "
    "drop fifo colls carrier compressed\n"
    "    lo:    1200      12    0    0    0     0          0         0     1200      12    0    "
    "0    0     0       0          0\n"
    "  eth0: 5000000    4000    0    0    0     0          0         0   250000    2000    0    "
    "0    0     0       0          0\n";

std::string ProcIo(int64_t read, int64_t write) {
  return "rchar: 99999\nwchar: 88888\nsyscr: 7\nsyscw: 8\nread_bytes: " + std::to_string(read) +
         "\nwrite_bytes: " + std::to_string(write) + "\ncancelled_write_bytes: 0\n";
}

class IoNetFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ =
        (std::filesystem::path(::testing::TempDir()) / "io_net_stats_test-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    root_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void Write(const std::string& rel, const std::string& content) {
    const std::filesystem::path p = std::filesystem::path(root_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << content;
  }
  std::string Path(const std::string& rel) const { return root_ + "/" + rel; }
  std::string root_;
};

TEST(IoNetParseTest, BlkioSumsReadAndWriteOfEveryDeviceButNotTotals) {
  IoBytes io = sandbox::isolation::ParseBlkioServiceBytes(kBlkio);
  EXPECT_EQ(io.read, 4096 + 512);
  EXPECT_EQ(io.written, 1048576 + 2048);
  // A group that did no io: the kernel prints only "Total 0".
  IoBytes none = sandbox::isolation::ParseBlkioServiceBytes("Total 0\n");
  EXPECT_EQ(none.read, 0);
  EXPECT_EQ(none.written, 0);
}

TEST(IoNetParseTest, IoStatSumsRbytesAndWbytesOfEveryDevice) {
  IoBytes io = sandbox::isolation::ParseIoStat(kIoStat);
  EXPECT_EQ(io.read, 90112 + 8192);
  EXPECT_EQ(io.written, 4096 + 3000000);
  EXPECT_EQ(sandbox::isolation::ParseIoStat("").read, 0);
}

TEST(IoNetParseTest, ProcIoTakesStorageBytesNotCharacters) {
  IoBytes io = sandbox::isolation::ParseProcIo(ProcIo(123, 4567));
  EXPECT_EQ(io.read, 123);
  EXPECT_EQ(io.written, 4567);
}

TEST(IoNetParseTest, NetDevSumsEveryInterface) {
  auto net = sandbox::isolation::ParseNetDev(kNetDev);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->rx, 1200 + 5000000);
  EXPECT_EQ(net->tx, 1200 + 250000);
  EXPECT_FALSE(sandbox::isolation::ParseNetDev("Inter-|\n face |\n").ok());
}

TEST_F(IoNetFilesTest, CgroupIoPrefersBlkioThenIoStatElseNotFound) {
  Write("blkio/box/blkio.throttle.io_service_bytes", kBlkio);
  Write("unified/box/io.stat", kIoStat);
  Write("bare/box/cgroup.procs", "");
  auto v1 = sandbox::isolation::ReadCgroupIo(Path("blkio/box"), Path("unified/box"));
  ASSERT_TRUE(v1.ok()) << v1.status();
  ASSERT_TRUE(v1->has_value());
  EXPECT_EQ((*v1)->written, 1048576 + 2048);
  auto v2 = sandbox::isolation::ReadCgroupIo("", Path("unified/box"));
  ASSERT_TRUE(v2.ok()) << v2.status();
  ASSERT_TRUE(v2->has_value());
  EXPECT_EQ((*v2)->read, 90112 + 8192);
  EXPECT_EQ((*v2)->written, 4096 + 3000000);
  auto none = sandbox::isolation::ReadCgroupIo("", Path("bare/box"));
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());
  // A blkio group whose file cannot be read is an error, not a fallback.
  auto broken = sandbox::isolation::ReadCgroupIo(Path("bare/box"), "");
  EXPECT_FALSE(broken.ok());
}

TEST_F(IoNetFilesTest, ProcIoSumsTheGroupsProcessesAndSkipsOnesThatExited) {
  Write("cg/cgroup.procs", "10\n11\n12\n");
  Write("proc/10/io", ProcIo(1000, 20000));
  Write("proc/11/io", ProcIo(24, 480));
  // 12 exited between the listing and the read.
  auto io = sandbox::isolation::SumProcIo(Path("proc"), Path("cg/cgroup.procs"));
  ASSERT_TRUE(io.ok()) << io.status();
  EXPECT_EQ(io->read, 1024);
  EXPECT_EQ(io->written, 20480);
  EXPECT_FALSE(sandbox::isolation::SumProcIo(Path("proc"), Path("cg/missing")).ok());
}

TEST_F(IoNetFilesTest, NetDevOfTheInitsNamespace) {
  Write("proc/4242/net/dev", kNetDev);
  auto net = sandbox::isolation::ReadNetDev(Path("proc"), 4242);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->rx, 5001200);
  EXPECT_EQ(net->tx, 251200);
  EXPECT_FALSE(sandbox::isolation::ReadNetDev(Path("proc"), 4243).ok());
}

monitor::UsageSample Counters(int64_t t_ms, int64_t r, int64_t w, int64_t rx, int64_t tx) {
  monitor::UsageSample s;
  s.t_ms = t_ms;
  s.memory_bytes = 1;
  s.io_read_bytes = r;
  s.io_write_bytes = w;
  s.net_rx_bytes = rx;
  s.net_tx_bytes = tx;
  return s;
}

TEST(IoNetRatesTest, BytesPerSecondOverTheLastSecond) {
  monitor::UsageRing ring(100);
  EXPECT_EQ(ring.Rates().io_write_bps, 0);
  // 2 s at 10 Hz; the first second writes 1 MB/s, the last 3 MB/s.
  for (int i = 0; i <= 20; ++i) {
    const int64_t t = i * 100;
    const int64_t w = i <= 10 ? i * 100'000 : 1'000'000 + (i - 10) * 300'000;
    ring.Add(Counters(t, i * 1000, w, i * 50, i * 20));
  }
  monitor::IoNetRates r = ring.Rates(1000);
  EXPECT_EQ(r.io_read_bps, 10'000);
  EXPECT_EQ(r.io_write_bps, 3'000'000);
  EXPECT_EQ(r.net_rx_bps, 500);
  EXPECT_EQ(r.net_tx_bps, 200);
}

TEST(IoNetRatesTest, UnknownOrShrinkingCountersGiveZero) {
  monitor::UsageSample a = Counters(0, -1, 5000, 100, 100);
  monitor::UsageSample b = Counters(500, -1, 4000, 600, 100);
  monitor::IoNetRates r = monitor::RatesBetween(a, b);
  EXPECT_EQ(r.io_read_bps, 0);   // no source
  EXPECT_EQ(r.io_write_bps, 0);  // a summed process exited
  EXPECT_EQ(r.net_rx_bps, 1000);
  EXPECT_EQ(r.net_tx_bps, 0);
  EXPECT_EQ(monitor::RatesBetween(b, a).net_rx_bps, 0);  // not after
}

TEST(IoNetRatesTest, SamplerSummariesCarryTheRates) {
  int64_t t = 0;
  monitor::Sampler sampler(
      [&](const std::string&) -> std::optional<monitor::UsageSample> {
        t += 100;
        return Counters(t, t * 2, t * 40, t * 3, t);
      },
      nullptr, "/nonexistent-proc");
  sampler.Track("task", "exec-1", 1, 0);
  for (int i = 0; i < 12; ++i) sampler.SampleOnce();
  auto summaries = sampler.Summaries();
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_EQ(summaries[0].rates.io_read_bps, 2000);
  EXPECT_EQ(summaries[0].rates.io_write_bps, 40000);
  EXPECT_EQ(summaries[0].rates.net_rx_bps, 3000);
  EXPECT_EQ(summaries[0].rates.net_tx_bps, 1000);
}

}  // namespace
}  // namespace flotilla
