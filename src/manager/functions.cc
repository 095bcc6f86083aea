#include "manager/functions.h"

#include <openssl/sha.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"
#include "common/status_macros.h"
#include "common/units.h"

namespace flotilla::manager {
namespace {

using nlohmann::json;

constexpr const char* kKind = "function";
constexpr size_t kMaxSourceBytes = 1 << 20;

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return false;
    }
  }
  return true;
}

bool ValidIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

absl::StatusOr<int64_t> Quantity(const json& v, const char* key,
                                 absl::StatusOr<int64_t> (*parse)(const std::string&)) {
  if (v.is_number_integer() || v.is_number_unsigned()) {
    int64_t n = v.get<int64_t>();
    if (n < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource_constraint.", key, " must not be negative (got ", n, ")"));
    }
    return n;
  }
  if (v.is_string()) {
    auto n = parse(v.get<std::string>());
    if (!n.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource_constraint.", key, ": ", n.status().message()));
    }
    return *n;
  }
  if (v.is_null()) return 0;
  return absl::InvalidArgumentError(
      absl::StrCat("resource_constraint.", key, " must be a number or a string with a unit"));
}

json ToDocument(const Function& f) {
  json j = FunctionToJson(f, /*with_source=*/true);
  j["analysis"] = f.analysis;
  return j;
}

absl::StatusOr<Function> FromDocument(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError("stored function is not a JSON object");
  }
  Function f;
  f.name = j.value("name", "");
  f.version = j.value("version", int64_t{0});
  f.runtime = j.value("runtime", "python3");
  f.source = j.value("source", "");
  f.entrypoint = j.value("entrypoint", "");
  f.template_name = j.value("template", "python");
  f.description = j.value("description", "");
  f.sha256 = j.value("sha256", "");
  f.created_unix_ms = j.value("created_unix_ms", int64_t{0});
  f.updated_unix_ms = j.value("updated_unix_ms", int64_t{0});
  f.analysis = j.value("analysis", "");
  if (j.contains("annotations")) {
    ASSIGN_OR_RETURN(f.annotations, MergeAnnotations(Annotations{}, j["annotations"]));
  }
  return f;
}

}  // namespace

json AnnotationsToJson(const Annotations& a) {
  return {{"splitable", a.splitable},
          {"geo_preference", a.geo_preference},
          {"resource_constraint",
           {{"memory_bytes", a.memory_bytes}, {"timeout_ms", a.timeout_ms},
            {"cpu_millis", a.cpu_millis}}}};
}

json FunctionToJson(const Function& f, bool with_source) {
  json j = {{"name", f.name},
            {"version", f.version},
            {"runtime", f.runtime},
            {"entrypoint", f.entrypoint},
            {"template", f.template_name},
            {"description", f.description},
            {"annotations", AnnotationsToJson(f.annotations)},
            {"sha256", f.sha256},
            {"created_unix_ms", f.created_unix_ms},
            {"updated_unix_ms", f.updated_unix_ms}};
  if (with_source) j["source"] = f.source;
  return j;
}

