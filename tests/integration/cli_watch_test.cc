// The CLI's watch (run, logs -f, submit --wait) has a deadline per call and
// watches again when it passes: output of a task that runs far longer than
// one watch arrives whole and once; a manager that stops answering is given
// up on, with its address, after a bounded time.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

using ::testing::HasSubstr;

struct CliRun {
  int exit_code = -1;  // -1: killed at the time limit
  std::string out;
  std::string err;
  std::chrono::milliseconds took{0};
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs the flotilla binary with `args` and extra environment, for at most
// `limit`.
CliRun RunCli(const FederationHarness& h, const std::vector<std::string>& args,
              const std::vector<std::string>& env, std::chrono::seconds limit) {
  const std::string out = h.dir() + "/cli.out";
  const std::string err = h.dir() + "/cli.err";
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    for (const auto& kv : env) putenv(const_cast<char*>(kv.c_str()));
    static std::vector<std::string> client_env;  // putenv keeps the pointers
    client_env = h.ClientEnv();
    for (auto& kv : client_env) putenv(kv.data());
    std::vector<char*> argv = {const_cast<char*>(FLOTILLA_BIN)};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  CliRun run;
  int status = 0;
  const bool exited = FederationHarness::WaitUntil(
      limit, [&] { return waitpid(pid, &status, WNOHANG) == pid; });
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  } else if (WIFEXITED(status)) {
    run.exit_code = WEXITSTATUS(status);
  }
  run.took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  run.out = Slurp(out);
  run.err = Slurp(err);
  return run;
}

TEST(CliWatch, OutputOfATaskOutlivingManyWatchDeadlinesArrivesWholeAndOnce) {
  FederationHarness h;
  h.StartManager();
  h.StartAgent({.id = "a1"});
  ASSERT_TRUE(h.WaitOnline(1));
  // About 3 s of output on both streams against 300 ms watches.
  const std::string script =
      "for i in $(seq 1 30); do echo line-$i; echo err-$i >&2; sleep 0.1; done";
  CliRun run = RunCli(h, {"--manager", h.manager_address(), "run", "-v", "--shell", script},
                      {"FLOTILLA_WATCH_DEADLINE_MS=300"}, std::chrono::seconds(20));
  ASSERT_EQ(run.exit_code, 0) << run.err;

  std::string want_out, want_err;
  for (int i = 1; i <= 30; ++i) {
    absl::StrAppend(&want_out, "line-", i, "\n");
    absl::StrAppend(&want_err, "err-", i, "\n");
  }
  EXPECT_EQ(run.out, want_out);
  // stderr interleaves the task's lines with the CLI's own notes.
  std::string task_err;
  int watches_again = 0;
  for (absl::string_view line : absl::StrSplit(run.err, '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "err-")) absl::StrAppend(&task_err, line, "\n");
    if (absl::StrContains(line, "watching") && absl::StrContains(line, "again")) ++watches_again;
  }
  EXPECT_EQ(task_err, want_err) << run.err;
  // Evidence that the deadline was in force: several watches, not one.
  EXPECT_GE(watches_again, 3) << run.err;
}

TEST(CliWatch, AManagerThatStopsAnsweringIsGivenUpOnWithItsAddress) {
  FederationHarness h;
  h.StartManager(/*lease_timeout_ms=*/15000);
  h.StartAgent({.id = "a1"});
  ASSERT_TRUE(h.WaitOnline(1));
  v1::SubmitResponse sub;
  ASSERT_TRUE(h.Submit(FederationHarness::Shell("sleep 20"), &sub).ok());
  ASSERT_EQ(kill(h.manager_pid(), SIGSTOP), 0);
  CliRun run = RunCli(h, {"--manager", h.manager_address(), "logs", "-f", sub.execution().id()},
                      {"FLOTILLA_WATCH_DEADLINE_MS=300", "FLOTILLA_WATCH_GIVE_UP_MS=1500"},
                      std::chrono::seconds(15));
  kill(h.manager_pid(), SIGCONT);
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr("no answer from the manager at " + h.manager_address()));
  EXPECT_THAT(run.err, HasSubstr("flotilla logs -f " + sub.execution().id()));
  // Bounded by the give-up time, not by TCP or a 45 s watch.
  EXPECT_LT(run.took, std::chrono::seconds(6));
}

TEST(CliWatch, ABadWatchDeadlineIsNamed) {
  FederationHarness h;
  h.StartManager();
  CliRun run = RunCli(h, {"--manager", h.manager_address(), "logs", "-f", "ex-none"},
                      {"FLOTILLA_WATCH_DEADLINE_MS=soon"}, std::chrono::seconds(10));
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("FLOTILLA_WATCH_DEADLINE_MS: 'soon' is not a number"));
}

}  // namespace
}  // namespace flotilla::testing
