"""Exceptions of the SDK, and re-raising a remote user exception as its own type."""

import builtins
import sys

from . import _runner


class FlotillaError(Exception):
    """The manager refused a request or could not be reached.

    `status` is the HTTP status (None when the manager was not reached) and
    the message is the manager's own.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class NotFoundError(FlotillaError):
    """The function, workflow or key does not exist (HTTP 404)."""


class ConflictError(FlotillaError):
    """A compare-and-set lost: the version did not match (HTTP 409)."""


class RemoteError(FlotillaError):
    """The user's code raised on the federation and its type could not be rebuilt here.

    When the type can be rebuilt (the exception unpickles, or it is a builtin
    exception), the caller gets that exception itself, so `except ValueError`
    works; this class is then its __cause__ and carries the remote traceback.
    """

    def __init__(self, error):
        self.type = error.get("type") or "Exception"
        self.module = error.get("module") or "builtins"
        self.remote_message = error.get("message") or ""
        self.traceback = error.get("traceback") or ""
        name = self.type if self.module == "builtins" else "%s.%s" % (self.module, self.type)
        text = "%s: %s" % (name, self.remote_message)
        if self.traceback:
            text += "\n\nRemote traceback:\n" + self.traceback.rstrip()
        super().__init__(text)


def rebuild_exception(error, module=None):
    """Returns the exception to raise for a remote error object.

    The original exception if its pickle loads here (classes of the user's
    module are looked up in `module`); else a builtin exception of that type
    with the message; else a RemoteError. The remote traceback rides along as
    __cause__ (a RemoteError), as concurrent.futures does for process pools.
    """
    remote = RemoteError(error)
    exc = None
    if error.get("pickle"):
        aliases = {"flotilla_fn": module} if module is not None else None
        try:
            exc = _runner.decode_value({"encoding": "pickle", "data": error["pickle"]},
                                       aliases=aliases, fallback=module)
        except Exception:
            exc = None
        if not isinstance(exc, BaseException):
            exc = None
    if exc is None:
        exc = _by_name(error, module)
    if exc is None:
        return remote
    exc.__cause__ = remote
    return exc


def _by_name(error, module):
    name, mod = error.get("type") or "", error.get("module") or ""
    cls = None
    if mod == "builtins":
        cls = getattr(builtins, name, None)
    elif mod == "flotilla_fn" and module is not None:
        cls = getattr(module, name, None)
    elif mod in sys.modules:
        cls = getattr(sys.modules[mod], name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    try:
        return cls(error.get("message", ""))
    except Exception:
        return None
