// netlab against the real kernel: needs root. Every Lab is destroyed at the
// end of its test (and any left by a crashed run is removed by the next
// Lab::Create).
#include "netlab/netlab.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

namespace flotilla::netlab {
namespace {

using std::chrono::milliseconds;

// Runs `f` on a thread that joined `netns` ("" for the root namespace):
// sockets it makes belong to that namespace for good.
template <class F>
auto InNetns(const std::string& netns, F f) {
  decltype(f()) result{};
  std::thread t([&] {
    if (!netns.empty()) {
      int fd = open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) std::abort();
      close(fd);
    }
    result = f();
  });
  t.join();
  return result;
}

// A listening TCP socket on port `port` of every address.
int Listen(int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 64) != 0) {
    close(s);
    return -1;
  }
  return s;
}

// Milliseconds a TCP handshake to address:port took, or -1 if it did not
// complete within `timeout`.
int64_t ConnectMs(const std::string& address, int port, milliseconds timeout) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &a.sin_addr);
  const auto t0 = std::chrono::steady_clock::now();
  int rc = connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno == EINPROGRESS) {
    pollfd p{s, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
    }
  }
  close(s);
  if (rc != 0) return -1;
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
}

bool NamesExist(const std::string& what) {
  FILE* f = popen("ip netns list; ip -o link show", "r");
  std::string all;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) all.append(buf, n);
  pclose(f);
  return all.find(what) != std::string::npos;
}

class NetlabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "netlab needs root";
    auto lab = Lab::Create();
    ASSERT_TRUE(lab.ok()) << lab.status();
    lab_ = std::move(*lab);
  }
  std::unique_ptr<Lab> lab_;
};

