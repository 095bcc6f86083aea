"""Fan-out / fan-in: independent iterations become parallel branches."""
import math

import flotilla


def work(x, k):
    acc = 0
    for i in range(200):
        acc += (x * k + i) % 7
    return acc + x


@flotilla.splitable
def fan_loop(xs, k):
    parts = []
    for x in xs:
        parts.append(work(x, k))
    total = sum(parts)
    return total, parts


@flotilla.splitable
def fan_comprehension(xs):
    roots = [math.sqrt(x) for x in xs]
    rounded = [round(r, 3) for r in roots]
    return set(rounded)


@flotilla.splitable
def fan_pairs(d, scale):
    pairs = [(k, v * scale) for k, v in sorted(d.items())]
    out = dict(pairs)
    return out


@flotilla.splitable
def fan_nested(rows):
    sums = []
    for row in rows:
        sums.append(sum(row))
    widths = [len(row) for row in rows]
    return list(zip(sums, widths))


CASES = [
    ("fan_loop", [[1, 2, 3, 4, 5], 3], {}),
    ("fan_loop", [[], 3], {}),
    ("fan_comprehension", [[1, 4, 9, 16, 2]], {}),
    ("fan_pairs", [{"a": 1, "b": 2, "c": 3}, 10], {}),
    ("fan_nested", [[[1, 2], [3], [], [4, 5, 6]]], {}),
]
SPLIT = {"fan_loop": True, "fan_comprehension": True, "fan_pairs": True, "fan_nested": True}
