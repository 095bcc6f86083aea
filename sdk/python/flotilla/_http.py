"""JSON over HTTP(S) to the manager, on kept-alive connections (http.client only).

A TLS handshake to the manager costs about 20 times a request on a connection already open
(docs/benchmarks.md), so a Transport keeps its connections and reuses them.
"""

import http.client
import json
import select
import ssl
import threading
import time
import urllib.parse

from .errors import ConflictError, FlotillaError, NotFoundError

# The name in every manager's certificate (the C++ side's auth::kManagerName). The SDK checks it
# instead of the dialled address, as the CLI and the agents do: a manager is known by its name,
# so a certificate issued without the address in it still serves.
MANAGER_NAME = "manager.flotilla"

# The manager's HTTP server closes a kept-alive connection after 2 s idle (http_server.cc:
# an idle connection holds one of its threads) and after 100 requests. Its clock starts when it
# has written an answer, ours when we have read it, so a connection idle for less than this is
# still open there; one idle longer is closed here rather than raced against the server's close.
IDLE_LIMIT_S = 1.5

# Idle connections kept per manager address; a request finding none opens one, so a long poll
# never holds up another thread's call. More than this many idle at once are closed.
MAX_IDLE = 8

# Methods whose repeat does what one call does, and reads no version: resent once on a fresh
# connection when a reused one fails after the request went out (the server may have closed it
# at the same moment). PUT and DELETE are not here: a conditional one (if_version) that did
# apply would come back as a conflict. A POST is resent only when its caller says it is
# idempotent: a submit that carries a request id (the manager answers a repeat with the
# workflow the first one made).
_RESEND_AFTER_SENT = ("GET", "HEAD")

# What a connection the server closed looks like from here.
_STALE = (ConnectionError, ssl.SSLZeroReturnError, ssl.SSLEOFError, http.client.BadStatusLine)


def quote(part):
    return urllib.parse.quote(str(part), safe="")


