// The manager's gRPC services: thin adapters from the wire to Manager.
#pragma once

#include <memory>

#include "auth/caller.h"
#include "flotilla/v1/api.grpc.pb.h"
#include "flotilla/v1/federation.grpc.pb.h"
#include "manager/manager.h"

namespace flotilla::manager {

// Every call is authenticated by `gate` (auth/caller.h): federation calls
// must come from the node they speak for, API calls from a user, scoped to
// the user's tenant (manager/access.h).
std::unique_ptr<flotilla::v1::FederationService::Service> NewFederationService(Manager* manager,
                                                                              auth::Gate gate);
std::unique_ptr<flotilla::v1::ApiService::Service> NewApiService(Manager* manager, auth::Gate gate);

}  // namespace flotilla::manager
