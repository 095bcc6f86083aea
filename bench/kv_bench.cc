// The embedded key-value store's put cost, in memory only and made durable
// (memory_kv.h, "Durability"), side by side in one run, with fork/exec of
// /bin/true beside them as the unit every sandbox start pays:
//   memory          MemoryKv without persistence (what the manager had);
//   sqlite NORMAL   through StoreKvPersistence to a SQLite file, WAL,
//                   synchronous=NORMAL (the manager's default durability);
//   sqlite FULL     the same with an fsync at every commit (--durability
//                   power-loss).
//
//   flotilla_kv_bench [puts per thread, default 20000] [value bytes, default 100]
//
// Prints per-put latency (p50/p99) with one writer, and puts/s with 1 and 4
// writer threads, each writing its own keys of one namespace.

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kv/memory_kv.h"
#include "kv/store_persistence.h"
#include "store/store.h"

extern char** environ;

namespace {

using namespace flotilla;
using Clock = std::chrono::steady_clock;

struct Figures {
  double p50_us = 0;
  double p99_us = 0;
  double puts_per_s_1 = 0;
  double puts_per_s_4 = 0;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Puts from `threads` writers, `puts` each; returns puts/s, and fills
// latencies (µs) when given.
double Run(kv::KvStore& store, int threads, int puts, const std::string& value,
           std::vector<double>* latencies, const std::string& tag) {
  const auto start = Clock::now();
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < puts; ++i) {
        const auto before = Clock::now();
        auto version = store.Put("bench~ns", absl::StrCat(tag, t, "-", i % 1000), value);
        if (!version.ok()) {
          std::fprintf(stderr, "put: %s\n", version.status().ToString().c_str());
          std::exit(1);
        }
        if (latencies != nullptr) {
          latencies->push_back(
              std::chrono::duration<double, std::micro>(Clock::now() - before).count());
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  return threads * puts / std::chrono::duration<double>(Clock::now() - start).count();
}

Figures Measure(kv::KvStore& store, int puts, const std::string& value) {
  Figures f;
  std::vector<double> latencies;
  latencies.reserve(puts);
  f.puts_per_s_1 = Run(store, 1, puts, value, &latencies, "a");
  f.p50_us = Percentile(latencies, 0.50);
  f.p99_us = Percentile(latencies, 0.99);
  f.puts_per_s_4 = Run(store, 4, puts / 4, value, nullptr, "b");
  return f;
}

double ForkExecP50Us(int runs) {
  std::vector<double> v;
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  for (int i = 0; i < runs; ++i) {
    const auto before = Clock::now();
    pid_t pid = 0;
    if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) std::exit(1);
    waitpid(pid, nullptr, 0);
    v.push_back(std::chrono::duration<double, std::micro>(Clock::now() - before).count());
  }
  return Percentile(v, 0.5);
}

void Print(const char* name, const Figures& f) {
  std::printf("%-16s %10.1f %10.1f %14.0f %14.0f\n", name, f.p50_us, f.p99_us, f.puts_per_s_1,
              f.puts_per_s_4);
}

}  // namespace

int main(int argc, char** argv) {
  const int puts = argc > 1 ? std::atoi(argv[1]) : 20000;
  const std::string value(argc > 2 ? std::atoi(argv[2]) : 100, 'v');
  char dir_template[] = "/tmp/flotilla-kv-bench-XXXXXX";
  const std::string dir = mkdtemp(dir_template);

  kv::MemoryKv memory;
  const Figures in_memory = Measure(memory, puts, value);

  auto durable = [&](store::Durability durability, const char* file) {
    auto sqlite = store::OpenSqliteStore(dir + "/" + file, durability);
    if (!sqlite.ok()) {
      std::fprintf(stderr, "open: %s\n", sqlite.status().ToString().c_str());
      std::exit(1);
    }
    kv::StoreKvPersistence persistence(sqlite->get());
    kv::MemoryKv kv(nullptr, {}, &persistence);
    return Measure(kv, puts, value);
  };
  const Figures normal = durable(store::Durability::kProcessCrash, "normal.db");
  const Figures full = durable(store::Durability::kPowerLoss, "full.db");

  std::printf("%d puts per run, %zu-byte values, 1000 keys per writer\n\n", puts, value.size());
  std::printf("%-16s %10s %10s %14s %14s\n", "store", "p50 us", "p99 us", "puts/s x1", "puts/s x4");
  Print("memory", in_memory);
  Print("sqlite NORMAL", normal);
  Print("sqlite FULL", full);
  std::printf("\nfork/exec /bin/true p50: %.1f us\n", ForkExecP50Us(200));
  std::string cleanup = "rm -rf " + dir;
  return std::system(cleanup.c_str()) == 0 ? 0 : 1;
}
