#include "cli/client.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "cli/local_federation.h"
#include "wire/grpc_status.h"

namespace flotilla::cli {

namespace v1 = ::flotilla::v1;

absl::StatusOr<std::string> ResolveManager(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("FLOTILLA_MANAGER"); env && *env) return std::string(env);
  auto local = ReadLocalFederation(DefaultStateDir());
  if (local.ok()) return local->manager_grpc;
  return absl::FailedPreconditionError(
      "no manager to talk to: start a local federation with `flotilla up`, or name one with "
      "--manager HOST:PORT or FLOTILLA_MANAGER");
}

namespace {

std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

}  // namespace

Client::Client(std::string address) : address_(std::move(address)) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  stub_ = v1::ApiService::NewStub(
      grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
}

#define FLOTILLA_UNARY(Method, Req, Resp)                                            \
  Resp resp;                                                                         \
  auto ctx = Ctx();                                                                  \
  grpc::Status st = stub_->Method(ctx.get(), Req, &resp);                            \
  if (!st.ok()) return wire::FromGrpcStatus(st, absl::StrCat("manager ", address_)); \
  return resp

absl::StatusOr<v1::SubmitResponse> Client::Submit(const v1::ExecutionRequest& r) {
  v1::SubmitRequest req;
  *req.mutable_request() = r;
  FLOTILLA_UNARY(Submit, req, v1::SubmitResponse);
}

absl::StatusOr<v1::Execution> Client::Get(const std::string& id) {
  v1::GetRequest req;
  req.set_execution_id(id);
  FLOTILLA_UNARY(Get, req, v1::Execution);
}

absl::StatusOr<v1::Execution> Client::Cancel(const std::string& id) {
  v1::CancelRequest req;
  req.set_execution_id(id);
  v1::CancelResponse resp;
  auto ctx = Ctx();
  grpc::Status st = stub_->Cancel(ctx.get(), req, &resp);
  if (!st.ok()) return wire::FromGrpcStatus(st, absl::StrCat("manager ", address_));
  return resp.execution();
}

absl::StatusOr<v1::CheckpointResponse> Client::Checkpoint(const std::string& id) {
  v1::CheckpointRequest req;
  req.set_execution_id(id);
  v1::CheckpointResponse resp;
  auto ctx = Ctx(300);  // a dump of a large sandbox takes a while
  grpc::Status st = stub_->Checkpoint(ctx.get(), req, &resp);
  if (!st.ok()) return wire::FromGrpcStatus(st, absl::StrCat("manager ", address_));
  return resp;
}

absl::StatusOr<v1::MigrateResponse> Client::Migrate(const v1::MigrateRequest& req) {
  v1::MigrateResponse resp;
  auto ctx = Ctx(600);  // checkpoint, transfer and restore of a large sandbox
  grpc::Status st = stub_->Migrate(ctx.get(), req, &resp);
  if (!st.ok()) return wire::FromGrpcStatus(st, absl::StrCat("manager ", address_));
  return resp;
}

absl::StatusOr<v1::ListNodesResponse> Client::ListNodes() {
  v1::ListNodesRequest req;
  FLOTILLA_UNARY(ListNodes, req, v1::ListNodesResponse);
}

absl::StatusOr<v1::ListExecutionsResponse> Client::ListExecutions(
    const v1::ListExecutionsRequest& req) {
  FLOTILLA_UNARY(ListExecutions, req, v1::ListExecutionsResponse);
}

#undef FLOTILLA_UNARY

absl::Status Client::Watch(const std::string& id, bool output,
                           const std::function<void(const v1::WatchEvent&)>& on_event) {
  v1::WatchRequest req;
  req.set_execution_id(id);
  req.set_output(output);
  grpc::ClientContext ctx;  // no deadline: executions may run for hours
  auto reader = stub_->Watch(&ctx, req);
  v1::WatchEvent ev;
  while (reader->Read(&ev)) on_event(ev);
  return wire::FromGrpcStatus(reader->Finish(), absl::StrCat("manager ", address_));
}

}  // namespace flotilla::cli
