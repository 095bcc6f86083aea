#include "sandbox/guest_client.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"

namespace flotilla::sandbox {
namespace {

using Clock = std::chrono::steady_clock;

// Poll wakeup when the cancel token has no eventfd (it could not be made).
constexpr auto kCancelPollInterval = std::chrono::milliseconds(50);
constexpr auto kSendTimeout = std::chrono::seconds(10);

int PollTimeoutMs(Clock::time_point now, Clock::time_point until) {
  if (until <= now) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

int MsUntil(Clock::time_point deadline) { return PollTimeoutMs(Clock::now(), deadline); }

Termination FromWire(guest::Termination t) {
  switch (t) {
    case guest::Termination::kExited:
      return Termination::kExited;
    case guest::Termination::kSignaled:
      return Termination::kSignaled;
    case guest::Termination::kTimedOut:
      return Termination::kTimedOut;
    case guest::Termination::kCancelled:
      return Termination::kCancelled;
    case guest::Termination::kStartFailed:
      break;
  }
  return Termination::kExited;
}

guest::RunRequest ToWire(const TaskSpec& spec, guest::RunMode mode) {
  guest::RunRequest run;
  run.task_id = spec.id;
  run.argv = spec.argv;
  run.env.assign(spec.env.begin(), spec.env.end());
  run.stdin_data = spec.stdin_data;
  for (const TaskFile& f : spec.files) run.files.push_back({f.path, f.content, f.mode});
  run.timeout_ms = static_cast<uint64_t>(spec.timeout.count());
  run.output_limit_bytes = spec.output_limit_bytes;
  run.mode = mode;
  return run;
}

}  // namespace

GuestClient::GuestClient(int fd, GuestClientOptions options)
    : options_(std::move(options)), fd_(fd) {
  int flags = fcntl(fd_, F_GETFL);
  if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) {
    healthy_ = false;
    spdlog::warn("guest channel fd {}: fcntl O_NONBLOCK: {}", fd_, std::strerror(errno));
  }
  if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    // Without it Pause cannot reach the Run loop; it then says so.
    wake_[0] = wake_[1] = -1;
  }
}

GuestClient::~GuestClient() {
  if (fd_ >= 0) close(fd_);
  if (wake_[0] >= 0) close(wake_[0]);
  if (wake_[1] >= 0) close(wake_[1]);
}

absl::StatusOr<PausePoint> GuestClient::Pause(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(control_mu_);
  if (wake_[1] < 0) return absl::InternalError("the guest client has no wakeup pipe");
  if (!in_run_) return absl::FailedPreconditionError("no task is running in this sandbox");
  if (paused_) return pause_point_;
  const uint64_t round = pause_round_;
  pause_wanted_ = true;
  resume_wanted_ = false;
  (void)!write(wake_[1], "p", 1);
  const bool answered = control_cv_.wait_for(
      lock, timeout, [&] { return pause_round_ != round || !in_run_; });
  if (pause_round_ != round && paused_) return pause_point_;
  pause_wanted_ = false;
  if (!answered) {
    // The PAUSE may still reach the guest: have it carry on either way.
    resume_wanted_ = true;
    (void)!write(wake_[1], "r", 1);
    return absl::DeadlineExceededError(absl::StrCat(
        "the guest did not pause within ", timeout.count(), " ms; the task carries on"));
  }
  return absl::FailedPreconditionError("the task ended before it could be paused");
}

void GuestClient::Resume() {
  std::lock_guard<std::mutex> lock(control_mu_);
  if (!in_run_ || wake_[1] < 0) return;
  pause_wanted_ = false;
  resume_wanted_ = true;
  (void)!write(wake_[1], "r", 1);
}

absl::Status GuestClient::Broken(absl::Status status) {
  if (healthy_) spdlog::warn("guest channel broken: {}", status.ToString());
  healthy_ = false;
  return status;
}

absl::Status GuestClient::Unexpected(const guest::Frame& frame, const char* during) {
  if (frame.type == guest::MessageType::kError) {
    guest::Error error;
    std::string why;
    std::string text = guest::DecodeError(frame.payload, &error, &why) ? error.message : why;
    return Broken(absl::InternalError(
        absl::StrCat("the guest reported a protocol error: ", text, "; destroy the sandbox")));
  }
  return Broken(absl::DataLossError(absl::StrCat("guest protocol violation: unexpected ",
                                                 std::string(guest::MessageTypeName(frame.type)),
                                                 " ", during, "; destroy the sandbox")));
}

