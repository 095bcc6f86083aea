// Small helpers for absl::Status, which Debian 12's abseil (20220623) lacks:
// RETURN_IF_ERROR and ASSIGN_OR_RETURN, and errno-with-context errors in the
// style of crun ("open `/path`: Permission denied").
#pragma once

#include <cerrno>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define FLOTILLA_CONCAT_INNER_(a, b) a##b
#define FLOTILLA_CONCAT_(a, b) FLOTILLA_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status flotilla_status_ = (expr);         \
    if (!flotilla_status_.ok()) return flotilla_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(FLOTILLA_CONCAT_(flotilla_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

namespace flotilla {

// Returns an error for a failed system call: "<op> `<object>`: <strerror>".
// The code follows errno (absl::ErrnoToStatus).
absl::Status ErrnoError(int err, absl::string_view op, absl::string_view object = {});

// Prefixes a non-OK status's message with context, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace flotilla
