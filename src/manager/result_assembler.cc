#include "manager/result_assembler.h"

#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace flotilla::manager {

namespace v1 = ::flotilla::v1;

namespace {

// Execution ids are short (common/ids); anything longer is not one of ours.
constexpr size_t kMaxIdBytes = 256;

SliceOutcome Rejected(std::string error) {
  SliceOutcome out;
  out.kind = SliceOutcome::Kind::kRejected;
  out.error = std::move(error);
  return out;
}

std::string Name(const ResultSlice& s) {
  return absl::StrCat("the result of [", s.execution_id, "] attempt ", s.attempt);
}

// Returns an error if the slice cannot be part of any result this manager
// would accept; checked before anything is looked up or copied.
std::optional<std::string> CheckSlice(const ResultSlice& s, const ResultAssemblerOptions& o) {
  if (s.execution_id.empty() || s.execution_id.size() > kMaxIdBytes) {
    return absl::StrCat("a result chunk needs an execution id of 1..", kMaxIdBytes, " bytes");
  }
  if (s.attempt == 0) return absl::StrCat("a result chunk of [", s.execution_id, "] has attempt 0");
  if (s.total_bytes <= 0) {
    return absl::StrCat(Name(s), ": total_bytes ", s.total_bytes, " must be > 0");
  }
  if (s.total_bytes > o.max_result_bytes) {
    return absl::StrCat(Name(s), " is ", s.total_bytes, " bytes; this manager accepts results of ",
                        "at most ", o.max_result_bytes,
                        " bytes (lower the agent's output_limit_bytes)");
  }
  const auto size = static_cast<int64_t>(s.data.size());
  if (size == 0) return absl::StrCat(Name(s), ": an empty chunk at offset ", s.offset);
  // Written so that no sum can overflow: 0 <= offset <= total - size.
  if (s.offset < 0 || size > s.total_bytes || s.offset > s.total_bytes - size) {
    return absl::StrCat(Name(s), ": chunk [", s.offset, ", +", size, ") lies outside its ",
                        s.total_bytes, " bytes");
  }
  if (s.last && s.offset + size != s.total_bytes) {
    return absl::StrCat(Name(s), ": the last chunk ends at ", s.offset + size, ", not at ",
                        s.total_bytes);
  }
  return std::nullopt;
}

}  // namespace

ResultSlice SliceOf(const v1::ResultChunk& chunk) {
  ResultSlice s;
  s.execution_id = chunk.execution_id();
  s.attempt = chunk.attempt();
  s.offset = chunk.offset();
  s.total_bytes = chunk.total_bytes();
  s.data = chunk.data();
  s.last = chunk.last();
  return s;
}

ResultAssembler::ResultAssembler(ResultAssemblerOptions options) : options_(options) {}

size_t ResultAssembler::entries() const {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

int64_t ResultAssembler::buffered_bytes() const {
  absl::MutexLock lock(&mu_);
  return buffered_;
}

void ResultAssembler::EraseLocked(std::map<Key, Entry>::iterator it) {
  buffered_ -= it->second.total;
  entries_.erase(it);
}

void ResultAssembler::ExpireLocked(Clock::time_point now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (now - it->second.touched <= options_.idle_expiry) {
      ++it;
      continue;
    }
    const auto& [node, id, attempt] = it->first;
    spdlog::warn("[{}] attempt {}: dropped a partial result from {} that got nothing for {} ms",
                 id, attempt, node, options_.idle_expiry.count());
    auto gone = it++;
    EraseLocked(gone);
  }
}

SliceOutcome ResultAssembler::Add(const std::string& node_id, const ResultSlice& slice,
                                  Clock::time_point now) {
  if (auto error = CheckSlice(slice, options_)) {
    spdlog::warn("result chunk from {} refused: {}", node_id, *error);
    // A partial result whose slices went bad cannot finish: free its room.
    absl::MutexLock lock(&mu_);
    if (auto it = entries_.find(Key{node_id, slice.execution_id, slice.attempt});
        it != entries_.end()) {
      EraseLocked(it);
    }
    return Rejected(*std::move(error));
  }
  std::string complete;
  {
    absl::MutexLock lock(&mu_);
    ExpireLocked(now);
    const Key key{node_id, slice.execution_id, slice.attempt};
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.total != slice.total_bytes) {
      // The agent serialized the result anew (a different size): start over.
      EraseLocked(it);
      it = entries_.end();
    }
    if (it == entries_.end()) {
      if (entries_.size() >= options_.max_entries ||
          buffered_ + slice.total_bytes > options_.max_buffered_bytes) {
        SliceOutcome busy;
        busy.kind = SliceOutcome::Kind::kBusy;
        busy.error = absl::StrCat("the manager already buffers ", entries_.size(),
                                  " partial results (", buffered_, " of ",
                                  options_.max_buffered_bytes, " bytes); send ", Name(slice),
                                  " again later");
        return busy;
      }
      Entry entry;
      entry.total = slice.total_bytes;
      entry.bytes.resize(static_cast<size_t>(slice.total_bytes));
      it = entries_.emplace(key, std::move(entry)).first;
      buffered_ += slice.total_bytes;
    }
    it->second.touched = now;
    SliceOutcome out = StoreLocked(it, slice);
    if (out.kind != SliceOutcome::Kind::kComplete) return out;
    complete = std::move(it->second.bytes);
    EraseLocked(it);
  }
  // Parsed outside the lock: up to max_result_bytes of work.
  v1::ExecutionResult result;
  if (!result.ParseFromString(complete)) {
    return Rejected(absl::StrCat("the ", complete.size(), " bytes assembled for ", Name(slice),
                                 " do not parse as an ExecutionResult"));
  }
  if (result.execution_id() != slice.execution_id || result.attempt() != slice.attempt) {
    return Rejected(absl::StrCat("the chunks of ", Name(slice), " assemble into the result of [",
                                 result.execution_id(), "] attempt ", result.attempt()));
  }
  SliceOutcome out;
  out.kind = SliceOutcome::Kind::kComplete;
  out.next_offset = slice.total_bytes;
  out.result = std::move(result);
  return out;
}

