"""Restart without refusing a connection (docs/operations.md, "Restart and upgrade"): a second
gateway started with the same "handover_socket" takes the running one's listening sockets, and the
first drains and exits 0 while a cmpload run (implicitConfirm: no transaction spans the restart) and
a client that connects anew for every request see no failure; a would-be successor that takes the
sockets but never serves leaves the running gateway serving; one the running gateway is stopped
under (SIGTERM) before it said "ready" still takes over; a process of another user gets nothing;
a certificate revoked on either side of a hand-over is refused on the other at once (cmp.revoked_file);
and socket activation (systemd-socket-activate) serves the socket it is given."""
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402



def log_events(path, event):
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("event") == event:
            out.append(obj)
    return out


class Restart(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["handover_socket"] = "handover.sock"
        cfg["cmp"] = {"max_transactions_per_identity": 64, "max_recent_per_identity": 100000}

    def connect_per_request(self, stop, failures, count):
        """A client that opens a TLS connection for every request (as `openssl cmp` does)."""
        ctx = self.gw.tls_context()
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.gw.port), timeout=10) as s:
                    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                        t.sendall(b"POST /pki/cmp HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: 1\r\nConnection: close\r\n\r\nx")
                        head = t.recv(64)
                        if not head.startswith(b"HTTP/1.1 415"):
                            failures.append(head[:40])
                count[0] += 1
            except (OSError, ValueError) as e:
                failures.append(repr(e))
            time.sleep(0.01)

    def start_successor(self, name):
        err = open(self.gw.dir / ("%s.stderr" % name), "wb")
        proc = subprocess.Popen([str(harness.GATEWAY_BIN), "-c", str(self.gw.config_path)], cwd=self.gw.dir,
                                stdout=subprocess.DEVNULL, stderr=err, env=self.gw.env())
        return proc, err

    @unittest.skipUnless(harness.LOAD_BIN, "CMPGW_LOAD_BIN (cmpload) is set by ctest")
    def test_restart_under_load_refuses_nothing(self):
        d = self.gw.dir
        load = subprocess.Popen(self.gw.load_argv("/CN=restart-load", 2, 10, ["--implicit-confirm"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stop, failures, count = threading.Event(), [], [0]
        prober = threading.Thread(target=self.connect_per_request, args=(stop, failures, count))
        prober.start()
        old = self.gw.proc
        try:
            time.sleep(2)
            new, new_err = self.start_successor("successor")
            rc = old.wait(timeout=30)  # the first one drains and exits by itself
            self.assertEqual(rc, 0, self.gw.stderr()[-3000:])
            self.assertIsNone(new.poll(), (d / "successor.stderr").read_text()[-3000:])
            out, err = load.communicate(timeout=60)
        finally:
            stop.set()
            prober.join(30)
        try:
            self.assertEqual(failures, [], "connect-per-request client failed")
            self.assertGreater(count[0], 20)
            result = json.loads(out.decode().strip().splitlines()[-1])
            self.assertEqual(result["errors"], 0, err.decode()[-2000:])
            print("restart under load:", result, "and", count[0], "connect-per-request requests",
                  file=sys.stderr)
            self.assertTrue(log_events(self.gw.stderr_path, "handover"))
            self.assertIn("a successor serves the listening sockets", self.gw.stderr())
            self.assertIn("took", (d / "successor.stderr").read_text())
            # the successor serves, and hands over in turn
            self.assertIsNotNone(self.enrol("after-restart")[0])
            self.assertTrue((d / "handover.sock").exists())
        finally:
            new.send_signal(signal.SIGTERM)
            self.assertEqual(new.wait(timeout=30), 0)
            new_err.close()
            harness_text = (d / "successor.stderr").read_text()
            for mark in harness.SANITIZER_MARKS:
                self.assertNotIn(mark, harness_text)
            # the class's gateway is gone: start a fresh one for the other tests
            self.gw._err.close()
            self.gw._out.close()
            self.gw.start()

    def test_successor_that_never_serves(self):
        """Takes the sockets and goes away without "ready": the running gateway serves on."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(self.gw.dir / "handover.sock"))
        msg, fds, _, _ = socket.recv_fds(s, 64, 253)
        self.assertTrue(msg.startswith(b"CMPGW-HANDOVER 1 "), msg)
        self.assertEqual(len(fds), int(msg.split()[2]))
        for fd in fds:
            os.close(fd)
        s.close()
        deadline = time.monotonic() + 10
        while "did not start serving" not in self.gw.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertIn("did not start serving", self.gw.stderr())
        self.assertIsNone(self.gw.proc.poll())
        self.assertIsNotNone(self.enrol("still-serving")[0])

    def hand_over_to(self, say, answer):
        """Takes the sockets as a successor that says |say|, asserts the running gateway's |answer| and
        that it drains and exits 0, and starts the class's gateway anew."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(self.gw.dir / "handover.sock"))
        msg, fds, _, _ = socket.recv_fds(s, 64, 253)
        try:
            self.assertTrue(msg.startswith(b"CMPGW-HANDOVER 1 "), msg)
            self.assertTrue(msg.endswith(b" confirm\n"), msg)
            s.sendall(say)
            self.assertEqual(s.recv(64), answer)
            self.assertEqual(self.gw.proc.wait(timeout=30), 0, self.gw.stderr()[-3000:])
            self.assertIn("a successor serves the listening sockets", self.gw.stderr())
        finally:
            for fd in fds:
                os.close(fd)
            s.close()
            if self.gw.proc.poll() is None:
                self.gw.proc.wait(timeout=30)
            # the class's gateway is gone: start a fresh one for the other tests
            self.gw._err.close()
            self.gw._out.close()
            self.gw.start()

    def test_ready_is_confirmed(self):
        """A successor that offers to wait for it is told "draining" before the running gateway drains:
        without it the successor stops (Confirmation below), so two never serve on together."""
        self.hand_over_to(b"ready confirm\n", b"draining\n")

    def test_earlier_successor_served(self):
        """A successor of the version before, which reads past the offer, says "ready" and waits for
        nothing, is handed over to as it expects: the running gateway drains, sending nothing more."""
        self.hand_over_to(b"ready\n", b"")

    def test_stopped_while_successor_starts(self):
        """The running gateway stopped (SIGTERM) after it sent its sockets and before the successor said
        "ready" (a script that starts the new gateway and then stops the old one) still confirms: the
        successor serves on and the old one drains and exits 0, instead of both stopping. The successor
        is held before "ready" by a relay on its handover_socket, which passes the sockets on and keeps
        its "ready" until the old gateway, stopping, has answered or closed."""
        d = self.gw.dir
        cfg = json.loads(self.gw.config_path.read_text())
        cfg["handover_socket"] = "held.sock"
        (d / "held.json").write_text(json.dumps(cfg))
        relay = HeldReady(d / "held.sock", d / "handover.sock")
        old = self.gw.proc
        err = open(d / "held.stderr", "wb")
        new = subprocess.Popen([str(harness.GATEWAY_BIN), "-c", str(d / "held.json")], cwd=d,
                               stdout=subprocess.DEVNULL, stderr=err, env=self.gw.env())
        try:
            self.assertTrue(relay.held.wait(harness.START_TIMEOUT), (d / "held.stderr").read_text()[-3000:])
            old.send_signal(signal.SIGTERM)
            relay.release.set()
            self.assertEqual(old.wait(timeout=60), 0, self.gw.stderr()[-3000:])
            relay.thread.join(30)
            text = (d / "held.stderr").read_text()
            self.assertIsNone(new.poll(), text[-3000:])
            self.assertNotIn("did not confirm", text)
            self.assertIn("serves the listening sockets; this gateway drains", self.gw.stderr())
            self.assertIsNotNone(self.enrol("after-stopped-hand-over")[0])
            new.send_signal(signal.SIGTERM)
            self.assertEqual(new.wait(timeout=30), 0)
        finally:
            relay.close()
            if new.poll() is None:
                new.kill()
                new.wait()
            err.close()
            for mark in harness.SANITIZER_MARKS:
                self.assertNotIn(mark, (d / "held.stderr").read_text())
            if old.poll() is None:
                old.kill()
                old.wait()
            # the class's gateway is gone: start a fresh one for the other tests
            self.gw._err.close()
            self.gw._out.close()
            self.gw.start()

    def test_successor_in_open_directory_takes_nothing(self):
        """A successor whose handover_socket directory others may write (no sticky bit) would refuse
        to serve the socket there: it refuses before it asks for the sockets (here through a link in
        such a directory to the running gateway's socket), which hands nothing over and serves on."""
        d = self.gw.dir
        (d / "open").mkdir()
        (d / "open").chmod(0o777)
        (d / "open" / "handover.sock").symlink_to(d / "handover.sock")
        cfg = json.loads(self.gw.config_path.read_text())
        cfg["handover_socket"] = "open/handover.sock"
        (d / "open.json").write_text(json.dumps(cfg))
        with open(d / "open.stderr", "wb") as err:
            new = subprocess.Popen([str(harness.GATEWAY_BIN), "-c", str(d / "open.json")], cwd=d,
                                   stdout=subprocess.DEVNULL, stderr=err, env=self.gw.env())
            try:
                rc = new.wait(timeout=30)
            finally:
                shutil.rmtree(d / "open")
        self.assertNotEqual(rc, 0)
        text = (d / "open.stderr").read_text()
        self.assertIn("handover_socket: the directory", text)
        self.assertIn("without the sticky bit (mode 0777)", text)
        self.assertNotIn("took", text)
        self.assertNotIn("sent to pid %d" % new.pid, self.gw.stderr())
        self.assertIsNone(self.gw.proc.poll())
        self.assertIsNotNone(self.enrol("after-open-directory")[0])

    def test_other_user_gets_nothing(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to be another user")
        nobody = pwd.getpwnam("nobody")
        path = self.gw.dir / "handover.sock"
        os.chmod(path, 0o666)  # past the file mode: the gateway itself must refuse
        for d in (self.gw.dir.parent, self.gw.dir):
            os.chmod(d, 0o711)
        script = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
                  "m,f,_,_=socket.recv_fds(s,64,253)\nprint(len(f))\n")
        p = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                           preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)), timeout=30)
        self.assertEqual(p.stdout.strip(), "0", p.stderr)
        self.assertIn("refused a hand-over to uid %d" % nobody.pw_uid, self.gw.stderr())
        self.assertIsNotNone(self.enrol("after-refusal")[0])


