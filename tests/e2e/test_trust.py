"""The trust boundary, attacked as a client holding one trusted certificate would (docs/security.md).

Forged signer identity: the attacker A (the demo client, trusted on the route) signs with a self-made
certificate X that carries A's subject, A's key and A's SKID, but the issuer and serial of another
device's certificate V, or the id-kp-cmcRA usage. OpenSSL accepts the message because of A (sent
beside X in extraCerts, or a trust anchor itself); the identity every decision uses must still be A.
Each case asserts the refusal decoded from the answer and that nothing happened to V.
Also: more certificates naming the sender than the cap, and two valid ones that both verify; a client
with no trusted key that signs as a CA of the trust is told no more than one the trust knows nothing of.

Revoked credentials: a certificate revoked through cmpgw (keyCompromise) no longer authenticates an ir,
p10cr, rr, genm or certConf, nor as the TLS client certificate; a certificate of the Vault-API test
server is checked against its issuer's CRL (the default issuer's, or that of the issuer a route's or its
Vault role's issuer_ref names, with no cert/<serial> per request; one that issuer did not sign counts
for nothing); a CRL past nextUpdate plus the grace fails closed.
"""
import datetime
import hashlib
import ssl
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402
from pyasn1.codec.der import encoder  # noqa: E402
from test_errors import RowAssertions, certconf, load  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier  # noqa: E402

CMC_RA = ObjectIdentifier("1.3.6.1.5.5.7.3.28")
CLIENT_SUBJECT = "/O=cmpgw demo/CN=demo-client"
ANCHOR_SUBJECT = "/O=cmpgw demo/CN=anchored-device"
ROOT_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo root CA"  # the demo trust entry's anchor
ISSUING_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo issuing CA"  # and the intermediate it holds
ALLOWED_SERIAL = 0x7A11CE  # the allow-listed device V of the "fleet" role
TEXT_RR = "only the holder of a certificate (signing the rr with it) or an RA of role default may revoke it"
TEXT_KUR = "key update must be signed with the certificate it updates; oldCertID names another certificate"
TEXT_KUR_NOT_ISSUED = ("key update renews a certificate a CA of this route issued, and %s's was not: enrol with "
                       "it instead (ir, cr or p10cr)")
TEXT_REVOKED = "certificate (serial %s) is revoked; authenticate with a valid one"


