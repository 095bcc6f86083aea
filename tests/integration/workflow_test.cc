// Functions and workflows end to end: a real manager and real agents (Linux
// sandboxes), the REST API over loopback, split functions whose pieces run
// across agents in different regions, annotation updates taking effect on
// the next call, a Redis-backed run, a hand-written DAG and a manager killed
// mid-workflow.

#include <httplib.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "support/federation_harness.h"
#include "support/manager_http.h"
#include "support/workflow_module.h"
#include "unit/kv/redis_server.h"

namespace flotilla::testing {
namespace {

using nlohmann::json;

class WorkflowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  }

  void StartFederation(std::vector<std::pair<std::string, std::string>> agents) {
    h_.StartManager(/*lease_timeout_ms=*/3000);
    for (const auto& [id, region] : agents) {
      AgentSpec spec;
      spec.id = id;
      spec.region = region;
      h_.StartAgent(spec);
    }
    ASSERT_TRUE(h_.WaitOnline(agents.size()));
  }

  json Call(const std::string& method, const std::string& path, const json& body = nullptr,
            int* status = nullptr) {
    httplib::Client c = ManagerHttp(h_, h_.token());
    c.set_read_timeout(120, 0);
    httplib::Result r = method == "GET"      ? c.Get(path)
                        : method == "DELETE" ? c.Delete(path)
                        : method == "PUT"    ? c.Put(path, body.dump(), "application/json")
                                             : c.Post(path, body.dump(), "application/json");
    if (!r) {
      ADD_FAILURE() << method << " " << path << ": no response";
      return json();
    }
    if (status) *status = r->status;
    json j = json::parse(r->body, nullptr, false);
    if (!status && r->status != 200) ADD_FAILURE() << method << " " << path << " -> " << r->status << " " << r->body;
    return j;
  }

  void Deploy(const std::string& name, const std::string& entry, const json& annotations = json::object()) {
    json r = Call("POST", "/function/deploy",
                  {{"name", name}, {"source", kModule}, {"entrypoint", entry}, {"annotations", annotations}});
    ASSERT_EQ(r["function"]["name"], name) << r.dump();
  }

  json Run(const std::string& fn, const json& args) {
    return Call("POST", "/execution/submit", {{"function", fn}, {"args", args}, {"wait_ms", 90000}})["workflow"];
  }

  static std::set<std::string> Nodes(const json& wf) {
    std::set<std::string> nodes;
    for (const auto& p : wf["pieces"]) {
      for (const auto& n : p["nodes"]) nodes.insert(n.get<std::string>());
    }
    return nodes;
  }

  FederationHarness h_;
};

TEST_F(WorkflowTest, SplitFanOutRunsAcrossAgentsAndMatchesALocalCall) {
  StartFederation({{"eu", "eu-west"}, {"us", "us-east"}, {"ap", "ap-south"}});
  Deploy("fan", "fan", {{"splitable", true}});
  json xs = json::array();
  int64_t expected = 0;
  for (int i = 1; i <= 12; ++i) {
    xs.push_back(20000 * i);
    expected += Heavy(20000 * i);
  }
  json wf = Run("fan", json::array({xs}));
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  EXPECT_TRUE(wf["split"].get<bool>());
  EXPECT_EQ(wf["result_json"].get<int64_t>(), expected);
  bool has_map = false;
  for (const auto& p : wf["pieces"]) has_map |= p["kind"] == "map" && p["executions"].size() > 1;
  EXPECT_TRUE(has_map) << wf.dump(1);
  EXPECT_GE(Nodes(wf).size(), 2u) << "the fan-out should use more than one agent: " << wf.dump(1);

  // The plan is explained.
  json plan = Call("POST", "/split/analyze", {{"function", "fan"}})["plan"];
  EXPECT_TRUE(plan["splittable"].get<bool>()) << plan.dump(1);
  EXPECT_FALSE(plan["reason"].get<std::string>().empty());
}

TEST_F(WorkflowTest, DiamondResultIsExactlyTheLocalOneAndAnExceptionComesBack) {
  StartFederation({{"a", "eu-west"}, {"b", "us-east"}});
  Deploy("diamond", "diamond", {{"splitable", true}});
  json wf = Run("diamond", json::array({300000}));
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  // A tuple does not survive JSON: the result is a pickle, and result_json is absent.
  EXPECT_EQ(wf["result"]["encoding"], "pickle") << wf.dump(1);

  Deploy("branch_fails", "branch_fails", {{"splitable", true}});
  wf = Run("branch_fails", json::array({1000}));
  ASSERT_EQ(wf["state"], "failed") << wf.dump(1);
  EXPECT_EQ(wf["error"]["type"], "ValueError") << wf.dump(1);
  EXPECT_NE(wf["error"]["message"].get<std::string>().find("not a number"), std::string::npos);
}

