"""Authorization and request policy per role, with real `openssl cmp` clients over TLS: a TLS
client the role does not allow, no TLS client certificate at all, a DNS SAN outside allowed_dns_names. Each
refusal is asserted on the decoded CMP answer (PKIStatus, failInfo, statusString) and never reaches the
upstream (no "intent" in the audit log); each has a twin that is issued."""
import json
import subprocess
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

CERT_BODIES = ("ip", "cp")  # refused in the certificate-request callback: ip/cp with rejection


def make_tls_client(d, name, subject):
    """A TLS client certificate from the demo root (the listener accepts it) for |subject|."""
    key = harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=clientAuth\n")
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / "ca.pem", "-CAkey",
                 d / "ca.key", "-days", "2", "-extfile", d / ("%s.ext" % name), "-set_serial", "0x77",
                 "-out", d / ("%s.pem" % name)])
    return "%s.pem" % name, "%s.key" % name


audit_events = harness.audit_records


class Authz(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg.setdefault("audit", {"file": "audit.log"})
        cfg["roles"]["default"]["authorization"] = {
            "tls_client": "require",
            "tls_subjects": ["/O=cmpgw demo/CN=demo-*"],
            "allowed_dns_names": ["*.example.com"],
        }
        # the same, for clients only (the demo's role grants serverAuth too)
        iot = json.loads(json.dumps(cfg["roles"]["default"]))
        iot["ext_key_usage"] = ["clientAuth"]
        cfg["roles"]["iot"] = iot

    def test_unauthorized_tls_client(self):
        tls = make_tls_client(self.gw.dir, "intruder", "/O=cmpgw demo/CN=intruder")
        before = len(audit_events(self.gw, "intent"))
        res = self.gw.cmp("ir", "intruder", tls=tls, newkey=self.newkey("intruder-new"), subject="/CN=intruder",
                          expect_cert=False)
        self.assertIsNone(res.cert)
        self.assertNotEqual(res.returncode, 0)
        self.assert_cmp_error(res.last, CERT_BODIES, "notAuthorized")
        self.assertEqual(res.last.status_strings,
                         ["TLS client certificate subject /O=cmpgw demo/CN=intruder is not allowed on role "
                          "default (allowed: /O=cmpgw demo/CN=demo-*)"])
        self.assertEqual(len(audit_events(self.gw, "intent")), before)  # the upstream was never asked
        self.assertTrue(any(r.get("tls_subject") == "/O=cmpgw demo/CN=intruder" and "notAuthorized" in r["status"]
                            for r in audit_events(self.gw, "rejected")))

    def test_no_tls_client_certificate(self):
        res = self.gw.cmp("ir", "notls", tls=(None, None), newkey=self.newkey("notls"), subject="/CN=notls",
                          expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "notAuthorized")
        self.assertEqual(res.last.status_strings,
                         ["role default requires a TLS client certificate; connect with one"])

    def test_authorized_twin(self):
        key = self.newkey("allowed")
        res = self.gw.cmp("ir", "allowed", newkey=key, subject="/CN=dev.example.com",
                          extra=("-sans", "dev.example.com"))
        self.assertEqual(res.first.status, 0)
        self.assert_issued(res.cert, key, "CN=dev.example.com", ["DNS:dev.example.com"],
                           res.first.extra_certs_pem())

    def test_dns_san_outside_policy(self):
        before = len(audit_events(self.gw, "intent"))
        res = self.gw.cmp("ir", "evil", newkey=self.newkey("evil"), subject="/CN=dev.example.com",
                          extra=("-sans", "evil.example.org"), expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate")
        self.assertEqual(res.last.status_strings,
                         ["DNS name evil.example.org is not allowed on role default (allowed: *.example.com)"])
        self.assertEqual(len(audit_events(self.gw, "intent")), before)

    def test_cn_host_outside_dns_names(self):
        """No DNS SAN, a CN www.bank.example: the host name OpenSSL's X509_check_host reads. The role has
        allowed_dns_names and no allowed_common_names; its twin is test_authorized_twin's CN."""
        before = len(audit_events(self.gw, "intent"))
        res = self.gw.cmp("ir", "cnhost", newkey=self.newkey("cnhost"), subject="/CN=www.bank.example",
                          expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate")
        self.assertEqual(res.last.status_strings, ["host name in the common name www.bank.example is not allowed on "
                                                   "role default (allowed: *.example.com)"])
        self.assertEqual(len(audit_events(self.gw, "intent")), before)

    def test_bare_cn_host_outside_dns_names(self):
        """No DNS SAN, a CN vault without a dot, on a role whose certificates can be TLS servers' (the demo's
        serverAuth): X509_check_host takes it as the host of https://vault/, and allowed_dns_names bounds it
        as it bounds www.bank.example. Its twins: the same CN beside a DNS SAN (which X509_check_host reads
        instead), and a client-only role's device name."""
        before = len(audit_events(self.gw, "intent"))
        res = self.gw.cmp("ir", "cnbare", newkey=self.newkey("cnbare"), subject="/CN=vault", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate")
        self.assertEqual(res.last.status_strings, ["host name in the common name vault is not allowed on role "
                                                   "default (allowed: *.example.com)"])
        self.assertEqual(len(audit_events(self.gw, "intent")), before)

        key = self.newkey("cnbaresan")
        res = self.gw.cmp("ir", "cnbaresan", newkey=key, subject="/CN=vault", extra=("-sans", "vault.example.com"))
        self.assert_issued(res.cert, key, "CN=vault", ["DNS:vault.example.com"], res.first.extra_certs_pem())

        key = self.newkey("cnbareiot")
        res = self.gw.cmp("ir", "cnbareiot", newkey=key, subject="/CN=device-17", path="pki/roles/iot/cmp")
        self.assert_issued(res.cert, key, "CN=device-17", [], res.first.extra_certs_pem())

    def test_dns_san_outside_policy_p10cr(self):
        d = self.gw.dir
        key = self.newkey("evil10")
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=dev.example.com", "-addext",
                     "subjectAltName=DNS:a.b.example.com", "-out", d / "evil10.csr"])
        res = self.gw.cmp("p10cr", "evil10", extra=("-csr", d / "evil10.csr"), expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate", "a.b.example.com is not allowed")


class Subjects(harness.GatewayTestCase):
    """allowed_subjects: role devices issues from the CA that role servers trusts for signers whose subject
    is /O=cmpgw demo/OU=servers/CN=*; a device must not get such a subject by asking for it."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg.setdefault("audit", {"file": "audit.log"})
        devices = json.loads(json.dumps(cfg["roles"]["default"]))
        devices["ext_key_usage"] = ["clientAuth"]
        devices["authorization"] = {"allowed_common_names": ["dev-*"],
                                    "allowed_subjects": ["/O=cmpgw demo/OU=devices/CN=dev-*"]}
        servers = json.loads(json.dumps(cfg["roles"]["default"]))
        servers.pop("pbm", None)
        servers["authorization"] = {"signer_subjects": ["/O=cmpgw demo/OU=servers/CN=*"]}
        cfg["roles"]["devices"] = devices
        cfg["roles"]["servers"] = servers
        # a pattern's unescaped '+' joins the attributes of a multi-valued RDN, its "\+" (in JSON "\\+") is a
        # plus inside the value, as the subject's one-line form writes them
        for name, pattern in (("rdn", "/O=cmpgw demo/CN=dev-*+OU=ops"), ("plus", "/O=cmpgw demo/CN=dev-*\\+OU=ops")):
            role = json.loads(json.dumps(cfg["roles"]["default"]))
            role["ext_key_usage"] = ["clientAuth"]
            role["authorization"] = {"allowed_subjects": [pattern]}
            cfg["roles"][name] = role

    def test_subject_of_another_role_refused(self):
        before = len(audit_events(self.gw, "intent"))
        res = self.gw.cmp("ir", "climb", newkey=self.newkey("climb"), subject="/O=cmpgw demo/OU=servers/CN=dev-1",
                          path="pki/roles/devices/cmp", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate")
        self.assertEqual(res.last.status_strings,
                         ["requested subject /O=cmpgw demo/OU=servers/CN=dev-1 is not allowed on role devices "
                          "(allowed: /O=cmpgw demo/OU=devices/CN=dev-*)"])
        self.assertEqual(len(audit_events(self.gw, "intent")), before)

    def test_own_subject_issued_and_not_a_server_signer(self):
        key = self.newkey("dev2")
        res = self.gw.cmp("ir", "dev2", newkey=key, subject="/O=cmpgw demo/OU=devices/CN=dev-2",
                          path="pki/roles/devices/cmp", extra=("-implicit_confirm",))
        self.assert_issued(res.cert, key, "CN=dev-2,OU=devices,O=cmpgw demo", [], res.first.extra_certs_pem())
        res = self.gw.cmp("ir", "dev2srv", auth=(res.cert, key), newkey=self.newkey("dev2srv"),
                          subject="/CN=dev-2", path="pki/roles/servers/cmp", expect_cert=False)
        self.assert_cmp_error(res.last, CERT_BODIES, "notAuthorized", "CMP signer certificate subject")

    def test_plus_in_a_pattern(self):
        """`openssl cmp -subject` reads an unescaped '+' as joining a multi-valued RDN and "\\+" as a plus in the
        value; the patterns read them the same way, so each subject is issued on one role and refused on the
        other. The RDN's attributes travel in DER's order (the OU, shorter, first), not the order asked or
        the pattern's: a pattern takes them in any order."""
        # (subject asked, role issuing it, role refusing it, as RFC 2253 prints it, as the gateway's line has it)
        cases = (("/O=cmpgw demo/CN=dev-1+OU=ops", "rdn", "plus", "CN=dev-1+OU=ops,O=cmpgw demo",
                  "/O=cmpgw demo/OU=ops+CN=dev-1"),
                 ("/O=cmpgw demo/CN=dev-2\\+OU=ops", "plus", "rdn", "CN=dev-2\\+OU=ops,O=cmpgw demo",
                  "/O=cmpgw demo/CN=dev-2\\+OU=ops"))
        for subject, ok, refused, shown, line in cases:
            with self.subTest(subject=subject):
                name = "plus-%s" % ok
                key = self.newkey(name)
                res = self.gw.cmp("ir", name, newkey=key, subject=subject, path="pki/roles/%s/cmp" % ok)
                got = harness.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in",
                                   res.cert]).stdout.decode()
                self.assertIn(shown, got)
                res = self.gw.cmp("ir", name + "-no", newkey=self.newkey(name + "-no"), subject=subject,
                                  path="pki/roles/%s/cmp" % refused, expect_cert=False)
                self.assertIsNone(res.cert)
                self.assert_cmp_error(res.last, CERT_BODIES, "badCertTemplate",
                                      "requested subject %s is not allowed on role %s" % (line, refused))

    def assert_check(self, cfg, path, rc, refusal):
        """`cmpgw check` of |cfg| written to |path| exits |rc|, and where it refuses, says |refusal|."""
        path.write_text(json.dumps(cfg))
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)], cwd=self.gw.dir,
                           capture_output=True, text=True, timeout=60, env=self.gw.env())
        self.assertEqual(p.returncode, rc, p.stdout + p.stderr)
        if rc != 0:
            self.assertIn(refusal, p.stderr)

    def test_pattern_that_never_matches_refused(self):
        """A subject pattern whose mail or emailAddress holds two '@', or is otherwise no address, admits
        nothing (a subject with one is refused everywhere): `cmpgw check` refuses it, naming the role's key and
        the pattern, as the start and a reload do; its twin with one '@' passes."""
        cfg = json.loads(json.dumps(self.gw.config))
        path = self.gw.dir / "dead.json"
        dead = "/O=cmpgw demo/OU=devices/CN=dev-*/mail=*@*@example.com"
        two = "with more than one '@' is refused; write one '@'"
        for attr, subjects, rc, why in (
                ("mail", [dead], 78, two),
                ("emailAddress", [dead.replace("/mail=", "/emailAddress=")], 78, two),
                # nor is one without an '@' (a '*' matches none) or with nothing before it an address
                ("mail", [dead.replace("*@*@example.com", "*")], 78,
                 "without an '@' is refused; write one (a '*' matches none)"),
                ("emailAddress", [dead.replace("/mail=*@*@", "/emailAddress=@")], 78,
                 "with nothing before its '@' is refused; write a local part"),
                ("", [dead.replace("*@*@", "*@")], 0, "")):
            with self.subTest(subject=subjects[0]):
                cfg["roles"]["devices"]["authorization"]["allowed_subjects"] = subjects
                self.assert_check(cfg, path, rc, "$.roles.devices.authorization.allowed_subjects[0]: \"%s\" can "
                                  "never match: a subject's %s %s" % (subjects[0], attr, why))

    def test_email_pattern_without_at_refused(self):
        """An allowed_emails pattern without an '@' admits no email address (an email SAN holds one, and a
        '*' matches none): `cmpgw check` refuses it, naming the role's key and the pattern; its twin with
        one '@' passes."""
        cfg = json.loads(json.dumps(self.gw.config))
        path = self.gw.dir / "no-at.json"
        authz = cfg["roles"]["devices"]["authorization"]
        cfg["roles"]["devices"]["allowed_san_types"] = ["dns", "email"]
        for pattern, rc in (("example.com", 78), ("*", 78), ("*@example.com", 0)):
            with self.subTest(pattern=pattern):
                authz["allowed_emails"] = [pattern]
                self.assert_check(cfg, path, rc, "$.roles.devices.authorization.allowed_emails[0]: \"%s\" holds no "
                                  "'@' and so matches no email address: write one '@', as in \"*@example.com\""
                                  % pattern)

    def test_email_pattern_with_an_empty_side_refused(self):
        """As an allowed_emails pattern without an '@': one with nothing before or after it admits no address
        (one with nothing there is refused everywhere), nor does such an email pattern of tls_sans; their twins
        with something there, "**" that may match nothing included, pass."""
        cfg = json.loads(json.dumps(self.gw.config))
        path = self.gw.dir / "empty-side.json"
        authz = cfg["roles"]["devices"]["authorization"]
        cfg["roles"]["devices"]["allowed_san_types"] = ["dns", "email"]
        for key, pattern, rc, why in (("allowed_emails", "*@", 78, "a domain after"),
                                      ("allowed_emails", "@example.com", 78, "a local part before"),
                                      ("tls_sans", "dev-*@", 78, "a domain after"),
                                      ("allowed_emails", "**@*", 0, ""),
                                      ("tls_sans", "**@example.com", 0, "")):
            with self.subTest(key=key, pattern=pattern):
                authz.pop("allowed_emails", None)
                authz.pop("tls_sans", None)
                authz[key] = [pattern]
                self.assert_check(cfg, path, rc, "$.roles.devices.authorization.%s[0]: \"%s\" can never match: an "
                                  "email address has %s its '@'; write one, or a '*', as in \"*@example.com\""
                                  % (key, pattern, why))


if __name__ == "__main__":
    harness.main()