class HeldReady:
    """A hand-over socket at |path| relaying to the running gateway's at |to|: it passes the sockets on,
    holds the successor's "ready" (|held| set) until |release| is set and the running gateway has said
    something or closed, then passes it on and relays the rest."""

    def __init__(self, path, to):
        self.to = str(to)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.srv.settimeout(harness.START_TIMEOUT)
        self.held, self.release = threading.Event(), threading.Event()
        self.socks = [self.srv]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            succ, _ = self.srv.accept()
            pred = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.socks += [succ, pred]
            pred.connect(self.to)
            msg, fds, _, _ = socket.recv_fds(pred, 64, 253)
            socket.send_fds(succ, [msg], fds)
            for fd in fds:
                os.close(fd)
            succ.settimeout(harness.START_TIMEOUT)
            ready = succ.recv(64)
            self.held.set()
            self.release.wait(harness.START_TIMEOUT)
            select.select([pred], [], [], harness.START_TIMEOUT)  # its answer to the stop, or its close
            try:
                pred.sendall(ready)
            except OSError:
                pass
            pred.settimeout(harness.START_TIMEOUT)
            while True:
                data = pred.recv(64)
                if not data:
                    break
                succ.sendall(data)
        except OSError:
            pass
        finally:
            self.close()

    def close(self):
        for s in self.socks:
            s.close()


