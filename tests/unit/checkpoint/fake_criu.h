// A fake `criu` for the checkpoint tests: a shell script that passes
// `check` (and fills in CRIU's kernel-feature cache inside the private /run
// that CriuProcess gives it) and, for any other command, writes a log like
// the real one's last lines on the hanging hosts, starts a helper and waits
// forever. It records "<its pid> <helper pid> <-t pid>" in `pids` beside
// itself, so a test can check that the whole tree was killed. With
// kRealWithoutBreakpoints it runs the real criu when CRIU's breakpoints are
// off (CRIU_FAULT=130): a host where only that works. With kKillTaskThenHang
// it SIGKILLs the -t task first, as a real criu killed in the middle of an
// injected system call leaves the task to die (of SIGTRAP, there).
#pragma once

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace flotilla::checkpoint::testing {

class FakeCriu {
 public:
  enum Mode { kAlwaysHang, kRealWithoutBreakpoints, kKillTaskThenHang };
  // `check_exit`: what `criu check` exits with.
  explicit FakeCriu(const std::string& dir, int check_exit = 0, Mode mode = kAlwaysHang)
      : dir_(dir) {
    mkdir(dir_.c_str(), 0755);
    std::ofstream out(path());
    // -p: dumps run with the sandbox's real uid and effective uid 0, and
    // dash would otherwise drop to the real one.
    out << "#!/bin/sh -p\n"
        << "case \"$1\" in\n"
        << "  check)\n"
        // Only in CriuProcess's private tmpfs /run, never the host's.
        << "    grep -q '^criu-run /run ' /proc/self/mounts && : > /run/criu.kdat\n"
        << "    exit " << check_exit << " ;;\n"
        << "esac\n"
        << (mode == kRealWithoutBreakpoints
                ? "[ \"$CRIU_FAULT\" = 130 ] && exec /usr/local/sbin/criu \"$@\"\n"
                : "")
        << "cmd=$1; dir=.; log=criu.log; pid=-\n"
        << "while [ $# -gt 0 ]; do\n"
        << "  case \"$1\" in -D) dir=$2; shift ;; -o) log=$2; shift ;; -t) pid=$2; shift ;; esac\n"
        << "  shift\n"
        << "done\n"
        << "echo \"(00.001) fake $cmd of $pid\" >> \"$dir/$log\"\n"
        << (mode == kKillTaskThenHang ? "kill -KILL \"$pid\"\n" : "")
        << "echo \"(00.020) Daemon $pid exited trapping\" >> \"$dir/$log\"\n"
        << "sleep 1000 &\n"
        << "echo \"$$ $! $pid\" > " << dir_ << "/pids\n"
        << "wait\n";
    out.close();
    chmod(path().c_str(), 0755);
  }

  std::string path() const { return dir_ + "/criu"; }

  // The pids the fake recorded (empty until it ran a command).
  std::vector<int> Pids() const {
    std::ifstream in(dir_ + "/pids");
    std::stringstream ss;
    ss << in.rdbuf();
    std::vector<int> pids;
    for (absl::string_view f : absl::StrSplit(ss.str(), ' ', absl::SkipWhitespace())) {
      int pid = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(f), &pid)) pids.push_back(pid);
    }
    return pids;
  }

 private:
  std::string dir_;
};

// True if `pid` is gone or a zombie (killed; its reaper may be late).
inline bool Dead(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  if (!in) return true;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string stat = ss.str();
  const size_t close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z' ||
         stat[close + 2] == 'X';
}

// Waits (bounded) until every pid is dead: a SIGKILL is delivered
// asynchronously, so "killed" becomes "dead" a moment later.
inline bool AllDeadWithin(const std::vector<int>& pids, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (true) {
    bool all = true;
    for (int pid : pids) all = all && Dead(pid);
    if (all) return true;
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace flotilla::checkpoint::testing
