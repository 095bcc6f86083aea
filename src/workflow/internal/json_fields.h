// Lenient readers of optional JSON fields, shared by the analysis and plan
// parsers: a missing or mistyped field reads as empty, and the callers
// check what they require.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace flotilla::workflow::internal {

// The string elements of the array j[field]; empty when absent.
inline std::vector<std::string> StringList(const nlohmann::json& j, const char* field) {
  std::vector<std::string> out;
  if (!j.contains(field) || !j[field].is_array()) return out;
  for (const auto& n : j[field]) {
    if (n.is_string()) out.push_back(n.get<std::string>());
  }
  return out;
}

// j[field] if it is a string; "" otherwise.
inline std::string String(const nlohmann::json& j, const char* field) {
  if (!j.contains(field) || !j[field].is_string()) return "";
  return j[field].get<std::string>();
}

}  // namespace flotilla::workflow::internal
