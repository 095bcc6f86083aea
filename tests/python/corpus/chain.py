"""A chain: each statement needs the one before it."""
import flotilla


@flotilla.splitable
def chain(a, b):
    x = a + 1
    y = x * b
    z = "%d-%d" % (x, y)
    label = z.upper()
    return label


@flotilla.splitable
def chain_defaults(a, b=10, *rest, scale=2, **extra):
    total = a + b + sum(rest)
    scaled = total * scale
    keys = sorted(extra)
    return scaled, keys


CASES = [
    ("chain", [1, 2], {}),
    ("chain", [-5, 3], {}),
    ("chain_defaults", [1], {}),
    ("chain_defaults", [1, 2, 3, 4], {"scale": 3, "z": 1, "a2": 2}),
]
SPLIT = {"chain": True, "chain_defaults": True}
