"""The web dashboard in a real browser: headless Chromium, driven by Selenium,
against a REAL local federation (`flotilla up`).

    FLOTILLA_BIN=build/src/flotilla /usr/bin/python3 -m unittest discover -s tests/browser -p '*_test.py'

It starts `$FLOTILLA_BIN up --agents 2` with a private state directory
(XDG_DATA_HOME=<tmpdir>), as tests/python/e2e_test.py does, runs a few
executions and a small hand-written workflow, then walks the dashboard as a
user would: the token prompt, the Federation page, the Executions list, one
execution's placement table, and a workflow's DAG. Screenshots go to
$FLOTILLA_SCREENSHOT_DIR (ctest sets it to <build>/dashboard-screenshots).

Chromium is started with --ignore-certificate-errors: the manager's
certificate comes from the CA this test's own federation just made, which
the browser has no way to trust otherwise; the browser talks to nothing but
that 127.0.0.1 manager. Skips, saying why, without FLOTILLA_BIN, chromium,
chromedriver or python3-selenium (scripts/install-deps installs them).
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.request

BIN = os.environ.get("FLOTILLA_BIN")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = True
except ImportError:
    SELENIUM = False


def _skip_reason():
    if not BIN:
        return ("SKIPPED: the dashboard browser test needs a real federation; set FLOTILLA_BIN "
                "to the flotilla binary (e.g. FLOTILLA_BIN=build/src/flotilla)")
    missing = [name for name, ok in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                     ("python3-selenium", SELENIUM)) if not ok]
    if missing:
        return ("SKIPPED: the dashboard browser test needs %s (Debian packages chromium "
                "chromium-driver python3-selenium; run scripts/install-deps)" % ", ".join(missing))
    return None


SKIP_REASON = _skip_reason()
WAIT_S = 30  # the bound of every wait for the page

WORKFLOW = """
name: dashboard-diamond
steps:
  - name: fetch
    run: "printf 'a b a\\n'"
  - name: count
    run: "wc -w"
    inputs: [fetch]
  - name: lines
    run: "wc -l"
    inputs: [fetch]
  - name: report
    run: "cat"
    inputs: [count, lines]
