#include "manager/services.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "common/logging.h"
#include "manager/result_assembler.h"
#include "wire/grpc_status.h"

namespace flotilla::manager {

namespace {

using grpc::ServerContext;
using grpc::Status;
using wire::ToGrpcStatus;

template <typename T>
Status Reply(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = std::move(result).value();
  return Status::OK;
}

class FederationServiceImpl final : public v1::FederationService::Service {
 public:
  explicit FederationServiceImpl(Manager* m) : m_(m) {}

  Status RegisterNode(ServerContext*, const v1::RegisterNodeRequest* req,
                      v1::RegisterNodeResponse* resp) override {
    return Reply(m_->RegisterNode(*req), resp);
  }
  Status ReportStatus(ServerContext*, const v1::ReportStatusRequest* req,
                      v1::ReportStatusResponse* resp) override {
    return Reply(m_->ReportStatus(*req), resp);
  }
  // Large results arrive in chunks; the manager only ever sees whole ones.
  Status SendResults(ServerContext*, const v1::SendResultsRequest* req,
                     v1::SendResultsResponse* resp) override {
    return Reply(HandleSendResults(assembler_, *req, ResultAssembler::Clock::now(),
                                   [this](const v1::SendResultsRequest& whole) {
                                     return m_->SendResults(whole);
                                   }),
                 resp);
  }
  Status SendOutput(ServerContext*, const v1::SendOutputRequest* req,
                    v1::SendOutputResponse*) override {
    m_->SendOutput(*req);
    return Status::OK;
  }

 private:
  Manager* m_;
  ResultAssembler assembler_;
};

// One Watch stream: a gRPC callback reactor (no thread per stream) fed by
// the manager's WatchHub through a bounded queue, one write in flight at a
// time. A client that falls behind by more than kMaxQueuedBytes is ended
// with RESOURCE_EXHAUSTED and watches again (the CLI reconnects).
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent>, public WatchSink {
 public:
  static constexpr size_t kMaxQueuedBytes = 32u << 20;

  WatchReactor(Manager* m, const v1::WatchRequest& req) : m_(m), id_(req.execution_id()) {
    absl::Status st = m_->Subscribe(id_, req.output(), this);
    absl::MutexLock lock(&mu_);
    subscribed_ = st.ok();
    if (!st.ok() && !end_) end_ = st;
    MaybeWriteLocked();
  }

  void Push(std::vector<v1::WatchEvent> events, std::optional<absl::Status> end) override {
    absl::MutexLock lock(&mu_);
    if (end_) return;
    for (auto& e : events) {
      queued_bytes_ += e.ByteSizeLong();
      queue_.push_back(std::move(e));
    }
    if (end) {
      end_ = std::move(end);
    } else if (queued_bytes_ > kMaxQueuedBytes) {
      queue_.clear();
      end_ = absl::ResourceExhaustedError(
          "this watcher fell behind the execution's output; watch again");
    }
    MaybeWriteLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {  // the client went away
      if (!end_) end_ = absl::CancelledError("the watcher went away");
      queue_.clear();
    }
    MaybeWriteLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (!end_) end_ = absl::CancelledError("the watcher cancelled");
    queue_.clear();
    MaybeWriteLocked();
  }

  void OnDone() override {
    // No Push after this: Unsubscribe takes the manager's lock, under which
    // every Push runs.
    if (subscribed_) m_->Unsubscribe(id_, this);
    delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      queued_bytes_ -= std::min(queued_bytes_, current_.ByteSizeLong());
      writing_ = true;
      StartWrite(&current_);
      return;
    }
    if (end_) {
      finished_ = true;
      Finish(ToGrpcStatus(*end_));
    }
  }

  Manager* const m_;
  const std::string id_;
  absl::Mutex mu_;
  bool subscribed_ = false;  // written in the constructor, before any callback
  std::deque<v1::WatchEvent> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  v1::WatchEvent current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> end_ ABSL_GUARDED_BY(mu_);
};

class ApiServiceImpl final : public v1::ApiService::WithCallbackMethod_Watch<v1::ApiService::Service> {
 public:
  explicit ApiServiceImpl(Manager* m) : m_(m) {}

  Status Submit(ServerContext*, const v1::SubmitRequest* req, v1::SubmitResponse* resp) override {
    return Reply(m_->Submit(req->request()), resp);
  }
  Status Get(ServerContext*, const v1::GetRequest* req, v1::Execution* resp) override {
    return Reply(m_->Get(req->execution_id()), resp);
  }
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext*,
                                                  const v1::WatchRequest* req) override {
    return new WatchReactor(m_, *req);
  }
  Status Cancel(ServerContext*, const v1::CancelRequest* req, v1::CancelResponse* resp) override {
    auto e = m_->Cancel(req->execution_id());
    if (!e.ok()) return ToGrpcStatus(e.status());
    *resp->mutable_execution() = std::move(e).value();
    return Status::OK;
  }
  Status ListNodes(ServerContext*, const v1::ListNodesRequest*,
                   v1::ListNodesResponse* resp) override {
    for (auto& n : m_->ListNodes()) *resp->add_nodes() = std::move(n);
    return Status::OK;
  }
  Status ListExecutions(ServerContext*, const v1::ListExecutionsRequest* req,
                        v1::ListExecutionsResponse* resp) override {
    auto list = m_->ListExecutions(*req);
    if (!list.ok()) return ToGrpcStatus(list.status());
    for (auto& e : *list) *resp->add_executions() = std::move(e);
    return Status::OK;
  }
  Status Checkpoint(ServerContext*, const v1::CheckpointRequest* req,
                    v1::CheckpointResponse* resp) override {
    return Reply(m_->Checkpoint(req->execution_id()), resp);
  }
  Status Migrate(ServerContext*, const v1::MigrateRequest* req, v1::MigrateResponse* resp) override {
    return Reply(m_->Migrate(*req), resp);
  }

 private:
  Manager* m_;
};

}  // namespace

std::unique_ptr<v1::FederationService::Service> NewFederationService(Manager* manager) {
  return std::make_unique<FederationServiceImpl>(manager);
}

std::unique_ptr<v1::ApiService::Service> NewApiService(Manager* manager) {
  return std::make_unique<ApiServiceImpl>(manager);
}

}  // namespace flotilla::manager
