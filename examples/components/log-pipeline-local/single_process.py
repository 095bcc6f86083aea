"""The same stage code in one process, no runtime: the reference the
sharded run must equal, and the baseline of the throughput benchmark.
Usage: FLOTILLA_RECORDS=N python3 single_process.py > out"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stages"))
import aggregate  # noqa: E402
import filter as filter_stage  # noqa: E402
import gen  # noqa: E402
import parse  # noqa: E402
import sink  # noqa: E402

n = int(os.environ.get("FLOTILLA_RECORDS", "1000"))
for line in gen.lines(n):
    record = filter_stage.process(parse.process(line))
    if record:
        aggregate.process(record)
for row in aggregate.finish():
    sink.process(row)
sys.stdout.write("".join(line + "\n" for line in sink.finish()))
