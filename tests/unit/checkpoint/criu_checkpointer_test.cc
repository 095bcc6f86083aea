// Tests of checkpoint/ with the real CRIU: a Python process in a sandbox
// container, holding state in memory and an open file, is checkpointed and
// restored into a new container, and must keep both. Skips loudly, with the
// probe's reason, where checkpointing does not work (not root, no working
// criu — see scripts/build-criu — or a criu that hangs: probe.h). The tests
// of a hung criu use a fake one and run wherever containers do.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "checkpoint/channel.h"
#include "checkpoint/checkpointer.h"
#include "checkpoint/criu_process.h"
#include "checkpoint/externals.h"
#include "checkpoint/probe.h"
#include "fake_criu.h"
#include "gtest/gtest.h"

namespace flotilla::checkpoint {
namespace {

using namespace std::chrono_literals;

// Reads one line from `fd` within `timeout`; "" on timeout or EOF.
std::string ReadLine(int fd, std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char c;
    if (read(fd, &c, 1) != 1) break;
    if (c == '\n') return line;
    line.push_back(c);
  }
  return line;
}

// Sends "x\n" (one request) to a source's channel; -1 with errno set if the
// source is gone. MSG_NOSIGNAL: a dead source must fail a test, not kill the
// test binary with SIGPIPE.
ssize_t SendLine(int fd) { return send(fd, "x\n", 2, MSG_NOSIGNAL); }

// Asks the Python source on `fd` once and checks that it answers with the
// count `n` (within 10 s).
::testing::AssertionResult Answers(int fd, int n) {
  if (SendLine(fd) != 2) {
    return ::testing::AssertionFailure() << "send to the source: " << std::strerror(errno);
  }
  const std::string line = ReadLine(fd, 10s);
  if (line.rfind(absl::StrCat(n, " "), 0) != 0) {
    return ::testing::AssertionFailure() << "answer " << n << " was '" << line << "'";
  }
  return ::testing::AssertionSuccess();
}

// The program: fills memory with state, opens a file and writes to it, then
// answers each line it gets on fd 3 with its counter and the file's content.
constexpr char kProgram[] = R"(
import os, socket
sock = socket.socket(fileno=3)
state = [i * i for i in range(200000)]
f = open('/work/state.txt', 'w+')
f.write('written-before-checkpoint')
f.flush()
n = 0
r = sock.makefile('r')
for line in r:
    n += 1
    f.seek(0)
    sock.sendall(('%d %d %s %d\n' % (n, sum(state) % 1000003, f.read(), f.tell())).encode())
)";

// The probe, run once per test binary: a real dump and restore, bounded.
const ProbeResult& ProbeOnce() {
  static const ProbeResult result = [] {
    ProbeOptions o;
    o.work_dir = absl::StrCat("/tmp/ckpt-test-probe.", getpid());
    ProbeResult r = ProbeCheckpointing(o);
    std::error_code ec;
    std::filesystem::remove_all(o.work_dir, ec);
    return r;
  }();
  return result;
}

// Containers with their own cgroups and runtime directory, as an agent's.
class ContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "checkpoint tests need root (namespaces, criu)";
    const std::string key = absl::StrCat("ckpt-test.", getpid());
    sandbox::HostLayout paths;
    paths.runtime_dir = "/run/flotilla-test/" + key;
    paths.cgroup_parent = key;
    auto layout = sandbox::DetectHostLayout(paths);
    ASSERT_TRUE(layout.ok()) << layout.status();
    layout_ = *layout;
    image_dir_ = absl::StrCat("/tmp/", key, ".img");
    options_.state_dir = absl::StrCat("/tmp/", key, ".criu");
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(image_dir_, ec);
    std::filesystem::remove_all(options_.state_dir, ec);
    std::filesystem::remove_all(layout_.runtime_dir, ec);
    // The (empty) per-test cgroup parents in every hierarchy.
    auto remove_parent = [&](const std::string& mount, const std::string& own) {
      rmdir((mount + (own == "/" ? "" : own) + "/" + layout_.cgroup_parent).c_str());
    };
    if (!layout_.cgroups.unified.empty()) {
      remove_parent(layout_.cgroups.unified, layout_.cgroups.own_unified);
    }
    for (const auto& [controller, mount] : layout_.cgroups.v1) {
      auto own = layout_.cgroups.own_v1.find(controller);
      remove_parent(mount, own == layout_.cgroups.own_v1.end() ? "/" : own->second);
    }
  }

  sandbox::ContainerSpec PythonSpec(const std::string& id) {
    sandbox::ContainerSpec spec;
    spec.id = id;
    spec.program_path = "/usr/bin/python3";
    spec.argv = {"python3", "-c", kProgram};
    spec.limits.memory_bytes = 512 << 20;
    spec.limits.pids_max = 64;
    return spec;
  }

  CriuOptions options_;
  sandbox::HostLayout layout_;
  std::string image_dir_;
};

