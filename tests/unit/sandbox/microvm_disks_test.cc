// The micro-VM's host-side disk plumbing: scratch images (mke2fs under a
// deadline), their sparse per-VM copies, and the drives on QEMU's command
// line, jailed and not. No QEMU runs here (tests/vm boots real VMs).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_join.h"
#include "sandbox/microvm/disks.h"
#include "sandbox/microvm/micro_vm.h"

namespace flotilla::sandbox::microvm {
namespace {

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

class DisksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fdisk.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

bool HaveMke2fs() {
  return access("/sbin/mke2fs", X_OK) == 0 || access("/usr/sbin/mke2fs", X_OK) == 0;
}

TEST_F(DisksTest, ScratchImageIsASparseEmptyExt4) {
  if (!HaveMke2fs()) GTEST_SKIP() << "no mke2fs (install e2fsprogs)";
  const std::string image = dir_ + "/scratch.img";
  ASSERT_TRUE(MakeScratchImage(image, 64ll << 20, Clock::now() + std::chrono::seconds(20)).ok());
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 64ll << 20);
  EXPECT_LT(st.st_blocks * 512, 4ll << 20) << "not sparse";
  // The ext2/3/4 superblock's magic, 0xEF53 at byte 1080.
  std::ifstream in(image, std::ios::binary);
  in.seekg(1080);
  unsigned char magic[2] = {};
  in.read(reinterpret_cast<char*>(magic), 2);
  EXPECT_EQ(magic[0], 0x53);
  EXPECT_EQ(magic[1], 0xEF);
  // Small sizes are raised to the minimum; an existing file is not touched.
  EXPECT_FALSE(MakeScratchImage(image, 1, Clock::now() + std::chrono::seconds(20)).ok());
  const std::string tiny = dir_ + "/tiny.img";
  ASSERT_TRUE(MakeScratchImage(tiny, 1, Clock::now() + std::chrono::seconds(20)).ok());
  ASSERT_EQ(stat(tiny.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, kMinScratchBytes);
}

TEST_F(DisksTest, AHungMke2fsIsKilledAtTheDeadlineAndLeavesNothing) {
  const std::string tool = dir_ + "/slow-mke2fs";
  {
    std::ofstream out(tool);
    out << "#!/bin/sh\nexec sleep 30\n";
  }
  chmod(tool.c_str(), 0755);
  const std::string image = dir_ + "/scratch.img";
  const auto started = Clock::now();
  absl::Status st =
      MakeScratchImage(image, 16ll << 20, Clock::now() + std::chrono::milliseconds(300), tool);
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(5));
  EXPECT_FALSE(std::filesystem::exists(image));
}

TEST_F(DisksTest, AFailingMke2fsIsReportedWithWhatItSaid) {
  const std::string tool = dir_ + "/bad-mke2fs";
  {
    std::ofstream out(tool);
    out << "#!/bin/sh\necho 'no space left, says the fake' >&2\nexit 3\n";
  }
  chmod(tool.c_str(), 0755);
  const std::string image = dir_ + "/scratch.img";
  absl::Status st =
      MakeScratchImage(image, 16ll << 20, Clock::now() + std::chrono::seconds(5), tool);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.message()), HasSubstr("exited 3"));
  EXPECT_THAT(std::string(st.message()), HasSubstr("says the fake"));
  EXPECT_FALSE(std::filesystem::exists(image));
  st = MakeScratchImage(image, 16ll << 20, Clock::now() + std::chrono::seconds(5),
                        "no-such-mke2fs-anywhere");
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_THAT(std::string(st.message()), HasSubstr("e2fsprogs"));
}

TEST_F(DisksTest, CopySparseKeepsDataAndHoles) {
  const std::string from = dir_ + "/from", to = dir_ + "/to";
  {
    int fd = open(from.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 32 << 20), 0);
    ASSERT_EQ(pwrite(fd, "head", 4, 0), 4);
    ASSERT_EQ(pwrite(fd, "middle", 6, 16 << 20), 6);
    ASSERT_EQ(pwrite(fd, "tail", 4, (32 << 20) - 4), 4);
    close(fd);
  }
  ASSERT_TRUE(CopySparse(from, to).ok());
  struct stat st;
  ASSERT_EQ(stat(to.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 32 << 20);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the holes were filled";
  std::ifstream in(to, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(all.size(), 32u << 20);
  EXPECT_EQ(all.substr(0, 4), "head");
  EXPECT_EQ(all.substr(16 << 20, 6), "middle");
  EXPECT_EQ(all.substr((32 << 20) - 4), "tail");
  EXPECT_EQ(all[8 << 20], '\0');
  // Never over an existing file (a VM's disk is always new).
  EXPECT_FALSE(CopySparse(from, to).ok());
  EXPECT_FALSE(CopySparse(dir_ + "/missing", dir_ + "/x").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/x"));
}

TEST(MicroVmDrives, TheRootImageIsReadOnlyAndTheScratchDiskLivesInTheRunDir) {
  MicroVmConfig c;
  c.kernel = "/k/vmlinux";
  c.initrd = "/k/initrd";
  c.run_dir = "/run/vm-1";
  c.tsc_khz = 1000000;
  c.rootfs = "/images/root,1.img";
  c.scratch_image = "/images/scratch-64m.img";
  const std::string plain = absl::StrJoin(MicroVm::CommandLine(c), " ");
  EXPECT_THAT(plain,
              HasSubstr("-drive if=none,id=root,format=raw,readonly=on,file=/images/root,,1.img "
                        "-device virtio-blk-device,drive=root,serial=flotilla-root"));
  EXPECT_THAT(plain, HasSubstr("-drive if=none,id=scratch,format=raw,cache=unsafe,"
                               "file=/run/vm-1/scratch.img -device "
                               "virtio-blk-device,drive=scratch,serial=flotilla-scratch"));
  // Jailed: the paths QEMU sees, inside the jail's root.
  c.jail.emplace();
  const std::string jailed = absl::StrJoin(MicroVm::CommandLine(c), " ");
  EXPECT_THAT(jailed, HasSubstr("readonly=on,file=/vm/rootfs "));
  EXPECT_THAT(jailed, HasSubstr("file=/vm/run/scratch.img "));
  // No disks configured: no drives.
  c.rootfs.clear();
  c.scratch_image.clear();
  EXPECT_THAT(absl::StrJoin(MicroVm::CommandLine(c), " "), ::testing::Not(HasSubstr("-drive")));
}

}  // namespace
}  // namespace flotilla::sandbox::microvm
