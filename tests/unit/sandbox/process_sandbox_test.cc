#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sandbox/sandbox.h"

namespace flotilla::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Chunk {
  Stream stream;
  int64_t offset;
  std::string data;
};

class RecordingSink : public OutputSink {
 public:
  void OnOutput(Stream stream, int64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(mu_);
    chunks_.push_back({stream, offset, std::string(data)});
  }

  // Returns the stream rebuilt from its chunks; fails the test if the
  // offsets are not contiguous from 0.
  std::string Reassemble(Stream stream) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out;
    for (const Chunk& c : chunks_) {
      if (c.stream != stream) continue;
      EXPECT_EQ(c.offset, static_cast<int64_t>(out.size()));
      EXPECT_FALSE(c.data.empty());
      out += c.data;
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Chunk> chunks_;
};

std::map<std::string, std::string> DefaultEnv() { return {{"PATH", "/usr/bin:/bin"}}; }

TaskSpec Spec(std::vector<std::string> argv) {
  TaskSpec spec;
  spec.id = "test/1";
  spec.argv = std::move(argv);
  spec.env = DefaultEnv();
  spec.timeout = 20s;
  return spec;
}

TaskSpec Shell(const std::string& script) { return Spec({"sh", "-c", script}); }

// Returns true once `pid` is gone or a zombie (dead, waiting for its
// reaper); waits at most `within` (init here reaps orphans about 1 s late).
bool ProcessDies(pid_t pid, std::chrono::milliseconds within) {
  Clock::time_point until = Clock::now() + within;
  while (true) {
    if (kill(pid, 0) < 0 && errno == ESRCH) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    size_t paren = content.rfind(')');
    if (paren != std::string::npos && paren + 2 < content.size() && content[paren + 2] == 'Z') {
      return true;
    }
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
}

pid_t FirstLinePid(const std::string& out) {
  std::string first(absl::StripAsciiWhitespace(std::string(out.substr(0, out.find('\n')))));
  int pid = 0;
  EXPECT_TRUE(absl::SimpleAtoi(first, &pid)) << out;
  return pid;
}

class ProcessSandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string templ =
        (std::filesystem::path(::testing::TempDir()) / "process_sandbox_test-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    root_ = templ;
    sandbox_ = NewProcessSandbox({.work_root = root_ + "/work"});
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  absl::StatusOr<TaskOutcome> Run(const TaskSpec& spec) {
    CancelToken cancel;
    return sandbox_->Run(spec, sink_, cancel);
  }

  // Returns the task directories left under the work root.
  std::vector<std::string> LeftoverTaskDirs() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(root_ + "/work", ec)) {
      out.push_back(entry.path().string());
    }
    return out;
  }

  std::string root_;
  std::unique_ptr<Sandbox> sandbox_;
  RecordingSink sink_;
};

TEST_F(ProcessSandboxTest, KindIsProcess) { EXPECT_EQ(sandbox_->kind(), "process"); }

TEST_F(ProcessSandboxTest, CapturesAndStreamsStdout) {
  auto outcome = Run(Spec({"echo", "hello", "world"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(outcome->stdout_data, "hello world\n");
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), "hello world\n");
  EXPECT_EQ(outcome->stderr_data, "");
  EXPECT_FALSE(outcome->stdout_truncated);
  EXPECT_GT(outcome->wall_time_us, 0);
}

TEST_F(ProcessSandboxTest, StreamsLargeOutputWithContiguousOffsets) {
  auto outcome = Run(Spec({"seq", "1", "200000"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_GT(outcome->stdout_data.size(), 1000000u);
  EXPECT_THAT(outcome->stdout_data, StartsWith("1\n2\n3\n"));
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), outcome->stdout_data);
}

TEST_F(ProcessSandboxTest, PropagatesExitCode) {
  auto outcome = Run(Shell("exit 7"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 7);
}

TEST_F(ProcessSandboxTest, KeepsStderrSeparate) {
  auto outcome = Run(Shell("echo out; echo err >&2"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "out\n");
  EXPECT_EQ(outcome->stderr_data, "err\n");
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), "out\n");
  EXPECT_EQ(sink_.Reassemble(Stream::kStderr), "err\n");
}

TEST_F(ProcessSandboxTest, DeliversStdin) {
  TaskSpec spec = Spec({"cat"});
  spec.stdin_data = "hello stdin\n";
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "hello stdin\n");
}

TEST_F(ProcessSandboxTest, LargeStdinAndStdoutDoNotDeadlock) {
  TaskSpec spec = Spec({"cat"});
  spec.stdin_data.assign(4 << 20, 'x');
  spec.output_limit_bytes = 8 << 20;
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(outcome->stdout_data, spec.stdin_data);
}

TEST_F(ProcessSandboxTest, ChildThatIgnoresStdinDoesNotBlockOrKillTheAgent) {
  TaskSpec spec = Spec({"true"});
  spec.stdin_data.assign(8 << 20, 'x');  // far more than a pipe holds
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();  // and no SIGPIPE killed us
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 0);
}

