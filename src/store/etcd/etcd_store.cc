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
#include <atomic>
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
    return LoadLocked();
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
      pb::ResultValue v;
      v.set_execution_id(id);
      v.set_attempt(attempt);
      v.set_summary(summary);
      std::string value = v.SerializeAsString();
      if (static_cast<int64_t>(value.size() + result.size()) > kMaxTxnBytes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            context, ": the result is ", value.size() + result.size(),
            " bytes; the etcd store keeps at most ", kMaxTxnBytes,
            " per write (etcd's --max-request-bytes); keep large outputs out of the store"));
      }
      b.Add(Op::Put(ResultKeyOf(id, attempt), std::move(value)));
      b.Add(Op::Put(OutputKeyOf(id, attempt), result));
      Set(b, index_.results, AttemptKey(id, attempt),
          std::optional<ResultEntry>(ResultEntry{summary}));
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
    if (InOwnTransaction()) {
      // The body's own, uncommitted write of it.
      if (auto op = txn_batch_->by_key.find(key); op != txn_batch_->by_key.end()) {
        const Op& o = txn_batch_->ops[op->second];
        if (o.type == Op::Type::kPut) return std::optional<std::string>(o.value);
        return std::optional<std::string>();
      }
    }
    bool known = false;
    (void)Read([&] {
      known = index_.results.count({id, attempt}) > 0;
      return 0;
    });
    if (!known) return std::optional<std::string>();
    // Outside the gate: a linearizable read sees every committed write, and
    // other calls need not wait for it.
    absl::StatusOr<::flotilla::etcd::RangeResult> r = client_->Range(key, "");
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("get result ", id, "/", attempt));
    if (r->kvs.empty()) return std::optional<std::string>();  // deleted meanwhile
    return std::optional<std::string>(std::move(r->kvs[0].value));
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
      RETURN_IF_ERROR(Write([&](Batch& b) {
        for (const std::string& id : victims) DeleteExecutionInBatch(b, id);
        return absl::OkStatus();
      }));
      return static_cast<int>(victims.size());
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
  std::string DocKeyOf(const std::string& kind, const std::string& key) const {
    return prefix_ + "d/" + Seg(kind) + key;
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
      n += 2;
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
      b.Add(Op::Delete(OutputKeyOf(k.first, k.second)));
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

  absl::Status CommitLocked(Batch& batch) {
    if (batch.ops.empty()) return absl::OkStatus();
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
      batch.Rollback();
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
    for (const char* kind : {"a/", "d/", "e/", "meta/", "n/", "r/"}) {
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
