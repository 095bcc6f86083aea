// Tests of the split planner (src/workflow/planner.cc) and the plan model
// (plan.cc): dependency edges, merging of small pieces, fan-outs, refusals,
// hand-written workflows and the JSON round trip.

#include "workflow/planner.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "workflow/analysis.h"
#include "workflow/plan.h"

namespace flotilla::workflow {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

Statement Stmt(std::string id, int line, std::string code, std::vector<std::string> reads,
               std::vector<std::string> writes, double cost) {
  Statement s;
  s.id = std::move(id);
  s.line = line;
  s.end_line = line;
  s.code = std::move(code);
  s.reads = std::move(reads);
  s.writes = std::move(writes);
  s.cost = cost;
  return s;
}

Statement Return(std::string id, int line, std::string expr, std::vector<std::string> reads) {
  Statement s = Stmt(std::move(id), line, std::move(expr), std::move(reads), {}, 1);
  s.kind = StatementKind::kReturn;
  return s;
}

// def diamond(x):
//     a = prep(x)          # cheap
//     b = heavy1(a)
//     c = heavy2(a)
//     return b + c
Analysis Diamond() {
  Analysis a;
  a.function = "diamond";
  a.params = {"x"};
  a.splittable = true;
  a.statements = {Stmt("s1", 2, "a = prep(x)", {"x"}, {"a"}, 1),
                  Stmt("s2", 3, "b = heavy1(a)", {"a"}, {"b"}, 10),
                  Stmt("s3", 4, "c = heavy2(a)", {"a"}, {"c"}, 10),
                  Return("s4", 5, "b + c", {"b", "c"})};
  return a;
}

PlanOptions ThreeNodes() {
  PlanOptions o;
  o.available_nodes = 3;
  return o;
}

const Piece* Find(const Plan& plan, const std::string& id) {
  for (const auto& p : plan.pieces) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

TEST(PlannerTest, DiamondRunsTheTwoHeavyBranchesSideBySide) {
  Plan plan = MakePlan(Diamond(), ThreeNodes());
  ASSERT_TRUE(plan.split) << plan.reason;
  ASSERT_TRUE(ValidatePlan(plan).ok()) << ValidatePlan(plan);
  // Merging the cheap head or the cheap join into a branch would make the
  // other branch wait for it: all four stay pieces, the branches in parallel.
  ASSERT_EQ(plan.pieces.size(), 4u) << PlanToJson(plan);
  auto ready = ReadyPieces(plan, {plan.pieces[0].id}, {});
  EXPECT_EQ(ready.size(), 2u) << PlanToJson(plan);
  const Piece& last = plan.pieces.back();
  EXPECT_EQ(last.kind, PieceKind::kReturn);
  EXPECT_EQ(last.return_expr, "b + c");
  EXPECT_THAT(plan.pieces.front().params, ElementsAre("x"));
}

TEST(PlannerTest, CheapStatementsOfABranchMergeIntoIt) {
  // def f(x):  a = heavy1(x); a2 = a + 1; b = heavy2(x); return a2 + b
  Analysis a;
  a.function = "f";
  a.params = {"x"};
  a.splittable = true;
  a.statements = {Stmt("s1", 2, "a = heavy1(x)", {"x"}, {"a"}, 10),
                  Stmt("s2", 3, "a2 = a + 1", {"a"}, {"a2"}, 1),
                  Stmt("s3", 4, "b = heavy2(x)", {"x"}, {"b"}, 10),
                  Return("s4", 5, "a2 + b", {"a2", "b"})};
  Plan plan = MakePlan(a, ThreeNodes());
  ASSERT_TRUE(plan.split) << plan.reason;
  ASSERT_TRUE(ValidatePlan(plan).ok()) << ValidatePlan(plan) << PlanToJson(plan);
  // s2 joins s1's piece; the join stays apart (merged into a branch it would
  // hold that branch back until the other one ends); two pieces start at once.
  EXPECT_EQ(plan.pieces.size(), 3u) << PlanToJson(plan);
  EXPECT_EQ(ReadyPieces(plan, {}, {}).size(), 2u);
  EXPECT_THAT(plan.pieces[0].statements, ElementsAre("s1", "s2")) << PlanToJson(plan);
}

TEST(PlannerTest, ChainRunsWhole) {
  Analysis a;
  a.function = "chain";
  a.params = {"x"};
  a.splittable = true;
  a.statements = {Stmt("s1", 2, "a = f(x)", {"x"}, {"a"}, 10),
                  Stmt("s2", 3, "b = g(a)", {"a"}, {"b"}, 10), Return("s3", 4, "b", {"b"})};
  Plan plan = MakePlan(a, ThreeNodes());
  EXPECT_FALSE(plan.split);
  EXPECT_THAT(plan.reason, HasSubstr("chain"));
  ASSERT_EQ(plan.pieces.size(), 1u);
  EXPECT_EQ(plan.pieces[0].kind, PieceKind::kCall);
}

TEST(PlannerTest, RefusalRunsWholeWithTheAnalyzersReason) {
  Analysis a = Diamond();
  a.splittable = false;
  a.refusal = "line 3: 'global counter' writes module state";
  Plan plan = MakePlan(a, ThreeNodes());
  EXPECT_FALSE(plan.split);
  EXPECT_THAT(plan.reason, HasSubstr("global counter"));
}

TEST(PlannerTest, OneNodeRunsWhole) {
  PlanOptions o;
  o.available_nodes = 1;
  Plan plan = MakePlan(Diamond(), o);
  EXPECT_FALSE(plan.split);
  EXPECT_THAT(plan.reason, HasSubstr("one node"));
}

TEST(PlannerTest, AllCheapRunsWhole) {
  Analysis a = Diamond();
  for (auto& s : a.statements) s.cost = 0.5;
  Plan plan = MakePlan(a, ThreeNodes());
  EXPECT_FALSE(plan.split) << PlanToJson(plan);
}

TEST(PlannerTest, MeasuredCostsOverrideTheStaticEstimate) {
  // s3 turned out to take 0.1 ms: it no longer deserves a piece, and with
  // only one heavy branch left the function is a chain.
  PlanOptions o = ThreeNodes();
  o.measured_cost_ms = {{"s3", 0.1}};
  Plan plan = MakePlan(Diamond(), o);
  EXPECT_FALSE(plan.split) << PlanToJson(plan);
}

// def fan(xs, k):
//     out = []
//     for x in xs:
//         out.append(work(x, k))
//     return sum(out)
Analysis FanOut() {
  Analysis a;
  a.function = "fan";
  a.params = {"xs", "k"};
  a.splittable = true;
  Statement init = Stmt("s1", 2, "out = []", {}, {"out"}, 0.5);
  Statement loop = Stmt("s2", 3, "for x in xs:\n    out.append(work(x, k))", {"xs", "k", "out"},
                        {"out"}, 5);
  loop.kind = StatementKind::kMap;
  loop.map = MapSpec{"xs", "x", "work(x, k)", "out"};
  a.statements = {init, loop, Return("s3", 5, "sum(out)", {"out"})};
  return a;
}

TEST(PlannerTest, LoopOfIndependentItemsBecomesAFanOut) {
  Plan plan = MakePlan(FanOut(), ThreeNodes());
  ASSERT_TRUE(plan.split) << plan.reason;
  ASSERT_TRUE(ValidatePlan(plan).ok()) << ValidatePlan(plan) << PlanToJson(plan);
  const Piece* map = nullptr;
  for (const auto& p : plan.pieces) {
    if (p.kind == PieceKind::kMap) map = &p;
  }
  ASSERT_NE(map, nullptr) << PlanToJson(plan);
  EXPECT_EQ(map->map.element, "work(x, k)");
  EXPECT_EQ(map->items_from, "__items_s2");
  // The parameter k reaches the map through the piece that computes the items.
  EXPECT_THAT(map->inputs, UnorderedElementsAre("__items_s2", "k"));
  EXPECT_TRUE(map->params.empty());
  const Piece& first = plan.pieces.front();
  SCOPED_TRACE(PlanToJson(plan));
  EXPECT_THAT(first.expand, ElementsAre("__items_s2"));
  EXPECT_THAT(first.code, HasSubstr("__items_s2 = list(xs)"));
  EXPECT_THAT(first.outputs, UnorderedElementsAre("__items_s2", "k"));
  EXPECT_EQ(plan.pieces.back().kind, PieceKind::kReturn);
  EXPECT_THAT(plan.pieces.back().inputs, ElementsAre("out"));
}

TEST(PlannerTest, MergeNeverReadsAnOverwrittenInput) {
  // s1 and s3 both write v and are cheap; s2 (heavy, separate) reads s1's v.
  // Merging s1 with s3 would hand s2 the value s3 left: the merge is refused.
  Analysis a;
  a.function = "f";
  a.params = {"p"};
  a.splittable = true;
  a.statements = {Stmt("s1", 2, "v = p + 1", {"p"}, {"v"}, 1),
                  Stmt("s2", 3, "w = heavy(v)", {"v"}, {"w"}, 10),
                  Stmt("s3", 4, "v = 7", {}, {"v"}, 1),
                  Stmt("s4", 5, "z = heavy(p)", {"p"}, {"z"}, 10),
                  Return("s5", 6, "w + v + z", {"w", "v", "z"})};
  Plan plan = MakePlan(a, ThreeNodes());
  ASSERT_TRUE(ValidatePlan(plan).ok()) << ValidatePlan(plan) << PlanToJson(plan);
  for (const auto& p : plan.pieces) {
    bool has1 = std::count(p.statements.begin(), p.statements.end(), "s1");
    bool has3 = std::count(p.statements.begin(), p.statements.end(), "s3");
    bool has2 = std::count(p.statements.begin(), p.statements.end(), "s2");
    EXPECT_FALSE(has1 && has3 && !has2) << PlanToJson(plan);
  }
}

TEST(PlannerTest, ChunkCountUsesSlotsButKeepsChunksWorthACall) {
  EXPECT_EQ(ChunkCount(16, 0, 3, 6), 6);
  EXPECT_EQ(ChunkCount(4, 0, 3, 6), 4);
  EXPECT_EQ(ChunkCount(100, 0.1, 3, 8), 3);  // 10 units in all: 3 chunks of >= 3
  EXPECT_EQ(ChunkCount(0, 1, 3, 8), 1);
  EXPECT_EQ(ChunkCount(5, 0.01, 3, 8), 1);
}

TEST(PlanTest, JsonRoundTripKeepsEverything) {
  Plan plan = MakePlan(FanOut(), ThreeNodes());
  auto back = PlanFromJson(PlanToJson(plan));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(PlanToJson(*back), PlanToJson(plan));
}

TEST(PlanTest, ReadyPiecesFollowsEdges) {
  Plan plan = MakePlan(Diamond(), ThreeNodes());
  auto ready = ReadyPieces(plan, {}, {});
  ASSERT_FALSE(ready.empty());
  EXPECT_EQ(ready.front(), plan.pieces.front().id);
  std::vector<std::string> all;
  for (const auto& p : plan.pieces) all.push_back(p.id);
  EXPECT_TRUE(ReadyPieces(plan, all, {}).empty());
}

TEST(PlanTest, WorkflowSpecOrdersStepsAndChecksThem) {
  auto plan = PlanFromWorkflowSpec(R"yaml(
name: etl
steps:
  - name: report
    run: "cat"
    inputs: [double]
  - name: fetch
    run: "echo 21"
  - name: double
    runtime: python3
    run: "print(int(input()) * 2)"
    inputs: [fetch]
)yaml");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->pieces.size(), 3u);
  EXPECT_EQ(plan->pieces[0].id, "fetch");
  EXPECT_EQ(plan->pieces[1].id, "double");
  EXPECT_EQ(plan->pieces[2].id, "report");
  EXPECT_EQ(plan->pieces[1].runtime, "python3");

  auto cycle = PlanFromWorkflowSpec(
      "steps:\n- {name: a, run: x, inputs: [b]}\n- {name: b, run: y, inputs: [a]}\n");
  ASSERT_FALSE(cycle.ok());
  EXPECT_THAT(cycle.status().message(), HasSubstr("cycle"));
  auto unknown = PlanFromWorkflowSpec("steps:\n- {name: a, run: x, inputs: [zz]}\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(unknown.status().message(), HasSubstr("unknown step 'zz'"));
  auto norun = PlanFromWorkflowSpec("steps:\n- {name: a}\n");
  ASSERT_FALSE(norun.ok());
  EXPECT_THAT(norun.status().message(), HasSubstr("no 'run'"));
  EXPECT_FALSE(PlanFromWorkflowSpec("steps: [").ok());
}

TEST(AnalysisTest, ParsesTheAnalyzerOutputAndItsErrors) {
  auto a = ParseAnalysis(R"js({"ok": true, "function": "f", "params": ["x"], "splittable": true,
    "refusal": null, "statements": [
      {"id": "s1", "line": 2, "end_line": 2, "kind": "stmt", "code": "y = x", "reads": ["x"],
       "writes": ["y"], "cost": 1.5, "calls": []},
      {"id": "s2", "line": 3, "kind": "map", "code": "z = [g(i) for i in y]", "reads": ["y"],
       "writes": ["z"], "cost": 4, "calls": ["g"],
       "map": {"iter": "y", "target": "i", "element": "g(i)", "accumulator": "z"}},
      {"id": "s3", "line": 4, "kind": "return", "code": "z", "reads": ["z"], "writes": []}]})js");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->statements.size(), 3u);
  EXPECT_EQ(a->statements[1].kind, StatementKind::kMap);
  EXPECT_EQ(a->statements[1].map.element, "g(i)");
  EXPECT_DOUBLE_EQ(a->statements[0].cost, 1.5);

  auto err = ParseAnalysis(
      R"({"ok": false, "error": {"type": "SyntaxError", "message": "line 3: invalid syntax"}})");
  ASSERT_FALSE(err.ok());
  EXPECT_THAT(err.status().message(), HasSubstr("SyntaxError: line 3"));
  EXPECT_FALSE(ParseAnalysis("not json").ok());
  EXPECT_FALSE(ParseAnalysis(R"({"ok": true, "statements": [{"kind": "map", "id": "s1"}]})").ok());
}

}  // namespace
}  // namespace flotilla::workflow
