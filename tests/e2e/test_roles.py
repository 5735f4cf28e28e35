"""Can a client reach a role it is not entitled to? Attacked over the wire against a real gateway.

Three roles: "alpha" (path label a, profile pa, the default path) trusts and issues under the alpha CAs,
signers and subjects /O=alpha/..., and takes the demo PBM secret; "beta" (label b, profile pb) under CAs of
its own, and wants a TLS client certificate /O=cmpgw demo/CN=beta-tls*; "gamma" (label g, profile pg)
shares alpha's CAs and issuer, told apart by signer_subjects and allowed_subjects /O=gamma/... alone. The
attacker holds alpha's device certificate A (and alpha's RA certificate, and its PBM secret), or only
beta's TLS client certificate, or nothing. Each attempt at a certificate, a renewal or a revocation under
beta or gamma is asserted refused (the decoded CMP answer, its docs/errors.md row where one fits, or the
HTTP status) and to have changed nothing: no intent, issuance or revocation in the audit log, a victim's
certificate on no CRL of the local issuers, its open transaction still its own client's. Each has a twin
that is served. Each class is a gateway of its own, so that no class spends more than a share of the
failed-authentication budget of 127.0.0.1.
"""
import hashlib
import ssl
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key  # noqa: E402
from pyasn1.codec.der import decoder, encoder  # noqa: E402
from pyasn1_modules import rfc5280  # noqa: E402
from test_errors import (PROFILE, ROWS, RowAssertions, add_general_info, certconf, error_msg, load,  # noqa: E402
                         pollreq, profile_value, remac, resign, set_octets, without)

CMC_RA = "1.3.6.1.5.5.7.3.28"
A_SUBJECT = "/O=alpha/CN=a-dev"
B_SUBJECT = "/O=beta/CN=b-dev"
A_RA_SUBJECT = "/O=alpha/CN=alpha-ra"
B_TLS_SUBJECT = "/O=cmpgw demo/CN=beta-tls-1"
ALPHA_LABEL, BETA_LABEL, GAMMA_LABEL = ".well-known/cmp/p/a", ".well-known/cmp/p/b", ".well-known/cmp/p/g"


def make_ca(d, name, subject, issuer=None):
    """A CA certificate |name|.pem (and key): self-signed, or signed by |issuer| with pathLen 0."""
    key = harness.genkey(d / ("%s.key" % name))
    if issuer is None:
        harness.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "30",
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-addext", "subjectKeyIdentifier=hash", "-out", d / ("%s.pem" % name)])
        return d / ("%s.pem" % name)
    return make_leaf(d, name, subject, issuer, "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                     "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def make_leaf(d, name, subject, issuer, ext=None, eku="clientAuth"):
    """|name|.pem for |subject|, signed by the CA |issuer| (a name in |d|): a device's by default."""
    key = harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text(ext or ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,"
                                               "digitalSignature\nextendedKeyUsage=%s\nsubjectKeyIdentifier=hash\n"
                                               "authorityKeyIdentifier=keyid\n" % eku))
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / ("%s.pem" % issuer),
                 "-CAkey", d / ("%s.key" % issuer), "-days", "20", "-extfile", d / ("%s.ext" % name),
                 "-set_serial", "0x%s" % hashlib.sha256(name.encode()).hexdigest()[:16], "-out",
                 d / ("%s.pem" % name)])
    return d / ("%s.pem" % name)


def bundle(d, name, *parts):
    """|parts| (PEM files in |d|) in one file |name|: a certificate with the chain a client sends."""
    (d / name).write_text("".join((d / p).read_text() for p in parts))
    return d / name


