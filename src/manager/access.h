// Tenancy rules of the user API, on plain values (the services apply them):
// which execution a caller's id names, whether the caller may see it, and
// what of it the caller may see.
//
// Request ids are unique per tenant: request id R of tenant T becomes the
// execution id "T:R" (plain R in tenant "default", the tenant of `flotilla
// up`'s admin and of the development mode). A user's own request ids may
// therefore not contain ':', or one tenant could name another's ids.
#pragma once

#include <optional>
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

// Functions, workflows, key-value namespaces and queues are per tenant, by
// name: tenant T's "f" is "T~f" underneath ("f" itself in tenant default),
// and '~' is reserved for that. An admin, who may see every tenant, names
// another tenant's function as "T~f"; anyone else naming '~' gets
// InvalidArgument, so no user can reach another tenant's by name.
absl::StatusOr<std::string> QualifiedName(const auth::Caller& caller, const std::string& name);

// The tenant a qualified name belongs to: the text before '~', or "default".
std::string TenantOfName(absl::string_view qualified);

// The name as `caller` sees it: "f" for a name of the caller's own tenant,
// the qualified "T~f" otherwise (which only an admin gets to see).
std::string DisplayName(const auth::Caller& caller, const std::string& qualified);

// The tenant whose functions and workflows `caller` lists: nullopt (all of
// them) for an admin, the caller's own tenant otherwise.
std::optional<std::string> ListedTenant(const auth::Caller& caller);

}  // namespace flotilla::manager
