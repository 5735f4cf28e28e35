"""Who may reload a real gateway through its admin listener (docs/operations.md, "The admin listener"):
POST /reload needs the bearer token of admin.token_file; without one, or with a wrong one, it is 401,
counted and logged without the token, and nothing is reloaded; with the right one it reloads. Without a
token_file it is 403 and SIGHUP still reloads. A token file others may read refuses the start. One
reload runs at a time: the others sent meanwhile are 409. What only reads stays open. A token sent with
any admin request is wiped from the gateway's memory, compared or not; the admin listener speaks HTTP/1
only, where it can be."""
import os
import re
import signal
import socket
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

admin = harness.admin


def metric(gw, name, **labels):
    return harness.metric(gw, name, 0, **labels)


def events(gw, event):
    return [l for l in gw.log_lines() if l.get("event") == event]


def raw_post(port, token):
    """A connected socket with a whole POST /reload request ready to send."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    req = ("POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nContent-Length: 0\r\n"
           "Connection: close\r\n\r\n" % token).encode()
    return s, req


class AdminToken(harness.GatewayTestCase):
    """The demo configuration: "admin": {..., "token_file": "admin.token"}."""

    def token(self):
        return (self.gw.dir / "admin.token").read_text().strip()

    def secrets_absent(self, *secrets):
        """None of |secrets| is in the gateway's log or its audit log."""
        audit = self.gw.dir / "audit.log"
        for where in (self.gw.stderr(), audit.read_text() if audit.exists() else ""):
            for secret in secrets:
                self.assertNotIn(secret, where)

    def test_token_file_is_private(self):
        self.assertEqual(os.stat(self.gw.dir / "admin.token").st_mode & 0o077, 0)
        self.assertGreaterEqual(len(self.token()), 32)

    def test_without_token_401_and_no_reload(self):
        generation = metric(self.gw, "cmpgw_config_generation")
        missing = metric(self.gw, "cmpgw_admin_auth_failures_total", reason="missing")
        req_events = len(events(self.gw, "reloading"))
        status, body = admin(self.gw, "/reload", "POST", token="")
        self.assertEqual(status, 401, body)
        self.assertEqual(body, 'unauthorized: send "Authorization: Bearer <the token of admin.token_file>"\n')
        self.assertEqual(metric(self.gw, "cmpgw_admin_auth_failures_total", reason="missing"), missing + 1)
        self.assertEqual(metric(self.gw, "cmpgw_config_generation"), generation)
        self.assertEqual(len(events(self.gw, "reloading")), req_events)
        line = events(self.gw, "admin_auth_failed")[-1]
        self.assertEqual((line["request"], line["reason"]), ("POST /reload", "no bearer token"))
        self.assertTrue(line["peer"].startswith("127.0.0.1:"), line)
        # another scheme is no bearer token either
        req_basic = urllib.request.Request("http://127.0.0.1:%d/reload" % self.gw.admin_port,
                                                   method="POST", data=b"",
                                                   headers={"Authorization": "Basic " + self.token()})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req_basic, timeout=10)
        self.assertEqual(e.exception.code, 401)
        self.assertEqual(e.exception.headers["WWW-Authenticate"], 'Bearer realm="cmpgw admin"')

    def test_wrong_token_401_logged_without_it(self):
        right = self.token()
        wrong = right[:-1] + ("0" if right[-1] != "0" else "1")  # one character off, the same length
        generation = metric(self.gw, "cmpgw_config_generation")
        before = metric(self.gw, "cmpgw_admin_auth_failures_total", reason="wrong")
        for token in (wrong, right[:16], right + "x"):
            status, body = admin(self.gw, "/reload", "POST", token=token)
            self.assertEqual((status, body), (401, "unauthorized: wrong admin token\n"))
        self.assertEqual(metric(self.gw, "cmpgw_admin_auth_failures_total", reason="wrong"), before + 3)
        self.assertEqual(metric(self.gw, "cmpgw_config_generation"), generation)
        self.assertEqual(events(self.gw, "admin_auth_failed")[-1]["reason"], "wrong token")
        self.secrets_absent(wrong, right + "x", right)

    def test_right_token_reloads(self):
        generation = metric(self.gw, "cmpgw_config_generation")
        status, body = admin(self.gw, "/reload", "POST", token=self.token())
        self.assertEqual(status, 200, body)
        self.assertIn("reloaded: configuration generation %d" % (generation + 1), body)
        self.assertEqual(metric(self.gw, "cmpgw_config_generation"), generation + 1)
        # "bearer" in any case, as RFC 7235 has it
        req = urllib.request.Request("http://127.0.0.1:%d/reload" % self.gw.admin_port, method="POST",
                                             data=b"", headers={"Authorization": "bearer " + self.token()})
        with urllib.request.urlopen(req, timeout=60) as rsp:
            self.assertEqual(rsp.status, 200)
        self.secrets_absent(self.token())

    def test_reads_stay_open(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            self.assertEqual(admin(self.gw, path)[0], 200, path)

    def test_one_reload_at_a_time(self):
        """Sixteen POST /reload sent at once: one runs, those that arrive while it runs get 409; every 200
        is one reload, and no request waits behind another. A round whose requests happened not to
        overlap a reload (a busy machine serialises them) proves nothing of the 409: up to five rounds."""
        for _ in range(5):
            reloaded = len(events(self.gw, "reloaded"))
            calls = [raw_post(self.gw.admin_port, self.token()) for _ in range(16)]
            for s, req in calls:
                s.sendall(req)
            answers = []
            for s, _ in calls:
                with s:
                    answers.append(harness.read_to_eof(s).decode(errors="replace"))
            codes = [int(a.split(" ", 2)[1]) for a in answers]
            self.assertLessEqual(set(codes), {200, 409}, answers)
            self.assertIn(200, codes)
            deadline = time.monotonic() + 10
            while len(events(self.gw, "reloaded")) - reloaded < codes.count(200) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(len(events(self.gw, "reloaded")) - reloaded, codes.count(200))
            if 409 in codes:
                break
        self.assertIn(409, codes)
        conflict = next(a for a in answers if " 409 " in a.split("\r\n")[0])
        self.assertTrue(conflict.endswith("\r\n\r\na reload is already in progress; retry once it has ended\n"),
                        conflict)
        self.assertEqual(admin(self.gw, "/reload", "POST")[0], 200)  # and the next one runs


def held(pid, secret):
    """How many times |secret| is in the writable memory of process |pid|, read a MiB at a time. Mappings
    over a GiB are left out: a sanitizer's shadow memory, reserved whole and never the gateway's data.
    Skips where this process may not read it: the gateway is not dumpable, so /proc/PID/mem takes
    CAP_SYS_PTRACE."""
    hits, step, keep = 0, 1 << 20, len(secret) - 1
    try:
        with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
            for line in maps:
                fields = line.split()
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if not fields[1].startswith("rw") or end - start > 1 << 30:
                    continue
                tail = b""
                try:
                    mem.seek(start)
                    for at in range(start, end, step):
                        data = tail + mem.read(min(step, end - at))
                        hits += data.count(secret)
                        tail = data[-keep:] if keep > 0 else b""
                except (OSError, ValueError):  # a mapping the kernel will not read ([vvar])
                    continue
    except PermissionError:
        raise unittest.SkipTest("the gateway's memory cannot be read here (CAP_SYS_PTRACE)")
    return hits


class AdminTokenInMemory(harness.GatewayTestCase):
    """A gateway of its own: where its memory holds the admin token after requests that send it."""

    def test_libraries_bound_at_start(self):
        """The libraries the binary loads are not all linked -z now (libc is not): the gateway runs itself
        again with LD_BIND_NOW, which the harness does not set, so that no symbol is bound while it serves.
        libc's first _dl_allocate_tls_init, made on a loop thread by a second POST /reload, left the token
        in the vector registers the dynamic linker saved on that thread's stack."""
        if os.environ.get("LD_BIND_NOW"):
            raise unittest.SkipTest("LD_BIND_NOW is set here: the gateway inherits it")
        try:
            with open("/proc/%d/environ" % self.gw.proc.pid, "rb") as f:
                environ = f.read().split(b"\0")
        except PermissionError:
            raise unittest.SkipTest("the gateway's environment cannot be read here (CAP_SYS_PTRACE)")
        self.assertTrue(b"LD_BIND_NOW=1" in environ, [e for e in environ if e.startswith(b"LD_BIND_NOW")])

    def send(self, method, path, token, header="Authorization: Bearer", body=None, chunked=False):
        """The status line of the answer to |method| |path| with |token| in |header|, and |body| if any
        (with its Content-Length, or as it is after Transfer-Encoding: chunked)."""
        framing = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
        if chunked:
            framing = b"Transfer-Encoding: chunked\r\n"
        with socket.create_connection(("127.0.0.1", self.gw.admin_port), timeout=60) as s:
            s.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s %s\r\n%sConnection: close\r\n\r\n%s"
                      % (method, path, header.encode(), token, framing, body or b""))
            return harness.read_to_eof(s).split(b"\r\n", 1)[0]

    def test_token_wiped_where_not_compared(self):
        """A bearer token sent with a request that compares none (a scraper configured with it for
        GET /metrics, a GET /reload answered 405, a path the listener does not serve) stayed in h2o's input
        buffer, freed as it was, for the life of the process: it is wiped at once, as the token a
        POST /reload presents is once compared. The twin: a POST /reload without a body leaves none."""
        token = (self.gw.dir / "admin.token").read_text().strip().encode()
        pid = self.gw.proc.pid
        self.assertEqual(held(pid, token), 0)
        # the search finds what a request leaves: a header the gateway does not wipe
        marker = os.urandom(16).hex().encode()
        self.assertTrue(self.send(b"GET", b"/metrics", marker, header="X-Test-Marker:").startswith(b"HTTP/1.1 200 "))
        self.assertGreater(held(pid, marker), 0)

    def test_token_wiped_when_the_request_arrives_in_pieces(self):
        """A request of more than 4 KiB that arrives in more than one read (a long header, a body): libh2o
        moved it to a larger input buffer as the second part came, and freed the first as it was, token
        included. The admin listener's input buffers are allocated large enough at once."""
        token = (self.gw.dir / "admin.token").read_text().strip().encode()
        pid = self.gw.proc.pid
        head = b"POST /reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n" % token
        cases = [(head + b"X-Pad: " + b"p" * 5000, b"\r\nConnection: close\r\n\r\n"),
                 (head + b"Content-Length: 6000\r\nConnection: close\r\n\r\n" + b"b" * 4500, b"b" * 1500)]
        for first, rest in cases:
            with socket.create_connection(("127.0.0.1", self.gw.admin_port), timeout=60) as s:
                s.sendall(first)
                # read apart: the gateway has taken all of the first part before the rest is sent
                self.assertTrue(harness.settled(lambda: harness.read_whole(self.gw, s), bool), len(first))
                s.sendall(rest)
                self.assertTrue(harness.read_to_eof(s).startswith(b"HTTP/1.1 200 "))
            self.assertEqual(held(pid, token), 0, len(first + rest))
        self.assertEqual(self.send(b"POST", b"/reload", token), b"HTTP/1.1 200 OK")
        self.assertEqual(held(pid, token), 0)
        for method, path, status in ((b"GET", b"/metrics", 200), (b"GET", b"/reload", 405),
                                     (b"GET", b"/nothing", 404), (b"HEAD", b"/healthz", 200)):
            self.assertTrue(self.send(method, path, token).startswith(b"HTTP/1.1 %d " % status), path)
            self.assertEqual(held(pid, token), 0, (method, path))

    def test_token_wiped_with_a_body(self):
        """A request with a body (Content-Length: 0 as curl -d '' or Python's urllib sends it, a body,
        a chunked one): libh2o copies its head's strings into the request's pool, which the handler
        wipes, and leaves the bytes it parsed at the start of the connection's input buffer, which it
        wiped too. Its twin: the body right after them stays, and the search finds it."""
        token = (self.gw.dir / "admin.token").read_text().strip().encode()
        pid = self.gw.proc.pid
        marker = os.urandom(16).hex().encode()
        cases = [(b"POST", b"/reload", b"", False, 200), (b"GET", b"/metrics", b"x" * 64, False, 200),
                 (b"GET", b"/reload", b"", False, 405), (b"POST", b"/reload", b"0\r\n\r\n", True, 200),
                 (b"POST", b"/reload", marker, False, 200)]
        for method, path, body, chunked, status in cases:
            what = (method, path, body, chunked)
            self.assertTrue(self.send(method, path, token, body=body, chunked=chunked)
                            .startswith(b"HTTP/1.1 %d " % status), what)
            self.assertEqual(held(pid, token), 0, what)
        self.assertGreater(held(pid, marker), 0)