class Roles(RowAssertions, harness.GatewayTestCase):
    """The configuration every class below attacks, and what they assert with."""

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        for side in ("alpha", "beta"):
            make_ca(d, "%s-root" % side, "/O=%s/CN=%s root CA" % (side, side))
            make_ca(d, "%s-issuing" % side, "/O=%s/CN=%s issuing CA" % (side, side), "%s-root" % side)
            (d / ("store-%s" % side)).mkdir()
            cfg["upstreams"]["up-" + side] = {"type": "local", "cert": "%s-issuing.pem" % side,
                                              "key": "%s-issuing.key" % side, "chain": "%s-root.pem" % side,
                                              "store": "store-%s" % side}
            cfg["trust"][side] = {"ca_file": "%s-root.pem" % side, "untrusted_file": "%s-issuing.pem" % side,
                                  "revocation": "none"}
        make_leaf(d, "a-dev", A_SUBJECT, "alpha-issuing")
        make_leaf(d, "a-ra", A_RA_SUBJECT, "alpha-issuing", eku=CMC_RA)
        make_leaf(d, "b-dev", B_SUBJECT, "beta-issuing")
        make_leaf(d, "b-tls", B_TLS_SUBJECT, "ca")  # the demo root: the listener's client_ca
        make_leaf(d, "g-dev", "/O=gamma/CN=g-dev", "alpha-issuing")
        base = {"key_usage": ["digitalSignature"], "ext_key_usage": ["clientAuth"], "implicit_confirm": True}
        cfg["roles"] = {
            "alpha": dict(base, upstream="up-alpha", trust=["alpha"], pbm=["demo-device"], authorization={
                "signer_subjects": ["/O=alpha/CN=*"], "allowed_subjects": ["/O=alpha/CN=*"],
                "ra_subjects": [A_RA_SUBJECT]}),
            "beta": dict(base, upstream="up-beta", trust=["beta"], authorization={
                "tls_client": "require", "tls_subjects": ["/O=cmpgw demo/CN=beta-tls*"],
                "signer_subjects": ["/O=beta/CN=*"], "allowed_subjects": ["/O=beta/CN=*"]}),
            "gamma": dict(base, upstream="up-alpha", trust=["alpha"], authorization={
                "signer_subjects": ["/O=gamma/CN=*"], "allowed_subjects": ["/O=gamma/CN=*"]}),
        }
        cfg["default_path_policy"] = "role:alpha"
        cfg["label_to_path_policy"] = {"a": "role:alpha", "b": "role:beta", "g": "role:gamma"}
        cfg["profiles"] = {"pa": "role:alpha", "pb": "role:beta", "pg": "role:gamma"}
        cfg["listeners"][0]["tls"]["http2"] = True

    # -- credentials ----------------------------------------------------------------------------

    def cred(self, name):
        """(certificate, key) of |name| in the work dir."""
        return self.gw.dir / ("%s.pem" % name), self.gw.dir / ("%s.key" % name)

    A_TLS = ("client.pem", "client.key")  # the demo client: any role but beta takes it
    B_TLS = ("b-tls.pem", "b-tls.key")

    # -- what happened --------------------------------------------------------------------------

    def ledger(self):
        """How many intents, issuances and revocations the audit log holds."""
        return tuple(len(harness.audit_records(self.gw, e)) for e in ("intent", "issued", "revoked"))

    def assert_nothing_done(self, before):
        self.assertEqual(self.ledger(), before)

    def crl_serials(self, upstream):
        """The serials on the CRL of the local issuer |upstream| (GET <prefix>/crl/<upstream>)."""
        r = self.gw.curl(path="/pki/crl/%s" % upstream, content_type=None)
        self.assertEqual(r.status, 200, r)
        return {e.serial_number for e in x509.load_der_x509_crl(r.body)}

    def assert_not_revoked(self, cert):
        """Neither the audit log nor the CRL of the issuer that signed |cert| has it revoked."""
        serial = int(harness.serial_hex(cert), 16)
        self.assertFalse([r for r in harness.audit_records(self.gw, "revoked") if int(r.get("serial", "0"), 16) == serial])
        issuer = "up-beta" if "beta" in harness.run(["openssl", "x509", "-in", cert, "-noout", "-issuer"]).stdout.decode() \
            else "up-alpha"
        self.assertNotIn(serial, self.crl_serials(issuer))

    def refused_cmp(self, res, fail_bits, *texts):
        """|res| (CmpResult) got nothing: its answer is a rejection (ip/cp/kup/rp/error) with one of
        |fail_bits| and statusStrings holding each of |texts|."""
        a = res.last
        self.assertIn(a.body_type, ("ip", "cp", "kup", "rp", "error"), a)
        self.assertEqual(a.status, 2, a)
        self.assertTrue(set(a.fail_info) & set(fail_bits), a)
        for t in texts:
            self.assertIn(t, " ".join(a.status_strings), a)
        self.assertIsNone(res.cert)
        self.assertNotEqual(res.returncode, 0)
        return a

    def ir(self, name, signer, path, tls=A_TLS, subject=None, extra=()):
        """`openssl cmp -cmd ir` for a fresh key, signed with |signer| (a name in the work dir)."""
        return self.gw.cmp("ir", name, auth=self.cred(signer), newkey=self.newkey(name), path=path, tls=tls,
                           subject=subject or "/O=alpha/CN=%s" % name, expect_cert=False,
                           extra=("-implicit_confirm",) + tuple(extra))

    def send(self, name, msg, path, tls=A_TLS, http="--http1.1"):
        f = self.gw.dir / ("%s.sent.der" % name)
        f.write_bytes(msg if isinstance(msg, bytes) else encoder.encode(msg))
        return self.gw.curl(data=f, path="/" + path.lstrip("/"), tls=tls, http=http)

    def key_of(self, name):
        """The key a request |name| of ir() or b_victim() had certified."""
        return self.gw.dir / ("%s.key" % name)

    def b_victim(self, name, extra=("-implicit_confirm",)):
        """A certificate of role beta, enrolled by its device over beta's TLS client: the CmpResult."""
        return self.gw.cmp("ir", name, auth=self.cred("b-dev"), newkey=self.newkey(name), path=BETA_LABEL,
                           tls=self.B_TLS, subject="/O=beta/CN=%s" % name, extra=extra)


