"""Revocation (RFC 9483 §4.2) over TLS with the real gateway: the holder revokes with `openssl cmp -cmd rr
-revreason`, another client is refused (notAuthorized), an RA identity (ra_subjects + id-kp-cmcRA) revokes,
and a PBM-protected rr is refused. Every answer is decoded independently (pyasn1 rp); after a revocation the
CRL the route serves over genm lists the serial with its reason, and the audit log keeps the reason."""
import os

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from pyasn1.codec.der import decoder as der_decoder  # noqa: E402
from pyasn1_modules import rfc5280  # noqa: E402

CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
RA_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo CMP signer"  # the demo signer carries id-kp-cmcRA


rp_status = harness.rp_status


audit = harness.audit_records


def serial_hex(cert):
    """Without leading zeros, as the CRL decoder below writes serials."""
    return harness.serial_hex(cert).lstrip("0")


def crl_entries(gw, name):
    """{serial hex: reason} of the CRL the route serves over genm id-it-crlStatusList (cmpclient)."""
    d = gw.dir
    p = harness.run([CLIENT_BIN, "--url", gw.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                     "--tls-key", d / "client.key", "--cert", d / "client.pem", "--key", d / "client.key",
                     "genm", "--out", d / name, "1.3.6.1.5.5.7.4.22"])
    if "itav 1.3.6.1.5.5.7.4.23 " not in p.stdout.decode():
        raise harness.Failure("no crls ITAV: %s" % p.stdout.decode())
    value = (d / ("%s.0.der" % name)).read_bytes()
    # SEQUENCE OF CertificateList: decode the first element with the schema
    inner = value[2:] if value[1] < 0x80 else value[2 + (value[1] & 0x7f):]
    crl, _ = der_decoder.decode(inner, asn1Spec=rfc5280.CertificateList())
    (d / ("%s.crl.der" % name)).write_bytes(inner)
    harness.run(["openssl", "crl", "-inform", "DER", "-in", d / ("%s.crl.der" % name), "-CAfile",
                 d / "issuing.pem", "-noout"])  # the signature verifies with the issuing CA
    out = {}
    revoked = crl["tbsCertList"]["revokedCertificates"]
    for entry in (revoked if revoked.isValue else []):
        reason = None
        if entry["crlEntryExtensions"].isValue:
            for ext in entry["crlEntryExtensions"]:
                if str(ext["extnID"]) == "2.5.29.21":
                    reason = int(der_decoder.decode(bytes(ext["extnValue"]), asn1Spec=rfc5280.CRLReason())[0])
        out["%x" % int(entry["userCertificate"])] = reason
    return out


class Revocation(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["roles"]["default"]["authorization"] = {"ra_subjects": [RA_SUBJECT]}

    def rr(self, name, victim, signer, reason="1"):
        """`openssl cmp -cmd rr` over TLS signed by |signer| (cert, key) or PBM ("pbm"): (exit code, rp DER)."""
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        argv = ["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path", "pki/cmp",
                "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem",
                "-tls_key", d / "client.key", "-oldcert", victim, "-rspout", rsp]
        if signer == "pbm":
            argv += ["-ref", "demo-device", "-secret", "file:%s" % (d / "pbm.secret")]
        else:
            argv += ["-cert", signer[0], "-key", signer[1]]
        if reason is not None:
            argv += ["-revreason", reason]
        p = harness.run(argv, cwd=d, check=False)
        if not rsp.exists():
            raise harness.Failure("no rp: %s" % p.stderr.decode(errors="replace"))
        return p.returncode, rsp.read_bytes()

    def test_holder_revokes_crl_lists_it(self):
        cert, key = self.enrol("holder")
        serial = serial_hex(cert)
        self.assertNotIn(serial, crl_entries(self.gw, "before"))
        rc, rp = self.rr("holder-rr", cert, (cert, key), reason="1")  # keyCompromise
        self.assertEqual(rc, 0)
        self.assertEqual(rp_status(rp), (0, [], []))
        self.assertEqual(crl_entries(self.gw, "after").get(serial), 1)
        self.assertTrue(any(int(r.get("serial", "0"), 16) == int(serial, 16) and "keyCompromise" in r["status"]
                            for r in audit(self.gw, "revoked")))

    def test_other_client_not_authorized(self):
        cert, _ = self.enrol("victim")
        d = self.gw.dir
        rc, rp = self.rr("thief-rr", cert, (d / "client.pem", d / "client.key"))  # neither holder nor RA
        self.assertNotEqual(rc, 0)
        status, fails, texts = rp_status(rp)
        self.assertEqual((status, fails), (2, ["notAuthorized"]))
        self.assertEqual(texts, ["only the holder of a certificate (signing the rr with it) or an RA of role "
                                 "default may revoke it"])
        self.assertNotIn(serial_hex(cert), crl_entries(self.gw, "thief"))

    def test_ra_revokes(self):
        cert, _ = self.enrol("ra-victim")
        d = self.gw.dir
        rc, rp = self.rr("ra-rr", cert, (d / "signer.pem", d / "signer.key"), reason="4")  # superseded
        self.assertEqual(rc, 0)
        self.assertEqual(rp_status(rp)[0], 0)
        self.assertEqual(crl_entries(self.gw, "ra").get(serial_hex(cert)), 4)
        self.assertTrue(any("by the RA" in r["status"] for r in audit(self.gw, "intent")
                            if int(r.get("serial", "0"), 16) == int(serial_hex(cert), 16)))

    def test_pbm_not_authorized(self):
        cert, _ = self.enrol("pbm-victim")
        _, rp = self.rr("pbm-rr", cert, "pbm")
        status, fails, texts = rp_status(rp)
        self.assertEqual((status, fails), (2, ["notAuthorized"]))
        self.assertIn("PBM protection is not accepted for rr", texts[0])

    def test_client_rr_with_reason(self):
        """The project's client (OpenSSL's API, OSSL_CMP_OPT_REVOCATION_REASON) revokes its own certificate."""
        cert, key = self.enrol("api-holder")
        d = self.gw.dir
        p = harness.run([CLIENT_BIN, "--url", self.gw.url(), "--cafile", d / "ca.pem", "--tls-cert",
                         d / "client.pem", "--tls-key", d / "client.key", "--cert", cert, "--key", key,
                         "--rspout", d / "api-rr.der", "rr", "--revoke", cert, "--reason", "5"])
        self.assertIn("revoked", p.stdout.decode())
        self.assertEqual(rp_status((d / "api-rr.der").read_bytes())[0], 0)
        self.assertEqual(crl_entries(self.gw, "api").get(serial_hex(cert)), 5)


if __name__ == "__main__":
    harness.main()
