// ResultOutbox: the agent's finished results that the manager has not
// confirmed yet, and how they travel. Each SendResults call carries at most
// batch_bytes of them (encoded), oldest first, so that no call comes near the
// manager's message limit however many results piled up while it was away; a
// result larger than that travels as ResultChunks, one slice per call, from
// the offset the manager asks for (see federation.proto).
//
// A result leaves the outbox when the manager answers ACCEPTED, DUPLICATE or
// STALE for it. One the manager refuses outright (REJECTED: larger than it
// accepts) is replaced by a copy with its output cut to fit one call and the
// refusal in its error, so the execution still ends.
//
// Not thread-safe: the agent guards it with its mutex. No I/O, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "flotilla/v1/federation.pb.h"

namespace flotilla::agent {

// Well under the manager's 9 MiB receive limit, and small enough that one
// call finishes quickly on a slow link.
constexpr size_t kResultBatchBytes = size_t{1} << 20;

class ResultOutbox {
 public:
  explicit ResultOutbox(size_t batch_bytes = kResultBatchBytes);

  void Add(flotilla::v1::ExecutionResult result);
  bool empty() const { return pending_.empty(); }
  size_t size() const { return pending_.size(); }

  // Adds the next batch (results and chunks) to `request`, on which the
  // caller has set node_id; the whole request stays within batch_bytes.
  // Returns false when there is nothing to send.
  bool NextBatch(flotilla::v1::SendResultsRequest* request);

  struct Done {
    std::string execution_id;
    uint32_t attempt = 0;
    flotilla::v1::ResultVerdict verdict = flotilla::v1::RESULT_VERDICT_UNSPECIFIED;
  };
  struct Applied {
    std::vector<Done> done;  // confirmed: gone from the outbox
    bool back_off = false;   // a malformed answer, or the manager is busy
  };
  // Applies the manager's answer to a batch that NextBatch filled. Results
  // added since stay queued.
  Applied Apply(const flotilla::v1::SendResultsRequest& request,
                const flotilla::v1::SendResultsResponse& response);

 private:
  struct Pending {
    flotilla::v1::ExecutionResult result;
    size_t encoded_bytes = 0;
    std::string encoded;  // serialized once it travels in chunks
    int64_t next_offset = 0;
  };

  std::deque<Pending>::iterator Find(const std::string& execution_id, uint32_t attempt);
  // Cuts stdout and stderr so that the result fits one batch.
  void ShrinkToFit(Pending& p, const std::string& why);

  size_t batch_bytes_;
  std::deque<Pending> pending_;  // oldest first
};

}  // namespace flotilla::agent
