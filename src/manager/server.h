// RunManager: the `flotilla manager` process — opens the store, recovers,
// serves gRPC (FederationService, ApiService) and HTTP, and runs until
// SIGTERM or SIGINT.
#pragma once

#include "absl/status/status.h"
#include "manager/config.h"

namespace flotilla::manager {

// Blocks until a termination signal; returns an error if it cannot start.
absl::Status RunManager(const ManagerConfig& config);

}  // namespace flotilla::manager