def load_cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_key(path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def forge(path, signer_cert, signer_key, issuer=None, serial=None, ekus=(), skid=True):
    """X: |signer_cert|'s subject, key and SKID, with |issuer| and |serial| of another certificate."""
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(signer_cert.subject)
         .issuer_name(issuer if issuer is not None else signer_cert.issuer)
         .public_key(signer_cert.public_key())
         .serial_number(serial if serial is not None else x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True))
    if ekus:
        b = b.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    if skid:
        b = b.add_extension(signer_cert.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER).value, critical=False)
    cert = b.sign(signer_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def cert_hash(path):
    """A certificate as the log names it beside its subject: "sha256:" and the hash of its DER in hex."""
    return "sha256:" + hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


def make_anchor(d):
    """A self-signed device certificate that a trust entry lists as its own anchor."""
    harness.genkey(d / "anchor.key")
    harness.run(["openssl", "req", "-new", "-key", d / "anchor.key", "-subj", ANCHOR_SUBJECT, "-out",
                 d / "anchor.csr"])
    (d / "anchor.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "subjectKeyIdentifier=hash\n")
    harness.run(["openssl", "x509", "-req", "-in", d / "anchor.csr", "-signkey", d / "anchor.key", "-days", "30",
                 "-extfile", d / "anchor.ext", "-out", d / "anchor.pem"])


def make_allowed_device(d):
    """V of the allow-list: a device certificate of the demo issuing CA with a known serial."""
    harness.genkey(d / "allowed.key")
    harness.run(["openssl", "req", "-new", "-key", d / "allowed.key", "-subj", "/O=vendor/CN=allowed-device",
                 "-out", d / "allowed.csr"])
    (d / "allowed.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                   "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    harness.run(["openssl", "x509", "-req", "-in", d / "allowed.csr", "-CA", d / "issuing.pem", "-CAkey",
                 d / "issuing.key", "-days", "30", "-extfile", d / "allowed.ext", "-set_serial",
                 hex(ALLOWED_SERIAL), "-out", d / "allowed.pem"])


def audit(gw, event):
    return [r for r in harness.json_lines(gw.dir / "audit.log") if r.get("event") == event]


class ForgedSigner(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        harness.keep_store(cfg, gw)
        make_anchor(d)
        make_allowed_device(d)
        (d / "allowlist.txt").write_text("serial:%x\n" % ALLOWED_SERIAL)
        cfg["trust"]["anchored"] = {"ca_file": "anchor.pem", "revocation": "none"}
        role = cfg["roles"]["default"]
        role["trust"] = ["demo", "anchored"]
        # the demo client's subject is an RA subject, but its certificate lacks id-kp-cmcRA
        role["authorization"] = {"ra_subjects": [CLIENT_SUBJECT]}
        fleet = dict(role, trust=["demo"], device_allowlist="allowlist.txt")
        fleet.pop("authorization")
        cfg["roles"]["fleet"] = fleet

    # -- helpers --------------------------------------------------------------------------------

    def attacker(self):
        d = self.gw.dir
        return load_cert(d / "client.pem"), load_key(d / "client.key")

    def assert_not_revoked(self, cert):
        serial = load_cert(cert).serial_number
        self.assertFalse([r for r in audit(self.gw, "revoked") if int(r.get("serial", "0"), 16) == serial])

    def rr(self, name, victim, cert, key, extracerts=None):
        extra = ["-oldcert", victim, "-revreason", "1"]
        if extracerts:
            extra += ["-extracerts", extracerts]
        return self.gw.cmp("rr", name, auth=(cert, key), extra=extra, expect_cert=False)

    # -- forged holder: rr ----------------------------------------------------------------------

    def test_rr_forged_holder_with_real_cert_in_extracerts(self):
        victim, _ = self.enrol("rr-victim")
        a_cert, a_key = self.attacker()
        v = load_cert(victim)
        x = forge(self.gw.dir / "x-rr.pem", a_cert, a_key, issuer=v.issuer, serial=v.serial_number)
        res = self.rr("rr-forged", victim, x, self.gw.dir / "client.key", extracerts=self.gw.dir / "client.pem")
        self.assert_cmp_error(res.first, ("rp",), "notAuthorized", TEXT_RR)
        self.assert_not_revoked(victim)

    def test_rr_forged_holder_signer_is_trust_anchor(self):
        victim, _ = self.enrol("rr-victim2")
        d = self.gw.dir
        v = load_cert(victim)
        x = forge(d / "x-anchor.pem", load_cert(d / "anchor.pem"), load_key(d / "anchor.key"), issuer=v.issuer,
                  serial=v.serial_number)
        res = self.rr("rr-anchor", victim, x, d / "anchor.key")  # X alone: A is in the trust store
        self.assert_cmp_error(res.first, ("rp",), "notAuthorized", TEXT_RR)
        self.assert_not_revoked(victim)

    def test_rr_anchor_holder_of_itself_still_works(self):
        """Control: the holder itself still revokes its certificate."""
        victim, vkey = self.enrol("rr-own")
        res = self.rr("rr-own-rr", victim, victim, vkey)
        self.assertEqual(res.first.body_type, "rp")
        self.assertEqual(res.first.status, 0, res.first)

    # -- forged RA ------------------------------------------------------------------------------

    def test_rr_forged_ra_usage(self):
        victim, _ = self.enrol("ra-victim")
        a_cert, a_key = self.attacker()
        x = forge(self.gw.dir / "x-ra.pem", a_cert, a_key, ekus=(CMC_RA, ExtendedKeyUsageOID.CLIENT_AUTH))
        res = self.rr("rr-ra", victim, x, self.gw.dir / "client.key", extracerts=self.gw.dir / "client.pem")
        self.assert_cmp_error(res.first, ("rp",), "notAuthorized", TEXT_RR)
        self.assert_not_revoked(victim)

    # -- forged holder: kur ---------------------------------------------------------------------

    def test_kur_of_another_device(self):
        victim, _ = self.enrol("kur-victim")
        a_cert, a_key = self.attacker()
        v = load_cert(victim)
        d = self.gw.dir
        x = forge(d / "x-kur.pem", a_cert, a_key, issuer=v.issuer, serial=v.serial_number)
        res = self.gw.cmp("kur", "kur-forged", auth=(x, d / "client.key"), newkey=self.newkey("kur-new"),
                          extra=("-oldcert", victim, "-extracerts", d / "client.pem", "-implicit_confirm"),
                          expect_cert=False)
        self.assert_cmp_error(res.first, ("kup",), "notAuthorized", TEXT_KUR)
        self.assertIsNone(res.cert)

    def test_kur_of_another_device_signer_is_trust_anchor(self):
        victim, _ = self.enrol("kur-victim2")
        d = self.gw.dir
        v = load_cert(victim)
        x = forge(d / "x-kur2.pem", load_cert(d / "anchor.pem"), load_key(d / "anchor.key"), issuer=v.issuer,
                  serial=v.serial_number)
        res = self.gw.cmp("kur", "kur-anchor", auth=(x, d / "anchor.key"), newkey=self.newkey("kur-new2"),
                          extra=("-oldcert", victim, "-implicit_confirm"), expect_cert=False)
        self.assert_cmp_error(res.first, ("kup",), "notAuthorized", TEXT_KUR)
        self.assertIsNone(res.cert)

    def test_kur_of_a_certificate_no_upstream_issued(self):
        """RFC 9483 §4.1.3: the anchored device's certificate is trusted on the route, but no upstream of it
        issued it: its kur renews nothing (once it was issued as an ir would be)."""
        d = self.gw.dir
        res = self.gw.cmp("kur", "kur-anchored", auth=(d / "anchor.pem", d / "anchor.key"),
                          newkey=self.newkey("kur-anchored"), extra=("-implicit_confirm",), expect_cert=False)
        self.assert_cmp_error(res.first, ("kup",), "badCertId", TEXT_KUR_NOT_ISSUED % ANCHOR_SUBJECT)
        self.assertIsNone(res.cert)
        # twin: the certificate its ir gets renews
        cert, key = self.enrol("kur-anchored-ir", auth=(d / "anchor.pem", d / "anchor.key"))
        ok = self.gw.cmp("kur", "kur-anchored-renew", auth=(cert, key), newkey=self.newkey("kur-anchored-new"),
                         extra=("-implicit_confirm",))
        self.assertEqual(ok.first.body_type, "kup")
        self.assertEqual(ok.first.status, 0, ok.first)

    # -- allow-list by serial -------------------------------------------------------------------

    def test_allowlist_serial_forged(self):
        d = self.gw.dir
        a_cert, a_key = self.attacker()
        allowed = load_cert(d / "allowed.pem")
        x = forge(d / "x-fleet.pem", a_cert, a_key, issuer=allowed.issuer, serial=allowed.serial_number)
        res = self.gw.cmp("ir", "fleet-forged", auth=(x, d / "client.key"), newkey=self.newkey("fleet-new"),
                          subject="/CN=fleet-forged", path="pki/roles/fleet/cmp",
                          extra=("-extracerts", d / "client.pem", "-implicit_confirm"), expect_cert=False)
        self.assert_rejected(res, "notAuthorized", "device %s is not on this route's allow-list" % CLIENT_SUBJECT)

    def test_allowlist_serial_genuine(self):
        """Control: the listed device itself enrols."""
        d = self.gw.dir
        res = self.gw.cmp("ir", "fleet-ok", auth=(d / "allowed.pem", d / "allowed.key"),
                          newkey=self.newkey("fleet-ok"), subject="/CN=fleet-ok", path="pki/roles/fleet/cmp",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)

    # -- bounds and ambiguity -------------------------------------------------------------------

    def test_too_many_certificates_naming_the_sender(self):
        d = self.gw.dir
        a_cert, a_key = self.attacker()
        bundle = d / "lookalikes.pem"
        bundle.write_text("".join(forge(d / ("x-many-%d.pem" % i), a_cert, a_key).read_text() for i in range(5)))
        res = self.gw.cmp("ir", "many", newkey=self.newkey("many"), subject="/CN=many",
                          extra=("-extracerts", bundle, "-implicit_confirm"), expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badMessageCheck",
                              "more than 4 certificates carry the sender's name: send only the signer's "
                              "certificate and its chain")

    def test_too_many_extra_certs(self):
        d = self.gw.dir
        bundle = d / "crowd.pem"
        _, _, fkey = harness.make_foreign_pki(d / "crowd")
        fkey = load_key(fkey)
        crowd = []
        for i in range(17):  # none names the sender: the count alone is refused
            now = datetime.datetime.now(datetime.timezone.utc)
            name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "crowd-%d" % i)])
            c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(fkey.public_key())
                 .serial_number(i + 1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                 .sign(fkey, hashes.SHA256()))
            crowd.append(c.public_bytes(serialization.Encoding.PEM).decode())
        bundle.write_text("".join(crowd))
        res = self.gw.cmp("ir", "crowd", newkey=self.newkey("crowd"), subject="/CN=crowd",
                          extra=("-extracerts", bundle, "-implicit_confirm"), expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badRequest",
                              "extraCerts are malformed or hold more than 16 certificates or 32768 bytes")

    def test_two_valid_certificates_both_verify(self):
        """Two certificates of the same subject and key, both issued here: which one is the identity is a guess."""
        key = self.newkey("twin")
        first = self.gw.cmp("ir", "twin1", newkey=key, subject="/CN=twin", extra=("-implicit_confirm",)).cert
        second = self.gw.cmp("ir", "twin2", newkey=key, subject="/CN=twin", extra=("-implicit_confirm",)).cert
        res = self.gw.cmp("ir", "twin-ir", auth=(first, key), newkey=self.newkey("twin-new"), subject="/CN=twin",
                          extra=("-extracerts", second, "-implicit_confirm"), expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badMessageCheck",
                              "message protection is ambiguous: several valid certificates with the sender's "
                              "name verify it")
        self.assertIsNone(res.cert)

    def test_two_valid_certificates_neither_verifies(self):
        """Two certificates of one subject issued here, sent beside a self-made one of a third key that signs:
        both chain, neither verifies the signature. The log names the first that chains, as for the other
        causes: its subject, its hash and that the client sent it."""
        d = self.gw.dir
        subject = "/CN=unsigned-twin"
        first = self.gw.cmp("ir", "unsigned-twin1", newkey=self.newkey("unsigned-twin1"), subject=subject,
                            extra=("-implicit_confirm",)).cert
        second = self.gw.cmp("ir", "unsigned-twin2", newkey=self.newkey("unsigned-twin2"), subject=subject,
                             extra=("-implicit_confirm",)).cert
        key = self.newkey("unsigned-twin-signer")
        # no SKID, so no senderKID that would rule the two issued ones out
        harness.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "1", "-addext",
                     "keyUsage=critical,digitalSignature", "-addext", "subjectKeyIdentifier=none", "-addext",
                     "authorityKeyIdentifier=none", "-out", d / "unsigned-twin-signer.pem"])
        bundle = d / "unsigned-twins.pem"
        bundle.write_text(first.read_text() + second.read_text())
        res = self.gw.cmp("ir", "unsigned-twin-ir", auth=(d / "unsigned-twin-signer.pem", key),
                          newkey=self.newkey("unsigned-twin-new"), subject=subject,
                          extra=("-extracerts", bundle, "-implicit_confirm"), expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badMessageCheck", "message protection could not be verified")
        self.assertIsNone(res.cert)
        refused = [(e.get("cause"), e.get("tried"), e.get("tried_hash"), e.get("tried_from"))
                   for e in self.gw.log_lines() if e.get("event") == "signer_refused"
                   and e.get("cause") == "signature"]
        self.assertEqual(refused, [("signature", subject, cert_hash(first), "extraCerts")], refused)




class WeakSigner(RowAssertions, harness.GatewayTestCase):
    """Security level 2 for what authenticates a request: a signer certificate the trusted demo issuing CA
    signed with SHA-1, or a message protected with a SHA-1 signature, is refused with its row of
    docs/errors.md; each twin, the same with SHA-256, issues."""

    def signer(self, name, digest):
        """A device certificate of the demo issuing CA (trusted on the default role), signed with |digest|."""
        d = self.gw.dir
        harness.genkey(d / ("%s.key" % name))
        harness.run(["openssl", "req", "-new", "-key", d / ("%s.key" % name), "-subj", "/O=vendor/CN=%s" % name,
                     "-out", d / ("%s.csr" % name)])
        (d / "weak.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                    "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        harness.run(["openssl", "x509", "-req", "-%s" % digest, "-in", d / ("%s.csr" % name), "-CA",
                     d / "issuing.pem", "-CAkey", d / "issuing.key", "-days", "30", "-extfile", d / "weak.ext",
                     "-set_serial", "0x%x" % (0x5EC0 + len(name)), "-out", d / ("%s.pem" % name)])
        return d / ("%s.pem" % name), d / ("%s.key" % name)

    def test_weak_signer(self):
        cert, key = self.signer("sha1-signer", "sha1")
        res = self.gw.cmp("ir", "weak-signer", auth=(cert, key), newkey=self.newkey("weak-signer"),
                          subject="/CN=weak-signer", expect_cert=False)
        self.assertIsNone(res.cert)
        a = self.expect("weak_signer", res.last)
        self.assertEqual(a.status_strings, ["message protection could not be verified: the signer certificate is "
                                            "signed with a hash under 112 bits of security (SHA-1, MD5)"])
        self.assertTrue(any(e.get("event") == "weak_signer" for e in self.gw.log_lines()))
        cert, key = self.signer("sha256-signer", "sha256")
        res = self.gw.cmp("ir", "weak-signer-twin", auth=(cert, key), newkey=self.newkey("weak-signer-twin"),
                          subject="/CN=weak-signer-twin")
        self.assertEqual(res.first.status, 0, res.first)

    def test_weak_protection(self):
        res = self.gw.cmp("ir", "weak-prot", newkey=self.newkey("weak-prot"), subject="/CN=weak-prot",
                          extra=("-digest", "sha1"), expect_cert=False)
        self.assertIsNone(res.cert)
        a = self.expect("weak_protection", res.last)
        self.assertEqual(a.status_strings, ["message protection is signed with a hash under 112 bits of security "
                                            "(ecdsa-with-SHA1): sign with SHA-256 or stronger"])
        self.assertTrue(any(e.get("event") == "weak_protection" for e in self.gw.log_lines()))
        res = self.gw.cmp("ir", "weak-prot-twin", newkey=self.newkey("weak-prot-twin"),
                          subject="/CN=weak-prot-twin", extra=("-digest", "sha256"))
        self.assertEqual(res.first.status, 0, res.first)


class CaNames(RowAssertions, harness.GatewayTestCase):
    """A client without a trusted certificate signs with a self-made one whose subject is that of a certificate
    the route trusts: the demo trust entry's anchor, the intermediate it holds (neither with the digitalSignature
    key usage), a device certificate that is a trust entry's own anchor; or a name the route knows nothing of.
    The gateway tries the certificate it finds under the name, which the signature does not match; the answers
    must still be one and the same, or a client would learn which names the route trusts. Each refusal counts
    against the address (four use its budget up); the log tells the operator which it was."""

    @classmethod
    def edit_config(cls, cfg, gw):
        make_anchor(gw.dir)
        cfg["trust"]["anchored"] = {"ca_file": "anchor.pem", "revocation": "none"}
        cfg["roles"]["default"]["trust"] = ["demo", "anchored"]
        cfg["limits"] = {"auth_failures_per_address": 4, "auth_failure_window": "60s"}

    def self_made(self, name, subject):
        d = self.gw.dir
        key = harness.genkey(d / ("%s.key" % name))
        # no SKID, so no senderKID that would rule the certificate of that name out
        harness.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "1", "-addext",
                     "keyUsage=critical,digitalSignature", "-addext", "subjectKeyIdentifier=none", "-addext",
                     "authorityKeyIdentifier=none", "-out", d / ("%s.pem" % name)])
        return d / ("%s.pem" % name), key

    def test_trusted_names_are_not_told(self):
        probes = (("as-anchor", ROOT_SUBJECT), ("as-intermediate", ISSUING_SUBJECT),
                  ("as-device-anchor", ANCHOR_SUBJECT), ("as-nobody", "/O=elsewhere/CN=nobody"))
        answers = {}
        for name, subject in probes:
            cert, key = self.self_made(name, subject)
            res = self.gw.cmp("ir", name, auth=(cert, key), newkey=self.newkey("%s-new" % name),
                              subject="/CN=%s" % name, expect_cert=False)
            self.assertIsNone(res.cert)
            a = self.expect("untrusted_signer", res.last)
            answers[name] = (a.body_type, a.fail_info, a.status_strings)
        self.assertEqual(len(set(map(repr, answers.values()))), 1, answers)
        lines = self.gw.log_lines()
        refused = [(e.get("cause"), e.get("tried"), e.get("tried_hash"), e.get("tried_from")) for e in lines
                   if e.get("event") == "signer_refused"]
        d = self.gw.dir
        # the CA of the trust the client named itself after; with no such CA, the client's own certificate
        self.assertEqual(refused, [("signature", ROOT_SUBJECT, cert_hash(d / "ca.pem"), "role"),
                                   ("signature", ISSUING_SUBJECT, cert_hash(d / "issuing.pem"), "role"),
                                   ("signature", ANCHOR_SUBJECT, cert_hash(d / "anchor.pem"), "role"),
                                   ("untrusted", None, None, None)], refused)
        exhausted = [e for e in lines if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(exhausted), 1, exhausted)
        self.assertIn("badMessageCheck", exhausted[0]["last"])


