#include "cli/output.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace flotilla::cli {

std::string Table::Render() const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (std::fabs(v) >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return absl::StrCat(bytes, " B");
  return absl::StrFormat(v >= 100 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

std::string FormatMillicores(int64_t millis) { return absl::StrCat(millis, "m"); }

std::string FormatDurationMs(int64_t ms) {
  if (ms < 1000) return absl::StrCat(ms, "ms");
  if (ms < 60'000) return absl::StrFormat("%.1fs", ms / 1000.0);
  int64_t s = ms / 1000;
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, opts);
  return out;
}

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

}  // namespace flotilla::cli