class BoundAtStart(unittest.TestCase):
    """The gateway binary binds every symbol it calls at start (-z now): bound lazily, a symbol's first call
    on a loop thread runs the dynamic linker's trampoline, which saves the vector registers, an admin token
    a string function just went over in them, on the thread's stack (docs/security.md, "Secrets in
    memory")."""

    def test_bind_now(self):
        dynamic = harness.run(["readelf", "-d", harness.GATEWAY_BIN]).stdout.decode()
        flags = [l for l in dynamic.splitlines() if "(FLAGS" in l]
        self.assertTrue(any("BIND_NOW" in l for l in flags) and any(" NOW" in l for l in flags), flags)

    def test_run_by_the_dynamic_linker(self):
        """Started as the dynamic linker's argument (ld.so cmpgw ...), /proc/self/exe is the linker: run
        again through it with the gateway's arguments, the linker would take the first of them as the
        program to run (`ld.so cmpgw check -c FILE` ran a file named check in the working directory).
        The gateway runs on as it is instead, and says so."""
        headers = harness.run(["readelf", "-l", harness.GATEWAY_BIN]).stdout.decode()
        interp = re.search(r"program interpreter: ([^\]]+)\]", headers).group(1)
        env = {k: v for k, v in os.environ.items() if k != "LD_BIND_NOW"}
        with tempfile.TemporaryDirectory() as tmp:
            p = harness.run([interp, harness.GATEWAY_BIN, "--version"], env=harness.sanitizer_env(env, tmp))
        self.assertTrue(p.stdout.startswith(b"cmpgw "), p.stdout[:200])
        self.assertIn(b"run by the dynamic linker", p.stderr)


