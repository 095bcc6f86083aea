// Prewarmer: the manager's side of predictive pre-warming. It counts
// invocations per environment template and per function
// (ExecutionRequest.function), runs predict::PrewarmPlanner every `period`
// (time passed in), and turns the templates' targets into the PoolTargets
// sent to agents in ReportStatusResponse, split evenly over the nodes.
//
// Other components (per-function autoscaling) feed their own targets in
// with SetExternalTarget; a template's target is the larger of the forecast
// and every external target for it.
//
// Thread-safe: its own mutex; never calls out while holding it.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "flotilla/v1/federation.pb.h"
#include "predict/prewarm.h"

namespace flotilla::manager {

class Prewarmer {
 public:
  explicit Prewarmer(predict::PrewarmOptions options = {}, int64_t period_ms = 10'000);

  // The template an execution runs in, as the agent picks it: the request's
  // template_name, else "python" for Python source, else "shell".
  static std::string TemplateOf(const ::flotilla::v1::ExecutionRequest& request);

  void RecordInvocation(const ::flotilla::v1::ExecutionRequest& request, int64_t now_unix_ms);
  // min_idle <= 0 removes `source`'s target for the template.
  void SetExternalTarget(const std::string& template_name, const std::string& source, int min_idle,
                         const std::string& reason);

  // The pool targets for one of `nodes` nodes at `now_unix_ms`, replanning
  // when the period has passed: ceil(target / nodes) per template.
  std::vector<::flotilla::v1::PoolTarget> TargetsFor(int64_t now_unix_ms, int nodes);
  // The last plan of every template and function, for people.
  std::vector<predict::PrewarmTarget> LastPlan() const;

 private:
  void Replan(int64_t now_unix_ms);

  const int64_t period_ms_;
  mutable std::mutex mu_;
  predict::PrewarmPlanner planner_;  // guarded by mu_
  int64_t planned_ms_ = -1;          // guarded by mu_
  std::vector<predict::PrewarmTarget> plan_;  // guarded by mu_
  // template -> source -> (min_idle, reason); guarded by mu_
  std::map<std::string, std::map<std::string, std::pair<int, std::string>>> external_;
};

}  // namespace flotilla::manager
