#include <string>

#include "fuzz_targets.h"
#include "guest/protocol.h"

namespace flotilla::fuzz {
namespace {

using namespace ::flotilla::guest;

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// A decoded message must encode into a frame that decodes again.
template <typename T>
void RoundTrip(const T& m, std::string (*encode)(const T&),
               bool (*decode)(std::string_view, T*, std::string*)) {
  const std::string frame = encode(m);
  FrameReader reader;
  reader.Append(frame.data(), frame.size());
  Frame again;
  std::string error;
  Require(reader.Next(&again, &error) == FrameReader::Result::kFrame);
  T back;
  Require(decode(again.payload, &back, &error));
}

void DecodeOne(const Frame& f) {
  std::string error;
  switch (f.type) {
    case MessageType::kHello: {
      Hello m;
      if (DecodeHello(f.payload, &m, &error)) {
        RoundTrip(m, &EncodeHello, &DecodeHello);
        (void)CheckHello(m, "guest", &error);
      }
      break;
    }
    case MessageType::kReady: {
      Ready m;
      if (DecodeReady(f.payload, &m, &error)) RoundTrip(m, &EncodeReady, &DecodeReady);
      break;
    }
    case MessageType::kRun: {
      RunRequest m;
      if (DecodeRun(f.payload, &m, &error)) RoundTrip(m, &EncodeRun, &DecodeRun);
      break;
    }
    case MessageType::kOutput: {
      Output m;
      if (DecodeOutput(f.payload, &m, &error)) RoundTrip(m, &EncodeOutput, &DecodeOutput);
      break;
    }
    case MessageType::kExit: {
      Exit m;
      if (DecodeExit(f.payload, &m, &error)) RoundTrip(m, &EncodeExit, &DecodeExit);
      break;
    }
    case MessageType::kCancel: {
      Cancel m;
      if (DecodeCancel(f.payload, &m, &error)) RoundTrip(m, &EncodeCancel, &DecodeCancel);
      break;
    }
    case MessageType::kPing:
    case MessageType::kPong: {
      Ping m;
      if (DecodePing(f.payload, &m, &error)) RoundTrip(m, &EncodePing, &DecodePing);
      break;
    }
    case MessageType::kError: {
      Error m;
      if (DecodeError(f.payload, &m, &error)) RoundTrip(m, &EncodeError, &DecodeError);
      break;
    }
    case MessageType::kPaused: {
      Paused m;
      if (DecodePaused(f.payload, &m, &error)) RoundTrip(m, &EncodePaused, &DecodePaused);
      break;
    }
    case MessageType::kSeed: {
      Seed m;
      if (DecodeSeed(f.payload, &m, &error)) RoundTrip(m, &EncodeSeed, &DecodeSeed);
      break;
    }
    default:
      (void)DecodeEmpty(f.payload, &error);
  }
}

}  // namespace

int FuzzGuestProtocol(const uint8_t* data, size_t size) {
  // The first byte splits the rest into reads of different sizes, as a
  // socket would deliver them; the guest's frame limit keeps payloads small.
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 64;
  FrameReader reader(kMaxGuestFramePayload);
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size_t left = size - 1;
  while (true) {
    const size_t n = left < step ? left : step;
    reader.Append(bytes, n);
    bytes += n;
    left -= n;
    Frame frame;
    std::string error;
    FrameReader::Result r;
    while ((r = reader.Next(&frame, &error)) == FrameReader::Result::kFrame) DecodeOne(frame);
    if (r == FrameReader::Result::kError || left == 0) break;
  }
  return 0;
}

}  // namespace flotilla::fuzz