absl::Status GuestClient::Send(const std::string& frame, Clock::time_point deadline) {
  std::string error;
  if (guest::WriteFully(fd_, frame, MsUntil(deadline), &error)) return absl::OkStatus();
  return Broken(absl::UnavailableError(absl::StrCat("guest channel: ", error)));
}

absl::StatusOr<guest::Frame> GuestClient::ReadFrame(Clock::time_point deadline,
                                                    const char* waiting_for) {
  while (true) {
    guest::Frame frame;
    std::string error;
    guest::FrameReader::Result r = reader_.Next(&frame, &error);
    if (r == guest::FrameReader::Result::kFrame) return frame;
    if (r == guest::FrameReader::Result::kError) {
      return Broken(absl::DataLossError(absl::StrCat("guest protocol violation: ", error)));
    }
    Clock::time_point now = Clock::now();
    if (now >= deadline) {
      return Broken(absl::DeadlineExceededError(
          absl::StrCat("the guest did not send ", waiting_for, " in time; destroy the sandbox")));
    }
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, PollTimeoutMs(now, deadline));
    if (rc < 0 && errno != EINTR) return Broken(ErrnoError(errno, "poll", "guest channel"));
    if (rc <= 0) continue;
    ssize_t n = reader_.ReadFrom(fd_);
    if (n == 0) {
      return Broken(absl::UnavailableError(
          absl::StrCat("the guest closed its channel while the agent waited for ", waiting_for)));
    }
    if (n < 0 && errno != EINTR && errno != EAGAIN) {
      return Broken(ErrnoError(errno, "read", "guest channel"));
    }
  }
}

absl::Status GuestClient::OnReady(const guest::Frame& frame) {
  guest::Ready ready;
  std::string error;
  if (!guest::DecodeReady(frame.payload, &ready, &error)) {
    return Broken(absl::DataLossError(absl::StrCat("guest sent a bad READY: ", error)));
  }
  last_ready_ = std::move(ready);
  ready_ = true;
  if (!last_ready_.clean) {
    return Broken(absl::FailedPreconditionError(
        absl::StrCat("the guest could not clean its working directory: ", last_ready_.cleanup_error,
                     "; destroy the sandbox")));
  }
  return absl::OkStatus();
}

absl::Status GuestClient::AwaitReady(Clock::time_point deadline) {
  while (!ready_) {
    ASSIGN_OR_RETURN(guest::Frame frame, ReadFrame(deadline, "READY"));
    // A PAUSED here answers a PAUSE that crossed the end of the last task.
    if (frame.type == guest::MessageType::kPong || frame.type == guest::MessageType::kPaused) {
      continue;
    }
    if (frame.type != guest::MessageType::kReady)
      return Unexpected(frame, "while waiting for READY");
    RETURN_IF_ERROR(OnReady(frame));
  }
  return absl::OkStatus();
}

absl::Status GuestClient::Handshake(std::chrono::milliseconds timeout) {
  if (!healthy_) return absl::FailedPreconditionError("the guest channel is broken");
  if (handshaken_) return absl::OkStatus();
  Clock::time_point deadline = Clock::now() + timeout;
  RETURN_IF_ERROR(Send(guest::EncodeHello({guest::kProtocolVersion, "flotilla-agent"}), deadline));
  ASSIGN_OR_RETURN(guest::Frame frame, ReadFrame(deadline, "HELLO"));
  if (frame.type != guest::MessageType::kHello) return Unexpected(frame, "instead of HELLO");
  guest::Hello hello;
  std::string error;
  if (!guest::DecodeHello(frame.payload, &hello, &error)) {
    return Broken(absl::DataLossError(absl::StrCat("guest sent a bad HELLO: ", error)));
  }
  if (!guest::CheckHello(hello, "guest", &error)) {
    return Broken(absl::FailedPreconditionError(error));
  }
  handshaken_ = true;
  spdlog::debug("guest says hello: {} (protocol {})", hello.software, hello.version);
  return AwaitReady(deadline);
}

