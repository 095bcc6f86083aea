// Users, their tenants and roles, and the bearer tokens that name them.
//
// The manager keeps a users file (JSON): per user a name, a tenant, a role
// and the SHA-256 of the user's token; the token itself is shown once, when
// it is made, and is never stored. A request proves its user by sending the
// token ("authorization: Bearer flt_..." on gRPC and HTTP); every read,
// list, cancel, key-value, queue, function and workflow call is then scoped
// to that user's tenant. An admin sees every tenant.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::auth {

enum class UserRole { kUser, kAdmin };

absl::string_view RoleName(UserRole role);
absl::StatusOr<UserRole> ParseRole(absl::string_view name);

struct User {
  std::string name;
  std::string tenant;
  UserRole role = UserRole::kUser;
};

// Tenant and user names: 1-63 characters of [a-z0-9_-], so that they can
// prefix ids and key-value namespaces unambiguously.
absl::Status ValidateTenant(const std::string& name);
absl::Status ValidateUserName(const std::string& name);

// A fresh random token: "flt_" and 43 characters of base64url (256 bits).
std::string NewToken();
// SHA-256 of `token`, lower-case hex.
std::string TokenDigest(absl::string_view token);

// Adds `user` to the users file at `path` (created with mode 0600 if
// missing) and returns the new token. AlreadyExists if the name is taken.
absl::StatusOr<std::string> AddUser(const std::string& path, const User& user);
// Gives `name` a new token (the old one stops working); returns it.
absl::StatusOr<std::string> RotateToken(const std::string& path, const std::string& name);
absl::Status RemoveUser(const std::string& path, const std::string& name);
absl::StatusOr<std::vector<User>> ListUsers(const std::string& path);

// The users file as the manager reads it: loaded at start and again when
// its modification time changes (checked at most once a second), so that
// `flotilla user add` takes effect without a restart. A file that turns
// unreadable or invalid keeps the last good contents (and is logged).
class UserDirectory {
 public:
  // NotFound/InvalidArgument if the file cannot be loaded at start.
  static absl::StatusOr<std::unique_ptr<UserDirectory>> Open(const std::string& path);

  // The user holding `token`; Unauthenticated when none does.
  absl::StatusOr<User> Authenticate(absl::string_view token);

 private:
  explicit UserDirectory(std::string path) : path_(std::move(path)) {}
  absl::Status Load();
  void MaybeReload();

  const std::string path_;
  std::mutex mu_;
  std::map<std::string, User> by_digest_;
  struct timespec mtime_ {};
  off_t size_ = -1;
  std::chrono::steady_clock::time_point checked_{};
};

}  // namespace flotilla::auth
