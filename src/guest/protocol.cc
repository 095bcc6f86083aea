#include "guest/protocol.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace flotilla::guest {
namespace {

// Lists (argv, env, files) longer than this are rejected.
constexpr uint32_t kMaxListItems = 1u << 16;

// --- Encoding ---

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void U64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void Bool(bool v) { U8(v ? 1 : 0); }
  void Bytes(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Frame(MessageType type) { return EncodeFrame(type, out_); }

 private:
  std::string out_;
};

// --- Decoding: every read is bounds-checked; the first failure is sticky
// and names the field. ---

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool U8(const char* field, uint8_t* v) {
    if (!Need(field, 1)) return false;
    *v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool U32(const char* field, uint32_t* v) {
    if (!Need(field, 4)) return false;
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i)
      r |= static_cast<uint32_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 4;
    *v = r;
    return true;
  }
  bool U64(const char* field, uint64_t* v) {
    if (!Need(field, 8)) return false;
    uint64_t r = 0;
    for (int i = 0; i < 8; ++i)
      r |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    pos_ += 8;
    *v = r;
    return true;
  }
  bool I32(const char* field, int32_t* v) {
    uint32_t u;
    if (!U32(field, &u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool I64(const char* field, int64_t* v) {
    uint64_t u;
    if (!U64(field, &u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool Bool(const char* field, bool* v) {
    uint8_t u;
    if (!U8(field, &u)) return false;
    if (u > 1) return Fail(field, "is not 0 or 1");
    *v = u == 1;
    return true;
  }
  bool Bytes(const char* field, std::string* v) {
    uint32_t n;
    if (!U32(field, &n)) return false;
    if (!Need(field, n)) return false;
    v->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  // Reads a list count; each item takes at least `min_item` bytes, so a
  // count larger than the bytes left can allow is rejected before anything
  // is reserved for it.
  bool Count(const char* field, size_t min_item, uint32_t* n) {
    if (!U32(field, n)) return false;
    if (static_cast<uint64_t>(*n) * min_item > in_.size() - pos_) {
      return Fail(field, "has more items than the frame has bytes");
    }
    // Bounds the memory a frame full of empty items could make us allocate.
    if (*n > kMaxListItems) return Fail(field, "has too many items");
    return true;
  }
  template <typename E>
  bool Enum(const char* field, uint8_t max, E* v) {
    uint8_t u;
    if (!U8(field, &u)) return false;
    if (u > max) return Fail(field, "is out of range");
    *v = static_cast<E>(u);
    return true;
  }
  bool Fail(const char* field, const char* what) {
    if (error_.empty()) error_ = std::string("field `") + field + "` " + what;
    return false;
  }
  // Returns true if everything was read and nothing is left over.
  bool Finish(std::string* error) {
    if (error_.empty() && pos_ != in_.size()) {
      error_ = std::to_string(in_.size() - pos_) + " trailing bytes after the last field";
    }
    if (error_.empty()) return true;
    if (error != nullptr) *error = error_;
    return false;
  }

 private:
  bool Need(const char* field, size_t n) {
    if (!error_.empty()) return false;
    if (n > in_.size() - pos_) return Fail(field, "is truncated");
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
  std::string error_;
};

uint32_t LoadU32(const char* p) {
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return r;
}

bool KnownType(uint8_t t) {
  return t >= static_cast<uint8_t>(MessageType::kHello) &&
         t <= static_cast<uint8_t>(MessageType::kSeed);
}

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

std::string_view MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kHello:
      return "HELLO";
    case MessageType::kReady:
      return "READY";
    case MessageType::kRun:
      return "RUN";
    case MessageType::kOutput:
      return "OUTPUT";
    case MessageType::kExit:
      return "EXIT";
    case MessageType::kCancel:
      return "CANCEL";
    case MessageType::kReset:
      return "RESET";
    case MessageType::kShutdown:
      return "SHUTDOWN";
    case MessageType::kPing:
      return "PING";
    case MessageType::kPong:
      return "PONG";
    case MessageType::kError:
      return "ERROR";
    case MessageType::kPause:
      return "PAUSE";
    case MessageType::kPaused:
      return "PAUSED";
    case MessageType::kResume:
      return "RESUME";
    case MessageType::kSeed:
      return "SEED";
  }
  return "UNKNOWN";
}

std::string EncodeFrame(MessageType type, std::string_view payload) {
  std::string out;
  out.reserve(kFrameHeaderSize + payload.size());
  uint32_t n = static_cast<uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out.push_back(static_cast<char>(type));
  out.append(payload);
  return out;
}

std::string EncodeHello(const Hello& m) {
  Writer w;
  w.U32(m.version);
  w.Bytes(m.software);
  return w.Frame(MessageType::kHello);
}

std::string EncodeReady(const Ready& m) {
  Writer w;
  w.U64(m.tasks_run);
  w.Bool(m.python_server_warm);
  w.Bool(m.clean);
  w.Bytes(m.cleanup_error);
  return w.Frame(MessageType::kReady);
}

std::string EncodeRun(const RunRequest& m) {
  Writer w;
  w.Bytes(m.task_id);
  w.U32(static_cast<uint32_t>(m.argv.size()));
  for (const std::string& a : m.argv) w.Bytes(a);
  w.U32(static_cast<uint32_t>(m.env.size()));
  for (const auto& [key, value] : m.env) {
    w.Bytes(key);
    w.Bytes(value);
  }
  w.Bytes(m.working_dir);
  w.Bytes(m.stdin_data);
  w.U32(static_cast<uint32_t>(m.files.size()));
  for (const RunFile& f : m.files) {
    w.Bytes(f.path);
    w.Bytes(f.content);
    w.U32(f.mode);
  }
  w.U64(m.timeout_ms);
  w.U64(m.output_limit_bytes);
  w.U8(static_cast<uint8_t>(m.mode));
  return w.Frame(MessageType::kRun);
}

std::string EncodeOutput(const Output& m) {
  Writer w;
  w.U8(static_cast<uint8_t>(m.stream));
  w.U64(m.offset);
  w.Bytes(m.data);
  return w.Frame(MessageType::kOutput);
}

std::string EncodeExit(const Exit& m) {
  Writer w;
  w.U8(static_cast<uint8_t>(m.termination));
  w.I32(m.exit_code);
  w.I32(m.signal);
  w.I64(m.wall_us);
  w.I64(m.cpu_us);
  w.I64(m.peak_rss_bytes);
  w.Bool(m.stdout_truncated);
  w.Bool(m.stderr_truncated);
  w.I32(m.error_errno);
  w.Bytes(m.error);
  return w.Frame(MessageType::kExit);
}

std::string EncodeCancel(const Cancel& m) {
  Writer w;
  w.U32(m.grace_ms);
  return w.Frame(MessageType::kCancel);
}

std::string EncodePing(const Ping& m) {
  Writer w;
  w.U64(m.nonce);
  return w.Frame(MessageType::kPing);
}

std::string EncodePong(const Ping& m) {
  Writer w;
  w.U64(m.nonce);
  return w.Frame(MessageType::kPong);
}

std::string EncodeError(const Error& m) {
  Writer w;
  w.Bytes(m.message);
  return w.Frame(MessageType::kError);
}

std::string EncodeEmpty(MessageType type) { return EncodeFrame(type, {}); }

bool DecodeHello(std::string_view payload, Hello* out, std::string* error) {
  Reader r(payload);
  r.U32("version", &out->version);
  r.Bytes("software", &out->software);
  return r.Finish(error);
}

bool DecodeReady(std::string_view payload, Ready* out, std::string* error) {
  Reader r(payload);
  r.U64("tasks_run", &out->tasks_run);
  r.Bool("python_server_warm", &out->python_server_warm);
  r.Bool("clean", &out->clean);
  r.Bytes("cleanup_error", &out->cleanup_error);
  return r.Finish(error);
}

bool DecodeRun(std::string_view payload, RunRequest* out, std::string* error) {
  Reader r(payload);
  *out = RunRequest();
  r.Bytes("task_id", &out->task_id);
  uint32_t n = 0;
  if (r.Count("argv", 4, &n)) {
    out->argv.resize(n);
    for (std::string& a : out->argv) r.Bytes("argv", &a);
  }
  if (r.Count("env", 8, &n)) {
    out->env.resize(n);
    for (auto& [key, value] : out->env) {
      r.Bytes("env key", &key);
      r.Bytes("env value", &value);
    }
  }
  r.Bytes("working_dir", &out->working_dir);
  r.Bytes("stdin", &out->stdin_data);
  if (r.Count("files", 12, &n)) {
    out->files.resize(n);
    for (RunFile& f : out->files) {
      r.Bytes("file path", &f.path);
      r.Bytes("file content", &f.content);
      r.U32("file mode", &f.mode);
    }
  }
  r.U64("timeout_ms", &out->timeout_ms);
  r.U64("output_limit_bytes", &out->output_limit_bytes);
  r.Enum("mode", static_cast<uint8_t>(RunMode::kPythonForkServer), &out->mode);
  return r.Finish(error);
}

bool DecodeOutput(std::string_view payload, Output* out, std::string* error) {
  Reader r(payload);
  r.Enum("stream", static_cast<uint8_t>(OutputStream::kStderr), &out->stream);
  r.U64("offset", &out->offset);
  r.Bytes("data", &out->data);
  return r.Finish(error);
}

bool DecodeExit(std::string_view payload, Exit* out, std::string* error) {
  Reader r(payload);
  r.Enum("termination", static_cast<uint8_t>(Termination::kStartFailed), &out->termination);
  r.I32("exit_code", &out->exit_code);
  r.I32("signal", &out->signal);
  r.I64("wall_us", &out->wall_us);
  r.I64("cpu_us", &out->cpu_us);
  r.I64("peak_rss_bytes", &out->peak_rss_bytes);
  r.Bool("stdout_truncated", &out->stdout_truncated);
  r.Bool("stderr_truncated", &out->stderr_truncated);
  r.I32("error_errno", &out->error_errno);
  r.Bytes("error", &out->error);
  return r.Finish(error);
}

bool DecodeCancel(std::string_view payload, Cancel* out, std::string* error) {
  Reader r(payload);
  r.U32("grace_ms", &out->grace_ms);
  return r.Finish(error);
}

bool DecodePing(std::string_view payload, Ping* out, std::string* error) {
  Reader r(payload);
  r.U64("nonce", &out->nonce);
  return r.Finish(error);
}

bool DecodeError(std::string_view payload, Error* out, std::string* error) {
  Reader r(payload);
  r.Bytes("message", &out->message);
  return r.Finish(error);
}

std::string EncodePaused(const Paused& m) {
  Writer w;
  w.Bool(m.running);
  w.Bytes(m.task_id);
  w.U64(m.stdout_sent);
  w.U64(m.stderr_sent);
  return w.Frame(MessageType::kPaused);
}

bool DecodePaused(std::string_view payload, Paused* out, std::string* error) {
  Reader r(payload);
  r.Bool("running", &out->running);
  r.Bytes("task_id", &out->task_id);
  r.U64("stdout_sent", &out->stdout_sent);
  r.U64("stderr_sent", &out->stderr_sent);
  return r.Finish(error);
}

std::string EncodeSeed(const Seed& m) {
  Writer w;
  w.I64(m.realtime_ns);
  w.Bytes(m.entropy);
  return w.Frame(MessageType::kSeed);
}

bool DecodeSeed(std::string_view payload, Seed* out, std::string* error) {
  Reader r(payload);
  r.I64("realtime_ns", &out->realtime_ns);
  r.Bytes("entropy", &out->entropy);
  if (!r.Finish(error)) return false;
  if (out->entropy.size() > kMaxSeedEntropy) {
    *error = "entropy: " + std::to_string(out->entropy.size()) + " bytes, more than " +
             std::to_string(kMaxSeedEntropy);
    return false;
  }
  return true;
}

bool DecodeEmpty(std::string_view payload, std::string* error) {
  Reader r(payload);
  return r.Finish(error);
}

bool CheckHello(const Hello& peer, std::string_view peer_role, std::string* error) {
  if (peer.version == kProtocolVersion) return true;
  char buf[256];
  snprintf(buf, sizeof(buf),
           "guest protocol version mismatch: the %.*s speaks version %u, this side speaks %u; "
           "install the agent and flotilla-guest from the same release",
           static_cast<int>(peer_role.size()), peer_role.data(), peer.version, kProtocolVersion);
  *error = buf;
  return false;
}

ssize_t FrameReader::ReadFrom(int fd) {
  char buf[64 * 1024];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n > 0) Append(buf, static_cast<size_t>(n));
  return n;
}

FrameReader::Result FrameReader::Next(Frame* frame, std::string* error) {
  if (!error_.empty()) {
    *error = error_;
    return Result::kError;
  }
  size_t avail = buffer_.size() - consumed_;
  if (avail < kFrameHeaderSize) return Result::kNeedMore;
  const char* head = buffer_.data() + consumed_;
  uint32_t length = LoadU32(head);
  uint8_t type = static_cast<uint8_t>(head[4]);
  if (!KnownType(type)) {
    error_ = "frame of unknown type " + std::to_string(type);
  } else if (length > max_payload_) {
    error_ = "frame of " + std::to_string(length) + " bytes is over the limit of " +
             std::to_string(max_payload_);
  }
  if (!error_.empty()) {
    *error = error_;
    return Result::kError;
  }
  if (avail - kFrameHeaderSize < length) return Result::kNeedMore;
  frame->type = static_cast<MessageType>(type);
  frame->payload.assign(head + kFrameHeaderSize, length);
  consumed_ += kFrameHeaderSize + length;
  // Compact once the consumed prefix dominates, so the buffer does not grow
  // without bound on a long stream of frames.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 64 * 1024 && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  return Result::kFrame;
}

bool WriteFully(int fd, std::string_view data, int timeout_ms, std::string* error) {
  int64_t deadline = timeout_ms < 0 ? -1 : NowMs() + timeout_ms;
  bool socket = true;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = socket ? send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL)
                       : write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == ENOTSOCK && socket) {
      socket = false;  // virtio-serial is a character device
      continue;
    }
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      *error = std::string("write to the peer: ") + strerror(errno);
      return false;
    }
    int wait_ms = -1;
    if (deadline >= 0) {
      int64_t left = deadline - NowMs();
      if (left <= 0) {
        *error = "write to the peer: timed out (the peer stopped reading)";
        return false;
      }
      wait_ms = static_cast<int>(left);
    }
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, wait_ms) < 0 && errno != EINTR) {
      *error = std::string("poll: ") + strerror(errno);
      return false;
    }
  }
  return true;
}

}  // namespace flotilla::guest
