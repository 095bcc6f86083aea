// Client: the CLI's connection to a manager's ApiService, found from
// --manager, then $FLOTILLA_MANAGER, then the local federation that
// `flotilla up` recorded. Any of them may list several manager replicas
// ("a:7070,b:7070,c:7070"): calls go to the one that leads.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "flotilla/v1/api.grpc.pb.h"
#include "wire/endpoints.h"

namespace flotilla::cli {

// Returns the manager address to use; `flag` is --manager's value (may be empty).
absl::StatusOr<std::string> ResolveManager(const std::string& flag);

// How following an execution (run, logs -f, submit --wait) uses Watch. Each
// Watch call is bounded by call_deadline, so that a manager that stopped
// answering (paused, or gone without closing the connection) is noticed;
// the CLI then watches again and carries on printing where it stopped. It
// gives up when it has heard nothing from the manager for give_up_after.
struct WatchTiming {
  std::chrono::milliseconds call_deadline{45000};
  std::chrono::milliseconds give_up_after{60000};
};

// The defaults, overridden by $FLOTILLA_WATCH_DEADLINE_MS and
// $FLOTILLA_WATCH_GIVE_UP_MS; an error names the variable and its bad value.
absl::StatusOr<WatchTiming> WatchTimingFromEnv();

// How the CLI proves itself to the manager and checks the manager: the CA
// that signed the manager's certificate and the user's bearer token.
struct ClientSecurity {
  bool insecure = false;  // the development mode: plaintext, no token
  std::string ca_cert;    // file
  std::string token;
};

// $FLOTILLA_INSECURE=1 for the development mode; else the CA from $FLOTILLA_CA
// and the token from $FLOTILLA_TOKEN (or the file $FLOTILLA_TOKEN_FILE),
// each falling back to the local federation's (`flotilla up`) state.
absl::StatusOr<ClientSecurity> ResolveClientSecurity();

// A token file's first line, trimmed; InvalidArgument names the file.
absl::StatusOr<std::string> ReadToken(const std::string& path);

class Client {
 public:
  Client(std::string address, const ClientSecurity& security);
  const std::string& address() const { return address_; }

  absl::StatusOr<flotilla::v1::SubmitResponse> Submit(const flotilla::v1::ExecutionRequest& r);
  absl::StatusOr<flotilla::v1::Execution> Get(const std::string& id);
  absl::StatusOr<flotilla::v1::Execution> Cancel(const std::string& id);
  absl::StatusOr<flotilla::v1::ListNodesResponse> ListNodes();
  absl::StatusOr<flotilla::v1::CheckpointResponse> Checkpoint(const std::string& id);
  absl::StatusOr<flotilla::v1::MigrateResponse> Migrate(const flotilla::v1::MigrateRequest& r);
  absl::StatusOr<flotilla::v1::ListExecutionsResponse> ListExecutions(
      const flotilla::v1::ListExecutionsRequest& r);
  // Calls on_event for each event until the stream ends or `deadline` passes
  // (DEADLINE_EXCEEDED). Returns the stream's status.
  absl::Status Watch(const std::string& id, bool output, std::chrono::milliseconds deadline,
                     const std::function<void(const flotilla::v1::WatchEvent&)>& on_event);

 private:
  absl::Status OnLeader(const std::function<grpc::Status(flotilla::v1::ApiService::Stub&,
                                                         grpc::ClientContext&)>& call,
                        int deadline_s);

  std::string address_;  // one address, or every replica's: "a:7070,b:7070"
  absl::Status init_error_;
  std::unique_ptr<wire::Endpoints> managers_;
};

}  // namespace flotilla::cli
