// flotilla: one binary for the whole system — the manager and agent daemons,
// the local federation (`up`, `down`), and the client commands.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "agent/agent.h"
#include "cli/client.h"
#include "cli/component_command.h"
#include "cli/local_federation.h"
#include "cli/output.h"
#include "cli/request_file.h"
#include "cli/forecast_command.h"
#include "cli/sim_command.h"
#include "cli/top_command.h"
#include "pool/environment_template.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include <algorithm>

#include "cli/function_command.h"
#include "cli/security_command.h"
#include "manager/server.h"
#include "wire/convert.h"

namespace flotilla::cli {
namespace {

namespace v1 = ::flotilla::v1;

struct Globals {
  std::string manager;
  bool json = false;
  std::string log_level = "info";
};

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "flotilla: %s\n", std::string(st.message()).c_str());
  return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, n) : std::string("flotilla");
}

absl::StatusOr<Client> Connect(const Globals& g) {
  auto addr = ResolveManager(g.manager);
  if (!addr.ok()) return addr.status();
  auto security = ResolveClientSecurity();
  if (!security.ok()) return security.status();
  return Client(*addr, *security);
}

std::string CommandText(const v1::ExecutionRequest& r) {
  std::string text = r.code().argv_size() > 0
                         ? absl::StrJoin(r.code().argv(), " ")
                         : absl::StrCat(r.code().runtime(), ": ", r.code().source());
  for (char& c : text) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  if (!r.name().empty()) text = r.name();
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

std::string ExitText(const v1::Execution& e) {
  if (!e.has_result()) return "-";
  const auto& r = e.result();
  switch (r.termination()) {
    case v1::TERMINATION_EXITED: return std::to_string(r.exit_code());
    case v1::TERMINATION_SIGNALED: return absl::StrCat("sig ", r.signal());
    case v1::TERMINATION_TIMED_OUT: return "timeout";
    case v1::TERMINATION_CANCELLED: return "cancelled";
    case v1::TERMINATION_START_FAILED: return "no start";
    default: return "-";
  }
}

std::string DurationText(const v1::Execution& e) {
  if (e.has_result() && e.result().wall_time_us() > 0) {
    return FormatDurationMs(e.result().wall_time_us() / 1000);
  }
  if (e.started_unix_ms() > 0 && e.finished_unix_ms() == 0) {
    return FormatDurationMs(NowUnixMs() - e.started_unix_ms()) + "+";
  }
  return "-";
}

std::string WhyText(const v1::Execution& e) {
  if (e.state() == v1::EXECUTION_QUEUED) return e.placement().reason();
  if (e.placement().node_id().empty()) return e.error();
  std::string parts;
  for (const auto& c : e.placement().candidates()) {
    if (c.node_id() != e.placement().node_id()) continue;
    std::vector<std::string> ps;
    for (const char* name : {"cpu", "memory", "security", "locality"}) {
      auto it = c.parts().find(name);
      if (it != c.parts().end()) ps.push_back(absl::StrFormat("%s %.0f", name, it->second));
    }
    parts = absl::StrJoin(ps, " + ");
  }
  int feasible = 0;
  for (const auto& c : e.placement().candidates()) feasible += c.feasible();
  return absl::StrFormat("score %.1f = %s (%d/%d nodes fit)", e.placement().score(), parts,
                         feasible, e.placement().candidates_size());
}

// Maps an execution's end to the process exit code of `flotilla run`.
int ExitCodeOf(const v1::Execution& e) {
  const auto& r = e.result();
  switch (e.state()) {
    case v1::EXECUTION_SUCCEEDED: return 0;
    case v1::EXECUTION_TIMED_OUT: return 124;
    case v1::EXECUTION_CANCELLED: return 130;
    default: break;
  }
  if (!e.has_result()) return 1;
  if (r.termination() == v1::TERMINATION_EXITED) return r.exit_code();
  if (r.termination() == v1::TERMINATION_SIGNALED) return 128 + r.signal();
  if (r.termination() == v1::TERMINATION_START_FAILED) return r.exit_code() ? r.exit_code() : 127;
  return 1;
}

void PrintEnd(const v1::Execution& e) {
  const auto& r = e.result();
  switch (e.state()) {
    case v1::EXECUTION_SUCCEEDED: return;
    case v1::EXECUTION_TIMED_OUT:
      std::fprintf(stderr, "flotilla: %s timed out after %s\n", e.id().c_str(),
                   FormatDurationMs(e.request().timeout_ms()).c_str());
      return;
    case v1::EXECUTION_CANCELLED:
      std::fprintf(stderr, "flotilla: %s was cancelled\n", e.id().c_str());
      return;
    default: break;
  }
  if (r.termination() == v1::TERMINATION_START_FAILED || !e.has_result()) {
    std::fprintf(stderr, "flotilla: %s failed: %s\n", e.id().c_str(),
                 (r.error().empty() ? e.error() : r.error()).c_str());
  } else if (r.termination() == v1::TERMINATION_SIGNALED) {
    std::fprintf(stderr, "flotilla: %s was killed by signal %d\n", e.id().c_str(), r.signal());
  }
}

// Streams an execution's output until it ends. Each Watch call has a
// deadline (WatchTiming); when it passes, or the stream breaks (a manager
// restart), this watches again. The manager then sends the attempt's output
// from offset 0 again and `emit` skips the bytes already printed, so the
// output appears once and whole. Gives up, naming the manager, after
// give_up_after without a word from it. Returns the final execution.
absl::StatusOr<v1::Execution> Follow(Client& client, const std::string& id, bool print_output,
                                     bool verbose) {
  ASSIGN_OR_RETURN(const WatchTiming timing, WatchTimingFromEnv());
  uint32_t attempt = 0;
  int64_t printed[2] = {0, 0};
  std::optional<v1::Execution> final;
  auto emit = [&](int s, int64_t offset, const std::string& data) {
    if (!print_output) return;
    int64_t end = offset + static_cast<int64_t>(data.size());
    if (end <= printed[s]) return;
    size_t skip = static_cast<size_t>(std::max<int64_t>(0, printed[s] - offset));
    if (offset > printed[s]) skip = 0;  // a gap: print what we have
    FILE* f = s == 0 ? stdout : stderr;
    fwrite(data.data() + skip, 1, data.size() - skip, f);
    fflush(f);
    printed[s] = end;
  };
  using Clock = std::chrono::steady_clock;
  auto last_heard = Clock::now();
  auto backoff = std::chrono::milliseconds(100);
  while (!final) {
    // No call outlives the point where we would give up anyway.
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        last_heard + timing.give_up_after - Clock::now());
    const auto deadline =
        std::clamp(left, std::chrono::milliseconds(10), timing.call_deadline);
    bool heard = false;
    absl::Status st = client.Watch(id, print_output, deadline, [&](const v1::WatchEvent& ev) {
      heard = true;
      if (ev.attempt() != attempt && ev.attempt() > 0) {
        if (attempt > 0 && print_output) {
          std::fprintf(stderr, "flotilla: attempt %u was lost; attempt %u runs on %s\n", attempt,
                       ev.attempt(), ev.node_id().c_str());
          printed[0] = printed[1] = 0;
        } else if (verbose) {
          std::fprintf(stderr, "flotilla: %s runs on %s\n", id.c_str(), ev.node_id().c_str());
        }
        attempt = ev.attempt();
      }
      if (ev.has_output()) {
        emit(ev.output().stream() == v1::OUTPUT_STDERR ? 1 : 0, ev.output().offset(),
             ev.output().data());
      }
      if (ev.has_execution()) {
        final = ev.execution();
        emit(0, 0, final->result().stdout());
        emit(1, 0, final->result().stderr());
      }
    });
    if (final) break;
    // An OK end without the final event is the manager closing the stream.
    if (!st.ok() && st.code() != absl::StatusCode::kUnavailable &&
        st.code() != absl::StatusCode::kDeadlineExceeded) {
      return st;
    }
    if (heard) {
      last_heard = Clock::now();
      backoff = std::chrono::milliseconds(100);
    } else if (Clock::now() - last_heard >= timing.give_up_after) {
      return absl::UnavailableError(absl::StrCat(
          "no answer from the manager at ", client.address(), " for ",
          std::chrono::duration_cast<std::chrono::seconds>(timing.give_up_after).count(),
          " s while following ", id, " (", st.message(),
          "); it may still run: `flotilla logs -f ", id, "` follows it again"));
    }
    if (verbose) {
      std::fprintf(stderr, "flotilla: watching %s again (%s)\n", id.c_str(),
                   st.ok() ? "stream ended" : std::string(st.message()).c_str());
    }
    // A stream that delivered events ended at its deadline: watch again at
    // once. One that heard nothing waits a little before the next try.
    if (!heard) {
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
    }
  }
  if (final->result().stdout_truncated() && print_output) {
    std::fprintf(stderr, "flotilla: stdout was truncated at the node's output limit\n");
  }
  return *final;
}

