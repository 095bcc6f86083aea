// Who is calling: the one question every service asks before anything else.
//
// A call is authenticated by how it arrived: a verified TLS client
// certificate names the manager or a node; a bearer token names a user of a
// tenant. In the explicit development mode (security off) every caller is
// the admin of tenant "default"; that mode is logged loudly at start.
#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include <memory>

#include "absl/status/statusor.h"
#include "auth/revocation.h"
#include "auth/users.h"

namespace grpc {
class ServerContextBase;
}

namespace flotilla::auth {

struct Caller {
  enum class Kind { kUser, kNode, kManager };
  Kind kind = Kind::kUser;
  User user;            // for kUser
  std::string node_id;  // for kNode

  bool is_admin() const { return kind == Kind::kUser && user.role == UserRole::kAdmin; }
  // May this caller see and act on things of `tenant`?
  bool CanAccessTenant(absl::string_view tenant) const {
    return kind == Kind::kUser && (is_admin() || user.tenant == tenant);
  }
  std::string Describe() const;
};

// How a server decides. `users` may be null only when `insecure`.
struct Gate {
  bool insecure = false;
  UserDirectory* users = nullptr;
  // When set, a peer certificate on the CA's revocation list is refused on
  // every call (revocation.h), not only at its next handshake.
  std::shared_ptr<Revocations> revocations;

  // From a gRPC call: the peer certificate first, else the bearer token in
  // the "authorization" metadata. Unauthenticated says what was missing.
  absl::StatusOr<Caller> FromGrpc(const grpc::ServerContextBase& ctx) const;
  // From an "Authorization" header value ("Bearer flt_...").
  absl::StatusOr<Caller> FromBearer(absl::string_view authorization_header) const;

  // The caller as a user; PermissionDenied for nodes and the manager.
  absl::StatusOr<Caller> RequireUser(absl::StatusOr<Caller> caller) const;
};

// The highest trust level the caller's (verified) node certificate grants,
// from its "OU=trust=N"; 0 when it names none.
absl::StatusOr<int> PeerTrustLevel(const grpc::ServerContextBase& ctx);

// The development-mode caller: admin of tenant "default".
Caller DevelopmentCaller();

}  // namespace flotilla::auth
