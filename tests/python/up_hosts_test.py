"""`flotilla up --hosts N` end to end: set FLOTILLA_BIN to the flotilla binary; needs root.

    FLOTILLA_BIN=build/src/flotilla python3 -m unittest discover -s tests/python -p 'up_hosts_test.py'

Starts a federation whose manager and agents each run in a network namespace
of their own, checks that they are reached at their hosts' addresses (the
CLI from the root namespace, over the bridge), runs a task, and checks that
`flotilla down` removes the namespaces and the bridge. Without FLOTILLA_BIN,
or without root, it skips.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("FLOTILLA_BIN")


def _names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    out += subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                          timeout=10).stdout
    return out


@unittest.skipUnless(BIN, "SKIPPED: set FLOTILLA_BIN to the flotilla binary")
@unittest.skipUnless(os.geteuid() == 0, "SKIPPED: `up --hosts` makes network namespaces: needs root")
class UpHostsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="flotilla-hosts-")
        self.env = dict(os.environ, XDG_DATA_HOME=self.tmp)
        self.env.pop("FLOTILLA_MANAGER", None)
        self.lab = None

    def tearDown(self):
        try:
            subprocess.run([BIN, "down", "--purge"], env=self.env, capture_output=True, timeout=60)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self.lab:
            self.assertNotIn(self.lab, _names())

    def flotilla(self, *args, timeout=60):
        return subprocess.run([BIN, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def test_up_hosts_runs_each_process_in_its_own_namespace(self):
        up = self.flotilla("up", "--hosts", "2", "--isolation", "process", timeout=120)
        self.assertEqual(up.returncode, 0, up.stdout + up.stderr)
        with open(os.path.join(self.tmp, "flotilla", "federation.json")) as f:
            record = json.load(f)
        self.lab = record["lab"]
        self.assertTrue(self.lab.startswith("flu"), record)
        manager_host = record["manager_host"]
        self.assertTrue(record["manager_grpc"].startswith(manager_host + ":"), record)
        self.assertEqual(len(record["agent_hosts"]), 2)
        self.assertEqual(len({manager_host, *record["agent_hosts"]}), 3, record)
        names = _names()
        for k in (1, 2, 3):
            self.assertIn("%sh%d" % (self.lab, k), names)
        self.assertIn(self.lab + "br", names)

        nodes = self.flotilla("--json", "nodes")
        self.assertEqual(nodes.returncode, 0, nodes.stderr)
        addresses = {n["id"]: n["address"] for n in json.loads(nodes.stdout)["nodes"]}
        for i, host in enumerate(record["agent_hosts"]):
            self.assertTrue(addresses["agent-%d" % (i + 1)].startswith(host + ":"), addresses)

        run = self.flotilla("run", "--", "sh", "-c", "echo hi from $FLOTILLA_NODE_ID")
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("hi from agent-", run.stdout)

        down = self.flotilla("down")
        self.assertEqual(down.returncode, 0, down.stderr)
        names = _names()
        self.assertNotIn(self.lab + "h1", names)
        self.assertNotIn(self.lab + "br", names)


if __name__ == "__main__":
    unittest.main()
