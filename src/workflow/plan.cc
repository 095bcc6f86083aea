#include "workflow/plan.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "workflow/internal/json_fields.h"

namespace flotilla::workflow {
namespace {

using nlohmann::json;

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

json Names(const std::vector<std::string>& v) { return json(v); }

absl::StatusOr<PieceKind> ParsePieceKind(const std::string& s) {
  for (PieceKind k : {PieceKind::kCall, PieceKind::kPiece, PieceKind::kMap, PieceKind::kReturn,
                      PieceKind::kCommand}) {
    if (PieceKindName(k) == s) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat("plan: unknown piece kind '", s, "'"));
}

// Orders the pieces so every edge points forward; InvalidArgument on a cycle.
absl::Status SortTopologically(Plan* plan) {
  std::map<std::string, int> indegree;
  std::map<std::string, std::vector<std::string>> next;
  for (const auto& p : plan->pieces) indegree[p.id] = 0;
  for (const auto& e : plan->edges) {
    next[e.from].push_back(e.to);
    indegree[e.to]++;
  }
  std::vector<Piece> sorted;
  std::vector<bool> taken(plan->pieces.size(), false);
  while (sorted.size() < plan->pieces.size()) {
    bool progressed = false;
    for (size_t i = 0; i < plan->pieces.size(); ++i) {
      if (taken[i] || indegree[plan->pieces[i].id] != 0) continue;
      taken[i] = true;
      progressed = true;
      for (const auto& n : next[plan->pieces[i].id]) indegree[n]--;
      sorted.push_back(plan->pieces[i]);
    }
    if (!progressed) {
      std::vector<std::string> stuck;
      for (size_t i = 0; i < plan->pieces.size(); ++i) {
        if (!taken[i]) stuck.push_back(plan->pieces[i].id);
      }
      return absl::InvalidArgumentError(
          absl::StrCat("workflow has a cycle among steps: ", absl::StrJoin(stuck, ", ")));
    }
  }
  plan->pieces = std::move(sorted);
  return absl::OkStatus();
}

}  // namespace

absl::string_view PieceKindName(PieceKind kind) {
  switch (kind) {
    case PieceKind::kCall: return "call";
    case PieceKind::kPiece: return "piece";
    case PieceKind::kMap: return "map";
    case PieceKind::kReturn: return "return";
    case PieceKind::kCommand: return "command";
  }
  return "piece";
}

absl::Status ValidatePlan(const Plan& plan) {
  if (plan.pieces.empty()) return absl::InvalidArgumentError("plan has no pieces");
  std::set<std::string> ids;
  for (const auto& p : plan.pieces) {
    if (p.id.empty()) return absl::InvalidArgumentError("plan: a piece has an empty id");
    if (!ids.insert(p.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("plan: piece id '", p.id, "' is used twice"));
    }
  }
  std::map<std::string, size_t> position;
  for (size_t i = 0; i < plan.pieces.size(); ++i) position[plan.pieces[i].id] = i;
  for (const auto& e : plan.edges) {
    if (!ids.count(e.from) || !ids.count(e.to)) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan: edge ", e.from, " -> ", e.to, " names an unknown piece"));
    }
    if (position[e.from] >= position[e.to]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "plan: edge ", e.from, " -> ", e.to, " points backwards (pieces must be in DAG order)"));
    }
  }
  for (const auto& p : plan.pieces) {
    for (const auto& in : p.inputs) {
      if (Contains(p.params, in)) continue;
      int producers = 0;
      for (const auto& e : plan.edges) {
        if (e.to == p.id && Contains(e.vars, in)) producers++;
      }
      if (producers != 1) {
        return absl::InvalidArgumentError(absl::StrCat("plan: input '", in, "' of piece ", p.id,
                                                       " has ", producers,
                                                       " producers (needs exactly one)"));
      }
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ReadyPieces(const Plan& plan, const std::vector<std::string>& done,
                                     const std::vector<std::string>& started) {
  std::vector<std::string> ready;
  for (const auto& p : plan.pieces) {
    if (Contains(done, p.id) || Contains(started, p.id)) continue;
    bool ok = true;
    for (const auto& e : plan.edges) {
      if (e.to == p.id && !Contains(done, e.from)) {
        ok = false;
        break;
      }
    }
    if (ok) ready.push_back(p.id);
  }
  return ready;
}

std::string PlanToJson(const Plan& plan) {
  json pieces = json::array();
  for (const auto& p : plan.pieces) {
    json pj = {{"id", p.id},
               {"kind", std::string(PieceKindName(p.kind))},
               {"statements", Names(p.statements)},
               {"code", p.code},
               {"inputs", Names(p.inputs)},
               {"params", Names(p.params)},
               {"outputs", Names(p.outputs)},
               {"cost", p.cost},
               {"reason", p.reason}};
    if (!p.expand.empty()) pj["expand"] = Names(p.expand);
    if (!p.return_expr.empty()) pj["return"] = p.return_expr;
    if (!p.runtime.empty()) pj["runtime"] = p.runtime;
    if (p.kind == PieceKind::kMap) {
      pj["map"] = {{"iter", p.map.iter},
                   {"target", p.map.target},
                   {"element", p.map.element},
                   {"accumulator", p.map.accumulator}};
      pj["items_from"] = p.items_from;
    }
    pieces.push_back(std::move(pj));
  }
  json edges = json::array();
  for (const auto& e : plan.edges) {
    edges.push_back({{"from", e.from}, {"to", e.to}, {"vars", Names(e.vars)}, {"bytes", e.bytes}});
  }
  json j = {{"function", plan.function},
            {"splittable", plan.split},
            {"reason", plan.reason},
            {"pieces", pieces},
            {"edges", edges}};
  return j.dump();
}

absl::StatusOr<Plan> PlanFromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("plan: not a JSON object");
  }
  Plan plan;
  plan.function = internal::String(j, "function");
  plan.split = j.value("splittable", false);
  plan.reason = internal::String(j, "reason");
  if (!j.contains("pieces") || !j["pieces"].is_array()) {
    return absl::InvalidArgumentError("plan: no pieces list");
  }
  for (const auto& pj : j["pieces"]) {
    if (!pj.is_object()) return absl::InvalidArgumentError("plan: a piece is not an object");
    Piece p;
    p.id = internal::String(pj, "id");
    auto kind = ParsePieceKind(internal::String(pj, "kind"));
    if (!kind.ok()) return kind.status();
    p.kind = *kind;
    p.statements = internal::StringList(pj, "statements");
    p.code = internal::String(pj, "code");
    p.return_expr = internal::String(pj, "return");
    p.runtime = internal::String(pj, "runtime");
    p.inputs = internal::StringList(pj, "inputs");
    p.params = internal::StringList(pj, "params");
    p.outputs = internal::StringList(pj, "outputs");
    p.expand = internal::StringList(pj, "expand");
    if (pj.contains("cost") && pj["cost"].is_number()) p.cost = pj["cost"].get<double>();
    p.reason = internal::String(pj, "reason");
    if (pj.contains("map") && pj["map"].is_object()) {
      const json& m = pj["map"];
      p.map = MapSpec{internal::String(m, "iter"), internal::String(m, "target"), internal::String(m, "element"),
                      internal::String(m, "accumulator")};
    }
    p.items_from = internal::String(pj, "items_from");
    plan.pieces.push_back(std::move(p));
  }
  if (j.contains("edges") && j["edges"].is_array()) {
    for (const auto& ej : j["edges"]) {
      Edge e;
      e.from = internal::String(ej, "from");
      e.to = internal::String(ej, "to");
      e.vars = internal::StringList(ej, "vars");
      e.bytes = ej.value("bytes", int64_t{0});
      plan.edges.push_back(std::move(e));
    }
  }
  if (auto st = ValidatePlan(plan); !st.ok()) return st;
  return plan;
}