TEST_F(WorkflowTest, AnnotationUpdatesApplyToTheNextCall) {
  StartFederation({{"eu", "eu-west"}, {"us", "us-east"}});
  Deploy("nap", "nap", {{"geo_preference", "eu-west"}});
  json wf = Run("nap", json::array({0}));
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  EXPECT_EQ(Nodes(wf), std::set<std::string>{"eu"});

  json f = Call("POST", "/annotation/update",
                {{"function", "nap"}, {"annotations", {{"geo_preference", {"us-east"}}}}})["function"];
  EXPECT_EQ(f["annotations"]["geo_preference"][0], "us-east");
  EXPECT_EQ(f["version"], 1) << "an annotation update is not a redeploy";
  wf = Run("nap", json::array({0}));
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  EXPECT_EQ(Nodes(wf), std::set<std::string>{"us"});

  // A resource constraint: the next call gets the 1 s timeout.
  Call("POST", "/annotation/update",
       {{"function", "nap"}, {"annotations", {{"resource_constraint", {{"timeout", "1s"}}}}}});
  wf = Run("nap", json::array({5}));
  ASSERT_EQ(wf["state"], "failed") << wf.dump(1);
  EXPECT_EQ(wf["error"]["type"], "TimeoutError") << wf.dump(1);
}

