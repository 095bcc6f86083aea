// Validation of an ExecutionRequest as the manager receives it: every field a
// caller can get wrong, with an error that says what and how to fix it, and
// the manager's defaults filled in. Pure: no I/O, no clock, no node state
// (whether any node could ever run it is the scheduler's check).
#pragma once

#include "absl/status/status.h"
#include "flotilla/v1/types.pb.h"
#include "manager/config.h"

namespace flotilla::manager {

// Returns InvalidArgument naming the field when `r` is malformed; otherwise
// fills in the defaults of `config` (user, resources, timeout) and returns OK.
absl::Status ValidateRequest(const ManagerConfig& config, flotilla::v1::ExecutionRequest* r);

}  // namespace flotilla::manager
