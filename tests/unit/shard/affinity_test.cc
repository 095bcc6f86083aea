// Applying a placement's CPU set to a real (forked) process.
#include "shard/affinity.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace flotilla::shard {
namespace {

TEST(AffinityTest, PinsAChildProcessAndReadsItBack) {
  auto mine = CpuAffinity(0);
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_FALSE(mine->empty());
  const int cpu = *mine->rbegin();
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(gate[1]);
    // Waits for the parent to pin it and close the pipe; 10 s at most.
    struct pollfd p = {gate[0], POLLIN, 0};
    _exit(poll(&p, 1, 10000) == 1 ? 0 : 1);
  }
  ASSERT_GT(pid, 0);
  absl::Status st = ApplyCpuAffinity(pid, {cpu});
  auto got = CpuAffinity(pid);
  close(gate[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  close(gate[0]);
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::set<int>{cpu});
}

TEST(AffinityTest, RefusesEmptyAndOutOfRangeSets) {
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyCpuAffinity(0, {})));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyCpuAffinity(0, {-1})));
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyCpuAffinity(0, {CPU_SETSIZE})));
}

TEST(AffinityTest, ErrorsNameThePid) {
  // A pid that cannot exist (above pid_max's ceiling).
  absl::Status st = ApplyCpuAffinity(1 << 30, {0});
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pid 1073741824"), std::string::npos) << st;
}

}  // namespace
}  // namespace flotilla::shard
