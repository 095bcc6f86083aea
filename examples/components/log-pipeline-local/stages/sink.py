"""sink: collects the per-endpoint totals of every aggregate shard and
writes the report, sorted, when its input ends."""
from flotilla_stage import serve

rows = []


def process(line):
    rows.append(line)
    return None


def finish():
    for row in sorted(rows):
        endpoint, n, errors, size, ms = row.split("\t")
        yield "%s\trequests=%s errors=%s bytes=%s mean_ms=%.3f" % (
            endpoint, n, errors, size, int(ms) / int(n))


if __name__ == "__main__":
    serve(process, finish)