class WeakCaNames(RowAssertions, harness.GatewayTestCase):
    """Certificates of the route's trust under the security level by themselves: a trust entry's own anchor
    with an RSA key of 1024 bits, and an intermediate its root signed with SHA-1. A client without their keys
    that signs with a self-made certificate of one's subject is told what an unknown name is, not why the CA
    is weak, or it would learn that the route trusts a CA of that name. Twin: the anchor's holder, whose
    signature verifies with it, learns why it is refused."""

    SUBJECT = "/O=cmpgw demo/CN=weak anchored device"
    MID_SUBJECT = "/O=cmpgw demo/CN=weak issuing CA"

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        harness.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out",
                     d / "weak-anchor.key"])
        harness.run(["openssl", "req", "-x509", "-new", "-key", d / "weak-anchor.key", "-subj", cls.SUBJECT,
                     "-days", "30", "-addext", "keyUsage=critical,digitalSignature", "-out", d / "weak-anchor.pem"])
        harness.genkey(d / "weak-root.key")
        harness.run(["openssl", "req", "-x509", "-new", "-key", d / "weak-root.key", "-subj",
                     "/O=cmpgw demo/CN=weak root CA", "-days", "30", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-out", d / "weak-root.pem"])
        harness.genkey(d / "weak-mid.key")
        harness.run(["openssl", "req", "-new", "-key", d / "weak-mid.key", "-subj", cls.MID_SUBJECT, "-out",
                     d / "weak-mid.csr"])
        (d / "weak-mid.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                                        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        harness.run(["openssl", "x509", "-req", "-sha1", "-in", d / "weak-mid.csr", "-CA", d / "weak-root.pem",
                     "-CAkey", d / "weak-root.key", "-days", "30", "-extfile", d / "weak-mid.ext", "-set_serial",
                     "0x5EC5", "-out", d / "weak-mid.pem"])
        cfg["trust"]["weak"] = {"ca_file": "weak-anchor.pem", "revocation": "none"}
        cfg["trust"]["weakmid"] = {"ca_file": "weak-root.pem", "untrusted_file": "weak-mid.pem",
                                   "revocation": "none"}
        cfg["roles"]["default"]["trust"] = ["demo", "weak", "weakmid"]

    def ir(self, name, cert, key):
        res = self.gw.cmp("ir", name, auth=(cert, key), newkey=self.newkey("%s-new" % name),
                          subject="/CN=%s" % name, expect_cert=False)
        self.assertIsNone(res.cert)
        return res.last

    def test_weak_anchor_name_is_not_told(self):
        d = self.gw.dir
        answers = []
        for name, subject in (("as-weak-anchor", self.SUBJECT), ("as-weak-intermediate", self.MID_SUBJECT),
                              ("as-nobody", "/O=elsewhere/CN=nobody")):
            key = harness.genkey(d / ("%s.key" % name))
            # no SKID, so no senderKID that would rule the anchor out
            harness.run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", subject, "-days", "1", "-addext",
                         "keyUsage=critical,digitalSignature", "-addext", "subjectKeyIdentifier=none", "-addext",
                         "authorityKeyIdentifier=none", "-out", d / ("%s.pem" % name)])
            a = self.expect("untrusted_signer", self.ir(name, d / ("%s.pem" % name), key))
            answers.append((a.body_type, a.fail_info, a.status_strings))
        # a certificate of a CA the route knows nothing of: unlike a self-signed one, the client sends it
        ca_key = harness.genkey(d / "stranger-ca.key")
        harness.run(["openssl", "req", "-x509", "-new", "-key", ca_key, "-subj", "/O=elsewhere/CN=stranger CA",
                     "-days", "1", "-out", d / "stranger-ca.pem"])
        key = harness.genkey(d / "as-stranger.key")
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=elsewhere/CN=stranger", "-out",
                     d / "as-stranger.csr"])
        harness.run(["openssl", "x509", "-req", "-in", d / "as-stranger.csr", "-CA", d / "stranger-ca.pem", "-CAkey",
                     ca_key, "-days", "1", "-out", d / "as-stranger.pem"])
        a = self.expect("untrusted_signer", self.ir("as-stranger", d / "as-stranger.pem", key))
        answers.append((a.body_type, a.fail_info, a.status_strings))
        self.assertEqual(len(set(map(repr, answers))), 1, answers)
        refused = [(e.get("cause"), e.get("tried"), e.get("tried_hash"), e.get("tried_from"))
                   for e in self.gw.log_lines() if e.get("event") == "signer_refused"]
        # which weak CA of the trust the client named itself after, by subject and hash (never its key)
        self.assertEqual(refused, [("weak_signature", self.SUBJECT, cert_hash(d / "weak-anchor.pem"), "role"),
                                   ("weak_signature", self.MID_SUBJECT, cert_hash(d / "weak-mid.pem"), "role"),
                                   ("untrusted", None, None, None),  # a self-signed one is not sent
                                   ("untrusted", "/O=elsewhere/CN=stranger", cert_hash(d / "as-stranger.pem"),
                                    "extraCerts")], refused)
        self.assertFalse(any(e.get("event") == "weak_signer" for e in self.gw.log_lines()))
        # the anchor's holder signs with its key: told why
        a = self.expect("weak_signer", self.ir("weak-anchor-holder", d / "weak-anchor.pem", d / "weak-anchor.key"))
        self.assertEqual(a.status_strings, ["message protection could not be verified: the signer certificate "
                                            "certifies a key under 112 bits of security (RSA under 2048 bits)"])
        self.assertTrue(any(e.get("event") == "weak_signer" for e in self.gw.log_lines()))


