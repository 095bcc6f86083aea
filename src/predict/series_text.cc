#include "predict/series_text.h"

#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flotilla::predict {

absl::StatusOr<std::vector<double>> ParseSeries(absl::string_view text) {
  std::vector<double> out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    const absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty()) continue;
    double v = 0;
    if (!absl::SimpleAtod(trimmed, &v) || !std::isfinite(v)) {
      std::string shown(trimmed.substr(0, 40));
      if (trimmed.size() > 40) shown += "...";
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number, ": \"", shown,
          "\" is not a number; give one finite number a line (blank lines are skipped)"));
    }
    out.push_back(v);
  }
  return out;
}

}  // namespace flotilla::predict
