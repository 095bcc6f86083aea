// The checks every request to the manager's HTTP port passes before any
// route sees it, on plain values (http_server.cc applies them):
//
// - Host must name this server (the bound address, or localhost on its
//   port): a page on another site that resolves its own name to 127.0.0.1
//   (DNS rebinding) is refused.
// - A request carrying Origin must come from this server's own origin:
//   browsers send Origin on cross-site requests, so a page elsewhere cannot
//   drive the API with the user's network position.
// - A body must be declared application/json: a cross-site form or
//   `text/plain` POST, which browsers send without asking, is refused.
// - JSON bodies may nest at most kMaxJsonDepth deep (checked on the raw
//   bytes, before any recursive parser or consumer sees them).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace flotilla::manager {

inline constexpr int kMaxJsonDepth = 64;

absl::Status CheckHost(absl::string_view host_header, absl::string_view bound_host, int port);
absl::Status CheckOrigin(absl::string_view origin, absl::string_view host_header);
absl::Status CheckContentType(absl::string_view method, absl::string_view content_type,
                              size_t body_size);
// True when `text` opens more than `max_depth` arrays/objects at once
// (brackets inside strings do not count).
bool JsonTooDeep(absl::string_view text, int max_depth = kMaxJsonDepth);

// Bounds the requests that may wait at once (key-value watches, blocking
// queue receives). Each holds one of the server's threads while it waits,
// so without a bound a few idle long-polls would starve every other call,
// /healthz included. The bound is below the server's thread count.
class WaitSlots {
 public:
  explicit WaitSlots(int max) : max_(max) {}

  class Slot {
   public:
    explicit Slot(std::atomic<int>* n) : n_(n) {}
    Slot(Slot&& o) noexcept : n_(std::exchange(o.n_, nullptr)) {}
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (n_) n_->fetch_sub(1);
    }
    explicit operator bool() const { return n_ != nullptr; }

   private:
    std::atomic<int>* n_;
  };

  // A slot, or an empty one when `max` requests already wait.
  Slot Take() {
    if (in_use_.fetch_add(1) >= max_) {
      in_use_.fetch_sub(1);
      return Slot(nullptr);
    }
    return Slot(&in_use_);
  }
  int max() const { return max_; }

 private:
  const int max_;
  std::atomic<int> in_use_{0};
};

}  // namespace flotilla::manager
