"""The analyzer (sdk/python/flotilla/_split.py): each rule and each refusal."""

import textwrap
import unittest

from _support import SPLIT, run_program
from flotilla._split import analyze


def an(src, fn="f", deployed=()):
    return analyze(textwrap.dedent(src), fn, list(deployed))


def by_id(result):
    return {s["id"]: s for s in result["statements"]}


class StatementsTest(unittest.TestCase):
    def test_chain_reads_writes_and_return(self):
        r = an('''
            def f(a, b):
                """docstring is not a statement"""
                x = a + 1
                y = x * b
                pass
                return y - 1
            ''')
        self.assertTrue(r["ok"] and r["splittable"], r)
        self.assertEqual(r["params"], ["a", "b"])
        s = r["statements"]
        self.assertEqual([t["kind"] for t in s], ["stmt", "stmt", "return"])
        self.assertEqual([t["id"] for t in s], ["s1", "s2", "s3"])
        self.assertEqual((s[0]["reads"], s[0]["writes"], s[0]["code"]), (["a"], ["x"], "x = a + 1"))
        self.assertEqual((s[1]["reads"], s[1]["writes"]), (["x", "b"], ["y"]))
        self.assertEqual((s[2]["code"], s[2]["reads"], s[2]["line"]), ("y - 1", ["y"], 7))

    def test_all_parameter_kinds(self):
        r = an("def f(a, /, b, *c, d, e=1, **g):\n    return a\n")
        self.assertEqual(r["params"], ["a", "b", "c", "d", "e", "g"])

    def test_globals_and_builtins_are_not_reads(self):
        r = an('''
            import math
            K = 3
            def f(a):
                x = math.sqrt(a) + K + len([a])
                return x
            ''')
        self.assertEqual(r["statements"][0]["reads"], ["a"])

    def test_mutations_count_as_reads_and_writes(self):
        r = an('''
            def f(a):
                xs = []
                d = {}
                o = object()
                xs.append(a)
                d["k"] = a
                o.attr = 1
                n = xs.count(a)
                xs.sort()
                d["k"] += 1
                return xs, d, n
            ''')
        s = r["statements"]
        self.assertTrue(r["splittable"], r["refusal"])
        self.assertEqual((s[3]["reads"], s[3]["writes"]), (["xs", "a"], ["xs"]))
        self.assertEqual((s[4]["reads"], s[4]["writes"]), (["a", "d"], ["d"]))
        self.assertEqual(s[5]["writes"], ["o"])
        self.assertEqual(s[6]["writes"], ["n"])  # count() does not change xs
        self.assertEqual(s[7]["writes"], ["xs"])
        self.assertEqual(s[8]["writes"], ["d"])

    def test_compound_statement_reads_what_it_may_keep(self):
        r = an('''
            def f(a):
                x = 0
                if a:
                    x = 1
                for i in range(a):
                    total = i
                return x
            ''')
        s = r["statements"]
        self.assertEqual((s[1]["reads"], s[1]["writes"]), (["a", "x"], ["x"]))
        self.assertEqual(s[2]["writes"], ["i", "total"])
        self.assertEqual(s[1]["code"], "if a:\n    x = 1\n")

    def test_comprehension_and_lambda_scopes(self):
        r = an('''
            def f(xs, k):
                ys = [x * k for x in xs if x]
                zs = sorted(ys, key=lambda y: -y)
                return zs
            ''')
        s = r["statements"]
        self.assertEqual(s[0]["reads"], ["xs", "k"])
        self.assertEqual(s[0]["kind"], "stmt")  # a filter: not a plain map
        self.assertEqual(s[1]["reads"], ["ys"])

    def test_calls_lists_deployed_and_module_functions(self):
        r = an('''
            def helper(x):
                return x
            def f(a):
                x = helper(a) + remote_fn(a) + len(a) + unknown(a)
                return x
            ''', deployed=["remote_fn"])
        self.assertEqual(r["statements"][0]["calls"], ["helper", "remote_fn"])

    def test_cost_grows_with_calls_and_loops(self):
        r = an('''
            def helper(x):
                return x
            def f(a):
                x = 1
                y = len(a)
                z = helper(a)
                for i in range(100):
                    x += i
                w = [v for v in a]
                return x
            ''')
        c = [s["cost"] for s in r["statements"]]
        self.assertEqual(c[0], 1.2)  # 1 + two expression nodes
        self.assertLess(c[0], c[1])
        self.assertLess(c[1], c[2])
        self.assertGreater(c[3], 100)
        self.assertGreater(c[4], 1)

    def test_multiline_statement_is_dedented(self):
        r = an('''
            def f(a):
                x = (a +
                     1)
                try:
                    y = 1 / x
                except ZeroDivisionError as e:
                    y = None
                return y
            ''')
        s = r["statements"]
        self.assertEqual((s[0]["line"], s[0]["end_line"]), (3, 4))
        compile(s[0]["code"], "s", "exec")
        compile(s[1]["code"], "s", "exec")
        self.assertEqual(s[1]["writes"], ["y", "e"])
        self.assertTrue(r["splittable"])

    def test_statements_on_one_line(self):
        r = an("def f(a):\n    x = a; y = x\n    return y\n")
        self.assertEqual([s["code"] for s in r["statements"][:2]], ["x = a", "y = x"])

    def test_method_of_a_local_as_expression_statement_is_fine(self):
        r = an('''
            def f(a):
                out = []
                out.extend(a)
                self_like = {"x": []}
                self_like["x"].append(1)
                return out
            ''')
        self.assertTrue(r["splittable"], r["refusal"])
        self.assertEqual(r["statements"][3]["writes"], ["self_like"])

    def test_no_return_means_no_return_statement(self):
        r = an("def f(a):\n    x = a\n")
        self.assertEqual([s["kind"] for s in r["statements"]], ["stmt"])

    def test_bare_return(self):
        r = an("def f(a):\n    x = a\n    return\n")
        self.assertEqual(r["statements"][-1]["code"], "None")

    def test_method_of_a_class(self):
        r = an("class C:\n    def m(self, a):\n        return a\n", fn="C.m")
        self.assertEqual(r["params"], ["self", "a"])


