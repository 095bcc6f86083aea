// Human output for the CLI: aligned tables, byte sizes, durations, and the
// unit parsers shared by flags and request files ("500m" cpu, "256Mi", "30s").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/units.h"
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

using ::flotilla::ParseBytes;
using ::flotilla::ParseCpu;
using ::flotilla::ParseDurationMs;

}  // namespace flotilla::cli
