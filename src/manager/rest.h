// The manager's REST API (docs/workflows.md, docs/api.md): functions,
// annotations, split analysis, workflow submission and state, the shared
// key-value store and message queues, reads of nodes and executions, and
// the dashboard's static files (manager/dashboard.h) — JSON over HTTP on
// the manager's HTTP port, beside /healthz and /metrics. Handlers are thin: they parse, call the
// FunctionRegistry, the Orchestrator, the KvStore or the MessageQueue, and
// map absl::Status codes to HTTP statuses with {"error": "..."} bodies.
#pragma once

namespace httplib {
class Server;
}

namespace flotilla::store {
class Store;
}

namespace flotilla::kv {
class KvStore;
class MessageQueue;
}  // namespace flotilla::kv

#include "auth/caller.h"
#include "manager/http_guard.h"

namespace flotilla::manager {

class FunctionRegistry;
class Manager;
class Orchestrator;

struct RestServices {
  auth::Gate gate;                    // every route needs a user's token
  std::shared_ptr<WaitSlots> waits;   // long-polls that may wait at once
  FunctionRegistry* functions = nullptr;
  Orchestrator* orchestrator = nullptr;
  kv::KvStore* kv = nullptr;
  kv::MessageQueue* queue = nullptr;
  Manager* manager = nullptr;         // nodes and executions (GET /v1/nodes, /v1/executions)
  store::Store* store = nullptr;      // workflows' stored plans (their DAG's edges)
};

// Registers the routes on `server`; the services must outlive it.
void RegisterRestRoutes(httplib::Server& server, RestServices services);

}  // namespace flotilla::manager
