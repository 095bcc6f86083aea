#include "manager/server.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "auth/tls.h"
#include "auth/users.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "ha/election.h"
#include "store/etcd/etcd_store.h"
#include "manager/http_server.h"
#include <httplib.h>
#include "kv/memory_kv.h"
#include "kv/queue.h"
#include "kv/redis_kv.h"
#include "kv/store_persistence.h"
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

// `role`: "leader" or "standby" for an HA replica, "" for a single manager.
// `epoch`: a leader's (0: none).
absl::Status WriteReadyFile(const std::string& path, const std::string& grpc_addr,
                            const std::string& http_addr, const std::string& role,
                            uint64_t epoch = 0) {
  nlohmann::json j = {{"grpc", grpc_addr}, {"http", http_addr}, {"pid", getpid()}};
  if (!role.empty()) j["role"] = role;
  if (epoch != 0) j["epoch"] = epoch;
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

// What every leadership term (or the one term of a single manager) needs
// from the process: who may call, and how the manager reaches agents.
struct Security {
  auth::Gate gate;
  std::unique_ptr<auth::UserDirectory> users;
  std::shared_ptr<grpc::ChannelCredentials> agent_credentials;
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
};

absl::StatusOr<Security> SetUpSecurity(const ManagerConfig& config) {
  Security sec;
  if (config.transport.insecure) {
    sec.gate.insecure = true;
    spdlog::warn(
        "SECURITY IS OFF (tls.insecure): plaintext gRPC and HTTP, no node identities, and every "
        "caller is "
        "the admin of tenant default. For development on a trusted host only.");
    sec.agent_credentials = grpc::InsecureChannelCredentials();
  } else {
    RETURN_IF_ERROR(auth::ValidateTransport(config.transport, "tls."));
    if (config.users_file.empty()) {
      return absl::InvalidArgumentError(
          "auth.users_file: missing; user tokens are checked against it (`flotilla user add`)");
    }
    ASSIGN_OR_RETURN(sec.users, auth::UserDirectory::Open(config.users_file));
    sec.gate.users = sec.users.get();
    if (!config.transport.crl.empty()) {
      ASSIGN_OR_RETURN(sec.gate.revocations,
                       auth::Revocations::Open(config.transport.crl, config.transport.files.ca_cert));
    }
    ASSIGN_OR_RETURN(auth::ChannelSecurity to_agents,
                     auth::ChannelCredentials(config.transport, ""));
    sec.agent_credentials = to_agents.credentials;
  }
  ASSIGN_OR_RETURN(sec.server_credentials,
                   auth::ServerCredentials(config.transport, auth::ClientCertPolicy::kOptional));
  return sec;
}

// Why serving stops: a termination signal (the process ends) or, for an HA
// replica, the loss of its leadership (it stands by again).
class Control {
 public:
  void Terminate(int sig) {
    absl::MutexLock lock(&mu_);
    signal_ = sig;
    stop_flag_.store(true);
  }
  void Lost(const absl::Status& why) {
    absl::MutexLock lock(&mu_);
    if (!lost_) lost_ = why;
  }
  void NewTerm() {
    absl::MutexLock lock(&mu_);
    lost_.reset();
  }
  // Blocks until terminated or the term's leadership is lost; returns why.
  std::string Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](Control* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_) {
          return c->signal_ != 0 || c->lost_.has_value();
        },
        this));
    if (signal_ != 0) return absl::StrCat("signal ", signal_);
    return absl::StrCat("lost leadership: ", lost_->message());
  }
  bool terminated() const { return stop_flag_.load(); }
  // True once this term's leadership is lost (and no signal came).
  bool lost_leadership() {
    absl::MutexLock lock(&mu_);
    return signal_ == 0 && lost_.has_value();
  }
  const std::atomic<bool>* stop_flag() const { return &stop_flag_; }

 private:
  absl::Mutex mu_;
  int signal_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Status> lost_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_flag_{false};
};

