// The manager unit tests' fixture: fake agents that record what the
// manager sends them, a temporary directory for the real SQLite store, and
// helpers that play an agent's and a client's part. Shared by the test files
// of tests/unit/manager.
#pragma once

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/temp_dir.h"
#include "manager/agent_client.h"
#include "manager/config.h"
#include "manager/manager.h"
#include "spdlog/spdlog.h"
#include "common/clock.h"
#include "store/fault_injecting_store.h"
#include "store/store.h"

namespace flotilla::manager {
namespace {

constexpr int64_t kGiB = 1ll << 30;

using TempDir = ::flotilla::testing::TempDir;

// What the fake agents were asked, and how they answer. Shared between the
// test and the factory the Manager owns, so it outlives either.
class FakeAgents {
 public:
  struct TaskCall {
    std::string address;
    v1::RequestTaskRequest request;
  };
  struct CancelCall {
    std::string address;
    v1::CancelTaskRequest request;
  };

  // Every RequestTask to `address` completes at once with `status`.
  void ReplyTo(const std::string& address, absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_[address] = std::move(status);
  }
  // RequestTask calls to `address` are held until CompleteHeld().
  void HoldFor(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_[address] = std::nullopt;
  }
  // Completes the held RequestTask call number `index` (in call order).
  void CompleteHeld(size_t index, absl::Status status) {
    std::function<void(absl::Status)> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ASSERT_LT(index, held_.size());
      done = std::move(held_[index]);
    }
    ASSERT_TRUE(done);
    done(std::move(status));
  }

  std::vector<TaskCall> tasks() {
    std::lock_guard<std::mutex> lock(mu_);
    return tasks_;
  }
  // Sizes of the RequestTasks batches, in call order.
  std::vector<size_t> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  void OnBatch(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    batches_.push_back(n);
  }
  std::vector<CancelCall> cancels() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancels_;
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.clear();
    cancels_.clear();
  }

  void OnRequestTask(const std::string& address, const v1::RequestTaskRequest& request,
                     std::function<void(absl::Status)> done) {
    std::optional<absl::Status> reply = absl::OkStatus();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back({address, request});
      if (auto it = replies_.find(address); it != replies_.end()) reply = it->second;
      if (!reply) {
        held_.push_back(std::move(done));
        return;
      }
    }
    done(*reply);
  }
  void OnCancelTask(const std::string& address, const v1::CancelTaskRequest& request,
                    std::function<void(absl::Status)> done) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancels_.push_back({address, request});
    }
    done(absl::OkStatus());
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::optional<absl::Status>> replies_;  // absent: OK
  std::vector<std::function<void(absl::Status)>> held_;
  std::vector<TaskCall> tasks_;
  std::vector<CancelCall> cancels_;
  std::vector<size_t> batches_;
};

class FakeClient : public AgentClient {
 public:
  FakeClient(std::shared_ptr<FakeAgents> agents, std::string address)
      : agents_(std::move(agents)), address_(std::move(address)) {}
  void RequestTask(const v1::RequestTaskRequest& request,
                   std::function<void(absl::Status)> done) override {
    agents_->OnRequestTask(address_, request, std::move(done));
  }
  void RequestTasks(const std::vector<v1::RequestTaskRequest>& requests,
                    std::function<void(std::vector<absl::Status>)> done) override {
    agents_->OnBatch(requests.size());
    AgentClient::RequestTasks(requests, std::move(done));  // each as RequestTask
  }
  void CancelTask(const v1::CancelTaskRequest& request,
                  std::function<void(absl::Status)> done) override {
    agents_->OnCancelTask(address_, request, std::move(done));
  }

 private:
  std::shared_ptr<FakeAgents> agents_;
  std::string address_;
};

class FakeFactory : public AgentClientFactory {
 public:
  explicit FakeFactory(std::shared_ptr<FakeAgents> agents) : agents_(std::move(agents)) {}
  std::shared_ptr<AgentClient> For(const std::string&, const std::string& address) override {
    return std::make_shared<FakeClient>(agents_, address);
  }

 private:
  std::shared_ptr<FakeAgents> agents_;
};

std::string AddressOf(const std::string& node_id) { return node_id + ".test:9000"; }

v1::HypervisorNode NodeSpec(const std::string& id, int trust = 5, int64_t cpu_millis = 4000) {
  v1::HypervisorNode n;
  n.set_id(id);
  n.set_address(AddressOf(id));
  n.mutable_resources()->mutable_capacity()->set_cpu_millis(cpu_millis);
  n.mutable_resources()->mutable_capacity()->set_memory_bytes(8 * kGiB);
  n.mutable_security()->set_trust_level(trust);
  return n;
}

v1::ExecutionRequest Shell(const std::string& source = "echo hi") {
  v1::ExecutionRequest r;
  r.mutable_code()->set_runtime("shell");
  r.mutable_code()->set_source(source);
  return r;
}