class AdminReloadWhileStopping(harness.GatewayTestCase):
    """A POST /reload with the right token on an admin connection opened before SIGTERM, sent while the
    gateway drains: 503, nothing reloaded (docs/errors.md admin_stopping); the gateway then exits 0."""

    def test_reload_while_stopping(self):
        s, req = raw_post(self.gw.admin_port, (self.gw.dir / "admin.token").read_text().strip())
        with s:
            # a connection still in the listen queue at SIGTERM is reset when the listener closes: have
            # the gateway accept it (and answer on it, kept alive) first
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                self.assertTrue(chunk, head)
                head += chunk
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
            while len(head) - head.index(b"\r\n\r\n") - 4 < length:
                head += s.recv(4096)
            self.gw.signal_stop()
            harness.wait_listener_closed(self.gw)  # draining: this connection idles on
            s.sendall(req)
            answer = harness.read_to_eof(s).decode(errors="replace")
        self.assertTrue(answer.startswith("HTTP/1.1 503 "), answer)
        self.assertTrue(answer.endswith("\r\n\r\nreload is not available: the gateway is stopping\n"), answer)
        self.assertEqual(events(self.gw, "reloading"), [])
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])


class NoTokenFile(harness.GatewayTestCase):
    """An admin listener without a token_file: POST /reload is refused, SIGHUP still reloads."""

    @classmethod
    def edit_config(cls, cfg, gw):
        del cfg["admin"]["token_file"]

    def test_reload_forbidden_sighup_works(self):
        for token in ("", (self.gw.dir / "admin.token").read_text()):
            status, body = admin(self.gw, "/reload", "POST", token=token)
            self.assertEqual((status, body), (403, "admin token_file not configured; use SIGHUP\n"))
        self.assertEqual(events(self.gw, "reloading"), [])
        self.gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while not events(self.gw, "reloaded") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(len(events(self.gw, "reloaded")), 1, self.gw.stderr()[-3000:])