class RevokedCredentials(harness.GatewayTestCase):
    """The local issuer (with a store) issued the credentials; the holder revokes them with rr."""

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        # the same CAs, but only certificates that came from an upstream are accepted
        cfg["trust"]["strict"] = {"ca_file": "ca.pem", "untrusted_file": "issuing.pem", "revocation": "upstream"}
        cfg["roles"]["strict"] = dict(cfg["roles"]["default"], trust=["strict"])

    def revoke(self, name, cert, key):
        res = self.gw.cmp("rr", name + "-rr", auth=(cert, key), extra=("-oldcert", cert, "-revreason", "1"),
                          expect_cert=False)
        self.assertEqual((res.first.body_type, res.first.status), ("rp", 0), res.first)

    def revoked(self, name):
        cert, key = self.enrol(name)
        self.revoke(name, cert, key)
        return cert, key

    def assert_revoked_answer(self, answer, body_types, cert, what="signer"):
        self.assert_cmp_error(answer, body_types, "certRevoked", "the %s %s" % (what, TEXT_REVOKED % harness.serial_hex(cert)))

    def test_good_signer_status_on_record(self):
        cert, key = self.enrol("good")
        res = self.gw.cmp("ir", "good-again", auth=(cert, key), newkey=self.newkey("good-again"),
                          subject="/CN=good", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)
        issued = [r for r in audit(self.gw, "issued") if int(r.get("serial", "0"), 16) ==
                  load_cert(res.cert).serial_number]
        self.assertEqual(len(issued), 1)
        self.assertIn("signer: store of upstream local", issued[0].get("credential_status", ""))

    def test_strict_trust_refuses_a_certificate_no_upstream_issued(self):
        """The demo client was signed by the demo root directly: nothing can tell whether it is revoked."""
        res = self.gw.cmp("ir", "strict-demo", newkey=self.newkey("strict-demo"), subject="/CN=strict-demo",
                          path="pki/roles/strict/cmp", extra=("-implicit_confirm",), expect_cert=False)
        self.assert_rejected(res, "notAuthorized", "the signer certificate was not issued by a CA this gateway can "
                             "ask about revocation; trust strict accepts certificates of its upstreams only")

    def test_strict_trust_refuses_a_certificate_of_an_intermediate_sent_along(self):
        """A device certificate of an intermediate under the demo root that is in no trust entry and no
        upstream's: the client sends the intermediate in extraCerts and the chain validates up to the
        strict entry's anchor. That entry speaks for it all the same, and no upstream can tell whether it
        is revoked: refused, not taken unchecked."""
        d = self.gw.dir
        vaultenv.sign_cert(d, "unlisted-int", "/O=cmpgw demo/CN=unlisted intermediate", "ca",
                           vaultenv.ca_ext(0))
        cert = vaultenv.sign_cert(d, "unlisted-dev", "/O=cmpgw demo/CN=unlisted-device", "unlisted-int",
                                  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        extra = ("-implicit_confirm", "-extracerts", d / "unlisted-int.pem")
        res = self.gw.cmp("ir", "strict-int", auth=(cert, d / "unlisted-dev.key"),
                          newkey=self.newkey("strict-int"), subject="/CN=strict-int", path="pki/roles/strict/cmp",
                          extra=extra, expect_cert=False)
        self.assert_rejected(res, "notAuthorized", "the signer certificate was not issued by a CA this gateway can "
                             "ask about revocation; trust strict accepts certificates of its upstreams only")
        # the default role's entry says "revocation": "none": the same client is taken there, unchecked
        res = self.gw.cmp("ir", "none-int", auth=(cert, d / "unlisted-dev.key"), newkey=self.newkey("none-int"),
                          subject="/CN=none-int", extra=extra)
        issued = [r for r in audit(self.gw, "issued") if int(r.get("serial", "0"), 16) ==
                  load_cert(res.cert).serial_number]
        self.assertIn("signer: not checked (trust demo: revocation none)", issued[0].get("credential_status", ""))

    def test_strict_trust_serves_a_certificate_of_its_upstream(self):
        cert, key = self.enrol("strict-ok")
        res = self.gw.cmp("ir", "strict-ok-ir", auth=(cert, key), newkey=self.newkey("strict-ok-new"),
                          subject="/CN=strict-ok", path="pki/roles/strict/cmp", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)

    def test_revoked_signer_ir(self):
        cert, key = self.revoked("rev-ir")
        res = self.gw.cmp("ir", "rev-ir-again", auth=(cert, key), newkey=self.newkey("rev-ir-new"),
                          subject="/CN=rev-ir", extra=("-implicit_confirm",), expect_cert=False)
        self.assert_revoked_answer(res.first, ("ip",), cert)
        self.assertIsNone(res.cert)

    def test_revoked_signer_p10cr(self):
        cert, key = self.revoked("rev-p10")
        d = self.gw.dir
        harness.run(["openssl", "req", "-new", "-key", self.newkey("rev-p10-new"), "-subj", "/CN=rev-p10",
                     "-out", d / "rev-p10.csr"])
        res = self.gw.cmp("p10cr", "rev-p10-again", auth=(cert, key), expect_cert=False,
                          extra=("-csr", d / "rev-p10.csr", "-implicit_confirm"))
        self.assert_revoked_answer(res.first, ("cp",), cert)

    def test_revoked_signer_rr(self):
        """The revoked signer's rr for another certificate is refused for its signer, and revokes nothing;
        its rr for itself (its holder asking again) is told that certificate is revoked already."""
        cert, key = self.revoked("rev-rr")
        other, _ = self.enrol("rev-rr-next")
        res = self.gw.cmp("rr", "rev-rr-next-rr", auth=(cert, key), extra=("-oldcert", other, "-revreason", "1"),
                          expect_cert=False)
        self.assert_revoked_answer(res.first, ("rp",), cert)
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          load_cert(other).serial_number])
        res = self.gw.cmp("rr", "rev-rr-again", auth=(cert, key), extra=("-oldcert", cert, "-revreason", "1"),
                          expect_cert=False)
        self.assert_cmp_error(res.first, ("rp",), "certRevoked")
        self.assertEqual(res.first.status_strings, ["the certificate is already revoked"])

    def test_revoked_signer_genm(self):
        cert, key = self.revoked("rev-genm")
        res = self.gw.cmp("genm", "rev-genm-ask", auth=(cert, key), expect_cert=False)
        self.assert_revoked_answer(res.first, ("error",), cert)

    def test_revoked_signer_certconf(self):
        """Revoked between the ip and the certConf of an open transaction: the certConf is refused."""
        cert, key = self.enrol("rev-conf")
        res = self.gw.cmp("ir", "rev-conf-ir", auth=(cert, key), newkey=self.newkey("rev-conf-new"),
                          subject="/CN=rev-conf", extra=("-disable_confirm",))
        self.revoke("rev-conf", cert, key)
        ir, ip = load(res.req_files[0].read_bytes()), res.first
        issued = ssl.PEM_cert_to_DER_cert(res.cert.read_text())
        conf = certconf(ir, ip, hashlib.sha256(issued).digest(), key)
        f = self.gw.dir / "rev-conf.certconf.der"
        f.write_bytes(encoder.encode(conf))
        answer = harness.decode_cmp(self.gw.curl(data=f).body)
        self.assert_revoked_answer(answer, ("error",), cert)

    def test_revoked_tls_client_certificate(self):
        d = self.gw.dir
        cert, key = self.revoked("rev-tls")
        res = self.gw.cmp("ir", "rev-tls-ir", tls=(harness.tls_bundle(d, cert), key),
                          newkey=self.newkey("rev-tls-new"), subject="/CN=rev-tls", extra=("-implicit_confirm",), expect_cert=False)
        self.assert_revoked_answer(res.first, ("ip",), cert, what="TLS client")

    def test_unrevoked_tls_client_certificate(self):
        """The twin: the same path with a valid TLS client certificate of the local issuer is served."""
        d = self.gw.dir
        cert, key = self.enrol("ok-tls")
        res = self.gw.cmp("ir", "ok-tls-ir", tls=(harness.tls_bundle(d, cert), key),
                          newkey=self.newkey("ok-tls-new"), subject="/CN=ok-tls", extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)


