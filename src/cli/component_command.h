// `flotilla component plan FILE`: shows how this node (or a hypothetical
// one) would shard a component spec and pin its shards to CPUs, and why —
// the sharding engine and the placement of src/shard, run locally with no
// manager or agent (like `flotilla split analyze` shows a split plan).
#pragma once

#include <CLI/CLI.hpp>

namespace flotilla::cli {

// Registers the `component` subcommand on `app`. Its callbacks set `*rc` to
// the exit status (0; 2 for a bad spec or flag; 1 otherwise). `*json` is
// the global --json flag. Both must outlive app.parse().
void AddComponentCommand(CLI::App& app, int* rc, const bool* json);

}  // namespace flotilla::cli
