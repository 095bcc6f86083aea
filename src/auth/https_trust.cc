#include "auth/https_trust.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "auth/pki.h"

namespace flotilla::auth {

absl::Status TrustManagerOnly(SSL_CTX* ctx, const std::string& ca_file) {
  // A fresh store: no system roots, so that only the federation's CA counts.
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr || X509_STORE_load_file(store, ca_file.c_str()) != 1) {
    X509_STORE_free(store);
    char buf[256] = "unknown OpenSSL error";
    if (unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the CA certificate ", ca_file, ": ", buf));
  }
  SSL_CTX_set_cert_store(ctx, store);  // takes ownership
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM* param = SSL_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, kManagerName, 0) != 1) {
    return absl::InternalError("cannot set the expected manager name");
  }
  return absl::OkStatus();
}

}  // namespace flotilla::auth
