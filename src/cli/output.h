// Human output for the CLI: aligned tables, byte sizes, durations, and the
// unit parsers shared by flags and request files ("500m" cpu, "256Mi", "30s").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace flotilla::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

std::string FormatBytes(int64_t bytes);          // "1.5 GiB"
std::string FormatMillicores(int64_t millis);    // "1500m"
std::string FormatDurationMs(int64_t ms);        // "1.2s", "350ms", "3m04s"
std::string ToJson(const google::protobuf::Message& m);  // pretty, proto field names

// "500m" -> 500, "2" -> 2000, "0.5" -> 500.
absl::StatusOr<int64_t> ParseCpu(const std::string& text);
// "256Mi", "1Gi", "512M", "1000" (bytes).
absl::StatusOr<int64_t> ParseBytes(const std::string& text);
// "30s", "500ms", "2m", "1h", or plain milliseconds.
absl::StatusOr<int64_t> ParseDurationMs(const std::string& text);

}  // namespace flotilla::cli
