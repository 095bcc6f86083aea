#include "auth/migration_token.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace flotilla::auth {

namespace {

std::string Mac(const std::string& key, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace

std::string NewMigrationKey() {
  std::string key(kMigrationKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    spdlog::critical("RAND_bytes failed: no randomness for a migration key");
    std::abort();
  }
  return key;
}

std::string MintMigrationToken(const std::string& target_key, const v1::MigrationClaims& claims) {
  v1::SignedMigrationToken t;
  t.set_claims(claims.SerializeAsString());
  t.set_mac(Mac(target_key, t.claims()));
  return t.SerializeAsString();
}

absl::StatusOr<v1::MigrationClaims> VerifyMigrationToken(const std::string& key,
                                                         const std::string& token, int64_t now_ms) {
  if (key.size() != kMigrationKeyBytes) {
    return absl::PermissionDeniedError(
        "this node has no migration key yet (not registered with the manager)");
  }
  v1::SignedMigrationToken t;
  if (token.empty() || token.size() > 4096 || !t.ParseFromString(token)) {
    return absl::PermissionDeniedError("the migration token is missing or malformed");
  }
  const std::string expected = Mac(key, t.claims());
  if (t.mac().size() != expected.size() ||
      CRYPTO_memcmp(t.mac().data(), expected.data(), expected.size()) != 0) {
    return absl::PermissionDeniedError(
        "the migration token is not signed for this node (forged, or from before its last "
        "registration)");
  }
  v1::MigrationClaims claims;
  if (!claims.ParseFromString(t.claims())) {
    return absl::PermissionDeniedError("the migration token's claims are malformed");
  }
  if (claims.expires_unix_ms() <= now_ms) {
    return absl::PermissionDeniedError(
        absl::StrCat("the migration token expired ", now_ms - claims.expires_unix_ms(), " ms ago"));
  }
  return claims;
}

bool UsedTokens::Use(const std::string& migration_id, int64_t expires_ms, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!by_expiry_.empty() && (by_expiry_.front().first <= now_ms || by_expiry_.size() >= kMax)) {
    used_.erase(by_expiry_.front().second);
    by_expiry_.pop_front();
  }
  if (!used_.insert(migration_id).second) return false;
  by_expiry_.emplace_back(expires_ms, migration_id);
  return true;
}

}  // namespace flotilla::auth
