#include "workflow/analysis.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "workflow/internal/json_fields.h"

namespace flotilla::workflow {
namespace {

using nlohmann::json;

absl::Status Shape(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("analyzer output: ", what, " (expected the documented analysis object)"));
}

using internal::String;
using internal::StringList;

}  // namespace

absl::string_view StatementKindName(StatementKind kind) {
  switch (kind) {
    case StatementKind::kStatement: return "stmt";
    case StatementKind::kMap: return "map";
    case StatementKind::kReturn: return "return";
  }
  return "stmt";
}

absl::StatusOr<Analysis> ParseAnalysis(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Shape("not a JSON object");
  if (!j.value("ok", false)) {
    std::string message = "the analyzer failed";
    if (j.contains("error") && j["error"].is_object()) {
      const json& e = j["error"];
      message = absl::StrCat(e.value("type", std::string("Error")), ": ",
                             e.value("message", std::string("")));
    }
    return absl::InvalidArgumentError(absl::StrCat("cannot analyze the function: ", message));
  }
  Analysis a;
  a.function = String(j, "function");
  a.params = StringList(j, "params");
  a.splittable = j.value("splittable", false);
  a.refusal = String(j, "refusal");
  if (!j.contains("statements") || !j["statements"].is_array()) return Shape("no statements list");
  for (const auto& sj : j["statements"]) {
    if (!sj.is_object()) return Shape("a statement is not an object");
    Statement s;
    s.id = String(sj, "id");
    if (s.id.empty()) return Shape("a statement has no id");
    s.line = sj.value("line", 0);
    s.end_line = sj.value("end_line", s.line);
    std::string kind = String(sj, "kind");
    if (kind == "map") {
      s.kind = StatementKind::kMap;
    } else if (kind == "return") {
      s.kind = StatementKind::kReturn;
    } else if (kind == "stmt" || kind.empty()) {
      s.kind = StatementKind::kStatement;
    } else {
      return Shape(absl::StrCat("statement ", s.id, " has unknown kind '", kind, "'"));
    }
    s.code = String(sj, "code");
    s.reads = StringList(sj, "reads");
    s.writes = StringList(sj, "writes");
    if (sj.contains("cost") && sj["cost"].is_number()) s.cost = sj["cost"].get<double>();
    s.calls = StringList(sj, "calls");
    if (s.kind == StatementKind::kMap) {
      if (!sj.contains("map") || !sj["map"].is_object()) {
        return Shape(absl::StrCat("map statement ", s.id, " has no map object"));
      }
      const json& m = sj["map"];
      s.map = MapSpec{String(m, "iter"), String(m, "target"), String(m, "element"), String(m, "accumulator")};
      if (s.map.iter.empty() || s.map.target.empty() || s.map.element.empty() ||
          s.map.accumulator.empty()) {
        return Shape(absl::StrCat("map statement ", s.id, " lacks iter/target/element/accumulator"));
      }
    }
    a.statements.push_back(std::move(s));
  }
  return a;
}

}  // namespace flotilla::workflow
