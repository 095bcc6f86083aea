#include "agent/result_outbox.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace flotilla::agent {

namespace v1 = ::flotilla::v1;

namespace {

// What a result costs in the request beyond its own encoding: the field's
// tag and length.
constexpr size_t kResultOverhead = 16;
// A chunk's fields besides its data and execution id: tags, lengths, attempt,
// offset, total and last, each at most a 10-byte varint.
constexpr size_t kChunkOverhead = 64;
constexpr size_t kMinBatchBytes = 4096;
// The manager's answer travels back to the operator as the execution's error.
constexpr size_t kMaxRefusalBytes = 1024;

bool IsFinal(v1::ResultVerdict v) {
  return v == v1::RESULT_ACCEPTED || v == v1::RESULT_DUPLICATE || v == v1::RESULT_STALE;
}

}  // namespace

// A floor keeps every batch able to carry a useful slice beside its overhead.
ResultOutbox::ResultOutbox(size_t batch_bytes)
    : batch_bytes_(std::max(batch_bytes, kMinBatchBytes)) {}

void ResultOutbox::Add(v1::ExecutionResult result) {
  Pending p;
  p.encoded_bytes = result.ByteSizeLong();
  p.result = std::move(result);
  pending_.push_back(std::move(p));
}

std::deque<ResultOutbox::Pending>::iterator ResultOutbox::Find(const std::string& execution_id,
                                                               uint32_t attempt) {
  return std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) {
    return p.result.execution_id() == execution_id && p.result.attempt() == attempt;
  });
}

bool ResultOutbox::NextBatch(v1::SendResultsRequest* request) {
  // What the caller put in already (the node id) counts against the budget.
  const size_t preset = request->ByteSizeLong();
  size_t left = batch_bytes_ > preset ? batch_bytes_ - preset : 0;
  for (Pending& p : pending_) {
    const size_t whole = p.encoded_bytes + kResultOverhead;
    if (whole <= left) {
      *request->add_results() = p.result;
      left -= whole;
      continue;
    }
    // It fits a call of its own: it goes first in the next one, and nothing
    // younger overtakes it.
    if (whole <= batch_bytes_) break;
    // Too large for any call: one slice of it, from where the manager is.
    const size_t overhead = kChunkOverhead + p.result.execution_id().size();
    if (left < overhead + batch_bytes_ / 4) break;
    if (p.encoded.empty()) p.encoded = p.result.SerializeAsString();
    const auto offset = static_cast<size_t>(p.next_offset);
    const size_t n = std::min(left - overhead, p.encoded.size() - offset);
    v1::ResultChunk* c = request->add_chunks();
    c->set_execution_id(p.result.execution_id());
    c->set_attempt(p.result.attempt());
    c->set_offset(p.next_offset);
    c->set_total_bytes(static_cast<int64_t>(p.encoded.size()));
    c->set_data(p.encoded.substr(offset, n));
    c->set_last(offset + n == p.encoded.size());
    left -= n + overhead;
  }
  return request->results_size() > 0 || request->chunks_size() > 0;
}

ResultOutbox::Applied ResultOutbox::Apply(const v1::SendResultsRequest& request,
                                          const v1::SendResultsResponse& response) {
  Applied applied;
  if (response.verdicts_size() != request.results_size() ||
      response.chunks_size() != request.chunks_size()) {
    // An older manager ignores chunks and answers only for whole results.
    spdlog::warn("SendResults: {} verdicts and {} chunk answers for {} results and {} chunks; "
                 "is the manager older than this agent?",
                 response.verdicts_size(), response.chunks_size(), request.results_size(),
                 request.chunks_size());
    applied.back_off = true;
    return applied;
  }
  auto finish = [&](std::deque<Pending>::iterator it, v1::ResultVerdict verdict) {
    applied.done.push_back({it->result.execution_id(), it->result.attempt(), verdict});
    pending_.erase(it);
  };
  for (int i = 0; i < request.results_size(); ++i) {
    const v1::ExecutionResult& r = request.results(i);
    auto it = Find(r.execution_id(), r.attempt());
    if (it == pending_.end()) continue;
    if (IsFinal(response.verdicts(i))) {
      finish(it, response.verdicts(i));
    } else {
      applied.back_off = true;
    }
  }
  for (int i = 0; i < request.chunks_size(); ++i) {
    const v1::ResultChunk& c = request.chunks(i);
    const v1::ResultChunkAck& ack = response.chunks(i);
    auto it = Find(c.execution_id(), c.attempt());
    if (it == pending_.end() || static_cast<int64_t>(it->encoded.size()) != c.total_bytes()) {
      continue;
    }
    // Where the manager wants us to go on; anything outside the result means
    // from the start.
    const int64_t next = ack.next_offset() >= 0 && ack.next_offset() < c.total_bytes()
                             ? ack.next_offset()
                             : 0;
    switch (ack.verdict()) {
      case v1::RESULT_ACCEPTED:
      case v1::RESULT_DUPLICATE:
      case v1::RESULT_STALE:
        finish(it, ack.verdict());
        break;
      case v1::RESULT_PARTIAL:
        // No progress (the manager did not keep the slice): pause rather
        // than send the same bytes in a tight loop.
        if (next <= c.offset()) applied.back_off = true;
        it->next_offset = next;
        break;
      case v1::RESULT_BUSY:
        spdlog::info("[{}] attempt {}: manager busy: {}", c.execution_id(), c.attempt(),
                     ack.error());
        it->next_offset = next;
        applied.back_off = true;
        break;
      case v1::RESULT_REJECTED:
        ShrinkToFit(*it, ack.error());
        break;
      default:
        applied.back_off = true;
        break;
    }
  }
  return applied;
}

void ResultOutbox::ShrinkToFit(Pending& p, const std::string& why) {
  v1::ExecutionResult& r = p.result;
  const size_t original = p.encoded_bytes;
  // Half the batch for output leaves ample room for everything else.
  const size_t room = batch_bytes_ / 2;
  const size_t keep_err = std::min(r.stderr().size(), room / 2);
  const size_t keep_out = std::min(r.stdout().size(), room - keep_err);
  if (r.stdout().size() > keep_out) {
    r.mutable_stdout()->resize(keep_out);
    r.set_stdout_truncated(true);
  }
  if (r.stderr().size() > keep_err) {
    r.mutable_stderr()->resize(keep_err);
    r.set_stderr_truncated(true);
  }
  std::string note = absl::StrCat("the manager refused the whole result (", original,
                                  " bytes): ", why.substr(0, kMaxRefusalBytes),
                                  "; its output was cut to the first ", keep_out,
                                  " bytes of stdout and ", keep_err, " of stderr");
  spdlog::warn("[{}] attempt {}: {}", r.execution_id(), r.attempt(), note);
  r.set_error(r.error().empty() ? note : absl::StrCat(r.error(), "; ", note));
  p.encoded.clear();
  p.encoded_bytes = r.ByteSizeLong();
  p.next_offset = 0;
}

}  // namespace flotilla::agent
