"""Keys that are not in clear on disk: the signer's, the local issuer's and the TLS server's private
keys encrypted (PKCS#8, AES-256) with passphrase files, read by OpenSSL's decoder at load. A real
`openssl cmp` enrols over TLS with the encrypted server key and gets a response signed with the
encrypted signer key and a certificate issued with the encrypted CA key; a wrong passphrase stops
the start with an error that names the files and never the passphrase. A key file others may read
stops the start too, naming the file, its mode and the chmod that fixes it. A crash leaves no core
file holding them."""
import json
import os
import re
import resource
import shutil
import signal
import tempfile
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

PASSPHRASE = "correct horse battery staple"


def encrypt(d, key, passfile):
    """Replaces |key| in |d| by its PKCS#8 encryption under the passphrase in |passfile|."""
    harness.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", d / key, "-out", d / (key + ".enc"),
                 "-passout", "file:%s" % (d / passfile)])
    os.replace(d / (key + ".enc"), d / key)
    (d / key).chmod(0o600)


def encrypted_keys(cfg, gw, passfile="key.pass"):
    d = gw.dir
    (d / "key.pass").write_text(PASSPHRASE + "\n")
    (d / "key.pass").chmod(0o600)
    (d / "wrong.pass").write_text("not the passphrase\n")
    (d / "wrong.pass").chmod(0o600)
    issuer = cfg["upstreams"]["local"]
    for key in ("signer.key", "server.key", issuer["key"]):
        if "ENCRYPTED" not in (d / key).read_text():
            encrypt(d, key, "key.pass")
    cfg["signer"]["key_passphrase_file"] = passfile
    cfg["listeners"][0]["tls"]["key_passphrase_file"] = passfile
    issuer["key_passphrase_file"] = passfile


class EncryptedKeys(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        encrypted_keys(cfg, gw)

    def test_enrol_with_encrypted_keys(self):
        for key in ("signer.key", "server.key"):
            self.assertIn("ENCRYPTED PRIVATE KEY", (self.gw.dir / key).read_text())
        res = self.gw.cmp("ir", "enc", newkey=self.newkey("enc"), subject="/CN=encrypted-keys",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)
        self.assertEqual(harness.cert_info(res.cert)[0], "CN=encrypted-keys")


class WrongPassphrase(unittest.TestCase):

    def test_refused_at_start(self):
        rc, err = harness.refused_start(lambda cfg, g: encrypted_keys(cfg, g, "wrong.pass"))
        self.assertEqual(rc, 78, err)  # the configuration refused: not restarted (cmpgw.service)
        self.assertIn("with the passphrase of", err)
        self.assertIn("wrong.pass", err)
        self.assertNotIn("not the passphrase", err)
        self.assertNotIn(PASSPHRASE, err)


class KeyFileMode(unittest.TestCase):
    """A private key file others may read is a key every local account holds: the gateway refuses to
    start, naming the file, its mode and the chmod that fixes it, and never quoting the key. One only its
    group may read starts, with a warning (root:cmpgw 0640 is how the gateway's user reads it again)."""

    def refused(self, slot, key, mode):
        seen = {}

        def edit(cfg, gw):
            os.chmod(gw.dir / key, mode)
            seen["key"] = (gw.dir / key).read_text()

        rc, err = harness.refused_start(edit)
        self.assertNotEqual(rc, 0, err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, err)  # one line, whole
        record = json.loads(lines[0])
        self.assertEqual((record["level"], record["event"]), ("error", "config"), record)
        self.assertRegex(record["msg"], r'^\S*cmpgw\.json: %s: "\S*/%s" is readable or writable by others '
                         r"\(mode %03o\): chmod it 0600 \(or 0640 to share it with the gateway's group\)$"
                         % (re.escape(slot), re.escape(key), mode))
        self.assertNotIn(seen["key"].splitlines()[1], err)

    def test_tls_key_readable_by_others(self):
        self.refused("$.listeners[0].tls.key", "server.key", 0o644)

    def test_signer_key_readable_by_others(self):
        self.refused("$.signer.key", "signer.key", 0o604)

    def test_issuer_key_writable_by_others(self):
        self.refused("$.upstreams.local.key", "issuing.key", 0o602)


class SignerKeyType(unittest.TestCase):
    """A signer key OpenSSL 3.0's CMP cannot protect an answer with (Ed25519, Ed448, RSA-PSS: it has no
    signature algorithm for them with SHA-256) stops the start: such a gateway would answer every signed
    request with HTTP 500, and its readiness would swing between the answers' failures and the prober's
    test signatures, which such a key makes."""

    def refused(self, algorithm):
        def edit(cfg, gw):
            d = gw.dir
            harness.run(["openssl", "genpkey", "-algorithm", algorithm, "-out", d / "odd.key"])
            harness.run(["openssl", "req", "-new", "-key", d / "odd.key", "-subj", "/CN=odd signer",
                         "-out", d / "odd.csr"])
            harness.run(["openssl", "x509", "-req", "-in", d / "odd.csr", "-CA", d / "ca.pem", "-CAkey",
                         d / "ca.key", "-days", "10", "-out", d / "odd.pem"])
            (d / "odd.key").chmod(0o600)
            cfg["signer"]["cert"] = "odd.pem"
            cfg["signer"]["key"] = "odd.key"
            cfg["signer"].pop("key_passphrase_file", None)
        rc, err = harness.refused_start(edit)
        self.assertNotEqual(rc, 0)
        self.assertIn("$.signer.key: OpenSSL 3.0 cannot protect CMP messages with a key of this type (%s)"
                      % algorithm, err)

    def test_ed25519(self):
        self.refused("ED25519")

    def test_ed448(self):
        self.refused("ED448")

    def test_rsa_pss(self):
        self.refused("RSA-PSS")


class NoCoreDump(unittest.TestCase):
    """The keys, passphrases and tokens the gateway holds in memory stay out of a core file: a gateway
    that crashes (SIGQUIT here), where the limit and the kernel's core_pattern would write one into its
    working directory, leaves none."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        self.limit = resource.getrlimit(resource.RLIMIT_CORE)

    def tearDown(self):
        resource.setrlimit(resource.RLIMIT_CORE, self.limit)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_crash_writes_no_core(self):
        pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
        if pattern.startswith("|") or "/" in pattern:
            self.skipTest("core_pattern %r does not write into the working directory" % pattern)
        if harness.SANITIZE:
            self.skipTest("the sanitizers turn core files off themselves")
        resource.setrlimit(resource.RLIMIT_CORE, (self.limit[1], self.limit[1]))  # inherited by the gateway
        gw = harness.Gateway(self.tmp / "pki")
        gw.start()
        gw.proc.send_signal(signal.SIGQUIT)  # its default action dumps core
        self.assertEqual(gw.proc.wait(30), -signal.SIGQUIT)
        gw._err.close()
        gw._out.close()
        self.assertEqual([p.name for p in gw.dir.iterdir() if p.name.startswith("core")], [])


class GroupReadableKey(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        os.chmod(gw.dir / "signer.key", 0o640)

    def test_starts_with_a_warning(self):
        warned = [e for e in self.gw.log_lines() if "signer.key" in e.get("msg", "")]
        self.assertTrue(warned and "is readable or writable by its group" in warned[0]["msg"], warned)
        res = self.gw.cmp("ir", "grp", newkey=self.newkey("grp"), subject="/CN=group-readable-signer",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)


if __name__ == "__main__":
    unittest.main()
