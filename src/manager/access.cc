#include "manager/access.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace flotilla::manager {

namespace {

constexpr char kRedacted[] = "<redacted>";

}  // namespace

absl::Status StampSubmit(const auth::Caller& caller, v1::ExecutionRequest* request) {
  if (absl::StrContains(request->request_id(), ':')) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id '", request->request_id(),
        "' contains ':', which is reserved: request ids are qualified by the tenant"));
  }
  // The orchestrator's own executions are named "wf-…" and "an-…", and a
  // workflow's ids follow from its request id: a user who could take one of
  // those names first would hand a workflow of another tenant a result of
  // theirs (Manager::Submit answers a taken id with the execution there).
  for (absl::string_view reserved : {"wf-", "an-"}) {
    if (absl::StartsWith(request->request_id(), reserved)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "request_id '", request->request_id(), "' starts with '", reserved,
          "', which is reserved for workflows"));
    }
  }
  request->set_user_id(caller.user.tenant);
  request->set_owner(caller.user.name);
  if (!request->request_id().empty() && caller.user.tenant != kDefaultTenant) {
    request->set_request_id(absl::StrCat(caller.user.tenant, ":", request->request_id()));
  }
  return absl::OkStatus();
}

std::vector<std::string> CandidateIds(const auth::Caller& caller, const std::string& id) {
  if (caller.user.tenant == kDefaultTenant || absl::StrContains(id, ':')) return {id};
  // A user names its own request ids without the tenant; generated ids
  // ("ex-...") are global.
  return {absl::StrCat(caller.user.tenant, ":", id), id};
}

absl::Status CheckAccess(const auth::Caller& caller, const v1::Execution& e,
                         const std::string& asked_id) {
  std::string tenant = e.request().user_id();
  if (tenant.empty()) tenant = kDefaultTenant;  // executions from before tenants
  if (caller.CanAccessTenant(tenant)) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("no execution '", asked_id, "'"));
}

void Redact(const auth::Caller& caller, v1::ExecutionRequest* request) {
  const bool owner = caller.kind == auth::Caller::Kind::kUser &&
                     (request->owner() == caller.user.name ||
                      // executions from before owners were recorded
                      (request->owner().empty() && caller.is_admin()));
  if (!owner) {
    for (auto& [key, value] : *request->mutable_env()) value = kRedacted;
  }
  for (auto& f : *request->mutable_dependencies()->mutable_files()) {
    if (f.secret()) f.set_content(kRedacted);
  }
}

void Redact(const auth::Caller& caller, v1::Execution* e) { Redact(caller, e->mutable_request()); }

absl::StatusOr<std::string> QualifiedName(const auth::Caller& caller, const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("a name must not be empty");
  const size_t tilde = name.find('~');
  if (tilde == std::string::npos) {
    if (caller.user.tenant == kDefaultTenant) return name;
    return absl::StrCat(caller.user.tenant, "~", name);
  }
  const std::string tenant = name.substr(0, tilde);
  if (caller.is_admin() && tenant != kDefaultTenant && !tenant.empty() &&
      name.find('~', tilde + 1) == std::string::npos && tilde + 1 < name.size()) {
    return name;  // An admin naming another tenant's: "T~f".
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name, "' contains '~', which is reserved for tenant scoping"));
}

std::string TenantOfName(absl::string_view qualified) {
  const size_t tilde = qualified.find('~');
  if (tilde == absl::string_view::npos) return kDefaultTenant;
  return std::string(qualified.substr(0, tilde));
}

std::string DisplayName(const auth::Caller& caller, const std::string& qualified) {
  if (TenantOfName(qualified) != caller.user.tenant) return qualified;
  const size_t tilde = qualified.find('~');
  return tilde == std::string::npos ? qualified : qualified.substr(tilde + 1);
}

std::optional<std::string> ListedTenant(const auth::Caller& caller) {
  if (caller.is_admin()) return std::nullopt;
  return caller.user.tenant;
}

}  // namespace flotilla::manager
