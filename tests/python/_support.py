"""Shared helpers for the Python tests: paths, and running the runner as a subprocess."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SDK = os.path.join(ROOT, "sdk", "python")
RUNNER = os.path.join(SDK, "flotilla", "_runner.py")
SPLIT = os.path.join(SDK, "flotilla", "_split.py")
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
PREFIX = "\x1eFLOTILLA-RESULT "

if SDK not in sys.path:
    sys.path.insert(0, SDK)


class Completed:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stderr = proc.stderr.decode("utf-8", "replace")
        out = proc.stdout.decode("utf-8", "replace")
        at = out.rfind(PREFIX)
        self.record = None
        self.printed = out
        if at >= 0:
            line = out[at + len(PREFIX):]
            assert line.endswith("\n") and line.count("\n") == 1, repr(line)
            self.record = json.loads(line)
            self.printed = out[:at]


def run_program(path, spec, timeout=30, raw=None):
    """Runs a standalone program (the runner or the analyzer) with `spec` on stdin.

    The environment is emptied of PYTHONPATH so the program cannot import the
    SDK: in a sandbox it has only the standard library.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    data = raw if raw is not None else json.dumps(spec).encode("utf-8")
    proc = subprocess.run([sys.executable, "-I", path], input=data, capture_output=True,
                          timeout=timeout, env=env, cwd="/")
    return Completed(proc)


def run_runner(spec, **kw):
    return run_program(RUNNER, spec, **kw)


def j(value):
    return {"encoding": "json", "data": value}
