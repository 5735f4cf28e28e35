"""The admin listener of a real gateway: /healthz, /readyz and /metrics over plain HTTP on loopback.
/metrics is checked with `promtool check metrics` and parsed with the Prometheus client library, and
its counters are seen to move with a real `openssl cmp` enrolment; /readyz turns 503 while the audit
log cannot be written and 200 again once it can; the admin listener serves no CMP and the CMP
listener no admin path."""
import http.server
import json
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402
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

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["log_sample_success"] = 1000  # 1 line in 1000 successes; every refusal is logged

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

    def test_process_metrics(self):
        """The process's own families, as Prometheus' client libraries name them: the descriptors and memory
        an operator watches for a leak, which /proc/<pid> no longer shows to the gateway's own user."""
        text = self.scrape()
        s = {n: float(v) for (n, v) in (l.split(" ") for l in text.splitlines() if l.startswith("process_"))}
        self.assertEqual(sorted(s), ["process_cpu_seconds_total", "process_max_fds", "process_open_fds",
                                     "process_resident_memory_bytes", "process_start_time_seconds",
                                     "process_virtual_memory_bytes"])
        # root reads the gateway's /proc/<pid>/fd still, as harness.socket_inodes does: a run that cannot
        # fails here rather than take the gauge on trust
        fds = len(os.listdir("/proc/%d/fd" % self.gw.proc.pid))
        # the listeners, the log, the audit file, the event loops' own: a handful at the least
        self.assertGreater(s["process_open_fds"], 5)
        # the scrape's connection comes and goes
        self.assertLessEqual(abs(s["process_open_fds"] - fds), 2, (s, fds))
        self.assertGreater(s["process_resident_memory_bytes"], 1 << 20)
        self.assertGreater(s["process_cpu_seconds_total"], 0)
        self.assertTrue(time.time() - 3600 < s["process_start_time_seconds"] <= time.time(), s)

    def test_log_sampling(self):
        for i in range(3):
            self.gw.cmp("ir", "sampled%d" % i, newkey=self.newkey("sampled%d" % i), subject="/CN=sampled-%d" % i,
                        extra=("-implicit_confirm",))
        junk = self.gw.dir / "junk2.der"
        junk.write_bytes(b"y")
        self.assertEqual(self.gw.curl(path="/pki/elsewhere/cmp", data=junk).status, 404)
        lines = [r for r in self.gw.log_lines() if r.get("event") == "request"]
        self.assertEqual(len([r for r in lines if r.get("status") == "200"]), 1, lines)
        self.assertTrue(any(r.get("status") == "404" and "elsewhere" in r.get("path", "") for r in lines), lines)

    def test_tls_handshake_metrics(self):
        s0 = samples(self.scrape())
        _, fclient, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        # a client certificate from a CA the listener does not trust: the handshake fails, counted by the alert
        # OpenSSL chose, which never reaches the client (the listener closes the connection)
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.gw.port, "-cert", fclient,
                            "-key", fkey, "-CAfile", self.gw.dir / "ca.pem", "-tls1_2", "-brief"],
                           input=b"", capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        self.gw.cmp("ir", "tlsok", newkey=self.newkey("tlsok"), subject="/CN=tls-ok", extra=("-implicit_confirm",))
        deadline = time.monotonic() + 5
        while True:
            s1 = samples(self.scrape())
            failed = total(s1, "cmpgw_tls_handshakes_total", listener="cmp", result="failed") - \
                total(s0, "cmpgw_tls_handshakes_total", listener="cmp", result="failed")
            if failed >= 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(failed, 1, s1)
        reasons = {dict(ls).get("reason") for (n, ls) in s1 if n == "cmpgw_tls_handshakes_total"
                   and dict(ls).get("result") == "failed"}
        self.assertIn("unknown CA", reasons)
        # what the reason is, said as it is: no alert reaches the client, over TLS 1.2 or 1.3
        help_line = [ln for ln in self.scrape().splitlines() if ln.startswith("# HELP cmpgw_tls_handshakes_total ")]
        self.assertEqual(len(help_line), 1, help_line)
        self.assertIn("alert OpenSSL chose", help_line[0])
        self.assertIn("the client does not read", help_line[0])
        self.assertNotIn("the gateway sent", help_line[0])
        self.assertGreater(total(s1, "cmpgw_tls_handshakes_total", listener="cmp", result="ok"),
                           total(s0, "cmpgw_tls_handshakes_total", listener="cmp", result="ok"))

    def test_only_admin_paths(self):
        status, _, body = get(self.gw, "/pki/cmp", method="POST", data=b"x")
        # docs/errors.md admin_not_found
        self.assertEqual((status, body), (404, b"not found: the admin listener serves /healthz, /readyz, /metrics and "
                                               b"POST /reload\n"))
        # docs/errors.md admin_method: the method the path takes, in the line and in Allow
        for path, method, allowed in (("/metrics", "POST", "GET"), ("/healthz", "PUT", "GET"),
                                      ("/readyz", "DELETE", "GET"), ("/reload", "GET", "POST")):
            with self.subTest(path=path, method=method):
                status, headers, body = get(self.gw, path, method=method,
                                            data=b"x" if method in ("POST", "PUT") else None)
                self.assertEqual((status, headers["Allow"], body),
                                 (405, allowed, b"method not allowed: use %s\n" % allowed.encode()))
        # the CMP listener serves no admin path
        self.assertEqual(self.gw.curl(path="/metrics", method="GET").status, 404)

    def test_idle_connections_do_not_hide_healthz(self):
        """Any local account reaches a loopback admin listener. Connections that send nothing filled its cap
        (16 per loop thread) and /healthz was refused until libh2o's request timeout closed them, which a
        client that connects again at once never lets come: a liveness probe failing restarts the gateway.
        The oldest connection with nothing to send now makes room for the new one."""
        import socket
        held = [socket.create_connection(("127.0.0.1", self.gw.admin_port), timeout=5) for _ in range(64)]
        try:
            # every one accepted (or, with no room for it, closed): none left waiting in the listen queue
            self.assertEqual(harness.settled(lambda: harness.listen_queue(self.gw, self.gw.admin_port),
                                             lambda n: n == 0), 0)
            for _ in range(5):
                status, _, body = get(self.gw, "/healthz")
                self.assertEqual((status, body), (200, b"ok\n"))
            ended = 0
            for s in held:
                s.settimeout(0.5)
                try:
                    ended += s.recv(1) == b""
                except (socket.timeout, OSError):
                    pass
            self.assertGreaterEqual(ended, 64 - 32)  # at most 16 a loop thread (2) kept
        finally:
            for s in held:
                s.close()
        self.assertTrue(any(e.get("event") == "admin_connection_evicted" for e in self.gw.log_lines()))

    def test_zz_readyz_follows_the_audit_log(self):
        # last (zz): it breaks the audit log for a while
        status, _, body = get(self.gw, "/readyz")
        self.assertEqual(status, 200, body)
        detail = json.loads(body)
        self.assertTrue(detail["ready"])
        self.assertEqual(detail["checks"]["audit"], "ok")
        d = self.gw.dir
        harness.audit_log_full(self.gw)  # every write fails with EFBIG
        res = self.gw.cmp("ir", "noaudit", newkey=self.newkey("noaudit"), subject="/CN=no-audit",
                          expect_cert=False)
        self.assertIsNone(res.cert)
        status, _, body = get(self.gw, "/readyz")
        self.assertEqual(status, 503, body)
        detail = json.loads(body)
        self.assertFalse(detail["ready"])
        self.assertIn("File too large", detail["checks"]["audit"])
        harness.audit_log_room(self.gw)
        os.unlink(d / "audit.log")
        os.rename(d / "audit.log.kept", d / "audit.log")
        self.gw.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while get(self.gw, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(get(self.gw, "/readyz")[0], 200)


def slow_reader(port):
    """A connection that pipelines 3000 GET /metrics and offers a 1 KiB window to read their answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: the window it offers
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 3000)
    return s


class GrantedWithMods(harness.GatewayTestCase):
    """The outcome label of a certificate issued with modifications (a gateway of its own: Admin's tests
    read its whole log)."""

    def test_granted_with_mods_counted(self):
        """A certificate issued with modifications (a validity cut to the role's max_ttl) is counted under
        its own outcome, not "other": an operator counting issuances misses none."""
        s0 = samples(get(self.gw, "/metrics")[2].decode())
        res = self.gw.cmp("ir", "mods", newkey=self.newkey("mods"), subject="/CN=metrics-mods",
                          extra=("-implicit_confirm", "-days", "3650"))
        self.assertIsNotNone(res.cert)
        self.assertEqual(res.first.status, 1, res.first)  # grantedWithMods
        s1 = samples(get(self.gw, "/metrics")[2].decode())
        for outcome, more in (("grantedWithMods", 1), ("other", 0)):
            self.assertEqual(total(s1, "cmpgw_requests_total", route="default", body="ir", outcome=outcome) -
                             total(s0, "cmpgw_requests_total", route="default", body="ir", outcome=outcome),
                             more, outcome)


class AdminSlowReaders(harness.GatewayTestCase):
    """Connections that ask for answers and do not read them: each pipelines GET /metrics with a 1 KiB
    receive buffer, so that its answers fill the socket buffers and the gateway waits to write. A client
    that reads a little now and then stays within send_timeout; a send_timeout of 300 s stands in for it
    here. They filled the admin listener's cap (16 per loop thread), none with "nothing to send", and every
    new connection was closed at accept: /healthz was refused for as long as they read. The oldest of them now
    makes room, and the gateway closes it rather than render the rest of what it pipelined for a socket
    already shut down: it holds no more of them than its cap."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"send_timeout": "300s"}

    def test_slow_readers_do_not_hide_healthz(self):
        fd_dir = "/proc/%d/fd" % self.gw.proc.pid
        before = len(os.listdir(fd_dir))
        held = []
        try:
            for _ in range(100):  # past 2 loop threads x 16, thrice
                held.append(slow_reader(self.gw.admin_port))
                time.sleep(0.05)
            held_open = harness.settled(lambda: len(os.listdir(fd_dir)) - before, lambda n: n <= 32, timeout=15)
            self.assertLessEqual(held_open, 32)
            # every one the gateway holds waits to write: answers queued in its socket's send queue
            self.assertTrue(harness.settled(self.all_wait_to_write, bool))
            for _ in range(5):
                status, _, body = get(self.gw, "/healthz")
                self.assertEqual((status, body), (200, b"ok\n"))
            # On a loaded machine the gateway may not yet have read the newest connection's requests when the
            # next one comes: that one has nothing to send, and is the one closed. Once every connection held
            # waits to write, a new one can only take the place of one whose answer is not read.
            deadline = time.monotonic() + 30
            while not self.evicted_unread() and time.monotonic() < deadline:
                held.append(slow_reader(self.gw.admin_port))
                time.sleep(1)
            self.assertTrue(self.evicted_unread())
        finally:
            for s in held:
                s.close()

    def all_wait_to_write(self):
        held = [s for s in harness.tcp_sockets(self.gw.proc.pid)
                if not s["listening"] and s["local"].endswith(":%04X" % self.gw.admin_port)]
        return held != [] and all(s["tx"] > 0 for s in held)

    def evicted_unread(self):
        return any(e.get("event") == "admin_connection_evicted" and "not read" in e.get("reason", "")
                   for e in self.gw.log_lines())


class AdminOverfed(harness.GatewayTestCase):
    """A connection to the admin listener that pipelines GET /healthz and does not read the answers. libh2o
    reads on until the socket has nothing more, so its input buffer held whatever the client's bytes came to:
    16 such connections per loop thread grew the process by tens of MB, which stayed, and input outgrowing
    the admin listener's input buffer is moved by libh2o where the token wipe does not reach. Past that
    buffer's size it is now ended at the next sweep, as a CMP connection past a request's input is. A
    send_timeout of 300 s keeps the stall timer out of it."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"send_timeout": "300s"}

    def test_pipelined_input_ended(self):
        request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)  # before connect: its answers soon wait
        s.settimeout(5)
        s.connect(("127.0.0.1", self.gw.admin_port))
        sent = 0
        with s:  # open until the gateway ended it: closed with answers unread, it would be reset at once
            try:
                while sent < 16 << 20:  # far past the admin input buffer (476 KiB)
                    s.sendall(request * 1024)
                    sent += len(request) * 1024
            except OSError:  # ended (reset), or the gateway reads no more: a timeout
                pass
            ended = harness.settled(lambda: harness.metric(self.gw, "cmpgw_slow_connections_ended_total", 0,
                                                           protocol="http1", timeout="input"),
                                    lambda n: n >= 1, timeout=10)
        self.assertEqual(ended, 1, "%d bytes sent" % sent)
        lines = [e for e in self.gw.log_lines() if e.get("event") == "http1_connection_closed"]
        self.assertEqual([e["timeout"] for e in lines], ["input"], lines)
        self.assertIn("admin", lines[0]["reason"])
        self.assertEqual(get(self.gw, "/healthz")[:3:2], (200, b"ok\n"))


class Probes(harness.GatewayTestCase):
    """An upstream's health probes: /readyz follows the one in ready_requires, and while it is down
    its role answers at once (fail_fast) instead of waiting for the upstream's timeout."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream(probe_interval=1, timeout="5s")
        role = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices")
        role["allowed_san_types"] = ["dns", "ip"]
        cfg["roles"]["vault"] = role
        cfg["admin"]["ready_requires"] = ["vault"]

    def wait_readyz(self, status, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = get(self.gw, "/readyz")
            if got[0] == status:
                return json.loads(got[2])
            time.sleep(0.2)
        self.fail("/readyz did not turn %d: %r" % (status, got))

    def p10cr(self, name):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        return self.gw.cmp("p10cr", name, path="pki/roles/vault/cmp", extra=["-csr", csr], expect_cert=False)

    def test_down_and_up_again(self):
        detail = self.wait_readyz(200)
        self.assertTrue(detail["upstreams"]["vault"]["up"])
        self.assertIsNotNone(self.p10cr("before").cert)
        self.assertTrue(self.vault.requests(contains="/sign"))  # what a call sent to Vault looks like
        self.vault.control({"sealed": True})
        detail = self.wait_readyz(503)
        self.assertFalse(detail["upstreams"]["vault"]["up"])
        self.assertIn("HTTP 503", detail["checks"]["upstream:vault"])
        self.assertEqual(detail["checks"]["audit"], "ok")  # the rest still holds
        mark = self.vault.mark()
        res = self.p10cr("while-down")
        self.assertIsNone(res.cert)
        self.assert_rejected(res, "systemUnavail", "upstream CA vault is unavailable", "nothing was sent to it",
                             "retry later")
        # refused at once: Vault was never asked, so no call waited for the upstream's 5 s timeout
        self.assertEqual(self.vault.since(mark, contains="/sign"), [])
        up = samples(get(self.gw, "/metrics")[2].decode())
        self.assertEqual(total(up, "cmpgw_upstream_up", upstream="vault"), 0)
        self.vault.control({})
        self.wait_readyz(200)
        self.assertIsNotNone(self.p10cr("after").cert)


class HostileCfssl(http.server.BaseHTTPRequestHandler):
    """A cfssl that is down, and says why with a C1 control, a bidi override and U+2028 (a byte not UTF-8 would
    not pass: the gateway's JSON reader refuses it).

    A stand-in, not `cfssl serve`: the probe's request is the gateway's own (info, no profile), and a real cfssl
    answers it with error texts of its own, which nothing a test can do fills with these characters. The answer
    under test is one only a hostile or broken CA sends."""
    BODY = (b'{"success":false,"result":null,"messages":[],"errors":[{"code":1000,'
            b'"message":"a\\u009bb\\u202ec\\u2028d"}]}')

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, *args):
        pass


class ProbeText(harness.GatewayTestCase):
    """A CA's words quoted in /readyz (a cfssl probe's error message) go through the shared repair: JSON
    that is UTF-8, with U+FFFD for what a reader would not see as itself."""
    server = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileCfssl)
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cfg["upstreams"]["hostile"] = {"type": "cfssl", "url": "http://127.0.0.1:%d" % cls.server.server_port,
                                       "issuer_ca": "ca.pem", "timeout": "5s", "probe_interval": 1}

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.server.shutdown()

    def test_probe_error_repaired(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = get(self.gw, "/readyz")[2]
            detail = json.loads(body.decode("utf-8"))  # UTF-8, whatever the CA sent
            if detail["upstreams"]["hostile"].get("error"):
                break
            time.sleep(0.2)
        fffd = "\ufffd"
        self.assertIn("a%sb%sc%sd" % (fffd, fffd, fffd), detail["upstreams"]["hostile"]["error"])


def max_open_files(pid):
    """(soft, hard) of |pid|'s "Max open files", as /proc/<pid>/limits shows them."""
    for line in Path("/proc/%d/limits" % pid).read_text().splitlines():
        if line.startswith("Max open files"):
            return tuple(int(v) for v in line.split()[3:5])
    raise AssertionError("no Max open files in /proc/%d/limits" % pid)


class OpenFiles(unittest.TestCase):
    """The demo's configuration may hold some 4 400 files open (max_connections 4096, its listeners and
    the reserve): a start under a lower soft limit raises it to the hard one, and a hard limit below
    the count is a config warning, which `cmpgw check` says too, with the count."""

    NEED = 4390  # gw_config_fds of the demo: 4096 + 2 x (CMP and admin listeners, 16 admin connections, 1) + 256

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        self.was = resource.getrlimit(resource.RLIMIT_NOFILE)
        if self.was[1] == resource.RLIM_INFINITY or self.was[1] < 2 * self.NEED:
            self.skipTest("needs a finite hard limit of open files of %d or more" % (2 * self.NEED))
        self.gw = harness.Gateway(self.tmp / "pki")

    def tearDown(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, self.was)
        if self.gw.proc is not None:
            self.gw.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def started_under(self, soft):
        """The gateway started with a soft limit of |soft| (and this process's hard one); its lines."""
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, self.was[1]))
        try:
            self.gw.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.was)
        return [l for l in self.gw.log_lines() if l.get("event") == "fd_limit"]

    def test_soft_limit_raised(self):
        """Under a soft limit of 1024 it was kept, and connections past some 1 000 failed at accept."""
        lines = self.started_under(1024)
        self.assertEqual(max_open_files(self.gw.proc.pid), (self.was[1], self.was[1]))
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["level"], "info")
        self.assertIn("raised the soft limit of open files (RLIMIT_NOFILE) from 1024 to the hard limit of %d:" %
                      self.was[1], lines[0]["msg"])
        self.assertIn("may hold %d files open at once" % self.NEED, lines[0]["msg"])

    def test_soft_limit_enough(self):
        """The twin: a soft limit above the count is left as it is, and said nothing of."""
        lines = self.started_under(2 * self.NEED)
        self.assertEqual(lines, [])
        self.assertEqual(max_open_files(self.gw.proc.pid)[0], 2 * self.NEED)

    def check_under(self, hard):
        def lower():
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.gw.config_path)],
                              capture_output=True, text=True, env=self.gw.env(), preexec_fn=lower)

    def test_check_hard_limit(self):
        """A hard limit below the count: a config warning with the numbers, at `cmpgw check` as at a load
        (the configuration still passes); at the count, none. The check says what it judged by."""
        for hard, warns in ((self.NEED - 1, True), (self.NEED, False)):
            with self.subTest(hard=hard):
                check = self.check_under(hard)
                self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
                self.assertIn("open files: the configuration may hold %d at once; this process's limit "
                              "(RLIMIT_NOFILE) is %d soft, %d hard" % (self.NEED, hard, hard), check.stdout)
                warning = ("$.limits.max_connections: the configuration may hold %d files open at once "
                           "(4130 connections, 4 listening sockets, 0 upstream and 0 Redis connections, 256 "
                           "more), above this process's hard limit of open files (RLIMIT_NOFILE) of %d"
                           % (self.NEED, hard))
                if warns:
                    self.assertIn(warning, check.stderr)
                else:
                    self.assertNotIn("files open at once", check.stderr)


