// Migration end to end, with real CRIU: two agents, a running task moved
// from one to the other by checkpoint and restore, a migration failing at
// each step (through the agents' and manager's fault hooks), a CRIU that
// hangs in the dump (killed at its deadline; the task carries on), and
// nodes whose checkpointing is unavailable (never a source or a target).
// Every test first waits for the agents' checkpoint probes and skips,
// naming the probe's reason, where checkpointing does not work.
#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "support/federation_harness.h"

namespace flotilla::testing {
namespace {

const char kCheckpointConfig[] = "checkpoint:\n  fault_injection: true\n";

// Counts the processes on this host whose environment names the execution:
// every process of a task started by exec carries FLOTILLA_EXECUTION_ID.
int LiveCopies(const std::string& id, const std::string& comm) {
  const std::string needle = "FLOTILLA_EXECUTION_ID=" + id + std::string(1, '\0');
  int n = 0;
  DIR* d = opendir("/proc");
  if (!d) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const std::string base = std::string("/proc/") + e->d_name;
    std::ifstream c(base + "/comm");
    std::string name;
    std::getline(c, name);
    if (name != comm) continue;
    std::ifstream env(base + "/environ", std::ios::binary);
    std::stringstream ss;
    ss << env.rdbuf();
    if (ss.str().find(needle) != std::string::npos) ++n;
  }
  closedir(d);
  return n;
}

// Collects a Watch stream on a thread of its own.
class Watcher {
 public:
  Watcher(FederationHarness& h, const std::string& id) {
    thread_ = std::thread([this, &h, id] {
      v1::WatchRequest req;
      req.set_execution_id(id);
      req.set_output(true);
      ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(90));
      auto reader = h.stub()->Watch(&ctx_, req);
      v1::WatchEvent ev;
      while (reader->Read(&ev)) {
        std::lock_guard<std::mutex> lock(mu_);
        if (ev.has_output() && ev.output().stream() == v1::OUTPUT_STDOUT) {
          if (ev.output().offset() == static_cast<int64_t>(stdout_.size())) {
            stdout_ += ev.output().data();
          } else {
            gaps_ = true;
          }
        }
        if (!ev.node_id().empty() && (nodes_.empty() || nodes_.back() != ev.node_id())) {
          nodes_.push_back(ev.node_id());
        }
        if (ev.has_execution()) final_ = ev.execution();
      }
      reader->Finish();
      done_ = true;
    });
  }
  ~Watcher() {
    ctx_.TryCancel();
    thread_.join();
  }
  std::string out() {
    std::lock_guard<std::mutex> lock(mu_);
    return stdout_;
  }
  std::vector<std::string> nodes() {
    std::lock_guard<std::mutex> lock(mu_);
    return nodes_;
  }
  bool gaps() {
    std::lock_guard<std::mutex> lock(mu_);
    return gaps_;
  }
  bool WaitDone(std::chrono::seconds t) {
    return FederationHarness::WaitUntil(t, [&] { return done_.load(); });
  }
  std::optional<v1::Execution> final_execution() {
    std::lock_guard<std::mutex> lock(mu_);
    return final_;
  }

 private:
  grpc::ClientContext ctx_;
  std::mutex mu_;
  std::string stdout_;
  std::vector<std::string> nodes_;
  bool gaps_ = false;
  std::optional<v1::Execution> final_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

class MigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes and CRIU need root";
    h_.StartManager(3000);
    for (const char* id : {"mig-a", "mig-b"}) {
      AgentSpec a;
      a.id = id;
      a.region = std::string("r-") + id;
      a.extra_config = kCheckpointConfig;
      h_.StartAgent(a);
    }
    ASSERT_TRUE(h_.WaitOnline(2));
    // The agents prove checkpointing with a real dump and restore at start;
    // where that fails (or hangs), say so and skip rather than hang.
    if (std::string why = h_.WaitCheckpointSettled({"mig-a", "mig-b"}); !why.empty()) {
      GTEST_SKIP() << "CHECKPOINTING IS NOT AVAILABLE, skipping: " << why;
    }
  }

  // Steered to mig-a by a preferred region (a required one would also rule
  // mig-b out as a migration target), so the test knows where it starts.
  std::string SubmitOnA(v1::ExecutionRequest r) {
    r.mutable_placement()->add_preferred_regions("r-mig-a");
    r.set_timeout_ms(60000);
    v1::SubmitResponse resp;
    EXPECT_TRUE(h_.Submit(r, &resp).ok());
    return resp.execution().id();
  }

  grpc::Status Migrate(const std::string& id, const std::string& to, const std::string& fail_after,
                       v1::MigrateResponse* resp) {
    v1::MigrateRequest req;
    req.set_execution_id(id);
    req.set_target_node_id(to);
    req.set_fail_after(fail_after);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return h_.stub()->Migrate(&ctx, req, resp);
  }

  FederationHarness h_;
};

