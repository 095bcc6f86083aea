#include "auth/users.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "common/logging.h"
#include "spdlog/spdlog.h"

namespace flotilla::auth {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxUsersFileBytes = 16 << 20;

absl::Status ValidateName(const char* what, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63;
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_');
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " '", name, "' is not valid: use 1-63 characters from [a-z0-9_-]"));
  }
  return absl::OkStatus();
}

struct Entry {
  User user;
  std::string digest;
};

absl::StatusOr<std::vector<Entry>> Parse(const std::string& path, const std::string& text) {
  std::vector<Entry> out;
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("users") || !j["users"].is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected {\"users\": [...]}"));
  }
  for (const auto& u : j["users"]) {
    Entry e;
    try {
      e.user.name = u.at("name").get<std::string>();
      e.user.tenant = u.at("tenant").get<std::string>();
      e.digest = u.at("token_sha256").get<std::string>();
      ASSIGN_OR_RETURN(e.user.role, ParseRole(u.at("role").get<std::string>()));
    } catch (const std::exception& ex) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": a user entry: ", ex.what()));
    }
    RETURN_IF_ERROR(ValidateUserName(e.user.name));
    RETURN_IF_ERROR(ValidateTenant(e.user.tenant));
    if (e.digest.size() != 64) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": user ", e.user.name, ": token_sha256 is not 64 hex digits"));
    }
    out.push_back(std::move(e));
  }
  return out;
}


// Holds an exclusive lock on `<path>.lock` for a read-modify-write of the
// users file, so two `flotilla user add` never lose one another's entry.
class FileLock {
 public:
  static absl::StatusOr<FileLock> Take(const std::string& path) {
    int fd = open((path + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("open ", path, ".lock"));
    if (flock(fd, LOCK_EX) != 0) {
      int e = errno;
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrCat("flock ", path, ".lock"));
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~FileLock() {
    if (fd_ >= 0) close(fd_);
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

absl::StatusOr<std::vector<Entry>> LoadEntries(const std::string& path) {
  if (access(path.c_str(), F_OK) != 0) return std::vector<Entry>{};
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path, kMaxUsersFileBytes));
  return Parse(path, text);
}

// Writes the file whole, then renames it over the old one: a reader sees
// the old or the new contents, never half of one.
absl::Status StoreEntries(const std::string& path, const std::vector<Entry>& entries) {
  Json users = Json::array();
  for (const auto& e : entries) {
    users.push_back({{"name", e.user.name},
                     {"tenant", e.user.tenant},
                     {"role", std::string(RoleName(e.user.role))},
                     {"token_sha256", e.digest}});
  }
  const std::string text = Json{{"users", users}}.dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", tmp));
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = errno;
      close(fd);
      return absl::ErrnoToStatus(e, absl::StrCat("writing ", tmp));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) return absl::ErrnoToStatus(errno, "fsync " + tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(UserRole role) { return role == UserRole::kAdmin ? "admin" : "user"; }

absl::StatusOr<UserRole> ParseRole(absl::string_view name) {
  if (name == "admin") return UserRole::kAdmin;
  if (name == "user") return UserRole::kUser;
  return absl::InvalidArgumentError(absl::StrCat("role '", name, "' is not one of: admin, user"));
}

absl::Status ValidateTenant(const std::string& name) { return ValidateName("tenant", name); }
absl::Status ValidateUserName(const std::string& name) { return ValidateName("user name", name); }

std::string NewToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    // Without randomness there is no safe token; nothing sensible goes on.
    spdlog::critical("RAND_bytes failed: no randomness for a token");
    std::abort();
  }
  return "flt_" + absl::WebSafeBase64Escape(
                      absl::string_view(reinterpret_cast<const char*>(raw), sizeof(raw)));
}

std::string TokenDigest(absl::string_view token) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), md);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(md), sizeof(md)));
}

absl::StatusOr<std::string> AddUser(const std::string& path, const User& user) {
  RETURN_IF_ERROR(ValidateUserName(user.name));
  RETURN_IF_ERROR(ValidateTenant(user.tenant));
  ASSIGN_OR_RETURN(FileLock lock, FileLock::Take(path));
  ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadEntries(path));
  for (const auto& e : entries) {
    if (e.user.name == user.name) {
      return absl::AlreadyExistsError(absl::StrCat(
          "user '", user.name, "' exists (tenant ", e.user.tenant,
          "); `flotilla user rotate ", user.name, "` gives it a new token"));
    }
  }
  std::string token = NewToken();
  entries.push_back({user, TokenDigest(token)});
  RETURN_IF_ERROR(StoreEntries(path, entries));
  return token;
}

absl::StatusOr<std::string> RotateToken(const std::string& path, const std::string& name) {
  ASSIGN_OR_RETURN(FileLock lock, FileLock::Take(path));
  ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadEntries(path));
  for (auto& e : entries) {
    if (e.user.name != name) continue;
    std::string token = NewToken();
    e.digest = TokenDigest(token);
    RETURN_IF_ERROR(StoreEntries(path, entries));
    return token;
  }
  return absl::NotFoundError(absl::StrCat("no user '", name, "' in ", path));
}

absl::Status RemoveUser(const std::string& path, const std::string& name) {
  ASSIGN_OR_RETURN(FileLock lock, FileLock::Take(path));
  ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadEntries(path));
  auto it = std::find_if(entries.begin(), entries.end(),
                         [&](const Entry& e) { return e.user.name == name; });
  if (it == entries.end()) return absl::NotFoundError(absl::StrCat("no user '", name, "' in ", path));
  entries.erase(it);
  return StoreEntries(path, entries);
}

absl::StatusOr<std::vector<User>> ListUsers(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries, LoadEntries(path));
  std::vector<User> out;
  for (auto& e : entries) out.push_back(std::move(e.user));
  return out;
}

absl::StatusOr<std::unique_ptr<UserDirectory>> UserDirectory::Open(const std::string& path) {
  std::unique_ptr<UserDirectory> d(new UserDirectory(path));
  RETURN_IF_ERROR(d->Load());
  return d;
}

absl::Status UserDirectory::Load() {
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("the users file ", path_,
                                            " is missing: create users with `flotilla user add`"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path_, kMaxUsersFileBytes));
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Parse(path_, text));
  std::map<std::string, User> by_digest;
  for (auto& e : entries) by_digest[e.digest] = std::move(e.user);
  std::lock_guard<std::mutex> lock(mu_);
  by_digest_ = std::move(by_digest);
  mtime_ = st.st_mtim;
  size_ = st.st_size;
  return absl::OkStatus();
}

void UserDirectory::MaybeReload() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto now = std::chrono::steady_clock::now();
    if (now - checked_ < std::chrono::seconds(1)) return;
    checked_ = now;
    struct stat st {};
    if (stat(path_.c_str(), &st) != 0) return;
    if (st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec &&
        st.st_size == size_) {
      return;
    }
  }
  if (absl::Status st = Load(); !st.ok()) {
    spdlog::error("users file: {}; keeping the users loaded before", st.message());
  } else {
    spdlog::info("users file {} reloaded", path_);
  }
}

absl::StatusOr<User> UserDirectory::Authenticate(absl::string_view token) {
  MaybeReload();
  // A lookup by the token's digest: the map never holds a token, and the
  // comparison that matters (of digests) leaks nothing about the token.
  const std::string digest = TokenDigest(token);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_digest_.find(digest);
  if (it == by_digest_.end()) {
    return absl::UnauthenticatedError("the bearer token is not known to this manager");
  }
  return it->second;
}

}  // namespace flotilla::auth
