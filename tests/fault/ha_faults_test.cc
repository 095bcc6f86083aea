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
// - All of it in turn (the "done when"): three replicas, three etcd
//   members, Redis and five agents, the replicas, Redis and agents each in
//   a network namespace, run a mixed workload while the test kills, pauses
//   and cuts off the leader, partitions an agent and pauses an etcd member;
//   nothing acknowledged is lost or reported twice. FLOTILLA_COMBINED_ROUNDS
//   sets how many rounds (default 1, the short version `make test` runs).
//
// The manager's disk full is in disk_full_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
// its own lines of output: one, or `lines[id]` where given. Returns (lost,
// reported other than once).
std::pair<int, int> CheckOnce(FederationHarness& h, const std::vector<std::string>& ids,
                              seconds timeout, const std::map<std::string, int>& lines = {}) {
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
    const auto expected = lines.find(id);
    if (std::count(out.begin(), out.end(), '\n') !=
        (expected == lines.end() ? 1 : expected->second)) {
      ++twice;
      ADD_FAILURE() << id << " reported other than once: " << out.size() << " bytes: " << out;
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

// Whether replica i, having lost its leadership, campaigns again (its log
// says it stands by after it says it lost), within `timeout`.
bool StandsByAgain(ManagerReplicas& replicas, int i, seconds timeout) {
  return FederationHarness::WaitUntil(timeout, [&] {
    const std::string log = replicas.Log(i);
    const int64_t lost = LastLogTimeMs(log, "manager: lost leadership");
    return lost > 0 && LastLogTimeMs(log, "standing by for leadership") >= lost &&
           replicas.Role(i) == "standby";
  });
}

// ---------------------------------------------------------------------------

// A result larger than etcd takes in one request (1.5 MiB), through HA
// replicas on etcd: the leader stores it in chunks, and after the leader is
// killed the new one reads it back whole from etcd. Before, the etcd store
// refused the write of any result over ~1.25 MiB (ResourceExhausted).
class LargeResultOnEtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::Status st = etcd_.Start(); !st.ok()) GTEST_SKIP() << "no etcd cluster: " << st;
    if (absl::Status st = redis_.Start(); !st.ok()) GTEST_SKIP() << "no redis-server: " << st;
    replicas_ = std::make_unique<ManagerReplicas>(
        &h_, etcd_.endpoints(),
        ReplicaOptions{.count = 2, .redis_address = absl::StrCat("127.0.0.1:", redis_.port())});
    replicas_->StartAll();
    const int leader = replicas_->WaitLeader(seconds(30));
    ASSERT_GE(leader, 0) << replicas_->Logs();
    h_.PointAt(replicas_->Addresses()[leader]);
    h_.agent_manager_list = replicas_->List();
    h_.StartAgent({.id = "a1", .cpu_millis = 2000, .extra_config = "output_limit_bytes: 4194304\n"});
    ASSERT_TRUE(h_.WaitOnline(1, seconds(30))) << replicas_->Log(leader);
  }

  EtcdCluster etcd_;
  kv::testing::RedisServer redis_;
  FederationHarness h_;
  std::unique_ptr<ManagerReplicas> replicas_;
};