void AddRequestFlags(CLI::App* cmd, v1::ExecutionRequest* r, std::string* cpu, std::string* memory,
                     std::string* timeout, std::vector<std::string>* env) {
  cmd->add_option("--cpu", *cpu, "CPU to reserve: 500m or 0.5 (cores)");
  cmd->add_option("--memory", *memory, "memory to reserve: 256Mi, 1Gi");
  cmd->add_option("--timeout", *timeout, "kill it after this long: 30s, 5m");
  cmd->add_option_function<int>("--priority", [r](int p) { r->set_priority(p); },
                                "0 (lowest) .. 100");
  cmd->add_option_function<int>(
      "--min-trust", [r](int t) { r->mutable_security()->set_min_trust_level(t); },
      "run only on nodes with at least this trust level (0..10)");
  cmd->add_option_function<std::vector<std::string>>(
      "--cap",
      [r](const std::vector<std::string>& caps) {
        for (const auto& c : caps) r->mutable_security()->add_required_capabilities(c);
      },
      "a capability the node must grant (repeatable), e.g. network-egress")
      ->allow_extra_args(false);
  cmd->add_option_function<std::string>(
      "--isolation",
      [r](const std::string& kind) {
        // The scheduler's isolation filter reads this capability form.
        r->mutable_security()->add_required_capabilities("isolation:" + kind);
      },
      "run only on nodes of this isolation kind: linux, microvm")
      ->check(CLI::IsMember({"linux", "microvm", "process"}));
  cmd->add_option_function<std::vector<std::string>>(
      "--data",
      [r](const std::vector<std::string>& keys) {
        for (const auto& k : keys) r->mutable_dependencies()->add_data_keys(k);
      },
      "a data set the code reads (repeatable); nodes holding it score higher")
      ->allow_extra_args(false);
  cmd->add_option_function<std::string>(
         "--mode",
         [r](const std::string& m) {
           r->mutable_placement()->set_mode(m == "bid"        ? v1::PLACEMENT_BID
                                            : m == "cheapest" ? v1::PLACEMENT_CHEAPEST
                                                              : v1::PLACEMENT_SCORE);
         },
         "placement: score (default), bid (the best nodes bid), cheapest (within --latency-bound)")
      ->check(CLI::IsMember({"score", "bid", "cheapest"}));
  cmd->add_option_function<std::string>(
      "--latency-bound",
      [r](const std::string& d) {
        auto ms = ParseDurationMs(d);
        r->mutable_placement()->set_latency_bound_ms(ms.ok() ? *ms : -1);
      },
      "with --mode cheapest: the predicted latency it must meet, e.g. 2s");
  cmd->add_option_function<std::vector<std::string>>(
         "--region",
         [r](const std::vector<std::string>& v) {
           for (const auto& x : v) r->mutable_placement()->add_preferred_regions(x);
         },
         "a preferred region (repeatable, in order of preference)")
      ->allow_extra_args(false);
  cmd->add_option_function<std::vector<std::string>>(
         "--require-region",
         [r](const std::vector<std::string>& v) {
           for (const auto& x : v) r->mutable_placement()->add_required_regions(x);
         },
         "run only in this region (repeatable: any of them)")
      ->allow_extra_args(false);
  cmd->add_option_function<std::string>(
      "--template", [r](const std::string& t) { r->set_template_name(t); },
      "environment template (flotilla template list); default: by runtime");
  cmd->add_option_function<std::string>(
      "--function", [r](const std::string& f) { r->set_function(f); },
      "function name: keys the latency model and warm-sandbox reuse");
  cmd->add_option("--env", *env, "KEY=VALUE for the task's environment (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option_function<std::string>("--name", [r](const std::string& n) { r->set_name(n); },
                                        "a name shown in listings");
  cmd->add_option_function<std::string>(
      "--id", [r](const std::string& id) { r->set_request_id(id); },
      "request id; submitting the same id twice returns the first execution");
}

