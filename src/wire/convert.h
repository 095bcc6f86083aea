// Conversions between the wire types (proto/flotilla/v1) and the plain model
// (model/model.h). Generated types stay at the edges: services and the store
// adapter convert here, the cores never see protobuf.
#pragma once

#include "flotilla/v1/types.pb.h"
#include "model/model.h"

namespace flotilla::wire {

namespace v1 = ::flotilla::v1;

model::Resources FromProto(const v1::Resources& r);
void ToProto(const model::Resources& r, v1::Resources* out);

model::HypervisorNode FromProto(const v1::HypervisorNode& n);
void ToProto(const model::HypervisorNode& n, v1::HypervisorNode* out);

// The scheduler's view of a request; `id` is the execution id.
model::ExecutionRequest FromProto(const v1::ExecutionRequest& r);

v1::ExecutionState ToProto(model::ExecutionState s);
model::ExecutionState FromProto(v1::ExecutionState s);

// "succeeded", "queued", ...: the short names the CLI prints.
const char* StateName(v1::ExecutionState s);

}  // namespace flotilla::wire