class VaultCase(harness.GatewayTestCase):
    """A gateway in front of the Vault-API test server; certificates it issued carry their chain beside."""

    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["roles"]["default"].update(upstream="vault", upstream_role="devices", allowed_san_types=["dns", "ip"])


    def p10cr(self, name, auth="sig"):
        d = self.gw.dir
        key = self.newkey(name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out",
                     d / ("%s.csr" % name)])
        extra = ["-csr", d / ("%s.csr" % name), "-implicit_confirm"]
        if auth != "sig":  # a Vault certificate: its chain goes in extraCerts
            extra += ["-untrusted", Path(str(auth[0]) + ".chain.pem")]
        res = self.gw.cmp("p10cr", name, auth=auth, extra=extra, expect_cert=False)
        if res.cert is not None:
            Path(str(res.cert) + ".chain.pem").write_text(res.first.extra_certs_pem())
        return res, key



class RevokedAtVault(VaultCase):
    """Certificates the Vault-API test server issued: their status comes from its CRL (GET pki/crl)."""

    def test_crl_says_good_then_revoked(self):
        first, key = self.p10cr("v-holder")
        self.assertIsNotNone(first.cert, first.answers)
        signer = (first.cert, key)
        again, _ = self.p10cr("v-good", auth=signer)
        self.assertIsNotNone(again.cert, again.answers)  # the CRL lists nothing yet
        rr = self.gw.cmp("rr", "v-holder-rr", auth=signer, expect_cert=False,
                         extra=("-oldcert", first.cert, "-revreason", "1", "-untrusted",
                                str(first.cert) + ".chain.pem"))
        self.assertEqual((rr.first.body_type, rr.first.status), ("rp", 0), rr.first)
        refused, _ = self.p10cr("v-refused", auth=signer)
        self.assert_cmp_error(refused.first, ("cp",), "certRevoked",
                              "the signer " + TEXT_REVOKED % harness.serial_hex(first.cert))
        self.assertTrue(self.vault.requests("/v1/pki/crl"))



