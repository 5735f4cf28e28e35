"""cmpgw in front of a real `cfssl serve` (Debian golang-cfssl) over TLS: p10cr through sign and through
authsign, role paths, a CSR the cfssl profile refuses, a wrong auth key, cfssl down, CRMF to a CSR-only
upstream, and rr revoking in cfssl's certificate database. Every negative case asserts the decoded CMP
answer (PKIStatus, failInfo, statusString)."""
import sys
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import cfsslenv  # noqa: E402
import test_errors  # noqa: E402



class CfsslFrontDoor(harness.GatewayTestCase):
    cfssl = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.cfssl = cfsslenv.running(cls, gw.dir)
        # cfssl 1.2 (Debian 12) serves no CRL: its certificates can sign requests only unchecked
        common = cls.cfssl.upstream(check_revocation=False)
        cfg["upstreams"].update({
            "cfssl": dict(common),
            "cfssl-auth": dict(common, auth_key_file="cfssl.authkey"),
            "cfssl-wrongkey": dict(common, auth_key_file="cfssl.wrongkey"),
            # nothing listens there: a port that was free a moment ago
            "cfssl-down": dict(common, url="https://127.0.0.1:%d" % harness.free_port()),
        })
        base = dict(cfg["roles"]["default"])
        base.pop("upstream", None)
        base["allowed_san_types"] = ["dns", "ip"]
        cfg["roles"].update({
            "cfssl": dict(base, upstream="cfssl", upstream_role="devices"),
            "cfssl-auth": dict(base, upstream="cfssl-auth", upstream_role="servers"),
            "cfssl-strict": dict(base, upstream="cfssl", upstream_role="strict"),
            "cfssl-wrongkey": dict(base, upstream="cfssl-wrongkey", upstream_role="servers"),
            "cfssl-noauth": dict(base, upstream="cfssl", upstream_role="servers"),
            "cfssl-down": dict(base, upstream="cfssl-down", upstream_role="devices"),
        })
        cfg["label_to_path_policy"]["cfssl"] = "role:cfssl"


    # -- helpers --------------------------------------------------------------------------------

    def csr(self, name, subject, sans=None):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        argv = ["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr]
        if sans:
            argv += ["-addext", "subjectAltName=%s" % ",".join(sans)]
        harness.run(argv)
        return key, csr

    def p10cr(self, role, name, subject, sans=None, expect_cert=True, path=None):
        key, csr = self.csr(name, subject, sans)
        res = self.gw.cmp("p10cr", name, path=path or "pki/roles/%s/cmp" % role, extra=["-csr", csr],
                          expect_cert=expect_cert)
        return res, key

    def assert_from_cfssl(self, res, key, subject, sans):
        """Issued by cfssl (in its certdb), for the CSR's key, chaining to cfssl's CA and to the demo root."""
        self.assertEqual(res.first.body_type, "cp", res.answers)
        # cfssl's profiles issue for 72h where the role plans 720h: the gateway's check of what came back
        # sees the change and says grantedWithMods (1), not accepted
        self.assertEqual(res.first.status, 1, res.first)
        self.assert_issued(res.cert, key, subject, sans, res.first.extra_certs_pem())
        harness.run(["openssl", "verify", "-partial_chain", "-CAfile", self.gw.dir / "cfssl-ca.pem", res.cert])
        self.assertEqual(self.cfssl.record(res.cert), ("good", 0))
        # the chain the gateway sends carries cfssl's CA (from cfssl's info endpoint)
        self.assertIn((self.gw.dir / "cfssl-ca.pem").read_text().strip().splitlines()[1],
                      res.first.extra_certs_pem().replace("\n", ""))

    # -- positive -------------------------------------------------------------------------------

    def test_p10cr_sign(self):
        res, key = self.p10cr("cfssl", "cf-sign", "/O=cmpgw e2e/CN=dev1.example.com",
                              ["DNS:dev1.example.com", "IP:127.0.0.1"])
        self.assert_from_cfssl(res, key, "CN=dev1.example.com,O=cmpgw e2e",
                               ["DNS:dev1.example.com", "IP Address:127.0.0.1"])

    def test_p10cr_authsign(self):
        res, key = self.p10cr("cfssl-auth", "cf-auth", "/O=cmpgw e2e/CN=srv1.example.com",
                              ["DNS:srv1.example.com"])
        self.assert_from_cfssl(res, key, "CN=srv1.example.com,O=cmpgw e2e", ["DNS:srv1.example.com"])
        # the HMAC key never reaches the logs
        key_hex = (self.gw.dir / "cfssl.authkey").read_text().strip()
        self.assertNotIn(key_hex, self.gw.stderr())

    def test_label_path(self):
        res, key = self.p10cr(None, "cf-label", "/O=cmpgw e2e/CN=lbl.example.com", ["DNS:lbl.example.com"],
                              path=".well-known/cmp/p/cfssl")
        self.assert_from_cfssl(res, key, "CN=lbl.example.com,O=cmpgw e2e", ["DNS:lbl.example.com"])

    def test_strict_profile_accepts_whitelisted(self):
        res, key = self.p10cr("cfssl-strict", "cf-strict-ok", "/CN=ok.example.com", ["DNS:ok.example.com"])
        self.assert_from_cfssl(res, key, "CN=ok.example.com", ["DNS:ok.example.com"])

    # -- negative -------------------------------------------------------------------------------

    def test_profile_refuses(self):
        res, _ = self.p10cr("cfssl-strict", "cf-strict-bad", "/CN=bad.other.org", ["DNS:bad.other.org"],
                            expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", "Request does not match policy whitelist", "5500")

    def test_wrong_auth_key(self):
        res, _ = self.p10cr("cfssl-wrongkey", "cf-wrongkey", "/CN=w.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "operator problem", "invalid token")

    def test_auth_key_missing(self):
        # the "servers" profile has an auth_key: cfssl refuses a plain sign to it
        res, _ = self.p10cr("cfssl-noauth", "cf-noauth", "/CN=n.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "operator problem", "authentication required")

    def test_cfssl_down(self):
        res, _ = self.p10cr("cfssl-down", "cf-down", "/CN=d.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "unavailable", "nothing was issued")

    def test_crmf_rejected(self):
        key = self.newkey("cf-ir")
        res = self.gw.cmp("ir", "cf-ir", newkey=key, subject="/CN=ir.example.com", path="pki/roles/cfssl/cmp",
                          expect_cert=False)
        self.assertEqual(res.first.body_type, "ip", res.first)
        self.assert_rejected(res, "badCertTemplate", "send a p10cr")

    def test_revoke(self):
        res, key = self.p10cr("cfssl", "cf-rr", "/O=cmpgw e2e/CN=rr.example.com", ["DNS:rr.example.com"])
        self.assertEqual(self.cfssl.record(res.cert), ("good", 0))
        chain = self.gw.dir / "cf-rr.chain.pem"
        chain.write_text(res.first.extra_certs_pem())
        rr = self.gw.cmp("rr", "cf-rr-rr", auth=(res.cert, key), path="pki/roles/cfssl/cmp", expect_cert=False,
                         extra=["-oldcert", res.cert, "-revreason", "1", "-untrusted", chain])
        self.assertEqual(rr.first.body_type, "rp", rr.answers)
        self.assertEqual(rr.first.status, 0, rr.first)
        self.assertEqual(rr.returncode, 0, rr.stderr)
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", 1))

    def test_withdrawal_after_rr_not_repeated(self):
        """A certificate its holder revoked before its transaction ended, then withdrawn by the client's
        error message: cfssl cannot say it is revoked and would record the withdrawal's reason and time over
        the rr's, so the gateway's own record answers and cfssl is not asked again (one `revoked` record)."""
        key, csr = self.csr("cf-wd", "/O=cmpgw e2e/CN=wd.example.com", ["DNS:wd.example.com"])
        res = self.gw.cmp("p10cr", "cf-wd", path="pki/roles/cfssl/cmp", extra=["-csr", csr, "-disable_confirm"])
        serial = harness.serial_hex(res.cert)
        chain = self.gw.dir / "cf-wd.chain.pem"
        chain.write_text(res.first.extra_certs_pem())
        rr = self.gw.cmp("rr", "cf-wd-rr", auth=(res.cert, key), path="pki/roles/cfssl/cmp", expect_cert=False,
                         extra=["-oldcert", res.cert, "-revreason", "1", "-untrusted", chain])
        self.assertEqual((rr.first.body_type, rr.first.status), ("rp", 0), rr.first)
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", 1))
        # the client gives the certificate up: the gateway withdraws it
        req = test_errors.load(res.req_files[0].read_bytes())
        test_errors.set_octets(req["header"], "recipNonce", res.first.header["senderNonce"].asOctets())
        err = self.gw.dir / "cf-wd.error.der"
        err.write_bytes(test_errors.encoder.encode(test_errors.error_msg(req, self.gw.dir / "client.key")))
        self.assertEqual(self.gw.curl(data=err, path="/pki/roles/cfssl/cmp").status, 200)

        def revoked():
            return [r for r in harness.audit_records(self.gw, "revoked") if r.get("serial") == serial]

        def ended():
            return len(revoked()) > 1 or any(l.get("event") == "revoke_not_repeated" and l.get("serial") == serial
                                             for l in self.gw.log_lines())
        harness.settled(ended, bool)
        self.assertTrue(ended(), "the withdrawal did not end")
        self.assertEqual(len(revoked()), 1, revoked())
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", 1))



class CfsslStatusUnknown(harness.GatewayTestCase):
    """Where cfssl cannot tell whether a certificate it issued is revoked, that certificate authenticates
    nothing (fail closed), unless the operator says "check_revocation": false (the class above)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.cfssl = cfsslenv.running(cls, gw.dir)
        cfg["upstreams"]["cfssl"] = cls.cfssl.upstream()
        cfg["roles"]["default"].update(upstream="cfssl", upstream_role="devices", allowed_san_types=["dns", "ip"])


    def test_cfssl_certificate_cannot_sign_without_status(self):
        d = self.gw.dir
        key = self.newkey("cf-unknown")
        csr = d / "cf-unknown.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=cmpgw e2e/CN=unknown.example.com",
                     "-addext", "subjectAltName=DNS:unknown.example.com", "-out", csr])
        res = self.gw.cmp("p10cr", "cf-unknown", extra=["-csr", csr, "-implicit_confirm"])
        chain = d / "cf-unknown.chain.pem"
        chain.write_text(res.first.extra_certs_pem())
        again = self.gw.cmp("p10cr", "cf-unknown-2", auth=(res.cert, key), expect_cert=False,
                            extra=["-csr", csr, "-untrusted", chain, "-implicit_confirm"])
        self.assert_rejected(again, "systemUnavail", "the revocation status of the signer certificate cannot be "
                             "checked now (no CRL of upstream cfssl")


if __name__ == "__main__":
    harness.main()
