"""cmpgw under systemd's protocol: a real gateway started with NOTIFY_SOCKET pointing at a datagram
socket of this test sends READY=1 once it serves, WATCHDOG=1 while it runs (WATCHDOG_USEC set),
RELOADING=1 then READY=1 again on SIGHUP, and STOPPING=1 on SIGTERM; WATCHDOG=1 goes on while a SIGHUP
reload waits for an upstream that never answers (a real `cfssl serve` stopped with SIGSTOP), a SIGTERM
ends such a reload and drains at once, a SIGHUP whose thread cannot start is tried again, and a reload
stops a health probe that one holds (the Vault-API test server, stopped likewise); a start refused for
its configuration exits 78, which the unit does not restart, and one a retry may mend 1; and
deploy/systemd/cmpgw.service passes `systemd-analyze verify` (silent) and `systemd-analyze security
--offline=true --threshold=30`, as does cmpgw.socket the first."""
import contextlib
import errno
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import cfsslenv  # noqa: E402
import harness  # noqa: E402
import vaultenv  # noqa: E402


class Notify(unittest.TestCase):

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.path = str(self.tmp / "notify.sock")
        self.sock.bind(self.path)
        self.sock.settimeout(0.5)

    def tearDown(self):
        self.sock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def messages(self, want, timeout=10):
        """Datagrams received until one holds |want|; fails after |timeout| seconds."""
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                continue
            if any(want in m.split("\n") for m in got):
                return got
        self.fail("no %s in %r" % (want, got))

    @contextlib.contextmanager
    def notifying(self, edit=None, **env):
        """A gateway of the demo's configuration (as |edit| changes it), started with this test's
        NOTIFY_SOCKET and |env|, stopped after."""
        gw = harness.Gateway(self.tmp / "pki", edit_config=edit, widen=False)
        gw.start(extra_env=dict(env, NOTIFY_SOCKET=self.path))
        try:
            yield gw
        finally:
            gw.stop()

    @contextlib.contextmanager
    def reload_held(self, **env):
        """A gateway (notifying) whose SIGHUP reload waits for a real `cfssl serve` that nothing listened for at
        the start (the gateway starts without its CA certificate), started then and stopped (SIGSTOP) before
        the reload, with a timeout of a minute: yielded once the reload's request for that certificate waits
        at cfssl unread. cfssl goes on (SIGCONT) before the gateway stops, and ends after the test."""
        cfssl = None

        def edit(cfg, gw):
            nonlocal cfssl
            cfssl = cfsslenv.Cfssl(gw.dir)
            self.addCleanup(cfssl.stop)
            cfssl.make_pki()
            cfg["upstreams"]["held"] = cfssl.upstream(timeout="60s", probe_interval=0)

        with self.notifying(edit, **env) as gw:
            self.messages("READY=1")
            cfssl.start()
            with harness.stopped(cfssl.proc):
                gw.proc.send_signal(signal.SIGHUP)
                self.messages("RELOADING=1", timeout=5)
                if not harness.settled(lambda: harness.waiting(cfssl.port), bool):
                    self.fail("the reload asked the stopped cfssl nothing")
                yield gw

    def test_ready_watchdog_reloading_stopping(self):
        # the demo's configuration as deploy/demo-pki.sh writes it: nothing here asks for a name
        with self.notifying(WATCHDOG_USEC="1000000") as gw:
            first = self.messages("READY=1")
            self.assertTrue(any(m.startswith("READY=1\nSTATUS=") for m in first), first)
            self.messages("WATCHDOG=1", timeout=5)
            gw.proc.send_signal(signal.SIGHUP)
            reloading = self.messages("RELOADING=1", timeout=5)
            self.assertTrue(any("MONOTONIC_USEC=" in m for m in reloading), reloading)
            after = self.messages("READY=1", timeout=10)
            self.assertTrue(any(m.startswith("READY=1\nSTATUS=serving (reloaded)") for m in after), after)
        self.messages("STOPPING=1", timeout=5)

    def test_watchdog_pinged_while_a_reload_waits_for_an_upstream(self):
        """A cfssl that nothing listens for at the start (the gateway starts without its CA certificate),
        and that is stopped (SIGSTOP) when the reload asks it for that certificate, with a timeout of a
        minute: the SIGHUP reload waits for it, and the watchdog's pings, which the main thread sends, go on
        meanwhile (a reload on the main thread missed them for the upstream's whole timeout, and systemd's
        WatchdogSec= killed the gateway)."""
        with self.reload_held(WATCHDOG_USEC="1000000"):
            # a reload that held the main thread pinged nothing for the upstream's 60 s
            self.messages("WATCHDOG=1", timeout=5)
            self.messages("WATCHDOG=1", timeout=5)

    def test_sigterm_ends_a_reload_that_waits_for_an_upstream(self):
        """A SIGHUP reload waits for a cfssl, stopped (SIGSTOP), that it asks for its CA certificate,
        with a timeout of a minute; a SIGTERM meanwhile cuts that call short: the reload is
        refused (the configuration it loaded is not swapped in), the gateway drains and exits within a
        few seconds, and says nothing is ready after STOPPING=1 (the main thread waited for the reload's
        lock for the upstream's whole timeout, while the listeners went on accepting, and systemd's
        TimeoutStopSec= killed it with no drain)."""
        with self.reload_held() as gw:
            gw.signal_stop()
            after = self.messages("STOPPING=1", timeout=5)
            # the held call's timeout is a minute: an exit within 15 s is the only sign that the stop cut it
            self.assertEqual(gw.wait_exit(timeout=15), 0)
            proc, gw.proc = gw.proc, None
            gw.check_stderr()
            try:
                while True:
                    after.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
            said = after[next(i for i, m in enumerate(after) if "STOPPING=1" in m.split("\n")):]
            self.assertFalse([m for m in said if "READY=1" in m.split("\n")], said)
            events = [e["event"] for e in gw.log_lines()
                      if e.get("event") in ("stopping", "reload_refused", "reloaded", "stopped")]
            self.assertEqual(events, ["stopping", "reload_refused", "stopped"])
            refused = next(e for e in gw.log_lines() if e.get("event") == "reload_refused")
            self.assertIn("the gateway is stopping", refused.get("error", ""))

    def test_sighup_retried_when_its_thread_cannot_start(self):
        """A SIGHUP whose reload thread cannot start (the address space capped just above what the
        gateway maps, so no thread stack fits) is said in a `reload` warning and tried again each second
        on the main thread's tick: once the cap is lifted the reload runs, RELOADING=1 then READY=1
        (the main thread took the reload lock itself, waiting for any reload in progress, and said
        READY=1 "last reload refused" with no RELOADING=1 before it, and nothing tried again)."""
        with self.notifying() as gw:
            self.messages("READY=1")
            pid = gw.proc.pid
            was = resource.prlimit(pid, resource.RLIMIT_AS)
            with open("/proc/%d/status" % pid) as f:
                size = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
            resource.prlimit(pid, resource.RLIMIT_AS, (size + (2 << 20), was[1]))
            try:
                gw.proc.send_signal(signal.SIGHUP)
                cut = harness.settled(lambda: [l for l in gw.log_lines() if "reload's thread" in json.dumps(l)],
                                      bool, timeout=10)
            finally:
                resource.prlimit(pid, resource.RLIMIT_AS, was)
            self.assertEqual([(l.get("event"), l.get("level")) for l in cut], [("reload", "warn")], cut)
            after = self.messages("READY=1", timeout=10)
            said = [m for m in after if "READY=1" in m.split("\n") or "RELOADING=1" in m.split("\n")]
            self.assertTrue(said[0].startswith("RELOADING=1"), said)
            self.assertTrue(said[-1].startswith("READY=1\nSTATUS=serving (reloaded)"), said)
            self.assertFalse([l for l in gw.log_lines() if l.get("event") == "reload_refused"])

    def test_reload_stops_a_probe_in_progress(self):
        """The Vault-API server, stopped (SIGSTOP) with a health probe's request waiting at it unread, with a
        timeout of a minute: the SIGHUP reload that retires the probing configuration stops its probe within
        a second or so, and is done (READY=1) long before the probe's timeout, which it waited for before."""
        vault = None

        def edit(cfg, gw):
            nonlocal vault
            vault = vaultenv.VaultApi(gw.dir)
            self.addCleanup(vault.stop)
            vault.make_pki()
            vault.start()
            cfg["upstreams"]["held"] = vault.upstream(timeout="60s", probe_interval=1)

        with self.notifying(edit) as gw:
            self.messages("READY=1")
            with harness.stopped(vault.proc):
                if not harness.settled(lambda: harness.waiting(vault.port), bool):
                    self.fail("no probe reached the stopped Vault")
                gw.proc.send_signal(signal.SIGHUP)
                self.messages("RELOADING=1", timeout=5)
                after = self.messages("READY=1", timeout=10)
                self.assertTrue(any(m.startswith("READY=1\nSTATUS=serving (reloaded)") for m in after), after)