class RevokedAtVaultOfTheVaultRolesIssuer(VaultCase):
    """Certificates of the mount's second issuer, which the route's Vault role names (its issuer_ref):
    their status comes from that issuer's CRL (issuer/second/crl/der), fetched once and cached as the
    default issuer's is, not from a cert/<serial> on every check."""

    route = {"upstream_role": "second-issuer"}

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir, extra_roles={
            "second-issuer": dict(vaultenv.DEVICES, issuer_ref="second")})
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["roles"]["default"].update(upstream="vault", allowed_san_types=["dns", "ip"], **cls.route)

    def test_issuer_crl_says_good_then_revoked(self):
        holder, key = self.p10cr("v2-holder")
        victim, victim_key = self.p10cr("v2-victim")
        self.assertEqual(load_cert(holder.cert).issuer, load_cert(self.gw.dir / "vault-ca2.pem").subject)
        # revoked at Vault itself, not through cmpgw: only that issuer's CRL tells of it
        self.vault.api("POST", "/v1/pki/revoke", {"serial_number": "%x" % load_cert(victim.cert).serial_number})
        mark = self.vault.mark()
        for n in range(3):
            served, _ = self.p10cr("v2-good-%d" % n, auth=(holder.cert, key))
            self.assertIsNotNone(served.cert, served.answers)
        refused, _ = self.p10cr("v2-refused", auth=(victim.cert, victim_key))
        self.assert_cmp_error(refused.first, ("cp",), "certRevoked",
                              "the signer " + TEXT_REVOKED % harness.serial_hex(victim.cert))
        paths = [e["path"] for e in self.vault.since(mark)]
        self.assertEqual([p for p in paths if "/cert/" in p], [], paths)
        self.assertEqual([p for p in paths if "crl" in p], ["/v1/pki/crl", "/v1/pki/issuer/second/crl/der"], paths)
        logged = [e for e in self.gw.log_lines() if e.get("event") == "credential_revoked"]
        self.assertEqual([e["source"] for e in logged], ["CRL of upstream vault"], logged)


