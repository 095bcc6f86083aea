#include "auth/caller.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "auth/pki.h"
#include "common/status_macros.h"

namespace flotilla::auth {

std::string Caller::Describe() const {
  switch (kind) {
    case Kind::kManager: return "the manager";
    case Kind::kNode: return absl::StrCat("node ", node_id);
    case Kind::kUser: break;
  }
  return absl::StrCat("user ", user.name, " of tenant ", user.tenant);
}

Caller DevelopmentCaller() {
  Caller c;
  c.kind = Caller::Kind::kUser;
  c.user = {"dev", "default", UserRole::kAdmin};
  return c;
}

absl::StatusOr<Caller> Gate::FromBearer(absl::string_view header) const {
  if (insecure) return DevelopmentCaller();
  if (header.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: send 'authorization: Bearer <token>' (the CLI and SDK read the token "
        "from FLOTILLA_TOKEN or the local federation's state directory)");
  }
  absl::string_view token = header;
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("the authorization header is not 'Bearer <token>'");
  }
  token = absl::StripAsciiWhitespace(token);
  if (token.empty() || token.size() > 256) {
    return absl::UnauthenticatedError("the bearer token is empty or too long");
  }
  if (users == nullptr) return absl::UnauthenticatedError("this server accepts no user tokens");
  auto user = users->Authenticate(token);
  if (!user.ok()) return user.status();
  Caller c;
  c.kind = Caller::Kind::kUser;
  c.user = *std::move(user);
  return c;
}

absl::StatusOr<Caller> Gate::FromGrpc(const grpc::ServerContextBase& ctx) const {
  if (insecure) return DevelopmentCaller();
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth && auth->IsPeerAuthenticated()) {
    // The TLS handshake verified the chain to our CA; gRPC hands over the
    // certificate's common name, so no call parses the certificate again.
    std::vector<grpc::string_ref> cn = auth->FindPropertyValues("x509_common_name");
    if (!cn.empty()) {
      const std::string name(cn.front().data(), cn.front().size());
      if (revocations) {
        std::vector<grpc::string_ref> pem = auth->FindPropertyValues("x509_pem_cert");
        if (pem.empty()) return absl::UnauthenticatedError("no peer certificate to check");
        RETURN_IF_ERROR(
            revocations->Check(absl::string_view(pem.front().data(), pem.front().size()), name));
      }
      Caller c;
      if (name == kManagerName) {
        c.kind = Caller::Kind::kManager;
        return c;
      }
      if (auto id = NodeIdFromName(name)) {
        c.kind = Caller::Kind::kNode;
        c.node_id = *id;
        return c;
      }
      return absl::PermissionDeniedError(absl::StrCat(
          "the client certificate names '", name, "', which is neither the manager nor a node"));
    }
  }
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  absl::string_view header;
  if (it != md.end()) header = absl::string_view(it->second.data(), it->second.size());
  return FromBearer(header);
}

absl::StatusOr<int> PeerTrustLevel(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  std::vector<grpc::string_ref> pem;
  if (auth && auth->IsPeerAuthenticated()) pem = auth->FindPropertyValues("x509_pem_cert");
  if (pem.empty()) return absl::UnauthenticatedError("the caller presented no certificate");
  auto cert = ParsePeerCertificate(std::string(pem.front().data(), pem.front().size()));
  if (!cert.ok()) return absl::UnauthenticatedError(cert.status().message());
  return cert->trust_level.value_or(0);
}

absl::StatusOr<Caller> Gate::RequireUser(absl::StatusOr<Caller> caller) const {
  if (!caller.ok()) return caller.status();
  if (caller->kind != Caller::Kind::kUser) {
    return absl::PermissionDeniedError(
        absl::StrCat(caller->Describe(), " may not call the user API; users send a token"));
  }
  return caller;
}

}  // namespace flotilla::auth
