// The gRPC FunctionService end to end: a real manager and a real agent
// (Linux sandboxes), a splitable Python function deployed, annotated and
// called over gRPC, and errors that keep their code and message.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "flotilla/v1/functions.grpc.pb.h"
#include "gtest/gtest.h"
#include "support/federation_harness.h"
#include "support/workflow_module.h"

namespace flotilla::testing {
namespace {

using nlohmann::json;


class FunctionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
    h_.StartManager(/*lease_timeout_ms=*/3000);
    AgentSpec spec;
    spec.id = "eu";
    spec.region = "eu-west";
    h_.StartAgent(spec);
    ASSERT_TRUE(h_.WaitOnline(1));
    stub_ = v1::FunctionService::NewStub(
        h_.UserChannel(h_.token()));
  }

  static std::unique_ptr<grpc::ClientContext> Context(std::chrono::seconds timeout) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + timeout);
    return ctx;
  }

  FederationHarness h_;
  std::unique_ptr<v1::FunctionService::Stub> stub_;
};

TEST_F(FunctionServiceTest, DeployAnnotateAndCallOverGrpc) {
  v1::DeployFunctionRequest deploy;
  deploy.set_name("fan");
  deploy.set_source(kModule);
  deploy.set_entrypoint("fan");
  deploy.set_description("sum of squares");
  deploy.mutable_annotations()->set_splitable(true);
  deploy.mutable_annotations()->mutable_resource_constraint()->set_timeout_ms(60'000);
  v1::Function f;
  grpc::Status st = stub_->DeployFunction(Context(std::chrono::seconds(10)).get(), deploy, &f);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(f.name(), "fan");
  EXPECT_EQ(f.version(), 1);
  EXPECT_EQ(f.runtime(), "python3");
  EXPECT_EQ(f.template_(), "python");
  EXPECT_TRUE(f.annotations().splitable());
  EXPECT_EQ(f.annotations().resource_constraint().timeout_ms(), 60'000);
  EXPECT_EQ(f.sha256().size(), 64u);
  EXPECT_TRUE(f.source().empty()) << "a deploy answers without the source";

  v1::GetFunctionRequest get;
  get.set_name("fan");
  st = stub_->GetFunction(Context(std::chrono::seconds(10)).get(), get, &f);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(f.source(), kModule);
  EXPECT_EQ(f.description(), "sum of squares");

  v1::UpdateAnnotationsRequest annotate;
  annotate.set_function("fan");
  annotate.set_annotations_json(R"({"geo_preference": ["eu-west"], "resource_constraint": {"memory": "256Mi"}})");
  st = stub_->UpdateAnnotations(Context(std::chrono::seconds(10)).get(), annotate, &f);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(f.annotations().geo_preference_size(), 1);
  EXPECT_EQ(f.annotations().geo_preference(0), "eu-west");
  EXPECT_EQ(f.annotations().resource_constraint().memory_bytes(), 256 << 20);
  EXPECT_TRUE(f.annotations().splitable()) << "keys not named stay";
  EXPECT_EQ(f.version(), 1) << "an annotation update is not a redeploy";

  json xs = json::array();
  int64_t expected = 0;
  for (int i = 1; i <= 4; ++i) {
    xs.push_back(5000 * i);
    expected += Heavy(5000 * i);
  }
  v1::SubmitCallRequest call;
  call.set_function("fan");
  call.set_args_json(json::array({xs}).dump());
  call.set_wait_ms(90'000);
  v1::Workflow wf;
  st = stub_->SubmitCall(Context(std::chrono::seconds(120)).get(), call, &wf);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(wf.state(), "succeeded") << wf.DebugString();
  EXPECT_EQ(wf.kind(), "call");
  EXPECT_EQ(wf.function(), "fan");
  EXPECT_FALSE(wf.pieces().empty());
  EXPECT_EQ(json::parse(wf.result_json()).get<int64_t>(), expected) << wf.DebugString();
  EXPECT_EQ(wf.result().encoding(), "json");

  // The same workflow, read back by id.
  v1::GetWorkflowRequest again;
  again.set_id(wf.id());
  v1::Workflow read;
  st = stub_->GetWorkflow(Context(std::chrono::seconds(10)).get(), again, &read);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(read.state(), "succeeded");
  EXPECT_EQ(read.result_json(), wf.result_json());

  // A finished workflow cannot be cancelled.
  v1::CancelWorkflowRequest cancel;
  cancel.set_id(wf.id());
  st = stub_->CancelWorkflow(Context(std::chrono::seconds(10)).get(), cancel, &read);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << st.error_message();

  v1::ListFunctionsResponse list;
  st = stub_->ListFunctions(Context(std::chrono::seconds(10)).get(), v1::ListFunctionsRequest(), &list);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(list.functions_size(), 1);
  EXPECT_EQ(list.functions(0).name(), "fan");
}

TEST_F(FunctionServiceTest, ErrorsKeepTheirCodeAndMessage) {
  v1::SubmitCallRequest call;
  call.set_function("nosuch");
  v1::Workflow wf;
  grpc::Status st = stub_->SubmitCall(Context(std::chrono::seconds(10)).get(), call, &wf);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("nosuch"), std::string::npos) << st.error_message();

  v1::GetFunctionRequest get;
  get.set_name("nosuch");
  v1::Function f;
  st = stub_->GetFunction(Context(std::chrono::seconds(10)).get(), get, &f);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("nosuch"), std::string::npos) << st.error_message();

  v1::DeployFunctionRequest deploy;
  deploy.set_name("bad name!");
  deploy.set_source("def f():\n    return 1\n");
  deploy.set_entrypoint("f");
  st = stub_->DeployFunction(Context(std::chrono::seconds(10)).get(), deploy, &f);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("bad name!"), std::string::npos) << st.error_message();

  v1::SubmitCallRequest bad_args;
  bad_args.set_function("nosuch");
  bad_args.set_args_json("[1,");
  st = stub_->SubmitCall(Context(std::chrono::seconds(10)).get(), bad_args, &wf);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("args_json"), std::string::npos) << st.error_message();

  v1::GetWorkflowRequest missing;
  missing.set_id("wf-nosuch");
  st = stub_->GetWorkflow(Context(std::chrono::seconds(10)).get(), missing, &wf);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND) << st.error_message();
}

}  // namespace
}  // namespace flotilla::testing