class ForeignSigner(Roles):
    """A's signer against beta's and gamma's paths, labels and profiles."""

    def test_twins(self):
        """What the attempts below are twins of: A enrols on alpha; B's device, over beta's TLS client, on
        beta; gamma's device on gamma."""
        for path in (ALPHA_LABEL, "pki/cmp", "pki/roles/alpha/cmp"):
            with self.subTest(path=path):
                res = self.ir("a-twin-%d" % len(path), "a-dev", path)
                self.assertEqual(res.first.body_type, "ip", res.first)
                self.assertIsNotNone(res.cert)
        self.assertIsNotNone(self.b_victim("b-twin").cert)
        res = self.ir("g-twin", "g-dev", GAMMA_LABEL, subject="/O=gamma/CN=g-twin")
        self.assertIsNotNone(res.cert, res.answers)

    def test_beta_label_with_a_signer(self):
        """A's signer on beta's label and role paths, over beta's TLS client (which A might have stolen) and
        over its own: beta does not trust alpha's CA."""
        before = self.ledger()
        for i, (path, tls) in enumerate([(BETA_LABEL, self.B_TLS), ("pki/roles/beta/cmp", self.B_TLS),
                                         (BETA_LABEL + "/", self.B_TLS), (BETA_LABEL + "/initialization",
                                                                          self.B_TLS)]):
            with self.subTest(path=path):
                self.expect("untrusted_signer", self.ir("a-on-b%d" % i, "a-dev", path, tls=tls,
                                                        subject="/O=beta/CN=a-on-b%d" % i).last)
        # without beta's TLS client the TLS check may answer first; either way nothing is issued
        res = self.ir("a-on-b-own-tls", "a-dev", BETA_LABEL, subject="/O=beta/CN=a-on-b-own-tls")
        self.refused_cmp(res, ("badMessageCheck", "notAuthorized"))
        self.assert_nothing_done(before)

    def test_gamma_label_with_a_signer(self):
        """Gamma trusts alpha's CA: only signer_subjects keeps A out of it, on its label, its role path and by
        its profile on the default path."""
        before = self.ledger()
        for i, (path, extra) in enumerate([(GAMMA_LABEL, ()), ("pki/roles/gamma/cmp", ())]):
            with self.subTest(path=path):
                a = self.refused_cmp(self.ir("a-on-g%d" % i, "a-dev", path, subject="/O=gamma/CN=a-on-g%d" % i,
                                             extra=extra), ("notAuthorized",))
                self.expect("signer_subject", a)
        self.assert_nothing_done(before)

    def profiled(self, name, profile, signer="a-dev", subject=None):
        """A captured ir of |signer| naming certProfile |profile|, signed again."""
        d = self.gw.dir
        der = self.gw.make_request(name, auth=self.cred(signer), subject=subject or "/O=alpha/CN=%s" % name)
        return resign(add_general_info(load(der.read_bytes()), PROFILE, profile_value(profile)), d / ("%s.key" % signer))

    def test_profile_of_another_role(self):
        """certProfile pb (beta) or pg (gamma) on alpha's label or role path: refused before any signature;
        on the default path, the profile chooses its role, whose trust or signer_subjects refuses A."""
        before = self.ledger()
        for i, (profile, path) in enumerate([("pb", ALPHA_LABEL), ("pg", ALPHA_LABEL), ("pb", "pki/roles/alpha/cmp"),
                                             ("pg", "pki/roles/alpha/cmp"), ("pa", BETA_LABEL), ("pa", GAMMA_LABEL)]):
            with self.subTest(profile=profile, path=path):
                self.expect("profile_mismatch", self.send("prof%d" % i, self.profiled("prof%d" % i, profile), path,
                                                          tls=self.B_TLS if path == BETA_LABEL else self.A_TLS))
        self.expect("untrusted_signer", self.send("prof-b-default", self.profiled("prof-b-default", "pb",
                                                                                   subject="/O=beta/CN=x"),
                                                  "pki/cmp", tls=self.B_TLS))
        a = harness.decode_cmp(self.send("prof-g-default", self.profiled("prof-g-default", "pg",
                                                                         subject="/O=gamma/CN=x"), "pki/cmp").body)
        self.expect("signer_subject", a)
        self.assert_nothing_done(before)

    def test_profile_spellings(self):
        """Case, a trailing space, a look-alike letter (Cyrillic es), a profile with a NUL after a real name,
        and a real name second in the list: none selects beta; all are refused before any signature."""
        before = self.ledger()
        for i, profile in enumerate(["PB", "pb ", "p\u0431", "\u0440b", "pb\u0000", "pb\u0000x"]):
            with self.subTest(profile=repr(profile)):
                a = harness.decode_cmp(self.send("spell%d" % i, self.profiled("spell%d" % i, profile), "pki/cmp").body)
                self.assertEqual((a.body_type, a.status, a.fail_info), ("error", 2, ["badRequest"]), a)
        two = self.gw.make_request("spell-two", auth=self.cred("a-dev"), subject="/O=alpha/CN=spell-two")
        m = resign(add_general_info(load(two.read_bytes()), PROFILE, profile_value("pa", "pb")),
                   self.gw.dir / "a-dev.key")
        a = harness.decode_cmp(self.send("spell-two", m, BETA_LABEL, tls=self.B_TLS).body)
        self.expect("profile_mismatch", a)  # the first name counts: pa is not beta's
        self.assert_nothing_done(before)

    def test_another_roles_subject_on_alpha(self):
        """A on its own path asks for the subject gamma admits its signers by (gamma trusts alpha's CA), in an
        ir, a cr and a p10cr's CSR: alpha's allowed_subjects refuses each before the CA is asked."""
        d = self.gw.dir
        before = self.ledger()
        for cmd in ("ir", "cr"):
            with self.subTest(cmd=cmd):
                res = self.gw.cmp(cmd, "g-subj-" + cmd, auth=self.cred("a-dev"), newkey=self.newkey("g-subj-" + cmd),
                                  path=ALPHA_LABEL, subject="/O=gamma/CN=g-subj", expect_cert=False)
                self.expect("subject_not_allowed", res.last)
        key = self.newkey("g-subj-p10")
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=gamma/CN=g-subj", "-out", d / "g-subj.csr"])
        res = self.gw.cmp("p10cr", "g-subj-p10", auth=self.cred("a-dev"), path=ALPHA_LABEL,
                          extra=["-csr", d / "g-subj.csr"], expect_cert=False)
        self.expect("subject_not_allowed", res.last)
        self.assert_nothing_done(before)

    def test_ra_verified_for_a_key_of_beta(self):
        """Alpha's RA asks, on alpha's path and by beta's profile on the default path, for a certificate of the
        public key of beta's device, its proof of possession raVerified (RFC 4211 §4: the RA checked it): no
        client, an RA included, may say so, and without it nobody proves the key."""
        d = self.gw.dir
        spki = load_pem_public_key(harness.pubkey_pem_of_cert(d / "b-dev.pem").encode())
        spki, _ = decoder.decode(spki.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
                                 asn1Spec=rfc5280.SubjectPublicKeyInfo())
        before = self.ledger()
        for i, (path, profile, tls, row) in enumerate([(ALPHA_LABEL, None, self.A_TLS, "bad_pop"),
                                                       ("pki/cmp", "pb", self.B_TLS, "untrusted_signer")]):
            with self.subTest(path=path, profile=profile):
                m = load(self.gw.make_request("raverified%d" % i, auth=self.cred("a-ra"),
                                              subject="/O=alpha/CN=raverified%d" % i).read_bytes())
                crm = m["body"]["ir"][0]
                crm["certReq"]["certTemplate"]["publicKey"]["subjectPublicKey"] = spki["subjectPublicKey"]
                popo = crm["pop"]  # rfc2511 names it so
                popo["raVerified"] = popo.componentType["raVerified"].asn1Object.clone("")
                if profile:
                    add_general_info(m, PROFILE, profile_value(profile))
                self.expect(row, self.send("raverified%d" % i, resign(m, d / "a-ra.key"), path, tls=tls))
        self.assert_nothing_done(before)

    def test_pbm_of_alpha_elsewhere(self):
        """Alpha's PBM secret (demo-device) on beta's and gamma's paths, and naming their profiles on the
        default path: a reference the role does not list is answered as a wrong secret. Twin: alpha's path."""
        before = self.ledger()
        for i, (path, profile, tls) in enumerate([(BETA_LABEL, None, self.B_TLS), (GAMMA_LABEL, None, self.A_TLS),
                                                  ("pki/cmp", "pb", self.B_TLS), ("pki/cmp", "pg", self.A_TLS)]):
            with self.subTest(path=path, profile=profile):
                m = load(self.gw.make_request("pbm%d" % i, auth="pbm", subject="/O=gamma/CN=pbm%d" % i).read_bytes())
                if profile:
                    add_general_info(m, PROFILE, profile_value(profile))
                    m = remac(m, self.gw.pbm_secret.encode())
                self.expect("pbm_failed", self.send("pbm%d" % i, m, path, tls=tls))
        self.assert_nothing_done(before)
        res = self.gw.cmp("ir", "pbm-twin", auth="pbm", newkey=self.newkey("pbm-twin"), path=ALPHA_LABEL,
                          subject="/O=alpha/CN=pbm-twin", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)

    def test_tls_of_beta_signer_of_alpha(self):
        """Beta's TLS client certificate with A's CMP signer: on beta's path the signer is refused; on
        alpha's path it is served as alpha (the TLS certificate lends no role), under alpha's subjects."""
        before = self.ledger()
        self.expect("untrusted_signer", self.ir("btls-asig", "a-dev", BETA_LABEL, tls=self.B_TLS,
                                                subject="/O=beta/CN=btls-asig").last)
        self.assert_nothing_done(before)
        res = self.ir("btls-asig-alpha", "a-dev", ALPHA_LABEL, tls=self.B_TLS, subject="/O=beta/CN=btls-asig")
        self.expect("subject_not_allowed", res.last)


