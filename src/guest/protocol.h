// The guest protocol: how the agent and flotilla-guest (the first process
// inside every sandbox) talk, over a unix socket now and virtio-serial for
// micro-VMs later. Plain C++20 and libc only, so the guest links -static.
//
// Framing: every message is one frame,
//     [u32 little-endian payload length][u8 type][payload]
// and a payload longer than the reader's limit is an error, not an
// allocation. Inside a payload, fields follow each other in a fixed order
// with a tiny encoding: integers little-endian and fixed width, strings as
// [u32 length][bytes], lists as [u32 count][items], maps as lists of key and
// value strings. A payload must be consumed exactly: trailing bytes are an
// error, so a frame from a newer peer is never half-understood.
//
// Conversation:
//     guest → HELLO, agent → HELLO (each side checks the other's version)
//     guest → READY                       parked, working directory clean
//     agent → RUN; guest → OUTPUT*, EXIT  one task
//     guest → READY                       after cleaning the working directory
//     agent → RESET; guest → READY        clean again, on demand
//     agent → CANCEL                      during a task: SIGTERM, then SIGKILL
//     agent → PING; guest → PONG          any time
//     agent → SHUTDOWN, or closes         guest kills everything and exits
//     either → ERROR                      fatal protocol error, then close
//   since version 2 (checkpoint and migration):
//     agent → PAUSE; guest → PAUSED       stop streaming, report what was sent
//     agent → RESUME                      carry on (the same or a new channel)
//   since version 3 (micro-VMs restored from a snapshot):
//     agent → SEED                        while idle: set the clock, add entropy
// PAUSE makes the guest stop at a frame boundary: it answers PAUSED with the
// bytes of each stream it has sent, then only reads its channel (no output,
// no EXIT, no reaping) until RESUME. A checkpoint taken while paused thus
// holds no half-sent frame, and a restored guest, handed a fresh channel,
// continues the stream exactly where the PAUSED frame said it stood.
//
// Decoding is fed untrusted bytes (a compromised guest can send anything to
// the agent): every Decode* and FrameReader::Next checks bounds, enum ranges
// and counts against the bytes left, and reports malformed input as an
// error string; none of them crash, allocate past the frame, or throw.
//
// Thread-safety: the functions are pure; a FrameReader is used by one
// thread at a time.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flotilla::guest {

// Bumped on every incompatible change of a frame's layout.
// Version 2 added PAUSE, PAUSED and RESUME; version 3 added SEED.
inline constexpr uint32_t kProtocolVersion = 3;
inline constexpr size_t kFrameHeaderSize = 5;
// The default and largest payload a reader accepts. RUN carries the task's
// files and stdin, so it is the frame that needs room.
inline constexpr size_t kMaxFramePayload = 64u << 20;
// Output is streamed in chunks of at most this many bytes, so the agent can
// read guest frames with a much smaller limit than kMaxFramePayload.
inline constexpr size_t kMaxOutputChunk = 64u << 10;
// Frames the guest sends stay under this (an OUTPUT chunk or an EXIT with
// its error text), so the agent reads guest frames with it as the limit.
inline constexpr size_t kMaxGuestFramePayload = kMaxOutputChunk + 4096;

enum class MessageType : uint8_t {
  kHello = 1,
  kReady = 2,
  kRun = 3,
  kOutput = 4,
  kExit = 5,
  kCancel = 6,
  kReset = 7,
  kShutdown = 8,
  kPing = 9,
  kPong = 10,
  kError = 11,
  kPause = 12,   // since version 2
  kPaused = 13,  // since version 2
  kResume = 14,  // since version 2
  kSeed = 15,    // since version 3
};
std::string_view MessageTypeName(MessageType type);

// How the guest starts the task.
enum class RunMode : uint8_t {
  // fork + exec of argv, argv[0] looked up in the task's PATH.
  kExec = 0,
  // argv is a python3 command line, `python3 -c CODE [ARGS]` or `python3
  // SCRIPT [ARGS]`, run by a fork of a warm interpreter (see guest_python.cc).
  kPythonForkServer = 1,
};

enum class OutputStream : uint8_t { kStdout = 0, kStderr = 1 };

enum class Termination : uint8_t {
  kExited = 0,
  kSignaled = 1,
  kTimedOut = 2,
  kCancelled = 3,
  kStartFailed = 4,  // nothing ran; error and error_errno say why
};

struct Hello {
  uint32_t version = kProtocolVersion;
  std::string software;  // "flotilla-guest 0.1.0", for logs
};

struct Ready {
  uint64_t tasks_run = 0;
  bool python_server_warm = false;
  // False when the working directory could not be cleaned; cleanup_error
  // says why, and the sandbox must not be reused.
  bool clean = true;
  std::string cleanup_error;
};

struct RunFile {
  std::string path;  // relative to the working directory; no "..", no leading '/'
  std::string content;
  uint32_t mode = 0644;
};

struct RunRequest {
  std::string task_id;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;  // the whole environment
  std::string working_dir;  // relative to the guest's working directory; "" is its root
  std::string stdin_data;
  std::vector<RunFile> files;
  uint64_t timeout_ms = 60000;
  uint64_t output_limit_bytes = 1 << 20;  // per stream
  RunMode mode = RunMode::kExec;
};

