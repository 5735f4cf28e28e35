"""Reload of a real gateway (docs/operations.md, "Reload"): 20 reloads, by SIGHUP and POST /reload,
under a cmpload run with 0 failed enrolments; a broken file refused with its JSON path while the
running configuration keeps serving; a transaction begun before a reload (a polled ir) finishing
after it; a new TLS server certificate, a new role and a new log level taking effect; a listener
moved to another port (and a port that cannot be had refused); the reload metrics; a polling device
that a reload takes off its role's allow-list collects nothing, its certificate withdrawn; polling
devices whose trust anchor a reload removed are refused without their address being blocked; a polling
device whose role, and so path, a reload removed is refused at once, its certificate withdrawn; a new
budget of failed authentications taking effect on an address mid-window, and a lower one that shuts an
address out said once (an IPv6 one by the prefix the gateway started with); a polling device whose
role a reload removed reaches its transaction while the replaced configuration's health probe still
hangs; a change that only a restart applies said at each reload until one puts it back, a file's name
with the one that runs, and no digest of the shared state's password in the gateway's memory."""
import hashlib
import json
import signal
import socket
import subprocess
import threading
import time
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import redisenv  # noqa: E402
from test_admin_token import held  # noqa: E402
import vaultenv  # noqa: E402
from test_abuse import h2_answers, h2_connect, h2_frame, h2_frames, h2_literal  # noqa: E402

admin = harness.admin
metric = harness.metric


def events(gw, event):
    return [l for l in gw.log_lines() if l.get("event") == event]


def wait_events(gw, event, n, what):
    """Waits until |gw| logged more than |n| lines of |event|; fails saying |what| did not happen."""
    lines = harness.settled(lambda: events(gw, event), lambda l: len(l) > n)
    if len(lines) <= n:
        raise harness.Failure("%s: no new %s line\n%s" % (what, event, gw.stderr()[-3000:]))
    return len(lines)


def wait_parked(gw, *names):
    """Waits until the `openssl cmp` of each of |names| (test_polling.cmp_polling) wrote its first answer,
    the ir's "waiting": its transaction is parked and its client polls."""
    firsts = [gw.dir / ("%s.rsp00.der" % name) for name in names]
    missing = harness.settled(lambda: [f.name for f in firsts if not f.exists()], lambda m: not m)
    if missing:
        raise harness.Failure("no first answer in %s\n%s" % (missing, gw.stderr()[-3000:]))


