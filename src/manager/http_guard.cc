#include "manager/http_guard.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace flotilla::manager {

namespace {

bool IsLoopbackName(absl::string_view host) {
  return host == "localhost" || host == "127.0.0.1" || host == "[::1]" || host == "::1";
}

}  // namespace

absl::Status CheckHost(absl::string_view host_header, absl::string_view bound_host, int port) {
  if (host_header.empty()) {
    return absl::InvalidArgumentError("the request has no Host header");
  }
  absl::string_view host = host_header;
  absl::string_view port_text;
  if (auto colon = host.rfind(':'); colon != absl::string_view::npos && host.back() != ']') {
    port_text = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  int p = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &p) || p != port) {
    return absl::PermissionDeniedError(absl::StrCat(
        "Host '", host_header, "' does not name this server (port ", port, ")"));
  }
  const std::string lower = absl::AsciiStrToLower(host);
  // Bound to every address: any name reaches it, so none can be refused.
  if (bound_host == "0.0.0.0" || bound_host == "::" || bound_host == "[::]") {
    return absl::OkStatus();
  }
  if (lower == absl::AsciiStrToLower(bound_host)) return absl::OkStatus();
  if (IsLoopbackName(lower) && IsLoopbackName(bound_host)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "Host '", host_header, "' does not name this server (", bound_host, ":", port,
      "); requests through other names are refused (DNS rebinding)"));
}

absl::Status CheckOrigin(absl::string_view origin, absl::string_view host_header) {
  if (origin.empty()) return absl::OkStatus();  // not from a browser page
  if (origin == absl::StrCat("http://", host_header) ||
      origin == absl::StrCat("https://", host_header)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "cross-origin requests are refused (Origin '", origin, "', this server is ", host_header,
      ")"));
}

absl::Status CheckContentType(absl::string_view method, absl::string_view content_type,
                              size_t body_size) {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS") return absl::OkStatus();
  if (body_size == 0 && content_type.empty()) return absl::OkStatus();
  absl::string_view type = content_type.substr(0, content_type.find(';'));
  type = absl::StripAsciiWhitespace(type);
  if (absl::EqualsIgnoreCase(type, "application/json")) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the body must be sent as Content-Type: application/json, not '", content_type, "'"));
}

bool JsonTooDeep(absl::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
      case '{':
        if (++depth > max_depth) return true;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default: break;
    }
  }
  return false;
}

}  // namespace flotilla::manager