class NoCredential(Roles):
    """A client with beta's TLS client certificate only, and one with nothing at all."""

    def self_signed(self, name, subject):
        d = self.gw.dir
        key = harness.genkey(d / ("%s.key" % name))
        harness.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "2",
                     "-addext", "keyUsage=critical,digitalSignature", "-out", d / ("%s.pem" % name)])
        return name

    def test_tls_only(self):
        before = self.ledger()
        fake = self.self_signed("fake-b", B_SUBJECT)
        self.expect("untrusted_signer", self.ir("tlsonly-self", fake, BETA_LABEL, tls=self.B_TLS,
                                                subject="/O=beta/CN=tlsonly").last)
        res = self.gw.cmp("ir", "tlsonly-pbm", auth="pbm", newkey=self.newkey("tlsonly-pbm"), path=BETA_LABEL,
                          tls=self.B_TLS, subject="/O=beta/CN=tlsonly-pbm", expect_cert=False)
        self.expect("pbm_failed", res.last)  # demo-device is no PBM reference of beta's
        self.assert_nothing_done(before)

    def test_nothing(self):
        before = self.ledger()
        fake = self.self_signed("fake-b2", B_SUBJECT)
        res = self.gw.cmp("ir", "nothing", auth=self.cred(fake), newkey=self.newkey("nothing"), path=BETA_LABEL,
                          tls=(None, None), subject="/O=beta/CN=nothing", expect_cert=False)
        self.refused_cmp(res, ("badMessageCheck", "notAuthorized"))
        # beta's own device without a TLS client certificate: the twin the TLS requirement refuses
        res = self.gw.cmp("ir", "nothing-b", auth=self.cred("b-dev"), newkey=self.newkey("nothing-b"),
                          path=BETA_LABEL, tls=(None, None), subject="/O=beta/CN=nothing-b", expect_cert=False)
        self.expect("tls_required", res.last)
        # nor over the TLS client certificate of another role
        res = self.gw.cmp("ir", "nothing-b-tls", auth=self.cred("b-dev"), newkey=self.newkey("nothing-b-tls"),
                          path=BETA_LABEL, tls=self.A_TLS, subject="/O=beta/CN=nothing-b-tls", expect_cert=False)
        self.expect("tls_subject", res.last)
        # without any TLS client certificate, on every role's path: a self-made signer, and no protection
        for i, path in enumerate([ALPHA_LABEL, GAMMA_LABEL, "pki/cmp", BETA_LABEL]):
            with self.subTest(path=path):
                subject = "/O=%s/CN=nothing%d" % ("gamma" if path == GAMMA_LABEL else "alpha", i)
                fake = self.self_signed("fake-any%d" % i, subject)
                res = self.gw.cmp("ir", "nothing-any%d" % i, auth=self.cred(fake), newkey=self.newkey("nothing-any%d" % i),
                                  path=path, tls=(None, None), subject=subject, expect_cert=False)
                if path == BETA_LABEL:
                    self.refused_cmp(res, ("badMessageCheck", "notAuthorized"))
                else:
                    self.expect("untrusted_signer", res.last)
                m = without(load(res.req_files[0].read_bytes()), "protection", "extraCerts")
                m["header"] = without(m["header"], "protectionAlg")
                self.expect("unprotected", self.send("unprotected%d" % i, m, path, tls=(None, None)))
        self.assert_nothing_done(before)


    def test_beta_holder_without_its_tls_client(self):
        """A stolen key of a beta certificate without beta's TLS client certificate: kur, rr and genm of its
        holder, over none and over another role's, are refused by beta's TLS requirement."""
        victim = self.b_victim("tlsless")
        signer = (victim.cert, self.key_of("tlsless"))
        before = self.ledger()
        for tls, row in (((None, None), "tls_required"), (self.A_TLS, "tls_subject")):
            for cmd, extra in (("kur", ["-oldcert", victim.cert]), ("rr", ["-oldcert", victim.cert, "-revreason", "1"]),
                               ("genm", ["-infotype", "caCerts"])):
                with self.subTest(cmd=cmd, tls=tls[0]):
                    name = "tlsless-%s-%s" % (cmd, row)
                    res = self.gw.cmp(cmd, name, auth=signer, newkey=self.newkey(name), path=BETA_LABEL, tls=tls,
                                      extra=extra, expect_cert=False)
                    if cmd == "kur":
                        self.expect(row, res.last)
                        continue
                    # the row's answer is an ip/cp/kup; an rp or an error says the same
                    self.assertEqual((res.last.status, res.last.fail_info), (2, ["notAuthorized"]), res.last)
                    self.assertRegex(res.last.status_strings[0], ROWS[row]["regex"])
        self.assert_nothing_done(before)
        self.assert_not_revoked(victim.cert)


