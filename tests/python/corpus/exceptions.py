"""Exceptions raised in one branch of a split function."""
import flotilla


class BadItem(Exception):
    pass


def check(x):
    if x == 3:
        raise BadItem("item %d is bad" % x)
    return x * 10


@flotilla.splitable
def branch_raises(xs):
    a = sum(xs)
    b = 10 // (len(xs) - 3)
    c = a + b
    return c


@flotilla.splitable
def item_raises(xs):
    checked = [check(x) for x in xs]
    return checked


@flotilla.splitable
def key_missing(d, key):
    keys = sorted(d)
    value = d[key]
    return keys, value


@flotilla.splitable
def caught(xs):
    try:
        first = xs[0]
    except IndexError as e:
        first = "empty: %s" % e
    return first


CASES = [
    ("branch_raises", [[1, 2, 3]], {}),
    ("branch_raises", [[1, 2, 3, 4]], {}),
    ("item_raises", [[1, 2, 3, 4]], {}),
    ("item_raises", [[1, 2]], {}),
    ("key_missing", [{"a": 1}, "b"], {}),
    ("caught", [[]], {}),
    ("caught", [[7]], {}),
]
SPLIT = {"branch_raises": True, "item_raises": True, "key_missing": True, "caught": True}