absl::StatusOr<Plan> PlanFromWorkflowSpec(absl::string_view text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("workflow: not YAML/JSON: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("workflow: expected a mapping with steps");
  Plan plan;
  plan.function = root["name"] ? root["name"].as<std::string>("") : "";
  if (plan.function.empty()) plan.function = "workflow";
  plan.split = true;
  plan.reason = "hand-written workflow";
  YAML::Node steps = root["steps"];
  if (!steps || !steps.IsSequence() || steps.size() == 0) {
    return absl::InvalidArgumentError("workflow: 'steps' must be a non-empty list");
  }
  std::set<std::string> names;
  for (size_t i = 0; i < steps.size(); ++i) {
    YAML::Node s = steps[i];
    if (!s.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat("workflow: step ", i + 1, " is not a mapping"));
    }
    Piece p;
    p.kind = PieceKind::kCommand;
    p.id = s["name"] ? s["name"].as<std::string>("") : "";
    if (p.id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("workflow: step ", i + 1, " has no name"));
    }
    for (char c : p.id) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
        return absl::InvalidArgumentError(absl::StrCat(
            "workflow: step name '", p.id, "' may use only letters, digits, '-' and '_'"));
      }
    }
    if (!names.insert(p.id).second) {
      return absl::InvalidArgumentError(absl::StrCat("workflow: step name '", p.id, "' is used twice"));
    }
    p.code = s["run"] ? s["run"].as<std::string>("") : "";
    if (p.code.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("workflow: step '", p.id, "' has no 'run'"));
    }
    p.runtime = s["runtime"] ? s["runtime"].as<std::string>("shell") : "shell";
    if (p.runtime != "shell" && p.runtime != "python3") {
      return absl::InvalidArgumentError(absl::StrCat("workflow: step '", p.id, "' has runtime '",
                                                     p.runtime, "' (use shell or python3)"));
    }
    if (YAML::Node in = s["inputs"]) {
      if (!in.IsSequence()) {
        return absl::InvalidArgumentError(
            absl::StrCat("workflow: step '", p.id, "': inputs must be a list of step names"));
      }
      for (const auto& n : in) p.inputs.push_back(n.as<std::string>(""));
    }
    p.outputs = {"stdout"};
    p.cost = 1;
    p.reason = "step";
    plan.pieces.push_back(std::move(p));
  }
  for (auto& p : plan.pieces) {
    for (const auto& in : p.inputs) {
      if (!names.count(in)) {
        return absl::InvalidArgumentError(
            absl::StrCat("workflow: step '", p.id, "' takes input from unknown step '", in, "'"));
      }
      if (in == p.id) {
        return absl::InvalidArgumentError(
            absl::StrCat("workflow: step '", p.id, "' takes its own output as input"));
      }
      plan.edges.push_back(Edge{in, p.id, {in}, 0});
    }
  }
  if (auto st = SortTopologically(&plan); !st.ok()) return st;
  // Each input name of a command step is its producer's id: one producer.
  if (auto st = ValidatePlan(plan); !st.ok()) return st;
  return plan;
}

}  // namespace flotilla::workflow
