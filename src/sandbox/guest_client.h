// GuestClient: the agent's side of the guest protocol (guest/protocol.h),
// talking to one flotilla-guest inside one sandbox over the agent's end of
// its socket (a unix socketpair for containers, virtio-serial for
// micro-VMs).
//
// It owns the fd. Everything that comes from the guest is untrusted: frames
// are size-limited and bounds-checked, OUTPUT offsets and sizes must match
// what the task can have written under its limit, and every wait has a
// deadline. Any violation, a timeout or a closed connection makes the
// client unhealthy for good: the caller must then destroy the sandbox, not
// reuse it (healthy() says so, and every later call fails).
//
// Not thread-safe: one call at a time (the pool hands a sandbox to one
// runner). Only the CancelToken passed to Run, and Pause / Resume (which
// talk to the Run in flight through a wakeup pipe), are used from other
// threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "guest/protocol.h"
#include "sandbox/sandbox.h"

namespace flotilla::sandbox {

struct GuestClientOptions {
  // Between the CANCEL's SIGTERM and the guest's SIGKILL.
  std::chrono::milliseconds cancel_grace{2000};
  // How much longer than the task's timeout (and the cancel grace) the guest
  // may take to report EXIT before it is declared unresponsive.
  std::chrono::milliseconds guest_grace{5000};
  // How long the guest may take to clean its working directory and report
  // READY after a task or a RESET.
  std::chrono::milliseconds ready_timeout{30000};
};

// Where a paused task's streams stand: what a restored copy continues from.
struct PausePoint {
  std::string task_id;
  std::string stdout_data;  // everything received of each stream so far
  std::string stderr_data;
};

class GuestClient {
 public:
  using Mode = guest::RunMode;

  // Takes ownership of `fd`, the agent's end of the guest's channel.
  explicit GuestClient(int fd, GuestClientOptions options = {});
  ~GuestClient();
  GuestClient(const GuestClient&) = delete;
  GuestClient& operator=(const GuestClient&) = delete;

  // Exchanges HELLO (both sides check the protocol version) and waits for
  // the guest's first READY. Returns FailedPrecondition on a version
  // mismatch, DeadlineExceeded if the guest does not answer in `timeout`.
  absl::Status Handshake(std::chrono::milliseconds timeout);

  // Runs one task in the guest and blocks until it ends. Output is passed
  // to `sink` as the guest streams it (and kept in the outcome). A cancel
  // is forwarded to the guest (SIGTERM, then SIGKILL after cancel_grace).
  // Returns the task's outcome, or: an error from the guest if the task
  // could not start (NotFound for a missing binary, InvalidArgument for a
  // bad spec, ...; the guest stays usable); or, if the guest broke the
  // protocol, closed the channel or did not report within the task's
  // timeout plus the graces, an error after which healthy() is false.
  absl::StatusOr<TaskOutcome> Run(const TaskSpec& spec, Mode mode, OutputSink& sink,
                                  const CancelToken& cancel);

  // From another thread while Run is in flight: has the guest stop at a
  // frame boundary (PAUSE), waits until every frame it sent before is
  // consumed (PAUSED), and returns the streams so far. FailedPrecondition
  // when no task is in flight or it ended first, DeadlineExceeded (and the
  // task carries on) when the guest does not answer in `timeout`.
  absl::StatusOr<PausePoint> Pause(std::chrono::milliseconds timeout);
  // From another thread: lets a paused task carry on (RESUME).
  void Resume();

  // For a client on the channel of a restored guest that was paused at
  // `point`: sends RESUME and continues the task as Run would, streaming
  // output from the point on; the outcome carries the whole output.
  absl::StatusOr<TaskOutcome> ResumeRestored(const TaskSpec& spec, const PausePoint& point,
                                             OutputSink& sink, const CancelToken& cancel);

  // Has the guest kill anything left and clean its working directory.
  absl::Status Reset(std::chrono::milliseconds timeout);

  // While idle: sends SEED (the wall clock and entropy) to a guest restored
  // from a snapshot. No answer comes; frames are handled in order, so it
  // applies before the next RUN.
  absl::Status Seed(const guest::Seed& seed, std::chrono::milliseconds timeout);

  // Returns OK if the guest answers a PING within `timeout`.
  absl::Status Ping(std::chrono::milliseconds timeout);

  // Tells the guest to kill everything and exit; the client is unusable
  // afterwards. The caller still reaps or destroys the sandbox.
  absl::Status Shutdown();

  // False once the guest misbehaved, timed out, closed the channel, failed
  // to clean up, or was shut down: the sandbox must be destroyed.
  bool healthy() const { return healthy_; }

  // The guest's last READY (tasks run, whether the Python server is warm).
  const guest::Ready& last_ready() const { return last_ready_; }

 private:
  using Clock = std::chrono::steady_clock;

  absl::Status Send(const std::string& frame, Clock::time_point deadline);
  // Returns the next frame, waiting until `deadline`.
  absl::StatusOr<guest::Frame> ReadFrame(Clock::time_point deadline, const char* waiting_for);
  absl::Status AwaitReady(Clock::time_point deadline);
  absl::Status OnReady(const guest::Frame& frame);
  // Marks the client unhealthy and returns `status`.
  absl::Status Broken(absl::Status status);
  absl::Status Unexpected(const guest::Frame& frame, const char* during);
  // The loop of Run and ResumeRestored: frames of the task in flight until EXIT.
  absl::StatusOr<TaskOutcome> StreamTask(const TaskSpec& spec, OutputSink& sink,
                                         const CancelToken& cancel, TaskOutcome outcome);

  const GuestClientOptions options_;
  int fd_;
  guest::FrameReader reader_{guest::kMaxGuestFramePayload};
  bool healthy_ = true;
  bool handshaken_ = false;
  bool ready_ = false;
  guest::Ready last_ready_;
  uint64_t next_nonce_ = 1;

  // Pause / Resume from other threads; the Run loop polls wake_[0].
  int wake_[2] = {-1, -1};
  std::mutex control_mu_;
  std::condition_variable control_cv_;
  bool in_run_ = false;           // guarded by control_mu_
  bool pause_wanted_ = false;     // guarded by control_mu_
  bool resume_wanted_ = false;    // guarded by control_mu_
  bool paused_ = false;           // guarded by control_mu_
  uint64_t pause_round_ = 0;      // guarded by control_mu_; bumped on each PAUSED
  PausePoint pause_point_;        // guarded by control_mu_
};

}  // namespace flotilla::sandbox
