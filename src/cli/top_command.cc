#include "cli/top_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/client.h"
#include "cli/output.h"

namespace flotilla::cli {
namespace {

namespace v1 = ::flotilla::v1;

std::string Command(const v1::ExecutionRequest& r) {
  std::string text = r.code().argv_size() > 0
                         ? absl::StrJoin(r.code().argv(), " ")
                         : absl::StrCat(r.code().runtime(), ": ", r.code().source());
  for (char& c : text) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  if (!r.name().empty()) text = r.name();
  return text.size() > 40 ? text.substr(0, 37) + "..." : text;
}

std::string RiskText(double risk) {
  if (risk > 0 && risk < 0.005) return "<1%";
  return absl::StrFormat("%.0f%%", 100 * std::max(risk, 0.0));
}

// Bytes per second, compact: "0", "850", "12K", "1.2M" (powers of 1024).
std::string RateText(int64_t bps) {
  if (bps <= 0) return "0";
  const char* units[] = {"", "K", "M", "G", "T"};
  double v = static_cast<double>(bps);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  if (u == 0) return absl::StrCat(bps);
  return absl::StrFormat(v >= 10 ? "%.0f%s" : "%.1f%s", v, units[u]);
}

// "read/write" or "rx/tx", per second.
std::string PairText(int64_t a, int64_t b) { return RateText(a) + "/" + RateText(b); }

std::string Render(const v1::ListExecutionsResponse& resp) {
  Table t({"ID", "NODE", "CPU", "MEMORY", "PEAK", "PIDS", "IO R/W", "NET RX/TX", "RISK",
           "RESIZES", "PRESSURE", "COMMAND"});
  for (const auto& e : resp.executions()) {
    const bool has = e.has_usage();
    const auto& u = e.usage();
    std::string memory = "-";
    if (has) {
      memory = FormatBytes(u.memory_bytes());
      if (u.memory_limit_bytes() > 0)
        absl::StrAppend(&memory, "/", FormatBytes(u.memory_limit_bytes()));
    }
    t.Add({e.id(), e.node_id().empty() ? "-" : e.node_id(),
           has ? absl::StrFormat("%.2f", u.cpu_cores()) : "-", memory,
           has ? FormatBytes(u.memory_peak_bytes()) : "-", has ? std::to_string(u.pids()) : "-",
           has ? PairText(u.io_read_bps(), u.io_write_bps()) : "-",
           has ? PairText(u.net_rx_bps(), u.net_tx_bps()) : "-",
           has ? RiskText(u.risk()) : "-", has ? std::to_string(u.resizes()) : "-",
           // Why the task is under pressure (needs migration first), else the last resize.
           !has ? "-"
           : u.needs_migration() ? "MIGRATE: " + u.pressure_reason()
           : !u.last_resize().empty() ? u.last_resize()
                                      : "-",
           Command(e.request())});
  }
  return t.Render();
}

}  // namespace

void AddTopCommand(CLI::App& app, int* rc, const std::string* manager, const bool* json) {
  auto* top = app.add_subcommand("top", "show running executions with their live resource usage");
  struct Options {
    bool watch = false;
    int count = 0;
    int limit = 100;
  };
  auto opts = std::make_shared<Options>();
  top->add_flag("-w,--watch", opts->watch, "refresh every second");
  top->add_option("-c,--count", opts->count,
                  "with --watch: stop after this many refreshes (0: never)");
  top->add_option("-n,--limit", opts->limit, "at most this many executions")->capture_default_str();
  top->callback([rc, manager, json, opts] {
    auto addr = ResolveManager(*manager);
    if (!addr.ok()) {
      std::fprintf(stderr, "flotilla: %s\n", std::string(addr.status().message()).c_str());
      *rc = 1;
      return;
    }
    auto security = ResolveClientSecurity();
    if (!security.ok()) {
      std::fprintf(stderr, "flotilla: %s\n", std::string(security.status().message()).c_str());
      *rc = 1;
      return;
    }
    Client client(*addr, *security);
    v1::ListExecutionsRequest req;
    req.add_states(v1::EXECUTION_RUNNING);
    req.set_limit(opts->limit);
    for (int i = 0;; ++i) {
      auto resp = client.ListExecutions(req);
      if (!resp.ok()) {
        std::fprintf(stderr, "flotilla: %s\n", std::string(resp.status().message()).c_str());
        *rc = 1;
        return;
      }
      if (*json) {
        std::cout << ToJson(*resp) << "\n";
      } else {
        if (opts->watch) std::cout << "\033[H\033[2J";  // clear the screen
        std::cout << Render(*resp);
        if (resp->executions_size() == 0) std::cout << "(no running executions)\n";
      }
      std::cout.flush();
      if (!opts->watch || (opts->count > 0 && i + 1 >= opts->count)) return;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  });
}

}  // namespace flotilla::cli
