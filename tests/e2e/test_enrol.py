"""Enrolment with `openssl cmp` over TLS: ir (signature, PBM, implicitConfirm), cr, p10cr, kur; HTTP/1.1 and
HTTP/2 with curl; the request log line."""
import json
import time
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402


class Enrol(harness.GatewayTestCase):

    def enrol(self, cmd, name, auth="sig", extra=(), subject=None, sans=None):
        """One openssl cmp enrolment; checks the issued certificate and returns the CmpResult."""
        key = self.newkey(name)
        subject = subject or "/O=cmpgw e2e/CN=%s" % name
        argv = list(extra)
        if sans:
            argv += ["-sans", " ".join(sans)]
        res = self.gw.cmp(cmd, name, auth=auth, newkey=key, subject=subject, extra=argv)
        want_body = {"ir": "ip", "cr": "cp", "kur": "kup", "p10cr": "cp"}[cmd]
        self.assertEqual(res.first.body_type, want_body, res.answers)
        self.assertIn(res.first.status, (0, 1), res.first)  # accepted / grantedWithMods
        want_sans = ["DNS:%s" % s if not s[0].isdigit() else "IP Address:%s" % s for s in (sans or ())]
        self.assert_issued(res.cert, key, "CN=%s,O=cmpgw e2e" % name, want_sans,
                           res.first.extra_certs_pem())
        return res, key

    def test_ir_signature(self):
        res, _ = self.enrol("ir", "ir-sig", sans=["ir-sig.example", "127.0.0.1"])
        # ir, then certConf answered by pkiconf (RFC 9483 §4.1.1)
        self.assertEqual([a.body_type for a in res.answers], ["ip", "pkiconf"])
        self.assertFalse(res.first.implicit_confirm())

    def test_ir_pbm(self):
        res, _ = self.enrol("ir", "ir-pbm", auth="pbm")
        self.assertEqual([a.body_type for a in res.answers], ["ip", "pkiconf"])
        # a PBM request gets a MAC-protected answer (RFC 9810 §5.1.3.1)
        self.assertEqual(str(res.first.msg["header"]["protectionAlg"]["algorithm"]), "1.2.840.113533.7.66.13")

    def test_ir_implicit_confirm(self):
        res, _ = self.enrol("ir", "ir-implicit", extra=["-implicit_confirm"])
        self.assertEqual([a.body_type for a in res.answers], ["ip"])
        self.assertTrue(res.first.implicit_confirm())

    def test_cr(self):
        self.enrol("cr", "cr-sig")

    def test_p10cr(self):
        key = self.newkey("p10")
        csr = self.gw.dir / "p10.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=cmpgw e2e/CN=p10",
                     "-addext", "subjectAltName=DNS:p10.example", "-out", csr])
        res = self.gw.cmp("p10cr", "p10", extra=["-csr", csr])
        self.assertEqual(res.first.body_type, "cp", res.answers)
        self.assert_issued(res.cert, key, "CN=p10,O=cmpgw e2e", ["DNS:p10.example"], res.first.extra_certs_pem())

    def test_kur(self):
        first, old_key = self.enrol("ir", "kur-old")
        new_key = self.newkey("kur-new")
        # kur is signed by the certificate being updated (RFC 9483 §4.1.3)
        res = self.gw.cmp("kur", "kur", auth=(first.cert, old_key), newkey=new_key)
        self.assertEqual(res.first.body_type, "kup", res.answers)
        self.assert_issued(res.cert, new_key, "CN=kur-old,O=cmpgw e2e", [], res.first.extra_certs_pem())

    def post_der(self, http):
        der = self.gw.make_request("post-%s" % http.strip("-"))
        r = self.gw.curl(data=der, http=http)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("content-type"), "application/pkixcmp", r)
        self.assertEqual(r.headers.get("content-length"), str(len(r.body)), r)
        self.assertNotIn("transfer-encoding", r.headers)
        ans = harness.decode_cmp(r.body)
        self.assertEqual(ans.body_type, "ip", ans)
        self.assertEqual(ans.status, 0, ans)
        return r

    def test_http11(self):
        r = self.post_der("--http1.1")
        self.assertTrue(r.version.startswith("HTTP/1.1"), r)

    def test_http2_off_by_default(self):
        """A listener offers no h2 unless it says "http2": true: curl falls back to HTTP/1.1."""
        r = self.post_der("--http2")
        self.assertTrue(r.version.startswith("HTTP/1.1"), r)

    def test_request_log(self):
        res, _ = self.enrol("ir", "logged", auth="pbm")
        tid = bytes(res.first.header["transactionID"]).hex()
        lines = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not lines:
            lines = [l for l in self.gw.log_lines() if tid in json.dumps(l).lower()]
            time.sleep(0.1)
        self.assertTrue(lines, "no log line names transactionID %s:\n%s" % (tid, self.gw.stderr()[-3000:]))
        ir_lines = [l for l in lines if l.get("event") == "request" and l.get("req_type") == "ir"]
        self.assertEqual(len(ir_lines), 1, lines)
        line = ir_lines[0]
        for field in ("time", "level", "event", "peer", "method", "path", "status", "req_type", "rsp_type", "tid",
                      "identity", "outcome", "serial", "duration_ms"):
            self.assertIn(field, line, line)
        self.assertEqual((line["rsp_type"], line["status"], line["path"]), ("ip", "200", "/pki/cmp"), line)
        self.assertEqual(line["tid"], tid, line)
        self.assertEqual(line["outcome"], "accepted", line)
        self.assertEqual(line["identity"], "pbm:demo-device", line)
        self.assertNotEqual(line["serial"], "", line)
        # never a secret in the log (STYLE: never log secrets)
        self.assertNotIn(self.gw.pbm_secret, self.gw.stderr())


if __name__ == "__main__":
    harness.main()
