#include "manager/http_server.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "manager/http_guard.h"

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

std::string OpenSslReason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

// An HTTPS listener with the manager's certificate. TLS 1.2 is the floor:
// 1.0 and 1.1 are deprecated (RFC 8996). No client certificate is asked
// for: browsers and the SDK present tokens, and the CLI's REST calls
// (function_command.cc) have only the CA.
absl::StatusOr<std::unique_ptr<httplib::Server>> NewTlsServer(const HttpTls& tls) {
  absl::Status failed = absl::OkStatus();
  auto setup = [&](SSL_CTX& ctx) {
    SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1) {
      failed = absl::InvalidArgumentError(absl::StrCat("HTTPS: cannot load the certificate ",
                                                       tls.cert_file, ": ", OpenSslReason()));
      return false;
    }
    if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(&ctx) != 1) {
      failed =
          absl::InvalidArgumentError(absl::StrCat("HTTPS: cannot load the key ", tls.key_file,
                                                  " for ", tls.cert_file, ": ", OpenSslReason()));
      return false;
    }
    return true;
  };
  auto server = std::make_unique<httplib::SSLServer>(setup);
  if (!failed.ok()) return failed;
  if (!server->is_valid()) {
    return absl::InternalError(absl::StrCat("HTTPS: cannot set up TLS: ", OpenSslReason()));
  }
  return server;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(
    const std::string& listen, std::function<std::string()> metrics,
    std::function<void(httplib::Server&)> routes, HttpOptions options) {
  auto hp = SplitHostPort(listen);
  if (!hp.ok()) return hp.status();
  std::unique_ptr<HttpServer> s(new HttpServer());
  if (options.tls) {
    // OpenSSL writes with write(2), not send(MSG_NOSIGNAL) as httplib does on
    // plain sockets: a client that hangs up mid-answer would end the process
    // with SIGPIPE. The flotilla binary ignores it already (cli/main.cc);
    // this covers tests and benches that embed the server.
    signal(SIGPIPE, SIG_IGN);
    auto tls = NewTlsServer(*options.tls);
    if (!tls.ok()) return tls.status();
    s->server_ = std::move(*tls);
  } else {
    s->server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(4, options.threads);
  s->server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s->server_->set_payload_max_length(options.max_body_bytes);
  // httplib writes an answer's headers and body separately: with Nagle on, a
  // kept-alive connection waited for the client's delayed ACK, 40 ms a
  // request (bench/https_bench.cc, plain and TLS alike).
  s->server_->set_tcp_nodelay(true);
  // A kept-alive connection holds one of the pool's threads between its
  // requests, so an idle one is closed after 2 s (httplib's default is 5):
  // a client pooling connections (the Python SDK keeps up to 8) ties up
  // threads for at most that long. While busy, one connection carries up
  // to 100 requests before it must handshake again (the default, 5, made
  // every fifth SDK call pay a TLS handshake).
  s->server_->set_keep_alive_timeout(2);
  s->server_->set_keep_alive_max_count(100);
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
    return absl::UnavailableError(absl::StrCat("cannot listen for HTTP", options.tls ? "S" : "",
                                               " on ", listen,
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
