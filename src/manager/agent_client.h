// AgentClient: how the manager reaches an agent's AgentService. An interface
// so the manager's logic can be tested without agents.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "flotilla/v1/federation.pb.h"

namespace grpc {
class Channel;
class ChannelCredentials;
}

namespace flotilla::manager {

class AgentClient {
 public:
  virtual ~AgentClient() = default;
  // Sends the task; `done` runs on an unspecified thread once the agent
  // accepted it or the call failed. Never blocks.
  virtual void RequestTask(const flotilla::v1::RequestTaskRequest& request,
                           std::function<void(absl::Status)> done) = 0;
  // Sends several tasks in one call; `done` gets one status per task, in
  // order (all the call's error when the call itself failed). The default
  // sends them one by one.
  virtual void RequestTasks(const std::vector<flotilla::v1::RequestTaskRequest>& requests,
                            std::function<void(std::vector<absl::Status>)> done);
  virtual void CancelTask(const flotilla::v1::CancelTaskRequest& request,
                          std::function<void(absl::Status)> done) = 0;
};

// Where an agent is: the node it must prove to be (its certificate), and the
// address it registered.
struct AgentEndpoint {
  std::string node_id;
  std::string address;
};

class AgentClientFactory {
 public:
  virtual ~AgentClientFactory() = default;
  // Returns a client for node `node_id` at `address`; clients are cached and
  // shared. The connection is refused unless the server proves to be that
  // node (mutual TLS), so a node cannot take another's tasks by its address.
  virtual std::shared_ptr<AgentClient> For(const std::string& node_id,
                                           const std::string& address) = 0;
  // The gRPC channel behind For(), for the calls AgentClient does not cover
  // (migration); nullptr where there is none (test fakes).
  virtual std::shared_ptr<grpc::Channel> ChannelFor(const std::string& node_id,
                                                    const std::string& address) {
    return nullptr;
  }
};

// gRPC clients, one channel per node and address, with `credentials` (the
// manager's certificate, as the client side of mutual TLS). With
// `verify_node` the agent's certificate must name the node.
std::unique_ptr<AgentClientFactory> NewGrpcAgentClientFactory(
    std::shared_ptr<grpc::ChannelCredentials> credentials, bool verify_node);

}  // namespace flotilla::manager
