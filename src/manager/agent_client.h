// AgentClient: how the manager reaches an agent's AgentService. An interface
// so the manager's logic can be tested without agents.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "flotilla/v1/federation.pb.h"

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

class AgentClientFactory {
 public:
  virtual ~AgentClientFactory() = default;
  // Returns a client for the agent at `address`; clients are cached and shared.
  virtual std::shared_ptr<AgentClient> ForAddress(const std::string& address) = 0;
};

// gRPC clients over insecure loopback/LAN channels, one channel per address.
std::unique_ptr<AgentClientFactory> NewGrpcAgentClientFactory();

}  // namespace flotilla::manager