class Reload(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        # one client identity runs the load: room for its transactions
        cfg["cmp"] = {"max_transactions_per_identity": 64, "max_recent_per_identity": 100000}
        cfg["roles"]["slow"] = dict(cfg["roles"]["default"], poll_after="300ms")
        cfg["upstreams"]["slow"] = dict(cfg["upstreams"]["local"], delay="2500ms", store="slow-store")
        (gw.dir / "slow-store").mkdir(exist_ok=True)  # it revokes what nobody may collect
        cfg["roles"]["slow"]["upstream"] = "slow"
        cls.base = json.loads(json.dumps(cfg))

    def write_config(self, cfg):
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))

    def tearDown(self):
        self.write_config(self.base)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def sighup_and_wait(self):
        """SIGHUP, then wait until the gateway logged how the reload ended; returns that line."""
        def ended():
            return [l for l in self.gw.log_lines() if l.get("event") in ("reloaded", "reload_refused")]

        before = len(ended())
        self.gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = ended()
            if len(done) > before:
                return done[-1]
            time.sleep(0.05)
        self.fail("no reload logged after SIGHUP:\n" + self.gw.stderr()[-3000:])

    @unittest.skipUnless(harness.LOAD_BIN, "CMPGW_LOAD_BIN (cmpload) is set by ctest")
    def test_20_reloads_under_load_lose_nothing(self):
        # the load runs until the reloads are done (SIGTERM ends its run, its results printed); its duration
        # only bounds it. A fixed 20 s once had to outlast them: an ASan build beside two others took 12 s for
        # the 20, and 1.5 s more before the load's first request
        load = subprocess.Popen(self.gw.load_argv("/CN=reload-load", 2, 600), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        gen0 = metric(self.gw, "cmpgw_config_generation")
        try:
            wait_events(self.gw, "request", len(events(self.gw, "request")), "the load did not start")
            for i in range(20):
                if i % 2 == 0:
                    line = self.sighup_and_wait()
                    self.assertEqual(line["event"], "reloaded", line)
                else:
                    status, body = admin(self.gw, "/reload", "POST")
                    self.assertEqual(status, 200, body)
                    self.assertIn("reloaded: configuration generation", body)
                # not a condition: spreads the reloads over the load's run, as an operator's would come
                time.sleep(0.1)
            self.assertIsNone(load.poll(), "the load ran through every reload")
        finally:
            load.terminate()
            out, err = load.communicate(timeout=120)
        self.assertEqual(metric(self.gw, "cmpgw_config_generation"), gen0 + 20)
        lines = out.decode().strip().splitlines()
        self.assertTrue(lines, err.decode()[-2000:])
        result = json.loads(lines[-1])
        self.assertEqual(result["errors"], 0, err.decode()[-2000:])
        self.assertGreater(result["enrolments"], 20, result)
        print("load through 20 reloads:", result, file=sys.stderr)
        # the old generations are freed once their requests ended
        retired = harness.settled(lambda: metric(self.gw, "cmpgw_config_generations_retired"), lambda n: n == 0,
                                  timeout=10)
        self.assertEqual(retired, 0, "generations still retired 10 s after the load ended")

    def test_broken_file_refused_running_one_serves(self):
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["default"]["max_ttl"] = "forever"
        self.write_config(cfg)
        ok0 = metric(self.gw, "cmpgw_config_reloads_total", result="refused") or 0
        gen0 = metric(self.gw, "cmpgw_config_generation")
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn("reload refused:", body)
        self.assertIn("$.roles.default.max_ttl", body)
        line = self.sighup_and_wait()
        self.assertEqual(line["event"], "reload_refused", line)
        self.assertIn("$.roles.default.max_ttl", line["error"])
        self.assertEqual(metric(self.gw, "cmpgw_config_last_reload_success"), 0)
        self.assertEqual(metric(self.gw, "cmpgw_config_reloads_total", result="refused"), ok0 + 2)
        self.assertEqual(metric(self.gw, "cmpgw_config_generation"), gen0)
        self.assertIsNotNone(self.enrol("after-refused")[0])
        self.write_config(self.base)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        self.assertEqual(metric(self.gw, "cmpgw_config_last_reload_success"), 1)

    def refused_address_masked(self, address, password, shown):
        """A reload refused for Redis "address" |address|, by POST /reload and by SIGHUP: the answer and the
        log quote it as |shown|, and |password| is in neither."""
        cfg = json.loads(json.dumps(self.base))
        cfg["cmp"] = dict(cfg["cmp"], state={"backend": "redis", "address": address})
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn('$.cmp.state.address: expected a numeric IPv4 or IPv6 address, got "%s"' % shown, body)
        line = self.sighup_and_wait()
        self.assertEqual(line["event"], "reload_refused", line)
        self.assertIn('got "%s"' % shown, line["error"])
        for where in (body, self.gw.stderr()):
            self.assertNotIn(password, where)

    def test_refused_address_password_quoted_masked(self):
        """A Redis "address" with a password in it is quoted with "***" for its userinfo."""
        password = "Hunter2-in-the-address"
        self.refused_address_masked("redis://:%s@127.0.0.1" % password, password, "redis://***@127.0.0.1")

    def test_refused_address_without_scheme_password_quoted_masked(self):
        """So is one written without a scheme, as "user:password@host:port" or ":password@host"."""
        password = "Hunter3-in-the-address"
        self.refused_address_masked("cmpgw:%s@127.0.0.1:6379" % password, password, "***@127.0.0.1:6379")
        self.refused_address_masked(":%s@127.0.0.1" % password, password, "***@127.0.0.1")

    def test_refused_token_as_key_not_quoted(self):
        """A token pasted where a key goes is refused by POST /reload and by SIGHUP, counted, never quoted."""
        token = "hvs.CAESIPasted-as-a-key0123456789"
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["default"][token] = "x"
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn("$.roles.default: unknown key of %d bytes, not quoted" % len(token), body)
        line = self.sighup_and_wait()
        self.assertEqual(line["event"], "reload_refused", line)
        self.assertIn("unknown key of %d bytes" % len(token), line["error"])
        for where in (body, self.gw.stderr()):
            self.assertNotIn("CAESIPasted", where)

    def test_refused_token_as_file_name_not_quoted(self):
        """A token pasted where its file's name goes names no file: the reload refused says so, counted."""
        token = "hvs.CAESIPastedAsAFileName0123456789"
        cfg = json.loads(json.dumps(self.base))
        cfg["pbm"] = {ref: dict(p, secret_file=token) for ref, p in cfg["pbm"].items()}
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn("secret_file: cannot open the file named by a value of %d bytes (not quoted" % len(token),
                      body)
        line = self.sighup_and_wait()
        self.assertEqual(line["event"], "reload_refused", line)
        self.assertIn("a value of %d bytes" % len(token), line["error"])
        for where in (body, self.gw.stderr()):
            self.assertNotIn("CAESIPasted", where)

    def test_refused_pin_in_a_uri_quoted_masked(self):
        """A PKCS#11 URI written where a file goes, with a PIN in it, names no file: the reload refused quotes
        it with the PIN "***", in the answer to POST /reload and in the reload_refused line of SIGHUP."""
        pin = "Hunter4-in-the-uri"
        uri = "pkcs11:object=signer;pin-value=%s?module-path=/m.so" % pin
        cfg = json.loads(json.dumps(self.base))
        cfg["signer"]["cert"] = uri
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn('$.signer.cert: cannot open "pkcs11:object=signer;pin-value=***?module-path=/m.so"', body)
        line = self.sighup_and_wait()
        self.assertEqual(line["event"], "reload_refused", line)
        self.assertIn("pin-value=***", line["error"])
        for where in (body, self.gw.stderr()):
            self.assertNotIn(pin, where)

    def test_reload_the_moment_it_serves(self):
        """A POST /reload as soon as a gateway serves: the generation it retires has its health prober
        already, which the reload stops (a prober set after the loop threads start was a data race with
        the reload thread's gw_gens_swap, which ThreadSanitizer reports at the stop below)."""
        twin = self.gw.twin(Path(self.tmp) / "at-once")
        twin.start()
        try:
            status, body = admin(twin, "/reload", "POST")
            self.assertEqual(status, 200, body)
            self.assertIn("configuration generation 2 ", body)
            self.assertEqual(metric(twin, "cmpgw_config_generation"), 2)
        finally:
            twin.stop()

    def test_listener_moves_to_a_new_port(self):
        """A changed port: the new socket is bound and accepting before the old one closes; a port
        that cannot be had refuses the reload and the running listener serves on."""
        import http.client
        import socket
        old_port, new_port = self.gw.port, harness.free_port()
        # a keep-alive connection to the old listener: answered before the move
        conn = http.client.HTTPSConnection("127.0.0.1", old_port, context=self.gw.tls_context(), timeout=10)
        conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
        rsp = conn.getresponse()
        rsp.read()
        self.assertEqual(rsp.status, 415)
        cfg = json.loads(json.dumps(self.base))
        with socket.socket() as taken:  # someone else's port: the reload must be refused
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            cfg["listeners"][0]["port"] = taken.getsockname()[1]
            self.write_config(cfg)
            status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn("Address already in use", body)
        self.assertIsNotNone(self.enrol("after-port-refused")[0])
        cfg["listeners"][0]["port"] = new_port
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        try:
            self.gw.port = new_port
            self.assertIsNotNone(self.enrol("on-new-port")[0])
        finally:
            self.gw.port = old_port
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", old_port), timeout=5).close()
        # and refused on its next request, closed (docs/errors.md http_listener_removed)
        conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
        rsp = conn.getresponse()
        text = rsp.read().decode()
        self.assertEqual((rsp.status, text.strip()), (403, "this listener was removed by a configuration reload"))
        self.assertEqual(rsp.getheader("Connection"), "close")
        conn.close()
        self.assertTrue(any("(added by a reload)" in l.get("msg", "") for l in events(self.gw, "listening")))

    def polled_across(self, name, reload):
        """An ir of CN=|name| on the polling role; |reload| runs once its transaction is parked and its
        client polls (wait_parked). Returns the new key and what test_polling.cmp_polling returns."""
        import test_polling
        key = self.newkey(name)
        result = {}

        def client():
            result["r"] = test_polling.cmp_polling(self.gw, "ir", name, "pki/roles/slow/cmp",
                                                   ["-newkey", key, "-subject", "/CN=" + name])

        t = threading.Thread(target=client)
        t.start()
        wait_parked(self.gw, name)
        reload()
        t.join(harness.CLIENT_TIMEOUT + 20)
        return (key,) + result["r"]

    def test_transaction_spans_reload(self):
        """An ir on the polling role begins under one generation; reloads come while its client polls;
        pollReq and certConf finish it under the generation it began in."""
        def twice():
            self.assertEqual(self.sighup_and_wait()["event"], "reloaded")
            self.assertEqual(admin(self.gw, "/reload", "POST")[0], 200)

        key, p, answers, cert = self.polled_across("spans", twice)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        kinds = [a.body_type for a in answers]
        self.assertIn("pollRep", kinds)
        self.assertEqual(kinds[-1], "pkiconf", answers)
        final = [a for a in answers[1:] if a.body_type == "ip"]
        self.assert_issued(cert, key, "CN=spans", [], final[-1].extra_certs_pem())

    def test_device_removed_while_polling_collects_nothing(self):
        """A reload takes the polling client off its role's allow-list: its next pollReq is refused, and
        the certificate its upstream issues is withdrawn there, not left valid for a device the
        operator removed."""
        import test_polling

        def remove():
            cfg = json.loads(json.dumps(self.base))
            cfg["roles"]["slow"]["authorization"] = {"signer_subjects": ["/O=cmpgw demo/CN=another-client"]}
            self.write_config(cfg)
            self.assertEqual(self.sighup_and_wait()["event"], "reloaded")

        _, p, answers, cert = self.polled_across("removed", remove)
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual(answers[0].status, test_polling.WAITING, answers)
        self.assert_cmp_error(answers[-1], ("error",), "notAuthorized", "is not allowed on role slow")
        self.assert_withdrawn(answers, "signer_subject")

    def assert_withdrawn(self, answers, reason):
        """The polled transaction of |answers| was refused by a reload: its certificate, issued once its
        upstream call landed, is revoked there, never confirmed. The log says so with |reason|, the code
        of the refusal's docs/errors.md row, and the statusString as msg."""
        import test_polling
        tid = answers[0].header["transactionID"].asOctets().hex()
        test_polling.wait_revoked(self.gw, tid, 30)  # the call lands 2.5 s after the ir
        issued = test_polling.of_tid(self.gw, "issued", tid)
        revoked = test_polling.of_tid(self.gw, "revoked", tid)
        self.assertEqual(len(issued), 1, issued)
        self.assertEqual([r["serial"] for r in revoked], [issued[0]["serial"]], revoked)
        self.assertEqual(test_polling.of_tid(self.gw, "confirmed", tid), [])
        lines = [l for l in events(self.gw, "txn_sender_refused") if l.get("tid") == tid]
        self.assertEqual([(l.get("reason"), l.get("msg")) for l in lines],
                         [(reason, str(answers[-1].status_strings[0]))], lines)

    def test_role_removed_while_polling_answered_at_once(self):
        """A reload removes the polling client's role, and with it its path: the next pollReq, on a path
        the running configuration no longer serves, reaches the configuration the transaction began under
        and is refused at once (txn_role_removed), the certificate withdrawn, instead of an HTTP 404 that
        left the transaction to its TTL. A new ir on that path is answered as on a path that never was."""
        import test_polling
        ir = self.gw.make_request("gone-ir")

        def remove():
            cfg = json.loads(json.dumps(self.base))
            del cfg["roles"]["slow"]
            self.write_config(cfg)
            self.assertEqual(self.sighup_and_wait()["event"], "reloaded")

        _, p, answers, cert = self.polled_across("gone", remove)
        gone = self.gw.curl(path="/pki/roles/slow/cmp", data=ir)  # its upstream call still runs
        never = self.gw.curl(path="/pki/roles/never/cmp", data=ir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual(answers[0].status, test_polling.WAITING, answers)
        self.assert_cmp_error(answers[-1], ("error",), "notAuthorized",
                              "role slow was removed by a configuration reload after this transaction began")
        self.assertEqual((gone.status, gone.body), (404, never.body.replace(b"never", b"slow")))
        self.assert_withdrawn(answers, "txn_role_removed")

    def test_new_role_log_level_and_tls_certificate(self):
        d = self.gw.dir
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["fresh"] = dict(self.base["roles"]["default"])
        cfg["log_level"] = "warn"
        # a new server certificate under the same CA, in a new file
        harness.run(["openssl", "req", "-new", "-x509", "-key", d / "server.key", "-CA", d / "ca.pem",
                     "-CAkey", d / "ca.key", "-subj", "/O=cmpgw demo/CN=reloaded", "-days", "2",
                     "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "extendedKeyUsage=serverAuth",
                     "-out", d / "server2.pem"])
        cfg["listeners"][0]["tls"]["cert"] = "server2.pem"
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.server_cn(), "reloaded")
        before = len(events(self.gw, "request"))
        res = self.gw.cmp("ir", "fresh", newkey=self.newkey("fresh"), subject="/CN=fresh",
                          path="pki/roles/fresh/cmp", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)
        self.assertEqual(len(events(self.gw, "request")), before, "log_level warn: no request lines")
        self.write_config(self.base)
        self.assertEqual(admin(self.gw, "/reload", "POST")[0], 200)
        self.assertEqual(self.server_cn(), "localhost")
        body = d / "gone.der"
        body.write_bytes(b"0")
        res = self.gw.curl(path="/pki/roles/fresh/cmp", data=body)
        self.assertEqual(res.status, 404, res)  # the role is gone with the configuration that had it

    def test_open_connection_rechecked_against_new_client_cas(self):
        """A keep-alive connection whose client certificate a reload no longer trusts is refused (403,
        closed) on its next request when the listener requires one."""
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, context=self.gw.tls_context(), timeout=10)
        conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
        rsp = conn.getresponse()
        rsp.read()
        self.assertEqual(rsp.status, 415)  # answered, and the connection stays open
        fca, _, _ = harness.make_foreign_pki(self.gw.dir / "foreign")
        cfg = json.loads(json.dumps(self.base))
        cfg["listeners"][0]["tls"].update(client_ca=str(fca), client_auth="require")
        self.write_config(cfg)
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
        rsp = conn.getresponse()
        text = rsp.read().decode()
        self.assertEqual(rsp.status, 403, text)
        self.assertEqual(text.strip(), "TLS client certificate no longer accepted (expired, or not trusted since the "
                         "configuration was reloaded): reconnect with one this listener accepts")
        self.assertEqual(rsp.getheader("Connection"), "close")
        conn.close()
        self.assertTrue(events(self.gw, "tls_peer_dropped"))

    def test_open_connection_rechecked_at_security_level(self):
        """The recheck holds the client's chain to the listener's security level, as a handshake does: a new
        client_ca that completes the client's chain only through a CA certificate signed with SHA-1 (a
        cross-certificate of the demo root's key under another root) drops the connection; its twin, the same
        cross-certificate signed with SHA-256, keeps it."""
        import http.client
        d = self.gw.dir
        harness.genkey(d / "xroot.key")
        harness.run(["openssl", "req", "-x509", "-new", "-key", d / "xroot.key", "-subj", "/O=elsewhere/CN=cross root",
                     "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                     "keyUsage=critical,keyCertSign,cRLSign", "-out", d / "xroot.pem"])
        subject = harness.run(["openssl", "x509", "-in", d / "ca.pem", "-noout", "-subject", "-nameopt",
                               "compat"]).stdout.decode().strip().split("=", 1)[1]
        harness.run(["openssl", "x509", "-in", d / "ca.pem", "-noout", "-pubkey", "-out", d / "ca.pub"])
        (d / "cross.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                                     "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        for serial, (digest, want) in enumerate((("sha1", 403), ("sha256", 415))):
            with self.subTest(digest=digest):
                cross = d / ("cross-%s.pem" % digest)
                harness.run(["openssl", "x509", "-new", "-subj", subject, "-force_pubkey", d / "ca.pub", "-CA",
                             d / "xroot.pem", "-CAkey", d / "xroot.key", "-%s" % digest, "-days", "30",
                             "-set_serial", str(serial + 1), "-extfile", d / "cross.ext", "-out", cross])
                bundle = d / ("xca-%s.pem" % digest)
                bundle.write_text(cross.read_text() + (d / "xroot.pem").read_text())
                conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, context=self.gw.tls_context(),
                                                   timeout=10)
                conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
                rsp = conn.getresponse()
                rsp.read()
                self.assertEqual(rsp.status, 415)
                cfg = json.loads(json.dumps(self.base))
                cfg["listeners"][0]["tls"].update(client_ca=str(bundle), client_auth="require")
                self.write_config(cfg)
                status, body = admin(self.gw, "/reload", "POST")
                self.assertEqual(status, 200, body)
                conn.request("POST", "/pki/cmp", body=b"x", headers={"Content-Type": "text/plain"})
                rsp = conn.getresponse()
                text = rsp.read().decode()
                conn.close()
                self.write_config(self.base)
                self.assertEqual(admin(self.gw, "/reload", "POST")[0], 200)
                self.assertEqual(rsp.status, want, text)

    def server_cn(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            with self.gw.tls_context().wrap_socket(s, server_hostname="127.0.0.1") as t:
                der = t.getpeercert(binary_form=True)
        pem = harness.der_to_pem(der)
        out = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "multiline"],
                             input=pem.encode() if isinstance(pem, str) else pem, capture_output=True)
        for line in out.stdout.decode().splitlines():
            if "commonName" in line:
                return line.split("=", 1)[1].strip()
        return None


class ReloadHttp2Recheck(harness.GatewayTestCase):
    """An HTTP/2 listener, its client certificate optional: its connections stay open across a reload that
    makes it require one (HTTP/1 closes a connection after the 403)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["listeners"][0]["tls"].update(client_auth="optional", http2=True)
        cls.base = json.loads(json.dumps(cfg))

    def tearDown(self):
        self.gw.config_path.write_text(json.dumps(self.base, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def ask(self, sock, stream):
        """A POST of the wrong type on |stream|: (415, text) for a client the listener lets in."""
        sock.sendall(self.post(stream))
        return h2_answers(sock, (stream,), time.monotonic() + 10).get(stream, (None, b""))

    def refused_after_reload(self, sock, client_ca):
        """A stream served on |sock|, then a reload requiring a client certificate of |client_ca|: the
        streams the connection has sent are refused, each of them, and then the gateway ends it: a
        stream sent after that gets no answer (an HTTP/2 connection outlives a refusal otherwise, and
        would get one for nothing per stream)."""
        self.assertEqual(self.ask(sock, 1)[0], 415)
        cfg = json.loads(json.dumps(self.base))
        cfg["listeners"][0]["tls"].update(client_ca=str(client_ca), client_auth="require")
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        # two streams in one write: the gateway reads both before the first refusal is written
        sock.sendall(self.post(3) + self.post(5))
        answers = h2_answers(sock, (3, 5), time.monotonic() + 10)
        for stream in (3, 5):
            status, text = answers.get(stream, (None, b""))
            self.assertEqual((stream, status), (stream, 403), text)
            self.assertTrue(text.startswith(b"TLS client certificate no longer accepted"), text)
        try:
            sock.sendall(self.post(7))
        except OSError:
            pass  # closed already
        self.assertEqual(self.rest(sock), b"", "a stream sent after the refusal was answered")

    def post(self, stream):
        """The frames of a POST of the wrong type on |stream|."""
        block = (h2_literal(b":method", b"POST") + h2_literal(b":scheme", b"https") +
                 h2_literal(b":path", b"/pki/cmp") + h2_literal(b":authority", b"127.0.0.1") +
                 h2_literal(b"content-type", b"text/plain"))
        return h2_frame(1, 0x4, stream, block) + h2_frame(0, 0x1, stream, b"x")

    def rest(self, sock):
        """What |sock| still gets until the gateway closes it (b"" then; a reset counts as closed), or
        fails: the connection stays open for 10 s."""
        sock.settimeout(10)
        got = b""
        try:
            while data := sock.recv(65536):
                got += data
        except socket.timeout:
            self.fail("the connection stayed open after its refusal")
        except OSError:
            pass
        frames, _ = h2_frames(got)
        return b"".join(p for ftype, _, _, p in frames if ftype in (0, 1))

    def test_certificate_no_longer_trusted(self):
        fca, _, _ = harness.make_foreign_pki(self.gw.dir / "foreign-h2")
        sock = h2_connect(self.gw, timeout=10)
        try:
            self.refused_after_reload(sock, fca)
        finally:
            sock.close()

    def test_connection_without_a_certificate(self):
        ctx = self.gw.tls_context(cert=None)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                               server_hostname="127.0.0.1")
        try:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
            self.refused_after_reload(sock, self.base["listeners"][0]["tls"]["client_ca"])
        finally:
            sock.close()


class ReloadRefusalsUncounted(harness.GatewayTestCase):
    """A gateway of its own: its address may fail to authenticate twice (a third failure would block it)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 2, "auth_failure_window": "60s"}
        cfg["upstreams"]["slow"] = dict(cfg["upstreams"]["local"], delay="2500ms", store="slow-store")
        (gw.dir / "slow-store").mkdir(exist_ok=True)  # it revokes what nobody may collect
        cfg["roles"]["slow"] = dict(cfg["roles"]["default"], poll_after="300ms", upstream="slow")
        ca, _, _ = harness.make_foreign_pki(gw.dir / "foreign")
        cfg["trust"]["foreign"] = {"ca_file": str(ca), "revocation": "none"}
        cls.base = json.loads(json.dumps(cfg))

    def test_fleet_refused_after_trust_rotation_keeps_its_address(self):
        """Two devices behind one address poll for their certificates while a reload gives their role
        another trust anchor: each pollReq is refused (signerNotTrusted), and neither counts as a failed
        authentication: the address, whose budget is 2, still enrols on a role that trusts it."""
        import test_polling
        results = {}
        names = ["fleet%d" % i for i in range(2)]
        keys = {name: self.newkey(name) for name in names}  # before the threads: their irs go out together

        def client(name):
            results[name] = test_polling.cmp_polling(self.gw, "ir", name, "pki/roles/slow/cmp",
                                                     ["-newkey", keys[name], "-subject", "/CN=" + name])

        threads = [threading.Thread(target=client, args=(name,)) for name in names]
        for t in threads:
            t.start()
        wait_parked(self.gw, *names)
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["slow"]["trust"] = ["foreign"]
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        for t in threads:
            t.join(harness.CLIENT_TIMEOUT + 20)
        self.assertEqual(sorted(results), ["fleet0", "fleet1"])
        for name, (p, answers, cert) in results.items():
            self.assertNotEqual(p.returncode, 0, name)
            self.assertIsNone(cert, name)
            self.assert_cmp_error(answers[-1], ("error",), "signerNotTrusted",
                                  "no longer chains to a CA trusted on this route")
            self.assertIn(b"PKIFailureInfo: signerNotTrusted", p.stdout, name)  # what `openssl cmp` prints
        refused = events(self.gw, "txn_sender_refused")
        self.assertEqual(len(refused), 2, refused)
        for line in refused:
            self.assertEqual(line.get("reason"), "txn_signer_untrusted", line)
            self.assertIn("no longer chains to a CA trusted on this route", line.get("msg", ""))
        self.assertIsNotNone(self.enrol("after-reload")[0])