class MapTest(unittest.TestCase):
    def test_for_append_loop(self):
        r = an('''
            def f(items, k):
                results = []
                for item in items:
                    results.append(item * k)
                return results
            ''')
        s = r["statements"][1]
        self.assertEqual(s["kind"], "map")
        self.assertEqual(s["map"], {"iter": "items", "target": "item", "element": "item * k",
                                    "accumulator": "results", "item_cost": 0.3})
        self.assertEqual((s["reads"], s["writes"]), (["items", "k"], ["results"]))

    def test_comprehension(self):
        r = an('''
            def f(items):
                out = [g(a, b) for a, b in items]
                return out
            ''', deployed=["g"])
        s = r["statements"][0]
        self.assertEqual(s["kind"], "map")
        self.assertEqual(s["map"]["target"], "(a, b)")
        self.assertEqual(s["map"]["element"], "g(a, b)")
        self.assertEqual(s["calls"], ["g"])
        self.assertEqual(s["reads"], ["items"])

    def test_not_a_map(self):
        cases = {
            "accumulator not fresh": '''
                def f(items):
                    results = [0]
                    for item in items:
                        results.append(item)
                    return results''',
            "accumulator touched before the loop": '''
                def f(items):
                    results = []
                    results.append(1)
                    for item in items:
                        results.append(item)
                    return results''',
            "element reads the accumulator": '''
                def f(items):
                    results = []
                    for item in items:
                        results.append(len(results))
                    return results''',
            "element mutates a local": '''
                def f(items):
                    seen = []
                    results = []
                    for item in items:
                        results.append(seen.pop())
                    return results''',
            "walrus carries state": '''
                def f(items):
                    n = 0
                    results = [(n := n + i) for i in items]
                    return results''',
            "target read after the loop": '''
                def f(items):
                    results = []
                    for item in items:
                        results.append(item)
                    return results, item''',
            "two statements in the body": '''
                def f(items):
                    results = []
                    for item in items:
                        y = item
                        results.append(y)
                    return results''',
            "two generators": '''
                def f(a, b):
                    out = [x * y for x in a for y in b]
                    return out''',
        }
        for name, src in cases.items():
            r = an(src)
            kinds = [s["kind"] for s in r["statements"]]
            self.assertNotIn("map", kinds, name)
            self.assertTrue(r["splittable"], (name, r["refusal"]))


