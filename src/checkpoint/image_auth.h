// ImageAuth: an HMAC-SHA256 over a checkpoint image directory, so the agent
// that restores an image knows it is the one the source agent wrote, byte
// for byte, and not something a host or network in between made up.
//
// The MAC covers every regular file of the directory (recursively, except
// the MAC file itself) in a canonical form: the files sorted by their
// relative path (bytewise), each as
//   u64 length of the path, the path, u64 size, the content
// (u64 big-endian), after a fixed domain string. Lengths come first, so no
// two different images have the same input. Anything in the directory that
// is not a regular file or a directory (a symlink, a fifo) is refused by
// both sides.
//
// The key is the caller's: a secret both agents share for this one image
// (see agent_migration.cc for where it comes from).
//
// Thread-safety: free functions; one image must not be signed while it is
// being written.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::checkpoint {

// The MAC file's name inside an image directory.
inline constexpr char kImageMacFile[] = "flotilla-image.mac";

// Computes the MAC of `dir` under `key` and writes it to <dir>/kImageMacFile
// (replacing an older one). InvalidArgument for an empty key.
absl::Status SignImage(const std::string& dir, absl::string_view key);

// Returns OK if <dir>/kImageMacFile holds the MAC of `dir`'s files under
// `key`; otherwise Unauthenticated: the MAC file is missing or malformed, or
// the MAC differs (a wrong key, or files changed, added or removed after
// signing). The comparison takes the same time wherever the MACs differ.
absl::Status VerifyImage(const std::string& dir, absl::string_view key);

// The bytes of every regular file in `dir`, the MAC file included: what a
// migration streams.
absl::StatusOr<int64_t> ImageBytes(const std::string& dir);

}  // namespace flotilla::checkpoint