// One term: recovers from `store`, serves gRPC and HTTP until control says
// stop, then stops everything it started (in the order that lets in-flight
// calls finish) and returns.
absl::Status Serve(const ManagerConfig& config, std::unique_ptr<store::Store> store,
                   const std::string& state_name, const Security& sec, Control& control) {
  // The store is shared: the manager owns it, functions and workflows use it.
  store::Store* store_ptr = store.get();
  Manager manager(config, std::move(store),
                  NewGrpcAgentClientFactory(sec.agent_credentials, !config.transport.insecure));
  RETURN_IF_ERROR(Annotate(manager.Recover(), "recovering state from " + state_name));

  // Shared state for functions and workflows.
  // The embedded key-value store writes through the manager's Store, so
  // function state survives a restart (and an HA failover) with it.
  kv::StoreKvPersistence kv_persistence(store_ptr);
  std::unique_ptr<kv::KvStore> kv;
  std::unique_ptr<kv::MessageQueue> queue;
  kv::KvLimits kv_limits;
  kv_limits.tenant_max_keys = static_cast<size_t>(config.tenant_kv_max_keys);
  kv_limits.tenant_max_bytes = static_cast<size_t>(config.tenant_kv_max_bytes);
  kv::QueueOptions queue_options;
  queue_options.max_length = static_cast<size_t>(config.queue_max_length);
  queue_options.tenant_max_messages = static_cast<size_t>(config.tenant_queue_max_messages);
  if (config.state_backend == "redis") {
    auto hp = SplitHostPort(config.redis_address);
    if (!hp.ok()) return Annotate(hp.status(), "state.redis_address");
    kv::RedisKvOptions ro;
    ro.redis.host = hp->first;
    ro.redis.port = hp->second;
    ro.redis.key_prefix = config.redis_key_prefix;
    ro.limits = kv_limits;
    ASSIGN_OR_RETURN(auto rkv, kv::RedisKv::Connect(ro));
    kv = std::move(rkv);
    ASSIGN_OR_RETURN(queue, kv::MakeRedisQueue(ro.redis, queue_options));
  } else {
    auto memory_kv = std::make_unique<kv::MemoryKv>(nullptr, kv_limits, &kv_persistence);
    RETURN_IF_ERROR(
        Annotate(memory_kv->Restore(), "restoring the key-value store from " + state_name));
    kv = std::move(memory_kv);
    ASSIGN_OR_RETURN(queue, kv::MakeMemoryQueue(nullptr, queue_options));
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

  auto federation = NewFederationService(&manager, sec.gate);
  auto api = NewApiService(&manager, sec.gate);
  auto function_service = NewFunctionService(&functions, &orchestrator, sec.gate);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config.grpc_listen, sec.server_credentials, &port);
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
    ho.gate = sec.gate;
    ho.metrics_need_token = config.metrics_need_token;
    ho.max_body_bytes = static_cast<size_t>(config.max_request_bytes * 2 + (1 << 20));
    ho.threads = 16;
    // The HTTP port carries the same bearer tokens as gRPC: it gets the same
    // certificate, and is plain only where gRPC is.
    if (!config.transport.insecure) {
      ho.tls = HttpTls{config.transport.files.cert, config.transport.files.key};
    }
    // Fewer than the threads: requests that do not wait always find one.
    auto waits = std::make_shared<WaitSlots>(ho.threads / 2);
    RestServices rest{sec.gate, waits, &functions, &orchestrator, kv.get(), queue.get(),
                      &manager, store_ptr};
    auto started = HttpServer::Start(
        config.http_listen, [&] { return manager.RenderMetrics(); },
        [rest](httplib::Server& s) { RegisterRestRoutes(s, rest); }, ho);
    if (!started.ok()) {
      server->Shutdown(std::chrono::system_clock::now());
      return started.status();
    }
    http = std::move(*started);
  }
  manager.Start();
  orchestrator.Start();
  spdlog::info("manager serving gRPC on {} and {} on {} (state: {}, epoch {})", grpc_addr,
               config.transport.insecure ? "plain HTTP" : "HTTPS", http ? http->address() : "-",
               state_name, config.manager_epoch);
  absl::Status ready = absl::OkStatus();
  if (!config.ready_file.empty()) {
    ready = WriteReadyFile(config.ready_file, grpc_addr, http ? http->address() : "",
                           config.ha.enabled() ? "leader" : "", config.manager_epoch);
  }

  const std::string why = ready.ok() ? control.Wait() : std::string(ready.message());
  spdlog::info("manager: {}; shutting down", why);
  // A deposed leader can record nothing: it stops taking calls at once, so
  // that agents and clients move to the new leader now, not after the writes
  // still queued here have failed against etcd (seconds each when etcd is
  // unreachable: a leader cut off from etcd answered its agents' heartbeats
  // for 15 s after it stepped down). A terminated manager lets in-flight
  // calls finish first.
  std::thread close_now;
  if (ready.ok() && control.lost_leadership()) {
    if (!config.ready_file.empty()) {
      (void)WriteReadyFile(config.ready_file, grpc_addr, "", "standby");
    }
    close_now = std::thread([&server] {
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    });
  }
  if (http) http->Stop();
  orchestrator.Stop();
  manager.Stop();
  if (close_now.joinable()) {
    close_now.join();
  } else {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  return ready;
}

