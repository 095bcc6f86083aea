#include "auth/tls.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace flotilla::auth {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t limit) {
  auto data = ReadWholeFile(path, limit);
  if (!data.ok() && data.status().code() != absl::StatusCode::kInvalidArgument) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  return data;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const Transport& t, ClientCertPolicy policy) {
  if (t.insecure) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(
      policy == ClientCertPolicy::kRequire
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  ASSIGN_OR_RETURN(o.pem_root_certs, ReadSmallFile(t.files.ca_cert));
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.private_key, ReadSmallFile(t.files.key));
  ASSIGN_OR_RETURN(pair.cert_chain, ReadSmallFile(t.files.cert));
  o.pem_key_cert_pairs.push_back(std::move(pair));
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<ChannelSecurity> ChannelCredentials(const Transport& t, const std::string& peer_name,
                                                   const std::string& token) {
  ChannelSecurity out;
  if (t.insecure) {
    out.credentials = grpc::InsecureChannelCredentials();
    return out;
  }
  grpc::SslCredentialsOptions o;
  if (t.files.ca_cert.empty()) {
    return absl::InvalidArgumentError(
        "no CA certificate to check the server with (FLOTILLA_CA, or `flotilla up`'s state "
        "directory)");
  }
  ASSIGN_OR_RETURN(o.pem_root_certs, ReadSmallFile(t.files.ca_cert));
  if (!t.files.cert.empty()) {
    ASSIGN_OR_RETURN(o.pem_private_key, ReadSmallFile(t.files.key));
    ASSIGN_OR_RETURN(o.pem_cert_chain, ReadSmallFile(t.files.cert));
  }
  out.credentials = grpc::SslCredentials(o);
  if (!token.empty()) {
    out.credentials = grpc::CompositeChannelCredentials(
        out.credentials, grpc::AccessTokenCredentials(token));
  }
  out.peer_name = peer_name;
  return out;
}

}  // namespace flotilla::auth
