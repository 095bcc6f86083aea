// Tests of the function registry (src/manager/functions.cc) on a real
// SQLite store, and of the runner result parser (orchestrator.h).

#include "manager/functions.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/orchestrator.h"
#include "store/store.h"

namespace flotilla::manager {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::unique_ptr<store::Store> Store() {
  auto s = store::OpenSqliteStore(":memory:", store::Durability::kProcessCrash);
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

json Spec(const std::string& source = "def f(x):\n    return x\n") {
  return {{"name", "f"}, {"source", source}, {"entrypoint", "f"}};
}

TEST(FunctionRegistryTest, DeployVersionsOnlyWhenTheCodeChanges) {
  auto store = Store();
  FunctionRegistry reg(store.get());
  auto v1 = reg.Deploy(Spec(), 100);
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->sha256.size(), 64u);
  auto same = reg.Deploy(Spec(), 200);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->version, 1);
  EXPECT_EQ(same->created_unix_ms, 100);
  auto v2 = reg.Deploy(Spec("def f(x):\n    return x + 1\n"), 300);
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, 2);
  EXPECT_NE(v2->sha256, v1->sha256);
  auto list = reg.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u) << "old versions are kept but not listed";
  EXPECT_EQ((*list)[0].version, 2);
  EXPECT_TRUE(reg.Delete("f").ok());
  EXPECT_TRUE(absl::IsNotFound(reg.Get("f").status()));
  EXPECT_TRUE(absl::IsNotFound(reg.Delete("f")));
  auto docs = store->ListDocuments("function");
  ASSERT_TRUE(docs.ok());
  EXPECT_TRUE(docs->empty()) << "delete removes the old versions too";
}

TEST(FunctionRegistryTest, AnnotationsMergeAndParseUnits) {
  auto store = Store();
  FunctionRegistry reg(store.get());
  json spec = Spec();
  spec["annotations"] = {{"splitable", true}, {"geo_preference", "eu-west"}};
  ASSERT_TRUE(reg.Deploy(spec, 1).ok());
  auto f = reg.UpdateAnnotations(
      "f", {{"resource_constraint", {{"memory", "256Mi"}, {"timeout", "30s"}, {"cpu", "500m"}}}}, 2);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE(f->annotations.splitable);  // untouched keys stay
  EXPECT_EQ(f->annotations.geo_preference, std::vector<std::string>{"eu-west"});
  EXPECT_EQ(f->annotations.memory_bytes, 256ll << 20);
  EXPECT_EQ(f->annotations.timeout_ms, 30000);
  EXPECT_EQ(f->annotations.cpu_millis, 500);
  EXPECT_EQ(f->version, 1) << "an annotation update is not a redeploy";
  // A redeploy of the same code without annotations keeps them.
  auto again = reg.Deploy(Spec(), 3);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->annotations.memory_bytes, 256ll << 20);
}

TEST(FunctionRegistryTest, BadInputSaysWhatIsWrong) {
  auto store = Store();
  FunctionRegistry reg(store.get());
  json bad = Spec();
  bad["name"] = "no spaces";
  EXPECT_THAT(reg.Deploy(bad, 1).status().message(), HasSubstr("is not valid"));
  bad = Spec();
  bad["runtime"] = "ruby";
  EXPECT_THAT(reg.Deploy(bad, 1).status().message(), HasSubstr("not supported"));
  bad = Spec();
  bad["entrypoint"] = "1f";
  EXPECT_THAT(reg.Deploy(bad, 1).status().message(), HasSubstr("entrypoint"));
  bad = Spec("");
  EXPECT_THAT(reg.Deploy(bad, 1).status().message(), HasSubstr("empty"));
  ASSERT_TRUE(reg.Deploy(Spec(), 1).ok());
  EXPECT_THAT(reg.UpdateAnnotations("f", {{"colour", 1}}, 2).status().message(),
              HasSubstr("unknown annotation 'colour'"));
  EXPECT_THAT(reg.UpdateAnnotations("f", {{"resource_constraint", {{"memory", "lots"}}}}, 2)
                  .status()
                  .message(),
              HasSubstr("resource_constraint.memory"));
  EXPECT_THAT(reg.UpdateAnnotations("f", {{"splitable", "yes"}}, 2).status().message(),
              HasSubstr("true or false"));
  EXPECT_THAT(reg.UpdateAnnotations("f", {{"resource_constraint", {{"disk", 1}}}}, 2).status().message(),
              HasSubstr("unknown key 'disk'"));
}

TEST(RunnerResultTest, TakesTheLastMarkerLine) {
  std::string out = "user print\n\x1e" "FLOTILLA-RESULT {\"ok\": false}\nmore\n\x1e" "FLOTILLA-RESULT {\"ok\": true, \"x\": 1}\n";
  auto j = ParseRunnerResult(out);
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_TRUE((*j)["ok"].get<bool>());
  EXPECT_EQ((*j)["x"], 1);
  EXPECT_FALSE(ParseRunnerResult("no marker\n").ok());
  EXPECT_FALSE(ParseRunnerResult("\x1e" "FLOTILLA-RESULT not json\n").ok());
}

}  // namespace
}  // namespace flotilla::manager
