"""The BouncyCastle client: ir with signature and with PBM (SHA-256, 10 000 iterations, HMAC-SHA256), each
followed by certConf; a certConf whose certHash does not match the issued certificate; and an ir naming a
certificate profile (RFC 9483 §3.1) that selects another role than the path's, whose certConf does not
repeat it."""
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402


class BouncyCastle(harness.GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        harness.bc_classes()  # compile before the gateway starts: javac is the slow part
        super().setUpClass()

    def bc_ok(self, name, mode):
        key = self.newkey(name)
        # X500Name strings are in DER order (RFC 2253 printing reverses it)
        rc, err, cert, last = harness.bc_enrol(self.gw, name, mode, subject="O=cmpgw e2e,CN=%s" % name,
                                               extra=["--newkey", key, "--san-dns", "%s.example" % name])
        self.assertEqual(rc, 0, err)
        self.assertEqual(last.body_type, "pkiconf", last)  # the answer to certConf
        self.assert_issued(cert, key, "CN=%s,O=cmpgw e2e" % name, ["DNS:%s.example" % name],
                           (self.gw.dir / ("%s.cert.pem.extracerts" % name)).read_text())

    def test_ir_signature_certconf(self):
        self.bc_ok("bc-sig", "sig")

    def test_ir_pbm_certconf(self):
        self.bc_ok("bc-pbm", "pbm")

    def test_bad_certhash(self):
        rc, err, cert, last = harness.bc_enrol(self.gw, "bc-badhash", "sig", subject="CN=bc-badhash",
                                               extra=["--bad-certhash"], check=False)
        self.assertEqual(rc, 1, err)
        self.assertIsNotNone(cert, "the ip carried no certificate: " + err)
        self.assertIsNotNone(last, err)
        # RFC 9810 §5.3.18: the certHash identifies the certificate being confirmed
        self.assert_cmp_error(last, ("error",), "badCertId",
                              "certHash does not match the certificate issued in this transaction")


class BouncyCastleProfiles(harness.GatewayTestCase):
    """Profile tls-server selects role tls: serverAuth only, and a PBM credential of its own (tls-device)
    that the default role does not accept."""

    @classmethod
    def setUpClass(cls):
        harness.bc_classes()
        super().setUpClass()

    @classmethod
    def edit_config(cls, cfg, gw):
        (gw.dir / "tls.secret").write_text("tls-device-secret-0123456789\n")
        (gw.dir / "tls.secret").chmod(0o600)
        cfg["pbm"]["tls-device"] = {"secret_file": "tls.secret"}
        cfg["roles"]["tls"] = dict(cfg["roles"]["default"], pbm=["tls-device"], ext_key_usage=["serverAuth"],
                                   key_usage=["digitalSignature"])
        cfg["profiles"] = {"tls-server": "role:tls"}

    def eku(self, cert):
        return harness.run(["openssl", "x509", "-in", cert, "-noout", "-ext", "extendedKeyUsage"]).stdout.decode()

    def enrol(self, name, mode, *extra, **kw):
        key = self.newkey(name)
        return harness.bc_enrol(self.gw, name, mode, subject="O=cmpgw e2e,CN=%s" % name,
                                extra=["--newkey", key] + list(extra), **kw)

    def test_profile_ir_signature(self):
        rc, err, cert, last = self.enrol("bc-prof-sig", "sig", "--profile", "tls-server")
        self.assertEqual((rc, last.body_type), (0, "pkiconf"), err)
        self.assertIn("TLS Web Server Authentication", self.eku(cert))
        self.assertNotIn("Client", self.eku(cert))
        # the twin: without the profile the path's role issues, with clientAuth
        rc, err, cert, _ = self.enrol("bc-noprof-sig", "sig")
        self.assertEqual(rc, 0, err)
        self.assertIn("TLS Web Client Authentication", self.eku(cert))

    def test_profile_ir_pbm_certconf(self):
        """ir with the profile and the profile role's PBM credential; its certConf names no profile and is
        still accepted: it continues the transaction, not the path's role."""
        tls = ("pbm", "tls-device", self.gw.dir / "tls.secret")
        rc, err, cert, last = self.enrol("bc-prof-pbm", tls, "--profile", "tls-server")
        self.assertEqual((rc, last.body_type), (0, "pkiconf"), err)
        self.assertNotIn("Client", self.eku(cert))
        # the twin: the same credential without the profile is the default role's, which refuses it
        rc, err, cert, last = self.enrol("bc-noprof-pbm", tls, check=False)
        self.assertEqual(rc, 1)
        self.assertIsNone(cert)
        self.assert_cmp_error(last, ("error",), "badMessageCheck", "PBM protection could not be verified")

    def test_profile_refused(self):
        for profile, path, text in (
                ("nope", "/pki/cmp", 'certProfile "nope" is not served on this path: name a profile this server\'s '
                 'operator gave you for this path'),
                ("tls-server", "/pki/roles/default/cmp", 'certProfile "tls-server" is not served on this path')):
            with self.subTest(profile=profile, path=path):
                rc, err, cert, last = self.enrol("bc-prof-" + profile, "sig", "--profile", profile,
                                                 url=self.gw.url(path), check=False)
                self.assertEqual((rc, cert), (1, None), err)
                self.assert_cmp_error(last, ("error",), "badRequest", text)


if __name__ == "__main__":
    harness.main()
