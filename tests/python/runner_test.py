"""The runner (sdk/python/flotilla/_runner.py) as a subprocess, in every mode."""

import base64
import pickle
import unittest

from _support import run_runner, j

MODULE = '''
import flotilla
import math

SCALE = 10

@flotilla.splitable
@flotilla.geo_preference("eu-west", "us-east")
@flotilla.resource_constraint(memory="256Mi", timeout="30s")
def f(a, b=2, *rest, k=None, **extra):
    return {"a": a, "b": b, "rest": list(rest), "k": k, "extra": extra}

@flotilla.remote
def pair(a, b):
    return (a, b)

@flotilla.splitable()
def boom(x):
    raise ValueError("bad value %s" % x)

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)

class Custom(Exception):
    pass

class NeedsTwo(Exception):
    def __init__(self, a, b):
        super().__init__(a)
        self.b = b

def make_point(x):
    return Point(x, x + 1)

def custom(x):
    raise Custom("custom %s" % x)

def needs_two():
    raise NeedsTwo("a", "b")

def chatty():
    print("no newline", end="")
    return 1

def exits():
    raise SystemExit(3)

def stub_flags():
    return getattr(flotilla, "IN_SANDBOX", False)
'''


def call(entry, args=(), kwargs=None, module=MODULE):
    return run_runner({"module": module, "module_name": "flotilla_fn", "mode": "call",
                       "entrypoint": entry, "args": j(list(args)), "kwargs": j(kwargs or {})})


def unpickle(enc):
    assert enc["encoding"] == "pickle", enc
    return pickle.loads(base64.b64decode(enc["data"]))


class CallModeTest(unittest.TestCase):
    def test_json_result_and_arguments(self):
        r = call("f", [1, 5, 6, 7], {"k": "x", "z": None})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.record["ok"])
        self.assertEqual(r.record["result"]["encoding"], "json")
        want = {"a": 1, "b": 5, "rest": [6, 7], "k": "x", "extra": {"z": None}}
        self.assertEqual(r.record["result"]["data"], want)
        self.assertEqual(r.record["result_json"], want)
        self.assertIsInstance(r.record["duration_us"], int)

    def test_tuple_result_is_pickled_with_json_view(self):
        r = call("pair", [1, "x"])
        self.assertEqual(unpickle(r.record["result"]), (1, "x"))
        self.assertEqual(r.record["result_json"], [1, "x"])
        self.assertGreater(r.record["result"]["bytes"], 0)

    def test_stub_decorators_return_the_function(self):
        r = call("stub_flags")
        self.assertEqual(r.record["result"]["data"], True)

    def test_pickled_arguments(self):
        args = {"encoding": "pickle",
                "data": base64.b64encode(pickle.dumps([(1, 2), {3}], protocol=4)).decode()}
        r = run_runner({"module": MODULE, "mode": "call", "entrypoint": "pair",
                        "args": args, "kwargs": j({})})
        self.assertEqual(unpickle(r.record["result"]), ((1, 2), {3}))

    def test_args_pickle_pair_from_submit(self):
        pair = base64.b64encode(pickle.dumps((((1, {2}),), {"b": (3,)}), protocol=4)).decode()
        r = run_runner({"module": MODULE, "mode": "call", "entrypoint": "pair",
                        "args_pickle": pair})
        self.assertEqual(unpickle(r.record["result"]), ((1, {2}), (3,)))

    def test_user_class_result(self):
        r = call("make_point", [3])
        self.assertTrue(r.record["ok"])
        self.assertEqual(r.record["result"]["encoding"], "pickle")
        self.assertNotIn("result_json", r.record)

    def test_exception_is_reported_with_exit_zero(self):
        r = call("boom", [7])
        self.assertEqual(r.returncode, 0)
        err = r.record["error"]
        self.assertFalse(r.record["ok"])
        self.assertEqual((err["type"], err["module"], err["message"]),
                         ("ValueError", "builtins", "bad value 7"))
        self.assertIn('raise ValueError("bad value %s" % x)', err["traceback"])
        self.assertNotIn("_runner.py", err["traceback"])
        exc = unpickle({"encoding": "pickle", "data": err["pickle"]})
        self.assertIsInstance(exc, ValueError)
        self.assertEqual(str(exc), "bad value 7")

    def test_user_exception_class(self):
        err = call("custom", [1]).record["error"]
        self.assertEqual((err["type"], err["module"]), ("Custom", "flotilla_fn"))
        self.assertIsNotNone(err["pickle"])

    def test_exception_that_does_not_unpickle_has_null_pickle(self):
        err = call("needs_two").record["error"]
        self.assertEqual(err["type"], "NeedsTwo")
        self.assertIsNone(err["pickle"])

    def test_system_exit_is_the_users(self):
        r = call("exits")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.record["error"]["type"], "SystemExit")

    def test_output_before_the_record_line(self):
        r = call("chatty")
        self.assertEqual(r.printed, "no newline\n")
        self.assertTrue(r.record["ok"])

    def test_missing_entrypoint_is_a_user_error(self):
        r = call("nope")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.record["error"]["type"], "NameError")

    def test_module_that_raises_on_import(self):
        r = call("f", module="import not_a_module_here\n")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(r.record["error"]["type"], "ModuleNotFoundError")

    def test_module_syntax_error(self):
        r = call("f", module="def f(:\n")
        self.assertEqual(r.record["error"]["type"], "SyntaxError")


