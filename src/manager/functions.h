// FunctionRegistry: deployed functions — named, versioned Python code with
// annotations — kept durably in the Store (documents of kind "function";
// superseded versions under "NAME@VERSION"). Names are tenant-qualified by
// the services ("T~name" for tenant T, plain in tenant default; see
// manager/access.h); the registry itself holds every tenant's.
//
// A deploy of a known name with a different source, entrypoint, runtime or
// template is a new version; the same code again keeps the version and only
// replaces what changed of the annotations. Annotations can also be changed
// alone (UpdateAnnotations): the next invocation obeys them, no redeploy.
//
// Thread-safe: one mutex serialises writes; reads go to the Store.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store/store.h"

namespace flotilla::manager {

struct Annotations {
  bool splitable = false;
  std::vector<std::string> geo_preference;  // preferred regions, in order
  int64_t memory_bytes = 0;                 // resource_constraint; 0: the template's
  int64_t timeout_ms = 0;
  int64_t cpu_millis = 0;
};

struct Function {
  std::string name;
  int64_t version = 0;
  std::string runtime = "python3";
  std::string source;
  std::string entrypoint;
  std::string template_name = "python";
  std::string description;
  Annotations annotations;
  std::string sha256;  // of the source (lowercase hex)
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
  // The split analysis of this version (the analyzer's JSON), once made.
  std::string analysis;
};

// The REST form (docs/workflows.md). `with_source` adds the source text.
nlohmann::json FunctionToJson(const Function& f, bool with_source);
nlohmann::json AnnotationsToJson(const Annotations& a);

// Applies the keys present in `j` to `base`: splitable (bool), geo_preference
// (a region or a list), resource_constraint {memory, timeout, cpu} as
// numbers (bytes, ms, millicores) or unit strings ("256Mi", "30s", "500m").
// InvalidArgument names the key and the bad value.
absl::StatusOr<Annotations> MergeAnnotations(const Annotations& base, const nlohmann::json& j);

class FunctionRegistry {
 public:
  explicit FunctionRegistry(store::Store* store) : store_(store) {}

  // `spec`: {name, source, entrypoint, runtime?, template?, description?,
  // annotations?}. Returns the stored function.
  absl::StatusOr<Function> Deploy(const nlohmann::json& spec, int64_t now_unix_ms);
  // NotFound names the function.
  absl::StatusOr<Function> Get(const std::string& name);
  absl::StatusOr<std::vector<Function>> List();
  // NotFound when there was no such function.
  absl::Status Delete(const std::string& name);
  absl::StatusOr<Function> UpdateAnnotations(const std::string& name, const nlohmann::json& partial,
                                             int64_t now_unix_ms);
  // Records the analysis of version `sha256` (ignored if the function moved on).
  absl::Status SaveAnalysis(const std::string& name, const std::string& sha256,
                            const std::string& analysis);

 private:
  absl::Status Put(const Function& f);

  store::Store* const store_;
  absl::Mutex mu_;  // serialises read-modify-write of one function
};

}  // namespace flotilla::manager
