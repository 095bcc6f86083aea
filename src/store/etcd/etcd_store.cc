// The etcd Store: an in-memory index of everything under the prefix, written
// through to etcd one fenced Txn per write (or per Transaction() body).
//
// Concurrency: gate_ serializes every call, like the SQLite store's one
// connection. It is held across the etcd round trip of a write because the
// Store contract makes a write visible to other threads only once it is
// durable, and a Transaction() body's writes invisible until it commits; the
// index is updated in place with an undo log instead of keeping a second copy.
// The thread running a Transaction() body holds gate_ and re-enters without
// locking (txn_owner_).

#include "store/etcd/etcd_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "etcd/store_records.pb.h"

namespace flotilla::store {
namespace {

namespace pb = ::flotilla::store::etcd;
using ::flotilla::etcd::Compare;
using ::flotilla::etcd::Op;
using ::flotilla::etcd::PrefixEnd;

// Room left in a Txn for the store's own bookkeeping (meta/txn, meta/seq)
// and etcd's framing.
constexpr int kOwnOps = 4;
constexpr int64_t kMaxTxnBytes = ::flotilla::etcd::kMaxRequestBytes - 256 * 1024;
constexpr int kLoadPage = 500;

// Results: up to kInlineResultBytes (with the summary) the bytes sit in one
// key, o/<id>/<attempt>, written in the caller's Txn. Larger ones are cut
// into chunks of kChunkBytes under c/<id>/<attempt>/<generation>/<n>, each
// Txn of them carrying kChunksPerTxn (well under --max-request-bytes), and
// only then the manifest m/<id>/<attempt> (generation, count, size,
// CRC-32C) goes into the caller's Txn with the summary: a reader finds a
// result only through a committed manifest, so never half of one. A new
// generation per write means a replacement never overwrites the chunks the
// committed manifest names; the old generation is deleted (one range) in
// the Txn that commits the new manifest.
constexpr int64_t kInlineResultBytes = 256 * 1024;
constexpr int64_t kChunkBytes = 512 * 1024;
constexpr int kChunksPerTxn = 2;
constexpr int kChunkReadPage = 8;  // chunks per Range when reading: 4 MiB
// The largest result the store keeps: the manager's own bound on a result
// (manager/result_assembler.h, 32 MiB) with room to spare.
constexpr int64_t kMaxResultBytes = int64_t{64} << 20;
// The most one result's chunks may take to write or to read, all Txns or
// Ranges together (each also has the client's own deadline).
constexpr std::chrono::seconds kChunkBudget{30};
// The most a new leadership's sweep of orphaned chunks may take.
constexpr std::chrono::seconds kSweepBudget{2};

// CRC-32C (Castagnoli), as etcd's WAL uses; table-driven, a byte at a time.
constexpr std::array<uint32_t, 256> MakeCrc32cTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = MakeCrc32cTable();

uint32_t Crc32cExtend(uint32_t crc, const std::string& bytes) {
  crc = ~crc;
  for (unsigned char b : bytes) crc = kCrc32cTable[(crc ^ b) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// What m/<id>/<attempt> says of a chunked result; stored as one text line,
// "chunks v1 <generation> <count> <bytes> <crc32c hex>".
struct Manifest {
  std::string generation;
  int64_t chunks = 0;
  int64_t bytes = 0;
  uint32_t crc32c = 0;

  std::string Encode() const {
    return absl::StrFormat("chunks v1 %s %d %d %08x", generation, chunks, bytes, crc32c);
  }
  static std::optional<Manifest> Decode(const std::string& text) {
    std::vector<std::string> f = absl::StrSplit(text, ' ');
    Manifest m;
    if (f.size() != 6 || f[0] != "chunks" || f[1] != "v1" || f[2].empty() ||
        !absl::SimpleAtoi(f[3], &m.chunks) || !absl::SimpleAtoi(f[4], &m.bytes) ||
        !absl::SimpleHexAtoi(f[5], &m.crc32c) || m.chunks < 0 || m.bytes < 0) {
      return std::nullopt;
    }
    m.generation = f[2];
    return m;
  }
};

// Length-prefixed, so that any id is one unambiguous key segment.
std::string Seg(const std::string& s) { return absl::StrCat(s.size(), ":", s); }
std::string AttemptNo(uint32_t n) { return absl::StrFormat("%010u", n); }

using AttemptKey = std::pair<std::string, uint32_t>;
using DocKey = std::pair<std::string, std::string>;

// A result's summary stays in memory; its bytes (the output, possibly large)
// only in etcd, read on demand: the index stays small, and a new leader's
// load does not read every output ever kept.
struct ResultEntry {
  std::string summary;
};

struct Index {
  std::map<std::string, ExecutionRecord> executions;
  std::map<uint64_t, std::string> by_seq;
  std::map<AttemptKey, AttemptRecord> attempts;
  std::map<AttemptKey, ResultEntry> results;
  // The chunked ones among them: their manifests.
  std::map<AttemptKey, Manifest> manifests;
  std::map<std::string, NodeRecord> nodes;
  std::map<DocKey, DocumentRecord> documents;
  uint64_t last_seq = 0;
};

// The writes of one Txn: the etcd ops, and how to take their effect on the
// index back if the Txn does not commit. Every op names one key: etcd refuses
// a Txn that writes a key twice ("duplicate key given in txn request"), so a
// later write of a key replaces the earlier one in place.
struct Batch {
  std::vector<Op> ops;
  std::map<std::string, size_t> by_key;  // key -> its op in ops
  int64_t bytes = 0;
  bool seq_changed = false;
  // Kinds of documents this batch deleted from: candidates for one range
  // delete at commit (EtcdStore::CoalesceDeletes).
  std::set<std::string> doc_kinds_deleted;
  std::vector<std::function<void()>> undo;

  void Add(Op op) {
    bytes += static_cast<int64_t>(op.key.size() + op.value.size() + 16);
    if (auto it = by_key.find(op.key); it != by_key.end()) {
      ops[it->second] = std::move(op);
      return;
    }
    by_key[op.key] = ops.size();
    ops.push_back(std::move(op));
  }
  // Drops what was added after the first n ops (and n undo steps), undoing it.
  void Truncate(size_t n_ops, size_t n_undo, std::vector<Op> replaced) {
    while (undo.size() > n_undo) {
      undo.back()();
      undo.pop_back();
    }
    ops = std::move(replaced);
    ops.resize(std::min(ops.size(), n_ops));
    by_key.clear();
    for (size_t i = 0; i < ops.size(); ++i) by_key[ops[i].key] = i;
  }
  void Rollback() { Truncate(0, 0, {}); }
};

// Sets (or, with nullopt, erases) map[key], remembering the old entry.
template <typename Map>
void Set(Batch& b, Map& map, const typename Map::key_type& key,
         std::optional<typename Map::mapped_type> value) {
  std::optional<typename Map::mapped_type> old;
  if (auto it = map.find(key); it != map.end()) old = it->second;
  if (value) {
    map[key] = std::move(*value);
  } else {
    map.erase(key);
  }
  b.undo.push_back([&map, key, old = std::move(old)] {
    if (old) {
      map[key] = *old;
    } else {
      map.erase(key);
    }
  });
}

std::string EncodeExecution(const ExecutionRecord& r) {
  pb::ExecutionValue v;
  v.set_id(r.id);
  v.set_seq(r.seq);
  v.set_user_id(r.user_id);
  v.set_priority(r.priority);
  v.set_request(r.request);
  v.set_state(model::ToString(r.state));
  v.set_attempt(r.attempt);
  v.set_node_id(r.node_id);
  v.set_placement(r.placement);
  v.set_error(r.error);
  v.set_cancel_requested(r.cancel_requested);
  v.set_submitted_ms(r.submitted_ms);
  v.set_assigned_ms(r.assigned_ms);
  v.set_started_ms(r.started_ms);
  v.set_finished_ms(r.finished_ms);
  return v.SerializeAsString();
}

absl::StatusOr<ExecutionRecord> DecodeExecution(const std::string& key, const std::string& bytes) {
  pb::ExecutionValue v;
  ExecutionRecord r;
  if (!v.ParseFromString(bytes) || !model::ParseExecutionState(v.state(), &r.state)) {
    return absl::DataLossError(absl::StrCat("etcd store: cannot read execution at key ",
                                            absl::CHexEscape(key)));
  }
  r.id = v.id();
  r.seq = v.seq();
  r.user_id = v.user_id();
  r.priority = v.priority();
  r.request = v.request();
  r.attempt = v.attempt();
  r.node_id = v.node_id();
  r.placement = v.placement();
  r.error = v.error();
  r.cancel_requested = v.cancel_requested();
  r.submitted_ms = v.submitted_ms();
  r.assigned_ms = v.assigned_ms();
  r.started_ms = v.started_ms();
  r.finished_ms = v.finished_ms();
  return r;
}

std::string EncodeAttempt(const AttemptRecord& a) {
  pb::AttemptValue v;
  v.set_execution_id(a.execution_id);
  v.set_attempt(a.attempt);
  v.set_node_id(a.node_id);
  v.set_assigned_ms(a.assigned_ms);
  v.set_ended_ms(a.ended_ms);
  v.set_outcome(a.outcome);
  return v.SerializeAsString();
}

std::string EncodeNode(const NodeRecord& n) {
  pb::NodeValue v;
  v.set_id(n.id);
  v.set_spec(n.spec);
  v.set_status(model::ToString(n.status));
  v.set_epoch(n.epoch);
  v.set_last_heartbeat_ms(n.last_heartbeat_ms);
  return v.SerializeAsString();
}

std::string EncodeDocument(const DocumentRecord& d) {
  pb::DocumentValue v;
  v.set_kind(d.kind);
  v.set_key(d.key);
  v.set_body(d.body);
  v.set_updated_ms(d.updated_ms);
  return v.SerializeAsString();
}

std::string RandomTxnTag() {
  std::random_device rd;
  return absl::StrFormat("%08x%08x%08x", rd(), rd(), rd());
}

class EtcdStore final : public Store {
 public:
  EtcdStore(std::shared_ptr<::flotilla::etcd::EtcdClient> client, std::string prefix,
            EtcdFence fence)
      : client_(std::move(client)),
        prefix_(std::move(prefix)),
        fence_(std::move(fence)),
        txn_key_(prefix_ + "meta/txn"),
        seq_key_(prefix_ + "meta/seq"),
        tag_(RandomTxnTag()) {}

  absl::Status Open() {
    std::lock_guard<std::mutex> lock(gate_);
    RETURN_IF_ERROR(LoadLocked());
    SweepOrphanChunksLocked();
    return absl::OkStatus();
  }

  absl::Status UpsertNode(const NodeRecord& node) override {
    return Write([&](Batch& b) {
      Set(b, index_.nodes, node.id, std::optional<NodeRecord>(node));
      b.Add(Op::Put(prefix_ + "n/" + node.id, EncodeNode(node)));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<NodeRecord>> LoadNodes() override {
    return Read([&]() -> absl::StatusOr<std::vector<NodeRecord>> {
      std::vector<NodeRecord> out;
      for (const auto& [id, n] : index_.nodes) out.push_back(n);
      return out;
    });
  }

  absl::Status InsertExecution(ExecutionRecord* rec) override {
    return Write([&](Batch& b) -> absl::Status {
      if (index_.executions.count(rec->id)) {
        return absl::AlreadyExistsError(absl::StrCat("insert execution ", rec->id,
                                                     ": an execution with id ", rec->id,
                                                     " already exists"));
      }
      const uint64_t old_seq = index_.last_seq;
      b.undo.push_back([this, old_seq] { index_.last_seq = old_seq; });
      b.seq_changed = true;
      ExecutionRecord stored = *rec;
      stored.seq = ++index_.last_seq;
      Set(b, index_.by_seq, stored.seq, std::optional<std::string>(stored.id));
      b.Add(Op::Put(prefix_ + "e/" + stored.id, EncodeExecution(stored)));
      rec->seq = stored.seq;
      Set(b, index_.executions, rec->id, std::optional<ExecutionRecord>(std::move(stored)));
      return absl::OkStatus();
    });
  }

  absl::Status UpdateExecution(const ExecutionRecord& rec) override {
    return Write([&](Batch& b) -> absl::Status {
      auto it = index_.executions.find(rec.id);
      if (it == index_.executions.end()) {
        return absl::NotFoundError(
            absl::StrCat("update execution ", rec.id, ": no such execution"));
      }
      ExecutionRecord stored = rec;
      stored.seq = it->second.seq;
      b.Add(Op::Put(prefix_ + "e/" + stored.id, EncodeExecution(stored)));
      Set(b, index_.executions, rec.id, std::optional<ExecutionRecord>(std::move(stored)));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<ExecutionRecord>> GetExecution(const std::string& id) override {
    return Read([&]() -> absl::StatusOr<std::optional<ExecutionRecord>> {
      auto it = index_.executions.find(id);
      if (it == index_.executions.end()) return std::optional<ExecutionRecord>();
      return std::optional<ExecutionRecord>(it->second);
    });
  }

  absl::StatusOr<std::vector<ExecutionRecord>> LoadUnfinished() override {
    return Read([&]() -> absl::StatusOr<std::vector<ExecutionRecord>> {
      std::vector<ExecutionRecord> out;
      for (const auto& [seq, id] : index_.by_seq) {
        const ExecutionRecord& r = index_.executions.at(id);
        if (!model::IsTerminal(r.state)) out.push_back(r);
      }
      return out;
    });
  }

  absl::StatusOr<std::vector<ExecutionRecord>> ListExecutions(const ListFilter& filter) override {
    return Read([&]() -> absl::StatusOr<std::vector<ExecutionRecord>> {
      const size_t limit = filter.limit <= 0 ? 100 : static_cast<size_t>(filter.limit);
      std::vector<ExecutionRecord> out;
      for (auto it = index_.by_seq.rbegin(); it != index_.by_seq.rend() && out.size() < limit;
           ++it) {
        const ExecutionRecord& r = index_.executions.at(it->second);
        if (!filter.user_id.empty() && r.user_id != filter.user_id) continue;
        if (!filter.states.empty() &&
            std::find(filter.states.begin(), filter.states.end(), r.state) == filter.states.end()) {
          continue;
        }
        out.push_back(r);
      }
      return out;
    });
  }

  absl::Status PutAttempt(const AttemptRecord& attempt) override {
    return Write([&](Batch& b) -> absl::Status {
      const std::string context =
          absl::StrCat("put attempt ", attempt.execution_id, "/", attempt.attempt);
      if (!index_.executions.count(attempt.execution_id)) {
        return absl::FailedPreconditionError(
            absl::StrCat(context, ": no execution ", attempt.execution_id));
      }
      b.Add(Op::Put(AttemptKeyOf(attempt.execution_id, attempt.attempt), EncodeAttempt(attempt)));
      Set(b, index_.attempts, AttemptKey(attempt.execution_id, attempt.attempt),
          std::optional<AttemptRecord>(attempt));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(const std::string& id) override {
    return Read([&]() -> absl::StatusOr<std::vector<AttemptRecord>> {
      std::vector<AttemptRecord> out;
      for (auto it = index_.attempts.lower_bound({id, 0});
           it != index_.attempts.end() && it->first.first == id; ++it) {
        out.push_back(it->second);
      }
      return out;
    });
  }

  absl::Status PutResult(const std::string& id, uint32_t attempt, const std::string& result,
                         const std::string& summary) override {
    return Write([&](Batch& b) -> absl::Status {
      const std::string context = absl::StrCat("put result ", id, "/", attempt);
      if (!index_.executions.count(id)) {
        return absl::FailedPreconditionError(absl::StrCat(context, ": no execution ", id));
      }
      const AttemptKey k(id, attempt);
      pb::ResultValue v;
      v.set_execution_id(id);
      v.set_attempt(attempt);
      v.set_summary(summary);
      std::string value = v.SerializeAsString();
      const int64_t total = static_cast<int64_t>(value.size() + result.size());
      if (total > kMaxResultBytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            context, ": the result is ", total, " bytes with its summary; the etcd store keeps "
            "results of at most ", kMaxResultBytes, " bytes (", kMaxResultBytes >> 20,
            " MiB); lower the agents' output_limit_bytes or keep large outputs out of the store"));
      }
      std::optional<Manifest> old;
      if (auto it = index_.manifests.find(k); it != index_.manifests.end()) old = it->second;
      const bool had_inline = index_.results.count(k) > 0 && !old.has_value();
      if (total <= kInlineResultBytes) {
        b.Add(Op::Put(ResultKeyOf(id, attempt), std::move(value)));
        b.Add(Op::Put(OutputKeyOf(id, attempt), result));
        if (old) {
          b.Add(Op::Delete(ManifestKeyOf(id, attempt)));
          const std::string from = ChunkPrefix(id, attempt, old->generation);
          b.Add(Op::Delete(from, PrefixEnd(from)));
          Set(b, index_.manifests, k, std::nullopt);
        }
        Set(b, index_.results, k, std::optional<ResultEntry>(ResultEntry{summary}));
        return absl::OkStatus();
      }
      // Chunks first, each Txn fenced; the manifest commits with the caller.
      Manifest m;
      m.generation = absl::StrCat(tag_, "-", ++generation_counter_);
      m.bytes = static_cast<int64_t>(result.size());
      m.chunks = (m.bytes + kChunkBytes - 1) / kChunkBytes;
      m.crc32c = Crc32cExtend(0, result);
      RETURN_IF_ERROR(Annotate(WriteChunksLocked(id, attempt, m, result), context));
      const std::string from = ChunkPrefix(id, attempt, m.generation);
      // If the manifest does not commit, its chunks are garbage.
      b.undo.push_back([this, from] { DropChunksIfUncommitted(from); });
      b.Add(Op::Put(ResultKeyOf(id, attempt), std::move(value)));
      b.Add(Op::Put(ManifestKeyOf(id, attempt), m.Encode()));
      if (had_inline) b.Add(Op::Delete(OutputKeyOf(id, attempt)));
      if (old) {
        const std::string old_from = ChunkPrefix(id, attempt, old->generation);
        b.Add(Op::Delete(old_from, PrefixEnd(old_from)));
      }
      Set(b, index_.manifests, k, std::optional<Manifest>(m));
      Set(b, index_.results, k, std::optional<ResultEntry>(ResultEntry{summary}));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<std::string>> GetResultSummary(const std::string& id,
                                                              uint32_t attempt) override {
    absl::StatusOr<std::optional<std::string>> summary =
        Read([&]() -> absl::StatusOr<std::optional<std::string>> {
          auto it = index_.results.find({id, attempt});
          if (it == index_.results.end() || it->second.summary.empty()) {
            return std::optional<std::string>();
          }
          return std::optional<std::string>(it->second.summary);
        });
    if (!summary.ok() || summary->has_value()) return summary;
    return GetResult(id, attempt);
  }

  absl::StatusOr<std::optional<std::string>> GetResult(const std::string& id,
                                                       uint32_t attempt) override {
    const std::string key = OutputKeyOf(id, attempt);
    // A chunked result whose manifest changed while its chunks were read
    // (replaced or deleted meanwhile) is read again; a few times at most.
    for (int round = 0; round < 3; ++round) {
      bool known = false;
      std::optional<Manifest> manifest;
      std::optional<std::string> uncommitted;
      auto look = [&] {
        known = index_.results.count({id, attempt}) > 0;
        if (auto m = index_.manifests.find({id, attempt}); m != index_.manifests.end()) {
          manifest = m->second;
        }
        return 0;
      };
      if (InOwnTransaction()) {
        look();
        // The body's own, uncommitted write of it.
        if (auto op = txn_batch_->by_key.find(key);
            !manifest && op != txn_batch_->by_key.end()) {
          const Op& o = txn_batch_->ops[op->second];
          if (o.type == Op::Type::kPut) return std::optional<std::string>(o.value);
          return std::optional<std::string>();
        }
      } else {
        (void)Read(look);
      }
      if (!known) return std::optional<std::string>();
      const std::string what = absl::StrCat("get result ", id, "/", attempt);
      if (!manifest) {
        // Outside the gate: a linearizable read sees every committed write,
        // and other calls need not wait for it.
        absl::StatusOr<::flotilla::etcd::RangeResult> r = client_->Range(key, "");
        if (!r.ok()) return Annotate(r.status(), what);
        if (r->kvs.empty()) return std::optional<std::string>();  // deleted meanwhile
        return std::optional<std::string>(std::move(r->kvs[0].value));
      }
      absl::StatusOr<std::string> bytes = ReadChunks(id, attempt, *manifest);
      if (bytes.ok()) return std::optional<std::string>(*std::move(bytes));
      if (bytes.status().code() != absl::StatusCode::kDataLoss) return Annotate(bytes.status(), what);
      // Lost, or replaced under the reader? The index says.
      std::optional<Manifest> now;
      bool still_known = false;
      auto relook = [&] {
        still_known = index_.results.count({id, attempt}) > 0;
        if (auto m = index_.manifests.find({id, attempt}); m != index_.manifests.end()) {
          now = m->second;
        }
        return 0;
      };
      if (InOwnTransaction()) {
        relook();
      } else {
        (void)Read(relook);
      }
      if (!still_known) return std::optional<std::string>();
      if (now && now->generation == manifest->generation) return Annotate(bytes.status(), what);
    }
    return absl::AbortedError(absl::StrCat("get result ", id, "/", attempt,
                                           ": replaced three times while being read; retry"));
  }

  absl::Status PutDocument(const DocumentRecord& doc) override {
    return Write([&](Batch& b) {
      b.Add(Op::Put(DocKeyOf(doc.kind, doc.key), EncodeDocument(doc)));
      Set(b, index_.documents, DocKey(doc.kind, doc.key), std::optional<DocumentRecord>(doc));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::optional<DocumentRecord>> GetDocument(const std::string& kind,
                                                            const std::string& key) override {
    return Read([&]() -> absl::StatusOr<std::optional<DocumentRecord>> {
      auto it = index_.documents.find({kind, key});
      if (it == index_.documents.end()) return std::optional<DocumentRecord>();
      return std::optional<DocumentRecord>(it->second);
    });
  }

  absl::StatusOr<std::vector<DocumentRecord>> ListDocuments(const std::string& kind) override {
    return Read([&]() -> absl::StatusOr<std::vector<DocumentRecord>> {
      std::vector<DocumentRecord> out;
      for (auto it = index_.documents.lower_bound({kind, ""});
           it != index_.documents.end() && it->first.first == kind; ++it) {
        out.push_back(it->second);
      }
      return out;
    });
  }

  absl::StatusOr<bool> DeleteDocument(const std::string& kind, const std::string& key) override {
    bool existed = false;
    absl::Status s = Write([&](Batch& b) {
      existed = index_.documents.count({kind, key}) > 0;
      if (!existed) return absl::OkStatus();
      b.Add(Op::Delete(DocKeyOf(kind, key)));
      b.doc_kinds_deleted.insert(kind);
      Set(b, index_.documents, DocKey(kind, key), std::nullopt);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return existed;
  }

  absl::StatusOr<int> DeleteFinishedExecutions(int64_t finished_before_ms, int64_t keep_newest,
                                               int limit) override {
    // The victims, chosen once, the way the SQLite store's query does: finished
    // before the cutoff, or older than the newest keep_newest finished ones;
    // oldest first, at most `limit` (negative: no limit).
    std::vector<std::string> victims = ReadVictims(finished_before_ms, keep_newest, limit);
    if (InOwnTransaction()) {
      // One Txn holds the whole body, so delete what fits in half the room
      // left (the rest of the body may need the other half) and say how many:
      // the contract's "at most limit"; the caller's next round does more.
      // (The manager's retention runs in its writer's transactions, with a
      // limit of 10,000: all of them at once never fit.)
      size_t n = 0;
      RETURN_IF_ERROR(Write([&](Batch& b) {
        const size_t room = static_cast<size_t>(::flotilla::etcd::kMaxTxnOps - kOwnOps);
        const size_t budget = b.ops.size() >= room ? 0 : (room - b.ops.size()) / 2;
        size_t used = 0;
        while (n < victims.size() && used + OpsToDelete(victims[n]) <= budget) {
          used += OpsToDelete(victims[n]);
          DeleteExecutionInBatch(b, victims[n++]);
        }
        return absl::OkStatus();
      }));
      return static_cast<int>(n);
    }
    // Outside a transaction, in as many Txns as etcd's op limit asks for.
    int deleted = 0;
    for (size_t next = 0; next < victims.size();) {
      absl::Status s = Write([&](Batch& b) {
        const size_t room = ::flotilla::etcd::kMaxTxnOps - kOwnOps;
        while (next < victims.size() && b.ops.size() + OpsToDelete(victims[next]) <= room) {
          DeleteExecutionInBatch(b, victims[next++]);
        }
        if (b.ops.empty() && next < victims.size()) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "delete execution ", victims[next], ": it has more attempts and results than "
              "one etcd Txn may delete"));
        }
        return absl::OkStatus();
      });
      if (!s.ok()) {
        if (deleted == 0) return s;
        spdlog::warn("etcd store: deleted {} finished executions, then: {}", deleted, s.message());
        return deleted;
      }
      deleted = static_cast<int>(next);
    }
    return deleted;
  }

  absl::StatusOr<int> DeleteDocumentsBefore(const std::string& kind, int64_t updated_before_ms,
                                            int limit) override {
    int deleted = 0;
    absl::Status s = Write([&](Batch& b) -> absl::Status {
      std::vector<const DocumentRecord*> old;
      for (auto it = index_.documents.lower_bound({kind, ""});
           it != index_.documents.end() && it->first.first == kind; ++it) {
        if (it->second.updated_ms < updated_before_ms) old.push_back(&it->second);
      }
      std::stable_sort(old.begin(), old.end(), [](const DocumentRecord* a, const DocumentRecord* b) {
        return a->updated_ms < b->updated_ms;
      });
      size_t n = limit < 0 ? old.size() : std::min(old.size(), static_cast<size_t>(limit));
      n = std::min(n, static_cast<size_t>(::flotilla::etcd::kMaxTxnOps - kOwnOps));
      std::vector<DocKey> keys;
      for (size_t i = 0; i < n; ++i) keys.push_back({old[i]->kind, old[i]->key});
      if (!keys.empty()) b.doc_kinds_deleted.insert(kind);
      for (const DocKey& k : keys) {
        b.Add(Op::Delete(DocKeyOf(k.first, k.second)));
        Set(b, index_.documents, k, std::nullopt);
      }
      deleted = static_cast<int>(keys.size());
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return deleted;
  }

  absl::Status Transaction(absl::FunctionRef<absl::Status()> body) override {
    if (InOwnTransaction()) {
      return absl::FailedPreconditionError(
          "begin transaction: already inside a transaction on this thread; Transaction() is not "
          "reentrant, call the Store directly from the body");
    }
    std::lock_guard<std::mutex> lock(gate_);
    RETURN_IF_ERROR(ReadyToWriteLocked());
    Batch batch;
    txn_batch_ = &batch;
    txn_owner_.store(std::this_thread::get_id());
    absl::Status status = body();
    txn_owner_.store(std::thread::id());
    txn_batch_ = nullptr;
    if (!status.ok()) {
      batch.Rollback();
      return status;
    }
    return CommitLocked(batch);
  }

 private:
  bool InOwnTransaction() const { return txn_owner_.load() == std::this_thread::get_id(); }

  std::string AttemptPrefix(const std::string& id) const { return prefix_ + "a/" + Seg(id) + "/"; }
  std::string ResultPrefix(const std::string& id) const { return prefix_ + "r/" + Seg(id) + "/"; }
  std::string AttemptKeyOf(const std::string& id, uint32_t n) const {
    return AttemptPrefix(id) + AttemptNo(n);
  }
  std::string ResultKeyOf(const std::string& id, uint32_t n) const {
    return ResultPrefix(id) + AttemptNo(n);
  }
  std::string OutputKeyOf(const std::string& id, uint32_t n) const {
    return prefix_ + "o/" + Seg(id) + "/" + AttemptNo(n);
  }
  std::string DocPrefix(const std::string& kind) const { return prefix_ + "d/" + Seg(kind); }
  std::string DocKeyOf(const std::string& kind, const std::string& key) const {
    return DocPrefix(kind) + key;
  }
  std::string ManifestKeyOf(const std::string& id, uint32_t n) const {
    return prefix_ + "m/" + Seg(id) + "/" + AttemptNo(n);
  }
  std::string ChunkPrefix(const std::string& id, uint32_t n, const std::string& generation) const {
    return prefix_ + "c/" + Seg(id) + "/" + AttemptNo(n) + "/" + generation + "/";
  }
  static std::string ChunkNo(int64_t i) { return absl::StrFormat("%06d", i); }

  // Writes result's chunks under m's generation, kChunksPerTxn to a Txn,
  // each conditional on the fence (they touch no key the index knows, so
  // meta/txn stays as it is). On failure deletes what it wrote, best effort.
  absl::Status WriteChunksLocked(const std::string& id, uint32_t attempt, const Manifest& m,
                                 const std::string& result) {
    const std::string from = ChunkPrefix(id, attempt, m.generation);
    const auto deadline = std::chrono::steady_clock::now() + kChunkBudget;
    for (int64_t i = 0; i < m.chunks;) {
      ::flotilla::etcd::TxnRequest req;
      req.compares.push_back(Compare::CreateRevisionIs(fence_.key, fence_.create_revision));
      for (int k = 0; k < kChunksPerTxn && i < m.chunks; ++k, ++i) {
        req.success.push_back(
            Op::Put(from + ChunkNo(i), result.substr(static_cast<size_t>(i * kChunkBytes),
                                                     static_cast<size_t>(kChunkBytes))));
      }
      req.failure.push_back(Op::Get(fence_.key));
      absl::StatusOr<::flotilla::etcd::TxnResult> r =
          std::chrono::steady_clock::now() < deadline
              ? client_->Txn(req, std::min(deadline, std::chrono::steady_clock::now() +
                                                         std::chrono::seconds(5)))
              : absl::StatusOr<::flotilla::etcd::TxnResult>(absl::DeadlineExceededError(
                    absl::StrCat("writing the chunks took over ", kChunkBudget.count(), " s")));
      absl::Status failed;
      if (!r.ok()) {
        failed = Annotate(r.status(), absl::StrCat("write chunk ", i, " of ", m.chunks));
      } else if (!r->succeeded) {
        deposed_ = absl::FailedPreconditionError(absl::StrCat(
            "lost leadership: the leader key ", fence_.key,
            " no longer holds epoch ", fence_.create_revision,
            "; a deposed manager's writes are refused"));
        failed = deposed_;
      }
      if (!failed.ok()) {
        (void)client_->Delete(from, PrefixEnd(from));
        return failed;
      }
    }
    return absl::OkStatus();
  }

  // Deletes chunks that no committed manifest names: those of a leader
  // killed between writing a result's chunks and committing its manifest, or
  // of a commit whose outcome was unknown and that did not apply. Run when a
  // store opens, i.e. for a new leadership: from then on no earlier writer
  // can commit a manifest (the fence), so what is unnamed now stays so. Reads
  // keys only; best effort (a failure is logged, the rest waits for the next
  // leadership) and bounded by kSweepBudget.
  void SweepOrphanChunksLocked() {
    std::set<std::string> named;
    for (const auto& [k, m] : index_.manifests) {
      named.insert(ChunkPrefix(k.first, k.second, m.generation));
    }
    const std::string end = PrefixEnd(prefix_ + "c/");
    const auto deadline = std::chrono::steady_clock::now() + kSweepBudget;
    std::string at = prefix_ + "c/";
    std::string last;
    int swept = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      absl::StatusOr<::flotilla::etcd::RangeResult> page =
          client_->RangeKeys(at, end, kLoadPage, deadline);
      if (!page.ok()) {
        spdlog::warn("etcd store: sweep of orphaned result chunks stopped: {}",
                     page.status().message());
        return;
      }
      for (const ::flotilla::etcd::KeyValue& kv : page->kvs) {
        const std::string generation = kv.key.substr(0, kv.key.rfind('/') + 1);
        if (generation == last || named.count(generation)) continue;
        last = generation;
        absl::StatusOr<int64_t> gone = client_->Delete(generation, PrefixEnd(generation), deadline);
        if (!gone.ok()) {
          spdlog::warn("etcd store: cannot delete orphaned result chunks {}: {}",
                       absl::CHexEscape(generation), gone.status().message());
          return;
        }
        ++swept;
      }
      if (!page->more || page->kvs.empty()) break;
      at = page->kvs.back().key + std::string(1, '\0');
    }
    if (swept > 0) {
      spdlog::info("etcd store: deleted the chunks of {} result write(s) that never committed",
                   swept);
    }
  }

  // Undo of a chunked PutResult: its chunks go, unless the Txn that was to
  // commit its manifest may still be applied (then they may be needed).
  void DropChunksIfUncommitted(const std::string& from) {
    if (commit_in_doubt_) return;
    absl::StatusOr<int64_t> r = client_->Delete(from, PrefixEnd(from));
    if (!r.ok()) {
      spdlog::warn("etcd store: chunks under {} of a result not stored are left behind: {}",
                   absl::CHexEscape(from), r.status().message());
    }
  }

  // Reads and checks a chunked result: every chunk there, in order, the
  // size and CRC-32C the manifest says; DataLoss naming what is wrong if not.
  absl::StatusOr<std::string> ReadChunks(const std::string& id, uint32_t attempt,
                                         const Manifest& m) {
    const std::string from = ChunkPrefix(id, attempt, m.generation);
    const std::string end = PrefixEnd(from);
    std::string out;
    out.reserve(static_cast<size_t>(m.bytes));
    uint32_t crc = 0;
    int64_t next = 0;
    std::string at = from;
    const auto deadline = std::chrono::steady_clock::now() + kChunkBudget;
    while (true) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "reading the result's ", m.chunks, " chunks took over ", kChunkBudget.count(), " s"));
      }
      absl::StatusOr<::flotilla::etcd::RangeResult> page = client_->Range(
          at, end, kChunkReadPage,
          std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(5)));
      if (!page.ok()) return page.status();
      for (const ::flotilla::etcd::KeyValue& kv : page->kvs) {
        if (kv.key != from + ChunkNo(next)) {
          return absl::DataLossError(absl::StrCat(
              "chunk ", next, " of ", m.chunks, " (generation ", m.generation,
              ") is missing from etcd; found ", absl::CHexEscape(kv.key), " in its place"));
        }
        if (static_cast<int64_t>(out.size() + kv.value.size()) > m.bytes) {
          return absl::DataLossError(absl::StrCat("chunks of generation ", m.generation,
                                                  " hold more than the manifest's ", m.bytes,
                                                  " bytes"));
        }
        crc = Crc32cExtend(crc, kv.value);
        out += kv.value;
        ++next;
      }
      if (!page->more || page->kvs.empty()) break;
      at = page->kvs.back().key + std::string(1, '\0');
    }
    if (next != m.chunks || static_cast<int64_t>(out.size()) != m.bytes) {
      return absl::DataLossError(absl::StrCat(
          "the result's manifest (generation ", m.generation, ") names ", m.chunks, " chunks, ",
          m.bytes, " bytes; etcd holds ", next, " chunks, ", out.size(), " bytes"));
    }
    if (crc != m.crc32c) {
      return absl::DataLossError(absl::StrFormat(
          "the result's chunks (generation %s) have CRC-32C %08x; the manifest says %08x",
          m.generation, crc, m.crc32c));
    }
    return out;
  }

  template <typename Fn>
  auto Read(Fn&& fn) -> decltype(fn()) {
    if (InOwnTransaction()) return fn();
    std::lock_guard<std::mutex> lock(gate_);
    return fn();
  }

  // Runs fn, which changes the index and adds the ops that make the same
  // change in etcd; inside a Transaction() body into its batch, otherwise
  // into a Txn of its own, committed here.
  template <typename Fn>
  absl::Status Write(Fn&& fn) {
    if (InOwnTransaction()) {
      Batch& txn = *txn_batch_;
      const size_t undo_before = txn.undo.size();
      // A failed call changes nothing, even inside a transaction; the copy
      // is what puts an op replaced in place back.
      std::vector<Op> ops_before = txn.ops;
      const size_t n_ops = ops_before.size();
      absl::Status s = fn(txn);
      if (!s.ok()) txn.Truncate(n_ops, undo_before, std::move(ops_before));
      return s;
    }
    std::lock_guard<std::mutex> lock(gate_);
    RETURN_IF_ERROR(ReadyToWriteLocked());
    Batch batch;
    absl::Status s = fn(batch);
    if (!s.ok()) {
      batch.Rollback();
      return s;
    }
    return CommitLocked(batch);
  }

  std::vector<std::string> ReadVictims(int64_t finished_before_ms, int64_t keep_newest,
                                       int limit) {
    return Read([&] {
      std::vector<uint64_t> finished;  // seqs, oldest first
      for (const auto& [seq, id] : index_.by_seq) {
        if (model::IsTerminal(index_.executions.at(id).state)) finished.push_back(seq);
      }
      const int64_t keep = std::max<int64_t>(0, keep_newest);
      const uint64_t cutoff_seq =
          static_cast<int64_t>(finished.size()) > keep ? finished[finished.size() - 1 - keep] : 0;
      std::vector<std::string> victims;
      for (uint64_t seq : finished) {
        if (limit >= 0 && static_cast<int>(victims.size()) >= limit) break;
        const ExecutionRecord& r = index_.executions.at(index_.by_seq.at(seq));
        if (r.finished_ms < finished_before_ms || (cutoff_seq > 0 && seq <= cutoff_seq)) {
          victims.push_back(r.id);
        }
      }
      return victims;
    });
  }

  size_t OpsToDelete(const std::string& id) const {
    size_t n = 1;
    for (auto a = index_.attempts.lower_bound({id, 0});
         a != index_.attempts.end() && a->first.first == id; ++a) {
      ++n;
    }
    for (auto r = index_.results.lower_bound({id, 0});
         r != index_.results.end() && r->first.first == id; ++r) {
      n += index_.manifests.count(r->first) ? 3 : 2;
    }
    return n;
  }

  void DeleteExecutionInBatch(Batch& b, const std::string& id) {
    auto it = index_.executions.find(id);
    if (it == index_.executions.end()) return;
    const uint64_t seq = it->second.seq;
    // Key by key rather than a range per prefix: etcd refuses a Txn in which
    // a put falls inside a deleted range.
    b.Add(Op::Delete(prefix_ + "e/" + id));
    Set(b, index_.by_seq, seq, std::nullopt);
    Set(b, index_.executions, id, std::nullopt);
    std::vector<AttemptKey> attempts, results;
    for (auto a = index_.attempts.lower_bound({id, 0});
         a != index_.attempts.end() && a->first.first == id; ++a) {
      attempts.push_back(a->first);
    }
    for (auto r = index_.results.lower_bound({id, 0});
         r != index_.results.end() && r->first.first == id; ++r) {
      results.push_back(r->first);
    }
    for (const AttemptKey& k : attempts) {
      b.Add(Op::Delete(AttemptKeyOf(k.first, k.second)));
      Set(b, index_.attempts, k, std::nullopt);
    }
    for (const AttemptKey& k : results) {
      b.Add(Op::Delete(ResultKeyOf(k.first, k.second)));
      if (auto m = index_.manifests.find(k); m != index_.manifests.end()) {
        // Only the committed generation's range: chunks of a result written
        // later in the same body lie under another one.
        b.Add(Op::Delete(ManifestKeyOf(k.first, k.second)));
        const std::string from = ChunkPrefix(k.first, k.second, m->second.generation);
        b.Add(Op::Delete(from, PrefixEnd(from)));
        Set(b, index_.manifests, k, std::nullopt);
      } else {
        b.Add(Op::Delete(OutputKeyOf(k.first, k.second)));
      }
      Set(b, index_.results, k, std::nullopt);
    }
  }

  // Refuses every write once leadership is known lost; reloads the index
  // when etcd may hold a write the index does not.
  absl::Status ReadyToWriteLocked() {
    if (deposed_.ok() && fence_.still_leading && !fence_.still_leading()) {
      deposed_ = absl::FailedPreconditionError(absl::StrCat(
          "lost leadership: epoch ", fence_.create_revision, " of ", fence_.key,
          " was given up (its lease could not be renewed in time); a deposed manager's writes "
          "are refused"));
    }
    RETURN_IF_ERROR(deposed_);
    if (stale_) RETURN_IF_ERROR(LoadLocked());
    return absl::OkStatus();
  }

  // A batch that leaves a kind of documents empty (a key-value namespace
  // dropped, say) deletes it with one range delete instead of a delete per
  // key, so that emptying a kind of any size is one Txn within etcd's
  // --max-txn-ops. The same keys go: the index is every key under the prefix
  // (this store is the only writer, and meta/txn's compare fails the Txn if
  // anyone else wrote), and no put of the batch falls in the range (etcd
  // refuses a Txn that puts into a range it deletes).
  void CoalesceDeletes(Batch& b) {
    bool changed = false;
    for (const std::string& kind : b.doc_kinds_deleted) {
      auto left = index_.documents.lower_bound({kind, ""});
      if (left != index_.documents.end() && left->first.first == kind) continue;
      const std::string from = DocPrefix(kind);
      const std::string end = PrefixEnd(from);
      size_t in_range = 0;
      bool has_put = false;
      for (const Op& op : b.ops) {
        if (op.key >= from && op.key < end) {
          ++in_range;
          if (op.type != Op::Type::kDelete || !op.range_end.empty()) has_put = true;
        }
      }
      if (in_range < 2 || has_put) continue;
      std::vector<Op> ops;
      ops.reserve(b.ops.size() - in_range + 1);
      bool placed = false;
      for (Op& op : b.ops) {
        if (op.key >= from && op.key < end) {
          if (!placed) ops.push_back(Op::Delete(from, end));
          placed = true;
          continue;
        }
        ops.push_back(std::move(op));
      }
      b.ops = std::move(ops);
      changed = true;
    }
    if (!changed) return;
    b.by_key.clear();
    b.bytes = 0;
    for (size_t i = 0; i < b.ops.size(); ++i) {
      b.by_key[b.ops[i].key] = i;
      b.bytes += static_cast<int64_t>(b.ops[i].key.size() + b.ops[i].range_end.size() +
                                      b.ops[i].value.size() + 16);
    }
  }

  absl::Status CommitLocked(Batch& batch) {
    if (batch.ops.empty()) return absl::OkStatus();
    CoalesceDeletes(batch);
    if (static_cast<int>(batch.ops.size()) + kOwnOps > ::flotilla::etcd::kMaxTxnOps ||
        batch.bytes > kMaxTxnBytes) {
      const std::string why = absl::StrCat(
          "etcd store: one transaction may hold at most ",
          ::flotilla::etcd::kMaxTxnOps - kOwnOps, " writes and ", kMaxTxnBytes,
          " bytes (etcd's --max-txn-ops and --max-request-bytes); this one has ",
          batch.ops.size(), " writes and ", batch.bytes, " bytes; split it");
      batch.Rollback();
      return absl::ResourceExhaustedError(why);
    }
    const std::string txn_id = absl::StrCat(tag_, "-", ++txn_counter_);
    ::flotilla::etcd::TxnRequest req;
    req.compares.push_back(Compare::CreateRevisionIs(fence_.key, fence_.create_revision));
    req.compares.push_back(Compare::ModRevisionIs(txn_key_, last_txn_rev_));
    req.success = batch.ops;
    req.success.push_back(Op::Put(txn_key_, txn_id));
    if (batch.seq_changed) req.success.push_back(Op::Put(seq_key_, std::to_string(index_.last_seq)));
    req.failure.push_back(Op::Get(fence_.key));
    req.failure.push_back(Op::Get(txn_key_));

    absl::StatusOr<::flotilla::etcd::TxnResult> r = client_->Txn(req);
    const size_t n_ops = batch.ops.size();
    if (!r.ok() && r.status().code() != absl::StatusCode::kUnavailable &&
        r.status().code() != absl::StatusCode::kDeadlineExceeded) {
      // etcd refused the request itself (too large, too many ops): nothing
      // was applied.
      batch.Rollback();
      return Annotate(r.status(), "etcd store: write refused");
    }
    if (!r.ok()) {
      // The Txn may or may not have been applied; meta/txn says which.
      absl::StatusOr<::flotilla::etcd::RangeResult> mark = client_->Range(txn_key_, "");
      if (mark.ok() && !mark->kvs.empty() && mark->kvs[0].value == txn_id) {
        last_txn_rev_ = mark->kvs[0].mod_revision;
        return absl::OkStatus();
      }
      commit_in_doubt_ = true;
      batch.Rollback();
      commit_in_doubt_ = false;
      // Not applied as far as we can tell; it may still be, late: the next
      // Txn's compare on meta/txn would notice. Reload first to be sure.
      stale_ = true;
      return absl::UnavailableError(absl::StrCat(
          "etcd store: write not committed (", n_ops, " ops): ", r.status().message()));
    }
    if (r->succeeded) {
      last_txn_rev_ = r->revision;
      return absl::OkStatus();
    }
    // Which compare failed?
    const auto& fence_kvs = r->responses.size() > 0 ? r->responses[0].kvs
                                                    : std::vector<::flotilla::etcd::KeyValue>();
    const auto& txn_kvs = r->responses.size() > 1 ? r->responses[1].kvs
                                                  : std::vector<::flotilla::etcd::KeyValue>();
    if (fence_kvs.empty() || fence_kvs[0].create_revision != fence_.create_revision) {
      batch.Rollback();
      deposed_ = absl::FailedPreconditionError(absl::StrCat(
          "lost leadership: the leader key ", fence_.key,
          fence_kvs.empty() ? std::string(" is gone")
                            : absl::StrCat(" now belongs to epoch ", fence_kvs[0].create_revision),
          " (this store writes for epoch ", fence_.create_revision,
          "); a deposed manager's writes are refused"));
      spdlog::warn("etcd store: {}", deposed_.message());
      return deposed_;
    }
    if (!txn_kvs.empty() && txn_kvs[0].value == txn_id) {
      // Our own Txn, applied by an attempt the client retried elsewhere.
      last_txn_rev_ = txn_kvs[0].mod_revision;
      return absl::OkStatus();
    }
    batch.Rollback();
    absl::Status reloaded = LoadLocked();
    return absl::AbortedError(absl::StrCat(
        "etcd store: the data under ", prefix_,
        " changed outside this store (another writer, or an earlier timed-out write applied "
        "late); ",
        reloaded.ok() ? "reloaded it; retry the write" : absl::StrCat("reload failed: ", reloaded.message())));
  }

  absl::Status LoadLocked() {
    absl::StatusOr<::flotilla::etcd::RangeResult> fence = client_->Range(fence_.key, "");
    if (!fence.ok()) return Annotate(fence.status(), "open etcd store: read the fence");
    if (fence->kvs.empty() || fence->kvs[0].create_revision != fence_.create_revision) {
      deposed_ = absl::FailedPreconditionError(absl::StrCat(
          "lost leadership: the leader key ", fence_.key, " does not hold epoch ",
          fence_.create_revision, "; campaign again and open the store with the new leadership"));
      return deposed_;
    }
    Index index;
    int64_t txn_rev = 0;
    // Every kind of record but the outputs (o/), which are read on demand.
    for (const char* kind : {"a/", "d/", "e/", "m/", "meta/", "n/", "r/"}) {
      std::string from = prefix_ + kind;
      const std::string end = PrefixEnd(from);
      while (true) {
        absl::StatusOr<::flotilla::etcd::RangeResult> page = client_->Range(from, end, kLoadPage);
        if (!page.ok()) return Annotate(page.status(), absl::StrCat("open etcd store ", prefix_));
        for (const ::flotilla::etcd::KeyValue& kv : page->kvs) {
          RETURN_IF_ERROR(LoadOne(kv, &index, &txn_rev));
        }
        if (!page->more || page->kvs.empty()) break;
        from = page->kvs.back().key + std::string(1, '\0');
      }
    }
    index_ = std::move(index);
    last_txn_rev_ = txn_rev;
    stale_ = false;
    return absl::OkStatus();
  }

  absl::Status LoadOne(const ::flotilla::etcd::KeyValue& kv, Index* index, int64_t* txn_rev) {
    const std::string rest = kv.key.substr(prefix_.size());
    auto bad = [&](const char* what) {
      return absl::DataLossError(absl::StrCat("etcd store: cannot read ", what, " at key ",
                                              absl::CHexEscape(kv.key)));
    };
    if (rest == "meta/txn") {
      *txn_rev = kv.mod_revision;
    } else if (rest == "meta/seq") {
      uint64_t seq = 0;
      if (!absl::SimpleAtoi(kv.value, &seq)) return bad("the seq counter");
      index->last_seq = std::max(index->last_seq, seq);
    } else if (rest.rfind("e/", 0) == 0) {
      ASSIGN_OR_RETURN(ExecutionRecord r, DecodeExecution(kv.key, kv.value));
      index->last_seq = std::max(index->last_seq, r.seq);
      index->by_seq[r.seq] = r.id;
      index->executions[r.id] = std::move(r);
    } else if (rest.rfind("a/", 0) == 0) {
      pb::AttemptValue v;
      if (!v.ParseFromString(kv.value)) return bad("an attempt");
      index->attempts[{v.execution_id(), v.attempt()}] =
          AttemptRecord{v.execution_id(), v.attempt(), v.node_id(), v.assigned_ms(),
                        v.ended_ms(), v.outcome()};
    } else if (rest.rfind("r/", 0) == 0) {
      pb::ResultValue v;
      if (!v.ParseFromString(kv.value)) return bad("a result");
      index->results[{v.execution_id(), v.attempt()}] = ResultEntry{v.summary()};
    } else if (rest.rfind("m/", 0) == 0) {
      // m/<len>:<id>/<attempt>
      const size_t slash = rest.rfind('/');
      uint32_t attempt = 0;
      std::optional<Manifest> m = Manifest::Decode(kv.value);
      size_t len = 0;
      const size_t colon = rest.find(':', 2);
      if (!m || slash == std::string::npos || colon == std::string::npos ||
          !absl::SimpleAtoi(rest.substr(2, colon - 2), &len) || colon + 1 + len != slash ||
          !absl::SimpleAtoi(rest.substr(slash + 1), &attempt)) {
        return bad("a result's manifest");
      }
      index->manifests[{rest.substr(colon + 1, len), attempt}] = *std::move(m);
    } else if (rest.rfind("n/", 0) == 0) {
      pb::NodeValue v;
      if (!v.ParseFromString(kv.value)) return bad("a node");
      NodeRecord n{v.id(), v.spec(), model::NodeStatus::kOffline, v.epoch(),
                   v.last_heartbeat_ms()};
      if (v.status() == model::ToString(model::NodeStatus::kOnline)) {
        n.status = model::NodeStatus::kOnline;
      } else if (v.status() != model::ToString(model::NodeStatus::kOffline)) {
        return bad("a node's status");
      }
      index->nodes[n.id] = std::move(n);
    } else if (rest.rfind("d/", 0) == 0) {
      pb::DocumentValue v;
      if (!v.ParseFromString(kv.value)) return bad("a document");
      index->documents[{v.kind(), v.key()}] =
          DocumentRecord{v.kind(), v.key(), v.body(), v.updated_ms()};
    } else {
      spdlog::warn("etcd store: ignoring unknown key {}", absl::CHexEscape(kv.key));
    }
    return absl::OkStatus();
  }

  const std::shared_ptr<::flotilla::etcd::EtcdClient> client_;
  const std::string prefix_;
  const EtcdFence fence_;
  const std::string txn_key_;
  const std::string seq_key_;
  const std::string tag_;  // makes this store's meta/txn values its own

  std::mutex gate_;
  std::atomic<std::thread::id> txn_owner_{};
  // Guarded by gate_ (or owned by the thread in a Transaction() body).
  Batch* txn_batch_ = nullptr;
  Index index_;
  int64_t last_txn_rev_ = 0;  // meta/txn's mod_revision as this store last wrote or read it
  uint64_t txn_counter_ = 0;
  uint64_t generation_counter_ = 0;
  // Set while a batch whose Txn may yet be applied is rolled back.
  bool commit_in_doubt_ = false;
  bool stale_ = false;
  absl::Status deposed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenEtcdStore(
    std::shared_ptr<::flotilla::etcd::EtcdClient> client, const std::string& prefix,
    EtcdFence fence) {
  if (client == nullptr) return absl::InvalidArgumentError("open etcd store: no etcd client");
  if (prefix.empty() || prefix.back() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "open etcd store: prefix \"", prefix, "\" must be non-empty and end with '/'"));
  }
  if (fence.key.empty() || fence.create_revision <= 0) {
    return absl::InvalidArgumentError(
        "open etcd store: the fence needs the leader key and its create_revision (the epoch of "
        "a won election)");
  }
  if (fence.key.rfind(prefix, 0) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("open etcd store: the leader key ", fence.key,
                                                   " must lie outside the store's prefix ",
                                                   prefix));
  }
  auto store = std::make_unique<EtcdStore>(std::move(client), prefix, std::move(fence));
  RETURN_IF_ERROR(store->Open());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace flotilla::store
