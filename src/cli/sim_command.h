// `flotilla sim`: runs the scheduling simulator (src/sim) over a generated
// trace with each placement policy and prints one row of metrics per policy.
#pragma once

#include <CLI/CLI.hpp>

namespace flotilla::cli {

// Registers the `sim` subcommand on `app`. Its callback sets `*rc` to the
// process exit status: 0, or 2 when an option is invalid. `rc` must outlive
// app.parse().
void AddSimCommand(CLI::App& app, int* rc);

}  // namespace flotilla::cli
