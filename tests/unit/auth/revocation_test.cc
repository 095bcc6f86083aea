// The CA's revocation list: written and signed by `ca revoke`, read back
// only with the CA's signature, and re-read by a running server.
#include "auth/revocation.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "auth/pki.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_dir.h"

namespace flotilla::auth {
namespace {

using flotilla::testing::TempDir;
using ::testing::HasSubstr;

std::string Pem(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class RevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = tmp_.path() / "ca";
    ASSERT_TRUE(InitCa(ca_).ok());
    a_ = Node("a");
    b_ = Node("b");
  }
  TlsFiles Node(const std::string& id) {
    IssueRequest req;
    req.node_id = id;
    auto files = Issue(ca_, req, ca_ + "/" + id);
    EXPECT_TRUE(files.ok()) << files.status();
    return files.ok() ? *files : TlsFiles{};
  }

  TempDir tmp_;
  std::string ca_;
  TlsFiles a_, b_;
};

TEST_F(RevocationTest, ARevokedCertificateIsListedAndSignedByTheCa) {
  auto serial = RevokeCertificate(ca_, a_.cert);
  ASSERT_TRUE(serial.ok()) << serial.status();
  EXPECT_EQ(*serial, *CertificateSerial(Pem(a_.cert)));
  auto revoked = ReadRevokedSerials(CrlPath(ca_), ca_ + "/ca.crt");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->size(), 1u);
  EXPECT_EQ(revoked->count(*serial), 1u);
  // Again, and a second one: the list keeps every entry once.
  ASSERT_TRUE(RevokeCertificate(ca_, a_.cert).ok());
  ASSERT_TRUE(RevokeSerial(ca_, *CertificateSerial(Pem(b_.cert))).ok());
  revoked = ReadRevokedSerials(CrlPath(ca_), ca_ + "/ca.crt");
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->size(), 2u);

  // A standard CRL: OpenSSL's own tool reads it and checks its signature.
  if (access("/usr/bin/openssl", X_OK) == 0) {
    const std::string cmd = "/usr/bin/openssl crl -noout -text -CAfile " + ca_ + "/ca.crt -in " +
                            CrlPath(ca_) + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    EXPECT_EQ(pclose(p), 0) << out;
    EXPECT_THAT(out, HasSubstr("verify OK"));
    EXPECT_THAT(out, HasSubstr(*serial));
  }
}

TEST_F(RevocationTest, OnlyThisCasCertificatesAndHexSerialsAreAccepted) {
  TempDir other;
  const std::string other_ca = other.path() / "ca";
  ASSERT_TRUE(InitCa(other_ca).ok());
  IssueRequest req;
  req.node_id = "x";
  auto foreign = Issue(other_ca, req, other_ca + "/x");
  ASSERT_TRUE(foreign.ok());
  auto st = RevokeCertificate(ca_, foreign->cert);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.status().message(), HasSubstr("was not issued by the CA"));
  EXPECT_EQ(RevokeSerial(ca_, "not-hex").code(), absl::StatusCode::kInvalidArgument);
  // "0a:1b" as openssl prints serials with colons, and a 0x prefix.
  EXPECT_TRUE(RevokeSerial(ca_, "0a:1b").ok());
  EXPECT_TRUE(RevokeSerial(ca_, "0x0A1B").ok());
  auto revoked = ReadRevokedSerials(CrlPath(ca_), ca_ + "/ca.crt");
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(revoked->size(), 1u);
  EXPECT_EQ(revoked->count("0A1B"), 1u);
}

TEST_F(RevocationTest, AListSignedByAnotherCaIsRefused) {
  TempDir other;
  const std::string other_ca = other.path() / "ca";
  ASSERT_TRUE(InitCa(other_ca).ok());
  ASSERT_TRUE(RevokeSerial(other_ca, "1234").ok());
  auto revoked = ReadRevokedSerials(CrlPath(other_ca), ca_ + "/ca.crt");
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(revoked.status().message(), HasSubstr("not signed by this federation's CA"));
  EXPECT_FALSE(Revocations::Open(CrlPath(other_ca), ca_ + "/ca.crt").ok());
  // No list at all revokes nothing.
  auto none = Revocations::Open(CrlPath(ca_), ca_ + "/ca.crt");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ((*none)->size(), 0u);
  EXPECT_TRUE((*none)->Check(Pem(a_.cert), "a").ok());
}

TEST_F(RevocationTest, ARunningServerPicksUpANewListAndKeepsTheLastGoodOne) {
  auto list = Revocations::Open(CrlPath(ca_), ca_ + "/ca.crt");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_TRUE((*list)->Check(Pem(a_.cert), "node a").ok());
  ASSERT_TRUE(RevokeCertificate(ca_, a_.cert).ok());
  // Re-read at most once a second: within two, a is refused and b is not.
  absl::Status st;
  for (int i = 0; i < 40; ++i) {
    st = (*list)->Check(Pem(a_.cert), "node a");
    if (!st.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("node a"));
  EXPECT_THAT(st.message(), HasSubstr("is revoked"));
  EXPECT_TRUE((*list)->Check(Pem(b_.cert), "node b").ok());

  // An older list (a restored backup) does not un-revoke b, revoked after it.
  const std::string backup = tmp_.path() / "crl.backup";
  std::filesystem::copy_file(CrlPath(ca_), backup);
  ASSERT_TRUE(RevokeCertificate(ca_, b_.cert).ok());
  for (int i = 0; i < 40 && (*list)->Check(Pem(b_.cert), "node b").ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ((*list)->size(), 2u);
  std::filesystem::copy_file(backup, CrlPath(ca_), std::filesystem::copy_options::overwrite_existing);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ((*list)->Check(Pem(b_.cert), "node b").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*list)->size(), 2u);
  // Nor does a list that disappears.
  std::filesystem::remove(CrlPath(ca_));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ((*list)->Check(Pem(a_.cert), "node a").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*list)->size(), 2u);

  // A corrupted list does not un-revoke a.
  {
    std::ofstream out(CrlPath(ca_), std::ios::trunc);
    out << "garbage\n";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ((*list)->Check(Pem(a_.cert), "node a").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ((*list)->size(), 2u);
  // Garbage as a peer certificate is not taken for an unrevoked one.
  EXPECT_EQ((*list)->Check("not a certificate", "x").code(),
            absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace flotilla::auth
