// `flotilla function deploy|list|show|invoke|annotate|delete`,
// `flotilla split analyze FILE:FUNC` and `flotilla workflow
// run|get|list|cancel`: the CLI over the manager's REST API
// (docs/workflows.md). The REST address comes from --http, then
// $FLOTILLA_HTTP, then the local federation that `flotilla up` recorded.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace flotilla::cli {

// Registers the subcommands on `app`. `json` points at the global --json
// flag; callbacks set `*rc` (0; 1 on an error or a failed call; 2 on a
// usage error). Both must outlive app.parse().
void AddFunctionCommands(CLI::App& app, int* rc, const bool* json);

// CLI11 reads an argument "[a,b]" as a list of two values; the arguments of
// `function invoke` are JSON, so this marks such arguments (in argv order)
// to pass through whole. Call before parsing.
void ProtectJsonArguments(std::vector<std::string>& args);

}  // namespace flotilla::cli