class AdminAuthFloodPaced(harness.GatewayTestCase):
    """A client sending wrong tokens as fast as it can does not flood the log: admin_auth_failed is paced
    (GW_LOG_PACE_LINES lines a GW_LOG_PACE_SECS window, the rest counted in the next line's "suppressed"),
    while every failure is still counted in the metric."""
    PACE_LINES = 20  # GW_LOG_PACE_LINES

    def test_wrong_tokens_paced(self):
        n = 3 * self.PACE_LINES
        before = metric(self.gw, "cmpgw_admin_auth_failures_total", reason="wrong")
        for i in range(n):
            status, _ = admin(self.gw, "/reload", "POST", token="wrong-token-%d-%s" % (i, "x" * 32))
            self.assertEqual(status, 401)
        self.assertEqual(metric(self.gw, "cmpgw_admin_auth_failures_total", reason="wrong"), before + n)
        lines = events(self.gw, "admin_auth_failed")
        # fewer lines than failures, however the requests fell across windows (all of them within
        # two windows on any machine this runs on); each line says how many were held back before it
        self.assertLessEqual(len(lines), 2 * self.PACE_LINES, len(lines))
        self.assertTrue(all(l.get("suppressed", "").isdigit() for l in lines), lines[:3])
        self.assertLessEqual(len(lines) + sum(int(l["suppressed"]) for l in lines), n)