absl::Status ApplyRequestFlags(v1::ExecutionRequest* r, const std::string& cpu,
                               const std::string& memory, const std::string& timeout,
                               const std::vector<std::string>& env) {
  if (!cpu.empty()) {
    auto v = ParseCpu(cpu);
    if (!v.ok()) return v.status();
    r->mutable_resources()->set_cpu_millis(*v);
  }
  if (!memory.empty()) {
    auto v = ParseBytes(memory);
    if (!v.ok()) return v.status();
    r->mutable_resources()->set_memory_bytes(*v);
  }
  if (!timeout.empty()) {
    auto v = ParseDurationMs(timeout);
    if (!v.ok()) return v.status();
    r->set_timeout_ms(*v);
  }
  for (const auto& kv : env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--env '", kv, "': use KEY=VALUE"));
    }
    (*r->mutable_env())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return absl::OkStatus();
}

// "shell 2, python 2 (hit 93%)": idle warm sandboxes per template.
std::string WarmText(const v1::HypervisorNode& n) {
  if (n.pools_size() == 0) return "-";
  std::vector<std::string> parts;
  uint64_t hits = 0, misses = 0;
  for (const auto& p : n.pools()) {
    parts.push_back(absl::StrCat(p.template_name(), " ", p.idle()));
    hits += p.hits();
    misses += p.misses();
  }
  std::string text = absl::StrJoin(parts, ", ");
  if (hits + misses > 0) absl::StrAppend(&text, absl::StrFormat(" (hit %.0f%%)", 100.0 * hits / (hits + misses)));
  return text;
}

// The CHECKPOINT column: the state the node's agent proved at start.
// "linux", or "microvm (tcg)", or "linux +microvm (tcg)" where a linux node
// also runs the templates that ask for VMs; and the VMs' restores.
std::string IsolationText(const v1::HypervisorNode& n) {
  const std::string& kind = n.security().isolation();
  if (!n.microvm().available()) return kind;
  std::string vm = absl::StrCat("microvm (", n.microvm().accelerator());
  if (n.microvm().restores() > 0) {
    absl::StrAppend(&vm, ", ", n.microvm().restores(), " restores, last ",
                    static_cast<int>(n.microvm().last_restore_ms()), " ms");
  }
  vm += ")";
  return kind == "microvm" ? vm : absl::StrCat(kind, " +", vm);
}

std::string CheckpointText(const v1::HypervisorNode& n) {
  switch (n.checkpoint().state()) {
    case v1::CHECKPOINT_AVAILABLE:
      return "available";
    case v1::CHECKPOINT_PROBING:
      return "probing";
    case v1::CHECKPOINT_UNAVAILABLE:
      return "unavailable";
    default:
      return "unknown";
  }
}

void PrintNodes(const v1::ListNodesResponse& resp) {
  Table t({"NODE", "STATUS", "REGION", "TRUST", "ISOLATION", "CHECKPOINT", "CPU FREE", "MEMORY FREE",
           "RUNNING", "WARM", "DATA", "ADDRESS"});
  std::vector<std::string> why_not;
  for (const auto& n : resp.nodes()) {
    if (n.checkpoint().state() == v1::CHECKPOINT_UNAVAILABLE) {
      why_not.push_back(absl::StrCat("checkpoint unavailable on ", n.id(), ": ", n.checkpoint().reason()));
    }
    std::vector<std::string> data;
    for (const auto& d : n.data().data_sets()) data.push_back(d.key());
    const auto& cap = n.resources().capacity();
    const auto& avail = n.resources().available();
    auto region = n.labels().find("region");
    t.Add({n.id(), n.status() == v1::NODE_ONLINE ? "online" : "offline",
           region == n.labels().end() ? "-" : region->second,
           std::to_string(n.security().trust_level()),
           n.unisolated() ? "NONE (trusted dev)" : IsolationText(n), CheckpointText(n),
           absl::StrCat(FormatMillicores(avail.cpu_millis()), "/", FormatMillicores(cap.cpu_millis())),
           absl::StrCat(FormatBytes(avail.memory_bytes()), "/", FormatBytes(cap.memory_bytes())),
           std::to_string(n.running_executions()), WarmText(n),
           data.empty() ? "-" : absl::StrJoin(data, ","), n.address()});
  }
  std::cout << t.Render();
  // The reasons in full, below the table: they are long (a CRIU log line).
  for (const std::string& line : why_not) std::cout << line << "\n";
}

