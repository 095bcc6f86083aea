// `flotilla ca` (the federation's certificate authority) and `flotilla user`
// (users, tenants and their tokens). Both work on files, on the manager's
// host: `flotilla up` runs them by itself, so a local federation needs
// neither; a federation across hosts issues a certificate per agent.
#pragma once

#include <CLI/CLI.hpp>

namespace flotilla::cli {

// Registers the subcommands; callbacks set `*rc` (0 ok, 1 error, 2 usage).
void AddSecurityCommands(CLI::App& app, int* rc);

}  // namespace flotilla::cli
