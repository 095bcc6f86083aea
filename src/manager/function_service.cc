#include "manager/function_service.h"

#include "manager/access.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "wire/grpc_status.h"

namespace flotilla::manager {

namespace {

using grpc::ServerContext;
using grpc::Status;
using nlohmann::json;
using wire::ToGrpcStatus;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// Parses a *_json request field; empty text is `fallback`. InvalidArgument
// names the field.
absl::StatusOr<json> ParseJsonField(const std::string& text, const char* field, json fallback) {
  if (text.empty()) return fallback;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is not valid JSON: ", text));
  }
  return j;
}

// Fills `out` from a JSON answer whose keys are the proto's field names;
// keys the proto lacks are ignored.
absl::Status MessageFromJson(const json& j, google::protobuf::Message* out) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(j.dump(), out, options);
  if (!st.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot convert the answer to ", out->GetTypeName(), ": ", st.ToString()));
  }
  return absl::OkStatus();
}

// The JSON text of a value, or the string itself when it is one.
std::string Text(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// "scaling" is an object without a fixed shape: it travels as text.
absl::Status FunctionFromJson(json j, v1::Function* out) {
  std::string scaling;
  if (j.contains("scaling")) {
    scaling = j["scaling"].dump();
    j.erase("scaling");
  }
  RETURN_IF_ERROR(MessageFromJson(j, out));
  out->set_scaling_json(std::move(scaling));
  return absl::OkStatus();
}

// The result (any JSON), the result's encoding data (any JSON) and the error
// (whose values need not be strings) are converted by hand.
absl::Status WorkflowFromJson(json j, v1::Workflow* out) {
  json result = j.contains("result") ? j["result"] : json();
  json result_json = j.contains("result_json") ? j["result_json"] : json();
  json error = j.contains("error") ? j["error"] : json();
  for (const char* k : {"result", "result_json", "error"}) j.erase(k);
  RETURN_IF_ERROR(MessageFromJson(j, out));
  if (result.is_object()) {
    out->mutable_result()->set_encoding(result.value("encoding", ""));
    if (result.contains("data")) out->mutable_result()->set_data_json(result["data"].dump());
  }
  if (!result_json.is_null()) out->set_result_json(result_json.dump());
  if (error.is_object()) {
    v1::WorkflowError* e = out->mutable_error();
    auto field = [&error](const char* k) { return error.contains(k) ? Text(error[k]) : ""; };
    e->set_type(field("type"));
    e->set_module(field("module"));
    e->set_message(field("message"));
    e->set_traceback(field("traceback"));
    e->set_pickle(field("pickle"));
  } else if (!error.is_null()) {
    out->mutable_error()->set_message(Text(error));
  }
  return absl::OkStatus();
}

json AnnotationsJson(const v1::Annotations& a) {
  const v1::ResourceConstraint& rc = a.resource_constraint();
  return {{"splitable", a.splitable()},
          {"geo_preference",
           std::vector<std::string>(a.geo_preference().begin(), a.geo_preference().end())},
          {"resource_constraint",
           {{"memory_bytes", rc.memory_bytes()},
            {"timeout_ms", rc.timeout_ms()},
            {"cpu_millis", rc.cpu_millis()}}}};
}

Status Answer(const absl::Status& st) { return ToGrpcStatus(st); }

// Functions and workflows are per tenant (manager/access.h): a tenant
// deploys, lists and calls its own under its own names; an admin sees all.
class FunctionServiceImpl final : public v1::FunctionService::Service {
 public:
  FunctionServiceImpl(FunctionRegistry* functions, Orchestrator* orchestrator, auth::Gate gate)
      : functions_(functions), orchestrator_(orchestrator), gate_(gate) {}

  Status DeployFunction(ServerContext* ctx, const v1::DeployFunctionRequest* req,
                        v1::Function* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    auto name = QualifiedName(*caller, req->name());
    if (!name.ok()) return Answer(name.status());
    json spec = {{"name", *name}, {"source", req->source()}, {"entrypoint", req->entrypoint()}};
    // Empty means the registry's default, as a missing REST key does.
    if (!req->runtime().empty()) spec["runtime"] = req->runtime();
    if (!req->template_().empty()) spec["template"] = req->template_();
    if (!req->description().empty()) spec["description"] = req->description();
    if (req->has_annotations()) spec["annotations"] = AnnotationsJson(req->annotations());
    auto f = functions_->Deploy(spec, NowMs());
    if (!f.ok()) return Answer(f.status());
    return Answer(FunctionFromJson(FunctionFor(*caller, *f, false, json::object()), resp));
  }

  Status GetFunction(ServerContext* ctx, const v1::GetFunctionRequest* req,
                     v1::Function* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    auto name = QualifiedName(*caller, req->name());
    if (!name.ok()) return Answer(name.status());
    auto f = functions_->Get(*name);
    if (!f.ok()) return Answer(f.status());
    return Answer(FunctionFromJson(FunctionFor(*caller, *f, true, orchestrator_->Scaling()), resp));
  }

  Status ListFunctions(ServerContext* ctx, const v1::ListFunctionsRequest*,
                       v1::ListFunctionsResponse* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    auto list = functions_->List();
    if (!list.ok()) return Answer(list.status());
    const std::optional<std::string> tenant = ListedTenant(*caller);
    json scaling = orchestrator_->Scaling();
    for (const auto& f : *list) {
      if (tenant && TenantOfName(f.name) != *tenant) continue;
      if (auto st =
              FunctionFromJson(FunctionFor(*caller, f, false, scaling), resp->add_functions());
          !st.ok()) {
        return Answer(st);
      }
    }
    return Status::OK;
  }

  Status DeleteFunction(ServerContext* ctx, const v1::DeleteFunctionRequest* req,
                        v1::DeleteFunctionResponse* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    auto name = QualifiedName(*caller, req->name());
    if (!name.ok()) return Answer(name.status());
    auto st = functions_->Delete(*name);
    if (!st.ok()) return Answer(st);
    resp->set_deleted(true);
    return Status::OK;
  }

  Status UpdateAnnotations(ServerContext* ctx, const v1::UpdateAnnotationsRequest* req,
                           v1::Function* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    if (req->function().empty()) {
      return Answer(absl::InvalidArgumentError("UpdateAnnotations needs function: NAME"));
    }
    auto name = QualifiedName(*caller, req->function());
    if (!name.ok()) return Answer(name.status());
    auto partial = ParseJsonField(req->annotations_json(), "annotations_json", json::object());
    if (!partial.ok()) return Answer(partial.status());
    auto f = functions_->UpdateAnnotations(*name, *partial, NowMs());
    if (!f.ok()) return Answer(f.status());
    return Answer(FunctionFromJson(FunctionFor(*caller, *f, false, json::object()), resp));
  }

  Status AnalyzeSplit(ServerContext* ctx, const v1::AnalyzeSplitRequest* req,
                      v1::AnalyzeSplitResponse* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    json request;
    if (req->function().empty()) {
      request = {{"source", req->source()}, {"entrypoint", req->entrypoint()}};
    } else {
      auto name = QualifiedName(*caller, req->function());
      if (!name.ok()) return Answer(name.status());
      request = {{"function", *name}};
    }
    auto out = orchestrator_->Analyze(request);
    if (!out.ok()) return Answer(out.status());
    const json& plan = (*out)["plan"];
    resp->set_splittable(plan.value("splittable", false));
    resp->set_reason(plan.value("reason", ""));
    resp->set_plan_json(plan.dump());
    resp->set_analysis_json((*out)["analysis"].dump());
    return Status::OK;
  }

  Status SubmitCall(ServerContext* ctx, const v1::SubmitCallRequest* req, v1::Workflow* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    if (req->function().empty()) {
      return Answer(absl::InvalidArgumentError("SubmitCall needs function: NAME"));
    }
    auto name = QualifiedName(*caller, req->function());
    if (!name.ok()) return Answer(name.status());
    json request = {{"function", *name}, {"wait_ms", req->wait_ms()}};
    if (!req->args_pickle().empty()) {
      request["args_pickle"] = req->args_pickle();
    } else {
      auto args = ParseJsonField(req->args_json(), "args_json", json::array());
      if (!args.ok()) return Answer(args.status());
      auto kwargs = ParseJsonField(req->kwargs_json(), "kwargs_json", json::object());
      if (!kwargs.ok()) return Answer(kwargs.status());
      request["args"] = *args;
      request["kwargs"] = *kwargs;
    }
    return WorkflowAnswer(*caller, orchestrator_->Submit(request, caller->user.tenant), resp);
  }

  Status SubmitPlan(ServerContext* ctx, const v1::SubmitPlanRequest* req, v1::Workflow* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    if (req->workflow_yaml().empty()) {
      return Answer(absl::InvalidArgumentError("SubmitPlan needs workflow_yaml: the workflow's YAML text"));
    }
    return WorkflowAnswer(
        *caller,
        orchestrator_->Submit({{"plan", req->workflow_yaml()}, {"wait_ms", req->wait_ms()}},
                              caller->user.tenant),
        resp);
  }

  Status GetWorkflow(ServerContext* ctx, const v1::GetWorkflowRequest* req, v1::Workflow* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    return WorkflowAnswer(
        *caller, orchestrator_->Get(req->id(), req->wait_ms(), ListedTenant(*caller)), resp);
  }

  Status ListWorkflows(ServerContext* ctx, const v1::ListWorkflowsRequest* req,
                       v1::ListWorkflowsResponse* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    const size_t limit = req->limit() > 0 ? static_cast<size_t>(req->limit()) : 100;
    for (json& wf : orchestrator_->List(limit, ListedTenant(*caller))) {
      if (auto st = WorkflowFromJson(WorkflowFor(*caller, std::move(wf)), resp->add_workflows());
          !st.ok()) {
        return Answer(st);
      }
    }
    return Status::OK;
  }

  Status CancelWorkflow(ServerContext* ctx, const v1::CancelWorkflowRequest* req,
                        v1::Workflow* resp) override {
    auto caller = Authenticate(*ctx);
    if (!caller.ok()) return Answer(caller.status());
    return WorkflowAnswer(*caller, orchestrator_->Cancel(req->id(), ListedTenant(*caller)), resp);
  }

 private:
  // A function as `caller` sees it (its own name in its own tenant).
  static json FunctionFor(const auth::Caller& caller, const Function& f, bool with_source,
                          const json& scaling) {
    json j = FunctionToJson(f, with_source);
    j["name"] = DisplayName(caller, f.name);
    if (scaling.contains(f.name)) j["scaling"] = scaling[f.name];
    return j;
  }

  static json WorkflowFor(const auth::Caller& caller, json wf) {
    if (wf.contains("function") && wf["function"].is_string()) {
      wf["function"] = DisplayName(caller, wf["function"].get<std::string>());
    }
    return wf;
  }

  static Status WorkflowAnswer(const auth::Caller& caller, absl::StatusOr<json> wf,
                               v1::Workflow* resp) {
    if (!wf.ok()) return Answer(wf.status());
    return Answer(WorkflowFromJson(WorkflowFor(caller, std::move(wf).value()), resp));
  }

  absl::StatusOr<auth::Caller> Authenticate(const ServerContext& ctx) {
    return gate_.RequireUser(gate_.FromGrpc(ctx));
  }

  FunctionRegistry* const functions_;
  Orchestrator* const orchestrator_;
  const auth::Gate gate_;
};

}  // namespace

std::unique_ptr<v1::FunctionService::Service> NewFunctionService(FunctionRegistry* functions,
                                                                 Orchestrator* orchestrator,
                                                                 auth::Gate gate) {
  return std::make_unique<FunctionServiceImpl>(functions, orchestrator, gate);
}

}  // namespace flotilla::manager
