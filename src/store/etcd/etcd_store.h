// The Store (store/store.h) in etcd, for a highly available manager: only
// the elected leader writes, every write fenced by its leadership.
//
// Layout under `prefix`: e/<id> executions, a/<id>/<attempt> attempts,
// r/<id>/<attempt> result summaries, o/<id>/<attempt> result bytes, n/<id>
// nodes, d/<kind>/<key> documents, meta/seq and meta/txn (ids are
// length-prefixed so any byte string is a safe id). Values are protobuf
// (proto/etcd/store_records.proto); o/ holds the raw result.
//
// Fencing: every write is one etcd Txn whose compares check that the fence
// key (the leader key) still has the fence's create_revision. A deposed
// leader's writes fail with FailedPrecondition "lost leadership ...", and so
// does every later write of that Store: open a new one after winning again.
// The fence guards against a stale leader, not against misuse: anyone can
// read (key, epoch), so only the process that won that leadership may open
// a Store with it (a second writer under the same fence is caught by the
// meta/txn check below, after the fact).
//
// Reads come from memory: Open loads everything under the prefix but the
// result bytes, and the index is updated only after the Txn that changes it
// succeeded. GetResult (and GetResultSummary of a result stored without a
// summary) reads the bytes from etcd: one linearizable read. This holds
// because the fenced leader is the only writer; every Txn also compares
// meta/txn's mod_revision with the last one this Store wrote, so a write by
// anyone else (or a timed-out write of ours applied late) is noticed: the
// Store reloads and the call fails with Aborted; retrying it is safe.
//
// seq stays increasing across leaders: meta/seq is written in the same Txn
// as the execution.
//
// Bounds: a Transaction() body becomes one Txn, so it may write at most
// kMaxTxnOps - 4 = 124 keys (each call writes one, PutResult two, deleting
// an execution one per execution, attempt and result key) and about
// 1.25 MiB in all (etcd's defaults, --max-txn-ops 128, --max-request-bytes
// 1.5 MiB); more fails with ResourceExhausted naming the bound, and the body
// changes nothing. A result with its summary is bounded by the same
// 1.25 MiB; larger outputs belong outside the store. Outside a transaction,
// DeleteFinishedExecutions splits its work into Txns under those bounds.
// Writing a key twice in one body is fine (the later write wins).
//
// Like the SQLite store, writes are serialized and a reader waits for a
// write in flight (one etcd round trip), and a Transaction() body holds off
// every other thread until it committed.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

#include "store/etcd/etcd_client.h"
#include "store/store.h"

namespace flotilla::store {

// The leadership writes are conditional on (ha::Leadership's key, epoch).
struct EtcdFence {
  std::string key;
  int64_t create_revision = 0;
  // If set, asked before each write (from the writing thread; it must be
  // thread-safe and fast, e.g. ha::LeaderElection::IsLeader): false means
  // the leadership is known lost, and the write and every later one fail at
  // once (FailedPrecondition) instead of waiting on an etcd that may be
  // unreachable.
  std::function<bool()> still_leading;
};

// Loads every record under `prefix` (e.g. "/flotilla/store/") and returns a
// Store that writes under the fence. FailedPrecondition if the fence does
// not hold already; Unavailable if etcd cannot be read.
absl::StatusOr<std::unique_ptr<Store>> OpenEtcdStore(std::shared_ptr<etcd::EtcdClient> client,
                                                     const std::string& prefix, EtcdFence fence);

}  // namespace flotilla::store