class Privileges(unittest.TestCase):
    """Started as root (as this test runs), the gateway runs as "user" once it has bound its
    sockets and loaded its keys, and refuses to keep root unless the configuration says so."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def gateway(self, edit):
        return harness.Gateway(self.tmp / "pki", lambda cfg, gw: edit(cfg))

    def test_refuses_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        gw = self.gateway(lambda cfg: cfg.pop("run_as_root"))
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)  # the configuration refused: not restarted (cmpgw.service)
        self.assertIn("refusing to run as root", err)

    def test_check_refuses_root(self):
        """`cmpgw check` as root refuses what the start refuses, with its reason: a configuration without
        "user" or "run_as_root" (it said OK, and the start then stopped). Its twins pass: with
        "run_as_root", and with "user" instead."""
        if os.geteuid() != 0:
            self.skipTest("needs root")
        gw = self.gateway(lambda cfg: cfg.pop("run_as_root"))
        rc, err = gw.start_refused()
        self.assertNotEqual(rc, 0)
        why = ('refusing to run as root: set "user" (root binds and loads keys, then the gateway runs as '
               'that user) or "run_as_root": true')
        self.assertIn(json.dumps(why)[1:-1], err)  # the start's log line is JSON
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn("%s: %s" % (gw.config_path, why), check.stderr)
        self.assertNotIn("OK", check.stdout)
        for twin in ({"run_as_root": True}, {"user": "nobody"}):
            with self.subTest(twin):
                cfg = json.loads(gw.config_path.read_text())
                cfg.pop("run_as_root", None)
                cfg.update(twin)
                gw.config_path.write_text(json.dumps(cfg, indent=2))
                check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                                       capture_output=True, text=True, env=gw.env())
                self.assertNotIn("refusing to run as root", check.stderr)
                self.assertIn("%s: OK" % gw.config_path, check.stdout, check.stderr)

    def test_check_as_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg):
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
            cfg["upstreams"]["local"]["store"] = "store"
        (self.tmp / "pki").mkdir(parents=True)
        store = self.tmp / "pki" / "store"
        store.mkdir(mode=0o700)  # root's: the service user could not record what it issues
        gw = self.gateway(edit)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn("as user nobody, the store", check.stderr)
        self.assertIn("not usable as user nobody", check.stderr)
        os.chown(store, pwd.getpwnam("nobody").pw_uid, -1)
        for d in (self.tmp, self.tmp / "pki"):  # and the directories above it are to be passed through
            d.chmod(0o711)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        # the demo's keys are root's (0600): it runs, but a reload as nobody could not read them
        self.assertIn("as user nobody, a reload would be refused", check.stderr)

    def test_check_audit_file_root_owned(self):
        """An audit log that is there and root's (an earlier start made it before giving root up, or root by
        hand) is refused by `cmpgw check` run as root: the gateway, as its user, could not reopen it
        (SIGUSR1, a rotation's) and readiness would stay down; the check said OK. Its twin, the user's
        log, passes."""
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg):
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
        gw = self.gateway(edit)
        log = gw.dir / "audit.log"
        log.touch(mode=0o600)
        for d in (self.tmp, gw.dir):  # passed through by the user
            d.chmod(0o711)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        why = ('as user nobody, audit.file "%s" (owned by uid 0) cannot be opened to append: '
               'Permission denied; a reopen (SIGUSR1, a rotation) would fail: chown it to nobody' % log)
        self.assertIn(json.dumps(why)[1:-1], check.stderr)  # the log line is JSON
        self.assertIn("not usable as user nobody", check.stderr)
        self.assertNotIn("OK", check.stdout)
        os.chown(log, pwd.getpwnam("nobody").pw_uid, -1)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertNotIn("cannot be opened to append", check.stderr)

    def operator(self, gw):
        """The command prefix of the operator "daemon", who may read root's keys (a capability, not
        root). The audit log is nobody's (the gateway's user's) and theirs alone to write: the check
        asks whether it may be appended to only when its owner runs it."""
        log = gw.dir / "audit.log"
        log.touch(mode=0o600)
        os.chown(log, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("daemon").pw_gid)
        log.chmod(0o640)
        for d in (self.tmp, gw.dir):
            d.chmod(0o711)
        return ["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]

    def test_check_audit_file_owner_by_user(self):
        """audit.file's owner is judged by `cmpgw check` as cmp.revoked_file's is: against the
        configured "user", whoever runs the check, with the uid judged against in the output."""
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg):
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
        gw = self.gateway(edit)
        log = gw.dir / "audit.log"
        operator = self.operator(gw)
        nobody, daemon = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("daemon").pw_uid
        judged = "audit.file judged as the file of uid %d (user nobody)" % nobody

        check = subprocess.run(operator + [str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(judged, check.stdout)

        log.chmod(0o660)  # the group could append forged records, or cut the log short
        check = subprocess.run(operator + [str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn('audit.file: "%s" is writable by group or others (mode 0660): make it 0600' % log,
                      check.stderr)
        log.chmod(0o640)

        os.chown(log, daemon, -1)  # the operator's own: the service, as nobody, would refuse it
        check = subprocess.run(operator + [str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn('"%s" is owned by uid %d, neither the gateway\'s user (uid %d) nor root' %
                      (log, daemon, nobody), check.stderr)
        self.assertIn(judged, check.stderr)

    def test_check_revoked_file_owner_by_user(self):
        """`cmpgw check` by an operator who is not root judges cmp.revoked_file's owner against the
        configured "user", whom the service runs as, not against the operator: a file of that user
        passes, one of the operator's is refused, and the output names the uid it judged against."""
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg):
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
            cfg["cmp"] = {"revoked_file": "revoked.list"}
        gw = self.gateway(edit)
        listed = gw.dir / "revoked.list"
        listed.touch(mode=0o600)
        nobody, daemon = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("daemon").pw_uid
        operator = self.operator(gw)
        judged = "cmp.revoked_file judged as the file of uid %d (user nobody)" % nobody

        os.chown(listed, nobody, -1)
        check = subprocess.run(operator + [str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(judged, check.stdout)

        os.chown(listed, daemon, -1)
        check = subprocess.run(operator + [str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn('"%s" is owned by uid %d, neither the gateway\'s user (uid %d) nor root' %
                      (listed, daemon, nobody), check.stderr)
        self.assertIn(judged, check.stderr)

    def test_store_others_may_change(self):
        """A local issuer's store its group may write is refused by `cmpgw check` and by the start:
        a revocation record planted there would revoke, one removed would let a revoked certificate
        authenticate again. The check says whose it judged the store to be."""
        def edit(cfg):
            cfg["upstreams"]["local"]["store"] = "store"
        (self.tmp / "pki").mkdir(parents=True)
        store = self.tmp / "pki" / "store"
        store.mkdir()
        store.chmod(0o770)
        gw = self.gateway(edit)
        why = 'upstreams.local.store: the directory "%s" is writable by group or others (mode 0770)' % store
        judged = "upstreams.local.store judged as the directory of uid %d (the user running this check)" % \
            os.geteuid()
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn(why, check.stderr)
        self.assertIn(judged, check.stderr)
        rc, err = gw.start_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn(json.dumps(why)[1:-1], err)  # in the JSON log line

        store.chmod(0o750)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(judged, check.stdout)

    def test_store_crl_lock_restored_open(self):
        """A store restored from a backup with crl.lock 0644 (any local user could hold it) is refused
        by `cmpgw check` and by the start, naming the file, not first when a CRL is asked for; the
        twin, crl.lock 0600, passes."""
        def edit(cfg):
            cfg["upstreams"]["local"]["store"] = "store"
        (self.tmp / "pki").mkdir(parents=True)
        store = self.tmp / "pki" / "store"
        store.mkdir(mode=0o700)
        lock = store / "crl.lock"
        lock.touch()
        lock.chmod(0o644)
        gw = self.gateway(edit)
        why = "upstreams.local.store: store %s: crl.lock is not a regular file of mode 0600 (mode 0644)" % store
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn(why, check.stderr)
        rc, err = gw.start_refused()
        self.assertNotEqual(rc, 0)
        self.assertIn(json.dumps(why)[1:-1], err)  # in the JSON log line

        lock.chmod(0o600)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_check_handover_socket_directory(self):
        """A handover_socket in a directory others may write without the sticky bit is refused by
        `cmpgw check`, as the start refuses to bind it there: whoever may add names there could rename
        the socket away and put their own at its name. With the sticky bit it passes."""
        def edit(cfg):
            cfg["handover_socket"] = "run/handover.sock"
        (self.tmp / "pki" / "run").mkdir(parents=True)
        run = self.tmp / "pki" / "run"
        run.chmod(0o777)
        gw = self.gateway(edit)
        judged = "handover_socket judged as the socket of uid %d (the user running this check)" % os.geteuid()
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn('handover_socket: the directory "%s" is writable by group or others without the sticky '
                      'bit (mode 0777)' % run, check.stderr)
        self.assertIn(judged, check.stderr)

        run.chmod(0o1777)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn(judged, check.stdout)

        # a directory not there yet (tmpfiles.d or a unit's RuntimeDirectory= makes it) is judged at start
        cfg = json.loads(gw.config_path.read_text())
        cfg["handover_socket"] = str(self.tmp / "pki" / "not-yet" / "handover.sock")
        gw.config_path.write_text(json.dumps(cfg))
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("handover_socket: its directory is not there yet; the gateway judges it when it starts",
                      check.stdout)

    def test_upstream_tls_files_only_a_reload_reads(self):
        """An upstream's TLS certificate and key are read at load and handed to libcurl as bytes:
        one only root may read serves (a reload would be refused, and the check says so), as a
        listener's key does; it does not stop the start."""
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg, gw):
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
            cfg["upstreams"]["vault"] = {
                "type": "vault", "url": "https://127.0.0.1:%d" % harness.free_port(), "tls_ca": "ca.pem",
                "issuer_ca": "ca.pem", "tls_cert": "client.pem", "tls_key": "client.key", "auth": {"cert": {}}}
        gw = harness.Gateway(self.tmp / "pki", edit)
        for d in (self.tmp, gw.dir):
            d.chmod(0o711)
        self.assertEqual((gw.dir / "client.key").stat().st_mode & 0o077, 0)  # root's alone
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertNotIn("is not readable", check.stderr)
        self.assertIn("as user nobody, a reload would be refused", check.stderr)

    def test_runs_as_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        # the audit log in a directory of the user's, as the package's /var/log/cmpgw: root creates it as
        # the user, and makes none where only root may
        log = self.tmp / "log"
        gw = self.gateway(lambda cfg: (cfg.pop("run_as_root"), cfg.update(user="nobody"),
                                       cfg["audit"].update(file=str(log / "audit.log"))))
        log.mkdir(mode=0o700)
        os.chown(log, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
        self.tmp.chmod(0o711)
        gw.start()
        try:
            status = Path("/proc/%d/status" % gw.proc.pid).read_text()
            uid = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")][0]
            self.assertEqual(set(uid), {str(pwd.getpwnam("nobody").pw_uid)}, status)
            self.assertEqual(get(gw, "/healthz")[0], 200)
        finally:
            gw.stop()


if __name__ == "__main__":
    unittest.main()
