#include "auth/pki.h"

#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/openssl_util.h"
#include "common/status_macros.h"

namespace flotilla::auth {

namespace {

using ssl::ReadCert;
using ssl::ReadKey;
using ssl::SslError;
using Key = ssl::Owned<EVP_PKEY>;
using Cert = ssl::Owned<X509>;
using Bio = ssl::Owned<BIO>;
using File = ssl::Owned<FILE>;

// Opens `path` for writing with `mode`, replacing an existing file, so a
// private key is never readable by others even for a moment.
absl::StatusOr<File> OpenForWrite(const std::string& path, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
  }
  if (fchmod(fd, mode) != 0) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrCat("chmod ", path));
  }
  FILE* f = fdopen(fd, "w");
  if (!f) {
    int e = errno;
    close(fd);
    return absl::ErrnoToStatus(e, absl::StrCat("fdopen ", path));
  }
  return File(f);
}

absl::Status WriteKey(const std::string& path, EVP_PKEY* key) {
  ASSIGN_OR_RETURN(File f, OpenForWrite(path, 0600));
  if (PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError(absl::StrCat("writing ", path));
  }
  if (fflush(f.get()) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("writing ", path));
  return absl::OkStatus();
}

absl::Status WriteCert(const std::string& path, X509* cert) {
  ASSIGN_OR_RETURN(File f, OpenForWrite(path, 0644));
  if (PEM_write_X509(f.get(), cert) != 1) return SslError(absl::StrCat("writing ", path));
  if (fflush(f.get()) != 0) return absl::ErrnoToStatus(errno, absl::StrCat("writing ", path));
  return absl::OkStatus();
}



absl::StatusOr<Key> NewKey() {
  Key key(EVP_EC_gen("P-256"));
  if (!key) return SslError("generating an EC P-256 key");
  return key;
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return SslError(absl::StrCat("certificate extension ", OBJ_nid2sn(nid), "=", value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return SslError("adding a certificate extension");
  return absl::OkStatus();
}

// A certificate for `key` named `cn` (and `ou` when not empty), valid from an
// hour ago (clocks differ) for `days`, with a random serial.
absl::StatusOr<Cert> NewCert(EVP_PKEY* key, const std::string& cn, const std::string& ou,
                             int days) {
  Cert cert(X509_new());
  if (!cert) return SslError("X509_new");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return SslError("RAND_bytes");
  serial[0] &= 0x7f;  // a positive INTEGER
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()))) {
    BN_free(bn);
    return SslError("certificate serial");
  }
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("flotilla"), -1, -1, 0);
  if (!ou.empty()) {
    X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(ou.c_str()), -1, -1, 0);
  }
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return SslError(absl::StrCat("certificate name '", cn, "'"));
  }
  return cert;
}

}  // namespace

std::string NodeName(const std::string& node_id) { return node_id + kNodeSuffix; }

std::optional<std::string> NodeIdFromName(const std::string& name) {
  if (!absl::EndsWith(name, kNodeSuffix)) return std::nullopt;
  std::string id = name.substr(0, name.size() - std::strlen(kNodeSuffix));
  if (!ValidateNodeId(id).ok()) return std::nullopt;
  return id;
}

absl::Status ValidateNodeId(const std::string& id) {
  bool ok = !id.empty() && id.size() <= 63 && std::isalnum(static_cast<unsigned char>(id[0]));
  for (char c : id) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node id '", id,
        "' is not valid: use 1-63 characters from [A-Za-z0-9._-], starting with a letter or "
        "digit (it becomes the name in the node's certificate)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateTransport(const Transport& t, const std::string& where) {
  if (t.insecure) return absl::OkStatus();
  for (const auto& [key, value] : {std::pair{"ca", &t.files.ca_cert}, std::pair{"cert", &t.files.cert},
                                   std::pair{"key", &t.files.key}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, key, ": missing; every gRPC connection is mutual TLS (issue certificates with "
          "`flotilla ca init` and `flotilla ca issue`; `insecure: true` turns security off for "
          "development only)"));
    }
    if (access(value->c_str(), R_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, key, ": cannot read ", *value));
    }
  }
  return absl::OkStatus();
}

