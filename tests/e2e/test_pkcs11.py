"""Keys in a PKCS#11 token (SoftHSM through libp11's engine): the gateway's CMP signer key, the
local issuer's CA key and the TLS listener's key are imported into a SoftHSM token and removed from
disk; the configuration names them by PKCS#11 URI with the PIN in a passphrase file. A real `openssl
cmp` enrols over TLS signed in the token and verifies the response signed in the token and a
certificate issued with the token's CA key; a reload logs in again (however the URI names the token),
and refuses the keys of a token deleted since (which no longer sign); two tokens each take their own PIN
(one named by its label, one by its serial alone); once the signer cannot sign, /readyz says not ready
and a request gets an HTTP 500 saying why; a wrong PIN stops the start with an error that says so ("PIN incorrect") and never shows the PIN, and
nothing but JSON on stderr, as does a PIN in the URI (its path or its query); with "user", an
upstream's tls_key in the token is not looked for on disk, and refused without its PIN file; an upstream's tls_key in the token signs the
handshakes of a Vault certificate login, in a token of its own too, logged in to with the PIN of its
tls_key_passphrase_file; a listener's key whose token failed ends each handshake as the gateway's failure,
not counted against the client's address, and said in a paced error line naming the listener."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4711-cmpgw"


def uri(label):
    return "pkcs11:token=cmpgw;object=%s;type=private?module-path=%s" % (label, MODULE)


def make_token(d):
    """A SoftHSM token "cmpgw" in |d|/tokens holding signer.key, issuing.key and server.key, which leave
    the disk."""
    if shutil.which("softhsm2-util") is None or not os.path.exists(MODULE):
        raise harness.Failure("SoftHSM is not installed (deploy/deps.sh installs softhsm2)")
    (d / "tokens").mkdir(exist_ok=True)
    conf = d / "softhsm2.conf"
    conf.write_text("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n" % (d / "tokens"))
    os.environ["SOFTHSM2_CONF"] = str(conf)  # the gateway inherits it (harness.Gateway.env)
    harness.run(["softhsm2-util", "--init-token", "--free", "--label", "cmpgw", "--pin", PIN, "--so-pin", "so-" + PIN])
    for i, label in enumerate(("signer", "issuing", "server"), 1):
        harness.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", d / (label + ".key"),
                     "-out", d / (label + ".p8")])
        harness.run(["softhsm2-util", "--import", d / (label + ".p8"), "--token", "cmpgw", "--label", label,
                     "--id", "%02x" % i, "--pin", PIN])
        (d / (label + ".p8")).unlink()
        (d / (label + ".key")).rename(d / (label + ".key.offline"))
    (d / "token.pin").write_text(PIN + "\n")
    (d / "token.pin").chmod(0o600)
    (d / "wrong.pin").write_text("0000\n")
    (d / "wrong.pin").chmod(0o600)


def use_token(cfg, pinfile="token.pin"):
    cfg["signer"]["key"] = uri("signer")
    cfg["signer"]["key_passphrase_file"] = pinfile
    cfg["upstreams"]["local"]["key"] = uri("issuing")
    cfg["upstreams"]["local"]["key_passphrase_file"] = pinfile
    cfg["listeners"][0]["tls"].update(key=uri("server"), key_passphrase_file=pinfile)


class TokenKeys(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        make_token(gw.dir)
        use_token(cfg)

    def test_enrol_signed_in_the_token(self):
        self.assertFalse((self.gw.dir / "signer.key").exists())
        self.assertFalse((self.gw.dir / "server.key").exists())  # the TLS handshake signs in the token too
        key = self.newkey("hsm")
        res = self.gw.cmp("ir", "hsm", newkey=key, subject="/CN=hsm-signed", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)  # openssl cmp verified the response signature against ca.pem
        self.assert_issued(res.cert, key, "CN=hsm-signed", [], res.last.extra_certs_pem())

    def test_reload_logs_in_again(self):
        self.assertEqual(harness.admin(self.gw, "/reload", "POST")[0], 200)
        res = self.gw.cmp("ir", "hsm2", newkey=self.newkey("hsm2"), subject="/CN=hsm-after-reload",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)


    def test_reload_naming_the_token_otherwise(self):
        """The same token named by another URI (its label percent-encoded, one more attribute before its label,
        another attribute instead, or its scheme in upper case: RFC 3986 §3.1) reloads with its PIN."""
        cfg = self.gw.dir / "cmpgw.json"
        before = cfg.read_text()
        for token in ("pkcs11:token=cmp%67w", "pkcs11:manufacturer=SoftHSM%20project;token=cmpgw",
                      "pkcs11:model=SoftHSM%20v2", "PKCS11:token=cmpgw"):
            with self.subTest(token=token):
                cfg.write_text(before.replace("pkcs11:token=cmpgw;", "%s;" % token))
                try:
                    self.assertEqual(harness.admin(self.gw, "/reload", "POST")[0], 200)
                finally:
                    cfg.write_text(before)
        self.assertEqual(harness.admin(self.gw, "/reload", "POST")[0], 200)
        res = self.gw.cmp("ir", "hsm3", newkey=self.newkey("hsm3"), subject="/CN=hsm-after-reloads",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)


class TwoTokens(harness.GatewayTestCase):
    """The local issuer's key in a token of its own with a PIN of its own, beside the token of the signer and
    the listener: each token is logged in to with its PIN, at the start and at a reload."""

    @classmethod
    def edit_config(cls, cfg, gw):
        make_token(gw.dir)
        harness.run(["softhsm2-util", "--init-token", "--free", "--label", "other", "--pin", "other-" + PIN,
                     "--so-pin", "so-" + PIN])
        p8 = gw.dir / "issuing.p8"
        harness.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", gw.dir / "issuing.key.offline", "-out", p8])
        harness.run(["softhsm2-util", "--import", p8, "--token", "other", "--label", "issuing", "--id", "11",
                     "--pin", "other-" + PIN])
        p8.unlink()
        (gw.dir / "other.pin").write_text("other-%s\n" % PIN)
        (gw.dir / "other.pin").chmod(0o600)
        use_token(cfg)
        cfg["upstreams"]["local"]["key"] = uri("issuing").replace("token=cmpgw", "token=other")
        cfg["upstreams"]["local"]["key_passphrase_file"] = "other.pin"

    def test_each_token_its_pin(self):
        self.assertEqual(harness.admin(self.gw, "/reload", "POST")[0], 200)
        res = self.gw.cmp("ir", "two", newkey=self.newkey("two"), subject="/CN=two-tokens",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)


class TwoTokensOneBySerial(TwoTokens):
    """TwoTokens with the local issuer's token named by its serial number alone, no attribute in common
    with the other token's URIs: it starts, and reloads, with each token's own PIN."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        slots = harness.run(["softhsm2-util", "--show-slots"]).stdout.decode()
        serial = [re.search(r"Serial number:\s+(\S+)", b).group(1) for b in slots.split("Slot ")
                  if re.search(r"Label:\s+other\b", b)]
        assert len(serial) == 1, slots
        cfg["upstreams"]["local"]["key"] = uri("issuing").replace("token=cmpgw", "serial=" + serial[0])


