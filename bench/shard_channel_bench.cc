// Shard channels between two processes on one node: the shared-memory ring
// (src/shard/channel.h) side by side with a unix socket and a pipe, in the
// same run, 64-byte messages.
//
//   throughput: the parent (pinned to --cpus[0]) sends --messages messages
//     one write per message; the child (pinned to --cpus[1]) receives them;
//     messages/s from the child's first to its last message. The ring reads
//     and acknowledges one message at a time; the socket and the pipe are
//     read in 64 KiB chunks (a stream reader's best case).
//   latency: ping-pong of one 64-byte message through a pair of channels;
//     one-way latency = round trip / 2, per round trip; median and p99.
//
// Rounds alternate the transports so all see the same machine state.
// Prints a Markdown table of medians over rounds; JSON with --json (instead)
// or --json-out=FILE (as well).
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "shard/channel.h"

namespace {

using Clock = std::chrono::steady_clock;
using flotilla::shard::RingConsumer;
using flotilla::shard::RingOptions;
using flotilla::shard::RingProducer;
using flotilla::shard::ShmRing;

constexpr size_t kMessage = 64;

struct Flags {
  long messages = 5'000'000;
  long round_trips = 200'000;
  int rounds = 5;
  int cpu_a = 0;
  int cpu_b = 1;
  bool json = false;     // print JSON instead of the table
  std::string json_out;  // also write JSON to this file
};

void Pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) std::perror("sched_setaffinity");
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

// Runs `child` in a forked process (which exits with its return value) and
// `parent` here; returns false if either failed. The child is killed after
// 120 s so a wedged run cannot hang the benchmark.
bool Fork(const std::function<int()>& child, const std::function<bool()>& parent) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);
    _exit(child());
  }
  bool ok = parent();
  int status = 0;
  waitpid(pid, &status, 0);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, char* p, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

ShmRing NewRing() {
  RingOptions o;
  o.capacity_bytes = 1 << 20;
  o.max_message_bytes = 4096;
  auto r = ShmRing::Create(o);
  if (!r.ok()) {
    std::fprintf(stderr, "ring: %s\n", std::string(r.status().message()).c_str());
    std::exit(1);
  }
  return std::move(*r);
}

// ---- throughput: returns messages/s measured by the receiver (via a pipe).

double ReportedRate(int report_fd) {
  double rate = 0;
  if (!ReadAll(report_fd, reinterpret_cast<char*>(&rate), sizeof(rate))) return 0;
  return rate;
}

void Report(int report_fd, Clock::time_point first, long n) {
  double secs = std::chrono::duration<double>(Clock::now() - first).count();
  double rate = secs > 0 ? (n - 1) / secs : 0;
  WriteAll(report_fd, reinterpret_cast<const char*>(&rate), sizeof(rate));
}

// CPU time of the calling thread, seconds.
double ThreadCpu() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Filled by the throughput runs: the sender's CPU seconds and wall seconds
// over its send loop. On a loaded machine the pinned sender gets only part
// of its CPU; messages per sender-CPU-second shows the channel's own cost.
double g_sender_cpu = 0;
double g_sender_wall = 0;

double ThroughputRing(const Flags& f, int ack_every) {
  ShmRing ring = NewRing();
  int report[2];
  if (pipe(report) != 0) return 0;
  double rate = 0;
  Fork(
      [&]() -> int {
        Pin(f.cpu_b);
        RingConsumer c(std::move(ring));
        char buf[kMessage];
        Clock::time_point first;
        for (long i = 0; i < f.messages; ++i) {
          auto n = c.Read(buf, sizeof(buf), std::chrono::seconds(30));
          if (!n.ok()) return 2;
          if (i == 0) first = Clock::now();
          if ((i + 1) % ack_every == 0 && !c.AckAll().ok()) return 3;
        }
        Report(report[1], first, f.messages);
        return 0;
      },
      [&] {
        Pin(f.cpu_a);
        RingProducer p(std::move(ring));
        char msg[kMessage] = {};
        double cpu0 = ThreadCpu();
        auto wall0 = Clock::now();
        for (long i = 0; i < f.messages; ++i) {
          std::memcpy(msg, &i, sizeof(i));
          if (!p.Write(std::string_view(msg, kMessage), std::chrono::seconds(30)).ok())
            return false;
        }
        g_sender_cpu = ThreadCpu() - cpu0;
        g_sender_wall = std::chrono::duration<double>(Clock::now() - wall0).count();
        rate = ReportedRate(report[0]);
        return true;
      });
  close(report[0]);
  close(report[1]);
  return rate;
}

