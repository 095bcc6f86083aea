#include "pool/warm_pool.h"
#include "pool/microvm_instance.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <filesystem>
#include <fstream>

namespace flotilla::pool {
namespace {

struct Counters {
  std::atomic<int> created{0}, destroyed{0}, resets{0};
  bool fail_reset = false;
  bool fail_create = false;
};

class FakeInstance : public Instance {
 public:
  explicit FakeInstance(Counters* c, int id) : c_(c), id_(id) {}
  ~FakeInstance() override { c_->destroyed++; }
  absl::StatusOr<sandbox::TaskOutcome> Run(const sandbox::TaskSpec& spec, sandbox::OutputSink& sink,
                                           const sandbox::CancelToken&) override {
    sandbox::TaskOutcome o;
    o.stdout_data = "instance " + std::to_string(id_) + " ran " + spec.id;
    sink.OnOutput(sandbox::Stream::kStdout, 0, o.stdout_data);
    return o;
  }
  bool Reset() override {
    c_->resets++;
    return !c_->fail_reset;
  }
  bool healthy() const override { return true; }
  int id() const { return id_; }

 private:
  Counters* c_;
  int id_;
};

class FakeFactory : public InstanceFactory {
 public:
  explicit FakeFactory(Counters* c) : c_(c) {}
  absl::StatusOr<std::unique_ptr<Instance>> Create(const EnvironmentTemplate&,
                                                   const InstanceOptions& o) override {
    if (c_->fail_create) return absl::InternalError("cannot create");
    last_egress = o.network_egress;
    return std::make_unique<FakeInstance>(c_, ++c_->created);
  }
  bool last_egress = false;

 private:
  Counters* c_;
};

class NullSink : public sandbox::OutputSink {
 public:
  void OnOutput(sandbox::Stream, int64_t, std::string_view d) override { out += d; }
  std::string out;
};

EnvironmentTemplate Tmpl(int min, int max, Lifecycle l = Lifecycle::kReuse) {
  EnvironmentTemplate t;
  t.name = "shell";
  t.pool_min = min;
  t.pool_max = max;
  t.lifecycle = l;
  return t;
}

int IdOf(const WarmPool::Lease& l) { return static_cast<FakeInstance*>(l.instance.get())->id(); }

TEST(WarmPool, RefillPreCreatesMinAndAcquireIsWarm) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(2, 4), &f);
  EXPECT_EQ(pool.Refill(), 2);
  EXPECT_EQ(pool.Refill(), 0);
  auto lease = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(lease->warm);
  EXPECT_EQ(pool.Stats().hits, 1u);
  EXPECT_EQ(pool.Stats().idle, 1);
  EXPECT_EQ(pool.Stats().busy, 1);
}

TEST(WarmPool, EmptyPoolGivesAColdStart) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 2), &f);
  auto lease = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(lease.ok());
  EXPECT_FALSE(lease->warm);
  EXPECT_EQ(pool.Stats().misses, 1u);
  EXPECT_EQ(c.created, 1);
}

TEST(WarmPool, ReuseOnlyForTheSameTenantAndFunction) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 4), &f);
  auto a = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(a.ok());
  const int alice_instance = IdOf(*a);
  pool.Release(std::move(*a), "alice", "f", {});
  EXPECT_EQ(c.resets, 1);
  auto b = pool.Acquire("bob", "f", {});  // bob never gets alice's instance
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->warm);
  EXPECT_NE(IdOf(*b), alice_instance);
  auto a2 = pool.Acquire("alice", "g", {});  // nor alice's other function
  ASSERT_TRUE(a2.ok());
  EXPECT_NE(IdOf(*a2), alice_instance);
  auto a3 = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(a3.ok());
  EXPECT_TRUE(a3->warm);
  EXPECT_EQ(IdOf(*a3), alice_instance);
}

TEST(WarmPool, DestroyLifecycleNeverReuses) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 4, Lifecycle::kDestroy), &f);
  auto a = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(a.ok());
  pool.Release(std::move(*a), "alice", "f", {});
  EXPECT_EQ(c.destroyed, 1);
  EXPECT_EQ(pool.Stats().idle, 0);
}

TEST(WarmPool, FailedResetDestroysTheInstance) {
  Counters c;
  c.fail_reset = true;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 4), &f);
  auto a = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(a.ok());
  pool.Release(std::move(*a), "alice", "f", {});
  EXPECT_EQ(c.destroyed, 1);
  EXPECT_EQ(pool.Stats().idle, 0);
}

TEST(WarmPool, MaxBoundsBusyInstances) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 2), &f);
  auto a = pool.Acquire("t", "f", {});
  auto b = pool.Acquire("t", "f", {});
  ASSERT_TRUE(a.ok() && b.ok());
  auto d = pool.Acquire("t", "f", {}, std::chrono::milliseconds(50));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(std::string(d.status().message()).find("pool.max"), std::string::npos);
  pool.Release(std::move(*a), "t", "f", {});
  EXPECT_TRUE(pool.Acquire("t", "f", {}).ok());
}

