// Every CRIU run has a deadline and a kill path (criu_process.h, child.h),
// and checkpointing is proven by a probe before it is relied on (probe.h).
// A fake criu (fake_criu.h) stands in for one that hangs.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "checkpoint/criu_process.h"
#include "checkpoint/probe.h"
#include "fake_criu.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::checkpoint {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

class DeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "CRIU runs need root (a private mount namespace)";
    dir_ = absl::StrCat("/tmp/criu-deadline-test.", getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST(CriuDeadlinesTest, ScaleWithMemoryBetweenFloorAndCap) {
  CriuDeadlines d;
  d.floor = 30s;
  d.per_gib = 20s;
  d.cap = 120s;
  EXPECT_EQ(d.For(0), 30s);
  EXPECT_EQ(d.For(-5), 30s);
  EXPECT_EQ(d.For(int64_t{2} << 30), 70s);
  EXPECT_EQ(d.For(int64_t{100} << 30), 120s);
  d.cap = 1s;  // a cap under the floor: the floor wins
  EXPECT_EQ(d.For(int64_t{1} << 30), 30s);
}

TEST_F(DeadlineTest, HungCriuIsKilledWithItsHelpersAtTheDeadline) {
  testing::FakeCriu fake(dir_ + "/bin");
  CriuProcess criu(fake.path(), dir_ + "/state");
  CriuRun run;
  run.args = {"dump", "-t", "4242", "-D", dir_, "-o", "dump.log"};
  run.log_path = dir_ + "/dump.log";
  run.deadline = 400ms;
  const auto start = Clock::now();
  absl::Status st = criu.Run("checkpoint of sandbox s1", run);
  const auto took = Clock::now() - start;
  ASSERT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  // The step, the deadline and the log's last lines.
  EXPECT_THAT(std::string(st.message()), HasSubstr("checkpoint of sandbox s1: criu dump did not finish within 400 ms"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("Daemon 4242 exited trapping"));
  EXPECT_THAT(std::string(st.message()), HasSubstr(run.log_path));
  // The deadline plus the fake `criu check` before it and a little slack.
  EXPECT_LT(took, 400ms + 1500ms);
  EXPECT_GE(took, 400ms);
  const std::vector<int> pids = fake.Pids();
  ASSERT_EQ(pids.size(), 3u);  // the script, its helper, the -t pid
  EXPECT_TRUE(testing::AllDeadWithin({pids[0], pids[1]}, 2s))
      << "criu or its helper outlived the kill: " << pids[0] << " " << pids[1];
}

TEST_F(DeadlineTest, EveryRunNeedsADeadline) {
  testing::FakeCriu fake(dir_ + "/bin");
  CriuProcess criu(fake.path(), dir_ + "/state");
  CriuRun run;
  run.args = {"dump"};
  run.log_path = dir_ + "/dump.log";
  EXPECT_EQ(criu.Run("x", run).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DeadlineTest, CancelStopsAHungRunAtOnce) {
  testing::FakeCriu fake(dir_ + "/bin");
  CriuProcess criu(fake.path(), dir_ + "/state");
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  ASSERT_EQ(write(pipefd[1], "x", 1), 1);  // already cancelled
  CriuRun run;
  run.args = {"restore", "-D", dir_, "-o", "restore.log"};
  run.log_path = dir_ + "/restore.log";
  run.deadline = 60s;
  run.cancel_fd = pipefd[0];
  const auto start = Clock::now();
  absl::Status st = criu.Run("restore of sandbox s2", run);
  EXPECT_EQ(st.code(), absl::StatusCode::kCancelled) << st;
  EXPECT_LT(Clock::now() - start, 5s);
  close(pipefd[0]);
  close(pipefd[1]);
}

TEST_F(DeadlineTest, ProbeWithAHangingCriuSaysTimedOutAndLeavesNothing) {
  testing::FakeCriu fake(dir_ + "/bin");
  ProbeOptions o;
  o.criu_path = fake.path();
  o.work_dir = dir_ + "/probe";
  o.dump_deadline = 500ms;
  o.restore_deadline = 500ms;
  const auto start = Clock::now();
  ProbeResult r = ProbeCheckpointing(o);
  // Two dumps: with and without hardware breakpoints.
  EXPECT_LT(Clock::now() - start, 2 * 500ms + 2s);
  EXPECT_EQ(r.state, CheckpointState::kUnavailable);
  EXPECT_THAT(r.reason, HasSubstr("criu dump timed out"));
  EXPECT_THAT(r.reason, HasSubstr("did not finish within 500 ms"));
  EXPECT_THAT(r.reason, HasSubstr("without hardware breakpoints (CRIU_FAULT=130) too: criu dump timed out"));
  EXPECT_THAT(Describe(r), HasSubstr("unavailable (criu dump timed out"));
  // The fake, its helper and the probe's test process (the -t pid) are gone.
  const std::vector<int> pids = fake.Pids();
  ASSERT_EQ(pids.size(), 3u);
  EXPECT_TRUE(testing::AllDeadWithin(pids, 2s));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(o.work_dir, "/probe.", getpid())));
}

TEST_F(DeadlineTest, ProbeWithAFailingCheckSaysSo) {
  testing::FakeCriu fake(dir_ + "/bin", /*check_exit=*/1);
  ProbeOptions o;
  o.criu_path = fake.path();
  o.work_dir = dir_ + "/probe";
  ProbeResult r = ProbeCheckpointing(o);
  EXPECT_EQ(r.state, CheckpointState::kUnavailable);
  EXPECT_THAT(r.reason, HasSubstr("criu check failed"));
  EXPECT_THAT(r.reason, HasSubstr("exited with status 1"));
}

TEST(ProbeTest, MissingCriuIsUnavailable) {
  ProbeOptions o;
  o.criu_path = "/nonexistent/criu";
  ProbeResult r = ProbeCheckpointing(o);
  EXPECT_EQ(r.state, CheckpointState::kUnavailable);
  EXPECT_THAT(r.reason, HasSubstr("criu is not installed at /nonexistent/criu"));
}

TEST(ProbeTest, RealCriuProvesItselfOrSaysWhyNot) {
  if (geteuid() != 0) GTEST_SKIP() << "CRIU needs root";
  ProbeOptions o;
  o.work_dir = absl::StrCat("/tmp/criu-probe-test.", getpid());
  const auto start = Clock::now();
  ProbeResult r = ProbeCheckpointing(o);
  const auto took = Clock::now() - start;
  std::filesystem::remove_all(o.work_dir);
  // Bounded either way: check + dump + restore deadlines.
  EXPECT_LT(took, o.check_deadline + o.dump_deadline + o.restore_deadline + 2s);
  ASSERT_NE(r.state, CheckpointState::kProbing);
  if (r.state == CheckpointState::kUnavailable) {
    GTEST_SKIP() << "CHECKPOINTING IS UNAVAILABLE ON THIS HOST: " << r.reason;
  }
  EXPECT_GT(r.dump_took.count(), 0);
  EXPECT_GT(r.restore_took.count(), 0);
  std::printf("probe: dump %lld ms, restore %lld ms, total %lld ms\n",
              static_cast<long long>(r.dump_took.count() / 1000),
              static_cast<long long>(r.restore_took.count() / 1000),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
}

TEST_F(DeadlineTest, ProbeFallsBackToNoBreakpointsWhereOnlyThatWorks) {
  ProbeOptions real;
  real.work_dir = dir_ + "/real";
  const ProbeResult baseline = ProbeCheckpointing(real);
  if (baseline.state != CheckpointState::kAvailable) {
    GTEST_SKIP() << "CHECKPOINTING IS UNAVAILABLE ON THIS HOST: " << baseline.reason;
  }
  testing::FakeCriu fake(dir_ + "/bin", 0, testing::FakeCriu::kRealWithoutBreakpoints);
  ProbeOptions o;
  o.criu_path = fake.path();
  o.work_dir = dir_ + "/probe";
  o.dump_deadline = 500ms;
  ProbeResult r = ProbeCheckpointing(o);
  EXPECT_EQ(r.state, CheckpointState::kAvailable) << r.reason;
  EXPECT_TRUE(r.no_breakpoints);
  EXPECT_THAT(r.reason, HasSubstr("criu dump timed out"));
  EXPECT_EQ(Describe(r), "available (without hardware breakpoints)");
  // Without the fallback the same host is unavailable.
  o.try_without_breakpoints = false;
  EXPECT_EQ(ProbeCheckpointing(o).state, CheckpointState::kUnavailable);
}

class NeverCalled final : public Checkpointer {
 public:
  absl::StatusOr<CheckpointImage> Checkpoint(const CheckpointRequest&) override {
    ADD_FAILURE() << "the gate let a checkpoint through";
    return absl::InternalError("called");
  }
  absl::StatusOr<RestoredSandbox> Restore(const RestoreRequest&) override {
    ADD_FAILURE() << "the gate let a restore through";
    return absl::InternalError("called");
  }
};

TEST(GatedCheckpointerTest, RefusesUntilTheProbeSaysAvailable) {
  auto availability = std::make_shared<Availability>();
  auto gated = NewGatedCheckpointer(
      [](const ProbeResult&) { return std::make_unique<NeverCalled>(); }, availability, "n1");
  auto probing = gated->Checkpoint({});
  EXPECT_EQ(probing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(probing.status().message()),
              HasSubstr("node n1 cannot checkpoint: checkpointing is probing"));
  ProbeResult down;
  down.state = CheckpointState::kUnavailable;
  down.reason = "criu dump timed out";
  availability->Set(down);
  auto refused = gated->Restore({});
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("checkpointing is unavailable (criu dump timed out)"));
}

TEST_F(DeadlineTest, BackgroundProbeIsCancelledByItsDestructor) {
  testing::FakeCriu fake(dir_ + "/bin");
  ProbeOptions o;
  o.criu_path = fake.path();
  o.work_dir = dir_ + "/probe";
  o.dump_deadline = 60s;  // only the cancel can end it in time
  auto availability = std::make_shared<Availability>();
  const auto start = Clock::now();
  {
    BackgroundProbe probe(o, availability);
    EXPECT_EQ(availability->Get().state, CheckpointState::kProbing);
    // Wait until the fake hangs in its dump, then destroy the probe.
    const auto until = Clock::now() + 5s;
    while (fake.Pids().size() < 3 && Clock::now() < until) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(fake.Pids().size(), 3u);
  }
  EXPECT_LT(Clock::now() - start, 5s);
  ProbeResult r = availability->Get();
  EXPECT_EQ(r.state, CheckpointState::kUnavailable);
  EXPECT_THAT(r.reason, HasSubstr("cancelled during criu dump"));
  EXPECT_TRUE(testing::AllDeadWithin(fake.Pids(), 2s));
}

}  // namespace
}  // namespace flotilla::checkpoint
