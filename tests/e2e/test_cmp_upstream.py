"""cmpgw as a CMP RA in front of a real CMP CA: `openssl cmp -port` (OpenSSL's mock server) behind the `cmp`
upstream (docs/cmp-relay.md). The mock returns one canned certificate, so each test makes a certificate
for the exact key its client will use, signed by the mock's CA, and starts the mock with it (the mock
serves /pkix/ only, one transaction at a time, and listens on the wildcard address: OpenSSL offers no
other). Asserted on the decoded answers: an ir forwarded with raVerified and the certificate delivered; a
p10cr forwarded as p10cr; a certificate valid longer than the ir asked for released as grantedWithMods
(its twin, valid as asked, accepted); a role sending CRMF to the CMP CA and p10cr to its JSON (here local) upstream;
the holder of a certificate of the CMP CA revoking it there (rr), through its role and through one whose
crmf_upstream the CA is, and the CA rejecting that rr for good (the client told not to retry, without the
CA's text) or for its own trouble (retry later);
an upstream rejection and an upstream error message passed through with their failInfo and text, but
a rejection of the gateway's own request (badMessageCheck, notAuthorized) told as retry later; a
certificate for another key refused; the upstream down -> systemUnavail "could not be reached"; a CA that
took the whole request and held its answer past the timeout (the mock stopped with SIGSTOP) -> systemUnavail
"did not answer in time; the outcome is unknown"; an answer signed by another certificate of the upstream CA
than the expected sender's refused. A certificate outside the role
(an extension of the CA's own, a pathLenConstraint, a name or a subject nobody asked for, a notBefore a
month back) refused with its docs/errors.md row, rejected in the upstream certConf with that text (no
rr: the CA confirmed the rejection) and on record as such, each with its twin that is released."""
import datetime
import re
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import test_errors  # noqa: E402
from test_errors import RowAssertions  # noqa: E402

REJECTION = 2  # PKIStatus rejection (RFC 9810 §5.2.3)
# the revoke_failed status of an rr whose request reached the CA, which did not say that it revoked
OUTCOME_UNKNOWN = "outcome unknown (retry later): it may be revoked; check at the CA: "


def openssl(*argv):
    harness.run(["openssl"] + [str(a) for a in argv])