v1::TaskRef Task(const std::string& id, uint32_t attempt, bool finished = false) {
  v1::TaskRef t;
  t.set_execution_id(id);
  t.set_attempt(attempt);
  t.set_finished(finished);
  return t;
}

v1::ExecutionResult Exited(const std::string& id, uint32_t attempt, int exit_code) {
  v1::ExecutionResult r;
  r.set_execution_id(id);
  r.set_attempt(attempt);
  r.set_termination(v1::TERMINATION_EXITED);
  r.set_exit_code(exit_code);
  r.set_stdout("out");
  return r;
}

v1::ExecutionResult Ended(const std::string& id, uint32_t attempt, v1::Termination how) {
  v1::ExecutionResult r = Exited(id, attempt, 0);
  r.set_termination(how);
  return r;
}

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spdlog::set_level(spdlog::level::err);
    config_.db_path = dir_.File("flotilla.db");
    config_.lease_timeout = std::chrono::milliseconds(50);
    config_.heartbeat_interval = std::chrono::milliseconds(10);
    config_.dispatch_grace = std::chrono::milliseconds(50);
  }

  std::unique_ptr<Manager> NewManager() {
    absl::StatusOr<std::unique_ptr<store::Store>> store =
        store::OpenSqliteStore(config_.db_path, store::Durability::kProcessCrash);
    if (!store.ok()) {
      ADD_FAILURE() << store.status();
      return nullptr;
    }
    if (wrap_store_) {
      auto fault = std::make_unique<store::FaultInjectingStore>(std::move(*store));
      fault_ = fault.get();
      return std::make_unique<Manager>(config_, std::move(fault),
                                       std::make_unique<FakeFactory>(agents_), clock_);
    }
    return std::make_unique<Manager>(config_, std::move(*store),
                                     std::make_unique<FakeFactory>(agents_), clock_);
  }
  Manager& mgr() {
    if (!mgr_) mgr_ = NewManager();
    return *mgr_;
  }

  // Registers the node and returns its epoch.
  uint64_t Register(const v1::HypervisorNode& spec, std::vector<v1::TaskRef> tasks = {}) {
    v1::RegisterNodeRequest req;
    *req.mutable_node() = spec;
    for (auto& t : tasks) *req.add_tasks() = std::move(t);
    absl::StatusOr<v1::RegisterNodeResponse> resp = mgr().RegisterNode(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->epoch() : 0;
  }

  absl::StatusOr<v1::ReportStatusResponse> Report(const std::string& node, uint64_t epoch,
                                                  std::vector<v1::TaskRef> tasks = {}) {
    v1::ReportStatusRequest req;
    req.set_node_id(node);
    req.set_epoch(epoch);
    for (auto& t : tasks) *req.add_tasks() = std::move(t);
    return mgr().ReportStatus(req);
  }

  absl::StatusOr<v1::SubmitResponse> Submit(v1::ExecutionRequest request) {
    return mgr().Submit(std::move(request));
  }
  // Submits and returns the execution id.
  std::string SubmitOk(v1::ExecutionRequest request = Shell()) {
    absl::StatusOr<v1::SubmitResponse> resp = Submit(std::move(request));
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->execution().id() : "";
  }

  v1::Execution GetOk(const std::string& id) {
    absl::StatusOr<v1::Execution> e = mgr().Get(id);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? *e : v1::Execution();
  }

  v1::ResultVerdict SendResult(const std::string& node, v1::ExecutionResult result) {
    v1::SendResultsRequest req;
    req.set_node_id(node);
    *req.add_results() = std::move(result);
    absl::StatusOr<v1::SendResultsResponse> resp = mgr().SendResults(req);
    EXPECT_TRUE(resp.ok()) << resp.status();
    if (!resp.ok() || resp->verdicts_size() != 1) return v1::RESULT_VERDICT_UNSPECIFIED;
    return resp->verdicts(0);
  }

  void Output(const std::string& node, const std::string& id, uint32_t attempt,
              v1::OutputStream stream, int64_t offset, const std::string& data) {
    v1::SendOutputRequest req;
    req.set_node_id(node);
    auto* c = req.add_chunks();
    c->set_execution_id(id);
    c->set_attempt(attempt);
    c->set_stream(stream);
    c->set_offset(offset);
    c->set_data(data);
    mgr().SendOutput(req);
  }

  TempDir dir_;
  ManagerConfig config_;
  std::shared_ptr<FakeAgents> agents_ = std::make_shared<FakeAgents>();
  std::unique_ptr<Manager> mgr_;
  // Tests that drive time set a FakeClock before the first mgr().
  Clock* clock_ = Clock::Real();
  // Set before the first mgr(): the manager's store fails writes on demand
  // through fault_ (owned by the manager).
  bool wrap_store_ = false;
  store::FaultInjectingStore* fault_ = nullptr;
};

}  // namespace
}  // namespace flotilla::manager
