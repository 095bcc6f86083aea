// The real flotilla-guest binary, started as a child over a socketpair (not
// sandboxed, so it makes itself a subreaper instead of being PID 1), driven
// by GuestClient. Also GuestClient against a fake, misbehaving guest.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "guest/protocol.h"
#include "sandbox/guest_client.h"
#include "sandbox/sandbox.h"

namespace flotilla::sandbox {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Mode = GuestClient::Mode;

struct Chunk {
  Stream stream;
  int64_t offset;
  std::string data;
  Clock::time_point at;
};

class RecordingSink : public OutputSink {
 public:
  void OnOutput(Stream stream, int64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(mu_);
    chunks_.push_back({stream, offset, std::string(data), Clock::now()});
  }
  std::vector<Chunk> chunks() const {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }
  // Returns the stream rebuilt from its chunks; fails the test if the
  // offsets are not contiguous from 0.
  std::string Reassemble(Stream stream) const {
    std::string out;
    for (const Chunk& c : chunks()) {
      if (c.stream != stream) continue;
      EXPECT_EQ(c.offset, static_cast<int64_t>(out.size()));
      out += c.data;
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Chunk> chunks_;
};

// A temporary directory, removed (made writable first) at the end.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "guest-test-XXXXXX").string();
    EXPECT_NE(mkdtemp(templ.data()), nullptr);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_directory(ec) && !it->is_symlink(ec)) {
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
      }
    }
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

bool ProcessGone(pid_t pid, std::chrono::milliseconds within) {
  Clock::time_point until = Clock::now() + within;
  while (true) {
    if (kill(pid, 0) < 0 && errno == ESRCH) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(10ms);
  }
}

std::string FindPython() {
  for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return {};
}

// The guest binary as a child of the test, with the agent's end of a
// socketpair wrapped in a GuestClient.
class GuestProcess {
 public:
  explicit GuestProcess(std::vector<std::string> extra_args = {}, GuestClientOptions options = {}) {
    workdir_ = tmp_.path() / "work";
    outside_ = tmp_.path() / "outside";
    fs::create_directories(workdir_);
    fs::create_directories(outside_);
    std::ofstream(outside_ / "victim") << "keep me";
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    std::vector<std::string> args = {FLOTILLA_GUEST_BIN, "--fd", "3", "--workdir",
                                     workdir_.string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(sv[1], 3);  // clears close-on-exec
      syscall(SYS_close_range, 4u, ~0u, 0u);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(sv[1]);
    agent_fd_ = sv[0];
    client_ = std::make_unique<GuestClient>(sv[0], options);
  }

  ~GuestProcess() {
    client_.reset();
    if (pid_ > 0 && !WaitExit(5s)) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  GuestClient& client() { return *client_; }
  void CloseClient() { client_.reset(); }
  pid_t pid() const { return pid_; }
  int agent_fd() const { return agent_fd_; }
  const fs::path& workdir() const { return workdir_; }
  const fs::path& outside() const { return outside_; }

  // Returns true once the guest exited within `within`; its wait status in
  // status().
  bool WaitExit(std::chrono::milliseconds within) {
    Clock::time_point until = Clock::now() + within;
    while (true) {
      pid_t r = waitpid(pid_, &status_, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return true;
      }
      if (r < 0 || Clock::now() >= until) return false;
      std::this_thread::sleep_for(10ms);
    }
  }
  int status() const { return status_; }

 private:
  TempDir tmp_;
  fs::path workdir_;
  fs::path outside_;
  pid_t pid_ = -1;
  int agent_fd_ = -1;
  int status_ = 0;
  std::unique_ptr<GuestClient> client_;
};

TaskSpec Spec(std::vector<std::string> argv) {
  TaskSpec spec;
  spec.id = "test/1";
  spec.argv = std::move(argv);
  spec.env = {{"PATH", "/usr/bin:/bin"}};
  spec.timeout = 20s;
  return spec;
}

TaskSpec Shell(const std::string& script) { return Spec({"sh", "-c", script}); }

class GuestTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(guest_.client().Handshake(10s).ok()); }

  absl::StatusOr<TaskOutcome> Run(const TaskSpec& spec, Mode mode = Mode::kExec) {
    CancelToken cancel;
    return guest_.client().Run(spec, mode, sink_, cancel);
  }

