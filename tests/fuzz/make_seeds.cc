// Writes the generated part of the seed corpora (frames made by the real
// encoders, hand-made tar archives) into tests/fuzz/corpus/. The text seeds
// (manifests, request files) are written by hand. Rerun after a protocol
// change:
//   g++ -std=c++20 -Isrc -Itests tests/fuzz/make_seeds.cc src/guest/protocol.cc \
//     -o /tmp/make_seeds && /tmp/make_seeds tests/fuzz/corpus
#include <fstream>
#include <string>

#include "guest/protocol.h"
#include "support/tar_builder.h"

using namespace flotilla::guest;
using flotilla::testing::TarBuilder;

static void Write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const std::string out = argv[1];
  const std::string g = out + "/guest_protocol";
  // The first byte is the fuzz target's read size.
  RunRequest run;
  run.task_id = "t-1";
  run.argv = {"python3", "-c", "print(1)"};
  run.env = {{"PATH", "/usr/bin"}};
  run.files = {{"data.txt", "hello", 0644}};
  run.stdin_data = "in";
  run.mode = RunMode::kPythonForkServer;
  Exit exit;
  exit.termination = Termination::kStartFailed;
  exit.error = "exec `foo`: No such file or directory";
  Write(g, "hello_ready", "\x07" + EncodeHello(Hello{}) + EncodeReady(Ready{3, true, false, "busy"}));
  Write(g, "run", std::string("\x40") + EncodeRun(run));
  Write(g, "output_exit", std::string("\x01") + EncodeOutput({OutputStream::kStderr, 5, "abc"}) +
                              EncodeExit(exit));
  Write(g, "control", std::string("\x10") + EncodeCancel({100}) + EncodePing({42}) +
                          EncodePong({42}) + EncodeError({"bad"}) + EncodePaused({true, "t-1", 3, 4}) +
                          EncodeEmpty(MessageType::kReset) + EncodeEmpty(MessageType::kResume));
  Write(g, "bad_type", std::string("\x05") + std::string("\x00\x00\x00\x00\x63", 5));
  Write(g, "huge_length", std::string("\x05") + std::string("\xff\xff\xff\x7f\x04", 5));
  std::string truncated = EncodeRun(run);
  Write(g, "truncated_run", "\x03" + truncated.substr(0, truncated.size() - 3));

  const std::string t = out + "/tar_check";
  Write(t, "skeleton", TarBuilder()
                           .Dir("./")
                           .Dir("./etc/")
                           .File("./etc/passwd", "root:x:0:0::/:/bin/sh\n")
                           .Symlink("./bin", "usr/bin")
                           .Dir("./dev/")
                           .Add({.name = "./dev/null", .type = '3', .mode = 0666, .dev_major = 1,
                                 .dev_minor = 3})
                           .Symlink("./dev/fd", "/proc/self/fd")
                           .Add({.name = "./etc/link", .type = '1', .link = "./etc/passwd"})
                           .Pax("path", "./etc/long-name")
                           .File("x", "pax named")
                           .Finish());
  Write(t, "escape_symlink", TarBuilder().Symlink("etc", "/etc").File("etc/cron.d/x").Finish());
  Write(t, "dotdot", TarBuilder().File("a/../../escape").Finish());
  Write(t, "device", TarBuilder().Add({.name = "dev/mem", .type = '3', .dev_major = 1, .dev_minor = 1})
                         .Finish());
  Write(t, "unterminated", TarBuilder().File("f", "hello").Unterminated());
  return 0;
}
