"""Static dependency analysis of one Python function, for splitting it into a DAG.

A standalone program (standard library only) that the manager runs sandboxed,
and an importable module (`from flotilla._split import analyze`). It parses
the source with Python's ast module and never executes the user's code.

stdin:  {"source": "...", "function": "f", "deployed": ["g", ...]}
stdout: last line "\\x1eFLOTILLA-RESULT " + the analysis (see analyze()).

What it produces: one entry per top-level statement of the function body,
with the names it reads (parameters or names bound by earlier statements),
the names it writes (bound, or mutated through x.m(...), x[i] = ..., x.a = ...),
a static cost, the deployed functions it calls, and for an independent loop
(`for T in IT: ACC.append(E)` or `ACC = [E for T in IT]`) the parts a fan-out
needs. What it refuses, and why, is in docs/sdk.md ("What the analyzer
splits") and in _Refuser below; a refused function runs whole.

Assumptions, stated because they cannot be checked statically:
- Plain function calls (`f(x)`) do not mutate their arguments (a remote call
  gets copies anyway); method calls on a local name (`x.sort()`) do, unless
  the method is in PURE_METHODS.
- Functions the body calls do not touch module state; a body that visibly
  does (`global`, `CACHE.append(...)`, `print(...)`) is refused.
"""

import ast
import json
import sys
import textwrap

RESULT_PREFIX = "\x1eFLOTILLA-RESULT "

# Methods that do not change their object: calling them on a local name is a
# read, not a write.
PURE_METHODS = frozenset(
    """get keys values items copy count index find rfind rindex split rsplit splitlines
    join strip lstrip rstrip lower upper title capitalize casefold swapcase startswith
    endswith format format_map replace encode decode isdigit isalpha isalnum isspace
    isupper islower isnumeric isdecimal isidentifier partition rpartition zfill center
    ljust rjust expandtabs translate hex union intersection difference
    symmetric_difference issubset issuperset isdisjoint most_common total elements
    bit_length conjugate is_integer as_integer_ratio to_bytes fromkeys tolist
    sum mean max min any all dot reshape astype""".split()
)

# Methods that change their object: called on a module-level name they change
# module state.
MUTATING_METHODS = frozenset(
    """append extend insert remove pop popitem clear update setdefault add discard
    sort reverse write writelines put put_nowait set send close""".split()
)

# Builtins whose effect is outside the function's values, or that defeat
# static analysis of names.
IMPURE_BUILTINS = {
    "print": "prints (output would come from another machine, in another order)",
    "input": "reads the terminal",
    "open": "opens a file (files do not follow a piece to another node)",
    "exec": "runs code the analysis cannot see",
    "eval": "runs code the analysis cannot see",
    "globals": "reaches module state",
    "locals": "reaches the frame's variables",
    "vars": "reaches an object's or the frame's variables",
    "breakpoint": "starts a debugger",
    "__import__": "imports dynamically",
}

# Cost model (relative units; documented in docs/sdk.md):
COST_STATEMENT = 1.0  # every statement node
COST_EXPR_NODE = 0.1  # every other expression node
COST_CALL = 2.0  # a call of a builtin, method or unknown function
COST_CALL_KNOWN = 5.0  # a call of a deployed function or one defined in the module
LOOP_ITERATIONS = 10  # assumed iterations of a loop or comprehension of unknown length
MAX_ITERATIONS = 10000  # cap on range(CONST)


class AnalysisError(Exception):
    def __init__(self, message, line=None):
        super().__init__(message)
        self.line = line


