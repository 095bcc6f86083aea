// Tenancy rules and the HTTP guard, on plain values.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/access.h"
#include "manager/http_guard.h"
#include "manager/tenant_limits.h"

namespace flotilla::manager {
namespace {

auth::Caller UserOf(const std::string& name, const std::string& tenant, bool admin = false) {
  auth::Caller c;
  c.user = {name, tenant, admin ? auth::UserRole::kAdmin : auth::UserRole::kUser};
  return c;
}

TEST(AccessTest, SubmitsAreStampedWithTheCallerAndTheirIdsQualified) {
  v1::ExecutionRequest r;
  r.set_user_id("someone-else");
  r.set_owner("mallory");
  r.set_request_id("job");
  ASSERT_TRUE(StampSubmit(UserOf("alice", "acme"), &r).ok());
  EXPECT_EQ(r.user_id(), "acme");
  EXPECT_EQ(r.owner(), "alice");
  EXPECT_EQ(r.request_id(), "acme:job");
  v1::ExecutionRequest d;
  d.set_request_id("job");
  ASSERT_TRUE(StampSubmit(UserOf("admin", "default", true), &d).ok());
  EXPECT_EQ(d.request_id(), "job");
  v1::ExecutionRequest bad;
  bad.set_request_id("beta:job");
  EXPECT_EQ(StampSubmit(UserOf("alice", "acme"), &bad).code(), absl::StatusCode::kInvalidArgument);
}

TEST(AccessTest, WorkflowIdsAreReservedForTheOrchestrator) {
  // A workflow's execution ids follow from its request id: a user taking one
  // first would hand the workflow a result of theirs.
  for (const char* id : {"wf-r0123.piece.t0.1", "an-1"}) {
    v1::ExecutionRequest r;
    r.set_request_id(id);
    absl::Status st = StampSubmit(UserOf("eve", "default"), &r);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_NE(st.message().find("reserved for workflows"), absl::string_view::npos) << st;
  }
  v1::ExecutionRequest ok;
  ok.set_request_id("wfx-1");
  EXPECT_TRUE(StampSubmit(UserOf("eve", "default"), &ok).ok());
}

TEST(AccessTest, FunctionNamesAreQualifiedByTheTenant) {
  const auth::Caller alice = UserOf("alice", "acme");
  const auth::Caller dflt = UserOf("dan", "default");
  const auth::Caller admin = UserOf("admin", "default", true);
  EXPECT_EQ(*QualifiedName(alice, "f"), "acme~f");
  EXPECT_EQ(*QualifiedName(dflt, "f"), "f");
  EXPECT_EQ(*QualifiedName(admin, "f"), "f");
  // Only an admin names another tenant's, and never tenant default's so.
  EXPECT_EQ(QualifiedName(alice, "beta~f").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QualifiedName(dflt, "acme~f").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*QualifiedName(admin, "acme~f"), "acme~f");
  for (const char* bad : {"default~f", "~f", "acme~", "a~b~c", ""}) {
    EXPECT_FALSE(QualifiedName(admin, bad).ok()) << bad;
  }
  EXPECT_EQ(TenantOfName("acme~f"), "acme");
  EXPECT_EQ(TenantOfName("f"), "default");
  EXPECT_EQ(DisplayName(alice, "acme~f"), "f");
  EXPECT_EQ(DisplayName(dflt, "f"), "f");
  EXPECT_EQ(DisplayName(admin, "acme~f"), "acme~f");
  EXPECT_EQ(ListedTenant(alice), std::optional<std::string>("acme"));
  EXPECT_EQ(ListedTenant(admin), std::nullopt);
}

TEST(AccessTest, IdsResolveWithinTheTenantAndOthersAreNotFound) {
  EXPECT_EQ(CandidateIds(UserOf("alice", "acme"), "job"),
            (std::vector<std::string>{"acme:job", "job"}));
  EXPECT_EQ(CandidateIds(UserOf("alice", "acme"), "acme:job"), (std::vector<std::string>{"acme:job"}));
  EXPECT_EQ(CandidateIds(UserOf("admin", "default", true), "job"), (std::vector<std::string>{"job"}));
  v1::Execution e;
  e.mutable_request()->set_user_id("acme");
  EXPECT_TRUE(CheckAccess(UserOf("alice", "acme"), e, "x").ok());
  EXPECT_EQ(CheckAccess(UserOf("bob", "beta"), e, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(CheckAccess(UserOf("root", "ops", true), e, "x").ok());
  auth::Caller node;
  node.kind = auth::Caller::Kind::kNode;
  node.node_id = "n1";
  EXPECT_EQ(CheckAccess(node, e, "x").code(), absl::StatusCode::kNotFound);
}

TEST(AccessTest, EnvIsTheOwnersAndSecretFilesNobodys) {
  v1::ExecutionRequest r;
  r.set_owner("alice");
  (*r.mutable_env())["TOKEN"] = "s3cr3t";
  auto* secret = r.mutable_dependencies()->add_files();
  secret->set_content("key");
  secret->set_secret(true);
  auto* plain = r.mutable_dependencies()->add_files();
  plain->set_content("data");
  v1::ExecutionRequest own = r, other = r, admin = r;
  Redact(UserOf("alice", "acme"), &own);
  EXPECT_EQ(own.env().at("TOKEN"), "s3cr3t");
  EXPECT_EQ(own.dependencies().files(0).content(), "<redacted>");
  EXPECT_EQ(own.dependencies().files(1).content(), "data");
  Redact(UserOf("bob", "acme"), &other);
  EXPECT_EQ(other.env().at("TOKEN"), "<redacted>");
  Redact(UserOf("root", "default", true), &admin);
  EXPECT_EQ(admin.env().at("TOKEN"), "<redacted>");
}

TEST(HttpGuardTest, HostMustNameThisServer) {
  EXPECT_TRUE(CheckHost("127.0.0.1:7071", "127.0.0.1", 7071).ok());
  EXPECT_TRUE(CheckHost("localhost:7071", "127.0.0.1", 7071).ok());
  EXPECT_TRUE(CheckHost("[::1]:7071", "127.0.0.1", 7071).ok());
  EXPECT_FALSE(CheckHost("evil.example:7071", "127.0.0.1", 7071).ok());
  EXPECT_FALSE(CheckHost("127.0.0.1:80", "127.0.0.1", 7071).ok());
  EXPECT_FALSE(CheckHost("127.0.0.1", "127.0.0.1", 7071).ok());
  EXPECT_FALSE(CheckHost("", "127.0.0.1", 7071).ok());
  EXPECT_TRUE(CheckHost("mgr.lan:7071", "0.0.0.0", 7071).ok());
  EXPECT_TRUE(CheckHost("MGR.lan:7071", "mgr.lan", 7071).ok());
}

TEST(HttpGuardTest, OnlySameOriginBrowsersAndJsonBodies) {
  EXPECT_TRUE(CheckOrigin("", "127.0.0.1:7071").ok());
  EXPECT_TRUE(CheckOrigin("http://127.0.0.1:7071", "127.0.0.1:7071").ok());
  EXPECT_EQ(CheckOrigin("http://evil.example", "127.0.0.1:7071").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(CheckOrigin("null", "127.0.0.1:7071").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(CheckContentType("POST", "application/json; charset=utf-8", 10).ok());
  EXPECT_TRUE(CheckContentType("GET", "", 0).ok());
  EXPECT_TRUE(CheckContentType("DELETE", "", 0).ok());
  EXPECT_FALSE(CheckContentType("POST", "text/plain", 10).ok());
  EXPECT_FALSE(CheckContentType("POST", "application/x-www-form-urlencoded", 3).ok());
  EXPECT_FALSE(CheckContentType("PUT", "", 5).ok());
}

TEST(HttpGuardTest, NestingIsCountedOutsideStringsOnly) {
  EXPECT_FALSE(JsonTooDeep(R"({"a":[[1],[2]]})", 3));
  EXPECT_TRUE(JsonTooDeep(R"({"a":[[[1]]]})", 3));
  EXPECT_FALSE(JsonTooDeep(R"({"a":"[[[[[[[[[["})", 2));
  EXPECT_FALSE(JsonTooDeep(R"({"a":"\"[[[[[[["})", 2));
  EXPECT_TRUE(JsonTooDeep(std::string(100000, '['), 64));
  EXPECT_FALSE(JsonTooDeep(std::string(100000, ']'), 64));
}

TEST(WaitSlotsTest, BoundsWaitersAndFreesOnRelease) {
  WaitSlots slots(2);
  auto a = slots.Take();
  auto b = slots.Take();
  EXPECT_TRUE(a && b);
  EXPECT_FALSE(slots.Take());
  { auto moved = std::move(a); }
  EXPECT_TRUE(slots.Take());
}

}  // namespace
}  // namespace flotilla::manager

namespace flotilla::manager {
namespace {

TEST(TenantLimitsTest, BoundsUnfinishedExecutionsPerTenant) {
  TenantLimits limits({.max_unfinished = 2});
  EXPECT_TRUE(limits.Admit("acme", 0).ok());
  EXPECT_TRUE(limits.Admit("acme", 0).ok());
  absl::Status st = limits.Admit("acme", 0);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("tenant_max_unfinished"), absl::string_view::npos) << st;
  EXPECT_TRUE(limits.Admit("beta", 0).ok());  // another tenant is not held up
  limits.Finished("acme");
  EXPECT_TRUE(limits.Admit("acme", 0).ok());
  limits.Restore("gamma");
  limits.Restore("gamma");
  EXPECT_FALSE(limits.Admit("gamma", 0).ok());
  limits.Finished("nobody");  // harmless
  EXPECT_EQ(limits.Unfinished("nobody"), 0);
}

TEST(TenantLimitsTest, RateLimitsSubmissionsWithABurst) {
  TenantLimits limits({.max_unfinished = 0, .submits_per_second = 10, .burst = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limits.Admit("acme", 1000).ok()) << i;
  absl::Status st = limits.Admit("acme", 1000);
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("retry in"), absl::string_view::npos) << st;
  EXPECT_TRUE(limits.Admit("beta", 1000).ok());
  EXPECT_TRUE(limits.Admit("acme", 1100).ok());  // 100 ms at 10/s: one more
  EXPECT_FALSE(limits.Admit("acme", 1100).ok());
  EXPECT_EQ(limits.Unfinished("acme"), 4);
}

}  // namespace
}  // namespace flotilla::manager

namespace flotilla::manager {
namespace {

TEST(TenantLimitsTest, CpuAndMemoryQuotasHoldPlacedWorkPerTenant) {
  TenantLimits limits({.max_cpu_millis = 1000, .max_memory_bytes = 1ll << 30});
  const model::Resources r{.cpu_millis = 600, .memory_bytes = 256ll << 20};
  EXPECT_TRUE(limits.CheckRequest("acme", r).ok());
  EXPECT_EQ(limits.WhyNotPlaceable("acme", r), "");
  limits.Place("acme", r);
  const std::string why = limits.WhyNotPlaceable("acme", r);
  EXPECT_THAT(why, ::testing::HasSubstr("limits.tenant_max_cpu_millis")) << why;
  EXPECT_THAT(why, ::testing::HasSubstr("600m CPU of its 1000m CPU")) << why;
  // Other tenants are not affected.
  EXPECT_EQ(limits.WhyNotPlaceable("other", r), "");
  // Memory is its own bound.
  const model::Resources big_mem{.cpu_millis = 100, .memory_bytes = 900ll << 20};
  EXPECT_THAT(limits.WhyNotPlaceable("acme", big_mem),
              ::testing::HasSubstr("limits.tenant_max_memory_bytes"));
  limits.Unplace("acme", r);
  EXPECT_EQ(limits.WhyNotPlaceable("acme", r), "");
  EXPECT_EQ(limits.Placed("acme").cpu_millis, 0);
  // A request larger than the whole quota can never run: refused outright.
  absl::Status st = limits.CheckRequest("acme", {.cpu_millis = 1500});
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), ::testing::HasSubstr("could never run"));
  EXPECT_EQ(limits.CheckRequest("acme", {.memory_bytes = 2ll << 30}).code(),
            absl::StatusCode::kInvalidArgument);
  // No quota: anything goes.
  TenantLimits none;
  EXPECT_TRUE(none.CheckRequest("acme", {.cpu_millis = 1 << 30}).ok());
  EXPECT_EQ(none.WhyNotPlaceable("acme", {.cpu_millis = 1 << 30}), "");
}

}  // namespace
}  // namespace flotilla::manager
