#include "manager/prewarmer.h"

#include <gtest/gtest.h>

#include "flotilla/v1/types.pb.h"

namespace flotilla::manager {
namespace {

v1::ExecutionRequest Python(const std::string& function) {
  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("python3");
  r.mutable_code()->set_source("print(1)");
  r.set_function(function);
  return r;
}

TEST(PrewarmerTest, TemplateOfFollowsTheAgentsChoice) {
  EXPECT_EQ(Prewarmer::TemplateOf(Python("")), "python");
  v1::ExecutionRequest sh;
  sh.mutable_code()->add_argv("true");
  EXPECT_EQ(Prewarmer::TemplateOf(sh), "shell");
  sh.set_template_name("ml");
  EXPECT_EQ(Prewarmer::TemplateOf(sh), "ml");
}

TEST(PrewarmerTest, BusyTemplateGetsATargetSplitOverNodes) {
  Prewarmer p;
  const int64_t t0 = 1'700'000'000'000;
  // 3/s for a minute: the reactive floor alone asks for several idle.
  for (int i = 0; i < 180; ++i) p.RecordInvocation(Python("resize"), t0 + i * 333);
  auto one = p.TargetsFor(t0 + 60'000, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].template_name(), "python");
  EXPECT_GE(one[0].min_idle(), 3);
  EXPECT_FALSE(one[0].reason().empty());
  auto three = p.TargetsFor(t0 + 60'000, 3);
  ASSERT_EQ(three.size(), 1u);
  EXPECT_EQ(three[0].min_idle(), (one[0].min_idle() + 2) / 3);
  // The function is forecast too.
  bool function_seen = false;
  for (const auto& t : p.LastPlan()) function_seen |= t.key == "function:resize";
  EXPECT_TRUE(function_seen);
}

TEST(PrewarmerTest, ExternalTargetsMergeByMaximumAndCanBeCleared) {
  Prewarmer p;
  const int64_t t0 = 1'700'000'000'000;
  EXPECT_TRUE(p.TargetsFor(t0, 1).empty());
  p.SetExternalTarget("python", "autoscale fn=resize", 6, "4 instances busy");
  auto t = p.TargetsFor(t0 + 1, 1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].min_idle(), 6);
  EXPECT_NE(t[0].reason().find("autoscale fn=resize"), std::string::npos);
  p.SetExternalTarget("python", "autoscale fn=resize", 0, "");
  EXPECT_TRUE(p.TargetsFor(t0 + 2, 1).empty());
}

}  // namespace
}  // namespace flotilla::manager
