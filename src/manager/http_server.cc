#include "manager/http_server.h"

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "manager/http_guard.h"
#include "absl/strings/str_cat.h"

namespace flotilla::manager {

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(const std::string& address) {
  auto colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", address, "' is not a host:port address (e.g. 127.0.0.1:7071)"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, port);
}

namespace {

void Refuse(httplib::Response& res, int status, const absl::Status& why) {
  res.status = status;
  res.set_content(nlohmann::json{{"error", std::string(why.message())}}.dump() + "\n",
                  "application/json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const std::string& listen, std::function<std::string()> metrics,
    std::function<void(httplib::Server&)> routes, HttpOptions options) {
  auto hp = SplitHostPort(listen);
  if (!hp.ok()) return hp.status();
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->server_ = std::make_unique<httplib::Server>();
  const int threads = std::max(4, options.threads);
  s->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->server_->set_payload_max_length(options.max_body_bytes);
  // A client that sends its request slowly holds a thread: bounded.
  s->server_->set_read_timeout(10, 0);
  s->server_->set_write_timeout(10, 0);
  s->server_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s->server_->Get("/metrics", [metrics, gate = options.gate, need = options.metrics_need_token](
                                  const httplib::Request& req, httplib::Response& res) {
    if (need) {
      auto caller = gate.RequireUser(gate.FromBearer(req.get_header_value("Authorization")));
      if (!caller.ok()) {
        res.set_header("WWW-Authenticate", "Bearer");
        return Refuse(res, caller.status().code() == absl::StatusCode::kUnauthenticated ? 401 : 403,
                      caller.status());
      }
    }
    res.set_content(metrics(), "text/plain; version=0.0.4");
  });
  if (routes) routes(*s->server_);
  int port = hp->second;
  if (port == 0) {
    port = s->server_->bind_to_any_port(hp->first);
  } else if (!s->server_->bind_to_port(hp->first, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP on ", listen,
                                               ": address in use or not available"));
  }
  s->address_ = absl::StrCat(hp->first, ":", port);
  // Before any route: the checks of http_guard.h, for every path.
  s->server_->set_pre_routing_handler(
      [bound = hp->first, port](const httplib::Request& req, httplib::Response& res) {
        const std::string host = req.get_header_value("Host");
        if (absl::Status st = CheckHost(host, bound, port); !st.ok()) {
          Refuse(res, 403, st);
          return httplib::Server::HandlerResponse::Handled;
        }
        if (absl::Status st = CheckOrigin(req.get_header_value("Origin"), host); !st.ok()) {
          Refuse(res, 403, st);
          return httplib::Server::HandlerResponse::Handled;
        }
        if (absl::Status st = CheckContentType(req.method, req.get_header_value("Content-Type"),
                                               req.body.size());
            !st.ok()) {
          Refuse(res, 415, st);
          return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });
  httplib::Server* raw = s->server_.get();
  s->thread_ = std::thread([raw] { raw->listen_after_bind(); });
  return s;
}

void HttpServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace flotilla::manager
