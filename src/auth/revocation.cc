#include "auth/revocation.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/openssl_util.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace flotilla::auth {

namespace {

using ssl::Owned;
using ssl::ReadCert;
using ssl::ReadKey;
using ssl::SslError;

std::string HexOf(const ASN1_INTEGER* serial) {
  Owned<BIGNUM> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) return "";
  Owned<char> hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : "";
}

// Upper-case hex without leading zeros, as BN_bn2hex writes it, whatever
// form the user typed ("0a:1b", "0x0A1B", "A1B").
absl::StatusOr<std::string> NormalizeSerial(std::string hex) {
  std::string clean;
  if (absl::StartsWithIgnoreCase(hex, "0x")) hex = hex.substr(2);
  for (char c : hex) {
    if (c == ':') continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(
          absl::StrCat("serial '", hex, "' is not hexadecimal (as `openssl x509 -serial` prints)"));
    }
    clean.push_back(c);
  }
  if (clean.empty() || clean.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat("serial '", hex, "': 1 to 64 hex digits"));
  }
  BIGNUM* raw = nullptr;
  if (BN_hex2bn(&raw, clean.c_str()) == 0) return SslError("serial");
  Owned<BIGNUM> bn(raw);
  Owned<char> out(BN_bn2hex(bn.get()));
  return std::string(out.get());
}

// The CRL at `path` if its signature is the CA's; nullptr when there is none.
absl::StatusOr<Owned<X509_CRL>> ReadCrl(const std::string& path, X509* ca) {
  Owned<FILE> f(fopen(path.c_str(), "re"));
  if (!f) {
    if (errno == ENOENT) return Owned<X509_CRL>();
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", path));
  }
  Owned<X509_CRL> crl(PEM_read_X509_CRL(f.get(), nullptr, nullptr, nullptr));
  if (!crl) return SslError(absl::StrCat(path, " is not a PEM certificate revocation list"));
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca)) != 0 ||
      X509_CRL_verify(crl.get(), X509_get0_pubkey(ca)) != 1) {
    ERR_clear_error();
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not signed by this federation's CA: refused"));
  }
  return crl;
}

absl::Status WriteCrlAtomically(const std::string& path, X509_CRL* crl) {
  std::string tmp = path + ".XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", tmp));
  fchmod(fd, 0644);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  Owned<FILE> f(fdopen(fd, "w"));
  if (!f) {
    const int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrCat("fdopen ", tmp));
  }
  if (PEM_write_X509_CRL(f.get(), crl) != 1) return SslError(absl::StrCat("writing ", tmp));
  if (fflush(f.get()) != 0 || fsync(fileno(f.get())) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("writing ", tmp));
  }
  f.reset();
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(e, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// Holds an exclusive lock on <ca_dir>/ca.crl.lock: two `ca revoke` at once
// each read, extend and rewrite the list, and one would lose the other's.
class CrlLock {
 public:
  static absl::StatusOr<CrlLock> Take(const std::string& ca_dir) {
    const std::string path = ca_dir + "/ca.crl.lock";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
    if (flock(fd, LOCK_EX) != 0) {
      const int e = errno;
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrCat("cannot lock ", path));
    }
    return CrlLock(fd);
  }
  CrlLock(CrlLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~CrlLock() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  explicit CrlLock(int fd) : fd_(fd) {}
  int fd_;
};

struct ListRead {
  std::unordered_set<std::string> serials;
  long number = 0;  // the CRL number; 0 when there is no list
  bool present = false;
};

absl::StatusOr<ListRead> ReadList(const std::string& crl_path, const std::string& ca_cert_path) {
  ASSIGN_OR_RETURN(Owned<X509> ca, ReadCert(ca_cert_path));
  ASSIGN_OR_RETURN(Owned<X509_CRL> crl, ReadCrl(crl_path, ca.get()));
  ListRead out;
  if (!crl) return out;
  out.present = true;
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
    out.serials.insert(HexOf(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(entries, i))));
  }
  Owned<ASN1_INTEGER> n(static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr)));
  if (n) out.number = ASN1_INTEGER_get(n.get());
  return out;
}

}  // namespace

