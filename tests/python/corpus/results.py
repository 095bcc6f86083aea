"""Results that JSON cannot carry: tuples, sets, dicts with int keys, bytes, objects."""
import collections

import flotilla

Point = collections.namedtuple("Point", "x y")


class Box:
    def __init__(self, items):
        self.items = items

    def __eq__(self, other):
        return type(other).__name__ == "Box" and self.items == other.items

    def __repr__(self):
        return "Box(%r)" % (self.items,)


@flotilla.splitable
def shapes(n):
    t = tuple(range(n))
    s = set(t)
    d = {i: str(i) for i in t}
    b = bytes(t)
    return t, s, d, b


@flotilla.splitable
def objects(n):
    points = [Point(i, -i) for i in range(n)]
    box = Box(points)
    box.items.append(Point(99, 99))
    return box


@flotilla.splitable
def floats(xs):
    half = [x / 2 for x in xs]
    total = sum(half)
    return {"half": half, "total": total, "neg_zero": -0.0}


CASES = [
    ("shapes", [4], {}),
    ("objects", [3], {}),
    ("floats", [[1, 2, 3]], {}),
]
SPLIT = {"shapes": True, "objects": True, "floats": True}