// fds[0]: the receiver's end, fds[1]: the sender's.
double ThroughputStream(const Flags& f, int fds[2]) {
  int report[2];
  if (pipe(report) != 0) return 0;
  double rate = 0;
  Fork(
      [&]() -> int {
        Pin(f.cpu_b);
        close(fds[1]);
        std::vector<char> buf(64 << 10);
        long bytes = 0;
        const long total = f.messages * static_cast<long>(kMessage);
        Clock::time_point first;
        while (bytes < total) {
          ssize_t r = read(fds[0], buf.data(), buf.size());
          if (r <= 0) return 2;
          if (bytes == 0) first = Clock::now();
          bytes += r;
        }
        Report(report[1], first, f.messages);
        return 0;
      },
      [&] {
        Pin(f.cpu_a);
        close(fds[0]);
        char msg[kMessage] = {};
        double cpu0 = ThreadCpu();
        auto wall0 = Clock::now();
        for (long i = 0; i < f.messages; ++i) {
          std::memcpy(msg, &i, sizeof(i));
          if (!WriteAll(fds[1], msg, kMessage)) return false;
        }
        g_sender_cpu = ThreadCpu() - cpu0;
        g_sender_wall = std::chrono::duration<double>(Clock::now() - wall0).count();
        rate = ReportedRate(report[0]);
        return true;
      });
  close(fds[1]);
  close(report[0]);
  close(report[1]);
  return rate;
}

// ---- latency: one-way µs samples (round trip / 2).

std::vector<double> LatencyRing(const Flags& f) {
  ShmRing ping = NewRing();
  ShmRing pong = NewRing();
  std::vector<double> samples;
  samples.reserve(f.round_trips);
  Fork(
      [&]() -> int {
        Pin(f.cpu_b);
        RingConsumer in(std::move(ping));
        RingProducer out(std::move(pong));
        char buf[kMessage];
        for (long i = 0; i < f.round_trips; ++i) {
          auto n = in.Read(buf, sizeof(buf), std::chrono::seconds(30));
          if (!n.ok() || !in.AckAll().ok()) return 2;
          if (!out.Write(std::string_view(buf, *n), std::chrono::seconds(30)).ok()) return 3;
        }
        return 0;
      },
      [&] {
        Pin(f.cpu_a);
        RingProducer out(std::move(ping));
        RingConsumer in(std::move(pong));
        char msg[kMessage] = {};
        char buf[kMessage];
        for (long i = 0; i < f.round_trips; ++i) {
          auto t0 = Clock::now();
          if (!out.Write(std::string_view(msg, kMessage), std::chrono::seconds(30)).ok())
            return false;
          auto n = in.Read(buf, sizeof(buf), std::chrono::seconds(30));
          if (!n.ok() || !in.AckAll().ok()) return false;
          samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                            2);
        }
        return true;
      });
  return samples;
}

// `a` and `b`: two one-way channels as {read end, write end}: a carries
// parent -> child, b child -> parent.
std::vector<double> LatencyStream(const Flags& f, int a[2], int b[2]) {
  std::vector<double> samples;
  samples.reserve(f.round_trips);
  Fork(
      [&]() -> int {
        Pin(f.cpu_b);
        char buf[kMessage];
        for (long i = 0; i < f.round_trips; ++i) {
          if (!ReadAll(a[0], buf, kMessage) || !WriteAll(b[1], buf, kMessage)) return 2;
        }
        return 0;
      },
      [&] {
        Pin(f.cpu_a);
        char msg[kMessage] = {};
        char buf[kMessage];
        for (long i = 0; i < f.round_trips; ++i) {
          auto t0 = Clock::now();
          if (!WriteAll(a[1], msg, kMessage) || !ReadAll(b[0], buf, kMessage)) return false;
          samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                            2);
        }
        return true;
      });
  for (int fd : {a[0], a[1], b[0], b[1]}) close(fd);
  return samples;
}

struct Result {
  std::string name;
  std::vector<double> rates;       // one per round
  std::vector<double> per_cpu;     // messages per sender CPU-second
  std::vector<double> cpu_share;   // sender CPU / wall
  std::vector<double> p50s, p99s;  // one per round
};

