// gRPC credentials from the federation's certificates (auth/pki.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "auth/pki.h"

namespace flotilla::auth {

enum class ClientCertPolicy {
  kRequire,   // agents: only the manager (and migrating peers) may call
  kOptional,  // the manager: nodes present certificates, users tokens
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const Transport& t, ClientCertPolicy policy);

// Credentials for a channel to a peer whose certificate must carry
// `peer_name` (kManagerName or NodeName(id)); `token` (may be empty) is sent
// as a bearer token on every call. The channel presents the party's own
// certificate when it has one (a user's CLI has only the CA).
struct ChannelSecurity {
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string peer_name;  // "" for insecure channels
};
absl::StatusOr<ChannelSecurity> ChannelCredentials(const Transport& t, const std::string& peer_name,
                                                   const std::string& token = "");

// Reads a whole (small) PEM or token file; InvalidArgument names the file.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit = 1 << 20);

}  // namespace flotilla::auth
