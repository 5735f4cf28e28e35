"""The local issuer's CRL over HTTP (GET <prefix>/crl/<upstream>[.crl]), with the real gateway over TLS.

An empty CRL verifies with `openssl crl -CAfile`; it is public (no TLS client certificate), carries
Content-Type application/pkix-crl and Content-Length; issued certificates point at it (CRL distribution
point from "crl_url"); after an `openssl cmp -cmd rr` by the holder the CRL lists the serial with its
reason and `openssl verify -crl_check` refuses the certificate while another one still verifies. The
twins: POST on the CRL path (405, Allow: GET), GET on a CMP path (405, Allow: POST), unknown upstream
(404), a CRL path that is not a local issuer's (404), a store that cannot be read when the CRL is due
(500). CrlAcrossInstances: two gateways on one store ("shared_store"): a certificate revoked through one
is on the CRL the other serves within a second, though it had built its CRL before, and the CRL numbers grow
across both."""
import sys
import time
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402


def crl_text(path):
    """`openssl crl -text` of a DER CRL file, after checking it verifies with the issuing CA."""
    p = harness.run(["openssl", "crl", "-inform", "DER", "-in", path, "-CAfile", path.parent / "issuing.pem",
                     "-noout", "-text"])
    if b"verify OK" not in p.stderr + p.stdout:
        raise harness.Failure("CRL signature not verified: %s %s" % (p.stdout, p.stderr))
    return p.stdout.decode()



class CrlOverHttp(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["upstreams"]["local"]["crl_url"] = "https://127.0.0.1:%d/pki/crl/local.crl" % gw.port
        # a second upstream that is not a local issuer: its CRL is not ours to serve
        # (nothing listens there, so it cannot vouch for the demo root's client certificate either)
        cfg["upstreams"]["remote"] = {"type": "vault", "url": "https://127.0.0.1:1", "issuer_ca": "ca.pem",
                                      "token_file": "pbm.secret", "check_revocation": False}

    def get_crl(self, name, path="/pki/crl/local"):
        """GET the CRL without a TLS client certificate; checks the headers; returns the DER file."""
        r = self.gw.curl(path=path, tls=None)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/pkix-crl")
        self.assertEqual(int(r.headers.get("content-length", "-1")), len(r.body))
        self.assertNotIn("transfer-encoding", r.headers)
        out = self.gw.dir / ("%s.crl.der" % name)
        out.write_bytes(r.body)
        return out

    def rr(self, name, cert, key, reason):
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        p = harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path",
                         "pki/cmp", "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem",
                         "-tls_cert", d / "client.pem", "-tls_key", d / "client.key", "-oldcert", cert,
                         "-cert", cert, "-key", key, "-revreason", reason, "-rspout", rsp], cwd=d, check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))

    def verify(self, cert, crl_der):
        d = self.gw.dir
        pem = d / (crl_der.name + ".pem")
        harness.run(["openssl", "crl", "-inform", "DER", "-in", crl_der, "-out", pem])
        # the root has no CRL of ours: check the leaf only (-crl_check, not -crl_check_all)
        return harness.run(["openssl", "verify", "-crl_check", "-CRLfile", pem, "-CAfile", d / "ca.pem",
                            "-untrusted", d / "issuing.pem", cert], check=False)

    def test_empty_crl_verifies(self):
        text = crl_text(self.get_crl("empty"))
        self.assertIn("Version 2", text)
        self.assertIn("Issuer: O = cmpgw demo, CN = cmpgw demo issuing CA", text)
        self.assertIn("X509v3 CRL Number", text)
        self.assertIn("X509v3 Authority Key Identifier", text)
        self.assertIn("Next Update", text)
        # the same CRL under the other spellings of its path
        for path in ("/pki/crl/local.crl", "/pki/crl/local/"):
            crl_text(self.get_crl("alias", path=path))

    def test_issued_certificate_points_at_the_crl(self):
        cert, _ = self.enrol("cdp")
        p = harness.run(["openssl", "x509", "-in", cert, "-noout", "-ext", "crlDistributionPoints"])
        self.assertIn("URI:https://127.0.0.1:%d/pki/crl/local.crl" % self.gw.port, p.stdout.decode())

    def test_rr_then_crl_lists_serial(self):
        revoked, key = self.enrol("crl-holder")
        kept, _ = self.enrol("crl-bystander")
        self.assertEqual(self.verify(revoked, self.get_crl("before")).returncode, 0)
        self.rr("crl-rr", revoked, key, "1")  # keyCompromise
        crl = self.get_crl("after")
        text = crl_text(crl)
        self.assertIn("Serial Number: %s" % harness.serial_hex(revoked).upper(), text)
        self.assertNotIn("Serial Number: %s" % harness.serial_hex(kept).upper(), text)
        self.assertIn("Key Compromise", text)
        p = self.verify(revoked, crl)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"certificate revoked", p.stdout + p.stderr)
        self.assertEqual(self.verify(kept, crl).returncode, 0)

    def test_refusals(self):
        """Each answer is the one line docs/errors.md gives: crl_method, crl_unknown_path."""
        served = b": a local issuer's CRL is served at /pki/crl/<upstream>[.crl]\n"
        cases = [
            # (path, method, status, Allow, the body)
            ("/pki/crl/local", "POST", 405, "GET", b"method POST not allowed: a CRL is fetched with GET\n"),
            ("/pki/crl/local", "PUT", 405, "GET", b"method PUT not allowed: a CRL is fetched with GET\n"),
            ("/pki/cmp", "GET", 405, "POST", b"method GET not allowed: CMP requests use POST\n"),
            ("/pki/crl/nope", "GET", 404, None, b"unknown upstream nope" + served),
            ("/pki/crl/remote", "GET", 404, None, b"not a local issuer (ask the CA itself for its CRL): remote" + served),
            ("/pki/crl", "GET", 404, None, b"unknown path /pki/crl" + served),
            ("/pki/crl/local/x", "GET", 404, None, b"unknown path /pki/crl/local/x" + served),
        ]
        for path, method, status, allow, body in cases:
            with self.subTest(path=path, method=method):
                r = self.gw.curl(path=path, method=method, tls=None)
                self.assertEqual(r.status, status, r)
                self.assertEqual(r.headers.get("allow"), allow)
                self.assertEqual(r.body, body)
                self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r)


