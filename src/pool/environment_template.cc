#include "pool/environment_template.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/ids.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace flotilla::pool {

namespace {

// "256Mi" / "1Gi" / "64M" / plain bytes.
absl::StatusOr<int64_t> Bytes(const std::string& where, const std::string& text) {
  size_t i = 0;
  while (i < text.size() && isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return absl::InvalidArgumentError(absl::StrCat(where, ": '", text, "' is not a size"));
  int64_t n = std::stoll(text.substr(0, i));
  const std::string unit = text.substr(i);
  static const std::map<std::string, int64_t> kUnits = {
      {"", 1}, {"K", 1000}, {"M", 1000000}, {"G", 1000000000},
      {"Ki", 1024}, {"Mi", 1ll << 20}, {"Gi", 1ll << 30}};
  auto it = kUnits.find(unit);
  if (it == kUnits.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": '", text, "' has an unknown unit (use Ki, Mi, Gi, K, M, G)"));
  }
  return n * it->second;
}

absl::StatusOr<int64_t> Millis(const std::string& where, const std::string& text) {
  size_t i = 0;
  while (i < text.size() && isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0) return absl::InvalidArgumentError(absl::StrCat(where, ": '", text, "' is not a duration"));
  int64_t n = std::stoll(text.substr(0, i));
  const std::string unit = text.substr(i);
  if (unit == "" || unit == "ms") return n;
  if (unit == "s") return n * 1000;
  if (unit == "m") return n * 60000;
  return absl::InvalidArgumentError(absl::StrCat(where, ": '", text, "' has an unknown unit (ms, s, m)"));
}

absl::StatusOr<int64_t> Cpu(const std::string& where, const std::string& text) {
  if (!text.empty() && text.back() == 'm') {
    ASSIGN_OR_RETURN(int64_t n, Bytes(where, text.substr(0, text.size() - 1)));
    return n;
  }
  try {
    size_t used = 0;
    double cores = std::stod(text, &used);
    if (used == text.size() && cores > 0) return static_cast<int64_t>(cores * 1000);
  } catch (...) {
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": '", text, "' is not a cpu amount (500m, 2)"));
}

}  // namespace

const char* ToString(Lifecycle l) { return l == Lifecycle::kReuse ? "reuse" : "destroy"; }
const char* ToString(NetworkPolicy n) { return n == NetworkPolicy::kNone ? "none" : "egress"; }

absl::StatusOr<EnvironmentTemplate> LoadTemplate(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return absl::NotFoundError(absl::StrCat("cannot read template `", path, "`"));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a mapping"));
  const std::string where = path + ": ";
  RETURN_IF_ERROR(CheckKnownKeys(root, where,
                                 {"name", "description", "runtime", "rootfs", "env", "files",
                                  "limits", "network", "python_preload", "pool"}));
  EnvironmentTemplate t;
  t.source_path = path;
  RETURN_IF_ERROR(ReadYaml(root, where, "name", &t.name));
  if (!IsValidId(t.name)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "name: '", t.name, "' is not a valid name"));
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
      return absl::InvalidArgumentError(
          absl::StrCat(w, "need 0 <= min <= max and max >= 1 (min ", t.pool_min, ", max ",
                       t.pool_max, ")"));
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
  if (ec) return absl::NotFoundError(absl::StrCat("cannot list templates in `", dir, "`: ", ec.message()));
  std::sort(paths.begin(), paths.end());
  std::vector<EnvironmentTemplate> out;
  std::set<std::string> names;
  for (const auto& p : paths) {
    ASSIGN_OR_RETURN(EnvironmentTemplate t, LoadTemplate(p));
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(absl::StrCat(p, ": template '", t.name, "' is defined twice"));
    }
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

}  // namespace flotilla::pool
