// CriuProcess: runs one criu command in a prepared child and turns its
// failure into a status that quotes the first error line of its log.
//
// Two quirks of the hosts shape the child (see docs/prediction.md,
// "Migration"):
// - The agent lacks CAP_SYS_RESOURCE, and prlimit() on another user's task
//   needs it, so a dump of a sandbox running as uid U fails ("Can't get
//   rlimit"). The kernel also lets a caller whose *real* ids equal the
//   target's read its limits, so dumps run with real uid/gid U and
//   effective 0 (every capability kept).
// - With those ids CRIU's kernel probing fails (iptables refuses to run
//   set-id); CRIU caches the probe in /run/criu.kdat, but only on a tmpfs.
//   So each child gets a private mount namespace with a tmpfs on /run
//   holding a copy of a cache made once, as root, by `criu check`.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace flotilla::checkpoint {

// How long CRIU may take. A dump or restore writes or reads the tasks'
// memory, so its deadline grows with it; the floor covers CRIU's fixed work
// (seizing, the parasite, namespaces, mounts), the cap keeps a stuck run
// from holding a migration for long. The measured costs here are ~50 ms for
// a tiny process and ~0.4 s for 200 MB (docs/benchmarks.md): the defaults
// leave more than tenfold room.
struct CriuDeadlines {
  std::chrono::milliseconds check{10'000};  // `criu check`
  // tar of the container's root skeleton (a few MiB of /etc and /dev).
  std::chrono::milliseconds root_tar{30'000};
  std::chrono::milliseconds floor{30'000};
  std::chrono::milliseconds per_gib{20'000};
  std::chrono::milliseconds cap{300'000};

  // The deadline of a dump or restore of `bytes` of memory.
  std::chrono::milliseconds For(int64_t bytes) const;
};

struct CriuRun {
  std::vector<std::string> args;  // after the binary: {"dump", "-t", ...}
  std::string log_path;           // what -o names, for the error message
  // Real ids to run with (effective stays 0), or -1 to stay root.
  int real_uid = -1;
  int real_gid = -1;
  // fds (the caller's, not CLOEXEC-sensitive) to place at these numbers.
  std::vector<std::pair<int, int>> inherit;  // {source, target}
  // cgroup.procs files to join before exec (restored tasks inherit them).
  std::vector<int> join_cgroup_fds;
  // How long it may run before it is killed, with every process of its
  // group. Zero is not allowed: every run has a deadline.
  std::chrono::milliseconds deadline{0};
  // Readable: give up at once (the agent stops); -1 for none.
  int cancel_fd = -1;
  // Added to CRIU's environment ("NAME=value"), e.g. kNoBreakpointsEnv.
  std::vector<std::string> env;
};

// Makes CRIU's parasite code find its way back to the task's rt_sigreturn
// by tracing system calls instead of a hardware (debug-register) breakpoint.
// It is CRIU's own switch (fault "130", FI_NO_BREAKPOINTS, which CRIU once
// forced on for Xen guests where such breakpoints misbehaved); a probe
// whose dump hangs tries it (docs/prediction.md, "When checkpointing is
// unavailable").
inline constexpr char kNoBreakpointsEnv[] = "CRIU_FAULT=130";

class CriuProcess {
 public:
  CriuProcess(std::string criu_path, std::string state_dir,
              std::chrono::milliseconds check_deadline = CriuDeadlines{}.check)
      : criu_path_(std::move(criu_path)),
        state_dir_(std::move(state_dir)),
        check_deadline_(check_deadline) {}

  // Runs it to completion within run.deadline. Returns OK on exit 0;
  // DeadlineExceeded when it was killed at its deadline (the message names
  // `what`, the step — run.args[0] — the deadline and the last lines of
  // CRIU's log); otherwise an error naming `what` and quoting the log's
  // first "Error" line (Unimplemented when the line says a resource is
  // unsupported, Internal otherwise).
  absl::Status Run(const std::string& what, const CriuRun& run);

  // Runs `criu check` (within the check deadline) and caches CRIU's
  // kernel-feature probe in the state directory; OK at once if cached.
  absl::Status EnsureKdatCache(int cancel_fd = -1);

 private:
  const std::string criu_path_;
  const std::string state_dir_;
  const std::chrono::milliseconds check_deadline_;
};

// The last `lines` lines of the file at `path`, joined by " | " ("" if it
// cannot be read): what CRIU was doing when it stopped.
std::string LogTail(const std::string& path, int lines = 3);

// The first line of a CRIU log that reports an error, skipping the
// harmless ones this host always logs; "" if none.
std::string FirstCriuError(const std::string& log);

}  // namespace flotilla::checkpoint
