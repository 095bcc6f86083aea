#include "shard/runtime.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "sandbox/linux/cgroups.h"
#include "shard/affinity.h"
#include "shard/channel.h"

namespace flotilla::shard {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr int kMaxInputs = 32;
constexpr uint32_t kFinalInput = 0xffffffffu;  // pending.input for a final line
constexpr int32_t kToFile = -2;                // pending.output for the sink file
// A runner's exit statuses, so a supervisor log says why a shard died.
// Bytes a feeder moves into a stage per write, and the pipes' size.
constexpr size_t kBatchBytes = 256 << 10;
constexpr int kPipeBytes = 1 << 20;
constexpr int kExitSetup = 10, kExitProtocol = 11, kExitChannel = 12, kExitStage = 13;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// One shard's progress, in memory shared by the supervisor and the shard's
// runner (MAP_SHARED, mapped before the fork), so it outlives a runner that
// dies. Written by the runner's main thread only; a restarted runner reads
// it first. The `p_*` fields describe the one output being published
// ("pending"); each holds the value to store when that output counts as
// committed, so applying them twice is harmless.
struct alignas(64) ShardProgress {
  std::atomic<uint64_t> consumed[kMaxInputs];  // committed end offset per input ring
  std::atomic<uint64_t> final_published;       // final lines handled
  std::atomic<uint64_t> journal_committed;     // bytes of the journal that count
  std::atomic<uint64_t> file_committed;        // bytes of the sink file that count
  std::atomic<uint64_t> committed;             // inputs + final lines committed
  std::atomic<uint64_t> published;             // records published
  std::atomic<uint32_t> done;                  // the runner finished cleanly
  std::atomic<uint32_t> pending;
  uint32_t p_input;  // ring index, or kFinalInput
  int32_t p_output;  // output ring index, or kToFile
  uint64_t p_input_end, p_journal_end, p_final_after, p_committed_after, p_published_after;
  uint64_t p_head_before, p_file_after;
  std::atomic<int32_t> user_pid;
};

// Applies the pending output's "after" values: the commit point.
void ApplyPending(ShardProgress* p) {
  if (p->p_input == kFinalInput) {
    p->final_published.store(p->p_final_after, std::memory_order_release);
  } else {
    p->consumed[p->p_input].store(p->p_input_end, std::memory_order_release);
    p->journal_committed.store(p->p_journal_end, std::memory_order_release);
  }
  if (p->p_output == kToFile) p->file_committed.store(p->p_file_after, std::memory_order_release);
  p->committed.store(p->p_committed_after, std::memory_order_release);
  p->published.store(p->p_published_after, std::memory_order_release);
}

struct Ring {
  int from = 0;  // shard indexes
  int to = 0;
  ShmRing ring;
};

// What a runner needs to know about its shard, built by the supervisor.
struct ShardSetup {
  const ShardDefinition* def = nullptr;
  std::set<int> cpus;
  std::vector<int> inputs;   // ring indexes
  std::vector<int> outputs;  // ring indexes, in the next stage's shard order
  std::vector<PartitionRange> output_ranges;
  Routing routing = Routing::kShuffle;
  int next_partitions = 1;
  bool stateful = false;
  std::string output_file;   // sinks
  std::string journal_file;  // stateful stages
  ShardProgress* progress = nullptr;
  // Supervisor's bookkeeping.
  pid_t pid = -1;
  int restarts = 0;
  bool finished = false;
  int last_status = 0;
};

absl::Status WriteAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "write");
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

[[noreturn]] void Die(int code, const std::string& why) {
  std::string line = absl::StrCat("flotilla shard runner: ", why, "\n");
  (void)!write(2, line.data(), line.size());
  _exit(code);
}

// ---- The runner: runs in the forked child, never returns.

struct InFlight {
  int input = -1;  // -1: a journal line being replayed
  uint64_t end = 0;
  uint64_t journal_end = 0;
};

class Runner {
 public:
  Runner(ShardSetup& setup, std::vector<Ring>& rings, const RuntimeOptions& options,
         const std::vector<std::string>& cgroup_dirs)
      : s_(setup),
        rings_(rings),
        options_(options),
        cgroup_dirs_(cgroup_dirs),
        p_(setup.progress) {}

  [[noreturn]] void Run() {
    Setup();
    Reconcile();
    StartStage();
    std::thread feeder([this] { Feed(); });
    feeder.detach();  // ends with the process; _exit below never joins it
    Drain();
  }

