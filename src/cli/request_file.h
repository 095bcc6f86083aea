// Request files for `flotilla submit`: YAML documents, one execution each
// (several documents separated by `---`). docs/cli.md describes the format.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/types.pb.h"

namespace flotilla::cli {

// Parses every document of `path`. Errors name the file, the document and the key.
absl::StatusOr<std::vector<flotilla::v1::ExecutionRequest>> LoadRequestFile(const std::string& path);

}  // namespace flotilla::cli
