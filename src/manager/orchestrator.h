// Orchestrator: runs workflows — a call of a deployed function (whole, or
// split into a DAG of pieces by the planner) or a hand-written DAG — on the
// federation. Every piece is an ordinary execution (the manager places it
// with the scheduler); values between pieces pass through the key-value
// store by key ("<piece>/<name>" in the workflow's namespace), and a piece
// that reads them asks the scheduler for the node that produced them.
//
// Durability: a workflow is a document in the Store, written before any of
// its executions is submitted. Execution ids are derived from the workflow,
// the piece, the task and the try ("wf-….p2.t0.1"), so a manager restarted
// mid-workflow finds the executions it had submitted (or submits them again,
// idempotently) and re-reads the outputs of finished pieces from their
// stored results when the embedded key-value store lost them.
//
// Failures: an execution that fails (non-zero exit, killed, node lost) is
// tried again up to OrchestratorOptions::max_tries; an exception raised by
// the user's code is the workflow's result (it fails, with the exception),
// not retried; Cancel stops every running piece.
//
// Thread-safe. One worker thread reacts to finished executions (the
// manager's finish listener) and polls running ones every second as a
// safety net.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/kv.h"
#include "manager/functions.h"
#include "manager/manager.h"
#include "scheduler/autoscaler.h"
#include "store/store.h"
#include "workflow/plan.h"

namespace flotilla::manager {

struct OrchestratorOptions {
  int max_tries = 3;                  // per task of a piece
  int64_t analysis_timeout_ms = 60'000;
  double min_piece_cost = 3.0;        // the planner's merge threshold
  int max_fanout = 16;                // chunks of one map at most
  // Per function: in-flight executions at most (the autoscaler's maximum).
  int max_instances = 16;
  double target_concurrency = 1.0;    // per instance, for the autoscaler
  int64_t keep_finished = 200;        // finished workflows kept in memory (the rest: the store)
};

class Orchestrator {
 public:
  // `runner` and `analyzer` are the Python programs sent as the source of
  // every piece and of every analysis (sdk/python/flotilla/_runner.py and
  // _split.py, embedded at build time).
  Orchestrator(Manager* manager, store::Store* store, FunctionRegistry* functions,
               kv::KvStore* kv, OrchestratorOptions options, std::string runner,
               std::string analyzer);
  ~Orchestrator();
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // Loads unfinished workflows from the store. Call once, before Start.
  absl::Status Recover();
  void Start();
  void Stop();

  // POST /split/analyze: {"function": NAME} or {"source", "entrypoint"}.
  // Returns {"plan": {...}, "analysis": {...}}.
  absl::StatusOr<nlohmann::json> Analyze(const nlohmann::json& request);

  // POST /execution/submit: {"function", "args"|"args_pickle", "kwargs"} or
  // {"plan": hand-written DAG}, for `tenant`: the workflow, its executions
  // and its key-value namespace ("T~wf-…"; plain "wf-…" in tenant default)
  // belong to it. The function name is the registry's (tenant-qualified,
  // manager/access.h). Returns the workflow (see ToJson), after waiting up
  // to request.wait_ms for it to end.
  absl::StatusOr<nlohmann::json> Submit(const nlohmann::json& request, const std::string& tenant);

  // `tenant` below: only that tenant's workflows (nullopt: every tenant's).
  // Another tenant's workflow answers NotFound, exactly as a missing one.
  // The workflow; waits up to wait_ms for it to end. NotFound names the id.
  absl::StatusOr<nlohmann::json> Get(const std::string& id, int64_t wait_ms,
                                     const std::optional<std::string>& tenant = std::nullopt);
  absl::StatusOr<nlohmann::json> Cancel(const std::string& id,
                                        const std::optional<std::string>& tenant = std::nullopt);
  // Newest first, without results.
  std::vector<nlohmann::json> List(size_t limit,
                                   const std::optional<std::string>& tenant = std::nullopt);

  // Per function: in-flight executions and the autoscaler's decision.
  nlohmann::json Scaling();

  // Called by the manager's finish listener (with the manager's lock held):
  // queues the id for the worker.
  void NoteFinished(const std::string& execution_id);

 private:
  struct Task;
  struct PieceRun;
  struct Workflow;
  struct Submission {
    std::string workflow_id;
    v1::ExecutionRequest request;
  };

  absl::StatusOr<std::string> RunAnalyzer(const std::string& source, const std::string& entrypoint);
  absl::StatusOr<workflow::Plan> PlanCall(const Function& f, std::string* analysis_json);

  // Starts every piece whose inputs are ready; returns what to submit.
  std::vector<Submission> Advance(Workflow& wf) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<v1::ExecutionRequest>> BuildRequests(Workflow& wf, PieceRun& run,
                                                                  const workflow::Piece& piece)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::ExecutionRequest BaseRequest(const Workflow& wf, const workflow::Piece& piece,
                                   const Function* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubmitAll(std::vector<Submission> subs);
  void Handle(const std::string& execution_id);
  void OnTaskDone(Workflow& wf, PieceRun& run, const workflow::Piece& piece, size_t task,
                  const v1::Execution& exec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the workflow with `error` (state "failed", or "cancelled" for a
  // cancel) and cancels its running executions.
  void FailWorkflow(Workflow& wf, nlohmann::json error, const std::string& state = "failed")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndWorkflow(Workflow& wf, const std::string& state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Persist(const Workflow& wf) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RestoreOutputs(Workflow& wf);
  nlohmann::json ToJson(const Workflow& wf, bool with_result) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PollRunning();
  void ScaleTick(int64_t now_ms);
  void WorkerLoop();
  int InFlight(const std::string& function) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Manager* const manager_;
  store::Store* const store_;
  FunctionRegistry* const functions_;
  kv::KvStore* const kv_;
  const OrchestratorOptions options_;
  const std::string runner_;
  const std::string analyzer_;

  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Workflow>> workflows_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> finished_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<scheduler::Autoscaler>> scalers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, scheduler::AutoscaleDecision> decisions_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> templates_ ABSL_GUARDED_BY(mu_);  // function -> template
  // Measured cost (ms) per statement and bytes per name, by function: the
  // planner's inputs for the next call.
  std::map<std::string, std::map<std::string, double>> measured_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, int64_t>> measured_bytes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<std::string, int>> measured_items_ ABSL_GUARDED_BY(mu_);
  absl::CondVar changed_;

  absl::Mutex events_mu_;
  std::deque<std::string> events_ ABSL_GUARDED_BY(events_mu_);
  bool stopping_ ABSL_GUARDED_BY(events_mu_) = false;
  absl::CondVar events_cv_;
  std::thread worker_;
};

// The result line a runner or analyzer printed last (after the
// "\x1eFLOTILLA-RESULT " marker), parsed; InvalidArgument when there is none.
absl::StatusOr<nlohmann::json> ParseRunnerResult(const std::string& stdout_text);

}  // namespace flotilla::manager