TEST_F(LargeResultOnEtcdTest, AThreeMegabyteResultSurvivesAFailover) {
  // "line 0000001\n": 13 bytes a line, 3.25 MB in all.
  constexpr int kLines = 250000;
  std::string expected;
  expected.reserve(static_cast<size_t>(kLines) * 13);
  for (int i = 1; i <= kLines; ++i) absl::StrAppendFormat(&expected, "line %07d\n", i);
  auto r = FederationHarness::Shell(absl::StrCat("seq -f 'line %07.0f' 1 ", kLines));
  r.set_timeout_ms(30000);
  const std::string id = SubmitToLeader(h_, *replicas_, r, seconds(20));
  ASSERT_FALSE(id.empty()) << replicas_->Logs();
  auto done = h_.WaitAllDone({id}, seconds(30));
  ASSERT_EQ(done.size(), 1u) << replicas_->Logs();
  ASSERT_EQ(done.at(id).state(), v1::EXECUTION_SUCCEEDED) << done.at(id).error();
  ASSERT_EQ(done.at(id).result().stdout().size(), expected.size());
  EXPECT_TRUE(done.at(id).result().stdout() == expected) << "the output differs";

  // Time for the leader's write of the result to commit: a Get can show the
  // end before it is durable (the agent would then send the result again to
  // the next leader, which would not test the store).
  std::this_thread::sleep_for(seconds(2));
  const int old_leader = replicas_->Leader();
  ASSERT_GE(old_leader, 0);
  replicas_->Kill(old_leader);
  const int leader = replicas_->WaitOtherLeader(old_leader, seconds(20));
  ASSERT_GE(leader, 0) << replicas_->Logs();
  h_.PointAt(replicas_->Addresses()[leader]);
  v1::Execution e;
  ASSERT_TRUE(FederationHarness::WaitUntil(seconds(10), [&] { return h_.Get(id, &e).ok(); }))
      << replicas_->Log(leader);
  ASSERT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << replicas_->Logs();
  EXPECT_NE(replicas_->Log(leader).find("0 unfinished executions"), std::string::npos)
      << "the new leader did not load the finished execution from etcd:\n" << replicas_->Logs();
  ASSERT_EQ(e.result().stdout().size(), expected.size()) << replicas_->Log(leader);
  EXPECT_TRUE(e.result().stdout() == expected) << "the new leader's copy differs";
}

class PausedLeaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (absl::Status st = etcd_.Start(); !st.ok()) GTEST_SKIP() << "no etcd cluster: " << st;
    if (absl::Status st = redis_.Start(); !st.ok()) GTEST_SKIP() << "no redis-server: " << st;
    h_.agent_log_level = "info";
    replicas_ = std::make_unique<ManagerReplicas>(
        &h_, etcd_.endpoints(),
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
  const bool standby = StandsByAgain(*replicas_, old, seconds(15));
  const double standby_ms = MsSince(resumed_at);
  EXPECT_TRUE(standby) << replicas_->Log(old);
  EXPECT_NE(replicas_->Log(old).find("manager: lost leadership"), std::string::npos)
      << replicas_->Log(old);
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
  std::printf(
      "[paused leader] paused %d s (lease 2 s): a standby led after %.0f ms, ran a new "
      "task after %.0f ms; resumed, the old leader's submit failed (%d: %s) and it stood "
      "by %.0f ms after resuming; agents refused %d requests of an older epoch; %zu "
      "executions acknowledged, %d lost, %d reported twice\n",
      pause_s, led_ms, ran_ms, static_cast<int>(st.error_code()), st.error_message().c_str(),
      standby_ms, refused, acknowledged.size(), lost, twice);
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
    for (int i = 1; i <= agents_; ++i) {
      h_->StartAgent({.id = absl::StrCat("a", i), .cpu_millis = 2000});
    }
    ASSERT_TRUE(h_->WaitOnline(agents_, seconds(30))) << replicas_->Log(leader);
  }
  void TearDown() override {
    replicas_.reset();
    FederationHarness::TerminatePid(redis_pid_);
    h_.reset();  // its processes first, then the hosts they ran in
    etcd_.reset();
    lab_.reset();
  }

  // Which replicas still run, and what their ready files say.
  std::string Processes() {
    std::string out = "replicas:";
    for (int i = 0; i < replicas_->count(); ++i) {
      const pid_t pid = replicas_->pid(i);
      absl::StrAppend(&out, " m", i, " pid ", pid,
                      pid > 0 && kill(pid, 0) == 0 ? " runs" : " is gone", " role '",
                      replicas_->Role(i), "';");
    }
    // The filter rules and etcd connections each replica's host holds: a cut
    // meant for one must not reach the others.
    for (int i = 0; i < replicas_->count(); ++i) {
      absl::StrAppend(
          &out, "\n  m", i, " netns ", NetnsOf(replicas_->pid(i)), ":\n",
          Shell(absl::StrCat("nsenter --net=/proc/", replicas_->pid(i),
                             "/ns/net sh -c 'iptables -w -S OUTPUT; ss -tn; ip neigh; ip route'")));
    }
    absl::StrAppend(&out, "\n  this test's netns ", NetnsOf(getpid()), ":\n",
                    Shell("iptables -w -S OUTPUT; iptables -w -S INPUT; iptables -w -S FORWARD; "
                          "ip -br addr; ip route; ip neigh | grep -v FAILED | head -40; "
                          "nft list ruleset | head -60; ss -tn state syn-recv; "
                          "cat /proc/sys/net/netfilter/nf_conntrack_count; "
                          "ss -ltn | head -40"));
    // And what etcd says of the leader key, seen from here.
    if (auto client = etcd_->Client(); client.ok()) {
      auto r = (*client)->Range("/flotilla/leader", "", 0, Clock::now() + milliseconds(2000));
      if (!r.ok()) {
        absl::StrAppend(&out, " leader key: ", r.status().ToString());
      } else if (r->kvs.empty()) {
        absl::StrAppend(&out, " leader key: none");
      } else {
        absl::StrAppend(&out, " leader key: ", r->kvs[0].value, " create_revision ",
                        r->kvs[0].create_revision, " lease ", r->kvs[0].lease,
                        " (read at revision ", r->revision, ")");
      }
    }
    return out + "\n";
  }
  static std::string NetnsOf(pid_t pid) {
    char buf[128] = {};
    const std::string link = absl::StrCat("/proc/", pid, "/ns/net");
    const ssize_t n = readlink(link.c_str(), buf, sizeof(buf) - 1);
    return n > 0 ? std::string(buf, n) : "?";
  }
  // stdout and stderr of a diagnostic command, at most 8 KiB.
  static std::string Shell(const std::string& cmd) {
    std::string out;
    FILE* f = popen(absl::StrCat("timeout 5 ", "sh -c \"", cmd, "\" 2>&1").c_str(), "r");
    if (f == nullptr) return "(popen failed)\n";
    char buf[1024];
    size_t n = 0;
    while (out.size() < 8192 && (n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    pclose(f);
    return out;
  }
  std::string EtcdLogs() const {
    std::string out;
    for (int m = 0; m < 3; ++m) {
      std::ifstream in(etcd_->LogPath(m));
      std::stringstream ss;
      ss << in.rdbuf();
      out += absl::StrCat("---- etcd member ", m, "\n", ss.str());
    }
    return out;
  }

  // Drops (or, with `cut` false, lets through again) every packet from
  // replica i's host to etcd's client ports; the rest of its links stay up.
  void CutFromEtcd(int i, bool cut) {
    std::vector<std::string> ports;
    for (int m = 0; m < 3; ++m) ports.push_back(std::to_string(etcd_->client_port(m)));
    // Entered through the replica's own process: its namespace for sure.
    const std::string cmd =
        absl::StrCat("nsenter --net=/proc/", replicas_->pid(i), "/ns/net iptables -w ",
                     cut ? "-I" : "-D", " OUTPUT -p tcp -d ", lab_->bridge_address(),
                     " -m multiport --dports ", absl::StrJoin(ports, ","), " -j DROP");
    ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  }

  std::unique_ptr<netlab::Lab> lab_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::unique_ptr<FederationHarness> h_;
  std::unique_ptr<ManagerReplicas> replicas_;
  pid_t redis_pid_ = 0;
  int agents_ = 2;
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
    return replicas_->Log(old).find("manager: lost leadership") != std::string::npos;
  });
  ASSERT_TRUE(stepped) << replicas_->Log(old);
  // It stops answering at once, reads too: agents follow whoever answers
  // their heartbeats, and a deposed leader's answers would keep them.
  h.PointAt(replicas_->Addresses()[old]);
  EXPECT_TRUE(FederationHarness::WaitUntil(seconds(2), [&] {
    v1::ListNodesResponse nodes;
    return !h.ListNodes(&nodes).ok();
  })) << "the deposed leader still answers 2 s after it stepped down";
  const int next = replicas_->WaitOtherLeader(old, seconds(20));
  ASSERT_GE(next, 0) << Processes() << replicas_->Logs() << EtcdLogs();
  const std::string probe = SubmitToLeader(h, *replicas_, Task(serial++), seconds(20));
  ASSERT_FALSE(probe.empty()) << replicas_->Logs();
  acknowledged.push_back(probe);
  ASSERT_EQ(h.WaitAllDone({probe}, seconds(30)).size(), 1u) << replicas_->Logs();
  const double ran_ms = MsSince(cut_at);
  EXPECT_LT(ran_ms, 10000) << h.ReadLog("a1.log") << h.ReadLog("a2.log");
  EXPECT_TRUE(StandsByAgain(*replicas_, old, seconds(20))) << replicas_->Log(old);

  // When: it gave up before its lease could have ended at etcd, and so
  // before the new leader won (both logged on this host's clock).
  const int64_t lost_ms = LastLogTimeMs(replicas_->Log(old), "manager: lost leadership");
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
  if (std::getenv("FLOTILLA_HA_VERBOSE") != nullptr) std::cerr << replicas_->Logs();
  std::printf(
      "[leader cut off from etcd] it stepped down %lld ms after the cut (lease 2 s), the "
      "new leader won %lld ms after the cut, a new task ran after %.0f ms; %zu "
      "executions acknowledged, %d lost, %d reported twice\n",
      static_cast<long long>(lost_ms - cut_wall_ms), static_cast<long long>(won_ms - cut_wall_ms),
      ran_ms, acknowledged.size(), lost, twice);
  std::fflush(stdout);
}

