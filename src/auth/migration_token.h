// Migration tokens: the manager's permission for one node to stream one
// checkpoint image to another.
//
// At registration the manager gives each node a random migration key (over
// mutual TLS; it changes at every registration). To move an attempt, the
// manager signs the claims (migration, execution, attempt, source, target,
// expiry) under the TARGET's key and hands the token to the source, which
// sends it in the image stream's header. The target checks the signature
// with its own key, that the claims name it, the certified source and the
// header's migration, and that the token has not expired or been used. The
// source cannot forge or widen a token: it never holds the target's key.
// The token's bytes also key the image's HMAC (checkpoint image signing).
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "flotilla/v1/federation.pb.h"

namespace flotilla::auth {

inline constexpr size_t kMigrationKeyBytes = 32;

// A fresh random key.
std::string NewMigrationKey();

// The signed token (a serialized SignedMigrationToken).
std::string MintMigrationToken(const std::string& target_key, const v1::MigrationClaims& claims);

// The claims, if `token` is signed under `key` and unexpired at `now_ms`;
// PermissionDenied (saying why) otherwise.
absl::StatusOr<v1::MigrationClaims> VerifyMigrationToken(const std::string& key,
                                                         const std::string& token, int64_t now_ms);

// Remembers used migration ids until their tokens expire, so that a token
// is good for one stream only. Bounded: past kMax live entries the oldest go
// (their tokens are then refused as unknown only if also expired).
class UsedTokens {
 public:
  static constexpr size_t kMax = 4096;
  // False if `migration_id` was used already.
  bool Use(const std::string& migration_id, int64_t expires_ms, int64_t now_ms);

 private:
  std::mutex mu_;
  std::set<std::string> used_;
  std::deque<std::pair<int64_t, std::string>> by_expiry_;
};

}  // namespace flotilla::auth
