// The component runtime end to end: the shipped log pipeline
// (examples/components/log-pipeline-local) runs sharded, its sink's output
// equals the same code run in one process, a shard killed mid-stream is
// restarted and resumes with nothing lost or repeated, and nothing — no
// process, no cgroup — is left behind.
#include "shard/runtime.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "shard/component.h"
#include "shard/placement.h"
#include "shard/sharding_engine.h"
#include "shard/topology.h"

namespace flotilla::shard {
namespace {

namespace fs = std::filesystem;

const std::string kExample =
    std::string(FLOTILLA_SOURCE_DIR) + "/examples/components/log-pipeline-local";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The single-process reference, bounded by timeout(1).
std::string Reference(int64_t records) {
  std::string cmd = "cd " + kExample + " && FLOTILLA_RECORDS=" + std::to_string(records) +
                    " timeout 120 python3 single_process.py";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return "";
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  return out;
}

struct Planned {
  ComponentSpec spec;
  ShardPlan plan;
  NodePlacement placement;
};

void ReplaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
}

// The example's spec, adjusted for tests: python3 by its real path with -S
// (a pyenv shim alone takes ~0.6 s to start here, which would be measured
// as the restarted shard's resume time), and an aggregate heavy enough that
// the engine splits it, so key routing crosses shards.
std::string ExampleYamlForTest() {
  std::string yaml = ReadFile(kExample + "/component.yaml");
  if (fs::exists("/usr/bin/python3")) {
    ReplaceAll(yaml, "[\"python3\",", "[\"/usr/bin/python3\", \"-S\",");
  }
  ReplaceAll(yaml, "aggregate: {messages_per_s: 57000, service_time: 1.1us}",
             "aggregate: {messages_per_s: 57000, service_time: 3us}");
  return yaml;
}

// Plans for a 2-CPU node, whatever this machine has: the tests then see the
// same shards everywhere (pinning is off: CPU ids may not exist here).
Planned PlanExample(std::string yaml_text = "") {
  Planned p;
  if (yaml_text.empty()) yaml_text = ExampleYamlForTest();
  auto spec = ParseComponentSpec(yaml_text, "test.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  p.spec = *spec;
  NodeResources node{2000, 1ll << 30};
  ShardingOptions sharding;
  sharding.min_saved_us = 0.1;  // `component run --min-saved-us 0.1`
  auto plan = PlanShards(p.spec, p.spec.measured, node, sharding);
  EXPECT_TRUE(plan.ok()) << plan.status();
  p.plan = *plan;
  auto placement =
      PlaceShards(p.plan.shards, p.plan.edges, CpuTopology::Uniform(2, 1, 1), PlacementOptions{});
  EXPECT_TRUE(placement.ok()) << placement.status();
  p.placement = *placement;
  return p;
}

RuntimeOptions Options(const std::string& name, int64_t records) {
  RuntimeOptions o;
  o.work_dir = (fs::temp_directory_path() /
                ("flotilla-runtime-test-" + name + "-" + std::to_string(getpid())))
                   .string();
  o.stage_dir = kExample;
  o.records = records;
  o.pin = false;
  o.deadline = std::chrono::seconds(120);
  return o;
}

// No child of this process is left, running or zombie.
void ExpectNoChildren() {
  int status;
  errno = 0;
  pid_t left = waitpid(-1, &status, WNOHANG);
  EXPECT_EQ(left, -1) << "a child was left: pid " << left << " "
                      << ReadFile("/proc/" + std::to_string(left) + "/comm");
  EXPECT_EQ(errno, ECHILD);
}

std::string SinkOutput(const RunReport& report) {
  EXPECT_EQ(report.output_files.size(), 1u);
  return report.output_files.empty() ? "" : ReadFile(report.output_files[0]);
}

TEST(RuntimeTest, ShardedOutputEqualsSingleProcessRun) {
  constexpr int64_t kRecords = 20000;
  Planned p = PlanExample();
  ASSERT_GT(p.plan.shards.size(), p.spec.stages.size()) << "the example should be sharded";
  auto options = Options("equal", kRecords);
  std::string events;
  options.on_event = [&events](const std::string& line) { events += line + "\n"; };
  auto report = RunComponent(p.spec, p.plan, p.placement, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->source_records, static_cast<uint64_t>(kRecords));
  EXPECT_TRUE(report->recoveries.empty());
  const std::string out = SinkOutput(*report);
  EXPECT_FALSE(out.empty());
  EXPECT_EQ(out, Reference(kRecords));
  // Either the shards had a cgroup, now removed, or the run said why not.
  EXPECT_TRUE(!report->cgroup_dirs.empty() || events.find("no cgroup") != std::string::npos)
      << events;
  for (const auto& dir : report->cgroup_dirs) EXPECT_FALSE(fs::exists(dir)) << dir;
  ExpectNoChildren();
  fs::remove_all(options.work_dir);
}

class KillShardTest : public ::testing::TestWithParam<std::string> {};

// Kills one shard of each kind (source, stateless, keyed-state,
// global-state sink) part-way and checks the output is still exactly the
// reference: a lost record would lower a count, a repeated one raise it.
TEST_P(KillShardTest, RecoversWithNothingLostOrRepeated) {
  constexpr int64_t kRecords = 30000;
  Planned p = PlanExample();
  auto options = Options("kill", kRecords);
  options.kill_shard = GetParam();
  // Sinks and aggregates commit one line per input of theirs; a third of
  // the way into what reaches them.
  options.kill_after = GetParam().rfind("sink", 0) == 0 ? 5 : 4000;
  auto report = RunComponent(p.spec, p.plan, p.placement, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->recoveries.size(), 1u);
  const RecoveryEvent& r = report->recoveries[0];
  EXPECT_EQ(r.shard, GetParam());
  EXPECT_TRUE(r.injected);
  EXPECT_LT(r.restart_ms, 1000);
  EXPECT_LT(r.resume_ms, 1000);
  EXPECT_EQ(report->source_records, static_cast<uint64_t>(kRecords));
  EXPECT_EQ(SinkOutput(*report), Reference(kRecords));
  for (const auto& dir : report->cgroup_dirs) EXPECT_FALSE(fs::exists(dir)) << dir;
  ExpectNoChildren();
  fs::remove_all(options.work_dir);
}

INSTANTIATE_TEST_SUITE_P(EachKind, KillShardTest,
                         ::testing::Values("gen/0", "parse/0", "aggregate/1", "sink/0"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '/' ? '_' : c;
                           return name;
                         });

TEST(RuntimeTest, RejectsWhatItCannotRun) {
  const std::string broadcast = R"(
name: b
stages:
  - {name: a, code: {command: ["cat"]}}
  - {name: b, code: {command: ["cat"]}}
edges:
  - {from: a, to: b, routing: broadcast}
)";
  auto spec = ParseComponentSpec(broadcast, "b.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto st = ValidateForRuntime(*spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("broadcast"), std::string::npos) << st;

  const std::string function = R"(
name: f
stages:
  - {name: a, code: {function: "mod:fn"}}
)";
  spec = ParseComponentSpec(function, "f.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  st = ValidateForRuntime(*spec);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("command stages only"), std::string::npos) << st;

  const std::string fan_out = R"(
name: o
stages:
  - {name: a, code: {command: ["cat"]}}
  - {name: b, code: {command: ["cat"]}}
  - {name: c, code: {command: ["cat"]}}
edges:
  - {from: a, to: b}
  - {from: a, to: c}
)";
  spec = ParseComponentSpec(fan_out, "o.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(ValidateForRuntime(*spec).code(), absl::StatusCode::kInvalidArgument);
}

// A stage that keeps dying fails the run after max_restarts, with the
// shard and its exit status named, and leaves nothing running.
TEST(RuntimeTest, ShardThatKeepsFailingFailsTheRun) {
  const std::string yaml = R"(
name: broken
stages:
  - {name: gen, code: {command: ["python3", "stages/gen.py"]}}
  - {name: bad, code: {command: ["sh", "-c", "exit 3"]}}
edges:
  - {from: gen, to: bad}
)";
  Planned p = PlanExample(yaml);
  auto options = Options("broken", 100);
  options.max_restarts = 2;
  auto report = RunComponent(p.spec, p.plan, p.placement, options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(report.status().message().find("bad/0"), std::string::npos) << report.status();
  ExpectNoChildren();
  fs::remove_all(options.work_dir);
}

// A stage that exits with inputs unanswered breaks the line contract the
// commit relies on: the run fails rather than guessing what they became.
TEST(RuntimeTest, StageBreakingTheLineContractFailsTheRun) {
  const std::string yaml = R"(
name: short
stages:
  - {name: gen, code: {command: ["python3", "stages/gen.py"]}}
  - {name: head, code: {command: ["head", "-n", "3"]}}
edges:
  - {from: gen, to: head}
)";
  Planned p = PlanExample(yaml);
  auto options = Options("short", 1000);
  options.max_restarts = 1;
  auto report = RunComponent(p.spec, p.plan, p.placement, options);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kAborted);
  ExpectNoChildren();
  fs::remove_all(options.work_dir);
}

TEST(RuntimeTest, PartitionOfIsStableAndInRange) {
  EXPECT_EQ(PartitionOf("GET /", 1), 0);
  for (int parts : {2, 3, 32}) {
    int p = PartitionOf("GET /api/v1/items", parts);
    EXPECT_GE(p, 0);
    EXPECT_LT(p, parts);
    EXPECT_EQ(p, PartitionOf("GET /api/v1/items", parts));
  }
}

}  // namespace
}  // namespace flotilla::shard
