// NodeSelection: picks the HypervisorNode that should run an ExecutionRequest.
//
// Hard filters first (node online, resources fit what is available, security
// profile matches both ways: node trust >= the request's minimum, the
// request's tenant allowed on the node, required capabilities granted), then
// a weighted score over the survivors. The default weights are the seed's
// CalculateScore: free cpu 0.3, free memory 0.3, security match 0.2, data
// locality 0.2. Each scorer yields 0..1; a node's score is
// 100 * sum(weight_i * scorer_i) / sum(weights), so 0..100.
//
// Pure: no I/O, no clock, no threads. Thread-compatible; const methods may be
// called concurrently.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/model.h"

namespace flotilla::scheduler {

struct Weights {
  double cpu = 0.3;       // fraction of the node's cpu that is free
  double memory = 0.3;    // fraction of the node's memory that is free
  double security = 0.2;  // 1 when the security profile matches (always, past the filter)
  double locality = 0.2;  // fraction of the request's data bytes already on the node

  // Returns weights from a map keyed "cpu", "memory", "security", "locality";
  // keys left out keep their defaults. InvalidArgument names the key when a
  // key is unknown, a weight is negative or not finite, or all are zero.
  static absl::StatusOr<Weights> FromMap(const std::map<std::string, double>& values);
};

// One node as the scheduler judged it.
struct CandidateVerdict {
  std::string node_id;
  bool feasible = false;
  std::string rejected_because;  // the first failing filter, e.g. "needs 4000m cpu, 1500m free"
  double score = 0;              // 0..100; 0 when infeasible
  // Per-scorer points ("cpu", "memory", "security", "locality"), adding up to score.
  std::vector<std::pair<std::string, double>> parts;
};

struct Decision {
  std::optional<size_t> chosen;  // index into the nodes passed to Select
  std::string node_id;           // empty when nothing fits now
  double score = 0;
  std::string reason;                        // one human line: why this node, or why none
  std::vector<CandidateVerdict> candidates;  // one per node, same order
};

class NodeSelection {
 public:
  explicit NodeSelection(Weights weights = {});

  // Returns the best feasible node for `request` among `nodes`. Ties go to
  // the node with fewer running executions, then the smaller id, so results
  // are deterministic.
  Decision Select(const model::ExecutionRequest& request,
                  std::span<const model::HypervisorNode> nodes) const;

  // Returns OK if at least one of `nodes` (online or not) could run `request`
  // when idle: its capacity holds the demand and its security profile
  // matches. Otherwise FailedPrecondition saying what no node offers, e.g.
  // "no node can ever run this: it asks for 64000m cpu but the largest node
  // has 2000m". OK when `nodes` is empty (nodes may still join).
  absl::Status CheckEverFeasible(const model::ExecutionRequest& request,
                                 std::span<const model::HypervisorNode> nodes) const;

  const Weights& weights() const { return weights_; }

 private:
  Weights weights_;
};

}  // namespace flotilla::scheduler
