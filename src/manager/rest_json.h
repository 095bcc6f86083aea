// The federation and its executions as the REST API encodes them
// (docs/api.md "HTTP endpoints"): pure functions from the wire types to
// JSON, so the shapes are tested without a server.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>

#include "flotilla/v1/types.pb.h"

namespace flotilla::manager {

// How much of each output stream GET /v1/executions/ID returns: its end.
inline constexpr size_t kOutputTailBytes = 16 * 1024;

// A node: region, status, capacity and free resources, trust, isolation
// kinds, warm pools, checkpoint capability.
nlohmann::json NodeToJson(const v1::HypervisorNode& n);
// One line of the executions list: id, name, state, attempts, node, times.
nlohmann::json ExecutionSummaryToJson(const v1::Execution& e);
// The summary plus the placement (every candidate with its score parts, the
// chosen one first), the result, the last `output_tail_bytes` of each
// output stream, and live usage when running.
nlohmann::json ExecutionToJson(const v1::Execution& e, size_t output_tail_bytes);

}  // namespace flotilla::manager