  GuestProcess guest_;
  RecordingSink sink_;
};

TEST_F(GuestTest, EchoesAndReportsUsage) {
  auto outcome = Run(Spec({"echo", "hello", "world"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(outcome->stdout_data, "hello world\n");
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), "hello world\n");
  EXPECT_GT(outcome->wall_time_us, 0);
  EXPECT_GT(outcome->peak_memory_bytes, 0);
  EXPECT_TRUE(guest_.client().healthy());
}

TEST_F(GuestTest, ReportsExitCodesSignalsAndStderr) {
  auto outcome = Run(Shell("echo oops >&2; exit 7"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 7);
  EXPECT_EQ(outcome->stderr_data, "oops\n");
  EXPECT_EQ(outcome->stdout_data, "");

  outcome = Run(Shell("kill -SEGV $$"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kSignaled);
  EXPECT_EQ(outcome->signal, SIGSEGV);
}

TEST_F(GuestTest, CountsCpuTimeOfTheWholeTree) {
  // The busy loop runs in a grandchild that the shell waits for.
  auto outcome = Run(Shell("(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done) ; true"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_GT(outcome->cpu_time_us, 50000);
  EXPECT_LE(outcome->cpu_time_us, outcome->wall_time_us * 2 + 100000);
}

TEST_F(GuestTest, FeedsStdin) {
  TaskSpec spec = Spec({"cat"});
  spec.stdin_data = "line one\nline two\n";
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, spec.stdin_data);

  spec = Spec({"wc", "-c"});
  spec.stdin_data = std::string(3 << 20, 'z');  // more than any pipe buffer
  outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, std::to_string(3 << 20) + "\n");

  // A task that never reads stdin does not stall the guest.
  spec = Spec({"true"});
  spec.stdin_data = std::string(1 << 20, 'z');
  outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0);
}

TEST_F(GuestTest, PassesTheEnvironmentExactly) {
  TaskSpec spec = Spec({"env"});
  spec.env = {{"PATH", "/usr/bin:/bin"}, {"FOO", "bar baz"}, {"EMPTY", ""}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  std::vector<std::string> lines;
  std::stringstream in(outcome->stdout_data);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"EMPTY=", "FOO=bar baz", "PATH=/usr/bin:/bin"}));
}

TEST_F(GuestTest, LooksUpArgv0InTheTasksPath) {
  TaskSpec spec = Spec({"mytool"});
  spec.env = {{"PATH", "/nonexistent:bin"}};
  spec.files = {{"bin/mytool", "#!/bin/sh\necho from mytool \"$PWD\"\n", 0755}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "from mytool " + fs::canonical(guest_.workdir()).string() + "\n");
}

TEST_F(GuestTest, PlacesFilesWithTheirModes) {
  TaskSpec spec = Shell("./run.sh && cat data/in.txt && stat -c %a run.sh data/in.txt");
  spec.files = {{"run.sh", "#!/bin/sh\necho script ran\n", 0755},
                {"data/in.txt", "payload\n", 0600}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "script ran\npayload\n755\n600\n");
}

TEST_F(GuestTest, RejectsFilePathsThatLeaveTheWorkingDirectory) {
  for (std::string path : {"../escape", "/etc/passwd", "a/../../b", ""}) {
    TaskSpec spec = Spec({"true"});
    spec.files = {{path, "x", 0644}};
    auto outcome = Run(spec);
    EXPECT_EQ(outcome.status().code(), absl::StatusCode::kInvalidArgument) << path;
  }
  EXPECT_TRUE(guest_.client().healthy());
  EXPECT_FALSE(fs::exists(guest_.workdir().parent_path() / "escape"));
}

TEST_F(GuestTest, StreamsOutputInOrderWithOffsetsBeforeTheTaskEnds) {
  auto outcome = Run(Shell("for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; sleep 0.1; done"));
  Clock::time_point ended = Clock::now();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout), "line1\nline2\nline3\nline4\nline5\n");
  EXPECT_EQ(sink_.Reassemble(Stream::kStderr), "err1\nerr2\nerr3\nerr4\nerr5\n");
  std::vector<Chunk> chunks = sink_.chunks();
  ASSERT_GE(chunks.size(), 5u);
  // The first line arrived while the task was still sleeping.
  EXPECT_LT(chunks.front().at + 250ms, ended);
}

