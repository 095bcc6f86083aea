"""Shared state: the key-value store and message queues, as the manager serves them.

Values and messages are bytes on the wire (base64 in JSON); str values are
sent as UTF-8. Objects are thread-safe as far as their Client is (they keep
no state of their own).
"""

import base64
import collections

from ._http import quote
from .errors import ConflictError, NotFoundError

Entry = collections.namedtuple("Entry", "key value version")
Event = collections.namedtuple("Event", "type key value version revision")
Message = collections.namedtuple("Message", "id message deliveries")


class Listing(list):
    """A list of Entry (or Event) with the store's `revision` at the time."""

    def __init__(self, items, revision):
        super().__init__(items)
        self.revision = revision


def _b64(value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("values are bytes or str, not %s (serialise it first, e.g. json.dumps)"
                        % type(value).__name__)
    return base64.b64encode(bytes(value)).decode("ascii")


def _unb64(text):
    return base64.b64decode(text) if text is not None else None


class KV:
    """One namespace of the key-value store."""

    def __init__(self, transport, namespace):
        self._t = transport
        self.namespace = namespace
        self._path = "/v1/kv/" + quote(namespace)

    def _key(self, key):
        return self._path + "/" + quote(key)

    def entry(self, key):
        """Returns the Entry for key, or None if it is absent."""
        try:
            r = self._t.request("GET", self._key(key))
        except NotFoundError:
            return None
        return Entry(key, _unb64(r.get("value")), r.get("version"))

    def get(self, key, default=None):
        """Returns the value (bytes) of key, or `default` if it is absent."""
        e = self.entry(key)
        return default if e is None else e.value

    def put(self, key, value, ttl=None, if_version=None):
        """Stores value; returns the new version.

        ttl: seconds until it expires (None: never). if_version: only if the
        current version is this (0: only if absent); raises ConflictError
        otherwise.
        """
        body = {"value": _b64(value)}
        if ttl is not None:
            body["ttl_ms"] = int(round(ttl * 1000))
        if if_version is not None:
            body["if_version"] = int(if_version)
        return self._t.request("PUT", self._key(key), body).get("version")

    def delete(self, key, if_version=None):
        """Deletes key; returns False if it was absent. ConflictError on a version mismatch."""
        query = {"if_version": int(if_version)} if if_version is not None else None
        try:
            self._t.request("DELETE", self._key(key), query=query)
        except NotFoundError:
            return False
        return True

    def list(self, prefix=""):
        """Returns a Listing of Entry under prefix, with the revision it was read at."""
        r = self._t.request("GET", self._path, query={"prefix": prefix})
        return Listing([Entry(e["key"], _unb64(e.get("value")), e.get("version"))
                        for e in r.get("entries", [])], r.get("revision"))

    def watch(self, prefix="", after=None, timeout=30.0):
        """Waits up to `timeout` seconds for changes under prefix after revision `after`.

        Returns a Listing of Event (type "put", "delete" or "expire"); its
        revision is the `after` for the next call. With after=None it starts
        at the current revision (only changes from now on).
        """
        if after is None:
            after = self.list(prefix).revision or 0
        timeout_ms = int(round(timeout * 1000))
        r = self._t.request("GET", self._path, query={"watch_prefix": prefix, "after": after,
                                                       "timeout_ms": timeout_ms},
                            timeout=timeout + 30)
        events = [Event(e.get("type"), e.get("key"), _unb64(e.get("value")), e.get("version"),
                        e.get("revision")) for e in r.get("events", [])]
        return Listing(events, r.get("revision", after))

    def cas(self, key, expected, new, ttl=None):
        """Sets key to `new` if its value is `expected` (None: if absent); returns True if it did."""
        current = self.entry(key)
        if expected is None:
            if current is not None:
                return False
            version = 0
        else:
            want = expected.encode("utf-8") if isinstance(expected, str) else bytes(expected)
            if current is None or current.value != want:
                return False
            version = current.version
        try:
            self.put(key, new, ttl=ttl, if_version=version)
        except ConflictError:
            return False
        return True


class Queue:
    """A named message queue: at-least-once delivery to consumer groups."""

    def __init__(self, transport, name):
        self._t = transport
        self.name = name
        self._path = "/v1/queues/" + quote(name)

    def send(self, message):
        """Appends a message (bytes or str); returns its id."""
        return self._t.request("POST", self._path + "/send", {"message": _b64(message)})["id"]

    def receive(self, group, consumer, max=1, block_ms=0):
        """Returns up to `max` Message for this consumer of `group`, waiting up to block_ms.

        A message not acked is delivered again (its `deliveries` counts).
        """
        body = {"group": group, "consumer": consumer, "max": int(max), "block_ms": int(block_ms)}
        r = self._t.request("POST", self._path + "/receive", body,
                            timeout=block_ms / 1000.0 + 30)
        return [Message(m["id"], _unb64(m.get("message")), m.get("deliveries", 1))
                for m in r.get("messages", [])]

    def ack(self, group, id):
        """Marks message `id` as handled by `group`."""
        self._t.request("POST", self._path + "/ack", {"group": group, "id": id})
