"""The stage side of the Flotilla local runtime's line contract.

For every input line a stage writes exactly one output line: the record, or
an empty line for "no record". After stdin closes it may write final lines
(an aggregate's totals). serve() reads whatever stdin has (os.read, not
line by line) and answers all of it in one write, so a stage never holds
output while it waits for input (no deadlock, no per-line flush).
"""
import os
import sys


def serve(process, finish=None):
    rest = b""
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        out = []
        for raw in lines:
            # An empty line is "no record" from the stage before (a plain
            # shell pipeline passes them on; the runtime does not).
            result = process(raw.decode()) if raw else None
            out.append(result if result else "")
        if out:
            _write("\n".join(out) + "\n")
    if rest:
        sys.exit("stage input ends without a newline")
    if finish is not None:
        lines = list(finish())
        if lines:
            _write("\n".join(lines) + "\n")


def _write(text):
    data = text.encode()
    while data:
        n = os.write(1, data)
        data = data[n:]