TEST_F(GuestTest, AppliesTheOutputLimitPerStream) {
  TaskSpec spec = Shell("head -c 200000 /dev/zero; echo small >&2");
  spec.output_limit_bytes = 1000;
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0);
  EXPECT_EQ(outcome->stdout_data.size(), 1000u);
  EXPECT_TRUE(outcome->stdout_truncated);
  EXPECT_EQ(outcome->stderr_data, "small\n");
  EXPECT_FALSE(outcome->stderr_truncated);
  EXPECT_EQ(sink_.Reassemble(Stream::kStdout).size(), 1000u);
}

TEST_F(GuestTest, TimeoutKillsASleep) {
  TaskSpec spec = Spec({"sleep", "100"});
  spec.timeout = 300ms;
  Clock::time_point start = Clock::now();
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kTimedOut);
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_GE(outcome->wall_time_us, 300000);
}

TEST_F(GuestTest, TimeoutKillsTheWholeTreeAndReapsIt) {
  // A background sleep in the task's group, one that left the group with
  // setsid, and the shell itself: all gone (not even zombies) after Run.
  TaskSpec spec = Shell("sleep 100 & echo $!; setsid sleep 100 & echo $!; echo $$; sleep 100");
  spec.timeout = 500ms;
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kTimedOut);
  std::vector<pid_t> pids;
  std::stringstream in(outcome->stdout_data);
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  ASSERT_EQ(pids.size(), 3u) << outcome->stdout_data;
  for (pid_t pid : pids) {
    EXPECT_TRUE(kill(pid, 0) < 0 && errno == ESRCH) << "pid " << pid << " is still there";
  }
}

TEST_F(GuestTest, KillsLeftoversOfATaskThatExitedNormally) {
  auto outcome = Run(Shell("setsid sleep 100 >/dev/null 2>&1 & echo $!"));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  pid_t pid = std::stoi(outcome->stdout_data);
  EXPECT_TRUE(kill(pid, 0) < 0 && errno == ESRCH);
}

TEST(GuestCancelTest, CancelStopsTheTaskAndEscalatesToSigkill) {
  GuestClientOptions options;
  options.cancel_grace = 300ms;
  GuestProcess guest({}, options);
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  RecordingSink sink;
  for (std::string script : {"sleep 100", "trap '' TERM; echo armed; sleep 100; sleep 100"}) {
    CancelToken cancel;
    std::thread canceller([&] {
      std::this_thread::sleep_for(300ms);
      cancel.Cancel();
    });
    Clock::time_point start = Clock::now();
    auto outcome = guest.client().Run(Shell(script), Mode::kExec, sink, cancel);
    canceller.join();
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->termination, Termination::kCancelled) << script;
    EXPECT_LT(Clock::now() - start, 5s) << script;
  }
  // Cancelled before it starts: nothing runs.
  CancelToken early;
  early.Cancel();
  auto outcome = guest.client().Run(Spec({"true"}), Mode::kExec, sink, early);
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->termination, Termination::kCancelled);
  EXPECT_TRUE(guest.client().healthy());
}

