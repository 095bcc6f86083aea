"""The decorators: a decorated function runs on the federation when called.

    @flotilla.splitable
    @flotilla.geo_preference("eu-west")
    @flotilla.resource_constraint(memory="256Mi", timeout="30s")
    def f(x): ...

    f(3)              # deploys f on first call, runs it remotely, returns its value
    f.remote(3)       # a Future
    f.local(3)        # the plain function, here

Inside a sandbox the runner replaces this package with a stub whose
decorators return the function unchanged, so the same module runs there.
"""

import functools
import hashlib
import inspect
import os
import sys
import threading

from .client import Client, normalize_annotations
from .errors import FlotillaError, NotFoundError

_default_client = None
_default_lock = threading.Lock()


def configure(address=None, timeout=30.0):
    """Sets the client decorated functions use; returns it."""
    global _default_client
    with _default_lock:
        _default_client = Client(address, timeout=timeout)
        return _default_client


def default_client():
    """Returns the configured client, creating one from the environment on first use."""
    global _default_client
    with _default_lock:
        if _default_client is None:
            _default_client = Client()
        return _default_client


class RemoteFunction:
    """A plain function plus its annotations; calling it runs it on the federation."""

    def __init__(self, fn):
        if not inspect.isfunction(fn):
            raise TypeError("flotilla decorators apply to functions, not %s" % type(fn).__name__)
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError("%s: generators and coroutines cannot run remotely; return a "
                            "value instead" % fn.__qualname__)
        functools.update_wrapper(self, fn)
        self._fn = fn
        self.annotations = {"splitable": False}
        self.client = None  # None: the default client
        self._lock = threading.Lock()
        self._deployed = {}  # client address -> sha256 of the deployed source
        self._source_cache = None  # (path, mtime_ns, size, source, sha256)

    # ---- identity
    @property
    def name(self):
        """The function's name on the federation: MODULE.QUALNAME."""
        module = self._fn.__module__
        if module == "__main__":
            path = inspect.getsourcefile(self._fn) or "main"
            module = os.path.splitext(os.path.basename(path))[0]
        return "%s.%s" % (module, self._fn.__qualname__)

    @property
    def entrypoint(self):
        if "<locals>" in self._fn.__qualname__:
            raise FlotillaError("%s is defined inside another function; only module-level "
                                "functions can run remotely" % self._fn.__qualname__)
        return self._fn.__qualname__

    def source(self):
        """Returns (module source, sha256 hex) as it is now on disk."""
        path = inspect.getsourcefile(self._fn)
        if not path or not os.path.exists(path):
            raise FlotillaError("cannot find the source file of %s; define it in a module "
                                "file, or deploy the source with Client.deploy" % self.name)
        st = os.stat(path)
        cached = self._source_cache
        if cached and cached[:3] == (path, st.st_mtime_ns, st.st_size):
            return cached[3], cached[4]
        with open(path, encoding="utf-8") as f:
            text = f.read()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self._source_cache = (path, st.st_mtime_ns, st.st_size, text, digest)
        return text, digest

    # ---- calls
    def local(self, *args, **kwargs):
        """Calls the original function here."""
        return self._fn(*args, **kwargs)

    def __call__(self, *args, **kwargs):
        return self._submit(args, kwargs, wait=True).result()

    def remote(self, *args, **kwargs):
        """Starts the call on the federation; returns a Future."""
        return self._submit(args, kwargs, wait=False)

    def deploy(self, client=None):
        """Deploys the function now if the server lacks this source; returns its name."""
        client = client or self.client or default_client()
        source, digest = self.source()
        with self._lock:
            if self._deployed.get(client.address) == digest:
                return self.name
            try:
                current = client.function(self.name)
            except NotFoundError:
                current = None
            # The server keeps annotations changed at run time as long as the
            # source is unchanged; a new source brings the decorators' ones.
            if (current is None or current.get("sha256") != digest
                    or current.get("entrypoint") != self.entrypoint):
                client.deploy(self.name, source, self.entrypoint,
                              annotations=self.annotations)
            self._deployed[client.address] = digest
        return self.name

    def _submit(self, args, kwargs, wait):
        client = self.client or default_client()
        self.deploy(client)
        module = sys.modules.get(self._fn.__module__)
        if module is None or getattr(module, "__dict__", None) is not self._fn.__globals__:
            module = _GlobalsView(self._fn.__globals__)  # loaded outside sys.modules
        return client._submit_call(self.name, args, kwargs, module=module,
                                   wait_ms=25000 if wait else None)

    def __repr__(self):
        return "<flotilla function %s %s>" % (self.name, self.annotations)


class _GlobalsView:
    """Attribute access to a module's globals, for finding its classes by name."""

    def __init__(self, namespace):
        self.__dict__.update(namespace)


def _wrap(fn):
    return fn if isinstance(fn, RemoteFunction) else RemoteFunction(fn)


def remote(fn=None):
    """Makes a function run on the federation when called (no annotations)."""
    if fn is None:
        return remote
    return _wrap(fn)


def splitable(fn=None):
    """Lets the federation split the function into a DAG of pieces (see docs/sdk.md)."""
    if fn is None:
        return splitable
    rf = _wrap(fn)
    rf.annotations["splitable"] = True
    return rf


def geo_preference(*regions):
    """Prefers nodes in these regions, in order."""
    if len(regions) == 1 and callable(regions[0]):
        raise TypeError("geo_preference needs regions: @flotilla.geo_preference('eu-west')")
    for r in regions:
        if not isinstance(r, str) or not r:
            raise TypeError("geo_preference: regions are non-empty strings, got %r" % (r,))

    def apply(fn):
        rf = _wrap(fn)
        rf.annotations["geo_preference"] = list(regions)
        return rf

    return apply


def resource_constraint(memory=None, timeout=None, cpu=None):
    """Limits each piece: memory ("256Mi" or bytes), timeout ("30s" or seconds), cpu ("500m" or cores)."""
    if callable(memory):
        raise TypeError("resource_constraint needs limits: "
                        "@flotilla.resource_constraint(memory='256Mi', timeout='30s')")
    limits = normalize_annotations({"resource_constraint": {"memory": memory, "timeout": timeout,
                                                            "cpu": cpu}})["resource_constraint"]

    def apply(fn):
        rf = _wrap(fn)
        rf.annotations["resource_constraint"] = dict(limits)
        return rf

    return apply