class PieceModeTest(unittest.TestCase):
    def piece(self, code, inputs=None, outputs=(), ret=None, expand=(), **extra):
        spec = {"module": MODULE, "module_name": "flotilla_fn", "mode": "piece", "code": code,
                "inputs": inputs or {}, "outputs": list(outputs), "expand": list(expand),
                "return": ret}
        spec.update(extra)
        r = run_runner(spec)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.record

    def test_outputs_and_return(self):
        rec = self.piece("x = a * SCALE\ny = (x, x)", {"a": j(4)}, ["x", "y"], ret="x + 1")
        self.assertTrue(rec["ok"], rec)
        self.assertEqual(rec["outputs"]["x"], {"encoding": "json", "data": 40, "bytes": 2})
        self.assertEqual(unpickle(rec["outputs"]["y"]), (40, 40))
        self.assertEqual(rec["result"]["data"], 41)

    def test_comprehension_sees_piece_variables(self):
        rec = self.piece("ys = [v * k for v in xs]\nf2 = list(map(lambda v: v + k, xs))",
                         {"xs": j([1, 2]), "k": j(3)}, ["ys", "f2"])
        self.assertEqual(rec["outputs"]["ys"]["data"], [3, 6])
        self.assertEqual(rec["outputs"]["f2"]["data"], [4, 5])

    def test_expand_exports_items(self):
        rec = self.piece("items = range(3)\npairs = {'a': 1}.items()", {}, ["items", "pairs"],
                         expand=["items", "pairs"])
        items = rec["outputs"]["items"]
        self.assertEqual(items["encoding"], "items")
        self.assertEqual([e["data"] for e in items["data"]], [0, 1, 2])
        self.assertEqual(unpickle(rec["outputs"]["pairs"]["data"][0]), ("a", 1))

    def test_items_input_decodes_to_list(self):
        items = {"encoding": "items", "data": [j(1), j(2)]}
        rec = self.piece("n = sum(xs)", {"xs": items}, ["n"])
        self.assertEqual(rec["outputs"]["n"]["data"], 3)

    def test_unassigned_output_is_left_out(self):
        rec = self.piece("if False:\n    z = 1\n", {}, ["z"])
        self.assertEqual(rec["outputs"], {})

    def test_module_objects_ship_by_name(self):
        rec = self.piece("import json as js", {}, ["js"])
        self.assertEqual(rec["outputs"]["js"]["encoding"], "pickle")
        again = self.piece("ok = js.dumps([1])", {"js": rec["outputs"]["js"]}, ["ok"])
        self.assertEqual(again["outputs"]["ok"]["data"], "[1]")

    def test_user_class_travels_between_pieces(self):
        first = self.piece("p = Point(1, 2)", {}, ["p"])
        second = self.piece("s = p.x + p.y", {"p": first["outputs"]["p"]}, ["s"])
        self.assertEqual(second["outputs"]["s"]["data"], 3)

    def test_exception_in_piece(self):
        rec = self.piece("x = 1 / d", {"d": j(0)}, ["x"])
        self.assertFalse(rec["ok"])
        self.assertEqual(rec["error"]["type"], "ZeroDivisionError")

    def test_unshippable_output_is_a_user_error(self):
        rec = self.piece("g = (i for i in range(3))", {}, ["g"])
        self.assertFalse(rec["ok"])
        self.assertEqual(rec["error"]["type"], "TypeError")
        self.assertIn("'g'", rec["error"]["message"])

    def test_binding_the_entrypoint_arguments(self):
        rec = self.piece("", {}, ["a", "b", "rest", "k", "extra"], entrypoint="f",
                         args=j([1]), kwargs=j({"q": 2}))
        out = {k: v["data"] for k, v in rec["outputs"].items() if v["encoding"] == "json"}
        self.assertEqual(out, {"a": 1, "b": 2, "k": None, "extra": {"q": 2}})
        self.assertEqual(unpickle(rec["outputs"]["rest"]), ())


