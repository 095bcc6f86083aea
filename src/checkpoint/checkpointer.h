// Checkpointer: saves the whole process tree of a running Linux sandbox
// container (flotilla-guest as its init, the task below it, all in the
// container's pid, mount, ipc, uts, net and cgroup namespaces) into an image
// directory, and restores such an image into a new container on this or
// another agent.
//
// Contract:
// - Checkpoint does not kill the source on failure: CRIU resumes every task
//   it seized, and AfterCheckpoint::kKill only applies to a dump that
//   succeeded. The one exception is not CRIU's to avoid: a CRIU killed (at
//   its deadline, or cancelled) while the task runs one of its injected
//   system calls leaves the task to die of the injected breakpoint. That is
//   detected and reported as DataLoss (see Checkpoint), never as a source
//   that carries on.
// - The image directory is self-contained (CRIU's images, the container's
//   root skeleton and a manifest of what lies outside it), so it can be
//   copied to another agent byte for byte and restored there.
// - What a sandbox holds from outside its namespaces is named to CRIU
//   explicitly: the read-only host binds (as external mounts), the guest's
//   channel to the agent (an external unix socket that Restore replaces with
//   a fresh socketpair), the net namespace the channel lives in, and the
//   host /dev/null on the init's stdio. Anything else outside is reported as
//   an unsupported resource, quoting CRIU's log.
// - The sandbox must have been started with LaunchCheckpointable (channel.h):
//   its channel must live in the container's own net namespace, or CRIU
//   cannot see it.
//
// Thread-safety: a Checkpointer may be used from several threads at once
// for different containers; one container must not be checkpointed twice at
// the same time.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "checkpoint/criu_process.h"
#include "checkpoint/externals.h"
#include "common/unique_fd.h"
#include "sandbox/linux/container.h"

namespace flotilla::checkpoint {

// What happens to the source once its image is complete.
enum class AfterCheckpoint {
  kLeaveRunning,  // it carries on (a snapshot, or the first half of a migration)
  kKill,          // CRIU kills it after a successful dump
};

struct CheckpointRequest {
  pid_t init_pid = 0;     // the container's init in the caller's pid namespace
  std::string id;         // for messages
  int channel_fd = 3;     // the init's fd number of its channel to the agent
  std::string image_dir;  // created (must not exist, or be empty)
  AfterCheckpoint after = AfterCheckpoint::kLeaveRunning;
};

struct CheckpointImage {
  std::string dir;
  int64_t bytes = 0;  // the whole directory: what a migration ships
  std::chrono::microseconds took{0};
};

struct RestoreRequest {
  // Hostile input until proven otherwise: the caller verifies its MAC
  // (image_auth.h) first; Restore then checks the manifest against
  // `manifest_policy` and the root archive (tar_check.h) before using them.
  std::string image_dir;
  std::string id;                // the new container's id ([A-Za-z0-9._-]+)
  sandbox::HostLayout layout;    // detected (DetectHostLayout) on this agent
  sandbox::CgroupLimits limits;  // of the new container's cgroups
  ManifestPolicy manifest_policy = DefaultManifestPolicy();
};

struct RestoredSandbox {
  std::unique_ptr<sandbox::Container> container;
  UniqueFd channel;  // the agent's end of the restored guest's channel
  std::chrono::microseconds took{0};
};

class Checkpointer {
 public:
  virtual ~Checkpointer() = default;

  // Returns the image, or: FailedPrecondition when the tool cannot run here,
  // Unimplemented for a resource that cannot be checkpointed (the message
  // quotes the tool's log line), DeadlineExceeded when the tool hung and was
  // killed, another error for the failed step. On any of those the source
  // keeps running (released from the tool's ptrace and stop, see
  // criu_checkpointer.cc). DataLoss when the tool was killed (deadline or
  // cancel) and a process of the source died with it: the message names it
  // and how it ended ("its init (pid 7) was killed by signal 5 (SIGTRAP)");
  // the caller must report the source's task as failed. On every error the
  // image directory is removed.
  virtual absl::StatusOr<CheckpointImage> Checkpoint(const CheckpointRequest& request) = 0;

  // Starts the image as a new container, a child of the calling process,
  // running where the checkpoint left it. On error nothing is left behind
  // (no process, cgroup, mount or directory).
  virtual absl::StatusOr<RestoredSandbox> Restore(const RestoreRequest& request) = 0;
};

struct CriuOptions {
  std::string criu_path = "/usr/local/sbin/criu";  // scripts/build-criu puts it there
  // For CRIU's kernel-feature cache between runs (see criu_checkpointer.cc).
  // Not under /run: the probe runs with a private tmpfs on /run and copies
  // its result here, which must be the host's directory.
  std::string state_dir = "/var/lib/flotilla/criu";
  // How long each CRIU and tar run may take before it is killed.
  CriuDeadlines deadlines;
  // Run CRIU with kNoBreakpointsEnv (criu_process.h): where the probe found
  // that dumps hang with hardware breakpoints and work without.
  bool no_breakpoints = false;
};

// Returns OK if `criu_path` runs and passes `criu check` within
// `deadline`; otherwise FailedPrecondition saying what to install, or
// DeadlineExceeded. Passing `criu check` does not prove that a dump works:
// see probe.h.
absl::Status CriuAvailable(const std::string& criu_path,
                           std::chrono::milliseconds deadline = CriuDeadlines{}.check);

std::unique_ptr<Checkpointer> NewCriuCheckpointer(CriuOptions options);

}  // namespace flotilla::checkpoint
