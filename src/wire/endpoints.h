// Endpoints: the addresses of a federation's managers, one of which leads.
//
// A highly available federation runs 2-3 manager replicas; only the leader
// listens for the federation and API services (a standby refuses the
// connection) and a deposed leader answers UNAVAILABLE. So a caller keeps
// one current address, sends every call there, and on a failure that means
// "not the leader here" moves on to the next address in the list, wrapping
// around. A single manager is the one-address case: Failed() never moves.
//
// Thread-safe: the agent's control, results and output loops share one.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace flotilla::wire {

// Parses "host:port[,host:port...]" (spaces around commas allowed).
// InvalidArgument naming the entry when one is empty or lacks a port, or
// when the list is empty or has more than 16 entries.
absl::StatusOr<std::vector<std::string>> ParseEndpointList(const std::string& list);

// Whether a call that ended with `code` should be tried on the next manager:
// UNAVAILABLE (refused, reset, or a deposed leader), and DEADLINE_EXCEEDED
// when `deadline_moves` (a paused leader accepts connections and answers
// nothing; callers whose calls are idempotent pass true).
bool MovesToNextManager(grpc::StatusCode code, bool deadline_moves);

class Endpoints {
 public:
  using ChannelMaker = std::function<std::shared_ptr<grpc::Channel>(const std::string& address)>;

  // `addresses` must not be empty. Channels are made on first use and kept.
  Endpoints(std::vector<std::string> addresses, ChannelMaker make);

  struct Pick {
    size_t index = 0;
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
  };
  Pick Current();

  // Reports that a call through pick `index` failed in a way that means the
  // manager there does not lead (see MovesToNextManager). Moves on to the
  // next address unless another caller already did; returns the new current
  // index.
  size_t Failed(size_t index);

  size_t size() const { return addresses_.size(); }
  const std::vector<std::string>& addresses() const { return addresses_; }
  // "a:1,b:2" for messages.
  std::string Describe() const;

 private:
  const std::vector<std::string> addresses_;
  const ChannelMaker make_;
  absl::Mutex mu_;
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::wire
