// `flotilla component run`: the binary on the runnable example (with a
// shard killed) and on specs and flags it must refuse. Bounded by
// timeout(1); output checked through --json.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "support/flotilla_command.h"
#include "support/temp_dir.h"

namespace flotilla::shard {
namespace {

using ::flotilla::testing::CommandRun;

CommandRun Flotilla(const std::string& args) { return ::flotilla::testing::RunFlotilla(args, 120); }

const std::string kComponents = std::string(FLOTILLA_SOURCE_DIR) + "/examples/components";

TEST(ComponentRunCommandTest, RunsTheExampleAndRecoversAKilledShard) {
  flotilla::testing::TempDir dir;
  CommandRun r = Flotilla("--json component run " + kComponents +
                          "/log-pipeline-local/component.yaml --records 5000 --kill-shard "
                          "parse/0 --after 1000 --work-dir " +
                          dir.path().string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["records"], 5000);
  ASSERT_EQ(j["recoveries"].size(), 1u) << r.out;
  EXPECT_EQ(j["recoveries"][0]["shard"], "parse/0");
  EXPECT_TRUE(j["recoveries"][0]["injected"].get<bool>());
  ASSERT_EQ(j["output_files"].size(), 1u);
  std::ifstream out(j["output_files"][0].get<std::string>());
  std::stringstream text;
  text << out.rdbuf();
  EXPECT_NE(text.str().find("GET /api/v1/items/:id\trequests="), std::string::npos) << text.str();
  int restarted = 0;
  for (const auto& s : j["shards"]) restarted += s["restarts"].get<int>();
  EXPECT_EQ(restarted, 1);

  // `component status DIR` shows the finished run from its snapshot.
  r = Flotilla("--json component status " + dir.path().string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto status = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(status.is_array()) << r.out;
  ASSERT_EQ(status.size(), 1u) << r.out;
  EXPECT_EQ(status[0]["state"], "done");
  EXPECT_EQ(status[0]["shards"].size(), j["shards"].size());
  EXPECT_EQ(status[0]["recoveries"].size(), 1u);

  r = Flotilla("component status " + dir.path().string() + "/nothing-here");
  EXPECT_NE(r.status, 0) << r.out;
}

TEST(ComponentRunCommandTest, RefusesWhatTheRuntimeCannotRun) {
  // The plan-only example has function and module stages.
  CommandRun r = Flotilla("component run " + kComponents + "/log-pipeline.yaml");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("command stages only"), std::string::npos) << r.out;

  r = Flotilla("component run " + kComponents +
               "/log-pipeline-local/component.yaml --kill-shard nosuch/0 --after 1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("no such shard"), std::string::npos) << r.out;

  r = Flotilla("component run " + kComponents + "/log-pipeline-local/component.yaml --records 0");
  EXPECT_EQ(r.status, 2) << r.out;

  r = Flotilla("component run /nonexistent/spec.yaml");
  EXPECT_NE(r.status, 0) << r.out;
}

}  // namespace
}  // namespace flotilla::shard
