#include "cli/client.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "auth/tls.h"
#include "common/status_macros.h"
#include "cli/local_federation.h"
#include "common/ids.h"
#include "wire/channel.h"
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

// Reads a duration in milliseconds from the environment variable `name`.
absl::StatusOr<std::chrono::milliseconds> MsFromEnv(const char* name,
                                                   std::chrono::milliseconds fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(v, &ms) || ms < 10 || ms > 24 * 3600 * 1000) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": '", v, "' is not a number of milliseconds between 10 and 86400000"));
  }
  return std::chrono::milliseconds(ms);
}

}  // namespace

absl::StatusOr<WatchTiming> WatchTimingFromEnv() {
  WatchTiming t;
  ASSIGN_OR_RETURN(t.call_deadline, MsFromEnv("FLOTILLA_WATCH_DEADLINE_MS", t.call_deadline));
  ASSIGN_OR_RETURN(t.give_up_after, MsFromEnv("FLOTILLA_WATCH_GIVE_UP_MS", t.give_up_after));
  return t;
}

namespace {

std::unique_ptr<grpc::ClientContext> Ctx(int seconds = 10) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return ctx;
}

}  // namespace

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  auto text = auth::ReadSmallFile(path, 4096);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read the token file ", path));
  }
  std::string token(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("the token file ", path, " is empty"));
  return token;
}

absl::StatusOr<ClientSecurity> ResolveClientSecurity() {
  ClientSecurity s;
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? std::string(v) : std::string();
  };
  auto local = ReadLocalFederation(DefaultStateDir());
  if (env("FLOTILLA_INSECURE") == "1" || (local.ok() && local->insecure && env("FLOTILLA_CA").empty())) {
    s.insecure = true;
    return s;
  }
  s.ca_cert = env("FLOTILLA_CA");
  if (s.ca_cert.empty() && local.ok()) s.ca_cert = local->ca_cert;
  s.token = env("FLOTILLA_TOKEN");
  if (s.token.empty()) {
    std::string file = env("FLOTILLA_TOKEN_FILE");
    if (file.empty() && local.ok()) file = local->token_file;
    if (!file.empty()) {
      ASSIGN_OR_RETURN(s.token, ReadToken(file));
    }
  }
  if (s.ca_cert.empty()) {
    return absl::FailedPreconditionError(
        "no CA certificate to check the manager with: set FLOTILLA_CA (and FLOTILLA_TOKEN), or "
        "start a local federation with `flotilla up`");
  }
  if (s.token.empty()) {
    return absl::FailedPreconditionError(
        "no token: set FLOTILLA_TOKEN or FLOTILLA_TOKEN_FILE (an admin makes one with "
        "`flotilla user add`)");
  }
  return s;
}

Client::Client(std::string address, const ClientSecurity& security) : address_(std::move(address)) {
  auth::Transport t;
  t.insecure = security.insecure;
  t.files.ca_cert = security.ca_cert;
  auto creds = auth::ChannelCredentials(t, auth::kManagerName, security.token);
  // Unreadable files were found by ResolveClientSecurity; should one vanish
  // since, every call fails with this message (and no channel is made).
  if (!creds.ok()) {
    init_error_ = creds.status();
    return;
  }
  auto list = wire::ParseEndpointList(address_);
  if (!list.ok()) {
    init_error_ = list.status();
    return;
  }
  managers_ = std::make_unique<wire::Endpoints>(
      std::move(*list), [creds = *creds](const std::string& address) {
        return wire::NewChannel(address,
                                {.max_send_bytes = 256 << 20, .max_receive_bytes = 256 << 20},
                                creds.credentials, creds.peer_name);
      });
}