class TokenFileChecked(unittest.TestCase):
    """A token file that group or others may read, or a token too short, refuses the start."""

    def test_readable_by_others_refused(self):
        seen = {}

        def edit(cfg, gw):
            os.chmod(gw.dir / "admin.token", 0o644)
            seen["token"] = (gw.dir / "admin.token").read_text()

        rc, err = harness.refused_start(edit)
        self.assertNotEqual(rc, 0)
        self.assertIn("$.admin.token_file: ", err)
        self.assertIn("is readable or writable by group or others (mode 644): make it 0600 or 0400", err)
        self.assertNotIn(seen["token"], err)

    def test_http2_refused(self):
        """An admin listener that would offer HTTP/2 (ALPN h2) refuses the start: over HTTP/2 the token is
        not wiped (HPACK may keep it in the connection's header table)."""
        def edit(cfg, gw):
            cfg["admin"]["tls"] = dict(cfg["listeners"][0]["tls"], http2=True)

        rc, err = harness.refused_start(edit)
        self.assertNotEqual(rc, 0)
        self.assertIn("$.admin.tls.http2: the admin listener speaks HTTP/1 only", err)

    def test_short_token_refused(self):
        def edit(cfg, gw):
            (gw.dir / "admin.token").write_text("short\n")

        rc, err = harness.refused_start(edit)
        self.assertNotEqual(rc, 0)
        self.assertIn("$.admin.token_file: the secret in", err)
        self.assertIn("must be 16..4096 bytes", err)


if __name__ == "__main__":
    harness.main()
