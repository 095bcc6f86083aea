// The Store (store/store.h) in etcd, for a highly available manager: only
// the elected leader writes, every write fenced by its leadership.
//
// Layout under `prefix`: e/<id> executions, a/<id>/<attempt> attempts,
// r/<id>/<attempt> result summaries, o/<id>/<attempt> result bytes (up to
// 256 KiB), m/<id>/<attempt> and c/<id>/<attempt>/<generation>/<n> larger
// results (a manifest and 512 KiB chunks), n/<id> nodes, d/<kind>/<key>
// documents, meta/seq and meta/txn (ids are length-prefixed so any byte
// string is a safe id). Values are protobuf (proto/etcd/store_records.proto);
// o/ and c/ hold raw bytes, m/ one line of text.
//
// Large results: etcd takes at most --max-request-bytes (1.5 MiB) in one
// request, so a result over 256 KiB is written as chunks first, two to a
// fenced Txn of their own, and its manifest (generation, chunk count, size,
// CRC-32C) then goes into the write's own Txn with the summary. A reader
// finds a result only through a committed manifest: never half of one. A
// rewrite uses a new generation and deletes the old one's chunks in the Txn
// that commits it. GetResult checks count, size and CRC-32C and returns
// DataLoss (naming the chunk or the mismatch) rather than wrong bytes.
// Chunks of a write that did not commit are deleted (best effort; kept when
// the commit's outcome is unknown, since it may still apply), and opening a
// store (a new leadership) deletes any chunks no committed manifest names (a
// leader killed between its chunks and its manifest). A result is bounded
// by 64 MiB: more fails with ResourceExhausted naming the bound.
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
// kMaxTxnOps - 4 = 124 keys (each call writes one, PutResult two to four,
// deleting an execution one per execution and attempt and two or three per
// result) and about 1.25 MiB in all (etcd's defaults, --max-txn-ops 128,
// --max-request-bytes 1.5 MiB); more fails with ResourceExhausted naming
// the bound, and the body changes nothing. Exception: a body that deletes
// every document of a kind (a key-value namespace dropped) does so with one
// range delete, whatever their number. DeleteFinishedExecutions splits its
// work into Txns under those bounds outside a transaction; inside one it
// deletes as many as fit in half the room left and returns that count (the
// caller's next round does more). Writing a key twice in one body is fine
// (the later write wins).
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
