// The manager's gRPC services: thin adapters from the wire to Manager.
#pragma once

#include <memory>

#include "flotilla/v1/api.grpc.pb.h"
#include "flotilla/v1/federation.grpc.pb.h"
#include "manager/manager.h"

namespace flotilla::manager {

std::unique_ptr<flotilla::v1::FederationService::Service> NewFederationService(Manager* manager);
std::unique_ptr<flotilla::v1::ApiService::Service> NewApiService(Manager* manager);

}  // namespace flotilla::manager
