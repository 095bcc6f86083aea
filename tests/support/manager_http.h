// A client of the HTTP port of the manager a FederationHarness started, as
// the CLI makes it (cli/function_command.cc): HTTPS that trusts only the
// harness's CA and the manager's name, or plain HTTP in the development mode.
#pragma once

#include <httplib.h>
#include <signal.h>

#include <string>

#include "auth/https_trust.h"
#include "support/federation_harness.h"

namespace flotilla::testing {

// "https://host:port" (or "http://" in the development mode).
inline std::string ManagerUrl(const FederationHarness& h) {
  return (h.insecure() ? "http://" : "https://") + h.http_address();
}

// Trusts the manager certified by `ca_file` only (auth/https_trust.h);
// "" for the harness's own CA. Throws if the CA does not load.
inline httplib::Client ManagerHttp(const FederationHarness& h, const std::string& token = "",
                                   const std::string& ca_file = "") {
  // OpenSSL writes with write(2): a server that closes first (a refused
  // body) would end the test process with SIGPIPE instead of failing a call.
  signal(SIGPIPE, SIG_IGN);
  httplib::Client c(ManagerUrl(h));
  if (!h.insecure()) {
    c.enable_server_certificate_verification(false);
    absl::Status st =
        auth::TrustManagerOnly(c.ssl_context(), ca_file.empty() ? h.ca_cert() : ca_file);
    if (!st.ok()) throw std::runtime_error("trust the manager: " + std::string(st.message()));
  }
  if (!token.empty()) c.set_bearer_token_auth(token);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(20, 0);
  return c;
}

}  // namespace flotilla::testing
