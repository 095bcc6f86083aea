// FunctionService: the functions and workflows API over gRPC, a thin adapter
// over FunctionRegistry and Orchestrator. Each RPC builds the JSON the REST
// handler (src/manager/rest.cc) builds, makes the same call, and converts
// the JSON answer into the proto (proto/flotilla/v1/functions.proto); errors
// go through wire::ToGrpcStatus, so a message reads as it does over REST.
//
// Borrows both pointers; they must outlive the service. Thread-safe as the
// registry and the orchestrator are.
#pragma once

#include <memory>

#include "flotilla/v1/functions.grpc.pb.h"
#include "auth/caller.h"
#include "manager/functions.h"
#include "manager/orchestrator.h"

namespace flotilla::manager {

// Every call needs a user's token (auth/caller.h).
std::unique_ptr<flotilla::v1::FunctionService::Service> NewFunctionService(
    FunctionRegistry* functions, Orchestrator* orchestrator, auth::Gate gate);

}  // namespace flotilla::manager