TEST_F(MigrationTest, PythonProcessKeepsItsMemoryAndOpenFileOnAnotherAgent) {
  v1::ExecutionRequest r;
  r.set_user_id("tester");
  r.mutable_code()->set_runtime("python3");
  // In-memory state (a dict and a list built before the move) and an open
  // file whose content and offset must survive it.
  r.mutable_code()->set_source(
      "import time\n"
      "state = {'ticks': 0, 'data': [i * i for i in range(100000)]}\n"
      "f = open('progress.txt', 'w+')\n"
      "for i in range(40):\n"
      "    state['ticks'] += 1\n"
      "    f.write('line %d\\n' % i)\n"
      "    f.flush()\n"
      "    print('tick', i, flush=True)\n"
      "    time.sleep(0.1)\n"
      "pos = f.tell()\n"
      "f.seek(0)\n"
      "lines = f.read().splitlines()\n"
      "print('done', state['ticks'], sum(state['data']), len(lines), lines[-1], pos, flush=True)\n");
  const std::string id = SubmitOnA(r);
  Watcher w(h_, id);
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    return w.out().find("tick 5\n") != std::string::npos;
  })) << w.out();

  v1::MigrateResponse m;
  grpc::Status st = Migrate(id, "mig-b", "", &m);
  ASSERT_TRUE(st.ok()) << st.error_message() << "\n" << h_.ReadLog("mig-a.log") << h_.ReadLog("mig-b.log");
  EXPECT_EQ(m.from_node_id(), "mig-a");
  EXPECT_EQ(m.to_node_id(), "mig-b");
  EXPECT_GT(m.image_bytes(), 1 << 20);
  EXPECT_GT(m.restore_us(), 0);
  EXPECT_EQ(m.execution().node_id(), "mig-b");
  std::printf("migration: image %lld bytes, checkpoint %lld ms, transfer %lld ms, restore %lld ms, "
              "total %lld ms\n",
              static_cast<long long>(m.image_bytes()), static_cast<long long>(m.checkpoint_us() / 1000),
              static_cast<long long>(m.transfer_us() / 1000), static_cast<long long>(m.restore_us() / 1000),
              static_cast<long long>(m.total_us() / 1000));

  ASSERT_TRUE(w.WaitDone(std::chrono::seconds(60)));
  auto e = w.final_execution();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state(), v1::EXECUTION_SUCCEEDED) << e->error() << e->result().stderr();
  EXPECT_EQ(e->node_id(), "mig-b");
  EXPECT_EQ(e->attempt(), 1u);  // the same attempt, moved
  std::string expected;
  for (int i = 0; i < 40; ++i) expected += "tick " + std::to_string(i) + "\n";
  const int64_t sum = [] {
    int64_t s = 0;
    for (int64_t i = 0; i < 100000; ++i) s += i * i;
    return s;
  }();
  // 40 lines of "line N\n": 10 × 7 + 30 × 8 bytes.
  expected += "done 40 " + std::to_string(sum) + " 40 line 39 310\n";
  EXPECT_EQ(e->result().stdout(), expected);  // whole output: before and after the move
  // The watch saw each byte once, in order, on both sides of the move (the
  // last event carries the rest in the final execution).
  EXPECT_EQ(expected.rfind(w.out(), 0), 0u) << w.out();
  EXPECT_NE(w.out().find("tick 39\n"), std::string::npos) << w.out();
  EXPECT_FALSE(w.gaps());
  EXPECT_EQ(w.nodes(), (std::vector<std::string>{"mig-a", "mig-b"}));
}

TEST_F(MigrationTest, FailureAtEachStepLeavesExactlyTheSourceRunning) {
  for (const std::string step : {"checkpoint", "transfer", "restore", "switch"}) {
    SCOPED_TRACE(step);
    const std::string id = SubmitOnA(FederationHarness::Shell(
        "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo end\n"));
    Watcher w(h_, id);
    ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
      return w.out().find("tick 3\n") != std::string::npos;
    }));
    v1::MigrateResponse m;
    grpc::Status st = Migrate(id, "mig-b", step, &m);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error_message().find("carries on on mig-a"), std::string::npos) << st.error_message();
    v1::Execution now;
    ASSERT_TRUE(h_.Get(id, &now).ok());
    EXPECT_EQ(now.node_id(), "mig-a");
    // One shell, the source's: no restored copy lingers on mig-b.
    EXPECT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(5),
                                             [&] { return LiveCopies(id, "sh") == 1; }))
        << LiveCopies(id, "sh");
    ASSERT_TRUE(w.WaitDone(std::chrono::seconds(40)));
    auto e = w.final_execution();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->state(), v1::EXECUTION_SUCCEEDED) << e->error();
    EXPECT_EQ(e->node_id(), "mig-a");
    std::string expected;
    for (int i = 0; i < 30; ++i) expected += "tick " + std::to_string(i) + "\n";
    EXPECT_EQ(e->result().stdout(), expected + "end\n");
    EXPECT_EQ(LiveCopies(id, "sh"), 0);
  }
}