class ReloadAuthBudget(harness.GatewayTestCase):
    """A gateway of its own: its address uses up a budget of 2 failed authentications."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 2, "auth_failure_window": "60s"}
        cls.base = json.loads(json.dumps(cfg))

    def test_reload_applies_the_budget_mid_window(self):
        """Over a budget of 2 the address's connections are closed at accept; a reload that raises the
        budget to 10 lets it in again within the same window (its 2 failures still counted: 8 to go),
        and the reload does not call the budget a restart-only change."""
        _, fcert, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        for i in range(2):
            res = self.gw.cmp("ir", "stranger%d" % i, auth=(fcert, fkey), newkey=self.newkey("stranger%d" % i),
                              subject="/CN=stranger", expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), "badMessageCheck")
        self.assertFalse(self.gw.handshake())
        cfg = json.loads(json.dumps(self.base))
        cfg["limits"]["auth_failures_per_address"] = 10
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        self.assertTrue(self.gw.handshake())
        self.assertIsNotNone(self.enrol("after-reload")[0])
        restart_only = [l for l in self.gw.log_lines() if "applied only at the next restart" in l.get("msg", "")]
        self.assertEqual(restart_only, [])


class ReloadLowersAuthBudget(harness.GatewayTestCase):
    """A gateway of its own: its address fails 3 times under a budget of 10, which a reload lowers to 2."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 10, "auth_failure_window": "60s"}
        cls.base = json.loads(json.dumps(cfg))

    def test_address_shut_out_by_the_reload_logged_once(self):
        """A reload that lowers the budget under the failures an address made in its open window shuts it
        out at once, and says so once, as a failure that uses the budget up would: it shut the address out
        without a word. Another address with fewer failures than the new budget is not named."""
        _, fcert, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        for i in range(3):
            res = self.gw.cmp("ir", "stranger%d" % i, auth=(fcert, fkey), newkey=self.newkey("stranger%d" % i),
                              subject="/CN=stranger", expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), "badMessageCheck")
        self.assertFalse(self.gw.handshake(source="127.0.0.2", cert=fcert, key=fkey))  # one failure: under 2
        self.assertTrue(self.gw.handshake())
        self.assertEqual(events(self.gw, "auth_budget_exhausted"), [])
        cfg = json.loads(json.dumps(self.base))
        cfg["limits"]["auth_failures_per_address"] = 2
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        lines = events(self.gw, "auth_budget_exhausted")
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["peer"], "127.0.0.1")
        self.assertIn("a reload lowered limits.auth_failures_per_address", lines[0]["last"])
        self.assertFalse(self.gw.handshake())
        self.assertTrue(self.gw.handshake(source="127.0.0.2"))
        status, body = admin(self.gw, "/reload", "POST")  # the same budget again: said already
        self.assertEqual(status, 200, body)
        self.assertEqual(len(events(self.gw, "auth_budget_exhausted")), 1)


