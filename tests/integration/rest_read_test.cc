// GET /v1/nodes, /v1/executions and /v1/executions/ID against a real
// manager and agent: the shapes docs/api.md promises, the same tenancy as
// the gRPC ApiService (another tenant's execution is 404, exactly as a
// missing one), 401 without a token; and the dashboard's static files with
// their security headers.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "support/federation_harness.h"
#include "support/manager_http.h"

namespace flotilla::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

class RestReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
    h_.StartManager();
    h_.StartAgent({.id = "n1", .region = "eu-west", .trust = 4});
    h_.StartAgent({.id = "n2", .region = "us-east", .trust = 6});
    ASSERT_TRUE(h_.WaitOnline(2)) << h_.ReadLog("manager.log");
    alice_ = h_.AddUser("alice", "acme");
    bob_ = h_.AddUser("bob", "beta");
    // The manager reads a changed users file at most once a second.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  }

  json GetJson(const std::string& token, const std::string& path, int want_status = 200) {
    auto c = ManagerHttp(h_, token);
    auto r = c.Get(path);
    EXPECT_TRUE(r) << path;
    if (!r) return json();
    EXPECT_EQ(r->status, want_status) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  FederationHarness h_;
  std::string alice_;
  std::string bob_;
};

TEST_F(RestReadTest, NodesListRegionsCapacityTrustAndIsolation) {
  json nodes = GetJson(alice_, "/v1/nodes")["nodes"];
  ASSERT_EQ(nodes.size(), 2u) << nodes.dump();
  std::map<std::string, json> by_id;
  for (const json& n : nodes) by_id[n["id"].get<std::string>()] = n;
  ASSERT_TRUE(by_id.count("n1") && by_id.count("n2"));
  EXPECT_EQ(by_id["n1"]["region"], "eu-west");
  EXPECT_EQ(by_id["n2"]["region"], "us-east");
  EXPECT_EQ(by_id["n1"]["status"], "online");
  EXPECT_EQ(by_id["n1"]["trust"], 4);
  EXPECT_EQ(by_id["n2"]["trust"], 6);
  EXPECT_EQ(by_id["n1"]["capacity"]["cpu_millis"], 2000);
  EXPECT_LE(by_id["n1"]["free"]["cpu_millis"].get<int64_t>(), 2000);
  EXPECT_FALSE(by_id["n1"]["isolation"].empty()) << by_id["n1"].dump();
  EXPECT_TRUE(by_id["n1"]["warm_pools"].is_array());
  EXPECT_TRUE(by_id["n1"]["checkpoint"].contains("state"));
}

TEST_F(RestReadTest, AnExecutionShowsItsPlacementCandidatesAndOutput) {
  auto r = FederationHarness::Command({"sh", "-c", "echo hello-rest"});
  r.set_request_id("job1");
  r.set_name("greeting");
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(r, &sub, alice_).ok());
  const std::string id = sub.execution().id();
  ASSERT_EQ(id, "acme:job1");
  ASSERT_TRUE(FederationHarness::WaitUntil(seconds(30), [&] {
    json e = GetJson(alice_, "/v1/executions/" + id)["execution"];
    return e.value("state", "") == "succeeded";
  })) << h_.ReadLog("manager.log");

  json e = GetJson(alice_, "/v1/executions/" + id)["execution"];
  EXPECT_EQ(e["id"], id);
  EXPECT_EQ(e["name"], "greeting");
  EXPECT_EQ(e["attempts"], 1);
  EXPECT_EQ(e["result"]["exit_code"], 0);
  EXPECT_EQ(e["output"]["stdout_tail"], "hello-rest\n");
  ASSERT_TRUE(e.contains("placement")) << e.dump();
  const json& p = e["placement"];
  EXPECT_EQ(p["node"], e["node"]);
  ASSERT_EQ(p["candidates"].size(), 2u) << p.dump();
  EXPECT_EQ(p["candidates"][0]["node"], p["node"]) << "the chosen node comes first";
  EXPECT_TRUE(p["candidates"][0]["feasible"].get<bool>());
  EXPECT_FALSE(p["candidates"][0]["parts"].empty()) << p.dump();

  // Her own request id names it too; the list shows it, filtered by state.
  EXPECT_EQ(GetJson(alice_, "/v1/executions/job1")["execution"]["id"], id);
  json list = GetJson(alice_, "/v1/executions?limit=10&state=succeeded")["executions"];
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], id);
  EXPECT_EQ(list[0]["state"], "succeeded");
  EXPECT_TRUE(GetJson(alice_, "/v1/executions?state=running")["executions"].empty());
  GetJson(alice_, "/v1/executions?state=sleeping", 400);
  GetJson(alice_, "/v1/executions?limit=0", 400);
}

TEST_F(RestReadTest, AnotherTenantsExecutionIsNotFoundAndUnlisted) {
  auto r = FederationHarness::Command({"true"});
  r.set_request_id("job1");
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(r, &sub, alice_).ok());
  const std::string id = sub.execution().id();

  json missing = GetJson(bob_, "/v1/executions/" + id, 404);
  EXPECT_EQ(missing["error"], "no execution '" + id + "'")
      << "another tenant's id answers as a missing one";
  GetJson(bob_, "/v1/executions/job1", 404);
  EXPECT_TRUE(GetJson(bob_, "/v1/executions")["executions"].empty());
  EXPECT_EQ(GetJson(alice_, "/v1/executions")["executions"].size(), 1u);
  // The admin of tenant default sees every tenant's.
  EXPECT_EQ(GetJson(h_.token(), "/v1/executions/" + id)["execution"]["id"], id);
}

TEST_F(RestReadTest, NoTokenIsUnauthorized) {
  auto c = ManagerHttp(h_);
  for (const char* path : {"/v1/nodes", "/v1/executions", "/v1/executions/x"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer") << path;
  }
  auto bad = ManagerHttp(h_, "not-a-token").Get("/v1/nodes");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
}

TEST_F(RestReadTest, TheDashboardIsServedWithoutATokenUnderAStrictPolicy) {
  auto c = ManagerHttp(h_);
  auto index = c.Get("/dashboard/");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->status, 200);
  EXPECT_NE(index->body.find("<title>Flotilla</title>"), std::string::npos);
  EXPECT_EQ(index->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(index->get_header_value("Content-Security-Policy").rfind("default-src 'self'", 0), 0u);
  EXPECT_EQ(index->get_header_value("X-Content-Type-Options"), "nosniff");
  auto app = c.Get("/dashboard/js/app.js");
  ASSERT_TRUE(app);
  EXPECT_EQ(app->status, 200);
  EXPECT_EQ(app->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  auto missing = c.Get("/dashboard/../users.json");
  ASSERT_TRUE(missing);
  EXPECT_NE(missing->status, 200);
  auto bare = c.Get("/dashboard");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 302);
  EXPECT_EQ(bare->get_header_value("Location"), "/dashboard/");
}

}  // namespace
}  // namespace flotilla::testing