TEST_F(ProcessSandboxTest, EnvironmentIsExactlyTheSpecs) {
  TaskSpec spec = Spec({"env"});
  spec.env = {{"FOO", "bar baz"}, {"PATH", "/usr/bin:/bin"}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "FOO=bar baz\nPATH=/usr/bin:/bin\n");
}

TEST_F(ProcessSandboxTest, UsesADefaultPathWhenTheEnvHasNone) {
  TaskSpec spec = Spec({"env"});
  spec.env = {{"ONLY", "1"}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "ONLY=1\n");
}

TEST_F(ProcessSandboxTest, SearchesTheTasksPathNotTheAgents) {
  TaskSpec spec = Spec({"true"});
  spec.env = {{"PATH", root_ + "/nowhere"}};
  auto outcome = Run(spec);
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsNotFound(outcome.status())) << outcome.status();
}

TEST_F(ProcessSandboxTest, PlacesFilesInAFreshWorkingDirectoryAndRemovesIt) {
  TaskSpec spec = Spec({"./run.sh"});
  spec.files = {{"data/in.txt", "content\n", 0644},
                {"run.sh", "#!/bin/sh\ncat data/in.txt\npwd\nmkdir -p made/deep\n", 0755}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0) << outcome->stderr_data;
  std::vector<std::string> lines = absl::StrSplit(outcome->stdout_data, '\n');
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0], "content");
  EXPECT_THAT(lines[1], StartsWith(root_ + "/work/task-"));
  EXPECT_FALSE(std::filesystem::exists(lines[1]));
  EXPECT_THAT(LeftoverTaskDirs(), ::testing::IsEmpty());
}

TEST_F(ProcessSandboxTest, RemovesADirectoryTheTaskMadeUnwritable) {
  auto outcome =
      Run(Shell("mkdir -p locked/inner && touch locked/inner/f && chmod 0 locked/inner "
                "locked"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0) << outcome->stderr_data;
  EXPECT_THAT(LeftoverTaskDirs(), ::testing::IsEmpty());
}

TEST_F(ProcessSandboxTest, RejectsFilePathsOutsideTheWorkingDirectory) {
  for (const char* path : {"/etc/passwd", "../escape", "a/../../escape", "", "dir/"}) {
    TaskSpec spec = Spec({"true"});
    spec.files = {{path, "x", 0644}};
    auto outcome = Run(spec);
    ASSERT_FALSE(outcome.ok()) << path;
    EXPECT_TRUE(absl::IsInvalidArgument(outcome.status())) << path << ": " << outcome.status();
  }
  EXPECT_THAT(LeftoverTaskDirs(), ::testing::IsEmpty());
}

TEST_F(ProcessSandboxTest, RejectsEmptyArgv) {
  auto outcome = Run(Spec({}));
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(outcome.status())) << outcome.status();
}

TEST_F(ProcessSandboxTest, MissingBinaryIsNotFoundAndNamesIt) {
  auto outcome = Run(Spec({"nosuchcmd-flotilla", "arg"}));
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsNotFound(outcome.status())) << outcome.status();
  EXPECT_THAT(std::string(outcome.status().message()),
              HasSubstr("exec `nosuchcmd-flotilla`: No such file or directory"));
  EXPECT_THAT(LeftoverTaskDirs(), ::testing::IsEmpty());
}

TEST_F(ProcessSandboxTest, NonExecutableFileIsPermissionDenied) {
  TaskSpec spec = Spec({"./script"});
  spec.files = {{"script", "#!/bin/sh\n", 0644}};
  auto outcome = Run(spec);
  ASSERT_FALSE(outcome.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(outcome.status())) << outcome.status();
  EXPECT_THAT(std::string(outcome.status().message()), HasSubstr("exec `./script`"));
}

