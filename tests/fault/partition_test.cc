// Faults of the links between hosts: the manager and each agent run in a
// network namespace of their own (netlab), joined by a bridge, talking mTLS
// over real links that the tests cut, slow down and make lossy.
//
// - An agent partitioned from the manager while it runs tasks: the tasks
//   run again elsewhere once its lease expires; when the link heals, the
//   agent's copies (orphans by then) are killed and nothing it reports
//   changes the outcome — each execution is reported once, with the other
//   node's result.
// - An agent behind a slow, lossy link (100 ms each way, 5 % loss): tasks
//   still complete, with correct results.
//
// Needs root. Every namespace, link and process is removed at the end of
// each test (the Lab's destructor), and leftovers of a crashed run are
// removed by the next Lab.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "netlab/netlab.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Processes named `comm` below `ancestor` in the process tree (the agent is
// a subreaper, so its sandboxes' processes stay below it).
int CountDescendants(pid_t ancestor, const std::string& comm) {
  std::map<pid_t, pid_t> parent;
  std::map<pid_t, std::string> name;
  DIR* d = opendir("/proc");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    const pid_t pid = static_cast<pid_t>(atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    if (!std::getline(in, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces; it ends at the last ')'.
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    name[pid] = line.substr(open + 1, close - open - 1);
    parent[pid] = static_cast<pid_t>(atoi(line.c_str() + close + 4));
  }
  closedir(d);
  int n = 0;
  for (const auto& [pid, c] : name) {
    if (c != comm) continue;
    for (pid_t p = parent[pid], hops = 0; p > 1 && hops < 64; p = parent[p], ++hops) {
      if (p == ancestor) {
        ++n;
        break;
      }
    }
  }
  return n;
}

class PartitionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "hosts as network namespaces need root";
    auto lab = netlab::Lab::Create();
    ASSERT_TRUE(lab.ok()) << lab.status();
    lab_ = std::move(*lab);
    h_ = std::make_unique<FederationHarness>();
    h_->UseHosts(lab_.get());
  }
  void TearDown() override {
    h_.reset();  // its processes first, then the hosts they ran in
    lab_.reset();
  }
  std::unique_ptr<netlab::Lab> lab_;
  std::unique_ptr<FederationHarness> h_;
};

TEST_F(PartitionTest, ManagerAndAgentsTalkOverTheBridgeWithMutualTls) {
  FederationHarness& h = *h_;
  h.StartManager();
  // The manager listens on its host's address, not on loopback.
  EXPECT_EQ(h.manager_address().rfind(lab_->Find("manager")->address + ":", 0), 0u)
      << h.manager_address();
  h.StartAgent({.id = "a"});
  h.StartAgent({.id = "b"});
  ASSERT_TRUE(h.WaitOnline(2)) << h.ReadLog("manager.log") << h.ReadLog("a.log");
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(h.ListNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) {
    EXPECT_EQ(n.address().rfind(lab_->Find(n.id())->address + ":", 0), 0u) << n.address();
  }
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(FederationHarness::Shell("echo over-the-bridge"), &resp).ok());
  auto done = h.WaitAllDone({resp.execution().id()}, seconds(30));
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done.begin()->second.state(), v1::EXECUTION_SUCCEEDED);
  EXPECT_EQ(done.begin()->second.result().stdout(), "over-the-bridge\n");
}

