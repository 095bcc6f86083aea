"""Runs one piece of a user's Python function inside a Flotilla sandbox.

The manager embeds this file's text and sends it as the source of an execution
with runtime python3. It is a standalone program: standard library only, and
it must not import the flotilla package (the sandbox does not have it).

Protocol: read ONE JSON object from stdin; write the result as the LAST line of
stdout, the bytes "\\x1eFLOTILLA-RESULT " followed by one JSON object and "\\n".
What the user code prints goes to stdout/stderr before that line. A reader
should look for the last occurrence of the marker: user code that writes to
fd 1 behind sys.stdout's back can leave a partial line before it.

Exit status 0 whether the user code raised or not; 2 when the runner itself
could not work (malformed input), so the orchestrator retries.

Modes:
  call   run module.ENTRYPOINT(*args, **kwargs). Instead of "args" and
         "kwargs" the input may carry "args_pickle", the base64 pickle of an
         (args_tuple, kwargs_dict) pair as POST /execution/submit receives it.
  piece  exec CODE in one dict (module globals + decoded inputs), export
         OUTPUTS (EXPAND ones as "items" encodings), evaluate RETURN.
         Optional extension: with "entrypoint" and "args"/"kwargs" (or
         "args_pickle") present the
         arguments are first bound to the entrypoint's parameters (defaults
         applied) as variables, so the first piece of a split call needs no
         other binding step.
  map    for each item of ITEMS bind TARGET and evaluate ELEMENT.

Value encodings: {"encoding":"json","data":...} when the value round-trips
exactly through JSON, {"encoding":"pickle","data":"<base64>"} otherwise (pickle
protocol 4; modules pickle by name), {"encoding":"items","data":[...]} for a
list whose elements are encoded separately. Encodings written by this program
carry "bytes", the size of the encoded data.

This module is also imported by the SDK for its codec (encode_value,
decode_value, error_record); importing it has no side effects.
"""

import base64
import importlib
import io
import json
import linecache
import os
import pickle
import sys
import time
import traceback
import types

RESULT_PREFIX = "\x1eFLOTILLA-RESULT "
PICKLE_PROTOCOL = 4
EXIT_BAD_INPUT = 2

# JSON integers outside this range lose precision in most JSON parsers (the
# manager's included); such ints travel pickled.
_JSON_INT_MIN = -(2**63)
_JSON_INT_MAX = 2**64 - 1
_MAX_JSON_DEPTH = 200


class BadInput(Exception):
    """The runner's input is malformed: exit non-zero so it is retried."""


# ---- codec


def _json_exact(value, depth=0, seen=None):
    """Returns True if json.loads(json.dumps(value)) == value with the same types."""
    if depth > _MAX_JSON_DEPTH:
        return False
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return True
    if kind is int:
        return _JSON_INT_MIN <= value <= _JSON_INT_MAX
    if kind is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if kind is list or kind is dict:
        if seen is None:
            seen = set()
        if id(value) in seen:  # a cycle: JSON cannot express it
            return False
        seen.add(id(value))
        try:
            if kind is list:
                return all(_json_exact(v, depth + 1, seen) for v in value)
            return all(
                type(k) is str and _json_exact(v, depth + 1, seen) for k, v in value.items()
            )
        finally:
            seen.discard(id(value))
    return False


class _Pickler(pickle.Pickler):
    # Modules (`import numpy as np` inside a function body) are shipped by
    # name and imported again where they are unpickled.
    def reducer_override(self, obj):
        if isinstance(obj, types.ModuleType):
            return (importlib.import_module, (obj.__name__,))
        return NotImplemented


def dumps(value):
    buf = io.BytesIO()
    _Pickler(buf, protocol=PICKLE_PROTOCOL).dump(value)
    return buf.getvalue()


