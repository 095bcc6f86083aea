#include "checkpoint/image_auth.h"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace flotilla::checkpoint {
namespace {

constexpr char kDomain[] = "flotilla checkpoint image v1";
constexpr char kMacHeader[] = "flotilla-image-mac v1 hmac-sha256 ";
constexpr size_t kMacBytes = 32;

struct MacDeleter {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

class Hmac {
 public:
  absl::Status Init(absl::string_view key) {
    mac_.reset(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
    if (!mac_) return absl::InternalError("OpenSSL has no HMAC");
    ctx_.reset(EVP_MAC_CTX_new(mac_.get()));
    if (!ctx_) return absl::InternalError("EVP_MAC_CTX_new failed");
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(ctx_.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     params) != 1) {
      return absl::InternalError("EVP_MAC_init(HMAC-SHA256) failed");
    }
    return absl::OkStatus();
  }
  void Update(const void* data, size_t n) {
    EVP_MAC_update(ctx_.get(), static_cast<const unsigned char*>(data), n);
  }
  void Number(uint64_t v) {
    unsigned char be[8];
    for (int i = 7; i >= 0; --i, v >>= 8) be[i] = static_cast<unsigned char>(v & 0xff);
    Update(be, sizeof(be));
  }
  absl::StatusOr<std::string> Final() {
    unsigned char out[EVP_MAX_MD_SIZE];
    size_t n = 0;
    if (EVP_MAC_final(ctx_.get(), out, &n, sizeof(out)) != 1 || n != kMacBytes) {
      return absl::InternalError("EVP_MAC_final failed");
    }
    return std::string(reinterpret_cast<char*>(out), n);
  }

 private:
  std::unique_ptr<EVP_MAC, MacDeleter> mac_;
  std::unique_ptr<EVP_MAC_CTX, MacDeleter> ctx_;
};

// The regular files of `dir` (relative paths, sorted bytewise), the MAC file
// excepted.
absl::StatusOr<std::vector<std::string>> ImageFiles(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  std::filesystem::recursive_directory_iterator it(dir, ec), end;
  if (ec) return absl::NotFoundError(absl::StrCat("image `", dir, "`: ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const std::filesystem::file_status st = it->symlink_status(ec);
    if (ec) break;
    const std::string rel = std::filesystem::relative(it->path(), dir, ec).string();
    if (ec) break;
    if (std::filesystem::is_directory(st)) continue;
    if (!std::filesystem::is_regular_file(st)) {
      return absl::InvalidArgumentError(
          absl::StrCat("image `", dir, "`: `", rel, "` is not a regular file"));
    }
    if (rel != kImageMacFile) files.push_back(rel);
  }
  if (ec) return absl::InternalError(absl::StrCat("image `", dir, "`: ", ec.message()));
  std::sort(files.begin(), files.end());
  return files;
}

absl::StatusOr<std::string> ComputeMac(const std::string& dir, absl::string_view key) {
  if (key.empty()) return absl::InvalidArgumentError("an image key must not be empty");
  ASSIGN_OR_RETURN(std::vector<std::string> files, ImageFiles(dir));
  Hmac mac;
  RETURN_IF_ERROR(mac.Init(key));
  mac.Update(kDomain, sizeof(kDomain));
  mac.Number(files.size());
  std::vector<char> buf(1 << 20);
  for (const std::string& rel : files) {
    const std::string path = absl::StrCat(dir, "/", rel);
    UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return ErrnoError(errno, "open", path);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return ErrnoError(errno, "fstat", path);
    mac.Number(rel.size());
    mac.Update(rel.data(), rel.size());
    mac.Number(static_cast<uint64_t>(st.st_size));
    // Exactly st_size bytes: a file that grows or shrinks meanwhile is an
    // error, not a different MAC input than the length says.
    uint64_t left = static_cast<uint64_t>(st.st_size);
    while (left > 0) {
      ssize_t n = read(fd.get(), buf.data(), std::min<uint64_t>(left, buf.size()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError(errno, "read", path);
      if (n == 0) return absl::DataLossError(absl::StrCat("image file `", path, "` shrank"));
      mac.Update(buf.data(), static_cast<size_t>(n));
      left -= static_cast<uint64_t>(n);
    }
  }
  return mac.Final();
}

}  // namespace

absl::Status SignImage(const std::string& dir, absl::string_view key) {
  ASSIGN_OR_RETURN(std::string mac, ComputeMac(dir, key));
  const std::string path = absl::StrCat(dir, "/", kImageMacFile);
  const std::string text = absl::StrCat(kMacHeader, absl::BytesToHexString(mac), "\n");
  unlink(path.c_str());
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError(errno, "create", path);
  if (write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return ErrnoError(errno ? errno : EIO, "write", path);
  }
  return absl::OkStatus();
}

absl::Status VerifyImage(const std::string& dir, absl::string_view key) {
  const std::string path = absl::StrCat(dir, "/", kImageMacFile);
  auto refuse = [&](absl::string_view why) {
    return absl::UnauthenticatedError(
        absl::StrCat("checkpoint image `", dir, "` is refused: ", why));
  };
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return refuse(absl::StrCat("no MAC (", kImageMacFile, ")"));
  char text[256];
  ssize_t n = read(fd.get(), text, sizeof(text));
  if (n < 0) return ErrnoError(errno, "read", path);
  absl::string_view got(text, static_cast<size_t>(n));
  if (!absl::ConsumePrefix(&got, kMacHeader) || !absl::ConsumeSuffix(&got, "\n") ||
      got.size() != 2 * kMacBytes ||
      got.find_first_not_of("0123456789abcdef") != absl::string_view::npos) {
    return refuse(absl::StrCat(kImageMacFile, " is malformed"));
  }
  const std::string want = absl::HexStringToBytes(got);
  absl::StatusOr<std::string> mac = ComputeMac(dir, key);
  if (!mac.ok()) return refuse(mac.status().message());
  if (CRYPTO_memcmp(mac->data(), want.data(), kMacBytes) != 0) {
    return refuse("its MAC does not match (a different key, or files changed after signing)");
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ImageBytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec)) total += static_cast<int64_t>(it->file_size(ec));
  }
  if (ec) return absl::InternalError(absl::StrCat("image `", dir, "`: ", ec.message()));
  return total;
}

}  // namespace flotilla::checkpoint
