// `flotilla component plan`: the binary on the shipped example and on a
// bad spec. Bounded by timeout(1); output checked through --json.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "gtest/gtest.h"
#include "shard/topology.h"
#include "support/flotilla_command.h"
#include "support/temp_dir.h"

namespace flotilla::shard {
namespace {

using ::flotilla::testing::CommandRun;

CommandRun Flotilla(const std::string& args) { return ::flotilla::testing::RunFlotilla(args, 60); }

const std::string kExample =
    std::string(FLOTILLA_SOURCE_DIR) + "/examples/components/log-pipeline.yaml";

TEST(ComponentPlanCommandTest, PlansTheExampleForAGivenNode) {
  CommandRun r =
      Flotilla("--json component plan " + kExample + " --cpus 16 --memory 32Gi --reserve 0");
  ASSERT_EQ(r.status, 0) << r.out;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["component"], "log-pipeline");
  EXPECT_EQ(j["node"]["cpu_millis"], 15000);
  ASSERT_EQ(j["stages"].size(), 4u);
  int parse_shards = 0;
  for (const auto& s : j["stages"]) {
    EXPECT_FALSE(s["reasons"].empty()) << s.dump();
    if (s["stage"] == "parse") parse_shards = s["shards"];
  }
  EXPECT_GT(parse_shards, 1);
  for (const auto& s : j["shards"]) {
    auto cpus = ParseCpuList(s["cpuset"].get<std::string>());
    ASSERT_TRUE(cpus.ok()) << s.dump();
    EXPECT_FALSE(cpus->empty()) << s.dump();
    EXPECT_EQ(cpus->count(0), 0u) << "CPU 0 is reserved: " << s.dump();
  }
  EXPECT_FALSE(j["edges"].empty());
}

TEST(ComponentPlanCommandTest, HumanOutputExplainsEachStage) {
  CommandRun r = Flotilla("component plan " + kExample + " --cpus 4");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("parse:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("demand 2.16 cores"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("channels"), std::string::npos) << r.out;
}

TEST(ComponentPlanCommandTest, BadSpecExitsTwoWithTheKey) {
  flotilla::testing::TempDir dir;
  std::string path = dir.File("bad.yaml");
  std::ofstream(path) << "name: x\nstages:\n  - {name: a, code: {command: x}, partitions: 0}\n";
  CommandRun r = Flotilla("component plan " + path + " --cpus 2");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("stages[0].partitions: must be in [1, 4096], got 0"), std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace flotilla::shard