 private:
  void Setup() {
    for (const auto& dir : cgroup_dirs_) {
      int fd = open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) Die(kExitSetup, absl::StrCat("open ", dir, "/cgroup.procs: ", strerror(errno)));
      std::string pid = std::to_string(getpid());
      if (write(fd, pid.data(), pid.size()) < 0)
        Die(kExitSetup, absl::StrCat("join cgroup ", dir, ": ", strerror(errno)));
      close(fd);
    }
    if (options_.pin && !s_.cpus.empty()) {
      if (auto st = ApplyCpuAffinity(0, s_.cpus); !st.ok()) Die(kExitSetup, st.ToString());
    }
    signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < s_.inputs.size(); ++k) {
      consumers_.emplace_back(std::move(rings_[s_.inputs[k]].ring));
    }
    for (int r : s_.outputs) {
      auto producer = RingProducer::Resume(std::move(rings_[r].ring));
      if (!producer.ok()) Die(kExitChannel, producer.status().ToString());
      producers_.push_back(std::move(*producer));
    }
    if (!s_.output_file.empty()) {
      out_fd_ = open(s_.output_file.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (out_fd_ < 0)
        Die(kExitSetup, absl::StrCat("open ", s_.output_file, ": ", strerror(errno)));
    }
    if (s_.stateful) {
      journal_fd_ = open(s_.journal_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (journal_fd_ < 0)
        Die(kExitSetup, absl::StrCat("open ", s_.journal_file, ": ", strerror(errno)));
    }
  }

  // Settles the output a dead predecessor was publishing, then cuts the
  // sink file and the journal back to what is committed.
  void Reconcile() {
    if (p_->pending.load(std::memory_order_acquire) != 0) {
      bool published = false;
      if (p_->p_output == kToFile) {
        struct stat st {};
        if (fstat(out_fd_, &st) != 0) Die(kExitSetup, "fstat of the sink file failed");
        published = static_cast<uint64_t>(st.st_size) == p_->p_file_after;
      } else {
        published = producers_.at(p_->p_output).head() > p_->p_head_before;
      }
      if (published) ApplyPending(p_);
      p_->pending.store(0, std::memory_order_release);
    }
    if (out_fd_ >= 0) {
      uint64_t size = p_->file_committed.load();
      if (ftruncate(out_fd_, static_cast<off_t>(size)) != 0 ||
          lseek(out_fd_, static_cast<off_t>(size), SEEK_SET) < 0)
        Die(kExitSetup, absl::StrCat("truncate ", s_.output_file, ": ", strerror(errno)));
      file_size_ = size;
    }
    if (journal_fd_ >= 0) {
      uint64_t size = p_->journal_committed.load();
      if (ftruncate(journal_fd_, static_cast<off_t>(size)) != 0)
        Die(kExitSetup, absl::StrCat("truncate ", s_.journal_file, ": ", strerror(errno)));
      replay_.resize(size);
      size_t got = 0;
      while (got < size) {
        ssize_t n = pread(journal_fd_, replay_.data() + got, size - got, static_cast<off_t>(got));
        if (n <= 0) Die(kExitSetup, absl::StrCat("read ", s_.journal_file));
        got += static_cast<size_t>(n);
      }
      lseek(journal_fd_, static_cast<off_t>(size), SEEK_SET);
      journal_size_ = size;
    }
    for (size_t k = 0; k < consumers_.size(); ++k) start_[k] = p_->consumed[k].load();
    committed_ = p_->committed.load();
    published_ = p_->published.load();
    final_done_ = p_->final_published.load();
  }

  void StartStage() {
    int in[2] = {-1, -1}, out[2];
    const bool source = s_.inputs.empty();
    if (!source && pipe2(in, O_CLOEXEC) != 0) Die(kExitSetup, "pipe2 failed");
    if (pipe2(out, O_CLOEXEC) != 0) Die(kExitSetup, "pipe2 failed");
    const auto& argv_s = s_.def->code.argv;
    std::vector<char*> argv;
    for (const auto& a : argv_s) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::string records = std::to_string(options_.records);
    std::string shard_env = s_.def->id;
    std::string index_env = std::to_string(s_.def->index);
    const pid_t runner = getpid();
    pid_t pid = fork();
    if (pid < 0) Die(kExitSetup, "fork of the stage command failed");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != runner) _exit(1);  // the runner died before prctl
      signal(SIGPIPE, SIG_DFL);
      int null_fd = source ? open("/dev/null", O_RDONLY) : in[0];
      dup2(null_fd, 0);
      dup2(out[1], 1);
      if (!options_.stage_dir.empty() && chdir(options_.stage_dir.c_str()) != 0) _exit(126);
      if (options_.records > 0) setenv("FLOTILLA_RECORDS", records.c_str(), 1);
      setenv("FLOTILLA_SHARD", shard_env.c_str(), 1);
      setenv("FLOTILLA_SHARD_INDEX", index_env.c_str(), 1);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    p_->user_pid.store(pid);
    user_pid_ = pid;
    // Larger pipes: more records per wake-up of the stage and of the
    // runner, which is what a shard pays for when it shares CPUs with other
    // work (best effort: the limit is /proc/sys/fs/pipe-max-size).
    (void)fcntl(out[0], F_SETPIPE_SZ, kPipeBytes);
    if (!source) (void)fcntl(in[1], F_SETPIPE_SZ, kPipeBytes);
    close(out[1]);
    out_ = out[0];
    if (!source) {
      close(in[0]);
      in_ = in[1];
    } else {
      feeder_done_.store(true);
    }
  }

  // The feeder thread: replays the journal, then moves input records from
  // the rings into the stage's stdin, in batches, noting each in `inflight_`
  // before the stage can see it. Acknowledges on the rings what the main
  // thread committed (RingConsumer is single-threaded: only this thread
  // touches the consumers).
  void Feed() {
    if (in_ < 0) return;
    if (!replay_.empty()) {
      size_t lines = 0;
      for (char c : replay_) lines += c == '\n';
      {
        absl::MutexLock lock(&mu_);
        for (size_t i = 0; i < lines; ++i) inflight_.push_back(InFlight{});
      }
      if (!WriteAll(in_, replay_.data(), replay_.size()).ok()) return;
      std::string().swap(replay_);
    }
    std::vector<bool> closed(consumers_.size(), false);
    std::string batch;
    std::vector<InFlight> entries;
    std::vector<char> buf(64 << 10);
    size_t first = 0;
    bool napped = false;
    for (;;) {
      for (size_t k = 0; k < consumers_.size(); ++k) {
        uint64_t c = p_->consumed[k].load(std::memory_order_acquire);
        if (c > consumers_[k].acked_offset() && c <= consumers_[k].read_offset()) {
          (void)consumers_[k].Ack(c);
        }
      }
      batch.clear();
      entries.clear();
      for (size_t i = 0; i < consumers_.size() && batch.size() < kBatchBytes; ++i) {
        size_t k = (first + i) % consumers_.size();
        if (closed[k]) continue;
        for (int n = 0; n < 4096 && batch.size() < kBatchBytes; ++n) {
          auto got = consumers_[k].Read(buf.data(), buf.size(), std::chrono::nanoseconds(0));
          if (absl::IsDeadlineExceeded(got.status())) break;
          if (absl::IsOutOfRange(got.status())) {
            closed[k] = true;
            break;
          }
          if (!got.ok()) Die(kExitChannel, got.status().ToString());
          const uint64_t end = consumers_[k].read_offset();
          if (end <= start_[k]) continue;  // committed by an earlier incarnation
          batch.append(buf.data(), *got);
          batch.push_back('\n');
          if (s_.stateful) journal_size_ += *got + 1;
          entries.push_back(InFlight{static_cast<int>(k), end, journal_size_});
        }
      }
      first = (first + 1) % std::max<size_t>(1, consumers_.size());
      if (!batch.empty()) {
        // Journal before the stage sees the input: a commit then never
        // counts journal bytes that are not in the file.
        if (s_.stateful && !WriteAll(journal_fd_, batch.data(), batch.size()).ok())
          Die(kExitSetup, "journal write failed");
        {
          absl::MutexLock lock(&mu_);
          for (auto& e : entries) inflight_.push_back(e);
        }
        if (!WriteAll(in_, batch.data(), batch.size()).ok()) return;  // the stage died
        napped = false;
        continue;
      }
      bool all_closed = true;
      for (bool c : closed) all_closed = all_closed && c;
      if (all_closed) {
        // Before closing stdin: a line written after EOF must already
        // read as a final line to the main thread.
        feeder_done_.store(true, std::memory_order_release);
        close(in_);
        return;
      }
      // Coalesce before sleeping for real: a nap without the waiting flag
      // lets the next records pile up, where arming right away makes the
      // producer signal (and this thread wake) nearly once per record.
      // Costs up to options_.coalesce of latency per hop.
      if (!napped && options_.coalesce.count() > 0) {
        napped = true;
        struct timespec nap = {0, std::min<long>(options_.coalesce.count(), 999999) * 1000};
        nanosleep(&nap, nullptr);
        continue;
      }
      napped = false;
      std::vector<pollfd> fds;
      bool ready = false;
      for (size_t k = 0; k < consumers_.size(); ++k) {
        if (closed[k]) continue;
        ready = consumers_[k].ArmWait() || ready;
        fds.push_back(pollfd{consumers_[k].data_ready_fd(), POLLIN, 0});
      }
      // The main thread's commits wake us too (commit_wake_), so that the
      // acknowledgements they allow reach a producer waiting for space.
      fds.push_back(pollfd{commit_wake_, POLLIN, 0});
      feeder_sleeping_.store(true, std::memory_order_seq_cst);
      if (!ready && !commits_pending_.exchange(false)) poll(fds.data(), fds.size(), 50);
      feeder_sleeping_.store(false, std::memory_order_relaxed);
      uint64_t drained;
      (void)!read(commit_wake_, &drained, sizeof(drained));
      for (size_t k = 0; k < consumers_.size(); ++k) {
        if (!closed[k]) consumers_[k].DisarmWait();
      }
    }
  }

  // The main thread: reads the stage's output lines and commits each.
  [[noreturn]] void Drain() {
    std::string pending;
    std::vector<char> buf(kBatchBytes);
    for (;;) {
      ssize_t n = read(out_, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      pending.append(buf.data(), static_cast<size_t>(n));
      size_t at = 0;
      for (;;) {
        size_t nl = pending.find('\n', at);
        if (nl == std::string::npos) break;
        Line(std::string_view(pending).substr(at, nl - at));
        at = nl + 1;
      }
      pending.erase(0, at);
    }
    int status = 0;
    while (waitpid(user_pid_, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      Die(kExitStage,
          absl::StrCat("stage command of ", s_.def->id, " ended with status ",
                       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)));
    }
    if (!pending.empty()) Die(kExitProtocol, "stage output ends without a newline");
    {
      absl::MutexLock lock(&mu_);
      if (!inflight_.empty() || !feeder_done_.load())
        Die(kExitProtocol,
            absl::StrCat("stage command of ", s_.def->id, " exited with ", inflight_.size(),
                         " input lines unanswered (one output line per input line)"));
    }
    for (auto& producer : producers_) producer.Close();
    p_->done.store(1, std::memory_order_release);
    _exit(0);
  }

  void Line(std::string_view line) {
    std::optional<InFlight> entry;
    {
      absl::MutexLock lock(&mu_);
      if (!inflight_.empty()) {
        entry = inflight_.front();
        inflight_.pop_front();
      }
    }
    if (entry) {
      if (entry->input < 0) return;  // replayed from the journal: already published
      p_->p_input = static_cast<uint32_t>(entry->input);
      p_->p_input_end = entry->end;
      p_->p_journal_end = entry->journal_end;
    } else {
      if (!feeder_done_.load(std::memory_order_acquire)) {
        Die(kExitProtocol, absl::StrCat("stage command of ", s_.def->id,
                                        " wrote a line for no input (one line per input line)"));
      }
      const uint64_t index = final_seen_++;
      if (index < final_done_) return;  // published by an earlier incarnation
      p_->p_input = kFinalInput;
      p_->p_final_after = index + 1;
    }
    p_->p_committed_after = committed_ + 1;
    if (line.empty()) {
      p_->p_output = -1;
      p_->p_published_after = published_;
      ApplyPending(p_);  // no output: nothing to settle after a crash
    } else {
      Publish(line);
    }
    ++committed_;
    // Dekker with the feeder: it raises feeder_sleeping_ and then checks
    // commits_pending_; we set commits_pending_ and then check the flag.
    commits_pending_.store(true, std::memory_order_seq_cst);
    if (feeder_sleeping_.load(std::memory_order_seq_cst)) {
      uint64_t one = 1;
      (void)!write(commit_wake_, &one, sizeof(one));
    }
  }

  void Publish(std::string_view line) {
    p_->p_published_after = published_ + 1;
    if (out_fd_ >= 0) {
      p_->p_output = kToFile;
      p_->p_file_after = file_size_ + line.size() + 1;
      p_->pending.store(1, std::memory_order_release);
      std::string with_newline(line);
      with_newline.push_back('\n');
      if (!WriteAll(out_fd_, with_newline.data(), with_newline.size()).ok())
        Die(kExitSetup, absl::StrCat("write ", s_.output_file, ": ", strerror(errno)));
      file_size_ += with_newline.size();
    } else {
      if (producers_.empty()) Die(kExitProtocol, "no output");
      size_t j = Route(line);
      p_->p_output = static_cast<int32_t>(j);
      p_->p_head_before = producers_[j].head();
      p_->pending.store(1, std::memory_order_release);
      // TryWrite first: Write reads the clock for its deadline on every call.
      absl::Status st = producers_[j].TryWrite(line);
      if (absl::IsResourceExhausted(st)) st = producers_[j].Write(line, std::chrono::seconds(120));
      if (!st.ok()) Die(kExitChannel, absl::StrCat(s_.def->id, ": ", st.ToString()));
    }
    ApplyPending(p_);
    p_->pending.store(0, std::memory_order_release);
    ++published_;
  }

  size_t Route(std::string_view line) {
    if (s_.routing != Routing::kKey) return rr_++ % producers_.size();
    size_t tab = line.find('\t');
    int partition = PartitionOf(line.substr(0, tab), s_.next_partitions);
    for (size_t j = 0; j < s_.output_ranges.size(); ++j) {
      if (partition >= s_.output_ranges[j].begin && partition < s_.output_ranges[j].end) return j;
    }
    Die(kExitProtocol, absl::StrCat("no shard owns partition ", partition));
  }

  ShardSetup& s_;
  std::vector<Ring>& rings_;
  const RuntimeOptions& options_;
  const std::vector<std::string>& cgroup_dirs_;
  ShardProgress* p_;
  std::vector<RingConsumer> consumers_;
  std::vector<RingProducer> producers_;
  uint64_t start_[kMaxInputs] = {};
  int out_fd_ = -1, journal_fd_ = -1;
  uint64_t file_size_ = 0, journal_size_ = 0;
  std::string replay_;
  pid_t user_pid_ = -1;
  int in_ = -1, out_ = -1;
  absl::Mutex mu_;
  std::deque<InFlight> inflight_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> feeder_done_{false};
  int commit_wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::atomic<bool> feeder_sleeping_{false};
  std::atomic<bool> commits_pending_{false};
  uint64_t committed_ = 0, published_ = 0, final_done_ = 0, final_seen_ = 0;
  size_t rr_ = 0;
};

