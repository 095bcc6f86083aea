// Small file-system helpers shared by the shells (agent, sandboxes).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla {

// Creates `path` and every missing parent (mode 0755), like `mkdir -p`.
// An error names the component that could not be made.
absl::Status MkdirParents(const std::string& path);

// The whole content of `path` (cgroup and /proc files, certificates, token
// and users files: small, read in one go). Errors name the operation and the
// path, with errno; a file longer than `max_bytes` is InvalidArgument.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          size_t max_bytes = static_cast<size_t>(-1));

}  // namespace flotilla
