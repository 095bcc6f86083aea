#include "guest/protocol.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::guest {
namespace {

using ::testing::HasSubstr;

RunRequest SampleRun() {
  RunRequest run;
  run.task_id = "exec-1/2";
  run.argv = {"sh", "-c", "echo hi", std::string("nul\0inside", 10)};
  run.env = {{"PATH", "/usr/bin:/bin"}, {"EMPTY", ""}};
  run.working_dir = "sub/dir";
  run.stdin_data = std::string(70000, 'x');
  run.files = {{"a.py", "print(1)\n", 0755}, {"d/b.txt", "", 0600}};
  run.timeout_ms = 1234;
  run.output_limit_bytes = 99;
  run.mode = RunMode::kPythonForkServer;
  return run;
}

Exit SampleExit() {
  Exit exit;
  exit.termination = Termination::kSignaled;
  exit.exit_code = -3;
  exit.signal = 9;
  exit.wall_us = 123456789012;
  exit.cpu_us = -1;
  exit.peak_rss_bytes = int64_t{1} << 40;
  exit.stdout_truncated = true;
  exit.error_errno = 2;
  exit.error = "exec `x`: No such file or directory";
  return exit;
}

// Splits one encoded frame back into type and payload, via the reader.
Frame Parse(const std::string& bytes) {
  FrameReader reader;
  reader.Append(bytes.data(), bytes.size());
  Frame frame;
  std::string error;
  EXPECT_EQ(reader.Next(&frame, &error), FrameReader::Result::kFrame) << error;
  EXPECT_EQ(reader.buffered(), 0u);
  return frame;
}

std::vector<std::string> AllSampleFrames() {
  Ready ready{7, true, false, "rmdir `x`: Permission denied"};
  return {EncodeHello({kProtocolVersion, "flotilla-guest"}),
          EncodeReady(ready),
          EncodeRun(SampleRun()),
          EncodeOutput({OutputStream::kStderr, 42, "some output"}),
          EncodeExit(SampleExit()),
          EncodeCancel({250}),
          EncodePing({77}),
          EncodePong({78}),
          EncodeError({"bad things"}),
          EncodeSeed({1796660000123456789, std::string(64, '\x5a')}),
          EncodeEmpty(MessageType::kReset),
          EncodeEmpty(MessageType::kShutdown)};
}

// Runs every decoder over a payload; none may crash, whatever it holds.
void DecodeAll(std::string_view payload) {
  std::string error;
  Hello hello;
  Ready ready;
  RunRequest run;
  Output output;
  Exit exit;
  Cancel cancel;
  Ping ping;
  Error err;
  Seed seed;
  DecodeSeed(payload, &seed, &error);
  DecodeHello(payload, &hello, &error);
  DecodeReady(payload, &ready, &error);
  DecodeRun(payload, &run, &error);
  DecodeOutput(payload, &output, &error);
  DecodeExit(payload, &exit, &error);
  DecodeCancel(payload, &cancel, &error);
  DecodePing(payload, &ping, &error);
  DecodeError(payload, &err, &error);
  DecodeEmpty(payload, &error);
}

TEST(ProtocolTest, FrameHeaderIsLittleEndianLengthThenType) {
  std::string frame = EncodeFrame(MessageType::kPing, "abc");
  ASSERT_EQ(frame.size(), 8u);
  EXPECT_EQ(frame.substr(0, 5), std::string("\x03\x00\x00\x00\x09", 5));
  EXPECT_EQ(frame.substr(5), "abc");
}

TEST(ProtocolTest, SeedRoundTripsAndBoundsItsEntropy) {
  Seed in{1796660000123456789, std::string("\x00\x01\xff", 3)};
  Frame frame = Parse(EncodeSeed(in));
  EXPECT_EQ(frame.type, MessageType::kSeed);
  Seed out;
  std::string error;
  ASSERT_TRUE(DecodeSeed(frame.payload, &out, &error)) << error;
  EXPECT_EQ(out.realtime_ns, in.realtime_ns);
  EXPECT_EQ(out.entropy, in.entropy);
  Seed big{1, std::string(kMaxSeedEntropy + 1, 'x')};
  EXPECT_FALSE(DecodeSeed(Parse(EncodeSeed(big)).payload, &out, &error));
  EXPECT_NE(error.find("entropy"), std::string::npos) << error;
}

TEST(ProtocolTest, RunRoundTrips) {
  RunRequest in = SampleRun();
  Frame frame = Parse(EncodeRun(in));
  ASSERT_EQ(frame.type, MessageType::kRun);
  RunRequest out;
  std::string error;
  ASSERT_TRUE(DecodeRun(frame.payload, &out, &error)) << error;
  EXPECT_EQ(out.task_id, in.task_id);
  EXPECT_EQ(out.argv, in.argv);
  EXPECT_EQ(out.env, in.env);
  EXPECT_EQ(out.working_dir, in.working_dir);
  EXPECT_EQ(out.stdin_data, in.stdin_data);
  ASSERT_EQ(out.files.size(), 2u);
  EXPECT_EQ(out.files[0].path, "a.py");
  EXPECT_EQ(out.files[0].content, "print(1)\n");
  EXPECT_EQ(out.files[0].mode, 0755u);
  EXPECT_EQ(out.files[1].path, "d/b.txt");
  EXPECT_EQ(out.timeout_ms, 1234u);
  EXPECT_EQ(out.output_limit_bytes, 99u);
  EXPECT_EQ(out.mode, RunMode::kPythonForkServer);
}

TEST(ProtocolTest, ExitRoundTrips) {
  Exit in = SampleExit();
  Frame frame = Parse(EncodeExit(in));
  ASSERT_EQ(frame.type, MessageType::kExit);
  Exit out;
  std::string error;
  ASSERT_TRUE(DecodeExit(frame.payload, &out, &error)) << error;
  EXPECT_EQ(out.termination, in.termination);
  EXPECT_EQ(out.exit_code, -3);
  EXPECT_EQ(out.signal, 9);
  EXPECT_EQ(out.wall_us, in.wall_us);
  EXPECT_EQ(out.cpu_us, -1);
  EXPECT_EQ(out.peak_rss_bytes, in.peak_rss_bytes);
  EXPECT_TRUE(out.stdout_truncated);
  EXPECT_FALSE(out.stderr_truncated);
  EXPECT_EQ(out.error_errno, 2);
  EXPECT_EQ(out.error, in.error);
}

TEST(ProtocolTest, SmallMessagesRoundTrip) {
  std::string error;
  Hello hello;
  ASSERT_TRUE(DecodeHello(Parse(EncodeHello({kProtocolVersion, "g"})).payload, &hello, &error));
  EXPECT_EQ(hello.version, kProtocolVersion);
  EXPECT_EQ(hello.software, "g");

  Ready ready;
  ASSERT_TRUE(DecodeReady(Parse(EncodeReady({7, true, false, "why"})).payload, &ready, &error));
  EXPECT_EQ(ready.tasks_run, 7u);
  EXPECT_TRUE(ready.python_server_warm);
  EXPECT_FALSE(ready.clean);
  EXPECT_EQ(ready.cleanup_error, "why");

  Output output;
  Frame f = Parse(EncodeOutput({OutputStream::kStderr, 42, std::string("a\0b", 3)}));
  ASSERT_EQ(f.type, MessageType::kOutput);
  ASSERT_TRUE(DecodeOutput(f.payload, &output, &error));
  EXPECT_EQ(output.stream, OutputStream::kStderr);
  EXPECT_EQ(output.offset, 42u);
  EXPECT_EQ(output.data, std::string("a\0b", 3));

  Cancel cancel;
  ASSERT_TRUE(DecodeCancel(Parse(EncodeCancel({250})).payload, &cancel, &error));
  EXPECT_EQ(cancel.grace_ms, 250u);

  Ping ping;
  f = Parse(EncodePong({78}));
  EXPECT_EQ(f.type, MessageType::kPong);
  ASSERT_TRUE(DecodePing(f.payload, &ping, &error));
  EXPECT_EQ(ping.nonce, 78u);

  Error err;
  ASSERT_TRUE(DecodeError(Parse(EncodeError({"boom"})).payload, &err, &error));
  EXPECT_EQ(err.message, "boom");

  f = Parse(EncodeEmpty(MessageType::kShutdown));
  EXPECT_EQ(f.type, MessageType::kShutdown);
  EXPECT_TRUE(DecodeEmpty(f.payload, &error));
}

TEST(ProtocolTest, ReaderAssemblesFramesFedOneByteAtATime) {
  std::string stream;
  for (const std::string& f : AllSampleFrames()) stream += f;
  FrameReader reader;
  std::vector<MessageType> types;
  for (char c : stream) {
    reader.Append(&c, 1);
    Frame frame;
    std::string error;
    FrameReader::Result r;
    while ((r = reader.Next(&frame, &error)) == FrameReader::Result::kFrame) {
      types.push_back(frame.type);
    }
    ASSERT_NE(r, FrameReader::Result::kError) << error;
  }
  EXPECT_EQ(types.size(), AllSampleFrames().size());
  EXPECT_EQ(types.front(), MessageType::kHello);
  EXPECT_EQ(types.back(), MessageType::kShutdown);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(ProtocolTest, OversizedFrameIsRejectedFromItsHeader) {
  FrameReader reader(/*max_payload=*/1024);
  std::string header("\x01\x04\x00\x00\x04", 5);  // 1025 bytes of OUTPUT
  reader.Append(header.data(), header.size());
  Frame frame;
  std::string error;
  EXPECT_EQ(reader.Next(&frame, &error), FrameReader::Result::kError);
  EXPECT_THAT(error, HasSubstr("over the limit"));
  // The error is sticky: the stream cannot be resynchronised.
  std::string ok = EncodePing({1});
  reader.Append(ok.data(), ok.size());
  EXPECT_EQ(reader.Next(&frame, &error), FrameReader::Result::kError);

  FrameReader big;
  std::string huge("\xff\xff\xff\xff\x04", 5);
  big.Append(huge.data(), huge.size());
  EXPECT_EQ(big.Next(&frame, &error), FrameReader::Result::kError);
}

TEST(ProtocolTest, PausedRoundTripsAndRejectsTrailingBytes) {
  Paused in{true, "t-1/1", 70000, 3};
  Frame frame = Parse(EncodePaused(in));
  EXPECT_EQ(frame.type, MessageType::kPaused);
  Paused out;
  std::string error;
  ASSERT_TRUE(DecodePaused(frame.payload, &out, &error)) << error;
  EXPECT_TRUE(out.running);
  EXPECT_EQ(out.task_id, "t-1/1");
  EXPECT_EQ(out.stdout_sent, 70000u);
  EXPECT_EQ(out.stderr_sent, 3u);
  EXPECT_FALSE(DecodePaused(frame.payload + "x", &out, &error));
  EXPECT_FALSE(DecodePaused(frame.payload.substr(0, 5), &out, &error));
}

TEST(ProtocolTest, UnknownTypesAreRejected) {
  for (uint8_t type : {0, 16, 200, 255}) {
    FrameReader reader;
    std::string bytes = EncodeFrame(MessageType::kPing, "12345678");
    bytes[4] = static_cast<char>(type);
    reader.Append(bytes.data(), bytes.size());
    Frame frame;
    std::string error;
    EXPECT_EQ(reader.Next(&frame, &error), FrameReader::Result::kError) << int{type};
    EXPECT_THAT(error, HasSubstr("unknown type"));
  }
}

TEST(ProtocolTest, TruncatedPayloadsAreRejected) {
  std::string payload = Parse(EncodeRun(SampleRun())).payload;
  RunRequest run;
  std::string error;
  for (size_t n = 0; n < payload.size(); n += (n < 200 ? 1 : 997)) {
    EXPECT_FALSE(DecodeRun(std::string_view(payload).substr(0, n), &run, &error)) << n;
  }
  EXPECT_TRUE(DecodeRun(payload, &run, &error)) << error;

  std::string exit = Parse(EncodeExit(SampleExit())).payload;
  Exit e;
  for (size_t n = 0; n < exit.size(); ++n) {
    EXPECT_FALSE(DecodeExit(std::string_view(exit).substr(0, n), &e, &error)) << n;
  }
  EXPECT_THAT(error, HasSubstr("truncated"));
}

TEST(ProtocolTest, TrailingBytesBadEnumsAndBadBoolsAreRejected) {
  std::string error;
  Ping ping;
  std::string payload = Parse(EncodePing({5})).payload + "x";
  EXPECT_FALSE(DecodePing(payload, &ping, &error));
  EXPECT_THAT(error, HasSubstr("trailing"));

  std::string run = Parse(EncodeRun(SampleRun())).payload;
  run.back() = 7;  // mode
  RunRequest r;
  EXPECT_FALSE(DecodeRun(run, &r, &error));
  EXPECT_THAT(error, HasSubstr("mode"));

  std::string output = Parse(EncodeOutput({OutputStream::kStdout, 0, "x"})).payload;
  output[0] = 2;  // stream
  Output o;
  EXPECT_FALSE(DecodeOutput(output, &o, &error));

  std::string ready = Parse(EncodeReady({1, false, true, ""})).payload;
  ready[8] = 2;  // python_server_warm
  Ready rd;
  EXPECT_FALSE(DecodeReady(ready, &rd, &error));
  EXPECT_THAT(error, HasSubstr("python_server_warm"));
}

TEST(ProtocolTest, CountsLargerThanTheFrameAreRejectedBeforeAllocating) {
  // task_id "", then an argv count of 2^32-1 with no items behind it.
  std::string payload("\x00\x00\x00\x00\xff\xff\xff\xff", 8);
  RunRequest run;
  std::string error;
  EXPECT_FALSE(DecodeRun(payload, &run, &error));
  EXPECT_THAT(error, HasSubstr("argv"));
  // A string length past the end.
  std::string bytes("\xff\xff\xff\x7f", 4);
  Error err;
  EXPECT_FALSE(DecodeError(bytes, &err, &error));
}

TEST(ProtocolTest, VersionMismatchNamesBothVersions) {
  std::string error;
  EXPECT_TRUE(CheckHello({kProtocolVersion, "x"}, "guest", &error));
  EXPECT_FALSE(CheckHello({kProtocolVersion + 1, "x"}, "guest", &error));
  EXPECT_THAT(error, HasSubstr("version mismatch"));
  EXPECT_THAT(error, HasSubstr(std::to_string(kProtocolVersion + 1)));
  EXPECT_THAT(error, HasSubstr(std::to_string(kProtocolVersion)));
  Hello hello;
  EXPECT_FALSE(DecodeHello(std::string_view("\x01\x00", 2), &hello, &error));
}

// Mutations of valid frames (bit flips, truncation, inserted and
// overwritten bytes, spliced frames) through the reader and every decoder:
// all must be rejected or accepted without a crash (run it under ASan).
TEST(ProtocolTest, RandomMutationsNeverCrash) {
  std::mt19937_64 rng(20240601);
  std::vector<std::string> seeds = AllSampleFrames();
  seeds[2] = EncodeRun([] {
    RunRequest run = SampleRun();
    run.stdin_data = "short";
    return run;
  }());
  int frames = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string bytes = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !bytes.empty(); ++e) {
      size_t pos = rng() % bytes.size();
      switch (rng() % 5) {
        case 0:
          bytes[pos] = static_cast<char>(bytes[pos] ^ (1 << (rng() % 8)));
          break;
        case 1:
          bytes.resize(pos);
          break;
        case 2:
          bytes.insert(pos, 1, static_cast<char>(rng()));
          break;
        case 3:
          bytes[pos] = static_cast<char>(rng() % 2 ? 0xff : 0);
          break;
        case 4:
          bytes += seeds[rng() % seeds.size()].substr(0, rng() % 16);
          break;
      }
    }
    DecodeAll(bytes);
    if (bytes.size() > kFrameHeaderSize)
      DecodeAll(std::string_view(bytes).substr(kFrameHeaderSize));
    FrameReader reader(1 << 20);
    size_t at = 0;
    while (at < bytes.size()) {
      size_t n = std::min<size_t>(bytes.size() - at, 1 + rng() % 64);
      reader.Append(bytes.data() + at, n);
      at += n;
      Frame frame;
      std::string error;
      FrameReader::Result r;
      while ((r = reader.Next(&frame, &error)) == FrameReader::Result::kFrame) {
        ++frames;
        DecodeAll(frame.payload);
      }
      if (r == FrameReader::Result::kError) break;
    }
  }
  EXPECT_GT(frames, 0);
}

}  // namespace
}  // namespace flotilla::guest
