#include "common/units.h"

#include <cctype>
#include <cmath>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flotilla {

namespace {

// Splits "256Mi" into (256, "Mi").
bool SplitNumber(const std::string& text, double* number, std::string* suffix) {
  size_t i = 0;
  while (i < text.size() && (isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) return false;
  *suffix = text.substr(i);
  return absl::SimpleAtod(text.substr(0, i), number) && *number >= 0;
}

}  // namespace

absl::StatusOr<int64_t> ParseCpu(const std::string& text) {
  double n = 0;
  std::string suffix;
  if (!SplitNumber(text, &n, &suffix) || (suffix != "" && suffix != "m")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cpu '", text, "' is not a quantity: use millicores (500m) or cores (2, 0.5)"));
  }
  return suffix == "m" ? static_cast<int64_t>(n) : static_cast<int64_t>(std::llround(n * 1000));
}

absl::StatusOr<int64_t> ParseBytes(const std::string& text) {
  double n = 0;
  std::string suffix;
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},         {"B", 1},           {"K", 1e3},         {"M", 1e6},
      {"G", 1e9},      {"T", 1e12},        {"Ki", 1024.0},     {"Mi", 1048576.0},
      {"Gi", 1073741824.0}, {"Ti", 1099511627776.0}, {"KB", 1e3}, {"MB", 1e6},
      {"GB", 1e9},     {"KiB", 1024.0},    {"MiB", 1048576.0}, {"GiB", 1073741824.0}};
  if (SplitNumber(text, &n, &suffix)) {
    for (const auto& [name, factor] : kUnits) {
      if (suffix == name) return static_cast<int64_t>(std::llround(n * factor));
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "size '", text, "' is not a quantity: use bytes or a unit such as 256Mi, 1Gi, 512M"));
}

absl::StatusOr<int64_t> ParseDurationMs(const std::string& text) {
  double n = 0;
  std::string suffix;
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  if (SplitNumber(text, &n, &suffix)) {
    for (const auto& [name, factor] : kUnits) {
      if (suffix == name) return static_cast<int64_t>(std::llround(n * factor));
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("duration '", text, "' is not valid: use e.g. 500ms, 30s, 5m, 1h"));
}

}  // namespace flotilla