// An HA replica: stands by until it wins the election, leads until it
// loses it, and stands by again; until terminated.
absl::Status RunReplica(const ManagerConfig& config, const Security& sec, Control& control) {
  const HaConfig& ha = config.ha;
  ASSIGN_OR_RETURN(std::unique_ptr<etcd::EtcdClient> made,
                   etcd::EtcdClient::Create({.endpoints = ha.etcd}));
  std::shared_ptr<etcd::EtcdClient> client = std::move(made);
  std::string advertise = ha.advertise;
  if (advertise.empty()) advertise = config.grpc_listen;
  const std::string id = ha.id.empty() ? advertise : ha.id;
  ha::ElectionOptions eo;
  eo.key = ha.prefix + "leader";
  eo.ttl = ha.lease_ttl;
  ha::LeaderElection election(client, eo);
  const std::string state_name = absl::StrCat("etcd ", absl::StrJoin(ha.etcd, ","), " under ",
                                              ha.prefix);
  while (!control.terminated()) {
    spdlog::info("manager {}: standing by for leadership ({})", id, state_name);
    if (!config.ready_file.empty()) {
      RETURN_IF_ERROR(WriteReadyFile(config.ready_file, advertise, "", "standby"));
    }
    control.NewTerm();
    absl::StatusOr<ha::Leadership> won = election.Campaign(
        id, advertise, [&control](const absl::Status& why) { control.Lost(why); },
        control.stop_flag(), std::chrono::steady_clock::now() + std::chrono::hours(24 * 365));
    if (!won.ok()) {
      if (control.terminated()) break;
      spdlog::warn("manager {}: campaign failed: {}; trying again", id, won.status().message());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    spdlog::info("manager {}: leading with epoch {}", id, won->epoch);
    ManagerConfig term = config;
    term.manager_epoch = static_cast<uint64_t>(won->epoch);
    absl::StatusOr<std::unique_ptr<store::Store>> store =
        store::OpenEtcdStore(client, ha.prefix + "store/",
                             {won->key, won->epoch, [&election] { return election.IsLeader(); }});
    absl::Status served = store.ok() ? Serve(term, std::move(*store), state_name, sec, control)
                                     : store.status();
    if (!served.ok()) spdlog::error("manager {}: as leader: {}", id, served.message());
    // Resigning lets a standby win at once instead of after the lease.
    if (absl::Status st = election.Resign(); !st.ok()) {
      spdlog::warn("manager {}: resign: {}", id, st.message());
    }
    if (!served.ok() && !control.terminated()) {
      std::this_thread::sleep_for(std::chrono::seconds(1));  // no hot loop on a broken term
    }
  }
  return absl::OkStatus();
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
  ASSIGN_OR_RETURN(Security sec, SetUpSecurity(config));
  Control control;
  std::thread signals([&set, &control] {
    int sig = 0;
    sigwait(&set, &sig);
    control.Terminate(sig);
  });
  absl::Status result;
  if (config.ha.enabled()) {
    result = RunReplica(config, sec, control);
  } else {
    absl::StatusOr<std::unique_ptr<store::Store>> store =
        store::OpenSqliteStore(config.db_path, config.durability);
    result = store.ok() ? Serve(config, std::move(*store), config.db_path, sec, control)
                        : store.status();
  }
  // The signal thread waits in sigwait until a signal comes; when serving
  // ended for another reason, send it the one it waits for.
  if (!control.terminated()) pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return result;
}

}  // namespace flotilla::manager
