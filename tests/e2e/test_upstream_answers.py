"""What an upstream CA answers stays within the role, against real upstreams: the Vault-API test server
(tests/upstreams/vault_api_server.py) and `cfssl serve`. A role allowing digitalSignature and clientAuth
only, in front of a CA that grants more:

- sign-verbatim, which copies the CSR's extensions (as Vault does): a CSR asking for codeSigning,
  OCSPSigning, nonRepudiation or dataEncipherment, or for any extension but those the role controls (its
  own CRL, OCSP responder, CA certificate or policies included), is refused before Vault is called; a
  role's allowed_extensions lets one through; a CSR with two extensionRequest attributes is refused; a
  plain CSR gets the role's usages, not Vault's defaults;
- a Vault role left at its defaults (keyEncipherment, keyAgreement, serverAuth): refused before the sign
  call, naming what to restrict; the twin role narrowed in Vault issues;
- the same Vault role when the gateway cannot read it: Vault signs, the certificate is refused, on record
  and revoked in Vault;
- a Vault role granting no extendedKeyUsage at all (Vault then writes none, which means any purpose):
  the certificate is refused, on record and revoked in Vault;
- a cfssl profile with code signing and server auth: the certificate is refused, on record and revoked in
  cfssl's certificate database; the twin role that allows them issues.

Each refusal is asserted on the decoded answer (body type, PKIStatus, failInfo, statusString exactly as
the row of docs/errors.md says) and in the audit log. The CMP-CA cases (an unknown extension, a
pathLenConstraint, a name not asked for) are in test_cmp_upstream.py.
"""
import base64
import subprocess
import sys
import unittest

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_modules import rfc2986

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import cfsslenv  # noqa: E402
import vaultenv  # noqa: E402
from test_errors import RowAssertions  # noqa: E402

REJECTION = 2  # PKIStatus rejection (RFC 9810 §5.2.3)

# Vault's role defaults grant every certificate DigitalSignature, KeyAgreement, KeyEncipherment, serverAuth
# and clientAuth; "narrow" is the same role restricted to what the gateway's roles allow.
WIDE = {"allowed_domains": ["example.com"], "allow_subdomains": True, "key_type": "ec", "key_bits": 256,
        "ttl": 86400, "max_ttl": 30 * 86400}
NARROW = dict(WIDE, key_usage=["DigitalSignature"], ext_key_usage=[], server_flag=False, client_flag=True)
# grants no purpose, so its certificates carry no extendedKeyUsage: good for any purpose, TLS servers included
BARE = dict(NARROW, client_flag=False)
# backdates what it signs by a year (Vault's default not_before_duration is 30 s)
BACKDATING = dict(NARROW, not_before_duration="8760h")


def records(gw, event=None):
    return [r for r in harness.json_lines(gw.dir / "audit.log") if event is None or r.get("event") == event]


def usages(cert):
    """(keyUsage, extendedKeyUsage) of a PEM certificate as the openssl CLI prints them, "" if absent."""
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-ext", "keyUsage,extendedKeyUsage"]).stdout
    lines = [line.strip() for line in out.decode().splitlines()]
    found = {"X509v3 Key Usage": "", "X509v3 Extended Key Usage": ""}
    for i, line in enumerate(lines[:-1]):
        for k in found:
            if line.startswith(k):
                found[k] = lines[i + 1]
    return found["X509v3 Key Usage"], found["X509v3 Extended Key Usage"]


