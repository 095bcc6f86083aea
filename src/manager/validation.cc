#include "manager/validation.h"

#include <cctype>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ids.h"

namespace flotilla::manager {

namespace {

const std::set<std::string>& KnownRuntimes() {
  static const std::set<std::string> kRuntimes = {"shell", "python3"};
  return kRuntimes;
}

}  // namespace

absl::Status ValidateRequest(const ManagerConfig& config, flotilla::v1::ExecutionRequest* r) {
  if (!r->request_id().empty() && !IsValidId(r->request_id())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "request_id '", r->request_id(), "' is not valid: use 1-128 characters from [A-Za-z0-9._:-]"));
  }
  if (r->user_id().empty()) r->set_user_id("anonymous");
  const auto& code = r->code();
  const bool has_argv = code.argv_size() > 0;
  const bool has_source = !code.source().empty();
  if (has_argv == has_source) {
    return absl::InvalidArgumentError(
        has_argv ? "code has both argv and source: give one of them"
                 : "code is empty: give argv (a command) or a runtime and its source");
  }
  if (has_argv && !code.runtime().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "code.runtime '", code.runtime(), "' goes with code.source, not with argv"));
  }
  if (has_argv && code.argv(0).empty()) {
    return absl::InvalidArgumentError("code.argv[0] is empty: name the program to run");
  }
  if (has_source && !KnownRuntimes().count(code.runtime())) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown runtime '", code.runtime(), "' (known: ",
                     absl::StrJoin(KnownRuntimes(), ", "), ")"));
  }
  if (r->priority() < 0 || r->priority() > 100) {
    return absl::InvalidArgumentError(
        absl::StrCat("priority ", r->priority(), " is out of range: use 0 (lowest) to 100"));
  }
  const auto& res = r->resources();
  if (res.cpu_millis() < 0 || res.memory_bytes() < 0 || res.storage_bytes() < 0 ||
      res.bandwidth_bps() < 0) {
    return absl::InvalidArgumentError("resources must not be negative");
  }
  if (res.cpu_millis() == 0) r->mutable_resources()->set_cpu_millis(config.default_resources.cpu_millis);
  if (res.memory_bytes() == 0) {
    r->mutable_resources()->set_memory_bytes(config.default_resources.memory_bytes);
  }
  if (r->timeout_ms() < 0) return absl::InvalidArgumentError("timeout_ms must not be negative");
  if (r->timeout_ms() == 0) r->set_timeout_ms(config.default_timeout_ms);
  if (r->timeout_ms() > config.max_timeout_ms) {
    return absl::InvalidArgumentError(absl::StrCat("timeout_ms ", r->timeout_ms(),
                                                   " exceeds the manager's max_timeout_ms ",
                                                   config.max_timeout_ms));
  }
  if (r->placement().latency_bound_ms() < 0) {
    return absl::InvalidArgumentError(
        "placement.latency_bound_ms must be >= 0 (a duration such as 2s on the command line)");
  }
  if (!r->template_name().empty() && !IsValidId(r->template_name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("template_name '", r->template_name(), "' is not a valid template name"));
  }
  if (r->security().min_trust_level() < 0 || r->security().min_trust_level() > 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        "security.min_trust_level ", r->security().min_trust_level(), " is out of range 0..10"));
  }
  // Per-field limits, below the whole request's: each names the field and
  // the bound (Linux itself refuses one argument or env string above 128 KiB).
  constexpr int kMaxArgs = 4096, kMaxEnv = 1024, kMaxFiles = 1024;
  constexpr size_t kMaxArgBytes = 128 << 10, kMaxEnvName = 256, kMaxPath = 1024;
  if (code.argv_size() > kMaxArgs) {
    return absl::InvalidArgumentError(
        absl::StrCat("code.argv has ", code.argv_size(), " arguments; at most ", kMaxArgs));
  }
  for (int i = 0; i < code.argv_size(); ++i) {
    if (code.argv(i).size() > kMaxArgBytes) {
      return absl::InvalidArgumentError(absl::StrCat("code.argv[", i, "] is ", code.argv(i).size(),
                                                     " bytes; at most ", kMaxArgBytes));
    }
  }
  if (r->env_size() > kMaxEnv) {
    return absl::InvalidArgumentError(
        absl::StrCat("env has ", r->env_size(), " variables; at most ", kMaxEnv));
  }
  for (const auto& [name, value] : r->env()) {
    bool ok = !name.empty() && name.size() <= kMaxEnvName && !std::isdigit(static_cast<unsigned char>(name[0]));
    for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env: '", name.substr(0, 64), "' is not a variable name ([A-Za-z_][A-Za-z0-9_]*, at most ",
          kMaxEnvName, " characters)"));
    }
    if (value.size() > kMaxArgBytes || value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "env ", name, ": the value is ", value.size(), " bytes or holds NUL; at most ",
          kMaxArgBytes, " bytes of text"));
    }
  }
  if (r->dependencies().files_size() > kMaxFiles) {
    return absl::InvalidArgumentError(absl::StrCat("dependencies.files has ",
                                                   r->dependencies().files_size(), " files; at most ",
                                                   kMaxFiles));
  }
  for (const auto& f : r->dependencies().files()) {
    const std::string& p = f.path();
    if (p.size() > kMaxPath || p.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dependencies.files: a path of ", p.size(), " bytes (at most ", kMaxPath, ", no NUL)"));
    }
    if (p.empty() || p[0] == '/' || p == ".." || p.rfind("../", 0) == 0 ||
        p.find("/../") != std::string::npos ||
        (p.size() >= 3 && p.compare(p.size() - 3, 3, "/..") == 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "dependencies.files: path '", p, "' must be relative to the working directory, without '..'"));
    }
  }
  const int64_t size = static_cast<int64_t>(r->ByteSizeLong());
  if (size > config.max_request_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is ", size, " bytes; the manager accepts at most ", config.max_request_bytes,
        " (max_request_bytes): pass large inputs as data sets instead"));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::manager
