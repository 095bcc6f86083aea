// Owning handles and small readers for OpenSSL objects, shared by the CA
// (pki.cc) and its revocation list (revocation.cc). Internal to auth/.
#pragma once

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace flotilla::auth::ssl {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  // ASN1_INTEGER and ASN1_TIME are both ASN1_STRING.
  void operator()(ASN1_STRING* p) const { ASN1_STRING_free(p); }
  void operator()(FILE* p) const { fclose(p); }
  void operator()(char* p) const { OPENSSL_free(p); }
};
template <typename T>
using Owned = std::unique_ptr<T, Free>;

// `what` and OpenSSL's first queued error; the queue is cleared.
inline absl::Status SslError(absl::string_view what) {
  char buf[256] = "unknown error";
  if (unsigned long e = ERR_get_error(); e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat(what, ": ", buf));
}

inline absl::StatusOr<Owned<EVP_PKEY>> ReadKey(const std::string& path) {
  Owned<FILE> f(fopen(path.c_str(), "re"));
  if (!f) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  Owned<EVP_PKEY> key(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
  if (!key) return SslError(absl::StrCat(path, " is not a PEM private key"));
  return key;
}

inline absl::StatusOr<Owned<X509>> ReadCert(const std::string& path) {
  Owned<FILE> f(fopen(path.c_str(), "re"));
  if (!f) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  Owned<X509> cert(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  if (!cert) return SslError(absl::StrCat(path, " is not a PEM certificate"));
  return cert;
}

}  // namespace flotilla::auth::ssl
