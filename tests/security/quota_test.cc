// Storage quotas at the REST boundary: a tenant that fills its key-value
// quota or a queue gets 507 naming the limit, and no other tenant notices
// (docs/security.md, "Limits and quotas").
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "absl/strings/escaping.h"
#include "support/federation_harness.h"
#include "support/manager_http.h"

namespace flotilla::testing {
namespace {

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h_.manager_config =
        "limits: {tenant_kv_max_keys: 4, tenant_kv_max_bytes: 2048, queue_max_length: 3, "
        "tenant_queue_max_messages: 5}\n";
    h_.StartManager();
    alice_ = h_.AddUser("alice", "acme");
    bob_ = h_.AddUser("bob", "beta");
    // The manager reads a changed users file at most once a second.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  }

  httplib::Client As(const std::string& token) { return ManagerHttp(h_, token); }

  static std::string ValueBody(const std::string& value) {
    return nlohmann::json{{"value", absl::Base64Escape(value)}}.dump();
  }

  int Put(const std::string& token, const std::string& path, const std::string& value,
          std::string* body = nullptr) {
    auto r = As(token).Put(path, ValueBody(value), "application/json");
    if (!r) return -1;
    if (body != nullptr) *body = r->body;
    if (r->status == 507) EXPECT_FALSE(r->has_header("Retry-After")) << "waiting does not help";
    return r->status;
  }

  int Send(const std::string& token, const std::string& queue, std::string* body = nullptr) {
    auto r = As(token).Post("/v1/queues/" + queue + "/send",
                            nlohmann::json{{"message", absl::Base64Escape("job")}}.dump(),
                            "application/json");
    if (!r) return -1;
    if (body != nullptr) *body = r->body;
    return r->status;
  }

  FederationHarness h_;
  std::string alice_;
  std::string bob_;
};

TEST_F(QuotaTest, ATenantFillingItsKeyQuotaDoesNotAffectAnother) {
  // Four keys over two namespaces fill acme's quota.
  ASSERT_EQ(Put(alice_, "/v1/kv/cache/k1", "v"), 200);
  ASSERT_EQ(Put(alice_, "/v1/kv/cache/k2", "v"), 200);
  ASSERT_EQ(Put(alice_, "/v1/kv/state/k3", "v"), 200);
  ASSERT_EQ(Put(alice_, "/v1/kv/state/k4", "v"), 200);
  std::string body;
  EXPECT_EQ(Put(alice_, "/v1/kv/other/k5", "v", &body), 507);
  EXPECT_NE(body.find("limits.tenant_kv_max_keys"), std::string::npos) << body;
  EXPECT_NE(body.find("tenant \\\"acme\\\""), std::string::npos) << body;
  // Nothing was written.
  auto missing = As(alice_).Get("/v1/kv/other/k5");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  // Overwrites still work; beta and default are unaffected, in the same names.
  EXPECT_EQ(Put(alice_, "/v1/kv/cache/k1", "v2"), 200);
  for (const char* key : {"k1", "k2", "k3", "k4"}) {
    EXPECT_EQ(Put(bob_, std::string("/v1/kv/cache/") + key, "v"), 200) << key;
  }
  EXPECT_EQ(Put(h_.token(), "/v1/kv/cache/k5", "v"), 200);
  // A delete frees a key for acme.
  auto del = As(alice_).Delete("/v1/kv/cache/k2");
  ASSERT_TRUE(del);
  ASSERT_EQ(del->status, 200);
  EXPECT_EQ(Put(alice_, "/v1/kv/other/k5", "v"), 200);
}

TEST_F(QuotaTest, ATenantFillingItsByteQuotaDoesNotAffectAnother) {
  ASSERT_EQ(Put(alice_, "/v1/kv/blobs/a", std::string(2000, 'x')), 200);
  std::string body;
  EXPECT_EQ(Put(alice_, "/v1/kv/blobs/b", std::string(100, 'x'), &body), 507);
  EXPECT_NE(body.find("limits.tenant_kv_max_bytes"), std::string::npos) << body;
  EXPECT_EQ(Put(bob_, "/v1/kv/blobs/a", std::string(2000, 'x')), 200);
}

TEST_F(QuotaTest, AFullQueueRefusesSendsUntilMessagesAreAcked) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Send(alice_, "jobs"), 200) << i;
  std::string body;
  EXPECT_EQ(Send(alice_, "jobs", &body), 507);
  EXPECT_NE(body.find("limits.queue_max_length"), std::string::npos) << body;
  // beta's "jobs" is another queue.
  EXPECT_EQ(Send(bob_, "jobs"), 200);

  auto got = As(alice_).Post("/v1/queues/jobs/receive", R"({"max": 1})", "application/json");
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, 200) << got->body;
  const std::string id = nlohmann::json::parse(got->body)["messages"][0]["id"].get<std::string>();
  auto ack =
      As(alice_).Post("/v1/queues/jobs/ack", nlohmann::json{{"id", id}}.dump(), "application/json");
  ASSERT_TRUE(ack);
  ASSERT_EQ(ack->status, 200) << ack->body;
  EXPECT_EQ(Send(alice_, "jobs"), 200);
  EXPECT_EQ(Send(alice_, "jobs"), 507);
}

TEST_F(QuotaTest, ATenantsQueuesTogetherHaveACap) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Send(alice_, "jobs"), 200) << i;
  for (int i = 0; i < 2; ++i) ASSERT_EQ(Send(alice_, "more"), 200) << i;
  std::string body;
  EXPECT_EQ(Send(alice_, "third", &body), 507);
  EXPECT_NE(body.find("limits.tenant_queue_max_messages"), std::string::npos) << body;
  EXPECT_EQ(Send(bob_, "third"), 200);
}

TEST(QuotaConfigTest, AZeroQuotaIsRefusedNamingTheKey) {
  const std::string path = ::testing::TempDir() + "/quota_zero.yaml";
  std::ofstream(path) << "limits: {queue_max_length: 0}\n";
  const std::string command = "timeout 20 " + std::string(FLOTILLA_BIN) + " manager --config " +
                              path + " --http-listen '' 2>&1";
  FILE* out = popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buffer[512];
  while (fgets(buffer, sizeof buffer, out) != nullptr) text += buffer;
  EXPECT_NE(pclose(out), 0);
  EXPECT_NE(text.find("limits.queue_max_length: must be > 0, got 0"), std::string::npos) << text;
}

}  // namespace
}  // namespace flotilla::testing
