// ParseComponentSpec: the example spec parses to what it says; every kind
// of bad input is refused with an error that names the key and the value.
#include "shard/component.h"

#include <string>

#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

constexpr char kSpec[] = R"(
name: log-pipeline
usage:
  priority: 5
  limits: {cpu: 3500m, memory: 2Gi}
  slo: {latency_p99: 5ms, throughput: 80000}
data:
  - {name: geoip, uri: "file:///var/lib/geoip.mmdb", size: 64Mi}
stages:
  - name: ingest
    code: {command: ["./ingest", "--port", "9000"]}
    resources: {cpu: 500m, memory: 64Mi}
  - name: parse
    code: {function: "pipeline.parse:parse_line"}
    partitions: 16
    resources: {cpu: 2, memory: 128Mi}
    data: [geoip]
  - name: aggregate
    code: {module: pipeline.aggregate}
    partitions: 16
    max_shards: 4
    state: {name: counts, scope: keyed, size: 512Mi}
edges:
  - {from: ingest, to: parse}
  - {from: parse, to: aggregate, routing: key}
measured:
  parse: {messages_per_s: 80000, service_time: 25us}
)";

absl::Status ParseError(const std::string& yaml) {
  return ParseComponentSpec(yaml, "c.yaml").status();
}

// Replaces the first occurrence of `from` in kSpec.
std::string Edit(const std::string& from, const std::string& to) {
  std::string s = kSpec;
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

TEST(ComponentSpecTest, ParsesEveryPart) {
  auto spec = ParseComponentSpec(kSpec, "c.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "log-pipeline");
  EXPECT_EQ(spec->usage.priority, 5);
  EXPECT_EQ(spec->usage.cpu_limit_millis, 3500);
  EXPECT_EQ(spec->usage.memory_limit_bytes, 2ll << 30);
  EXPECT_EQ(spec->usage.slo_latency_p99_us, 5000);
  EXPECT_EQ(spec->usage.slo_throughput_per_s, 80000);
  ASSERT_EQ(spec->stages.size(), 3u);
  const Stage& ingest = spec->stages[0];
  EXPECT_EQ(ingest.code.kind, CodeKind::kCommand);
  EXPECT_EQ(ingest.code.argv, (std::vector<std::string>{"./ingest", "--port", "9000"}));
  EXPECT_EQ(ingest.partitions, 1);
  EXPECT_EQ(ingest.resources.cpu_millis, 500);
  const Stage& parse = spec->stages[1];
  EXPECT_EQ(parse.code.kind, CodeKind::kPythonFunction);
  EXPECT_EQ(parse.code.target, "pipeline.parse:parse_line");
  EXPECT_EQ(parse.partitions, 16);
  EXPECT_EQ(parse.data, std::vector<std::string>{"geoip"});
  const Stage& agg = spec->stages[2];
  EXPECT_EQ(agg.code.kind, CodeKind::kPythonModule);
  EXPECT_EQ(agg.max_shards, 4);
  ASSERT_TRUE(agg.state.has_value());
  EXPECT_EQ(agg.state->scope, StateScope::kKeyed);
  EXPECT_EQ(agg.state->size_bytes, 512ll << 20);
  ASSERT_EQ(spec->edges.size(), 2u);
  EXPECT_EQ(spec->edges[0].routing, Routing::kShuffle);
  EXPECT_EQ(spec->edges[1].routing, Routing::kKey);
  EXPECT_EQ(spec->measured.at("parse").messages_per_s, 80000);
  EXPECT_EQ(spec->measured.at("parse").service_time_us, 25);
}

struct BadCase {
  const char* name;
  std::string yaml;
  const char* expect;  // a part of the message
};

TEST(ComponentSpecTest, RefusesBadInputWithTheKeyAndValue) {
  const BadCase cases[] = {
      {"yaml syntax", "name: [unclosed", "c.yaml"},
      {"not a map", "- just\n- a list\n", "expected a mapping"},
      {"no name", "stages: []\n", "name: required"},
      {"bad name", Edit("name: log-pipeline", "name: log pipeline"),
       "'log pipeline' is not a valid name"},
      {"unknown top key", Edit("usage:", "usgae:"), "usgae: unknown setting"},
      {"no stages", "name: x\n", "stages: required"},
      {"zero partitions", Edit("partitions: 16", "partitions: 0"),
       "stages[1].partitions: must be in [1, 4096], got 0"},
      {"text partitions", Edit("partitions: 16", "partitions: many"),
       "stages[1].partitions: expected an integer, got 'many'"},
      {"bad cpu", Edit("cpu: 500m", "cpu: lots"), "stages[0].resources.cpu: cpu 'lots'"},
      {"zero cpu", Edit("cpu: 500m", "cpu: 0"), "stages[0].resources.cpu: must be > 0"},
      {"bad memory", Edit("memory: 64Mi}", "memory: 64 parsecs}"), "stages[0].resources.memory"},
      {"two code kinds", Edit("{module: pipeline.aggregate}", "{module: a, function: 'b:c'}"),
       "exactly one"},
      {"no code", Edit("    code: {module: pipeline.aggregate}\n", ""), "stages[2].code: required"},
      {"bad function", Edit("pipeline.parse:parse_line", "parse_line"), "is not module:function"},
      {"empty command", Edit("[\"./ingest\", \"--port\", \"9000\"]", "[]"), "non-empty argv"},
      {"duplicate stage", Edit("name: aggregate", "name: parse"), "stage 'parse' is defined twice"},
      {"edge to nowhere", Edit("to: aggregate", "to: aggregator"),
       "edges[1].to: no stage named 'aggregator'"},
      {"self edge", Edit("{from: ingest, to: parse}", "{from: parse, to: parse}"), "to itself"},
      {"bad routing", Edit("routing: key", "routing: hash"),
       "'hash' is not one of key, shuffle, broadcast"},
      {"cycle",
       Edit("  - {from: ingest, to: parse}",
            "  - {from: aggregate, to: parse}\n  - {from: ingest, to: parse}"),
       "cycle"},
      {"unknown data", Edit("data: [geoip]", "data: [maxmind]"),
       "stages[1].data[0]: 'maxmind' is not in the top-level data list"},
      {"global state, many partitions", Edit("scope: keyed", "scope: global"),
       "global state runs as one shard"},
      {"bad scope", Edit("scope: keyed", "scope: sometimes"),
       "'sometimes' is not one of keyed, global"},
      {"measured unknown stage", Edit("  parse: {messages_per_s", "  parser: {messages_per_s"),
       "measured.parser: no stage"},
      {"negative rate", Edit("messages_per_s: 80000", "messages_per_s: -1"),
       "expected a number >= 0"},
      {"bad latency", Edit("latency_p99: 5ms", "latency_p99: soon"),
       "usage.slo.latency_p99: duration 'soon'"},
      {"unknown stage key", Edit("max_shards: 4", "max_shard: 4"), "max_shard: unknown setting"},
  };
  for (const BadCase& c : cases) {
    absl::Status st = ParseError(c.yaml);
    EXPECT_TRUE(absl::IsInvalidArgument(st)) << c.name << ": " << st;
    EXPECT_NE(st.message().find(c.expect), std::string::npos) << c.name << ": " << st.message();
    EXPECT_EQ(st.message().rfind("c.yaml", 0), 0u) << c.name << ": " << st.message();
  }
}

TEST(ComponentSpecTest, KeyRoutingNeedsEqualPartitions) {
  std::string yaml = R"(
name: c
stages:
  - {name: a, code: {command: x}, partitions: 8}
  - {name: b, code: {command: y}, partitions: 4}
edges:
  - {from: a, to: b, routing: key}
)";
  absl::Status st = ParseError(yaml);
  EXPECT_NE(st.message().find("a has 8, b has 4"), std::string::npos) << st;
}

TEST(ComponentSpecTest, CommandStringIsSplitIntoArgv) {
  auto spec = ParseComponentSpec("name: c\nstages:\n  - {name: a, code: {command: 'grep -v x'}}\n",
                                 "c.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->stages[0].code.argv, (std::vector<std::string>{"grep", "-v", "x"}));
}

// Mutations of a valid spec (bytes flipped, deleted, duplicated) must
// come back as a spec or an InvalidArgument, never an exception or a crash:
// yaml-cpp throws on shapes the parser did not expect.
TEST(ComponentSpecTest, MutatedSpecsNeverEscapeAsExceptions) {
  const std::string base = kSpec;
  uint64_t x = 0x9e3779b97f4a7c15ull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const char kBytes[] = "{}[]:,-'\"\n #&*!|>%@`0a";
  int ok = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string s = base;
    int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      size_t at = next() % s.size();
      switch (next() % 3) {
        case 0:
          s[at] = kBytes[next() % (sizeof(kBytes) - 1)];
          break;
        case 1:
          s.erase(at, 1 + next() % 8);
          break;
        default:
          s.insert(at, s.substr(next() % s.size(), 1 + next() % 16));
          break;
      }
    }
    absl::StatusOr<ComponentSpec> spec;
    ASSERT_NO_THROW(spec = ParseComponentSpec(s, "m.yaml")) << s;
    if (spec.ok()) {
      ++ok;
    } else {
      EXPECT_TRUE(absl::IsInvalidArgument(spec.status())) << spec.status();
    }
  }
  EXPECT_GT(ok, 0);  // some mutations (in comments, names) stay valid
}

TEST(ComponentSpecTest, MissingFileIsNotFound) {
  auto spec = LoadComponentSpecFile("/nonexistent/component.yaml");
  EXPECT_TRUE(absl::IsNotFound(spec.status())) << spec.status();
  EXPECT_NE(spec.status().message().find("/nonexistent/component.yaml"), std::string::npos);
}

TEST(ComponentSpecTest, TheShippedExampleParses) {
  auto spec = LoadComponentSpecFile(std::string(FLOTILLA_SOURCE_DIR) +
                                    "/examples/components/log-pipeline.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "log-pipeline");
}

}  // namespace
}  // namespace flotilla::shard
