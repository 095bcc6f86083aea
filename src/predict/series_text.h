// Parsing a series from text: one number a line, as `flotilla forecast`
// reads it on stdin. Pure (the caller reads the text).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::predict {

// Returns the numbers in `text`, one a line, oldest first. Surrounding
// whitespace (and a Windows "\r") is ignored, as are blank lines. A line
// that is not a finite number is InvalidArgument naming its 1-based line
// number and its text, e.g. `line 7: "12,5" is not a number`.
absl::StatusOr<std::vector<double>> ParseSeries(absl::string_view text);

}  // namespace flotilla::predict
