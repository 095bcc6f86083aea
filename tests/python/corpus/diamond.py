"""A diamond: two independent branches from one input, joined at the end."""
import flotilla


def square_all(xs):
    return [x * x for x in xs]


def total(xs):
    return sum(xs)


@flotilla.splitable
@flotilla.geo_preference("eu-west")
def diamond(n):
    base = list(range(n))
    left = square_all(base)
    right = total(base)
    both = (sum(left), right)
    return {"left": left, "right": right, "both": both}


@flotilla.splitable
def word_stats(text):
    words = text.split()
    lengths = {w: len(w) for w in words}
    upper = {w.upper() for w in words}
    longest = max(words, key=len) if words else None
    return lengths, frozenset(upper), longest


CASES = [
    ("diamond", [5], {}),
    ("diamond", [0], {}),
    ("word_stats", ["the quick brown fox jumps over the lazy dog"], {}),
    ("word_stats", [""], {}),
]
SPLIT = {"diamond": True, "word_stats": True}