// A CANCEL right behind its RUN arrives in the same read as the RUN. The
// guest must act on it although no more bytes come: the agent sends one
// CANCEL per task (this once left a cancelled task running to its end).
TEST(GuestCancelTest, ACancelInTheSameReadAsItsRunStopsTheTask) {
  GuestProcess guest;
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  const int fd = guest.agent_fd();
  guest::RunRequest run;
  run.task_id = "test/1";
  run.argv = {"sleep", "100"};
  run.env = {{"PATH", "/usr/bin:/bin"}};
  run.timeout_ms = 60000;
  std::string error;
  ASSERT_TRUE(guest::WriteFully(
      fd, guest::EncodeRun(run) + guest::EncodeCancel({/*grace_ms=*/100}), 5000, &error))
      << error;
  guest::FrameReader reader;
  std::optional<guest::Exit> exit;
  const Clock::time_point start = Clock::now();
  while (!exit && Clock::now() < start + 10s) {
    guest::Frame frame;
    if (reader.Next(&frame, &error) == guest::FrameReader::Result::kFrame) {
      if (frame.type == guest::MessageType::kExit) {
        guest::Exit e;
        ASSERT_TRUE(guest::DecodeExit(frame.payload, &e, &error)) << error;
        exit = e;
      }
      continue;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0 && reader.ReadFrom(fd) <= 0) break;
  }
  ASSERT_TRUE(exit.has_value()) << "the guest never ended the cancelled task";
  EXPECT_EQ(exit->termination, guest::Termination::kCancelled);
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST_F(GuestTest, CleansTheWorkingDirectoryBetweenTasks) {
  std::string outside = guest_.outside().string();
  TaskSpec first = Shell(
      "echo one > f1 && mkdir -p ro/sub && echo two > ro/sub/file && chmod 444 ro/sub/file && "
      "chmod 555 ro/sub ro && mkdir locked && touch locked/x && chmod 000 locked && "
      "ln -s " +
      outside + " link_dir && ln -s " + outside +
      "/victim link_file && "
      "mkdir -p deep && cd deep && i=0; while [ $i -lt 150 ]; do mkdir d; cd d; i=$((i+1)); done; "
      "cd " +
      guest_.workdir().string() + " && chmod 500 . && ls -A");
  auto outcome = Run(first);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0) << outcome->stderr_data;
  EXPECT_THAT(outcome->stdout_data, HasSubstr("link_dir"));

  auto second = Run(Shell("touch new && ls -A"));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->stdout_data, "new\n") << second->stderr_data;
  EXPECT_TRUE(guest_.client().last_ready().clean);
  // Nothing outside the working directory was touched.
  EXPECT_TRUE(fs::exists(guest_.outside() / "victim"));
  std::ifstream victim(guest_.outside() / "victim");
  std::string content((std::istreambuf_iterator<char>(victim)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "keep me");
  // The working directory's mode was restored.
  EXPECT_EQ(fs::status(guest_.workdir()).permissions() & fs::perms::owner_write,
            fs::perms::owner_write);
  ASSERT_TRUE(guest_.client().Reset(10s).ok());
  EXPECT_TRUE(fs::is_empty(guest_.workdir()));
  EXPECT_EQ(guest_.client().last_ready().tasks_run, 2u);
}

TEST_F(GuestTest, PlantedSymlinkDoesNotRedirectTaskFiles) {
  // Task files are written with O_NOFOLLOW at every step, so even a symlink
  // that is already there (it is not, after cleanup) could not redirect.
  TaskSpec spec = Spec({"true"});
  spec.files = {{"sub/file", "x", 0644}};
  ASSERT_TRUE(Run(spec).ok());
  ASSERT_TRUE(Run(Shell("ln -s " + guest_.outside().string() + " sub")).ok());
  ASSERT_TRUE(Run(spec).ok());
  EXPECT_FALSE(fs::exists(guest_.outside() / "file"));
}