class CheckpointTest : public ContainerTest {
 protected:
  void SetUp() override {
    const ProbeResult& probe = ProbeOnce();
    if (probe.state != CheckpointState::kAvailable) {
      GTEST_SKIP() << "CHECKPOINTING IS NOT AVAILABLE HERE, skipping: " << Describe(probe);
    }
    ContainerTest::SetUp();
  }
};

using HungCriuTest = ContainerTest;

// A criu that hangs in its dump is killed at the deadline; the error says
// so; the source was never stopped and carries on answering.
TEST_F(HungCriuTest, HungDumpIsKilledAtItsDeadlineAndTheSourceCarriesOn) {
  testing::FakeCriu fake(image_dir_ + ".bin");
  auto source = LaunchCheckpointable(PythonSpec("ckpt-hang"), layout_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  const std::string before = ReadLine(source->channel.get(), 10s);
  ASSERT_EQ(before.rfind("1 ", 0), 0u) << before;

  CriuOptions options = options_;
  options.criu_path = fake.path();
  options.deadlines.floor = 700ms;
  options.deadlines.cap = 700ms;
  CheckpointRequest request;
  request.init_pid = source->container->pid();
  request.id = "ckpt-hang";
  request.image_dir = image_dir_;
  const auto start = std::chrono::steady_clock::now();
  auto image = NewCriuCheckpointer(options)->Checkpoint(request);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kDeadlineExceeded) << image.status();
  const std::string message(image.status().message());
  EXPECT_NE(message.find("checkpoint of sandbox ckpt-hang: criu dump did not finish within 700 ms"),
            std::string::npos) << message;
  EXPECT_NE(message.find("exited trapping"), std::string::npos) << message;
  EXPECT_NE(message.find("the sandbox carries on"), std::string::npos) << message;
  EXPECT_LT(took, 700ms + 3s);  // the tar of the root and the fake check before it
  EXPECT_FALSE(std::filesystem::exists(image_dir_));
  // The fake and its helper are gone; the source answers with the next count.
  const std::vector<int> pids = fake.Pids();
  ASSERT_EQ(pids.size(), 3u);
  EXPECT_TRUE(testing::AllDeadWithin({pids[0], pids[1]}, 2s));
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  EXPECT_EQ(ReadLine(source->channel.get(), 10s), "2" + before.substr(before.find(' ')));
  std::error_code ec;
  std::filesystem::remove_all(image_dir_ + ".bin", ec);
  std::filesystem::remove(image_dir_ + ".failed.log", ec);
}

// A dump killed at its deadline after the source died under it (as a real
// CRIU killed in one of its injected system calls leaves the task: see
// RealCriuKilledMidDump...) is reported as DataLoss naming the dead init
// and how it died, never as "the sandbox carries on".
TEST_F(HungCriuTest, SourceThatDiesWithAKilledDumpIsReportedDead) {
  testing::FakeCriu fake(image_dir_ + ".bin", 0, testing::FakeCriu::kKillTaskThenHang);
  auto source = LaunchCheckpointable(PythonSpec("ckpt-dies"), layout_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE(Answers(source->channel.get(), 1));

  CriuOptions options = options_;
  options.criu_path = fake.path();
  options.deadlines.floor = 700ms;
  options.deadlines.cap = 700ms;
  CheckpointRequest request;
  request.init_pid = source->container->pid();
  request.id = "ckpt-dies";
  request.image_dir = image_dir_;
  const auto start = std::chrono::steady_clock::now();
  auto image = NewCriuCheckpointer(options)->Checkpoint(request);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kDataLoss) << image.status();
  const std::string message(image.status().message());
  EXPECT_NE(message.find("checkpoint of sandbox ckpt-dies: criu dump did not finish within 700 ms"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find(absl::StrCat("the sandbox died with the killed dump: its init (pid ",
                                      request.init_pid, ") was killed by signal 9 (SIGKILL)")),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find("carries on"), std::string::npos) << message;
  EXPECT_LT(took, 700ms + 3s + 2s);  // the tar, the fake check, the bounded clean-up
  EXPECT_FALSE(std::filesystem::exists(image_dir_));
  // The checkpointer only looked: the container's owner reaps its init.
  auto exit = source->container->Wait(5s);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGKILL);
  std::error_code ec;
  std::filesystem::remove_all(image_dir_ + ".bin", ec);
  std::filesystem::remove(image_dir_ + ".failed.log", ec);
}

