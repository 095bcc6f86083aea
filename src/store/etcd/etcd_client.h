// EtcdClient: a small client of etcd's v3 API over gRPC (KV: Range, Put,
// DeleteRange, Txn; Lease: Grant, Revoke, KeepAlive; Watch), with only what
// Flotilla's HA manager needs.
//
// Endpoints and failover: the client holds one channel per endpoint and
// sends to the current one; when a call fails with UNAVAILABLE or
// DEADLINE_EXCEEDED it moves to the next endpoint and tries again, until
// every endpoint was tried once or the call's deadline passed. Each attempt
// gets an equal share of the time left, so a paused member (which accepts
// the TCP connection and never answers) costs one share, not the whole call.
//
// A mutation retried on another endpoint may have been applied by the first
// one (etcd's "request timed out" is UNAVAILABLE and says nothing about the
// outcome). Callers make their writes idempotent with Txn compares; the
// election and the etcd Store do, and read the failure branch to recognise
// their own earlier success.
//
// Every call has a deadline: the one passed in, else now + default_timeout.
// Errors name the operation, the key and the endpoint(s) tried.
//
// Thread-safe. Plaintext gRPC only for now (etcd on loopback or a trusted
// network); TLS is left to the deployment work of issue 12.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace flotilla::etcd {

using Deadline = std::chrono::steady_clock::time_point;

struct EtcdClientOptions {
  std::vector<std::string> endpoints;  // "host:port" of etcd's client URLs
  // Budget of a call given no deadline, over all its attempts.
  std::chrono::milliseconds default_timeout{5000};
};

// mvccpb.KeyValue.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeResult {
  int64_t revision = 0;  // the store's revision when the range was read
  std::vector<KeyValue> kvs;
  bool more = false;
};

// The end of a range that covers every key starting with `prefix`.
std::string PrefixEnd(const std::string& prefix);

// One condition of a Txn (etcdserverpb.Compare). A key that does not exist
// has version, create_revision and mod_revision 0.
struct Compare {
  enum class Target { kVersion, kCreateRevision, kModRevision, kValue, kLease };
  enum class Result { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  Target target = Target::kVersion;
  Result result = Result::kEqual;
  int64_t number = 0;  // for every target but kValue
  std::string value;   // for kValue

  static Compare CreateRevisionIs(std::string key, int64_t rev);
  static Compare ModRevisionIs(std::string key, int64_t rev);
  static Compare ValueIs(std::string key, std::string value);
  static Compare Missing(std::string key);  // create_revision == 0
};

// One operation of a Txn branch (etcdserverpb.RequestOp).
struct Op {
  enum class Type { kPut, kDelete, kRange };
  Type type = Type::kPut;
  std::string key;
  std::string value;      // kPut
  std::string range_end;  // kDelete, kRange: "" for the one key
  int64_t lease = 0;      // kPut

  static Op Put(std::string key, std::string value, int64_t lease = 0);
  static Op Delete(std::string key, std::string range_end = "");
  static Op Get(std::string key, std::string range_end = "");
};

struct TxnRequest {
  std::vector<Compare> compares;
  std::vector<Op> success;
  std::vector<Op> failure;
};

struct TxnResult {
  bool succeeded = false;
  int64_t revision = 0;  // the store's revision after the txn
  // One entry per op of the branch that ran; the kvs of kRange ops (empty for
  // the others), and for kDelete the count in `deleted`.
  struct OpResult {
    std::vector<KeyValue> kvs;
    int64_t deleted = 0;
  };
  std::vector<OpResult> responses;
};

// One change of a watched key (mvccpb.Event).
struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: the key and the revision of the delete
};

struct WatchResult {
  // The events of the first response that had any (in revision order);
  // empty if the deadline passed, or `cancel` was set, with nothing seen.
  std::vector<WatchEvent> events;
  // etcd compacted the history the watch was to start in: read the key
  // again and watch from after that read.
  bool compacted = false;
  int64_t compact_revision = 0;
};

struct Lease {
  int64_t id = 0;
  int64_t ttl_s = 0;  // as granted: etcd raises a TTL below its minimum
};

// etcd's default limits (etcd --max-txn-ops, --max-request-bytes).
inline constexpr int kMaxTxnOps = 128;
inline constexpr int64_t kMaxRequestBytes = 1536 * 1024;

class EtcdClient {
 public:
  // InvalidArgument if there is no endpoint. Connects lazily.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(EtcdClientOptions options);
  virtual ~EtcdClient() = default;

  // Linearizable read of [key, range_end) ("" range_end: the one key), in key
  // order; limit 0: no limit.
  virtual absl::StatusOr<RangeResult> Range(const std::string& key, const std::string& range_end,
                                            int64_t limit = 0,
                                            std::optional<Deadline> deadline = {}) = 0;
  // As Range, without the values (etcd's keys_only). The default reads them
  // and drops them, for wrappers that need not care.
  virtual absl::StatusOr<RangeResult> RangeKeys(const std::string& key,
                                                const std::string& range_end, int64_t limit = 0,
                                                std::optional<Deadline> deadline = {}) {
    absl::StatusOr<RangeResult> r = Range(key, range_end, limit, deadline);
    if (r.ok()) {
      for (KeyValue& kv : r->kvs) kv.value.clear();
    }
    return r;
  }
  // Returns the revision of the put.
  virtual absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                                      int64_t lease = 0,
                                      std::optional<Deadline> deadline = {}) = 0;
  // Returns how many keys were deleted.
  virtual absl::StatusOr<int64_t> Delete(const std::string& key, const std::string& range_end = "",
                                         std::optional<Deadline> deadline = {}) = 0;
  virtual absl::StatusOr<TxnResult> Txn(const TxnRequest& txn,
                                        std::optional<Deadline> deadline = {}) = 0;

  virtual absl::StatusOr<Lease> LeaseGrant(std::chrono::seconds ttl,
                                           std::optional<Deadline> deadline = {}) = 0;
  // OK also when the lease had already expired.
  virtual absl::Status LeaseRevoke(int64_t lease, std::optional<Deadline> deadline = {}) = 0;
  // Renews the lease once; returns its new TTL. NotFound if the lease has
  // expired or was revoked.
  virtual absl::StatusOr<int64_t> LeaseKeepAliveOnce(int64_t lease,
                                                     std::optional<Deadline> deadline = {}) = 0;

  // Watches [key, range_end) ("" range_end: the one key) for changes from
  // start_revision on (0: from now) and returns the first events seen, or no
  // events once `deadline` passes or `*cancel` (may be null; looked at every
  // 50 ms) becomes true. One gRPC stream to the current endpoint, closed
  // before returning. Unavailable / DeadlineExceeded if the endpoint did not
  // confirm the watch within its share of default_timeout (as every call
  // gives each endpoint) or the stream broke: the next call goes to the next
  // endpoint, and callers fall back to reading the key. A member paused
  // after it confirmed keeps the stream silent until the deadline, so
  // callers keep deadlines short and read the key between watches.
  virtual absl::StatusOr<WatchResult> Watch(const std::string& key, const std::string& range_end,
                                            int64_t start_revision, Deadline deadline,
                                            const std::atomic<bool>* cancel = nullptr) = 0;

  // The endpoints, and the one calls go to first now.
  virtual std::vector<std::string> endpoints() const = 0;
  virtual std::string current_endpoint() const = 0;
};

}  // namespace flotilla::etcd
