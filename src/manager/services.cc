#include "manager/services.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "manager/access.h"
#include "manager/result_assembler.h"
#include "manager/user_api.h"
#include "wire/grpc_status.h"

namespace flotilla::manager {

namespace {

using grpc::ServerContext;
using grpc::Status;
using wire::ToGrpcStatus;

// Declares `decl` from a StatusOr, or returns its error to the client.
#define ASSIGN_OR_REPLY(decl, expr)                               \
  auto FLOTILLA_CONCAT_(or_reply_, __LINE__) = (expr);             \
  if (!FLOTILLA_CONCAT_(or_reply_, __LINE__).ok())                 \
    return ToGrpcStatus(FLOTILLA_CONCAT_(or_reply_, __LINE__).status()); \
  decl = std::move(FLOTILLA_CONCAT_(or_reply_, __LINE__)).value()

template <typename T>
Status Reply(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = std::move(result).value();
  return Status::OK;
}

class FederationServiceImpl final : public v1::FederationService::Service {
 public:
  FederationServiceImpl(Manager* m, auth::Gate gate) : m_(m), gate_(gate) {}

  Status RegisterNode(ServerContext* ctx, const v1::RegisterNodeRequest* req,
                      v1::RegisterNodeResponse* resp) override {
    auto caller = AsNode(*ctx, req->node().id());
    if (!caller.ok()) return ToGrpcStatus(caller.status());
    // The CA grants a node its highest trust level; the node's own
    // configuration may claim less, never more.
    const int claimed = req->node().security().trust_level();
    if (!gate_.insecure) {
      auto granted = auth::PeerTrustLevel(*ctx);
      if (!granted.ok()) return ToGrpcStatus(granted.status());
      if (claimed > *granted) {
        return ToGrpcStatus(absl::PermissionDeniedError(absl::StrCat(
            "node ", req->node().id(), " claims trust level ", claimed,
            " but its certificate allows at most ", *granted, " (flotilla ca issue --node ",
            req->node().id(), " --trust N)")));
      }
    }
    return Reply(m_->RegisterNode(*req), resp);
  }
  Status ReportStatus(ServerContext* ctx, const v1::ReportStatusRequest* req,
                      v1::ReportStatusResponse* resp) override {
    if (auto c = AsNode(*ctx, req->node_id()); !c.ok()) return ToGrpcStatus(c.status());
    return Reply(m_->ReportStatus(*req), resp);
  }
  // Large results arrive in chunks; the manager only ever sees whole ones.
  Status SendResults(ServerContext* ctx, const v1::SendResultsRequest* req,
                     v1::SendResultsResponse* resp) override {
    if (auto c = AsNode(*ctx, req->node_id()); !c.ok()) return ToGrpcStatus(c.status());
    return Reply(HandleSendResults(assembler_, *req, ResultAssembler::Clock::now(),
                                   [this](const v1::SendResultsRequest& whole) {
                                     return m_->SendResults(whole);
                                   }),
                 resp);
  }
  Status SendOutput(ServerContext* ctx, const v1::SendOutputRequest* req,
                    v1::SendOutputResponse*) override {
    if (auto c = AsNode(*ctx, req->node_id()); !c.ok()) return ToGrpcStatus(c.status());
    m_->SendOutput(*req);
    return Status::OK;
  }

 private:
  // The caller must be the node the request speaks for: its certificate,
  // not the body, says which node it is.
  absl::StatusOr<auth::Caller> AsNode(const ServerContext& ctx, const std::string& claimed) {
    if (gate_.insecure) return auth::DevelopmentCaller();
    auto caller = gate_.FromGrpc(ctx);
    if (!caller.ok()) return caller.status();
    if (caller->kind != auth::Caller::Kind::kNode) {
      return absl::PermissionDeniedError(absl::StrCat(
          "only nodes may call the federation service (with a node certificate); the caller is ",
          caller->Describe()));
    }
    if (caller->node_id != claimed) {
      return absl::PermissionDeniedError(absl::StrCat("node ", caller->node_id,
                                                      " may not speak for node '", claimed, "'"));
    }
    return caller;
  }

  Manager* m_;
  const auth::Gate gate_;
  ResultAssembler assembler_;
};

// One Watch stream: a gRPC callback reactor (no thread per stream) fed by
// the manager's WatchHub through a bounded queue, one write in flight at a
// time. A client that falls behind by more than kMaxQueuedBytes is ended
// with RESOURCE_EXHAUSTED and watches again (the CLI reconnects).
class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent>, public WatchSink {
 public:
  static constexpr size_t kMaxQueuedBytes = 32u << 20;

  // `id` is the execution the caller may watch (resolved and checked), or
  // `refused` says why not.
  WatchReactor(Manager* m, const v1::WatchRequest& req, std::string id, auth::Caller caller,
               absl::Status refused)
      : m_(m), id_(std::move(id)), caller_(std::move(caller)) {
    absl::Status st = refused.ok() ? m_->Subscribe(id_, req.output(), this) : refused;
    absl::MutexLock lock(&mu_);
    subscribed_ = st.ok();
    if (!st.ok() && !end_) end_ = st;
    MaybeWriteLocked();
  }