TEST_F(CheckpointTest, PythonKeepsMemoryAndOpenFileAcrossCheckpointAndRestore) {
  auto source = LaunchCheckpointable(PythonSpec("ckpt-src"), layout_);
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  const std::string before = ReadLine(source->channel.get(), 10s);
  ASSERT_EQ(before.rfind("1 ", 0), 0u) << before;

  auto checkpointer = NewCriuCheckpointer(options_);
  CheckpointRequest request;
  request.init_pid = source->container->pid();
  request.id = "ckpt-src";
  request.image_dir = image_dir_;
  request.after = AfterCheckpoint::kLeaveRunning;
  auto image = checkpointer->Checkpoint(request);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_GT(image->bytes, 1 << 20);

  // The source carried on and still answers.
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  EXPECT_EQ(ReadLine(source->channel.get(), 10s).rfind("2 ", 0), 0u);
  ASSERT_TRUE(source->container->Kill().ok());

  RestoreRequest restore;
  restore.image_dir = image_dir_;
  restore.id = "ckpt-dst";
  restore.layout = layout_;
  restore.limits.memory_bytes = 512 << 20;
  auto restored = checkpointer->Restore(restore);
  ASSERT_TRUE(restored.ok()) << restored.status();
  ASSERT_EQ(SendLine(restored->channel.get()), 2) << std::strerror(errno);
  const std::string after = ReadLine(restored->channel.get(), 10s);
  // Counter 2: the checkpoint was taken after the first answer; the sum of
  // the in-memory list, the file's content and its offset are as before.
  const std::string tail = before.substr(before.find(' '));
  EXPECT_EQ(after, "2" + tail);
  // The restored container cleans up like a launched one.
  const std::vector<std::string> dirs = restored->container->CgroupDirsForTest();
  const std::string root = restored->container->root_dir();
  EXPECT_FALSE(dirs.empty());
  restored->container.reset();
  for (const std::string& dir : dirs) EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  EXPECT_FALSE(std::filesystem::exists(root)) << root;
}

TEST_F(CheckpointTest, FailedCheckpointLeavesTheSourceRunningAndSaysWhy) {
  auto source = LaunchCheckpointable(PythonSpec("ckpt-bad"), layout_);
  ASSERT_TRUE(source.ok()) << source.status();
  auto checkpointer = NewCriuCheckpointer(options_);
  CheckpointRequest request;
  request.init_pid = source->container->pid();
  request.id = "ckpt-bad";
  request.channel_fd = 1;  // not a socket: the checkpoint must refuse
  request.image_dir = image_dir_;
  request.after = AfterCheckpoint::kKill;
  auto image = checkpointer->Checkpoint(request);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kFailedPrecondition) << image.status();
  EXPECT_FALSE(std::filesystem::exists(image_dir_));
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  EXPECT_EQ(ReadLine(source->channel.get(), 10s).rfind("1 ", 0), 0u);
}