TEST_F(NetlabTest, HostsReachEachOtherAndTheRootNamespace) {
  const auto t0 = std::chrono::steady_clock::now();
  auto a = lab_->AddHost("a");
  auto b = lab_->AddHost("b");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  std::cerr
      << "two hosts made in "
      << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count()
      << " ms\n";
  EXPECT_NE(a->address, b->address);
  int lb = InNetns(b->netns, [] { return Listen(7001); });
  int la = InNetns(a->netns, [] { return Listen(7001); });
  ASSERT_GE(lb, 0);
  ASSERT_GE(la, 0);
  EXPECT_GE(InNetns(a->netns, [&] { return ConnectMs(b->address, 7001, milliseconds(2000)); }), 0);
  EXPECT_GE(InNetns(b->netns, [&] { return ConnectMs(a->address, 7001, milliseconds(2000)); }), 0);
  EXPECT_GE(ConnectMs(b->address, 7001, milliseconds(2000)), 0) << "root namespace -> host";
  close(la);
  close(lb);
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// A Linux bridge without an address of its own takes its ports' lowest MAC
// and changes it when a lower one joins; a host that had cached the old one
// (another host's port) then lost the root namespace, its frames dropped as
// addressed to another host, until its ARP entry expired tens of seconds
// later. The lab's bridge keeps one fixed MAC.
TEST_F(NetlabTest, TheRootStaysReachableWhenALowerMacJoinsTheBridge) {
  auto a = lab_->AddHost("a");
  auto c = lab_->AddHost("c");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(c.ok()) << c.status();
  // Locally administered MACs below any random one: a's port first, so that
  // a bridge that followed its ports would now use a's, then b's below it.
  ASSERT_EQ(system(("ip link set " + a->veth + " address 02:00:00:00:00:02").c_str()), 0);
  const std::string mac_path = "/sys/class/net/" + lab_->bridge() + "/address";
  const std::string mac = ReadFirstLine(mac_path);
  int root = Listen(0);  // any free port of the root namespace
  ASSERT_GE(root, 0);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ASSERT_EQ(getsockname(root, reinterpret_cast<sockaddr*>(&bound), &len), 0);
  const int port = ntohs(bound.sin_port);
  auto connect_from_c = [&] {
    return InNetns(c->netns,
                   [&] { return ConnectMs(lab_->bridge_address(), port, milliseconds(2000)); });
  };
  ASSERT_GE(connect_from_c(), 0);  // c now holds the bridge's MAC in its ARP cache

  auto b = lab_->AddHost("b");
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_EQ(system(("ip link set " + b->veth + " address 02:00:00:00:00:01").c_str()), 0);
  EXPECT_EQ(ReadFirstLine(mac_path), mac);
  EXPECT_GE(connect_from_c(), 0) << "host c lost the root namespace once b joined";
  close(root);
}

TEST_F(NetlabTest, PartitionCutsBothWaysAndHealRestores) {
  auto a = lab_->AddHost("a");
  auto b = lab_->AddHost("b");
  ASSERT_TRUE(a.ok() && b.ok());
  int la = InNetns(a->netns, [] { return Listen(7002); });
  int lb = InNetns(b->netns, [] { return Listen(7002); });
  ASSERT_GE(InNetns(a->netns, [&] { return ConnectMs(b->address, 7002, milliseconds(2000)); }), 0);

  ASSERT_TRUE(lab_->Partition("b").ok());
  EXPECT_LT(InNetns(a->netns, [&] { return ConnectMs(b->address, 7002, milliseconds(700)); }), 0);
  EXPECT_LT(InNetns(b->netns, [&] { return ConnectMs(a->address, 7002, milliseconds(700)); }), 0);
  EXPECT_LT(ConnectMs(b->address, 7002, milliseconds(700)), 0) << "root namespace -> b";
  // The rest of the lab is untouched.
  EXPECT_GE(ConnectMs(a->address, 7002, milliseconds(2000)), 0);

  ASSERT_TRUE(lab_->Heal("b").ok());
  // Both ways again, at once (Heal forgets the failed neighbour entries
  // that would refuse the first connect).
  auto reaches = [](const std::string& from, const std::string& to) {
    return InNetns(from, [&] { return ConnectMs(to, 7002, milliseconds(3000)); }) >= 0;
  };
  EXPECT_TRUE(reaches("", b->address)) << "root namespace -> b";
  EXPECT_TRUE(reaches(b->netns, a->address)) << "b -> a";
  EXPECT_TRUE(reaches(a->netns, b->address)) << "a -> b";
  close(la);
  close(lb);
}

TEST_F(NetlabTest, ShapeDelaysBothWays) {
  const auto& support = Lab::Support();
  if (!support.netem && !support.nfqueue) GTEST_SKIP() << "cannot shape links: " << support.why;
  if (!support.netem) std::cerr << "NOTE: " << support.why << "\n";
  auto a = lab_->AddHost("a");
  ASSERT_TRUE(a.ok());
  int la = InNetns(a->netns, [] { return Listen(7003); });
  const int64_t before = ConnectMs(a->address, 7003, milliseconds(2000));
  ASSERT_GE(before, 0);
  ASSERT_TRUE(lab_->Shape("a", {milliseconds(60), milliseconds(0), 0}).ok());
  // SYN in (+60 ms), SYN-ACK out (+60 ms).
  const int64_t shaped = ConnectMs(a->address, 7003, milliseconds(3000));
  std::cerr << "handshake " << before << " ms plain, " << shaped << " ms shaped (60 ms each way)\n";
  EXPECT_GE(shaped, 115);
  EXPECT_LT(shaped, 1000);
  ASSERT_TRUE(lab_->Unshape("a").ok());
  const int64_t after = ConnectMs(a->address, 7003, milliseconds(2000));
  EXPECT_GE(after, 0);
  EXPECT_LT(after, 100);
  close(la);
}

TEST_F(NetlabTest, ShapeDropsPackets) {
  const auto& support = Lab::Support();
  if (!support.netem && !support.nfqueue) GTEST_SKIP() << "cannot shape links: " << support.why;
  auto a = lab_->AddHost("a");
  ASSERT_TRUE(a.ok());
  int la = InNetns(a->netns, [] { return Listen(7004); });
  // Every packet lost: nothing gets through while shaped.
  ASSERT_TRUE(lab_->Shape("a", {milliseconds(0), milliseconds(0), 1.0}).ok());
  EXPECT_LT(ConnectMs(a->address, 7004, milliseconds(700)), 0);
  ASSERT_TRUE(lab_->Unshape("a").ok());
  EXPECT_GE(ConnectMs(a->address, 7004, milliseconds(2000)), 0);
  close(la);
}

TEST_F(NetlabTest, SpawnRunsInsideTheHost) {
  auto a = lab_->AddHost("a");
  ASSERT_TRUE(a.ok());
  char tmpl[] = "/tmp/fln-spawn-XXXXXX";
  int fd = mkstemp(tmpl);
  close(fd);
  auto pid = lab_->Spawn("a", {"/usr/sbin/ip", "-o", "-4", "addr", "show"}, tmpl);
  ASSERT_TRUE(pid.ok()) << pid.status();
  int status = 0;
  waitpid(*pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  unlink(tmpl);
  EXPECT_NE(ss.str().find(a->address + "/24"), std::string::npos) << ss.str();
  EXPECT_EQ(ss.str().find(lab_->bridge_address()), std::string::npos) << ss.str();

  auto missing = lab_->Spawn("a", {"/nonexistent/binary"});
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("/nonexistent/binary"), std::string::npos);
}

TEST_F(NetlabTest, DestructorRemovesEverythingAndKillsWhatRunsInside) {
  auto a = lab_->AddHost("a");
  ASSERT_TRUE(a.ok());
  auto pid = lab_->Spawn("a", {"/bin/sleep", "60"});
  ASSERT_TRUE(pid.ok());
  const std::string netns = a->netns, veth = a->veth, bridge = lab_->bridge();
  ASSERT_TRUE(NamesExist(netns));
  lab_.reset();
  int status = 0;
  EXPECT_EQ(waitpid(*pid, &status, 0), *pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(NamesExist(netns));
  EXPECT_FALSE(NamesExist(veth));
  EXPECT_FALSE(NamesExist(bridge));
}

TEST_F(NetlabTest, RemoveStaleRemovesWhatDeadProcessesLeft) {
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string ns = "fln" + std::to_string(dead) + "zh1";
  const std::string link = "fln" + std::to_string(dead) + "zbr";
  ASSERT_EQ(system(("ip netns add " + ns).c_str()), 0);
  ASSERT_EQ(system(("ip link add " + link + " type bridge").c_str()), 0);
  EXPECT_GE(Lab::RemoveStale(), 2);
  EXPECT_FALSE(NamesExist(ns));
  EXPECT_FALSE(NamesExist(link));
  // A live Lab's names stay.
  auto a = lab_->AddHost("a");
  ASSERT_TRUE(a.ok());
  Lab::RemoveStale();
  EXPECT_TRUE(NamesExist(a->netns));
}

}  // namespace
}  // namespace flotilla::netlab