absl::Status InitCa(const std::string& dir, int valid_days) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mkdir ", dir));
  }
  const std::string key_path = dir + "/ca.key";
  if (access(key_path.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(key_path, " exists: this directory already holds a CA"));
  }
  ASSIGN_OR_RETURN(Key key, NewKey());
  ASSIGN_OR_RETURN(Cert cert, NewCert(key.get(), "flotilla CA", "", valid_days));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
  RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  RETURN_IF_ERROR(AddExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) return SslError("signing the CA");
  RETURN_IF_ERROR(WriteKey(key_path, key.get()));
  return WriteCert(dir + "/ca.crt", cert.get());
}

absl::StatusOr<TlsFiles> Issue(const std::string& ca_dir, const IssueRequest& req,
                               const std::string& out) {
  std::string cn;
  std::string ou;
  std::vector<std::string> san;
  if (req.role == Role::kManager) {
    cn = kManagerName;
  } else {
    RETURN_IF_ERROR(ValidateNodeId(req.node_id));
    if (req.trust_level < 0 || req.trust_level > 10) {
      return absl::InvalidArgumentError(
          absl::StrCat("trust level ", req.trust_level, " is not in 0-10"));
    }
    cn = NodeName(req.node_id);
    ou = absl::StrCat("trust=", req.trust_level);
  }
  san.push_back("DNS:" + cn);
  for (const auto& d : req.dns) san.push_back("DNS:" + d);
  for (const auto& ip : req.ips) san.push_back("IP:" + ip);
  ASSIGN_OR_RETURN(Key ca_key, ReadKey(ca_dir + "/ca.key"));
  ASSIGN_OR_RETURN(Cert ca_cert, ReadCert(ca_dir + "/ca.crt"));
  ASSIGN_OR_RETURN(Key key, NewKey());
  ASSIGN_OR_RETURN(Cert cert, NewCert(key.get(), cn, ou, req.valid_days));
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert.get()));
  RETURN_IF_ERROR(AddExtension(cert.get(), ca_cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  RETURN_IF_ERROR(
      AddExtension(cert.get(), ca_cert.get(), NID_key_usage, "critical,digitalSignature,keyAgreement"));
  // Both: the manager and agents are servers and clients of each other.
  RETURN_IF_ERROR(AddExtension(cert.get(), ca_cert.get(), NID_ext_key_usage, "serverAuth,clientAuth"));
  RETURN_IF_ERROR(AddExtension(cert.get(), ca_cert.get(), NID_subject_alt_name, absl::StrJoin(san, ",")));
  RETURN_IF_ERROR(AddExtension(cert.get(), ca_cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(cert.get(), ca_key.get(), EVP_sha256()) == 0) {
    return SslError(absl::StrCat("signing the certificate for ", cn));
  }
  TlsFiles files{ca_dir + "/ca.crt", out + ".crt", out + ".key"};
  RETURN_IF_ERROR(WriteKey(files.key, key.get()));
  RETURN_IF_ERROR(WriteCert(files.cert, cert.get()));
  return files;
}

absl::StatusOr<PeerCertificate> ParsePeerCertificate(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return SslError("BIO_new_mem_buf");
  Cert cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return SslError("the peer's certificate is not PEM");
  X509_NAME* name = X509_get_subject_name(cert.get());
  PeerCertificate out;
  auto entry = [&](int nid) -> std::string {
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0) return "";
    ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char* utf8 = nullptr;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0) return "";
    std::string v(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
    OPENSSL_free(utf8);
    return v;
  };
  out.name = entry(NID_commonName);
  out.node_id = NodeIdFromName(out.name);
  const std::string ou = entry(NID_organizationalUnitName);
  int level = 0;
  if (absl::StartsWith(ou, "trust=") && absl::SimpleAtoi(ou.substr(6), &level)) {
    out.trust_level = level;
  }
  return out;
}

}  // namespace flotilla::auth
