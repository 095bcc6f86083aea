// Certificate revocation: the CA's revocation list (an X.509 CRL, signed
// by the CA key, in <ca_dir>/ca.crl) and the check every gRPC call's peer
// certificate goes through.
//
// Why a per-call check and not only the TLS handshake's: a node whose key
// leaked keeps its HTTP/2 connection (heartbeats every second) for as long
// as it likes, so refusing new handshakes alone would never cut it off. The
// manager (and an agent, for its callers) looks up the peer certificate's
// serial on every call instead. The serial of each distinct certificate is
// parsed once and cached (keyed by the whole PEM, so no hash collision can
// pass one certificate off as another), and a call costs a lookup.
//
// The list is a file other tools read (`openssl crl -in ca.crl -text`).
// A process re-reads it when it changes (checked at most once a second) and
// accepts it only with a valid signature of its CA; a list that is missing
// revokes nothing, one that is unreadable or forged is refused at start and,
// later, keeps the last good list in force (logged) rather than dropping
// every revocation; so does a list that disappears, or one whose CRL number
// is lower than the list in force (a restored backup).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace flotilla::auth {

// The CRL of the CA in `ca_dir`.
std::string CrlPath(const std::string& ca_dir);

// Adds the serial of the certificate at `cert_path` to the CA's list and
// writes the list anew (signed, its CRL number one higher). The certificate
// must be one this CA signed. Returns the serial (upper-case hex).
// Revoking a serial twice is not an error.
absl::StatusOr<std::string> RevokeCertificate(const std::string& ca_dir,
                                              const std::string& cert_path);
// The same by serial (hex, as `openssl x509 -serial` prints it).
absl::Status RevokeSerial(const std::string& ca_dir, const std::string& serial_hex);
// The revoked serials in the CA's list (verified); empty if there is none.
absl::StatusOr<std::unordered_set<std::string>> ReadRevokedSerials(const std::string& crl_path,
                                                                  const std::string& ca_cert_path);

// The serial (upper-case hex) of a PEM certificate.
absl::StatusOr<std::string> CertificateSerial(absl::string_view pem);

// The list a server checks its callers against. Thread-safe.
class Revocations {
 public:
  // Reads `crl_path` (verified with the CA certificate at `ca_cert_path`).
  // A missing file is an empty list; an invalid one is an error.
  static absl::StatusOr<std::shared_ptr<Revocations>> Open(std::string crl_path,
                                                           std::string ca_cert_path);

  // PermissionDenied naming the serial when the PEM certificate is revoked
  // (`who` names the caller in the message); OK otherwise.
  absl::Status Check(absl::string_view pem, absl::string_view who);

  size_t size();  // revoked serials in force

 private:
  Revocations(std::string crl_path, std::string ca_cert_path)
      : crl_path_(std::move(crl_path)), ca_cert_path_(std::move(ca_cert_path)) {}
  // Re-reads the file if its identity (inode, size, mtime) changed.
  absl::Status Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string crl_path_;
  const std::string ca_cert_path_;
  absl::Mutex mu_;
  std::unordered_set<std::string> revoked_ ABSL_GUARDED_BY(mu_);
  std::string file_identity_ ABSL_GUARDED_BY(mu_);
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;  // a list was read: none may replace it but a list
  long number_ ABSL_GUARDED_BY(mu_) = 0;      // its CRL number: no older one is accepted
  std::chrono::steady_clock::time_point checked_ ABSL_GUARDED_BY(mu_);
  // PEM -> its serial; cleared when it reaches kMaxCached.
  std::unordered_map<std::string, std::string> serials_ ABSL_GUARDED_BY(mu_);
  static constexpr size_t kMaxCached = 4096;
};

}  // namespace flotilla::auth