void PrintExecution(const v1::Execution& e) {
  std::cout << "id:        " << e.id() << "\n"
            << "state:     " << wire::StateName(e.state()) << "\n"
            << "command:   " << CommandText(e.request()) << "\n"
            << "tenant:    " << e.request().user_id()
            << (e.request().owner().empty() ? "" : " (user " + e.request().owner() + ")") << "\n"
            << "node:      " << (e.node_id().empty() ? "-" : e.node_id()) << " (attempt "
            << e.attempt() << ")\n"
            << "exit:      " << ExitText(e) << "\n"
            << "duration:  " << DurationText(e) << "\n";
  if (e.has_result()) {
    std::cout << "cpu time:  " << FormatDurationMs(e.result().cpu_time_us() / 1000) << "\n"
              << "peak mem:  " << FormatBytes(e.result().peak_memory_bytes()) << "\n";
  }
  if (!e.error().empty()) std::cout << "note:      " << e.error() << "\n";
  std::cout << "placement: " << (e.placement().reason().empty() ? "-" : e.placement().reason())
            << "\n";
  if (e.placement().candidates_size() > 0) {
    Table t({"  CANDIDATE", "FITS", "SCORE", "CPU", "MEMORY", "SECURITY", "LOCALITY", "REJECTED BECAUSE"});
    for (const auto& c : e.placement().candidates()) {
      auto part = [&](const char* name) {
        auto it = c.parts().find(name);
        return it == c.parts().end() ? std::string("-") : absl::StrFormat("%.1f", it->second);
      };
      t.Add({"  " + c.node_id(), c.feasible() ? "yes" : "no",
             c.feasible() ? absl::StrFormat("%.1f", c.score()) : "-", part("cpu"), part("memory"),
             part("security"), part("locality"), c.rejected_because()});
    }
    std::cout << t.Render();
  }
}

