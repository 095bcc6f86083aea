#include "manager/rest.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "kv/kv.h"
#include "kv/queue.h"
#include "manager/dashboard.h"
#include "manager/functions.h"
#include "manager/access.h"
#include "manager/http_guard.h"
#include "manager/internal/rest_common.h"
#include "manager/orchestrator.h"
#include "store/store.h"

namespace flotilla::manager {
namespace {

using nlohmann::json;

int HttpStatus(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

void Reply(httplib::Response& res, int status, const json& body) { ReplyJson(res, status, body); }

void Error(httplib::Response& res, const absl::Status& s) {
  Reply(res, HttpStatus(s), {{"error", std::string(s.message())}});
  if (s.code() == absl::StatusCode::kUnauthenticated) res.set_header("WWW-Authenticate", "Bearer");
  // Admission control and a store that could not record: both pass; say when
  // to come back (RFC 9110 Retry-After, in seconds).
  if (s.code() == absl::StatusCode::kResourceExhausted ||
      s.code() == absl::StatusCode::kUnavailable) {
    res.set_header("Retry-After", "2");
  }
}

// A write refused by a storage quota (a tenant's key-value keys or bytes, a
// queue's length cap) is 507 Insufficient Storage, not 429: waiting does not
// help, freeing space (deleting keys, acking messages) does, so there is no
// Retry-After.
void StorageError(httplib::Response& res, const absl::Status& s) {
  if (s.code() != absl::StatusCode::kResourceExhausted) return Error(res, s);
  Reply(res, 507, {{"error", std::string(s.message())}});
}

// Parses the body as a JSON object, or answers 400 and returns nullopt.
std::optional<json> Body(const httplib::Request& req, httplib::Response& res) {
  if (JsonTooDeep(req.body)) {
    Reply(res, 400, {{"error", absl::StrCat("the request body nests deeper than ", kMaxJsonDepth,
                                            " levels")}});
    return std::nullopt;
  }
  json j = json::parse(req.body.empty() ? std::string("{}") : req.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    Reply(res, 400, {{"error", "the request body must be a JSON object"}});
    return std::nullopt;
  }
  return j;
}

int64_t QueryInt(const httplib::Request& req, const char* name, int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  int64_t v = fallback;
  if (!absl::SimpleAtoi(req.get_param_value(name), &v)) return fallback;
  return v;
}

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

std::string B64(const std::string& s) { return absl::Base64Escape(s); }

std::optional<std::string> Unb64(const json& v) {
  if (!v.is_string()) return std::nullopt;
  std::string out;
  if (!absl::Base64Unescape(v.get<std::string>(), &out)) return std::nullopt;
  return out;
}

absl::Status TooManyWaiting(const WaitSlots& waits) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "already ", waits.max(), " requests wait for changes or messages on this manager; retry"));
}

// Key-value namespaces and queues are per tenant: a tenant's "cache" is
// "<tenant>~cache" underneath ("cache" itself in tenant default), and no
// user may name a namespace with '~'.
absl::StatusOr<std::string> Scoped(const auth::Caller& caller, const std::string& name) {
  if (name.find('~') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", name, "' contains '~', which is reserved for tenant scoping"));
  }
  if (caller.user.tenant == kDefaultTenant) return name;
  return absl::StrCat(caller.user.tenant, "~", name);
}

