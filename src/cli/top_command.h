// `flotilla top`: the running executions with their live resource usage
// (sampled by their agents at 10 Hz, reported every heartbeat): node, cpu
// cores, memory current/limit, peak, pids and the risk of exceeding the
// memory limit within the next 10 s. --watch refreshes every second.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace flotilla::cli {

// Registers the `top` subcommand on `app`. `manager` points at the global
// --manager flag's value and `json` at the global --json flag; its callback
// sets `*rc` to the exit status (0, 1 on an error). All must outlive
// app.parse().
void AddTopCommand(CLI::App& app, int* rc, const std::string* manager, const bool* json);

}  // namespace flotilla::cli