// ---- The supervisor.

class Supervisor {
 public:
  Supervisor(const ComponentSpec& spec, const ShardPlan& plan, const NodePlacement& placement,
             const RuntimeOptions& options)
      : spec_(spec), plan_(plan), placement_(placement), options_(options) {}

  ~Supervisor() { Teardown(); }

  absl::StatusOr<RunReport> Run() {
    RETURN_IF_ERROR(Build());
    RETURN_IF_ERROR(MakeCgroup());
    prctl(PR_GET_CHILD_SUBREAPER, &was_subreaper_);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    start_ = Clock::now();
    for (size_t i = 0; i < shards_.size(); ++i) RETURN_IF_ERROR(Start(i));
    absl::Status st = Loop();
    WriteStatus(st.ok() ? "done" : "failed");
    RETURN_IF_ERROR(st);
    return Report();
  }

 private:
  absl::Status Build() {
    std::error_code ec;
    fs::create_directories(options_.work_dir, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("create ", options_.work_dir, ": ", ec.message()));
    std::map<std::string, std::vector<int>> by_stage;
    shards_.resize(plan_.shards.size());
    for (size_t i = 0; i < plan_.shards.size(); ++i) {
      const auto& def = plan_.shards[i];
      shards_[i].def = &def;
      by_stage[def.stage].push_back(static_cast<int>(i));
      for (const auto& placed : placement_.shards) {
        if (placed.shard == def.id) shards_[i].cpus = placed.cpus;
      }
      const Stage* stage = spec_.FindStage(def.stage);
      shards_[i].stateful = stage != nullptr && stage->state.has_value();
      std::string base = absl::StrCat(options_.work_dir, "/", def.stage, ".", def.index);
      if (shards_[i].stateful) shards_[i].journal_file = base + ".journal";
      // Leftovers of an earlier run in the same directory would be replayed.
      fs::remove(base + ".journal", ec);
    }
    ring_options_.capacity_bytes = options_.ring_bytes;
    // No spinning: shards share few cores, and a spinning reader takes the
    // core from the writer it waits for.
    ring_options_.spin_iterations = 0;
    for (const auto& edge : spec_.edges) {
      const Stage* to = spec_.FindStage(edge.to);
      for (int from : by_stage[edge.from]) {
        shards_[from].routing = edge.routing;
        shards_[from].next_partitions = to->partitions;
        for (int t : by_stage[edge.to]) {
          auto ring = ShmRing::Create(ring_options_);
          if (!ring.ok()) return ring.status();
          rings_.push_back(Ring{from, t, std::move(*ring)});
          int r = static_cast<int>(rings_.size() - 1);
          shards_[from].outputs.push_back(r);
          shards_[from].output_ranges.push_back(shards_[t].def->partitions);
          shards_[t].inputs.push_back(r);
        }
      }
    }
    for (auto& s : shards_) {
      if (s.inputs.size() > kMaxInputs) {
        return absl::InvalidArgumentError(absl::StrCat("shard ", s.def->id, " has ",
                                                       s.inputs.size(), " input channels; at most ",
                                                       kMaxInputs, " are supported"));
      }
      if (s.outputs.empty()) {
        s.output_file =
            absl::StrCat(options_.work_dir, "/", s.def->stage, ".", s.def->index, ".out");
        std::error_code ignored;
        fs::remove(s.output_file, ignored);
      }
    }
    progress_bytes_ = sizeof(ShardProgress) * shards_.size();
    void* map =
        mmap(nullptr, progress_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return ErrnoError(errno, "mmap", "shard progress records");
    progress_ = static_cast<ShardProgress*>(map);
    for (size_t i = 0; i < shards_.size(); ++i) {
      new (&progress_[i]) ShardProgress();
      shards_[i].progress = &progress_[i];
    }
    return absl::OkStatus();
  }

  absl::Status MakeCgroup() {
    if (!options_.use_cgroup) return absl::OkStatus();
    auto host = sandbox::isolation::DetectCgroupHost("/proc", "/sys/fs/cgroup");
    if (!host.ok()) {
      Event(absl::StrCat("no cgroup for the shards: ", host.status().message()));
      return absl::OkStatus();
    }
    auto set = sandbox::isolation::CgroupSet::Create(
        *host, "flotilla", absl::StrCat("component-", spec_.name, "-", getpid()),
        sandbox::isolation::CgroupLimits{});
    if (!set.ok()) {
      Event(absl::StrCat("no cgroup for the shards: ", set.status().message()));
      return absl::OkStatus();
    }
    cgroup_ = std::move(*set);
    cgroup_dirs_ = cgroup_->Dirs();
    return absl::OkStatus();
  }

  absl::Status Start(size_t i) {
    ShardSetup& s = shards_[i];
    pid_t pid = fork();
    if (pid < 0) return ErrnoError(errno, "fork", s.def->id);
    if (pid == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != supervisor_pid_) _exit(kExitSetup);
      Runner(s, rings_, options_, cgroup_dirs_).Run();
    }
    setpgid(pid, pid);  // also here: a kill right after the fork must find the group
    s.pid = pid;
    pgroups_.insert(pid);
    return absl::OkStatus();
  }