// Prints the placement decision: the mode, the choice, and a row per
// candidate with its filter verdict and the points of every scorer.
void PrintExplanation(const v1::Execution& e) {
  const auto& p = e.placement();
  std::cout << "execution: " << e.id() << " (" << wire::StateName(e.state()) << ", attempt "
            << e.attempt() << ")\n";
  if (p.candidates_size() == 0) {
    std::cout << "no placement decision yet"
              << (p.reason().empty() ? "" : ": " + p.reason()) << "\n";
    return;
  }
  std::cout << "mode:      " << (p.mode().empty() ? "score" : p.mode())
            << (p.sampled() ? " (on a sample of the nodes)" : "") << "\n"
            << "chosen:    " << (p.node_id().empty() ? "-" : p.node_id()) << "\n"
            << "reason:    " << p.reason() << "\n";
  if (p.preempted_size() > 0) {
    std::cout << "preempted: " << absl::StrJoin(p.preempted(), ", ") << "\n";
  }
  std::vector<std::string> scorers;
  for (const auto& c : p.candidates()) {
    for (const auto& [name, points] : c.parts()) {
      if (std::find(scorers.begin(), scorers.end(), name) == scorers.end()) scorers.push_back(name);
    }
  }
  std::sort(scorers.begin(), scorers.end());
  bool bids = false;
  for (const auto& c : p.candidates()) bids = bids || c.bid() != 0 || c.predicted_latency_ms() != 0;
  std::vector<std::string> header = {"  NODE", "VERDICT", "SCORE"};
  for (const auto& s : scorers) header.push_back(s);
  if (bids) {
    header.push_back("PRED MS");
    header.push_back("BID");
  }
  header.push_back("WHY NOT");
  Table t(header);
  for (const auto& c : p.candidates()) {
    std::vector<std::string> row = {
        (c.node_id() == p.node_id() ? "* " : "  ") + c.node_id(),
        c.feasible() ? "fits" : "filtered",
        c.feasible() ? absl::StrFormat("%.1f", c.score()) : "-"};
    for (const auto& s : scorers) {
      auto it = c.parts().find(s);
      row.push_back(it == c.parts().end() || !c.feasible() ? "-"
                                                          : absl::StrFormat("%.1f", it->second));
    }
    if (bids) {
      row.push_back(c.feasible() ? absl::StrFormat("%.0f", c.predicted_latency_ms()) : "-");
      row.push_back(c.feasible() && c.bid() != 0 ? absl::StrFormat("%.4f", c.bid()) : "-");
    }
    row.push_back(c.rejected_because());
    t.Add(std::move(row));
  }
  std::cout << t.Render();
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"Flotilla: run code on the best node of a federation of hosts.", "flotilla"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags work after the subcommand too
  Globals g;
  app.add_option("--manager", g.manager,
                 "manager gRPC address (default: $FLOTILLA_MANAGER, then the local federation)");
  app.add_flag("--json", g.json, "print JSON instead of tables");
  app.add_option("--log-level", g.log_level, "trace, debug, info, warn, error");
  int rc = 0;

  // ---- manager
  auto* mgr = app.add_subcommand("manager", "run the federation manager (a daemon)");
  std::string mgr_config, mgr_grpc, mgr_http, mgr_db, mgr_ready;
  int64_t mgr_lease = 0;
  mgr->add_option("--config", mgr_config, "YAML configuration file");
  mgr->add_option("--grpc-listen", mgr_grpc, "gRPC address (host:port, port 0 picks one)");
  mgr->add_option("--http-listen", mgr_http, "HTTP address for /healthz and /metrics");
  mgr->add_option("--db", mgr_db, "SQLite database file of the manager's state");
  mgr->add_option("--ready-file", mgr_ready, "write {grpc, http, pid} here once serving");
  mgr->add_option("--lease-timeout-ms", mgr_lease, "mark an agent offline after this silence");
  mgr->callback([&] {
    manager::ManagerConfig c;
    if (!mgr_config.empty()) {
      auto loaded = manager::LoadManagerConfig(mgr_config);
      if (!loaded.ok()) {
        rc = Fail(loaded.status());
        return;
      }
      c = *loaded;
    }
    if (!mgr_grpc.empty()) c.grpc_listen = mgr_grpc;
    if (!mgr_http.empty()) c.http_listen = mgr_http;
    if (!mgr_db.empty()) c.db_path = mgr_db;
    if (!mgr_ready.empty()) c.ready_file = mgr_ready;
    if (mgr_lease > 0) {
      c.lease_timeout = std::chrono::milliseconds(mgr_lease);
      c.heartbeat_interval = std::min(c.heartbeat_interval, std::chrono::milliseconds(mgr_lease / 4 + 1));
    }
    if (absl::Status st = manager::RunManager(c); !st.ok()) rc = Fail(st);
  });

  // ---- agent
  auto* agt = app.add_subcommand("agent", "run a node agent (a daemon)");
  std::string agt_config, agt_manager, agt_id, agt_listen, agt_ready, agt_work;
  agt->add_option("--config", agt_config, "YAML configuration file");
  agt->add_option("--manager-address", agt_manager, "the manager's gRPC address");
  agt->add_option("--id", agt_id, "node id (default: config node_id, then the host name)");
  agt->add_option("--listen", agt_listen, "AgentService address (port 0 picks one)");
  agt->add_option("--work-dir", agt_work, "where task directories are made");
  agt->add_option("--ready-file", agt_ready, "write {address, node_id, pid} once registered");
  agt->callback([&] {
    agent::AgentConfig c;
    if (!agt_config.empty()) {
      auto loaded = agent::LoadAgentConfig(agt_config);
      if (!loaded.ok()) {
        rc = Fail(loaded.status());
        return;
      }
      c = *loaded;
    }
    if (!agt_manager.empty()) c.manager = agt_manager;
    if (!g.manager.empty()) c.manager = g.manager;
    if (!agt_id.empty()) c.node_id = agt_id;
    if (!agt_listen.empty()) c.listen = agt_listen;
    if (!agt_work.empty()) c.work_dir = agt_work;
    if (!agt_ready.empty()) c.ready_file = agt_ready;
    if (absl::Status st = agent::RunAgent(c); !st.ok()) rc = Fail(st);
  });

  // ---- up / down
  auto* up = app.add_subcommand("up", "start a local federation (1 manager + N agents) in the background");
  UpOptions up_opts;
  up_opts.state_dir = DefaultStateDir();
  up->add_option("--agents", up_opts.agents, "number of agents")->capture_default_str();
  up->add_option("--hosts", up_opts.hosts,
                 "N agents, and the manager, each in a network namespace of its own joined by a "
                 "bridge (needs root; replaces --agents)");
  up->add_option("--state-dir", up_opts.state_dir, "where state, configs and logs live")
      ->capture_default_str();
  up->add_option("--lease-timeout-ms", up_opts.lease_timeout_ms, "agent lease (default 10000)");
  up->add_flag("--insecure", up_opts.insecure,
               "SECURITY OFF: plaintext gRPC, no node identities, no user tokens (development "
               "on a trusted host only)");
  up->add_option("--isolation", up_opts.isolation,
                 "linux (default; needs root), microvm (QEMU micro-VMs; needs root) or process "
                 "(UNISOLATED: trusted development only)")
      ->check(CLI::IsMember({"linux", "microvm", "process"}));
  up->callback([&] {
    up_opts.self = SelfPath();
    auto f = StartLocalFederation(up_opts);
    if (!f.ok()) {
      rc = Fail(f.status());
      return;
    }
    std::cout << "flotilla: local federation up\n"
              << "  manager gRPC  " << f->manager_grpc << "\n"
              << "  manager HTTP  " << (f->insecure ? "http://" : "https://") << f->manager_http
              << "/metrics\n"
              << "  dashboard     " << (f->insecure ? "http://" : "https://") << f->manager_http
              << "/dashboard/" << (f->insecure ? "" : "  (sign in with the admin token)") << "\n"
              << "  state         " << f->state_dir << "\n"
              << (f->lab.empty()
                      ? ""
                      : absl::StrCat("  hosts         manager at ", f->manager_host, ", ",
                                     f->agent_hosts.size(), " agents in network namespaces ",
                                     f->lab, "h1.. (ip netns list), bridge ", f->lab, "br\n"))
              << (f->insecure
                      ? "  security      OFF (--insecure): plaintext, no identities, no tokens\n"
                      : absl::StrCat("  security      mutual TLS (CA ", f->ca_cert,
                                     "), admin token in ", f->token_file, "\n"))
              << "\n";
    ClientSecurity security{f->insecure, f->ca_cert, ""};
    if (!f->insecure) {
      if (auto token = ReadToken(f->token_file); token.ok()) security.token = *token;
    }
    Client client(f->manager_grpc, security);
    if (auto nodes = client.ListNodes(); nodes.ok()) PrintNodes(*nodes);
    std::cout << "\nTry: flotilla run -- echo hi    (stop with: flotilla down)\n";
  });
  auto* down = app.add_subcommand("down", "stop the local federation");
  std::string down_dir = DefaultStateDir();
  bool purge = false;
  down->add_option("--state-dir", down_dir, "the federation's state directory");
  down->add_flag("--purge", purge, "also delete its state (database, logs)");
  down->callback([&] {
    absl::Status st = StopLocalFederation(down_dir, purge);
    if (!st.ok()) {
      rc = Fail(absl::Status(st.code(), absl::StrCat(st.message(), " (nothing to stop)")));
      return;
    }
    std::cout << "flotilla: local federation stopped" << (purge ? " and its state deleted" : "")
              << "\n";
  });

  // ---- run
  auto* run = app.add_subcommand("run", "run a command on the federation and stream its output");
  v1::ExecutionRequest run_req;
  std::string cpu, memory, timeout, shell_src, python_src;
  std::vector<std::string> env, command;
  bool detach = false, verbose = false;
  AddRequestFlags(run, &run_req, &cpu, &memory, &timeout, &env);
  run->add_option("--shell", shell_src, "run this shell script instead of a command");
  run->add_option("--python", python_src, "run this Python source instead of a command");
  run->add_flag("-d,--detach", detach, "print the execution id and return at once");
  run->add_flag("-v,--verbose", verbose, "say where it runs");
  run->add_option("command", command, "the command and its arguments (after --)");
  run->callback([&] {
    if (!shell_src.empty() && !python_src.empty()) {
      rc = Fail(absl::InvalidArgumentError("give --shell or --python, not both"));
      return;
    }
    if ((!shell_src.empty() || !python_src.empty()) && !command.empty()) {
      rc = Fail(absl::InvalidArgumentError(
          "give a command after -- or --shell/--python source, not both"));
      return;
    }
    if (!shell_src.empty()) {
      run_req.mutable_code()->set_runtime("shell");
      run_req.mutable_code()->set_source(shell_src);
    }
    if (!python_src.empty()) {
      run_req.mutable_code()->set_runtime("python3");
      run_req.mutable_code()->set_source(python_src);
    }
    for (const auto& a : command) run_req.mutable_code()->add_argv(a);
    if (command.empty() && shell_src.empty() && python_src.empty()) {
      rc = Fail(absl::InvalidArgumentError(
          "nothing to run: flotilla run [flags] -- COMMAND [ARGS...], or --shell/--python SOURCE"));
      return;
    }
    if (absl::Status st = ApplyRequestFlags(&run_req, cpu, memory, timeout, env); !st.ok()) {
      rc = Fail(st);
      return;
    }
    auto client = Connect(g);
    if (!client.ok()) {
      rc = Fail(client.status());
      return;
    }
    auto sub = client->Submit(run_req);
    if (!sub.ok()) {
      rc = Fail(sub.status());
      return;
    }
    const std::string id = sub->execution().id();
    if (detach) {
      std::cout << (g.json ? ToJson(sub->execution()) : id) << "\n";
      return;
    }
    auto final = Follow(*client, id, !g.json, verbose);
    if (!final.ok()) {
      rc = Fail(final.status());
      return;
    }
    if (g.json) std::cout << ToJson(*final) << "\n";
    else PrintEnd(*final);
    rc = ExitCodeOf(*final);
  });

  // ---- submit
  auto* submit = app.add_subcommand("submit", "submit the executions described in a YAML file");
  std::string submit_file;
  bool submit_wait = false;
  submit->add_option("file", submit_file, "request file (docs/cli.md#request-files)")->required();
  submit->add_flag("-w,--wait", submit_wait, "wait for them to finish and print a summary");
  submit->callback([&] {
    auto reqs = LoadRequestFile(submit_file);
    if (!reqs.ok()) {
      rc = Fail(reqs.status());
      return;
    }
    auto client = Connect(g);
    if (!client.ok()) {
      rc = Fail(client.status());
      return;
    }
    std::vector<std::string> ids;
    for (size_t i = 0; i < reqs->size(); ++i) {
      auto& r = (*reqs)[i];
      if (absl::Status st = ApplyRequestFlags(&r, "", "", "", {}); !st.ok()) {
        rc = Fail(st);
        return;
      }
      auto sub = client->Submit(r);
      if (!sub.ok()) {
        // Say exactly what was accepted so a re-submit can skip it (or use ids).
        rc = Fail(absl::Status(
            sub.status().code(),
            absl::StrCat("document ", i + 1, " of ", reqs->size(), " was rejected: ",
                         sub.status().message(),
                         ids.empty() ? std::string(" (nothing was submitted)")
                                     : absl::StrCat(" (submitted before it: ",
                                                    absl::StrJoin(ids, ", "), ")"))));
        return;
      }
      ids.push_back(sub->execution().id());
      if (!submit_wait) std::cout << (g.json ? ToJson(sub->execution()) : ids.back()) << "\n";
    }
    if (!submit_wait) return;
    Table t({"ID", "STATE", "NODE", "EXIT", "COMMAND"});
    for (const auto& id : ids) {
      auto e = Follow(*client, id, false, false);
      if (!e.ok()) {
        rc = Fail(e.status());
        return;
      }
      if (e->state() != v1::EXECUTION_SUCCEEDED) rc = 1;
      if (g.json) std::cout << ToJson(*e) << "\n";
      t.Add({id, wire::StateName(e->state()), e->node_id(), ExitText(*e), CommandText(e->request())});
    }
    if (!g.json) std::cout << t.Render();
  });

  // ---- nodes
  auto* nodes = app.add_subcommand("nodes", "list the federation's nodes");
  nodes->callback([&] {
    auto client = Connect(g);
    auto resp = client.ok() ? client->ListNodes() : absl::StatusOr<v1::ListNodesResponse>(client.status());
    if (!resp.ok()) {
      rc = Fail(resp.status());
      return;
    }
    if (g.json) std::cout << ToJson(*resp) << "\n";
    else PrintNodes(*resp);
  });

  // ---- ps
  auto* ps = app.add_subcommand("ps", "list executions, newest first");
  std::vector<std::string> ps_states;
  int ps_limit = 20;
  ps->add_option("--state", ps_states, "only these states: queued, running, succeeded, ...")
      ->allow_extra_args(false);
  ps->add_option("-n,--limit", ps_limit, "how many")->capture_default_str();
  ps->callback([&] {
    v1::ListExecutionsRequest req;
    req.set_limit(ps_limit);
    for (const auto& s : ps_states) {
      model::ExecutionState st;
      if (!model::ParseExecutionState(s, &st)) {
        rc = Fail(absl::InvalidArgumentError(absl::StrCat(
            "--state '", s, "': use queued, assigned, running, succeeded, failed, timed_out or cancelled")));
        return;
      }
      req.add_states(wire::ToProto(st));
    }
    auto client = Connect(g);
    auto resp = client.ok() ? client->ListExecutions(req)
                            : absl::StatusOr<v1::ListExecutionsResponse>(client.status());
    if (!resp.ok()) {
      rc = Fail(resp.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(*resp) << "\n";
      return;
    }
    Table t({"ID", "STATE", "NODE", "TRY", "EXIT", "TIME", "COMMAND", "WHY"});
    for (const auto& e : resp->executions()) {
      t.Add({e.id(), wire::StateName(e.state()), e.node_id().empty() ? "-" : e.node_id(),
             std::to_string(e.attempt()), ExitText(e), DurationText(e), CommandText(e.request()),
             WhyText(e)});
    }
    std::cout << t.Render();
  });

  // ---- get
  auto* get = app.add_subcommand("get", "show one execution, with its placement decision");
  std::string get_id;
  get->add_option("id", get_id, "execution id")->required();
  get->callback([&] {
    auto client = Connect(g);
    auto e = client.ok() ? client->Get(get_id) : absl::StatusOr<v1::Execution>(client.status());
    if (!e.ok()) {
      rc = Fail(e.status());
      return;
    }
    if (g.json) std::cout << ToJson(*e) << "\n";
    else PrintExecution(*e);
  });

  // ---- explain
  auto* explain = app.add_subcommand(
      "explain", "show why an execution was placed where it was: every candidate's verdict");
  std::string explain_id;
  explain->add_option("id", explain_id, "execution id")->required();
  explain->callback([&] {
    auto client = Connect(g);
    auto e = client.ok() ? client->Get(explain_id) : absl::StatusOr<v1::Execution>(client.status());
    if (!e.ok()) {
      rc = Fail(e.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(e->placement()) << "\n";
      return;
    }
    PrintExplanation(*e);
  });

  // ---- logs
  auto* logs = app.add_subcommand("logs", "print an execution's output");
  std::string logs_id;
  bool follow = false;
  logs->add_option("id", logs_id, "execution id")->required();
  logs->add_flag("-f,--follow", follow, "keep printing until it ends");
  logs->callback([&] {
    auto client = Connect(g);
    if (!client.ok()) {
      rc = Fail(client.status());
      return;
    }
    if (follow) {
      auto e = Follow(*client, logs_id, true, false);
      if (!e.ok()) rc = Fail(e.status());
      return;
    }
    auto e = client->Get(logs_id);
    if (!e.ok()) {
      rc = Fail(e.status());
      return;
    }
    fwrite(e->result().stdout().data(), 1, e->result().stdout().size(), stdout);
    fwrite(e->result().stderr().data(), 1, e->result().stderr().size(), stderr);
  });

  // ---- cancel
  auto* cancel = app.add_subcommand("cancel", "cancel an execution");
  std::string cancel_id;
  cancel->add_option("id", cancel_id, "execution id")->required();
  cancel->callback([&] {
    auto client = Connect(g);
    auto e = client.ok() ? client->Cancel(cancel_id) : absl::StatusOr<v1::Execution>(client.status());
    if (!e.ok()) {
      rc = Fail(e.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(*e) << "\n";
    } else if (e->state() == v1::EXECUTION_CANCELLED) {
      std::cout << cancel_id << ": cancelled\n";
    } else {
      std::cout << cancel_id << ": cancel requested (it was " << wire::StateName(e->state())
                << " on " << e->node_id() << ")\n";
    }
  });

  // ---- checkpoint, migrate
  auto* ckpt = app.add_subcommand("checkpoint",
                                  "checkpoint a running execution on its node (it carries on)");
  std::string ckpt_id;
  ckpt->add_option("id", ckpt_id, "execution id")->required();
  ckpt->callback([&] {
    auto client = Connect(g);
    auto r = client.ok() ? client->Checkpoint(ckpt_id)
                         : absl::StatusOr<v1::CheckpointResponse>(client.status());
    if (!r.ok()) {
      rc = Fail(r.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(*r) << "\n";
    } else {
      std::cout << ckpt_id << ": checkpoint on " << r->node_id() << " at " << r->image_dir() << " ("
                << FormatBytes(r->image_bytes()) << ", " << r->checkpoint_us() / 1000
                << " ms); it carries on\n";
    }
  });
  auto* mig = app.add_subcommand("migrate", "move a running execution to another node");
  std::string mig_id, mig_to;
  mig->add_option("id", mig_id, "execution id")->required();
  mig->add_option("--to", mig_to, "target node (default: the cheapest feasible node)");
  mig->callback([&] {
    auto client = Connect(g);
    v1::MigrateRequest req;
    req.set_execution_id(mig_id);
    req.set_target_node_id(mig_to);
    auto r = client.ok() ? client->Migrate(req) : absl::StatusOr<v1::MigrateResponse>(client.status());
    if (!r.ok()) {
      rc = Fail(r.status());
      return;
    }
    if (g.json) {
      std::cout << ToJson(*r) << "\n";
    } else {
      std::cout << mig_id << ": moved from " << r->from_node_id() << " to " << r->to_node_id()
                << " (image " << FormatBytes(r->image_bytes()) << "; checkpoint "
                << r->checkpoint_us() / 1000 << " ms, transfer " << r->transfer_us() / 1000
                << " ms, restore " << r->restore_us() / 1000 << " ms, total "
                << r->total_us() / 1000 << " ms)\n  reason: " << r->reason() << "\n";
    }
  });

  // ---- template
  auto* tmpl = app.add_subcommand("template", "environment templates: list, show");
  tmpl->require_subcommand(1);
  std::string tmpl_dir = FLOTILLA_DEFAULT_TEMPLATES_DIR;
  tmpl->add_option("--dir", tmpl_dir, "template directory (an agent's templates_dir)")
      ->capture_default_str();
  auto* tmpl_list = tmpl->add_subcommand("list", "list the templates");
  tmpl_list->callback([&] {
    auto all = pool::LoadTemplates(tmpl_dir);
    if (!all.ok()) {
      rc = Fail(all.status());
      return;
    }
    Table t({"TEMPLATE", "RUNTIME", "ROOTFS", "NETWORK", "CPU", "MEMORY", "PIDS", "POOL", "LIFECYCLE",
             "DESCRIPTION"});
    for (const auto& e : *all) {
      t.Add({e.name, e.runtime, e.rootfs, pool::ToString(e.network),
             FormatMillicores(e.limits.cpu_millis), FormatBytes(e.limits.memory_bytes),
             std::to_string(e.limits.pids), absl::StrCat(e.pool_min, "..", e.pool_max),
             pool::ToString(e.lifecycle), e.description});
    }
    std::cout << t.Render();
  });
  auto* tmpl_show = tmpl->add_subcommand("show", "show one template");
  std::string tmpl_name;
  tmpl_show->add_option("name", tmpl_name, "template name")->required();
  tmpl_show->callback([&] {
    auto all = pool::LoadTemplates(tmpl_dir);
    if (!all.ok()) {
      rc = Fail(all.status());
      return;
    }
    for (const auto& e : *all) {
      if (e.name != tmpl_name) continue;
      std::cout << "name:        " << e.name << "\n"
                << "description: " << e.description << "\n"
                << "file:        " << e.source_path << "\n"
                << "runtime:     " << e.runtime << "\n"
                << "rootfs:      " << e.rootfs
                << (e.rootfs == "host" ? " (read-only /usr, /lib, /bin of the host)" : "") << "\n"
                << "network:     " << pool::ToString(e.network) << "\n"
                << "limits:      cpu " << FormatMillicores(e.limits.cpu_millis) << ", memory "
                << FormatBytes(e.limits.memory_bytes) << ", pids " << e.limits.pids << ", /tmp "
                << FormatBytes(e.limits.tmp_bytes) << ", /work " << FormatBytes(e.limits.work_bytes)
                << ", timeout " << FormatDurationMs(e.limits.timeout.count()) << "\n"
                << "pool:        min " << e.pool_min << ", max " << e.pool_max << ", "
                << pool::ToString(e.lifecycle) << " after use\n";
      if (!e.python_preload.empty()) {
        std::cout << "preload:     " << absl::StrJoin(e.python_preload, ", ") << "\n";
      }
      for (const auto& [k, v] : e.env) std::cout << "env:         " << k << "=" << v << "\n";
      for (const auto& f : e.files) std::cout << "file:        " << f.path << "\n";
      return;
    }
    rc = Fail(absl::NotFoundError(absl::StrCat("no template '", tmpl_name, "' in ", tmpl_dir)));
  });

  AddComponentCommand(app, &rc, &g.json);
  AddSimCommand(app, &rc);
  AddForecastCommand(app, &rc);
  AddTopCommand(app, &rc, &g.manager, &g.json);
  AddFunctionCommands(app, &rc, &g.json);
  AddSecurityCommands(app, &rc);

  app.add_subcommand("version", "print the version")->callback([] { std::cout << "flotilla 0.1.0\n"; });

  app.parse_complete_callback([&] {
    if (!SetLogLevel(g.log_level)) {
      throw CLI::ValidationError("--log-level", "use trace, debug, info, warn or error");
    }
  });
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    ProtectJsonArguments(args);
    std::reverse(args.begin(), args.end());  // CLI11 takes them last first
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2 (like flotilla's own invalid-argument errors), help 0.
    return app.exit(e) == 0 ? 0 : 2;
  }
  return rc;
}

}  // namespace flotilla::cli

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // Debian's abseil is built without NDEBUG, which leaves the mutex deadlock
  // detector on: a measurable cost on every lock of the daemons' hot paths.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return flotilla::cli::Main(argc, argv);
}