std::string CrlPath(const std::string& ca_dir) { return ca_dir + "/ca.crl"; }

absl::StatusOr<std::string> CertificateSerial(absl::string_view pem) {
  Owned<BIO> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return SslError("BIO_new_mem_buf");
  Owned<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return SslError("not a PEM certificate");
  std::string hex = HexOf(X509_get0_serialNumber(cert.get()));
  if (hex.empty()) return SslError("certificate serial");
  return hex;
}

absl::Status RevokeSerial(const std::string& ca_dir, const std::string& serial_hex) {
  ASSIGN_OR_RETURN(std::string serial, NormalizeSerial(serial_hex));
  ASSIGN_OR_RETURN(Owned<X509> ca, ReadCert(ca_dir + "/ca.crt"));
  ASSIGN_OR_RETURN(Owned<EVP_PKEY> key, ReadKey(ca_dir + "/ca.key"));
  const std::string path = CrlPath(ca_dir);
  ASSIGN_OR_RETURN(CrlLock lock, CrlLock::Take(ca_dir));
  ASSIGN_OR_RETURN(Owned<X509_CRL> old, ReadCrl(path, ca.get()));

  Owned<X509_CRL> crl(X509_CRL_new());
  if (!crl || X509_CRL_set_version(crl.get(), 1) != 1 ||  // v2: extensions
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca.get())) != 1) {
    return SslError("a new revocation list");
  }
  Owned<ASN1_TIME> now(X509_gmtime_adj(nullptr, 0));
  // Nothing here reads nextUpdate as an expiry (the list is a local file the
  // CA's holder rewrites), but other tools want one: the CA's own horizon.
  Owned<ASN1_TIME> next(X509_time_adj_ex(nullptr, 3650, 0, nullptr));
  if (!now || !next || X509_CRL_set1_lastUpdate(crl.get(), now.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1) {
    return SslError("revocation list dates");
  }
  long number = 1;
  bool present = false;
  if (old) {
    // Earlier entries keep their revocation dates.
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(old.get());
    for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
      X509_REVOKED* r = sk_X509_REVOKED_value(entries, i);
      if (HexOf(X509_REVOKED_get0_serialNumber(r)) == serial) present = true;
      X509_REVOKED* copy = X509_REVOKED_dup(r);
      if (!copy || X509_CRL_add0_revoked(crl.get(), copy) != 1) {
        X509_REVOKED_free(copy);
        return SslError("copying entries");
      }
    }
    Owned<ASN1_INTEGER> n(static_cast<ASN1_INTEGER*>(
        X509_CRL_get_ext_d2i(old.get(), NID_crl_number, nullptr, nullptr)));
    if (n) number = ASN1_INTEGER_get(n.get()) + 1;
  }
  if (!present) {
    BIGNUM* raw = nullptr;
    BN_hex2bn(&raw, serial.c_str());
    Owned<BIGNUM> bn(raw);
    X509_REVOKED* r = X509_REVOKED_new();
    Owned<ASN1_INTEGER> sn(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    if (!r || !sn || X509_REVOKED_set_serialNumber(r, sn.get()) != 1 ||
        X509_REVOKED_set_revocationDate(r, now.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), r) != 1) {
      X509_REVOKED_free(r);
      return SslError("a revocation entry");
    }
  }
  Owned<ASN1_INTEGER> crl_number(ASN1_INTEGER_new());
  if (!crl_number || ASN1_INTEGER_set(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1 ||
      X509_CRL_sort(crl.get()) != 1 || X509_CRL_sign(crl.get(), key.get(), EVP_sha256()) == 0) {
    return SslError("signing the revocation list");
  }
  return WriteCrlAtomically(path, crl.get());
}