def _base_name(node):
    """Returns the Name at the root of x.a[i].b, or None."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Scan(ast.NodeVisitor):
    """Collects what one statement loads, binds and mutates, scope-aware.

    loads: free names read (in order); stores: names bound; mutated: names
    whose object is changed in place; method_calls: (name, method, line) for
    x.m(...) calls; calls: called plain names; bad: (line, reason) findings.
    """

    def __init__(self):
        self.loads = []
        self.stores = []
        self.mutated = []
        self.mutation_lines = []
        self.method_calls = []
        self.calls = []
        self.expr_stmts = []
        self.deletes = []
        self.cost_nodes = []
        self.bad = []
        self._bound = [set()]  # inner scopes (comprehensions, lambdas)

    # -- helpers
    def _inner(self, name):
        return any(name in scope for scope in self._bound[1:])

    def _load(self, name):
        if not self._inner(name) and name not in self.loads:
            self.loads.append(name)

    def _store(self, name):
        if len(self._bound) > 1:
            self._bound[-1].add(name)
        elif name not in self.stores:
            self.stores.append(name)

    def _mutate(self, name):
        if self._inner(name):
            return
        self._load(name)
        if name not in self.mutated:
            self.mutated.append(name)

    # -- names and targets
    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._store(node.id)
        else:  # Del
            if len(self._bound) == 1:
                self.deletes.append((node.id, node.lineno))
            self._store(node.id)

    def _target_mutation(self, target):
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            name = _base_name(target)
            if name is not None:
                self._mutate(name)
                if not self._inner(name):
                    self.mutation_lines.append((name, target.lineno))
            self.generic_visit(target)
        else:
            self.visit(target)

    def visit_Assign(self, node):
        self.visit(node.value)
        for t in node.targets:
            self._target_mutation(t)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
        self._target_mutation(node.target)

    def visit_AugAssign(self, node):
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
            self._store(node.target.id)
        else:
            self._target_mutation(node.target)

    def visit_Delete(self, node):
        for t in node.targets:
            self._target_mutation(t)

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        # A walrus in a comprehension binds in the function's scope.
        saved = self._bound
        self._bound = [saved[0]]
        self._store(node.target.id)
        self._bound = saved

    # -- calls
    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Name):
            self.calls.append(func.id)
            if func.id in IMPURE_BUILTINS and not self._inner(func.id):
                self.bad.append((node.lineno, "calls %s(), which %s"
                                 % (func.id, IMPURE_BUILTINS[func.id])))
        elif isinstance(func, ast.Attribute) and _base_name(func.value) is not None:
            name = _base_name(func.value)
            if not self._inner(name):
                self.method_calls.append((name, func.attr, node.lineno))
        self.generic_visit(node)

    def visit_Expr(self, node):
        self.expr_stmts.append(node)
        self.generic_visit(node)

    # -- scopes
    def _comprehension(self, node, parts):
        gens = node.generators
        self.visit(gens[0].iter)  # evaluated in the enclosing scope
        self._bound.append(set())
        for i, gen in enumerate(gens):
            if i:
                self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        for part in parts:
            self.visit(part)
        self._bound.pop()

    def visit_ListComp(self, node):
        self._comprehension(node, [node.elt])

    visit_SetComp = visit_ListComp
    visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node):
        self._comprehension(node, [node.key, node.value])

    def visit_Lambda(self, node):
        for d in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(d)
        self._bound.append(set(_arg_names(node.args)))
        self.visit(node.body)
        self._bound.pop()

    def visit_FunctionDef(self, node):
        self.bad.append((node.lineno, "defines function %r inside the body (a closure "
                         "cannot be shipped between pieces)" % node.name))
        self._store(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.bad.append((node.lineno, "defines class %r inside the body (its instances "
                         "cannot be shipped between pieces)" % node.name))
        self._store(node.name)

    # -- refusals found anywhere in the statement
    def visit_Global(self, node):
        self.bad.append((node.lineno, "'global %s' writes module state" % ", ".join(node.names)))

    def visit_Nonlocal(self, node):
        self.bad.append((node.lineno, "'nonlocal %s' writes an enclosing function's state"
                         % ", ".join(node.names)))

    def visit_Yield(self, node):
        self.bad.append((node.lineno, "'yield' makes it a generator"))
        self.generic_visit(node)

    def visit_YieldFrom(self, node):
        self.bad.append((node.lineno, "'yield from' makes it a generator"))
        self.generic_visit(node)

    def visit_Await(self, node):
        self.bad.append((node.lineno, "'await' needs an event loop"))
        self.generic_visit(node)

    def visit_AsyncFor(self, node):
        self.bad.append((node.lineno, "'async for' needs an event loop"))
        self.generic_visit(node)

    def visit_AsyncWith(self, node):
        self.bad.append((node.lineno, "'async with' needs an event loop"))
        self.generic_visit(node)

    def visit_Return(self, node):
        self.bad.append((node.lineno, "'return' before the last statement"))
        self.generic_visit(node)

    def visit_ExceptHandler(self, node):
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._store(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_MatchAs(self, node):
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self._store(node.name)

    def visit_MatchStar(self, node):
        if node.name:
            self._store(node.name)

    def visit_MatchMapping(self, node):
        self.generic_visit(node)
        if node.rest:
            self._store(node.rest)

    def visit_Import(self, node):
        for alias in node.names:
            self._store((alias.asname or alias.name).split(".")[0])

    def visit_ImportFrom(self, node):
        for alias in node.names:
            if alias.name == "*":
                self.bad.append((node.lineno, "'from ... import *' binds unknown names"))
            else:
                self._store(alias.asname or alias.name)


def _arg_names(args):
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append(args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append(args.kwarg.arg)
    return names


def _scan(node):
    s = _Scan()
    s.visit(node)
    return s


def _range_iterations(iter_node):
    if (isinstance(iter_node, ast.Call) and isinstance(iter_node.func, ast.Name)
            and iter_node.func.id == "range" and not iter_node.keywords
            and all(isinstance(a, ast.Constant) and type(a.value) is int
                    for a in iter_node.args) and 1 <= len(iter_node.args) <= 3):
        try:
            n = len(range(*[a.value for a in iter_node.args]))
        except (ValueError, OverflowError):
            return LOOP_ITERATIONS
        return max(0, min(n, MAX_ITERATIONS))
    if isinstance(iter_node, (ast.List, ast.Tuple, ast.Set)):
        return len(iter_node.elts)
    return LOOP_ITERATIONS


class _Cost:
    """cost(node) = 1 per statement + 0.1 per expression node + 2 per call
    (5 for a deployed or module function); a loop or comprehension multiplies
    its body by its iterations (range(CONST) or a literal's length, else 10)."""

    def __init__(self, known):
        self.known = known

    def of(self, node):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            n = _range_iterations(node.iter)
            return (COST_STATEMENT + self.of(node.target) + self.of(node.iter)
                    + n * self._sum(node.body) + self._sum(node.orelse))
        if isinstance(node, ast.While):
            return (COST_STATEMENT + LOOP_ITERATIONS * (self.of(node.test) + self._sum(node.body))
                    + self._sum(node.orelse))
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = (self.of(node.key) + self.of(node.value) if isinstance(node, ast.DictComp)
                     else self.of(node.elt))
            total = COST_EXPR_NODE
            mult = 1
            for gen in node.generators:
                total += mult * self.of(gen.iter)
                mult *= _range_iterations(gen.iter)
                inner += sum(self.of(c) for c in gen.ifs)
            return total + mult * inner
        if isinstance(node, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return COST_STATEMENT  # defining costs little; calling it is counted at the call
        own = 0.0
        if isinstance(node, ast.stmt):
            own = COST_STATEMENT
        elif isinstance(node, ast.Call):
            named = isinstance(node.func, ast.Name) and node.func.id in self.known
            own = COST_CALL_KNOWN if named else COST_CALL
        elif isinstance(node, ast.expr):
            own = COST_EXPR_NODE
        return own + sum(self.of(child) for child in ast.iter_child_nodes(node))

    def _sum(self, nodes):
        return sum(self.of(n) for n in nodes)


def _code_of(source, node):
    """Returns the statement's source, dedented; ast.unparse where that does not compile."""
    seg = ast.get_source_segment(source, node, padded=True)
    if seg is not None:
        code = textwrap.dedent(seg)
        try:
            compile(code, "<stmt>", "exec")
            return code.rstrip() + "\n" if "\n" in code.strip() else code.strip()
        except SyntaxError:
            pass
    return ast.unparse(node)


def _expr_code(source, node):
    seg = ast.get_source_segment(source, node)
    if seg is not None:
        try:
            compile("(%s\n)" % seg, "<expr>", "eval")
            return seg if "\n" not in seg else "(%s\n)" % seg
        except SyntaxError:
            pass
    return ast.unparse(node)


def _find_function(tree, dotted):
    scope = tree.body
    node = None
    for part in dotted.split("."):
        node = None
        for cand in scope:
            if isinstance(cand, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and cand.name == part:
                node = cand
        if node is None:
            return None
        scope = node.body
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _module_functions(tree):
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _is_empty_list(node):
    if isinstance(node, ast.List) and not node.elts:
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "list" and not node.args and not node.keywords)


def _target_names(target):
    """Returns the names a for-target binds, or None if it is not plain names."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = []
        for elt in target.elts:
            sub = _target_names(elt)
            if sub is None:
                return None
            names += sub
        return names
    return None


def analyze(source, function, deployed=()):
    """Returns the analysis object of the contract (see the module docstring).

    Returns {"ok": false, "error": {...}} if the source does not parse or has
    no such function; a function that cannot be split safely is ok with
    "splittable": false and the first "refusal".
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return {"ok": False, "error": {"type": "SyntaxError", "message": "line %s: %s"
                                       % (e.lineno, e.msg), "line": e.lineno}}
    except ValueError as e:  # e.g. NUL bytes
        return {"ok": False, "error": {"type": "ValueError", "message": str(e), "line": None}}
    fn = _find_function(tree, function)
    if fn is None:
        return {"ok": False, "error": {"type": "LookupError", "line": None,
                                       "message": "no function %r in the source" % function}}
    return _Analysis(source, tree, fn, set(deployed)).run()


class _Analysis:
    def __init__(self, source, tree, fn, deployed):
        self.source = source
        self.fn = fn
        self.params = _arg_names(fn.args)
        self.known = deployed | _module_functions(tree)
        self.cost = _Cost(self.known)
        self.refusals = []  # (line, reason)

    def refuse(self, line, reason):
        self.refusals.append((line, reason))

    def run(self):
        fn = self.fn
        if isinstance(fn, ast.AsyncFunctionDef):
            self.refuse(fn.lineno, "'async def' needs an event loop")
        body = list(fn.body)
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            body = body[1:]  # the docstring
        body = [s for s in body if not isinstance(s, ast.Pass)]
        self.body = body
        scans = [_scan(s) for s in body]
        # A name is local if the body binds it anywhere (Python's rule).
        local = set(self.params)
        for sc in scans:
            local.update(sc.stores)
        statements = []
        bound = set(self.params)  # names with a value at this point
        last_writer = {}  # name -> index into statements
        for i, (node, sc) in enumerate(zip(body, scans)):
            last = i == len(body) - 1
            statements.append(self.statement(i, node, sc, local, bound, last, body, scans,
                                             last_writer))
            for w in statements[-1]["writes"]:
                last_writer[w] = i
                bound.add(w)
        refusal = None
        if self.refusals:
            line, reason = min(self.refusals, key=lambda r: r[0])
            refusal = "line %d: %s; the function runs whole" % (line, reason)
        out = {
            "ok": True,
            "function": fn.name,
            "params": self.params,
            "splittable": refusal is None,
            "refusal": refusal,
            "statements": statements,
        }
        if len(self.refusals) > 1:
            out["refusals"] = ["line %d: %s" % r for r in sorted(self.refusals)]
        return out

    def statement(self, i, node, sc, local, bound, last, body, scans, last_writer):
        for line, reason in sc.bad:
            if isinstance(node, ast.Return) and last and reason.startswith("'return'"):
                continue
            self.refuse(line, reason)
        self.check_side_effects(node, sc, local)
        for name, line in sc.deletes:
            if name in self.params:
                self.refuse(line, "'del %s' deletes a parameter" % name)
        mutated = [n for n in sc.mutated if n in local]
        for name, method, line in sc.method_calls:
            if name in local and method not in PURE_METHODS and name not in mutated:
                mutated.append(name)
        compound = isinstance(node, (ast.If, ast.For, ast.While, ast.Try, ast.With,
                                     getattr(ast, "TryStar", ast.Try), ast.Match))
        writes = []
        for n in sc.stores + mutated:
            if n not in writes:
                writes.append(n)
        loads = [n for n in sc.loads]
        if compound:
            # A conditional or repeated binding keeps the old value on some
            # paths, so the statement needs that value as an input.
            loads += [n for n in sc.stores if n in bound and n not in loads]
        reads = [n for n in loads if n in bound]
        if not compound:
            for n in sc.loads:
                if n in local and n not in bound:
                    self.refuse(node.lineno, "%r is read before it is assigned" % n)
        calls = []
        for c in sc.calls:
            if c in self.known and c not in calls and c not in local:
                calls.append(c)
        entry = {
            "id": "s%d" % (i + 1),
            "line": node.lineno,
            "end_line": node.end_lineno,
            "kind": "stmt",
            "code": _code_of(self.source, node),
            "reads": reads,
            "writes": writes,
            "cost": round(self.cost.of(node), 2),
            "calls": calls,
        }
        if isinstance(node, ast.Return):
            entry["kind"] = "return"
            entry["code"] = (_expr_code(self.source, node.value) if node.value is not None
                             else "None")
            entry["writes"] = []
            return entry
        fan = self.map_of(node, sc, bound, body[i + 1:], scans[i + 1:], local, last_writer)
        if fan is not None:
            entry["kind"] = "map"
            entry["map"] = fan
            entry["writes"] = [fan["accumulator"]]
            entry["reads"] = [n for n in fan.pop("_reads") if n in bound]
        return entry

    def check_side_effects(self, node, sc, local):
        for stmt in sc.expr_stmts:
            value = stmt.value
            if isinstance(value, ast.Constant):
                continue  # a string or `...`: no effect
            calls = [n for n in ast.walk(value) if isinstance(n, ast.Call)]
            if not calls and not isinstance(value, (ast.Await, ast.Yield, ast.YieldFrom)):
                continue
            if isinstance(value, (ast.Await, ast.Yield, ast.YieldFrom)):
                continue  # refused on its own
            func = value.func if isinstance(value, ast.Call) else None
            if (isinstance(func, ast.Attribute) and _base_name(func.value) in local):
                continue
            what = ast.unparse(func) if func is not None else ast.unparse(value)
            self.refuse(stmt.lineno, "the expression statement calls %s(), a side effect "
                        "outside the function's variables" % what
                        if func is not None else
                        "the expression statement %r has effects the analysis cannot "
                        "follow" % what)
        for name, method, line in sc.method_calls:
            if name not in local and method in MUTATING_METHODS:
                self.refuse(line, "%s.%s(...) changes module-level %r" % (name, method, name))
        for name, line in sc.mutation_lines:
            if name not in local:
                self.refuse(line, "assigns into module-level %r, changing module state" % name)

    def map_of(self, node, sc, bound, later, later_scans, local, last_writer):
        """Returns the fan-out description if `node` is an independent loop."""
        if isinstance(node, ast.For):
            if node.orelse or len(node.body) != 1:
                return None
            stmt = node.body[0]
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                return None
            call = stmt.value
            if not (isinstance(call.func, ast.Attribute) and call.func.attr == "append"
                    and isinstance(call.func.value, ast.Name) and len(call.args) == 1
                    and not call.keywords and not isinstance(call.args[0], ast.Starred)):
                return None
            acc = call.func.value.id
            element, target, iter_node = call.args[0], node.target, node.iter
            # ACC must be [] right before the loop: its last writer is `ACC = []`.
            w = last_writer.get(acc)
            if w is None or not self._initialises_empty(self.body[w], acc):
                return None
            names = _target_names(target)
            if names is None:
                return None
            # The loop leaves its target bound; keep it whole if anyone reads it.
            for later_sc in later_scans:
                if any(n in later_sc.loads for n in names):
                    return None
        elif isinstance(node, ast.Assign):
            if not (len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.ListComp)
                    and len(node.value.generators) == 1):
                return None
            gen = node.value.generators[0]
            if gen.ifs or gen.is_async:
                return None
            acc = node.targets[0].id
            element, target, iter_node = node.value.elt, gen.target, gen.iter
            names = _target_names(target)
            if names is None:
                return None
        else:
            return None
        el = _scan(element)
        it = _scan(iter_node)
        if el.bad or it.bad or el.stores or acc in el.loads or acc in it.loads:
            return None
        if any(isinstance(n, (ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.Await))
               for n in ast.walk(element)):
            return None
        # A method call that changes a local other than the item would carry
        # state from one iteration to the next.
        for name, method, _ in el.method_calls:
            if name in local and name not in names and method not in PURE_METHODS:
                return None
        if el.mutated:
            return None
        reads = []
        for n in it.loads + [n for n in el.loads if n not in names]:
            if n not in reads:
                reads.append(n)
        return {
            "iter": _expr_code(self.source, iter_node),
            "target": ast.unparse(target) if not isinstance(target, ast.Name) else target.id,
            "element": _expr_code(self.source, element),
            "accumulator": acc,
            "item_cost": round(self.cost.of(element), 2),
            "_reads": reads,
        }

    @staticmethod
    def _initialises_empty(node, acc):
        return (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == acc
                and _is_empty_list(node.value))


def main():
    try:
        spec = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        if not isinstance(spec, dict) or not isinstance(spec.get("source"), str) \
                or not isinstance(spec.get("function"), str):
            raise ValueError("need {\"source\": text, \"function\": name, \"deployed\": [..]}")
        deployed = spec.get("deployed") or []
        if not isinstance(deployed, list):
            raise ValueError("\"deployed\" must be a list of names")
    except (ValueError, UnicodeDecodeError) as e:
        out = {"ok": False, "error": {"type": "BadInput", "message": str(e), "line": None}}
        sys.stdout.write(RESULT_PREFIX + json.dumps(out) + "\n")
        return 2
    out = analyze(spec["source"], spec["function"], deployed)
    sys.stdout.write(RESULT_PREFIX + json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
