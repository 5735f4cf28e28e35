"""cmpgw in front of the Vault-API test server (tests/upstreams/vault_api_server.py) over TLS, at Vault's
own URLs ("path_prefix": "/v1/pki"): p10cr through sign/<role> (signature and PBM), sign-verbatim via
default_path_policy, an issuer_ref route, cert-auth login, CRMF refused with a pointer to p10cr, and
every Vault failure (400, 403, 412, 429, 503 sealed, 500, timeout, garbage, warnings only) as the exact
decoded CMP answer (PKIStatus, failInfo, statusString). What Vault received is read from its request log.
With Vault slow: waiting calls hold no worker or thread, a client that hangs up loses nothing on record,
and SIGTERM drains a waiting request; past the drain, the certificate nobody will receive is withdrawn,
and a revocation Vault does not answer within 10 s (or refuses) is left on record (revoke_failed) for the gateway to
exit, 10 s for the engines of all configurations still draining after reloads, not 10 s each. A client that leaves before its answer is written (an HTTP/2 connection closed while its call
waits) never gets its certificate: it is withdrawn at Vault, with implicitConfirm and with a certConf
expected; an answer written to a connection whose client left is not. An audit log that fails while a call
waits at Vault has the certificate Vault then issues revoked there, never released. A gateway killed
(SIGKILL) during the call or before the certConf leaves that transaction's last record as its story.
"""
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402
from cryptography import x509  # noqa: E402

REJECTION = 2  # PKIStatus rejection (RFC 9810 §5.2.3)
CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
CRL_STATUS, CRLS = "1.3.6.1.5.5.7.4.22", "1.3.6.1.5.5.7.4.23"  # id-it-crlStatusList, id-it-crls
NS = "e2e"


def crl_of(path):
    """The one CRL of the id-it-crls value (SEQUENCE OF CertificateList) cmpclient wrote to |path|."""
    value = path.read_bytes()
    assert value[0] == 0x30, value[:4]
    n = value[1]
    start = 2 if n < 0x80 else 2 + (n & 0x7f)
    return x509.load_der_x509_crl(value[start:])


