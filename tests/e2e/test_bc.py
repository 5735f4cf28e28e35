"""The BouncyCastle client: ir with signature and with PBM (SHA-256, 10 000 iterations, HMAC-SHA256), each
followed by certConf; and a certConf whose certHash does not match the issued certificate."""
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


if __name__ == "__main__":
    harness.main()