// The real CRIU killed at deadlines that land at different points of a dump
// (seizing, collecting, the parasite in the task, writing pages): fractions
// of a whole dump's time measured first. The kernel detaches the dead
// tracer's tasks and a parasite left in a task returns to the task's code
// when its socket closes, so mostly the source answers on as before. But a
// kill while CRIU has the task run one of its injected system calls leaves
// the task to die of the injected breakpoint (SIGTRAP): then the checkpoint
// must say that the sandbox died with the dump (DataLoss), never that it
// carries on; the test then goes on with a fresh source. Either way, a
// source said to carry on must answer.
TEST_F(CheckpointTest, RealCriuKilledMidDumpLeavesTheSourceRunningOrSaysItDied) {
  int launches = 0;
  int answers = 0;
  absl::StatusOr<CheckpointableContainer> source;
  CheckpointRequest request;
  auto launch = [&] {
    source = LaunchCheckpointable(PythonSpec(absl::StrCat("ckpt-kill-", ++launches)), layout_);
    answers = 0;
    if (source.ok()) request.init_pid = source->container->pid();
  };
  launch();
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE(Answers(source->channel.get(), ++answers));
  request.id = "ckpt-kill";
  request.image_dir = image_dir_ + ".whole";
  auto whole = NewCriuCheckpointer(options_)->Checkpoint(request);
  ASSERT_TRUE(whole.ok()) << whole.status();
  // CRIU's own time: the timestamp "(SS.ffffff)" of its log's last line
  // (the checkpoint's `took` also holds the tar of the root).
  const std::string tail = LogTail(request.image_dir + "/dump.log", 1);
  double seconds = 0;
  ASSERT_TRUE(tail.size() > 2 && absl::SimpleAtod(tail.substr(1, tail.find(')') - 1), &seconds))
      << tail;
  const auto full = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000) + 1);
  std::error_code ec;
  std::filesystem::remove_all(request.image_dir, ec);
  int killed = 0;
  int died = 0;
  for (double part : {0.1, 0.3, 0.5, 0.7, 0.85, 0.95}) {
    SCOPED_TRACE(part);
    ASSERT_TRUE(Answers(source->channel.get(), ++answers));
    CriuOptions options = options_;
    options.deadlines.floor = std::max(1ms, std::chrono::milliseconds(static_cast<int64_t>(
                                                full.count() * part)));
    options.deadlines.cap = options.deadlines.floor;
    request.image_dir = absl::StrCat(image_dir_, ".", static_cast<int>(part * 100));
    auto image = NewCriuCheckpointer(options)->Checkpoint(request);
    if (!image.ok()) {
      ++killed;
      // Where it was killed, for the record.
      std::printf("killed after %lld ms at: %s\n",
                  static_cast<long long>(options.deadlines.floor.count()),
                  LogTail(request.image_dir + ".failed.log", 1).c_str());
      const std::string message(image.status().message());
      if (absl::IsDataLoss(image.status())) {
        ++died;
        std::printf("the source died with the killed dump: %s\n", message.c_str());
        EXPECT_NE(message.find("the sandbox died with the killed dump: its init (pid "),
                  std::string::npos)
            << message;
        // Its channel is closed: it is really gone.
        EXPECT_EQ(ReadLine(source->channel.get(), 10s), "");
        source = absl::UnknownError("replaced");  // cleans the dead container up first
        launch();
        ASSERT_TRUE(source.ok()) << source.status();
      } else {
        EXPECT_EQ(image.status().code(), absl::StatusCode::kDeadlineExceeded) << image.status();
        EXPECT_NE(message.find("the sandbox carries on"), std::string::npos) << message;
      }
    }
    std::filesystem::remove_all(request.image_dir, ec);
    std::filesystem::remove(request.image_dir + ".failed.log", ec);
  }
  ASSERT_TRUE(Answers(source->channel.get(), ++answers));
  EXPECT_GT(killed, 0) << "no deadline was short enough to kill a dump";
  std::printf(
      "real criu (whole dump %lld ms) killed mid-dump %d of 6 times; the source died with "
      "it %d times (reported) and answered every other time\n",
      static_cast<long long>(full.count()), killed, died);
}

TEST_F(CheckpointTest, MissingCriuIsReportedNotFatal) {
  CriuOptions missing = options_;
  missing.criu_path = "/nonexistent/criu";
  auto source = LaunchCheckpointable(PythonSpec("ckpt-none"), layout_);
  ASSERT_TRUE(source.ok()) << source.status();
  CheckpointRequest request;
  request.init_pid = source->container->pid();
  request.id = "ckpt-none";
  request.image_dir = image_dir_;
  request.after = AfterCheckpoint::kKill;
  auto image = NewCriuCheckpointer(missing)->Checkpoint(request);
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(image.status().message().find("criu is not installed"), std::string::npos);
  ASSERT_EQ(SendLine(source->channel.get()), 2) << std::strerror(errno);
  EXPECT_EQ(ReadLine(source->channel.get(), 10s).rfind("1 ", 0), 0u);
}

TEST(Externals, MountinfoBindsBecomeExternalMountsAndOwnMountsDoNot) {
  const char* mountinfo =
      "67 45 0:41 / / ro,nosuid - tmpfs tmpfs rw\n"
      "68 67 254:0 /usr /usr ro,nosuid - ext4 /dev/vda rw\n"
      "69 67 254:0 /etc/ld.so.cache /etc/ld.so.cache ro - ext4 /dev/vda rw\n"
      "71 67 0:42 / /tmp rw - tmpfs tmpfs rw\n"
      "75 67 0:46 / /proc rw - proc proc rw\n";
  auto mounts = ParseExternalMounts(mountinfo, "254:0");
  ASSERT_TRUE(mounts.ok()) << mounts.status();
  ASSERT_EQ(mounts->size(), 2u);
  EXPECT_EQ((*mounts)[0].mountpoint, "/usr");
  EXPECT_EQ((*mounts)[1].host_path, "/etc/ld.so.cache");
  auto other = ParseExternalMounts("68 67 8:1 /data /data ro - xfs /dev/sdb rw\n", "254:0");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(Externals, ManifestRoundTrips) {
  Manifest m;
  m.channel_inode = 42;
  m.netns_inode = 7;
  m.mounts = {{"m0", "/usr", "/usr"}};
  m.files = {{"file[18:3]", "/dev/null"}};
  auto parsed = Manifest::Parse(m.Serialize());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->channel_inode, 42u);
  EXPECT_EQ(parsed->mounts[0].host_path, "/usr");
  EXPECT_EQ(parsed->files[0].key, "file[18:3]");
  EXPECT_FALSE(Manifest::Parse("channel 1\n").ok());
}

}  // namespace
}  // namespace flotilla::checkpoint
