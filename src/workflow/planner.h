// Planner: chooses the split points of one function call — pure, no I/O.
//
// From an Analysis (statements with def-use information) it builds the
// dependency graph of the body (an edge wherever a statement reads a name
// the last earlier writer of that name produced), then merges pieces that
// are too small to pay for a remote call: repeatedly, the cheapest piece is
// merged with a neighbour along an edge when the merge keeps the graph
// acyclic, preferring the neighbour that sends it the most bytes (measured
// sizes when known, else one unit per name). Map statements (independent
// loop iterations) stay pieces of their own: they fan out at run time, in
// chunks that ChunkCount sizes from the measured cost per item.
//
// Costs: the analyzer's static estimate, replaced by measured milliseconds
// of earlier runs when PlanOptions has them; a piece is "too small" below
// PlanOptions::min_piece_cost (the per-piece overhead of a remote call, in
// the same units).
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "workflow/analysis.h"
#include "workflow/plan.h"

namespace flotilla::workflow {

struct PlanOptions {
  // Pieces cheaper than this are merged into a neighbour. With static costs
  // (~1 per simple statement) the default keeps calls and loops apart and
  // merges plain assignments.
  double min_piece_cost = 3.0;
  // Measured run time of each statement (ms) and measured encoded size of
  // each name (bytes), from earlier runs; override the static estimates.
  std::map<std::string, double> measured_cost_ms;
  std::map<std::string, int64_t> measured_bytes;
  // A map's cost is per item; until a run measured how many items it had
  // (measured_items, by statement id), the planner assumes this many.
  int assumed_map_items = 8;
  std::map<std::string, int> measured_items;
  // The cost units one measured millisecond is worth.
  double units_per_ms = 1.0;
  // Nodes that could run pieces; with one node there is nothing to gain
  // from a split and the plan runs whole.
  int available_nodes = 1;
};

// Returns the plan; a function the analysis refused, or one with nothing to
// run in parallel, is planned whole (one kCall piece) with the reason.
Plan MakePlan(const Analysis& analysis, const PlanOptions& options);

// How many chunks a fan-out of `items` should run in: enough to use
// `max_parallel` slots, but no chunk cheaper than `min_chunk_cost` when the
// per-item cost is known (per_item_cost <= 0: unknown, one item a chunk up
// to max_parallel). Always in [1, max(items, 1)].
int ChunkCount(int items, double per_item_cost, double min_chunk_cost, int max_parallel);

}  // namespace flotilla::workflow