TEST_F(WorkflowTest, BadInputGetsClearErrors) {
  StartFederation({{"a", "eu-west"}});
  int status = 0;
  json r = Call("POST", "/function/deploy", {{"name", "bad name!"}, {"source", "x"}, {"entrypoint", "f"}},
                &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(r["error"].get<std::string>().find("not valid"), std::string::npos) << r.dump();
  r = Call("POST", "/execution/submit", {{"function", "nope"}}, &status);
  EXPECT_EQ(status, 404);
  EXPECT_NE(r["error"].get<std::string>().find("no function named 'nope'"), std::string::npos);
  r = Call("POST", "/annotation/update",
           {{"function", "nope"}, {"annotations", {{"colour", "red"}}}}, &status);
  EXPECT_EQ(status, 404);
  Deploy("nap", "nap");
  r = Call("POST", "/annotation/update", {{"function", "nap"}, {"annotations", {{"colour", "red"}}}},
           &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(r["error"].get<std::string>().find("unknown annotation 'colour'"), std::string::npos);
  r = Call("POST", "/execution/submit", {{"plan", {{"steps", {{{"name", "a"}}}}}}}, &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(r["error"].get<std::string>().find("no 'run'"), std::string::npos) << r.dump();
}

TEST_F(WorkflowTest, HandWrittenDagRunsThroughTheSameEngine) {
  StartFederation({{"a", "eu-west"}, {"b", "us-east"}});
  json plan = {{"name", "etl"},
               {"steps",
                {{{"name", "fetch"}, {"run", "echo 21"}},
                 {{"name", "double"}, {"runtime", "python3"}, {"run", "print(int(input()) * 2)"},
                  {"inputs", {"fetch"}}},
                 {{"name", "shout"}, {"run", "read x; echo \"answer: $x\""}, {"inputs", {"double"}}}}}};
  json wf = Call("POST", "/execution/submit", {{"plan", plan}, {"wait_ms", 60000}})["workflow"];
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  EXPECT_EQ(wf["result_json"]["shout"], "answer: 42\n");
}

TEST_F(WorkflowTest, ARequestIdMakesTheSubmitIdempotent) {
  StartFederation({{"a", "eu-west"}});
  json plan = {{"name", "once"}, {"steps", {{{"name", "s"}, {"run", "echo ran"}}}}};
  json first = Call("POST", "/execution/submit",
                    {{"plan", plan}, {"request_id", "job-7"}, {"wait_ms", 60000}})["workflow"];
  ASSERT_EQ(first["state"], "succeeded") << first.dump(1);
  // The repeat (a client whose answer was lost) names the same workflow and runs nothing.
  json again = Call("POST", "/execution/submit", {{"plan", plan}, {"request_id", "job-7"}})["workflow"];
  EXPECT_EQ(again["id"], first["id"]);
  EXPECT_EQ(again["state"], "succeeded");
  json other = Call("POST", "/execution/submit",
                    {{"plan", plan}, {"request_id", "job-8"}, {"wait_ms", 60000}})["workflow"];
  EXPECT_NE(other["id"], first["id"]);
  int status = 0;
  json bad = Call("POST", "/execution/submit", {{"plan", plan}, {"request_id", "a/b"}}, &status);
  EXPECT_EQ(status, 400);
  EXPECT_NE(bad["error"].get<std::string>().find("request_id"), std::string::npos) << bad.dump();
}

TEST_F(WorkflowTest, RedisBackedRun) {
  kv::testing::RedisServer redis;
  absl::Status st = redis.Start();
  if (absl::IsNotFound(st)) GTEST_SKIP() << "redis-server is not installed: " << st;
  ASSERT_TRUE(st.ok()) << st;
  h_.manager_config = "state: {backend: redis, redis_address: \"127.0.0.1:" +
                      std::to_string(redis.port()) + "\", redis_key_prefix: wftest}\n";
  StartFederation({{"a", "eu-west"}, {"b", "us-east"}});
  Deploy("fan", "fan", {{"splitable", true}});
  json wf = Run("fan", json::array({json::array({1000, 2000, 3000, 4000})}));
  ASSERT_EQ(wf["state"], "succeeded") << wf.dump(1);
  EXPECT_EQ(wf["result_json"].get<int64_t>(), Heavy(1000) + Heavy(2000) + Heavy(3000) + Heavy(4000));
  // The shared store is Redis: a value put through the API is in the server.
  json put = Call("POST", "/v1/queues/jobs/send", {{"message", "aGk="}});
  EXPECT_FALSE(put["id"].get<std::string>().empty());
  json got = Call("POST", "/v1/queues/jobs/receive", {{"group", "g"}, {"consumer", "c"}});
  ASSERT_EQ(got["messages"].size(), 1u) << got.dump();
  EXPECT_EQ(got["messages"][0]["message"], "aGk=");
}

TEST_F(WorkflowTest, ManagerKilledMidWorkflowResumesIt) {
  // A fixed gRPC port, so the agents find the restarted manager.
  h_.StartManager(3000, "127.0.0.1:0");
  const std::string grpc = h_.manager_address();
  for (const char* id : {"a", "b"}) {
    AgentSpec spec;
    spec.id = id;
    h_.StartAgent(spec);
  }
  ASSERT_TRUE(h_.WaitOnline(2));
  Deploy("slow_fan", "slow_fan", {{"splitable", true}});
  json wf = Call("POST", "/execution/submit",
                 {{"function", "slow_fan"}, {"args", {{1, 2, 3, 4}, 2}}})["workflow"];
  const std::string id = wf["id"];
  // Kill it once the fan-out is running.
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(30), [&] {
    json w = Call("GET", "/v1/workflows/" + id)["workflow"];
    for (const auto& p : w["pieces"]) {
      if (p["kind"] == "map" && p["state"] == "running") return true;
    }
    return false;
  }));
  h_.KillManager();
  h_.StartManager(3000, grpc);
  json done = Call("GET", "/v1/workflows/" + id + "?wait_ms=60000")["workflow"];
  ASSERT_EQ(done["state"], "succeeded") << done.dump(1) << h_.ReadLog("manager.log");
  EXPECT_EQ(done["result_json"], 100);
}

TEST_F(WorkflowTest, KeyValueStoreOverRest) {
  StartFederation({{"a", "eu-west"}});
  json put = Call("PUT", "/v1/kv/ns1/greeting", {{"value", "aGVsbG8="}});  // "hello"
  const int64_t v1 = put["version"];
  EXPECT_GT(v1, 0);
  json got = Call("GET", "/v1/kv/ns1/greeting");
  EXPECT_EQ(got["value"], "aGVsbG8=");
  EXPECT_EQ(got["version"], v1);
  int status = 0;
  json conflict = Call("PUT", "/v1/kv/ns1/greeting", {{"value", "eA=="}, {"if_version", v1 + 7}}, &status);
  EXPECT_EQ(status, 409);
  EXPECT_NE(conflict["error"].get<std::string>().find("version mismatch"), std::string::npos);
  json cas = Call("PUT", "/v1/kv/ns1/greeting", {{"value", "eA=="}, {"if_version", v1}});
  EXPECT_GT(cas["version"].get<int64_t>(), v1);
  json list = Call("GET", "/v1/kv/ns1?prefix=gr");
  ASSERT_EQ(list["entries"].size(), 1u);
  json watch = Call("GET", "/v1/kv/ns1?watch_prefix=&after=0&timeout_ms=10");
  EXPECT_EQ(watch["events"].size(), 2u) << watch.dump();
  Call("DELETE", "/v1/kv/ns1/greeting");
  Call("GET", "/v1/kv/ns1/greeting", nullptr, &status);
  EXPECT_EQ(status, 404);
  Call("PUT", "/v1/kv/ns1/bad", {{"value", "***"}}, &status);
  EXPECT_EQ(status, 400);
}

}  // namespace
}  // namespace flotilla::testing