TEST_F(MigrationTest, TargetMustPassThePlacementFilters) {
  v1::ExecutionRequest r = FederationHarness::Shell("sleep 20");
  r.mutable_placement()->add_required_regions("r-mig-a");
  r.set_timeout_ms(60000);
  v1::SubmitResponse sub;
  ASSERT_TRUE(h_.Submit(r, &sub).ok());
  const std::string id = sub.execution().id();
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    v1::Execution e;
    return h_.Get(id, &e).ok() && e.state() == v1::EXECUTION_RUNNING;
  }));
  v1::MigrateResponse resp;
  grpc::Status st = Migrate(id, "mig-b", "", &resp);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error_message().find("cannot take execution"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("r-mig-a"), std::string::npos) << st.error_message();
  v1::Execution e;
  ASSERT_TRUE(h_.Get(id, &e).ok());
  EXPECT_EQ(e.node_id(), "mig-a");
  v1::CancelResponse c;
  (void)h_.Cancel(id, &c);
}

TEST_F(MigrationTest, CheckpointSnapshotLetsTheTaskCarryOn) {
  const std::string id = SubmitOnA(FederationHarness::Shell(
      "i=0; while [ $i -lt 15 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done\n"));
  Watcher w(h_, id);
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    return w.out().find("tick 2\n") != std::string::npos;
  }));
  v1::CheckpointRequest req;
  req.set_execution_id(id);
  v1::CheckpointResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  grpc::Status st = h_.stub()->Checkpoint(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.node_id(), "mig-a");
  EXPECT_GT(resp.image_bytes(), 0);
  ASSERT_TRUE(w.WaitDone(std::chrono::seconds(40)));
  auto e = w.final_execution();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state(), v1::EXECUTION_SUCCEEDED);
  std::string expected;
  for (int i = 0; i < 15; ++i) expected += "tick " + std::to_string(i) + "\n";
  EXPECT_EQ(e->result().stdout(), expected);
}

// A criu that behaves like the real one (it is the real one) except that a
// dump of a sandbox (its init is flotilla-guest) hangs, as CRIU 4.1.1 does on
// some hosts. The agents' probes (a dump of `sleep`) still pass with it.
class HangingSandboxDumps {
 public:
  HangingSandboxDumps() {
    char tmpl[] = "/tmp/flotilla-hang-criu-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream out(path());
    // -p: dumps run with the sandbox's real uid and effective uid 0, and
    // dash would otherwise drop to the real one (and criu with it).
    out << "#!/bin/sh -p\n"
        << "if [ \"$1\" = dump ]; then\n"
        << "  prev=; pid=\n"
        << "  for a in \"$@\"; do [ \"$prev\" = -t ] && pid=$a; prev=$a; done\n"
        << "  if [ \"$(cat /proc/$pid/comm 2>/dev/null)\" = flotilla-guest ]; then\n"
        << "    echo $$ > " << dir_ << "/hung\n"
        << "    exec sleep 1000\n"
        << "  fi\n"
        << "fi\n"
        << "exec /usr/local/sbin/criu \"$@\"\n";
    out.close();
    chmod(path().c_str(), 0755);
  }
  ~HangingSandboxDumps() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path() const { return dir_ + "/criu"; }
  // The pid of the hung dump, or 0 if none hung yet.
  int HungPid() const {
    std::ifstream in(dir_ + "/hung");
    int pid = 0;
    in >> pid;
    return pid;
  }

 private:
  std::string dir_;
};