class Relay:
    """A loopback port whose one client is piped to |sock|, a connection to the gateway opened earlier:
    a client run later talks to whichever process accepted that connection."""

    def __init__(self, sock):
        self.sock = sock
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self.pipe, daemon=True)
        self.thread.start()

    def pipe(self):
        with self.srv, self.sock:
            client, _ = self.srv.accept()
            with client:
                ends = {client: self.sock, self.sock: client}
                while True:
                    ready, _, _ = select.select(list(ends), [], [], harness.CLIENT_TIMEOUT)
                    data = ready[0].recv(65536) if ready else b""
                    if not data:
                        return
                    ends[ready[0]].sendall(data)


class RevokedDuringHandOver(harness.GatewayTestCase):
    """With "cmp.revoked_file", a certificate revoked on a connection the draining predecessor still
    answers is refused by the successor at once, and one revoked on the successor is refused on the
    predecessor's open connection: each follows what the other appends to the file. Both answer rr
    before its line is on disk, so nothing a client sees after its rp finds the other unaware.
    The upstream checks no revocation: only the set can refuse."""

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["handover_socket"] = "handover.sock"
        cfg["upstreams"]["local"]["check_revocation"] = False
        cfg["cmp"] = {"revoked_file": "revoked.list"}

    def rr(self, name, cert, key, port):
        res = self.gw.cmp("rr", name, auth=(cert, key), extra=("-oldcert", cert, "-revreason", "1"),
                          expect_cert=False, port=port)
        self.assertEqual((res.first.body_type, res.first.status), ("rp", 0), res.stderr)

    def assert_kur_refused(self, name, cert, key, port=None):
        kur = self.gw.cmp("kur", name, auth=(cert, key), newkey=self.newkey(name), extra=("-implicit_confirm",),
                          expect_cert=False, port=port)
        self.assert_cmp_error(kur.first, ("kup",), "certRevoked",
                              "the signer certificate (serial %s) is revoked" % harness.serial_hex(cert).lower())

    @staticmethod
    def answered(stderr):
        return [(r["req_type"], r["identity"]) for r in log_events(stderr, "request")
                if r.get("req_type") in ("rr", "kur")]

    def test_revocation_reaches_the_other_side(self):
        d = self.gw.dir
        old_cert, old_key = self.enrol("rr-on-old")
        new_cert, new_key = self.enrol("rr-on-new")
        # connections the old gateway accepts before the hand-over, used once the new one serves
        kept = [socket.create_connection(("127.0.0.1", self.gw.port)) for _ in range(2)]
        relays = [Relay(s) for s in kept]
        self.assertTrue(harness.settled(lambda: harness.accepted(self.gw, kept), bool))
        old = self.gw.proc
        err = open(d / "successor.stderr", "wb")
        new = subprocess.Popen([str(harness.GATEWAY_BIN), "-c", str(self.gw.config_path)], cwd=d,
                               stdout=subprocess.DEVNULL, stderr=err, env=self.gw.env())
        try:
            self.assertIn("a successor serves the listening sockets",
                          harness.settled(self.gw.stderr, lambda t: "a successor serves the listening sockets" in t))
            self.rr("old-rr", old_cert, old_key, relays[0].port)
            self.assert_kur_refused("old-kur", old_cert, old_key)
            self.rr("new-rr", new_cert, new_key, None)
            self.assert_kur_refused("new-kur", new_cert, new_key, relays[1].port)
            self.assertEqual(old.wait(timeout=30), 0, self.gw.stderr()[-3000:])
            self.assertIsNone(new.poll(), (d / "successor.stderr").read_text()[-3000:])
            # each was answered where it was meant to be
            self.assertEqual(self.answered(self.gw.stderr_path), [("rr", "/CN=rr-on-old"), ("kur", "/CN=rr-on-new")])
            self.assertEqual(self.answered(d / "successor.stderr"), [("kur", "/CN=rr-on-old"), ("rr", "/CN=rr-on-new")])
            # two lines per revocation: the keyed entry and the marked one by issuer and serial
            self.assertEqual(len((d / "revoked.list").read_text().splitlines()), 4)
        finally:
            new.send_signal(signal.SIGTERM)
            self.assertEqual(new.wait(timeout=30), 0)
            err.close()
            for mark in harness.SANITIZER_MARKS:
                self.assertNotIn(mark, (d / "successor.stderr").read_text())
            self.gw._err.close()
            self.gw._out.close()
            self.gw.start()