std::string JsonReport(const Flags& f, const std::vector<Result>& results) {
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "{\"messages\": %ld, \"round_trips\": %ld, \"rounds\": %d, \"cpus\": [%d, %d], "
                "\"results\": [",
                f.messages, f.round_trips, f.rounds, f.cpu_a, f.cpu_b);
  std::string out = buf;
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::snprintf(buf, sizeof(buf),
                  "%s{\"name\": \"%s\", \"msgs_per_s\": %.0f, \"msgs_per_sender_cpu_s\": %.0f, "
                  "\"sender_cpu_share\": %.2f, \"p50_us\": %.3f, \"p99_us\": %.3f}",
                  i ? ", " : "", r.name.c_str(), Median(r.rates), Median(r.per_cpu),
                  Median(r.cpu_share), Median(r.p50s), Median(r.p99s));
    out += buf;
  }
  return out + "]}\n";
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t n = std::strlen(name);
      return a.compare(0, n, name) == 0 && a.size() > n && a[n] == '=' ? argv[i] + n + 1 : nullptr;
    };
    if (const char* v = value("--messages"))
      f.messages = std::atol(v);
    else if (const char* v = value("--round-trips"))
      f.round_trips = std::atol(v);
    else if (const char* v = value("--rounds"))
      f.rounds = std::atoi(v);
    else if (const char* v = value("--cpus"))
      std::sscanf(v, "%d,%d", &f.cpu_a, &f.cpu_b);
    else if (const char* v = value("--json-out"))
      f.json_out = v;
    else if (a == "--json")
      f.json = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--messages=N] [--round-trips=N] [--rounds=N] [--cpus=A,B] [--json] "
                   "[--json-out=FILE]\n",
                   argv[0]);
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);

  std::vector<Result> results(4);
  results[0].name = "shm ring (ack each)";
  results[1].name = "shm ring (ack every 32)";
  results[2].name = "unix socket (stream)";
  results[3].name = "pipe";
  auto record = [&](Result& r, double rate) {
    r.rates.push_back(rate);
    r.per_cpu.push_back(g_sender_cpu > 0 ? f.messages / g_sender_cpu : 0);
    r.cpu_share.push_back(g_sender_wall > 0 ? g_sender_cpu / g_sender_wall : 0);
  };
  for (int round = 0; round < f.rounds; ++round) {
    record(results[0], ThroughputRing(f, 1));
    record(results[1], ThroughputRing(f, 32));
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    record(results[2], ThroughputStream(f, sp));
    int pp[2];
    if (pipe(pp) != 0) return 1;
    record(results[3], ThroughputStream(f, pp));

    auto ring = LatencyRing(f);
    results[0].p50s.push_back(Percentile(ring, 0.5));
    results[0].p99s.push_back(Percentile(ring, 0.99));
    int s1[2], s2[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s1);
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s2);
    // Each socketpair is used one way: a = {child reads s1[0], parent writes s1[1]}.
    int a[2] = {s1[0], s1[1]}, b[2] = {s2[0], s2[1]};
    auto sock = LatencyStream(f, a, b);
    results[2].p50s.push_back(Percentile(sock, 0.5));
    results[2].p99s.push_back(Percentile(sock, 0.99));
    int p1[2], p2[2];
    if (pipe(p1) != 0 || pipe(p2) != 0) return 1;
    auto pip = LatencyStream(f, p1, p2);
    results[3].p50s.push_back(Percentile(pip, 0.5));
    results[3].p99s.push_back(Percentile(pip, 0.99));
    std::fprintf(stderr, "round %d/%d done\n", round + 1, f.rounds);
  }

  const double ring_rate = Median(results[0].rates);
  const double ring_p50 = Median(results[0].p50s);
  std::string json = JsonReport(f, results);
  if (!f.json_out.empty()) {
    FILE* out = std::fopen(f.json_out.c_str(), "w");
    if (out == nullptr) {
      std::perror(f.json_out.c_str());
      return 1;
    }
    std::fputs(json.c_str(), out);
    std::fclose(out);
  }
  if (f.json) {
    std::fputs(json.c_str(), stdout);
    return 0;
  }
  std::printf(
      "| transport | msgs/s (median of %d) | vs ring | msgs per sender CPU-s | sender CPU share | "
      "one-way p50 | one-way p99 | p50 vs ring |\n",
      f.rounds);
  std::printf("|---|---|---|---|---|---|---|---|\n");
  auto us = [](double v) {
    char b[32];
    std::snprintf(b, sizeof(b), v < 10 ? "%.2f µs" : "%.1f µs", v);
    return std::string(b);
  };
  for (const Result& r : results) {
    double rate = Median(r.rates);
    bool has_latency = !r.p50s.empty();
    double p50 = Median(r.p50s);
    char ratio[32] = "";
    if (has_latency && ring_p50 > 0) std::snprintf(ratio, sizeof(ratio), "%.1fx", p50 / ring_p50);
    std::printf("| %s | %.2f M | %.2fx | %.2f M | %.0f%% | %s | %s | %s |\n", r.name.c_str(),
                rate / 1e6, ring_rate > 0 ? rate / ring_rate : 0, Median(r.per_cpu) / 1e6,
                100 * Median(r.cpu_share), has_latency ? us(p50).c_str() : "(same as above)",
                has_latency ? us(Median(r.p99s)).c_str() : "", ratio);
  }
  return 0;
}
