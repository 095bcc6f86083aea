// Parsers for the quantities users write in flags, request files, templates
// and configuration: cpu ("500m", "2", "0.5"), sizes ("256Mi", "1Gi", "512M",
// bytes) and durations ("500ms", "30s", "5m", "1h", plain milliseconds).
// Errors quote the text and show the accepted forms.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace flotilla {

// "500m" -> 500, "2" -> 2000, "0.5" -> 500 (millicores).
absl::StatusOr<int64_t> ParseCpu(const std::string& text);
// "256Mi", "1Gi", "512M", "1000" (bytes).
absl::StatusOr<int64_t> ParseBytes(const std::string& text);
// "30s", "500ms", "2m", "1h", or plain milliseconds.
absl::StatusOr<int64_t> ParseDurationMs(const std::string& text);

}  // namespace flotilla
