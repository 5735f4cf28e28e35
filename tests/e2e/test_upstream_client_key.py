"""An upstream's TLS client certificate and key are what the gateway checked at load: it hands libcurl
the bytes it read (the key refused if others could read it), not the file names, so a key file swapped
for another one, and made readable by everyone, after start is not what the running gateway presents to
its upstream. A reload (POST /reload) reads and checks the files again: the world-readable key is then
refused and the running configuration keeps serving with the certificate it checked; once the file is
0600 again, a reload takes it. The Vault-API test server records each request's client certificate and
closes every connection, so each call makes a fresh TLS handshake."""
import json
import shutil
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402


class UpstreamClientKey(harness.GatewayTestCase):
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        cls.vault = vaultenv.running(cls, d)
        vaultenv.sign_cert(d, "other-client", "/CN=other-client", "ca",
                           "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
        for src, dst in (("client.pem", "mtls.pem"), ("client.key", "mtls.key")):
            shutil.copy(d / src, d / dst)
            (d / dst).chmod(0o600)
        cfg["upstreams"]["vault-mtls"] = cls.vault.upstream(tls_cert="mtls.pem", tls_key="mtls.key")
        cfg["roles"]["vault-mtls"] = dict(vaultenv.role_base(cfg), upstream="vault-mtls", upstream_role="devices")

    def setUp(self):
        self.vault.control({"close": True})

    def presented(self, name):
        """Enrols /CN=|name|.example.com through the mTLS upstream: the client subjects Vault saw."""
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        mark = self.vault.mark()
        res = self.gw.cmp("p10cr", name, path="pki/roles/vault-mtls/cmp", extra=["-csr", csr])
        self.assertIsNotNone(res.cert, res.answers)
        got = self.vault.since(mark, "/sign")
        self.assertEqual(len(got), 1, got)
        return got[0]["client_cert"]

    def swap_key(self, mode):
        d = self.gw.dir
        for src, dst in (("other-client.pem", "mtls.pem"), ("other-client.key", "mtls.key")):
            shutil.copy(d / src, d / dst)
        (d / "mtls.key").chmod(mode)

    def test_swapped_key_unused_until_a_reload_checks_it(self):
        self.assertIn("CN=demo-client", self.presented("before"))
        self.swap_key(0o644)
        self.assertIn("CN=demo-client", self.presented("swapped"))
        status, body = harness.admin(self.gw, "/reload", "POST")
        self.assertNotEqual(status, 200, body)
        self.assertIn("mtls.key", body)
        self.assertIn("is readable or writable by others", body)
        self.assertIn("CN=demo-client", self.presented("refused"))
        (self.gw.dir / "mtls.key").chmod(0o600)
        status, body = harness.admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)
        self.assertIn("CN=other-client", self.presented("reloaded"))


if __name__ == "__main__":
    unittest.main()