def ipv6_loopback():
    """Whether this machine has ::1 to listen on (a container may have IPv6 off)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback address")
class ReloadLowersAuthBudgetIpv6(harness.GatewayTestCase):
    """A gateway of its own, with a second listener on ::1: that address fails 3 TLS handshakes under a
    budget of 10, which a reload lowers to 2 while it also changes ipv6_prefix, a restart-only setting."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 10, "auth_failure_window": "60s", "ipv6_prefix": 64}
        cls.v6_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        v6 = json.loads(json.dumps(cfg["listeners"][0]))
        v6.update(address="::1", port=cls.v6_port)
        cfg["listeners"].append(v6)
        cls.base = json.loads(json.dumps(cfg))

    def v6_handshake(self, cert, key):
        """Whether a TLS connection from ::1 with |cert| is served."""
        return self.gw.handshake(source="::1", cert=str(cert), key=str(key), server=("::1", self.v6_port))

    def test_prefix_shut_out_named_as_counted(self):
        """The address a reload's lower budget shuts out is named by the prefix the guard counts it by,
        the one the gateway started with: a reload does not apply ipv6_prefix, and the line named the
        prefix of the file just read."""
        _, fcert, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        for _ in range(3):
            self.assertFalse(self.v6_handshake(fcert, fkey))
        self.assertTrue(self.v6_handshake(self.gw.dir / "client.pem", self.gw.dir / "client.key"))
        self.assertEqual(events(self.gw, "auth_budget_exhausted"), [])
        cfg = json.loads(json.dumps(self.base))
        cfg["limits"].update(auth_failures_per_address=2, ipv6_prefix=56)
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        lines = events(self.gw, "auth_budget_exhausted")
        self.assertEqual([l["peer"] for l in lines], ["::/64"], lines)
        self.assertFalse(self.v6_handshake(self.gw.dir / "client.pem", self.gw.dir / "client.key"))
        self.assertTrue(self.gw.handshake())