class Paths(Roles):
    """Spellings of beta's path that a router might read as beta's, sent by A: each an HTTP 404 before any
    CMP (nothing is decoded, nobody authenticated), or, where it is beta's path, beta's refusal."""

    def test_label_spellings(self):
        before = self.ledger()
        der = self.gw.make_request("spell", auth=self.cred("a-dev"), subject="/O=beta/CN=spell")
        for path in ["/.well-known/cmp/p/B", "/.well-known/cmp/p/%62", "/.well-known/cmp/p/a/../b",
                     "/.well-known/cmp/p/./b", "/.well-known/cmp/p/b%00", "/.well-known/cmp/p/b%2f",
                     "/.well-known/cmp/p/\uff42", "/.well-known/cmp/p/b//", "/.well-known/cmp/p//b",
                     "/.well-known/cmp/p/b;x", "/pki/roles/BETA/cmp", "/pki/roles/beta%2fcmp",
                     "/pki/roles/alpha/../beta/cmp", "/pki/roles/beta/cmp/nested/"]:
            with self.subTest(path=path):
                r = self.gw.curl("--path-as-is", data=der, path=path, tls=self.B_TLS)
                if path.endswith("/nested/"):  # beta's path with an operation label: beta's refusal
                    self.expect("untrusted_signer", r)
                else:
                    self.assertEqual(r.status, 404, r)
        self.assert_nothing_done(before)

    def test_nested(self):
        """A nested message (RFC 9810 §5.1.3.4: an RA's wrapping) carrying A's ir, sent to beta by alpha's RA:
        no nested message is taken."""
        d = self.gw.dir
        inner = load(self.gw.make_request("nested-inner", auth=self.cred("a-dev"), subject="/O=beta/CN=n").read_bytes())
        outer = load(self.gw.make_request("nested-outer", auth=self.cred("a-ra"), subject="/O=alpha/CN=n").read_bytes())
        body = outer["body"].clone()
        nested = body.componentType["nested"].asn1Object.clone()
        nested.append(inner)
        body["nested"] = nested
        outer["body"] = body
        before = self.ledger()
        for path in (BETA_LABEL, ALPHA_LABEL + "/nested"):
            with self.subTest(path=path):
                a = self.send("nested-%d" % len(path), resign(outer, d / "a-ra.key"), path, tls=self.B_TLS)
                self.expect("not_a_request", a)
        self.assert_nothing_done(before)


