"""A tiny in-process stand-in for the manager's REST API, following the SDK contract.

It serves on 127.0.0.1 on a free port. Function calls really run: each submit
runs the runner (sdk/python/flotilla/_runner.py) as a subprocess in call
mode, so results and exceptions travel exactly as they would from a sandbox.
A plan submit only records the plan. Not thread-pooled: one request at a time
per connection thread (ThreadingHTTPServer), which is plenty for the tests.
"""

import base64
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
import urllib.parse

from _support import RUNNER, PREFIX
from flotilla._split import analyze
from flotilla._units import resource_constraint


class HttpError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _now_ms():
    return int(time.time() * 1000)


class State:
    def __init__(self):
        self.lock = threading.Condition()
        self.functions = {}
        self.workflows = {}
        self.by_request_id = {}  # the manager's idempotent submit: request id -> workflow id
        self.kv = {}  # ns -> key -> [value_b64, version, expires_at or None]
        self.revision = 0
        self.events = []  # (ns, event dict)
        self.queues = {}  # name -> [(id, msg)]
        self.groups = {}  # (queue, group) -> {"next": i, "pending": {id: deliveries}}
        self.requests = []  # (method, path) seen, for tests
        self.authorization = []  # the Authorization header of each request (None if absent)
        self.connections = 0  # connections accepted, for the keep-alive tests
        self.open_sockets = set()  # the server side of each open connection
        # Faults, set by tests: close each connection after this many answers, with
        # "Connection: close" as cpp-httplib's keep_alive_max_count does (None: never) ...
        self.max_requests_per_connection = None
        # ... and act on the next N requests but close the connection instead of answering.
        self.lose_answers = 0
        self.next_id = 0


class FakeManager:
    def __init__(self):
        self.state = State()
        state = self.state

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                self.served = 0
                with state.lock:
                    state.connections += 1
                    state.open_sockets.add(self.connection)

            def finish(self):
                with state.lock:
                    state.open_sockets.discard(self.connection)
                super().finish()

            def _do(self, method):
                if method in ("POST", "PUT") and "Content-Length" not in self.headers:
                    # As cpp-httplib does: it cannot tell where such a body ends.
                    self.send_error(400, "no Content-Length")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                with state.lock:
                    state.requests.append((method, parsed.path))
                    state.authorization.append(self.headers.get("Authorization"))
                try:
                    data = json.loads(body) if body else None
                    code, out = route(state, method, parsed.path, query, data)
                except HttpError as e:
                    code, out = e.code, {"error": str(e)}
                except (ValueError, KeyError, TypeError) as e:
                    code, out = 400, {"error": "bad request: %s" % e}
                raw = json.dumps(out).encode()
                with state.lock:
                    lose = state.lose_answers > 0
                    state.lose_answers -= lose
                    limit = state.max_requests_per_connection
                if lose:
                    self.close_connection = True
                    return
                self.served += 1
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                if limit is not None and self.served >= limit:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._do("GET")

            def do_POST(self):
                self._do("POST")

            def do_PUT(self):
                self._do("PUT")

            def do_DELETE(self):
                self._do("DELETE")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Plain HTTP, named so: without a scheme the SDK would speak HTTPS, as to a real manager.
        self.address = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def close_idle_connections(self):
        """Closes the server side of every open connection, as an idle timeout does."""
        import socket
        with self.state.lock:
            socks = list(self.state.open_sockets)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def count(self, method, path):
        with self.state.lock:
            return self.state.requests.count((method, path))

    def deploys(self):
        with self.state.lock:
            return sum(1 for m, p in self.state.requests if p == "/function/deploy")


# ---- routes

def route(st, method, path, query, data):
    if method == "POST" and path == "/function/deploy":
        return 200, {"function": deploy(st, data)}
    if method == "GET" and path == "/v1/functions":
        with st.lock:
            return 200, {"functions": [public(f, False) for f in st.functions.values()]}
    m = re.fullmatch(r"/v1/functions/([^/]+)", path)
    if m:
        name = urllib.parse.unquote(m.group(1))
        with st.lock:
            if name not in st.functions:
                raise HttpError(404, "no function %r" % name)
            if method == "GET":
                return 200, {"function": public(st.functions[name], True)}
            if method == "DELETE":
                del st.functions[name]
                return 200, {"deleted": True}
    if method == "POST" and path == "/annotation/update":
        with st.lock:
            f = st.functions.get(data["function"])
            if f is None:
                raise HttpError(404, "no function %r" % data["function"])
            f["annotations"].update(normalize(data.get("annotations") or {}))
            f["updated_unix_ms"] = _now_ms()
            return 200, {"function": public(f, False)}
    if method == "POST" and path == "/split/analyze":
        return 200, {"plan": plan(st, data)}
    if method == "POST" and path == "/execution/submit":
        return 200, {"workflow": submit(st, data)}
    m = re.fullmatch(r"/v1/workflows/([^/]+)(/cancel)?", path)
    if m:
        wid = urllib.parse.unquote(m.group(1))
        with st.lock:
            if wid not in st.workflows:
                raise HttpError(404, "no workflow %r" % wid)
            w = st.workflows[wid]
            if m.group(2) and method == "POST":
                if w["state"] == "running":
                    w["state"] = "cancelled"
                    w["finished_unix_ms"] = _now_ms()
                    st.lock.notify_all()
                return 200, {"workflow": dict(w)}
            deadline = time.monotonic() + int(query.get("wait_ms", 0)) / 1000.0
            while w["state"] == "running" and time.monotonic() < deadline:
                st.lock.wait(deadline - time.monotonic())
            return 200, {"workflow": dict(w)}
    if path.startswith("/v1/kv/"):
        return kv_route(st, method, path, query, data)
    m = re.fullmatch(r"/v1/queues/([^/]+)/(send|receive|ack)", path)
    if m and method == "POST":
        return 200, queue_route(st, urllib.parse.unquote(m.group(1)), m.group(2), data)
    raise HttpError(404, "no route %s %s" % (method, path))