bool Alive(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  return in && close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

grpc::Status MigrateTo(FederationHarness& h, const std::string& id, const std::string& to) {
  v1::MigrateRequest req;
  req.set_execution_id(id);
  req.set_target_node_id(to);
  v1::MigrateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  return h.stub()->Migrate(&ctx, req, &resp);
}

TEST(MigrationHangTest, HungDumpIsKilledAtItsDeadlineAndTheTaskFinishesOnItsSource) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes and CRIU need root";
  HangingSandboxDumps criu;
  FederationHarness h;
  h.StartManager(3000);
  AgentSpec a;
  a.id = "hang-a";
  a.region = "r-hang-a";
  a.extra_config = "checkpoint:\n  criu_path: " + criu.path() +
                   "\n  timeout_floor_ms: 1500\n  timeout_cap_ms: 1500\n";
  h.StartAgent(a);
  AgentSpec b;
  b.id = "hang-b";
  b.region = "r-hang-b";
  h.StartAgent(b);
  ASSERT_TRUE(h.WaitOnline(2));
  if (std::string why = h.WaitCheckpointSettled({"hang-a", "hang-b"}); !why.empty()) {
    GTEST_SKIP() << "CHECKPOINTING IS NOT AVAILABLE, skipping: " << why;
  }
  v1::ExecutionRequest r = FederationHarness::Shell(
      "i=0; while [ $i -lt 30 ]; do echo tick $i; i=$((i+1)); sleep 0.1; done; echo end\n");
  r.mutable_placement()->add_preferred_regions("r-hang-a");
  r.set_timeout_ms(60000);
  v1::SubmitResponse submitted;
  ASSERT_TRUE(h.Submit(r, &submitted).ok());
  const std::string id = submitted.execution().id();
  Watcher w(h, id);
  ASSERT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
    return w.out().find("tick 3\n") != std::string::npos;
  })) << w.out();

  const auto start = std::chrono::steady_clock::now();
  grpc::Status st = MigrateTo(h, id, "hang-b");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << st.error_message();
  EXPECT_NE(st.error_message().find("criu dump did not finish within 1.5 s"), std::string::npos)
      << st.error_message();
  EXPECT_NE(st.error_message().find("carries on on hang-a"), std::string::npos) << st.error_message();
  EXPECT_LT(took, std::chrono::seconds(10));
  const int hung = criu.HungPid();
  ASSERT_GT(hung, 0) << "the fake criu never hung: " << h.ReadLog("hang-a.log");
  EXPECT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(2), [&] { return !Alive(hung); }))
      << "the hung criu " << hung << " outlived its deadline";

  // Resumed where it was: every tick once, in order, on its source.
  ASSERT_TRUE(w.WaitDone(std::chrono::seconds(40)));
  auto e = w.final_execution();
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state(), v1::EXECUTION_SUCCEEDED) << e->error();
  EXPECT_EQ(e->node_id(), "hang-a");
  std::string expected;
  for (int i = 0; i < 30; ++i) expected += "tick " + std::to_string(i) + "\n";
  EXPECT_EQ(e->result().stdout(), expected + "end\n");
}

TEST(MigrationRefusalTest, NodesThatCannotCheckpointAreNeitherSourceNorTarget) {
  if (geteuid() != 0) GTEST_SKIP() << "Linux sandboxes need root";
  FederationHarness h;
  h.StartManager(3000);
  AgentSpec ok;
  ok.id = "can";
  ok.region = "r-can";
  h.StartAgent(ok);
  AgentSpec no;
  no.id = "cannot";
  no.region = "r-cannot";
  no.extra_config = "checkpoint:\n  criu_path: /nonexistent/criu\n";
  h.StartAgent(no);
  ASSERT_TRUE(h.WaitOnline(2));
  const std::string why = h.WaitCheckpointSettled({"can", "cannot"});
  ASSERT_NE(why.find("cannot: criu is not installed at /nonexistent/criu"), std::string::npos) << why;
  if (why.find("can:") != std::string::npos) {
    GTEST_SKIP() << "CHECKPOINTING IS NOT AVAILABLE, skipping: " << why;
  }
  auto submit = [&](const std::string& region) {
    v1::ExecutionRequest r = FederationHarness::Shell("sleep 20\n");
    r.mutable_placement()->add_preferred_regions(region);
    v1::SubmitResponse resp;
    EXPECT_TRUE(h.Submit(r, &resp).ok());
    const std::string id = resp.execution().id();
    EXPECT_TRUE(FederationHarness::WaitUntil(std::chrono::seconds(20), [&] {
      v1::Execution e;
      return h.Get(id, &e).ok() && e.state() == v1::EXECUTION_RUNNING;
    }));
    return id;
  };
  // Not a target: named, or chosen.
  const std::string on_can = submit("r-can");
  grpc::Status named = MigrateTo(h, on_can, "cannot");
  EXPECT_EQ(named.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << named.error_message();
  EXPECT_NE(named.error_message().find("checkpointing unavailable (criu is not installed"),
            std::string::npos) << named.error_message();
  grpc::Status chosen = MigrateTo(h, on_can, "");
  EXPECT_FALSE(chosen.ok());
  EXPECT_NE(chosen.error_message().find("cannot: checkpointing unavailable"), std::string::npos)
      << chosen.error_message();
  // Not a source.
  const std::string on_cannot = submit("r-cannot");
  grpc::Status from = MigrateTo(h, on_cannot, "can");
  EXPECT_EQ(from.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << from.error_message();
  EXPECT_NE(from.error_message().find("node cannot cannot checkpoint: checkpointing unavailable"),
            std::string::npos) << from.error_message();
  for (const std::string& id : {on_can, on_cannot}) {
    v1::CancelResponse c;
    (void)h.Cancel(id, &c);
  }
}

}  // namespace
}  // namespace flotilla::testing
