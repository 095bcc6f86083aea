"""The SDK against the in-process fake manager (tests/python/fake_manager.py)."""

import importlib
import json
import os
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import unittest

import _support  # noqa: F401  (puts the SDK on sys.path)
import flotilla
from flotilla import _address, _http, _units
from fake_manager import FakeManager

MODULE = '''
import flotilla

class Oops(Exception):
    pass

class Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(a)

@flotilla.splitable
@flotilla.geo_preference("eu-west", "us-east")
@flotilla.resource_constraint(memory="256Mi", timeout="30s", cpu="500m")
def add(a, b=1):
    x = a + b
    return x

@flotilla.resource_constraint(memory=1024)
@flotilla.splitable
def shapes(n):
    t = tuple(range(n))
    return t, set(t), {1: "one"}

@flotilla.remote
def fails(kind):
    if kind == "value":
        raise ValueError("bad value")
    if kind == "key":
        raise KeyError("k")
    if kind == "custom":
        raise Oops("custom one")
    raise Unpicklable("cannot rebuild", 2)

@flotilla.remote
def slow(seconds):
    import time
    time.sleep(seconds)
    return seconds
'''


class Env:
    """Temporarily sets os.environ keys (None deletes)."""

    def __init__(self, **kv):
        self.kv, self.saved = kv, {}

    def __enter__(self):
        for k, v in self.kv.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *a):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class AddressTest(unittest.TestCase):
    def test_argument_env_then_record(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        os.makedirs(os.path.join(tmp, "flotilla"))
        with open(os.path.join(tmp, "flotilla", "federation.json"), "w") as f:
            json.dump({"manager_http": "127.0.0.1:7001", "manager_grpc": "x"}, f)
        env = {"XDG_DATA_HOME": tmp}
        # TLS is on unless the development mode says otherwise: https by default.
        self.assertEqual(_address.resolve("h:1", env), "https://h:1")
        self.assertEqual(_address.resolve(None, dict(env, FLOTILLA_HTTP="h:2")), "https://h:2")
        self.assertEqual(_address.resolve(None, env), "https://127.0.0.1:7001")
        self.assertEqual(_address.resolve("http://h:3/", env), "http://h:3")
        self.assertEqual(_address.resolve("h:4", dict(env, FLOTILLA_INSECURE="1")), "http://h:4")

    def test_development_mode_record_means_plain_http(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        os.makedirs(os.path.join(tmp, "flotilla"))
        with open(os.path.join(tmp, "flotilla", "federation.json"), "w") as f:
            json.dump({"manager_http": "127.0.0.1:7001", "insecure": True}, f)
        env = {"XDG_DATA_HOME": tmp}
        self.assertEqual(_address.resolve(None, env), "http://127.0.0.1:7001")
        self.assertIsNone(_address.resolve_ca(env))
        # A CA named in the environment wins over the record's development mode, as in the CLI.
        self.assertEqual(_address.resolve(None, dict(env, FLOTILLA_CA="/x/ca.crt")),
                         "https://127.0.0.1:7001")

    def test_ca_from_env_then_record(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        os.makedirs(os.path.join(tmp, "flotilla"))
        with open(os.path.join(tmp, "flotilla", "federation.json"), "w") as f:
            json.dump({"manager_http": "127.0.0.1:7001", "ca": "/state/pki/ca.crt"}, f)
        env = {"XDG_DATA_HOME": tmp}
        self.assertEqual(_address.resolve_ca(env), "/state/pki/ca.crt")
        self.assertEqual(_address.resolve_ca(dict(env, FLOTILLA_CA="/mine.crt")), "/mine.crt")

    def test_home_default_and_missing(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        env = {"HOME": tmp}
        self.assertEqual(_address.federation_record_path(env),
                         os.path.join(tmp, ".local", "share", "flotilla", "federation.json"))
        with self.assertRaises(flotilla.FlotillaError) as cm:
            _address.resolve(None, env)
        self.assertIn("flotilla up", str(cm.exception))
        self.assertIn("FLOTILLA_HTTP", str(cm.exception))


class TokenTest(unittest.TestCase):
    def test_argument_env_file_then_record(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        os.makedirs(os.path.join(tmp, "flotilla"))
        token_file = os.path.join(tmp, "flotilla", "admin.token")
        with open(token_file, "w") as f:
            f.write("flt_from_record\n")
        with open(os.path.join(tmp, "flotilla", "federation.json"), "w") as f:
            json.dump({"manager_http": "127.0.0.1:7001", "token_file": token_file}, f)
        env = {"XDG_DATA_HOME": tmp}
        self.assertEqual(_address.resolve_token("flt_arg", env), "flt_arg")
        self.assertEqual(_address.resolve_token(None, dict(env, FLOTILLA_TOKEN="flt_env")), "flt_env")
        self.assertEqual(_address.resolve_token(None, dict(env, FLOTILLA_TOKEN_FILE=token_file)),
                         "flt_from_record")
        self.assertEqual(_address.resolve_token(None, env), "flt_from_record")
        self.assertIsNone(_address.resolve_token(None, {"HOME": tmp}))
        with self.assertRaises(flotilla.FlotillaError):
            _address.resolve_token(None, {"FLOTILLA_TOKEN_FILE": os.path.join(tmp, "missing")})

    def test_every_call_carries_the_token(self):
        with FakeManager() as fake:
            client = flotilla.Client(fake.address, token="flt_abc")
            client.functions()
            self.assertEqual(fake.state.authorization[-1], "Bearer flt_abc")


class UnitsTest(unittest.TestCase):
    def test_quantities(self):
        self.assertEqual(_units.memory_bytes("256Mi"), 256 << 20)
        self.assertEqual(_units.memory_bytes("1G"), 10**9)
        self.assertEqual(_units.memory_bytes(4096), 4096)
        self.assertEqual(_units.timeout_ms("30s"), 30000)
        self.assertEqual(_units.timeout_ms("1m30s"), 90000)
        self.assertEqual(_units.timeout_ms("250ms"), 250)
        self.assertEqual(_units.timeout_ms(1.5), 1500)
        self.assertEqual(_units.cpu_millis("500m"), 500)
        self.assertEqual(_units.cpu_millis(2), 2000)
        self.assertEqual(_units.resource_constraint({"memory_bytes": 5, "timeout_ms": 7}),
                         {"memory_bytes": 5, "timeout_ms": 7})
        for bad in [lambda: _units.memory_bytes("12 parsecs"), lambda: _units.timeout_ms("soon"),
                    lambda: _units.cpu_millis("lots"), lambda: _units.memory_bytes(-1),
                    lambda: _units.resource_constraint({"disk": 1})]:
            with self.assertRaises(ValueError):
                bad()


class WithFake(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fake = FakeManager().__enter__()
        cls.client = flotilla.Client(cls.fake.address)
        cls.tmp = tempfile.mkdtemp()
        cls.module_name = "sdkmod_%d" % os.getpid()
        cls.path = os.path.join(cls.tmp, cls.module_name + ".py")
        with open(cls.path, "w") as f:
            f.write(MODULE)
        sys.path.insert(0, cls.tmp)
        cls.mod = importlib.import_module(cls.module_name)
        flotilla.configure(cls.fake.address)

    @classmethod
    def tearDownClass(cls):
        cls.fake.__exit__(None, None, None)
        sys.path.remove(cls.tmp)
        sys.modules.pop(cls.module_name, None)
        shutil.rmtree(cls.tmp)


class ClientTest(WithFake):
    SRC = "def double(x):\n    y = x * 2\n    return y\n"

    def test_deploy_list_show_delete(self):
        f = self.client.deploy("t.double", self.SRC, "double",
                               annotations={"splitable": True,
                                            "resource_constraint": {"memory": "64Mi"}})
        self.assertEqual((f["name"], f["version"]), ("t.double", 1))
        self.assertEqual(f["annotations"]["resource_constraint"], {"memory_bytes": 64 << 20})
        self.assertEqual(self.client.deploy("t.double", self.SRC, "double")["version"], 2)
        self.assertIn("t.double", [g["name"] for g in self.client.functions()])
        self.assertEqual(self.client.function("t.double")["source"], self.SRC)
        self.assertTrue(self.client.delete_function("t.double"))
        with self.assertRaises(flotilla.NotFoundError) as cm:
            self.client.function("t.double")
        self.assertIn("no function", str(cm.exception))
        self.assertEqual(cm.exception.status, 404)

    def test_invoke_submit_and_annotations(self):
        self.client.deploy("t.double2", self.SRC, "double")
        self.assertEqual(self.client.invoke("t.double2", 21), 42)
        self.assertEqual(self.client.invoke("t.double2", x=(1,)), (1, 1))  # pickled args
        fut = self.client.submit("t.double2", "ab")
        self.assertEqual(fut.result(timeout=30), "abab")
        self.assertTrue(fut.done())
        self.assertEqual(fut.workflow["state"], "succeeded")
        f = self.client.update_annotations("t.double2", geo_preference=["us-east"],
                                           resource_constraint={"timeout": "5s"})
        self.assertEqual(f["annotations"]["geo_preference"], ["us-east"])
        self.assertEqual(f["annotations"]["resource_constraint"], {"timeout_ms": 5000})

    def test_analyze(self):
        plan = self.client.analyze(source=self.SRC, entrypoint="double")
        self.assertTrue(plan["splittable"])
        self.assertEqual(plan["analysis"]["params"], ["x"])
        with self.assertRaises(ValueError):
            self.client.analyze()

    def test_plan_submit_and_workflow(self):
        fut = self.client.submit_plan({"name": "p", "steps": [
            {"name": "a", "run": "echo hi", "runtime": "shell", "inputs": []}]})
        self.assertEqual(fut.result(timeout=10), ["a"])
        self.assertEqual(self.client.workflow(fut.id)["id"], fut.id)
        with self.assertRaises(flotilla.NotFoundError):
            self.client.workflow("nope")

    def test_server_error_message(self):
        with self.assertRaises(flotilla.FlotillaError) as cm:
            self.client.deploy("t.bad", "", "f")
        self.assertIn("deploy needs 'source'", str(cm.exception))

    def test_unreachable_manager(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(flotilla.FlotillaError) as cm:
            flotilla.Client("127.0.0.1:%d" % port).functions()
        self.assertIn("cannot reach", str(cm.exception))

    def test_a_list_of_managers_finds_the_one_that_listens(self):
        # An HA federation: standbys refuse connections; the client moves on and stays there.
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        c = flotilla.Client("127.0.0.1:%d,%s" % (port, self.fake.address))
        c.deploy("t.ha", self.SRC, "double")
        self.assertIn("t.ha", [g["name"] for g in c.functions()])
        self.assertTrue(c._t.base_url.endswith(self.fake.address.split("://")[-1]))
        with self.assertRaises(flotilla.FlotillaError) as cm:
            flotilla.Client("127.0.0.1:%d,127.0.0.1:%d" % (port, port)).functions()
        self.assertIn("cannot reach", str(cm.exception))


class KeepAliveTest(unittest.TestCase):
    """One kept-alive connection per Client, reopened when the server closes it, and never
    a resent request that the server may have acted on."""

    def setUp(self):
        self.fake = FakeManager().__enter__()
        self.client = flotilla.Client(self.fake.address)

    def tearDown(self):
        self.client.close()
        self.fake.__exit__(None, None, None)

    def connections(self):
        with self.fake.state.lock:
            return self.fake.state.connections

    def test_calls_share_one_connection(self):
        kv = self.client.kv("ka")
        for i in range(20):
            kv.put("k%d" % i, str(i))
            self.assertEqual(kv.get("k%d" % i), str(i).encode())
        self.client.functions()
        self.assertEqual(self.connections(), 1)

    def test_reconnects_when_the_server_closes_after_n_requests(self):
        # A server's keep-alive max count (cpp-httplib's keep_alive_max_count): here 5 answers,
        # the last with "Connection: close".
        self.fake.state.max_requests_per_connection = 5
        kv = self.client.kv("ka")
        for i in range(23):
            kv.put("k", str(i))
        self.assertEqual(kv.get("k"), b"22")
        self.assertEqual(self.connections(), 5)  # 24 requests, 5 a connection
        self.assertEqual(self.fake.count("PUT", "/v1/kv/ka/k"), 23)

    def test_reconnects_when_the_server_closed_an_idle_connection(self):
        q = self.client.queue("qa")
        q.send("one")
        self.fake.close_idle_connections()
        # A POST: it goes out only because the closed connection is noticed before sending.
        q.send("two")
        self.assertEqual(self.fake.count("POST", "/v1/queues/qa/send"), 2)
        self.assertEqual(self.connections(), 2)

    def test_a_connection_idle_past_the_servers_timeout_is_not_reused(self):
        now = [100.0]
        t = _http.Transport(self.fake.address, clock=lambda: now[0])
        try:
            t.request("GET", "/v1/functions")
            now[0] += _http.IDLE_LIMIT_S - 0.5
            t.request("GET", "/v1/functions")
            self.assertEqual(self.connections(), 1)
            now[0] += _http.IDLE_LIMIT_S + 0.5
            t.request("GET", "/v1/functions")
            self.assertEqual(self.connections(), 2)
        finally:
            t.close()

    def test_a_get_whose_answer_was_lost_is_resent_once(self):
        kv = self.client.kv("ka")
        kv.put("k", "v")
        self.fake.state.lose_answers = 1
        self.assertEqual(kv.get("k"), b"v")
        self.assertEqual(self.fake.count("GET", "/v1/kv/ka/k"), 2)
        self.fake.state.lose_answers = 2  # lost again on the fresh connection: reported
        with self.assertRaises(flotilla.FlotillaError) as cm:
            kv.get("k")
        self.assertIn("cannot reach", str(cm.exception))
        self.assertEqual(self.fake.count("GET", "/v1/kv/ka/k"), 4)

    def test_a_post_whose_answer_was_lost_is_not_resent(self):
        q = self.client.queue("qa")
        q.send("one")
        self.fake.state.lose_answers = 1
        with self.assertRaises(flotilla.FlotillaError) as cm:
            q.send("two")
        self.assertIn("may or may not have been applied", str(cm.exception))
        self.assertEqual(self.fake.count("POST", "/v1/queues/qa/send"), 2)
        q.send("three")  # the next call opens a fresh connection
        self.assertEqual(self.fake.count("POST", "/v1/queues/qa/send"), 3)

    def test_a_submit_whose_answer_was_lost_is_resent_and_makes_one_workflow(self):
        plan = {"name": "p", "steps": [{"name": "a", "run": "true"}]}
        self.client.submit_plan(plan)  # the connection is now kept alive
        self.fake.state.lose_answers = 1
        f = self.client.submit_plan(plan)
        self.assertEqual(self.fake.count("POST", "/execution/submit"), 3)
        with self.fake.state.lock:
            self.assertEqual(len(self.fake.state.workflows), 2)  # not 3
            self.assertIn(f.id, self.fake.state.workflows)

    def test_a_put_whose_answer_was_lost_is_not_resent(self):
        # A conditional put that did apply would come back as a conflict if resent.
        kv = self.client.kv("ka")
        kv.put("k", "v1")
        self.fake.state.lose_answers = 1
        with self.assertRaises(flotilla.FlotillaError):
            kv.put("k", "v2", if_version=1)
        self.assertEqual(self.fake.count("PUT", "/v1/kv/ka/k"), 2)
        self.assertEqual(kv.get("k"), b"v2")

    def test_a_list_of_managers_moves_on_when_the_current_one_stops(self):
        # The leader's kept-alive connection dies with it; the next call finds the one that
        # now listens, as a standby taking over.
        with FakeManager() as second:
            c = flotilla.Client("%s,%s" % (self.fake.address, second.address))
            try:
                c.functions()
                self.fake.__exit__(None, None, None)  # stops listening
                self.fake.close_idle_connections()
                c.functions()
                self.assertEqual(second.count("GET", "/v1/functions"), 1)
                self.assertEqual(c._t.base_url, second.address)
            finally:
                c.close()

    def test_threads_share_the_client(self):
        errors = []

        def work(n):
            try:
                kv = self.client.kv("ka")
                for i in range(25):
                    kv.put("t%d" % n, "%d-%d" % (n, i))
                    got = kv.get("t%d" % n)
                    if got != ("%d-%d" % (n, i)).encode():
                        errors.append((n, i, got))
            except Exception as e:  # reported below, not lost in the thread
                errors.append((n, e))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertLessEqual(self.connections(), 8)

    def test_a_long_poll_does_not_hold_up_other_calls(self):
        kv = self.client.kv("ka")
        start = kv.list("w/").revision or 0
        got = []
        watcher = threading.Thread(target=lambda: got.append(kv.watch("w/", after=start,
                                                                      timeout=20)))
        watcher.start()
        deadline = time.monotonic() + 10
        while self.fake.count("GET", "/v1/kv/ka") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the watch is at the server
        began = time.monotonic()
        kv.put("w/x", "1")  # would wait 20 s behind the watch on a shared connection
        watcher.join(10)
        self.assertLess(time.monotonic() - began, 5)
        self.assertEqual([e.key for e in got[0]], ["w/x"])
        self.assertEqual(self.connections(), 2)


class DecoratorTest(WithFake):
    def test_annotations_from_stacked_decorators(self):
        add = self.mod.add
        self.assertIsInstance(add, flotilla.RemoteFunction)
        self.assertEqual(add.name, self.module_name + ".add")
        self.assertEqual(add.annotations, {
            "splitable": True, "geo_preference": ["eu-west", "us-east"],
            "resource_constraint": {"memory_bytes": 256 << 20, "timeout_ms": 30000,
                                    "cpu_millis": 500}})
        self.assertEqual(self.mod.shapes.annotations,
                         {"splitable": True, "resource_constraint": {"memory_bytes": 1024}})
        self.assertEqual(add.__name__, "add")
        self.assertEqual(add.local(2, 3), 5)

    def test_call_deploys_once_then_reuses(self):
        before = self.fake.deploys()
        self.assertEqual(self.mod.add(2, b=5), 7)
        self.assertEqual(self.mod.add(1), 2)
        self.assertEqual(self.fake.deploys() - before, 1)
        f = self.client.function(self.mod.add.name)
        self.assertTrue(f["annotations"]["splitable"])
        self.assertEqual(f["annotations"]["geo_preference"], ["eu-west", "us-east"])

    def test_results_keep_their_types(self):
        t, s, d = self.mod.shapes(3)
        self.assertEqual((t, s, d), ((0, 1, 2), {0, 1, 2}, {1: "one"}))

    def test_future(self):
        fut = self.mod.slow.remote(0.2)
        self.assertIsInstance(fut, flotilla.Future)
        self.assertTrue(fut.id)
        self.assertEqual(fut.result(timeout=30), 0.2)
        with self.assertRaises(TimeoutError):
            self.mod.slow.remote(3).result(timeout=0.3)

    def test_cancel(self):
        fut = self.mod.slow.remote(5)
        self.assertTrue(fut.cancel())
        with self.assertRaises(flotilla.FlotillaError):
            fut.result(timeout=5)

    def test_remote_exceptions_keep_their_type(self):
        with self.assertRaises(ValueError) as cm:
            self.mod.fails("value")
        self.assertEqual(str(cm.exception), "bad value")
        self.assertIsInstance(cm.exception.__cause__, flotilla.RemoteError)
        self.assertIn("raise ValueError", cm.exception.__cause__.traceback)
        with self.assertRaises(KeyError):
            self.mod.fails("key")
        with self.assertRaises(self.mod.Oops) as cm:
            self.mod.fails("custom")
        self.assertIs(type(cm.exception), self.mod.Oops)
        with self.assertRaises(flotilla.RemoteError) as cm:
            self.mod.fails("other")
        self.assertEqual(cm.exception.type, "Unpicklable")
        self.assertIn("cannot rebuild", str(cm.exception))

    def test_update_annotations_applies_to_next_call(self):
        add = self.mod.add
        add(1)
        self.client.update_annotations(add.name, splitable=False)
        fut = add.remote(1)
        fut.result(timeout=30)
        self.assertFalse(fut.workflow["annotations"]["splitable"])
        self.assertFalse(fut.workflow["split"])
        before = self.fake.deploys()
        add(1)  # same source: no redeploy, the update stays
        self.assertEqual(self.fake.deploys(), before)
        self.assertFalse(self.client.function(add.name)["annotations"]["splitable"])

    def test_redeploys_when_the_source_changes(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        name = "sdkchange_%d" % os.getpid()
        path = os.path.join(tmp, name + ".py")
        with open(path, "w") as f:
            f.write("import flotilla\n@flotilla.remote\ndef v():\n    return 1\n")
        sys.path.insert(0, tmp)
        self.addCleanup(sys.path.remove, tmp)
        mod = importlib.import_module(name)
        self.addCleanup(sys.modules.pop, name, None)
        self.assertEqual(mod.v(), 1)
        version = self.client.function(mod.v.name)["version"]
        with open(path, "w") as f:
            f.write("import flotilla\n@flotilla.remote\ndef v():\n    return 2  # new\n")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        self.assertEqual(mod.v(), 2)
        self.assertEqual(self.client.function(mod.v.name)["version"], version + 1)

    def test_decorator_misuse(self):
        with self.assertRaises(TypeError):
            flotilla.geo_preference(lambda: 1)
        with self.assertRaises(TypeError):
            flotilla.remote(42)
        with self.assertRaises(ValueError):
            flotilla.resource_constraint(memory="lots")


class StateTest(WithFake):
    def test_kv(self):
        kv = self.client.kv("ns/with slash")
        self.assertIsNone(kv.get("a"))
        v1 = kv.put("a", b"1")
        self.assertEqual(kv.get("a"), b"1")
        self.assertEqual(kv.entry("a").version, v1)
        with self.assertRaises(flotilla.ConflictError):
            kv.put("a", "2", if_version=0)
        v2 = kv.put("a", "2", if_version=v1)
        self.assertGreater(v2, v1)
        kv.put("b/1", "x")
        listing = kv.list("b/")
        self.assertEqual([(e.key, e.value) for e in listing], [("b/1", b"x")])
        self.assertIsInstance(listing.revision, int)
        self.assertTrue(kv.cas("a", b"2", b"3"))
        self.assertFalse(kv.cas("a", b"2", b"4"))
        self.assertTrue(kv.cas("new", None, b"n"))
        self.assertFalse(kv.cas("new", None, b"n"))
        self.assertTrue(kv.delete("a"))
        self.assertFalse(kv.delete("a"))
        with self.assertRaises(TypeError):
            kv.put("c", 3)

    def test_ttl_and_watch(self):
        kv = self.client.kv("watch")
        rev = kv.list().revision
        kv.put("w/1", "a", ttl=0.2)
        events = kv.watch("w/", after=rev, timeout=2)
        self.assertEqual([(e.type, e.key, e.value) for e in events], [("put", "w/1", b"a")])
        time.sleep(0.3)
        self.assertIsNone(kv.get("w/1"))
        later = kv.watch("w/", after=events.revision, timeout=2)
        self.assertEqual([e.type for e in later], ["expire"])
        self.assertEqual(list(kv.watch("w/", timeout=0.1)), [])

    def test_queue(self):
        q = self.client.queue("jobs")
        ids = [q.send("one"), q.send(b"two")]
        got = q.receive("g", "c1", max=5, block_ms=100)
        self.assertEqual([m.message for m in got], [b"one", b"two"])
        self.assertEqual([m.id for m in got], ids)
        q.ack("g", got[0].id)
        again = q.receive("g", "c1", max=5)
        self.assertEqual([(m.message, m.deliveries) for m in again], [(b"two", 2)])
        q.ack("g", again[0].id)
        self.assertEqual(q.receive("g", "c1", block_ms=50), [])


if __name__ == "__main__":
    unittest.main()
