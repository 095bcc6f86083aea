// ComponentRuntime: runs a component's shards on this node, end to end, and
// restarts a shard that dies without losing or repeating a record.
//
// Processes. RunComponent (the "supervisor", the calling process) creates
// one shared-memory ring (channel.h) per pair of connected shards, then
// forks one runner per shard. A runner is a fork of the supervisor, not an
// exec: it inherits the rings' mappings, pins itself to the shard's CPUs
// (affinity.h, from the placement), joins the component's cgroup and
// starts the stage's command as its own child with pipes on stdin and
// stdout. The runner owns the rings; the command never sees them. Every
// runner leads its own process group, so killing a shard kills its runner
// and its command together; PR_SET_PDEATHSIG ties each to its parent, and
// the supervisor is the child subreaper, so every process is reaped by it.
// Shards run as plain processes in one cgroup the runtime creates and
// removes, not in Linux-container sandboxes: a runner must share the rings'
// memfds with its command's sandbox, which the container API (src/sandbox)
// does not offer yet (docs/components.md).
//
// Stage contract (a command). One record is one line (no newline inside;
// at most the ring's max message). For every line it reads, the command
// writes exactly one line: the output record, or an empty line for "no
// record" (a filter dropping it). After its stdin closes it may write any
// number of final lines (an aggregate's totals) and exit 0. A stage with no
// input edge (a source) reads nothing and all its lines are final lines.
// The one-line-per-input rule is what lets the runner know which input an
// output belongs to, hence when an input is done and may be acknowledged.
// For `key` routing the key is the text before the first TAB (the whole
// line without one); a record goes to partition FNV-1a(key) % partitions
// of the next stage, and to the shard owning that partition. `shuffle`
// deals records round-robin to the next stage's shards. A stage with no
// output edge (a sink) appends its lines to <work_dir>/<stage>.<index>.out.
//
// Delivery: exactly once across every hop, for deterministic stage code.
// Each shard keeps a progress record in memory shared with the supervisor
// (so it survives the shard): per input ring, the offset up to which
// inputs are committed. An input is committed only after its output record
// is published on the next ring (or appended to the sink file); since one
// input yields at most one record, the publish is one atomic store (the
// ring's record header). Before publishing, the runner notes the output
// ring's head in the progress record ("pending"); a restarted runner finds
// the ring's head again (RingProducer::Resume) and, if it moved past the
// noted one, counts the pending input as committed; otherwise it replays
// it. Inputs read but not committed are replayed from the rings, whose
// space is freed only up to the committed offsets. Sources are re-run from
// the start and their first `final_published` lines skipped; final lines
// likewise. A stage that declares `state:` keeps a journal of its
// committed inputs (<work_dir>/<stage>.<index>.journal); a restarted one
// replays it into the fresh command, discarding those outputs, so its
// in-memory state is rebuilt before new input arrives.
// NOT guaranteed: effects a stage has outside its stdout (files it writes,
// requests it sends) happen again for replayed inputs; non-deterministic
// code (clocks, randomness, iteration order of unordered maps in final
// lines) can produce a different output on replay than the first time;
// a source that is not replayable loses or repeats lines; the supervisor
// itself dying ends the run (the rings live in its memory).
//
// Threads: RunComponent is blocking; one call at a time per process (it
// forks; no other thread of the caller may hold a lock the children need).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shard/component.h"
#include "shard/placement.h"
#include "shard/sharding_engine.h"

namespace flotilla::shard {

struct RuntimeOptions {
  // Journals and sink outputs go here; created if missing.
  std::string work_dir;
  // Stage commands run here (the spec file's directory, so relative paths
  // in a spec work); "" = the caller's.
  std::string stage_dir;
  // Passed to every stage as FLOTILLA_RECORDS (how much a generator
  // produces); 0 leaves it unset.
  int64_t records = 0;
  // Fault injection: SIGKILL the shard with this id ("<stage>/<index>")
  // once it has committed `kill_after` records.
  std::string kill_shard;
  int64_t kill_after = 0;
  // The whole run is stopped (every process killed) after this long.
  std::chrono::milliseconds deadline{std::chrono::minutes(10)};
  // A shard that dies more often than this fails the run.
  int max_restarts = 5;
  size_t ring_bytes = 1 << 20;
  // When a runner finds its input rings empty it naps this long before it
  // arms its wake-up: records pile up meanwhile and move in batches, where
  // arming at once makes the producer signal, and the runner wake, nearly
  // once per record (the example pipeline's CPU per record went from 1.39x
  // one process's with 200 us to 1.13x with 500 us, docs/benchmarks.md).
  // The price: up to this much
  // latency per hop on a quiet stream. 0: no nap. At most 1 s.
  std::chrono::microseconds coalesce{500};
  // Put the shards in a cgroup the run creates and removes. Without one
  // (no permission to create groups) the run still works.
  bool use_cgroup = true;
  // Pin shards to their placement's CPUs.
  bool pin = true;
  // Where the supervisor keeps a JSON snapshot of the run (shards, pids,
  // CPUs, counts, restarts; `flotilla component status` reads it),
  // rewritten atomically every 250 ms and at the end; "" = none.
  std::string status_file;
  // Called from the supervisor loop for recovery events (for live output).
  std::function<void(const std::string& line)> on_event;
};

struct ShardRunInfo {
  std::string id;
  std::set<int> cpus;
  int restarts = 0;
  uint64_t committed = 0;   // inputs (and final lines) committed
  uint64_t published = 0;   // records written downstream or to the sink file
  std::string output_file;  // sinks only
};

struct RecoveryEvent {
  std::string shard;
  uint64_t committed_at_kill = 0;
  double restart_ms = 0;  // kill (or death) -> new runner forked
  double resume_ms = 0;   // kill -> first record committed by the new runner
  bool injected = false;  // killed by kill_shard (not a crash of its own)
};

struct RunReport {
  std::vector<ShardRunInfo> shards;
  std::vector<RecoveryEvent> recoveries;
  uint64_t source_records = 0;  // lines the source stages published
  double elapsed_s = 0;
  double records_per_s = 0;
  std::vector<std::string> output_files;  // sink shards', in shard order
  std::vector<std::string> cgroup_dirs;   // created and removed
};

// Checks that the runtime can run `spec`: command stages only, no
// broadcast edge, at most one output edge per stage. InvalidArgument
// naming the stage otherwise.
absl::Status ValidateForRuntime(const ComponentSpec& spec);

// Runs `plan` (from PlanShards over `spec`) with `placement` until every
// sink has finished, restarting shards that die. Returns the report, or an
// error naming the shard and its last exit status when a shard failed more
// than max_restarts times or the deadline passed; in every case all
// processes are killed and reaped and the cgroup removed before returning.
absl::StatusOr<RunReport> RunComponent(const ComponentSpec& spec, const ShardPlan& plan,
                                       const NodePlacement& placement,
                                       const RuntimeOptions& options);

// The partition of `key` among `partitions` (FNV-1a 64): stable across
// processes and runs, so the single-process reference agrees.
int PartitionOf(std::string_view key, int partitions);

}  // namespace flotilla::shard
