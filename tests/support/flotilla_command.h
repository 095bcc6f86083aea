// Runs the flotilla binary under test as a user would, bounded by
// timeout(1), and returns its exit status and output (stdout and stderr).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace flotilla::testing {

struct CommandRun {
  int status = -1;  // the exit status; -1 when it did not exit (signal, popen failed)
  std::string out;
};

inline CommandRun RunFlotilla(const std::string& args, int timeout_s = 60) {
  const std::string cmd =
      "timeout " + std::to_string(timeout_s) + " " + FLOTILLA_BIN + " " + args + " 2>&1";
  CommandRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace flotilla::testing
