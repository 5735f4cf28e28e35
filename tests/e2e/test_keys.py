"""Keys that are not in clear on disk: the signer's, the local issuer's and the TLS server's private
keys encrypted (PKCS#8, AES-256) with passphrase files, read through OSSL_STORE at load. A real
`openssl cmp` enrols over TLS with the encrypted server key and gets a response signed with the
encrypted signer key and a certificate issued with the encrypted CA key; a wrong passphrase stops
the start with an error that names the files and never the passphrase."""
import os
import unittest

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
        self.assertNotEqual(rc, 0)
        self.assertIn("with the passphrase of", err)
        self.assertIn("wrong.pass", err)
        self.assertNotIn("not the passphrase", err)
        self.assertNotIn(PASSPHRASE, err)


if __name__ == "__main__":
    unittest.main()