class ExitStatus(unittest.TestCase):
    """A start refused for its configuration exits 78 (EX_CONFIG), as `cmpgw check` does, which the unit does
    not restart; one a retry may mend (a port in use) exits 1, which it does."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def check(self, gw):
        return subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)], cwd=gw.dir,
                              capture_output=True, text=True, timeout=60, env=gw.env())

    def test_missing_key_file_exits_78(self):
        """It exited 1, as any failed start, and systemd started it again every RestartSec."""
        gw = harness.Gateway(self.tmp / "pki", lambda cfg, gw: cfg["signer"].update(key="missing.key"))
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)
        self.assertIn("missing.key", err)
        check = self.check(gw)
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)

    def test_port_in_use_exits_1(self):
        """The twin: a listener's port another process holds refuses the start with 1, which the unit
        restarts (the port may be let go); `cmpgw check`, which binds nothing, passes."""
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(held.close)
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        gw = harness.Gateway(self.tmp / "pki", lambda cfg, gw: cfg["listeners"][0].update(port=port))
        rc, err = gw.start_refused()
        self.assertEqual(rc, 1, err)
        check = self.check(gw)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    @staticmethod
    def weak_listener_cert(cfg, gw):
        """The listener's certificate and key: RSA-1024, which the load reads but libssl's security level
        refuses (ee key too small) as the listener's TLS context is built."""
        d = gw.dir
        harness.run(["openssl", "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", d / "weak.key",
                     "-subj", "/CN=127.0.0.1", "-out", d / "weak.csr"])
        (d / "weak.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        harness.run(["openssl", "x509", "-req", "-in", d / "weak.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                     "-set_serial", "0x5eed", "-days", "30", "-extfile", d / "weak.ext", "-out", d / "weak.pem"])
        (d / "weak.key").chmod(0o600)
        cfg["listeners"][0]["tls"].update(cert="weak.pem", key="weak.key")

    def test_listener_cert_libssl_refuses_exits_78(self):
        """A listener certificate the load reads but libssl refuses (RSA-1024, below the security level): `cmpgw
        check` refuses it with OpenSSL's reason and the start exits 78, which the unit does not restart. The
        check built no TLS context and passed, and the start, which builds them, exited 1 and was restarted
        every 2 s for a file no retry mends."""
        gw = harness.Gateway(self.tmp / "pki", self.weak_listener_cert)
        said = re.compile(r"listener 127\.0\.0\.1:%d: tls\.cert \S*weak\.pem: .*ee key too small" % gw.port)
        check = self.check(gw)
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertRegex(check.stderr, said)
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)
        self.assertRegex(err, said)

    @staticmethod
    def vault_upstream(cfg):
        """A vault upstream whose token_file is vault.token of the work dir: the start fails before it asks
        Vault anything."""
        cfg["upstreams"]["vault"] = {"type": "vault", "url": "https://127.0.0.1:%d" % harness.free_port(),
                                     "tls_ca": "ca.pem", "issuer_ca": "ca.pem", "token_file": "vault.token"}

    def test_vault_token_file_missing_exits_1(self):
        """A token_file not there at start is not written yet (Vault Agent writes it once it has logged in,
        perhaps after the gateway's start at boot): 1, which the unit restarts until it is. It exited 78, and
        the service stayed down. `cmpgw check` refuses it still, and exits as the start would, 1 (it exited 78
        while the start exited 1)."""
        gw = harness.Gateway(self.tmp / "pki", lambda cfg, gw: self.vault_upstream(cfg))
        rc, err = gw.start_refused()
        self.assertEqual(rc, 1, err)
        self.assertIn("$.upstreams.vault.token_file", err)
        self.assertIn("No such file or directory", err)
        check = self.check(gw)
        self.assertEqual(check.returncode, 1, check.stdout + check.stderr)
        self.assertIn("$.upstreams.vault.token_file", check.stderr)
        self.assertNotIn("OK", check.stdout)

    def test_vault_token_file_open_to_others_exits_78(self):
        """The twin: a token_file there that others may read is refused for good, as before."""
        gw = harness.Gateway(self.tmp / "pki", lambda cfg, gw: self.vault_upstream(cfg))
        (gw.dir / "vault.token").write_text("hvs.CAESIGatewayTokenForE2E\n")
        (gw.dir / "vault.token").chmod(0o644)
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)
        self.assertIn("readable or writable by others", err)

    def without_descriptors(self, gw, where, *command):
        """|gw| started (or `cmpgw |command|` run on its file) with RLIMIT_NOFILE cut low with `prlimit --nofile`,
        the lowest that lets the load reach the check of |where| (the store's walk holds two at once): that
        process."""
        for n in range(3, 16):
            p = subprocess.run(["prlimit", "--nofile=%d" % n, "--", str(harness.GATEWAY_BIN), *command, "-c",
                                str(gw.config_path)], cwd=gw.dir, capture_output=True, text=True, timeout=60,
                               env=gw.env())
            if where + ": " in p.stderr and os.strerror(errno.EMFILE) in p.stderr:
                return p
            if "while loading shared libraries" not in p.stderr and ("event" in p.stderr or "OK" in p.stdout):
                self.fail("past %s's check with %d descriptors, or failed before it: %s" % (where, n, p.stderr))
        self.fail("no limit of descriptors failed %s's check" % where)

    def test_store_without_descriptors_exits_1(self):
        """A local issuer's store that cannot be opened for descriptors run out: 1, which the unit restarts; and
        from `cmpgw check` alike, where the audit log's directory is judged first. The start exited 78, and the
        service stayed down; then the check still did. The twin: a store its group may write stays 78."""
        gw = harness.Gateway(self.tmp / "pki", harness.keep_store)
        for where, command in (("upstreams.local.store", ()), ("audit.file", ("check",))):
            with self.subTest(command=command):
                said = self.without_descriptors(gw, where, *command)
                self.assertEqual(said.returncode, 1, said.stderr)
        (gw.dir / "store").chmod(0o770)
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)
        self.assertIn("writable by group or others", err)

    @staticmethod
    def as_user(name):
        def edit(cfg, gw):
            cfg.pop("run_as_root", None)
            cfg["user"] = name
        return edit

    @unittest.skipUnless(os.geteuid() == 0, "needs root: only root changes its user")
    def test_unknown_user_exits_1(self):
        """A "user" NSS does not have: 1, which the unit restarts, for the start cannot tell it from a user of a
        directory service not answering yet (the hesiod twin below). It exited 78, and such a user left the
        service down for good. The message says both."""
        gw = harness.Gateway(self.tmp / "pki", self.as_user("cmpgw-e2e-no-such-user"))
        rc, err = gw.start_refused()
        self.assertEqual(rc, 1, err)
        self.assertIn('unknown user \\"cmpgw-e2e-no-such-user\\" (or a directory service, sssd or LDAP, not '
                      'answering yet: they read the same)', err)

    @unittest.skipUnless(os.geteuid() == 0, "needs root: only root changes its user")
    def test_user_of_uid_0_exits_78(self):
        """A "user" that is root (uid 0, whatever its name) could not give root up: refused by the load, at
        start and by `cmpgw check` alike, with 78 and what to write instead. The start exited 1 when the change
        of user found it could still become root, and the unit restarted it every 2 s, its log naming a
        stale errno; the check refused it with 78."""
        root = pwd.getpwuid(0).pw_name
        gw = harness.Gateway(self.tmp / "pki", self.as_user(root))
        said = '$.user: \\"%s\\" is uid 0: running as root needs \\"run_as_root\\": true and no \\"user\\"' % root
        rc, err = gw.start_refused()
        self.assertEqual(rc, 78, err)
        self.assertIn(said, err)
        check = self.check(gw)
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn(said.replace("\\", ""), check.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "needs root: only root looks the user up in the load")
    def test_check_exits_as_the_start(self):
        """`cmpgw check` run as root, as the start is, refuses a configuration whose load fails, and exits with
        the start's status for its class: 1 for a "user" NSS does not have, as the start's; 78 for a file not
        there, as the start's. It exited 78 for any load that failed, while the start exited 1."""
        for user, edit, want, said in (
                ("cmpgw-e2e-no-such-user", self.as_user("cmpgw-e2e-no-such-user"), 1,
                 'unknown user "cmpgw-e2e-no-such-user"'),
                ("missing-key", lambda cfg, gw: cfg["signer"].update(key="missing.key"), 78, "missing.key")):
            with self.subTest(user):
                gw = harness.Gateway(self.tmp / user, edit)
                rc, err = gw.start_refused()
                check = self.check(gw)
                self.assertEqual((rc, check.returncode), (want, want), err + check.stdout + check.stderr)
                self.assertIn(said, check.stderr)
                self.assertNotIn("OK", check.stdout)

    @staticmethod
    def nsswitch_dir_then_files():
        return "passwd: hesiod files\ngroup: hesiod files\n"

    def start_lookup_failing(self, gw, *command, prefix=(), nsswitch="passwd: hesiod\ngroup: hesiod\n"):
        """|gw| started (or its |command|, "check" or the like, run) where every user and group lookup fails
        (NSS's directory service not answering, as sssd or LDAP at boot; here hesiod without its configuration,
        in a mount namespace of the gateway's own), behind |prefix| (setpriv, say): the finished process.
        |nsswitch|: the nsswitch.conf it sees."""
        nss = self.tmp / "nsswitch.conf"
        nss.write_text(nsswitch)
        return subprocess.run(["unshare", "--mount", "--", "sh", "-c", 'mount --bind "$0" /etc/nsswitch.conf && '
                               'exec "$@"', str(nss)] + list(prefix) + [str(harness.GATEWAY_BIN)]
                              + list(command) + ["-c", str(gw.config_path)],
                              cwd=gw.dir, capture_output=True, text=True, timeout=60, env=gw.env())

    lookup_fails = unittest.skipUnless(
        os.geteuid() == 0 and shutil.which("unshare") and not os.path.exists("/etc/hesiod.conf")
        and subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0,
        "needs root, a mount namespace (unshare, util-linux) and no /etc/hesiod.conf")

    @lookup_fails
    def test_user_lookup_failing_exits_1(self):
        """The twin: the user's lookup that fails is not an unknown user, and another try may mend it: 1,
        which the unit restarts. It exited 78."""
        gw = harness.Gateway(self.tmp / "pki", self.as_user("cmpgw-e2e-no-such-user"))
        p = self.start_lookup_failing(gw)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('cannot look up user \\"cmpgw-e2e-no-such-user\\"', p.stderr)

    @lookup_fails
    def test_directory_user_not_answering_before_files_exits_1(self):
        """A directory service not answering yet, then files (`passwd: hesiod files`, as RHEL's `sss files`
        while sssd is late at boot): glibc says "no such user" for a user of that directory, whom files do not
        have. The start cannot tell it from a name the system does not have: 1, which the unit restarts until
        the directory answers. It exited 78, and the service stayed down."""
        gw = harness.Gateway(self.tmp / "pki", self.as_user("cmpgw-e2e-directory-user"))
        p = self.start_lookup_failing(gw, nsswitch=self.nsswitch_dir_then_files())
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn('unknown user \\"cmpgw-e2e-directory-user\\" (or a directory service', p.stderr)

    @lookup_fails
    def test_user_lookup_failing_with_the_users_directories_exits_1(self):
        """The packaged layout, the user's lookup failing: the local issuer's store, or the audit log's
        directory, the user's (nobody's here): 1, neither refused. The load judged them against root's uid
        when the lookup failed, refused a directory another user owns, and exited 78, for good."""
        nobody = pwd.getpwnam("nobody")
        for which in ("store", "log"):
            with self.subTest(which):
                work = self.tmp / which
                work.mkdir()

                def edit(cfg, gw):
                    self.as_user("nobody")(cfg, gw)
                    if which == "store":
                        harness.keep_store(cfg, gw)
                    else:
                        cfg["audit"] = {"file": str(work / "log" / "audit.log")}
                gw = harness.Gateway(work / "pki", edit)
                mine = gw.dir / "store" if which == "store" else work / "log"
                mine.mkdir(mode=0o700, exist_ok=True)
                os.chown(mine, nobody.pw_uid, nobody.pw_gid)
                p = self.start_lookup_failing(gw)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn('cannot look up user \\"nobody\\"', p.stderr)


    @lookup_fails
    def test_user_lookup_failing_in_inventory_and_report_exits_1(self):
        """`cmpgw inventory` and `cmpgw report` run as root, the user's lookup failing as it does at boot: 1, as
        the start's, for their load gives the same class. They exited 78, as for a configuration refused; an
        unknown user exits 1 too, as the start's (it exited 78)."""
        for user, want, said in (("nobody", 1, '$.user: cannot look up user "nobody"'),
                                 ("cmpgw-e2e-no-such-user", 1, '$.user: unknown user "cmpgw-e2e-no-such-user"')):
            gw = harness.Gateway(self.tmp / user, self.as_user(user))
            for command in ("inventory", "report"):
                with self.subTest(command=command, user=user):
                    p = self.start_lookup_failing(gw, command) if user == "nobody" else subprocess.run(
                        [str(harness.GATEWAY_BIN), command, "-c", str(gw.config_path)], cwd=gw.dir,
                        capture_output=True, text=True, timeout=60, env=gw.env())
                    self.assertEqual(p.returncode, want, p.stdout + p.stderr)
                    self.assertIn(said, p.stderr)

    @lookup_fails
    def test_user_lookup_failing_in_a_check_not_run_as_root_exits_1(self):
        """`cmpgw check` run by a user other than root looks up the configured user itself, to judge the files
        the gateway writes as that user's: where that lookup fails, 1, as the start's. It exited 78 for any
        failure; an unknown user exits 1 too, as the start's (it exited 78)."""
        nobody = pwd.getpwnam("nobody")
        as_nobody = ("setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid, "--clear-groups")
        self.tmp.chmod(0o755)
        for user, want in (("nobody", 1), ("cmpgw-e2e-no-such-user", 1)):
            with self.subTest(user=user):
                gw = harness.Gateway(self.tmp / user, self.as_user(user))
                for f in [gw.dir] + list(gw.dir.rglob("*")):
                    os.chown(f, nobody.pw_uid, nobody.pw_gid)
                if user == "nobody":
                    p = self.start_lookup_failing(gw, "check", prefix=as_nobody)
                else:
                    p = subprocess.run(list(as_nobody) + [str(harness.GATEWAY_BIN), "check", "-c",
                                                          str(gw.config_path)], cwd=gw.dir, capture_output=True,
                                       text=True, timeout=60, env=gw.env())
                self.assertEqual(p.returncode, want, p.stdout + p.stderr)
                self.assertIn("$.user: ", p.stderr)


class Unit(unittest.TestCase):

    def test_refused_configuration_not_restarted(self):
        """The unit restarts a failed start but for exit status 78, the configuration refused (a wrong PIN
        would otherwise spend the token's PIN tries, one every RestartSec), and runs no `cmpgw check` as
        ExecStartPre=: systemd applies RestartPreventExitStatus= to the main process only, so a check that
        refused would be restarted all the same."""
        lines = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text().splitlines()

        def values(key):
            return [v for l in lines if l.startswith(key + "=") for v in l.split("=", 1)[1].split()]
        self.assertEqual(values("Restart"), ["on-failure"])
        self.assertIn("78", values("RestartPreventExitStatus"))
        self.assertEqual(values("ExecStartPre"), [])
        self.assertEqual(values("ExecStart"), ["/usr/bin/cmpgw", "-c", "/etc/cmpgw/cmpgw.json"])

    def test_waits_for_the_mounts_it_writes(self):
        """The stores and the audit log's directories on a mount not there yet would refuse the start (78, not
        restarted): the unit waits for their mounts. It did not say RequiresMountsFor=."""
        lines = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text().splitlines()
        mounts = [v for l in lines if l.startswith("RequiresMountsFor=") for v in l.split("=", 1)[1].split()]
        self.assertIn("/var/lib/cmpgw", mounts)
        self.assertIn("/var/log/cmpgw", mounts)

    def test_starts_after_user_lookups_are_served(self):
        """A start before the directory services answer (sssd, nslcd) finds its LDAP user unknown and exits 1,
        to be tried again: the unit is ordered after nss-user-lookup.target, which those services come
        before. It was not."""
        lines = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text().splitlines()
        after = [v for l in lines if l.startswith("After=") for v in l.split("=", 1)[1].split()]
        self.assertIn("nss-user-lookup.target", after)

    def test_starts_after_the_clock_is_synchronised(self):
        """A start on a clock still wrong at boot (a VM's hardware clock days ahead, before NTP) drops the
        entries of cmp.revoked_file whose certificates expired on that clock alone past their keep margin:
        the unit is ordered after time-sync.target. It was ordered after network-online.target alone."""
        lines = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text().splitlines()
        after = [v for l in lines if l.startswith("After=") for v in l.split("=", 1)[1].split()]
        self.assertIn("time-sync.target", after)
        self.assertIn("network-online.target", after)

    def test_unit_verifies(self):
        analyze = shutil.which("systemd-analyze")
        self.assertIsNotNone(analyze, "systemd-analyze (Debian systemd) is installed by deploy/deps.sh")
        with tempfile.TemporaryDirectory() as d:
            unit = Path(d) / "cmpgw.service"
            # verify checks that ExecStart exists: point it at the binary under test
            unit.write_text((harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text()
                            .replace("/usr/bin/cmpgw", str(harness.GATEWAY_BIN)))
            v = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
            self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ""))
            s = subprocess.run([analyze, "security", "--offline=true", "--threshold=30", str(unit)],
                               capture_output=True, text=True)
            self.assertEqual(s.returncode, 0, s.stdout + s.stderr)
            sock = Path(d) / "cmpgw.socket"
            sock.write_text((harness.REPO / "deploy" / "systemd" / "cmpgw.socket").read_text())
            v = subprocess.run([analyze, "verify", str(sock)], capture_output=True, text=True)
            self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ""))

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv (util-linux)")
    def test_root_with_the_units_capabilities_reaches_the_users_audit_log(self):
        """The unit starts cmpgw as root with the capabilities of its CapabilityBoundingSet= only, and the
        package's tmpfiles.d makes /var/log/cmpgw the user's: root must still open the audit log there
        before it becomes the user, or `cmpgw check`, run as root as the start is, refuses it."""
        unit = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text()
        caps = [c for line in unit.splitlines() if line.startswith("CapabilityBoundingSet=")
                for c in line.split("=", 1)[1].split()]
        tmpfiles = (harness.REPO / "deploy" / "debian" / "cmpgw.tmpfiles").read_text().splitlines()
        mode = next(int(l.split()[2], 8) for l in tmpfiles if l.startswith("d /var/log/cmpgw "))
        nobody = pwd.getpwnam("nobody")
        with tempfile.TemporaryDirectory(prefix="cmpgw-e2e-") as tmp:
            d = Path(tmp)
            d.chmod(0o755)
            harness.run(["bash", harness.REPO / "deploy" / "demo-pki.sh", d],
                        env=dict(os.environ, CMPGW_PORT=str(harness.free_port())))
            log = d / "log"
            log.mkdir()
            os.chown(log, nobody.pw_uid, nobody.pw_gid)
            log.chmod(mode)
            os.chown(d / "store", nobody.pw_uid, nobody.pw_gid)  # the local issuer's, which its user writes
            cfg = json.loads((d / "cmpgw.json").read_text())
            cfg["audit"] = {"file": str(log / "audit.log")}
            cfg["user"] = "nobody"
            (d / "cmpgw.json").write_text(json.dumps(cfg))
            bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
            p = subprocess.run(["setpriv", "--bounding-set", bounding, "--", str(harness.GATEWAY_BIN), "check",
                                "-c", str(d / "cmpgw.json")], cwd=d, capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv (util-linux)")
    def test_root_gives_the_audit_log_it_creates_to_the_user(self):
        """Started as root with the unit's capabilities and the package's /var/log/cmpgw (the user's), the
        first start creates the audit log as the user's and group's: as that user, the gateway reopens the
        rotated log on SIGUSR1 and stays ready. The log was root's, and the reopen failed (Permission
        denied) with /readyz at 503 until a restart."""
        unit = (harness.REPO / "deploy" / "systemd" / "cmpgw.service").read_text()
        caps = [c for line in unit.splitlines() if line.startswith("CapabilityBoundingSet=")
                for c in line.split("=", 1)[1].split()]
        tmpfiles = (harness.REPO / "deploy" / "debian" / "cmpgw.tmpfiles").read_text().splitlines()
        mode = next(int(l.split()[2], 8) for l in tmpfiles if l.startswith("d /var/log/cmpgw "))
        nobody = pwd.getpwnam("nobody")
        with tempfile.TemporaryDirectory(prefix="cmpgw-e2e-") as tmp:
            d = Path(tmp) / "pki"
            log = Path(tmp) / "log"

            def edit(cfg):
                cfg.pop("run_as_root", None)
                cfg["user"] = "nobody"
                cfg["audit"] = {"file": str(log / "audit.log")}
            Path(tmp).chmod(0o755)
            gw = harness.Gateway(d, lambda cfg, gw: edit(cfg), widen=False)
            d.chmod(0o755)
            log.mkdir()
            os.chown(log, nobody.pw_uid, nobody.pw_gid)
            log.chmod(mode)
            os.chown(d / "store", nobody.pw_uid, nobody.pw_gid)  # the local issuer's, which its user writes
            bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
            gw._err = open(gw.stderr_path, "wb")
            gw._out = open(gw.stdout_path, "wb")
            gw.proc = subprocess.Popen(["setpriv", "--bounding-set", bounding, "--", str(harness.GATEWAY_BIN),
                                        "-c", str(gw.config_path)], cwd=d, stdout=gw._out, stderr=gw._err,
                                       env=gw.env())
            try:
                gw.wait_ready()
                st = (log / "audit.log").stat()
                self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o7777),
                                 (nobody.pw_uid, nobody.pw_gid, 0o600))
                os.rename(log / "audit.log", log / "audit.log.1")

                def reopens():
                    return [l["event"] for l in gw.log_lines()
                            if l.get("event") in ("audit_reopened", "audit_reopen_failed")]
                gw.proc.send_signal(signal.SIGUSR1)
                self.assertEqual(harness.settled(reopens, lambda r: r, 10), ["audit_reopened"], gw.stderr())
                self.assertEqual((log / "audit.log").stat().st_uid, nobody.pw_uid)
                status, body = harness.admin(gw, "/readyz")
                self.assertEqual(status, 200, body)
            finally:
                gw.stop()


if __name__ == "__main__":
    unittest.main()
