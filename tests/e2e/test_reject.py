"""What the gateway refuses, and how it says so: CMP errors (untrusted signer, wrong PBM secret, a resent
ir) decoded from the response DER, and HTTP errors (415, 405, 404) with their one-line reasons; the 413
of an oversized body is test_errors.py's, against its row in docs/errors.md. And how a path's spellings
reach a role: the role its canonical form names, or an HTTP error before any CMP is read."""
import socket
import sys
import unittest
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
                              "by a CA trusted on this route, or the signature does not match it")

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


class PathSpelling(harness.GatewayTestCase):
    """How a request path reaches a role (mappings/route.c), through h2o and the real gateway: the path is
    matched as the client sent it, never percent-decoded or dot-resolved, so every spelling of a path either
    reaches exactly the role its canonical form names, under that role's checks, or is refused with an HTTP
    error before any CMP is read. Role "narrow" allows one CN that the default role's client does not ask
    for: reaching it shows as its refusal; a spelling that reached the default role would be issued."""

    NARROW = "/pki/roles/narrow/cmp"

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["roles"]["narrow"] = dict(cfg["roles"]["default"],
                                      authorization={"allowed_common_names": ["only.example.org"]})
        cfg["label_to_path_policy"]["shut"] = "forbid"
        cfg["listeners"][0]["tls"]["http2"] = True  # HTTP/1.1 unless a client offers h2

    def post(self, target, der):
        """POST |der| to the raw request-target |target| (bytes, sent as they are): (status, headers, body)."""
        body = der.read_bytes()
        sock = self.gw.tls_context().wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port)),
                                                 server_hostname="localhost")
        with sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/pkixcmp\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (target, len(body), body))
            data = harness.read_to_eof(sock)
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict((k.strip().lower(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:]))
        return int(lines[0].split(" ")[1]), headers, rest

    def assert_narrow(self, target):
        self.fresh += 1
        der = self.gw.make_request("spell-%d" % self.fresh)
        status, headers, body = self.post(target, der)
        self.assertEqual((status, headers.get("content-type")), (200, "application/pkixcmp"),
                         (target, body[:200]))
        self.assert_cmp_error(harness.decode_cmp(body), REJECTED_CERT_BODIES, "badCertTemplate",
                              "only.example.org")

    def assert_refused(self, target, status, reason=None):
        got, headers, body = self.post(target, self.der)
        self.assertEqual(got, status, (target, body[:200]))
        self.assertNotEqual(headers.get("content-type"), "application/pkixcmp", (target, body[:200]))
        if reason is not None:
            self.assertIn(reason, body.decode(errors="replace"), target)

    def setUp(self):
        self.fresh = 0
        self.der = self.gw.make_request("spell")  # never read: each of its uses is refused before CMP

    def test_canonical_and_equivalent_spellings_reach_the_role(self):
        """The trailing slash, an operation segment, a query string: the same role, the same checks."""
        for target in (self.NARROW, self.NARROW + "/", self.NARROW + "?role=default",
                       self.NARROW + "?x=/pki/cmp", self.NARROW + "/initialization",
                       self.NARROW + "/initialization/", self.NARROW + "/?a#b"):
            self.assert_narrow(target.encode())
        # the control: the default role issues the same request
        status, _, body = self.post(b"/pki/cmp", self.gw.make_request("spell-default"))
        self.assertEqual((status, harness.decode_cmp(body).status), (200, 0), body[:200])

    def test_other_spellings_refused_before_cmp(self):
        """What a proxy or h2o might read as another path is a 404 here, never the role it might mean."""
        not_found = {
            b"/pki/roles/narrow/../../cmp": "empty or dot segment",
            b"/pki/roles/x/../narrow/cmp": "empty or dot segment",
            b"/pki/./cmp": "empty or dot segment",
            b"/pki/roles/narrow/cmp/.": "empty or dot segment",
            b"//pki/cmp": "empty or dot segment",
            b"/pki//cmp": "empty or dot segment",
            b"/pki/roles/narrow/cmp//": "empty or dot segment",
            b"/pki/roles/%6earrow/cmp": "percent-encoded path",
            b"/pki/roles/narrow%2fcmp": "percent-encoded path",
            b"/pki/roles/narrow/cmp/%2e%2e/%2e%2e/cmp": "percent-encoded path",
            b"/pki/%2e/cmp": "percent-encoded path",
            b"/pki/cmp%00": "percent-encoded path",
            b"/pki/roles/Narrow/cmp": "unknown role Narrow",
            b"/PKI/cmp": "unknown path /PKI/cmp",
            b"/pki/CMP": "unknown path /pki/CMP",
            b"/pki/roles/narrow/cmp#x": "invalid character in path",
            b"/pki/roles/narrow/cmp;x": "invalid character in path",
            b"/pki/roles/narrow\\..\\cmp": "invalid character in path",
            b"/pki/roles/narrow/cmp/\xc3\xa9": "invalid character in path",
            b"http://localhost/pki/cmp": "unknown path http://localhost/pki/cmp",
            b"pki/cmp": "unknown path pki/cmp",
            b"*": "unknown path *",
            b"/pki/cmp/" + b"x" * 600: "path too long (609 bytes; the limit is 512)",
        }
        for target, reason in not_found.items():
            self.assert_refused(target, 404, reason)
        for target in (b"/pki/cmp\x00", b"/pki/roles/narrow\x01/cmp", b"/pki/cmp\x7f"):
            self.assert_refused(target, 400)  # the HTTP parser refuses the request line itself
        # a label whose policy is "forbid": refused however it is spelled, never served by another role
        for target in (b"/.well-known/cmp/p/shut", b"/.well-known/cmp/p/shut/", b"/.well-known/cmp/p/shut?x",
                       b"/.well-known/cmp/p/shut/initialization"):
            self.assert_refused(target, 403, "CMP on this label is disabled by policy (forbid)")
        for target in (b"/.well-known/cmp/p/SHUT", b"/.well-known/cmp/p/%73hut", b"/.well-known/cmp/p/./shut"):
            self.assert_refused(target, 404)

    def test_http2_path_alike(self):
        """HTTP/2's :path, as curl --path-as-is sends it, is matched as HTTP/1's request-target is."""
        der = self.gw.make_request("spell-h2")
        for path in ("/pki/roles/narrow/../../cmp", "/pki/./cmp", "/pki//cmp", "/pki/roles/%6earrow/cmp"):
            r = self.gw.curl("--path-as-is", path=path, data=der, http="--http2")
            self.assertEqual((r.version, r.status), ("HTTP/2", 404), (path, r))
        r = self.gw.curl("--path-as-is", path=self.NARROW + "/?x=/pki/cmp", data=der, http="--http2")
        self.assertEqual((r.version, r.status), ("HTTP/2", 200), r)
        self.assert_cmp_error(harness.decode_cmp(r.body), REJECTED_CERT_BODIES, "badCertTemplate",
                              "only.example.org")


if __name__ == "__main__":
    harness.main()