TEST_F(PartitionTest, PartitionedAgentsTasksRunElsewhereAndItsOrphansAreKilledOnHealing) {
  FederationHarness& h = *h_;
  h.agent_log_level = "info";
  h.StartManager(/*lease_timeout_ms=*/1500);
  h.StartAgent({.id = "a"});
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  // On a the tasks outlive the test's patience; anywhere else they finish
  // at once, so whose result counts is plain from the output.
  const std::string script =
      "if [ \"$FLOTILLA_NODE_ID\" = a ]; then sleep 45; fi; echo \"ran on $FLOTILLA_NODE_ID\"";
  constexpr int kTasks = 3;
  std::vector<std::string> ids;
  for (int i = 0; i < kTasks; ++i) {
    v1::SubmitResponse resp;
    ASSERT_TRUE(h.Submit(FederationHarness::Shell(script), &resp).ok());
    ids.push_back(resp.execution().id());
  }
  ASSERT_TRUE(FederationHarness::WaitUntil(seconds(30), [&] {
    for (const auto& id : ids) {
      v1::Execution e;
      if (!h.Get(id, &e).ok() || e.state() != v1::EXECUTION_RUNNING || e.node_id() != "a") {
        return false;
      }
    }
    return CountDescendants(h.agent_pid("a"), "sleep") == kTasks;
  })) << "the tasks did not start on a\n" << h.ReadLog("a.log");
  h.StartAgent({.id = "b"});
  ASSERT_TRUE(h.WaitOnline(2)) << h.ReadLog("b.log");

  const auto t_partition = Clock::now();
  ASSERT_TRUE(lab_->Partition("a").ok());
  auto done = h.WaitAllDone(ids, seconds(30));
  const double rerun_s = SecondsSince(t_partition);
  ASSERT_EQ(done.size(), ids.size()) << h.ReadLog("manager.log");
  std::map<std::string, v1::Execution> first;
  for (const auto& [id, e] : done) {
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id;
    EXPECT_EQ(e.node_id(), "b") << id;
    EXPECT_GE(e.attempt(), 2u) << id;
    EXPECT_EQ(e.result().stdout(), "ran on b\n") << id;
    first[id] = e;
  }
  // a has heard nothing: its copies still run, orphaned.
  EXPECT_EQ(CountDescendants(h.agent_pid("a"), "sleep"), kTasks);

  const auto t_heal = Clock::now();
  ASSERT_TRUE(lab_->Heal("a").ok());
  const bool killed = FederationHarness::WaitUntil(
      seconds(20), [&] { return CountDescendants(h.agent_pid("a"), "sleep") == 0; });
  const double kill_s = SecondsSince(t_heal);
  EXPECT_TRUE(killed) << "a's orphaned copies still run " << kill_s << " s after healing\n"
                      << h.ReadLog("a.log");
  // a is back, under a new epoch.
  EXPECT_TRUE(h.WaitOnline(2, seconds(15))) << h.ReadLog("a.log");

  // Whatever a reports now (its cancelled copies' results) is stale: every
  // execution keeps b's result, attempt and finish time.
  FederationHarness::WaitUntil(seconds(3), [] { return false; });
  for (const auto& [id, e] : first) {
    v1::Execution now;
    ASSERT_TRUE(h.Get(id, &now).ok());
    EXPECT_EQ(now.state(), v1::EXECUTION_SUCCEEDED) << id;
    EXPECT_EQ(now.node_id(), "b") << id;
    EXPECT_EQ(now.attempt(), e.attempt()) << id;
    EXPECT_EQ(now.finished_unix_ms(), e.finished_unix_ms()) << id;
    EXPECT_EQ(now.result().stdout(), "ran on b\n") << id;
  }
  const std::string a_log = h.ReadLog("a.log");
  EXPECT_NE(a_log.find("is superseded: stopping it"), std::string::npos) << a_log;
  std::cerr << "[partition] tasks re-ran on b " << rerun_s << " s after the partition (lease 1.5 s); "
            << "a's orphans were killed " << kill_s << " s after healing\n";
}

TEST_F(PartitionTest, TasksCompleteOverASlowLossyLink) {
  const auto& support = netlab::Lab::Support();
  if (!support.netem && !support.nfqueue) {
    GTEST_SKIP() << "SKIPPED LOUDLY: cannot shape links on this kernel: " << support.why;
  }
  if (!support.netem) std::cerr << "NOTE: " << support.why << "\n";
  FederationHarness& h = *h_;
  // Five heartbeats: a retransmitted heartbeat (TCP's minimum RTO is 200 ms)
  // must not cost the node its lease, on a loaded machine either.
  h.StartManager(/*lease_timeout_ms=*/5000);
  h.StartAgent({.id = "slow"});
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  constexpr int kTasks = 20;
  // The same batch over a plain link first, for the comparison.
  auto run_batch = [&](std::map<std::string, v1::Execution>* done, std::vector<std::string>* ids) {
    const auto t0 = Clock::now();
    for (int i = 0; i < kTasks; ++i) {
      v1::SubmitResponse resp;
      // Enough output for several packets each way.
      if (!h.Submit(FederationHarness::Shell("seq 1 " + std::to_string(2000 + i)), &resp).ok()) {
        return -1.0;
      }
      ids->push_back(resp.execution().id());
    }
    *done = h.WaitAllDone(*ids, seconds(50));
    return SecondsSince(t0);
  };
  std::map<std::string, v1::Execution> plain_done, done;
  std::vector<std::string> plain_ids, ids;
  const double plain = run_batch(&plain_done, &plain_ids);
  ASSERT_EQ(plain_done.size(), plain_ids.size());
  ASSERT_TRUE(lab_->Shape("slow", {milliseconds(100), milliseconds(10), 0.05}).ok());
  const double took = run_batch(&done, &ids);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kTasks));
  ASSERT_EQ(done.size(), ids.size()) << h.ReadLog("manager.log") << h.ReadLog("slow.log");
  for (int i = 0; i < kTasks; ++i) {
    const v1::Execution& e = done[ids[i]];
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << ids[i];
    std::string want;
    for (int k = 1; k <= 2000 + i; ++k) want += std::to_string(k) + "\n";
    EXPECT_EQ(e.result().stdout(), want) << ids[i];
    EXPECT_EQ(e.attempt(), 1u) << ids[i] << ": the lease should survive a slow link";
  }
  std::cerr << "[lossy link] " << kTasks << " tasks over 100 ms ± 10 ms each way, 5 % loss ("
            << (support.netem ? "netem" : "nfqueue") << "): " << took << " s (plain link: "
            << plain << " s)\n";
}

}  // namespace
}  // namespace flotilla::testing