absl::StatusOr<TaskOutcome> GuestClient::Run(const TaskSpec& spec, Mode mode, OutputSink& sink,
                                             const CancelToken& cancel) {
  if (!healthy_) {
    return absl::FailedPreconditionError(
        "the guest channel is broken; destroy the sandbox and take another");
  }
  if (!handshaken_) return absl::FailedPreconditionError("GuestClient::Run before Handshake");
  if (spec.argv.empty()) return absl::InvalidArgumentError("task has an empty argv");
  if (spec.timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("task timeout must be positive, got ", spec.timeout.count(), " ms"));
  }
  if (cancel.cancelled()) {
    TaskOutcome outcome;
    outcome.termination = Termination::kCancelled;
    return outcome;
  }
  std::string run_frame = guest::EncodeRun(ToWire(spec, mode));
  if (run_frame.size() - guest::kFrameHeaderSize > guest::kMaxFramePayload) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", spec.id, " is too large for the guest: ", run_frame.size(),
                     " bytes of argv, env, stdin and files; the limit is ",
                     guest::kMaxFramePayload >> 20, " MiB"));
  }
  RETURN_IF_ERROR(AwaitReady(Clock::now() + options_.ready_timeout));
  RETURN_IF_ERROR(Send(run_frame, Clock::now() + kSendTimeout));
  ready_ = false;

  return StreamTask(spec, sink, cancel, TaskOutcome());
}

absl::StatusOr<TaskOutcome> GuestClient::ResumeRestored(const TaskSpec& spec,
                                                        const PausePoint& point, OutputSink& sink,
                                                        const CancelToken& cancel) {
  if (!healthy_) return absl::FailedPreconditionError("the guest channel is broken");
  if (point.stdout_data.size() > spec.output_limit_bytes ||
      point.stderr_data.size() > spec.output_limit_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "task ", spec.id, ": the pause point holds more output than its limit of ",
        spec.output_limit_bytes, " bytes"));
  }
  // The restored guest spoke HELLO to the agent it started with; it is
  // paused in the middle of the task and resumes on this channel.
  handshaken_ = true;
  ready_ = false;
  RETURN_IF_ERROR(
      Send(guest::EncodeEmpty(guest::MessageType::kResume), Clock::now() + kSendTimeout));
  TaskOutcome outcome;
  outcome.stdout_data = point.stdout_data;
  outcome.stderr_data = point.stderr_data;
  return StreamTask(spec, sink, cancel, std::move(outcome));
}

