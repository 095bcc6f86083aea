"""Flotilla's Python SDK: run plain Python functions on a Flotilla federation.

    import flotilla

    @flotilla.splitable
    def f(xs):
        ys = [g(x) for x in xs]
        return sum(ys)

    f([1, 2, 3])          # runs on the federation (split where it is safe)

See docs/sdk.md. Standard library only; Python 3.8+.
"""

from .client import Client, Future
from .decorators import (RemoteFunction, configure, default_client, geo_preference, remote,
                         resource_constraint, splitable)
from .errors import ConflictError, FlotillaError, NotFoundError, RemoteError
from .state import KV, Entry, Event, Message, Queue

__all__ = [
    "Client", "Future", "RemoteFunction", "configure", "default_client", "geo_preference",
    "remote", "resource_constraint", "splitable", "FlotillaError", "NotFoundError",
    "ConflictError", "RemoteError", "KV", "Queue", "Entry", "Event", "Message",
]

IN_SANDBOX = False
