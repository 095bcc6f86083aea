// The CA, certificates, users file and bearer-token checks, on real files.
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "auth/caller.h"
#include "auth/migration_token.h"
#include "auth/pki.h"
#include "auth/tls.h"
#include "auth/users.h"
#include "gtest/gtest.h"
#include "support/temp_dir.h"

namespace flotilla::auth {
namespace {

using flotilla::testing::TempDir;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(PkiTest, IssuesNodeCertificatesThatNameTheNodeAndItsTrust) {
  TempDir tmp;
  const std::string ca = tmp.path() / "ca";
  ASSERT_TRUE(InitCa(ca).ok());
  EXPECT_EQ(ModeOf(ca + "/ca.key"), 0600u);
  EXPECT_EQ(InitCa(ca).code(), absl::StatusCode::kAlreadyExists);

  IssueRequest req;
  req.node_id = "eu-1";
  req.trust_level = 4;
  auto files = Issue(ca, req, ca + "/eu-1");
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(ModeOf(files->key), 0600u);
  auto pem = ReadSmallFile(files->cert);
  ASSERT_TRUE(pem.ok());
  auto peer = ParsePeerCertificate(*pem);
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(peer->name, "eu-1.node.flotilla");
  EXPECT_EQ(peer->node_id, "eu-1");
  EXPECT_EQ(peer->trust_level, 4);

  IssueRequest manager;
  manager.role = Role::kManager;
  auto m = Issue(ca, manager, ca + "/manager");
  ASSERT_TRUE(m.ok());
  auto mp = ParsePeerCertificate(*ReadSmallFile(m->cert));
  ASSERT_TRUE(mp.ok());
  EXPECT_EQ(mp->name, kManagerName);
  EXPECT_FALSE(mp->node_id.has_value());
}

TEST(PkiTest, RefusesBadNodeIdsAndTrustLevels) {
  TempDir tmp;
  const std::string ca = tmp.path() / "ca";
  ASSERT_TRUE(InitCa(ca).ok());
  for (const std::string& bad : std::vector<std::string>{"", "-x", "a/b", "a b", std::string(64, 'a'),
                                                      "x,DNS:manager.flotilla"}) {
    IssueRequest req;
    req.node_id = bad;
    EXPECT_EQ(Issue(ca, req, ca + "/bad").status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  IssueRequest req;
  req.node_id = "n";
  req.trust_level = 11;
  EXPECT_EQ(Issue(ca, req, ca + "/n").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NodeIdFromName("manager.flotilla"), std::nullopt);
  EXPECT_EQ(NodeIdFromName(".node.flotilla"), std::nullopt);
  EXPECT_EQ(NodeIdFromName("a.node.flotilla"), "a");
}

TEST(PkiTest, GarbageIsNotACertificate) {
  EXPECT_FALSE(ParsePeerCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").ok());
  EXPECT_FALSE(ParsePeerCertificate("").ok());
}

TEST(TransportTest, ASecureTransportNeedsAllThreeFiles) {
  Transport t;
  absl::Status st = ValidateTransport(t, "tls.");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("tls.ca: missing"), absl::string_view::npos) << st;
  t.insecure = true;
  EXPECT_TRUE(ValidateTransport(t, "tls.").ok());
}

TEST(UsersTest, TokensAuthenticateTheirUserOnlyAndAreStoredHashed) {
  TempDir tmp;
  const std::string path = tmp.path() / "users.json";
  auto alice = AddUser(path, {"alice", "acme", UserRole::kUser});
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->rfind("flt_", 0), 0u);
  EXPECT_GE(alice->size(), 40u);
  auto admin = AddUser(path, {"root", "default", UserRole::kAdmin});
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(AddUser(path, {"alice", "x", UserRole::kUser}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ModeOf(path), 0600u);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find(*alice), std::string::npos) << "the file must not hold tokens";

  auto dir = UserDirectory::Open(path);
  ASSERT_TRUE(dir.ok());
  auto who = (*dir)->Authenticate(*alice);
  ASSERT_TRUE(who.ok());
  EXPECT_EQ(who->name, "alice");
  EXPECT_EQ(who->tenant, "acme");
  EXPECT_EQ(who->role, UserRole::kUser);
  EXPECT_EQ((*dir)->Authenticate("flt_nope").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*dir)->Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(UsersTest, ARotatedOrRemovedTokenStopsWorkingWithoutARestart) {
  TempDir tmp;
  const std::string path = tmp.path() / "users.json";
  auto old = AddUser(path, {"alice", "acme", UserRole::kUser});
  ASSERT_TRUE(old.ok());
  auto dir = UserDirectory::Open(path);
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE((*dir)->Authenticate(*old).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // reload at most once a second
  auto fresh = RotateToken(path, "alice");
  ASSERT_TRUE(fresh.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_FALSE((*dir)->Authenticate(*old).ok());
  EXPECT_TRUE((*dir)->Authenticate(*fresh).ok());
  ASSERT_TRUE(RemoveUser(path, "alice").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_FALSE((*dir)->Authenticate(*fresh).ok());
}

TEST(UsersTest, BadNamesAndBrokenFilesGetClearErrors) {
  TempDir tmp;
  const std::string path = tmp.path() / "users.json";
  EXPECT_EQ(AddUser(path, {"Alice", "acme", UserRole::kUser}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AddUser(path, {"alice", "a~b", UserRole::kUser}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseRole("root").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UserDirectory::Open(path).status().code(), absl::StatusCode::kNotFound);
  std::ofstream(path) << "{\"users\": [{\"name\": \"x\"}]}";
  EXPECT_EQ(UserDirectory::Open(path).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GateTest, BearerHeadersAreParsedStrictly) {
  TempDir tmp;
  const std::string path = tmp.path() / "users.json";
  auto token = AddUser(path, {"alice", "acme", UserRole::kUser});
  ASSERT_TRUE(token.ok());
  auto dir = UserDirectory::Open(path);
  ASSERT_TRUE(dir.ok());
  Gate gate{false, dir->get()};
  auto c = gate.FromBearer("Bearer " + *token);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->user.tenant, "acme");
  EXPECT_FALSE(c->is_admin());
  EXPECT_TRUE(c->CanAccessTenant("acme"));
  EXPECT_FALSE(c->CanAccessTenant("beta"));
  EXPECT_EQ(gate.FromBearer("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gate.FromBearer(*token).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gate.FromBearer("Basic " + *token).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(gate.FromBearer("Bearer " + std::string(300, 'x')).status().code(),
            absl::StatusCode::kUnauthenticated);
  Gate dev{true, nullptr};
  auto d = dev.FromBearer("");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->is_admin());
}

v1::MigrationClaims Claims(int64_t expires_ms) {
  v1::MigrationClaims c;
  c.set_migration_id("mig-1");
  c.set_execution_id("ex-1");
  c.set_attempt(2);
  c.set_source_node_id("a");
  c.set_target_node_id("b");
  c.set_expires_unix_ms(expires_ms);
  return c;
}

TEST(MigrationTokenTest, OnlyTheTargetsKeyVerifiesAnUnexpiredUnalteredToken) {
  const std::string key = NewMigrationKey();
  ASSERT_EQ(key.size(), kMigrationKeyBytes);
  const std::string token = MintMigrationToken(key, Claims(10'000));
  auto claims = VerifyMigrationToken(key, token, 5'000);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->execution_id(), "ex-1");
  EXPECT_EQ(claims->target_node_id(), "b");

  EXPECT_EQ(VerifyMigrationToken(NewMigrationKey(), token, 5'000).status().code(),
            absl::StatusCode::kPermissionDenied);  // another node's key
  EXPECT_EQ(VerifyMigrationToken(key, token, 10'000).status().code(),
            absl::StatusCode::kPermissionDenied);  // expired
  EXPECT_EQ(VerifyMigrationToken(key, "", 5'000).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyMigrationToken("", token, 5'000).status().code(),
            absl::StatusCode::kPermissionDenied);  // not registered yet
  // Widening the claims (another execution) breaks the signature.
  v1::SignedMigrationToken t;
  ASSERT_TRUE(t.ParseFromString(token));
  v1::MigrationClaims wider = Claims(10'000);
  wider.set_execution_id("ex-victim");
  t.set_claims(wider.SerializeAsString());
  EXPECT_EQ(VerifyMigrationToken(key, t.SerializeAsString(), 5'000).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(MigrationTokenTest, ATokenIsGoodForOneStream) {
  UsedTokens used;
  EXPECT_TRUE(used.Use("mig-1", 10'000, 1'000));
  EXPECT_FALSE(used.Use("mig-1", 10'000, 2'000));
  EXPECT_TRUE(used.Use("mig-2", 10'000, 2'000));
  // Forgotten once expired: the token is refused as expired by then anyway.
  EXPECT_TRUE(used.Use("mig-1", 30'000, 20'000));
}

}  // namespace
}  // namespace flotilla::auth