class Mock:
    """`openssl cmp -port` as the upstream CA, restarted per test with that test's canned certificate."""

    def __init__(self, d, port):
        self.d, self.port, self.proc = d, port, None

    def make_pki(self):
        d = self.d
        (d / "up.cnf").write_text(
            "[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\n"
            "[srv]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            "[leaf]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            # what a CA may add beyond a role: an extension of its own, a pathLenConstraint, a name
            "[odd]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n1.2.3.4=ASN1:NULL\n"
            "[pathlen]\nbasicConstraints=critical,CA:FALSE,pathlen:0\nkeyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            "[extra_san]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\nsubjectAltName=DNS:other.example.com\n")
        harness.genkey(d / "up-ca.key")
        openssl("req", "-new", "-x509", "-key", d / "up-ca.key", "-subj", "/O=cmp upstream/CN=upstream CA",
                "-days", "30", "-config", d / "up.cnf", "-extensions", "ca", "-out", d / "up-ca.pem")
        self.issue(d / "up-srv", "/O=cmp upstream/CN=upstream CMP server", "srv")

    def issue(self, base, subject, ext="leaf", key=None, backdate_days=0):
        """A certificate for |key| (default |base|.key, generated) signed by the upstream CA, valid from
        |backdate_days| days ago (libfaketime) for 20 days."""
        d = self.d
        key = key or base.with_suffix(".key")
        if not key.exists():
            harness.genkey(key)
        csr = base.with_suffix(".csr")
        openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
        clock = ["faketime", "-f", "-%dd" % backdate_days] if backdate_days else []
        harness.run(clock + ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(d / "up-ca.pem"),
                             "-CAkey", str(d / "up-ca.key"), "-CAcreateserial", "-days", str(20 + backdate_days),
                             "-extfile", str(d / "up.cnf"), "-extensions", ext,
                             "-out", str(base.with_suffix(".pem"))])
        return base.with_suffix(".pem")

    def start(self, rsp_cert, *extra):
        d = self.d
        argv = ["openssl", "cmp", "-port", str(self.port), "-srv_cert", d / "up-srv.pem",
                "-srv_key", d / "up-srv.key", "-srv_trusted", d / "ca.pem", "-rsp_cert", rsp_cert,
                "-rsp_extracerts", d / "up-ca.pem", "-accept_raverified", "-verbosity", "7"] + list(extra)
        self.log_path = d / ("mock-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(a) for a in argv], cwd=d, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise harness.Failure("mock CMP server exited %d" % self.proc.returncode)
                time.sleep(0.05)
        raise harness.Failure("mock CMP server did not listen on %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()
            self.log = None


class CmpUpstream(RowAssertions, harness.GatewayTestCase):
    mock = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.mock = cls.keep_running(Mock(gw.dir, harness.free_port()))
        cls.mock.make_pki()
        # the mock signs as "upstream CMP server", not as the CA that issues: who answers is named
        # the mock serves no revocation status: its certificates authenticate the holders' rr unchecked
        common = {"type": "cmp", "url": "http://127.0.0.1:%d" % cls.mock.port, "path": "/pkix/",
                  "trusted": "up-ca.pem", "expected_sender": "/O=cmp upstream/CN=upstream CMP server",
                  "issuer_ca": "up-ca.pem", "timeout": "5s", "check_revocation": False}
        cfg["upstreams"].update({
            "ca-cmp": dict(common),
            # nothing listens there: a port that was free a moment ago
            "ca-cmp-down": dict(common, url="http://127.0.0.1:%d" % harness.free_port()),
            # the mock too: stopped (SIGSTOP) by the test that needs a CA that holds its answer
            "ca-cmp-held": dict(common, timeout="2s"),
        })
        cfg["trust"]["up"] = {"ca_file": "up-ca.pem", "revocation": "upstream"}
        base = dict(cfg["roles"]["default"])
        base.pop("upstream", None)
        base["implicit_confirm"] = False
        cfg["roles"].update({
            "cmp": dict(base, upstream="ca-cmp", trust=base["trust"] + ["up"]),
            "cmp-odd": dict(base, upstream="ca-cmp", allowed_extensions=["1.2.3.4"]),
            "cmp-down": dict(base, upstream="ca-cmp-down"),
            "cmp-held": dict(base, upstream="ca-cmp-held"),
            # CRMF to the CMP CA, p10cr to the other upstream
            "mixed": dict(base, upstream="local", crmf_upstream="ca-cmp", trust=base["trust"] + ["up"]),
        })


    def tearDown(self):
        self.mock.stop()

    # -- helpers --------------------------------------------------------------------------------

    def canned(self, name, subject="/CN=%s.example.com", ext="leaf", backdate_days=0):
        """A client key and the mock's canned certificate for it (extensions: section |ext| of up.cnf)."""
        key = self.newkey(name)
        cert = self.mock.issue(self.gw.dir / ("%s-canned" % name), subject % name if "%s" in subject else subject,
                               ext=ext, key=key, backdate_days=backdate_days)
        return key, cert

    def assert_from_upstream(self, res, key, canned):
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assertEqual(res.cert.read_text().strip(), canned.read_text().strip())
        self.assertEqual(harness.pubkey_pem_of_cert(res.cert), harness.pubkey_pem_of_key(key))
        harness.run(["openssl", "verify", "-CAfile", self.gw.dir / "up-ca.pem", res.cert])
        # the answer is the gateway's, signed by its signer, not the upstream's
        self.assertIn((self.gw.dir / "signer.pem").read_text().strip().splitlines()[1],
                      res.first.extra_certs_pem().replace("\n", ""))

    def records_of(self, tid):
        """The audit records of transaction |tid|, oldest first."""
        return [r for r in harness.json_lines(self.gw.dir / "audit.log") if r.get("tid") == tid]

    def upstream_saw(self):
        """The request body types the mock received in this test, in order (its debug log)."""
        self.mock.log.flush()
        return [line.split("received ", 1)[1].strip() for line in self.mock.log_path.read_text().splitlines()
                if line.startswith("CMP DEBUG: received ")]

    # -- positive -------------------------------------------------------------------------------

    def test_ir_forwarded(self):
        key, canned = self.canned("fwd-ir")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "fwd-ir", newkey=key, subject="/CN=fwd-ir.example.com",
                          path="pki/roles/cmp/cmp")
        self.assertEqual(res.first.body_type, "ip", res.first)
        self.assert_from_upstream(res, key, canned)
        self.assertEqual(res.returncode, 0, res.stderr)
        # one ir (raVerified, accepted by -accept_raverified only), then the upstream certConf accepting it
        self.assertEqual(self.upstream_saw(), ["IR", "CERTCONF"])
        self.assertEqual(self.certconf_verdicts(), [])
        audit = (self.gw.dir / "audit.log").read_text()
        self.assertIn('"upstream":"ca-cmp"', audit.replace(" ", ""))

    def test_longer_than_asked_granted_with_mods(self):
        # the mock's canned certificate is valid for 20 days: longer than the day asked for is a change
        # (RFC 9810 §5.2.3), within max_ttl; its twin asks for the 20 days and gets exactly that
        for name, days, status in (("long-1d", 1, 1), ("long-20d", 20, 0)):
            key, canned = self.canned(name)
            self.mock.start(canned)
            res = self.gw.cmp("ir", name, newkey=key, subject="/CN=%s.example.com" % name,
                              path="pki/roles/cmp/cmp", extra=["-days", str(days)])
            self.assert_from_upstream(res, key, canned)
            self.assertEqual(res.first.status, status, res.first)
            issued = [r for r in self.records_of(res.first.header["transactionID"].asOctets().hex())
                      if r.get("event") == "issued"]
            self.assertEqual([r.get("status") for r in issued], [["accepted", "grantedWithMods"][status]])
            self.mock.stop()

    def test_p10cr_forwarded_as_p10cr(self):
        key, canned = self.canned("fwd-p10")
        csr = self.gw.dir / "fwd-p10.csr"
        openssl("req", "-new", "-key", key, "-subj", "/CN=fwd-p10.example.com", "-out", csr)
        self.mock.start(canned)
        res = self.gw.cmp("p10cr", "fwd-p10", path="pki/roles/cmp/cmp", extra=["-csr", csr])
        self.assertEqual(res.first.body_type, "cp", res.first)
        self.assert_from_upstream(res, key, canned)
        self.assertEqual(self.upstream_saw(), ["P10CR", "CERTCONF"])

    def test_mixed_role(self):
        # CRMF goes to the CMP CA ...
        key, canned = self.canned("mix-ir")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "mix-ir", newkey=key, subject="/CN=mix-ir.example.com",
                          path="pki/roles/mixed/cmp")
        self.assert_from_upstream(res, key, canned)
        self.mock.stop()
        # ... and p10cr to the role's own upstream (the local issuer), with the CMP CA down
        key2 = self.newkey("mix-p10")
        csr = self.gw.dir / "mix-p10.csr"
        openssl("req", "-new", "-key", key2, "-subj", "/CN=mix-p10.example.com", "-out", csr)
        res = self.gw.cmp("p10cr", "mix-p10", path="pki/roles/mixed/cmp", extra=["-csr", csr])
        self.assert_issued(res.cert, key2, "CN=mix-p10.example.com", (), res.first.extra_certs_pem())

    def test_client_rejects_then_revoked_upstream(self):
        # the upstream saw "accepted" before our client decided: a client rejection becomes an rr there
        key, canned = self.canned("crej")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "crej", newkey=key, subject="/CN=crej.example.com", path="pki/roles/cmp/cmp",
                          expect_cert=False, extra=["-out_trusted", self.gw.dir / "ca.pem"])
        self.assertNotEqual(res.returncode, 0)
        self.assertEqual(harness.settled(self.upstream_saw, lambda saw: "RR" in saw), ["IR", "CERTCONF", "RR"])
        records = harness.settled(lambda: harness.audit_records(self.gw, "revoked"), bool)
        self.assertIn("ca-cmp", [r.get("upstream") for r in records])

    def issued_then_revoked(self, name, role):
        """An ir on |role|'s path that the mock answers, then the holder's rr of that certificate: the
        certificate and the decoded rp."""
        key, canned = self.canned(name)
        self.mock.start(canned)
        path = "pki/roles/%s/cmp" % role
        self.assert_from_upstream(self.gw.cmp("ir", name, newkey=key, subject="/CN=%s.example.com" % name,
                                              path=path), key, canned)
        res = self.gw.cmp("rr", name + "-rr", auth=(canned, key), path=path, expect_cert=False,
                          extra=["-oldcert", canned, "-revreason", "1"])
        return canned, harness.rp_status(res.rsp_files[0].read_bytes())

    def test_holder_revokes_at_the_cmp_ca(self):
        # the CA gets an rr for the very certificate (OpenSSL 3.0 cannot build one from issuer and serial)
        canned, rp = self.issued_then_revoked("hold-rr", "cmp")
        self.assertEqual(rp, (0, [], []))
        self.assertEqual(self.upstream_saw(), ["IR", "CERTCONF", "RR"])
        revoked = [r for r in harness.audit_records(self.gw, "revoked")
                   if int(r.get("serial", "0"), 16) == int(harness.serial_hex(canned), 16)]
        self.assertEqual([(r.get("upstream"), r["status"]) for r in revoked],
                         [("ca-cmp", "revoked; reason keyCompromise")])

    def test_withdrawal_after_rr_not_repeated(self):
        """The holder revokes its certificate before confirming it, then its client aborts the transaction:
        the withdrawal finds it revoked through the gateway and sends the CMP CA no second rr (a CA that
        answers certRevoked to it was taken as done, and the audit log held two `revoked` records)."""
        key, canned = self.canned("wd-rr")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "wd-rr", newkey=key, subject="/CN=wd-rr.example.com", path="pki/roles/cmp/cmp",
                          extra=["-disable_confirm"])
        self.assert_from_upstream(res, key, canned)
        rr = self.gw.cmp("rr", "wd-rr-rr", auth=(canned, key), path="pki/roles/cmp/cmp", expect_cert=False,
                         extra=["-oldcert", canned, "-revreason", "1"])
        self.assertEqual(harness.rp_status(rr.rsp_files[0].read_bytes()), (0, [], []))
        ir = test_errors.load(res.req_files[0].read_bytes())
        test_errors.set_octets(ir["header"], "recipNonce", res.first.header["senderNonce"].asOctets())
        err = self.gw.dir / "wd-rr.error.der"
        err.write_bytes(test_errors.encoder.encode(test_errors.error_msg(ir, self.gw.dir / "client.key")))
        self.assertEqual(self.gw.curl(data=err, path="/pki/roles/cmp/cmp").status, 200)
        serial = int(harness.serial_hex(canned), 16)

        def revoked():
            return [r["status"] for r in harness.audit_records(self.gw, "revoked")
                    if int(r.get("serial", "0"), 16) == serial]

        def ended():
            return len(revoked()) > 1 or any(l.get("event") == "revoke_not_repeated"
                                             and int(l.get("serial", "0"), 16) == serial for l in self.gw.log_lines())
        harness.settled(ended, bool)
        self.assertTrue(ended(), "the withdrawal did not end")
        self.assertEqual(revoked(), ["revoked; reason keyCompromise"])
        self.assertEqual(self.upstream_saw().count("RR"), 1, self.upstream_saw())

    def holder_rr_rejected(self, name, fail_bit):
        """The holder's rr of a certificate of the CMP CA, which rejects it with |fail_bit| and its own text:
        the decoded rp, and what the audit log (revoke_failed) says of it."""
        key, canned = self.canned(name)
        self.mock.start(canned, "-pkistatus", "2", "-failure", str(fail_bit), "-statusstring",
                        "no revocations on Sundays")
        res = self.gw.cmp("rr", name, auth=(canned, key), path="pki/roles/cmp/cmp", expect_cert=False,
                          extra=["-oldcert", canned, "-revreason", "1"])
        self.assertEqual(self.upstream_saw(), ["RR"])
        serial = int(harness.serial_hex(canned), 16)
        records = [r["status"] for r in harness.audit_records(self.gw, "revoke_failed")
                   if int(r.get("serial", "0"), 16) == serial]
        return harness.rp_status(res.rsp_files[0].read_bytes()), canned, records

    def test_holder_rr_refused_by_the_cmp_ca(self):
        """The CMP CA rejects the revocation itself (incorrectData): the client gets that failInfo and is told
        that retrying will not help, without the CA's text, which the audit log keeps. Once, it was told to
        retry later, forever."""
        rp, canned, records = self.holder_rr_rejected("rr-refused", 7)
        self.assertEqual(rp, (REJECTION, ["incorrectData"], [
            "the CA refused to revoke the certificate with serial %s; retrying will not help: ask the CA's "
            "operator why" % harness.serial_hex(canned)]))
        self.assertEqual(records, ["not revoked (refused for good): upstream CA: no revocations on Sundays"])

    def test_holder_rr_already_revoked_at_the_cmp_ca(self):
        """The CMP CA answers that it revoked the certificate already (certRevoked: an earlier rr it carried out
        whose answer the client never got). The client is told so, and that revocation is on record: refused
        as the signer of any request from then on, though this upstream reads no revocation status. Once, the
        audit log said "not revoked (refused for good)" and nothing was kept: a kur signed with the revoked
        certificate went on to the CA."""
        rp, canned, records = self.holder_rr_rejected("rr-revoked-before", 10)
        self.assertEqual(rp, (REJECTION, ["certRevoked"], ["the certificate is already revoked"]))
        self.assertEqual(records, [])
        serial = int(harness.serial_hex(canned), 16)
        self.assertEqual([r["status"] for r in harness.audit_records(self.gw, "revoked")
                          if int(r.get("serial", "0"), 16) == serial],
                         ["revoked at the CA already (the CA's answer to the revocation); the CA keeps its own reason"])
        kur = self.gw.cmp("kur", "rr-revoked-before-kur", auth=(canned, self.gw.dir / "rr-revoked-before.key"),
                          newkey=self.newkey("rr-revoked-before-new"), path="pki/roles/cmp/cmp", expect_cert=False)
        self.assert_cmp_error(kur.first, ("kup",), "certRevoked",
                              "the signer certificate (serial %s) is revoked" % harness.serial_hex(canned).lower())
        self.assertEqual(self.upstream_saw(), ["RR"])  # the kur never reached the CA

    def test_holder_rr_gateway_not_authorized_by_the_cmp_ca(self):
        """The CMP CA does not authorize the rr's sender (notAuthorized): that is the gateway, whose credentials
        at the CA an operator fixes, not the holder, whom the gateway authorized: the client is told to retry
        later. Once, it was told that it was not authorized and that retrying would not help."""
        rp, _, records = self.holder_rr_rejected("rr-gateway-denied", 23)
        self.assertEqual(rp, (REJECTION, ["systemUnavail"], [
            "the CA could not revoke the certificate now (upstream CA: no revocations on Sundays); retry later"]))
        # the rr reached the CA, which answered: whether it acted on it is not known here
        self.assertEqual(records, ["%supstream CA: no revocations on Sundays" % OUTCOME_UNKNOWN])

    def test_holder_rr_cmp_ca_unavailable(self):
        """The twin: the CMP CA says it is unavailable (systemUnavail): the client is told to retry later."""
        rp, _, records = self.holder_rr_rejected("rr-later", 24)
        self.assertEqual(rp, (REJECTION, ["systemUnavail"], [
            "the CA could not revoke the certificate now (upstream CA: no revocations on Sundays); retry later"]))
        self.assertEqual(records, ["%supstream CA: no revocations on Sundays" % OUTCOME_UNKNOWN])

    def test_holder_revokes_through_the_crmf_upstream(self):
        # a certificate of the role's crmf_upstream is revoked there, whatever the role's upstream is
        _, rp = self.issued_then_revoked("mix-rr", "mixed")
        self.assertEqual(rp, (0, [], []))
        self.assertEqual(self.upstream_saw(), ["IR", "CERTCONF", "RR"])

    # -- negative -------------------------------------------------------------------------------

    def test_upstream_rejects(self):
        key, canned = self.canned("rej")
        self.mock.start(canned, "-pkistatus", "2", "-failure", "19", "-statusstring", "subject not in our RA profile")
        res = self.gw.cmp("ir", "rej", newkey=key, subject="/CN=rej.example.com", path="pki/roles/cmp/cmp",
                          expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", "upstream CA: ", "subject not in our RA profile")

    def test_upstream_refuses_the_gateways_request(self):
        """The CMP CA does not take the gateway's ir as its own (badMessageCheck, a p10cr's notAuthorized, an
        ir's badPOP, whose POPO is the gateway's raVerified): that is the gateway's configuration at the CA,
        not the client's credentials or key: the client is told to retry later (systemUnavail, which costs
        its address nothing), the operator what the CA said. Once, the client got the CA's failInfo, as if
        its own protection or proof of possession had failed."""
        for name, cmd, bit, fail in (("gw-bad-check", "ir", 1, "badMessageCheck"),
                                     ("gw-not-authorized", "p10cr", 23, "notAuthorized"),
                                     ("gw-ra-verified", "ir", 9, "badPOP")):
            with self.subTest(failInfo=fail):
                key, canned = self.canned(name)
                self.mock.start(canned, "-pkistatus", "2", "-failure", str(bit), "-statusstring", "unknown RA " + name)
                # the p10cr sends the CSR the canned certificate was made from
                kw = ({"extra": ["-csr", canned.with_suffix(".csr")]} if cmd == "p10cr"
                      else {"newkey": key, "subject": "/CN=%s.example.com" % name})
                res = self.gw.cmp(cmd, name, path="pki/roles/cmp/cmp", expect_cert=False, **kw)
                self.mock.stop()  # the next case's mock takes its port
                self.assertIsNone(res.cert, res.answers)
                ans = self.expect("upstream_refused_gateway", res.first)
                self.assertEqual(ans.status_strings, [
                    "upstream CA ca-cmp did not accept the gateway's own request (its credentials or "
                    "configuration at the CA); nothing was issued, retry later"])
                said = [line for line in self.gw.log_lines() if line.get("event") == "cmp_upstream_refused_gateway"
                        and "unknown RA " + name in line.get("status", "")]
                self.assertEqual([(line["level"], line["upstream"]) for line in said], [("error", "ca-cmp")])
                self.assertIn("PKIFailureInfo: " + fail, said[0]["status"])

    def test_upstream_tid_in_use(self):
        """The upstream transactionID is one the gateway drew for its own exchange, not the client's: a CA's
        transactionIdInUse tells the client to retry later, not to start over with a fresh one in vain."""
        key, canned = self.canned("tid")
        self.mock.start(canned, "-pkistatus", "2", "-failure", "21", "-statusstring", "transactionID in use")
        res = self.gw.cmp("ir", "tid", newkey=key, subject="/CN=tid.example.com", path="pki/roles/cmp/cmp",
                          expect_cert=False)
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect("upstream_tid_in_use", res.first)
        self.assertEqual(ans.status_strings, [
            "upstream CA ca-cmp had the gateway's own transactionID in use; nothing was issued, retry later"])

    def test_upstream_error_message(self):
        key, canned = self.canned("err")
        self.mock.start(canned, "-send_error")
        res = self.gw.cmp("ir", "err", newkey=key, subject="/CN=err.example.com", path="pki/roles/cmp/cmp",
                          expect_cert=False)
        self.assertEqual(res.first.status, REJECTION, res.first)
        self.assertTrue(any(s.startswith("upstream CA") for s in res.first.status_strings), res.first)
        self.assertIsNone(res.cert)

    def test_certificate_for_another_key(self):
        # the mock answers with a certificate for some other key: never delivered; rejected in the upstream
        # certConf, which the CA confirms, and on record as such; no rr, which for a CA answering with
        # another holder's certificate would revoke that holder's (docs/errors.md)
        _, canned = self.canned("other-owner")
        key = self.newkey("other-client")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "other", newkey=key, subject="/CN=other.example.com", path="pki/roles/cmp/cmp",
                          expect_cert=False)
        self.assert_rejected(res, "systemFailure", "the CA returned an unusable certificate (the upstream "
                             "returned a certificate for another public key than requested)")
        tid = res.first.header["transactionID"].asOctets().hex()
        mine = [r["event"] for r in self.records_of(tid)]
        self.assertEqual(mine, ["intent", "rejected", "rejected_to_ca"])
        self.assertEqual(self.upstream_saw(), ["IR", "CERTCONF"])

    def refused_in_certconf(self, row, name, ext, text, subject="/CN=%s.example.com", backdate_days=0):
        """The mock answers an ir with a certificate from section |ext| (for |subject|): the client gets the
        ip rejection of exactly |text| (docs/errors.md |row|), and the CA a certConf rejecting it with that
        text, which it confirms (pkiconf): no rr follows, and the audit log says so."""
        key, canned = self.canned(name, subject=subject, ext=ext, backdate_days=backdate_days)
        self.mock.start(canned)
        res = self.gw.cmp("ir", name, newkey=key, subject="/CN=%s.example.com" % name, path="pki/roles/cmp/cmp",
                          expect_cert=False)
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect(row, res.first)
        self.assertEqual(ans.body_type, "ip", ans)
        if "{not_before}" in text:  # the certificate's own start; {planned}: the gateway's, any time
            out = harness.run(["openssl", "x509", "-in", canned, "-noout", "-startdate"]).stdout.decode()
            when = datetime.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
            pattern = re.escape(text).replace(re.escape("{not_before}"), when.strftime("%Y-%m-%dT%H:%M:%SZ"))
            pattern = pattern.replace(re.escape("{planned}"), r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
            self.assertEqual(len(ans.status_strings), 1, ans.status_strings)
            self.assertRegex(ans.status_strings[0], "^" + pattern + "$")
        else:
            self.assertEqual(ans.status_strings, [text])
        self.assertEqual(self.upstream_saw(), ["IR", "CERTCONF"])
        self.assertEqual(self.certconf_verdicts(), ["certificate rejected by client with PKIStatus: rejection"])
        self.assert_rejected_to_ca(ans, canned)

    def certconf_verdicts(self):
        """What the mock's log says of the certConfs it received that rejected a certificate."""
        self.mock.log.flush()
        return [line.split("CMP info: ", 1)[1].strip() for line in self.mock.log_path.read_text().splitlines()
                if line.startswith("CMP info: certificate rejected")]

    def assert_rejected_to_ca(self, ans, canned):
        """The audit log of |ans|'s transaction: |canned| rejected, and rejected to the CA, which confirmed it."""
        tid = ans.header["transactionID"].asOctets().hex()
        mine = self.records_of(tid)
        serial = harness.run(["openssl", "x509", "-in", canned, "-noout", "-serial"]).stdout.decode()
        serial = serial.strip().split("=", 1)[1].lower().lstrip("0")
        self.assertEqual([(r["event"], r.get("serial", "").lstrip("0")) for r in mine if r["event"] != "intent"],
                         [("rejected", serial), ("rejected_to_ca", serial)])

    def test_extension_outside_role(self):
        self.refused_in_certconf("issued_extension", "odd", "odd",
                                 "the CA issued a certificate outside this route's policy (extension 1.2.3.4 is "
                                 "outside role cmp (not in its allowed_extensions)); it was not released")
        # twin: the role that lists the OID in allowed_extensions takes the same kind of certificate
        self.mock.stop()
        key, canned = self.canned("odd-ok", ext="odd")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "odd-ok", newkey=key, subject="/CN=odd-ok.example.com",
                          path="pki/roles/cmp-odd/cmp")
        self.assert_from_upstream(res, key, canned)

    def test_path_len_constraint(self):
        self.refused_in_certconf("issued_basic_constraints", "plen", "pathlen",
                                 "the CA issued a certificate outside this route's policy (basicConstraints with a "
                                 "pathLenConstraint is outside role cmp (end-entity certificates only, "
                                 "RFC 5280 §4.2.1.9)); it was not released")

    def test_backdated(self):
        # valid from a month before it was asked for (and so longer than max_ttl in all); its twin, valid
        # from the moment it is signed, is every released certificate (test_ir_forwarded)
        self.refused_in_certconf("issued_not_before", "bdate", "leaf",
                                 "the CA issued a certificate outside this route's policy (the upstream backdated the "
                                 "certificate to {not_before} (planned: {planned})); it was not released",
                                 backdate_days=30)

    def test_name_not_asked_for(self):
        self.refused_in_certconf("issued_san", "xsan", "extra_san",
                                 "the CA issued a certificate outside this route's policy (the CA added DNS name "
                                 "other.example.com, which the request did not ask for); it was not released")
        # twin: the same kind of certificate when the request asked for that name
        self.mock.stop()
        key, canned = self.canned("xsan-ok", ext="extra_san")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "xsan-ok", newkey=key, subject="/CN=xsan-ok.example.com", path="pki/roles/cmp/cmp",
                          extra=["-sans", "other.example.com"])
        self.assert_from_upstream(res, key, canned)

    def test_subject_not_asked_for(self):
        self.refused_in_certconf("issued_subject", "rsub", "leaf",
                                 "the CA issued a certificate outside this route's policy (the CA changed the "
                                 "subject to /O=cmp upstream/CN=rsub.example.com, which the request did not ask "
                                 "for); it was not released", subject="/O=cmp upstream/CN=%s.example.com")
        # twin: a CA that leaves out an attribute that was asked for (as Vault's sign/<role> keeps the CN only)
        self.mock.stop()
        key, canned = self.canned("rsub-ok")
        self.mock.start(canned)
        res = self.gw.cmp("ir", "rsub-ok", newkey=key, subject="/O=cmp upstream/CN=rsub-ok.example.com",
                          path="pki/roles/cmp/cmp")
        self.assertEqual(res.first.status, 1, res.first)  # grantedWithMods
        self.assert_from_upstream(res, key, canned)

    def test_mail_not_asked_for(self):
        """An over-generous CA that adds a mail (rfc822Mailbox) attribute, the holder's address to LDAP and mail
        software: a subject the request did not ask for, refused and rejected to the CA like any other."""
        self.refused_in_certconf("issued_subject", "xmail", "leaf",
                                 "the CA issued a certificate outside this route's policy (the CA changed the "
                                 "subject to /CN=xmail.example.com/mail=ceo@bank.example, which the request did "
                                 "not ask for); it was not released", subject="/CN=%s.example.com/mail=ceo@bank.example")

    def test_upstream_down(self):
        """Nothing listens: nothing of the request left, so the CA was not reached and issued nothing."""
        key = self.newkey("down")
        res = self.gw.cmp("ir", "down", newkey=key, subject="/CN=down.example.com", path="pki/roles/cmp-down/cmp",
                          expect_cert=False)
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect("upstream_unreachable", res.first)
        self.assertEqual(ans.status_strings, [
            "upstream CA ca-cmp-down could not be reached, it is unavailable: Couldn't connect to server"])

    def test_upstream_held_the_answer(self):
        """The CA (the mock, stopped with SIGSTOP) took the whole ir and did not answer within the upstream's
        timeout (2 s): it was reached and may have issued, so the client is told the outcome is unknown, not
        that the CA could not be reached. Its twin is test_upstream_down. Once it goes on (SIGCONT), the CA
        reads that ir, whole and once, before the next client's."""
        key, canned = self.canned("held")
        self.mock.start(canned)
        with harness.stopped(self.mock.proc):
            res = self.gw.cmp("ir", "held", newkey=key, subject="/CN=held.example.com",
                              path="pki/roles/cmp-held/cmp", expect_cert=False)
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect("upstream_no_answer", res.first)
        self.assertEqual(ans.status_strings, [
            "upstream CA ca-cmp-held did not answer in time (none within 2000 ms); the outcome is unknown"])
        res = self.gw.cmp("ir", "held-next", newkey=key, subject="/CN=held.example.com", path="pki/roles/cmp/cmp")
        self.assert_from_upstream(res, key, canned)
        # the held ir went out whole (the CA decoded it) and once (sent again, the CA would read it again)
        self.assertEqual(self.upstream_saw(), ["IR", "IR", "CERTCONF"])

    def test_upstream_untrusted_answer(self):
        # the mock signs with a key its CA did not certify for us: the answer is not trusted
        key, canned = self.canned("untrusted")
        self.mock.start(canned, "-srv_cert", self.gw.dir / "signer.pem", "-srv_key", self.gw.dir / "signer.key")
        res = self.gw.cmp("ir", "untrusted", newkey=key, subject="/CN=untrusted.example.com",
                          path="pki/roles/cmp/cmp", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "upstream CA ca-cmp gave no usable answer")

    def test_upstream_answer_from_another_sender(self):
        # a certificate of the upstream CA, but not the expected sender's: it cannot answer for the CA
        key, canned = self.canned("impostor")
        other = self.mock.issue(self.gw.dir / "up-impostor", "/O=cmp upstream/CN=a device", "srv")
        self.mock.start(canned, "-srv_cert", other, "-srv_key", other.with_suffix(".key"))
        res = self.gw.cmp("ir", "impostor", newkey=key, subject="/CN=impostor.example.com",
                          path="pki/roles/cmp/cmp", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "upstream CA ca-cmp gave no usable answer",
                             "sender is not the one expected")
        said = [l for l in self.gw.log_lines() if l.get("event") == "cmp_upstream_sender"]
        self.assertTrue(said and "does not match expected sender" in said[-1]["msg"], said)


if __name__ == "__main__":
    harness.main()
