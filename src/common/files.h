// Small file-system helpers shared by the shells (agent, sandboxes).
#pragma once

#include <string>

#include "absl/status/status.h"

namespace flotilla {

// Creates `path` and every missing parent (mode 0755), like `mkdir -p`.
// An error names the component that could not be made.
absl::Status MkdirParents(const std::string& path);

}  // namespace flotilla