class Renewal(Roles):
    """kur of a certificate of another role, and a kur of A's own certificate into another role's names."""

    def kur(self, name, signer, old, path, tls=Roles.A_TLS, subject=None):
        extra = ["-oldcert", old]
        if subject:
            extra += ["-subject", subject]
        return self.gw.cmp("kur", name, auth=signer, newkey=self.newkey(name), path=path, tls=tls, extra=extra,
                           expect_cert=False)

    def test_kur_of_a_beta_certificate(self):
        victim = self.b_victim("kur-victim").cert
        a = self.cred("a-dev")
        before = self.ledger()
        self.expect("kur_other_cert", self.kur("kur-b-alpha", a, victim, ALPHA_LABEL).last)
        self.expect("untrusted_signer", self.kur("kur-b-beta", a, victim, BETA_LABEL, tls=self.B_TLS).last)
        self.expect("untrusted_signer", self.kur("kur-b-beta-role", a, victim, "pki/roles/beta/cmp",
                                                 tls=self.B_TLS).last)
        self.assert_nothing_done(before)
        # the twin: beta's holder renews it
        res = self.gw.cmp("kur", "kur-b-own", auth=(victim, self.key_of("kur-victim")),
                          newkey=self.newkey("kur-b-own"), path=BETA_LABEL, tls=self.B_TLS, extra=["-oldcert", victim])
        self.assertIsNotNone(res.cert)

    def test_kur_into_another_roles_names(self):
        """A's own certificate of alpha, renewed with gamma's or beta's subject (gamma trusts alpha's CA and
        admits signers by subject alone): refused by alpha's allowed_subjects, and on gamma's path by its
        signer_subjects."""
        own = self.ir("kur-own", "a-dev", ALPHA_LABEL, subject="/O=alpha/CN=kur-own")
        self.assertIsNotNone(own.cert, own.answers)
        signer = (own.cert, self.key_of("kur-own"))
        before = self.ledger()
        for i, subject in enumerate(["/O=gamma/CN=kur-own", "/O=beta/CN=kur-own"]):
            with self.subTest(subject=subject):
                self.expect("subject_not_allowed", self.kur("kur-into%d" % i, signer, own.cert, ALPHA_LABEL,
                                                            subject=subject).last)
        self.expect("signer_subject", self.kur("kur-on-gamma", signer, own.cert, GAMMA_LABEL,
                                               subject="/O=gamma/CN=kur-own").last)
        self.assert_nothing_done(before)


class Revocation(Roles):
    """rr of a certificate of beta by A and by alpha's RA."""

    def rr(self, name, signer, victim, path, tls=Roles.A_TLS):
        return self.gw.cmp("rr", name, auth=self.cred(signer), path=path, tls=tls,
                           extra=["-oldcert", victim, "-revreason", "1"], expect_cert=False)

    def test_rr_of_a_beta_certificate(self):
        victim = self.b_victim("rr-victim").cert
        before = self.ledger()
        for i, (signer, path, tls, fails) in enumerate([
                ("a-dev", ALPHA_LABEL, self.A_TLS, ("badCertId", "notAuthorized")),
                ("a-ra", ALPHA_LABEL, self.A_TLS, ("badCertId", "notAuthorized")),
                ("a-ra", "pki/cmp/revocation", self.A_TLS, ("badCertId", "notAuthorized")),
                ("a-dev", BETA_LABEL, self.B_TLS, ("badMessageCheck",)),
                ("a-ra", BETA_LABEL, self.B_TLS, ("badMessageCheck",)),
                ("a-ra", "pki/roles/beta/cmp/revocation", self.B_TLS, ("badMessageCheck",))]):
            with self.subTest(signer=signer, path=path):
                res = self.rr("rr-b%d" % i, signer, victim, path, tls)
                self.refused_cmp(res, fails)
        self.assert_nothing_done(before)
        self.assert_not_revoked(victim)

    def test_rr_of_a_gamma_certificate_by_alphas_ra(self):
        """Gamma's certificates come from alpha's upstream, and alpha has no name patterns: only
        allowed_subjects tells the roles' certificates apart, as it tells their signers apart. Alpha's RA may
        not revoke one of gamma's; once it did, since only an RA's names were held to the role."""
        victim = self.ir("rr-g-victim", "g-dev", GAMMA_LABEL, subject="/O=gamma/CN=rr-g-victim")
        self.assertIsNotNone(victim.cert, victim.answers)
        before = self.ledger()
        res = self.rr("rr-g-by-alpha-ra", "a-ra", victim.cert, ALPHA_LABEL)
        text = ("an RA of role alpha may revoke only certificates of its role: the certificate's subject "
                "/O=gamma/CN=rr-g-victim is not allowed on role alpha (allowed: /O=alpha/CN=*)")
        self.assertEqual(self.refused_cmp(res, ("notAuthorized",)).status_strings, [text])
        self.assertIn(("alpha", A_RA_SUBJECT, text), self.gw.denials("rr_ra_outside_role"))
        self.assert_nothing_done(before)
        self.assert_not_revoked(victim.cert)

    def test_rr_of_a_gamma_certificate_on_gammas_path(self):
        """Gamma trusts alpha's CA: A and alpha's RA are trusted signers there, and gamma's certificates come
        from their upstream. On gamma's path, its label and by its profile, gamma's signer_subjects refuses
        them both, the RA's rr as any request."""
        victim = self.ir("rr-g-path", "g-dev", GAMMA_LABEL, subject="/O=gamma/CN=rr-g-path")
        self.assertIsNotNone(victim.cert, victim.answers)
        before = self.ledger()
        for i, (signer, path) in enumerate([("a-dev", GAMMA_LABEL), ("a-ra", GAMMA_LABEL),
                                            ("a-ra", "pki/roles/gamma/cmp/revocation")]):
            with self.subTest(signer=signer, path=path):
                a = self.refused_cmp(self.rr("rr-g-path%d" % i, signer, victim.cert, path), ("notAuthorized",))
                self.assertRegex(a.status_strings[0], ROWS["signer_subject"]["regex"])
        self.assert_nothing_done(before)
        self.assert_not_revoked(victim.cert)

    def test_rr_twins(self):
        """Alpha's RA revokes a certificate of alpha; beta's holder its own."""
        own = self.ir("rr-alpha-own", "a-dev", ALPHA_LABEL, subject="/O=alpha/CN=rr-alpha-own")
        res = self.rr("rr-alpha-ra", "a-ra", own.cert, ALPHA_LABEL)
        self.assertEqual((res.last.body_type, res.last.status), ("rp", 0), res.last)
        self.assertIn(int(harness.serial_hex(own.cert), 16), self.crl_serials("up-alpha"))  # what the others read
        victim = self.b_victim("rr-b-own")
        res = self.gw.cmp("rr", "rr-b-holder", auth=(victim.cert, self.key_of("rr-b-own")),
                          path=BETA_LABEL, tls=self.B_TLS, extra=["-oldcert", victim.cert], expect_cert=False)
        self.assertEqual((res.last.body_type, res.last.status), ("rp", 0), res.last)


