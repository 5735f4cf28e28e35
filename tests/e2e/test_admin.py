"""The admin listener of a real gateway: /healthz, /readyz and /metrics over plain HTTP on loopback.
/metrics is checked with `promtool check metrics` and parsed with the Prometheus client library, and
its counters are seen to move with a real `openssl cmp` enrolment; /readyz turns 503 while the audit
log cannot be written and 200 again once it can; the admin listener serves no CMP and the CMP
listener no admin path."""
import json
import os
import shutil
import signal
import subprocess
import time
import unittest
import urllib.error
import urllib.request

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402


def get(gw, path, method="GET", data=None):
    """(status, headers, body) of one request to the admin listener."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (gw.admin_port, path), method=method, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as rsp:
            return rsp.status, rsp.headers, rsp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def samples(text):
    """{(name, frozenset(labels)): value} of every sample in a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(scrape, name, **labels):
    """The sum of |name|'s samples whose labels include |labels|."""
    want = set(labels.items())
    return sum(v for (n, ls), v in scrape.items() if n == name and want <= set(ls))


class Admin(harness.GatewayTestCase):

    def scrape(self):
        status, headers, body = get(self.gw, "/metrics")
        self.assertEqual(status, 200, body)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers["Content-Type"])
        return body.decode()

    def test_healthz(self):
        status, headers, body = get(self.gw, "/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))
        self.assertEqual(headers["Cache-Control"], "no-store")

    def test_metrics_valid_and_moving(self):
        before = self.scrape()
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian prometheus) is installed by deploy/deps.sh")
        check = subprocess.run([promtool, "check", "metrics"], input=before.encode(), capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout.decode() + check.stderr.decode())
        s0 = samples(before)
        build = [ls for (n, ls) in s0 if n == "cmpgw_build_info"]
        self.assertEqual(len(build), 1, build)
        self.assertIn("openssl", dict(build[0]))
        res = self.gw.cmp("ir", "metrics", newkey=self.newkey("metrics"), subject="/CN=metrics-1",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)
        s1 = samples(self.scrape())
        self.assertEqual(total(s1, "cmpgw_requests_total", route="default", body="ir", status="200",
                               outcome="accepted") -
                         total(s0, "cmpgw_requests_total", route="default", body="ir", status="200",
                               outcome="accepted"), 1)
        self.assertEqual(total(s1, "cmpgw_upstream_sign_calls_total", result="issued") -
                         total(s0, "cmpgw_upstream_sign_calls_total", result="issued"), 1)
        self.assertEqual(total(s1, "cmpgw_certificates_total", event="issued") -
                         total(s0, "cmpgw_certificates_total", event="issued"), 1)
        self.assertGreater(total(s1, "cmpgw_request_duration_seconds_count"),
                           total(s0, "cmpgw_request_duration_seconds_count"))
        # a refusal before CMP counts too, with its HTTP status and nothing the client sent as a label
        junk = self.gw.dir / "junk.der"
        junk.write_bytes(b"x")
        r = self.gw.curl(path="/pki/nowhere/cmp", data=junk)
        self.assertEqual(r.status, 404)
        s2 = samples(self.scrape())
        self.assertEqual(total(s2, "cmpgw_requests_total", status="404", outcome="refused") -
                         total(s1, "cmpgw_requests_total", status="404", outcome="refused"), 1)
        self.assertFalse(any("nowhere" in v for (_, ls) in s2 for (_, v) in ls))

    def test_only_admin_paths(self):
        self.assertEqual(get(self.gw, "/pki/cmp", method="POST", data=b"x")[0], 404)
        status, headers, _ = get(self.gw, "/metrics", method="POST", data=b"x")
        self.assertEqual((status, headers["Allow"]), (405, "GET"))
        # the CMP listener serves no admin path
        self.assertEqual(self.gw.curl(path="/metrics", method="GET").status, 404)

    def test_zz_readyz_follows_the_audit_log(self):
        # last (zz): it breaks the audit log for a while
        status, _, body = get(self.gw, "/readyz")
        self.assertEqual(status, 200, body)
        detail = json.loads(body)
        self.assertTrue(detail["ready"])
        self.assertEqual(detail["checks"]["audit"], "ok")
        d = self.gw.dir
        os.rename(d / "audit.log", d / "audit.log.kept")
        os.symlink("/dev/full", d / "audit.log")  # every write fails with ENOSPC
        self.gw.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        res = self.gw.cmp("ir", "noaudit", newkey=self.newkey("noaudit"), subject="/CN=no-audit",
                          expect_cert=False)
        self.assertIsNone(res.cert)
        status, _, body = get(self.gw, "/readyz")
        self.assertEqual(status, 503, body)
        detail = json.loads(body)
        self.assertFalse(detail["ready"])
        self.assertIn("No space left on device", detail["checks"]["audit"])
        os.unlink(d / "audit.log")
        os.rename(d / "audit.log.kept", d / "audit.log")
        self.gw.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while get(self.gw, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(get(self.gw, "/readyz")[0], 200)


if __name__ == "__main__":
    unittest.main()