absl::StatusOr<TaskOutcome> GuestClient::StreamTask(const TaskSpec& spec, OutputSink& sink,
                                                const CancelToken& cancel, TaskOutcome outcome) {
  {
    std::lock_guard<std::mutex> lock(control_mu_);
    in_run_ = true;
    paused_ = false;
    pause_wanted_ = resume_wanted_ = false;
  }
  struct EndRun {
    GuestClient* c;
    ~EndRun() {
      std::lock_guard<std::mutex> lock(c->control_mu_);
      c->in_run_ = false;
      c->paused_ = false;
      c->control_cv_.notify_all();
    }
  } end_run{this};
  Clock::time_point deadline = Clock::now() + spec.timeout + options_.guest_grace;
  bool cancel_sent = false;
  bool pause_sent = false;
  bool paused = false;
  Clock::time_point paused_since{};
  uint64_t received[2] = {outcome.stdout_data.size(), outcome.stderr_data.size()};
  while (true) {
    // Frames already buffered first: one read may carry many.
    guest::Frame frame;
    std::string error;
    guest::FrameReader::Result r;
    while ((r = reader_.Next(&frame, &error)) == guest::FrameReader::Result::kFrame) {
      switch (frame.type) {
        case guest::MessageType::kPaused: {
          guest::Paused p;
          if (!guest::DecodePaused(frame.payload, &p, &error)) {
            return Broken(absl::DataLossError(absl::StrCat("guest sent a bad PAUSED: ", error)));
          }
          // Frames are ordered: every OUTPUT before the PAUSED is consumed,
          // so the guest's count must be exactly what arrived.
          if (!pause_sent || !p.running || p.task_id != spec.id || p.stdout_sent != received[0] ||
              p.stderr_sent != received[1]) {
            return Broken(absl::DataLossError(absl::StrCat(
                "guest protocol violation: PAUSED for '", p.task_id, "' at ", p.stdout_sent, "/",
                p.stderr_sent, " bytes; the agent has ", received[0], "/", received[1],
                " of task ", spec.id, "; destroy the sandbox")));
          }
          paused = true;
          paused_since = Clock::now();
          std::lock_guard<std::mutex> lock(control_mu_);
          paused_ = true;
          ++pause_round_;
          pause_point_ = {spec.id, outcome.stdout_data, outcome.stderr_data};
          control_cv_.notify_all();
          break;
        }
        case guest::MessageType::kOutput: {
          guest::Output out;
          if (!guest::DecodeOutput(frame.payload, &out, &error)) {
            return Broken(absl::DataLossError(absl::StrCat("guest sent a bad OUTPUT: ", error)));
          }
          int i = out.stream == guest::OutputStream::kStdout ? 0 : 1;
          // The guest cannot send more than the limit, nor skip or repeat bytes.
          if (out.offset != received[i] || out.data.empty() ||
              out.data.size() > spec.output_limit_bytes -
                                    std::min<uint64_t>(received[i], spec.output_limit_bytes)) {
            return Broken(absl::DataLossError(absl::StrCat(
                "guest protocol violation: OUTPUT at offset ", out.offset, " of ", out.data.size(),
                " bytes; expected offset ", received[i], " within the limit of ",
                spec.output_limit_bytes, "; destroy the sandbox")));
          }
          received[i] += out.data.size();
          Stream stream = i == 0 ? Stream::kStdout : Stream::kStderr;
          (i == 0 ? outcome.stdout_data : outcome.stderr_data).append(out.data);
          sink.OnOutput(stream, static_cast<int64_t>(out.offset), out.data);
          break;
        }
        case guest::MessageType::kExit: {
          guest::Exit exit;
          if (!guest::DecodeExit(frame.payload, &exit, &error)) {
            return Broken(absl::DataLossError(absl::StrCat("guest sent a bad EXIT: ", error)));
          }
          if (exit.termination == guest::Termination::kStartFailed) {
            std::string message = absl::StrCat("task ", spec.id, ": ", exit.error);
            if (exit.error_errno > 0) return absl::ErrnoToStatus(exit.error_errno, message);
            return absl::FailedPreconditionError(message);
          }
          outcome.termination = FromWire(exit.termination);
          outcome.exit_code = exit.exit_code;
          outcome.signal = exit.signal;
          outcome.stdout_truncated = exit.stdout_truncated;
          outcome.stderr_truncated = exit.stderr_truncated;
          outcome.wall_time_us = std::max<int64_t>(exit.wall_us, 0);
          outcome.cpu_time_us = std::max<int64_t>(exit.cpu_us, 0);
          outcome.peak_memory_bytes = std::max<int64_t>(exit.peak_rss_bytes, 0);
          spdlog::debug("task {} ended in the guest: termination={} exit_code={} signal={}",
                        spec.id, static_cast<int>(outcome.termination), outcome.exit_code,
                        outcome.signal);
          return outcome;
        }
        case guest::MessageType::kPong:
          break;
        default:
          return Unexpected(frame, "while a task runs");
      }
    }
    if (r == guest::FrameReader::Result::kError) {
      return Broken(absl::DataLossError(absl::StrCat("guest protocol violation: ", error)));
    }

    {
      bool send_pause = false, send_resume = false;
      {
        std::lock_guard<std::mutex> lock(control_mu_);
        if (pause_wanted_ && !pause_sent) {
          send_pause = true;
          pause_wanted_ = false;
        }
        if (resume_wanted_) {
          send_resume = pause_sent;
          resume_wanted_ = false;
          paused_ = false;
        }
      }
      if (send_pause) {
        RETURN_IF_ERROR(
            Send(guest::EncodeEmpty(guest::MessageType::kPause), Clock::now() + kSendTimeout));
        pause_sent = true;
      }
      if (send_resume) {
        RETURN_IF_ERROR(
            Send(guest::EncodeEmpty(guest::MessageType::kResume), Clock::now() + kSendTimeout));
        // The guest moves its deadlines by the pause; so does the agent.
        if (paused) deadline += Clock::now() - paused_since;
        pause_sent = paused = false;
      }
    }
    if (!cancel_sent && cancel.cancelled()) {
      RETURN_IF_ERROR(Send(guest::EncodeCancel({static_cast<uint32_t>(
                               std::clamp<int64_t>(options_.cancel_grace.count(), 0, UINT32_MAX))}),
                           Clock::now() + kSendTimeout));
      cancel_sent = true;
      spdlog::debug("task {}: CANCEL sent to the guest", spec.id);
      deadline = std::max(deadline, Clock::now() + options_.cancel_grace + options_.guest_grace);
    }
    Clock::time_point now = Clock::now();
    if (paused) deadline = std::max(deadline, now + spec.timeout + options_.guest_grace);
    if (now >= deadline) {
      return Broken(absl::DeadlineExceededError(
          absl::StrCat("the guest did not report the end of task ", spec.id, " within its ",
                       spec.timeout.count(), " ms timeout plus ", options_.guest_grace.count(),
                       " ms; destroy the sandbox")));
    }
    Clock::time_point until = deadline;
    pollfd fds[3] = {{fd_, POLLIN, 0}, {-1, 0, 0}, {wake_[0], POLLIN, 0}};
    if (!cancel_sent) {
      if (cancel.fd() >= 0) {
        fds[1] = {cancel.fd(), POLLIN, 0};
      } else {
        until = std::min(until, now + kCancelPollInterval);
      }
    }
    int rc = poll(fds, 3, PollTimeoutMs(now, until));
    if (rc < 0 && errno != EINTR) return Broken(ErrnoError(errno, "poll", "guest channel"));
    if (rc > 0 && fds[2].revents != 0) {
      char drain[64];
      while (read(wake_[0], drain, sizeof(drain)) > 0) {
      }
    }
    if (rc > 0 && fds[0].revents != 0) {
      ssize_t n = reader_.ReadFrom(fd_);
      if (n == 0) {
        return Broken(absl::UnavailableError(absl::StrCat(
            "the guest closed its channel during task ", spec.id, "; destroy the sandbox")));
      }
      if (n < 0 && errno != EINTR && errno != EAGAIN) {
        return Broken(ErrnoError(errno, "read", "guest channel"));
      }
    }
  }
}

