// The agent's record of one task and the sink of its live output; private
// to the agent's sources (agent.cc, agent_migration.cc).
#pragma once

#include <algorithm>
#include <mutex>
#include <string>
#include <string_view>

#include "agent/agent.h"

namespace flotilla::agent {

inline constexpr size_t kMaxChunk = 64 << 10;
inline constexpr size_t kMaxBufferedOutput = 8 << 20;

struct Agent::Task {
  std::string id;
  uint32_t attempt = 0;
  model::Resources resources;
  sandbox::CancelToken cancel;
  bool finished = false;  // its result is in results_
  // Adaptive allocation, guarded by mu_. resize_delta is what resizes added
  // to (or took from) the task's reservation, so reserved_ stays the sum of
  // what the node has handed out.
  model::Resources resize_delta;
  int64_t memory_floor = 0;  // the limits the sandbox started with
  int64_t cpu_floor = 0;
  int resizes = 0;
  int64_t last_resize_unix_ms = 0;
  int64_t last_change_mono_ms = 0;
  std::string last_resize;
  bool needs_migration = false;
  std::string pressure_reason;
  // Migration: the request as run (a restored copy is built from it), and
  // whether this copy moved to another node (its result is then dropped).
  v1::ExecutionRequest request;
  bool migrated = false;  // guarded by mu_
  // Checkpointed and held for a migration's verdict: cancels wait (a
  // superseded-attempt cancel during the switch must not end the copy that
  // a failed migration resumes); guarded by mu_.
  bool held = false;
  std::string moved_to;   // guarded by mu_
};

// Batches a task's output into the agent's live-output buffer.
class Agent::Sink final : public sandbox::OutputSink {
 public:
  Sink(Agent* agent, const Task& task) : agent_(agent), task_(task) {}
  void OnOutput(sandbox::Stream stream, int64_t offset, std::string_view data) override {
    std::lock_guard<std::mutex> lock(agent_->mu_);
    for (size_t pos = 0; pos < data.size(); pos += kMaxChunk) {
      if (agent_->chunk_bytes_ > kMaxBufferedOutput) return;  // live output is best effort
      size_t n = std::min(kMaxChunk, data.size() - pos);
      v1::OutputChunk c;
      c.set_execution_id(task_.id);
      c.set_attempt(task_.attempt);
      c.set_stream(stream == sandbox::Stream::kStdout ? v1::OUTPUT_STDOUT : v1::OUTPUT_STDERR);
      c.set_offset(offset + static_cast<int64_t>(pos));
      c.set_data(data.data() + pos, n);
      agent_->chunk_bytes_ += n;
      agent_->chunks_.push_back(std::move(c));
    }
  }

 private:
  Agent* agent_;
  const Task& task_;
};

}  // namespace flotilla::agent