TEST_F(ProcessSandboxTest, TimeoutKillsTheTask) {
  TaskSpec spec = Spec({"sleep", "30"});
  spec.timeout = 300ms;
  Clock::time_point start = Clock::now();
  auto outcome = Run(spec);
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kTimedOut);
  EXPECT_LT(elapsed, 1300ms);
  EXPECT_GE(elapsed, 300ms);
}

TEST_F(ProcessSandboxTest, TimeoutKillsBackgroundChildrenToo) {
  TaskSpec spec = Shell("sleep 30 & echo $!; sleep 30");
  spec.timeout = 300ms;
  Clock::time_point start = Clock::now();
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_LT(Clock::now() - start, 1300ms);
  EXPECT_EQ(outcome->termination, Termination::kTimedOut);
  pid_t background = FirstLinePid(outcome->stdout_data);
  ASSERT_GT(background, 0);
  EXPECT_TRUE(ProcessDies(background, 3s)) << "background child " << background << " survived";
}

TEST_F(ProcessSandboxTest, DescendantsLeftAfterExitAreKilled) {
  // The background sleep holds stdout open; Run must not wait for it.
  Clock::time_point start = Clock::now();
  auto outcome = Run(Shell("sleep 30 & echo $!"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_LT(Clock::now() - start, 2s);
  EXPECT_EQ(outcome->termination, Termination::kExited);
  pid_t background = FirstLinePid(outcome->stdout_data);
  ASSERT_GT(background, 0);
  EXPECT_TRUE(ProcessDies(background, 3s)) << "background child " << background << " survived";
}

TEST_F(ProcessSandboxTest, DescendantInAnotherSessionDoesNotHoldRunForever) {
  Clock::time_point start = Clock::now();
  // The pause lets setsid() happen before the task exits; the escaped sleep
  // then holds stdout open and only the drain grace ends Run.
  auto outcome = Run(Shell("setsid sleep 30 & sleep 0.3; echo $!"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 700ms);
  EXPECT_LT(elapsed, 2s);
  pid_t escaped = FirstLinePid(outcome->stdout_data);
  ASSERT_GT(escaped, 0);
  kill(escaped, SIGKILL);  // it left the task's group, so the test cleans it up
}

TEST_F(ProcessSandboxTest, CancelFromAnotherThread) {
  CancelToken cancel;
  TaskSpec spec = Spec({"sleep", "30"});
  Clock::time_point start = Clock::now();
  auto future = std::async(std::launch::async, [&] { return sandbox_->Run(spec, sink_, cancel); });
  std::this_thread::sleep_for(200ms);
  cancel.Cancel();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto outcome = future.get();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kCancelled);
  EXPECT_LT(Clock::now() - start, 1500ms);  // SIGTERM suffices for sleep
}

TEST_F(ProcessSandboxTest, CancelEscalatesToSigkillAfterTheGrace) {
  CancelToken cancel;
  // An ignored SIGTERM is inherited by sleep, so only SIGKILL ends it.
  TaskSpec spec = Shell("trap '' TERM; echo ready; sleep 30");
  Clock::time_point start = Clock::now();
  auto future = std::async(std::launch::async, [&] { return sandbox_->Run(spec, sink_, cancel); });
  std::this_thread::sleep_for(300ms);
  cancel.Cancel();
  ASSERT_EQ(future.wait_for(8s), std::future_status::ready);
  auto outcome = future.get();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kCancelled);
  auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 2s);
  EXPECT_LT(elapsed, 5s);
}

TEST_F(ProcessSandboxTest, CancelBeforeRunReturnsAtOnce) {
  CancelToken cancel;
  cancel.Cancel();
  EXPECT_TRUE(cancel.cancelled());
  Clock::time_point start = Clock::now();
  auto outcome = sandbox_->Run(Spec({"sleep", "30"}), sink_, cancel);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kCancelled);
  EXPECT_LT(Clock::now() - start, 500ms);
}

TEST_F(ProcessSandboxTest, TruncatesOutputBeyondTheLimitWithoutBlocking) {
  TaskSpec spec = Spec({"head", "-c", "5000000", "/dev/zero"});
  spec.output_limit_bytes = 1000;
  spec.timeout = 10s;
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(outcome->stdout_data, std::string(1000, '\0'));
  EXPECT_TRUE(outcome->stdout_truncated);
  EXPECT_FALSE(outcome->stderr_truncated);
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), outcome->stdout_data);
}