  void Event(const std::string& line) {
    if (options_.on_event) options_.on_event(line);
  }

  double MsSince(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  }

  absl::Status Loop() {
    const auto deadline = start_ + options_.deadline;
    bool injected = false;
    std::optional<size_t> recovering;  // index into recoveries_ awaiting its first commit
    Clock::time_point recovery_start;
    uint64_t committed_at_restart = 0;
    for (;;) {
      for (size_t i = 0; i < shards_.size(); ++i) {
        ShardSetup& s = shards_[i];
        if (s.finished || s.pid < 0) continue;
        int status = 0;
        pid_t r = waitpid(s.pid, &status, WNOHANG);
        if (r != s.pid) continue;
        orphans_.push_back(s.progress->user_pid.exchange(0));
        scan_adopted_ = true;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && s.progress->done.load() != 0) {
          s.finished = true;
          s.pid = -1;
          end_ = Clock::now();
          continue;
        }
        s.last_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        s.pid = -1;
        const bool was_injected = kill_outstanding_ && options_.kill_shard == s.def->id;
        kill_outstanding_ = false;
        if (++s.restarts > options_.max_restarts) {
          return absl::AbortedError(absl::StrCat("shard ", s.def->id, " died ", s.restarts,
                                                 " times; last exit status ", s.last_status));
        }
        RecoveryEvent ev;
        ev.shard = s.def->id;
        ev.injected = was_injected;
        ev.committed_at_kill = s.progress->committed.load();
        auto since = was_injected ? kill_time_ : Clock::now();
        RETURN_IF_ERROR(Start(i));
        ev.restart_ms = MsSince(since);
        recoveries_.push_back(ev);
        recovering = recoveries_.size() - 1;
        recovery_start = since;
        recovering_shard_ = i;
        committed_at_restart = ev.committed_at_kill;
        Event(absl::StrCat("shard ", s.def->id, " died (status ", s.last_status, ") after ",
                           ev.committed_at_kill, " committed records; restarted in ",
                           absl::StrFormat("%.1f", ev.restart_ms), " ms"));
      }
      if (recovering) {
        const ShardSetup& s = shards_[recovering_shard_];
        if (s.progress->committed.load() > committed_at_restart || s.finished) {
          recoveries_[*recovering].resume_ms = MsSince(recovery_start);
          Event(absl::StrCat("shard ", s.def->id, " resumed: first record committed ",
                             absl::StrFormat("%.1f", recoveries_[*recovering].resume_ms),
                             " ms after it died"));
          recovering.reset();
        }
      }
      if (!injected && !options_.kill_shard.empty()) {
        for (auto& s : shards_) {
          if (s.def->id != options_.kill_shard || s.pid < 0) continue;
          if (s.progress->committed.load() >= static_cast<uint64_t>(options_.kill_after)) {
            kill_time_ = Clock::now();
            kill(-s.pid, SIGKILL);
            injected = true;
            kill_outstanding_ = true;
            Event(absl::StrCat("killed shard ", s.def->id, " (pid ", s.pid, ") after ",
                               s.progress->committed.load(), " committed records"));
          }
        }
      }
      ReapOrphans();
      if (Clock::now() - last_status_ > std::chrono::milliseconds(250)) WriteStatus("running");
      bool all = true;
      for (const auto& s : shards_) all = all && s.finished;
      if (all) {
        // Journals only serve restarts; the sink outputs are the result.
        std::error_code ignored;
        for (const auto& s : shards_) {
          if (!s.journal_file.empty()) fs::remove(s.journal_file, ignored);
        }
        return absl::OkStatus();
      }
      if (Clock::now() > deadline) {
        std::vector<std::string> running;
        for (const auto& s : shards_) {
          if (!s.finished) running.push_back(s.def->id);
        }
        return absl::DeadlineExceededError(absl::StrCat(
            "component ", spec_.name, " did not finish within ", options_.deadline.count(),
            " ms; still running: ", absl::StrJoin(running, ", ")));
      }
      poll(nullptr, 0, 1);
    }
  }

  // Children of ours in one of our shards' process groups that we never
  // forked: a stage command's own children (a pyenv shim's helpers, a
  // shell's pipeline), reparented to us, the subreaper, when their parent
  // died. Read from /proc/<pid>/task/<tid>/children.
  std::vector<pid_t> AdoptedChildren() {
    std::vector<pid_t> found;
    std::error_code ec;
    const std::string task_dir = absl::StrCat("/proc/", getpid(), "/task");
    for (const auto& task : fs::directory_iterator(task_dir, ec)) {
      std::ifstream children(task.path() / "children");
      pid_t pid;
      while (children >> pid) {
        std::ifstream stat_file(absl::StrCat("/proc/", pid, "/stat"));
        std::string stat((std::istreambuf_iterator<char>(stat_file)), {});
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so parse
        // after its closing parenthesis.
        size_t close_paren = stat.rfind(')');
        if (close_paren == std::string::npos) continue;
        std::istringstream rest(stat.substr(close_paren + 1));
        std::string state;
        pid_t ppid = 0, pgrp = 0;
        rest >> state >> ppid >> pgrp;
        // Not a runner: the supervisor loop reaps those, and needs their status.
        bool runner = false;
        for (const auto& s : shards_) runner = runner || s.pid == pid;
        if (pgroups_.count(pgrp) != 0 && !runner) found.push_back(pid);
      }
    }
    return found;
  }

  // Writes the status snapshot (RuntimeOptions::status_file): to a
  // temporary file, then rename, so a reader never sees half of one.
  void WriteStatus(const std::string& state) {
    last_status_ = Clock::now();
    if (options_.status_file.empty()) return;
    std::string json = absl::StrCat(
        "{\"component\": \"", spec_.name, "\", \"state\": \"", state,
        "\", \"supervisor_pid\": ", supervisor_pid_,
        ", \"elapsed_s\": ", std::chrono::duration<double>(Clock::now() - start_).count(),
        ", \"shards\": [");
    for (size_t i = 0; i < shards_.size(); ++i) {
      const ShardSetup& s = shards_[i];
      absl::StrAppend(&json, i ? ", " : "", "{\"id\": \"", s.def->id, "\", \"pid\": ", s.pid,
                      ", \"cpus\": [", absl::StrJoin(s.cpus, ", "), "], \"restarts\": ", s.restarts,
                      ", \"committed\": ", s.progress->committed.load(),
                      ", \"published\": ", s.progress->published.load(),
                      ", \"finished\": ", s.finished ? "true" : "false", "}");
    }
    absl::StrAppend(&json, "], \"recoveries\": [");
    for (size_t i = 0; i < recoveries_.size(); ++i) {
      const RecoveryEvent& r = recoveries_[i];
      absl::StrAppend(&json, i ? ", " : "", "{\"shard\": \"", r.shard,
                      "\", \"injected\": ", r.injected ? "true" : "false",
                      ", \"restart_ms\": ", r.restart_ms, ", \"resume_ms\": ", r.resume_ms, "}");
    }
    absl::StrAppend(&json, "]}\n");
    const std::string tmp = options_.status_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << json;
      if (!out) return;
    }
    std::error_code ignored;
    fs::rename(tmp, options_.status_file, ignored);
  }

  void ReapOrphans() {
    // Reading /proc costs ~50 µs; only a death can leave adopted children.
    if (!scan_adopted_) return;
    for (pid_t pid : AdoptedChildren()) {
      if (std::find(orphans_.begin(), orphans_.end(), pid) == orphans_.end()) {
        orphans_.push_back(pid);
      }
    }
    for (size_t i = 0; i < orphans_.size();) {
      int status;
      pid_t pid = orphans_[i];
      // ECHILD while the process lives in one of our groups: its runner
      // died but the kernel has not reparented it to us (the subreaper)
      // yet; keep waiting. Alive elsewhere: the pid was reused; drop it.
      bool gone = pid <= 0 || waitpid(pid, &status, WNOHANG) == pid ||
                  (errno == ECHILD && pgroups_.count(getpgid(pid)) == 0);
      if (gone) {
        orphans_.erase(orphans_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    if (orphans_.empty()) scan_adopted_ = false;
  }

  RunReport Report() {
    RunReport report;
    for (const auto& s : shards_) {
      ShardRunInfo info;
      info.id = s.def->id;
      info.cpus = s.cpus;
      info.restarts = s.restarts;
      info.committed = s.progress->committed.load();
      info.published = s.progress->published.load();
      info.output_file = s.output_file;
      if (s.inputs.empty()) report.source_records += info.published;
      if (!s.output_file.empty()) report.output_files.push_back(s.output_file);
      report.shards.push_back(info);
    }
    report.recoveries = recoveries_;
    report.elapsed_s = std::chrono::duration<double>(end_ - start_).count();
    report.records_per_s =
        report.elapsed_s > 0 ? static_cast<double>(report.source_records) / report.elapsed_s : 0;
    report.cgroup_dirs = cgroup_dirs_;
    return report;
  }

  // Kills every runner's process group, reaps runners and stage commands
  // (bounded), removes the cgroup and unmaps the progress records.
  void Teardown() {
    for (auto& s : shards_) {
      if (s.pid > 0) {
        kill(-s.pid, SIGKILL);
        orphans_.push_back(s.progress->user_pid.load());
      }
    }
    scan_adopted_ = true;
    const auto until = Clock::now() + std::chrono::seconds(5);
    for (auto& s : shards_) {
      if (s.pid <= 0) continue;
      int status;
      while (waitpid(s.pid, &status, WNOHANG) == 0 && Clock::now() < until) poll(nullptr, 0, 1);
      s.pid = -1;
    }
    for (;;) {
      ReapOrphans();
      if (orphans_.empty() || Clock::now() >= until) break;
      poll(nullptr, 0, 1);
    }
    if (cgroup_) {
      (void)cgroup_->Remove(std::chrono::seconds(2));
      cgroup_.reset();
    }
    if (progress_ != nullptr) {
      munmap(progress_, progress_bytes_);
      progress_ = nullptr;
    }
    if (subreaper_set_) prctl(PR_SET_CHILD_SUBREAPER, was_subreaper_);
  }

  const ComponentSpec& spec_;
  const ShardPlan& plan_;
  const NodePlacement& placement_;
  const RuntimeOptions& options_;
  RingOptions ring_options_;
  std::vector<ShardSetup> shards_;
  std::vector<Ring> rings_;
  ShardProgress* progress_ = nullptr;
  size_t progress_bytes_ = 0;
  std::unique_ptr<sandbox::isolation::CgroupSet> cgroup_;
  std::vector<std::string> cgroup_dirs_;
  std::vector<pid_t> orphans_;
  std::set<pid_t> pgroups_;
  bool scan_adopted_ = false;  // every runner's process group, past ones too
  std::vector<RecoveryEvent> recoveries_;
  bool kill_outstanding_ = false;  // injected kill not yet seen as a death
  size_t recovering_shard_ = 0;
  Clock::time_point start_, end_, kill_time_, last_status_;
  pid_t supervisor_pid_ = getpid();
  int was_subreaper_ = 0;
  bool subreaper_set_ = true;
};

}  // namespace

int PartitionOf(std::string_view key, int partitions) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return partitions <= 1 ? 0 : static_cast<int>(h % static_cast<uint64_t>(partitions));
}