// Sends `call` to the manager that leads: on UNAVAILABLE (refused: a standby,
// or a leader that died) the next address is tried, each at most once. Every
// call here may be repeated: reads are, and Submit carries its request_id.
absl::Status Client::OnLeader(
    const std::function<grpc::Status(v1::ApiService::Stub&, grpc::ClientContext&)>& call,
    int deadline_s) {
  if (!init_error_.ok()) return init_error_;
  grpc::Status last;
  std::string tried;
  for (size_t i = 0; i < managers_->size(); ++i) {
    wire::Endpoints::Pick pick = managers_->Current();
    auto stub = v1::ApiService::NewStub(pick.channel);
    auto ctx = Ctx(deadline_s);
    last = call(*stub, *ctx);
    tried = pick.address;
    if (last.ok() || !wire::MovesToNextManager(last.error_code(), /*deadline_moves=*/false)) break;
    managers_->Failed(pick.index);
  }
  if (!last.ok() && managers_->size() > 1 &&
      wire::MovesToNextManager(last.error_code(), false)) {
    tried = absl::StrCat(managers_->Describe(), " (none leads)");
  }
  return wire::FromGrpcStatus(last, absl::StrCat("manager ", tried));
}

#define FLOTILLA_UNARY(Method, Req, Resp, Seconds)                                        \
  Resp resp;                                                                            \
  RETURN_IF_ERROR(OnLeader(                                                             \
      [&](v1::ApiService::Stub& stub, grpc::ClientContext& ctx) {                       \
        return stub.Method(&ctx, Req, &resp);                                           \
      },                                                                                \
      Seconds));                                                                        \
  return resp

absl::StatusOr<v1::SubmitResponse> Client::Submit(const v1::ExecutionRequest& r) {
  v1::SubmitRequest req;
  *req.mutable_request() = r;
  // Chosen here so that a retry on another manager (or of a call whose
  // answer was lost) finds the first one instead of running it twice.
  if (r.request_id().empty()) req.mutable_request()->set_request_id(NewId("ex-"));
  FLOTILLA_UNARY(Submit, req, v1::SubmitResponse, 10);
}

absl::StatusOr<v1::Execution> Client::Get(const std::string& id) {
  v1::GetRequest req;
  req.set_execution_id(id);
  FLOTILLA_UNARY(Get, req, v1::Execution, 10);
}

absl::StatusOr<v1::Execution> Client::Cancel(const std::string& id) {
  v1::CancelRequest req;
  req.set_execution_id(id);
  v1::CancelResponse resp;
  RETURN_IF_ERROR(OnLeader(
      [&](v1::ApiService::Stub& stub, grpc::ClientContext& ctx) {
        return stub.Cancel(&ctx, req, &resp);
      },
      10));
  return resp.execution();
}

absl::StatusOr<v1::CheckpointResponse> Client::Checkpoint(const std::string& id) {
  v1::CheckpointRequest req;
  req.set_execution_id(id);
  FLOTILLA_UNARY(Checkpoint, req, v1::CheckpointResponse, 300);  // a large sandbox's dump
}

absl::StatusOr<v1::MigrateResponse> Client::Migrate(const v1::MigrateRequest& req) {
  // Checkpoint, transfer and restore of a large sandbox.
  FLOTILLA_UNARY(Migrate, req, v1::MigrateResponse, 600);
}

absl::StatusOr<v1::ListNodesResponse> Client::ListNodes() {
  v1::ListNodesRequest req;
  FLOTILLA_UNARY(ListNodes, req, v1::ListNodesResponse, 10);
}

absl::StatusOr<v1::ListExecutionsResponse> Client::ListExecutions(
    const v1::ListExecutionsRequest& req) {
  FLOTILLA_UNARY(ListExecutions, req, v1::ListExecutionsResponse, 10);
}

#undef FLOTILLA_UNARY

absl::Status Client::Watch(const std::string& id, bool output, std::chrono::milliseconds deadline,
                           const std::function<void(const v1::WatchEvent&)>& on_event) {
  if (!init_error_.ok()) return init_error_;
  v1::WatchRequest req;
  req.set_execution_id(id);
  req.set_output(output);
  // One manager per call: the caller watches again after a failure (see
  // WatchTiming), and that call moves on if this manager was refused.
  wire::Endpoints::Pick pick = managers_->Current();
  auto stub = v1::ApiService::NewStub(pick.channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub->Watch(&ctx, req);
  v1::WatchEvent ev;
  while (reader->Read(&ev)) on_event(ev);
  grpc::Status st = reader->Finish();
  if (!st.ok() && wire::MovesToNextManager(st.error_code(), false)) managers_->Failed(pick.index);
  return wire::FromGrpcStatus(st, absl::StrCat("manager ", pick.address));
}

}  // namespace flotilla::cli
