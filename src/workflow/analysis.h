// Analysis: what the Python analyzer (sdk/python/flotilla/_split.py, run
// sandboxed) found in one function's body — its top-level statements with
// the names each reads and writes, a static cost, and whether the function
// can be split at all. Plain values; ParseAnalysis reads the analyzer's JSON.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::workflow {

enum class StatementKind {
  kStatement,  // plain statements, run in order inside one piece
  kMap,        // a loop over independent items: a fan-out
  kReturn,     // the final `return EXPR` (code holds the expression)
};

// `for target in iter: accumulator.append(element)` or
// `accumulator = [element for target in iter]`.
struct MapSpec {
  std::string iter;
  std::string target;
  std::string element;
  std::string accumulator;
};

struct Statement {
  std::string id;  // "s1", "s2", ... in source order
  int line = 0;
  int end_line = 0;
  StatementKind kind = StatementKind::kStatement;
  std::string code;
  std::vector<std::string> reads;   // parameters or names written earlier
  std::vector<std::string> writes;  // bound or mutated names
  double cost = 1.0;                // static estimate, relative units
  std::vector<std::string> calls;   // deployed or module functions it calls
  MapSpec map;                      // kMap only
};

struct Analysis {
  std::string function;
  std::vector<std::string> params;
  bool splittable = false;
  std::string refusal;  // why not, when !splittable
  std::vector<Statement> statements;
};

// Parses the analyzer's output object ({"ok": true, ...}). InvalidArgument
// naming the field when it does not have the documented shape; an analyzer
// error ({"ok": false, "error": {...}}) comes back as InvalidArgument with
// its message (e.g. a syntax error and its line).
absl::StatusOr<Analysis> ParseAnalysis(absl::string_view json);

absl::string_view StatementKindName(StatementKind kind);

}  // namespace flotilla::workflow