class _Unpickler(pickle.Unpickler):
    """Finds classes of the user's module even when it has another name here.

    A class defined in the user's module pickles as MODULE.Class; MODULE is
    "flotilla_fn" in a sandbox and the real module name (or "__main__") on the
    client. `aliases` maps module names to the module object that holds them;
    a lookup that fails elsewhere falls back to `fallback`.
    """

    def __init__(self, file, aliases=None, fallback=None):
        super().__init__(file)
        self._aliases = aliases or {}
        self._fallback = fallback

    def find_class(self, module, name):
        alias = self._aliases.get(module)
        if alias is not None:
            return _getattr_path(alias, name)
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            if self._fallback is None:
                raise
            return _getattr_path(self._fallback, name)


def _getattr_path(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def loads(data, aliases=None, fallback=None):
    return _Unpickler(io.BytesIO(data), aliases, fallback).load()


def encode_value(value):
    """Returns the value encoding of `value` with its size in "bytes"."""
    if _json_exact(value):
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        return {"encoding": "json", "data": value, "bytes": len(text.encode("utf-8"))}
    data = base64.b64encode(dumps(value)).decode("ascii")
    return {"encoding": "pickle", "data": data, "bytes": len(data)}


def encode_items(values):
    """Returns an "items" encoding: each element of `values` encoded separately."""
    encoded = [encode_value(v) for v in values]
    return {"encoding": "items", "data": encoded, "bytes": sum(e["bytes"] for e in encoded)}


def decode_value(enc, aliases=None, fallback=None):
    """Returns the value of a value encoding; raises BadInput if it is malformed."""
    if not isinstance(enc, dict) or "encoding" not in enc:
        raise BadInput("a value encoding must be an object with \"encoding\", got %r"
                       % (_short(enc),))
    kind = enc["encoding"]
    data = enc.get("data")
    if kind == "json":
        return data
    if kind == "pickle":
        if not isinstance(data, str):
            raise BadInput("a pickle encoding needs base64 text in \"data\"")
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except ValueError as e:
            raise BadInput("bad base64 in a pickle encoding: %s" % e)
        return loads(raw, aliases, fallback)
    if kind == "items":
        if not isinstance(data, list):
            raise BadInput("an items encoding needs a list in \"data\"")
        return [decode_value(e, aliases, fallback) for e in data]
    raise BadInput("unknown encoding %r (use json, pickle or items)" % (kind,))


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_or_absent(value):
    """Returns (True, value) if json.dumps accepts value (strict JSON), else (False, None)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return False, None
    return True, value


# ---- errors


def _runner_frame(tb):
    return tb.tb_frame.f_code.co_filename == _runner_frame.__code__.co_filename


def error_record(exc):
    """Returns the contract's error object for a user exception."""
    tb = exc.__traceback__
    while tb is not None and _runner_frame(tb):  # start at the user's frames
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    pickled = None
    try:
        raw = dumps(exc)
        loads(raw)  # some exceptions pickle but do not unpickle; ship only what works
        pickled = base64.b64encode(raw).decode("ascii")
    except Exception:
        pickled = None
    try:
        message = str(exc)
    except Exception as e:  # a broken __str__ must not break the report
        message = "<str() failed: %s>" % type(e).__name__
    return {
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": message,
        "traceback": text,
        "pickle": pickled,
    }


# ---- the flotilla stub


def _identity_decorator(*args, **kwargs):
    # Supports both @decorator and @decorator(...): a lone callable argument is
    # the decorated function.
    if len(args) == 1 and not kwargs and callable(args[0]):
        return args[0]
    return lambda fn: fn


def make_stub_module():
    """Returns the `flotilla` stand-in for sandboxes: decorators return the function."""
    stub = types.ModuleType("flotilla")
    stub.__doc__ = "Flotilla stand-in inside a sandbox: decorators are no-ops."
    stub.splitable = _identity_decorator
    stub.remote = _identity_decorator
    stub.geo_preference = lambda *regions, **kw: (lambda fn: fn)
    stub.resource_constraint = lambda *a, **kw: (lambda fn: fn)
    stub.configure = lambda *a, **kw: None

    class FlotillaError(Exception):
        pass

    class RemoteError(FlotillaError):
        pass

    def client(*a, **kw):
        raise FlotillaError("flotilla.Client is not available inside a sandbox")

    stub.FlotillaError = FlotillaError
    stub.RemoteError = RemoteError
    stub.Client = client
    stub.IN_SANDBOX = True
    return stub


# ---- execution


def _require(obj, key, kind, what):
    if key not in obj:
        raise BadInput("missing %r (%s)" % (key, what))
    value = obj[key]
    if not isinstance(value, kind):
        raise BadInput("%r must be %s" % (key, what))
    return value


def load_module(source, module_name):
    """Executes the user's module; returns it (registered in sys.modules)."""
    sys.modules["flotilla"] = make_stub_module()
    module = types.ModuleType(module_name)
    filename = "<%s>" % module_name
    module.__file__ = filename
    # Tracebacks show the user's source lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    # Registered before it runs, as import does, so pickle finds its classes.
    sys.modules[module_name] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _decode_inputs(spec, module):
    inputs = spec.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise BadInput("'inputs' must be an object of name -> value encoding")
    return {name: decode_value(enc, fallback=module) for name, enc in inputs.items()}


def _entrypoint(module, name):
    try:
        return _getattr_path(module, name)
    except AttributeError:
        raise NameError("module %s has no function %r" % (module.__name__, name)) from None


def _decode_call_args(spec, module):
    if "args_pickle" in spec:  # the submit's (args, kwargs) pickle, passed through
        pair = decode_value({"encoding": "pickle", "data": spec["args_pickle"]}, fallback=module)
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise BadInput("'args_pickle' must be a pickled (args, kwargs) pair")
        args, kwargs = pair
    else:
        args = decode_value(spec["args"], fallback=module) if "args" in spec else []
        kwargs = decode_value(spec["kwargs"], fallback=module) if "kwargs" in spec else {}
    if not isinstance(args, (list, tuple)):
        raise BadInput("'args' must encode a list")
    if not isinstance(kwargs, dict):
        raise BadInput("'kwargs' must encode a dict")
    return list(args), kwargs


def run_call(spec, module, user):
    args, kwargs = _decode_call_args(spec, module)
    name = _require(spec, "entrypoint", str, "the function's name")

    def body():
        return _entrypoint(module, name)(*args, **kwargs)

    return user(body), {}


def _bind(module, name, args, kwargs):
    import inspect

    sig = inspect.signature(_entrypoint(module, name))
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def run_piece(spec, module, user):
    code = spec.get("code") or ""
    if not isinstance(code, str):
        raise BadInput("'code' must be text")
    outputs = spec.get("outputs") or []
    expand = set(spec.get("expand") or [])
    ret = spec.get("return")
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise BadInput("'outputs' must be a list of names")
    if ret is not None and not isinstance(ret, str):
        raise BadInput("'return' must be an expression or null")
    namespace = dict(module.__dict__)
    namespace.update(_decode_inputs(spec, module))
    binding = None
    if "entrypoint" in spec and ("args" in spec or "kwargs" in spec or "args_pickle" in spec):
        binding = _decode_call_args(spec, module)
    try:
        compiled = compile(code, "<piece>", "exec")
        compiled_ret = compile(ret, "<return>", "eval") if ret else None
    except SyntaxError as e:
        raise BadInput("piece code does not compile: %s" % e)

    def body():
        if binding is not None:
            namespace.update(_bind(module, spec["entrypoint"], *binding))
        exec(compiled, namespace)
        return eval(compiled_ret, namespace) if compiled_ret else None

    result = user(body)
    exported = {}
    for name in outputs + sorted(n for n in expand if n not in outputs):
        if name not in namespace:  # e.g. assigned only on a branch not taken
            continue
        value = namespace[name]
        try:
            exported[name] = encode_items(list(value)) if name in expand else encode_value(value)
        except Exception as e:  # a file, a generator, a lock...: the user's problem
            raise _UserFailure(_unshippable("variable %r" % name, e))
    return result, exported


def run_map(spec, module, user):
    target = _require(spec, "target", str, "the loop target")
    element = _require(spec, "element", str, "the element expression")
    items_enc = _require(spec, "items", dict, "an items encoding")
    if items_enc.get("encoding") != "items":
        raise BadInput("'items' must be an items encoding")
    items = decode_value(items_enc, fallback=module)
    namespace = dict(module.__dict__)
    namespace.update(_decode_inputs(spec, module))
    try:
        bind = compile("%s = __flotilla_item__" % target, "<target>", "exec")
        compiled = compile(element, "<element>", "eval")
    except SyntaxError as e:
        raise BadInput("map target or element does not compile: %s" % e)

    def body():
        values = []
        for item in items:
            namespace["__flotilla_item__"] = item
            exec(bind, namespace)
            values.append(eval(compiled, namespace))
        return values

    return user(body), {}


MODES = {"call": run_call, "piece": run_piece, "map": run_map}


class _UserFailure(Exception):
    def __init__(self, exc):
        super().__init__()
        self.exc = exc


def _run_user(fn):
    try:
        return fn()
    except BaseException as e:  # SystemExit and KeyboardInterrupt are the user's too
        raise _UserFailure(e)


def execute(spec):
    """Returns the output object for one input object; raises BadInput."""
    if not isinstance(spec, dict):
        raise BadInput("the input must be a JSON object")
    mode = spec.get("mode")
    if mode not in MODES:
        raise BadInput("'mode' must be call, piece or map, got %r" % (mode,))
    source = _require(spec, "module", str, "the module's Python source")
    module_name = spec.get("module_name") or "flotilla_fn"
    if not isinstance(module_name, str) or not module_name.isidentifier():
        raise BadInput("'module_name' must be an identifier")
    start = time.perf_counter()
    try:
        module = _run_user(lambda: load_module(source, module_name))
        loaded = time.perf_counter()
        result, outputs = MODES[mode](spec, module, _run_user)
    except _UserFailure as failure:
        return {"ok": False, "error": error_record(failure.exc),
                "duration_us": int((time.perf_counter() - start) * 1e6)}
    done = time.perf_counter()
    record = {"ok": True, "outputs": outputs}
    try:
        record["result"] = encode_items(result) if mode == "map" else encode_value(result)
    except Exception as e:  # the result cannot be pickled: the user's problem
        return {"ok": False, "error": error_record(_unshippable("the result", e)),
                "duration_us": int((done - start) * 1e6)}
    has_json, value = json_or_absent(result)
    if has_json:
        record["result_json"] = value
    record["duration_us"] = int((done - loaded) * 1e6)
    record["module_us"] = int((loaded - start) * 1e6)
    return record


def _unshippable(what, cause):
    err = TypeError("%s cannot be shipped between pieces: %s" % (what, cause))
    err.__cause__ = cause
    return err


class _TrackingStdout:
    """Wraps sys.stdout to know whether the user's last write ended a line."""

    def __init__(self, stream):
        self._stream = stream
        self.at_line_start = True

    def write(self, text):
        if text:
            self.at_line_start = text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _emit(record, tracker):
    for stream in (sys.stdout, sys.stderr, tracker._stream):
        try:
            stream.flush()
        except Exception:
            pass
    line = RESULT_PREFIX + json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    if not tracker.at_line_start:
        line = "\n" + line
    data = line.encode("utf-8")
    while data:
        n = os.write(1, data)
        data = data[n:]


def main():
    tracker = _TrackingStdout(sys.stdout)
    sys.stdout = tracker
    try:
        try:
            spec = json.loads(sys.stdin.buffer.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise BadInput("stdin is not one JSON object: %s" % e)
        record = execute(spec)
    except BadInput as e:
        _emit({"ok": False, "runner_error": True,
               "error": {"type": "BadInput", "module": "flotilla", "message": str(e),
                         "traceback": "", "pickle": None}}, tracker)
        sys.stderr.write("flotilla runner: bad input: %s\n" % e)
        return EXIT_BAD_INPUT
    _emit(record, tracker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