absl::StatusOr<Annotations> MergeAnnotations(const Annotations& base, const json& j) {
  if (j.is_null()) return base;
  if (!j.is_object()) return absl::InvalidArgumentError("annotations must be an object");
  Annotations a = base;
  for (const auto& [key, v] : j.items()) {
    if (key == "splitable") {
      if (!v.is_boolean()) return absl::InvalidArgumentError("annotations.splitable must be true or false");
      a.splitable = v.get<bool>();
    } else if (key == "geo_preference") {
      a.geo_preference.clear();
      if (v.is_string()) {
        a.geo_preference.push_back(v.get<std::string>());
      } else if (v.is_array()) {
        for (const auto& r : v) {
          if (!r.is_string() || r.get<std::string>().empty()) {
            return absl::InvalidArgumentError("annotations.geo_preference must list region names");
          }
          a.geo_preference.push_back(r.get<std::string>());
        }
      } else if (!v.is_null()) {
        return absl::InvalidArgumentError("annotations.geo_preference must be a region or a list");
      }
    } else if (key == "resource_constraint") {
      if (v.is_null()) {
        a.memory_bytes = a.timeout_ms = a.cpu_millis = 0;
        continue;
      }
      if (!v.is_object()) return absl::InvalidArgumentError("annotations.resource_constraint must be an object");
      for (const auto& [rk, rv] : v.items()) {
        if (rk == "memory" || rk == "memory_bytes") {
          ASSIGN_OR_RETURN(a.memory_bytes, Quantity(rv, "memory", &ParseBytes));
        } else if (rk == "timeout" || rk == "timeout_ms") {
          ASSIGN_OR_RETURN(a.timeout_ms, Quantity(rv, "timeout", &ParseDurationMs));
        } else if (rk == "cpu" || rk == "cpu_millis") {
          ASSIGN_OR_RETURN(a.cpu_millis, Quantity(rv, "cpu", &ParseCpu));
        } else {
          return absl::InvalidArgumentError(absl::StrCat(
              "annotations.resource_constraint has unknown key '", rk, "' (memory, timeout, cpu)"));
        }
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown annotation '", key, "' (splitable, geo_preference, resource_constraint)"));
    }
  }
  return a;
}

absl::Status FunctionRegistry::Put(const Function& f) {
  return store_->PutDocument({kKind, f.name, ToDocument(f).dump(), f.updated_unix_ms});
}

absl::StatusOr<Function> FunctionRegistry::Deploy(const json& spec, int64_t now) {
  if (!spec.is_object()) return absl::InvalidArgumentError("deploy: expected a JSON object");
  Function f;
  f.name = spec.value("name", "");
  // A tenant's functions are "T~name" (manager/access.h); the name part
  // follows the rules, the tenant part was checked by the caller's token.
  const size_t tilde = f.name.find('~');
  const std::string local = tilde == std::string::npos ? f.name : f.name.substr(tilde + 1);
  if (!ValidName(local) || tilde == 0 || f.name.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "function name '", local, "' is not valid: 1 to 128 letters, digits, '_', '-' or '.'"));
  }
  f.runtime = spec.value("runtime", "python3");
  if (f.runtime != "python3") {
    return absl::InvalidArgumentError(
        absl::StrCat("function runtime '", f.runtime, "' is not supported (use python3)"));
  }
  f.source = spec.value("source", "");
  if (f.source.empty()) return absl::InvalidArgumentError("deploy: 'source' is empty");
  if (f.source.size() > kMaxSourceBytes) {
    return absl::InvalidArgumentError(absl::StrCat("deploy: source is ", f.source.size(),
                                                   " bytes; the limit is ", kMaxSourceBytes));
  }
  f.entrypoint = spec.value("entrypoint", "");
  if (!ValidIdentifier(f.entrypoint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "deploy: entrypoint '", f.entrypoint, "' must be the name of a function in the source"));
  }
  f.template_name = spec.value("template", "python");
  f.description = spec.value("description", "");
  f.sha256 = Sha256Hex(f.source);  // what the SDK compares to skip a redeploy

  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto existing, store_->GetDocument(kKind, f.name));
  Annotations base;
  if (existing) {
    ASSIGN_OR_RETURN(Function old, FromDocument(existing->body));
    base = old.annotations;
    f.created_unix_ms = old.created_unix_ms;
    if (old.sha256 == f.sha256 && old.entrypoint == f.entrypoint &&
        old.template_name == f.template_name && old.runtime == f.runtime) {
      f.version = old.version;
      f.analysis = old.analysis;
    } else {
      f.version = old.version + 1;
      RETURN_IF_ERROR(store_->PutDocument(
          {kKind, absl::StrCat(old.name, "@", old.version), existing->body, now}));
    }
  } else {
    f.version = 1;
    f.created_unix_ms = now;
  }
  ASSIGN_OR_RETURN(f.annotations,
                   MergeAnnotations(base, spec.contains("annotations") ? spec["annotations"] : json()));
  f.updated_unix_ms = now;
  RETURN_IF_ERROR(Put(f));
  return f;
}

absl::StatusOr<Function> FunctionRegistry::Get(const std::string& name) {
  ASSIGN_OR_RETURN(auto doc, store_->GetDocument(kKind, name));
  if (!doc || name.find('@') != std::string::npos) {
    return absl::NotFoundError(absl::StrCat("no function named '", name,
                                            "' (deploy it first: flotilla function deploy)"));
  }
  return FromDocument(doc->body);
}

absl::StatusOr<std::vector<Function>> FunctionRegistry::List() {
  ASSIGN_OR_RETURN(auto docs, store_->ListDocuments(kKind));
  std::vector<Function> out;
  for (const auto& d : docs) {
    if (d.key.find('@') != std::string::npos) continue;  // an old version
    ASSIGN_OR_RETURN(Function f, FromDocument(d.body));
    out.push_back(std::move(f));
  }
  return out;
}

absl::Status FunctionRegistry::Delete(const std::string& name) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(auto doc, store_->GetDocument(kKind, name));
  if (!doc || name.find('@') != std::string::npos) {
    return absl::NotFoundError(absl::StrCat("no function named '", name, "'"));
  }
  ASSIGN_OR_RETURN(Function f, FromDocument(doc->body));
  return store_->Transaction([&]() -> absl::Status {
    for (int64_t v = 1; v < f.version; ++v) {
      RETURN_IF_ERROR(store_->DeleteDocument(kKind, absl::StrCat(name, "@", v)).status());
    }
    return store_->DeleteDocument(kKind, name).status();
  });
}

absl::StatusOr<Function> FunctionRegistry::UpdateAnnotations(const std::string& name,
                                                             const json& partial, int64_t now) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Function f, Get(name));
  ASSIGN_OR_RETURN(f.annotations, MergeAnnotations(f.annotations, partial));
  f.updated_unix_ms = now;
  RETURN_IF_ERROR(Put(f));
  return f;
}

absl::Status FunctionRegistry::SaveAnalysis(const std::string& name, const std::string& sha256,
                                            const std::string& analysis) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Function f, Get(name));
  if (f.sha256 != sha256) return absl::OkStatus();
  f.analysis = analysis;
  return Put(f);
}

}  // namespace flotilla::manager
