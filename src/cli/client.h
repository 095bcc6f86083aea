// Client: the CLI's connection to a manager's ApiService, found from
// --manager, then $FLOTILLA_MANAGER, then the local federation that
// `flotilla up` recorded.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flotilla/v1/api.grpc.pb.h"

namespace flotilla::cli {

// Returns the manager address to use; `flag` is --manager's value (may be empty).
absl::StatusOr<std::string> ResolveManager(const std::string& flag);

class Client {
 public:
  explicit Client(std::string address);
  const std::string& address() const { return address_; }

  absl::StatusOr<flotilla::v1::SubmitResponse> Submit(const flotilla::v1::ExecutionRequest& r);
  absl::StatusOr<flotilla::v1::Execution> Get(const std::string& id);
  absl::StatusOr<flotilla::v1::Execution> Cancel(const std::string& id);
  absl::StatusOr<flotilla::v1::ListNodesResponse> ListNodes();
  absl::StatusOr<flotilla::v1::CheckpointResponse> Checkpoint(const std::string& id);
  absl::StatusOr<flotilla::v1::MigrateResponse> Migrate(const flotilla::v1::MigrateRequest& r);
  absl::StatusOr<flotilla::v1::ListExecutionsResponse> ListExecutions(
      const flotilla::v1::ListExecutionsRequest& r);
  // Calls on_event for each event until the stream ends. Returns the stream's status.
  absl::Status Watch(const std::string& id, bool output,
                     const std::function<void(const flotilla::v1::WatchEvent&)>& on_event);

 private:
  std::string address_;
  std::unique_ptr<flotilla::v1::ApiService::Stub> stub_;
};

}  // namespace flotilla::cli
