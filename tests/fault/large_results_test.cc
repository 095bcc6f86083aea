// Flow control of results: large results pile up on the agents while the
// manager is paused (SIGSTOP), then reach it in batches and chunks that each
// stay under its message limit. Before, the agent sent every unconfirmed
// result in one call; six results of 2 MB exceeded the manager's 9 MiB limit
// on every retry and the executions stayed RUNNING forever.
#include <gtest/gtest.h>
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

constexpr int kTasks = 6;
constexpr int kLines = 150000;  // "taskN 0000001\n": 14 bytes a line, 2.1 MB

std::string ExpectedOutput(int task) {
  std::string out;
  out.reserve(static_cast<size_t>(kLines) * 14);
  for (int i = 1; i <= kLines; ++i) absl::StrAppendFormat(&out, "task%d %07d\n", task, i);
  return out;
}

// Resumes a paused process however the test ends, so that the harness can
// stop it.
struct Resume {
  pid_t pid;
  ~Resume() { kill(pid, SIGCONT); }
};

TEST(Fault, LargeResultsFinishWhileTheManagerIsPausedMidway) {
  FederationHarness h;
  // The lease outlasts the pause: this is about results, not re-scheduling.
  h.StartManager(/*lease_timeout_ms=*/15000);
  // One agent holds all six results: 12.6 MB, over the manager's 9 MiB
  // receive limit had they travelled in one call.
  h.StartAgent({.id = "a1", .cpu_millis = 2000, .extra_config = "output_limit_bytes: 4194304\n"});
  ASSERT_TRUE(h.WaitOnline(1));

  std::vector<std::string> ids;
  for (int t = 0; t < kTasks; ++t) {
    // Running when the manager stops, finished while it is stopped.
    auto r = FederationHarness::Shell(
        absl::StrCat("sleep 2; seq -f 'task", t, " %07.0f' 1 ", kLines));
    r.mutable_resources()->set_cpu_millis(250);
    r.set_timeout_ms(30000);
    v1::SubmitResponse resp;
    ASSERT_TRUE(h.Submit(r, &resp).ok());
    ids.push_back(resp.execution().id());
  }
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(10), [&] {
    for (const auto& id : ids) {
      v1::Execution e;
      if (!h.Get(id, &e).ok() || e.state() != v1::EXECUTION_RUNNING) return false;
    }
    return true;
  })) << "not all tasks started";

  ASSERT_EQ(kill(h.manager_pid(), SIGSTOP), 0);
  {
    Resume resume{h.manager_pid()};
    // The fault itself lasts 6 s: the tasks end and their results wait.
    std::this_thread::sleep_for(std::chrono::seconds(6));
  }

  auto done = h.WaitAllDone(ids, std::chrono::seconds(20));
  ASSERT_EQ(done.size(), ids.size()) << h.ReadLog("a1.log") << h.ReadLog("manager.log");
  for (int t = 0; t < kTasks; ++t) {
    const v1::Execution& e = done.at(ids[static_cast<size_t>(t)]);
    ASSERT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << ids[t] << " " << e.error();
    EXPECT_EQ(e.attempt(), 1u) << ids[t] << " was re-run: its first result was lost";
    EXPECT_FALSE(e.result().stdout_truncated());
    const std::string expected = ExpectedOutput(t);
    ASSERT_EQ(e.result().stdout().size(), expected.size()) << ids[t];
    EXPECT_TRUE(e.result().stdout() == expected) << ids[t] << ": output differs";
  }
}

}  // namespace
}  // namespace flotilla::testing
