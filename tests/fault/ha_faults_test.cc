// Faults of a highly available manager other than a kill (failover_test.cc):
//
// - The leader paused with SIGSTOP longer than its lease: a standby takes
//   over; the paused replica, resumed, does not act as leader (a write sent
//   to it fails) and stands by again. Nothing acknowledged is lost or
//   reported twice. FLOTILLA_PAUSE_S sets the pause (default 6 s with a 2 s
//   lease; the 30 s: FLOTILLA_PAUSE_S=30).
// - The leader cut off from etcd, while agents and clients still reach it
//   (replicas and agents in network namespaces, the leader's etcd traffic
//   dropped by iptables in its namespace): it steps down within its lease,
//   before another replica leads; work goes on with the new leader.
//
// The manager's disk full is in disk_full_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "support/etcd_cluster.h"
#include "support/federation_harness.h"
#include "support/manager_replicas.h"
#include "unit/kv/redis_server.h"

namespace flotilla::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int64_t WallMsNow() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The wall time (ms since the epoch) of the last line of `log` containing
// `needle`, from spdlog's "[YYYY-MM-DD HH:MM:SS.mmm]" prefix (local time);
// -1 if there is none.
int64_t LastLogTimeMs(const std::string& log, const std::string& needle) {
  std::istringstream in(log);
  std::string line;
  int64_t found = -1;
  while (std::getline(in, line)) {
    if (line.find(needle) == std::string::npos || line.size() < 25 || line[0] != '[') continue;
    std::tm tm{};
    const char* rest = strptime(line.c_str() + 1, "%Y-%m-%d %H:%M:%S", &tm);
    if (rest == nullptr || *rest != '.') continue;
    tm.tm_isdst = -1;
    found = static_cast<int64_t>(mktime(&tm)) * 1000 + std::atoi(rest + 1);
  }
  return found;
}

int PauseSeconds() {
  const char* v = std::getenv("FLOTILLA_PAUSE_S");
  return v == nullptr ? 6 : std::clamp(std::atoi(v), 3, 600);
}

v1::ExecutionRequest Task(int serial) {
  auto r = FederationHarness::Shell(absl::StrCat("sleep 0.$((RANDOM % 5)); echo task-", serial));
  r.mutable_resources()->set_cpu_millis(100);
  return r;
}

// Every acknowledged execution finished exactly once, successfully, with
// its own one line of output. Returns (lost, reported other than once).
std::pair<int, int> CheckOnce(FederationHarness& h, const std::vector<std::string>& ids,
                              seconds timeout) {
  auto done = h.WaitAllDone(ids, timeout);
  int lost = static_cast<int>(ids.size() - done.size());
  int twice = 0;
  for (const auto& [id, e] : done) {
    if (e.state() != v1::EXECUTION_SUCCEEDED) {
      ++lost;
      ADD_FAILURE() << id << ": " << v1::ExecutionState_Name(e.state()) << ": " << e.error();
      continue;
    }
    const std::string& out = e.result().stdout();
    if (std::count(out.begin(), out.end(), '\n') != 1) {
      ++twice;
      ADD_FAILURE() << id << " reported other than once: " << out;
    }
  }
  return {lost, twice};
}

