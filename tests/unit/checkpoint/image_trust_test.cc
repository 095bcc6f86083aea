// Checkpoint images are hostile input: the tar check, the manifest policy,
// the image MAC and the retention sweep, with plain values and temporary
// directories (no CRIU, no root).
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "checkpoint/externals.h"
#include "checkpoint/image_auth.h"
#include "checkpoint/image_sweep.h"
#include "checkpoint/tar_check.h"
#include "gtest/gtest.h"
#include "support/tar_builder.h"
#include "support/temp_dir.h"

namespace flotilla::checkpoint {
namespace {

using flotilla::testing::TarBuilder;
using flotilla::testing::TempDir;

absl::Status Check(const std::string& archive) {
  return CheckTarArchive(archive, RootSkeletonTarPolicy());
}

void ExpectRefused(const std::string& archive, const std::string& why) {
  absl::Status st = Check(archive);
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find(why), std::string::npos) << st.message();
}

TEST(TarCheck, AcceptsASkeletonLikeTheOneSaveRootWrites) {
  std::string archive =
      TarBuilder()
          .Dir("./")
          .Dir("./etc/")
          .File("./etc/passwd", "root:x:0:0::/:/bin/sh\n")
          .Symlink("./bin", "usr/bin")
          .Dir("./dev/")
          .Add({.name = "./dev/null", .type = '3', .mode = 0666, .dev_major = 1, .dev_minor = 3})
          .Add({.name = "./dev/tty", .type = '3', .mode = 0666, .dev_major = 5, .dev_minor = 0})
          .Symlink("./dev/fd", "/proc/self/fd")
          .Symlink("./dev/ptmx", "pts/ptmx")
          .Add({.name = "./etc/hosts2", .type = '1', .link = "./etc/passwd"})
          .Dir("./tmp/")
          .Finish();
  EXPECT_TRUE(Check(archive).ok()) << Check(archive);
}

TEST(TarCheck, AcceptsWhatRealTarWrites) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "root/etc");
  std::ofstream(dir.File("root/etc/passwd")) << "root:x:0:0::/:/bin/sh\n";
  std::filesystem::create_symlink("usr/bin", dir.path() / "root/bin");
  const std::string tar = dir.File("root.tar");
  ASSERT_EQ(0, system(absl::StrCat("tar --numeric-owner --xattrs -cf ", tar, " -C ",
                                   dir.File("root"), " .")
                          .c_str()));
  std::ifstream in(tar, std::ios::binary);
  std::string archive((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(Check(archive).ok()) << Check(archive);
}

TEST(TarCheck, RefusesPathsOutsideTheRoot) {
  ExpectRefused(TarBuilder().File("/etc/cron.d/x").Finish(), "absolute path");
  ExpectRefused(TarBuilder().File("../escape").Finish(), "`..`");
  ExpectRefused(TarBuilder().File("a/../../escape").Finish(), "`..`");
  ExpectRefused(TarBuilder().Add({.name = "x", .prefix = "/etc"}).Finish(), "absolute path");
  ExpectRefused(TarBuilder().Add({.name = "x", .prefix = ".."}).Finish(), "`..`");
  ExpectRefused(TarBuilder().Add({.name = "././@LongLink", .type = 'L', .data = "../../x"}).File("ok")
                    .Finish(),
                "`..`");
  ExpectRefused(TarBuilder().Pax("path", "/root/.ssh/authorized_keys").File("ok").Finish(),
                "absolute path");
}

TEST(TarCheck, RefusesLinksThatLeadOut) {
  ExpectRefused(TarBuilder().Symlink("etc", "../../..").Finish(), "leaves the root");
  ExpectRefused(TarBuilder().Symlink("a/b", "../../x").Finish(), "leaves the root");
  ExpectRefused(TarBuilder().Pax("linkpath", "../../../etc").Symlink("l", "ok").Finish(),
                "leaves the root");
  // Writing through a link the archive planted itself.
  ExpectRefused(TarBuilder().Symlink("etc", "/etc").File("etc/cron.d/x").Finish(),
                "below the symlink");
  ExpectRefused(TarBuilder().Symlink("d", "sub").Dir("d").Finish(), "replaces a symlink");
  ExpectRefused(TarBuilder().Add({.name = "shadow", .type = '1', .link = "/etc/shadow"}).Finish(),
                "hard link");
  ExpectRefused(TarBuilder().Add({.name = "h", .type = '1', .link = "later"}).File("later").Finish(),
                "hard link");
}

TEST(TarCheck, RefusesSpecialFilesAndPrivileges) {
  ExpectRefused(TarBuilder().Add({.name = "dev/sda", .type = '4', .dev_major = 8}).Finish(),
                "block device");
  ExpectRefused(TarBuilder().Add({.name = "dev/mem", .type = '3', .dev_major = 1, .dev_minor = 1})
                    .Finish(),
                "character device 1:1");
  // The right numbers at the wrong path.
  ExpectRefused(TarBuilder().Add({.name = "work/null", .type = '3', .dev_major = 1, .dev_minor = 3})
                    .Finish(),
                "character device 1:3");
  ExpectRefused(TarBuilder().Add({.name = "fifo", .type = '6'}).Finish(), "fifo");
  ExpectRefused(TarBuilder().Add({.name = "su", .data = "x", .mode = 04755}).Finish(), "setuid");
  ExpectRefused(TarBuilder().Add({.name = "v", .type = 'V'}).Finish(), "entry type");
  ExpectRefused(TarBuilder().Pax("SCHILY.xattr.security.capability", "x").File("f").Finish(),
                "security.capability");
  ExpectRefused(TarBuilder().Pax("GNU.sparse.map", "0,1").File("f").Finish(), "sparse");
}

TEST(TarCheck, RefusesMalformedArchives) {
  std::string good = TarBuilder().File("f", "hello").Finish();
  std::string bad_sum = good;
  bad_sum[0] = 'g';
  ExpectRefused(bad_sum, "checksum");
  ExpectRefused(TarBuilder().File("f", "hello").Unterminated(), "truncated");
  ExpectRefused(good.substr(0, 512), "past the end");
  ExpectRefused("", "truncated");
  ExpectRefused(TarBuilder().Pax("size", "999999999").File("f").Finish(), "past the end");
}

Manifest GoodManifest() {
  Manifest m;
  m.channel_inode = 1;
  m.netns_inode = 2;
  m.mounts = {{"m0", "/usr", "/usr"},
              {"m1", "/etc/ld.so.cache", "/etc/ld.so.cache"},
              {"m2", "/usr/lib/x", "/usr/lib/x"}};
  m.files = {{"file[1a:2b]", "/dev/null"}};
  return m;
}

void ExpectManifestRefused(const Manifest& m, const std::string& field) {
  absl::Status st = ValidateManifest(m, DefaultManifestPolicy());
  EXPECT_TRUE(absl::IsInvalidArgument(st)) << st;
  EXPECT_NE(st.message().find(field), std::string::npos) << st.message();
}

TEST(ManifestPolicyTest, AcceptsWhatASandboxBinds) {
  EXPECT_TRUE(ValidateManifest(GoodManifest(), DefaultManifestPolicy()).ok());
  auto parsed = Manifest::Parse(GoodManifest().Serialize());
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(ValidateManifest(*parsed, DefaultManifestPolicy()).ok());
}

TEST(ManifestPolicyTest, RefusesHostPathsTheAgentDoesNotBind) {
  for (const char* host : {"/", "/etc", "/etc/shadow", "/root", "/usrx", "/usr/../etc",
                           "/var/lib/flotilla", "usr", "/usr/lib/x]:/etc"}) {
    Manifest m = GoodManifest();
    m.mounts[0].host_path = host;
    ExpectManifestRefused(m, absl::StrCat("mount host path `", host));
  }
}

TEST(ManifestPolicyTest, RefusesMountPointsOutsideTheSandboxRoot) {
  for (const char* at : {"/", "../usr", "usr", "/usr/../..", "/proc/sys", "/dev/null", "/sys",
                         "/a b", "/a\nmount m9 /x /"}) {
    Manifest m = GoodManifest();
    m.mounts[0].mountpoint = at;
    ExpectManifestRefused(m, "mount point");
  }
}

TEST(ManifestPolicyTest, RefusesOtherFieldsOutOfRange) {
  Manifest m = GoodManifest();
  m.files[0].path = "/etc/shadow";
  ExpectManifestRefused(m, "file path `/etc/shadow`");
  m = GoodManifest();
  m.files[0].key = "file[1:2]:/x";
  ExpectManifestRefused(m, "file key");
  m = GoodManifest();
  m.mounts[1].key = "m0";
  ExpectManifestRefused(m, "mount key `m0`");
  m = GoodManifest();
  m.mounts[0].key = "mnt[/]";
  ExpectManifestRefused(m, "mount key");
  m = GoodManifest();
  m.root_bytes = 1ull << 40;
  ExpectManifestRefused(m, "root_bytes");
}

TEST(ManifestPolicyTest, ExtraBindSourcesAreAllowed) {
  Manifest m = GoodManifest();
  m.mounts[0] = {"m0", "/flotilla", "/var/lib/flotilla/guest"};
  ManifestPolicy policy = DefaultManifestPolicy();
  EXPECT_FALSE(ValidateManifest(m, policy).ok());
  policy.bind_sources.push_back("/var/lib/flotilla/guest");
  EXPECT_TRUE(ValidateManifest(m, policy).ok());
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

TEST(ImageAuth, SignedImageVerifiesAndAnyChangeIsRefused) {
  TempDir dir;
  const std::string d = dir.path().string();
  WriteFile(d + "/pages-1.img", std::string(100000, 'p'));
  WriteFile(d + "/flotilla-manifest", "flotilla-checkpoint 1\n");
  std::filesystem::create_directory(d + "/sub");
  WriteFile(d + "/sub/x", "x");
  ASSERT_TRUE(SignImage(d, "key-1").ok());
  EXPECT_TRUE(VerifyImage(d, "key-1").ok()) << VerifyImage(d, "key-1");

  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "key-2")));
  EXPECT_TRUE(absl::IsInvalidArgument(SignImage(d, "")));

  WriteFile(d + "/flotilla-manifest", "flotilla-checkpoint 1\nmount m0 / /\n");  // stale MAC
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "key-1")));
  ASSERT_TRUE(SignImage(d, "key-1").ok());
  EXPECT_TRUE(VerifyImage(d, "key-1").ok());

  WriteFile(d + "/extra", "");  // a file added after signing
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "key-1")));
  std::filesystem::remove(d + "/extra");
  EXPECT_TRUE(VerifyImage(d, "key-1").ok());

  // Moving bytes between a name and its content changes the MAC too.
  std::filesystem::rename(d + "/sub/x", d + "/sub/xx");
  WriteFile(d + "/sub/xx", "");
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "key-1")));
}

