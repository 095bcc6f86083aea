// Control-plane probes: each plays an untrusted caller against a real
// manager and real agents (mutual TLS, user tokens, tenants) and asserts the
// verdict. docs/security.md lists what each boundary enforces.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "flotilla/v1/federation.grpc.pb.h"
#include "auth/revocation.h"
#include "support/federation_harness.h"
#include "support/manager_http.h"

namespace flotilla::testing {
namespace {

using std::chrono::seconds;

// A TCP connection to "127.0.0.1:port" whose reads give up after
// `timeout_s`; -1 if it cannot connect.
int ConnectTcp(const std::string& address, int timeout_s) {
  const auto colon = address.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  if (inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::unique_ptr<grpc::ClientContext> Ctx(int s = 5) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(s));
  return ctx;
}

class ControlPlaneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.StartManager();
    h_.StartAgent({.id = "n1", .trust = 3});
    ASSERT_TRUE(h_.WaitOnline(1)) << h_.ReadLog("manager.log");
    alice_ = h_.AddUser("alice", "acme");
    bob_ = h_.AddUser("bob", "beta");
    // The manager reads a changed users file at most once a second.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  }

  std::unique_ptr<v1::ApiService::Stub> Api(const std::string& token) {
    return v1::ApiService::NewStub(h_.UserChannel(token));
  }
  std::unique_ptr<v1::FederationService::Stub> FederationAs(const auth::TlsFiles& files) {
    return v1::FederationService::NewStub(
        h_.PeerChannel(h_.manager_address(), files, auth::kManagerName));
  }
  std::string AgentAddress(const std::string& id) {
    v1::ListNodesResponse nodes;
    EXPECT_TRUE(h_.ListNodes(&nodes).ok());
    for (const auto& n : nodes.nodes()) {
      if (n.id() == id) return n.address();
    }
    return "";
  }
  grpc::Status SubmitAs(const std::string& token, v1::ExecutionRequest r, v1::SubmitResponse* out) {
    v1::SubmitRequest req;
    *req.mutable_request() = std::move(r);
    return Api(token)->Submit(Ctx().get(), req, out);
  }
  grpc::Status GetAs(const std::string& token, const std::string& id, v1::Execution* out) {
    v1::GetRequest req;
    req.set_execution_id(id);
    return Api(token)->Get(Ctx().get(), req, out);
  }
  httplib::Client Http() { return ManagerHttp(h_); }

