// The manager's disk full: a single manager (SQLite) whose database lives
// on a small tmpfs that the test fills up.
//
// While the disk is full, submits are refused with an error that says so
// and nothing is acknowledged that was not persisted: every execution the
// manager acknowledged is still there after it is killed with SIGKILL and
// restarted. Once space is freed, it accepts and runs work again without a
// restart.
//
// Needs root (mount).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

using std::chrono::seconds;

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "mounting a small file system needs root";
    mnt_ = h_.dir() + "/db-fs";
    std::filesystem::create_directories(mnt_);
    if (mount("tmpfs", mnt_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0700") != 0) {
      GTEST_SKIP() << "mount tmpfs on " << mnt_ << ": " << strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    h_.KillManager();
    if (mounted_ && umount2(mnt_.c_str(), 0) != 0) umount2(mnt_.c_str(), MNT_DETACH);
  }

  // Fills the file system: writes `filler` until ENOSPC.
  void Fill() {
    std::ofstream out(Filler(), std::ios::binary);
    const std::string block(4096, 'x');
    while (out.write(block.data(), block.size()) && out.flush()) {
    }
  }
  std::string Filler() const { return mnt_ + "/filler"; }

  FederationHarness h_;
  std::string mnt_;
  bool mounted_ = false;
};

TEST_F(DiskFullTest, SubmitsAreRefusedWhileFullAndAcceptedOnceSpaceIsFreed) {
  h_.manager_db = mnt_ + "/manager.db";
  h_.StartManager(/*lease_timeout_ms=*/1500, "127.0.0.1:0");
  const std::string address = h_.manager_address();
  h_.StartAgent({.id = "a1", .cpu_millis = 2000});
  ASSERT_TRUE(h_.WaitOnline(1)) << h_.ReadLog("manager.log");

  std::vector<std::string> acknowledged;
  int serial = 0;
  auto submit = [&](grpc::Status* st) {
    v1::SubmitResponse resp;
    *st = h_.Submit(FederationHarness::Shell(absl::StrCat("echo task-", serial++)), &resp);
    if (st->ok()) acknowledged.push_back(resp.execution().id());
    return st->ok();
  };
  grpc::Status st;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(submit(&st)) << st.error_message();
  ASSERT_EQ(h_.WaitAllDone(acknowledged, seconds(30)).size(), acknowledged.size());

  // Full: submits are refused (SQLite may still fit a few in the space its
  // files already hold; those are persisted and count as acknowledged).
  Fill();
  int accepted_while_full = 0;
  bool refused = false;
  for (int i = 0; i < 2000 && !refused; ++i) {
    if (submit(&st)) {
      ++accepted_while_full;
    } else {
      refused = true;
    }
  }
  ASSERT_TRUE(refused) << "the manager accepted 2000 submits on a full disk";
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("disk is full"), std::string::npos) << st.error_message();
  const std::string refusal = st.error_message();
  // Refused again, not hung, and the manager lives.
  EXPECT_FALSE(submit(&st));
  EXPECT_FALSE(h_.ManagerExited()) << h_.ReadLog("manager.log");

  // Space freed: it accepts and runs work again, without a restart.
  std::filesystem::remove(Filler());
  bool accepted = FederationHarness::WaitUntil(seconds(10), [&] { return submit(&st); });
  ASSERT_TRUE(accepted) << st.error_message() << "\n" << h_.ReadLog("manager.log");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(submit(&st)) << st.error_message();
  auto done = h_.WaitAllDone(acknowledged, seconds(60));
  ASSERT_EQ(done.size(), acknowledged.size()) << h_.ReadLog("manager.log");
  for (const auto& [id, e] : done) {
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id << ": " << e.error();
  }

  // Everything acknowledged was persisted: killed and restarted on the same
  // database, the manager has every one, finished.
  h_.KillManager();
  h_.StartManager(/*lease_timeout_ms=*/1500, address);
  for (const std::string& id : acknowledged) {
    v1::Execution e;
    ASSERT_TRUE(h_.Get(id, &e).ok()) << id << " lost after the restart";
    EXPECT_EQ(e.state(), v1::EXECUTION_SUCCEEDED) << id;
  }
  std::printf("[disk full] %zu executions acknowledged (%d while the disk was full, before the "
              "first refusal), 0 lost; refused with: %s\n",
              acknowledged.size(), accepted_while_full, refusal.c_str());
  std::fflush(stdout);
}

}  // namespace
}  // namespace flotilla::testing
