// Predictive migration end to end: a Python task whose memory grows past its
// template's limit on a node with no room left is marked as needing
// migration by that agent's resize loop, and the manager moves it — by
// checkpoint and restore — to a node with room, where it finishes with the
// state it had built up. Real CRIU, real agents.

#include <gtest/gtest.h>
#include <unistd.h>

#include <set>

#include "checkpoint/checkpointer.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

const char kAdaptive[] = "resize:\n  enabled: true\n  interval_ms: 200\n";

// Grows to 450 MB in 10 MB steps (~7 s), holds it for 6 s, then prints how
// much it holds: after a move the bytes must still be there.
const char kGrow[] = R"py(
import time
chunks = []
for _ in range(45):
    chunks.append(bytearray(10 * 1000 * 1000))
    time.sleep(0.15)
for _ in range(6):
    time.sleep(1)
print("held", sum(len(c) for c in chunks), "bytes")
)py";

TEST(AutoMigrationTest, TaskOnAFullNodeIsMovedToOneWithRoomAndKeepsItsState) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes and CRIU need root";
  FederationHarness h;
  h.StartManager(3000);
  AgentSpec small;
  small.id = "small";
  small.region = "small";
  small.memory_bytes = 300ll << 20;  // no room to raise a 512 MiB limit
  small.extra_config = kAdaptive;
  h.StartAgent(small);
  AgentSpec big;
  big.id = "big";
  big.region = "big";
  big.extra_config = kAdaptive;
  h.StartAgent(big);
  ASSERT_TRUE(h.WaitOnline(2)) << h.ReadLog("manager.log");
  if (std::string why = h.WaitCheckpointSettled({"small", "big"}); !why.empty()) {
    GTEST_SKIP() << "CHECKPOINTING IS NOT AVAILABLE, skipping: " << why;
  }

  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source(kGrow);
  r.set_user_id("tester");
  r.set_timeout_ms(90'000);
  r.mutable_placement()->add_preferred_regions("small");
  v1::SubmitResponse resp;
  ASSERT_TRUE(h.Submit(r, &resp).ok());
  const std::string id = resp.execution().id();

  std::set<std::string> nodes;
  bool flagged = false;
  FederationHarness::WaitUntil(std::chrono::seconds(90), [&] {
    v1::Execution e;
    if (!h.Get(id, &e).ok()) return false;
    if (!e.node_id().empty()) nodes.insert(e.node_id());
    flagged |= e.usage().needs_migration();
    return e.state() >= v1::EXECUTION_SUCCEEDED;
  });
  v1::Execution e;
  ASSERT_TRUE(h.Get(id, &e).ok());
  EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << e.DebugString() << h.ReadLog("small.log");
  EXPECT_TRUE(nodes.count("small")) << "it should have started on the preferred node";
  EXPECT_EQ(e.node_id(), "big") << "it should have been moved to the node with room";
  EXPECT_TRUE(flagged) << "the small node's agent should have asked for the migration";
  EXPECT_NE(e.result().stdout().find("held 450000000 bytes"), std::string::npos)
      << e.result().stdout() << e.result().stderr();
  EXPECT_EQ(e.attempt(), 1u) << "a migration is not a new attempt";
}

}  // namespace
}  // namespace flotilla::testing
