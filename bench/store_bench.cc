// The manager's write pattern against both Store backends, side by side:
// per execution an Insert (submit), two Updates (assigned, running) and one
// Transaction of PutAttempt + PutResult + Update (finished). SQLite is a file
// (WAL, synchronous=NORMAL); etcd is a 3-member cluster on loopback started
// by the bench (tests/support/etcd_cluster.h), data on the same disk.
//
//   flotilla_store_bench [executions per thread, default 300] [threads, default 1 and 8]
//
// Prints latency per Store call (p50/p99) and executions/s, then the same
// pattern group-committed (20 executions per Transaction at each step).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "store/etcd/etcd_store.h"
#include "store/store.h"
#include "support/etcd_cluster.h"
#include "support/temp_dir.h"

namespace {

using namespace flotilla;
using Clock = std::chrono::steady_clock;

struct Figures {
  std::vector<double> call_us;
  double seconds = 0;
  int executions = 0;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

bool Check(const absl::Status& s) {
  if (!s.ok()) std::fprintf(stderr, "store call failed: %s\n", std::string(s.message()).c_str());
  return s.ok();
}

Figures Run(store::Store& st, int per_thread, int threads, const std::string& tag) {
  std::vector<std::vector<double>> lat(threads);
  auto start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto timed = [&](auto&& fn) {
        auto t0 = Clock::now();
        bool ok = Check(fn());
        lat[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        return ok;
      };
      for (int i = 0; i < per_thread; ++i) {
        store::ExecutionRecord rec;
        rec.id = absl::StrCat(tag, "-", t, "-", i);
        rec.user_id = "bench";
        rec.request = std::string(300, 'r');
        if (!timed([&] { return st.InsertExecution(&rec); })) return;
        rec.state = model::ExecutionState::kAssigned;
        rec.node_id = "node-1";
        if (!timed([&] { return st.UpdateExecution(rec); })) return;
        rec.state = model::ExecutionState::kRunning;
        if (!timed([&] { return st.UpdateExecution(rec); })) return;
        rec.state = model::ExecutionState::kSucceeded;
        if (!timed([&] {
              return st.Transaction([&]() -> absl::Status {
                absl::Status s = st.PutAttempt({rec.id, 1, "node-1", 1, 2, "succeeded"});
                if (s.ok()) s = st.PutResult(rec.id, 1, std::string(1000, 'o'), "summary");
                if (s.ok()) s = st.UpdateExecution(rec);
                return s;
              });
            })) {
          return;
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  Figures f;
  f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  f.executions = per_thread * threads;
  for (auto& v : lat) f.call_us.insert(f.call_us.end(), v.begin(), v.end());
  return f;
}

// The same calls as a group-committing writer makes them (ARCHITECTURE.md:
// the manager's Writer): `group` executions per Transaction at each step.
Figures RunGrouped(store::Store& st, int total, int group, const std::string& tag) {
  Figures f;
  auto start = Clock::now();
  for (int base = 0; base < total; base += group) {
    std::vector<store::ExecutionRecord> recs(std::min(group, total - base));
    for (size_t i = 0; i < recs.size(); ++i) {
      recs[i].id = absl::StrCat(tag, "-", base + i);
      recs[i].user_id = "bench";
      recs[i].request = std::string(300, 'r');
    }
    auto step = [&](auto&& per_record) {
      auto t0 = Clock::now();
      bool ok = Check(st.Transaction([&]() -> absl::Status {
        for (store::ExecutionRecord& rec : recs) {
          absl::Status s = per_record(rec);
          if (!s.ok()) return s;
        }
        return absl::OkStatus();
      }));
      f.call_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      return ok;
    };
    if (!step([&](store::ExecutionRecord& r) { return st.InsertExecution(&r); })) break;
    if (!step([&](store::ExecutionRecord& r) {
          r.state = model::ExecutionState::kAssigned;
          return st.UpdateExecution(r);
        })) {
      break;
    }
    if (!step([&](store::ExecutionRecord& r) {
          r.state = model::ExecutionState::kRunning;
          return st.UpdateExecution(r);
        })) {
      break;
    }
    if (!step([&](store::ExecutionRecord& r) {
          r.state = model::ExecutionState::kSucceeded;
          absl::Status s = st.PutAttempt({r.id, 1, "node-1", 1, 2, "succeeded"});
          if (s.ok()) s = st.PutResult(r.id, 1, std::string(1000, 'o'), "summary");
          if (s.ok()) s = st.UpdateExecution(r);
          return s;
        })) {
      break;
    }
    f.executions += static_cast<int>(recs.size());
  }
  f.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return f;
}

void Print(const char* backend, int threads, const Figures& f) {
  std::printf("| %-6s | %7d | %10.0f | %10.0f | %13.0f |\n", backend, threads,
              Percentile(f.call_us, 0.5), Percentile(f.call_us, 0.99),
              f.executions / f.seconds);
}

}  // namespace

int main(int argc, char** argv) {
  const int per_thread = argc > 1 ? std::atoi(argv[1]) : 300;
  std::vector<int> thread_counts = {1, 8};
  if (argc > 2) thread_counts = {std::atoi(argv[2])};

  flotilla::testing::TempDir dir("flotilla_store_bench");
  auto sqlite = store::OpenSqliteStore(dir.File("bench.db"), store::Durability::kProcessCrash);
  if (!sqlite.ok()) {
    std::fprintf(stderr, "sqlite: %s\n", std::string(sqlite.status().message()).c_str());
    return 1;
  }
  flotilla::testing::EtcdCluster cluster;
  if (absl::Status s = cluster.Start(); !s.ok()) {
    std::fprintf(stderr, "etcd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  auto client = cluster.Client();
  if (!client.ok() || !(*client)->Put("/bench/leader", "me").ok()) return 1;
  const int64_t epoch = (*client)->Range("/bench/leader", "")->kvs[0].create_revision;
  auto etcd = store::OpenEtcdStore(*client, "/bench/store/", {"/bench/leader", epoch, {}});
  if (!etcd.ok()) {
    std::fprintf(stderr, "etcd store: %s\n", std::string(etcd.status().message()).c_str());
    return 1;
  }

  std::printf("%d executions per thread; 4 Store calls per execution\n\n", per_thread);
  std::printf("| store  | threads | p50 call µs | p99 call µs | executions/s |\n");
  std::printf("|--------|---------|------------|------------|---------------|\n");
  for (int threads : thread_counts) {
    Print("sqlite", threads, Run(**sqlite, per_thread, threads, absl::StrCat("s", threads)));
    Print("etcd", threads, Run(**etcd, per_thread, threads, absl::StrCat("e", threads)));
  }
  std::printf("\nGroup commit, one writer thread, %d executions per Transaction (p50/p99 per "
              "Transaction)\n\n", 20);
  std::printf("| store  | group   | p50 txn µs | p99 txn µs | executions/s |\n");
  std::printf("|--------|---------|------------|------------|---------------|\n");
  Print("sqlite", 20, RunGrouped(**sqlite, per_thread * 4, 20, "gs"));
  Print("etcd", 20, RunGrouped(**etcd, per_thread * 4, 20, "ge"));

  // What a new leader pays before it can serve: loading the index.
  const size_t executions = (*etcd)->ListExecutions({{}, 1 << 30, ""})->size();
  auto t0 = Clock::now();
  auto reopened = store::OpenEtcdStore(*client, "/bench/store/", {"/bench/leader", epoch, {}});
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!reopened.ok()) return 1;
  std::printf("\netcd store open (a new leader's load) with %zu executions, their attempts and "
              "result summaries: %.0f ms\n", executions, ms);
  return 0;
}
