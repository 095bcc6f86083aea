#include "shard/component.h"

#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "common/yaml_util.h"

namespace flotilla::shard {
namespace {

// Partitions are a key-space split: a shard owns a contiguous range, and a
// bound keeps the shard graph (one channel per overlapping pair) small.
constexpr int kMaxPartitions = 4096;

// Builds errors of the form "<source>: <path>: <what>".
class Errors {
 public:
  explicit Errors(std::string source) : source_(std::move(source)) {}
  absl::Status At(const std::string& path, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", path, ": ", what));
  }
  // Prefixes an error from a helper (units, yaml_util) with the source.
  absl::Status Wrap(const absl::Status& st) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", st.message()));
  }

 private:
  std::string source_;
};

bool IsName(const std::string& s) {
  if (s.empty() || s.size() > 63 || !std::isalnum(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

std::string Scalar(const YAML::Node& n) { return n.IsScalar() ? n.Scalar() : std::string(); }

absl::StatusOr<std::string> ReadName(const Errors& e, const YAML::Node& node,
                                     const std::string& path) {
  if (!node || !node.IsScalar()) return e.At(path, "required: a name");
  std::string name = node.Scalar();
  if (!IsName(name)) {
    return e.At(path, absl::StrCat("'", name,
                                   "' is not a valid name: use 1-63 letters, digits, '-' or '_'"));
  }
  return name;
}

absl::StatusOr<int64_t> ReadInt(const Errors& e, const YAML::Node& node, const std::string& path,
                                int64_t min, int64_t max) {
  int64_t v = 0;
  if (!node.IsScalar() || !absl::SimpleAtoi(node.Scalar(), &v)) {
    return e.At(path, absl::StrCat("expected an integer, got '", Scalar(node), "'"));
  }
  if (v < min || v > max) {
    return e.At(path, absl::StrCat("must be in [", min, ", ", max, "], got ", v));
  }
  return v;
}

absl::StatusOr<double> ReadNumber(const Errors& e, const YAML::Node& node,
                                  const std::string& path) {
  double v = 0;
  if (!node.IsScalar() || !absl::SimpleAtod(node.Scalar(), &v) || !std::isfinite(v) || v < 0) {
    return e.At(path, absl::StrCat("expected a number >= 0, got '", Scalar(node), "'"));
  }
  return v;
}

absl::StatusOr<int64_t> ReadCpu(const Errors& e, const YAML::Node& node, const std::string& path) {
  auto v = ParseCpu(Scalar(node));
  if (!v.ok()) return e.At(path, std::string(v.status().message()));
  return *v;
}

absl::StatusOr<int64_t> ReadBytes(const Errors& e, const YAML::Node& node,
                                  const std::string& path) {
  auto v = ParseBytes(Scalar(node));
  if (!v.ok()) return e.At(path, std::string(v.status().message()));
  return *v;
}

// "250us", "2ms", "1s", or plain microseconds.
absl::StatusOr<int64_t> ReadMicros(const Errors& e, const YAML::Node& node,
                                   const std::string& path) {
  std::string text = Scalar(node);
  static const std::pair<const char*, double> kUnits[] = {{"us", 1}, {"ms", 1e3}, {"s", 1e6}};
  double factor = 1;
  std::string number = text;
  for (const auto& [suffix, f] : kUnits) {
    std::string sx(suffix);
    if (text.size() > sx.size() && text.compare(text.size() - sx.size(), sx.size(), sx) == 0) {
      number = text.substr(0, text.size() - sx.size());
      factor = f;
      break;
    }
  }
  double v = 0;
  if (!absl::SimpleAtod(number, &v) || !std::isfinite(v) || v < 0) {
    return e.At(path, absl::StrCat("duration '", text, "' is not valid: use e.g. 250us, 20ms, 1s"));
  }
  return static_cast<int64_t>(std::llround(v * factor));
}

absl::Status CheckMap(const Errors& e, const YAML::Node& node, const std::string& path,
                      const std::set<std::string>& known) {
  if (!node.IsMap()) return e.At(path, "expected a mapping");
  absl::Status st = CheckKnownKeys(node, path + ".", known);
  return st.ok() ? st : e.Wrap(st);
}

absl::StatusOr<StageCode> ParseCode(const Errors& e, const YAML::Node& node,
                                    const std::string& path) {
  if (!node) return e.At(path, "required: one of command, function, module");
  RETURN_IF_ERROR(CheckMap(e, node, path, {"command", "function", "module"}));
  if (node.size() != 1) return e.At(path, "give exactly one of command, function, module");
  StageCode code;
  if (const YAML::Node cmd = node["command"]) {
    code.kind = CodeKind::kCommand;
    if (cmd.IsScalar()) {
      code.argv = absl::StrSplit(cmd.Scalar(), ' ', absl::SkipEmpty());
    } else if (cmd.IsSequence()) {
      for (size_t i = 0; i < cmd.size(); ++i) {
        if (!cmd[i].IsScalar())
          return e.At(absl::StrCat(path, ".command[", i, "]"), "expected a string");
        code.argv.push_back(cmd[i].Scalar());
      }
    }
    if (code.argv.empty()) return e.At(path + ".command", "expected a non-empty argv list");
    return code;
  }
  if (const YAML::Node fn = node["function"]) {
    code.kind = CodeKind::kPythonFunction;
    code.target = Scalar(fn);
    size_t colon = code.target.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == code.target.size()) {
      return e.At(
          path + ".function",
          absl::StrCat("'", code.target, "' is not module:function (e.g. pipeline.parse:run)"));
    }
    return code;
  }
  code.kind = CodeKind::kPythonModule;
  code.target = Scalar(node["module"]);
  if (code.target.empty()) return e.At(path + ".module", "expected a module name");
  return code;
}

absl::StatusOr<Stage> ParseStage(const Errors& e, const YAML::Node& node, const std::string& path) {
  RETURN_IF_ERROR(CheckMap(
      e, node, path, {"name", "code", "partitions", "max_shards", "resources", "state", "data"}));
  Stage stage;
  ASSIGN_OR_RETURN(stage.name, ReadName(e, node["name"], path + ".name"));
  ASSIGN_OR_RETURN(stage.code, ParseCode(e, node["code"], path + ".code"));
  if (node["partitions"]) {
    ASSIGN_OR_RETURN(int64_t p,
                     ReadInt(e, node["partitions"], path + ".partitions", 1, kMaxPartitions));
    stage.partitions = static_cast<int>(p);
  }
  if (node["max_shards"]) {
    ASSIGN_OR_RETURN(int64_t m,
                     ReadInt(e, node["max_shards"], path + ".max_shards", 0, kMaxPartitions));
    stage.max_shards = static_cast<int>(m);
  }
  if (const YAML::Node r = node["resources"]) {
    std::string rp = path + ".resources";
    RETURN_IF_ERROR(CheckMap(e, r, rp, {"cpu", "memory", "io"}));
    if (r["cpu"]) {
      ASSIGN_OR_RETURN(stage.resources.cpu_millis, ReadCpu(e, r["cpu"], rp + ".cpu"));
    }
    if (r["memory"]) {
      ASSIGN_OR_RETURN(stage.resources.memory_bytes, ReadBytes(e, r["memory"], rp + ".memory"));
    }
    if (r["io"]) {
      ASSIGN_OR_RETURN(stage.resources.io_bytes_per_s, ReadBytes(e, r["io"], rp + ".io"));
    }
    if (stage.resources.cpu_millis <= 0) return e.At(rp + ".cpu", "must be > 0");
    if (stage.resources.memory_bytes <= 0) return e.At(rp + ".memory", "must be > 0");
  }
  if (const YAML::Node s = node["state"]) {
    std::string sp = path + ".state";
    RETURN_IF_ERROR(CheckMap(e, s, sp, {"name", "scope", "size"}));
    StageState state;
    ASSIGN_OR_RETURN(state.name, ReadName(e, s["name"], sp + ".name"));
    std::string scope = s["scope"] ? Scalar(s["scope"]) : "keyed";
    if (scope == "keyed") {
      state.scope = StateScope::kKeyed;
    } else if (scope == "global") {
      state.scope = StateScope::kGlobal;
    } else {
      return e.At(sp + ".scope", absl::StrCat("'", scope, "' is not one of keyed, global"));
    }
    if (s["size"]) {
      ASSIGN_OR_RETURN(state.size_bytes, ReadBytes(e, s["size"], sp + ".size"));
    }
    if (state.scope == StateScope::kGlobal && stage.partitions != 1) {
      return e.At(path + ".partitions",
                  absl::StrCat("a stage with global state runs as one shard, so it cannot have ",
                               stage.partitions,
                               " partitions: set partitions: 1, or make the state "
                               "keyed (state.scope: keyed)"));
    }
    stage.state = state;
  }
  if (const YAML::Node d = node["data"]) {
    if (!d.IsSequence()) return e.At(path + ".data", "expected a list of data names");
    for (size_t i = 0; i < d.size(); ++i) {
      ASSIGN_OR_RETURN(std::string name, ReadName(e, d[i], absl::StrCat(path, ".data[", i, "]")));
      stage.data.push_back(name);
    }
  }
  return stage;
}

absl::StatusOr<Routing> ParseRouting(const Errors& e, const YAML::Node& node,
                                     const std::string& path) {
  if (!node) return Routing::kShuffle;
  std::string r = Scalar(node);
  if (r == "key") return Routing::kKey;
  if (r == "shuffle") return Routing::kShuffle;
  if (r == "broadcast") return Routing::kBroadcast;
  return e.At(path, absl::StrCat("'", r, "' is not one of key, shuffle, broadcast"));
}

absl::Status CheckAcyclic(const Errors& e, const ComponentSpec& spec) {
  std::map<std::string, int> indegree;
  std::map<std::string, std::vector<std::string>> out;
  for (const Stage& s : spec.stages) indegree[s.name] = 0;
  for (const Edge& edge : spec.edges) {
    ++indegree[edge.to];
    out[edge.from].push_back(edge.to);
  }
  std::vector<std::string> ready;
  for (const auto& [name, d] : indegree) {
    if (d == 0) ready.push_back(name);
  }
  size_t seen = 0;
  while (!ready.empty()) {
    std::string n = ready.back();
    ready.pop_back();
    ++seen;
    for (const std::string& m : out[n]) {
      if (--indegree[m] == 0) ready.push_back(m);
    }
  }
  if (seen == spec.stages.size()) return absl::OkStatus();
  std::vector<std::string> in_cycle;
  for (const auto& [name, d] : indegree) {
    if (d > 0) in_cycle.push_back(name);
  }
  return e.At("edges",
              absl::StrCat("the edges form a cycle through ", absl::StrJoin(in_cycle, ", "),
                           ": a component is a DAG of stages"));
}

absl::StatusOr<StageMeasurement> ParseMeasurement(const Errors& e, const YAML::Node& node,
                                                  const std::string& path) {
  RETURN_IF_ERROR(
      CheckMap(e, node, path, {"messages_per_s", "cpu", "memory", "io", "service_time"}));
  StageMeasurement m;
  if (node["messages_per_s"]) {
    ASSIGN_OR_RETURN(m.messages_per_s,
                     ReadNumber(e, node["messages_per_s"], path + ".messages_per_s"));
  }
  if (node["cpu"]) {
    ASSIGN_OR_RETURN(m.cpu_millis, ReadCpu(e, node["cpu"], path + ".cpu"));
  }
  if (node["memory"]) {
    ASSIGN_OR_RETURN(m.memory_bytes, ReadBytes(e, node["memory"], path + ".memory"));
  }
  if (node["io"]) {
    ASSIGN_OR_RETURN(m.io_bytes_per_s, ReadBytes(e, node["io"], path + ".io"));
  }
  if (node["service_time"]) {
    ASSIGN_OR_RETURN(int64_t us, ReadMicros(e, node["service_time"], path + ".service_time"));
    m.service_time_us = static_cast<double>(us);
  }
  return m;
}

absl::StatusOr<ComponentSpec> ParseRoot(const Errors& e, const YAML::Node& root) {
  if (!root || !root.IsMap()) return e.At("(top)", "expected a mapping with name and stages");
  RETURN_IF_ERROR(
      CheckMap(e, root, "(top)", {"name", "usage", "stages", "edges", "data", "measured"}));
  ComponentSpec spec;
  ASSIGN_OR_RETURN(spec.name, ReadName(e, root["name"], "name"));

  if (const YAML::Node u = root["usage"]) {
    RETURN_IF_ERROR(CheckMap(e, u, "usage", {"priority", "limits", "slo"}));
    if (u["priority"]) {
      ASSIGN_OR_RETURN(int64_t p, ReadInt(e, u["priority"], "usage.priority", -1000, 1000));
      spec.usage.priority = static_cast<int>(p);
    }
    if (const YAML::Node l = u["limits"]) {
      RETURN_IF_ERROR(CheckMap(e, l, "usage.limits", {"cpu", "memory"}));
      if (l["cpu"]) {
        ASSIGN_OR_RETURN(spec.usage.cpu_limit_millis, ReadCpu(e, l["cpu"], "usage.limits.cpu"));
      }
      if (l["memory"]) {
        ASSIGN_OR_RETURN(spec.usage.memory_limit_bytes,
                         ReadBytes(e, l["memory"], "usage.limits.memory"));
      }
    }
    if (const YAML::Node s = u["slo"]) {
      RETURN_IF_ERROR(CheckMap(e, s, "usage.slo", {"latency_p99", "throughput"}));
      if (s["latency_p99"]) {
        ASSIGN_OR_RETURN(spec.usage.slo_latency_p99_us,
                         ReadMicros(e, s["latency_p99"], "usage.slo.latency_p99"));
      }
      if (s["throughput"]) {
        ASSIGN_OR_RETURN(spec.usage.slo_throughput_per_s,
                         ReadInt(e, s["throughput"], "usage.slo.throughput", 0, int64_t{1} << 40));
      }
    }
  }

  if (const YAML::Node d = root["data"]) {
    if (!d.IsSequence()) return e.At("data", "expected a list");
    std::set<std::string> names;
    for (size_t i = 0; i < d.size(); ++i) {
      std::string p = absl::StrCat("data[", i, "]");
      RETURN_IF_ERROR(CheckMap(e, d[i], p, {"name", "uri", "size"}));
      DataDependency dep;
      ASSIGN_OR_RETURN(dep.name, ReadName(e, d[i]["name"], p + ".name"));
      if (!names.insert(dep.name).second)
        return e.At(p + ".name", absl::StrCat("'", dep.name, "' repeats"));
      dep.uri = Scalar(d[i]["uri"]);
      if (dep.uri.empty()) return e.At(p + ".uri", "required: where the data lives");
      if (d[i]["size"]) {
        ASSIGN_OR_RETURN(dep.size_bytes, ReadBytes(e, d[i]["size"], p + ".size"));
      }
      spec.data.push_back(dep);
    }
  }

  const YAML::Node stages = root["stages"];
  if (!stages || !stages.IsSequence() || stages.size() == 0) {
    return e.At("stages", "required: a non-empty list of stages");
  }
  std::set<std::string> stage_names;
  for (size_t i = 0; i < stages.size(); ++i) {
    std::string p = absl::StrCat("stages[", i, "]");
    ASSIGN_OR_RETURN(Stage stage, ParseStage(e, stages[i], p));
    if (!stage_names.insert(stage.name).second) {
      return e.At(p + ".name", absl::StrCat("stage '", stage.name, "' is defined twice"));
    }
    for (size_t k = 0; k < stage.data.size(); ++k) {
      bool known = false;
      for (const auto& dep : spec.data) known = known || dep.name == stage.data[k];
      if (!known) {
        return e.At(absl::StrCat(p, ".data[", k, "]"),
                    absl::StrCat("'", stage.data[k], "' is not in the top-level data list"));
      }
    }
    spec.stages.push_back(std::move(stage));
  }

  if (const YAML::Node edges = root["edges"]) {
    if (!edges.IsSequence()) return e.At("edges", "expected a list of {from, to, routing}");
    std::set<std::pair<std::string, std::string>> seen;
    for (size_t i = 0; i < edges.size(); ++i) {
      std::string p = absl::StrCat("edges[", i, "]");
      RETURN_IF_ERROR(CheckMap(e, edges[i], p, {"from", "to", "routing"}));
      Edge edge;
      ASSIGN_OR_RETURN(edge.from, ReadName(e, edges[i]["from"], p + ".from"));
      ASSIGN_OR_RETURN(edge.to, ReadName(e, edges[i]["to"], p + ".to"));
      ASSIGN_OR_RETURN(edge.routing, ParseRouting(e, edges[i]["routing"], p + ".routing"));
      const Stage* from = spec.FindStage(edge.from);
      const Stage* to = spec.FindStage(edge.to);
      if (from == nullptr)
        return e.At(p + ".from", absl::StrCat("no stage named '", edge.from, "'"));
      if (to == nullptr) return e.At(p + ".to", absl::StrCat("no stage named '", edge.to, "'"));
      if (edge.from == edge.to) return e.At(p, "an edge from a stage to itself");
      if (!seen.insert({edge.from, edge.to}).second) {
        return e.At(p, absl::StrCat("edge ", edge.from, " -> ", edge.to, " is given twice"));
      }
      if (edge.routing == Routing::kKey && from->partitions != to->partitions) {
        return e.At(p + ".routing",
                    absl::StrCat("key routing needs the same partitions on both ends (", edge.from,
                                 " has ", from->partitions, ", ", edge.to, " has ", to->partitions,
                                 "): make them equal, or use routing: shuffle"));
      }
      spec.edges.push_back(edge);
    }
  }
  RETURN_IF_ERROR(CheckAcyclic(e, spec));

  if (const YAML::Node m = root["measured"]) {
    if (!m.IsMap()) return e.At("measured", "expected a mapping of stage name to measurements");
    for (const auto& kv : m) {
      std::string stage = kv.first.as<std::string>();
      std::string p = "measured." + stage;
      if (spec.FindStage(stage) == nullptr) return e.At(p, "no stage of that name");
      ASSIGN_OR_RETURN(spec.measured[stage], ParseMeasurement(e, kv.second, p));
    }
  }
  return spec;
}

}  // namespace

const Stage* ComponentSpec::FindStage(const std::string& name) const {
  for (const Stage& s : stages) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

absl::StatusOr<ComponentSpec> ParseComponentSpec(const std::string& yaml_text,
                                                 const std::string& source) {
  Errors e(source);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", ex.what()));
  }
  try {
    return ParseRoot(e, root);
  } catch (const YAML::Exception& ex) {
    // yaml-cpp throws on some shape mismatches (e.g. a map key that is a
    // sequence); they must not escape the module.
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", ex.what()));
  }
}

absl::StatusOr<ComponentSpec> LoadComponentSpecFile(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat("cannot read component spec `", path, "`: ", text.status().message()));
  }
  return ParseComponentSpec(*text, path);
}

const char* CodeKindName(CodeKind kind) {
  switch (kind) {
    case CodeKind::kCommand:
      return "command";
    case CodeKind::kPythonFunction:
      return "function";
    case CodeKind::kPythonModule:
      return "module";
  }
  return "?";
}

const char* RoutingName(Routing routing) {
  switch (routing) {
    case Routing::kKey:
      return "key";
    case Routing::kShuffle:
      return "shuffle";
    case Routing::kBroadcast:
      return "broadcast";
  }
  return "?";
}

const char* StateScopeName(StateScope scope) {
  return scope == StateScope::kKeyed ? "keyed" : "global";
}

}  // namespace flotilla::shard
