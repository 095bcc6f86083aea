#include "pool/environment_template.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/units.h"
#include "common/yaml_util.h"

namespace flotilla::pool {

namespace {

// A parser from common/units with the key named in its error.
template <typename Parse>
absl::StatusOr<int64_t> Quantity(Parse parse, const std::string& where, const std::string& text) {
  auto v = parse(text);
  if (!v.ok()) return Annotate(v.status(), where);
  return v;
}

absl::StatusOr<int64_t> Bytes(const std::string& where, const std::string& text) {
  return Quantity(ParseBytes, where, text);
}
absl::StatusOr<int64_t> Millis(const std::string& where, const std::string& text) {
  return Quantity(ParseDurationMs, where, text);
}
absl::StatusOr<int64_t> Cpu(const std::string& where, const std::string& text) {
  return Quantity(ParseCpu, where, text);
}

}  // namespace

const char* ToString(Lifecycle l) { return l == Lifecycle::kReuse ? "reuse" : "destroy"; }
const char* ToString(NetworkPolicy n) { return n == NetworkPolicy::kNone ? "none" : "egress"; }
const char* ToString(Isolation i) { return i == Isolation::kMicroVm ? "microvm" : "linux"; }

absl::StatusOr<EnvironmentTemplate> LoadTemplate(const std::string& path) {
  ASSIGN_OR_RETURN(YAML::Node root, LoadYamlFile(path, "template"));
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping"));
  const std::string where = path + ": ";
  RETURN_IF_ERROR(CheckKnownKeys(root, where,
                                 {"name", "description", "runtime", "rootfs", "env", "files",
                                  "limits", "network", "python_preload", "pool", "isolation"}));
  EnvironmentTemplate t;
  t.source_path = path;
  RETURN_IF_ERROR(ReadYaml(root, where, "name", &t.name));
  if (!IsValidId(t.name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "name: '", t.name, "' is not a valid name"));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "description", &t.description));
  RETURN_IF_ERROR(ReadYaml(root, where, "runtime", &t.runtime));
  if (t.runtime != "shell" && t.runtime != "python3") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "runtime: '", t.runtime, "' is not one of shell, python3"));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "rootfs", &t.rootfs));
  if (t.rootfs != "host" && (t.rootfs.empty() || t.rootfs[0] != '/')) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "rootfs: use \"host\" or an absolute directory, not '", t.rootfs, "'"));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "env", &t.env));
  if (const YAML::Node files = root["files"]) {
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string w = absl::StrCat(where, "files[", i, "].");
      RETURN_IF_ERROR(CheckKnownKeys(files[i], w, {"path", "content", "mode"}));
      sandbox::TaskFile f;
      RETURN_IF_ERROR(ReadYaml(files[i], w, "path", &f.path));
      RETURN_IF_ERROR(ReadYaml(files[i], w, "content", &f.content));
      RETURN_IF_ERROR(ReadYaml(files[i], w, "mode", &f.mode));
      if (f.path.empty() || f.path[0] == '/' || f.path.find("..") != std::string::npos) {
        return absl::InvalidArgumentError(w + "path: must be relative, without '..'");
      }
      t.files.push_back(std::move(f));
    }
  }
  if (const YAML::Node l = root["limits"]) {
    const std::string w = where + "limits.";
    RETURN_IF_ERROR(CheckKnownKeys(l, w, {"cpu", "memory", "pids", "tmp", "work", "timeout"}));
    std::string v;
    if (l["cpu"]) {
      RETURN_IF_ERROR(ReadYaml(l, w, "cpu", &v));
      ASSIGN_OR_RETURN(t.limits.cpu_millis, Cpu(w + "cpu", v));
    }
    if (l["memory"]) {
      RETURN_IF_ERROR(ReadYaml(l, w, "memory", &v));
      ASSIGN_OR_RETURN(t.limits.memory_bytes, Bytes(w + "memory", v));
    }
    RETURN_IF_ERROR(ReadYaml(l, w, "pids", &t.limits.pids));
    if (l["tmp"]) {
      RETURN_IF_ERROR(ReadYaml(l, w, "tmp", &v));
      ASSIGN_OR_RETURN(t.limits.tmp_bytes, Bytes(w + "tmp", v));
    }
    if (l["work"]) {
      RETURN_IF_ERROR(ReadYaml(l, w, "work", &v));
      ASSIGN_OR_RETURN(t.limits.work_bytes, Bytes(w + "work", v));
    }
    if (l["timeout"]) {
      RETURN_IF_ERROR(ReadYaml(l, w, "timeout", &v));
      ASSIGN_OR_RETURN(int64_t ms, Millis(w + "timeout", v));
      t.limits.timeout = std::chrono::milliseconds(ms);
    }
    if (t.limits.cpu_millis <= 0 || t.limits.memory_bytes <= 0 || t.limits.pids <= 0) {
      return absl::InvalidArgumentError(w + " cpu, memory and pids must be > 0");
    }
  }
  std::string isolation = "linux";
  RETURN_IF_ERROR(ReadYaml(root, where, "isolation", &isolation));
  if (isolation == "linux") {
    t.isolation = Isolation::kContainer;
  } else if (isolation == "microvm") {
    t.isolation = Isolation::kMicroVm;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "isolation: '", isolation, "' is not one of linux, microvm"));
  }
  std::string network = "none";
  RETURN_IF_ERROR(ReadYaml(root, where, "network", &network));
  if (network == "none") {
    t.network = NetworkPolicy::kNone;
  } else if (network == "egress") {
    t.network = NetworkPolicy::kEgress;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "network: '", network, "' is not one of none, egress"));
  }
  RETURN_IF_ERROR(ReadYaml(root, where, "python_preload", &t.python_preload));
  if (const YAML::Node p = root["pool"]) {
    const std::string w = where + "pool.";
    RETURN_IF_ERROR(CheckKnownKeys(p, w, {"min", "max", "lifecycle"}));
    RETURN_IF_ERROR(ReadYaml(p, w, "min", &t.pool_min));
    RETURN_IF_ERROR(ReadYaml(p, w, "max", &t.pool_max));
    std::string lifecycle = "reuse";
    RETURN_IF_ERROR(ReadYaml(p, w, "lifecycle", &lifecycle));
    if (lifecycle == "reuse") {
      t.lifecycle = Lifecycle::kReuse;
    } else if (lifecycle == "destroy") {
      t.lifecycle = Lifecycle::kDestroy;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(w, "lifecycle: '", lifecycle, "' is not one of reuse, destroy"));
    }
    if (t.pool_min < 0 || t.pool_max < 1 || t.pool_min > t.pool_max) {
      return absl::InvalidArgumentError(absl::StrCat(w, "need 0 <= min <= max and max >= 1 (min ",
                                                     t.pool_min, ", max ", t.pool_max, ")"));
    }
  }
  return t;
}

absl::StatusOr<std::vector<EnvironmentTemplate>> LoadTemplates(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".yaml") paths.push_back(entry.path().string());
  }
  if (ec)
    return absl::NotFoundError(
        absl::StrCat("cannot list templates in `", dir, "`: ", ec.message()));
  std::sort(paths.begin(), paths.end());
  std::vector<EnvironmentTemplate> out;
  std::set<std::string> names;
  for (const auto& p : paths) {
    ASSIGN_OR_RETURN(EnvironmentTemplate t, LoadTemplate(p));
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(p, ": template '", t.name, "' is defined twice"));
    }
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

sandbox::TaskSpec TaskWithTemplate(const sandbox::TaskSpec& spec, const EnvironmentTemplate& t) {
  sandbox::TaskSpec task = spec;
  std::map<std::string, std::string> env = t.env;
  for (const auto& [k, v] : spec.env) env[k] = v;
  if (t.env.count("HOME")) env["HOME"] = t.env.at("HOME");
  if (t.env.count("PATH")) env["PATH"] = t.env.at("PATH");
  task.env = std::move(env);
  task.files = t.files;
  task.files.insert(task.files.end(), spec.files.begin(), spec.files.end());
  return task;
}

}  // namespace flotilla::pool
