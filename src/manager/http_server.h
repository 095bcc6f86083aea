// The manager's HTTP port: /healthz, /metrics (Prometheus text format) and
// the REST API (rest.h).
// With TLS (every mode but the insecure development one) the port speaks
// HTTPS only, TLS 1.2 or later, with the manager's own certificate: bearer
// tokens never cross the network in clear. Clients are not asked for
// certificates; they prove who they are with tokens.
// Runs its own listener thread; stopping joins it.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "auth/caller.h"

namespace httplib {
class Server;
}

namespace flotilla::manager {

// The port's server certificate (chain) and its private key, PEM files.
struct HttpTls {
  std::string cert_file;
  std::string key_file;
};

struct HttpOptions {
  auth::Gate gate;                  // who may call (REST routes check it)
  bool metrics_need_token = false;  // /healthz is always open
  size_t max_body_bytes = 8 << 20;  // larger bodies get 413
  int threads = 16;                 // requests served at once
  std::optional<HttpTls> tls;       // unset: plain HTTP (tls.insecure only)
};

class HttpServer {
 public:
  ~HttpServer();
  // Binds `listen` ("host:port", port 0 picks one) and serves in a thread.
  // `routes`, when set, registers more handlers (the REST API) before serving.
  // Every request passes the checks of http_guard.h first. With
  // options.tls, InvalidArgument names the certificate or key that does not
  // load.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(
      const std::string& listen, std::function<std::string()> metrics,
      std::function<void(httplib::Server&)> routes = nullptr, HttpOptions options = {});
  // "host:port" actually bound.
  const std::string& address() const { return address_; }
  void Stop();

 private:
  HttpServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
};

// Splits "host:port"; returns InvalidArgument naming the text when it is not.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address);

}  // namespace flotilla::manager