#define SCOPED_OR_REPLY(var, caller, name)            \
  auto var##_or = Scoped(caller, name);                \
  if (!var##_or.ok()) return Error(res, var##_or.status()); \
  const std::string var = *var##_or

// A function as `caller` sees it: under its own name in the caller's own
// tenant, with its autoscaling state when it has run.
json FunctionFor(const auth::Caller& caller, const Function& f, bool with_source,
                 const json& scaling) {
  json j = FunctionToJson(f, with_source);
  j["name"] = DisplayName(caller, f.name);
  if (scaling.contains(f.name)) j["scaling"] = scaling[f.name];
  return j;
}

// A workflow as `caller` sees it: the function it calls by the caller's name.
json WorkflowFor(const auth::Caller& caller, json wf) {
  if (wf.contains("function") && wf["function"].is_string()) {
    wf["function"] = DisplayName(caller, wf["function"].get<std::string>());
  }
  return wf;
}

#define QUALIFIED_OR_REPLY(var, caller, name)                 \
  auto var##_or = QualifiedName(caller, name);                \
  if (!var##_or.ok()) return Error(res, var##_or.status());   \
  const std::string var = *var##_or

// Qualifies body["function"] (a function name) for the caller in place, or
// answers 400 and returns false.
bool QualifyFunctionField(const auth::Caller& caller, json& body, httplib::Response& res) {
  if (!body.contains("function") || !body["function"].is_string()) return true;
  auto name = QualifiedName(caller, body["function"].get<std::string>());
  if (!name.ok()) {
    Error(res, name.status());
    return false;
  }
  body["function"] = *name;
  return true;
}

// Functions and workflows are per tenant (manager/access.h): a tenant
// deploys, lists and calls its own under its own names; an admin sees all.
void FunctionRoutes(httplib::Server& s, RestServices svc) {
  s.Post("/function/deploy", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req, res);
    if (!body) return;
    if (body->contains("name") && (*body)["name"].is_string()) {
      QUALIFIED_OR_REPLY(name, caller, (*body)["name"].get<std::string>());
      (*body)["name"] = name;
    }
    auto f = svc.functions->Deploy(*body, NowMs());
    if (!f.ok()) return Error(res, f.status());
    Reply(res, 200, {{"function", FunctionFor(caller, *f, false, json::object())}});
  }));
  s.Get("/v1/functions", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto list = svc.functions->List();
    if (!list.ok()) return Error(res, list.status());
    const std::optional<std::string> tenant = ListedTenant(caller);
    json scaling = svc.orchestrator->Scaling();
    json out = json::array();
    for (const auto& f : *list) {
      if (tenant && TenantOfName(f.name) != *tenant) continue;
      out.push_back(FunctionFor(caller, f, false, scaling));
    }
    Reply(res, 200, {{"functions", out}});
  }));
  s.Get(R"(/v1/functions/([^/]+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    QUALIFIED_OR_REPLY(name, caller, req.matches[1].str());
    auto f = svc.functions->Get(name);
    if (!f.ok()) return Error(res, f.status());
    Reply(res, 200, {{"function", FunctionFor(caller, *f, true, svc.orchestrator->Scaling())}});
  }));
  s.Delete(R"(/v1/functions/([^/]+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    QUALIFIED_OR_REPLY(name, caller, req.matches[1].str());
    auto st = svc.functions->Delete(name);
    if (!st.ok()) return Error(res, st);
    Reply(res, 200, {{"deleted", true}});
  }));
  s.Post("/annotation/update", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req, res);
    if (!body) return;
    if (!body->contains("function") || !(*body)["function"].is_string()) {
      return Reply(res, 400, {{"error", "annotation/update needs \"function\": NAME"}});
    }
    QUALIFIED_OR_REPLY(name, caller, (*body)["function"].get<std::string>());
    auto f = svc.functions->UpdateAnnotations(name, body->value("annotations", json::object()),
                                              NowMs());
    if (!f.ok()) return Error(res, f.status());
    Reply(res, 200, {{"function", FunctionFor(caller, *f, false, json::object())}});
  }));
}

// The edges of a workflow's plan ([{from, to}] by piece id), for drawing
// its DAG: read from the workflow's stored document (the orchestrator persists
// its plan at submit and at every change), since Orchestrator::ToJson lists
// the pieces only (TODO: list them there, and drop this read). [] when there
// is no document yet. The caller has
// already been allowed to see the workflow (Orchestrator::Get).
json PlanEdges(store::Store* store, const std::string& workflow_id) {
  if (store == nullptr) return json::array();
  auto doc = store->GetDocument("workflow", workflow_id);
  if (!doc.ok() || !*doc) return json::array();
  json j = json::parse((*doc)->body, nullptr, false);
  if (!j.is_object() || !j.contains("plan")) return json::array();
  json plan = j["plan"];
  if (plan.is_string()) plan = json::parse(plan.get<std::string>(), nullptr, false);
  if (!plan.is_object() || !plan.contains("edges") || !plan["edges"].is_array()) {
    return json::array();
  }
  json out = json::array();
  for (const json& e : plan["edges"]) {
    if (!e.is_object()) continue;
    out.push_back({{"from", e.value("from", "")}, {"to", e.value("to", "")}});
  }
  return out;
}

