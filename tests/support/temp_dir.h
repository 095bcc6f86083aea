// TempDir: a fresh directory under the test temp dir, removed with
// everything in it when the object goes. Shared by the unit tests.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace flotilla::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "flotilla_test") {
    std::string pattern = (std::filesystem::path(::testing::TempDir()) / (prefix + "_XXXXXX"));
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string File(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace flotilla::testing
