#include "workflow/planner.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace flotilla::workflow {
namespace {

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void AddUnique(std::vector<std::string>* v, const std::string& s) {
  if (!Contains(*v, s)) v->push_back(s);
}

// One schedulable unit: an analysis statement, or the items of a map
// (`__items_<id> = list(ITER)`), which must be computed upstream so the
// fan-out knows its width.
struct Unit {
  std::string id;  // statement id, or "<map id>.items"
  StatementKind kind = StatementKind::kStatement;
  bool items = false;  // the synthetic items unit of a map
  const Statement* stmt = nullptr;
  std::string code;
  std::vector<std::string> reads;
  std::vector<std::string> writes;
  double cost = 0;
};

// A def-use edge between units: `to` reads `var` as `from` left it.
struct UnitEdge {
  int from;
  int to;
  std::string var;
};

// Whether `name` appears as an identifier in the Python expression `expr`
// (a token scan: it may over-approximate through strings, which only ships
// a value that is not needed).
bool MentionsName(const std::string& expr, const std::string& name) {
  auto ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (size_t pos = expr.find(name); pos != std::string::npos; pos = expr.find(name, pos + 1)) {
    bool left = pos == 0 || !ident(expr[pos - 1]);
    size_t end = pos + name.size();
    bool right = end >= expr.size() || !ident(expr[end]);
    if (left && right) return true;
  }
  return false;
}

std::string ItemsVar(const std::string& map_id) { return absl::StrCat("__items_", map_id); }

class Builder {
 public:
  Builder(const Analysis& a, const PlanOptions& o) : a_(a), o_(o) {}

  Plan Build() {
    if (!a_.splittable) return Whole(a_.refusal.empty() ? "the analyzer refused to split it"
                                                        : a_.refusal);
    if (o_.available_nodes < 2) return Whole("one node available: nothing to run in parallel");
    MakeUnits();
    if (units_.empty()) return Whole("the body is empty");
    LinkUnits();
    groups_.clear();
    for (size_t i = 0; i < units_.size(); ++i) groups_.push_back({static_cast<int>(i)});
    MergeSmall();
    if (groups_.size() < 2) {
      return Whole(absl::StrFormat("every piece is below %.1f cost units; one call is cheaper",
                                   o_.min_piece_cost));
    }
    std::vector<int> order = TopologicalGroups();
    double whole = 0;
    for (const auto& u : units_) whole += u.cost;
    whole += o_.min_piece_cost;
    double split = Makespan();
    if (!HasParallelism() || split >= whole) {
      return Whole(absl::StrFormat(
          "splitting would not finish sooner (estimated %.1f cost units split, %.1f whole)%s",
          split, whole, HasParallelism() ? "" : ": its pieces form a chain"));
    }
    Plan plan = Emit(order);
    plan.reason += absl::StrFormat(" (estimated %.1f cost units split, %.1f whole)", split, whole);
    return plan;
  }

 private:
  Plan Whole(const std::string& why) {
    Plan p;
    p.function = a_.function;
    p.split = false;
    p.reason = absl::StrCat("runs whole: ", why);
    Piece piece;
    piece.id = "call";
    piece.kind = PieceKind::kCall;
    piece.params = a_.params;
    piece.inputs = a_.params;
    for (const auto& s : a_.statements) {
      piece.statements.push_back(s.id);
      piece.cost += Cost(s.id, s.cost);
    }
    piece.reason = p.reason;
    p.pieces.push_back(std::move(piece));
    return p;
  }

  double Cost(const std::string& id, double fallback) const {
    auto it = o_.measured_cost_ms.find(id);
    if (it != o_.measured_cost_ms.end()) return it->second * o_.units_per_ms;
    return fallback;
  }

  void MakeUnits() {
    for (const auto& s : a_.statements) {
      if (s.kind == StatementKind::kMap) {
        Unit items;
        items.id = absl::StrCat(s.id, ".items");
        items.items = true;
        items.stmt = &s;
        items.code = absl::StrCat(ItemsVar(s.id), " = list(", s.map.iter, ")\n");
        items.reads = s.reads;
        std::erase(items.reads, s.map.accumulator);
        items.writes = {ItemsVar(s.id)};
        items.cost = 0.5;
        units_.push_back(std::move(items));
      }
      Unit u;
      u.id = s.id;
      u.kind = s.kind;
      u.stmt = &s;
      u.code = s.code;
      u.reads = s.reads;
      u.writes = s.writes;
      u.cost = Cost(s.id, s.cost);
      if (s.kind == StatementKind::kMap) {
        auto n = o_.measured_items.find(s.id);
        u.cost *= n != o_.measured_items.end() ? std::max(1, n->second) : o_.assumed_map_items;
        // The fan-out needs only what the element expression reads; the
        // iterable was evaluated upstream.
        std::vector<std::string> reads;
        for (const auto& v : s.reads) {
          if (v != s.map.accumulator && v != s.map.target && MentionsName(s.map.element, v)) {
            reads.push_back(v);
          }
        }
        u.reads = std::move(reads);
        AddUnique(&u.reads, ItemsVar(s.id));
        u.writes = {s.map.accumulator};
      }
      units_.push_back(std::move(u));
    }
  }