class ReloadRestartOnly(harness.GatewayTestCase):
    """A gateway of its own: reloads that change a setting only a restart applies."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["workers"] = 2
        cfg.setdefault("cmp", {})["revoked_file"] = str(gw.dir / "revoked.list")
        cls.base = json.loads(json.dumps(cfg))

    def reload_warnings(self, cfg):
        """Reloads |cfg| by POST /reload; the restart-only warnings it logged."""
        def warnings():
            return [l for l in self.gw.log_lines() if "applied only at the next restart" in l.get("msg", "")]

        before = len(warnings())
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        return warnings()[before:]

    def test_warned_against_the_running_configuration(self):
        """A reload that changes workers says it waits for a restart; so does a second reload of the same
        file, for the running gateway still has the workers it started with; one that puts the value back
        says nothing."""
        cfg = json.loads(json.dumps(self.base))
        cfg["workers"] = 3
        for _ in range(2):
            said = self.reload_warnings(cfg)
            self.assertEqual(len(said), 1, said)
            self.assertTrue(said[0]["msg"].endswith("applied only at the next restart: workers"), said)
        self.assertEqual(self.reload_warnings(self.base), [])

    def test_file_named_with_the_one_that_runs(self):
        """A reload naming another cmp.revoked_file says so with the file that stays in use until a
        restart, and says it again at the next reload; the twin, one that puts it back, says nothing."""
        running = str(self.gw.dir / "revoked.list")
        cfg = json.loads(json.dumps(self.base))
        cfg["cmp"]["revoked_file"] = str(self.gw.dir / "revoked-next.list")
        for _ in range(2):
            said = self.reload_warnings(cfg)
            self.assertEqual(len(said), 1, said)
            self.assertTrue(said[0]["msg"].endswith('applied only at the next restart: cmp.revoked_file (still "%s")'
                                                    % running), said)
        self.assertEqual(self.reload_warnings(self.base), [])

    def test_handover_socket_named_as_unset(self):
        """A reload that sets handover_socket, which only a start binds, says it waits for a restart and
        that none runs; the twin, one that leaves it out again, says nothing."""
        cfg = json.loads(json.dumps(self.base))
        cfg["handover_socket"] = str(self.gw.dir / "handover.sock")
        said = self.reload_warnings(cfg)
        self.assertEqual(len(said), 1, said)
        self.assertTrue(said[0]["msg"].endswith("applied only at the next restart: handover_socket (still unset)"),
                        said)
        self.assertEqual(self.reload_warnings(self.base), [])


def unsalted_state_digest(state, password):
    """The SHA-256 over the shared state's settings, its Redis password among them, that the gateway kept of
    the running configuration before it kept an HMAC under a key of its own: each field after its length
    (64 bits, little-endian), a string after a byte that says it is set."""
    def field(b):
        return len(b).to_bytes(8, "little") + b

    def string(s):
        return b"\x00" + field(b"") if s is None else b"\x01" + field(s.encode())

    return hashlib.sha256(string(None) + field((1).to_bytes(4, "little"))  # the revoked_file (none), "redis"
                          + field(state["port"].to_bytes(2, "little")) + field((500).to_bytes(4, "little"))
                          + string(state["address"]) + string(state["username"]) + string(state["key_prefix"])
                          + field(password.encode()) + field(b"")).digest()  # no mac_key_file


class ReloadRestartOnlyState(harness.GatewayTestCase):
    """A gateway of its own on a Redis with a password: what it keeps of the running shared state to tell a
    reload's change of it."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfg["cmp"] = {"state": cls.redis.state()}
        cls.base = json.loads(json.dumps(cfg))

    reload_warnings = ReloadRestartOnly.reload_warnings

    def test_state_change_said_without_a_digest_of_the_password(self):
        """A reload that changes cmp.state says it waits for a restart, one that puts it back says nothing:
        what the gateway keeps of the running state still tells. But it is no plain SHA-256 of the settings
        and the password, which anyone reading the memory could test guessed passwords against offline:
        an HMAC under a key of the process's own, drawn at start."""
        cfg = json.loads(json.dumps(self.base))
        cfg["cmp"]["state"]["timeout"] = "600ms"
        said = self.reload_warnings(cfg)
        self.assertEqual([l["msg"].rsplit(": ", 1)[-1] for l in said], ["cmp.state"])
        self.assertEqual(self.reload_warnings(self.base), [])
        digest = unsalted_state_digest(self.redis.state(), redisenv.PASSWORD)
        self.assertEqual(held(self.gw.proc.pid, digest), 0)


