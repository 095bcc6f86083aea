// The one adapter between absl::Status (inside) and grpc::Status (the wire).
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace flotilla::wire {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a failed RPC into an absl::Status whose message names the call
// and the peer, e.g. "Submit to 127.0.0.1:7070: connection refused".
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context);

}  // namespace flotilla::wire
