"""A small pure-Python executor of an analysis, for checking split semantics.

It runs a function the way a split plan would, with one runner subprocess per
piece: first a piece that binds the call's arguments to the parameters, then
one piece per statement, each map statement fanned out over its items in
chunks, and the return expression last. Values travel between pieces only as
the runner's value encodings, as they do between nodes. A function the
analyzer refuses runs whole (mode "call").

This is a reference for the orchestrator's semantics, independent of the C++
side: for every corpus function, execute() must equal a local call.
"""

import json
import os
import subprocess
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SDK = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "sdk", "python")
if _SDK not in sys.path:
    sys.path.insert(0, _SDK)

from flotilla import _runner  # noqa: E402  (the codec)
from flotilla._split import analyze  # noqa: E402

RUNNER = os.path.join(_SDK, "flotilla", "_runner.py")
ITER_VAR = "__flotilla_iter__"


class PieceFailed(Exception):
    """A piece raised; `error` is the runner's error object."""

    def __init__(self, error):
        super().__init__("%s: %s" % (error.get("type"), error.get("message")))
        self.error = error


class Executor:
    def __init__(self, source, function, module=None, chunk=2, python=None):
        """`module` is the locally imported module, to decode its classes."""
        self.source = source
        self.function = function
        self.module = module
        self.chunk = chunk
        self.python = python or sys.executable
        self.pieces_run = 0

    def _run(self, spec):
        spec = dict(spec, module=self.source, module_name="flotilla_fn")
        proc = subprocess.run([self.python, "-I", RUNNER], input=json.dumps(spec).encode(),
                              capture_output=True, timeout=60, cwd="/")
        self.pieces_run += 1
        out = proc.stdout.decode("utf-8", "replace")
        at = out.rfind(_runner.RESULT_PREFIX)
        if proc.returncode != 0 or at < 0:
            raise RuntimeError("runner failed (rc %d): %s" % (proc.returncode,
                                                             proc.stderr.decode()[-2000:]))
        record = json.loads(out[at + len(_runner.RESULT_PREFIX):])
        if not record["ok"]:
            raise PieceFailed(record["error"])
        return record

    def decode(self, enc):
        aliases = {"flotilla_fn": self.module} if self.module is not None else None
        return _runner.decode_value(enc, aliases=aliases)

    def execute(self, args, kwargs):
        """Returns (value, analysis); raises the remote exception (or PieceFailed)."""
        analysis = analyze(self.source, self.function)
        if not analysis["ok"]:
            raise ValueError(analysis["error"]["message"])
        try:
            if not analysis["splittable"]:
                rec = self._run({"mode": "call", "entrypoint": self.function,
                                 "args": _runner.encode_value(list(args)),
                                 "kwargs": _runner.encode_value(dict(kwargs))})
                return self.decode(rec["result"]), analysis
            return self._split(analysis, args, kwargs), analysis
        except PieceFailed as failed:
            raise self._exception(failed) from None

    def _split(self, analysis, args, kwargs):
        bind = self._run({"mode": "piece", "code": "", "entrypoint": self.function,
                          "args": _runner.encode_value(list(args)),
                          "kwargs": _runner.encode_value(dict(kwargs)),
                          "outputs": analysis["params"]})
        env = dict(bind["outputs"])  # name -> value encoding

        def inputs(names):
            return {n: env[n] for n in names if n in env}

        for st in analysis["statements"]:
            if st["kind"] == "return":
                rec = self._run({"mode": "piece", "code": "", "inputs": inputs(st["reads"]),
                                 "return": st["code"]})
                return self.decode(rec["result"])
            if st["kind"] == "map":
                env[st["map"]["accumulator"]] = self._fan_out(st, inputs(st["reads"]))
                continue
            rec = self._run({"mode": "piece", "code": st["code"], "inputs": inputs(st["reads"]),
                             "outputs": st["writes"]})
            for name in st["writes"]:
                env.pop(name, None)  # deleted or unassigned names are gone
            env.update(rec["outputs"])
        return None

    def _fan_out(self, st, ins):
        m = st["map"]
        rec = self._run({"mode": "piece", "code": "%s = (%s)" % (ITER_VAR, m["iter"]),
                         "inputs": ins, "outputs": [ITER_VAR], "expand": [ITER_VAR]})
        items = rec["outputs"][ITER_VAR]["data"]
        values = []
        for at in range(0, len(items), self.chunk):
            chunk = {"encoding": "items", "data": items[at:at + self.chunk]}
            # In iteration order, so the first failing item is the one raised.
            part = self._run({"mode": "map", "target": m["target"], "element": m["element"],
                              "items": chunk, "inputs": ins})
            values.extend(part["result"]["data"])
        return {"encoding": "items", "data": values}

    def _exception(self, failed):
        pickled = failed.error.get("pickle")
        if pickled:
            try:
                exc = self.decode({"encoding": "pickle", "data": pickled})
                if isinstance(exc, BaseException):
                    return exc
            except Exception:
                pass
        return failed