TEST_F(GuestTest, MissingBinaryIsNotFoundAndTheGuestStaysUsable) {
  auto outcome = Run(Spec({"no-such-binary-xyz"}));
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound) << outcome.status();
  EXPECT_THAT(outcome.status().message(), HasSubstr("no-such-binary-xyz"));
  outcome = Run(Spec({"/nonexistent/tool"}));
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound) << outcome.status();
  EXPECT_TRUE(guest_.client().healthy());
  outcome = Run(Spec({"echo", "still here"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "still here\n");
}

TEST_F(GuestTest, AnswersPing) {
  EXPECT_TRUE(guest_.client().Ping(5s).ok());
  ASSERT_TRUE(Run(Spec({"true"})).ok());
  EXPECT_TRUE(guest_.client().Ping(5s).ok());
}

TEST(GuestLifecycleTest, ExitsWhenTheAgentClosesTheSocket) {
  GuestProcess guest;
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  guest.CloseClient();
  ASSERT_TRUE(guest.WaitExit(5s));
  EXPECT_TRUE(WIFEXITED(guest.status()));
  EXPECT_EQ(WEXITSTATUS(guest.status()), 0);
}

TEST(GuestLifecycleTest, ShutdownKillsARunningTaskAndExits) {
  GuestProcess guest;
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  ASSERT_TRUE(guest.client().Shutdown().ok());
  EXPECT_FALSE(guest.client().healthy());
  ASSERT_TRUE(guest.WaitExit(5s));
  EXPECT_EQ(WEXITSTATUS(guest.status()), 0);
}

TEST(GuestLifecycleTest, ClosingTheSocketMidTaskKillsTheTask) {
  GuestProcess guest;
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  RecordingSink sink;
  CancelToken cancel;
  TaskSpec spec = Shell("echo $$; sleep 100");
  std::optional<pid_t> task_pid;
  std::thread runner([&] {
    // Returns once the fd is shut down under it.
    (void)guest.client().Run(spec, Mode::kExec, sink, cancel);
  });
  Clock::time_point until = Clock::now() + 5s;
  while (sink.chunks().empty() && Clock::now() < until) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(sink.chunks().empty());
  pid_t pid = std::stoi(sink.chunks().front().data);
  shutdown(guest.agent_fd(), SHUT_RDWR);
  runner.join();
  ASSERT_TRUE(guest.WaitExit(5s));
  EXPECT_TRUE(ProcessGone(pid, 2s));
}

TEST(GuestLifecycleTest, RejectsAnAgentWithAnotherProtocolVersion) {
  GuestProcess guest;
  int fd = guest.agent_fd();
  std::string error;
  ASSERT_TRUE(guest::WriteFully(fd, guest::EncodeHello({guest::kProtocolVersion + 1, "future"}),
                                5000, &error))
      << error;
  guest::FrameReader reader;
  std::vector<guest::Frame> frames;
  Clock::time_point until = Clock::now() + 5s;
  while (Clock::now() < until) {
    guest::Frame frame;
    if (reader.Next(&frame, &error) == guest::FrameReader::Result::kFrame) {
      frames.push_back(frame);
      if (frame.type == guest::MessageType::kError) break;
      continue;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) > 0 && reader.ReadFrom(fd) <= 0) break;
  }
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].type, guest::MessageType::kHello);
  guest::Error err;
  ASSERT_TRUE(guest::DecodeError(frames[1].payload, &err, &error));
  EXPECT_THAT(err.message, HasSubstr("version mismatch"));
  ASSERT_TRUE(guest.WaitExit(5s));
  EXPECT_EQ(WEXITSTATUS(guest.status()), 2);
}

// --- Python fork server. ---

class GuestPythonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    python_ = FindPython();
    if (python_.empty()) GTEST_SKIP() << "no python3 at /usr/bin or /usr/local/bin";
    guest_ = std::make_unique<GuestProcess>(
        std::vector<std::string>{"--python", python_, "--python-preload", "json,os"});
    ASSERT_TRUE(guest_->client().Handshake(60s).ok());
  }

  absl::StatusOr<TaskOutcome> Run(TaskSpec spec) {
    CancelToken cancel;
    return guest_->client().Run(spec, Mode::kPythonForkServer, sink_, cancel);
  }

  std::string python_;
  std::unique_ptr<GuestProcess> guest_;
  RecordingSink sink_;
};

