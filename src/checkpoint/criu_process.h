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

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace flotilla::checkpoint {

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
};

class CriuProcess {
 public:
  CriuProcess(std::string criu_path, std::string state_dir)
      : criu_path_(std::move(criu_path)), state_dir_(std::move(state_dir)) {}

  // Runs it to completion. Returns OK on exit 0; otherwise an error naming
  // `what` and quoting the log's first "Error" line (Unimplemented when the
  // line says a resource is unsupported, Internal otherwise).
  absl::Status Run(const std::string& what, const CriuRun& run);

 private:
  absl::Status EnsureKdatCache();

  const std::string criu_path_;
  const std::string state_dir_;
};

// The first line of a CRIU log that reports an error, skipping the
// harmless ones this host always logs; "" if none.
std::string FirstCriuError(const std::string& log);

}  // namespace flotilla::checkpoint