  FederationHarness h_;
  std::string alice_;
  std::string bob_;
};

// --- Transport and identity ---

TEST_F(ControlPlaneTest, PlaintextGrpcToTheManagerIsRefused) {
  auto stub = v1::ApiService::NewStub(
      grpc::CreateChannel(h_.manager_address(), grpc::InsecureChannelCredentials()));
  v1::ListNodesResponse resp;
  grpc::Status st = stub->ListNodes(Ctx(3).get(), v1::ListNodesRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(ControlPlaneTest, ACallWithoutATokenIsUnauthenticated) {
  v1::SubmitResponse resp;
  grpc::Status st = SubmitAs("", FederationHarness::Command({"true"}), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st.error_message().find("no credentials"), std::string::npos) << st.error_message();
}

TEST_F(ControlPlaneTest, AnUnknownTokenIsUnauthenticated) {
  v1::ListNodesResponse resp;
  grpc::Status st = Api("flt_forged")->ListNodes(Ctx().get(), v1::ListNodesRequest(), &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st.error_message().find("not known"), std::string::npos) << st.error_message();
}

TEST_F(ControlPlaneTest, AServerCertificateFromAnotherCaIsNotTrusted) {
  // A second CA, as an attacker posing as the manager would hold.
  const std::string other = h_.dir() + "/other-ca";
  ASSERT_TRUE(auth::InitCa(other).ok());
  auth::Transport t;
  t.files.ca_cert = other + "/ca.crt";
  auto creds = auth::ChannelCredentials(t, auth::kManagerName, h_.token());
  ASSERT_TRUE(creds.ok());
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(auth::kManagerName);
  auto stub = v1::ApiService::NewStub(
      grpc::CreateCustomChannel(h_.manager_address(), creds->credentials, args));
  v1::ListNodesResponse resp;
  EXPECT_EQ(stub->ListNodes(Ctx(3).get(), v1::ListNodesRequest(), &resp).error_code(),
            grpc::StatusCode::UNAVAILABLE);
}

// --- Forged federation calls ---

TEST_F(ControlPlaneTest, AUserMayNotSendResults) {
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(FederationHarness::Command({"sleep", "30"}), &sub).ok());
  auto stub = v1::FederationService::NewStub(h_.UserChannel(h_.token()));
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  auto* r = req.add_results();
  r->set_execution_id(sub.execution().id());
  r->set_attempt(1);
  r->set_node_id("n1");
  r->set_stdout("forged output");
  v1::SendResultsResponse resp;
  grpc::Status st = stub->SendResults(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  v1::Execution e;
  ASSERT_TRUE(h_.Get(sub.execution().id(), &e).ok());
  EXPECT_NE(e.result().stdout(), "forged output");
}

TEST_F(ControlPlaneTest, ANodeMayNotSpeakForAnother) {
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(FederationHarness::Command({"sleep", "30"}), &sub).ok());
  auto mallory = h_.IssueNode("mallory", 1);
  v1::SendResultsRequest req;
  req.set_node_id("n1");
  auto* r = req.add_results();
  r->set_execution_id(sub.execution().id());
  r->set_attempt(1);
  r->set_node_id("n1");
  r->set_stdout("forged output");
  v1::SendResultsResponse resp;
  grpc::Status st = FederationAs(mallory)->SendResults(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("mallory may not speak for node 'n1'"), std::string::npos)
      << st.error_message();
  v1::ReportStatusRequest status;
  status.set_node_id("n1");
  v1::ReportStatusResponse sresp;
  EXPECT_EQ(FederationAs(mallory)->ReportStatus(Ctx().get(), status, &sresp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(ControlPlaneTest, ARevokedNodeIsRefusedOnTheConnectionItAlreadyHolds) {
  auto mallory = h_.IssueNode("mallory", 1);
  auto stub = FederationAs(mallory);  // one channel: one HTTP/2 connection, kept
  v1::RegisterNodeRequest req;
  req.mutable_node()->set_id("mallory");
  req.mutable_node()->set_address("127.0.0.1:1");
  req.mutable_node()->mutable_security()->set_trust_level(1);
  req.mutable_node()->mutable_resources()->mutable_capacity()->set_cpu_millis(1000);
  req.mutable_node()->mutable_resources()->mutable_capacity()->set_memory_bytes(1ll << 30);
  v1::RegisterNodeResponse resp;
  grpc::Status st = stub->RegisterNode(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();

  auto serial = auth::RevokeCertificate(h_.pki(), mallory.cert);
  ASSERT_TRUE(serial.ok()) << serial.status();
  // The manager re-reads the list at most once a second.
  v1::ReportStatusRequest status;
  status.set_node_id("mallory");
  status.set_epoch(resp.epoch());
  v1::ReportStatusResponse sresp;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    st = stub->ReportStatus(Ctx().get(), status, &sresp);
    if (st.error_code() == grpc::StatusCode::PERMISSION_DENIED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("(serial " + *serial + ") is revoked"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(stub->RegisterNode(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // The agent whose certificate stands goes on as before.
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(FederationHarness::Command({"true"}), &sub).ok());
  auto done = h_.WaitAllDone({sub.execution().id()}, std::chrono::seconds(20));
  ASSERT_EQ(done.size(), 1u) << h_.ReadLog("manager.log");
  EXPECT_EQ(done.begin()->second.state(), v1::EXECUTION_SUCCEEDED);
}

TEST_F(ControlPlaneTest, ANodeMayNotClaimMoreTrustThanItsCertificateGrants) {
  auto mallory = h_.IssueNode("mallory", 1);
  v1::RegisterNodeRequest req;
  req.mutable_node()->set_id("mallory");
  req.mutable_node()->set_address("127.0.0.1:1");
  req.mutable_node()->mutable_security()->set_trust_level(10);
  v1::RegisterNodeResponse resp;
  grpc::Status st = FederationAs(mallory)->RegisterNode(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("allows at most 1"), std::string::npos) << st.error_message();
  v1::ListNodesResponse nodes;
  ASSERT_TRUE(h_.ListNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) EXPECT_NE(n.id(), "mallory");
}

TEST_F(ControlPlaneTest, AUserMayNotRegisterANode) {
  auto stub = v1::FederationService::NewStub(h_.UserChannel(h_.token()));
  v1::RegisterNodeRequest req;
  req.mutable_node()->set_id("fake");
  req.mutable_node()->set_address("127.0.0.1:1");
  v1::RegisterNodeResponse resp;
  EXPECT_EQ(stub->RegisterNode(Ctx().get(), req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

// --- Direct calls to an agent ---

TEST_F(ControlPlaneTest, AnAgentRefusesTasksFromAnotherNode) {
  auto mallory = h_.IssueNode("mallory", 1);
  auto stub = v1::AgentService::NewStub(
      h_.PeerChannel(AgentAddress("n1"), mallory, auth::NodeName("n1")));
  v1::RequestTaskRequest req;
  req.set_execution_id("ex-rogue");
  req.set_attempt(1);
  req.mutable_request()->mutable_code()->add_argv("touch");
  req.mutable_request()->mutable_code()->add_argv("/tmp/pwned");
  v1::RequestTaskResponse resp;
  grpc::Status st = stub->RequestTask(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("only the manager"), std::string::npos) << st.error_message();
}

TEST_F(ControlPlaneTest, AnAgentRefusesACallerWithoutACertificate) {
  auth::Transport t;
  t.files.ca_cert = h_.ca_cert();  // checks the agent, presents nothing
  auto creds = auth::ChannelCredentials(t, auth::NodeName("n1"));
  ASSERT_TRUE(creds.ok());
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(auth::NodeName("n1"));
  auto stub = v1::AgentService::NewStub(
      grpc::CreateCustomChannel(AgentAddress("n1"), creds->credentials, args));
  v1::CancelTaskRequest req;
  req.set_execution_id("ex-any");
  v1::CancelTaskResponse resp;
  EXPECT_EQ(stub->CancelTask(Ctx(3).get(), req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto plain = v1::AgentService::NewStub(
      grpc::CreateChannel(AgentAddress("n1"), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(plain->CancelTask(Ctx(3).get(), req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ControlPlaneTest, ARestoreStreamMustComeFromTheNodeItNames) {
  auto mallory = h_.IssueNode("mallory", 1);
  auto stub = v1::AgentService::NewStub(
      h_.PeerChannel(AgentAddress("n1"), mallory, auth::NodeName("n1")));
  auto ctx = Ctx();
  v1::RestoreTaskResponse resp;
  auto writer = stub->RestoreTask(ctx.get(), &resp);
  v1::RestoreTaskChunk head;
  head.mutable_header()->set_migration_id("mig-1");
  head.mutable_header()->set_execution_id("ex-any");
  head.mutable_header()->set_attempt(1);
  head.mutable_header()->set_source_node_id("n2");
  writer->Write(head);
  writer->WritesDone();
  grpc::Status st = writer->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

TEST_F(ControlPlaneTest, ARestoreStreamWithoutTheManagersTokenIsRefused) {
  // A node with a good certificate, streaming as itself, but with a token
  // it made up (it does not hold the target's migration key).
  auto n2 = h_.IssueNode("n2", 3);
  for (const std::string token : {std::string(), std::string("forged-token")}) {
    auto stub = v1::AgentService::NewStub(h_.PeerChannel(AgentAddress("n1"), n2, auth::NodeName("n1")));
    auto ctx = Ctx();
    v1::RestoreTaskResponse resp;
    auto writer = stub->RestoreTask(ctx.get(), &resp);
    v1::RestoreTaskChunk head;
    head.mutable_header()->set_migration_id("mig-1");
    head.mutable_header()->set_execution_id("ex-any");
    head.mutable_header()->set_attempt(1);
    head.mutable_header()->set_source_node_id("n2");
    head.mutable_header()->set_token(token);
    writer->Write(head);
    writer->WritesDone();
    grpc::Status st = writer->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
    EXPECT_NE(st.error_message().find("migration token"), std::string::npos) << st.error_message();
  }
}

// --- Tenants ---

TEST_F(ControlPlaneTest, AnotherTenantCannotSeeOrCancelAnExecution) {
  auto r = FederationHarness::Command({"sleep", "30"});
  r.set_request_id("job1");
  v1::SubmitResponse sub;
  ASSERT_TRUE(SubmitAs(alice_, r, &sub).ok());
  const std::string id = sub.execution().id();
  EXPECT_EQ(id, "acme:job1");
  EXPECT_EQ(sub.execution().request().user_id(), "acme");

  v1::Execution e;
  EXPECT_EQ(GetAs(bob_, id, &e).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(GetAs(bob_, "job1", &e).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CancelRequest cancel;
  cancel.set_execution_id(id);
  v1::CancelResponse cresp;
  EXPECT_EQ(Api(bob_)->Cancel(Ctx().get(), cancel, &cresp).error_code(), grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(GetAs(alice_, "job1", &e).ok());  // her own, by her own request id
  EXPECT_FALSE(e.cancel_requested());

  v1::ListExecutionsResponse list;
  ASSERT_TRUE(Api(bob_)->ListExecutions(Ctx().get(), v1::ListExecutionsRequest(), &list).ok());
  EXPECT_EQ(list.executions_size(), 0);
  ASSERT_TRUE(Api(alice_)->ListExecutions(Ctx().get(), v1::ListExecutionsRequest(), &list).ok());
  EXPECT_EQ(list.executions_size(), 1);
}

TEST_F(ControlPlaneTest, AWatchOfAnotherTenantsExecutionEndsNotFound) {
  v1::SubmitResponse sub;
  ASSERT_TRUE(SubmitAs(alice_, FederationHarness::Command({"sleep", "30"}), &sub).ok());
  v1::WatchRequest req;
  req.set_execution_id(sub.execution().id());
  auto ctx = Ctx();
  auto reader = Api(bob_)->Watch(ctx.get(), req);
  v1::WatchEvent ev;
  EXPECT_FALSE(reader->Read(&ev));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ControlPlaneTest, RequestIdsAreUniquePerTenant) {
  auto r = FederationHarness::Command({"true"});
  r.set_request_id("same");
  v1::SubmitResponse a, b;
  ASSERT_TRUE(SubmitAs(alice_, r, &a).ok());
  ASSERT_TRUE(SubmitAs(bob_, r, &b).ok());
  EXPECT_NE(a.execution().id(), b.execution().id());
  EXPECT_FALSE(b.already_existed());
  r.set_request_id("acme:same");  // bob naming alice's id space
  grpc::Status st = SubmitAs(bob_, r, &b);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("reserved"), std::string::npos) << st.error_message();
}

TEST_F(ControlPlaneTest, EnvValuesAreShownOnlyToTheirOwnerAndSecretFilesToNobody) {
  auto r = FederationHarness::Command({"sh", "-c", "cat key.pem; echo $API_KEY"});
  (*r.mutable_env())["API_KEY"] = "s3cr3t";
  auto* f = r.mutable_dependencies()->add_files();
  f->set_path("key.pem");
  f->set_content("PRIVATE");
  f->set_secret(true);
  v1::SubmitResponse sub;
  ASSERT_TRUE(SubmitAs(alice_, r, &sub).ok());
  const std::string id = sub.execution().id();
  auto done = h_.WaitAllDone({id}, seconds(30));
  ASSERT_EQ(done.size(), 1u);
  // The task had both; its output is its owner's business.
  EXPECT_EQ(done[id].result().stdout(), "PRIVATEs3cr3t\n");
  v1::Execution own, admin;
  ASSERT_TRUE(GetAs(alice_, id, &own).ok());
  EXPECT_EQ(own.request().env().at("API_KEY"), "s3cr3t");
  EXPECT_EQ(own.request().dependencies().files(0).content(), "<redacted>");
  ASSERT_TRUE(GetAs(h_.token(), id, &admin).ok());  // an admin sees the execution...
  EXPECT_EQ(admin.request().env().at("API_KEY"), "<redacted>");  // ...not its secrets
}

TEST_F(ControlPlaneTest, OnlyAnAdminMayMigrate) {
  v1::MigrateRequest req;
  req.set_execution_id("ex-any");
  v1::MigrateResponse resp;
  grpc::Status st = Api(alice_)->Migrate(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find("admin"), std::string::npos) << st.error_message();
}

// --- REST ---

TEST_F(ControlPlaneTest, RestWithoutATokenIsUnauthorizedButHealthzIsOpen) {
  auto c = Http();
  auto r = c.Get("/v1/functions");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

// --- HTTPS on the HTTP port ---

TEST_F(ControlPlaneTest, ThePlainHttpRequestToTheHttpsPortIsRefusedAndTheManagerLives) {
  int fd = ConnectTcp(h_.http_address(), 10);
  ASSERT_GE(fd, 0);
  const std::string req = "GET /healthz HTTP/1.1\r\nHost: " + h_.http_address() +
                          "\r\nAuthorization: Bearer " + h_.token() + "\r\n\r\n";
  ASSERT_EQ(send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  // The TLS layer rejects the first bytes and closes: an end of stream (or a
  // reset), within the bound, never an HTTP answer and never a hang.
  std::string got;
  char buf[4096];
  ssize_t n = 0;
  errno = 0;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<size_t>(n));
  const int recv_errno = errno;
  close(fd);
  EXPECT_TRUE(n == 0 || recv_errno == ECONNRESET) << "recv: " << strerror(recv_errno);
  EXPECT_EQ(got.find("HTTP/1."), std::string::npos) << got;
  EXPECT_FALSE(h_.ManagerExited());
  auto health = Http().Get("/healthz");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
}

TEST_F(ControlPlaneTest, TheHttpsPortPresentsTheManagersCertificateOverTls12OrLater) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  ASSERT_TRUE(auth::TrustManagerOnly(ctx, h_.ca_cert()).ok());
  int fd = ConnectTcp(h_.http_address(), 10);
  ASSERT_GE(fd, 0);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  ASSERT_EQ(SSL_connect(ssl), 1);
  EXPECT_EQ(SSL_get_verify_result(ssl), X509_V_OK);
  EXPECT_GE(SSL_version(ssl), TLS1_2_VERSION);
  X509* peer = SSL_get1_peer_certificate(ssl);
  ASSERT_NE(peer, nullptr);
  // The very certificate the manager's gRPC port presents.
  const std::string pem = ReadFile(h_.pki() + "/manager.crt");
  BIO* in = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* want = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  ASSERT_NE(want, nullptr);
  EXPECT_EQ(X509_cmp(peer, want), 0);
  X509_free(want);
  BIO_free(in);
  X509_free(peer);
  SSL_free(ssl);
  close(fd);

  // A client that offers at most TLS 1.1 gets no session.
  SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
  SSL_CTX_set_security_level(ctx, 0);
  fd = ConnectTcp(h_.http_address(), 10);
  ASSERT_GE(fd, 0);
  ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  EXPECT_NE(SSL_connect(ssl), 1);
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(ctx);
}

TEST_F(ControlPlaneTest, AClientThatDoesNotTrustTheFederationsCaGetsNoAnswer) {
  char tmpl[] = "/tmp/flotilla-otherca-XXXXXX";
  const std::string other = mkdtemp(tmpl);
  ASSERT_TRUE(auth::InitCa(other).ok());
  auto c = ManagerHttp(h_, h_.token(), other + "/ca.crt");
  auto r = c.Get("/v1/functions");
  EXPECT_FALSE(r);
  // Trusting the right CA, the same call is answered.
  auto ok = ManagerHttp(h_, h_.token()).Get("/v1/functions");
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  std::filesystem::remove_all(other);
}

TEST_F(ControlPlaneTest, RestRefusesCrossOriginRequests) {
  auto c = Http();
  c.set_bearer_token_auth(h_.token());
  httplib::Headers headers = {{"Origin", "http://evil.example"}};
  auto r = c.Post("/function/deploy", headers, R"({"name":"f"})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("cross-origin"), std::string::npos) << r->body;
}

TEST_F(ControlPlaneTest, RestRefusesBodiesThatAreNotJson) {
  auto c = Http();
  c.set_bearer_token_auth(h_.token());
  // A browser sends text/plain across origins without a preflight.
  auto r = c.Post("/function/deploy", R"({"name":"f","source":"def f(): pass","entrypoint":"f"})",
                  "text/plain");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 415);
  auto list = c.Get("/v1/functions");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->body.find("\"f\""), std::string::npos) << list->body;
}

TEST_F(ControlPlaneTest, RestRefusesAForeignHostHeader) {
  auto c = Http();
  c.set_bearer_token_auth(h_.token());
  httplib::Headers headers = {{"Host", "attacker.example"}};
  auto r = c.Get("/v1/functions", headers);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
}

TEST_F(ControlPlaneTest, ADeeplyNestedBodyIsRefusedAndTheManagerLives) {
  auto c = Http();
  c.set_bearer_token_auth(h_.token());
  std::string body = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = c.Post("/execution/submit", body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("nests deeper"), std::string::npos) << r->body;
  EXPECT_FALSE(h_.ManagerExited());
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(ControlPlaneTest, AnOversizedBodyIsRefused) {
  auto c = Http();
  c.set_bearer_token_auth(h_.token());
  auto r = c.Put("/v1/kv/ns/key", std::string(20 << 20, ' '), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
}

TEST_F(ControlPlaneTest, KeyValueNamespacesArePerTenant) {
  auto a = Http();
  a.set_bearer_token_auth(alice_);
  auto put = a.Put("/v1/kv/shared/secret", R"({"value":"c2VjcmV0"})", "application/json");
  ASSERT_TRUE(put);
  ASSERT_EQ(put->status, 200) << put->body;
  auto b = Http();
  b.set_bearer_token_auth(bob_);
  auto get = b.Get("/v1/kv/shared/secret");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404) << get->body;
  auto sneaky = b.Get("/v1/kv/acme~shared/secret");
  ASSERT_TRUE(sneaky);
  EXPECT_EQ(sneaky->status, 400) << sneaky->body;
  auto own = a.Get("/v1/kv/shared/secret");
  ASSERT_TRUE(own);
  EXPECT_EQ(own->status, 200);
}

TEST_F(ControlPlaneTest, FunctionsAndWorkflowsArePerTenant) {
  auto deploy = [&](const std::string& token, const std::string& source) {
    auto r = Http();
    r.set_bearer_token_auth(token);
    nlohmann::json spec = {{"name", "f"}, {"entrypoint", "f"}, {"source", source}};
    return r.Post("/function/deploy", spec.dump(), "application/json");
  };
  auto a = Http();
  a.set_bearer_token_auth(alice_);
  auto b = Http();
  b.set_bearer_token_auth(bob_);
  auto admin = Http();
  admin.set_bearer_token_auth(h_.token());

  // Both tenants deploy "f"; each is its own function under the same name.
  auto da = deploy(alice_, "def f(x):\n    return x + 1\n");
  ASSERT_TRUE(da);
  ASSERT_EQ(da->status, 200) << da->body;
  EXPECT_EQ(nlohmann::json::parse(da->body)["function"]["name"], "f");
  auto bob_before = b.Get("/v1/functions/f");
  ASSERT_TRUE(bob_before);
  EXPECT_EQ(bob_before->status, 404) << bob_before->body;
  auto db = deploy(bob_, "def f(x):\n    return x + 2\n");
  ASSERT_TRUE(db);
  ASSERT_EQ(db->status, 200) << db->body;
  auto got = a.Get("/v1/functions/f");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, 200);
  EXPECT_NE(got->body.find("x + 1"), std::string::npos) << got->body;
  // No one names another tenant's function with '~' but an admin.
  auto sneaky = b.Get("/v1/functions/acme~f");
  ASSERT_TRUE(sneaky);
  EXPECT_EQ(sneaky->status, 400) << sneaky->body;
  auto list = b.Get("/v1/functions");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->status, 200);
  auto functions = nlohmann::json::parse(list->body)["functions"];
  ASSERT_EQ(functions.size(), 1u) << list->body;
  EXPECT_EQ(functions[0]["name"], "f");
  auto all = admin.Get("/v1/functions");
  ASSERT_TRUE(all);
  EXPECT_NE(all->body.find("\"acme~f\""), std::string::npos) << all->body;
  EXPECT_NE(all->body.find("\"beta~f\""), std::string::npos) << all->body;
  auto by_admin = admin.Get("/v1/functions/acme~f");
  ASSERT_TRUE(by_admin);
  EXPECT_EQ(by_admin->status, 200) << by_admin->body;

  // A workflow belongs to the tenant that submitted it.
  auto sub = a.Post("/execution/submit", R"({"function": "f", "args": [1]})", "application/json");
  ASSERT_TRUE(sub);
  ASSERT_EQ(sub->status, 200) << sub->body;
  auto wf = nlohmann::json::parse(sub->body)["workflow"];
  const std::string id = wf["id"].get<std::string>();
  EXPECT_EQ(wf["function"], "f");
  auto theirs = b.Get("/v1/workflows/" + id);
  ASSERT_TRUE(theirs);
  EXPECT_EQ(theirs->status, 404) << theirs->body;
  auto cancel = b.Post("/v1/workflows/" + id + "/cancel", "{}", "application/json");
  ASSERT_TRUE(cancel);
  EXPECT_EQ(cancel->status, 404) << cancel->body;
  auto bob_list = b.Get("/v1/workflows");
  ASSERT_TRUE(bob_list);
  EXPECT_EQ(bob_list->body.find(id), std::string::npos) << bob_list->body;
  auto own = a.Get("/v1/workflows/" + id);
  ASSERT_TRUE(own);
  EXPECT_EQ(own->status, 200) << own->body;
  auto admin_list = admin.Get("/v1/workflows");
  ASSERT_TRUE(admin_list);
  EXPECT_NE(admin_list->body.find(id), std::string::npos) << admin_list->body;
}

TEST_F(ControlPlaneTest, IdleLongPollsCannotStarveTheApi) {
  std::atomic<int> refused{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 12; ++i) {
    waiters.emplace_back([&, i] {
      auto c = Http();
      c.set_bearer_token_auth(h_.token());
      auto r = c.Get("/v1/kv/idle" + std::to_string(i) + "?after=0&timeout_ms=8000&watch_prefix=x");
      if (r && r->status == 429) ++refused;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto c = Http();
  c.set_read_timeout(3, 0);
  const auto start = std::chrono::steady_clock::now();
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health) << "healthz did not answer while 12 long-polls waited";
  EXPECT_EQ(health->status, 200);
  c.set_bearer_token_auth(h_.token());
  auto list = c.Get("/v1/functions");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  for (auto& t : waiters) t.join();
  EXPECT_GE(refused.load(), 4);  // beyond the bound: told to come back
}

TEST(MetricsAuthTest, MetricsCanRequireAToken) {
  FederationHarness h;
  h.manager_config = "auth: {users_file: " + h.users_file() + ", metrics: token}\n";
  // The harness writes its own auth: line first; a second would be a
  // duplicate key, so the test's replaces it.
  h.StartManager();
  httplib::Client c = ManagerHttp(h);
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  c.set_bearer_token_auth(h.token());
  r = c.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(DevelopmentModeTest, SecurityOffIsExplicitAndSaysSo) {
  FederationHarness h(/*insecure=*/true);
  h.StartManager();
  h.StartAgent({.id = "dev"});
  ASSERT_TRUE(h.WaitOnline(1));
  EXPECT_NE(h.ReadLog("manager.log").find("SECURITY IS OFF"), std::string::npos);
  EXPECT_NE(h.ReadLog("dev.log").find("SECURITY IS OFF"), std::string::npos);
  v1::SubmitResponse sub;
  ASSERT_TRUE(h.Submit(FederationHarness::Command({"true"}), &sub).ok());
  EXPECT_EQ(h.WaitAllDone({sub.execution().id()}, seconds(20)).size(), 1u);
}

TEST(SecureByDefaultTest, AManagerWithoutCertificatesRefusesToStart) {
  FederationHarness h;
  // A config naming no tls: section at all.
  const std::string config = h.dir() + "/bare.yaml";
  std::ofstream(config) << "grpc_listen: 127.0.0.1:0\n";
  std::string out;
  // Bounded: a manager that did start would otherwise keep popen waiting.
  FILE* p = popen(("timeout 20 " + std::string(FLOTILLA_BIN) + " manager --config " + config +
                   " --db " + h.dir() +
                   "/m.db --http-listen 127.0.0.1:0 2>&1")
                      .c_str(),
                  "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  int status = pclose(p);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_NE(out.find("tls.ca: missing"), std::string::npos) << out;
}

}  // namespace
}  // namespace flotilla::testing
