"""JSON over HTTP to the manager (urllib only)."""

import http.client
import json
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

from .errors import ConflictError, FlotillaError, NotFoundError

# The name in every manager's certificate (the C++ side's auth::kManagerName). The SDK checks it
# instead of the dialled address, as the CLI and the agents do: a manager is known by its name,
# so a certificate issued without the address in it still serves.
MANAGER_NAME = "manager.flotilla"


def quote(part):
    return urllib.parse.quote(str(part), safe="")


class _Refused(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class _ManagerConnection(http.client.HTTPSConnection):
    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=MANAGER_NAME)


class _ManagerHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_ManagerConnection, req, context=self._context)


def _opener(ca_file):
    """urllib with TLS 1.2+; with ca_file, only the manager certified by that CA is trusted."""
    if not ca_file:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        # cafile given: the system's roots are not loaded, only the federation's CA counts.
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise FlotillaError("cannot load the CA certificate %s (FLOTILLA_CA or the local "
                            "federation's): %s" % (ca_file, e)) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return urllib.request.build_opener(_ManagerHTTPSHandler(context=context))


class Transport:
    """Sends one JSON request and returns the decoded JSON answer.

    Thread-safe: it keeps no connection state between calls.
    """

    def __init__(self, base_url, timeout=30.0, token=None, ca_file=None):
        # One URL, or every manager replica's, comma-separated: only the leader listens, so a
        # refused connection moves on to the next (the request never reached a manager, so
        # resending it is safe). Other failures are reported, not retried.
        self.base_urls = [u for u in base_url.split(",") if u]
        self._current = 0
        self._lock = threading.Lock()
        self.timeout = timeout
        self.token = token
        self.ca_file = ca_file
        self._open = _opener(ca_file).open

    @property
    def base_url(self):
        return self.base_urls[self._current]

    def request(self, method, path, body=None, query=None, timeout=None):
        for attempt in range(len(self.base_urls)):
            with self._lock:
                current = self._current
            try:
                return self._request_one(self.base_urls[current], method, path, body, query,
                                         timeout)
            except _Refused as e:
                if attempt + 1 == len(self.base_urls):
                    raise FlotillaError(e.message) from None
                with self._lock:
                    if self._current == current:
                        self._current = (current + 1) % len(self.base_urls)

    def _request_one(self, base_url, method, path, body, query, timeout):
        url = base_url + path
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
            with self._open(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise _http_error(method, path, e) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            message = ("cannot reach the Flotilla manager at %s (%s %s): %s; is it running "
                       "(`flotilla up`)?" % (",".join(self.base_urls), method, path, reason))
            if isinstance(reason, ConnectionRefusedError):
                raise _Refused(message) from None
            if isinstance(reason, ssl.SSLError):
                message += (" (TLS: the manager's certificate must chain to the CA in FLOTILLA_CA, "
                            "or the local federation's: %s)" % (self.ca_file or "system roots"))
            raise FlotillaError(message) from None
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