class RefusalTest(unittest.TestCase):
    def refused(self, src, line, words, fn="f"):
        r = an(src, fn)
        self.assertTrue(r["ok"], r)
        self.assertFalse(r["splittable"])
        self.assertIn("line %d:" % line, r["refusal"])
        self.assertIn(words, r["refusal"])
        self.assertTrue(r["refusal"].endswith("the function runs whole"), r["refusal"])
        return r

    def test_global(self):
        self.refused('''
            counter = 0
            def f(a):
                global counter
                counter += a
                return counter
            ''', 4, "'global counter' writes module state")

    def test_nonlocal(self):
        self.refused('''
            def outer():
                n = 0
                def f(a):
                    nonlocal n
                    n += a
                    return n
                return f
            ''', 5, "nonlocal n", fn="outer.f")

    def test_generator(self):
        self.refused("def f(a):\n    x = a\n    yield x\n", 3, "generator")
        self.refused("def f(a):\n    yield from a\n", 2, "generator")

    def test_async(self):
        self.refused("async def f(a):\n    return a\n", 1, "async def")
        self.refused("async def f(a):\n    x = await a\n    return x\n", 1, "")

    def test_early_return(self):
        self.refused("def f(a):\n    if a:\n        return 1\n    return 2\n", 3, "'return'")
        self.refused("def f(a):\n    return 1\n    x = 2\n", 2, "'return'")

    def test_print_and_other_global_effects(self):
        self.refused("def f(a):\n    x = a\n    print(x)\n    return x\n", 3, "print()")
        self.refused("import os\ndef f(p):\n    os.remove(p)\n    return p\n", 3, "os.remove()")
        self.refused("import time\ndef f(p):\n    time.sleep(p)\n", 3, "time.sleep()")
        self.refused("def f(a):\n    for i in a:\n        print(i)\n    return a\n", 3, "print")

    def test_module_state_mutation(self):
        self.refused("CACHE = []\ndef f(a):\n    CACHE.append(a)\n    return a\n", 3, "CACHE")
        self.refused("CACHE = {}\ndef f(a):\n    CACHE[a] = 1\n    return a\n", 3, "CACHE")
        self.refused("CACHE = {}\ndef f(a):\n    n = CACHE.pop(a)\n    return n\n", 3, "CACHE")

    def test_files_and_dynamic_code(self):
        self.refused("def f(p):\n    with open(p) as fh:\n        d = fh.read()\n    return d\n",
                     2, "open()")
        self.refused("def f(s):\n    x = eval(s)\n    return x\n", 2, "eval()")

    def test_del_of_parameter(self):
        self.refused("def f(a, b):\n    x = a\n    del b\n    return x\n", 3, "'del b'")

    def test_nested_definitions(self):
        self.refused("def f(a):\n    def g():\n        return a\n    return g()\n", 2, "closure")

    def test_read_before_assignment(self):
        self.refused("def f(a):\n    y = x + a\n    x = 1\n    return y\n", 2, "'x' is read")

    def test_first_refusal_and_all_refusals(self):
        r = self.refused("def f(a):\n    print(a)\n    global q\n    return a\n", 2, "print")
        self.assertGreaterEqual(len(r["refusals"]), 2)


class ErrorsAndProgramTest(unittest.TestCase):
    def test_parse_error_names_the_line(self):
        r = an("def f(a):\n    x = (\n")
        self.assertFalse(r["ok"])
        self.assertEqual(r["error"]["type"], "SyntaxError")
        self.assertIn("line", r["error"]["message"])
        self.assertIsInstance(r["error"]["line"], int)

    def test_missing_function(self):
        r = an("def g():\n    pass\n")
        self.assertFalse(r["ok"])
        self.assertIn("'f'", r["error"]["message"])

    def test_as_a_program(self):
        p = run_program(SPLIT, {"source": "def f(a):\n    x = g(a)\n    return x\n",
                                "function": "f", "deployed": ["g"]})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.printed, "")
        self.assertTrue(p.record["splittable"])
        self.assertEqual(p.record["statements"][0]["calls"], ["g"])

    def test_program_bad_input(self):
        p = run_program(SPLIT, None, raw=b"[]")
        self.assertNotEqual(p.returncode, 0)
        self.assertFalse(p.record["ok"])


if __name__ == "__main__":
    unittest.main()