// Submits through whichever replica leads, as a client holding every
// address does; returns the id, or "" when none accepted it in time.
std::string SubmitToLeader(FederationHarness& h, ManagerReplicas& replicas,
                           const v1::ExecutionRequest& r, milliseconds timeout) {
  std::string id;
  FederationHarness::WaitUntil(timeout, [&] {
    const int leader = replicas.Leader();
    if (leader < 0) return false;
    h.PointAt(replicas.Addresses()[leader]);
    v1::SubmitResponse resp;
    if (!h.Submit(r, &resp).ok()) return false;
    id = resp.execution().id();
    return true;
  });
  return id;
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// ---------------------------------------------------------------------------

class PausedLeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::Status st = etcd_.Start(); !st.ok()) GTEST_SKIP() << "no etcd cluster: " << st;
    if (absl::Status st = redis_.Start(); !st.ok()) GTEST_SKIP() << "no redis-server: " << st;
    h_.agent_log_level = "info";
    replicas_ = std::make_unique<ManagerReplicas>(&h_, etcd_.endpoints(),
                                                  ReplicaOptions{.redis_address = absl::StrCat("127.0.0.1:", redis_.port())});
    replicas_->StartAll();
    const int leader = replicas_->WaitLeader(seconds(30));
    ASSERT_GE(leader, 0) << replicas_->Logs();
    h_.PointAt(replicas_->Addresses()[leader]);
    h_.agent_manager_list = replicas_->List();
    h_.StartAgent({.id = "a1", .cpu_millis = 2000});
    h_.StartAgent({.id = "a2", .cpu_millis = 2000});
    ASSERT_TRUE(h_.WaitOnline(2, seconds(30))) << replicas_->Log(leader);
  }

  EtcdCluster etcd_;
  kv::testing::RedisServer redis_;
  FederationHarness h_;
  std::unique_ptr<ManagerReplicas> replicas_;
};

TEST_F(PausedLeaderTest, AStandbyTakesOverAndTheResumedLeaderStandsBy) {
  const int pause_s = PauseSeconds();
  std::vector<std::string> acknowledged;
  int serial = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string id = SubmitToLeader(h_, *replicas_, Task(serial++), seconds(20));
    ASSERT_FALSE(id.empty());
    acknowledged.push_back(id);
  }
  const int old = replicas_->Leader();
  ASSERT_GE(old, 0);
  replicas_->Pause(old);
  const auto paused_at = Clock::now();

  const int next = replicas_->WaitOtherLeader(old, seconds(20));
  const double led_ms = MsSince(paused_at);
  ASSERT_GE(next, 0) << "no standby took over from the paused leader\n" << replicas_->Logs();
  const std::string probe = SubmitToLeader(h_, *replicas_, Task(serial++), seconds(20));
  ASSERT_FALSE(probe.empty()) << replicas_->Logs();
  acknowledged.push_back(probe);
  ASSERT_EQ(h_.WaitAllDone({probe}, seconds(30)).size(), 1u) << replicas_->Logs();
  const double ran_ms = MsSince(paused_at);
  // The failover bound. Agents stuck in a call to the paused leader
  // give up on it after a call's deadline (results calls once took 10 s).
  EXPECT_LT(ran_ms, 10000) << h_.ReadLog("a1.log") << h_.ReadLog("a2.log");
  // Work goes on while the old leader sleeps.
  while (MsSince(paused_at) < pause_s * 1000.0 - 500) {
    const std::string id = SubmitToLeader(h_, *replicas_, Task(serial++), seconds(20));
    ASSERT_FALSE(id.empty());
    acknowledged.push_back(id);
    std::this_thread::sleep_for(milliseconds(400));
  }
  std::this_thread::sleep_until(paused_at + seconds(pause_s));

  // Resumed, the old leader must not act as one: a submit sent straight to
  // it fails (its write is fenced, or it no longer serves).
  replicas_->Resume(old);
  const auto resumed_at = Clock::now();
  h_.PointAt(replicas_->Addresses()[old]);
  v1::SubmitResponse resp;
  const grpc::Status st = h_.Submit(Task(serial++), &resp);
  EXPECT_FALSE(st.ok()) << "the resumed leader acknowledged " << resp.execution().id();
  // It stands by again, and the new leader keeps leading.
  const bool standby =
      FederationHarness::WaitUntil(seconds(15), [&] { return replicas_->Role(old) == "standby"; });
  const double standby_ms = MsSince(resumed_at);
  EXPECT_TRUE(standby) << replicas_->Log(old);
  EXPECT_NE(replicas_->Log(old).find("lost leadership"), std::string::npos) << replicas_->Log(old);
  EXPECT_EQ(replicas_->Leader(), next);

  for (int i = 0; i < 3; ++i) {
    const std::string id = SubmitToLeader(h_, *replicas_, Task(serial++), seconds(20));
    ASSERT_FALSE(id.empty());
    acknowledged.push_back(id);
  }
  h_.PointAt(replicas_->Addresses()[replicas_->WaitLeader(seconds(10))]);
  const auto [lost, twice] = CheckOnce(h_, acknowledged, seconds(60));
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(replicas_->Leader(), next) << replicas_->Logs();
  const int refused = CountOf(h_.ReadLog("a1.log") + h_.ReadLog("a2.log"), "refused ");
  std::printf("[paused leader] paused %d s (lease 2 s): a standby led after %.0f ms, ran a new "
              "task after %.0f ms; resumed, the old leader's submit failed (%d: %s) and it stood "
              "by %.0f ms after resuming; agents refused %d requests of an older epoch; %zu "
              "executions acknowledged, %d lost, %d reported twice\n",
              pause_s, led_ms, ran_ms, static_cast<int>(st.error_code()),
              st.error_message().c_str(), standby_ms, refused, acknowledged.size(), lost, twice);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------

class EtcdPartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "hosts as network namespaces need root";
    if (system("iptables --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no iptables";
    auto lab = netlab::Lab::Create();
    ASSERT_TRUE(lab.ok()) << lab.status();
    lab_ = std::move(*lab);
    etcd_ = std::make_unique<EtcdCluster>(
        EtcdClusterOptions{.extra_client_host = lab_->bridge_address()});
    if (absl::Status st = etcd_->Start(); !st.ok()) GTEST_SKIP() << "no etcd cluster: " << st;
    h_ = std::make_unique<FederationHarness>();
    h_->UseHosts(lab_.get());
    h_->agent_log_level = "info";
    // The shared Redis in a host of its own.
    const std::string redis = kv::testing::FindRedisServer();
    if (redis.empty()) GTEST_SKIP() << "no redis-server";
    auto host = lab_->AddHost("redis");
    ASSERT_TRUE(host.ok()) << host.status();
    auto pid = lab_->Spawn("redis",
                           {redis, "--port", "6379", "--bind", host->address, "--protected-mode",
                            "no", "--save", "", "--appendonly", "no", "--dir", h_->dir()},
                           h_->dir() + "/redis.log");
    ASSERT_TRUE(pid.ok()) << pid.status();
    redis_pid_ = *pid;
    replicas_ = std::make_unique<ManagerReplicas>(
        h_.get(), etcd_->endpoints_on(lab_->bridge_address()),
        ReplicaOptions{.redis_address = host->address + ":6379", .lab = lab_.get()});
    replicas_->StartAll();
    const int leader = replicas_->WaitLeader(seconds(30));
    ASSERT_GE(leader, 0) << replicas_->Logs();
    h_->PointAt(replicas_->Addresses()[leader]);
    h_->agent_manager_list = replicas_->List();
    h_->StartAgent({.id = "a1", .cpu_millis = 2000});
    h_->StartAgent({.id = "a2", .cpu_millis = 2000});
    ASSERT_TRUE(h_->WaitOnline(2, seconds(30))) << replicas_->Log(leader);
  }
  void TearDown() override {
    replicas_.reset();
    FederationHarness::TerminatePid(redis_pid_);
    h_.reset();  // its processes first, then the hosts they ran in
    etcd_.reset();
    lab_.reset();
  }

  // Drops (or, with `cut` false, lets through again) every packet from
  // replica i's host to etcd's client ports; the rest of its links stay up.
  void CutFromEtcd(int i, bool cut) {
    std::vector<std::string> ports;
    for (int m = 0; m < 3; ++m) ports.push_back(std::to_string(etcd_->client_port(m)));
    const std::string cmd = absl::StrCat(
        "ip netns exec ", lab_->Find(ManagerReplicas::HostName(i))->netns, " iptables -w ",
        cut ? "-I" : "-D", " OUTPUT -p tcp -d ", lab_->bridge_address(),
        " -m multiport --dports ", absl::StrJoin(ports, ","), " -j DROP");
    ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  }

  std::unique_ptr<netlab::Lab> lab_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<FederationHarness> h_;
  std::unique_ptr<ManagerReplicas> replicas_;
  pid_t redis_pid_ = 0;
};