TEST(WarmPool, AcquireWaitsForARelease) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 1), &f);
  auto a = pool.Acquire("t", "f", {});
  ASSERT_TRUE(a.ok());
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pool.Release(std::move(*a), "t", "f", {});
  });
  auto b = pool.Acquire("t", "f", {}, std::chrono::seconds(5));
  releaser.join();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->warm);
}

TEST(WarmPool, AnotherOwnersParkedInstanceIsEvictedForACold) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(0, 1), &f);
  auto a = pool.Acquire("alice", "f", {});
  ASSERT_TRUE(a.ok());
  pool.Release(std::move(*a), "alice", "f", {});
  auto b = pool.Acquire("bob", "f", {});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(c.destroyed, 1);  // alice's parked one made room
}

TEST(WarmPool, EgressInstancesAreNeverPooled) {
  Counters c;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(1, 4), &f);
  pool.Refill();
  auto a = pool.Acquire("t", "f", {.network_egress = true});
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->warm);
  EXPECT_TRUE(f.last_egress);
  pool.Release(std::move(*a), "t", "f", {.network_egress = true});
  EXPECT_EQ(pool.Stats().idle, 1);  // only the pre-created one
}

TEST(WarmPool, CreateFailureIsAnError) {
  Counters c;
  c.fail_create = true;
  FakeFactory f(&c);
  WarmPool pool(Tmpl(2, 4), &f);
  EXPECT_EQ(pool.Refill(), 0);
  EXPECT_FALSE(pool.Acquire("t", "f", {}).ok());
  EXPECT_GE(pool.Stats().create_failures, 2u);
}

TEST(PooledSandbox, RoutesByTemplateAndRejectsUnknown) {
  Counters c;
  FakeFactory f(&c);
  WarmPool shell(Tmpl(0, 2), &f);
  EnvironmentTemplate py = Tmpl(0, 2);
  py.name = "python";
  WarmPool python(py, &f);
  PooledSandbox sb({&shell, &python}, "shell", "linux");
  NullSink sink;
  sandbox::CancelToken cancel;
  sandbox::TaskSpec spec;
  spec.id = "x/1";
  auto o = sb.Run(spec, sink, cancel);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(shell.Stats().misses, 1u);
  spec.template_name = "python";
  ASSERT_TRUE(sb.Run(spec, sink, cancel).ok());
  EXPECT_EQ(python.Stats().misses, 1u);
  spec.template_name = "ruby";
  auto bad = sb.Run(spec, sink, cancel);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("known: shell, python"), std::string::npos);
}

TEST(EnvironmentTemplate, ShippedTemplatesLoad) {
  auto all = LoadTemplates(std::string(FLOTILLA_SOURCE_DIR) + "/templates");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "python");
  EXPECT_EQ((*all)[0].runtime, "python3");
  EXPECT_FALSE((*all)[0].python_preload.empty());
  EXPECT_EQ((*all)[1].name, "shell");
  EXPECT_EQ((*all)[1].network, NetworkPolicy::kEgress);
}

TEST(EnvironmentTemplate, ErrorsNameTheKey) {
  auto dir = std::filesystem::temp_directory_path() / ("tmpl-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream(dir / "t.yaml") << text;
    return LoadTemplate((dir / "t.yaml").string());
  };
  auto bad_runtime = write("name: x\nruntime: ruby\n");
  ASSERT_FALSE(bad_runtime.ok());
  EXPECT_NE(std::string(bad_runtime.status().message()).find("runtime: 'ruby'"), std::string::npos);
  auto bad_key = write("name: x\nnetwrk: none\n");
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(std::string(bad_key.status().message()).find("netwrk: unknown setting"), std::string::npos);
  auto bad_mem = write("name: x\nlimits: {memory: 12Q}\n");
  ASSERT_FALSE(bad_mem.ok());
  EXPECT_NE(std::string(bad_mem.status().message()).find("limits.memory"), std::string::npos);
  auto bad_pool = write("name: x\npool: {min: 5, max: 2}\n");
  ASSERT_FALSE(bad_pool.ok());
  EXPECT_NE(std::string(bad_pool.status().message()).find("min <= max"), std::string::npos);
  auto bad_path = write("name: x\nfiles: [{path: ../x, content: y}]\n");
  EXPECT_FALSE(bad_path.ok());
  auto bad_isolation = write("name: x\nisolation: gvisor\n");
  ASSERT_FALSE(bad_isolation.ok());
  EXPECT_NE(std::string(bad_isolation.status().message()).find("isolation: 'gvisor'"),
            std::string::npos);
  auto vm = write("name: x\nisolation: microvm\nlimits: {cpu: 1500m, memory: 100Mi}\n");
  ASSERT_TRUE(vm.ok()) << vm.status();
  EXPECT_EQ(vm->isolation, Isolation::kMicroVm);
  EXPECT_EQ(VmCpus(*vm), 2);
  EXPECT_EQ(VmMemoryMib(*vm), 128);  // the guest kernel's floor
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace flotilla::pool
