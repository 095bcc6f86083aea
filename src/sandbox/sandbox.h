// Sandbox: runs one task (a prepared argv) to completion under supervision —
// timeout, output capture with a size cap, exit status, CPU time and peak
// memory — and streams its output as it comes.
//
// The agent's logic only sees this interface, so isolated implementations
// (Linux namespaces + cgroups, micro-VMs) plug in without changing it.
// Implementations are thread-safe: Run may be called from many threads at
// once, each for its own task.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "model/model.h"
#include "monitor/usage.h"

namespace flotilla::sandbox {

struct TaskFile {
  std::string path;  // relative to the working directory, no ".."
  std::string content;
  uint32_t mode = 0644;
};

struct TaskSpec {
  std::string id;  // for logs: "<execution id>/<attempt>"
  std::vector<std::string> argv;  // argv[0] is looked up in PATH if it has no '/'
  std::map<std::string, std::string> env;  // the whole environment
  std::string stdin_data;
  std::vector<TaskFile> files;
  std::chrono::milliseconds timeout{60000};
  size_t output_limit_bytes = 1 << 20;  // per stream; the rest is dropped
  model::Resources limits;  // enforced where the implementation can
  // Which environment template to run in ("" = the sandbox's default), and
  // who runs it: a warm sandbox is reused only for the same tenant and function.
  std::string template_name;
  std::string tenant;
  std::string function;
  bool network_egress = false;  // granted by the node for this request
  // Run Python source through the template's fork-server (argv is then
  // {"python3", "main.py"} and main.py is among files).
  bool python = false;
};

enum class Stream { kStdout, kStderr };

// Receives output as it is read, from the thread that called Run.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  // offset is the position of data in its stream. Only bytes kept under the
  // output limit are delivered.
  virtual void OnOutput(Stream stream, int64_t offset, std::string_view data) = 0;
};

// A cancel request that Run observes promptly (it wakes Run's poll loop).
// Thread-safe. Cancel() before Run starts makes Run return at once.
class CancelToken {
 public:
  CancelToken();
  ~CancelToken();
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;

  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  int fd() const { return fd_; }  // an eventfd that becomes readable on Cancel

 private:
  std::atomic<bool> cancelled_{false};
  int fd_ = -1;
};

enum class Termination { kExited, kSignaled, kTimedOut, kCancelled };

struct TaskOutcome {
  Termination termination = Termination::kExited;
  int exit_code = 0;  // valid for kExited
  int signal = 0;     // the killing signal for kSignaled
  std::string stdout_data;
  std::string stderr_data;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  int64_t wall_time_us = 0;
  int64_t cpu_time_us = 0;  // user + system of the task and its reaped descendants
  int64_t peak_memory_bytes = 0;
};

// A running task's checkpoint (migration, `flotilla checkpoint`): the image
// directory that restores it, and the output its agent has already received,
// which a restored copy's outcome starts with.
struct TaskCheckpoint {
  std::string image_dir;
  int64_t image_bytes = 0;
  int64_t checkpoint_us = 0;
  std::string stdout_data;
  std::string stderr_data;
  int64_t memory_limit_bytes = 0;  // the limits in force, for the restored copy
  int64_t cpu_limit_millis = 0;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;

  // Runs `spec` and blocks until the task ends, times out or is cancelled.
  // An error status means the task could not be started (bad argv, missing
  // binary, a failed setup step), with a message that says which step
  // failed; everything the task does after it started is in TaskOutcome.
  virtual absl::StatusOr<TaskOutcome> Run(const TaskSpec& spec, OutputSink& sink,
                                          const CancelToken& cancel) = 0;

  // A short name of the isolation this sandbox gives ("process").
  virtual std::string_view kind() const = 0;

  // Live usage of the task `task_id` (TaskSpec::id) while its Run is in
  // progress; nullopt when it is not running or the sandbox cannot measure
  // it (the default). Thread-safe: called by the agent's sampler thread.
  virtual std::optional<monitor::UsageSample> Sample(const std::string& task_id) {
    (void)task_id;
    return std::nullopt;
  }

  // Changes the memory and cpu limits of the running task `task_id` in place
  // (adaptive allocation; fields of 0 stay as they are). Unimplemented where
  // the sandbox cannot (the default); NotFound when the task is not running.
  // Thread-safe, like Sample.
  virtual absl::Status Resize(const std::string& task_id, const model::Resources& limits) {
    (void)task_id;
    (void)limits;
    return absl::UnimplementedError("this sandbox cannot change a running task's limits");
  }

  // Checkpointing a running task, in two steps. Checkpoint holds the task
  // (its guest paused, the sandbox frozen once the image is complete) and
  // writes the image to `image_dir`; on error the task carries on untouched.
  // EndCheckpoint then either lets it carry on (moved = false) or kills it
  // because a restored copy took over (moved = true: its Run returns an
  // Aborted status and its result must be dropped). FailedPrecondition
  // (the default) where the sandbox cannot be checkpointed.
  virtual absl::StatusOr<TaskCheckpoint> Checkpoint(const std::string& task_id,
                                                    const std::string& image_dir) {
    (void)task_id;
    (void)image_dir;
    return absl::FailedPreconditionError(
        absl::StrCat("a '", std::string(kind()), "' sandbox cannot be checkpointed"));
  }
  virtual absl::Status EndCheckpoint(const std::string& task_id, bool moved) {
    (void)task_id;
    (void)moved;
    return absl::FailedPreconditionError("no checkpoint is in progress");
  }

  // Restores `from` (an image taken by Checkpoint, here or on another node)
  // and continues `spec` where it stood, blocking like Run. The restored
  // task is paused until `go` returns true (the manager has switched the
  // execution to this node) and is killed if it returns false.
  virtual absl::StatusOr<TaskOutcome> RunRestored(const TaskSpec& spec, const TaskCheckpoint& from,
                                                  const std::function<bool()>& go,
                                                  OutputSink& sink, const CancelToken& cancel) {
    (void)spec;
    (void)from;
    (void)go;
    (void)sink;
    (void)cancel;
    return absl::FailedPreconditionError(
        absl::StrCat("a '", std::string(kind()), "' sandbox cannot restore a checkpoint"));
  }
};

// Options of the unisolated process sandbox.
struct ProcessSandboxOptions {
  std::string work_root;  // a fresh directory per task is made under it, removed after
};

// A supervised child process with no isolation beyond its own session,
// process group and working directory: the trusted-development sandbox that
// Linux namespaces replace on untrusted nodes.
std::unique_ptr<Sandbox> NewProcessSandbox(ProcessSandboxOptions options);

}  // namespace flotilla::sandbox
