#include "common/status_macros.h"

#include <cstring>

namespace flotilla {

absl::Status ErrnoError(int err, absl::string_view op, absl::string_view object) {
  // ErrnoToStatus appends ": <strerror>" itself.
  std::string message = object.empty() ? std::string(op) : absl::StrCat(op, " `", object, "`");
  return absl::ErrnoToStatus(err, message);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

}  // namespace flotilla