class TokenGone(harness.GatewayTestCase):
    """libp11 lists a token's keys once: with the token deleted under a running gateway, its keys still load
    from that list, and fail only when they sign. A reload tries each key, and refuses one that cannot sign
    rather than answer "reloaded" with keys that fail every answer."""

    @classmethod
    def edit_config(cls, cfg, gw):
        make_token(gw.dir)
        use_token(cfg)

    def test_reload_refused_once_the_token_is_gone(self):
        harness.run(["softhsm2-util", "--delete-token", "--token", "cmpgw"])
        status, body = harness.admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 500, body)
        self.assertIn("reload refused:", body)
        self.assertIn("$.listeners[0].tls.key", body)
        self.assertIn("cannot sign in its token", body)
        self.assertIn("(gone, or lost and restored: restart; or not allowed to sign)", body)  # libp11 lists slots once
        self.assertFalse(self.gw.handshake())  # the listener's key signs no handshake, and the gateway runs on
        self.assertIsNone(self.gw.proc.poll())
        self.assertNotIn(PIN, self.gw.stderr())


class ListenerKeyGone(harness.GatewayTestCase):
    """A listener's key whose token failed under the gateway (deleted) ends each handshake with OpenSSL's
    internal_error alert: the gateway's own failure, not the client's. It is counted as one
    (cmpgw_tls_handshakes_total, failed, "internal error"), not against the client's budget of failed
    authentications: an address (a balancer's) that connects more often than
    limits.auth_failures_per_address is not shut out for it, nor named in an auth_budget_exhausted line. A
    paced error line names the listener and OpenSSL's reason (only the metric said it)."""

    BUDGET = 3
    PACE_LINES, PACE_SECS = 20, 10  # GW_LOG_PACE_LINES, GW_LOG_PACE_SECS

    @classmethod
    def edit_config(cls, cfg, gw):
        make_token(gw.dir)
        use_token(cfg)
        cfg["limits"] = {"auth_failures_per_address": cls.BUDGET, "auth_failure_window": "60s"}

    def handshakes(self, result, reason=""):
        return harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result=result,
                              reason=reason)

    def test_not_the_clients_failure(self):
        harness.run(["softhsm2-util", "--delete-token", "--token", "cmpgw"])
        tries = self.PACE_LINES + 5  # past the budget of failed authentications, and past the line's pace
        began = time.monotonic()
        for _ in range(tries):
            self.assertFalse(self.gw.handshake())
        elapsed = time.monotonic() - began
        # each reached its handshake: none was closed at accept as an address over its budget is
        failed = harness.settled(lambda: self.handshakes("failed", "internal error"), lambda n: n >= tries)
        self.assertEqual(failed, tries, self.gw.stderr()[-3000:])
        self.assertEqual(self.handshakes("abandoned"), 0)
        self.assertEqual([e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"], [])

        def said():
            return [e for e in self.gw.log_lines() if e.get("event") == "tls_handshake_internal_error"]
        lines = harness.settled(said, lambda l: len(l) >= min(tries, self.PACE_LINES))
        self.assertTrue(lines, self.gw.stderr()[-3000:])  # the metric alone said it
        for line in lines:
            self.assertEqual((line["level"], line["listener"]), ("error", "127.0.0.1:%d" % self.gw.port), line)
            self.assertIn("error:", line["reason"])  # OpenSSL's, as ERR_error_string_n writes it
            self.assertNotIn(PIN, json.dumps(line))
        # paced: at most PACE_LINES in each window the tries can have fallen in
        self.assertLessEqual(len(lines), self.PACE_LINES * (1 + int((elapsed + 1) // self.PACE_SECS)), lines)


def signer_in_token(cfg, gw):
    """The signer's and the local issuer's keys in the token, the TLS listener's on disk: with the token gone,
    clients still connect, and only what the token signs fails."""
    make_token(gw.dir)
    use_token(cfg)
    (gw.dir / "server.key.offline").rename(gw.dir / "server.key")
    cfg["listeners"][0]["tls"]["key"] = "server.key"
    del cfg["listeners"][0]["tls"]["key_passphrase_file"]


def readyz(gw):
    status, body = harness.admin(gw, "/readyz")
    return status, json.loads(body)


class SignerGone(harness.GatewayTestCase):
    """A request whose answer the signer cannot sign gets an HTTP 500 that says so, and /readyz says not ready
    from that failed signature on, so that a balancer sends clients elsewhere."""

    @classmethod
    def edit_config(cls, cfg, gw):
        signer_in_token(cfg, gw)

    def test_not_ready_once_a_signature_failed(self):
        status, ready = readyz(self.gw)
        self.assertEqual(status, 200, ready)
        self.assertEqual(ready["checks"]["signer"], "ok")
        req = self.gw.make_request("unsigned")
        harness.run(["softhsm2-util", "--delete-token", "--token", "cmpgw"])
        res = self.gw.curl(data=req)
        self.assertEqual(res.status, 500, res)
        self.assertEqual(res.body.decode(), "internal error: the gateway's signer key could not sign the CMP "
                                            "response (its token gone or failing?): retry later\n")
        status, ready = readyz(self.gw)  # at once: the failed signature says it, no probe waited for
        self.assertEqual(status, 503, ready)
        self.assertFalse(ready["ready"])
        self.assertIn("the signer's key failed its last signature", ready["checks"]["signer"])
        failed = [l for l in self.gw.log_lines() if l.get("event") == "signer_failed"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["level"], "error")
        self.assertTrue(self.gw.handshake())  # the listener's key is on disk: clients still connect
        self.assertNotIn(PIN, self.gw.stderr())


class SignerGoneIdle(harness.GatewayTestCase):
    """With no request to sign, the prober's test signature (one in 5 s at most, GW_SIGNER_CHECK_MS) finds
    the signer failing: /readyz says not ready before any client is sent there."""

    @classmethod
    def edit_config(cls, cfg, gw):
        signer_in_token(cfg, gw)

    def test_not_ready_without_traffic(self):
        self.assertEqual(readyz(self.gw)[0], 200)
        harness.run(["softhsm2-util", "--delete-token", "--token", "cmpgw"])
        status, ready = harness.settled(lambda: readyz(self.gw), lambda v: v[0] == 503, timeout=30)
        self.assertEqual(status, 503, ready)
        self.assertIn("a test signature failed", ready["checks"]["signer"])
        self.assertEqual(ready["checks"]["audit"], "ok")


class WrongPin(unittest.TestCase):

    def test_refused_at_start_without_the_pin_in_the_log(self):
        """A wrong PIN refuses the start with exit status 78 (EX_CONFIG), which the unit does not restart
        (RestartPreventExitStatus=78): each start spends one of the token's PIN tries. It exited 1, restarted
        every RestartSec until the token locked its PIN or systemd's start limit stopped it."""
        def edit(cfg, gw):
            make_token(gw.dir)
            use_token(cfg, "wrong.pin")
        rc, text = harness.refused_start(edit)
        self.assertEqual(rc, 78, text)
        self.assertIn("$.listeners[0].tls.key", text)  # the first key loaded
        self.assertIn("the token refused the PIN (PIN incorrect;", text)
        self.assertNotIn("or the PIN is wrong", text)
        self.assertNotIn("0000", text)
        self.assertNotIn(PIN, text)
        for line in text.splitlines():  # libp11 wrote lines of its own there, the URI unmasked
            self.assertIsInstance(json.loads(line), dict, line)


class TokenAbsent(unittest.TestCase):

    def test_retried_at_start(self):
        """A key whose token is not there (no token of its label: USB not enumerated yet, pcscd not running, a
        network HSM not reachable at boot) exits 1, which the unit restarts: another try may find it, and one
        with the right PIN spends none of the token's tries. It exited 78, and the service stayed down."""
        def edit(cfg, gw):
            make_token(gw.dir)
            use_token(cfg)
            cfg["listeners"][0]["tls"]["key"] = uri("server").replace("token=cmpgw;", "token=cmpgw-absent;")
        rc, text = harness.refused_start(edit)
        self.assertEqual(rc, 1, text)
        self.assertIn("$.listeners[0].tls.key", text)
        self.assertIn("no private key pkcs11:token=cmpgw-absent;object=server", text)
        self.assertNotIn(PIN, text)


class PinInUri(unittest.TestCase):
    """RFC 7512 has "pin-value" in the query; libp11 logs in with one among the path attributes too. Either
    is refused before the token is asked, and the PIN is quoted nowhere."""

    def refused(self, key):
        def edit(cfg, gw):
            make_token(gw.dir)
            use_token(cfg)
            cfg["listeners"][0]["tls"]["key"] = key
            del cfg["listeners"][0]["tls"]["key_passphrase_file"]
        rc, text = harness.refused_start(edit)
        self.assertEqual(rc, 78, text)  # the configuration's, as a wrong PIN
        self.assertIn("$.listeners[0].tls.key", text)
        self.assertIn("a PIN in the PKCS#11 URI is refused", text)
        self.assertNotIn(PIN, text)

    def test_in_the_path(self):
        self.refused("pkcs11:token=cmpgw;pin-value=%s;object=server;type=private?module-path=%s" % (PIN, MODULE))

    def test_in_the_query(self):
        self.refused(uri("server") + "&pin-value=" + PIN)


def import_key(d, key, token, label, key_id, pin):
    """Imports |key| (a file of |d|, which stays on disk) into |token| as |label|."""
    p8 = d / (label + ".p8")
    harness.run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", d / key, "-out", p8])
    harness.run(["softhsm2-util", "--import", p8, "--token", token, "--label", label, "--id", key_id,
                 "--pin", pin])
    p8.unlink()


class UpstreamKeyInToken(harness.GatewayTestCase):
    """An upstream's tls_key in the token: a Vault certificate login (the test server refuses one without a
    client certificate) shows the gateway the certificate and signs the handshake in the token, on each new
    connection the upstream's calls make."""

    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)  # before server.key leaves the disk: its TLS key too
        make_token(gw.dir)
        use_token(cfg)
        import_key(gw.dir, "client.key", "cmpgw", "client", "21", PIN)  # the CMP clients keep their copy
        cfg["upstreams"]["vault"] = dict(vaultenv.login_upstream(cls.vault.upstream()), tls_key=uri("client"),
                                         tls_key_passphrase_file="token.pin")
        cfg["roles"]["vault"] = dict(vaultenv.role_base(cfg), upstream="vault", upstream_role="devices")

    def test_login_signed_in_the_token(self):
        mark = self.vault.mark()
        key = self.newkey("up-hsm")
        csr = self.gw.dir / "up-hsm.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=up-hsm.example.com", "-out", csr])
        res = self.gw.cmp("p10cr", "up-hsm", path="pki/roles/vault/cmp", extra=["-csr", csr, "-implicit_confirm"],
                          expect_cert=False)
        self.assertIsNotNone(res.cert, self.gw.stderr()[-3000:])
        logins = self.vault.since(mark, "/v1/auth/cert/login")
        self.assertEqual(len(logins), 1, self.vault.since(mark))
        self.assertIn("CN=demo-client", logins[0]["client_cert"])
        self.assertNotIn(PIN, self.gw.stderr())


class UpstreamKeyInTokenOfItsOwn(UpstreamKeyInToken):
    """UpstreamKeyInToken with the upstream's key in a token of its own, its PIN in the upstream's
    tls_key_passphrase_file: that PIN, not the one the keys before it were loaded with, logs in to it."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        harness.run(["softhsm2-util", "--init-token", "--free", "--label", "upstream", "--pin", "up-" + PIN,
                     "--so-pin", "so-" + PIN])
        import_key(gw.dir, "client.key", "upstream", "client", "31", "up-" + PIN)
        (gw.dir / "upstream.pin").write_text("up-%s\n" % PIN)
        (gw.dir / "upstream.pin").chmod(0o600)
        cfg["upstreams"]["vault"].update(tls_key=uri("client").replace("token=cmpgw", "token=upstream"),
                                         tls_key_passphrase_file="upstream.pin")


class AsUser(unittest.TestCase):
    """Started as root with "user", the gateway checks, as that user, the files it reads after start:
    an upstream's tls_key that is a PKCS#11 URI is no file, and is not looked for on disk. Without its
    tls_key_passphrase_file it is refused, as every key in a token is: libp11 would log in to its token with
    the PIN of the key loaded before it (another token's), or ask for one on the console."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_upstream_tls_key_in_the_token(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")

        def edit(cfg, gw):
            make_token(gw.dir)
            use_token(cfg)
            cfg.pop("run_as_root")
            cfg["user"] = "nobody"
            # the signer's pair stands in for a TLS client certificate: what is checked is the key's name
            cfg["upstreams"]["vault"] = {
                "type": "vault", "url": "https://127.0.0.1:%d" % harness.free_port(), "tls_ca": "ca.pem",
                "issuer_ca": "ca.pem", "tls_cert": "signer.pem", "tls_key": uri("signer"), "auth": {"cert": {}}}
        gw = harness.Gateway(self.tmp / "pki", edit)
        for d in (self.tmp, gw.dir):  # the user passes through to the upstream's certificates
            d.chmod(0o711)
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertNotEqual(check.returncode, 0, check.stdout + check.stderr)
        self.assertIn("$.upstreams.vault.tls_key: the key %s is in a PKCS#11 token: give its user PIN in "
                      "\"tls_key_passphrase_file\"" % uri("signer"), check.stderr)
        self.assertNotIn("cannot open", check.stderr)
        cfg = json.loads(gw.config_path.read_text())
        cfg["upstreams"]["vault"]["tls_key_passphrase_file"] = "token.pin"
        gw.config_path.write_text(json.dumps(cfg, indent=2))
        check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(gw.config_path)],
                               capture_output=True, text=True, env=gw.env())
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


if __name__ == "__main__":
    harness.main()
