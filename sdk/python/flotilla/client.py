"""flotilla.Client: the manager's REST API, and Future for a submitted workflow."""

import base64
import time
import uuid

from . import _runner
from ._address import resolve, resolve_ca, resolve_token
from ._http import Transport, quote
from ._units import resource_constraint
from .errors import FlotillaError, rebuild_exception
from .state import KV, Queue

TERMINAL = ("succeeded", "failed", "cancelled")
_POLL_MS = 25000  # one long-poll; below the transport's timeout


def normalize_annotations(annotations):
    """Returns annotations as the manager stores them (resource quantities as ints)."""
    out = {}
    for key, value in (annotations or {}).items():
        if key == "splitable":
            out[key] = bool(value)
        elif key == "geo_preference":
            out[key] = [value] if isinstance(value, str) else list(value or [])
        elif key == "resource_constraint":
            out[key] = resource_constraint(value or {})
        else:
            raise ValueError("unknown annotation %r (use splitable, geo_preference, "
                             "resource_constraint)" % (key,))
    return out


def encode_call(args, kwargs):
    """Returns the submit fields for a call: JSON when it carries exactly, else a pickle."""
    args, kwargs = list(args), dict(kwargs)
    if _runner._json_exact(args) and _runner._json_exact(kwargs):
        return {"args": args, "kwargs": kwargs}
    raw = _runner.dumps((tuple(args), kwargs))
    return {"args_pickle": base64.b64encode(raw).decode("ascii")}