  void Push(std::vector<v1::WatchEvent> events, std::optional<absl::Status> end) override {
    absl::MutexLock lock(&mu_);
    if (end_) return;
    for (auto& e : events) {
      if (e.has_execution()) Redact(caller_, e.mutable_execution());
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
  const auth::Caller caller_;
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
  ApiServiceImpl(Manager* m, auth::Gate gate) : m_(m), gate_(gate) {}

  Status Submit(ServerContext* ctx, const v1::SubmitRequest* req, v1::SubmitResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    v1::ExecutionRequest request = req->request();
    if (absl::Status st = StampSubmit(caller, &request); !st.ok()) return ToGrpcStatus(st);
    auto submitted = m_->Submit(std::move(request));
    if (!submitted.ok()) return ToGrpcStatus(submitted.status());
    // A dedupe hit on a request id returns that execution: it is the
    // caller's tenant's by construction of the id, but checked anyway.
    if (absl::Status st = CheckAccess(caller, submitted->execution(), req->request().request_id());
        !st.ok()) {
      return ToGrpcStatus(st);
    }
    Redact(caller, submitted->mutable_execution());
    *resp = std::move(submitted).value();
    return Status::OK;
  }
  Status Get(ServerContext* ctx, const v1::GetRequest* req, v1::Execution* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    auto e = Find(caller, req->execution_id());
    if (!e.ok()) return ToGrpcStatus(e.status());
    Redact(caller, &*e);
    *resp = std::move(e).value();
    return Status::OK;
  }
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(grpc::CallbackServerContext* ctx,
                                                  const v1::WatchRequest* req) override {
    auto caller = User(*ctx);
    if (!caller.ok()) return new WatchReactor(m_, *req, "", {}, caller.status());
    auto e = Find(*caller, req->execution_id());
    if (!e.ok()) return new WatchReactor(m_, *req, "", *caller, e.status());
    return new WatchReactor(m_, *req, e->id(), *caller, absl::OkStatus());
  }
  Status Cancel(ServerContext* ctx, const v1::CancelRequest* req, v1::CancelResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    auto found = Find(caller, req->execution_id());
    if (!found.ok()) return ToGrpcStatus(found.status());
    auto e = m_->Cancel(found->id());
    if (!e.ok()) return ToGrpcStatus(e.status());
    Redact(caller, &*e);
    *resp->mutable_execution() = std::move(e).value();
    return Status::OK;
  }
  Status ListNodes(ServerContext* ctx, const v1::ListNodesRequest*,
                   v1::ListNodesResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    for (auto& n : m_->ListNodes()) *resp->add_nodes() = std::move(n);
    return Status::OK;
  }
  Status ListExecutions(ServerContext* ctx, const v1::ListExecutionsRequest* req,
                        v1::ListExecutionsResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    auto list = ListExecutionsFor(*m_, caller, *req);
    if (!list.ok()) return ToGrpcStatus(list.status());
    for (auto& e : *list) *resp->add_executions() = std::move(e);
    return Status::OK;
  }
  Status Checkpoint(ServerContext* ctx, const v1::CheckpointRequest* req,
                    v1::CheckpointResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    auto e = Find(caller, req->execution_id());
    if (!e.ok()) return ToGrpcStatus(e.status());
    return Reply(m_->Checkpoint(e->id()), resp);
  }
  Status Migrate(ServerContext* ctx, const v1::MigrateRequest* req, v1::MigrateResponse* resp) override {
    ASSIGN_OR_REPLY(auth::Caller caller, User(*ctx));
    // Moving work between nodes is an operator's decision.
    if (!caller.is_admin()) {
      return ToGrpcStatus(absl::PermissionDeniedError(
          absl::StrCat(caller.Describe(), " may not migrate executions: that needs the admin role")));
    }
    return Reply(m_->Migrate(*req), resp);
  }

 private:
  absl::StatusOr<auth::Caller> User(const grpc::ServerContextBase& ctx) {
    return gate_.RequireUser(gate_.FromGrpc(ctx));
  }

  // The execution `id` names for `caller`, if the caller may see it.
  absl::StatusOr<v1::Execution> Find(const auth::Caller& caller, const std::string& id) {
    return FindExecutionFor(*m_, caller, id);
  }

  Manager* m_;
  const auth::Gate gate_;
};

}  // namespace

std::unique_ptr<v1::FederationService::Service> NewFederationService(Manager* manager,
                                                                    auth::Gate gate) {
  return std::make_unique<FederationServiceImpl>(manager, gate);
}

std::unique_ptr<v1::ApiService::Service> NewApiService(Manager* manager, auth::Gate gate) {
  return std::make_unique<ApiServiceImpl>(manager, gate);
}

}  // namespace flotilla::manager