class RevokedAtVaultOfTheRoutesIssuer(RevokedAtVaultOfTheVaultRolesIssuer):
    """The same for the issuer the route's own issuer_ref names."""

    route = {"upstream_role": "devices", "issuer_ref": "second"}


class ForgedIssuerCrlAtVault(RevokedAtVaultOfTheVaultRolesIssuer):
    """A CRL served as issuer/second's that the second issuer did not sign (its name, another key)
    counts for no CA: cert/<serial> answers for that issuer's certificates, and a revoked one is
    refused all the same."""

    route = {"upstream_role": "devices", "issuer_ref": "second"}

    def test_issuer_crl_says_good_then_revoked(self):
        holder, key = self.p10cr("v2f-holder")
        victim, victim_key = self.p10cr("v2f-victim")
        self.vault.api("POST", "/v1/pki/revoke", {"serial_number": "%x" % load_cert(victim.cert).serial_number})
        self.vault.control({"crl_forged": True, "match": "/issuer/second/crl"})
        mark = self.vault.mark()
        served, _ = self.p10cr("v2f-good", auth=(holder.cert, key))
        self.assertIsNotNone(served.cert, served.answers)
        refused, _ = self.p10cr("v2f-refused", auth=(victim.cert, victim_key))
        self.assert_cmp_error(refused.first, ("cp",), "certRevoked",
                              "the signer " + TEXT_REVOKED % harness.serial_hex(victim.cert))
        paths = [e["path"] for e in self.vault.since(mark)]
        self.assertIn("/v1/pki/issuer/second/crl/der", paths)
        self.assertEqual(len([p for p in paths if "/cert/" in p]), 2, paths)
        logged = [e for e in self.gw.log_lines() if e.get("event") == "credential_revoked"]
        self.assertEqual([e["source"] for e in logged], ["status query at upstream vault"], logged)


