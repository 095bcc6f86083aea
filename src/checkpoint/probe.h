// Probe: proves that checkpointing works on this host by doing it — a real
// `criu dump` and `criu restore` of a tiny process, each under a short
// deadline — rather than trusting `criu check`.
//
// Why: on some hosts CRIU passes `criu check` yet a dump never returns
// (docs/prediction.md, "When checkpointing is unavailable"). A node that
// cannot checkpoint must say so before a migration relies on it.
//
// Availability holds the outcome for the rest of the agent: the probe's
// thread writes it, the status reports and the gated checkpointer read it.
// It starts as kProbing. Thread-safe.
//
// BackgroundProbe runs ProbeCheckpointing on a thread of its own (so the
// agent registers at once) and stores the outcome; destroying it cancels a
// probe in flight (its CRIU is killed) and joins the thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "checkpoint/checkpointer.h"
#include "common/unique_fd.h"

namespace flotilla::checkpoint {

enum class CheckpointState {
  kProbing,      // the probe has not finished
  kAvailable,    // a dump and a restore worked here
  kUnavailable,  // `reason` says why
};

struct ProbeResult {
  CheckpointState state = CheckpointState::kProbing;
  std::string reason;  // for kUnavailable: which step failed and how
  std::chrono::microseconds dump_took{0};
  std::chrono::microseconds restore_took{0};
  // Available only with CRIU's breakpoints off (kNoBreakpointsEnv): the
  // first dump hung, the second worked. `reason` then says what hung.
  bool no_breakpoints = false;
};

// "probing", "available", "unavailable (<reason>)".
std::string Describe(const ProbeResult& result);

struct ProbeOptions {
  std::string criu_path = "/usr/local/sbin/criu";
  // Scratch space for the image and CRIU's kernel-feature cache; created,
  // and the probe's image removed again.
  std::string work_dir = "/var/lib/flotilla/criu-probe";
  // Each step's deadline; the whole probe takes at most their sum plus the
  // process start (~ms). A tiny process dumps and restores in ~50 ms.
  std::chrono::milliseconds check_deadline{10'000};
  std::chrono::milliseconds dump_deadline{5'000};
  std::chrono::milliseconds restore_deadline{5'000};
  // The tiny process: a program that sleeps (it is run as `<program> 600`).
  std::string program = "/bin/sleep";
  // Readable: stop at once (the outcome is then kUnavailable, "cancelled").
  int cancel_fd = -1;
  // When the dump times out, try once more with CRIU's hardware
  // breakpoints off (kNoBreakpointsEnv) before giving up.
  bool try_without_breakpoints = true;
};

// Runs the probe: `criu check`, then a dump of a freshly started tiny
// process (its own session, stdio on /dev/null, nothing else open), then a
// restore of it, checks that the restored process runs, and kills it. A
// dump that times out is tried once more without hardware breakpoints
// (ProbeOptions::try_without_breakpoints). Never returns kProbing. Needs
// root, as CRIU does. Bounded: at most check + 2 × (dump + restore)
// deadlines, plus process starts.
ProbeResult ProbeCheckpointing(const ProbeOptions& options);

class Availability {
 public:
  ProbeResult Get() const ABSL_LOCKS_EXCLUDED(mu_);
  void Set(ProbeResult result) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  ProbeResult result_ ABSL_GUARDED_BY(mu_);
};

class BackgroundProbe {
 public:
  // Starts the probe; its outcome goes to `into`. A failure to make the
  // cancel eventfd is reported as the outcome.
  BackgroundProbe(ProbeOptions options, std::shared_ptr<Availability> into);
  ~BackgroundProbe();
  BackgroundProbe(const BackgroundProbe&) = delete;
  BackgroundProbe& operator=(const BackgroundProbe&) = delete;

 private:
  UniqueFd cancel_;  // an eventfd: written by the destructor
  std::thread thread_;
};

// A Checkpointer that passes calls on only once `availability` says
// kAvailable; until then, and if it never does, it fails with
// FailedPrecondition naming the state and its reason, without running
// CRIU. The real one is made by `make` at the first call after the probe,
// with the probe's outcome (which may say: no hardware breakpoints).
using CheckpointerFactory = std::function<std::unique_ptr<Checkpointer>(const ProbeResult&)>;
std::unique_ptr<Checkpointer> NewGatedCheckpointer(CheckpointerFactory make,
                                                   std::shared_ptr<const Availability> availability,
                                                   std::string node_id);

}  // namespace flotilla::checkpoint