TEST_F(GuestPythonTest, RunsCodeInAWarmInterpreter) {
  EXPECT_TRUE(guest_->client().last_ready().python_server_warm);
  auto outcome = Run(Spec({"python3", "-c", "print(2+2)"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kExited);
  EXPECT_EQ(outcome->exit_code, 0) << outcome->stderr_data;
  EXPECT_EQ(outcome->stdout_data, "4\n");
  EXPECT_GT(outcome->peak_memory_bytes, 0);
  EXPECT_TRUE(guest_->client().last_ready().python_server_warm);
}

// Regression: a task fast enough for the server's "pid" and "exit" lines to
// arrive in one read left "exit" buffered and unseen until the timeout.
TEST_F(GuestPythonTest, ManyFastTasksInARow) {
  for (int i = 0; i < 30; ++i) {
    TaskSpec spec = Spec({"python3", "-c", "pass"});
    spec.timeout = 5s;
    auto outcome = Run(spec);
    ASSERT_TRUE(outcome.ok()) << outcome.status();
    ASSERT_EQ(outcome->termination, Termination::kExited) << i;
  }
}

TEST_F(GuestPythonTest, MapsSystemExitAndExceptionsToExitCodes) {
  auto outcome = Run(Spec({"python3", "-c", "raise SystemExit(3)"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 3);

  outcome = Run(Spec({"python3", "-c", "import sys; sys.exit('bad input')"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 1);
  EXPECT_EQ(outcome->stderr_data, "bad input\n");

  outcome = Run(Spec({"python3", "-c", "1/0"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 1);
  EXPECT_THAT(outcome->stderr_data, HasSubstr("ZeroDivisionError"));
}

TEST_F(GuestPythonTest, GivesTheTaskItsArgvEnvStdinAndFiles) {
  TaskSpec spec = Spec({"python3", "main.py", "a", "b"});
  spec.env = {{"GREETING", "hi"}};
  spec.stdin_data = "from stdin\n";
  spec.files = {{"main.py",
                 "import os, sys\n"
                 "print(sys.argv)\n"
                 "print(sorted(os.environ.items()))\n"
                 "print(input())\n"
                 "print(__name__, os.getcwd() == os.path.dirname(os.path.abspath(__file__)))\n",
                 0644}};
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 0) << outcome->stderr_data;
  EXPECT_EQ(outcome->stdout_data,
            "['main.py', 'a', 'b']\n[('GREETING', 'hi')]\nfrom stdin\n__main__ True\n");
}

TEST_F(GuestPythonTest, TimeoutKillsTheTaskAndKeepsTheServer) {
  TaskSpec spec =
      Spec({"python3", "-c", "import time; print('started', flush=True); time.sleep(100)"});
  spec.timeout = 500ms;
  auto outcome = Run(spec);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->termination, Termination::kTimedOut);
  EXPECT_EQ(outcome->stdout_data, "started\n");
  outcome = Run(Spec({"python3", "-c", "print('again')"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "again\n");
  EXPECT_TRUE(guest_->client().last_ready().python_server_warm);
}

TEST_F(GuestPythonTest, RecoversWhenATaskKillsTheServer) {
  auto outcome = Run(Spec({"python3", "-c", "import os; os.kill(os.getppid(), 9); print('ok')"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "ok\n");
  outcome = Run(Spec({"python3", "-c", "print('restarted')"}));
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->stdout_data, "restarted\n");
}

TEST(GuestPythonMissingTest, MissingPythonIsNotFound) {
  GuestProcess guest({"--python", "/nonexistent/python3"});
  ASSERT_TRUE(guest.client().Handshake(10s).ok());
  RecordingSink sink;
  CancelToken cancel;
  auto outcome =
      guest.client().Run(Spec({"python3", "-c", "pass"}), Mode::kPythonForkServer, sink, cancel);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kNotFound) << outcome.status();
  EXPECT_THAT(outcome.status().message(), HasSubstr("python"));
  EXPECT_TRUE(guest.client().healthy());
}

// Not a pass/fail test: prints warm fork-server latency against a fresh
// interpreter. Run with --gtest_also_run_disabled_tests.
TEST(GuestPythonBench, DISABLED_ForkServerLatency) {
  std::string python = FindPython();
  if (python.empty()) GTEST_SKIP();
  GuestProcess guest({"--python", python});
  ASSERT_TRUE(guest.client().Handshake(60s).ok());
  RecordingSink sink;
  CancelToken cancel;
  auto measure = [&](Mode mode, std::vector<std::string> argv) {
    std::vector<double> ms;
    for (int i = 0; i < 30; ++i) {
      Clock::time_point start = Clock::now();
      auto outcome = guest.client().Run(Spec(argv), mode, sink, cancel);
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      EXPECT_TRUE(outcome.ok() && outcome->exit_code == 0);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  measure(Mode::kPythonForkServer, {"python3", "-c", "pass"});  // warm up
  double warm = measure(Mode::kPythonForkServer, {"python3", "-c", "pass"});
  double cold = measure(Mode::kExec, {python, "-c", "pass"});
  const std::string imports = "import json, email.mime.text";
  double cold_imports = measure(Mode::kExec, {python, "-c", imports});
  double warm_imports = measure(Mode::kPythonForkServer, {"python3", "-c", imports});
  double trivial = measure(Mode::kExec, {"true"});
  printf(
      "median Run latency over 30 runs:\n"
      "  fork server `pass`            %7.2f ms\n"
      "  fresh `%s -c pass` %7.2f ms\n"
      "  exec `true`                   %7.2f ms\n"
      "  `%s`: fresh %.2f ms, fork server (not preloaded, imported once) %.2f ms\n",
      warm, python.c_str(), cold, trivial, imports.c_str(), cold_imports, warm_imports);
}

// --- GuestClient against a fake guest that misbehaves. ---

class FakeGuestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    guest_fd_ = sv[1];
    GuestClientOptions options;
    options.guest_grace = 200ms;
    options.ready_timeout = 1s;
    client_ = std::make_unique<GuestClient>(sv[0], options);
    Send(guest::EncodeHello({guest::kProtocolVersion, "fake"}));
    Send(guest::EncodeReady({}));
    ASSERT_TRUE(client_->Handshake(2s).ok());
  }
  void TearDown() override { close(guest_fd_); }

  void Send(const std::string& bytes) {
    std::string error;
    ASSERT_TRUE(guest::WriteFully(guest_fd_, bytes, 2000, &error)) << error;
  }

  absl::StatusOr<TaskOutcome> Run(std::chrono::milliseconds timeout = 300ms) {
    TaskSpec spec = Spec({"true"});
    spec.timeout = timeout;
    spec.output_limit_bytes = 10;
    CancelToken cancel;
    return client_->Run(spec, Mode::kExec, sink_, cancel);
  }

  int guest_fd_ = -1;
  std::unique_ptr<GuestClient> client_;
  RecordingSink sink_;
};

TEST_F(FakeGuestTest, SilentGuestTimesOutAndIsUnhealthy) {
  Clock::time_point start = Clock::now();
  auto outcome = Run();
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kDeadlineExceeded) << outcome.status();
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_FALSE(client_->healthy());
  EXPECT_EQ(Run().status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(FakeGuestTest, OutputPastTheLimitOrOutOfOrderIsAViolation) {
  Send(guest::EncodeOutput({guest::OutputStream::kStdout, 0, "0123456789ABC"}));
  auto outcome = Run();
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kDataLoss) << outcome.status();
  EXPECT_FALSE(client_->healthy());
}

TEST_F(FakeGuestTest, SkippedOffsetIsAViolation) {
  Send(guest::EncodeOutput({guest::OutputStream::kStderr, 5, "abc"}));
  EXPECT_EQ(Run().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(FakeGuestTest, GarbageIsAViolation) {
  Send(std::string("\x10\x00\x00\x00\xee garbage garbage", 21));
  EXPECT_EQ(Run().status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(client_->healthy());
}

TEST_F(FakeGuestTest, OversizedFrameIsAViolation) {
  Send(std::string("\x00\x00\x00\x10\x04", 5));  // a 256 MiB OUTPUT
  EXPECT_EQ(Run().status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(FakeGuestTest, WellFormedExitIsTheOutcome) {
  Send(guest::EncodeOutput({guest::OutputStream::kStdout, 0, "hi"}));
  guest::Exit exit;
  exit.exit_code = 4;
  exit.cpu_us = -5;  // nonsense is clamped, not trusted
  Send(guest::EncodeExit(exit));
  auto outcome = Run();
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(outcome->exit_code, 4);
  EXPECT_EQ(outcome->stdout_data, "hi");
  EXPECT_EQ(outcome->cpu_time_us, 0);
  EXPECT_TRUE(client_->healthy());
}

TEST(FakeGuestHandshakeTest, GuestWithAnotherVersionIsRejected) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  GuestClient client(sv[0]);
  std::string error;
  ASSERT_TRUE(guest::WriteFully(sv[1], guest::EncodeHello({99, "old"}), 1000, &error));
  absl::Status status = client.Handshake(2s);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("version mismatch"));
  EXPECT_FALSE(client.healthy());
  close(sv[1]);
}

}  // namespace
}  // namespace flotilla::sandbox
