// Typed reads of YAML config nodes whose errors name the key and the value:
// "agent.yaml: resources.cpu_millis: expected an integer, got 'lots'".
#pragma once

#include <yaml-cpp/yaml.h>

#include <set>
#include <string>

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

}  // namespace flotilla