SliceOutcome ResultAssembler::StoreLocked(std::map<Key, Entry>::iterator it,
                                          const ResultSlice& slice) {
  Entry& e = it->second;
  int64_t start = slice.offset;
  int64_t end = slice.offset + static_cast<int64_t>(slice.data.size());
  auto next_offset = [&e] {
    return !e.ranges.empty() && e.ranges.begin()->first == 0 ? e.ranges.begin()->second : 0;
  };

  // Bytes already held must not change: a slice sent again carries the same
  // bytes, anything else means the agent's copy is not what we hold.
  auto first = e.ranges.upper_bound(start);
  if (first != e.ranges.begin()) --first;
  bool touches = false;
  for (auto r = first; r != e.ranges.end() && r->first <= end; ++r) {
    if (r->second < start) continue;
    touches = true;
    const int64_t lo = std::max(start, r->first);
    const int64_t hi = std::min(end, r->second);
    if (lo < hi && std::memcmp(e.bytes.data() + lo, slice.data.data() + (lo - start),
                               static_cast<size_t>(hi - lo)) != 0) {
      std::string error = absl::StrCat(Name(slice), ": the chunk at offset ", slice.offset,
                                       " differs from the bytes already received");
      EraseLocked(it);
      return Rejected(std::move(error));
    }
  }
  if (!touches && e.ranges.size() >= options_.max_ranges) {
    // Too scattered to keep: not stored; the answer says where to go on.
    SliceOutcome out;
    out.next_offset = next_offset();
    return out;
  }
  std::memcpy(e.bytes.data() + start, slice.data.data(), slice.data.size());
  auto r = e.ranges.upper_bound(start);
  if (r != e.ranges.begin() && std::prev(r)->second >= start) {
    --r;
    start = r->first;
    end = std::max(end, r->second);
    r = e.ranges.erase(r);
  }
  while (r != e.ranges.end() && r->first <= end) {
    end = std::max(end, r->second);
    r = e.ranges.erase(r);
  }
  e.ranges.emplace(start, end);

  SliceOutcome out;
  out.next_offset = next_offset();
  if (out.next_offset == e.total) {
    out.kind = SliceOutcome::Kind::kComplete;
  }
  return out;
}

absl::StatusOr<v1::SendResultsResponse> HandleSendResults(
    ResultAssembler& assembler, const v1::SendResultsRequest& request,
    ResultAssembler::Clock::time_point now,
    const std::function<absl::StatusOr<v1::SendResultsResponse>(const v1::SendResultsRequest&)>&
        record) {
  if (request.chunks().empty()) return record(request);

  v1::SendResultsRequest whole;
  whole.set_node_id(request.node_id());
  *whole.mutable_results() = request.results();
  std::vector<v1::ResultChunkAck> acks(static_cast<size_t>(request.chunks_size()));
  std::vector<int> recorded_as(acks.size(), -1);  // index in whole.results
  for (int i = 0; i < request.chunks_size(); ++i) {
    SliceOutcome out = assembler.Add(request.node_id(), SliceOf(request.chunks(i)), now);
    v1::ResultChunkAck& ack = acks[static_cast<size_t>(i)];
    ack.set_next_offset(out.next_offset);
    ack.set_error(out.error);
    switch (out.kind) {
      case SliceOutcome::Kind::kPartial: ack.set_verdict(v1::RESULT_PARTIAL); break;
      case SliceOutcome::Kind::kBusy: ack.set_verdict(v1::RESULT_BUSY); break;
      case SliceOutcome::Kind::kRejected: ack.set_verdict(v1::RESULT_REJECTED); break;
      case SliceOutcome::Kind::kComplete:
        recorded_as[static_cast<size_t>(i)] = whole.results_size();
        *whole.add_results() = *std::move(out.result);
        break;
    }
  }

  v1::SendResultsResponse recorded;
  if (whole.results_size() > 0) {
    absl::StatusOr<v1::SendResultsResponse> r = record(whole);
    if (!r.ok()) return r.status();
    recorded = *std::move(r);
  }
  if (recorded.verdicts_size() != whole.results_size()) {
    return absl::InternalError(absl::StrCat("recording ", whole.results_size(),
                                            " results gave ", recorded.verdicts_size(),
                                            " verdicts"));
  }
  v1::SendResultsResponse resp;
  for (int i = 0; i < request.results_size(); ++i) resp.add_verdicts(recorded.verdicts(i));
  for (size_t i = 0; i < acks.size(); ++i) {
    if (recorded_as[i] >= 0) acks[i].set_verdict(recorded.verdicts(recorded_as[i]));
    *resp.add_chunks() = std::move(acks[i]);
  }
  return resp;
}

}  // namespace flotilla::manager
