#include "manager/services.h"

#include <grpcpp/grpcpp.h>

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

class ApiServiceImpl final : public v1::ApiService::Service {
 public:
  explicit ApiServiceImpl(Manager* m) : m_(m) {}

  Status Submit(ServerContext*, const v1::SubmitRequest* req, v1::SubmitResponse* resp) override {
    return Reply(m_->Submit(req->request()), resp);
  }
  Status Get(ServerContext*, const v1::GetRequest* req, v1::Execution* resp) override {
    return Reply(m_->Get(req->execution_id()), resp);
  }
  Status Watch(ServerContext* ctx, const v1::WatchRequest* req,
               grpc::ServerWriter<v1::WatchEvent>* writer) override {
    absl::Status st = m_->Watch(
        req->execution_id(), req->output(),
        [writer](const v1::WatchEvent& ev) { return writer->Write(ev); },
        [ctx] { return ctx->IsCancelled(); });
    return ToGrpcStatus(st);
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