class Answers(RowAssertions, harness.GatewayTestCase):
    """Shared: a p10cr with a CSR of its own, and the record of a refused certificate."""

    def p10cr(self, role, name, cn, exts=(), expect_cert=True):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        argv = ["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % cn, "-out", csr,
                "-addext", "subjectAltName=DNS:%s" % cn]
        for e in exts:
            argv += ["-addext", e]
        harness.run(argv)
        res = self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr],
                          expect_cert=expect_cert)
        return res, key

    def assert_refused_on_record(self, res, row, text):
        """The cp is the row's rejection with exactly |text|; the audit log has the rejected
        certificate's serial and its revocation upstream. Returns the serial (hex)."""
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect(row, res.first)
        self.assertEqual(ans.body_type, "cp", ans)
        self.assertEqual(ans.status_strings, [text])
        tid = ans.header["transactionID"].asOctets().hex()
        rejected = [r for r in records(self.gw, "rejected") if r.get("tid") == tid]
        self.assertEqual(len(rejected), 1, rejected)
        serial = rejected[0].get("serial")
        self.assertTrue(serial, rejected)
        self.assertTrue(rejected[0]["status"].startswith("rejection: badCertTemplate: " + text[:60]), rejected)
        revoked = harness.settled(lambda: [r for r in records(self.gw, "revoked") if r.get("tid") == tid], bool)
        self.assertEqual([r.get("serial") for r in revoked], [serial])
        self.assertEqual([r for r in records(self.gw, "issued") if r.get("tid") == tid], [])
        return serial

    def assert_refused_before_signing(self, res, row, fail, text):
        """The cp is the row's rejection with exactly |text|, on record, and no certificate anywhere."""
        self.assertIsNone(res.cert, res.answers)
        ans = self.expect(row, res.first)
        self.assertEqual(ans.body_type, "cp", ans)
        self.assertEqual(ans.fail_info, [fail], ans)
        self.assertEqual(ans.status_strings, [text])
        tid = ans.header["transactionID"].asOctets().hex()
        rejected = [r for r in records(self.gw, "rejected") if r.get("tid") == tid]
        self.assertEqual(len(rejected), 1, rejected)
        self.assertFalse(rejected[0].get("serial"), rejected)  # nothing was issued
        self.assertIn(text[:60], rejected[0]["status"])


