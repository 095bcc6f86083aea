#include "kv/kv.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace flotilla::kv {
namespace {

// Keys may hold any bytes; show at most 64 of them, escaped, in messages.
std::string Printable(absl::string_view bytes) {
  constexpr size_t kShown = 64;
  if (bytes.size() <= kShown) return absl::CHexEscape(bytes);
  return absl::StrCat(absl::CHexEscape(bytes.substr(0, kShown)), "...");
}

absl::Status CheckLength(absl::string_view what, absl::string_view bytes, size_t max) {
  if (bytes.size() > max) {
    return absl::InvalidArgumentError(absl::StrFormat("%s \"%s\" is %d bytes; the limit is %d",
                                                      what, Printable(bytes), bytes.size(), max));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kPut:
      return "put";
    case EventType::kDelete:
      return "delete";
    case EventType::kExpire:
      return "expire";
  }
  return "unknown";
}

absl::Status ValidateNamespace(absl::string_view ns, const KvLimits& limits) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace must not be empty");
  RETURN_IF_ERROR(CheckLength("namespace", ns, limits.max_namespace_bytes));
  for (size_t i = 0; i < ns.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(ns[i]);
    if (c < 0x21 || c > 0x7e || c == '{' || c == '}') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "namespace \"%s\" has byte 0x%02x at offset %d; namespaces are printable ASCII "
          "without spaces, '{' or '}'",
          Printable(ns), c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePrefix(absl::string_view prefix, const KvLimits& limits) {
  RETURN_IF_ERROR(CheckLength("key prefix", prefix, limits.max_key_bytes));
  if (size_t pos = prefix.find('\0'); pos != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("key prefix \"%s\" has a NUL byte at offset %d; keys must not contain NUL",
                        Printable(prefix), pos));
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key, const KvLimits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("key must not be empty");
  RETURN_IF_ERROR(CheckLength("key", key, limits.max_key_bytes));
  if (size_t pos = key.find('\0'); pos != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "key \"%s\" has a NUL byte at offset %d; keys must not contain NUL", Printable(key), pos));
  }
  return absl::OkStatus();
}

absl::Status ValidateValue(absl::string_view value, const KvLimits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("value is %d bytes; the limit is %d (KvLimits::max_value_bytes)",
                        value.size(), limits.max_value_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateIfVersion(int64_t if_version) {
  if (if_version < kAnyVersion) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "if_version %d is invalid; use -1 (any), 0 (must not exist) or a version", if_version));
  }
  return absl::OkStatus();
}

absl::Status ValidatePutOptions(const PutOptions& options) {
  if (options.ttl_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("ttl_ms %d is negative; use 0 for no expiry", options.ttl_ms));
  }
  return ValidateIfVersion(options.if_version);
}

absl::StatusOr<size_t> EffectiveListLimit(const ListOptions& options, const KvLimits& limits) {
  if (options.limit == 0) return limits.max_list_entries;
  if (options.limit > limits.max_list_entries) {
    return absl::InvalidArgumentError(
        absl::StrFormat("list limit %d is above the maximum %d (KvLimits::max_list_entries)",
                        options.limit, limits.max_list_entries));
  }
  return options.limit;
}

absl::Status ValidateWatchOptions(int64_t after_revision, const WatchOptions& options) {
  if (after_revision < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("after_revision %d is negative; use 0 for all events", after_revision));
  }
  if (options.timeout_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("watch timeout_ms %d is negative", options.timeout_ms));
  }
  if (options.max_events == 0) {
    return absl::InvalidArgumentError("watch max_events must be at least 1");
  }
  return absl::OkStatus();
}

absl::Status VersionMismatch(int64_t have, int64_t expected, absl::string_view op,
                             absl::string_view ns, absl::string_view key) {
  return absl::FailedPreconditionError(
      absl::StrFormat("version mismatch: have %d, expected %d (%s key \"%s\" in namespace \"%s\")",
                      have, expected, op, Printable(key), ns));
}

std::string TenantOfNamespace(absl::string_view ns) {
  const size_t tilde = ns.find('~');
  if (tilde == absl::string_view::npos) return "default";
  return std::string(ns.substr(0, tilde));
}

absl::Status QuotaExceeded(absl::string_view tenant, absl::string_view which, uint64_t have,
                           uint64_t adding, uint64_t limit, absl::string_view ns,
                           absl::string_view key) {
  const char* config_key =
      which == "keys" ? "limits.tenant_kv_max_keys" : "limits.tenant_kv_max_bytes";
  return absl::ResourceExhaustedError(absl::StrFormat(
      "tenant \"%s\" is over its key-value quota of %d %s (%s): it holds %d and this put adds "
      "%d; delete keys or namespaces to make room (put key \"%s\" in namespace \"%s\")",
      tenant, limit, which, config_key, have, adding, Printable(key), ns));
}

absl::Status WatchCompacted(absl::string_view ns, int64_t after_revision,
                            int64_t oldest_available) {
  return absl::OutOfRangeError(absl::StrFormat(
      "watch of namespace \"%s\" from revision %d: history compacted, the oldest event kept is "
      "revision %d; List again and watch from the revision it returns",
      ns, after_revision, oldest_available));
}

absl::Status WatchAhead(absl::string_view ns, int64_t after_revision, int64_t current) {
  return absl::OutOfRangeError(absl::StrFormat(
      "watch of namespace \"%s\" from revision %d: the namespace is at revision %d (it was "
      "deleted or recreated); List again and watch from the revision it returns",
      ns, after_revision, current));
}

}  // namespace flotilla::kv