absl::StatusOr<std::string> RevokeCertificate(const std::string& ca_dir,
                                              const std::string& cert_path) {
  ASSIGN_OR_RETURN(Owned<X509> ca, ReadCert(ca_dir + "/ca.crt"));
  ASSIGN_OR_RETURN(Owned<X509> cert, ReadCert(cert_path));
  if (X509_verify(cert.get(), X509_get0_pubkey(ca.get())) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(cert_path, " was not issued by the CA in ", ca_dir));
  }
  std::string serial = HexOf(X509_get0_serialNumber(cert.get()));
  RETURN_IF_ERROR(RevokeSerial(ca_dir, serial));
  return serial;
}

absl::StatusOr<std::unordered_set<std::string>> ReadRevokedSerials(
    const std::string& crl_path, const std::string& ca_cert_path) {
  ASSIGN_OR_RETURN(ListRead list, ReadList(crl_path, ca_cert_path));
  return std::move(list.serials);
}

absl::StatusOr<std::shared_ptr<Revocations>> Revocations::Open(std::string crl_path,
                                                               std::string ca_cert_path) {
  std::shared_ptr<Revocations> r(new Revocations(std::move(crl_path), std::move(ca_cert_path)));
  absl::MutexLock lock(&r->mu_);
  RETURN_IF_ERROR(r->Reload());
  return r;
}

absl::Status Revocations::Reload() {
  checked_ = std::chrono::steady_clock::now();
  struct stat st;
  std::string identity = "absent";
  if (stat(crl_path_.c_str(), &st) == 0) {
    identity = absl::StrCat(st.st_ino, ":", st.st_size, ":", st.st_mtim.tv_sec, ".",
                            st.st_mtim.tv_nsec);
  }
  if (identity == file_identity_) return absl::OkStatus();
  // Tried once per version of the file: a bad one is reported once, not
  // every second, and the last good list stays in force.
  file_identity_ = identity;
  ASSIGN_OR_RETURN(ListRead list, ReadList(crl_path_, ca_cert_path_));
  if (loaded_ && !list.present) {
    return absl::FailedPreconditionError(
        absl::StrCat(crl_path_, " is gone; a list, once read, is only ever replaced"));
  }
  if (list.present && list.number < number_) {
    // A restored backup or a stale copy would un-revoke what came after it.
    return absl::FailedPreconditionError(absl::StrCat(crl_path_, " is list number ", list.number,
                                                      ", older than number ", number_,
                                                      " in force"));
  }
  revoked_ = std::move(list.serials);
  if (list.present) {
    loaded_ = true;
    number_ = list.number;
    spdlog::info("certificate revocation list {} (number {}): {} revoked", crl_path_, number_,
                 revoked_.size());
  }
  return absl::OkStatus();
}

absl::Status Revocations::Check(absl::string_view pem, absl::string_view who) {
  absl::MutexLock lock(&mu_);
  if (std::chrono::steady_clock::now() - checked_ >= std::chrono::seconds(1)) {
    if (absl::Status st = Reload(); !st.ok()) {
      // Keep the last good list: dropping it would un-revoke everything.
      spdlog::error("keeping the previous revocation list ({} revoked): {}", revoked_.size(),
                    std::string(st.message()));
    }
  }
  if (revoked_.empty()) return absl::OkStatus();
  const std::string key(pem);
  auto it = serials_.find(key);
  if (it == serials_.end()) {
    auto serial = CertificateSerial(pem);
    if (!serial.ok()) return absl::UnauthenticatedError(serial.status().message());
    if (serials_.size() >= kMaxCached) serials_.clear();
    it = serials_.emplace(key, *std::move(serial)).first;
  }
  if (revoked_.count(it->second)) {
    return absl::PermissionDeniedError(
        absl::StrCat("the certificate of ", who, " (serial ", it->second, ") is revoked"));
  }
  return absl::OkStatus();
}

size_t Revocations::size() {
  absl::MutexLock lock(&mu_);
  return revoked_.size();
}

}  // namespace flotilla::auth
