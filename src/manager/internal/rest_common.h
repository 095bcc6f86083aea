// What the REST route files (rest.cc, rest_federation.cc, dashboard.cc)
// share: JSON replies, absl::Status to HTTP status, and the bearer-token
// wrapper every data route goes through. Internal to the manager.
#pragma once

#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "auth/caller.h"
#include "manager/rest.h"

namespace flotilla::manager {

// Answers `status` with `body` as JSON. Text that is not UTF-8 (a
// process's output) is replaced, not refused.
void ReplyJson(httplib::Response& res, int status, const nlohmann::json& body);
// Answers {"error": message} with the HTTP status of `s`'s code.
void ReplyError(httplib::Response& res, const absl::Status& s);

using AuthedHandler =
    std::function<void(const auth::Caller&, const httplib::Request&, httplib::Response&)>;
// Runs `handler` for a caller holding a user's token; 401 without one.
httplib::Server::Handler Authed(const RestServices& svc, AuthedHandler handler);

// GET /v1/nodes, /v1/executions, /v1/executions/ID (rest_federation.cc).
void FederationRoutes(httplib::Server& s, const RestServices& svc);

}  // namespace flotilla::manager
