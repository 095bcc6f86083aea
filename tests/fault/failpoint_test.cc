// The manager killed with SIGKILL at each of its persist points (a failpoint
// per point, common/failpoint.h), then restarted on its database: every
// execution whose submit was acknowledged finishes, with its output, exactly
// once; a cancel that was recorded stays a cancel. This is the "persist, then
// acknowledge" contract of manager/writer.h seen from outside.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

struct Point {
  std::string failpoint;  // FLOTILLA_FAILPOINT value
  bool cancel = false;    // the scenario cancels a long task (to reach cancel.*)
};

class FailpointTest : public ::testing::TestWithParam<Point> {};

TEST_P(FailpointTest, ManagerKilledAtPersistPointLosesNothingAcknowledged) {
  const Point& point = GetParam();
  FederationHarness h;
  h.manager_failpoint = point.failpoint;
  h.StartManager(/*lease_timeout_ms=*/3000);
  const std::string address = h.manager_address();
  h.StartAgent({.id = "a1"});
  ASSERT_TRUE(h.WaitOnline(1)) << h.ReadLog("manager.log");

  // Submit until the manager dies (or 12 are in); remember what was acknowledged.
  std::vector<std::string> acked;
  std::string cancelled;
  for (int i = 0; i < 12 && !h.ManagerExited(); ++i) {
    v1::SubmitResponse resp;
    auto r = FederationHarness::Shell("echo ok-" + std::to_string(i));
    r.set_request_id("fp-" + std::to_string(i));
    if (h.Submit(r, &resp).ok()) acked.push_back(resp.execution().id());
  }
  if (point.cancel && !h.ManagerExited()) {
    v1::SubmitResponse resp;
    auto r = FederationHarness::Shell("sleep 60");
    if (h.Submit(r, &resp).ok()) {
      cancelled = resp.execution().id();
      FederationHarness::WaitUntil(std::chrono::seconds(10), [&] {
        v1::Execution e;
        return h.ManagerExited() ||
               (h.Get(cancelled, &e).ok() && e.state() == v1::EXECUTION_RUNNING);
      });
      v1::CancelResponse c;
      (void)h.Cancel(cancelled, &c);  // may die before answering: that is the point
    }
  }
  // The failpoint must be reached: the manager kills itself.
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    return h.ManagerExited();
  })) << point.failpoint << " was never hit\n" << h.ReadLog("manager.log");
  EXPECT_NE(h.ReadLog("manager.log").find("failpoint " + point.failpoint.substr(0, point.failpoint.find(':'))),
            std::string::npos);

  h.manager_failpoint.clear();
  h.StartManager(/*lease_timeout_ms=*/3000, address);
  auto done = h.WaitAllDone(acked, std::chrono::seconds(60));
  ASSERT_EQ(done.size(), acked.size()) << h.ReadLog("manager.log");
  for (const auto& [id, e] : done) {
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id << " " << e.error();
    const std::string n = id.substr(3);  // "fp-N"
    EXPECT_EQ(e.result().stdout(), "ok-" + n + "\n") << id;
  }
  if (!cancelled.empty()) {
    // Acknowledged or not, the cancel was recorded before the crash (the
    // point is after its write): the execution ends cancelled.
    auto c = h.WaitAllDone({cancelled}, std::chrono::seconds(30));
    ASSERT_EQ(c.size(), 1u) << h.ReadLog("manager.log");
    EXPECT_EQ(c[cancelled].state(), v1::EXECUTION_CANCELLED) << c[cancelled].error();
  }
}

INSTANTIATE_TEST_SUITE_P(
    PersistPoints, FailpointTest,
    ::testing::Values(Point{"submit.after_persist:3"}, Point{"writer.before_commit:4"},
                      Point{"writer.after_commit:5"}, Point{"dispatch.after_persist"},
                      Point{"result.after_persist"}, Point{"cancel.after_persist", true}),
    [](const ::testing::TestParamInfo<Point>& info) {
      std::string name = info.param.failpoint;
      for (char& c : name) {
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace flotilla::testing
