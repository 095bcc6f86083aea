// Tenancy rules of the user API, on plain values (the services apply them):
// which execution a caller's id names, whether the caller may see it, and
// what of it the caller may see.
//
// Request ids are unique per tenant: request id R of tenant T becomes the
// execution id "T:R" (plain R in tenant "default", the tenant of `flotilla
// up`'s admin and of the development mode). A user's own request ids may
// therefore not contain ':', or one tenant could name another's ids.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "auth/caller.h"
#include "flotilla/v1/api.pb.h"
#include "flotilla/v1/types.pb.h"

namespace flotilla::manager {

inline constexpr char kDefaultTenant[] = "default";

// Stamps `request` with the caller's tenant and user name (whatever the
// client sent in them is replaced) and qualifies its request id.
// InvalidArgument for a request id with ':'.
absl::Status StampSubmit(const auth::Caller& caller, v1::ExecutionRequest* request);

// The execution ids `id` may mean for `caller`, most specific first.
std::vector<std::string> CandidateIds(const auth::Caller& caller, const std::string& id);

// Whether `caller` may see and act on `e`. A user of another tenant gets
// NotFound, exactly as for an id that does not exist, so that ids leak
// nothing.
absl::Status CheckAccess(const auth::Caller& caller, const v1::Execution& e,
                         const std::string& asked_id);

// Hides what only the owner may see (env values) and what nobody may see
// (secret files' contents) from `caller`.
void Redact(const auth::Caller& caller, v1::ExecutionRequest* request);
void Redact(const auth::Caller& caller, v1::Execution* e);

// Functions and workflows are not yet kept per tenant, so only the default
// tenant (and admins) may use them; other tenants get a clear refusal
// rather than a view of the default tenant's.
absl::Status SharedCatalogue(const auth::Caller& caller);

}  // namespace flotilla::manager