void WorkflowRoutes(httplib::Server& s, RestServices svc) {
  s.Post("/split/analyze", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req, res);
    if (!body) return;
    if (!QualifyFunctionField(caller, *body, res)) return;
    auto out = svc.orchestrator->Analyze(*body);
    if (!out.ok()) return Error(res, out.status());
    Reply(res, 200, *out);
  }));
  s.Post("/execution/submit", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto body = Body(req, res);
    if (!body) return;
    if (!QualifyFunctionField(caller, *body, res)) return;
    auto wf = svc.orchestrator->Submit(*body, caller.user.tenant);
    if (!wf.ok()) return Error(res, wf.status());
    Reply(res, 200, {{"workflow", WorkflowFor(caller, *wf)}});
  }));
  s.Get("/v1/workflows", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    json out = json::array();
    for (json& wf : svc.orchestrator->List(static_cast<size_t>(QueryInt(req, "limit", 100)),
                                           ListedTenant(caller))) {
      out.push_back(WorkflowFor(caller, std::move(wf)));
    }
    Reply(res, 200, {{"workflows", out}});
  }));
  s.Get(R"(/v1/workflows/([^/]+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto wf = svc.orchestrator->Get(req.matches[1], QueryInt(req, "wait_ms", 0), ListedTenant(caller));
    if (!wf.ok()) return Error(res, wf.status());
    (*wf)["edges"] = PlanEdges(svc.store, req.matches[1]);
    Reply(res, 200, {{"workflow", WorkflowFor(caller, *wf)}});
  }));
  s.Post(R"(/v1/workflows/([^/]+)/cancel)", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    auto wf = svc.orchestrator->Cancel(req.matches[1], ListedTenant(caller));
    if (!wf.ok()) return Error(res, wf.status());
    Reply(res, 200, {{"workflow", WorkflowFor(caller, *wf)}});
  }));
}

void KvRoutes(httplib::Server& s, RestServices svc) {
  s.Get(R"(/v1/kv/([^/]+)/(.+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    auto e = svc.kv->Get(ns, req.matches[2].str());
    if (!e.ok()) return Error(res, e.status());
    if (!*e) return Reply(res, 404, {{"error", absl::StrCat("no key '", req.matches[2].str(), "'")}});
    Reply(res, 200, {{"value", B64((*e)->value)}, {"version", (*e)->version}});
  }));
  s.Put(R"(/v1/kv/([^/]+)/(.+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    auto body = Body(req, res);
    if (!body) return;
    auto value = Unb64(body->value("value", json("")));
    if (!value) return Reply(res, 400, {{"error", "\"value\" must be base64 text"}});
    kv::PutOptions o;
    o.ttl_ms = body->value("ttl_ms", int64_t{0});
    if (body->contains("if_version")) o.if_version = (*body)["if_version"].get<int64_t>();
    auto v = svc.kv->Put(ns, req.matches[2].str(), *value, o);
    if (!v.ok()) return StorageError(res, v.status());
    Reply(res, 200, {{"version", *v}});
  }));
  s.Delete(R"(/v1/kv/([^/]+)/(.+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    kv::DeleteOptions o;
    o.if_version = QueryInt(req, "if_version", kv::kAnyVersion);
    auto d = svc.kv->Delete(ns, req.matches[2].str(), o);
    if (!d.ok()) return Error(res, d.status());
    Reply(res, 200, {{"deleted", *d}});
  }));
  s.Get(R"(/v1/kv/([^/]+))", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    if (req.has_param("watch_prefix") || req.has_param("after")) {
      WaitSlots::Slot slot = svc.waits->Take();
      if (!slot) return Error(res, TooManyWaiting(*svc.waits));
      kv::WatchOptions o;
      o.timeout_ms = std::clamp<int64_t>(QueryInt(req, "timeout_ms", 10'000), 0, 60'000);
      auto w = svc.kv->WaitForChange(ns, req.get_param_value("watch_prefix"),
                                     QueryInt(req, "after", 0), o);
      if (!w.ok()) return Error(res, w.status());
      json events = json::array();
      for (const auto& e : w->events) {
        events.push_back({{"type", std::string(kv::EventTypeName(e.type))},
                          {"key", e.key},
                          {"value", B64(e.value)},
                          {"version", e.version},
                          {"revision", e.revision}});
      }
      return Reply(res, 200, {{"events", events}, {"revision", w->revision}});
    }
    auto l = svc.kv->List(ns, req.get_param_value("prefix"));
    if (!l.ok()) return Error(res, l.status());
    json entries = json::array();
    for (const auto& e : l->entries) {
      entries.push_back({{"key", e.key}, {"value", B64(e.entry.value)}, {"version", e.entry.version}});
    }
    Reply(res, 200, {{"entries", entries}, {"revision", l->revision}, {"truncated", l->truncated}});
  }));
}

