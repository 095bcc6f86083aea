"""The examples in examples/python compile, analyze as documented and run locally."""

import contextlib
import importlib.util
import io
import os
import unittest

from _support import ROOT
from flotilla._split import analyze
import reference_executor

EXAMPLES = os.path.join(ROOT, "examples", "python")


def load(name):
    spec = importlib.util.spec_from_file_location("example_" + name,
                                                  os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExamplesTest(unittest.TestCase):
    def test_all_compile(self):
        for name in os.listdir(EXAMPLES):
            if name.endswith(".py"):
                with open(os.path.join(EXAMPLES, name)) as f:
                    compile(f.read(), name, "exec")

    def test_splitable_examples_split_and_match(self):
        for name, fn, args in [("fanout", "rank", [["a", "bb", "c"], 2]),
                               ("annotations", "normalise", [[1, 3]])]:
            with self.subTest(example=name):
                path = os.path.join(EXAMPLES, name + ".py")
                with open(path) as f:
                    source = f.read()
                a = analyze(source, fn)
                self.assertTrue(a["splittable"], a["refusal"])
                self.assertIn("map", [s["kind"] for s in a["statements"]])
                module = load(name)
                ex = reference_executor.Executor(source, fn, module=module)
                self.assertEqual(ex.execute(args, {})[0], getattr(module, fn).local(*args))

    def test_errors_example_raises_its_own_type(self):
        module = load("errors")
        with open(os.path.join(EXAMPLES, "errors.py")) as f:
            ex = reference_executor.Executor(f.read(), "invoice", module=module)
        orders = [{"id": 1, "qty": 0, "price": 1.0}]
        with contextlib.redirect_stdout(io.StringIO()):
            with self.assertRaises(module.InvalidOrder):
                ex.execute([orders], {})


if __name__ == "__main__":
    unittest.main()
