"""The SDK against a REAL local federation: set FLOTILLA_BIN to the flotilla binary.

    FLOTILLA_BIN=build/src/flotilla python3 -m unittest discover -s tests/python -p 'e2e_test.py'

It starts `$FLOTILLA_BIN up` with a private state directory
(XDG_DATA_HOME=<tmpdir>), reads the manager's REST address from the
federation record there, runs decorated corpus functions and compares them
with local calls, and stops the federation with `$FLOTILLA_BIN down`.
FLOTILLA_E2E_AGENTS (default 2) and FLOTILLA_E2E_ISOLATION (linux|process;
default: the binary's default) tune `up`. Without FLOTILLA_BIN it skips.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from _support import CORPUS
import flotilla

BIN = os.environ.get("FLOTILLA_BIN")
SKIP_REASON = ("SKIPPED: the end-to-end SDK test needs a real federation; set FLOTILLA_BIN to the "
               "flotilla binary (e.g. FLOTILLA_BIN=build/src/flotilla)")


def _load(name, tag):
    spec = importlib.util.spec_from_file_location(tag, os.path.join(CORPUS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[tag] = module  # pickle finds the module's classes by name
    spec.loader.exec_module(module)
    return module


@unittest.skipUnless(BIN, SKIP_REASON)
class EndToEndTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="flotilla-e2e-")
        cls.env = dict(os.environ, XDG_DATA_HOME=cls.tmp)
        cls.env.pop("FLOTILLA_HTTP", None)
        cmd = [BIN, "up", "--agents", os.environ.get("FLOTILLA_E2E_AGENTS", "2")]
        if os.environ.get("FLOTILLA_E2E_ISOLATION"):
            cmd += ["--isolation", os.environ["FLOTILLA_E2E_ISOLATION"]]
        up = subprocess.run(cmd, env=cls.env, capture_output=True, text=True, timeout=180)
        if up.returncode != 0:
            cls._down()
            raise RuntimeError("`%s` failed (rc %d):\n%s%s" % (" ".join(cmd), up.returncode,
                                                                 up.stdout, up.stderr))
        with open(os.path.join(cls.tmp, "flotilla", "federation.json")) as f:
            record = json.load(f)
        cls.address = record["manager_http"]
        with open(record["token_file"]) as f:
            cls.token = f.read().strip()
        cls.ca = record["ca"]
        cls.client = flotilla.Client(cls.address, timeout=60, token=cls.token, ca=cls.ca)
        tag = "e2e%d" % os.getpid()
        cls.fanout = _load("fanout", tag + "_fanout")
        cls.exceptions = _load("exceptions", tag + "_exceptions")
        cls.results = _load("results", tag + "_results")
        for mod in (cls.fanout, cls.exceptions, cls.results):
            for value in vars(mod).values():
                if isinstance(value, flotilla.RemoteFunction):
                    value.client = cls.client

    @classmethod
    def _down(cls):
        try:
            subprocess.run([BIN, "down"], env=cls.env, capture_output=True, timeout=60)
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        for tag in list(sys.modules):
            if tag.startswith("e2e%d_" % os.getpid()):
                del sys.modules[tag]
        cls._down()

    def test_address_comes_from_the_federation_record(self):
        old = os.environ.get("XDG_DATA_HOME"), os.environ.pop("FLOTILLA_HTTP", None)
        os.environ["XDG_DATA_HOME"] = self.tmp
        try:
            # `up` is secure by default: the HTTP port speaks HTTPS, and the SDK finds the CA in
            # the record as it finds the token.
            client = flotilla.Client()
            self.assertEqual(client.address, "https://" + self.address)
            self.assertEqual(client.functions(), self.client.functions())
        finally:
            if old[0] is None:
                os.environ.pop("XDG_DATA_HOME")
            else:
                os.environ["XDG_DATA_HOME"] = old[0]
            if old[1] is not None:
                os.environ["FLOTILLA_HTTP"] = old[1]

    def test_the_https_port_is_checked_against_the_federations_ca(self):
        other = tempfile.mkdtemp(prefix="flotilla-e2e-otherca-")
        self.addCleanup(shutil.rmtree, other, True)
        subprocess.run([BIN, "ca", "init", "--dir", other], check=True, capture_output=True,
                       timeout=30)
        stranger = flotilla.Client(self.address, timeout=10, token=self.token,
                                   ca=os.path.join(other, "ca.crt"))
        with self.assertRaises(flotilla.FlotillaError) as cm:
            stranger.functions()
        self.assertIn("TLS", str(cm.exception))
        # Plain HTTP to the HTTPS port: refused cleanly, an error and no hang.
        plain = flotilla.Client("http://" + self.address, timeout=10, token=self.token)
        with self.assertRaises(flotilla.FlotillaError):
            plain.functions()
        self.assertIsInstance(self.client.functions(), list)

    def test_decorated_functions_match_local_calls(self):
        # Before any call the planner has only the static costs: a fan-out
        # splits. (After calls it learns that these items are tiny, and may
        # rightly run the next call whole.)
        self.fanout.fan_loop.deploy()
        plan = self.client.analyze(self.fanout.fan_loop.name)
        self.assertTrue(plan["splittable"], plan.get("reason"))
        for mod, name, args in [(self.fanout, "fan_loop", [[1, 2, 3, 4, 5, 6], 3]),
                                (self.fanout, "fan_comprehension", [[1, 4, 9, 2]]),
                                (self.fanout, "fan_pairs", [{"a": 1, "b": 2}, 10]),
                                (self.results, "shapes", [4]),
                                (self.results, "objects", [2])]:
            with self.subTest(function=name):
                fn = getattr(mod, name)
                self.assertEqual(fn(*args), fn.local(*args))

    def test_annotation_update_takes_effect_on_the_next_call(self):
        fn = self.fanout.fan_nested
        rows = [[1, 2], [3], [4, 5, 6]]
        self.assertEqual(fn(rows), fn.local(rows))
        self.client.update_annotations(fn.name, splitable=False, geo_preference=["nowhere-1"],
                                       resource_constraint={"memory": "128Mi"})
        f = self.client.function(fn.name)
        self.assertFalse(f["annotations"]["splitable"])
        self.assertEqual(f["annotations"]["resource_constraint"]["memory_bytes"], 128 << 20)
        fut = fn.remote(rows)
        self.assertEqual(fut.result(timeout=120), fn.local(rows))
        self.assertFalse(fut.workflow["split"], fut.workflow)
        self.client.update_annotations(fn.name, splitable=True, geo_preference=[])
        fut = fn.remote(rows)
        self.assertEqual(fut.result(timeout=120), fn.local(rows))
        self.assertTrue(self.client.function(fn.name)["annotations"]["splitable"])

    def test_exception_in_a_branch_keeps_its_type(self):
        with self.assertRaises(self.exceptions.BadItem) as cm:
            self.exceptions.item_raises([1, 2, 3, 4])
        self.assertEqual(str(cm.exception), "item 3 is bad")
        with self.assertRaises(ZeroDivisionError):
            self.exceptions.branch_raises([1, 2, 3])
        with self.assertRaises(KeyError):
            self.exceptions.key_missing({"a": 1}, "b")

    def test_kv_and_queue(self):
        kv = self.client.kv("e2e-%d" % os.getpid())
        v = kv.put("k", b"v")
        self.assertEqual(kv.get("k"), b"v")
        self.assertTrue(kv.cas("k", b"v", b"w"))
        self.assertEqual(kv.entry("k").version > v, True)
        q = self.client.queue("e2e-%d" % os.getpid())
        q.send("hello")
        got = q.receive("g", "c", max=1, block_ms=2000)
        self.assertEqual([m.message for m in got], [b"hello"])
        q.ack("g", got[0].id)

    def test_a_watcher_of_an_idle_namespace_hears_an_expiry(self):
        # Nothing touches the namespace after the put: the watch itself must
        # wake for the entry's expiry (MemoryKv::WaitForChange), not sleep
        # through it to its timeout.
        kv = self.client.kv("e2e-ttl-%d" % os.getpid())
        kv.put("lease", "held", ttl=0.5)
        start = kv.list("").revision
        t0 = time.monotonic()
        got = kv.watch("", after=start, timeout=8.0)
        waited = time.monotonic() - t0
        self.assertEqual([(e.type, e.key) for e in got], [("expire", "lease")])
        self.assertLess(waited, 4.0)  # a 0.5 s TTL, with room for load
        self.assertIsNone(kv.get("lease"))

    def test_connections_are_reused_across_the_managers_closes(self):
        # The manager closes a kept-alive connection after 100 answers and after 2 s idle
        # (http_server.cc). Threads share one client; then, with the client's own idle limit lifted, a
        # POST after the server's idle close must still reach it. One without a body: a
        # request written in one piece on a closed connection fails only when its answer is
        # awaited, and then is not resent, so only noticing the close beforehand gets it out.
        import threading
        from flotilla import _http
        client = flotilla.Client(self.address, timeout=60, token=self.token, ca=self.ca)
        kv = client.kv("e2e-ka-%d" % os.getpid())
        errors = []

        def work(n):
            try:
                for i in range(12):
                    kv.put("t%d" % n, str(i))
                    if kv.get("t%d" % n) != str(i).encode():
                        errors.append((n, i))
            except Exception as e:  # reported below, not lost in the thread
                errors.append((n, e))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        q = client.queue("e2e-ka-%d" % os.getpid())
        q.send("one")
        limit, _http.IDLE_LIMIT_S = _http.IDLE_LIMIT_S, 60.0
        try:
            time.sleep(3.5)  # past the server's keep-alive timeout: it closes, we must notice
            with self.assertRaises(flotilla.NotFoundError):
                client.cancel("wf-e2e-none")  # reached the manager: it answered 404
            q.send("two")
        finally:
            _http.IDLE_LIMIT_S = limit
            client.close()
        got = q.receive("g", "c", max=10, block_ms=2000)
        self.assertEqual([m.message for m in got], [b"one", b"two"])


class SkipNoticeTest(unittest.TestCase):
    def test_says_why_it_skipped(self):
        if BIN:
            self.assertTrue(os.access(BIN, os.X_OK), "FLOTILLA_BIN=%s is not executable" % BIN)
            return
        sys.stderr.write("\n*** %s ***\n" % SKIP_REASON)
        self.skipTest(SKIP_REASON)


if __name__ == "__main__":
    unittest.main()