void QueueRoutes(httplib::Server& s, RestServices svc) {
  s.Post(R"(/v1/queues/([^/]+)/send)", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    auto body = Body(req, res);
    if (!body) return;
    auto payload = Unb64(body->value("message", json("")));
    if (!payload) return Reply(res, 400, {{"error", "\"message\" must be base64 text"}});
    auto id = svc.queue->Send(ns, *payload);
    if (!id.ok()) return StorageError(res, id.status());
    Reply(res, 200, {{"id", *id}});
  }));
  s.Post(R"(/v1/queues/([^/]+)/receive)", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    auto body = Body(req, res);
    if (!body) return;
    kv::ReceiveOptions o;
    o.max_messages = static_cast<size_t>(std::max<int64_t>(1, body->value("max", int64_t{1})));
    o.block_ms = std::clamp<int64_t>(body->value("block_ms", int64_t{0}), 0, 60'000);
    std::optional<WaitSlots::Slot> slot;
    if (o.block_ms > 0) {
      slot.emplace(svc.waits->Take());
      if (!*slot) return Error(res, TooManyWaiting(*svc.waits));
    }
    auto msgs = svc.queue->Receive(ns, body->value("group", "default"),
                                   body->value("consumer", "default"), o);
    if (!msgs.ok()) return Error(res, msgs.status());
    json out = json::array();
    for (const auto& m : *msgs) {
      out.push_back({{"id", m.id}, {"message", B64(m.payload)}, {"deliveries", m.delivery_count}});
    }
    Reply(res, 200, {{"messages", out}});
  }));
  s.Post(R"(/v1/queues/([^/]+)/ack)", Authed(svc, [svc](const auth::Caller& caller, const httplib::Request& req, httplib::Response& res) {
    SCOPED_OR_REPLY(ns, caller, req.matches[1].str());
    auto body = Body(req, res);
    if (!body) return;
    auto st = svc.queue->Ack(ns, body->value("group", "default"),
                             body->value("id", ""));
    if (!st.ok()) return Error(res, st);
    Reply(res, 200, json::object());
  }));
}

}  // namespace

void ReplyJson(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                  "application/json");
}

void ReplyError(httplib::Response& res, const absl::Status& s) { Error(res, s); }

// Every route: the caller must be a user holding a token (auth/caller.h).
httplib::Server::Handler Authed(const RestServices& svc, AuthedHandler handler) {
  return [gate = svc.gate, handler = std::move(handler)](const httplib::Request& req,
                                                         httplib::Response& res) {
    auto caller = gate.RequireUser(gate.FromBearer(req.get_header_value("Authorization")));
    if (!caller.ok()) return Error(res, caller.status());
    handler(*caller, req, res);
  };
}

void RegisterRestRoutes(httplib::Server& server, RestServices services) {
  FunctionRoutes(server, services);
  WorkflowRoutes(server, services);
  KvRoutes(server, services);
  QueueRoutes(server, services);
  if (services.manager != nullptr) FederationRoutes(server, services);
  DashboardRoutes(server);
}

}  // namespace flotilla::manager
