"""Resource quantities: "256Mi" bytes, "30s" milliseconds, "500m" CPU millis."""

import re

_MEMORY = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
           "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "B": 1}
_DURATION = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}


def memory_bytes(value):
    """Returns bytes: an int is bytes; text is a number and a unit ("256Mi", "1G")."""
    if isinstance(value, bool):
        raise ValueError("memory: %r is not a quantity" % (value,))
    if isinstance(value, int):
        return _non_negative("memory", value)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2) not in _MEMORY:
        raise ValueError("memory: %r is not a quantity; use bytes or a unit such as "
                         "'256Mi', '1Gi', '500M'" % (value,))
    return int(float(m.group(1)) * _MEMORY[m.group(2)])


def timeout_ms(value):
    """Returns milliseconds: a number is seconds; text is "30s", "500ms", "2m", "1m30s"."""
    if isinstance(value, bool):
        raise ValueError("timeout: %r is not a duration" % (value,))
    if isinstance(value, (int, float)):
        return _non_negative("timeout", int(round(value * 1000)))
    text = str(value).strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError("timeout: %r is not a duration; use seconds or text such as "
                         "'30s', '500ms', '2m'" % (value,))
    return int(round(sum(float(n) * _DURATION[u] for n, u in parts)))


def cpu_millis(value):
    """Returns thousandths of a core: a number is cores (0.5); text is "500m" or "2"."""
    if isinstance(value, bool):
        raise ValueError("cpu: %r is not a quantity" % (value,))
    if isinstance(value, (int, float)):
        return _non_negative("cpu", int(round(value * 1000)))
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(m?)\s*", str(value))
    if not m:
        raise ValueError("cpu: %r is not a quantity; use cores (0.5) or millis ('500m')"
                         % (value,))
    n = float(m.group(1))
    return int(round(n if m.group(2) else n * 1000))


def _non_negative(what, n):
    if n < 0:
        raise ValueError("%s: %r must not be negative" % (what, n))
    return n


_RAW = {"memory_bytes": memory_bytes, "timeout_ms": None, "cpu_millis": None}


def resource_constraint(spec):
    """Returns {"memory_bytes", "timeout_ms", "cpu_millis"} (ints) for the given keys.

    Accepts friendly keys (memory, timeout, cpu: units as above) and the wire
    keys (memory_bytes, timeout_ms, cpu_millis: ints, or unit text).
    """
    out = {}
    for key, value in spec.items():
        if value is None:
            continue
        if key in ("memory", "memory_bytes"):
            out["memory_bytes"] = memory_bytes(value)
        elif key == "timeout":
            out["timeout_ms"] = timeout_ms(value)
        elif key == "timeout_ms":
            out["timeout_ms"] = (_non_negative("timeout_ms", value) if isinstance(value, int)
                                 and not isinstance(value, bool) else timeout_ms(value))
        elif key == "cpu":
            out["cpu_millis"] = cpu_millis(value)
        elif key == "cpu_millis":
            out["cpu_millis"] = (_non_negative("cpu_millis", value) if isinstance(value, int)
                                 and not isinstance(value, bool) else cpu_millis(value))
        else:
            raise ValueError("resource_constraint: unknown key %r (use memory, timeout, cpu)"
                             % (key,))
    return out