class StaleCrlAtVault(VaultCase):
    """The Vault-API test server's CRL ran out two hours ago (grace: one hour), and cert/<serial> does not
    answer either: its certificates authenticate nothing until a current CRL can be had."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cls.vault.control({"crl_stale": True, "force_status": 503, "match": "/cert/"})

    def test_stale_crl_fails_closed_then_current_crl_serves(self):
        first, key = self.p10cr("v-stale")  # signed by the demo client: no Vault certificate involved
        self.assertIsNotNone(first.cert, first.answers)
        refused, _ = self.p10cr("v-stale-2", auth=(first.cert, key))
        self.assert_cmp_error(refused.first, ("cp",), "systemUnavail",
                              "the revocation status of the signer certificate cannot be checked now (the CRL "
                              "of upstream vault is past its nextUpdate")
        self.vault.control({})  # a current CRL again: read at the next request, as the old one ran out
        served, _ = self.p10cr("v-stale-3", auth=(first.cert, key))
        self.assertIsNotNone(served.cert, served.answers)


class StatusUnknownPaced(VaultCase):
    """While the Vault-API test server's CRL is past its nextUpdate and cert/<serial> fails, every request
    signed by one of its certificates is refused, as fast as its client sends: the status_unknown lines are
    paced by that outage (the first at once, then one in 10 s, each with the count held back before it), and
    the first status had again ends it, status_recovered counting those held back since. The answers stay."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cls.vault.control({"crl_stale": True, "force_status": 503, "match": "/cert/"})

    def unknown_lines(self):
        return [e for e in self.gw.log_lines() if e.get("event") == "status_unknown"]

    def test_outage_paced_then_ended(self):
        first, key = self.p10cr("v-paced")
        self.assertIsNotNone(first.cert, first.answers)
        start, refused = time.monotonic(), 0
        for k in range(15):
            res, _ = self.p10cr("v-paced-%d" % k, auth=(first.cert, key))
            self.assert_cmp_error(res.first, ("cp",), "systemUnavail",
                                  "the revocation status of the signer certificate cannot be checked now (the CRL "
                                  "of upstream vault is past its nextUpdate")
            refused += 1
        elapsed = time.monotonic() - start
        lines = self.unknown_lines()
        # the pacer counts whole seconds of time(): a second line may come 9.x s of this clock after the first
        self.assertLessEqual(len(lines), 1 + int((elapsed + 1) // 10), (elapsed, lines))
        self.assertTrue(lines[0].get("tid"), lines)
        self.vault.control({})  # a current CRL again, fetched once the stale one's retry interval is over
        deadline = time.monotonic() + 20
        while True:
            res, _ = self.p10cr("v-paced-again-%d" % refused, auth=(first.cert, key))
            if res.cert is not None or time.monotonic() > deadline:
                break
            refused += 1
            time.sleep(1)
        self.assertIsNotNone(res.cert, res.answers)
        log = self.gw.log_lines()
        lines = self.unknown_lines()
        ended = [e for e in log if e.get("event") == "status_recovered"]
        self.assertEqual([e.get("upstream") for e in ended], ["vault"], ended)
        held = sum(int(e["suppressed"]) for e in lines + ended)
        self.assertEqual(len(lines) + held, refused, (lines, ended))

if __name__ == "__main__":
    harness.main()
