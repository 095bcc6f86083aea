"""JSON over HTTP to the manager (urllib only)."""

import json
import socket
import urllib.error
import urllib.parse
import urllib.request

from .errors import ConflictError, FlotillaError, NotFoundError


def quote(part):
    return urllib.parse.quote(str(part), safe="")


class Transport:
    """Sends one JSON request and returns the decoded JSON answer.

    Thread-safe: it keeps no connection state between calls.
    """

    def __init__(self, base_url, timeout=30.0, token=None):
        self.base_url = base_url
        self.timeout = timeout
        self.token = token

    def request(self, method, path, body=None, query=None, timeout=None):
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise _http_error(method, path, e) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise FlotillaError("cannot reach the Flotilla manager at %s (%s %s): %s; is it "
                                "running (`flotilla up`)?" % (self.base_url, method, path,
                                                              reason)) from None
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise FlotillaError("%s %s: the manager answered with something that is not JSON: "
                                "%r" % (method, path, raw[:200])) from None


def _http_error(method, path, e):
    raw = b""
    try:
        raw = e.read()
    except Exception:
        pass
    message = None
    try:
        message = json.loads(raw.decode("utf-8")).get("error")
    except Exception:
        pass
    if not message:
        message = raw.decode("utf-8", "replace").strip() or e.reason or "HTTP %d" % e.code
    text = "%s %s: %s (HTTP %d)" % (method, path, message, e.code)
    if e.code == 401:
        text += ("; pass Client(token=...) or set FLOTILLA_TOKEN (an admin makes tokens with "
                 "`flotilla user add`)")
    cls = {404: NotFoundError, 409: ConflictError}.get(e.code, FlotillaError)
    return cls(text, status=e.code)
