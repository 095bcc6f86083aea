// The reads of the user API that both front doors share — the gRPC
// ApiService (services.cc) and the REST routes (rest_federation.cc) — so
// that tenancy is decided in one place (manager/access.h) whichever door a
// caller comes through.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/caller.h"
#include "flotilla/v1/api.pb.h"
#include "flotilla/v1/types.pb.h"

namespace flotilla::manager {

class Manager;

// The execution `id` names for `caller` (a request id of the caller's own
// tenant, or a full execution id), unredacted. NotFound for an id that does
// not exist and, alike, for another tenant's execution.
absl::StatusOr<v1::Execution> FindExecutionFor(Manager& manager, const auth::Caller& caller,
                                               const std::string& id);

// The executions `caller` may list (the caller's own tenant; any tenant, or
// req.tenant(), for an admin), newest first, redacted for the caller.
absl::StatusOr<std::vector<v1::Execution>> ListExecutionsFor(Manager& manager,
                                                             const auth::Caller& caller,
                                                             v1::ListExecutionsRequest req);

}  // namespace flotilla::manager
