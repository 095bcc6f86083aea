#include "manager/server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "auth/tls.h"
#include "auth/users.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "manager/http_server.h"
#include <httplib.h>
#include "kv/memory_kv.h"
#include "kv/queue.h"
#include "kv/redis_kv.h"
#include "manager/function_service.h"
#include "manager/functions.h"
#include "manager/orchestrator.h"
#include "manager/python_sources.h"
#include "manager/rest.h"
#include "manager/manager.h"
#include "manager/services.h"
#include "wire/channel.h"

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

  // Security first: nothing listens before it is settled.
  auth::Gate gate;
  std::unique_ptr<auth::UserDirectory> users;
  std::shared_ptr<grpc::ChannelCredentials> agent_credentials;
  if (config.transport.insecure) {
    gate.insecure = true;
    spdlog::warn(
        "SECURITY IS OFF (tls.insecure): plaintext gRPC, no node identities, and every caller is "
        "the admin of tenant default. For development on a trusted host only.");
    agent_credentials = grpc::InsecureChannelCredentials();
  } else {
    RETURN_IF_ERROR(auth::ValidateTransport(config.transport, "tls."));
    if (config.users_file.empty()) {
      return absl::InvalidArgumentError(
          "auth.users_file: missing; user tokens are checked against it (`flotilla user add`)");
    }
    ASSIGN_OR_RETURN(users, auth::UserDirectory::Open(config.users_file));
    gate.users = users.get();
    ASSIGN_OR_RETURN(auth::ChannelSecurity to_agents,
                     auth::ChannelCredentials(config.transport, ""));
    agent_credentials = to_agents.credentials;
  }
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> server_credentials,
                   auth::ServerCredentials(config.transport, auth::ClientCertPolicy::kOptional));

  ASSIGN_OR_RETURN(std::unique_ptr<store::Store> store,
                   store::OpenSqliteStore(config.db_path, config.durability));
  // The store is shared: the manager owns it, functions and workflows use it.
  store::Store* store_ptr = store.get();
  Manager manager(config, std::move(store),
                  NewGrpcAgentClientFactory(agent_credentials, !config.transport.insecure));
  RETURN_IF_ERROR(Annotate(manager.Recover(), "recovering state from " + config.db_path));

  // Shared state for functions and workflows.
  std::unique_ptr<kv::KvStore> kv;
  std::unique_ptr<kv::MessageQueue> queue;
  if (config.state_backend == "redis") {
    auto hp = SplitHostPort(config.redis_address);
    if (!hp.ok()) return Annotate(hp.status(), "state.redis_address");
    kv::RedisKvOptions ro;
    ro.redis.host = hp->first;
    ro.redis.port = hp->second;
    ro.redis.key_prefix = config.redis_key_prefix;
    ASSIGN_OR_RETURN(auto rkv, kv::RedisKv::Connect(ro));
    kv = std::move(rkv);
    ASSIGN_OR_RETURN(queue, kv::MakeRedisQueue(ro.redis));
  } else {
    kv = std::make_unique<kv::MemoryKv>();
    ASSIGN_OR_RETURN(queue, kv::MakeMemoryQueue());
  }
  FunctionRegistry functions(store_ptr);
  OrchestratorOptions oo;
  oo.max_tries = config.workflow_max_tries;
  oo.max_instances = config.function_max_instances;
  oo.target_concurrency = config.function_target_concurrency;
  oo.min_piece_cost = config.split_min_piece_cost;
  Orchestrator orchestrator(&manager, store_ptr, &functions, kv.get(), oo, PythonRunnerSource(),
                            PythonAnalyzerSource());
  manager.SetFinishListener([&orchestrator](const std::string& id) { orchestrator.NoteFinished(id); });
  RETURN_IF_ERROR(Annotate(orchestrator.Recover(), "recovering workflows"));

  auto federation = NewFederationService(&manager, gate);
  auto api = NewApiService(&manager, gate);
  auto function_service = NewFunctionService(&functions, &orchestrator, gate);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.grpc_listen, server_credentials, &port);
  // Oversized requests get a clear message from Submit's own check rather
  // than a bare RESOURCE_EXHAUSTED from the transport.
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.max_request_bytes * 2 + (1 << 20)));
  builder.SetMaxSendMessageSize(64 << 20);
  wire::ConfigureServerKeepalive(builder);
  builder.RegisterService(federation.get());
  builder.RegisterService(api.get());
  builder.RegisterService(function_service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen for gRPC on ", config.grpc_listen, ": address in use?"));
  }
  auto hp = SplitHostPort(config.grpc_listen);
  const std::string grpc_addr = absl::StrCat(hp.ok() ? hp->first : "127.0.0.1", ":", port);

  std::unique_ptr<HttpServer> http;
  if (!config.http_listen.empty()) {
    HttpOptions ho;
    ho.gate = gate;
    ho.metrics_need_token = config.metrics_need_token;
    ho.max_body_bytes = static_cast<size_t>(config.max_request_bytes * 2 + (1 << 20));
    ho.threads = 16;
    // Fewer than the threads: requests that do not wait always find one.
    auto waits = std::make_shared<WaitSlots>(ho.threads / 2);
    RestServices rest{gate, waits, &functions, &orchestrator, kv.get(), queue.get()};
    ASSIGN_OR_RETURN(http, HttpServer::Start(
                               config.http_listen, [&] { return manager.RenderMetrics(); },
                               [rest](httplib::Server& s) { RegisterRestRoutes(s, rest); }, ho));
  }
  manager.Start();
  orchestrator.Start();
  spdlog::info("manager serving gRPC on {} and HTTP on {} (state: {})", grpc_addr,
               http ? http->address() : "-", config.db_path);
  if (!config.ready_file.empty()) {
    RETURN_IF_ERROR(WriteReadyFile(config.ready_file, grpc_addr, http ? http->address() : ""));
  }

  int sig = WaitForTermination(set);
  spdlog::info("manager: signal {}, shutting down", sig);
  if (http) http->Stop();
  orchestrator.Stop();
  manager.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (http) http->Stop();
  return absl::OkStatus();
}

}  // namespace flotilla::manager