class Future:
    """A submitted workflow; result() waits for it.

    Thread-safe for concurrent result()/done() calls (each is its own request).
    """

    def __init__(self, client, workflow, module=None):
        self._client = client
        self._workflow = workflow
        self._module = module  # where the user's classes live, for decoding
        self.id = workflow["id"]

    @property
    def workflow(self):
        """The last workflow object seen (state, pieces, ...)."""
        return self._workflow

    def done(self):
        """Returns True if the workflow has finished (succeeded, failed or cancelled)."""
        if self._workflow.get("state") not in TERMINAL:
            self._workflow = self._client.workflow(self.id)
        return self._workflow.get("state") in TERMINAL

    def wait(self, timeout=None):
        """Waits until the workflow is terminal; raises TimeoutError after `timeout` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._workflow.get("state") not in TERMINAL:
            wait_ms = _POLL_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("workflow %s still %s after %.1f s"
                                       % (self.id, self._workflow.get("state"), timeout))
                wait_ms = min(wait_ms, max(1, int(left * 1000)))
            self._workflow = self._client.workflow(self.id, wait_ms=wait_ms)
        return self._workflow

    def result(self, timeout=None):
        """Returns the function's value, or raises what the function raised.

        The remote exception is re-raised as its own type (see RemoteError);
        FlotillaError if the workflow was cancelled or failed outside the
        user's code; TimeoutError if it did not finish within `timeout` s.
        """
        w = self.wait(timeout)
        state = w.get("state")
        if state == "succeeded":
            if w.get("result") is not None:
                aliases = {"flotilla_fn": self._module} if self._module is not None else None
                return _runner.decode_value(w["result"], aliases=aliases, fallback=self._module)
            return w.get("result_json")
        if state == "cancelled":
            raise FlotillaError("workflow %s was cancelled" % self.id)
        error = w.get("error") or {"type": "FlotillaError", "module": "flotilla",
                                   "message": w.get("reason") or "workflow failed"}
        raise rebuild_exception(error, self._module)

    def exception(self, timeout=None):
        """Returns the exception result() would raise, or None."""
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as e:
            return e
        return None

    def cancel(self):
        """Cancels the whole workflow; returns True if it is now cancelled."""
        self._workflow = self._client.cancel(self.id)
        return self._workflow.get("state") == "cancelled"

    def __repr__(self):
        return "<flotilla.Future %s %s>" % (self.id, self._workflow.get("state"))


class Client:
    """The manager's REST API.

    address: "host:port" or "https://host:port"; default $FLOTILLA_HTTP, then
    the local federation record written by `flotilla up`. Without a scheme it is
    https (http only in the development mode: FLOTILLA_INSECURE=1 or `up --insecure`);
    ca: the CA certificate file the manager's certificate must chain to; default
    $FLOTILLA_CA, then the local federation's.
    token: the caller's bearer token; default $FLOTILLA_TOKEN, the file
    $FLOTILLA_TOKEN_FILE, then the local federation's admin token. Methods raise
    FlotillaError (NotFoundError, ConflictError) with the manager's message.

    Thread-safe. Calls reuse kept-alive connections (a TLS handshake costs about 20 requests
    on an open connection); concurrent calls and long polls each get their own. close(), or
    `with Client() as c:`, closes them.
    """

    def __init__(self, address=None, timeout=30.0, token=None, ca=None):
        self.address = resolve(address)
        self._t = Transport(self.address, timeout=timeout, token=resolve_token(token),
                            ca_file=ca or resolve_ca())

    def __repr__(self):
        return "<flotilla.Client %s>" % self.address

    def close(self):
        """Closes the kept-alive connections to the manager; a later call opens a new one."""
        self._t.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- functions
    def deploy(self, name, source, entrypoint, runtime="python3", template="python",
               annotations=None):
        """Deploys (a new version of) a function; returns the function object."""
        body = {"name": name, "runtime": runtime, "source": source, "entrypoint": entrypoint,
                "template": template, "annotations": normalize_annotations(annotations)}
        return self._t.request("POST", "/function/deploy", body)["function"]

    def functions(self):
        return self._t.request("GET", "/v1/functions").get("functions", [])

    def function(self, name):
        """Returns the function object with its source; NotFoundError if absent."""
        return self._t.request("GET", "/v1/functions/" + quote(name))["function"]

    def delete_function(self, name):
        return bool(self._t.request("DELETE", "/v1/functions/" + quote(name)).get("deleted"))

    def update_annotations(self, name, **annotations):
        """Changes annotations at run time (keys given replace); the next call obeys them.

        e.g. update_annotations("mod.f", splitable=False,
        geo_preference=["us-east"], resource_constraint={"memory": "1Gi"}).
        """
        body = {"function": name, "annotations": normalize_annotations(annotations)}
        return self._t.request("POST", "/annotation/update", body)["function"]

    def analyze(self, name=None, source=None, entrypoint=None):
        """Returns the split plan for a deployed function, or for source + entrypoint."""
        if name is not None:
            body = {"function": name}
        elif source is not None and entrypoint is not None:
            body = {"source": source, "entrypoint": entrypoint}
        else:
            raise ValueError("analyze(): give a deployed function's name, or source and "
                             "entrypoint")
        return self._t.request("POST", "/split/analyze", body)["plan"]

    # ---- executions
    def submit(self, name, /, *args, **kwargs):
        """Calls a deployed function on the federation; returns a Future."""
        return self._submit_call(name, args, kwargs)

    def invoke(self, name, /, *args, **kwargs):
        """Calls a deployed function and returns its value (or raises its exception)."""
        return self._submit_call(name, args, kwargs, wait_ms=_POLL_MS).result()

    def _submit_call(self, name, args, kwargs, module=None, wait_ms=None):
        body = {"function": name}
        body.update(encode_call(args, kwargs))
        if wait_ms:
            body["wait_ms"] = wait_ms
        return Future(self, self._submit(body, timeout=self._long(wait_ms)), module)

    def submit_plan(self, plan):
        """Submits a hand-written DAG ({"name", "steps": [...]}); returns a Future."""
        return Future(self, self._submit({"plan": plan}))

    def _submit(self, body, timeout=None):
        # A fresh request id per call: the manager maps it (per tenant) to one workflow, so
        # the transport may resend the submit when a kept-alive connection drops mid-call.
        body["request_id"] = uuid.uuid4().hex
        return self._t.request("POST", "/execution/submit", body, timeout=timeout,
                               idempotent=True)["workflow"]

    def workflow(self, id, wait_ms=None):
        """Returns the workflow object; with wait_ms, waits up to that long for it to end."""
        query = {"wait_ms": int(wait_ms)} if wait_ms else None
        return self._t.request("GET", "/v1/workflows/" + quote(id), query=query,
                               timeout=self._long(wait_ms))["workflow"]

    def cancel(self, id):
        return self._t.request("POST", "/v1/workflows/%s/cancel" % quote(id))["workflow"]

    def _long(self, wait_ms):
        return self._t.timeout + (wait_ms or 0) / 1000.0

    # ---- shared state
    def kv(self, namespace):
        return KV(self._t, namespace)

    def queue(self, name):
        return Queue(self._t, name)
