"""What the gateway refuses, and how it says so: CMP errors (untrusted signer, wrong PBM secret, a resent
ir) decoded from the response DER, and HTTP errors (415, 405, 404) with their one-line reasons; the 413
of an oversized body is test_errors.py's, against its row in docs/errors.md."""
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

# one text for a wrong secret and an unknown reference: no probing for which references exist
PBM_FAILED = ("PBM protection could not be verified: check the reference (senderKID) and the shared "
              "secret")

REJECTED_CERT_BODIES = ("error", "ip")


class Reject(harness.GatewayTestCase):

    def test_untrusted_signer(self):
        _, cert, key = harness.make_foreign_pki(self.gw.dir / "foreign")
        res = self.gw.cmp("ir", "untrusted", auth=(cert, key), newkey=self.newkey("untrusted"),
                          subject="/CN=untrusted", expect_cert=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIsNone(res.cert)
        # RFC 9810 §5.2.3: badMessageCheck = integrity/signature check failed
        self.assert_cmp_error(res.last, REJECTED_CERT_BODIES, "badMessageCheck",
                              "message protection could not be verified: the signer certificate is not issued "
                              "by a CA trusted on this route")

    def test_wrong_pbm_secret(self):
        res = self.gw.cmp("ir", "wrongpbm", auth=("pbm", "demo-device", "pass:not-the-secret-123"),
                          newkey=self.newkey("wrongpbm"), subject="/CN=wrongpbm", expect_cert=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, REJECTED_CERT_BODIES, "badMessageCheck", PBM_FAILED)

    def test_unknown_pbm_reference(self):
        res = self.gw.cmp("ir", "unknownref", auth=("pbm", "no-such-device", "pass:whatever-secret"),
                          newkey=self.newkey("unknownref"), subject="/CN=unknownref", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, REJECTED_CERT_BODIES, "badMessageCheck", PBM_FAILED)

    def test_resend_answered_ir(self):
        key = self.newkey("resend")
        first = self.gw.cmp("ir", "resend", newkey=key, subject="/CN=resend")
        self.assertEqual(first.first.body_type, "ip")
        ir_der = first.req_files[0]
        self.assertEqual(harness.decode_cmp(ir_der).body_type, "ir")
        again = self.gw.cmp("ir", "resend2", newkey=key, subject="/CN=resend", reqin=ir_der, expect_cert=False)
        self.assertIsNone(again.cert)
        # byte-identical request: the transaction it names is taken (RFC 9810 §5.1.1, RFC 9483 §3.5)
        self.assert_cmp_error(again.last, REJECTED_CERT_BODIES, "transactionIdInUse",
                              "replayed message: this transactionID and senderNonce were already used")
        self.assertEqual(again.last.header["transactionID"], first.first.header["transactionID"])

    # -- HTTP ----------------------------------------------------------------------------------

    def assert_http_error(self, r, status):
        self.assertEqual(r.status, status, r)
        text = r.body.decode("utf-8", errors="replace").strip()
        # one human-readable line, not an HTML page
        self.assertTrue(text and "\n" not in text, repr(text))
        self.assertNotIn("<html", text.lower())
        return text

    def test_wrong_content_type(self):
        der = self.gw.make_request("ctype")
        r = self.gw.curl(data=der, content_type="application/octet-stream")
        self.assertEqual(self.assert_http_error(r, 415),
                         'unsupported Content-Type "application/octet-stream": expected application/pkixcmp')

    def test_wrong_method(self):
        r = self.gw.curl(method="GET")
        self.assertEqual(self.assert_http_error(r, 405), "method GET not allowed: CMP requests use POST")
        self.assertEqual(r.headers.get("allow"), "POST", r)

    def test_unknown_path(self):
        der = self.gw.make_request("path")
        r = self.gw.curl(data=der, path="/nowhere/cmp")
        self.assertEqual(self.assert_http_error(r, 404), "unknown path /nowhere/cmp: CMP is served at /pki/cmp, "
                         "/pki/roles/<role>/cmp, /.well-known/cmp[/p/<label>]")

    def test_well_known_path(self):
        """RFC 9811 §3: /.well-known/cmp is served too (trailing slash accepted)."""
        for path in ("/.well-known/cmp", "/.well-known/cmp/"):
            der = self.gw.make_request("wk%d" % len(path))
            r = self.gw.curl(data=der, path=path)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(harness.decode_cmp(r.body).body_type, "ip")


if __name__ == "__main__":
    harness.main()
