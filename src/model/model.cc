#include "model/model.h"

namespace flotilla::model {

namespace {
constexpr const char* kStateNames[] = {"queued",    "assigned",  "running",  "succeeded",
                                       "failed",    "timed_out", "cancelled"};
}  // namespace

const char* ToString(ExecutionState s) { return kStateNames[static_cast<int>(s)]; }

bool ParseExecutionState(const std::string& text, ExecutionState* out) {
  for (int i = 0; i < 7; ++i) {
    if (text == kStateNames[i]) {
      *out = static_cast<ExecutionState>(i);
      return true;
    }
  }
  return false;
}

const char* ToString(NodeStatus s) { return s == NodeStatus::kOnline ? "online" : "offline"; }

}  // namespace flotilla::model