"""


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@unittest.skipIf(SKIP_REASON, SKIP_REASON or "")
class DashboardBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pids = []  # every process this test started, stopped by pid at the end
        cls.driver = None
        cls.service = None
        cls.tmp = tempfile.mkdtemp(prefix="flotilla-dash-")
        cls.shots = os.environ.get("FLOTILLA_SCREENSHOT_DIR") or os.path.join(cls.tmp, "shots")
        os.makedirs(cls.shots, exist_ok=True)
        cls.env = dict(os.environ, XDG_DATA_HOME=cls.tmp)
        for var in ("FLOTILLA_HTTP", "FLOTILLA_MANAGER", "FLOTILLA_TOKEN", "FLOTILLA_CA"):
            cls.env.pop(var, None)
        try:
            cls._start_federation()
            cls._make_work()
            cls._start_browser()
        except BaseException:
            cls._stop_everything()
            raise

    @classmethod
    def _start_federation(cls):
        cmd = [BIN, "up", "--agents", "2"]
        up = subprocess.run(cmd, env=cls.env, capture_output=True, text=True, timeout=180)
        record_path = os.path.join(cls.tmp, "flotilla", "federation.json")
        if os.path.exists(record_path):
            with open(record_path) as f:
                record = json.load(f)
            cls.pids += [record.get("manager_pid", 0)] + record.get("agent_pids", [])
        if up.returncode != 0:
            raise RuntimeError("`%s` failed (rc %d):\n%s%s" % (" ".join(cmd), up.returncode,
                                                                 up.stdout, up.stderr))
        assert "/dashboard/" in up.stdout, "`flotilla up` prints the dashboard's address:\n" + up.stdout
        cls.address = record["manager_http"]
        with open(record["token_file"]) as f:
            cls.token = f.read().strip()
        cls.tls = ssl.create_default_context(cafile=record["ca"])

    @classmethod
    def _rest(cls, method, path, body=None):
        req = urllib.request.Request("https://%s%s" % (cls.address, path), method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + cls.token,
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=cls.tls, timeout=30) as res:
            return json.load(res)

    @classmethod
    def _make_work(cls):
        for i in range(3):
            subprocess.run([BIN, "run", "--name", "dash-%d" % i, "--", "sh", "-c",
                            "echo dashboard run %d" % i],
                           env=cls.env, check=True, capture_output=True, timeout=120)
        wf = cls._rest("POST", "/execution/submit", {"plan": WORKFLOW, "wait_ms": 60000})
        cls.workflow = wf["workflow"]
        cls.executions = cls._rest("GET", "/v1/executions?limit=50")["executions"]

    @classmethod
    def _start_browser(cls):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--ignore-certificate-errors", "--window-size=1200,800",
                    "--no-first-run", "--disable-extensions"):
            opts.add_argument(arg)
        cls.service = Service(CHROMEDRIVER, log_output=os.path.join(cls.tmp, "chromedriver.log"))
        cls.driver = webdriver.Chrome(service=cls.service, options=opts)
        if cls.service.process is not None:
            cls.pids.append(cls.service.process.pid)
        cls.driver.set_page_load_timeout(WAIT_S)
        cls.driver.set_script_timeout(WAIT_S)

    @classmethod
    def _stop_everything(cls):
        try:
            if cls.driver is not None:
                cls.driver.quit()
        except Exception:  # the browser may already be gone; its pid is killed below
            pass
        try:
            if os.path.exists(os.path.join(cls.tmp, "flotilla", "federation.json")):
                subprocess.run([BIN, "down"], env=cls.env, capture_output=True, timeout=60)
        finally:
            for pid in cls.pids:
                if pid and _alive(pid):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        cls._stop_everything()

    # --- helpers -----------------------------------------------------------

    def wait(self, condition, what):
        try:
            return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.2).until(
                condition, message="waited %d s for %s" % (WAIT_S, what))
        except Exception:
            # What the page showed and what its console said, for the failure's reader.
            self.shot("failed")
            for entry in self.driver.get_log("browser"):
                print("browser console:", entry.get("message"))
            print("page text:", self.driver.find_element(By.TAG_NAME, "body").text[:2000])
            raise

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(self.shots, name + ".png"))

    def open(self, fragment):
        self.driver.get("https://%s/dashboard/%s" % (self.address, fragment))

    def sign_in(self):
        self.open("#/federation")
        box = self.wait(EC.visibility_of_element_located((By.ID, "token")), "the token prompt")
        box.clear()
        box.send_keys(self.token)
        self.driver.find_element(By.ID, "sign-in").click()
        self.wait(EC.invisibility_of_element_located((By.ID, "login")), "the prompt to close")

    # --- the walk ------------------------------------------------------------

    def test_1_a_wrong_token_is_refused_at_the_prompt(self):
        self.open("#/federation")
        box = self.wait(EC.visibility_of_element_located((By.ID, "token")), "the token prompt")
        self.shot("00-sign-in")
        box.send_keys("not-a-token")
        self.driver.find_element(By.ID, "sign-in").click()
        err = self.wait(lambda d: d.find_element(By.ID, "login-error").text or False,
                        "the prompt to say why")
        self.assertTrue(err)
        self.assertTrue(self.driver.find_element(By.ID, "login").is_displayed())
        self.assertIsNone(self.driver.execute_script(
            "return sessionStorage.getItem('flotilla.token')"))

    def test_2_federation_executions_placement_and_dag(self):
        self.sign_in()
        # The token is kept for this tab only.
        self.assertEqual(self.driver.execute_script(
            "return sessionStorage.getItem('flotilla.token')"), self.token)

        # Federation: both nodes, each in its region's column, with capacity bars.
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#regions .node")) == 2 or False,
                  "two nodes on the Federation page")
        nodes = self._rest("GET", "/v1/nodes")["nodes"]
        for n in nodes:
            card = self.driver.find_element(By.CSS_SELECTOR, '.node[data-node="%s"]' % n["id"])
            self.assertIn("online", card.text)
            self.assertIn("trust %d" % n["trust"], card.text)
            self.assertEqual(len(card.find_elements(By.CSS_SELECTOR, "svg .bar-used")), 2)
        regions = {n["region"] for n in nodes}
        self.assertEqual(len(self.driver.find_elements(By.CSS_SELECTOR, "#regions .region")),
                         len(regions))
        # The region map: one island per region, one dot per node.
        self.assertEqual(len(self.driver.find_elements(By.CSS_SELECTOR, "#region-map g.island")),
                         len(regions))
        self.assertEqual(len(self.driver.find_elements(By.CSS_SELECTOR, "#region-map circle.online")),
                         len(nodes))
        self.shot("01-federation")

        # Executions: every one the REST API lists, newest first.
        self.open("#/executions")
        ids = [e["id"] for e in self.executions]
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executions tr[data-id]"))
                  >= len(ids) or False, "the executions list")
        shown = [r.get_attribute("data-id")
                 for r in self.driver.find_elements(By.CSS_SELECTOR, "#executions tr[data-id]")]
        for i in ids:
            self.assertIn(i, shown)
        # The state filter narrows the list.
        self.driver.find_element(By.CSS_SELECTOR, "#state-filter option[value=running]").click()
        self.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, "#executions tr[data-id]"),
                  "the running filter to empty the list")
        self.driver.find_element(By.CSS_SELECTOR, "#state-filter option[value='']").click()
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executions tr[data-id]"))
                  >= len(ids) or False, "the list again")
        # The list is live: a new execution appears without a reload.
        live = subprocess.run([BIN, "run", "--detach", "--name", "dash-live", "--", "true"],
                              env=self.env, check=True, capture_output=True, text=True,
                              timeout=60).stdout.strip()
        self.assertTrue(live)
        self.wait(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#executions tr[data-id="%s"]' % live)), "the new execution to appear")
        self.shot("02-executions")

        # One execution: its placement table, every candidate with its score parts.
        run = next(e for e in self.executions if e["name"] == "dash-0")
        link = self.driver.find_element(
            By.CSS_SELECTOR, '#executions tr[data-id="%s"] a' % run["id"])
        link.click()
        self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#placement tr.chosen")),
                  "the placement table")
        detail = self._rest("GET", "/v1/executions/" + run["id"])["execution"]
        rows = self.driver.find_elements(By.CSS_SELECTOR, "#placement tbody tr")
        self.assertEqual(len(rows), len(detail["placement"]["candidates"]))
        chosen = self.driver.find_element(By.CSS_SELECTOR, "#placement tr.chosen")
        self.assertEqual(chosen.get_attribute("data-node"), detail["node"])
        self.wait(lambda d: "dashboard run 0" in d.find_element(By.ID, "stdout").text or False,
                  "the output")
        self.shot("03-execution")

        # Workflows: the list, then the DAG with one box per piece.
        self.open("#/workflows")
        wf_id = self.workflow["id"]
        self.wait(EC.presence_of_element_located(
            (By.CSS_SELECTOR, '#workflows tr[data-id="%s"] a' % wf_id)), "the workflow list")
        self.driver.find_element(By.CSS_SELECTOR, '#workflows tr[data-id="%s"] a' % wf_id).click()
        wf = self._rest("GET", "/v1/workflows/" + wf_id)["workflow"]
        self.assertEqual(sorted((e["from"], e["to"]) for e in wf["edges"]),
                         [("count", "report"), ("fetch", "count"), ("fetch", "lines"),
                          ("lines", "report")])
        self.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#dag g.piece"))
                  == len(wf["pieces"]) or False, "the DAG")
        drawn = {g.get_attribute("data-piece")
                 for g in self.driver.find_elements(By.CSS_SELECTOR, "#dag g.piece")}
        self.assertEqual(drawn, {p["id"] for p in wf["pieces"]})
        self.assertEqual(len(self.driver.find_elements(By.CSS_SELECTOR, "#dag path.edge")),
                         len(wf["edges"]))
        for p in wf["pieces"]:
            g = self.driver.find_element(By.CSS_SELECTOR, '#dag g.piece[data-piece="%s"]' % p["id"])
            self.assertIn(p["state"], g.get_attribute("class"))
        self.shot("04-workflow")

        # Functions: the page loads (no functions deployed in this federation).
        self.open("#/functions")
        self.wait(EC.presence_of_element_located((By.CSS_SELECTOR, "#functions tbody tr")),
                  "the functions table")

        # Nothing the page did broke its Content-Security-Policy.
        logs = self.driver.get_log("browser") if hasattr(self.driver, "get_log") else []
        csp = [l for l in logs if "Content Security Policy" in l.get("message", "")]
        self.assertEqual(csp, [])


if __name__ == "__main__":
    unittest.main()