def normalize(ann):
    out = {}
    for k, v in ann.items():
        if k == "resource_constraint":
            out[k] = resource_constraint(v)
        elif k in ("splitable", "geo_preference"):
            out[k] = v
        else:
            raise HttpError(400, "unknown annotation %r" % k)
    return out


def deploy(st, d):
    for key in ("name", "source", "entrypoint"):
        if not d.get(key):
            raise HttpError(400, "deploy needs %r" % key)
    with st.lock:
        old = st.functions.get(d["name"])
        now = _now_ms()
        f = {"name": d["name"], "version": (old["version"] + 1) if old else 1,
             "runtime": d.get("runtime", "python3"), "entrypoint": d["entrypoint"],
             "template": d.get("template", "python"),
             "annotations": {"splitable": False, "geo_preference": [], "resource_constraint": {}},
             "source": d["source"], "sha256": hashlib.sha256(d["source"].encode()).hexdigest(),
             "created_unix_ms": old["created_unix_ms"] if old else now, "updated_unix_ms": now}
        f["annotations"].update(normalize(d.get("annotations") or {}))
        st.functions[d["name"]] = f
        return public(f, False)


def public(f, with_source):
    out = json.loads(json.dumps(f))
    if not with_source:
        out.pop("source")
    return out


def plan(st, d):
    if "function" in d:
        with st.lock:
            f = st.functions.get(d["function"])
            if f is None:
                raise HttpError(404, "no function %r" % d["function"])
            source, entry = f["source"], f["entrypoint"]
    else:
        source, entry = d["source"], d["entrypoint"]
    a = analyze(source, entry)
    if not a["ok"]:
        raise HttpError(400, a["error"]["message"])
    pieces = [{"id": s["id"], "kind": "piece" if s["kind"] == "stmt" else s["kind"],
               "statements": [s["id"]], "code": s["code"], "inputs": s["reads"],
               "outputs": s["writes"], "cost": s["cost"], "reason": "one statement"}
              for s in a["statements"]] if a["splittable"] else []
    return {"splittable": a["splittable"], "reason": a["refusal"] or "split by statement",
            "pieces": pieces, "edges": [], "analysis": a}


def submit(st, d):
    with st.lock:
        rid = d.get("request_id")
        if rid is not None and rid in st.by_request_id:
            return dict(st.workflows[st.by_request_id[rid]])
        st.next_id += 1
        wid = "wf-%d" % st.next_id
        if rid is not None:
            st.by_request_id[rid] = wid
        w = {"id": wid, "state": "running", "function": d.get("function", ""), "split": False,
             "reason": "", "pieces": [], "submitted_unix_ms": _now_ms()}
        st.workflows[wid] = w
        if "plan" in d:
            w.update(state="succeeded", function=d["plan"].get("name", ""),
                     result={"encoding": "json", "data": [s["name"] for s in d["plan"]["steps"]]},
                     finished_unix_ms=_now_ms())
            return dict(w)
        f = st.functions.get(d["function"])
        if f is None:
            del st.workflows[wid]
            raise HttpError(404, "no function %r" % d["function"])
        ann = json.loads(json.dumps(f["annotations"]))
        w["annotations"] = ann  # what this call obeyed (a test aid, not in the contract)
        w["split"] = bool(ann.get("splitable")) and analyze(f["source"], f["entrypoint"])[
            "splittable"]
        spec = {"module": f["source"], "module_name": "flotilla_fn", "mode": "call",
                "entrypoint": f["entrypoint"]}
        if "args_pickle" in d:
            spec["args_pickle"] = d["args_pickle"]
        else:
            spec["args"] = {"encoding": "json", "data": d.get("args", [])}
            spec["kwargs"] = {"encoding": "json", "data": d.get("kwargs", {})}
    thread = threading.Thread(target=_run, args=(st, w, spec), daemon=True)
    thread.start()
    if d.get("wait_ms"):
        thread.join(d["wait_ms"] / 1000.0)
    with st.lock:
        return dict(w)


