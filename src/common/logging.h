// Logging: spdlog, plus a formatter so absl::string_view (a distinct type in
// Debian's abseil, e.g. absl::Status::message()) can be logged directly.
#pragma once

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string>

#include "absl/strings/string_view.h"

template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Ctx>
  auto format(absl::string_view s, Ctx& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

namespace flotilla {

// Sets the process-wide log level from a name (trace, debug, info, warn,
// error); returns false if the name is unknown.
bool SetLogLevel(const std::string& level);

}  // namespace flotilla
