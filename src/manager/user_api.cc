#include "manager/user_api.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "manager/access.h"
#include "manager/manager.h"

namespace flotilla::manager {

absl::StatusOr<v1::Execution> FindExecutionFor(Manager& manager, const auth::Caller& caller,
                                               const std::string& id) {
  for (const std::string& candidate : CandidateIds(caller, id)) {
    auto e = manager.Get(candidate);
    if (e.ok()) {
      RETURN_IF_ERROR(CheckAccess(caller, *e, id));
      return e;
    }
    if (e.status().code() != absl::StatusCode::kNotFound) return e.status();
  }
  return absl::NotFoundError(absl::StrCat("no execution '", id, "'"));
}

absl::StatusOr<std::vector<v1::Execution>> ListExecutionsFor(Manager& manager,
                                                             const auth::Caller& caller,
                                                             v1::ListExecutionsRequest req) {
  if (!caller.is_admin()) req.set_tenant(caller.user.tenant);
  auto list = manager.ListExecutions(req);
  if (!list.ok()) return list.status();
  for (auto& e : *list) Redact(caller, &e);
  return list;
}

}  // namespace flotilla::manager
