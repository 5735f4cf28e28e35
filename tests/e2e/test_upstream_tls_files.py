"""An upstream's TLS files are what the gateway checked at load: it hands libcurl the bytes it read, not
the file names, and a reload (POST /reload) reads and checks the files again. The Vault-API test server
records each request's client certificate and closes every connection, so each call makes a fresh TLS
handshake.

- Client certificate and key: a key file swapped for another one, and made readable by everyone, after
  start is not what the running gateway presents to its upstream. A reload then refuses the
  world-readable key and the running configuration keeps serving with the certificate it checked; once
  the file is 0600 again, a reload takes it.
- Trust anchors ("tls_ca"): a file swapped for an unrelated CA after start does not change what the
  running gateway trusts, and its calls still verify the upstream against the anchors it loaded. A
  reload takes the unrelated CA, which the upstream's certificate does not chain to, and then the
  right one again."""
import shutil
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402


class UpstreamTlsFiles(harness.GatewayTestCase):
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
        harness.make_foreign_pki(d / "foreign")
        shutil.copy(d / "ca.pem", d / "pinned-ca.pem")
        cfg["upstreams"]["vault-mtls"] = cls.vault.upstream(tls_cert="mtls.pem", tls_key="mtls.key")
        cfg["upstreams"]["vault-pinned"] = cls.vault.upstream(tls_ca="pinned-ca.pem")
        for name in ("vault-mtls", "vault-pinned"):
            cfg["roles"][name] = dict(vaultenv.role_base(cfg), upstream=name, upstream_role="devices")

    def setUp(self):
        self.vault.control({"close": True})

    def enrol(self, role, name, expect_cert=True):
        """Enrols /CN=|name|.example.com through |role|: (its result, the sign calls Vault saw)."""
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        mark = self.vault.mark()
        res = self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr],
                          expect_cert=expect_cert)
        return res, self.vault.since(mark, "/sign")

    def presented(self, name):
        """The client subjects Vault saw in an enrolment through the mTLS upstream."""
        _, got = self.enrol("vault-mtls", name)
        self.assertEqual(len(got), 1, got)
        return got[0]["client_cert"]

    def reload(self):
        """(status, body) of POST /reload."""
        return harness.admin(self.gw, "/reload", "POST")

    def swap_key(self, mode):
        d = self.gw.dir
        for src, dst in (("other-client.pem", "mtls.pem"), ("other-client.key", "mtls.key")):
            shutil.copy(d / src, d / dst)
        (d / "mtls.key").chmod(mode)

    def test_swapped_key_unused_until_a_reload_checks_it(self):
        self.assertIn("CN=demo-client", self.presented("before"))
        self.swap_key(0o644)
        self.assertIn("CN=demo-client", self.presented("swapped"))
        status, body = self.reload()
        self.assertNotEqual(status, 200, body)
        self.assertIn("mtls.key", body)
        self.assertIn("is readable or writable by others", body)
        self.assertIn("CN=demo-client", self.presented("refused"))
        (self.gw.dir / "mtls.key").chmod(0o600)
        status, body = self.reload()
        self.assertEqual(status, 200, body)
        self.assertIn("CN=other-client", self.presented("reloaded"))

    def test_swapped_anchors_unused_until_a_reload_reads_them(self):
        d = self.gw.dir
        self.enrol("vault-pinned", "anchored")
        shutil.copy(d / "foreign" / "fca.pem", d / "pinned-ca.pem")
        _, signed = self.enrol("vault-pinned", "anchors-swapped")
        self.assertEqual(len(signed), 1, signed)
        self.assertEqual(self.reload()[0], 200)
        res, signed = self.enrol("vault-pinned", "anchors-reloaded", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "Vault is unreachable", "nothing was sent")
        self.assertEqual(signed, [])
        shutil.copy(d / "ca.pem", d / "pinned-ca.pem")
        self.assertEqual(self.reload()[0], 200)
        self.enrol("vault-pinned", "anchors-restored")


if __name__ == "__main__":
    unittest.main()
