#include "manager/agent_client.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <mutex>

#include "flotilla/v1/federation.grpc.pb.h"
#include "wire/channel.h"
#include "wire/grpc_status.h"

namespace flotilla::manager {

namespace {

constexpr auto kCallTimeout = std::chrono::seconds(5);

class GrpcAgentClient final : public AgentClient {
 public:
  GrpcAgentClient(std::string address, std::shared_ptr<grpc::Channel> channel)
      : address_(std::move(address)), stub_(flotilla::v1::AgentService::NewStub(channel)) {}

  void RequestTask(const flotilla::v1::RequestTaskRequest& request,
                   std::function<void(absl::Status)> done) override {
    Call<flotilla::v1::RequestTaskRequest, flotilla::v1::RequestTaskResponse>(
        request, std::move(done), "RequestTask",
        [this](auto* ctx, auto* req, auto* resp, auto cb) {
          stub_->async()->RequestTask(ctx, req, resp, std::move(cb));
        });
  }

  void CancelTask(const flotilla::v1::CancelTaskRequest& request,
                  std::function<void(absl::Status)> done) override {
    Call<flotilla::v1::CancelTaskRequest, flotilla::v1::CancelTaskResponse>(
        request, std::move(done), "CancelTask",
        [this](auto* ctx, auto* req, auto* resp, auto cb) {
          stub_->async()->CancelTask(ctx, req, resp, std::move(cb));
        });
  }

 private:
  // Keeps the context and messages alive until gRPC's callback runs.
  template <typename Req, typename Resp, typename Start>
  void Call(const Req& request, std::function<void(absl::Status)> done, const char* name,
            Start start) {
    struct State {
      grpc::ClientContext ctx;
      Req req;
      Resp resp;
    };
    auto state = std::make_shared<State>();
    state->req = request;
    state->ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    std::string context = std::string(name) + " to " + address_;
    start(&state->ctx, &state->req, &state->resp,
          [state, done = std::move(done), context](grpc::Status st) {
            done(wire::FromGrpcStatus(st, context));
          });
  }

  std::string address_;
  std::unique_ptr<flotilla::v1::AgentService::Stub> stub_;
};

class GrpcAgentClientFactory final : public AgentClientFactory {
 public:
  std::shared_ptr<AgentClient> ForAddress(const std::string& address) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& client = clients_[address];
    if (!client) {
      auto channel =
          wire::NewChannel(address, {.max_send_bytes = 64 << 20, .max_receive_bytes = 64 << 20});
      client = std::make_shared<GrpcAgentClient>(address, channel);
    }
    return client;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<AgentClient>> clients_;
};

}  // namespace

std::unique_ptr<AgentClientFactory> NewGrpcAgentClientFactory() {
  return std::make_unique<GrpcAgentClientFactory>();
}

}  // namespace flotilla::manager
