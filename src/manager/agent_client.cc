#include "manager/agent_client.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <mutex>

#include "auth/pki.h"
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

  void RequestTasks(const std::vector<flotilla::v1::RequestTaskRequest>& requests,
                    std::function<void(std::vector<absl::Status>)> done) override {
    flotilla::v1::RequestTasksRequest batch;
    for (const auto& r : requests) *batch.add_tasks() = r;
    auto resp = std::make_shared<flotilla::v1::RequestTasksResponse>();
    const size_t n = requests.size();
    CallWithResponse<flotilla::v1::RequestTasksRequest, flotilla::v1::RequestTasksResponse>(
        batch, resp, "RequestTasks",
        [this](auto* ctx, auto* req, auto* r, auto cb) {
          stub_->async()->RequestTasks(ctx, req, r, std::move(cb));
        },
        [done = std::move(done), n](absl::Status st, const flotilla::v1::RequestTasksResponse& r) {
          std::vector<absl::Status> out(n, st);
          if (st.ok()) {
            for (size_t i = 0; i < n; ++i) {
              if (static_cast<int>(i) >= r.accepted_size()) {
                out[i] = absl::InternalError("the agent's answer is missing this task");
                continue;
              }
              const auto& a = r.accepted(static_cast<int>(i));
              out[i] = absl::Status(static_cast<absl::StatusCode>(a.code()), a.message());
            }
          }
          done(std::move(out));
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

  // As Call, but hands the response to `done` too.
  template <typename Req, typename Resp, typename Start, typename Done>
  void CallWithResponse(const Req& request, std::shared_ptr<Resp> resp, const char* name,
                        Start start, Done done) {
    struct State {
      grpc::ClientContext ctx;
      Req req;
    };
    auto state = std::make_shared<State>();
    state->req = request;
    state->ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    std::string context = std::string(name) + " to " + address_;
    start(&state->ctx, &state->req, resp.get(),
          [state, resp, done = std::move(done), context](grpc::Status st) mutable {
            done(wire::FromGrpcStatus(st, context), *resp);
          });
  }

  std::string address_;
  std::unique_ptr<flotilla::v1::AgentService::Stub> stub_;
};

}  // namespace

void AgentClient::RequestTasks(const std::vector<flotilla::v1::RequestTaskRequest>& requests,
                               std::function<void(std::vector<absl::Status>)> done) {
  struct Pending {
    std::mutex mu;
    std::vector<absl::Status> out;
    size_t left;
    std::function<void(std::vector<absl::Status>)> done;
  };
  auto p = std::make_shared<Pending>();
  p->out.resize(requests.size());
  p->left = requests.size();
  p->done = std::move(done);
  if (requests.empty()) {
    p->done({});
    return;
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    RequestTask(requests[i], [p, i](absl::Status st) {
      std::vector<absl::Status> all;
      {
        std::lock_guard<std::mutex> lock(p->mu);
        p->out[i] = std::move(st);
        if (--p->left > 0) return;
        all = std::move(p->out);
      }
      p->done(std::move(all));
    });
  }
}

namespace {

class GrpcAgentClientFactory final : public AgentClientFactory {
 public:
  GrpcAgentClientFactory(std::shared_ptr<grpc::ChannelCredentials> credentials, bool verify_node)
      : credentials_(std::move(credentials)), verify_node_(verify_node) {}

  std::shared_ptr<AgentClient> For(const std::string& node_id, const std::string& address) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto& client = clients_[{node_id, address}];
    if (!client) client = std::make_shared<GrpcAgentClient>(address, ChannelLocked(node_id, address));
    return client;
  }

  std::shared_ptr<grpc::Channel> ChannelFor(const std::string& node_id,
                                            const std::string& address) override {
    std::lock_guard<std::mutex> lock(mu_);
    return ChannelLocked(node_id, address);
  }

 private:
  std::shared_ptr<grpc::Channel> ChannelLocked(const std::string& node_id,
                                               const std::string& address) {
    auto& channel = channels_[{node_id, address}];
    if (!channel) {
      channel = wire::NewChannel(address, {.max_send_bytes = 64 << 20, .max_receive_bytes = 64 << 20},
                                 credentials_, verify_node_ ? auth::NodeName(node_id) : "");
    }
    return channel;
  }

  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const bool verify_node_;
  std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<AgentClient>> clients_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<grpc::Channel>> channels_;
};

}  // namespace

std::unique_ptr<AgentClientFactory> NewGrpcAgentClientFactory(
    std::shared_ptr<grpc::ChannelCredentials> credentials, bool verify_node) {
  return std::make_unique<GrpcAgentClientFactory>(std::move(credentials), verify_node);
}

}  // namespace flotilla::manager
