#include "cli/request_file.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "cli/output.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace flotilla::cli {

namespace v1 = ::flotilla::v1;

namespace {

absl::Status ParseOne(const YAML::Node& doc, const std::string& where, v1::ExecutionRequest* r) {
  RETURN_IF_ERROR(CheckKnownKeys(
      doc, where,
      {"id", "name", "user", "command", "runtime", "source", "resources", "timeout", "priority",
       "security", "data", "env", "files", "stdin", "placement", "template", "function"}));
  if (const YAML::Node p = doc["placement"]) {
    const std::string w = where + "placement.";
    RETURN_IF_ERROR(CheckKnownKeys(p, w, {"mode", "latency_bound", "regions", "required_regions"}));
    std::string mode = "score", bound;
    std::vector<std::string> regions, required;
    RETURN_IF_ERROR(ReadYaml(p, w, "mode", &mode));
    RETURN_IF_ERROR(ReadYaml(p, w, "latency_bound", &bound));
    RETURN_IF_ERROR(ReadYaml(p, w, "regions", &regions));
    RETURN_IF_ERROR(ReadYaml(p, w, "required_regions", &required));
    auto* pl = r->mutable_placement();
    if (mode == "score") {
      pl->set_mode(v1::PLACEMENT_SCORE);
    } else if (mode == "bid") {
      pl->set_mode(v1::PLACEMENT_BID);
    } else if (mode == "cheapest") {
      pl->set_mode(v1::PLACEMENT_CHEAPEST);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(w, "mode: '", mode, "' is not one of score, bid, cheapest"));
    }
    if (!bound.empty()) {
      auto ms = ParseDurationMs(bound);
      if (!ms.ok()) return Annotate(ms.status(), w + "latency_bound");
      pl->set_latency_bound_ms(*ms);
    }
    for (auto& x : regions) pl->add_preferred_regions(x);
    for (auto& x : required) pl->add_required_regions(x);
  }
  std::string tmpl, function;
  RETURN_IF_ERROR(ReadYaml(doc, where, "template", &tmpl));
  RETURN_IF_ERROR(ReadYaml(doc, where, "function", &function));
  r->set_template_name(tmpl);
  r->set_function(function);
  std::string s;
  RETURN_IF_ERROR(ReadYaml(doc, where, "id", &s));
  r->set_request_id(s);
  s.clear();
  RETURN_IF_ERROR(ReadYaml(doc, where, "name", &s));
  r->set_name(s);
  s.clear();
  if (doc["user"]) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "user: no longer a request key: the tenant and user come from your token "
               "(FLOTILLA_TOKEN); remove it"));
  }
  std::vector<std::string> argv;
  if (doc["command"] && doc["command"].IsScalar()) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, "command: give a list such as [\"echo\", \"hi\"], or use runtime: shell with source"));
  }
  RETURN_IF_ERROR(ReadYaml(doc, where, "command", &argv));
  for (auto& a : argv) r->mutable_code()->add_argv(a);
  s.clear();
  RETURN_IF_ERROR(ReadYaml(doc, where, "runtime", &s));
  r->mutable_code()->set_runtime(s);
  s.clear();
  RETURN_IF_ERROR(ReadYaml(doc, where, "source", &s));
  r->mutable_code()->set_source(s);
  if (const YAML::Node res = doc["resources"]) {
    const std::string w = where + "resources.";
    RETURN_IF_ERROR(CheckKnownKeys(res, w, {"cpu", "memory", "storage"}));
    std::string cpu, memory, storage;
    RETURN_IF_ERROR(ReadYaml(res, w, "cpu", &cpu));
    RETURN_IF_ERROR(ReadYaml(res, w, "memory", &memory));
    RETURN_IF_ERROR(ReadYaml(res, w, "storage", &storage));
    if (!cpu.empty()) {
      auto v = ParseCpu(cpu);
      if (!v.ok()) return Annotate(v.status(), w + "cpu");
      r->mutable_resources()->set_cpu_millis(*v);
    }
    if (!memory.empty()) {
      auto v = ParseBytes(memory);
      if (!v.ok()) return Annotate(v.status(), w + "memory");
      r->mutable_resources()->set_memory_bytes(*v);
    }
    if (!storage.empty()) {
      auto v = ParseBytes(storage);
      if (!v.ok()) return Annotate(v.status(), w + "storage");
      r->mutable_resources()->set_storage_bytes(*v);
    }
  }
  s.clear();
  RETURN_IF_ERROR(ReadYaml(doc, where, "timeout", &s));
  if (!s.empty()) {
    auto v = ParseDurationMs(s);
    if (!v.ok()) return Annotate(v.status(), where + "timeout");
    r->set_timeout_ms(*v);
  }
  int priority = 0;
  RETURN_IF_ERROR(ReadYaml(doc, where, "priority", &priority));
  r->set_priority(priority);
  if (const YAML::Node sec = doc["security"]) {
    const std::string w = where + "security.";
    RETURN_IF_ERROR(CheckKnownKeys(sec, w, {"min_trust", "capabilities"}));
    int trust = 0;
    std::vector<std::string> caps;
    RETURN_IF_ERROR(ReadYaml(sec, w, "min_trust", &trust));
    RETURN_IF_ERROR(ReadYaml(sec, w, "capabilities", &caps));
    r->mutable_security()->set_min_trust_level(trust);
    for (auto& c : caps) r->mutable_security()->add_required_capabilities(c);
  }
  std::vector<std::string> data;
  RETURN_IF_ERROR(ReadYaml(doc, where, "data", &data));
  for (auto& d : data) r->mutable_dependencies()->add_data_keys(d);
  std::map<std::string, std::string> env;
  RETURN_IF_ERROR(ReadYaml(doc, where, "env", &env));
  for (auto& [k, v] : env) (*r->mutable_env())[k] = v;
  if (const YAML::Node files = doc["files"]) {
    if (!files.IsSequence()) {
      return absl::InvalidArgumentError(where + "files: expected a list of {path, content, mode}");
    }
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string w = absl::StrCat(where, "files[", i, "].");
      RETURN_IF_ERROR(CheckKnownKeys(files[i], w, {"path", "content", "mode"}));
      auto* f = r->mutable_dependencies()->add_files();
      std::string path, content;
      uint32_t mode = 0644;
      RETURN_IF_ERROR(ReadYaml(files[i], w, "path", &path));
      RETURN_IF_ERROR(ReadYaml(files[i], w, "content", &content));
      RETURN_IF_ERROR(ReadYaml(files[i], w, "mode", &mode));
      f->set_path(path);
      f->set_content(content);
      f->set_mode(mode);
    }
  }
  s.clear();
  RETURN_IF_ERROR(ReadYaml(doc, where, "stdin", &s));
  r->set_stdin(s);
  if (r->code().argv_size() == 0 && r->code().source().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "nothing to run: give `command: [...]` or `runtime:` with `source:`"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<v1::ExecutionRequest>> LoadRequestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read `", path, "`"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Not YAML::LoadAll: on some malformed streams it never returns (found by
  // fuzzing request files); LoadAllYaml refuses them.
  ASSIGN_OR_RETURN(std::vector<YAML::Node> docs, LoadAllYaml(text, path));
  std::vector<v1::ExecutionRequest> out;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!docs[i] || docs[i].IsNull()) continue;
    const std::string where =
        docs.size() > 1 ? absl::StrCat(path, " (document ", i + 1, "): ") : path + ": ";
    if (!docs[i].IsMap()) return absl::InvalidArgumentError(where + "expected a mapping");
    v1::ExecutionRequest r;
    RETURN_IF_ERROR(ParseOne(docs[i], where, &r));
    out.push_back(std::move(r));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no request in the file"));
  return out;
}

}  // namespace flotilla::cli
