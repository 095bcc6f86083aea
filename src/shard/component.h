// Component: a program made of stages that a node runs as shards.
//
// A ComponentSpec is what a user writes (`flotilla component plan FILE`,
// later `flotilla component deploy FILE`): named stages, each with the code
// it runs (a command, a Python function or a Python module), how many key
// partitions its input has, the resources one instance needs, the state it
// keeps, the data sets it reads; the edges messages flow along; and a usage
// model (priority, limits, SLO) for the whole component.
//
// ParseComponentSpec validates everything a later stage relies on: names are
// unique and well formed, edges name existing stages and form no cycle,
// quantities are positive, a stage that keeps global state has one
// partition. Errors name the file, the key path and the bad value
// ("log-pipeline.yaml: stages[1].partitions: must be >= 1, got 0").
//
// Plain values; no I/O except LoadComponentSpecFile. Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace flotilla::shard {

enum class CodeKind { kCommand, kPythonFunction, kPythonModule };

// What one instance of a stage runs. For kCommand, argv; for
// kPythonFunction, "module:function"; for kPythonModule, the module name.
struct StageCode {
  CodeKind kind = CodeKind::kCommand;
  std::vector<std::string> argv;
  std::string target;
};

// How a stage's state is split when the stage is sharded. kKeyed state is
// partitioned with the input keys and moves with its partitions; kGlobal
// state is one object, so a stage holding it is never sharded.
enum class StateScope { kKeyed, kGlobal };

struct StageState {
  std::string name;
  StateScope scope = StateScope::kKeyed;
  int64_t size_bytes = 0;  // expected total size, all partitions together
};

// Declared needs of one un-sharded instance of the stage; the sharding
// engine replaces them with measurements when it has some.
struct StageResources {
  int64_t cpu_millis = 100;
  int64_t memory_bytes = 64ll << 20;
  int64_t io_bytes_per_s = 0;
};

struct Stage {
  std::string name;
  StageCode code;
  // Key partitions of the stage's input: the unit the engine splits among
  // shards (a shard owns a contiguous range of them). 1: not shardable.
  int partitions = 1;
  // Upper bound the user allows on shards of this stage (0: no bound).
  int max_shards = 0;
  StageResources resources;
  std::optional<StageState> state;
  std::vector<std::string> data;  // names of ComponentSpec::data entries
};

// kKey: a message goes to the shard of the next stage owning its key (the
// two stages must have the same partition count). kShuffle: any shard
// (round robin, load-based). kBroadcast: every shard.
enum class Routing { kKey, kShuffle, kBroadcast };

struct Edge {
  std::string from;
  std::string to;
  Routing routing = Routing::kShuffle;
};

struct DataDependency {
  std::string name;
  std::string uri;
  int64_t size_bytes = 0;
};

struct UsageModel {
  int priority = 0;                  // higher is more important
  int64_t cpu_limit_millis = 0;      // 0: no limit
  int64_t memory_limit_bytes = 0;    // 0: no limit
  int64_t slo_latency_p99_us = 0;    // 0: none
  int64_t slo_throughput_per_s = 0;  // 0: none
};

// Characteristics of a stage measured while it ran (by the agent's monitor,
// or written by hand from a profile): the whole stage's input rate and what
// serving it cost. Zero means unknown.
struct StageMeasurement {
  double messages_per_s = 0;  // input rate of the whole stage
  int64_t cpu_millis = 0;     // CPU the whole stage used at that rate
  int64_t memory_bytes = 0;   // resident memory of one instance
  int64_t io_bytes_per_s = 0;
  double service_time_us = 0;  // CPU time per message; derived from the two
                               // above when absent
};

struct ComponentSpec {
  std::string name;
  UsageModel usage;
  std::vector<Stage> stages;  // in file order
  std::vector<Edge> edges;
  std::vector<DataDependency> data;
  // Optional `measured:` section, by stage name.
  std::map<std::string, StageMeasurement> measured;

  // Returns the stage named `name`, or nullptr.
  const Stage* FindStage(const std::string& name) const;
};

// Parses a component spec from YAML text. `source` names the text in errors
// (a file name). Returns InvalidArgument with the key path and the value
// for anything malformed, unknown or inconsistent.
absl::StatusOr<ComponentSpec> ParseComponentSpec(const std::string& yaml_text,
                                                 const std::string& source);

// Reads and parses the file at `path`; NotFound when it cannot be read.
absl::StatusOr<ComponentSpec> LoadComponentSpecFile(const std::string& path);

const char* CodeKindName(CodeKind kind);
const char* RoutingName(Routing routing);
const char* StateScopeName(StateScope scope);

}  // namespace flotilla::shard