TEST_F(EtcdPartitionTest, ALeaderCutOffFromEtcdStepsDownWithinItsLease) {
  FederationHarness& h = *h_;
  std::vector<std::string> acknowledged;
  int serial = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string id = SubmitToLeader(h, *replicas_, Task(serial++), seconds(20));
    ASSERT_FALSE(id.empty());
    acknowledged.push_back(id);
  }
  const int old = replicas_->Leader();
  ASSERT_GE(old, 0);
  const int64_t cut_wall_ms = WallMsNow();
  const auto cut_at = Clock::now();
  CutFromEtcd(old, true);

  // It steps down (and stands by) although agents and clients still reach
  // it; another replica leads.
  const bool stepped = FederationHarness::WaitUntil(seconds(10), [&] {
    return replicas_->Log(old).find("lost leadership") != std::string::npos;
  });
  ASSERT_TRUE(stepped) << replicas_->Log(old);
  const int next = replicas_->WaitOtherLeader(old, seconds(20));
  ASSERT_GE(next, 0) << replicas_->Logs();
  const std::string probe = SubmitToLeader(h, *replicas_, Task(serial++), seconds(20));
  ASSERT_FALSE(probe.empty()) << replicas_->Logs();
  acknowledged.push_back(probe);
  ASSERT_EQ(h.WaitAllDone({probe}, seconds(30)).size(), 1u) << replicas_->Logs();
  const double ran_ms = MsSince(cut_at);
  EXPECT_LT(ran_ms, 10000) << h.ReadLog("a1.log") << h.ReadLog("a2.log");
  EXPECT_TRUE(FederationHarness::WaitUntil(
      seconds(15), [&] { return replicas_->Role(old) == "standby"; }))
      << replicas_->Log(old);

  // When: it gave up before its lease could have ended at etcd, and so
  // before the new leader won (both logged on this host's clock).
  const int64_t lost_ms = LastLogTimeMs(replicas_->Log(old), "lost leadership");
  const int64_t won_ms = LastLogTimeMs(replicas_->Log(next), "leading with epoch");
  ASSERT_GT(lost_ms, 0) << replicas_->Log(old);
  ASSERT_GT(won_ms, 0) << replicas_->Log(next);
  EXPECT_LT(lost_ms, won_ms) << "the old leader still led when the new one won";
  // Its last renewal was sent at most TTL/3 before the cut; it gives up
  // TTL - TTL/5 after it: within the 2 s lease of the cut, with 500 ms for
  // the log line under load.
  EXPECT_LE(lost_ms - cut_wall_ms, 2000 + 500);

  // A write sent to it fails: it no longer serves, or its write is fenced.
  h.PointAt(replicas_->Addresses()[old]);
  v1::SubmitResponse resp;
  const grpc::Status st = h.Submit(Task(serial++), &resp);
  EXPECT_FALSE(st.ok()) << "the cut-off replica acknowledged " << resp.execution().id();

  // Healed, it stays a standby; everything acknowledged ran once.
  CutFromEtcd(old, false);
  for (int i = 0; i < 3; ++i) {
    const std::string id = SubmitToLeader(h, *replicas_, Task(serial++), seconds(20));
    ASSERT_FALSE(id.empty());
    acknowledged.push_back(id);
  }
  h.PointAt(replicas_->Addresses()[next]);
  const auto [lost, twice] = CheckOnce(h, acknowledged, seconds(60));
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(twice, 0);
  EXPECT_EQ(replicas_->Leader(), next) << replicas_->Logs();
  std::printf("[leader cut off from etcd] it stepped down %lld ms after the cut (lease 2 s), the "
              "new leader won %lld ms after the cut, a new task ran after %.0f ms; %zu "
              "executions acknowledged, %d lost, %d reported twice\n",
              static_cast<long long>(lost_ms - cut_wall_ms),
              static_cast<long long>(won_ms - cut_wall_ms), ran_ms, acknowledged.size(), lost,
              twice);
  std::fflush(stdout);
}

}  // namespace
}  // namespace flotilla::testing