absl::Status ValidateForRuntime(const ComponentSpec& spec) {
  std::map<std::string, int> out_edges;
  for (const auto& stage : spec.stages) {
    if (stage.code.kind != CodeKind::kCommand || stage.code.argv.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stage ", stage.name,
                       ": the local runtime runs command stages only (code: {command: "
                       "[...]}); wrap a Python function in a small script"));
    }
  }
  for (const auto& edge : spec.edges) {
    if (edge.routing == Routing::kBroadcast) {
      return absl::InvalidArgumentError(
          absl::StrCat("edge ", edge.from, " -> ", edge.to,
                       ": broadcast routing is not supported by the local runtime yet"));
    }
    if (++out_edges[edge.from] > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stage ", edge.from,
          " has more than one output edge; the local runtime supports one (one input line "
          "yields at most one record, which is what makes a commit atomic)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RunReport> RunComponent(const ComponentSpec& spec, const ShardPlan& plan,
                                       const NodePlacement& placement,
                                       const RuntimeOptions& options) {
  RETURN_IF_ERROR(ValidateForRuntime(spec));
  if (options.work_dir.empty())
    return absl::InvalidArgumentError("RuntimeOptions.work_dir is empty");
  Supervisor supervisor(spec, plan, placement, options);
  return supervisor.Run();
}

}  // namespace flotilla::shard
