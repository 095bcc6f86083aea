// Runs every fuzz target over every file of its committed corpus
// (tests/fuzz/corpus/<target>/), so the inputs that once crashed a target,
// and the seeds, are checked by every `make test`, without clang.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_targets.h"
#include "gtest/gtest.h"

namespace flotilla::fuzz {
namespace {

struct Target {
  const char* name;
  int (*run)(const uint8_t*, size_t);
};

const Target kTargets[] = {{"guest_protocol", &FuzzGuestProtocol},
                           {"request_yaml", &FuzzRequestYaml},
                           {"checkpoint_manifest", &FuzzCheckpointManifest},
                           {"tar_check", &FuzzTarCheck}};

class Replay : public ::testing::TestWithParam<Target> {};

TEST_P(Replay, EveryCorpusFileRunsCleanly) {
  const std::filesystem::path dir =
      std::filesystem::path(FLOTILLA_SOURCE_DIR) / "tests/fuzz/corpus" / GetParam().name;
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " is missing";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                     std::istreambuf_iterator<char>());
    SCOPED_TRACE(entry.path().string());
    EXPECT_EQ(0, GetParam().run(bytes.data(), bytes.size()));
    ++files;
  }
  EXPECT_GE(files, 3) << "each target keeps a few seeds in " << dir;
}

INSTANTIATE_TEST_SUITE_P(Fuzz, Replay, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

}  // namespace
}  // namespace flotilla::fuzz
