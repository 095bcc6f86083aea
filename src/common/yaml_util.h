// Typed reads of YAML config nodes whose errors name the key and the value:
// "agent.yaml: resources.cpu_millis: expected an integer, got 'lots'".
#pragma once

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace flotilla {

// Reads node[key] into *out if present. Returns InvalidArgument naming
// `where.key` when the value is not convertible to T.
template <typename T>
absl::Status ReadYaml(const YAML::Node& node, const std::string& where, const std::string& key,
                      T* out) {
  const YAML::Node value = node[key];
  if (!value) return absl::OkStatus();
  try {
    *out = value.as<T>();
  } catch (const YAML::Exception&) {
    std::string shown = value.IsScalar() ? value.Scalar() : std::string("a non-scalar value");
    return absl::InvalidArgumentError(
        absl::StrCat(where, key, ": cannot read '", shown, "' as the expected type"));
  }
  return absl::OkStatus();
}

// Returns InvalidArgument naming the first key of `node` not in `known`, so a
// typo is an error rather than a silently ignored setting.
inline absl::Status CheckKnownKeys(const YAML::Node& node, const std::string& where,
                                   const std::set<std::string>& known) {
  if (!node || !node.IsMap()) return absl::OkStatus();
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(where, key, ": unknown setting (known: ",
                                                     absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

// Loads the YAML file at `path`. NotFound names the file and `what` it is
// ("agent config"); a syntax error is InvalidArgument with the file and line.
inline absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path, const std::string& what) {
  try {
    return YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("cannot read ", what, " `", path, "`"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

namespace internal {

// Sees where each document starts and nothing else (no nodes are built).
class DocumentStarts final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
  YAML::Mark start;
};

}  // namespace internal

// Parses every document of `text` (as YAML::LoadAll does). InvalidArgument
// names `where` and the line for a syntax error, and for input on which
// yaml-cpp 0.7's LoadAll never returns: on some malformed streams
// ("--- &a b, c:") its parser hands out the same document at the same
// position forever, allocating a node each time. A first pass without
// nodes sees that and stops; the second pass then terminates too.
inline absl::StatusOr<std::vector<YAML::Node>> LoadAllYaml(const std::string& text,
                                                           const std::string& where,
                                                           size_t max_documents = 10000) {
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    internal::DocumentStarts starts;
    size_t documents = 0;
    int last = -1;
    while (parser.HandleNextDocument(starts)) {
      if (starts.start.pos <= last) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": line ", starts.start.line + 1, ", column ", starts.start.column + 1,
            ": the YAML parser cannot get past this point (malformed document)"));
      }
      last = starts.start.pos;
      if (++documents > max_documents) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": more than ", max_documents, " YAML documents"));
      }
    }
    return YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.what()));
  }
}

}  // namespace flotilla