  bool IsParam(const std::string& v) const { return Contains(a_.params, v); }

  // The last unit before `at` that writes `var`, or -1 (a parameter).
  int Producer(int at, const std::string& var) const {
    for (int j = at - 1; j >= 0; --j) {
      if (Contains(units_[j].writes, var)) return j;
    }
    return -1;
  }

  void LinkUnits() {
    for (int i = 0; i < static_cast<int>(units_.size()); ++i) {
      const Unit& u = units_[i];
      for (const auto& v : u.reads) {
        int p = Producer(i, v);
        if (p >= 0) {
          edges_.push_back({p, i, v});
        } else if (IsParam(v) && u.kind == StatementKind::kMap && !u.items) {
          // A map has no code to bind the call's arguments with: its items
          // unit binds the parameter and hands it over.
          edges_.push_back({i - 1, i, v});
        }
      }
    }
  }

  int GroupOf(int unit) const {
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (groups_[g].count(unit)) return static_cast<int>(g);
    }
    return -1;
  }

  bool IsMapGroup(int g) const {
    for (int u : groups_[g]) {
      if (units_[u].kind == StatementKind::kMap && !units_[u].items) return true;
    }
    return false;
  }

  double GroupCost(int g) const {
    double c = 0;
    for (int u : groups_[g]) c += units_[u].cost;
    return c;
  }

  std::set<std::pair<int, int>> GroupEdges() const {
    std::set<std::pair<int, int>> out;
    for (const auto& e : edges_) {
      int a = GroupOf(e.from), b = GroupOf(e.to);
      if (a != b) out.insert({a, b});
    }
    return out;
  }

  // True if b can be reached from a other than by a direct edge.
  bool IndirectPath(int a, int b, const std::set<std::pair<int, int>>& ge) const {
    std::vector<int> stack;
    std::set<int> seen;
    for (const auto& [x, y] : ge) {
      if (x == a && y != b) stack.push_back(y);
    }
    while (!stack.empty()) {
      int n = stack.back();
      stack.pop_back();
      if (n == b) return true;
      if (!seen.insert(n).second) continue;
      for (const auto& [x, y] : ge) {
        if (x == n) stack.push_back(y);
      }
    }
    return false;
  }

  // A merged piece runs its units in source order in one namespace, with its
  // inputs set first and its outputs read at the end. That is only the same
  // as running them apart if no unit of the merge overwrites an input before
  // the unit that needs the outside value reads it, and every value leaving
  // the piece is the last one written inside it.
  bool MergeIsSafe(const std::set<int>& merged) const {
    for (const auto& e : edges_) {
      bool from_in = merged.count(e.from), to_in = merged.count(e.to);
      if (!from_in && to_in) {
        for (int u : merged) {
          if (u < e.to && Contains(units_[u].writes, e.var)) return false;
        }
      }
      if (from_in && !to_in) {
        for (int u : merged) {
          if (u > e.from && Contains(units_[u].writes, e.var)) return false;
        }
      }
    }
    return true;
  }

  int64_t EdgeBytes(int ga, int gb) const {
    int64_t bytes = 0;
    for (const auto& e : edges_) {
      if (GroupOf(e.from) == ga && GroupOf(e.to) == gb) {
        auto it = o_.measured_bytes.find(e.var);
        bytes += it != o_.measured_bytes.end() ? it->second : 1;
      }
    }
    return bytes;
  }

  // The estimated time to run the plan: the longest path through the
  // pieces, each costing its units plus one remote-call overhead
  // (min_piece_cost); a fan-out's work is spread over the nodes.
  double Makespan() const {
    auto ge = GroupEdges();
    std::vector<int> order = TopologicalGroups();
    std::vector<double> finish(groups_.size(), 0);
    for (int g : order) {
      double start = 0;
      for (const auto& [a, b] : ge) {
        if (b == g) start = std::max(start, finish[a]);
      }
      double work = GroupCost(g);
      if (IsMapGroup(g)) work /= std::max(1, o_.available_nodes);
      finish[g] = start + work + o_.min_piece_cost;
    }
    double m = 0;
    for (double f : finish) m = std::max(m, f);
    return m;
  }

