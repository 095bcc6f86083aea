"""aggregate, keyed by endpoint: requests, errors, bytes and latency per
endpoint; one total line per endpoint when the input ends. Keyed state: each
shard holds the endpoints of its partitions, so shards never share a key."""
from flotilla_stage import serve

totals = {}


def process(line):
    endpoint, status, size, ms, kind = line.split("\t")
    t = totals.get(endpoint)
    if t is None:
        t = totals[endpoint] = [0, 0, 0, 0]
    t[0] += 1
    t[1] += status >= "500"
    t[2] += int(size)
    t[3] += int(ms)
    return None


def finish():
    for endpoint in sorted(totals):
        n, errors, size, ms = totals[endpoint]
        yield "%s\t%d\t%d\t%d\t%d" % (endpoint, n, errors, size, ms)


if __name__ == "__main__":
    serve(process, finish)