class _Refused(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.message = message


class _SendFailed(Exception):
    """The request was not completely written: the server cannot have acted on it."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class _AnswerLost(Exception):
    """The request went out but no complete answer came back."""

    def __init__(self, cause):
        super().__init__(str(cause))
        self.cause = cause


class _ManagerConnection(http.client.HTTPSConnection):
    """HTTPS that checks the certificate against MANAGER_NAME, not the dialled host."""

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=MANAGER_NAME)


def _context(ca_file):
    """TLS 1.2+; with ca_file, only the manager certified by that CA is trusted."""
    if not ca_file:
        context = ssl.create_default_context()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
    try:
        # cafile given: the system's roots are not loaded, only the federation's CA counts.
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise FlotillaError("cannot load the CA certificate %s (FLOTILLA_CA or the local "
                            "federation's): %s" % (ca_file, e)) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _dropped(conn):
    """Returns True if an idle connection cannot carry another request: closed here, or
    readable, which on an idle HTTP connection means the server closed it (EOF, TLS close)."""
    sock = conn.sock
    if sock is None:
        return True
    # poll, not select: select cannot take a descriptor above 1023.
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


class Transport:
    """Sends one JSON request and returns the decoded JSON answer.

    Thread-safe. Connections are kept alive and reused: each request takes an idle connection
    to the current manager (or opens one) and gives it back once the answer is read, so
    concurrent calls, long polls included, each have their own. `clock` (monotonic seconds)
    is a parameter so that tests can age idle connections.
    """

    def __init__(self, base_url, timeout=30.0, token=None, ca_file=None, clock=time.monotonic):
        # One URL, or every manager replica's, comma-separated: only the leader listens, so a
        # refused connection moves on to the next (the request never reached a manager, so
        # resending it is safe). Other failures are reported, not retried, but for a reused
        # connection the server had closed (see _request_one).
        self.base_urls = [u for u in base_url.split(",") if u]
        self._current = 0
        self._lock = threading.Lock()
        self._idle = {}  # base url -> [(connection, idle since)], newest last; under _lock
        self.timeout = timeout
        self.token = token
        self.ca_file = ca_file
        self._clock = clock
        self._context = None
        if any(u.startswith("https://") for u in self.base_urls):
            self._context = _context(ca_file)

    @property
    def base_url(self):
        return self.base_urls[self._current]

    def close(self):
        """Closes the idle connections; the next request opens a new one."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn, _ in conns:
                conn.close()

    def __del__(self):
        # A dropped Client leaves no open socket behind for the garbage collector to warn of.
        try:
            self.close()
        except Exception:
            pass

    def request(self, method, path, body=None, query=None, timeout=None, idempotent=False):
        for attempt in range(len(self.base_urls)):
            with self._lock:
                current = self._current
            try:
                return self._request_one(self.base_urls[current], method, path, body, query,
                                         timeout, idempotent)
            except _Refused as e:
                if attempt + 1 == len(self.base_urls):
                    raise FlotillaError(e.message) from None
                with self._lock:
                    if self._current == current:
                        self._current = (current + 1) % len(self.base_urls)

    def _request_one(self, base_url, method, path, body, query, timeout, idempotent=False):
        timeout = timeout or self.timeout
        target = urllib.parse.urlsplit(base_url).path + path
        if query:
            target += "?" + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None})
        data = None
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = self._checkout(base_url)
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._connect(base_url, method, path, timeout)
            try:
                status, reason, raw = _exchange(conn, method, target, headers, data, timeout)
                break
            except _SendFailed as e:
                conn.close()
                # Not all of it was written, so the server has not acted on it: any request
                # may go again, once, on a fresh connection.
                if reused and isinstance(e.cause, _STALE):
                    conn, reused = None, False
                    continue
                raise self._unreachable(method, path, e.cause) from None
            except _AnswerLost as e:
                conn.close()
                if (reused and isinstance(e.cause, _STALE)
                        and (method in _RESEND_AFTER_SENT or idempotent)):
                    conn, reused = None, False
                    continue
                if method in _RESEND_AFTER_SENT:
                    raise self._unreachable(method, path, e.cause) from None
                raise FlotillaError(
                    "%s %s: the manager at %s took the request but its answer was lost (%s); "
                    "it may or may not have been applied: check before repeating it"
                    % (method, path, base_url, _reason(e.cause))) from None
        self._checkin(base_url, conn)
        if status >= 400:
            raise _http_error(method, path, status, reason, raw)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise FlotillaError("%s %s: the manager answered with something that is not JSON: "
                                "%r" % (method, path, raw[:200])) from None

    def _checkout(self, base_url):
        """Returns an idle connection to base_url still fit to use, or None."""
        now = self._clock()
        while True:
            with self._lock:
                conns = self._idle.get(base_url)
                if not conns:
                    return None
                conn, since = conns.pop()
            if now - since < IDLE_LIMIT_S and not _dropped(conn):
                return conn
            conn.close()

    def _checkin(self, base_url, conn):
        if conn.sock is None:  # the server said Connection: close; http.client closed it
            return
        extra = None
        with self._lock:
            conns = self._idle.setdefault(base_url, [])
            conns.append((conn, self._clock()))
            if len(conns) > MAX_IDLE:
                extra = conns.pop(0)[0]
        if extra is not None:
            extra.close()

    def _connect(self, base_url, method, path, timeout):
        url = urllib.parse.urlsplit(base_url)
        try:
            if url.scheme == "https":
                cls = _ManagerConnection if self.ca_file else http.client.HTTPSConnection
                conn = cls(url.hostname, url.port, timeout=timeout, context=self._context)
            elif url.scheme == "http":
                conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
            else:
                raise FlotillaError("manager address %s: the scheme must be https:// or "
                                    "http://" % base_url)
            conn.connect()
        except (OSError, http.client.HTTPException, ValueError) as e:
            error = self._unreachable(method, path, e)
            if isinstance(e, ConnectionRefusedError):
                raise _Refused(str(error)) from None
            raise error from None
        return conn

    def _unreachable(self, method, path, cause):
        message = ("cannot reach the Flotilla manager at %s (%s %s): %s; is it running "
                   "(`flotilla up`)?" % (",".join(self.base_urls), method, path, _reason(cause)))
        if isinstance(cause, ssl.SSLError):
            message += (" (TLS: the manager's certificate must chain to the CA in FLOTILLA_CA, "
                        "or the local federation's: %s)" % (self.ca_file or "system roots"))
        return FlotillaError(message)


def _reason(cause):
    return str(cause) or type(cause).__name__


def _exchange(conn, method, target, headers, data, timeout):
    """Returns (status, reason, body) for one request on conn; raises _SendFailed or
    _AnswerLost."""
    try:
        conn.sock.settimeout(timeout)
        # request() sends Content-Length: 0 for a POST without a body; httplib answers 400
        # to a POST with no length.
        conn.request(method, target, body=data, headers=headers)
    except (OSError, http.client.HTTPException) as e:
        raise _SendFailed(e) from None
    try:
        resp = conn.getresponse()
        return resp.status, resp.reason, resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise _AnswerLost(e) from None


def _http_error(method, path, status, reason, raw):
    message = None
    try:
        message = json.loads(raw.decode("utf-8")).get("error")
    except Exception:
        pass
    if not message:
        message = raw.decode("utf-8", "replace").strip() or reason or "HTTP %d" % status
    text = "%s %s: %s (HTTP %d)" % (method, path, message, status)
    if status == 401:
        text += ("; pass Client(token=...) or set FLOTILLA_TOKEN (an admin makes tokens with "
                 "`flotilla user add`)")
    cls = {404: NotFoundError, 409: ConflictError}.get(status, FlotillaError)
    return cls(text, status=status)