def _run(st, w, spec):
    proc = subprocess.run([sys.executable, "-I", RUNNER], input=json.dumps(spec).encode(),
                          capture_output=True, timeout=60, cwd="/")
    out = proc.stdout.decode()
    rec = json.loads(out[out.rfind(PREFIX) + len(PREFIX):])
    with st.lock:
        if w["state"] != "running":
            return
        w["pieces"] = [{"id": "p1", "state": "succeeded" if rec["ok"] else "failed",
                        "executions": ["ex-" + w["id"]], "node_id": "fake", "attempts": 1,
                        "duration_ms": rec.get("duration_us", 0) // 1000, "error": None}]
        if rec["ok"]:
            w["state"] = "succeeded"
            w["result"] = rec["result"]
            if "result_json" in rec:
                w["result_json"] = rec["result_json"]
        else:
            w["state"] = "failed"
            w["error"] = rec["error"]
        w["finished_unix_ms"] = _now_ms()
        st.lock.notify_all()


# ---- shared state

def _expire(st, now):
    for ns, keys in st.kv.items():
        for key in [k for k, v in keys.items() if v[2] is not None and v[2] <= now]:
            del keys[key]
            st.revision += 1
            st.events.append((ns, {"type": "expire", "key": key, "value": None, "version": 0,
                                   "revision": st.revision}))


def kv_route(st, method, path, query, data):
    parts = path[len("/v1/kv/"):].split("/")
    ns = urllib.parse.unquote(parts[0])
    key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else None
    with st.lock:
        _expire(st, time.monotonic())
        space = st.kv.setdefault(ns, {})
        if key is None and method == "GET" and "watch_prefix" in query:
            prefix, after = query["watch_prefix"], int(query.get("after", 0))
            deadline = time.monotonic() + int(query.get("timeout_ms", 0)) / 1000.0
            while True:
                evs = [e for n, e in st.events if n == ns and e["key"].startswith(prefix)
                       and e["revision"] > after]
                if evs or time.monotonic() >= deadline:
                    return 200, {"events": evs, "revision": st.revision}
                st.lock.wait(min(0.05, max(0.001, deadline - time.monotonic())))
                _expire(st, time.monotonic())
        if key is None and method == "GET":
            prefix = query.get("prefix", "")
            return 200, {"entries": [{"key": k, "value": v[0], "version": v[1]}
                                     for k, v in sorted(space.items()) if k.startswith(prefix)],
                         "revision": st.revision}
        cur = space.get(key)
        if method == "GET":
            if cur is None:
                raise HttpError(404, "no key %r" % key)
            return 200, {"value": cur[0], "version": cur[1]}
        if method == "PUT":
            want = data.get("if_version")
            if want is not None and (cur[1] if cur else 0) != want:
                raise HttpError(409, "version mismatch on %r" % key)
            base64.b64decode(data["value"], validate=True)
            version = (cur[1] + 1) if cur else 1
            ttl = data.get("ttl_ms")
            space[key] = [data["value"], version,
                          time.monotonic() + ttl / 1000.0 if ttl else None]
            st.revision += 1
            st.events.append((ns, {"type": "put", "key": key, "value": data["value"],
                                   "version": version, "revision": st.revision}))
            st.lock.notify_all()
            return 200, {"version": version}
        if method == "DELETE":
            if cur is None:
                raise HttpError(404, "no key %r" % key)
            if "if_version" in query and int(query["if_version"]) != cur[1]:
                raise HttpError(409, "version mismatch on %r" % key)
            del space[key]
            st.revision += 1
            st.events.append((ns, {"type": "delete", "key": key, "value": None,
                                   "version": cur[1], "revision": st.revision}))
            st.lock.notify_all()
            return 200, {}
    raise HttpError(405, "method %s" % method)


def queue_route(st, name, op, d):
    with st.lock:
        q = st.queues.setdefault(name, [])
        if op == "send":
            st.next_id += 1
            mid = "m-%d" % st.next_id
            q.append((mid, d["message"]))
            st.lock.notify_all()
            return {"id": mid}
        g = st.groups.setdefault((name, d["group"]), {"next": 0, "pending": {}, "acked": set()})
        if op == "ack":
            g["pending"].pop(d["id"], None)
            g["acked"].add(d["id"])
            return {}
        deadline = time.monotonic() + d.get("block_ms", 0) / 1000.0
        while g["next"] >= len(q) and not g["pending"] and time.monotonic() < deadline:
            st.lock.wait(deadline - time.monotonic())
        out = []
        # Unacked messages come again (at-least-once), then new ones.
        for mid, n in list(g["pending"].items()):
            if len(out) < d.get("max", 1):
                g["pending"][mid] = n + 1
                out.append({"id": mid, "message": dict(q)[mid], "deliveries": n + 1})
        while g["next"] < len(q) and len(out) < d.get("max", 1):
            mid, msg = q[g["next"]]
            g["next"] += 1
            g["pending"][mid] = 1
            out.append({"id": mid, "message": msg, "deliveries": 1})
        return {"messages": out}
