"""Split execution of every corpus function equals a local call.

Each module in corpus/ lists CASES (function, args, kwargs) and SPLIT (whether
the analyzer must split the function). The reference executor runs the
function piece by piece through runner subprocesses.
"""

import contextlib
import importlib.util
import io
import os
import unittest

from _support import CORPUS
import reference_executor


def load(path):
    name = "corpus_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outcome(fn, args, kwargs):
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the corpus prints on purpose
            return ("value", fn(*args, **kwargs))
    except Exception as e:
        return ("raise", e)


def same_value(a, b):
    """Equal and of the same types all the way down (a tuple is not a list)."""
    if type(a).__name__ != type(b).__name__:
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return repr(a) == repr(b)
    return a == b


class CorpusTest(unittest.TestCase):
    def test_every_corpus_function(self):
        files = sorted(f for f in os.listdir(CORPUS) if f.endswith(".py"))
        self.assertGreaterEqual(len(files), 6)
        checked = 0
        for fname in files:
            path = os.path.join(CORPUS, fname)
            module = load(path)
            with open(path) as f:
                source = f.read()
            for name, args, kwargs in module.CASES:
                with self.subTest(module=fname, function=name, args=args):
                    fn = getattr(module, name)
                    local = outcome(getattr(fn, "local", fn), args, kwargs)
                    ex = reference_executor.Executor(source, name, module=module)
                    split = outcome(lambda *a, **k: ex.execute(a, k)[0], args, kwargs)
                    analysis = reference_executor.analyze(source, name)
                    self.assertEqual(analysis["splittable"], module.SPLIT[name],
                                     analysis["refusal"])
                    self.assertEqual(local[0], split[0], (local, split))
                    if local[0] == "value":
                        self.assertTrue(same_value(local[1], split[1]), (local[1], split[1]))
                    else:
                        self.assertEqual(type(local[1]).__name__, type(split[1]).__name__)
                        self.assertEqual(str(local[1]), str(split[1]))
                    if module.SPLIT[name]:
                        # Split means more than one piece really ran.
                        self.assertGreater(ex.pieces_run, 1)
                    checked += 1
        self.assertGreaterEqual(checked, 25)


if __name__ == "__main__":
    unittest.main()