class Transactions(Roles):
    """certConf, pollReq and error messages of A in an open transaction of beta's device."""

    def open_b(self, name):
        """An ir of beta's device answered with a certificate it has not confirmed: (ir, ip, cert DER, pem)."""
        res = self.b_victim(name, extra=("-disable_confirm",))
        self.assertFalse(res.first.implicit_confirm(), res.first)
        return res.req_files[0].read_bytes(), res.first, ssl.PEM_cert_to_DER_cert(res.cert.read_text()), res.cert

    def a_sender(self):
        der = self.gw.make_request("a-sender", auth=self.cred("a-dev"), subject="/O=alpha/CN=a-sender")
        return load(der.read_bytes())["header"]["sender"]

    def test_foreign_messages_in_a_beta_transaction(self):
        ir, ip, cert, pem = self.open_b("txn-victim")
        digest = hashlib.sha256(cert).digest()
        a_key, a_name = self.gw.dir / "a-dev.key", self.a_sender()

        def as_a(msg):
            msg["header"]["sender"] = a_name
            return resign(msg, a_key)

        before = self.ledger()
        attempts = [
            # A as itself, on alpha's path and on beta's
            ("conf-as-a-alpha", certconf(load(ir), ip, digest, a_key, sender=a_name), ALPHA_LABEL, self.A_TLS,
             "other_sender"),
            ("conf-as-a-beta", certconf(load(ir), ip, digest, a_key, sender=a_name), BETA_LABEL, self.B_TLS,
             "other_sender"),
            # A under B's name, over beta's TLS client (stolen) and over its own
            ("conf-as-b", certconf(load(ir), ip, digest, a_key), BETA_LABEL, self.B_TLS,
             "pinned_signer"),
            ("conf-as-b-own-tls", certconf(load(ir), ip, digest, a_key), BETA_LABEL, self.A_TLS,
             "other_tls_client"),
            ("conf-as-b-alpha", certconf(load(ir), ip, digest, a_key), ALPHA_LABEL, self.A_TLS, "other_tls_client"),
            # a certConf that rejects the certificate (the client gives it up: it is revoked)
            ("reject-as-b", certconf(load(ir), ip, digest, a_key, status=2), BETA_LABEL, self.B_TLS,
             "pinned_signer"),
            ("reject-as-a", certconf(load(ir), ip, digest, a_key, sender=a_name, status=2), ALPHA_LABEL,
             self.A_TLS, "other_sender"),
            ("poll-as-b", pollreq(load(ir), a_key), BETA_LABEL, self.B_TLS, "pinned_signer"),
            ("error-as-b", error_msg(load(ir), a_key), BETA_LABEL, self.B_TLS, "pinned_signer"),
            ("poll-as-a", as_a(pollreq(load(ir), a_key)), ALPHA_LABEL, self.A_TLS, "other_sender"),
            ("error-as-a", as_a(error_msg(load(ir), a_key)), ALPHA_LABEL, self.A_TLS, "other_sender"),
        ]
        for name, msg, path, tls, row in attempts:
            with self.subTest(attempt=name):
                self.expect(row, self.send(name, msg, path, tls=tls))
        # a request of A's own that takes the transactionID: on alpha's path and on beta's
        for i, (path, tls, row) in enumerate([(ALPHA_LABEL, self.A_TLS, "tid_in_use"),
                                              (BETA_LABEL, self.B_TLS, "untrusted_signer")]):
            with self.subTest(attempt="ir-with-its-tid", path=path):
                m = load(self.gw.make_request("tid-take%d" % i, auth=self.cred("a-dev"),
                                              subject="/O=alpha/CN=tid-take%d" % i).read_bytes())
                m["header"]["transactionID"] = load(ir)["header"]["transactionID"]
                self.expect(row, self.send("tid-take%d" % i, resign(m, a_key), path, tls=tls))
        self.assert_nothing_done(before)
        self.assert_not_revoked(pem)
        # the transaction is still its client's: beta's device confirms it
        own = certconf(load(ir), ip, digest, self.gw.dir / "b-dev.key")
        a = harness.decode_cmp(self.send("conf-own", own, BETA_LABEL, tls=self.B_TLS).body)
        self.assertEqual(a.body_type, "pkiconf", a)
        self.assert_not_revoked(pem)


