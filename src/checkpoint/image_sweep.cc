#include "checkpoint/image_sweep.h"

#include <dirent.h>
#include <sys/stat.h>

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace flotilla::checkpoint {
namespace {

std::chrono::system_clock::time_point MTime(const struct stat& st) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

// A directory's own mtime changes only when entries come and go; a file
// still being streamed into it changes only the file's.
std::chrono::system_clock::time_point Newest(const std::string& path, const struct stat& st) {
  auto newest = MTime(st);
  if (!S_ISDIR(st.st_mode)) return newest;
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return newest;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat child;
    if (lstat(absl::StrCat(path, "/", name).c_str(), &child) == 0) {
      newest = std::max(newest, MTime(child));
    }
  }
  closedir(d);
  return newest;
}

}  // namespace

absl::StatusOr<int> SweepImages(const std::string& root,
                                std::chrono::system_clock::time_point now,
                                std::chrono::seconds max_age) {
  DIR* d = opendir(root.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return 0;
    return ErrnoError(errno, "opendir", root);
  }
  std::vector<std::string> old;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = absl::StrCat(root, "/", name);
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (Newest(path, st) + max_age < now) old.push_back(path);
  }
  closedir(d);
  int removed = 0;
  for (const std::string& path : old) {
    std::error_code ec;
    // remove_all does not follow symlinks: a planted link only goes itself.
    std::filesystem::remove_all(path, ec);
    if (!ec) ++removed;
  }
  return removed;
}

}  // namespace flotilla::checkpoint
