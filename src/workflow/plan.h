// Plan: a DAG of pieces that together compute one call of a function, or a
// hand-written workflow's steps. Pieces exchange named values; an edge says
// which names flow from one piece to another and how many bytes they were
// measured to cost (0 when not yet measured).
//
// Invariants (checked by ValidatePlan): piece ids are unique; every edge
// joins two pieces of the plan; the graph is acyclic; every input of a piece
// is a parameter of the call or the output of exactly one upstream piece.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "workflow/analysis.h"

namespace flotilla::workflow {

enum class PieceKind {
  kCall,     // the whole function, unsplit
  kPiece,    // statements of the body
  kMap,      // one element expression per item of an expanded input
  kReturn,   // evaluates the return expression (may run statements first)
  kCommand,  // a hand-written step: a shell command or Python script
};

struct Piece {
  std::string id;
  PieceKind kind = PieceKind::kPiece;
  std::vector<std::string> statements;  // analysis statement ids
  std::string code;                     // statements (kPiece, kReturn) or the step's script
  std::string return_expr;              // kReturn
  std::string runtime;                  // kCommand: "shell" or "python3"
  // Names it needs and the pieces that produce them; a name produced by no
  // piece is a parameter of the call (bound from the call's arguments).
  std::vector<std::string> inputs;
  std::vector<std::string> params;      // the inputs that are call parameters
  std::vector<std::string> outputs;     // names later pieces read
  std::vector<std::string> expand;      // outputs shipped as separate items (a fan-out follows)
  MapSpec map;                          // kMap: items come from input map.iter's expansion
  std::string items_from;               // kMap: the output name holding the items
  double cost = 0;                      // estimated, relative units
  std::string reason;                   // why it is a piece of its own (or what it merged)
};

struct Edge {
  std::string from;
  std::string to;
  std::vector<std::string> vars;
  int64_t bytes = 0;
};

struct Plan {
  std::string function;
  bool split = false;       // false: one kCall piece runs the function whole
  std::string reason;       // one line: why split this way, or why not
  std::vector<Piece> pieces;  // in a topological order
  std::vector<Edge> edges;
};

absl::string_view PieceKindName(PieceKind kind);

// Checks the invariants above; InvalidArgument names the piece or edge.
absl::Status ValidatePlan(const Plan& plan);

// The ids of the pieces whose every predecessor is in `done` and that are
// not in `done` or `started` themselves, in plan order.
std::vector<std::string> ReadyPieces(const Plan& plan, const std::vector<std::string>& done,
                                     const std::vector<std::string>& started);

// JSON form (the REST API's "plan" object and the durable workflow record).
std::string PlanToJson(const Plan& plan);
absl::StatusOr<Plan> PlanFromJson(absl::string_view json);

// A hand-written workflow (YAML or JSON):
//   name: etl
//   steps:
//     - name: fetch
//       run: "echo 42"           # the script
//       runtime: shell           # or python3 (default shell)
//     - name: double
//       run: "print(int(input()) * 2)"
//       runtime: python3
//       inputs: [fetch]          # steps whose stdout becomes this step's stdin
// Step names are unique identifiers; inputs name earlier or later steps
// (the order is derived); a cycle, an unknown input or an empty run is an
// InvalidArgument naming the step.
absl::StatusOr<Plan> PlanFromWorkflowSpec(absl::string_view yaml_or_json);

}  // namespace flotilla::workflow