class Polling(Roles):
    """A's pollReq in a transaction of beta's device that waits for its certificate (beta's CA answers after
    2 s, beta polls after 300 ms): refused, and the certificate is its client's when it polls."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["up-beta"]["delay"] = "2s"
        cfg["roles"]["beta"]["poll_after"] = "300ms"

    def test_foreign_poll_of_a_waiting_beta_request(self):
        d = self.gw.dir
        ir = self.gw.make_request("wait-b", auth=self.cred("b-dev"), subject="/O=beta/CN=wait-b").read_bytes()
        first = harness.decode_cmp(self.send("wait-b", ir, BETA_LABEL, tls=self.B_TLS).body)
        self.assertEqual((first.body_type, first.status), ("ip", 3), first)  # waiting
        a_key = d / "a-dev.key"
        a_name = load(self.gw.make_request("wait-a", auth=self.cred("a-dev"),
                                           subject="/O=alpha/CN=wait-a").read_bytes())["header"]["sender"]

        def poll(key, sender=None, recip=None):
            m = pollreq(load(ir), key)
            if sender is not None:
                m["header"]["sender"] = sender
            if recip is not None:
                set_octets(m["header"], "recipNonce", recip)
            return resign(m, key)

        recip = first.header["senderNonce"].asOctets()
        # the certificate is there (on record before any pollReq may see it): a pollReq that passed would
        # take it. A fixed 2.5 s wait for the 2 s call left a loaded machine a pollReq to a call still running.
        issued = harness.settled(lambda: harness.audit_records(self.gw, "issued", "wait-b"), len)
        self.assertEqual(len(issued), 1, self.gw.stderr()[-3000:])
        for name, msg, path, tls, row in [
                ("wait-as-b", poll(a_key, recip=recip), BETA_LABEL, self.B_TLS, "pinned_signer"),
                ("wait-as-b-own-tls", poll(a_key, recip=recip), BETA_LABEL, self.A_TLS, "other_tls_client"),
                ("wait-as-a", poll(a_key, a_name, recip), ALPHA_LABEL, self.A_TLS, "other_sender"),
                ("wait-as-a-beta", poll(a_key, a_name, recip), BETA_LABEL, self.B_TLS, "other_sender")]:
            with self.subTest(attempt=name):
                self.expect(row, self.send(name, msg, path, tls=tls))
        self.assertEqual(harness.audit_records(self.gw, "revoked"), [])
        # beta's device polls and takes its certificate
        for i in range(40):
            a = harness.decode_cmp(self.send("wait-own%d" % i, poll(d / "b-dev.key", recip=recip), BETA_LABEL,
                                             tls=self.B_TLS).body)
            if a.body_type != "pollRep":
                break
            recip = a.header["senderNonce"].asOctets()
            time.sleep(0.25)
        self.assertEqual(a.body_type, "ip", a)
        self.assertIn(a.status, (0, 1), a)
        self.assertEqual(harness.audit_records(self.gw, "revoked"), [])


class Http2(Roles):
    """Streams of two roles on one HTTP/2 connection (beta's TLS client): each stream is judged on its own."""

    def test_streams_of_two_roles(self):
        d = self.gw.dir
        own = self.gw.make_request("h2-alpha", auth=self.cred("a-dev"), subject="/O=alpha/CN=h2-alpha")
        cross = self.gw.make_request("h2-beta", auth=self.cred("a-dev"), subject="/O=beta/CN=h2-beta")
        before = self.ledger()
        common = ["--http2", "--cacert", d / "ca.pem", "--cert", d / "b-tls.pem", "--key", d / "b-tls.key",
                  "-H", "Content-Type: application/pkixcmp", "-w", "%{http_version} %{num_connects}\\n"]
        argv = ["curl", "-sS", "--parallel", "--max-time", str(harness.CLIENT_TIMEOUT)]
        for i, (der, path) in enumerate([(cross, BETA_LABEL), (own, ALPHA_LABEL), (cross, "pki/roles/beta/cmp")]):
            if i:
                argv.append("--next")
            argv += common + ["--data-binary", "@%s" % der, "-o", d / ("h2-%d.der" % i),
                              self.gw.url("/" + path)]
        p = harness.run(argv, timeout=harness.CLIENT_TIMEOUT + 5)
        lines = p.stdout.decode().split()
        self.assertEqual(lines[0::2], ["2", "2", "2"], lines)
        self.assertEqual(sum(int(n) for n in lines[1::2]), 1, lines)  # one connection
        answers = [harness.decode_cmp(d / ("h2-%d.der" % i)) for i in range(3)]
        self.expect("untrusted_signer", answers[0])
        self.expect("untrusted_signer", answers[2])
        # alpha's own request: a certificate of alpha (the stream's path), for alpha's subject
        self.assertEqual(answers[1].body_type, "ip", answers[1])
        self.assertIn(answers[1].status, (0, 1), answers[1])  # granted (with mods: the keyUsage planned)
        after = self.ledger()
        self.assertEqual(after[1] - before[1], 1)
        issued = harness.audit_records(self.gw, "issued")[-1]
        self.assertEqual(issued.get("role"), "alpha", issued)


if __name__ == "__main__":
    harness.main()