class Confirmation(unittest.TestCase):
    """A predecessor that reads "ready" but does not confirm it drains (it gave up waiting, and serves
    on) makes the successor stop, non-zero: each of two serving on would keep its own replays,
    transactions and failed-auth budget."""

    def fake_predecessor(self, gw, listener, said):
        """Hands |listener| to the one connecting at gw's handover socket, reads its "ready" into |said|
        and closes without a word more."""
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(gw.dir / "handover.sock"))
        srv.listen(1)
        srv.settimeout(harness.START_TIMEOUT)

        def run():
            try:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(harness.START_TIMEOUT)
                    socket.send_fds(conn, [b"CMPGW-HANDOVER 1 1 confirm\n"], [listener.fileno()])
                    said.append(conn.recv(64))
            except OSError as e:
                said.append(repr(e))
            finally:
                srv.close()
        t = threading.Thread(target=run)
        t.start()
        return t

    def test_unconfirmed_successor_stops(self):
        import tempfile
        from pathlib import Path
        tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        listener = None
        try:
            def edit(cfg, g):
                cfg.pop("admin")
                cfg["handover_socket"] = "handover.sock"
            gw = harness.Gateway(tmp / "pki", edit)
            listener = socket.create_server(("127.0.0.1", gw.port))
            said = []
            t = self.fake_predecessor(gw, listener, said)
            with open(gw.stderr_path, "wb") as err:
                proc = subprocess.Popen([str(harness.GATEWAY_BIN), "-c", str(gw.config_path)], cwd=gw.dir,
                                        stdout=subprocess.DEVNULL, stderr=err, env=gw.env())
                try:
                    rc = proc.wait(timeout=60)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            t.join(30)
            self.assertEqual(said, [b"ready confirm\n"])
            self.assertNotEqual(rc, 0, gw.stderr()[-3000:])
            self.assertIn("the predecessor did not confirm that it drains", gw.stderr())
            self.assertNotIn("clean shutdown", gw.stderr())
            for mark in harness.SANITIZER_MARKS:
                self.assertNotIn(mark, gw.stderr())
            # the predecessor's listener still stands, for it to serve on
            socket.create_connection(("127.0.0.1", gw.port), timeout=5).close()
        finally:
            if listener is not None:
                listener.close()
            shutil.rmtree(tmp, ignore_errors=True)


class SocketActivation(unittest.TestCase):

    def test_activated_socket_served(self):
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            self.skipTest("systemd-socket-activate is not installed")
        import tempfile
        from pathlib import Path
        tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        try:
            gw = harness.Gateway(tmp / "pki", lambda cfg, g: cfg.pop("admin"))
            gw._err = open(gw.stderr_path, "wb")
            gw._out = open(gw.stdout_path, "wb")
            env = gw.env()
            # it passes the program only the variables named with -E (the sanitizers' among them)
            keep = [a for k in ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS") if k in env for a in ("-E", k)]
            gw.proc = subprocess.Popen([activate, "-l", "127.0.0.1:%d" % gw.port] + keep +
                                       [str(harness.GATEWAY_BIN), "-c", str(gw.config_path)], cwd=gw.dir,
                                       stdout=gw._out, stderr=gw._err, env=env)
            gw.wait_ready()
            try:
                key = harness.genkey(gw.dir / "act.key")
                res = gw.cmp("ir", "act", newkey=key, subject="/CN=activated", extra=("-implicit_confirm",))
                self.assertIsNotNone(res.cert)
                self.assertIn("socket activation", gw.stderr())
                self.assertIn("(inherited socket)", gw.stderr())
            finally:
                gw.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main()