class CrlUnavailable(harness.GatewayTestCase):
    """A local issuer whose store cannot be read when its CRL is due: the one line of crl_unavailable, and
    the CRL again once the store is repaired."""

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)

    def test_store_unreadable(self):
        store = self.gw.dir / "store"
        revoked, away = store / "revoked", store / "revoked.away"
        if revoked.exists():
            revoked.rename(away)
        revoked.write_bytes(b"")  # not a directory: the revocations cannot be listed
        try:
            r = self.gw.curl(path="/pki/crl/local", tls=None)
        finally:
            revoked.unlink()
            if away.exists():
                away.rename(revoked)
        # docs/errors.md crl_unavailable
        self.assertEqual((r.status, r.body), (500, b"the CRL is unavailable; retry later\n"))
        self.assertTrue(r.headers.get("content-type", "").startswith("text/plain"), r)
        # the twin: the store repaired, the same GET has the CRL
        r = self.gw.curl(path="/pki/crl/local", tls=None)
        self.assertEqual((r.status, r.headers.get("content-type")), (200, "application/pkix-crl"))
        out = self.gw.dir / "repaired.crl.der"
        out.write_bytes(r.body)
        crl_text(out)


def crl_number(text):
    """The CRL Number of `openssl crl -text` output."""
    lines = text.splitlines()
    at = [i for i, line in enumerate(lines) if "X509v3 CRL Number" in line]
    if not at:
        raise harness.Failure("no CRL number in %s" % text)
    return int(lines[at[0] + 1].strip(), 16 if ":" in lines[at[0] + 1] else 10)


class CrlAcrossInstances(harness.GatewayTestCase):
    """Two instances of a cluster on one local store (docs/operations.md, "Several instances")."""

    get_crl, rr = CrlOverHttp.get_crl, CrlOverHttp.rr

    @classmethod
    def edit_config(cls, cfg, gw):
        CrlOverHttp.edit_config(cfg, gw)
        cfg["upstreams"]["local"]["store"] = str(gw.dir / "store")  # the twin's too
        cfg["upstreams"]["local"]["shared_store"] = True

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gw2 = cls.gw.twin(cls.gw.dir.parent / "pki2")
        cls.gw2.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw2.stop()
        finally:
            super().tearDownClass()

    def get_crl2(self, name):
        r = self.gw2.curl(path="/pki/crl/local", tls=None)
        self.assertEqual(r.status, 200, r)
        out = self.gw.dir / ("%s.crl.der" % name)
        out.write_bytes(r.body)
        return crl_text(out)

    def test_revoked_through_one_on_the_others_crl(self):
        cert, key = self.enrol("shared-holder")
        serial = "Serial Number: %s" % harness.serial_hex(cert).upper()
        before = self.get_crl2("shared-before")  # the second instance holds a CRL without it
        self.assertNotIn(serial, before)
        self.assertEqual(self.get_crl2("shared-cached"), before)  # and serves it while nothing changes
        first = crl_number(crl_text(self.get_crl("shared-first")))
        self.assertGreater(first, crl_number(before))
        self.rr("shared-rr", cert, key, "1")
        time.sleep(1.1)  # an instance reads the store's generation at most once a second
        after = self.get_crl2("shared-after")
        self.assertIn(serial, after)
        self.assertGreater(crl_number(after), first)
        self.assertIn(serial, crl_text(self.get_crl("shared-first-after")))


if __name__ == "__main__":
    harness.main()
