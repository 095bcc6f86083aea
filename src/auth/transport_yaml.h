// The `tls:` section shared by the manager's and the agents' config files:
// {ca, cert, key, crl, insecure}.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "auth/pki.h"
#include "common/status_macros.h"
#include "common/yaml_util.h"

namespace flotilla::auth {

// Reads root["tls"] into `t` when present; `where` prefixes errors.
inline absl::Status ReadTransportYaml(const YAML::Node& root, const std::string& where,
                                      Transport* t) {
  const YAML::Node tls = root["tls"];
  if (!tls) return absl::OkStatus();
  const std::string w = where + "tls.";
  RETURN_IF_ERROR(CheckKnownKeys(tls, w, {"ca", "cert", "key", "crl", "insecure"}));
  RETURN_IF_ERROR(ReadYaml(tls, w, "crl", &t->crl));
  RETURN_IF_ERROR(ReadYaml(tls, w, "ca", &t->files.ca_cert));
  RETURN_IF_ERROR(ReadYaml(tls, w, "cert", &t->files.cert));
  RETURN_IF_ERROR(ReadYaml(tls, w, "key", &t->files.key));
  return ReadYaml(tls, w, "insecure", &t->insecure);
}

}  // namespace flotilla::auth
