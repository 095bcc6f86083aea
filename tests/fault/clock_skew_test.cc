// Agents whose wall clocks are wrong: one 40 minutes behind the manager,
// one 40 minutes ahead. The manager must not depend on agents' clocks:
// leases run on its own monotonic clock (an agent's heartbeats carry no
// time), and executions' times are the manager's. So both agents stay
// online under their first epoch, and tasks run on both with times that
// agree with the manager's clock.
//
// Time namespaces do not shift CLOCK_REALTIME, so the skew comes from
// libfaketime (LD_PRELOAD; the monotonic clock is left alone, as a skewed
// host's would be). Skews stay inside the hour by which certificates are
// back-dated (auth/pki.cc): beyond it, a host behind the CA would reject
// the manager's certificate as not yet valid — mTLS needs clocks within an
// hour, which NTP gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

constexpr char kFakeTime[] = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Minutes between the first spdlog timestamp in `log` ("[YYYY-mm-dd
// HH:MM:SS.mmm]", the agent's wall clock) and `reference_unix_s`.
double LogSkewMinutes(const std::string& log, time_t reference_unix_s) {
  const size_t open = log.find("[20");
  if (open == std::string::npos) return 0;
  std::tm tm{};
  if (strptime(log.c_str() + open + 1, "%Y-%m-%d %H:%M:%S", &tm) == nullptr) return 0;
  return static_cast<double>(timegm(&tm) - reference_unix_s) / 60.0;
}

std::vector<std::string> Skewed(const std::string& offset) {
  return {std::string("LD_PRELOAD=") + kFakeTime, "FAKETIME=" + offset,
          "FAKETIME_DONT_FAKE_MONOTONIC=1"};
}

TEST(ClockSkewTest, ManagerDoesNotDependOnAgentsClocks) {
  if (!std::filesystem::exists(kFakeTime)) {
    GTEST_SKIP() << "SKIPPED LOUDLY: libfaketime is not installed (apt-get install libfaketime; "
                    "scripts/install-deps does)";
  }
  FederationHarness h;
  h.agent_log_level = "info";
  // A lease of three heartbeats: an expiry here must mean the clocks, not a
  // loaded machine's scheduling.
  h.StartManager(/*lease_timeout_ms=*/3000);
  const time_t started = time(nullptr);
  h.StartAgent({.id = "behind", .region = "behind", .env = Skewed("-40m")});
  h.StartAgent({.id = "ahead", .region = "ahead", .env = Skewed("+40m")});
  ASSERT_TRUE(h.WaitOnline(2)) << h.ReadLog("behind.log") << h.ReadLog("ahead.log");
  // The skew is real: the agents log by their own clocks.
  EXPECT_NEAR(LogSkewMinutes(h.ReadLog("behind.log"), started), -40, 1) << h.ReadLog("behind.log");
  EXPECT_NEAR(LogSkewMinutes(h.ReadLog("ahead.log"), started), 40, 1) << h.ReadLog("ahead.log");

  std::map<std::string, uint64_t> epochs;
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(h.ListNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) epochs[n.id()] = n.epoch();

  const int64_t t0 = NowUnixMs();
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) {
    v1::SubmitResponse resp;
    auto r = FederationHarness::Shell("sleep 0.2; echo ok");
    // Half on each agent, whatever placement prefers.
    r.mutable_placement()->add_required_regions(i % 2 ? "ahead" : "behind");
    ASSERT_TRUE(h.Submit(r, &resp).ok());
    ids.push_back(resp.execution().id());
  }
  auto done = h.WaitAllDone(ids, std::chrono::seconds(40));
  const int64_t t1 = NowUnixMs();
  ASSERT_EQ(done.size(), ids.size());
  std::map<std::string, int> per_node;
  for (const auto& [id, e] : done) {
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id;
    EXPECT_EQ(e.result().stdout(), "ok\n") << id;
    EXPECT_EQ(e.attempt(), 1u) << id << " ran twice: a lease expired";
    // The manager's clock, not the agents' (which are 40 minutes off).
    EXPECT_GE(e.started_unix_ms(), t0 - 2000) << id;
    EXPECT_LE(e.finished_unix_ms(), t1 + 2000) << id;
    EXPECT_GE(e.finished_unix_ms(), e.started_unix_ms()) << id;
    ++per_node[e.node_id()];
  }
  EXPECT_EQ(per_node["behind"], 6);
  EXPECT_EQ(per_node["ahead"], 6);

  // Several lease periods later neither has been declared lost.
  FederationHarness::WaitUntil(std::chrono::seconds(4), [] { return false; });
  ASSERT_TRUE(h.ListNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) {
    EXPECT_EQ(n.status(), v1::NODE_ONLINE) << n.id();
    EXPECT_EQ(n.epoch(), epochs[n.id()]) << n.id() << " registered again: its lease expired";
  }
}

}  // namespace
}  // namespace flotilla::testing