TEST(ImageAuth, MissingMalformedOrLinkedIsRefused) {
  TempDir dir;
  const std::string d = dir.path().string();
  WriteFile(d + "/a", "a");
  absl::Status missing = VerifyImage(d, "k");
  EXPECT_TRUE(absl::IsUnauthenticated(missing));
  EXPECT_NE(missing.message().find("no MAC"), std::string::npos) << missing;
  WriteFile(absl::StrCat(d, "/", kImageMacFile), "flotilla-image-mac v1 hmac-sha256 zz\n");
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "k")));
  ASSERT_TRUE(SignImage(d, "k").ok());
  std::filesystem::create_symlink("/etc/passwd", d + "/link");
  EXPECT_TRUE(absl::IsUnauthenticated(VerifyImage(d, "k")));
  EXPECT_FALSE(SignImage(d, "k").ok());
}

TEST(ImageSweep, RemovesOnlyWhatIsOlderThanTheRetention) {
  TempDir dir;
  const std::string d = dir.path().string();
  std::filesystem::create_directories(d + "/old.in");
  WriteFile(d + "/old.in/pages.img", "x");
  WriteFile(d + "/old.failed.log", "x");
  std::filesystem::create_directories(d + "/new.out");
  WriteFile(d + "/new.out/pages.img", "x");
  const auto now = std::chrono::system_clock::now();
  const time_t old_time = std::chrono::system_clock::to_time_t(now - std::chrono::hours(2));
  struct utimbuf old = {old_time, old_time};
  for (const char* p : {"/old.in/pages.img", "/old.in", "/old.failed.log"}) {
    ASSERT_EQ(0, utime((d + p).c_str(), &old));
  }
  auto removed = SweepImages(d, now, std::chrono::minutes(30));
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 2);
  EXPECT_FALSE(std::filesystem::exists(d + "/old.in"));
  EXPECT_FALSE(std::filesystem::exists(d + "/old.failed.log"));
  EXPECT_TRUE(std::filesystem::exists(d + "/new.out/pages.img"));
  EXPECT_EQ(*SweepImages(d + "/missing", now, std::chrono::minutes(30)), 0);
}

}  // namespace
}  // namespace flotilla::checkpoint