  // Greedy: among the merges of a piece below min_piece_cost with a
  // neighbour, take the one that leaves the shortest makespan, as long as it
  // grows by no more than the small piece's own work (a merge saves one
  // remote call, but must not make a branch wait for its sibling's work).
  void MergeSmall() {
    while (true) {
      auto ge = GroupEdges();
      const double now = Makespan();
      int best_a = -1, best_b = -1;
      double best_span = 0;
      int64_t best_bytes = -1;
      auto consider = [&](int a, int b, int64_t bytes) {
        if (IsMapGroup(a) || IsMapGroup(b)) return;
        if (std::min(GroupCost(a), GroupCost(b)) >= o_.min_piece_cost) return;
        std::set<int> merged = groups_[a];
        merged.insert(groups_[b].begin(), groups_[b].end());
        if (!MergeIsSafe(merged)) return;
        auto saved = groups_;
        groups_[a] = merged;
        groups_.erase(groups_.begin() + b);
        double span = Makespan();
        groups_ = std::move(saved);
        if (span > now + std::min(GroupCost(a), GroupCost(b)) + 1e-9) return;
        if (best_a < 0 || span < best_span - 1e-9 ||
            (std::abs(span - best_span) <= 1e-9 && bytes > best_bytes)) {
          best_a = a, best_b = b, best_span = span, best_bytes = bytes;
        }
      };
      for (const auto& [a, b] : ge) {
        if (IndirectPath(a, b, ge)) continue;
        consider(a, b, EdgeBytes(a, b));
      }
      // A unit nobody depends on and that depends on nobody (e.g. `acc = []`
      // before a map) may join the piece of its neighbour in source order.
      for (size_t g = 0; g < groups_.size(); ++g) {
        bool linked = false;
        for (const auto& [a, b] : ge) linked |= (a == static_cast<int>(g) || b == static_cast<int>(g));
        if (linked) continue;
        int unit = *groups_[g].begin();
        for (int n : {unit + 1, unit - 1}) {
          if (n < 0 || n >= static_cast<int>(units_.size())) continue;
          int other = GroupOf(n);
          if (other != static_cast<int>(g)) consider(static_cast<int>(g), other, 0);
        }
      }
      if (best_a < 0) return;
      groups_[best_a].insert(groups_[best_b].begin(), groups_[best_b].end());
      groups_.erase(groups_.begin() + best_b);
    }
  }

  std::vector<int> TopologicalGroups() const {
    auto ge = GroupEdges();
    std::vector<int> indegree(groups_.size(), 0);
    for (const auto& [a, b] : ge) indegree[b]++;
    std::vector<int> order;
    std::vector<bool> taken(groups_.size(), false);
    while (order.size() < groups_.size()) {
      // Among the ready groups, the one whose first unit comes first: a
      // stable, readable order.
      int pick = -1;
      for (size_t g = 0; g < groups_.size(); ++g) {
        if (taken[g] || indegree[g] != 0) continue;
        if (pick < 0 || *groups_[g].begin() < *groups_[pick].begin()) pick = static_cast<int>(g);
      }
      if (pick < 0) break;  // cannot happen: merges keep the graph acyclic
      taken[pick] = true;
      order.push_back(pick);
      for (const auto& [a, b] : ge) {
        if (a == pick) indegree[b]--;
      }
    }
    return order;
  }