struct Output {
  OutputStream stream = OutputStream::kStdout;
  uint64_t offset = 0;  // position of data in its stream
  std::string data;
};

struct Exit {
  Termination termination = Termination::kExited;
  int32_t exit_code = 0;
  int32_t signal = 0;
  int64_t wall_us = 0;
  int64_t cpu_us = 0;
  int64_t peak_rss_bytes = 0;
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  int32_t error_errno = 0;  // for kStartFailed: the errno of the failed step, 0 if none
  std::string error;        // for kStartFailed: "exec `foo`: No such file or directory"
};

struct Cancel {
  uint32_t grace_ms = 2000;  // between SIGTERM and SIGKILL
};

struct Ping {
  uint64_t nonce = 0;
};

struct Error {
  std::string message;
};

// The guest's answer to PAUSE.
struct Paused {
  bool running = false;   // a task is in flight (false: the guest was idle)
  std::string task_id;    // the RUN's task id, when running
  uint64_t stdout_sent = 0;  // bytes of the stream sent in OUTPUT frames
  uint64_t stderr_sent = 0;
};

// Every VM restored from one snapshot wakes with the snapshot's clock and
// the same kernel random state; SEED gives each a fresh wall clock and
// entropy of its own before it runs anything.
struct Seed {
  int64_t realtime_ns = 0;  // CLOCK_REALTIME on the agent when sent
  std::string entropy;      // at most kMaxSeedEntropy bytes
};
inline constexpr size_t kMaxSeedEntropy = 512;

// A frame taken off the wire, payload not yet decoded.
struct Frame {
  MessageType type = MessageType::kError;
  std::string payload;
};

// Encoders return a whole frame: header and payload.
std::string EncodeFrame(MessageType type, std::string_view payload);
std::string EncodeHello(const Hello& m);
std::string EncodeReady(const Ready& m);
std::string EncodeRun(const RunRequest& m);
std::string EncodeOutput(const Output& m);
std::string EncodeExit(const Exit& m);
std::string EncodeCancel(const Cancel& m);
std::string EncodePing(const Ping& m);
std::string EncodePong(const Ping& m);
std::string EncodeError(const Error& m);
std::string EncodePaused(const Paused& m);
std::string EncodeSeed(const Seed& m);
std::string EncodeEmpty(MessageType type);  // RESET, SHUTDOWN, PAUSE, RESUME

// Decoders return true and fill *out if `payload` is a well-formed message
// of that type; otherwise false with *error saying what was wrong.
bool DecodeHello(std::string_view payload, Hello* out, std::string* error);
bool DecodeReady(std::string_view payload, Ready* out, std::string* error);
bool DecodeRun(std::string_view payload, RunRequest* out, std::string* error);
bool DecodeOutput(std::string_view payload, Output* out, std::string* error);
bool DecodeExit(std::string_view payload, Exit* out, std::string* error);
bool DecodeCancel(std::string_view payload, Cancel* out, std::string* error);
bool DecodePing(std::string_view payload, Ping* out, std::string* error);
bool DecodeError(std::string_view payload, Error* out, std::string* error);
bool DecodePaused(std::string_view payload, Paused* out, std::string* error);
bool DecodeSeed(std::string_view payload, Seed* out, std::string* error);
bool DecodeEmpty(std::string_view payload, std::string* error);

// Returns true if the peer's HELLO speaks our version; otherwise false with
// a message that names both versions and what to do.
bool CheckHello(const Hello& peer, std::string_view peer_role, std::string* error);

// Splits a byte stream into frames. Bytes are appended as they arrive (a
// partial frame stays buffered until the rest comes), so it serves both a
// blocking reader and a poll loop.
class FrameReader {
 public:
  explicit FrameReader(size_t max_payload = kMaxFramePayload) : max_payload_(max_payload) {}

  enum class Result { kFrame, kNeedMore, kError };

  void Append(const char* data, size_t size) { buffer_.append(data, size); }

  // Reads once from `fd` (one read(2)) and appends what came. Returns the
  // byte count, 0 at end of stream, or -1 with errno set (EAGAIN/EINTR
  // included).
  ssize_t ReadFrom(int fd);

  // Returns kFrame and fills *frame when a whole frame is buffered;
  // kNeedMore when more bytes are needed; kError (sticky) when the header
  // names an unknown type or a payload over the limit.
  Result Next(Frame* frame, std::string* error);

  // Bytes buffered but not yet returned as frames.
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  size_t max_payload_;
  std::string buffer_;
  size_t consumed_ = 0;
  std::string error_;
};

// Writes all of `data` to `fd`, waiting in poll for a non-blocking fd, with
// MSG_NOSIGNAL on sockets so a closed peer is EPIPE and not SIGPIPE.
// timeout_ms < 0 waits forever. Returns false with *error on failure or
// timeout.
bool WriteFully(int fd, std::string_view data, int timeout_ms, std::string* error);

}  // namespace flotilla::guest