TEST_F(ProcessSandboxTest, MeasuresCpuTimeOfABusyLoop) {
  auto outcome = Run(Shell("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_GT(outcome->cpu_time_us, 20000);
  EXPECT_LE(outcome->cpu_time_us, outcome->wall_time_us * 2 + 10000);
}

TEST_F(ProcessSandboxTest, CountsCpuTimeOfReapedDescendants) {
  auto outcome = Run(Shell("sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_GT(outcome->cpu_time_us, 20000);
}

TEST_F(ProcessSandboxTest, MeasuresPeakMemory) {
  auto outcome = Run(Spec({"true"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_GT(outcome->peak_memory_bytes, 0);
}

TEST_F(ProcessSandboxTest, ReportsAKillingSignal) {
  auto outcome = Run(Shell("kill -SEGV $$"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kSignaled);
  EXPECT_EQ(outcome->signal, SIGSEGV);
}

TEST_F(ProcessSandboxTest, TaskStartsWithDefaultSignalDispositions) {
  // Ignored dispositions survive exec; the sandbox must reset them.
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGUSR1, &ignore, &old), 0);
  auto outcome = Run(Shell("kill -USR1 $$; echo survived"));
  sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kSignaled);
  EXPECT_EQ(outcome->signal, SIGUSR1);
}

TEST_F(ProcessSandboxTest, TaskInheritsOnlyStdio) {
  auto outcome = Run(Spec({"ls", "/proc/self/fd"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  // 3 is ls's own handle on the directory it lists.
  EXPECT_EQ(outcome->stdout_data, "0\n1\n2\n3\n");
}

TEST_F(ProcessSandboxTest, TaskRunsInItsOwnSessionWithoutCoreDumps) {
  auto outcome = Run(Shell("ps -o sid= -o pgid= -p $$; ulimit -c"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::vector<std::string> lines = absl::StrSplit(outcome->stdout_data, '\n');
  if (outcome->exit_code == 0 && lines.size() >= 2) {
    std::vector<std::string> ids = absl::StrSplit(lines[0], ' ', absl::SkipEmpty());
    ASSERT_EQ(ids.size(), 2u) << lines[0];
    EXPECT_EQ(ids[0], ids[1]);
    EXPECT_NE(ids[0], std::to_string(getsid(0)));
    EXPECT_EQ(lines[1], "0");
  } else {
    GTEST_SKIP() << "ps unavailable: " << outcome->stderr_data;
  }
}

TEST_F(ProcessSandboxTest, RunsConcurrentlyFromManyThreads) {
  constexpr int kTasks = 8;
  std::vector<std::future<absl::StatusOr<TaskOutcome>>> futures;
  std::vector<std::unique_ptr<RecordingSink>> sinks;
  for (int i = 0; i < kTasks; ++i) {
    sinks.push_back(std::make_unique<RecordingSink>());
    futures.push_back(std::async(std::launch::async, [this, i, sink = sinks.back().get()] {
      CancelToken cancel;
      TaskSpec spec = Shell(absl::StrCat("sleep 0.2; echo task ", i, "; exit ", i));
      return sandbox_->Run(spec, *sink, cancel);
    }));
  }
  Clock::time_point start = Clock::now();
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_EQ(futures[i].wait_until(start + 10s), std::future_status::ready);
    auto outcome = futures[i].get();
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->termination, Termination::kExited);
    EXPECT_EQ(outcome->exit_code, i);
    EXPECT_EQ(outcome->stdout_data, absl::StrCat("task ", i, "\n"));
    EXPECT_EQ(sinks[i]->Reassemble(Stream::kStdout), outcome->stdout_data);
  }
  EXPECT_THAT(LeftoverTaskDirs(), ::testing::IsEmpty());
}

TEST_F(ProcessSandboxTest, RejectsANonPositiveTimeout) {
  TaskSpec spec = Spec({"true"});
  spec.timeout = 0ms;
  auto outcome = Run(spec);
  EXPECT_TRUE(absl::IsInvalidArgument(outcome.status())) << outcome.status();
}

TEST(CancelTokenTest, FdBecomesReadableOnCancel) {
  CancelToken token;
  ASSERT_GE(token.fd(), 0);
  EXPECT_FALSE(token.cancelled());
  pollfd pfd{token.fd(), POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 0), 0);
  token.Cancel();
  token.Cancel();  // idempotent
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(poll(&pfd, 1, 0), 1);
  EXPECT_EQ(poll(&pfd, 1, 0), 1);  // stays readable
}

}  // namespace
}  // namespace flotilla::sandbox