class MapModeTest(unittest.TestCase):
    def map(self, target, element, items, inputs=None):
        r = run_runner({"module": MODULE, "module_name": "flotilla_fn", "mode": "map",
                        "target": target, "element": element,
                        "items": {"encoding": "items", "data": items}, "inputs": inputs or {}})
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.record

    def test_elements_in_order(self):
        rec = self.map("item", "item * k + SCALE", [j(1), j(2), j(3)], {"k": j(2)})
        self.assertTrue(rec["ok"], rec)
        self.assertEqual(rec["result"]["encoding"], "items")
        self.assertEqual([e["data"] for e in rec["result"]["data"]], [12, 14, 16])
        self.assertEqual(rec["result_json"], [12, 14, 16])

    def test_tuple_target(self):
        rec = self.map("k, v", "(v, k)", [j(["a", 1])])
        self.assertEqual(unpickle(rec["result"]["data"][0]), (1, "a"))

    def test_first_failing_item_is_reported(self):
        rec = self.map("d", "10 // d", [j(1), j(0), j("x")])
        self.assertEqual(rec["error"]["type"], "ZeroDivisionError")


class BadInputTest(unittest.TestCase):
    def assert_bad(self, r):
        self.assertNotEqual(r.returncode, 0)
        self.assertFalse(r.record["ok"])
        self.assertTrue(r.record.get("runner_error"))

    def test_not_json(self):
        self.assert_bad(run_runner(None, raw=b"{nope"))

    def test_unknown_mode(self):
        self.assert_bad(run_runner({"module": "", "mode": "dance"}))

    def test_missing_module(self):
        self.assert_bad(run_runner({"mode": "call", "entrypoint": "f"}))

    def test_bad_encoding(self):
        self.assert_bad(run_runner({"module": "def f(x): return x", "mode": "call",
                                    "entrypoint": "f", "args": {"encoding": "yaml"}}))

    def test_piece_that_does_not_compile(self):
        self.assert_bad(run_runner({"module": "", "mode": "piece", "code": "x = ("}))


class CodecTest(unittest.TestCase):
    """The codec in-process (the SDK imports it)."""

    def test_json_exactness(self):
        from flotilla import _runner as r
        for v in [1, 1.5, "s", True, None, [1, [2]], {"a": {"b": [None]}}]:
            self.assertEqual(r.encode_value(v)["encoding"], "json", v)
        cyclic = []
        cyclic.append(cyclic)
        for v in [(1,), {1}, b"x", {1: 2}, float("nan"), float("inf"), 2**70, cyclic,
                  [(1,)], {"a": {1, 2}}]:
            enc = r.encode_value(v)
            self.assertEqual(enc["encoding"], "pickle", v)
            back = r.decode_value(enc)
            if v is not cyclic and v == v and not (isinstance(v, float)):
                self.assertEqual(back, v)
                self.assertIs(type(back), type(v))


if __name__ == "__main__":
    unittest.main()