// ---------------------------------------------------------------------------

class CombinedFaultsTest : public EtcdPartitionTest {
 protected:
  CombinedFaultsTest() { agents_ = 5; }
};

int RoundsToRun() {
  const char* v = std::getenv("FLOTILLA_COMBINED_ROUNDS");
  return v == nullptr ? 1 : std::clamp(std::atoi(v), 1, 100);
}

TEST_F(CombinedFaultsTest, KillsPausesAndPartitionsInTurnLoseNothing) {
  FederationHarness& h = *h_;
  // What each acknowledged execution must print: its own line, or 300.
  std::map<std::string, int> expected_lines;
  int serial = 0;
  auto batch = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const int k = serial++;
      v1::ExecutionRequest r =
          k % 3 == 2 ? FederationHarness::Shell(absl::StrCat("sleep 0.$((RANDOM % 9)); seq 1 300"))
                     : Task(k);
      r.mutable_resources()->set_cpu_millis(k % 2 == 0 ? 100 : 400);
      const std::string id = SubmitToLeader(h, *replicas_, r, seconds(30));
      if (id.empty()) return false;
      expected_lines[id] = k % 3 == 2 ? 300 : 1;
    }
    return true;
  };
  auto standby_again = [&](int i) {
    return FederationHarness::WaitUntil(seconds(20),
                                        [&] { return replicas_->Role(i) == "standby"; });
  };
  auto stands_by_again = [&](int i) { return StandsByAgain(*replicas_, i, seconds(20)); };
  const int rounds = RoundsToRun();
  std::vector<std::string> timeline;
  const auto t0 = Clock::now();
  auto note = [&](const std::string& what) {
    timeline.push_back(absl::StrCat(static_cast<int>(MsSince(t0)), " ms: ", what));
  };
  for (int round = 0; round < rounds; ++round) {
    // 1. The leader killed, and restarted as a standby.
    ASSERT_TRUE(batch(8)) << replicas_->Logs();
    int leader = replicas_->Leader();
    ASSERT_GE(leader, 0);
    replicas_->Kill(leader);
    note(absl::StrCat("killed m", leader));
    ASSERT_GE(replicas_->WaitOtherLeader(leader, seconds(30)), 0) << replicas_->Logs();
    note("a standby leads");
    replicas_->Start(leader);
    ASSERT_TRUE(standby_again(leader)) << replicas_->Log(leader);

    // 2. The leader paused past its lease, then resumed.
    ASSERT_TRUE(batch(8)) << replicas_->Logs();
    leader = replicas_->Leader();
    ASSERT_GE(leader, 0);
    replicas_->Pause(leader);
    note(absl::StrCat("paused m", leader));
    ASSERT_GE(replicas_->WaitOtherLeader(leader, seconds(30)), 0) << replicas_->Logs();
    note("a standby leads");
    ASSERT_TRUE(batch(4)) << replicas_->Logs();
    std::this_thread::sleep_for(seconds(2));
    replicas_->Resume(leader);
    note(absl::StrCat("resumed m", leader));
    ASSERT_TRUE(stands_by_again(leader)) << replicas_->Log(leader);

    // 3. The leader cut off from etcd, then healed.
    ASSERT_TRUE(batch(8)) << replicas_->Logs();
    leader = replicas_->Leader();
    ASSERT_GE(leader, 0);
    CutFromEtcd(leader, true);
    note(absl::StrCat("cut m", leader, " off from etcd"));
    const auto cut_at = Clock::now();
    ASSERT_GE(replicas_->WaitOtherLeader(leader, seconds(30)), 0)
        << Processes() << replicas_->Logs() << EtcdLogs();
    note("a standby leads");
    EXPECT_LT(MsSince(cut_at), 10000) << replicas_->Logs();
    ASSERT_TRUE(stands_by_again(leader)) << replicas_->Log(leader);
    note(absl::StrCat("m", leader, " stands by"));
    CutFromEtcd(leader, false);

    // 4. An agent partitioned from everything, then healed.
    ASSERT_TRUE(batch(8)) << replicas_->Logs();
    const std::string agent = absl::StrCat("a", 1 + round % agents_);
    ASSERT_TRUE(lab_->Partition(agent).ok());
    note("partitioned " + agent);
    ASSERT_TRUE(batch(4)) << replicas_->Logs();
    std::this_thread::sleep_for(seconds(4));  // past its lease (3 s)
    ASSERT_TRUE(lab_->Heal(agent).ok());
    note("healed " + agent);

    // 5. An etcd member paused, then resumed.
    ASSERT_TRUE(batch(8)) << replicas_->Logs();
    const int member = round % 3;
    ASSERT_TRUE(etcd_->Pause(member).ok());
    note(absl::StrCat("paused etcd member ", member));
    ASSERT_TRUE(batch(4)) << replicas_->Logs();
    std::this_thread::sleep_for(seconds(2));
    ASSERT_TRUE(etcd_->Resume(member).ok());
    note(absl::StrCat("resumed etcd member ", member));
  }
  const int leader = replicas_->WaitLeader(seconds(30));
  ASSERT_GE(leader, 0);
  h.PointAt(replicas_->Addresses()[leader]);
  std::vector<std::string> ids;
  for (const auto& [id, lines] : expected_lines) ids.push_back(id);
  const auto [lost, twice] = CheckOnce(h, ids, seconds(90), expected_lines);
  note("all done");
  EXPECT_EQ(lost, 0) << absl::StrJoin(timeline, "\n");
  EXPECT_EQ(twice, 0);
  std::printf(
      "[combined] %d round(s) of: leader killed, leader paused, leader cut off from etcd, "
      "an agent partitioned, an etcd member paused; %zu executions acknowledged, %d "
      "lost, %d reported other than once, in %.1f s\n  %s\n",
      rounds, ids.size(), lost, twice, MsSince(t0) / 1000, absl::StrJoin(timeline, "\n  ").c_str());
  std::fflush(stdout);
}

}  // namespace
}  // namespace flotilla::testing