absl::Status GuestClient::Reset(std::chrono::milliseconds timeout) {
  if (!healthy_) return absl::FailedPreconditionError("the guest channel is broken");
  Clock::time_point deadline = Clock::now() + timeout;
  RETURN_IF_ERROR(AwaitReady(deadline));
  RETURN_IF_ERROR(Send(guest::EncodeEmpty(guest::MessageType::kReset), deadline));
  ready_ = false;
  return AwaitReady(deadline);
}

absl::Status GuestClient::Seed(const guest::Seed& seed, std::chrono::milliseconds timeout) {
  if (!healthy_) return absl::FailedPreconditionError("the guest channel is broken");
  return Send(guest::EncodeSeed(seed), Clock::now() + timeout);
}

absl::Status GuestClient::Ping(std::chrono::milliseconds timeout) {
  if (!healthy_) return absl::FailedPreconditionError("the guest channel is broken");
  Clock::time_point deadline = Clock::now() + timeout;
  uint64_t nonce = next_nonce_++;
  RETURN_IF_ERROR(Send(guest::EncodePing({nonce}), deadline));
  while (true) {
    ASSIGN_OR_RETURN(guest::Frame frame, ReadFrame(deadline, "PONG"));
    if (frame.type == guest::MessageType::kReady && !ready_) {
      RETURN_IF_ERROR(OnReady(frame));
      continue;
    }
    if (frame.type != guest::MessageType::kPong) return Unexpected(frame, "while waiting for PONG");
    guest::Ping pong;
    std::string error;
    if (!guest::DecodePing(frame.payload, &pong, &error)) {
      return Broken(absl::DataLossError(absl::StrCat("guest sent a bad PONG: ", error)));
    }
    if (pong.nonce == nonce) return absl::OkStatus();
  }
}

absl::Status GuestClient::Shutdown() {
  if (!healthy_) return absl::OkStatus();
  absl::Status sent = Send(guest::EncodeEmpty(guest::MessageType::kShutdown),
                           Clock::now() + std::chrono::seconds(1));
  healthy_ = false;
  return sent;
}

}  // namespace flotilla::sandbox
