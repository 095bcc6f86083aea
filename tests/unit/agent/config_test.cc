#include "agent/config.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::agent {
namespace {

using ::testing::HasSubstr;

// Writes `yaml` to a fresh file and loads it as an agent configuration.
absl::StatusOr<AgentConfig> Load(const std::string& yaml) {
  char path[] = "/tmp/fac.XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return absl::InternalError("mkstemp");
  close(fd);
  std::ofstream(path) << yaml;
  auto config = LoadAgentConfig(path);
  unlink(path);
  return config;
}

TEST(AgentConfigTest, TheMicroVmJailIsRequiredUnlessTurnedOffExplicitly) {
  auto defaults = Load("node_id: n1\n");
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->vm_jail, "required");

  auto off = Load("node_id: n1\nvm_jail: off\n");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->vm_jail, "off");

  auto bad = Load("node_id: n1\nvm_jail: maybe\n");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("vm_jail: 'maybe'"));
}

}  // namespace
}  // namespace flotilla::agent