class VaultAnswers(Answers):
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir, extra_roles={"wide": WIDE, "narrow": NARROW, "bare": BARE,
                                                                 "backdating": BACKDATING})
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        base = dict(cfg["roles"]["default"], upstream="vault", key_usage=["digitalSignature"],
                    ext_key_usage=["clientAuth"], allowed_san_types=["dns"])
        cfg["roles"].update({
            "verbatim-narrow": dict(base, sign="verbatim", upstream_role="narrow"),  # its ttl, not its usages
            # the operator lets its devices name a CRL (cRLDistributionPoints, 2.5.29.31), and only that
            "verbatim-crl": dict(base, sign="verbatim", upstream_role="narrow", allowed_extensions=["2.5.29.31"]),
            "vault-narrow": dict(base, upstream_role="wide"),
            "vault-narrowed": dict(base, upstream_role="narrow"),
            "vault-blind": dict(base, upstream_role="wide"),
            "vault-bare": dict(base, upstream_role="bare"),
            "vault-bare-blind": dict(base, upstream_role="bare"),
            "vault-backdated": dict(base, upstream_role="backdating"),
            "verbatim-backdated": dict(base, sign="verbatim", upstream_role="backdating"),
        })


    def setUp(self):
        super().setUp()
        self.vault.control({})

    # (i) sign-verbatim copies the CSR's extensions: asked for outside the role, refused before Vault

    def test_verbatim_csr_usages_refused_before_vault(self):
        cases = [
            ("v-ku", ["keyUsage=critical,digitalSignature,nonRepudiation,dataEncipherment", "extendedKeyUsage=clientAuth"],
             "keyUsage nonRepudiation, dataEncipherment is outside role verbatim-narrow (allowed: digitalSignature); "
             "this route's CA copies the CSR's extensions: leave it out of the CSR"),
            ("v-eku", ["extendedKeyUsage=clientAuth,codeSigning,OCSPSigning"],
             "extendedKeyUsage codeSigning, OCSPSigning is outside role verbatim-narrow (allowed: clientAuth); "
             "this route's CA copies the CSR's extensions: leave it out of the CSR"),
            ("v-ext", ["nameConstraints=critical,permitted;DNS:example.com"],
             "extension nameConstraints (2.5.29.30) is outside role verbatim-narrow (not in its allowed_extensions); "
             "this route's CA copies the CSR's extensions: leave it out of the CSR"),
            # what the CA writes of its own accord: the client's would send relying parties to its own CRL,
            # OCSP responder and CA certificate, or assert policies the CA never checked
            ("v-crl", ["crlDistributionPoints=URI:http://127.0.0.1/evil.crl"],
             "extension crlDistributionPoints (2.5.29.31) is outside role verbatim-narrow (not in its "
             "allowed_extensions); this route's CA copies the CSR's extensions: leave it out of the CSR"),
            ("v-aia", ["authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp,caIssuers;URI:http://127.0.0.1/ca.crt"],
             "extension authorityInfoAccess (1.3.6.1.5.5.7.1.1) is outside role verbatim-narrow (not in its "
             "allowed_extensions); this route's CA copies the CSR's extensions: leave it out of the CSR"),
            ("v-pol", ["keyUsage=critical,digitalSignature", "certificatePolicies=2.23.140.1.2.1"],
             "extension certificatePolicies (2.5.29.32) is outside role verbatim-narrow (not in its "
             "allowed_extensions); this route's CA copies the CSR's extensions: leave it out of the CSR"),
            ("v-staple", ["tlsfeature=status_request"],
             "extension tlsfeature (1.3.6.1.5.5.7.1.24) is outside role verbatim-narrow (not in its "
             "allowed_extensions); this route's CA copies the CSR's extensions: leave it out of the CSR"),
        ]
        for name, exts, text in cases:
            with self.subTest(name=name):
                mark = self.vault.mark()
                res, _ = self.p10cr("verbatim-narrow", name, "%s.example.com" % name, exts, expect_cert=False)
                self.assert_refused_before_signing(res, "csr_extension", "badCertTemplate", text)
                self.assertEqual(self.vault.since(mark), [])
        # twin: usages within the role and a subjectKeyIdentifier are asked for, copied by Vault, and the
        # certificate is released
        res, _ = self.p10cr("verbatim-narrow", "v-within", "v-within.example.com",
                            ["keyUsage=critical,digitalSignature", "extendedKeyUsage=clientAuth",
                             "subjectKeyIdentifier=01:02:03:04"])
        self.assertEqual(usages(res.cert), ("Digital Signature", "TLS Web Client Authentication"))
        text = harness.run(["openssl", "x509", "-in", res.cert, "-noout", "-ext", "subjectKeyIdentifier"]).stdout
        self.assertIn(b"01:02:03:04", text)

    def test_verbatim_allowed_extension_is_copied(self):
        # twin of v-crl: a role whose allowed_extensions names cRLDistributionPoints lets it through, and
        # Vault copies it (its other extensions stay refused)
        res, _ = self.p10cr("verbatim-crl", "v-crl-ok", "v-crl-ok.example.com",
                            ["crlDistributionPoints=URI:http://127.0.0.1/devices.crl"])
        text = harness.run(["openssl", "x509", "-in", res.cert, "-noout", "-ext", "crlDistributionPoints"]).stdout
        self.assertIn(b"URI:http://127.0.0.1/devices.crl", text)
        mark = self.vault.mark()
        res, _ = self.p10cr("verbatim-crl", "v-crl-aia", "v-crl-aia.example.com",
                            ["authorityInfoAccess=OCSP;URI:http://127.0.0.1/ocsp"], expect_cert=False)
        self.assert_refused_before_signing(
            res, "csr_extension", "badCertTemplate",
            "extension authorityInfoAccess (1.3.6.1.5.5.7.1.1) is outside role verbatim-crl (not in its "
            "allowed_extensions); this route's CA copies the CSR's extensions: leave it out of the CSR")
        self.assertEqual(self.vault.since(mark), [])

    def two_ext_requests(self, name, cn, first, second):
        """A CSR for /CN=|cn| whose extensions |first| and |second| come in two extensionRequest
        attributes (OpenSSL reads the first, Go's crypto/x509 in Vault appends both), signed with a new key."""
        key = self.newkey(name)
        ders = []
        for i, ext in enumerate((first, second)):
            out = self.gw.dir / ("%s-%d.der" % (name, i))
            harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % cn, "-outform", "DER",
                         "-out", out, "-addext", ext])
            ders.append(der_decoder.decode(out.read_bytes(), asn1Spec=rfc2986.CertificationRequest())[0])
        csr = ders[0]
        csr["certificationRequestInfo"]["attributes"].append(ders[1]["certificationRequestInfo"]["attributes"][0])
        tbs = der_encoder.encode(csr["certificationRequestInfo"])
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=tbs, capture_output=True,
                             check=True).stdout
        csr["signature"] = univ.BitString.fromOctetString(sig)
        path = self.gw.dir / ("%s.csr" % name)
        b64 = base64.encodebytes(der_encoder.encode(csr)).decode()
        path.write_text("-----BEGIN CERTIFICATE REQUEST-----\n%s-----END CERTIFICATE REQUEST-----\n" % b64)
        return path

    def test_csr_ext_requests(self):
        # the first extensionRequest is within the role, the second names the client's CRL: the gateway
        # would have checked the first, Vault copied both; nothing reaches Vault
        csr = self.two_ext_requests("v-two", "v-two.example.com", "subjectAltName=DNS:v-two.example.com",
                                    "crlDistributionPoints=URI:http://127.0.0.1/evil.crl")
        mark = self.vault.mark()
        res = self.gw.cmp("p10cr", "v-two", path="pki/roles/verbatim-narrow/cmp", extra=["-csr", csr],
                          expect_cert=False)
        self.assert_refused_before_signing(
            res, "csr_ext_requests", "badCertTemplate",
            "the CSR asks for extensions in more than one extensionRequest attribute or value: put every "
            "extension into one (RFC 2985 §5.4.2)")
        self.assertEqual(self.vault.since(mark), [])

    def test_verbatim_plain_csr_gets_the_roles_usages(self):
        # twin: no usages in the CSR; Vault would add DigitalSignature, KeyAgreement, KeyEncipherment
        mark = self.vault.mark()
        res, key = self.p10cr("verbatim-narrow", "v-plain", "v-plain.example.com")
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assertEqual(usages(res.cert), ("Digital Signature", "TLS Web Client Authentication"))
        got = self.vault.since(mark)
        self.assertEqual([e["path"] for e in got], ["/v1/pki/sign-verbatim/narrow"])
        self.assertEqual(got[0]["body"]["key_usage"], ["DigitalSignature"])
        self.assertEqual(got[0]["body"]["ext_key_usage"], ["ClientAuth"])

    # (ii) a Vault role granting more: refused up front, or after the fact when it cannot be read

    def test_vault_role_granting_more_refused_before_signing(self):
        mark = self.vault.mark()
        res, _ = self.p10cr("vault-narrow", "r-wide", "r-wide.example.com", expect_cert=False)
        self.assert_refused_before_signing(
            res, "upstream_role_grants", "systemUnavail",
            "upstream role wide grants keyUsage keyEncipherment, keyAgreement and extendedKeyUsage serverAuth, "
            "which role vault-narrow does not allow; restrict the Vault role (key_usage, server_flag, ext_key_usage)")
        self.assertEqual([e["path"] for e in self.vault.since(mark)], ["/v1/pki/roles/wide"])

    def test_vault_role_narrowed_issues(self):
        # twin: the same request on the Vault role restricted to digitalSignature and clientAuth
        mark = self.vault.mark()
        res, key = self.p10cr("vault-narrowed", "r-narrow", "r-narrow.example.com")
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assert_issued(res.cert, key, "CN=r-narrow.example.com", ["DNS:r-narrow.example.com"],
                           res.first.extra_certs_pem())
        self.assertEqual(usages(res.cert), ("Digital Signature", "TLS Web Client Authentication"))
        self.assertEqual([e["path"] for e in self.vault.since(mark)], ["/v1/pki/roles/narrow", "/v1/pki/sign/narrow"])

    def refused_by_vault_answer(self, role, name, event, text):
        """A p10cr on |role| whose certificate Vault signs and the gateway refuses: (serial, Vault's calls)."""
        mark = self.vault.mark()
        res, _ = self.p10cr(role, name, name + ".example.com", expect_cert=False)
        return self.assert_refused_on_record(res, event, text), self.vault.since(mark)

    def test_vault_role_unreadable_answer_refused_and_revoked(self):
        # the gateway's Vault policy lacks read on roles/: Vault signs with its defaults, the answer is refused
        self.vault.control({"force_status": 403, "match": "/roles/wide"})
        serial, got = self.refused_by_vault_answer(
            "vault-blind", "r-blind", "issued_key_usage",
            "the CA issued a certificate outside this route's policy (keyUsage keyAgreement is outside role "
            "vault-blind (allowed: digitalSignature)); it was not released")
        self.assertEqual(len([e for e in got if e["path"] == "/v1/pki/sign/wide"]), 1, got)
        revokes = [e for e in got if e["path"] == "/v1/pki/revoke"]
        self.assertEqual([e["body"]["serial_number"].replace(":", "") for e in revokes], [serial])
        self.vault.control({})
        state = self.vault.api("GET", "/v1/pki/cert/%s" % serial)
        self.assertNotEqual(state["data"]["revocation_time"], 0)
        self.assertTrue(any(line.get("event") == "upstream_role_unread" for line in self.gw.log_lines()))

    def test_vault_role_granting_no_purpose_refused_before_signing(self):
        # a Vault role granting no purpose writes no extendedKeyUsage, which is any purpose: refused
        # before the sign call, not signed and then revoked
        mark = self.vault.mark()
        res, _ = self.p10cr("vault-bare", "r-bare", "r-bare.example.com", expect_cert=False)
        self.assert_refused_before_signing(
            res, "upstream_role_grants", "systemUnavail",
            "upstream role bare grants any extendedKeyUsage (it writes none), which role vault-bare does not "
            "allow; restrict the Vault role (ext_key_usage)")
        self.assertEqual([e["path"] for e in self.vault.since(mark)], ["/v1/pki/roles/bare"])

    def test_vault_role_granting_no_purpose_unread_refused_and_revoked(self):
        # twin: the Vault role cannot be read, so nothing stops the call; what comes back has no
        # extendedKeyUsage, which is no restriction at all
        self.vault.control({"force_status": 403, "match": "/roles/bare"})
        try:
            serial, got = self.refused_by_vault_answer(
                "vault-bare-blind", "r-bare-blind", "issued_ext_key_usage",
                "the CA issued a certificate outside this route's policy (extendedKeyUsage any (the certificate "
                "has none) is outside role vault-bare-blind (allowed: clientAuth)); it was not released")
        finally:
            self.vault.control({})
        self.assertEqual([e["path"] for e in got if e["path"] != "/v1/pki/roles/bare"],
                         ["/v1/pki/sign/bare", "/v1/pki/revoke"])
        self.assertEqual(got[-1]["body"]["serial_number"].replace(":", ""), serial)

    # (iii) a certificate valid from long before it was issued: refused and revoked, through either call

    def test_backdated_certificate_refused_and_revoked(self):
        for role in ("vault-backdated", "verbatim-backdated"):
            with self.subTest(role=role):
                mark = self.vault.mark()
                res, _ = self.p10cr(role, "nb-" + role, "nb-%s.example.com" % role, expect_cert=False)
                self.assertIsNone(res.cert, "a certificate valid from a year ago was released")
                text = res.first.status_strings[0]
                self.assertRegex(text, r"^the CA issued a certificate outside this route's policy \(the upstream "
                                       r"backdated the certificate to \d{4}-.*Z \(planned: \d{4}-.*Z\)\); "
                                       r"it was not released$")
                serial = self.assert_refused_on_record(res, "issued_not_before", text)
                revokes = [e for e in self.vault.since(mark) if e["path"] == "/v1/pki/revoke"]
                self.assertEqual([e["body"]["serial_number"].replace(":", "") for e in revokes], [serial])

    # (iv) a wildcard name: Vault's sign-verbatim copies any name, its sign/<role> allows wildcards by
    # default; the role refuses it before either is asked

    def test_wildcard_refused_before_vault(self):
        for role in ("verbatim-narrow", "vault-narrowed"):
            with self.subTest(role=role):
                mark = self.vault.mark()
                res, _ = self.p10cr(role, "wild-" + role, "*.example.com", expect_cert=False)
                self.assert_refused_before_signing(
                    res, "name_wildcard", "badCertTemplate",
                    "common name *.example.com is a wildcard, which role %s does not issue "
                    "(allow_wildcard_certificates): ask for each host's own name" % role)
                self.assertEqual([e["path"] for e in self.vault.since(mark) if "/sign" in e["path"]], [])


