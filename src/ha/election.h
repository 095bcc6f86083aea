// LeaderElection: one manager replica at a time leads, elected through an
// etcd key bound to a lease.
//
// Recipe: the leader key (options.key) holds the leader's id and address and
// is attached to the candidate's lease. A candidate wins with a Txn "create
// the key if it does not exist" (create_revision == 0); losers watch the key
// (an etcd Watch from just after their read of it) until it goes (the leader
// resigned, or its lease expired at etcd) and try again at once. A watch
// lasts at most ttl/2 (and 5 s) before the key is read again, so a member
// paused under a watch costs at most that; where no watch can be set up,
// losers read the key every `poll` instead. The epoch of a leadership is the key's create_revision: etcd's
// revision only grows, so a later leader always has a higher epoch, and the
// pair (key, epoch) is the fence every write of the leader is conditional on
// (store/etcd/etcd_store.h).
//
// Stepping down in time: while leading, a thread renews the lease every
// ttl/3 and checks that the key is still ours. etcd lets the lease expire at
// the earliest ttl after the last renewal it received, which was after the
// renewal was *sent*; so the leader counts from the send time of its last
// successful renewal and gives leadership up (IsLeader() false, on_lost
// called) once ttl - margin has passed without one: before any other
// candidate can have won. It also steps down at once when the key is gone or
// holds another leader, or the lease is reported expired.
//
// Thread-safe. The destructor resigns (best effort) and joins its thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/etcd/etcd_client.h"

namespace flotilla::ha {

struct ElectionOptions {
  std::string key = "/flotilla/leader";
  // The lease's TTL. etcd rounds it up to whole seconds and to its minimum
  // (about 1.5 x its election timeout).
  std::chrono::milliseconds ttl{5000};
  // Leadership is given up when ttl - margin has passed since the send time
  // of the last successful renewal. 0: ttl / 5.
  std::chrono::milliseconds margin{0};
  // How often a losing candidate reads the key while it cannot watch it
  // (the fallback when etcd's Watch fails). 0: ttl / 20.
  std::chrono::milliseconds poll{0};
};

struct Leadership {
  std::string key;       // the leader key
  int64_t epoch = 0;     // its create_revision: the fence
  int64_t lease_id = 0;
  std::string candidate_id;
  std::string address;
};

// The current leader, as anyone can see it.
struct LeaderInfo {
  std::string id;
  std::string address;
  int64_t epoch = 0;
};

class LeaderElection {
 public:
  // Called once per leadership lost, from the election's thread, with why.
  // Must not call back into this object's Campaign() or the destructor.
  using LostCallback = std::function<void(const absl::Status& why)>;

  LeaderElection(std::shared_ptr<etcd::EtcdClient> client, ElectionOptions options);
  ~LeaderElection();
  LeaderElection(const LeaderElection&) = delete;
  LeaderElection& operator=(const LeaderElection&) = delete;

  // Blocks until this candidate leads, `stop` (may be null) becomes true or
  // `deadline` passes (Cancelled / DeadlineExceeded). Errors of etcd while
  // waiting are retried until then. FailedPrecondition if already leading.
  absl::StatusOr<Leadership> Campaign(const std::string& candidate_id, const std::string& address,
                                      LostCallback on_lost, const std::atomic<bool>* stop,
                                      etcd::Deadline deadline);

  // True from a won Campaign until leadership is lost or resigned.
  bool IsLeader() const;
  // The leadership held now; nullopt if not leading.
  std::optional<Leadership> leadership() const;

  // Gives leadership up: deletes the key (if still ours) and revokes the
  // lease, so a standby can win at once. on_lost is not called. OK if not
  // leading.
  absl::Status Resign();

  // Who leads now; nullopt if nobody does.
  absl::StatusOr<std::optional<LeaderInfo>> Observe(std::optional<etcd::Deadline> deadline = {});

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads the leader key's value (id and address) as the election writes it.
absl::StatusOr<LeaderInfo> DecodeLeaderValue(const std::string& value, int64_t epoch);

}  // namespace flotilla::ha
