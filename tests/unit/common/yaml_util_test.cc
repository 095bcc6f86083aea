#include "common/yaml_util.h"

#include <chrono>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

TEST(LoadAllYaml, ReadsEveryDocument) {
  auto docs = LoadAllYaml("a: 1\n---\nb: 2\n", "f.yaml");
  ASSERT_TRUE(docs.ok()) << docs.status();
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[1]["b"].as<int>(), 2);
}

TEST(LoadAllYaml, SyntaxErrorsNameTheFile) {
  auto docs = LoadAllYaml("a: [\n", "f.yaml");
  EXPECT_TRUE(absl::IsInvalidArgument(docs.status()));
  EXPECT_NE(docs.status().message().find("f.yaml: "), std::string::npos) << docs.status();
}

// Found by fuzzing `flotilla submit` request files: yaml-cpp 0.7's
// YAML::LoadAll never returns on these (tests/fuzz/findings/).
TEST(LoadAllYaml, InputsOnWhichYamlCppLoopsForeverAreRefused) {
  for (const char* text : {"--- &a5000m, memory:\n", "--- &\xff" "5000m, memory:\n",
                           "--- &\x80" "a, b:\n"}) {
    const auto start = std::chrono::steady_clock::now();
    auto docs = LoadAllYaml(text, "f.yaml");
    EXPECT_TRUE(absl::IsInvalidArgument(docs.status())) << text;
    EXPECT_NE(docs.status().message().find("cannot get past"), std::string::npos) << docs.status();
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  }
}

}  // namespace
}  // namespace flotilla