class ReloadWhileAProbeHangs(harness.GatewayTestCase):
    """A replaced configuration whose health probe hangs on an upstream that never answers (the Vault-API
    test server, stopped with SIGSTOP for the whole class): the reload waits for the probe to stop, and
    the transactions begun under that configuration are reached all the while."""

    @classmethod
    def edit_config(cls, cfg, gw):
        Reload.edit_config.__func__(cls, cfg, gw)
        cls.vault = vaultenv.VaultApi(gw.dir)
        cls.vault.make_pki()
        cls.vault.start()
        cfg["upstreams"]["held"] = cls.vault.upstream(timeout="60s", probe_interval=1)
        cls.vault.proc.send_signal(signal.SIGSTOP)
        if not harness.settled(lambda: harness.all_stopped(cls.vault.proc.pid), bool, timeout=10):
            raise harness.Failure("the Vault-API server did not stop on SIGSTOP")
        cls.base = json.loads(json.dumps(cfg))

    @classmethod
    def tearDownClass(cls):
        cls.vault.proc.send_signal(signal.SIGCONT)  # its probes fail: nothing waits for them at the stop
        cls.vault.stop()
        super().tearDownClass()

    write_config = Reload.write_config
    polled_across = Reload.polled_across

    def test_role_removed_while_the_old_probe_stops(self):
        """A reload removes the polling client's role while the configuration it replaces probes an
        upstream that holds the probe for a minute. Once the new configuration serves, the client's next
        pollReq reaches the one its transaction began under, which refuses it as its role's removal
        (it was on no list while its probe stopped, and the pollReq got an HTTP 404)."""
        if not harness.settled(lambda: harness.waiting(self.vault.port), bool):
            self.fail("no probe reached the stopped Vault")
        ir = self.gw.make_request("probe-gone-ir")

        def remove():
            cfg = json.loads(json.dumps(self.base))
            del cfg["roles"]["slow"]
            self.write_config(cfg)
            self.gw.proc.send_signal(signal.SIGHUP)
            gone = harness.settled(lambda: self.gw.curl(path="/pki/roles/slow/cmp", data=ir).status,
                                   lambda status: status == 404)
            self.assertEqual(gone, 404)  # swapped: a new ir on the path is what one on no path is

        _, p, answers, cert = self.polled_across("probe-gone", remove)
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assert_cmp_error(answers[-1], ("error",), "notAuthorized",
                              "role slow was removed by a configuration reload after this transaction began")


if __name__ == "__main__":
    harness.main()