class VaultFrontDoor(harness.GatewayTestCase):
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir, extra_roles={
            "no-wildcards": dict(vaultenv.DEVICES, allow_wildcard_certificates=False),
            "org": dict(vaultenv.DEVICES, organization=["Role Org"], ou=["Devices"], allowed_user_ids=["dev-*"]),
            "email-cn": dict(vaultenv.DEVICES, cn_validations=["email"]),
            "cn-san": dict(vaultenv.DEVICES),
            "second-issuer": dict(vaultenv.DEVICES, issuer_ref="second"),
            "client-only": dict(vaultenv.DEVICES, server_flag=False, key_usage=["DigitalSignature"]),
            "code-signing": dict(vaultenv.DEVICES, code_signing_flag=True)})
        cls.vault.make_delegate()
        common = cls.vault.upstream(namespace=NS)
        cfg["upstreams"].update({
            "vault": common,
            "vault-login": vaultenv.login_upstream(common),
            "vault-login-admin": vaultenv.login_upstream(common),  # a login of its own: the others count theirs
            "vault-badtoken": dict(common, token_file="vault-bad.token"),
            "vault-slow": dict(common, timeout="1s"),
            "vault-delegate": {"type": "local", "cert": "vault-delegate.pem", "key": "vault-delegate.key",
                               "chain": "vault-delegate-chain.pem", "store": "delegate-store"},
        })
        base = vaultenv.role_base(cfg)
        cfg["roles"].update({
            "vault": dict(base, upstream="vault", upstream_role="devices"),
            "vault-issuer": dict(base, upstream="vault", upstream_role="devices", issuer_ref="second"),
            "vault-role-issuer": dict(base, upstream="vault", upstream_role="second-issuer"),
            "vault-role-unread": dict(base, upstream="vault", upstream_role="second-issuer"),
            "verbatim-role-issuer": dict(base, upstream="vault", upstream_role="second-issuer", sign="verbatim"),
            "sign-verbatim": dict(base, upstream="vault", sign="verbatim"),
            "vault-login": dict(base, upstream="vault-login", upstream_role="devices"),
            "vault-login-admin": dict(base, upstream="vault-login-admin", upstream_role="devices"),
            "vault-flaky": dict(base, upstream="vault", upstream_role="flaky"),
            "vault-slow": dict(base, upstream="vault-slow", upstream_role="slow"),
            "vault-badtoken": dict(base, upstream="vault-badtoken", upstream_role="devices"),
            "vault-delegate": dict(base, upstream="vault", upstream_role="devices", crmf="delegate",
                                   delegate="vault-delegate"),
            "vault-delegate-wild": dict(base, upstream="vault", upstream_role="devices", crmf="delegate",
                                        delegate="vault-delegate", allow_wildcard_certificates=True),
            "vault-delegate-nowild": dict(base, upstream="vault", upstream_role="no-wildcards", crmf="delegate",
                                          delegate="vault-delegate", allow_wildcard_certificates=True),
            "vault-delegate-org": dict(base, upstream="vault", upstream_role="org", crmf="delegate",
                                       delegate="vault-delegate"),
            "vault-org-subj": dict(base, upstream="vault", upstream_role="org", crmf="delegate",
                                   delegate="vault-delegate",
                                   authorization={"allowed_subjects": ["/O=Client Org/OU=Client/CN=*.example.com"]}),
            "vault-cut-subj": dict(base, upstream="vault", upstream_role="devices",
                                   authorization={"allowed_subjects": ["/O=Client Org/CN=*.example.com"]}),
            "vault-org-subj-ok": dict(base, upstream="vault", upstream_role="org", crmf="delegate",
                                      delegate="vault-delegate",
                                      authorization={"allowed_subjects": ["/O=Role Org/OU=Devices/CN=*.example.com"]}),
            "vault-delegate-email": dict(base, upstream="vault", upstream_role="email-cn", crmf="delegate",
                                         delegate="vault-delegate", allowed_san_types=["dns", "ip", "email"]),
            "vault-delegate-email-nosan": dict(base, upstream="vault", upstream_role="email-cn", crmf="delegate",
                                               delegate="vault-delegate"),
            "vault-delegate-cn": dict(base, upstream="vault", upstream_role="cn-san", crmf="delegate",
                                      delegate="vault-delegate"),
            "vault-delegate-nocn": dict(base, upstream="vault", upstream_role="cn-san", crmf="delegate",
                                        delegate="vault-delegate", exclude_cn_from_sans=True),
            "vault-delegate-email-nocn": dict(base, upstream="vault", upstream_role="email-cn", crmf="delegate",
                                              delegate="vault-delegate", exclude_cn_from_sans=True),
            "vault-delegate-client": dict(base, upstream="vault", upstream_role="client-only", crmf="delegate",
                                          delegate="vault-delegate"),
            "vault-delegate-codesign": dict(base, upstream="vault", upstream_role="code-signing", crmf="delegate",
                                            delegate="vault-delegate"),
        })
        cfg["path_prefix"] = "/v1/pki"
        cfg["default_path_policy"] = "sign-verbatim"


    def setUp(self):
        self.vault.control({})

    # -- helpers --------------------------------------------------------------------------------

    def p10cr(self, role, name, subject, sans=None, expect_cert=True, path=None, auth="sig"):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        argv = ["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr]
        if sans:
            argv += ["-addext", "subjectAltName=%s" % ",".join(sans)]
        harness.run(argv)
        res = self.gw.cmp("p10cr", name, path=path or "v1/pki/roles/%s/cmp" % role, extra=["-csr", csr],
                          expect_cert=expect_cert, auth=auth)
        return res, key, csr

    def assert_from_vault(self, res, key, subject, sans, issuer="vault-ca.pem"):
        self.assertEqual(res.first.body_type, "cp", res.answers)
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assert_issued(res.cert, key, subject, sans, res.first.extra_certs_pem())
        harness.run(["openssl", "verify", "-partial_chain", "-CAfile", self.gw.dir / issuer, res.cert])

    # -- positive -------------------------------------------------------------------------------

    def test_p10cr_role_signature(self):
        mark = self.vault.mark()
        res, key, csr = self.p10cr("vault", "v-sig", "/CN=dev1.example.com", ["DNS:dev1.example.com"])
        self.assert_from_vault(res, key, "CN=dev1.example.com", ["DNS:dev1.example.com"])
        got = self.vault.since(mark, "/sign")
        self.assertEqual([e["path"] for e in got], ["/v1/pki/sign/devices"])
        # besides the sign call, at most the read of the Vault role (what it grants, cached per role)
        self.assertLessEqual({e["path"] for e in self.vault.since(mark)}, {"/v1/pki/sign/devices",
                                                                          "/v1/pki/roles/devices"})
        body = got[0]["body"]
        # the CSR unchanged, Vault's field names, the gateway's token and namespace
        self.assertEqual(body["csr"].strip(), csr.read_text().strip())
        self.assertEqual(body["format"], "pem")
        self.assertEqual(body["alt_names"], "dev1.example.com")
        self.assertIsInstance(body["ttl"], int)
        self.assertNotIn("common_name", body)
        self.assertFalse(body["exclude_cn_from_sans"])
        self.assertEqual(got[0]["token"], vaultenv.TOKEN)
        self.assertEqual(got[0]["namespace"], NS)

    def test_p10cr_pbm(self):
        res, key, _ = self.p10cr("vault", "v-pbm", "/CN=pbm.example.com", auth="pbm")
        self.assert_from_vault(res, key, "CN=pbm.example.com", ["DNS:pbm.example.com"])

    def test_default_path_is_sign_verbatim(self):
        mark = self.vault.mark()
        res, key, _ = self.p10cr(None, "v-verb", "/O=cmpgw e2e/CN=verbatim.example.net",
                                 ["DNS:verbatim.example.net"], path="v1/pki/cmp")
        self.assertIn(res.first.status, (0, 1), res.first)
        subject, sans = harness.cert_info(res.cert)
        self.assertEqual(subject, "CN=verbatim.example.net,O=cmpgw e2e")  # verbatim: O kept, any name
        self.assertEqual(sans, ["DNS:verbatim.example.net"])
        got = self.vault.since(mark)
        self.assertEqual([e["path"] for e in got], ["/v1/pki/sign-verbatim"])
        # the CSR names no usages: the role's go with the call, or Vault would add its defaults
        self.assertEqual(got[0]["body"]["key_usage"], ["DigitalSignature", "KeyAgreement"])
        self.assertEqual(got[0]["body"]["ext_key_usage"], ["ServerAuth", "ClientAuth"])

    def test_issuer_ref_route(self):
        mark = self.vault.mark()
        res, key, _ = self.p10cr("vault-issuer", "v-iss", "/CN=iss.example.com")
        self.assert_from_vault(res, key, "CN=iss.example.com", ["DNS:iss.example.com"], issuer="vault-ca2.pem")
        self.assertEqual([e["path"] for e in self.vault.since(mark, "/sign")], ["/v1/pki/issuer/second/sign/devices"])

    def test_cert_auth_login(self):
        mark = self.vault.mark()
        for i in range(2):
            res, key, _ = self.p10cr("vault-login", "v-login%d" % i, "/CN=login%d.example.com" % i)
            self.assert_from_vault(res, key, "CN=login%d.example.com" % i, ["DNS:login%d.example.com" % i])
        got = self.vault.since(mark)
        logins = [e for e in got if e["path"] == "/v1/auth/cert/login"]
        signs = [e for e in got if e["path"] == "/v1/pki/sign/devices"]
        self.assertEqual(len(logins), 1, got)  # the token is cached, not one login per request
        self.assertEqual(logins[0]["body"], {"name": "cmpgw"})
        self.assertIn("CN=demo-client", logins[0]["client_cert"])
        self.assertEqual(len(signs), 2)
        self.assertTrue(all(e["token"].startswith("hvb.") for e in signs), signs)

    def test_admin_surfaces_and_log_hold_no_secret(self):
        """/readyz and /metrics, which the admin listener serves to whoever reaches it, and the whole log hold
        none of the gateway's secrets: the Vault tokens (the file's, a cert login's), the admin token, the
        PBM secret; nor does /readyz where an upstream's probe or a call failed."""
        mark = self.vault.mark()
        res, key, _ = self.p10cr("vault-login-admin", "v-admin-login", "/CN=admin-login.example.com")
        self.assert_from_vault(res, key, "CN=admin-login.example.com", ["DNS:admin-login.example.com"])
        tokens = {e["token"] for e in self.vault.since(mark, "/sign/")}
        self.assertTrue(any(t.startswith("hvb.") for t in tokens), tokens)  # a login's token was used
        secrets = tokens | {vaultenv.TOKEN, (self.gw.dir / "admin.token").read_text().strip(), self.gw.pbm_secret}
        texts = [harness.admin(self.gw, path)[1] for path in ("/readyz", "/metrics")] + [self.gw.stderr()]
        self.assertIn("upstream", texts[0])
        for where in texts:
            for secret in secrets:
                self.assertNotIn(secret, where)

    def test_no_ca_chain_uses_issuing_ca(self):
        self.vault.control({"no_ca_chain": True})
        res, key, _ = self.p10cr("vault", "v-nochain", "/CN=nochain.example.com")
        self.assert_from_vault(res, key, "CN=nochain.example.com", ["DNS:nochain.example.com"])

    def test_retry_after_412(self):
        self.vault.control({"force_status": 412, "force_count": 1, "match": "sign/flaky"})
        mark = self.vault.mark()
        res, key, _ = self.p10cr("vault-flaky", "v-412ok", "/CN=retry.example.com")
        self.assert_from_vault(res, key, "CN=retry.example.com", ["DNS:retry.example.com"])
        self.assertEqual(len(self.vault.since(mark, "sign/flaky")), 2)

    def test_crmf_delegate_under_vault_role_policy(self):
        mark = self.vault.mark()
        key = self.newkey("v-del")
        res = self.gw.cmp("ir", "v-del", path="v1/pki/roles/vault-delegate/cmp", newkey=key,
                          subject="/CN=crmf.example.com", extra=["-sans", "crmf.example.com"])
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assert_issued(res.cert, key, "CN=crmf.example.com", ["DNS:crmf.example.com"],
                           res.first.extra_certs_pem())
        harness.run(["openssl", "verify", "-partial_chain", "-CAfile", self.gw.dir / "vault-delegate.pem", res.cert])
        # the delegate applied Vault's own role (read from Vault), and signed nothing there
        got = [e["path"] for e in self.vault.since(mark)]
        self.assertIn("/v1/pki/roles/devices", got)
        self.assertNotIn("/v1/pki/sign/devices", got)
        # a name the Vault role does not allow is refused by the delegate too
        res = self.gw.cmp("ir", "v-del-bad", path="v1/pki/roles/vault-delegate/cmp", newkey=self.newkey("v-del2"),
                          subject="/CN=evil.org", expect_cert=False)
        self.assertEqual(res.first.status, REJECTION, res.first)
        self.assertEqual(res.first.fail_info, ["badCertTemplate"], res.first)
        self.assertEqual(len(res.first.status_strings), 1, res.first)
        self.assertTrue(res.first.status_strings[0].startswith("name evil.org is not allowed by the upstream role ("),
                        res.first)

    def test_crmf_delegate_writes_the_vault_roles_usages(self):
        """The delegate writes the usages the Vault role grants every certificate, as sign/<role> would, not the
        cmpgw role's wider ones: a Vault role of clientAuth and digitalSignature alone gets a certificate of
        those on a cmpgw role that also allows serverAuth and keyAgreement; one that grants codeSigning, which
        the cmpgw role does not allow, has nothing issued (systemUnavail, naming the Vault role's setting)."""
        key = self.newkey("v-usage")
        res = self.gw.cmp("ir", "v-usage", path="v1/pki/roles/vault-delegate-client/cmp", newkey=key,
                          subject="/CN=usage.example.com", extra=["-sans", "usage.example.com"])
        self.assertEqual(res.first.body_type, "ip", res.answers)
        cert = x509.load_pem_x509_certificate(Path(res.cert).read_bytes())
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH])
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(ku.digital_signature)
        self.assertFalse(ku.key_agreement)
        res = self.gw.cmp("ir", "v-codesign", path="v1/pki/roles/vault-delegate-codesign/cmp",
                          newkey=self.newkey("v-codesign"), subject="/CN=codesign.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "upstream role code-signing grants extendedKeyUsage codeSigning, "
                             "which role vault-delegate-codesign does not allow; restrict the Vault role "
                             "(code_signing_flag, ext_key_usage)")
        self.assertIsNone(res.cert)

    def test_crmf_delegate_keeps_the_vault_roles_wildcard_rule(self):
        """A wildcard the cmpgw role allows is issued by the delegate only where the Vault role it issues for
        allows wildcards too (allow_wildcard_certificates, true unless set)."""
        res = self.gw.cmp("ir", "v-wild", path="v1/pki/roles/vault-delegate-wild/cmp", newkey=self.newkey("v-wild"),
                          subject="/CN=*.example.com", extra=["-sans", "*.example.com"])
        self.assertEqual(res.first.body_type, "ip", res.answers)
        res = self.gw.cmp("ir", "v-nowild", path="v1/pki/roles/vault-delegate-nowild/cmp",
                          newkey=self.newkey("v-nowild"), subject="/CN=*.example.com", expect_cert=False)
        self.assertEqual(res.first.status, REJECTION, res.first)
        self.assertEqual(res.first.fail_info, ["badCertTemplate"], res.first)
        self.assertTrue(res.first.status_strings[0].startswith(
            "name *.example.com is not allowed by the upstream role ("), res.first)

    def test_crmf_delegate_writes_the_vault_roles_subject(self):
        """The delegate issues the subject Vault's sign/<role> would write: the Vault role's organization and
        ou in place of the client's, the client's CN and a UID within allowed_user_ids; a UID outside it is
        refused, naming the rule."""
        key = self.newkey("v-org")
        res = self.gw.cmp("ir", "v-org", path="v1/pki/roles/vault-delegate-org/cmp", newkey=key,
                          subject="/O=Client Org/OU=Client/CN=org.example.com/UID=dev-7")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assertEqual(res.first.status, 1, res.first)  # grantedWithMods: not the subject asked for
        self.assert_issued(res.cert, key, "UID=dev-7,CN=org.example.com,OU=Devices,O=Role Org",
                           ["DNS:org.example.com"], res.first.extra_certs_pem())
        res = self.gw.cmp("ir", "v-org-uid", path="v1/pki/roles/vault-delegate-org/cmp",
                          newkey=self.newkey("v-org-uid"), subject="/CN=org.example.com/UID=root", expect_cert=False)
        self.assert_rejected(res, "badCertTemplate",
                             "user ID root is not allowed by the upstream role (allowed_user_ids: dev-*)")
        # what Vault itself writes on a p10cr for that role: the same subject, but for the UID it is given
        res, key, _ = self.p10cr("vault-delegate-org", "v-org-p10", "/O=Role Org/OU=Devices/CN=org.example.com")
        self.assert_from_vault(res, key, "CN=org.example.com,OU=Devices,O=Role Org", ["DNS:org.example.com"])

    def test_crmf_delegate_held_to_the_roles_allowed_subjects(self):
        """The subject a delegate writes from the Vault role (its organization and ou, read from Vault) is held
        to the cmpgw role's allowed_subjects as a requested one is, before the delegate signs: a role for
        O=Client Org/OU=Client devices is refused a certificate naming O=Role Org/OU=Devices, and none is
        issued (nothing to revoke). Twin: the role whose allowed_subjects admit the Vault role's subject
        takes it."""
        cn = "orgsubj.example.com"
        res = self.gw.cmp("ir", "v-orgsubj", path="v1/pki/roles/vault-org-subj/cmp", newkey=self.newkey("v-orgsubj"),
                          subject="/O=Client Org/OU=Client/CN=%s" % cn, expect_cert=False)
        self.assert_rejected(res, "badCertTemplate")
        self.assertEqual(res.first.status_strings, [
            "the certificate's subject /O=Role Org/OU=Devices/CN=orgsubj.example.com is not allowed on role "
            "vault-org-subj (allowed: /O=Client Org/OU=Client/CN=*.example.com)"])
        self.assertEqual(harness.audit_records(self.gw, "intent", cn), [])  # refused before the signer is asked
        self.assertEqual([r for r in harness.audit_records(self.gw, "rejected", cn) if r.get("serial")], [])
        self.assertEqual(harness.audit_records(self.gw, "issued", cn), [])
        key = self.newkey("v-orgsubj-ok")
        res = self.gw.cmp("ir", "v-orgsubj-ok", path="v1/pki/roles/vault-org-subj-ok/cmp", newkey=key,
                          subject="/O=Role Org/OU=Devices/CN=orgok.example.com")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assert_issued(res.cert, key, "CN=orgok.example.com,OU=Devices,O=Role Org", ["DNS:orgok.example.com"],
                           res.first.extra_certs_pem())

    def test_subject_vault_cut_down_held_to_allowed_subjects(self):
        """Vault's sign/<role> keeps only the CN of a requested /O=Client Org/CN=...: a subject the role's
        allowed_subjects do not admit, though the requested one was within them. Checked when it comes back:
        refused, on record and revoked at Vault."""
        cn = "cut.example.com"
        res, _, _ = self.p10cr("vault-cut-subj", "v-cutsubj", "/O=Client Org/CN=%s" % cn, expect_cert=False)
        self.assert_rejected(res, "badCertTemplate")
        self.assertEqual(res.first.status_strings, [
            "the CA issued a certificate outside this route's policy (the certificate's subject "
            "/CN=cut.example.com is not allowed on role vault-cut-subj (allowed: /O=Client Org/CN=*.example.com)); "
            "it was not released"])
        rejected = [r for r in harness.audit_records(self.gw, "rejected", cn) if r.get("serial")]
        self.assertEqual(len(rejected), 1, rejected)
        serial = rejected[0]["serial"]
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r["serial"] == serial], len)
        self.assertEqual(len(revoked), 1, self.gw.stderr()[-3000:])

    def test_crmf_delegate_adds_the_cn_to_the_sans_as_vault_does(self):
        """Vault adds a hostname CN to the DNS names unless exclude_cn_from_sans: the delegate's certificate
        carries it as Vault's does (the client told grantedWithMods, having asked for no SAN), and none where
        the cmpgw role sets exclude_cn_from_sans, which it sends Vault in the sign call."""
        key = self.newkey("v-cnsan")
        res = self.gw.cmp("ir", "v-cnsan", path="v1/pki/roles/vault-delegate-cn/cmp", newkey=key,
                          subject="/CN=cn.example.com")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assertEqual(res.first.status, 1, res.first)
        self.assert_issued(res.cert, key, "CN=cn.example.com", ["DNS:cn.example.com"], res.first.extra_certs_pem())
        res, key, _ = self.p10cr("vault-delegate-cn", "v-cnsan-p10", "/CN=cn.example.com")
        self.assert_from_vault(res, key, "CN=cn.example.com", ["DNS:cn.example.com"])
        key = self.newkey("v-nocn")
        res = self.gw.cmp("ir", "v-nocn", path="v1/pki/roles/vault-delegate-nocn/cmp", newkey=key,
                          subject="/CN=cn.example.com")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        # what was asked, accepted: the role's 720h fit within the delegate CA's 768h
        self.assertEqual(res.first.status, 0, res.first)
        self.assert_issued(res.cert, key, "CN=cn.example.com", [], res.first.extra_certs_pem())

    def test_crmf_delegate_adds_an_email_cn_to_the_sans_as_vault_does(self):
        """Vault adds a CN holding an '@' to the email names (rfc822Name), whatever email_protection_flag says:
        the delegate's certificate carries it as the one Vault signs on a p10cr for the same role; neither
        does where the cmpgw role sets exclude_cn_from_sans."""
        key = self.newkey("v-cnmail")
        res = self.gw.cmp("ir", "v-cnmail", path="v1/pki/roles/vault-delegate-email/cmp", newkey=key,
                          subject="/CN=dev@mail.example.com")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assertEqual(res.first.status, 1, res.first)  # grantedWithMods: a SAN not asked for
        self.assert_issued(res.cert, key, "CN=dev@mail.example.com", ["email:dev@mail.example.com"],
                           res.first.extra_certs_pem())
        res, key, _ = self.p10cr("vault-delegate-email", "v-cnmail-p10", "/CN=dev@mail.example.com")
        self.assert_from_vault(res, key, "CN=dev@mail.example.com", ["email:dev@mail.example.com"])
        key = self.newkey("v-nomail")
        res = self.gw.cmp("ir", "v-nomail", path="v1/pki/roles/vault-delegate-email-nocn/cmp", newkey=key,
                          subject="/CN=dev@mail.example.com")
        self.assertEqual(res.first.body_type, "ip", res.answers)
        self.assertEqual(res.first.status, 0, res.first)
        self.assert_issued(res.cert, key, "CN=dev@mail.example.com", [], res.first.extra_certs_pem())
        res, key, _ = self.p10cr("vault-delegate-email-nocn", "v-nomail-p10", "/CN=dev@mail.example.com")
        self.assert_from_vault(res, key, "CN=dev@mail.example.com", [])

    def test_cn_copy_of_a_type_the_role_does_not_allow(self):
        """On a role whose allowed_san_types lacks "email", a CN holding an '@' that Vault would copy into an
        email subjectAltName is refused before Vault is asked, on a p10cr and on a delegated ir alike, the
        statusString naming the two ways out; nothing is issued. Once, Vault issued it and the certificate
        went out with an email name the role never grants."""
        mark = self.vault.mark()
        text = ("common name someone@mail.example.com would become an email subjectAltName (the CA adds it), a "
                "type role vault-delegate-email-nosan does not allow: set exclude_cn_from_sans on the role, or "
                "\"email\" in its allowed_san_types")
        res, _, _ = self.p10cr("vault-delegate-email-nosan", "v-cnmail-nosan-p10", "/CN=someone@mail.example.com",
                               expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", text)
        res = self.gw.cmp("ir", "v-cnmail-nosan", path="v1/pki/roles/vault-delegate-email-nosan/cmp",
                          newkey=self.newkey("v-cnmail-nosan"), subject="/CN=someone@mail.example.com",
                          expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", text)
        self.assertEqual(self.vault.since(mark, "sign"), [])

    def test_crmf_delegate_keeps_the_vault_roles_cn_validations(self):
        """A Vault role whose cn_validations takes email addresses only: the delegate refuses a hostname CN."""
        res = self.gw.cmp("ir", "v-cnv", path="v1/pki/roles/vault-delegate-email/cmp", newkey=self.newkey("v-cnv"),
                          subject="/CN=host.example.com", expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", "common name host.example.com is a hostname, which the "
                             "upstream role does not take (cn_validations: email)")

    # -- negative -------------------------------------------------------------------------------

    def test_crmf_rejected_with_pointer_to_p10cr(self):
        mark = self.vault.mark()
        res = self.gw.cmp("ir", "v-ir", path="v1/pki/roles/vault/cmp", newkey=self.newkey("v-ir"),
                          subject="/CN=crmf.example.com", expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", "send a p10cr")
        self.assertEqual(self.vault.since(mark), [])

    def test_vault_refuses_name(self):
        res, _, _ = self.p10cr("vault", "v-400", "/CN=evil.org", expect_cert=False)
        self.assert_rejected(res, "badCertTemplate", "Vault refused: common name evil.org not allowed by this role")

    def test_bad_token(self):
        mark = self.vault.mark()
        res, _, _ = self.p10cr("vault-badtoken", "v-403", "/CN=tok.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "Vault denied the gateway: permission denied", "operator")
        self.assertEqual(len(self.vault.since(mark, "/sign/")), 2)  # the token file is read again once

    def test_vault_failures(self):
        cases = [
            ({"force_status": 412}, "systemUnavail", ["Vault is busy", "retry later"], 3),
            ({"force_status": 429}, "systemUnavail", ["Vault is busy", "rate limit quota exceeded"], 3),
            ({"force_status": 503}, "systemUnavail", ["Vault is unavailable: Vault is sealed"], 3),
            ({"force_status": 500}, "systemFailure", ["Vault failed: internal error"], 1),
            ({"garbage": True}, "systemFailure", ["not Vault JSON"], 1),
            ({"warnings_only": True}, "systemFailure", ["Vault issued no certificate"], 1),
        ]
        for i, (state, bit, texts, calls) in enumerate(cases):
            with self.subTest(state=state):
                self.vault.control(dict(state, match="sign/flaky"))
                mark = self.vault.mark()
                res, _, _ = self.p10cr("vault-flaky", "v-fail%d" % i, "/CN=fail%d.example.com" % i,
                                       expect_cert=False)
                self.assert_rejected(res, bit, *texts)
                self.assertEqual(len(self.vault.since(mark, "sign/flaky")), calls)

    def test_sign_refusal_not_vaults_not_resent(self):
        """A sign answered 403, 412 or 429 in other words than Vault's own (a proxy or a WAF in front of Vault,
        which may have passed the call on to Vault) is not sent again: Vault may have issued, and the client
        is told the outcome is unknown. Vault's own words for the same statuses are sent again
        (test_vault_failures, test_bad_token). Once, the sign was sent again, and the second call issued."""
        for i, status in enumerate((403, 412, 429)):
            with self.subTest(status=status):
                self.vault.control({"force_status": status, "force_count": 1,
                                    "force_message": "blocked by the ingress", "match": "sign/flaky"})
                mark = self.vault.mark()
                res, _, _ = self.p10cr("vault-flaky", "v-notvaults%d" % i, "/CN=notvaults%d.example.com" % i,
                                       expect_cert=False)
                self.assert_rejected(res, "systemUnavail",
                                     "Vault did not answer (HTTP %d, not Vault's own answer" % status,
                                     "the outcome is unknown, do not retry blindly")
                self.assertEqual(len(self.vault.since(mark, "sign/flaky")), 1)

    def test_token_echoed_by_an_answer_masked(self):
        """An answer that quotes the X-Vault-Token it was sent (a plugin or a proxy in front of Vault echoing
        the request) has the token masked before the gateway reads it: the client's statusString, the log
        and the audit log show asterisks in its place. Two calls a route, the file's token and a login's:
        the first may wait for its token (the synchronous call), the second has it in hand (the
        asynchronous one)."""
        self.assert_echo_masked("{token}", "echo")

    def test_token_escaped_by_an_answer_masked(self):
        """The same with the token written with JSON escapes, which the JSON parser decodes into the token
        itself: the strings parsed from the answer are masked of it too."""
        self.assert_echo_masked("{token_u}", "escaped")

    def assert_echo_masked(self, quoted, name):
        """Sign calls answered 400 "bad request for token |quoted|" leave the token nowhere."""
        self.vault.control({"force_status": 400, "force_message": "bad request for token " + quoted,
                            "match": "/sign/"})
        mark, logged = self.vault.mark(), len(self.gw.stderr())
        texts = []
        for role in ("vault-flaky", "vault-login"):
            for i in range(2):
                res, _, _ = self.p10cr(role, "v-%s-%s%d" % (name, role, i), "/CN=%s%d.example.com" % (name, i),
                                       expect_cert=False)
                self.assert_rejected(res, "badCertTemplate", "Vault refused: bad request for token ****")
                texts.append(" ".join(res.first.status_strings))
        tokens = {e["token"] for e in self.vault.since(mark, "/sign/")}
        self.assertIn(vaultenv.TOKEN, tokens)
        self.assertEqual(len(tokens), 2, tokens)  # the file's and the login's
        audit = (self.gw.dir / "audit.log").read_text()
        for tok in tokens:
            for where in texts + [self.gw.stderr(), audit]:
                self.assertNotIn(tok, where)
        self.assertIn("bad request for token " + "*" * len(vaultenv.TOKEN), self.gw.stderr()[logged:])

    def test_timeout_is_not_retried(self):
        self.vault.control({"latency_ms": 3000, "match": "sign/slow"})
        mark = self.vault.mark()
        res, _, _ = self.p10cr("vault-slow", "v-slow", "/CN=slow.example.com", expect_cert=False)
        self.assert_rejected(res, "systemUnavail", "outcome is unknown")
        self.assertEqual(len(self.vault.since(mark, "sign/slow")), 1)


    # -- genm crlStatusList (RFC 9483 §4.3.4): the route's issuer's CRL, one GET per issuer per 5 s --

    def genm(self, name, *oids, role="vault"):
        """cmpclient genm on |role|'s route; (exit code, stdout lines, decoded answer)."""
        d = self.gw.dir
        rspout = d / ("%s.rsp.der" % name)
        p = harness.run([CLIENT_BIN, "--url", self.gw.url("/v1/pki/roles/%s/cmp" % role), "--cafile", d / "ca.pem",
                         "--tls-cert", d / "client.pem", "--tls-key", d / "client.key", "--cert", d / "client.pem",
                         "--key", d / "client.key", "--rspout", rspout, "genm", "--out", d / name] + list(oids),
                        check=False)
        if not rspout.exists():
            raise harness.Failure("cmpclient exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
        return p.returncode, p.stdout.decode().splitlines(), harness.decode_cmp(rspout)

    def test_genm_crls_from_vault(self):
        mark = self.vault.mark()
        rc, lines, answer = self.genm("v-crls", CRL_STATUS)
        self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
        self.assertEqual(lines[1].split()[:2], ["itav", CRLS])
        # the Vault role "devices" names the default issuer: its CRL (the role read is cached 60 s)
        paths = [e["path"] for e in self.vault.since(mark)]
        self.assertIn(paths, (["/v1/pki/crl"], ["/v1/pki/roles/devices", "/v1/pki/crl"]))

    def crl_status(self, name, source_pem, this_update):
        """A genm argument asking for crlStatusList with one CRLStatus: the CRL of the CA of |source_pem|
        (its subject as the CRLSource's issuer, RFC 9810 §5.3.19.16), of |this_update| (GeneralizedTime)."""
        return "%s:der:%s" % (CRL_STATUS, harness.crl_status_list(self.gw.dir, name, [source_pem], this_update))

    def test_genm_crls_of_the_routes_issuer(self):
        """A route that signs with a named issuer (issuer_ref) serves that issuer's CRL, not the default
        issuer's: the certificates it issues are on no other CRL."""
        mark = self.vault.mark()
        rc, lines, _ = self.genm("v-crls-issuer", CRL_STATUS, role="vault-issuer")
        self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
        self.assertEqual([e["path"] for e in self.vault.since(mark)], ["/v1/pki/issuer/second/crl/der"])
        crl = crl_of(self.gw.dir / "v-crls-issuer.0.der")
        second = x509.load_pem_x509_certificate((self.gw.dir / "vault-ca2.pem").read_bytes())
        self.assertEqual(crl.issuer, second.subject)
        self.assertTrue(crl.is_signature_valid(second.public_key()))
        # and a client holding that issuer's CRL (dated as the one served) is told it is current
        held = crl.last_update.strftime("%Y%m%d%H%M%SZ")
        rc, lines, _ = self.genm("v-crls-issuer-current", self.crl_status("v-crls-issuer-current", "vault-ca2.pem",
                                                                          held), role="vault-issuer")
        self.assertEqual((rc, lines), (0, ["genp 1", "itav %s absent" % CRLS]))

    def test_genm_crls_of_another_issuer_of_the_mount(self):
        """A route signs with one issuer of a mount of two: a client naming the other's CRL, alone or beside
        this one's, is not handed this one's as if it were that, or as if it were all, but told where to
        fetch it; naming this one's gets it."""
        both = "%s:der:%s" % (CRL_STATUS, harness.crl_status_list(self.gw.dir, "v-crls-both",
                                                                 ["vault-ca.pem", "vault-ca2.pem"], "20200101000000Z"))
        for name, value in (("v-crls-other", self.crl_status("v-crls-other", "vault-ca2.pem", "20200101000000Z")),
                            ("v-crls-both", both)):
            with self.subTest(name=name):
                rc, lines, answer = self.genm(name, value)
                self.assertEqual(rc, 2, lines)
                self.assertEqual((answer.body_type, answer.fail_info), ("error", ["badRequest"]))
                self.assertEqual(answer.status_strings, ["the CRL of a CA named in the id-it-crlStatusList is not "
                                                         "served over CMP here: fetch it from its CRL distribution "
                                                         "point"])
        rc, lines, _ = self.genm("v-crls-own", self.crl_status("v-crls-own", "vault-ca.pem", "20200101000000Z"))
        self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
        crl = crl_of(self.gw.dir / "v-crls-own.0.der")
        own = x509.load_pem_x509_certificate((self.gw.dir / "vault-ca.pem").read_bytes())
        self.assertEqual(crl.issuer, own.subject)

    def test_genm_crls_of_the_vault_roles_issuer(self):
        """A route without issuer_ref whose Vault role has one is signed by that issuer (Vault applies
        the role's issuer_ref when the sign call names none): it serves that issuer's CRL, read from the
        Vault role as its grants are, not the default issuer's, which does not list its certificates."""
        for role in ("vault-role-issuer", "verbatim-role-issuer"):
            with self.subTest(role=role):
                mark = self.vault.mark()
                name = "v-crls-%s" % role
                rc, lines, _ = self.genm(name, CRL_STATUS, role=role)
                self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
                paths = [e["path"] for e in self.vault.since(mark)]
                # fetched now, or by the genm of that issuer just before (GW_GENM_CRL_SECS): never another's
                self.assertIn([p for p in paths if "crl" in p], ([], ["/v1/pki/issuer/second/crl/der"]), paths)
                crl = crl_of(self.gw.dir / ("%s.0.der" % name))
                second = x509.load_pem_x509_certificate((self.gw.dir / "vault-ca2.pem").read_bytes())
                self.assertEqual(crl.issuer, second.subject)
                self.assertTrue(crl.is_signature_valid(second.public_key()))
        # the Vault role was read once, for both routes' first genm, and is cached like its grants
        mark = self.vault.mark()
        rc, lines, _ = self.genm("v-crls-role-issuer-again", CRL_STATUS, role="vault-role-issuer")
        paths = [e["path"] for e in self.vault.since(mark)]
        self.assertIn(paths, ([], ["/v1/pki/issuer/second/crl/der"]))

    def test_genm_crls_when_the_vault_role_is_unread(self):
        """A Vault role the gateway cannot read (a policy without read on roles/): the default issuer's
        CRL, as before, and the log says why (upstream_role_unread)."""
        self.vault.control({"force_status": 403, "match": "/roles/"})
        try:
            mark = self.vault.mark()
            before = len(self.event_lines("upstream_role_unread"))
            rc, lines, _ = self.genm("v-crls-role-unread", CRL_STATUS, role="vault-role-unread")
        finally:
            self.vault.control({})
        self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
        # fetched now, or by a genm of the default issuer's CRL just before (GW_GENM_CRL_SECS)
        self.assertIn([e["path"] for e in self.vault.since(mark) if "crl" in e["path"]], ([], ["/v1/pki/crl"]))
        crl = crl_of(self.gw.dir / "v-crls-role-unread.0.der")
        own = x509.load_pem_x509_certificate((self.gw.dir / "vault-ca.pem").read_bytes())
        self.assertEqual(crl.issuer, own.subject)
        logged = self.event_lines("upstream_role_unread")[before:]
        self.assertEqual([(e["role"], e["msg"]) for e in logged],
                         [("vault-role-unread", "the CRL served is the default issuer's")], logged)

    def test_genm_crls_within_5s_one_fetch(self):
        """genms in a burst from one client cost Vault one CRL fetch per 5 s (GW_GENM_CRL_SECS), not one each:
        the CRL fetched for one answers those after it. Vault signs each CRL it serves afresh (ECDSA: no two
        alike), so which fetch answered a genm shows in its answer. The 5 s themselves are test_rrgenm's, on a
        clock of its own."""
        time.sleep(5.5)  # past what the genms of this issuer before fetched
        fetches, crls = [], []
        for i in range(6):
            mark = self.vault.mark()
            rc, lines, _ = self.genm("v-crls-burst-%d" % i, CRL_STATUS, role="vault-issuer")
            self.assertEqual((rc, lines[0]), (0, "genp 1"), lines)
            fetches.append([e["path"] for e in self.vault.since(mark) if "crl" in e["path"]])
            crls.append((self.gw.dir / ("v-crls-burst-%d.0.der" % i)).read_bytes())
        self.assertEqual(fetches[0], ["/v1/pki/issuer/second/crl/der"], fetches)
        for i in range(1, 6):  # one fetch at most, its CRL new; with none, the CRL of the genm before
            self.assertIn(fetches[i], ([], ["/v1/pki/issuer/second/crl/der"]), fetches)
            self.assertEqual(crls[i] == crls[i - 1], fetches[i] == [], (i, fetches))
        # not one each: at least one genm was answered without asking Vault (five fetches more would need
        # GW_GENM_CRL_SECS between any two of them)
        self.assertIn([], fetches[1:], fetches)

    def event_lines(self, event):
        return [e for e in self.gw.log_lines() if e.get("event") == event]

    def refused_crl_lines(self):
        return self.event_lines("genm_crl_refused")

    @staticmethod
    def wait_out_failed_crl():
        """Past the GW_STATUS_RETRY_SECS (5 s) in which a failed fetch of a CRL answers every genm of it, so
        that the next genm asks Vault."""
        time.sleep(5.5)

    def test_genm_crl_refused(self):
        """A CRL the route's CA did not sign, a delta CRL, one from the future or one past its nextUpdate
        (which the revocation check still uses within cmp.revocation_grace, but a client cannot) is not
        passed on: the client is told to retry later, the log says what was wrong with the CA's CRL."""
        cases = [("crl_forged", "signed by none of the upstream's CAs"),
                 ("crl_delta", "it serves a delta CRL, not the full one"),
                 ("crl_future", "a thisUpdate in the future"),
                 ("crl_stale", "its nextUpdate passed")]
        for i, (switch, why) in enumerate(cases):
            if i:
                self.wait_out_failed_crl()  # each case's own fetch, not the case before's failure
            for role in ("vault", "vault-issuer"):
                with self.subTest(switch=switch, role=role):
                    self.vault.control({switch: True})
                    name = "v-crl-refused-%d-%s" % (i, role)
                    before = len(self.refused_crl_lines())
                    rc, lines, answer = self.genm(name, CRL_STATUS, role=role)
                    self.assertEqual(rc, 2, lines)
                    self.assertEqual((answer.body_type, answer.fail_info), ("error", ["systemUnavail"]))
                    self.assertEqual(answer.status_strings, ["the CA's CRL did not pass this gateway's checks and "
                                                             "was not passed on; retry later"])
                    self.assertFalse((self.gw.dir / ("%s.0.der" % name)).exists())
                    logged = self.refused_crl_lines()[before:]
                    self.assertEqual([(e["level"], e["role"], e["upstream"]) for e in logged],
                                     [("error", role, "vault")], logged)
                    self.assertIn(why, logged[0]["reason"])
        self.vault.control({})
        self.wait_out_failed_crl()

    def test_genm_crl_unavailable(self):
        """A CRL Vault does not serve now: the client is told to retry later, without the upstream's
        address or path, which the log line gives the operator. A genm right after is told the same
        without Vault being asked again, though it is back: a client repeating its genm costs the CA one
        fetch per 5 s (GW_STATUS_RETRY_SECS)."""
        self.vault.control({"force_status": 503, "match": "/crl"})
        try:
            before = len(self.event_lines("genm_crl_unavailable"))
            rc, _, answer = self.genm("v-crl-unavailable", CRL_STATUS)
        finally:
            self.vault.control({})
        self.assertEqual(rc, 2)
        self.assertEqual((answer.body_type, answer.fail_info), ("error", ["systemUnavail"]))
        self.assertEqual(answer.status_strings, ["the CA's CRL could not be fetched now; retry later"])
        mark = self.vault.mark()
        rc, _, again = self.genm("v-crl-unavailable-again", CRL_STATUS)
        self.assertEqual((rc, again.fail_info, again.status_strings), (2, answer.fail_info, answer.status_strings))
        self.assertEqual(self.vault.since(mark, "/crl"), [])
        logged = self.event_lines("genm_crl_unavailable")[before:]
        self.assertEqual([(e["level"], e["role"], e["upstream"]) for e in logged],
                         [("error", "vault", "vault")] * 2, logged)
        self.assertIn("503", logged[0]["reason"])
        self.wait_out_failed_crl()

    def test_genm_crl_status_list_asked_twice(self):
        """Each crlStatusList is a GET of the whole CRL at Vault, on a worker: a genm naming one infoType
        more than once is refused before any is answered, so one message costs one GET at most."""
        mark = self.vault.mark()
        rc, _, answer = self.genm("v-crls-twice", *[CRL_STATUS] * 8)
        self.assertEqual(rc, 2)
        self.assertEqual((answer.body_type, answer.fail_info), ("error", ["badRequest"]))
        self.assertEqual(answer.status_strings, ["a genm must ask for each infoType once; %s was asked for twice"
                                                 % CRL_STATUS])
        self.assertEqual(self.vault.since(mark, "/crl"), [])


class SlowVault(harness.GatewayTestCase):
    """2 workers in front of a Vault that answers sign calls after LATENCY_S (set per test)."""

    WORKERS = 2
    LATENCY_S = 2.0
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["workers"] = cls.WORKERS
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        role = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices")
        role["allowed_san_types"] = ["dns"]
        cfg["roles"]["vault"] = role

    def setUp(self):
        self.slow()

    def slow(self):
        """Vault answers sign calls after LATENCY_S."""
        self.vault.control({"latency_ms": int(self.LATENCY_S * 1000), "match": "/sign/"})

    def held_at_vault(self, mark, n=1):
        """Waits until Vault received |n| sign calls since |mark| (VaultApi.mark): each is held there from
        then on, LATENCY_S as it arrived, whatever the switches say later."""
        calls = harness.settled(lambda: self.vault.since(mark, "/sign/"), lambda c: len(c) >= n)
        self.assertGreaterEqual(len(calls), n, "%d sign call(s) of %d reached Vault:\n%s"
                                % (len(calls), n, self.gw.stderr()[-3000:]))

    def leave_once_held(self, req, http="--http1.1"):
        """curl posts |req| on the role "vault" and leaves, its connection closed, once the sign call is held
        at Vault: a client that gives up while its call waits. A client leaving after a fixed time (1 s
        once) may leave before a loaded sanitizer build has sent the call, and then nothing is issued.
        Returns the inode of the gateway's end of that connection (a set of one, as harness.gateway_ends)."""
        d = self.gw.dir
        argv = ["curl", "-sS", http, "--cacert", d / "ca.pem", "--cert", d / "client.pem", "--key",
                d / "client.key", "-o", os.devnull, "--data-binary", "@%s" % req,
                "-H", "Content-Type: application/pkixcmp", self.gw.url("/pki/roles/vault/cmp")]
        mark = self.vault.mark()
        with subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) as curl:
            try:
                self.held_at_vault(mark)
                self.assertIsNone(curl.poll(), "curl ended before it was to leave")
                mine = {s["local"] for s in harness.tcp_sockets(curl.pid)}
                ends = {s["inode"] for s in harness.tcp_sockets(self.gw.proc.pid) if s["remote"] in mine}
            finally:
                curl.kill()
        self.assertEqual(len(ends), 1, "the gateway's end of curl's connection")
        return ends

    def p10cr(self, name):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        return self.gw.cmp("p10cr", name, path="pki/roles/vault/cmp", extra=["-csr", csr,
                                                                              "-implicit_confirm"])


class VaultLatencyHidden(SlowVault):
    """A sign call in flight holds no worker and no thread (docs/design.md D24): CLIENTS concurrent p10cr
    are all at Vault at once, the gateway's thread count does not grow while they wait, and each gets its
    certificate with one "issued" record; a client that leaves meanwhile loses nothing on record."""

    CLIENTS = 8

    def threads(self):
        for line in (Path("/proc") / str(self.gw.proc.pid) / "status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        raise AssertionError("no Threads line")

    def test_waiting_calls_hold_no_worker_and_no_thread(self):
        self.vault.control({})
        self.p10cr("warm")  # the first call starts the HTTP client's transfer thread
        idle = self.threads()
        self.slow()
        mark = self.vault.mark()
        results, peak = {}, []

        def one(i):
            results[i] = self.p10cr("slow%d" % i)

        clients = [threading.Thread(target=one, args=(i,)) for i in range(self.CLIENTS)]
        for c in clients:
            c.start()
        deadline = time.monotonic() + self.LATENCY_S
        while time.monotonic() < deadline:
            peak.append(self.threads())
            time.sleep(0.05)
        for c in clients:
            c.join()
        self.assertEqual(sorted(results), list(range(self.CLIENTS)))
        for res in results.values():
            self.assertEqual(res.first.body_type, "cp", res.answers)
            self.assertIsNotNone(res.cert)
        # every sign call reached Vault while the others were still held there
        arrivals = sorted(e["time"] for e in self.vault.since(mark, "/sign/"))
        self.assertEqual(len(arrivals), self.CLIENTS)
        together = max(sum(1 for t in arrivals if a <= t < a + self.LATENCY_S * 0.9) for a in arrivals)
        self.assertGreater(together, self.WORKERS, arrivals)
        self.assertLessEqual(max(peak), idle, "threads grew while calls waited: %s (idle %d)" % (peak, idle))
        for i in range(self.CLIENTS):
            self.assertEqual(len(harness.audit_records(self.gw, "issued", "slow%d.example.com" % i)), 1)

    def test_client_gone_while_waiting(self):
        """The client hangs up while its call waits: the second pass still runs, the certificate goes on
        record, and the request is logged (h2o notices the hang-up only when the answer is written)."""
        req = self.gw.make_request("gone", "p10cr", subject="/CN=gone.example.com")
        end = self.leave_once_held(req)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not harness.audit_records(self.gw, "issued", "gone.example.com"):
            time.sleep(0.1)
        issued = harness.audit_records(self.gw, "issued", "gone.example.com")
        self.assertEqual(len(issued), 1)
        def lines():
            return harness.json_lines(self.gw.stderr_path, issued[0]["tid"].encode())

        # the request line comes after the adapter's vault_issued, once the answer is written
        while time.monotonic() < deadline and not any(l.get("event") == "request" for l in lines()):
            time.sleep(0.1)
        self.assertIn(("request", "p10cr", "accepted"),
                      [(l.get("event"), l.get("req_type"), l.get("outcome")) for l in lines()], lines())
        # written to the socket: it may have reached the client (HTTP/1 reads nothing while it answers). Only
        # once the gateway closed that connection has it seen all there is of the hang-up: nothing withdrawn
        open_end = harness.settled(lambda: end & harness.socket_inodes(self.gw.proc.pid), lambda e: not e)
        self.assertEqual(open_end, set(), "the gateway did not close the connection its client left")
        self.assertEqual(harness.audit_records(self.gw, "rejected", "gone.example.com"), [])
        self.assertEqual([l for l in lines() if l.get("event") == "cert_undelivered"], [])


class Http2Listener:
    """Mixed into SlowVault: its listener speaks HTTP/2, whose client's leaving the gateway notices at once."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["listeners"][0]["tls"]["http2"] = True

    def crl_serials(self):
        """The serials on Vault's CRL (its default issuer's revocations)."""
        ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
        with urllib.request.urlopen(self.vault.url + "/v1/pki/crl", context=ctx, timeout=10) as r:
            crl = x509.load_der_x509_crl(r.read())
        return {c.serial_number for c in crl}


class VaultClientGone(Http2Listener, SlowVault):
    """An HTTP/2 client that closes its connection while its call waits at Vault: the gateway notices at once,
    so the answer is never written, and the certificate Vault issued is withdrawn (docs/audit.md), whether
    the client asked for implicitConfirm or a certConf was to come."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg.setdefault("cmp", {})["transaction_ttl"] = "3s"  # an unconfirmed one would expire during the test

    def leave(self, name, extra):
        """A p10cr for /CN=|name|.example.com whose client gives up while Vault takes its time: the record
        of the certificate issued for it."""
        cn = "%s.example.com" % name
        req = self.gw.make_request(name, "p10cr", subject="/CN=" + cn, extra=extra)
        self.counted_before = self.counted()
        self.leave_once_held(req, "--http2")
        issued = harness.settled(lambda: harness.audit_records(self.gw, "issued", cn), len)
        self.assertEqual(len(issued), 1, self.gw.stderr()[-3000:])
        return issued[0]

    def assert_withdrawn(self, issued):
        serial, tid = issued["serial"], issued["tid"]
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r["serial"] == serial], len)
        self.assertEqual(len(revoked), 1, self.gw.stderr()[-3000:])
        rejected = [r for r in harness.audit_records(self.gw, "rejected") if r["serial"] == serial]
        self.assertEqual([r["status"] for r in rejected],
                         ["not delivered: the client left before its answer was sent"])
        self.assertIn(int(serial, 16), self.crl_serials())
        lines = [e for e in self.gw.log_lines() if e.get("tid") == tid]
        self.assertIn("cert_undelivered", [e.get("event") for e in lines], lines)
        self.assertTrue(any(e.get("event") == "request" and e.get("outcome", "").startswith("client gone")
                            and e["outcome"].endswith("; its certificate is withdrawn") for e in lines), lines)
        # counted as what it was: not as "accepted", a certificate a dashboard would count as delivered
        undelivered, accepted = self.counted_before
        self.assertEqual(self.counted(), (undelivered + 1, accepted))

    def counted(self):
        """The p10cr requests counted undelivered, and accepted."""
        return tuple(harness.metric(self.gw, "cmpgw_requests_total", 0, body="p10cr", outcome=outcome)
                     for outcome in ("undelivered", "accepted"))

    def test_implicit_confirm(self):
        self.assert_withdrawn(self.leave("gone-implicit", ("-implicit_confirm",)))

    def test_certconf_expected(self):
        issued = self.leave("gone-certconf", ())
        self.assert_withdrawn(issued)
        # the twin, begun later and answered but never confirmed, expires: by then an expiry tick past
        # transaction_ttl would have found the first one too, had it been left open rather than closed
        req = self.gw.make_request("left-open", "p10cr", subject="/CN=left-open.example.com", extra=())
        answered = self.gw.curl(path="/pki/roles/vault/cmp", data=req, http="--http2")
        self.assertEqual(harness.decode_cmp(answered.body).body_type, "cp", answered)
        expired = harness.settled(lambda: harness.audit_records(self.gw, "expired_unconfirmed",
                                                                "left-open.example.com"), len)
        self.assertEqual(len(expired), 1, self.gw.stderr()[-3000:])
        self.assertEqual(harness.audit_records(self.gw, "expired_unconfirmed", "gone-certconf.example.com"), [])


class VaultClientGoneRevocationFails(Http2Listener, SlowVault):
    """As VaultClientGone, with Vault failing the withdrawal's revocation (HTTP 500) every time: the gateway
    asks three times in all, a few seconds apart, then the certificate nobody received stays valid at Vault,
    and is on the audit log as not revoked (`revoke_failed`, with the serial, the attempts and Vault's words)
    and on an error line `revoke_failed` naming it, for an operator to revoke by hand; never on record as
    revoked. Nothing asks Vault again later."""

    def test_withdrawal_refused_by_vault_on_record(self):
        cn = "gone-unrevoked.example.com"
        req = self.gw.make_request("gone-unrevoked", "p10cr", subject="/CN=" + cn, extra=("-implicit_confirm",))
        mark = self.vault.mark()
        self.leave_once_held(req, "--http2")  # the call's latency is its own from here on
        self.vault.control({"force_status": 500, "match": "/revoke"})
        failed = harness.settled(lambda: harness.audit_records(self.gw, "revoke_failed", cn), len)
        self.assertEqual(len(failed), 1, self.gw.stderr()[-3000:])
        serial = failed[0]["serial"]
        self.assertEqual(failed[0]["status"], "not revoked after 3 attempts: Vault failed: internal error (HTTP 500)",
                         failed)
        self.assertEqual([r["serial"] for r in harness.audit_records(self.gw, "issued", cn)], [serial])
        self.assertEqual([r["status"] for r in harness.audit_records(self.gw, "rejected", cn)],
                         ["not delivered: the client left before its answer was sent"])
        lines = harness.settled(lambda: [e for e in self.gw.log_lines()
                                         if e.get("event") == "revoke_failed" and e.get("serial") == serial], len)
        self.assertEqual([(e.get("level"), e.get("upstream"), e.get("attempts")) for e in lines],
                         [("error", "vault", "3")])
        self.assertNotIn(int(serial, 16), self.crl_serials())
        asked = len(self.vault.since(mark, "/revoke"))
        self.assertEqual(asked, 3)
        time.sleep(1.5)  # nothing asks again
        self.assertEqual(len(self.vault.since(mark, "/revoke")), asked)
        self.assertEqual(harness.audit_records(self.gw, "revoked", cn), [])


class VaultClientGoneRevocationRetried(Http2Listener, SlowVault):
    """As VaultClientGone, with Vault unavailable (HTTP 503) for as long as the withdrawal's first call
    repeats it, then answering: the gateway asks again after its back-off, and the certificate ends revoked
    at Vault, with one `revoked` record that says at which attempt and no `revoke_failed`. Before, the first
    call's failure was final: the certificate stayed valid, on record as `revoke_failed`."""


    def test_withdrawal_revoked_once_vault_answers(self):
        cn = "gone-retried.example.com"
        req = self.gw.make_request("gone-retried", "p10cr", subject="/CN=" + cn, extra=("-implicit_confirm",))
        mark = self.vault.mark()
        self.leave_once_held(req, "--http2")
        # the adapter repeats a 503 twice within its call (412/429/503, GW_UPSTREAM_RETRIES): three of them
        # fail that whole call, and only the withdrawal's next attempt gets through
        self.vault.control({"force_status": 503, "force_count": 3, "match": "/revoke"})
        revoked = harness.settled(lambda: harness.audit_records(self.gw, "revoked", cn), len)
        self.assertEqual(len(revoked), 1, self.gw.stderr()[-3000:])
        serial = revoked[0]["serial"]
        self.assertRegex(revoked[0]["status"], r"^revoked upstream at attempt [23]$")
        self.assertEqual(harness.audit_records(self.gw, "revoke_failed", cn), [])
        self.assertIn(int(serial, 16), self.crl_serials())
        retries = [e for e in self.gw.log_lines() if e.get("event") == "revoke_retry" and e.get("serial") == serial]
        self.assertGreaterEqual(len(retries), 1, self.gw.stderr()[-3000:])
        self.assertEqual([(e.get("level"), e.get("upstream"), e.get("attempt")) for e in retries[:1]],
                         [("warn", "vault", "1")])
        self.assertIn("HTTP 503", retries[0].get("reason", ""))
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 4)


# what a withdrawal asked during a drain is on record as when Vault had not answered by its deadline
# (gateway/cmp/record.c)
CUT_SHORT = ("the drain's deadline came while the upstream had not answered, which ended its call (the gateway "
             "stopping or its configuration retired); it may or may not be revoked: check at the CA")


class VaultStopCutsLastRevocationShort(Http2Listener, SlowVault):
    """As VaultClientGoneRevocationRetried, with SIGTERM while the withdrawal waits to ask Vault again, and
    Vault then holding the revocation longer than the withdrawals' deadline (10 s), within the upstream's
    timeout (60 s): the last attempt, asked as the drain begins, is given that deadline and ends by it, on
    record as cut short, and the gateway exits 0 with a clean shutdown, nothing left running. Before, the
    call ran on: the drain gave up on it "before it answered" and the gateway exited without cleanup."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["vault"]["timeout"] = "60s"

    def test_last_attempt_ends_by_the_drain_deadline(self):
        cn = "cut-short.example.com"
        req = self.gw.make_request("cut-short", "p10cr", subject="/CN=" + cn, extra=("-implicit_confirm",))
        self.leave_once_held(req, "--http2")
        mark = self.vault.mark()
        # the first call fails (three 503s at once); what comes after them is held, set before the retry so
        # that nothing but the SIGTERM has to come within the withdrawal's 2 s back-off
        self.vault.control({"force_status": 503, "force_count": 3, "latency_ms": 40000, "hold_unforced": True,
                            "match": "/revoke"})
        retry = harness.settled(lambda: [e for e in self.gw.log_lines() if e.get("event") == "revoke_retry"], len)
        self.gw.signal_stop()  # within the withdrawal's 2 s back-off
        self.assertEqual(len(retry), 1, self.gw.stderr()[-3000:])
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 3 + 1)  # the failed call, the last attempt
        self.assertEqual([r["status"] for r in harness.audit_records(self.gw, "revoke_failed", cn)],
                         ["not revoked after 2 attempts: " + CUT_SHORT])
        self.assertEqual(harness.audit_records(self.gw, "revoked", cn), [])
        stopped = [(e.get("level"), e.get("msg")) for e in self.gw.log_lines() if e.get("event") == "stopped"]
        self.assertEqual(stopped, [("info", "clean shutdown")], self.gw.stderr()[-3000:])


class VaultAuditLostWhileWaiting(SlowVault):
    """The audit log fails while a sign call waits at Vault: the intent is on record, Vault issues, and the
    "issued" record cannot be written. The certificate is not released (systemUnavail) and is revoked at
    Vault; with the log unwritable, the lines on stderr that name its serial (the record that failed, the
    revocation) are what an operator has of it (docs/audit.md)."""

    def test_certificate_revoked_when_its_record_fails(self):
        name, out = "unaudited", {}
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])

        def enrol():
            try:
                out["res"] = self.gw.cmp("p10cr", name, path="pki/roles/vault/cmp", expect_cert=False,
                                         extra=["-csr", csr, "-implicit_confirm"])
            except Exception as e:  # reported below, on the test thread
                out["error"] = e

        mark = self.vault.mark()
        t = threading.Thread(target=enrol)
        t.start()
        self.held_at_vault(mark)
        harness.audit_log_full(self.gw)  # after the intent, before the certificate comes
        t.join(harness.CLIENT_TIMEOUT)
        self.assertNotIn("error", out, out.get("error"))
        res = out["res"]
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, ("cp",), "systemUnavail",
                              "the audit log cannot be written; the certificate was not released")
        kept = harness.json_lines(self.gw.dir / "audit.log.kept", strict=True)
        self.assertEqual([r["event"] for r in kept if r.get("common_name") == "%s.example.com" % name],
                         ["intent"])
        failed = [e for e in self.gw.log_lines() if e.get("event") == "audit_write_failed"]
        serials = [e["serial"] for e in failed if e.get("record") == "issued"]
        self.assertEqual(len(serials), 1, self.gw.stderr()[-3000:])
        serial = serials[0]
        revoked = harness.settled(lambda: [e for e in self.gw.log_lines() if e.get("event") == "cert_revoked"
                                           and e.get("serial") == serial], len)
        self.assertEqual(len(revoked), 1, self.gw.stderr()[-3000:])
        self.assertEqual([r["body"]["serial_number"].replace(":", "").lstrip("0")
                          for r in self.vault.since(mark, "/revoke")], [serial.lstrip("0")])
        # its "revoked" record failed too, before the line that says it was revoked
        self.assertIn(("revoked", serial), [(e.get("record"), e.get("serial")) for e in self.gw.log_lines()
                                            if e.get("event") == "audit_write_failed"])


class VaultKilled(SlowVault):
    """The gateway killed (SIGKILL) while a call waits at Vault, or after the answer carrying the certificate
    left and before its certConf: what the audit log shows is the transaction's last record, as
    docs/operations.md tells an operator to read it. An `intent` with nothing after it, the subject it asked
    for, is a certificate the CA may have issued; an `issued` with nothing after it is one its client may
    hold, valid. The restarted gateway adds nothing to either."""

    def kill_and_restart(self):
        self.gw.proc.kill()
        self.gw.proc.wait(harness.STOP_TIMEOUT)
        self.gw.proc = None
        self.gw._err.close()  # stop() closes them otherwise, and expects a running gateway
        self.gw._out.close()
        self.gw.start()

    def of_tid(self, tid):
        return [r["event"] for r in harness.json_lines(self.gw.dir / "audit.log") if r.get("tid") == tid]

    def test_killed_while_vault_signs(self):
        cn, out = "killed-signing.example.com", {}
        req = self.gw.make_request("killedsign", "p10cr", subject="/CN=" + cn)

        def send():
            try:
                self.gw.curl(path="/pki/roles/vault/cmp", data=req)
            except harness.Failure as e:  # the gateway dies under it
                out["error"] = e

        mark = self.vault.mark()
        t = threading.Thread(target=send)
        t.start()
        self.held_at_vault(mark)
        self.kill_and_restart()
        t.join(harness.CLIENT_TIMEOUT)
        self.assertIn("error", out)
        intents = harness.audit_records(self.gw, "intent", cn)
        self.assertEqual(len(intents), 1, intents)
        self.assertEqual(intents[0]["upstream"], "vault")
        self.assertEqual(self.of_tid(intents[0]["tid"]), ["intent"])
        self.assertEqual(len(self.vault.since(mark, "/sign/")), 1)  # the CA was asked

    def test_killed_before_the_certconf(self):
        self.vault.control({})
        cn = "killed-unconfirmed.example.com"
        req = self.gw.make_request("killedconf", "p10cr", subject="/CN=" + cn, extra=())
        answer = harness.decode_cmp(self.gw.curl(path="/pki/roles/vault/cmp", data=req).body)
        self.assertEqual((answer.body_type, answer.status), ("cp", 0), answer)
        tid = answer.header["transactionID"].asOctets().hex()
        self.kill_and_restart()
        self.assertEqual(self.of_tid(tid), ["intent", "issued"])


class VaultShutdownWhileWaiting(SlowVault):
    """SIGTERM while a request waits for Vault without a worker: the drain waits for it, the client gets
    its certificate, and the gateway exits 0."""

    def test_sigterm_drains_a_waiting_request(self):
        out = {}

        def enrol():
            try:
                out["res"] = self.p10cr("draining")
            except Exception as e:  # reported below, on the test thread
                out["error"] = e

        mark = self.vault.mark()
        t = threading.Thread(target=enrol)
        t.start()
        self.held_at_vault(mark)  # the p10cr now waits at Vault, its worker free
        self.assertTrue(t.is_alive(), out)
        self.gw.signal_stop()
        t.join(harness.CLIENT_TIMEOUT)
        self.assertNotIn("error", out, out.get("error"))
        self.assertEqual(out["res"].first.body_type, "cp", out["res"].answers)
        self.assertIsNotNone(out["res"].cert)
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])


class VaultShutdownPastDrain(SlowVault):
    """SIGTERM while a call waits longer than the drain (10 s): the loops give up on the connection, but the
    workers stay until the call ends, so the certificate Vault issued is on record before the gateway
    exits; nobody sends its answer, so it is withdrawn (docs/operations.md)."""

    LATENCY_S = 12.0

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["vault"]["timeout"] = "30s"

    def test_certificate_recorded_after_the_drain_gave_up(self):
        serial = self.stop_during_call("late")
        self.assertEqual(len([r for r in harness.audit_records(self.gw, "revoked") if r["serial"] == serial]), 1)
        revoked = [e for e in self.gw.log_lines() if e.get("event") == "cert_revoked" and e.get("serial") == serial]
        self.assertEqual([e.get("upstream") for e in revoked], ["vault"], self.gw.stderr()[-3000:])

    def before_stop(self):
        """What happens once the sign calls wait at Vault, before SIGTERM."""

    def between_calls(self):
        """What happens between one sign call and the next, once the first waits at Vault."""

    def stop_during_call(self, name):
        """SIGTERM while the p10cr of |name| waits at Vault: the gateway exits 0 (within STOP_TIMEOUT) with
        the certificate on record as issued and not delivered. Its serial."""
        return self.stop_during_calls(name)[0]

    def stop_during_calls(self, *names):
        """stop_during_call for a p10cr of each of |names| at once, between_calls() between them: their
        serials."""
        threads = []
        for name in names:
            if threads:
                self.between_calls()
            mark = self.vault.mark()
            threads.append(threading.Thread(target=self.p10cr_expecting_nothing, args=(name,)))
            threads[-1].start()
            self.held_at_vault(mark)
        self.before_stop()
        self.gw.signal_stop()
        rc = self.gw.wait_exit()
        self.gw.proc = None
        for t in threads:
            t.join(harness.CLIENT_TIMEOUT)
        self.gw.check_stderr()
        self.assertIn("running the requests still queued or waiting for an upstream", self.gw.stderr())
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])
        serials = []
        for name in names:
            issued = harness.audit_records(self.gw, "issued", "%s.example.com" % name)
            self.assertEqual(len(issued), 1, self.gw.stderr()[-3000:])
            serials.append(issued[0]["serial"])
            self.assertEqual([r["status"] for r in harness.audit_records(self.gw, "rejected")
                              if r["serial"] == serials[-1]],
                             ["not delivered: the gateway stopped before its answer was sent"])
        return serials

    def p10cr_expecting_nothing(self, name):
        try:
            self.p10cr(name)
        except harness.Failure:
            pass  # the loop gave up on the connection: the client gets no answer


# what the drain says of a withdrawal whose upstream did not answer in time (gateway/cmp/record.c)
GAVE_UP_ASKED = ("not revoked: the drain gave up on it after the upstream was asked, before it answered (the gateway "
                 "stopping or its configuration retired); it may or may not be revoked: check at the CA")


class VaultShutdownRevocationPastDeadline(VaultShutdownPastDrain):
    """As VaultShutdownPastDrain, with Vault answering the revocation after longer than the withdrawals'
    deadline (10 s), within the upstream's timeout (60 s): the gateway does not wait for it (an operator's
    stop timeout would kill it mid-wait, nothing on record). The revocation, at Vault when the withdrawals'
    drain begins or asked during it, is given the drain's deadline and ends by it, cut short: the
    certificate goes on record as not revoked (`revoke_failed`, it may or may not be revoked) and an error
    line names its serial and upstream for an operator to check it at Vault; then the gateway exits 0 with
    a clean shutdown, nothing left running. Before, a revocation at Vault when the drain began kept the
    upstream's timeout: the drain gave up on it "before it answered" and the gateway exited without
    cleanup, the call still running."""

    REVOKE_LATENCY_S = 40.0

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["vault"]["timeout"] = "60s"

    def before_stop(self):
        """The sign call's latency is set already; the revocation's is longer than the deadline."""
        self.vault.control({"latency_ms": int(self.REVOKE_LATENCY_S * 1000), "match": "/revoke"})

    def test_certificate_recorded_after_the_drain_gave_up(self):
        # the records below tell the call cut short by the deadline from a drain that gave up on it there,
        # and from a revocation waited for (its 40 s) or cut by its timeout (60 s)
        serial = self.stop_during_call("unrevoked")
        self.assertEqual(len(self.vault.requests("/revoke")), 1)  # asked, never answered in time
        self.assertEqual([r["status"] for r in harness.audit_records(self.gw, "revoke_failed") if r["serial"] == serial],
                         ["not revoked: " + CUT_SHORT])
        self.assertEqual([r for r in harness.audit_records(self.gw, "revoked") if r["serial"] == serial], [])
        failed = [e for e in self.gw.log_lines() if e.get("event") == "revoke_failed" and e.get("serial") == serial]
        self.assertEqual([(e.get("level"), e.get("upstream"), e.get("reason")) for e in failed],
                         [("error", "vault", CUT_SHORT)], self.gw.stderr()[-3000:])
        # the revocation ended by the deadline: nothing runs past the drain, and the gateway cleans up
        stopped = [(e.get("level"), e.get("msg")) for e in self.gw.log_lines() if e.get("event") == "stopped"]
        self.assertEqual(stopped, [("info", "clean shutdown")], self.gw.stderr()[-3000:])


class VaultShutdownRevocationsOfThreeEngines(VaultShutdownRevocationPastDeadline):
    """As VaultShutdownRevocationPastDeadline with one request begun under each of three configurations
    (two reloads between them): the two retired engines and the running one each withdraw a certificate
    at the stop, and their withdrawals share one deadline (10 s), not one each one after the other (30 s,
    past STOP_TIMEOUT and near the unit's TimeoutStopSec). Each certificate is on record as not revoked."""

    LATENCY_S = 18.0  # the first sign call, begun before the reloads and SIGTERM, still waits when the drain ends

    def between_calls(self):
        status, body = harness.admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def test_certificate_recorded_after_the_drain_gave_up(self):
        serials = self.stop_during_calls("engine1", "engine2", "engine3")
        self.assertEqual(len(self.vault.requests("/revoke")), 3)  # each engine asked, none answered in time
        # a withdrawal asked before its engine's drain began is given up by the drain; one whose sign call
        # answered later is asked during the drain, its call cut short at the drain's deadline by its own
        # thread: which one depends on when each sign call comes back, and both say the same to an operator
        failed = [r["serial"] for r in harness.audit_records(self.gw, "revoke_failed")
                  if r["status"] in (GAVE_UP_ASKED, "not revoked: " + CUT_SHORT)]
        self.assertEqual(sorted(failed), sorted(serials))
        self.assertEqual(harness.audit_records(self.gw, "revoked"), [])

if __name__ == "__main__":
    harness.main()