  bool HasParallelism() const {
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (IsMapGroup(static_cast<int>(g))) return true;
    }
    auto ge = GroupEdges();
    std::map<int, int> out, in;
    for (const auto& [a, b] : ge) out[a]++, in[b]++;
    for (const auto& [g, n] : out) {
      if (n > 1) return true;
    }
    for (const auto& [g, n] : in) {
      if (n > 1) return true;
    }
    // Groups with no edges at all run beside the others.
    int roots = 0;
    for (size_t g = 0; g < groups_.size(); ++g) {
      if (!in.count(static_cast<int>(g))) roots++;
    }
    return roots > 1;
  }

  Plan Emit(const std::vector<int>& order) {
    Plan plan;
    plan.function = a_.function;
    plan.split = true;
    std::map<int, std::string> piece_id;
    for (size_t i = 0; i < order.size(); ++i) piece_id[order[i]] = absl::StrCat("p", i + 1);
    int maps = 0;
    for (int g : order) {
      Piece p;
      p.id = piece_id[g];
      std::vector<int> members(groups_[g].begin(), groups_[g].end());  // source order
      std::vector<std::string> ids;
      for (int u : members) {
        const Unit& unit = units_[u];
        ids.push_back(unit.id);
        if (!unit.items) AddUnique(&p.statements, unit.stmt->id);
        p.cost += unit.cost;
        if (unit.kind == StatementKind::kMap && !unit.items) {
          p.kind = PieceKind::kMap;
          p.map = unit.stmt->map;
          p.items_from = ItemsVar(unit.stmt->id);
          maps++;
        } else if (unit.kind == StatementKind::kReturn) {
          p.kind = PieceKind::kReturn;
          p.return_expr = unit.code;
        } else {
          p.code += unit.code;
          if (!p.code.empty() && p.code.back() != '\n') p.code += '\n';
        }
        if (unit.items) AddUnique(&p.expand, ItemsVar(unit.stmt->id));
      }
      // Inputs: names read from outside the piece, or parameters.
      for (int u : members) {
        for (const auto& v : units_[u].reads) {
          int prod = Producer(u, v);
          bool map_param = units_[u].kind == StatementKind::kMap && !units_[u].items && IsParam(v);
          if (map_param && groups_[g].count(u - 1) == 0) {
            AddUnique(&p.inputs, v);
            continue;
          }
          if (prod >= 0 && groups_[g].count(prod)) continue;
          if (prod < 0 && !IsParam(v)) continue;
          AddUnique(&p.inputs, v);
          if (prod < 0) AddUnique(&p.params, v);
        }
      }
      for (const auto& e : edges_) {
        if (groups_[g].count(e.from) && !groups_[g].count(e.to)) AddUnique(&p.outputs, e.var);
      }
      p.reason = Reason(members, g);
      plan.pieces.push_back(std::move(p));
    }
    std::map<std::pair<int, int>, Edge> edges;
    for (const auto& e : edges_) {
      int a = GroupOf(e.from), b = GroupOf(e.to);
      if (a == b) continue;
      Edge& edge = edges[{a, b}];
      edge.from = piece_id[a];
      edge.to = piece_id[b];
      AddUnique(&edge.vars, e.var);
      auto it = o_.measured_bytes.find(e.var);
      if (it != o_.measured_bytes.end()) edge.bytes += it->second;
    }
    for (int a : order) {
      for (int b : order) {
        auto it = edges.find({a, b});
        if (it != edges.end()) plan.edges.push_back(it->second);
      }
    }
    plan.reason = absl::StrFormat(
        "split into %d pieces (%d fan-out%s): independent work by data dependencies; pieces "
        "under %.1f cost units merged into a neighbour",
        static_cast<int>(plan.pieces.size()), maps, maps == 1 ? "" : "s", o_.min_piece_cost);
    return plan;
  }

  std::string Reason(const std::vector<int>& members, int g) const {
    std::vector<std::string> parts;
    for (int u : members) {
      const Unit& unit = units_[u];
      if (unit.items) continue;
      parts.push_back(absl::StrFormat("%s (line %d)", unit.stmt->id, unit.stmt->line));
    }
    std::string what = absl::StrJoin(parts, ", ");
    if (parts.empty()) {
      // Only the items of a fan-out: computed upstream so the map knows its width.
      const Statement* map = units_[members.front()].stmt;
      return absl::StrFormat("the items of %s (line %d), evaluated before the fan-out", map->id,
                             map->line);
    }
    if (IsMapGroup(g)) {
      return absl::StrCat(what, ": independent iterations, fanned out over the items");
    }
    if (members.size() > 1) {
      return absl::StrFormat("%s: merged, pieces below %.1f cost units do not pay for a remote call"
                             " (%.1f in all)",
                             what, o_.min_piece_cost, GroupCost(g));
    }
    return absl::StrFormat("%s: %.1f cost units, worth a piece of its own", what, GroupCost(g));
  }

  const Analysis& a_;
  const PlanOptions& o_;
  std::vector<Unit> units_;
  std::vector<UnitEdge> edges_;
  std::vector<std::set<int>> groups_;
};

}  // namespace

Plan MakePlan(const Analysis& analysis, const PlanOptions& options) {
  return Builder(analysis, options).Build();
}

int ChunkCount(int items, double per_item_cost, double min_chunk_cost, int max_parallel) {
  if (items <= 1) return 1;
  int chunks = std::min(items, std::max(1, max_parallel));
  if (per_item_cost > 0 && min_chunk_cost > 0) {
    int by_cost = static_cast<int>(std::floor(items * per_item_cost / min_chunk_cost));
    chunks = std::min(chunks, std::max(1, by_cost));
  }
  return std::max(1, chunks);
}

}  // namespace flotilla::workflow
