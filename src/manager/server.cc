#include "manager/server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "manager/http_server.h"
#include "manager/manager.h"
#include "manager/services.h"

namespace flotilla::manager {

namespace {

absl::Status WriteReadyFile(const std::string& path, const std::string& grpc_addr,
                            const std::string& http_addr) {
  nlohmann::json j = {{"grpc", grpc_addr}, {"http", http_addr}, {"pid", getpid()}};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) return ErrnoError(errno, "open", tmp);
    out << j.dump() << "\n";
    if (!out.flush()) return ErrnoError(errno, "write", tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError(errno, "rename", tmp);
  return absl::OkStatus();
}

// Waits for SIGTERM/SIGINT synchronously (they are blocked in every thread).
int WaitForTermination(const sigset_t& set) {
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace

absl::Status RunManager(const ManagerConfig& config) {
  RETURN_IF_ERROR(Validate(config));
  // Block termination signals before any thread starts so only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store,
                   store::OpenSqliteStore(config.db_path, config.durability));
  Manager manager(config, std::move(store), NewGrpcAgentClientFactory());
  RETURN_IF_ERROR(Annotate(manager.Recover(), "recovering state from " + config.db_path));

  auto federation = NewFederationService(&manager);
  auto api = NewApiService(&manager);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.grpc_listen, grpc::InsecureServerCredentials(), &port);
  // Oversized requests get a clear message from Submit's own check rather
  // than a bare RESOURCE_EXHAUSTED from the transport.
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes * 2 + (1 << 20)));
  builder.SetMaxSendMessageSize(64 << 20);
  builder.RegisterService(federation.get());
  builder.RegisterService(api.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", config.grpc_listen, ": address in use?"));
  }
  auto hp = SplitHostPort(config.grpc_listen);
  const std::string grpc_addr = absl::StrCat(hp.ok() ? hp->first : "127.0.0.1", ":", port);

  std::unique_ptr<HttpServer> http;
  if (!config.http_listen.empty()) {
    ASSIGN_OR_RETURN(http,
                     HttpServer::Start(config.http_listen, [&] { return manager.RenderMetrics(); }));
  }
  manager.Start();
  spdlog::info("manager serving gRPC on {} and HTTP on {} (state: {})", grpc_addr,
               http ? http->address() : "-", config.db_path);
  if (!config.ready_file.empty()) {
    RETURN_IF_ERROR(WriteReadyFile(config.ready_file, grpc_addr, http ? http->address() : ""));
  }

  int sig = WaitForTermination(set);
  spdlog::info("manager: signal {}, shutting down", sig);
  manager.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (http) http->Stop();
  return absl::OkStatus();
}

}  // namespace flotilla::manager