class CfsslAnswers(Answers):
    cfssl = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.cfssl = cfsslenv.running(cls, gw.dir, extra_profiles={
            "wide": {"expiry": "72h", "usages": ["digital signature", "code signing", "server auth", "client auth"]}})
        cfg["upstreams"]["cfssl"] = cls.cfssl.upstream()
        base = dict(cfg["roles"]["default"], upstream="cfssl", upstream_role="wide", key_usage=["digitalSignature"],
                    allowed_san_types=["dns"])
        cfg["roles"].update({
            "cfssl-narrow": dict(base, ext_key_usage=["clientAuth"]),
            "cfssl-wide": dict(base, ext_key_usage=["serverAuth", "clientAuth", "codeSigning"]),
        })


    def test_profile_granting_more_refused_and_revoked(self):
        res, _ = self.p10cr("cfssl-narrow", "cf-wide", "cf-wide.example.com", expect_cert=False)
        serial = self.assert_refused_on_record(
            res, "issued_ext_key_usage",
            "the CA issued a certificate outside this route's policy (extendedKeyUsage serverAuth, codeSigning is "
            "outside role cfssl-narrow (allowed: clientAuth)); it was not released")
        self.assertEqual(self.cfssl.record_serial(int(serial, 16)), ("revoked", 0))
        # twin: the same profile on a role that allows what it grants
        res, key = self.p10cr("cfssl-wide", "cf-ok", "cf-ok.example.com")
        self.assertEqual(res.first.status, 1, res.first)  # grantedWithMods: cfssl's 72h
        ku, eku = usages(res.cert)
        self.assertEqual(ku, "Digital Signature")
        self.assertEqual(set(eku.split(", ")), {"Code Signing", "TLS Web Server Authentication",
                                                "TLS Web Client Authentication"})
        self.assertEqual(self.cfssl.record(res.cert), ("good", 0))

    def test_wildcard_refused_before_cfssl(self):
        # cfssl checks no names at all
        res, _ = self.p10cr("cfssl-wide", "cf-wild", "*.example.com", expect_cert=False)
        self.assert_refused_before_signing(
            res, "name_wildcard", "badCertTemplate",
            "common name *.example.com is a wildcard, which role cfssl-wide does not issue "
            "(allow_wildcard_certificates): ask for each host's own name")



if __name__ == "__main__":
    harness.main()
