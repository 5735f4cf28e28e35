"""Revocation (RFC 9483 §4.2) over TLS with the real gateway: the holder revokes with `openssl cmp -cmd rr
-revreason`, another client is refused (notAuthorized), an RA identity (ra_subjects + id-kp-cmcRA) revokes,
and a PBM-protected rr is refused. An RA certificate that a second CA the role trusts (a vendor's) minted,
with an RA's subject and id-kp-cmcRA, revokes nothing unless the role names that CA's trust entry in
ra_trust. Every answer is decoded independently (pyasn1 rp); after a revocation the CRL the route serves
over genm lists the serial with its reason, and the audit log keeps the reason.

Through the Vault-API test server, which revokes by serial within its mount whatever issuer an rr names
(as Vault does): an RA of one role cannot revoke a certificate of another role on the same mount, nor a
certificate named by an issuer that did not issue it or that is no CA of the upstream; each stays valid
at Vault. A revocation Vault fails (500) has the client retry later; one it refuses (400) is answered as
refused for good, without Vault's words. Where the CA cannot look a certificate up by serial (cfssl), an RA revokes nothing it does
not hold; the holder still does. An RA's role judges a certificate's names as it would have issued them: a
subjectAltName copying the CN is held to the role's SAN types, and on Vault the CN is judged as the name
Vault copies it to. A holder's rr for a certificate Vault has revoked already (its operator's doing) is
certRevoked, Vault not asked to revoke it again, whatever check_revocation says. Each certRevoked answer
to an rr writes one rr_already_revoked log line that names the certificate and what told (the gateway's
record, the upstream's status of the holder's certificate, or of an RA's target). An RA's rr on a migration
whose "from" and "to" have CAs of one name is refused where one of them cannot look a serial up: it may
have issued that serial too. RevokedOnceWhenTheSetIsFull:
with this instance's revoked set full (cmp.max_revoked), two rrs of one cfssl certificate at once still
reach cfssl once, the second answered certRevoked."""
import concurrent.futures
import datetime
import os
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import cfsslenv  # noqa: E402
import harness  # noqa: E402
import vaultenv  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from pyasn1.codec.der import decoder as der_decoder  # noqa: E402
from pyasn1.codec.der import encoder  # noqa: E402
from pyasn1_modules import rfc5280  # noqa: E402

CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
RA_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo CMP signer"  # the demo signer carries id-kp-cmcRA
# the revoke_failed status of an rr whose request reached the CA, which did not say that it revoked
OUTCOME_UNKNOWN = "outcome unknown (retry later): it may be revoked; check at the CA: "


rp_status = harness.rp_status


audit = harness.audit_records


def serial_hex(cert):
    """Without leading zeros, as the CRL decoder below writes serials."""
    return harness.serial_hex(cert).lstrip("0")


def crl_entries(gw, name):
    """{serial hex: reason} of the CRL the route serves over genm id-it-crlStatusList (cmpclient)."""
    d = gw.dir
    p = harness.run([CLIENT_BIN, "--url", gw.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                     "--tls-key", d / "client.key", "--cert", d / "client.pem", "--key", d / "client.key",
                     "genm", "--out", d / name, "1.3.6.1.5.5.7.4.22"])
    if "itav 1.3.6.1.5.5.7.4.23 " not in p.stdout.decode():
        raise harness.Failure("no crls ITAV: %s" % p.stdout.decode())
    value = (d / ("%s.0.der" % name)).read_bytes()
    # SEQUENCE OF CertificateList: decode the first element with the schema
    inner = value[2:] if value[1] < 0x80 else value[2 + (value[1] & 0x7f):]
    crl, _ = der_decoder.decode(inner, asn1Spec=rfc5280.CertificateList())
    (d / ("%s.crl.der" % name)).write_bytes(inner)
    harness.run(["openssl", "crl", "-inform", "DER", "-in", d / ("%s.crl.der" % name), "-CAfile",
                 d / "issuing.pem", "-noout"])  # the signature verifies with the issuing CA
    out = {}
    revoked = crl["tbsCertList"]["revokedCertificates"]
    for entry in (revoked if revoked.isValue else []):
        reason = None
        if entry["crlEntryExtensions"].isValue:
            for ext in entry["crlEntryExtensions"]:
                if str(ext["extnID"]) == "2.5.29.21":
                    reason = int(der_decoder.decode(bytes(ext["extnValue"]), asn1Spec=rfc5280.CRLReason())[0])
        out["%x" % int(entry["userCertificate"])] = reason
    return out


def issuer_line(cert):
    """The issuer of a PEM certificate as the gateway's log writes names: "/O=x/CN=y"."""
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-issuer", "-nameopt", "compat"]).stdout.decode()
    return out.strip().split("=", 1)[1]


def already_revoked_sources(gw, cert):
    """The source of each rr_already_revoked log line for |cert|, in order. Each must carry the reason, the
    certificate's issuer, and the tid of a request line whose outcome is certRevoked (that rr's answer)."""
    lines = gw.log_lines()
    answered = {l.get("tid") for l in lines if l.get("event") == "request" and "certRevoked" in l.get("outcome", "")}
    out = []
    for l in lines:
        if l.get("event") != "rr_already_revoked" or int(l.get("serial") or "0", 16) != int(serial_hex(cert), 16):
            continue
        if l.get("reason") != "rr_already_revoked" or l.get("issuer") != issuer_line(cert) or \
                l.get("tid") not in answered or not l.get("tid"):
            raise harness.Failure("rr_already_revoked line without its fields: %r" % l)
        out.append(l.get("source"))
    return out


class Revocation(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["roles"]["default"]["authorization"] = {"ra_subjects": [RA_SUBJECT]}

    def rr(self, name, victim, signer, reason="1"):
        """`openssl cmp -cmd rr` over TLS signed by |signer| (cert, key) or PBM ("pbm"): (exit code, rp DER)."""
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        argv = ["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path", "pki/cmp",
                "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem",
                "-tls_key", d / "client.key", "-oldcert", victim, "-rspout", rsp]
        if signer == "pbm":
            argv += ["-ref", "demo-device", "-secret", "file:%s" % (d / "pbm.secret")]
        else:
            argv += ["-cert", signer[0], "-key", signer[1]]
        if reason is not None:
            argv += ["-revreason", reason]
        p = harness.run(argv, cwd=d, check=False)
        if not rsp.exists():
            raise harness.Failure("no rp: %s" % p.stderr.decode(errors="replace"))
        return p.returncode, rsp.read_bytes()

    def test_holder_revokes_crl_lists_it(self):
        cert, key = self.enrol("holder")
        serial = serial_hex(cert)
        self.assertNotIn(serial, crl_entries(self.gw, "before"))
        rc, rp = self.rr("holder-rr", cert, (cert, key), reason="1")  # keyCompromise
        self.assertEqual(rc, 0)
        self.assertEqual(rp_status(rp), (0, [], []))
        self.assertEqual(crl_entries(self.gw, "after").get(serial), 1)
        self.assertTrue(any(int(r.get("serial", "0"), 16) == int(serial, 16) and "keyCompromise" in r["status"]
                            for r in audit(self.gw, "revoked")))

    def test_holder_revokes_without_reason(self):
        """An rr without crlEntryDetails (`openssl cmp` sends none without -revreason; RFC 9810 makes them
        optional) revokes as unspecified: the local issuer's CRL lists the certificate with no reasonCode
        (RFC 5280 §5.3.1), and the audit record says none was given."""
        cert, key = self.enrol("noreason")
        serial = serial_hex(cert)
        rc, rp = self.rr("noreason-rr", cert, (cert, key), reason=None)
        self.assertEqual(rc, 0)
        self.assertEqual(rp_status(rp), (0, [], []))
        entries = crl_entries(self.gw, "noreason")
        self.assertIn(serial, entries)
        self.assertIsNone(entries[serial])
        self.assertTrue(any(int(r.get("serial", "0"), 16) == int(serial, 16) and r["status"] == "revoked; reason none"
                            for r in audit(self.gw, "revoked")))

    def test_holder_asks_again(self):
        """A holder repeating its rr (`openssl cmp -cmd rr` twice) is told its certificate is revoked already
        (rr_already_revoked), where the refusal of its revoked signer (credential_revoked) answered before;
        the CA is asked nothing the second time. The twin: that revoked certificate signing an rr for another
        certificate of the route is refused for its signer, and the other certificate stays valid: a revoked
        credential learns that the certificate it holds is revoked, and may do nothing else."""
        cert, key = self.enrol("again")
        other, _ = self.enrol("again-other")
        self.assertEqual(self.rr("again-rr", cert, (cert, key))[0], 0)
        intents = len(audit(self.gw, "intent"))
        rc, rp = self.rr("again-rr-2", cert, (cert, key))
        self.assertNotEqual(rc, 0)
        self.assertEqual(rp_status(rp), (2, ["certRevoked"], ["the certificate is already revoked"]))
        rc, rp = self.rr("again-other-rr", other, (cert, key))
        self.assertNotEqual(rc, 0)
        self.assertEqual(rp_status(rp), (2, ["certRevoked"], [
            "the signer certificate (serial %s) is revoked; authenticate with a valid one" % harness.serial_hex(cert)]))
        self.assertEqual(len(audit(self.gw, "intent")), intents)  # neither reached the CA
        entries = crl_entries(self.gw, "again")
        self.assertEqual(entries.get(serial_hex(cert)), 1)  # revoked once, keyCompromise
        self.assertNotIn(serial_hex(other), entries)
        self.assertEqual(len([r for r in audit(self.gw, "revoked")
                              if int(r.get("serial", "0"), 16) == int(serial_hex(cert), 16)]), 1)

    def test_other_client_not_authorized(self):
        cert, _ = self.enrol("victim")
        d = self.gw.dir
        rc, rp = self.rr("thief-rr", cert, (d / "client.pem", d / "client.key"))  # neither holder nor RA
        self.assertNotEqual(rc, 0)
        status, fails, texts = rp_status(rp)
        self.assertEqual((status, fails), (2, ["notAuthorized"]))
        self.assertEqual(texts, ["only the holder of a certificate (signing the rr with it) or an RA of role "
                                 "default may revoke it"])
        self.assertEqual(self.gw.denials("rr_not_holder"), [("default", "/O=cmpgw demo/CN=demo-client", texts[0])])
        self.assertNotIn(serial_hex(cert), crl_entries(self.gw, "thief"))

    def test_ra_revokes(self):
        cert, _ = self.enrol("ra-victim")
        d = self.gw.dir
        rc, rp = self.rr("ra-rr", cert, (d / "signer.pem", d / "signer.key"), reason="4")  # superseded
        self.assertEqual(rc, 0)
        self.assertEqual(rp_status(rp)[0], 0)
        self.assertEqual(crl_entries(self.gw, "ra").get(serial_hex(cert)), 4)
        self.assertTrue(any("by the RA" in r["status"] for r in audit(self.gw, "intent")
                            if int(r.get("serial", "0"), 16) == int(serial_hex(cert), 16)))

    def test_remove_from_crl_refused(self):
        """removeFromCRL would release a held certificate at a CMP CA (Vault and cfssl would revoke): never sent."""
        cert, key = self.enrol("unhold")
        rc, rp = self.rr("unhold-rr", cert, (cert, key), reason="8")
        self.assertNotEqual(rc, 0)
        self.assertEqual(rp_status(rp), (2, ["badRequest"], [
            "revocation reason removeFromCRL releases a certificate from hold, which this server does not do: ask "
            "the CA's operator"]))
        self.assertNotIn(serial_hex(cert), crl_entries(self.gw, "unhold"))
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          int(serial_hex(cert), 16)])

    def test_pbm_not_authorized(self):
        cert, _ = self.enrol("pbm-victim")
        _, rp = self.rr("pbm-rr", cert, "pbm")
        status, fails, texts = rp_status(rp)
        self.assertEqual((status, fails), (2, ["notAuthorized"]))
        self.assertIn("PBM protection is not accepted for rr", texts[0])
        self.assertEqual(self.gw.denials("rr_pbm"), [("default", "pbm:demo-device", texts[0])])

    def test_several_certificates_on_record(self):
        """An rr naming two certificates (the holder's own and another client's) is refused by OpenSSL 3.0
        itself, before the gateway's rr callback runs, once the protection verified: neither is revoked, and the
        attempt is on the audit record all the same (`rejected`, naming its signer, no serial: it named two)."""
        from test_errors import load, resign
        cert, key = self.enrol("several")
        other, _ = self.enrol("several-other")
        own = load(self.gw.make_request("several-rr", "rr", auth=(cert, key),
                                        extra=("-oldcert", cert, "-revreason", "1")).read_bytes())
        theirs = load(self.gw.make_request("several-other-rr", "rr", auth=(cert, key),
                                           extra=("-oldcert", other, "-revreason", "1")).read_bytes())
        own["body"]["rr"].append(theirs["body"]["rr"][0])
        sent = self.gw.dir / "several.sent.der"
        sent.write_bytes(encoder.encode(resign(own, key)))
        a = harness.decode_cmp(self.gw.curl(data=sent).body)
        self.assertEqual((a.body_type, a.status, a.fail_info), ("error", 2, ["badRequest"]), a)
        self.assertEqual(a.status_strings, ["name exactly one certificate per revocation request"], a)
        tid = own["header"]["transactionID"].asOctets().hex()
        records = [r for r in audit(self.gw, "rejected") if r.get("tid", "").lower() == tid]
        self.assertEqual([(r["body_type"], r["identity"], r.get("serial")) for r in records],
                         [("rr", "/CN=several", None)], records)
        self.assertIn("badRequest", records[0]["status"])
        self.assertFalse([r for r in audit(self.gw, "intent") if r.get("tid", "").lower() == tid])
        entries = crl_entries(self.gw, "several")
        self.assertNotIn(serial_hex(cert), entries)
        self.assertNotIn(serial_hex(other), entries)

    def test_client_rr_with_reason(self):
        """The project's client (OpenSSL's API, OSSL_CMP_OPT_REVOCATION_REASON) revokes its own certificate."""
        cert, key = self.enrol("api-holder")
        d = self.gw.dir
        p = harness.run([CLIENT_BIN, "--url", self.gw.url(), "--cafile", d / "ca.pem", "--tls-cert",
                         d / "client.pem", "--tls-key", d / "client.key", "--cert", cert, "--key", key,
                         "--rspout", d / "api-rr.der", "rr", "--revoke", cert, "--reason", "5"])
        self.assertIn("revoked", p.stdout.decode())
        self.assertEqual(rp_status((d / "api-rr.der").read_bytes())[0], 0)
        self.assertEqual(crl_entries(self.gw, "api").get(serial_hex(cert)), 5)


def named_as(path, issuer_pem, serial):
    """A certificate file that names |serial| under the subject of |issuer_pem| (what an rr sends is
    issuer and serial only); signed by a throwaway key."""
    issuer = x509.load_pem_x509_certificate(issuer_pem.read_bytes()).subject
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=named"))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class RevocationAtVault(harness.GatewayTestCase):
    """Two roles on one Vault mount; the RA is an RA of role vault-b only."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        base = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices", allowed_san_types=["dns"])
        cfg["roles"]["vault-a"] = dict(base, authorization={"allowed_common_names": ["a-*.example.com"]})
        cfg["roles"]["vault-b"] = dict(base, authorization={"allowed_common_names": ["b-*.example.com"],
                                                            "ra_subjects": [RA_SUBJECT]})

    def p10cr(self, role, name):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-addext",
                     "subjectAltName=DNS:%s" % name, "-out", csr])
        return self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr]).cert

    def ra_rr(self, name, victim, role="vault-b"):
        """`openssl cmp -cmd rr` on |role|'s path signed by the RA: the decoded rp."""
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path",
                     "pki/roles/%s/cmp" % role, "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem",
                     "-tls_cert", d / "client.pem", "-tls_key", d / "client.key", "-cert", d / "signer.pem",
                     "-key", d / "signer.key", "-oldcert", victim, "-revreason", "4", "-rspout", rsp],
                    cwd=d, check=False)
        if not rsp.exists():
            raise harness.Failure("no rp for %s" % name)
        return rp_status(rsp.read_bytes())

    def revoked_at_vault(self, cert):
        serial = vaultenv.colon_serial(harness.serial_hex(cert))
        return self.vault.api("GET", "/v1/pki/cert/%s" % serial)["data"]["revocation_time"] != 0

    def test_ra_of_another_role_refused(self):
        victim = self.p10cr("vault-a", "a-1.example.com")
        text = ("an RA of role vault-b may revoke only certificates of its role: common name a-1.example.com is not "
                "allowed on role vault-b (allowed: b-*.example.com)")
        self.assertEqual(self.ra_rr("b-ra-of-a", victim), (2, ["notAuthorized"], [text]))
        self.assertIn(("vault-b", RA_SUBJECT, text), self.gw.denials("rr_ra_outside_role"))
        self.assertFalse(self.revoked_at_vault(victim))
        refused = [r for r in audit(self.gw, "rejected") if int(r.get("serial", "0"), 16) ==
                   int(harness.serial_hex(victim), 16)]
        self.assertEqual(len(refused), 1)  # the attempt is on record, and no intent to revoke
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          int(harness.serial_hex(victim), 16)])

    def test_wrong_issuer_with_a_valid_serial_refused(self):
        victim = self.p10cr("vault-b", "b-1.example.com")
        mark = self.vault.mark()  # the class's other tests revoke too
        serial = int(harness.serial_hex(victim), 16)
        d = self.gw.dir
        # the mount's second issuer did not issue it: Vault would revoke the serial all the same
        other = named_as(d / "b-1-other-issuer.pem", d / "vault-ca2.pem", serial)
        self.assertEqual(self.ra_rr("b-ra-wrong-issuer", other), (2, ["badCertId"], [
            "the certificate with serial %s was not issued by the CA the revocation request names: check issuer "
            "and serial" % harness.serial_hex(victim)]))
        # the demo root is no CA of this upstream: once the rr went to the role's upstream anyway
        root = named_as(d / "b-1-root.pem", d / "ca.pem", serial)
        self.assertEqual(self.ra_rr("b-ra-root", root), (2, ["badCertId"], [
            "the certificate was not issued by this route's CA"]))
        self.assertFalse(self.revoked_at_vault(victim))
        self.assertFalse(self.vault.since(mark, "/revoke"))
        # the twin: the RA of its own role, the right issuer
        self.assertEqual(self.ra_rr("b-ra-of-b", victim)[0], 0)
        self.assertTrue(self.revoked_at_vault(victim))
        # once more: Vault would revoke it again without a word, and the audit log hold it twice
        self.assertEqual(self.ra_rr("b-ra-again", victim), (2, ["certRevoked"], ["the certificate is already revoked"]))
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 1)
        # its one log line says so, and that the gateway's own record told: Vault is not asked
        self.assertEqual(already_revoked_sources(self.gw, victim), ["gateway"])
        # one revoked at Vault by its operator: Vault's status of the certificate the RA named tells, and the
        # gateway keeps that revocation as its own from then on
        revoked = self.p10cr("vault-b", "b-2.example.com")
        self.vault.api("POST", "/v1/pki/revoke", {"serial_number": vaultenv.colon_serial(harness.serial_hex(revoked))})
        mark = self.vault.mark()
        self.assertEqual(self.ra_rr("b-ra-revoked", revoked), (2, ["certRevoked"], ["the certificate is already "
                                                                                     "revoked"]))
        self.assertEqual(self.ra_rr("b-ra-revoked-again", revoked)[1], ["certRevoked"])
        self.assertEqual(already_revoked_sources(self.gw, revoked), ["ra_target", "gateway"])
        self.assertFalse(self.vault.since(mark, "/revoke"))

    def test_unknown_serial_refused(self):
        """An RA names a serial the CA never issued, under the CA's own name: nothing goes to Vault's revoke."""
        self.p10cr("vault-b", "b-3.example.com")  # the mount has issued something: the serial below is not it
        d = self.gw.dir
        ghost = named_as(d / "b-ghost.pem", d / "vault-ca.pem", 0x7A11C0DE5EEDF00D)
        mark = self.vault.mark()
        self.assertEqual(self.ra_rr("b-ra-ghost", ghost), (2, ["badCertId"], [
            "the CA has issued no certificate with serial 7a11c0de5eedf00d: check issuer and serial"]))
        self.assertFalse(self.vault.since(mark, "/revoke"))

    def test_lookup_failure_refuses(self):
        victim = self.lookup_answered("b-2.example.com", 500)
        self.assertFalse(self.revoked_at_vault(victim))

    def test_lookup_without_route_is_the_gateways(self):
        """Vault's router answers the lookup 404 (its mount gone or renamed): not a certificate Vault does not
        know (its own 404 names nothing), but the gateway's configuration: the client retries later."""
        victim = self.lookup_answered("b-4.example.com", 404)
        self.assertIn(("error", "vault", "/v1/pki/cert/" + vaultenv.colon_serial(harness.serial_hex(victim))),
                      self.no_route_lines())

    def lookup_answered(self, name, status):
        """An RA's rr for a fresh certificate |name| of vault-b while Vault answers its lookup with HTTP
        |status|: refused, the client told to retry later. The certificate."""
        victim = self.p10cr("vault-b", name)
        self.vault.control({"force_status": status, "match": "/cert/"})
        try:
            got = self.ra_rr("ra-lookup-" + name, victim)
        finally:
            self.vault.control({})
        self.assertEqual(got, (2, ["systemUnavail"], [
            "the certificate to revoke cannot be looked up at the CA now; retry later"]))
        return victim

    def test_revoke_without_route_is_the_gateways(self):
        """Vault's router answers the revocation 404 (its mount gone or renamed): not an unknown certificate,
        which Vault answers 400 and a client does not retry, but the gateway's configuration: retry later,
        without Vault's words (they name its paths), which an error line keeps with the upstream and path."""
        _, rp, records, lines, more = self.revoke_answered("b-ra-revoke-no-route", 404)
        why = "Vault has no such path (HTTP 404): the gateway's configuration is wrong"
        self.assertEqual(rp, (2, ["systemUnavail"], ["the CA could not revoke the certificate now (%s); retry later"
                                                     % why]))
        self.assertEqual(records, [OUTCOME_UNKNOWN + why])  # answered: what passed it on is not known
        self.assertEqual(lines, [("outcome unknown", why)])
        self.assertEqual(more, {"systemUnavail": 1})
        self.assertIn(("error", "vault", "/v1/pki/revoke"), self.no_route_lines())

    def no_route_lines(self):
        """(level, upstream, path) of the log's vault_no_route lines, each saying what Vault's router said."""
        lines = [e for e in self.gw.log_lines() if e.get("event") == "vault_no_route"]
        for e in lines:
            self.assertIn("no handler for route", e["reason"])
        return [(e["level"], e["upstream"], e["path"]) for e in lines]

    def revoke_answered(self, name, status):
        """An RA's rr for a fresh certificate of vault-b while Vault answers its revoke with HTTP |status|:
        the decoded rp, then what the audit log (revoke_failed) and the log (rr_revoke_failed) say of it, and
        how many more rr rejections the metrics count, by failInfo. The certificate stays valid at Vault."""
        victim = self.p10cr("vault-b", "%s.example.com" % name)
        counted = self.rr_rejections()
        self.vault.control({"force_status": status, "match": "/revoke"})
        try:
            rp = self.ra_rr(name, victim)
        finally:
            self.vault.control({})
        self.assertFalse(self.revoked_at_vault(victim))
        serial = int(harness.serial_hex(victim), 16)
        records = [r["status"] for r in audit(self.gw, "revoke_failed") if int(r.get("serial", "0"), 16) == serial]
        lines = [(e["outcome"], e["reason"]) for e in self.gw.log_lines()
                 if e.get("event") == "rr_revoke_failed" and int(e.get("serial", "0"), 16) == serial]
        more = {k: v - counted[k] for k, v in self.rr_rejections().items() if v != counted[k]}
        return victim, rp, records, lines, more

    def rr_rejections(self):
        """The rr rejections of role vault-b the metrics count, by failInfo."""
        return {fail: harness.metric(self.gw, "cmpgw_requests_total", 0, role="vault-b", body="rr",
                                     outcome="rejection", fail_info=fail) for fail in ("badRequest", "systemUnavail")}

    def test_revoke_failure_refuses(self):
        """Vault fails the revocation itself (500): the client is told to retry, and the metrics say that it may
        pass later; the audit log and the log that the outcome is unknown (a 500 of what may have passed the
        request on to Vault): once, they said "not revoked"."""
        _, (status, fails, texts), records, lines, more = self.revoke_answered("b-ra-revoke-down", 500)
        self.assertEqual((status, fails), (2, ["systemUnavail"]))
        self.assertRegex(texts[0], r"^the CA could not revoke the certificate now \(.+\); retry later$")
        self.assertEqual(records, [OUTCOME_UNKNOWN + "Vault failed: internal error (HTTP 500)"])
        self.assertEqual(lines, [("outcome unknown", "Vault failed: internal error (HTTP 500)")])
        self.assertEqual(more, {"systemUnavail": 1})

    def test_revoke_refused_for_good(self):
        """Vault refuses the revocation itself (400, as for a serial it knows in no form): retrying will not
        help, and the client is told so (badRequest), without Vault's words, which the audit log and the log
        keep. Once, the client was told to retry later, forever."""
        victim, rp, records, lines, more = self.revoke_answered("b-ra-revoke-refused", 400)
        self.assertEqual(rp, (2, ["badRequest"], [
            "the CA refused to revoke the certificate with serial %s; retrying will not help: ask the CA's "
            "operator why" % harness.serial_hex(victim)]))
        self.assertEqual(records, ["not revoked (refused for good): Vault refused: forced status (HTTP 400)"])
        self.assertEqual(lines, [("refused for good", "Vault refused: forced status (HTTP 400)")])
        self.assertEqual(more, {"badRequest": 1})


class RaNamesAtVault(harness.GatewayTestCase):
    """Three roles on one Vault mount, each with the demo RA: servers (DNS names only), servers-bare (the
    same, exclude_cn_from_sans: a certificate with its host name in the CN alone) and people (email addresses
    only). A certificate's names are judged by the RA's role as that role would have issued them: a DNS
    name that copies the CN is a DNS name all the same, which people never issues (once a copy of the CN
    passed whatever the SAN types said, and the RA of people revoked any server certificate of the mount),
    and a host name CN is the DNS name Vault copies it to for people, carried or not."""

    ra_rr = RevocationAtVault.ra_rr
    revoked_at_vault = RevocationAtVault.revoked_at_vault

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        base = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices")
        servers = {"allowed_dns_names": ["*.example.com"], "ra_subjects": [RA_SUBJECT]}
        cfg["roles"]["servers"] = dict(base, allowed_san_types=["dns"], authorization=servers)
        cfg["roles"]["servers-bare"] = dict(base, allowed_san_types=["dns"], exclude_cn_from_sans=True,
                                            authorization=servers)
        cfg["roles"]["people"] = dict(base, allowed_san_types=["email"], authorization={
            "allowed_emails": ["*@example.com"], "ra_subjects": [RA_SUBJECT]})

    def p10cr(self, role, name, san=True):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-out", csr] +
                    (["-addext", "subjectAltName=DNS:%s" % name] if san else []))
        return self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr]).cert

    def assert_refused_then_twin(self, victim, why):
        """The RA of people is refused |why| and nothing goes to Vault's revoke; the RA of servers revokes."""
        mark = self.vault.mark()
        name = x509.load_pem_x509_certificate(victim.read_bytes()).subject.rfc4514_string()[3:]
        self.assertEqual(self.ra_rr("people-ra-" + name, victim, role="people"), (2, ["notAuthorized"], [
            "an RA of role people may revoke only certificates of its role: " + why]))
        self.assertFalse(self.vault.since(mark, "/revoke"))
        self.assertFalse(self.revoked_at_vault(victim))
        self.assertEqual(self.ra_rr("servers-ra-" + name, victim, role="servers")[0], 0)
        self.assertTrue(self.revoked_at_vault(victim))

    def test_dns_copy_of_the_cn(self):
        victim = self.p10cr("servers", "www-1.example.com")
        self.assert_refused_then_twin(victim, "subjectAltName type DNS name is not allowed on role people")

    def test_host_name_cn_without_its_copy(self):
        victim = self.p10cr("servers-bare", "www-2.example.com", san=False)
        with self.assertRaises(x509.ExtensionNotFound):  # Vault copied nothing: the CN alone names it
            x509.load_pem_x509_certificate(victim.read_bytes()).extensions.get_extension_for_class(
                x509.SubjectAlternativeName)
        self.assert_refused_then_twin(victim, "subjectAltName type DNS name is not allowed on role people (the "
                                      "common name, which the CA copies into the subjectAltNames)")


class HolderRevokedAtVault(harness.GatewayTestCase):
    """The holder's rr for a certificate Vault has revoked already, through its own API or a CRL the
    gateway read before that: Vault answers a revocation of a revoked serial as it answers the first
    (200, the first revocation_time), so the client was told "accepted" and the audit log got a second
    revocation, with the client's reason, of a certificate the CA had revoked with another. It is now
    answered certRevoked from the upstream's status, and Vault is not asked to revoke; that revocation is on
    record as one (once, it was a refusal, and the certificate went on authenticating). A certificate
    revoked through the gateway is refused from the gateway's own record, which refuses it as the signer
    of any request, without a word to Vault. With "check_revocation" false here (nothing is read about a signer's
    status), and in the subclass true (a CRL read before the revocation, kept for minutes)."""

    check_revocation = False

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream(check_revocation=cls.check_revocation)
        cfg["roles"]["vault-h"] = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices",
                                       allowed_san_types=["dns"])

    def issue(self, name, auth="sig"):
        """A certificate of role vault-h for /CN=|name| and its key; the p10cr signed by |auth|."""
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-out", csr])
        extra = ["-csr", csr] + (["-extracerts", self.gw.dir / "vault-ca.pem"] if auth != "sig" else [])
        return self.gw.cmp("p10cr", name, auth=auth, path="pki/roles/vault-h/cmp", extra=extra).cert, key

    def holder(self, name, cert, key):
        """The rr signed by |cert| itself on role vault-h's path: (status, failInfo, texts)."""
        first = self.gw.cmp("rr", name, auth=(cert, key), path="pki/roles/vault-h/cmp", expect_cert=False,
                            extra=["-extracerts", self.gw.dir / "vault-ca.pem", "-oldcert", cert, "-revreason",
                                   "1"]).first  # keyCompromise
        return first.status, first.fail_info, first.status_strings

    def records(self, cert, kind):
        return [r for r in audit(self.gw, kind) if int(r.get("serial", "0"), 16) == int(harness.serial_hex(cert), 16)]

    def test_revoked_at_vault(self):
        cert, key = self.issue("h-1.example.com")
        self.issue("h-1-next.example.com", auth=(cert, key))  # where its status is checked, the CRL read now
        # the CA's operator
        self.vault.api("POST", "/v1/pki/revoke", {"serial_number": vaultenv.colon_serial(harness.serial_hex(cert))})
        mark = self.vault.mark()
        self.assertEqual(self.holder("h-1-rr", cert, key), (2, ["certRevoked"], ["the certificate is already "
                                                                                  "revoked"]))
        self.assertFalse(self.vault.since(mark, "/revoke"))
        self.assertFalse(self.records(cert, "intent"))
        # a revocation confirmed at the CA: on record as such (not a refusal), and kept by the gateway
        self.assertEqual([r["status"] for r in self.records(cert, "revoked")],
                         ["revoked at the CA already (the CA's status of the certificate); the CA keeps its own "
                          "reason"])
        self.assertFalse(self.records(cert, "rejected"))
        self.assertEqual(already_revoked_sources(self.gw, cert), ["upstream"])  # Vault's status told
        # refused as a signer from now on, by the gateway's record, whatever the upstream reads of its status
        res = self.gw.cmp("p10cr", "h-1-after", auth=(cert, key), path="pki/roles/vault-h/cmp", expect_cert=False,
                          extra=["-csr", self.gw.dir / "h-1-next.example.com.csr",
                                 "-extracerts", self.gw.dir / "vault-ca.pem"])
        self.assert_rejected(res, "certRevoked",
                             "the signer certificate (serial %s) is revoked" % harness.serial_hex(cert).lower())
        self.assertEqual(self.holder("h-1-rr-again", cert, key), (2, ["certRevoked"], ["the certificate is already "
                                                                                        "revoked"]))
        self.assertEqual(already_revoked_sources(self.gw, cert), ["upstream", "gateway"])
        self.assertFalse(self.vault.since(mark, "/revoke"))

    def test_revoked_through_the_gateway(self):
        """The twin: a certificate Vault has not revoked is revoked, once; its holder asking again is told it
        is revoked already, from the gateway's own record of it, and Vault hears of it no more."""
        cert, key = self.issue("h-2.example.com")
        mark = self.vault.mark()
        self.assertEqual(self.holder("h-2-rr", cert, key), (0, [], []))
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 1)
        status, fails, texts = self.holder("h-2-rr-again", cert, key)
        self.assertEqual((status, fails, texts), (2, ["certRevoked"], ["the certificate is already revoked"]))
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 1)
        self.assertEqual(len(self.records(cert, "revoked")), 1)
        self.assertEqual(already_revoked_sources(self.gw, cert), ["gateway"])  # its own record told


class HolderRevokedAtVaultChecked(HolderRevokedAtVault):
    check_revocation = True


class RevokedAcrossRestart(harness.GatewayTestCase):
    """With "cmp.revoked_file", a certificate its holder revoked through cmpgw is still refused after a
    restart for kur and ir, and its holder's rr again is told it is revoked already, though its upstream
    checks no revocation (a restart once let it in again). With "cmp.max_revoked" 1 the set is then full: a further revocation stands at the CA, is
    logged revocation_not_kept, and its certificate is refused only while the gateway remembers it (not across
    a restart; with a shared state, while the revocation's mark lives in Redis, restart or not), then left to
    a CRL nobody reads."""

    rr = Revocation.rr

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["upstreams"]["local"]["check_revocation"] = False
        cfg["cmp"] = {"revoked_file": "revoked.list", "max_revoked": 1}

    def test_revoked_refused_after_restart(self):
        cert, key = self.enrol("held")
        other, other_key = self.enrol("other")
        self.assertEqual(self.rr("held-rr", cert, (cert, key))[0], 0)
        self.gw.stop()
        self.gw.start()
        refused = "the signer certificate (serial %s) is revoked" % harness.serial_hex(cert).lower()
        kur = self.gw.cmp("kur", "held-kur", auth=(cert, key), newkey=self.newkey("held-new"),
                          extra=("-implicit_confirm",), expect_cert=False)
        self.assert_cmp_error(kur.first, ("kup",), "certRevoked", refused)
        ir = self.gw.cmp("ir", "held-ir", auth=(cert, key), newkey=self.newkey("held-ir"), subject="/CN=held",
                         extra=("-implicit_confirm",), expect_cert=False)
        self.assert_rejected(ir, "certRevoked", refused)
        status, fails, texts = rp_status(self.rr("held-rr-again", cert, (cert, key))[1])
        self.assertEqual((status, fails, texts), (2, ["certRevoked"], ["the certificate is already revoked"]))

        self.assertEqual(self.rr("other-rr", other, (other, other_key))[0], 0)
        lines = [line for line in self.gw.log_lines() if line.get("event") == "revocation_not_kept"]
        self.assertEqual([(line["level"], line["serial"], line["reason"], line["msg"]) for line in lines], [(
            "error", harness.serial_hex(other).lower(),
            "this instance keeps 1 unexpired revocations already (cmp.max_revoked)",
            "this instance refuses this certificate for twice its upstream's timeout plus 15 s, the others at most "
            "until the revocation's mark expires; then only once its CA's CRL lists it" if harness.STATE == "redis" else
            "this instance refuses this certificate for twice its upstream's timeout plus 15 s, then only once its "
            "CA's CRL lists it")])
        ir = self.gw.cmp("ir", "other-ir", auth=(other, other_key), newkey=self.newkey("other-ir"),
                         subject="/CN=other", extra=("-implicit_confirm",), expect_cert=False)
        self.assert_rejected(ir, "certRevoked",
                             "the signer certificate (serial %s) is revoked" % harness.serial_hex(other).lower())
        self.gw.stop()
        self.gw.start()
        if harness.STATE == "redis":  # the revocation's mark, left "done" in Redis, outlives the restart
            ir = self.gw.cmp("ir", "other-ir-2", auth=(other, other_key), newkey=self.newkey("other-ir-2"),
                             subject="/CN=other", extra=("-implicit_confirm",), expect_cert=False)
            self.assert_rejected(ir, "certRevoked",
                                 "the signer certificate (serial %s) is revoked" % harness.serial_hex(other).lower())
            return
        self.gw.cmp("ir", "other-ir-2", auth=(other, other_key), newkey=self.newkey("other-ir-2"),
                    subject="/CN=other", extra=("-implicit_confirm",))

    def test_writable_file_refused(self):
        """A revoked_file its group may write is refused by `cmpgw check` and by the start, with the mode and
        the fix: whoever may write it could refuse any device's certificate, or the next start."""
        self.gw.stop()
        listed = self.gw.dir / "revoked.list"
        listed.chmod(0o660)
        try:
            p = harness.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.gw.config_path)], check=False)
            why = "is writable by group or others (mode 660): make it 0600"
            self.assertEqual(p.returncode, 78)
            self.assertIn('cmp.revoked_file: "%s" %s' % (listed, why), p.stderr.decode())
            rc, err = self.gw.start_refused()
            self.assertEqual(rc, 78, err)  # the configuration refused: not restarted (cmpgw.service)
            self.assertIn(why, err)  # a JSON log line
        finally:
            listed.chmod(0o600)
            self.gw.start()


def make_ra(d, name, subject, issuer):
    """An RA certificate (digitalSignature, id-kp-cmcRA) for |subject| that the CA |issuer| (a file stem in
    |d|) signs: |name|.pem and |name|.key."""
    harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", d / ("%s.key" % name), "-subj", subject, "-out",
                 d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=1.3.6.1.5.5.7.3.28\nsubjectKeyIdentifier=hash\n"
                                       "authorityKeyIdentifier=keyid\n")
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / ("%s.pem" % issuer), "-CAkey",
                 d / ("%s.key" % issuer), "-days", "30", "-extfile", d / ("%s.ext" % name), "-out",
                 d / ("%s.pem" % name)])
    return d / ("%s.pem" % name), d / ("%s.key" % name)


def make_vendor(d):
    """A second CA the role trusts for enrolment (a vendor's or bootstrap CA: vendor.pem/.key), and an RA
    certificate it minted with a subject the role's ra_subjects admit and the id-kp-cmcRA usage."""
    harness.genkey(d / "vendor.key")
    harness.run(["openssl", "req", "-new", "-x509", "-key", d / "vendor.key", "-subj", "/O=vendor/CN=vendor root",
                 "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign", "-out", d / "vendor.pem"])
    return make_ra(d, "vendor-ra", VENDOR_RA_SUBJECT, "vendor")


VENDOR_RA_SUBJECT = "/O=cmpgw demo/CN=ra-minted"
TEXT_RA_UNTRUSTED = ("the RA certificate was not issued by a CA of role default's upstreams, nor does it chain to a "
                     "trust entry the role names in ra_trust")


class RevokedTwinOfAnotherCa(harness.GatewayTestCase):
    """Two CAs of one name (a migration's old and new CA, a CA rekeyed): the demo's issuing CA ("local") and
    another under the same subject with a key of its own ("local2"), each of which issued a certificate of
    one serial. The holder of the first revokes it through cmpgw: the other CA's certificate still
    authenticates (the gateway names a revocation by issuer, CA key and serial; it once named it by issuer
    and serial alone and refused both). An entry by issuer and serial as a gateway of the earlier version
    writes it (cmp.revoked_file's line, or Redis's revoked: key holding "1") still refuses both."""

    rr = Revocation.rr
    MARK_OFFSET = 253402300800  # a marked line's notAfter is past any X.509 time by this

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        harness.keep_store(cfg, gw)
        cfg["upstreams"]["local"]["check_revocation"] = False
        vaultenv.sign_cert(d, "issuing2", "/O=cmpgw demo/CN=cmpgw demo issuing CA", "ca", vaultenv.ca_ext())
        cfg["upstreams"]["local2"] = {"type": "local", "cert": "issuing2.pem", "key": "issuing2.key",
                                      "chain": "ca.pem", "check_revocation": False}
        if harness.STATE != "redis":
            cfg["cmp"] = {"revoked_file": "revoked.list"}

    def twin_of(self, cert, name):
        """A certificate of the other CA with |cert|'s issuer name and serial, for CN=|name|: (cert, key)."""
        d = self.gw.dir
        key = self.newkey(name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-out", d / ("%s.csr" % name)])
        (d / ("%s.ext" % name)).write_text("keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                                           "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / "issuing2.pem", "-CAkey",
                     d / "issuing2.key", "-set_serial", "0x" + harness.serial_hex(cert), "-days", "30", "-sha256",
                     "-extfile", d / ("%s.ext" % name), "-out", d / ("%s.pem" % name)])
        twin = d / ("%s.pem" % name)
        a, b = (x509.load_pem_x509_certificate(Path(f).read_bytes()) for f in (cert, twin))
        self.assertEqual((a.issuer, a.serial_number), (b.issuer, b.serial_number))
        return twin, key

    def ir_as(self, name, cert, key):
        """An ir signed with |cert| (its CA's certificate sent along): the result."""
        return self.gw.cmp("ir", name, auth=(cert, key), newkey=self.newkey(name), subject="/CN=%s" % name,
                           extra=("-implicit_confirm", "-untrusted", self.gw.dir / "issuing2.pem"), expect_cert=False)

    def assert_signer_revoked(self, res, cert):
        self.assert_rejected(res, "certRevoked", "the signer certificate (serial %s) is revoked" %
                             harness.serial_hex(cert).lower())

    def as_an_earlier_gateway_writes_it(self):
        """The entry by issuer and serial the revocation left, made one a gateway of the earlier version
        writes: unmarked."""
        if harness.STATE == "redis":
            import redisenv  # it imports harness
            redis = [p for p in self.peers if isinstance(p, redisenv.RedisServer)][0]
            keys = [k for k in redis.command_lines("KEYS", redisenv.PREFIX + "revoked:*")
                    if k.startswith(redisenv.PREFIX + "revoked:")]
            marked = [k for k in keys if redis.command_lines("GET", k)[1:] == ["keyed"]]
            self.assertEqual((len(keys), len(marked)), (2, 1), keys)
            self.assertEqual(redis.command("SET", marked[0], "1", "KEEPTTL"), "+OK")
            return
        self.gw.stop()
        listed = self.gw.dir / "revoked.list"
        lines = listed.read_text().splitlines()
        times = [int(line.split(" ")[1]) for line in lines]
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(sorted(t > self.MARK_OFFSET for t in times), [False, True], lines)
        listed.write_text("".join("%s %d\n" % (line.split(" ")[0], t - self.MARK_OFFSET if t > self.MARK_OFFSET else t)
                                  for line, t in zip(lines, times)))
        self.gw.start()

    def test_revoking_one_leaves_its_twin(self):
        cert, key = self.enrol("twin-a")
        twin, twin_key = self.twin_of(cert, "twin-b")
        self.assertIsNotNone(self.ir_as("twin-b-before", twin, twin_key).cert)
        self.assertEqual(self.rr("twin-a-rr", cert, (cert, key))[0], 0)
        self.assert_signer_revoked(self.ir_as("twin-a-after", cert, key), cert)
        self.assertIsNotNone(self.ir_as("twin-b-after", twin, twin_key).cert)
        self.as_an_earlier_gateway_writes_it()
        self.assert_signer_revoked(self.ir_as("twin-b-earlier", twin, twin_key), twin)
        self.assert_signer_revoked(self.ir_as("twin-a-earlier", cert, key), cert)


class RaOfTwoCasOfOneName(harness.GatewayTestCase):
    """A migration whose "from" ("local2": no store, so no lookup by serial) and "to" ("local", the demo's
    issuing CA with its store) have CAs of one name and another key each. An RA's rr names issuer and
    serial only: a serial "to" issued may have been issued by "from" too (a device's, perhaps for a
    compromised key), which "from" cannot say. The RA's rr is refused (rr_ra_no_lookup) and "to"'s
    certificate stays valid; once, "to" revoked it and the RA was told the certificate it named was. The
    holder, signing with its certificate, still revokes it."""

    rr = Revocation.rr
    twin_of = RevokedTwinOfAnotherCa.twin_of

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        harness.keep_store(cfg, gw)
        vaultenv.sign_cert(d, "issuing2", "/O=cmpgw demo/CN=cmpgw demo issuing CA", "ca", vaultenv.ca_ext())
        cfg["upstreams"]["local2"] = {"type": "local", "cert": "issuing2.pem", "key": "issuing2.key",
                                      "chain": "ca.pem", "check_revocation": False}
        role = cfg["roles"]["default"]
        role["upstream"] = "local2"
        role["migration"] = {"name": "same-name", "from": "local2", "to": "local", "mode": "live",
                             "cohort": {"percent": 100}}
        role["authorization"] = {"ra_subjects": [RA_SUBJECT]}

    def test_ra_refused_holder_revokes(self):
        d = self.gw.dir
        cert, key = self.enrol("two-cas")  # by "to", the cohort being everyone
        self.assertEqual(x509.load_pem_x509_certificate(Path(cert).read_bytes()).issuer.rfc4514_string(),
                         "CN=cmpgw demo issuing CA,O=cmpgw demo")
        twin, _ = self.twin_of(cert, "two-cas-from")  # "from"'s certificate of that issuer name and serial
        text = ("an RA may revoke on this route only the certificate it signs with: the CA cannot look a certificate "
                "up by its serial")
        self.assertEqual(rp_status(self.rr("two-cas-ra", twin, (d / "signer.pem", d / "signer.key"))[1]),
                         (2, ["notAuthorized"], [text]))
        self.assertEqual(self.gw.denials("rr_ra_no_lookup"), [("default", RA_SUBJECT, text)])
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          int(harness.serial_hex(cert), 16)])
        self.assertEqual(rp_status(self.rr("two-cas-holder", cert, (cert, key))[1])[0], 0)


class RaOfAnotherCa(harness.GatewayTestCase):
    """A role that also trusts a vendor's CA (initial enrolment) does not give that CA its RAs: an RA
    certificate the vendor minted, with a subject ra_subjects admit and id-kp-cmcRA, revokes nothing (once
    it revoked any certificate of the role). RAs issued by a CA of the role's upstream (its issuing CA, the
    root above it) still revoke."""

    rr = Revocation.rr
    ra_trust = None

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        make_vendor(gw.dir)
        make_ra(gw.dir, "own-ra", "/O=cmpgw demo/CN=ra-own", "issuing")
        cfg["trust"]["vendor"] = {"ca_file": "vendor.pem", "revocation": "none"}
        role = cfg["roles"]["default"]
        role["trust"] = ["demo", "vendor"]
        role["authorization"] = {"ra_subjects": [RA_SUBJECT, "/O=cmpgw demo/CN=ra-*"]}
        if cls.ra_trust is not None:
            role["authorization"]["ra_trust"] = cls.ra_trust

    def vendor_rr(self, name):
        """A device's certificate, and the rp of the vendor-minted RA's rr for it."""
        d = self.gw.dir
        cert, _ = self.enrol(name)
        return cert, rp_status(self.rr(name + "-rr", cert, (d / "vendor-ra.pem", d / "vendor-ra.key"))[1])

    def test_vendor_ra(self):
        victim, rp = self.vendor_rr("vendor-victim")
        self.assertEqual(rp, (2, ["notAuthorized"], [TEXT_RA_UNTRUSTED]))
        self.assertNotIn(serial_hex(victim), crl_entries(self.gw, "vendor"))
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          int(serial_hex(victim), 16)])
        lines = [(e["role"], e["trust"]) for e in self.gw.log_lines() if e.get("event") == "rr_ra_untrusted"]
        self.assertEqual(lines, [("default", "vendor")])
        self.assertEqual(self.gw.denials("rr_ra_untrusted"), [("default", VENDOR_RA_SUBJECT, TEXT_RA_UNTRUSTED)])

    def test_own_ras_revoke(self):
        """The twins: an RA the upstream's issuing CA signed, and one the root above it signed."""
        d = self.gw.dir
        for name, ra in (("own", (d / "own-ra.pem", d / "own-ra.key")),
                         ("root", (d / "signer.pem", d / "signer.key"))):
            cert, _ = self.enrol("%s-ra-victim" % name)
            self.assertEqual(rp_status(self.rr("%s-ra-rr" % name, cert, ra)[1])[0], 0)
            self.assertEqual(crl_entries(self.gw, "%s-ra" % name).get(serial_hex(cert)), 1)


class RaTrustNamed(RaOfAnotherCa):
    """With "ra_trust" naming the vendor's entry, the operator says that CA issues RAs: its RA revokes."""

    ra_trust = ["vendor"]

    def test_vendor_ra(self):
        """The vendor's RA revokes; nothing is logged as refused."""
        victim, rp = self.vendor_rr("vendor-named-victim")
        self.assertEqual(rp[0], 0)
        self.assertEqual(crl_entries(self.gw, "vendor-named").get(serial_hex(victim)), 1)
        self.assertFalse([e for e in self.gw.log_lines() if e.get("event") == "rr_ra_untrusted"])
        self.assertFalse(self.gw.denials("rr_ra_untrusted"))


class RevocationAtCfssl(harness.GatewayTestCase):
    """cfssl 1.2 revokes by serial and authority key identifier, but cannot hand a certificate out by
    serial: the RA's role cannot be checked, so only the holder revokes."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.cfssl = cfsslenv.running(cls, gw.dir)
        cfg["upstreams"]["cfssl"] = cls.cfssl.upstream(check_revocation=False)
        cfg["roles"]["cfssl"] = dict(cfg["roles"]["default"], upstream="cfssl", upstream_role="devices",
                                     allowed_san_types=["dns"], authorization={"ra_subjects": [RA_SUBJECT]})

    def rr(self, name, victim, cert, key):
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path",
                     "pki/roles/cfssl/cmp", "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem",
                     "-tls_cert", d / "client.pem", "-tls_key", d / "client.key", "-cert", cert, "-key", key,
                     "-extracerts", d / "cfssl-ca.pem", "-oldcert", victim, "-revreason", "4", "-rspout", rsp],
                    cwd=d, check=False)
        return rp_status(rsp.read_bytes())

    def test_ra_refused_holder_revokes(self):
        d = self.gw.dir
        key = self.newkey("c-1.example.com")
        csr = d / "c-1.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=c-1.example.com", "-addext",
                     "subjectAltName=DNS:c-1.example.com", "-out", csr])
        cert = self.gw.cmp("p10cr", "c-1", path="pki/roles/cfssl/cmp", extra=["-csr", csr]).cert
        text = ("an RA may revoke on this route only the certificate it signs with: the CA cannot look a certificate "
                "up by its serial")
        self.assertEqual(self.rr("c-ra", cert, d / "signer.pem", d / "signer.key"), (2, ["notAuthorized"], [text]))
        self.assertEqual(self.gw.denials("rr_ra_no_lookup"), [("cfssl", RA_SUBJECT, text)])
        self.assertFalse([r for r in audit(self.gw, "intent") if int(r.get("serial", "0"), 16) ==
                          int(harness.serial_hex(cert), 16)])
        self.assertEqual(self.rr("c-holder", cert, cert, key)[0], 0)


class RevokedOnceWhenTheSetIsFull(harness.GatewayTestCase):
    """One instance, its revoked set full (cmp.max_revoked 1): the holder's two rrs of one cfssl certificate
    at once (each 2 s at cfssl, a relay holding what the gateway sends) reach cfssl once. The first's
    revocation is not kept (revocation_not_kept); the second, which waited for its mark, is answered
    certRevoked all the same, the gateway remembering the first for a while. Before, it found nothing in the
    set and revoked the certificate again (two revoked records, two accepted rps, cfssl holding the
    second's reason)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfsslenv.slow_route(cls, cfg, gw.dir)
        cfg["cmp"] = {"max_revoked": 1}

    def test_revoked_once(self):
        filler = cfsslenv.enrolled(self, "filler")
        self.assertEqual(cfsslenv.holder_rr(self.gw, "filler-rr", *filler, "1")[0], 0)  # the set is full from now on
        res, key, chain = cfsslenv.enrolled(self, "once")
        self.relay.slow(2)
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                asked = [pool.submit(cfsslenv.holder_rr, self.gw, name, res, key, chain, reason)
                         for name, reason in (("once-rr1", "1"), ("once-rr2", "4"))]
                rps = [f.result() for f in asked]
        finally:
            self.relay.slow(0)
        serial = harness.serial_hex(res.cert)
        revoked = [r for r in audit(self.gw, "revoked") if r.get("serial") == serial]
        self.assertEqual(len(revoked), 1, revoked)
        self.assertEqual(sorted(rps), [(0, [], []), (2, ["certRevoked"], ["the certificate is already revoked"])])
        reason = 1 if rps[0][0] == 0 else 4
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", reason))
        self.assertTrue(any(l.get("event") == "revocation_not_kept" and
                            l.get("serial", "").lower() == serial.lower() for l in self.gw.log_lines()),
                        self.gw.stderr()[-3000:])


    def test_refused_as_signer_at_once(self):
        """A certificate revoked while the set is full is refused as a signer right after (certRevoked, as one
        in the set), though cfssl checks no revocation and no CRL lists it: the gateway remembers it for a
        while. Before, only a second revocation of it looked there, and a p10cr signed with it got a new
        certificate. The twin: a certificate of the route not revoked still authenticates."""
        filler = cfsslenv.enrolled(self, "signer-filler")
        res, key, chain = cfsslenv.enrolled(self, "signer-gone")
        valid, valid_key, valid_chain = cfsslenv.enrolled(self, "signer-valid")
        self.assertEqual(cfsslenv.holder_rr(self.gw, "signer-filler-rr", *filler, "1")[0], 0)  # full from now on
        self.assertEqual(cfsslenv.holder_rr(self.gw, "signer-gone-rr", res, key, chain, "1")[0], 0)
        serial = harness.serial_hex(res.cert)
        self.assertTrue(any(l.get("event") == "revocation_not_kept" and
                            l.get("serial", "").lower() == serial.lower() for l in self.gw.log_lines()),
                        self.gw.stderr()[-3000:])
        renewed = self.renew("signer-gone", res.cert, key, chain)
        self.assert_rejected(renewed, "certRevoked", "the signer certificate (serial %s) is revoked" % serial.lower())
        self.assertIsNotNone(self.renew("signer-valid", valid.cert, valid_key, valid_chain).cert)

    def renew(self, name, cert, key, chain):
        """A p10cr for |name| on role "cfssl", a new key, signed with |cert| and |key|: its CmpResult."""
        d = self.gw.dir
        csr = d / ("%s-new.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", self.newkey("%s-new" % name), "-subj",
                     "/O=cmpgw e2e/CN=%s.example.com" % name, "-addext", "subjectAltName=DNS:%s.example.com" % name,
                     "-out", csr])
        return self.gw.cmp("p10cr", "%s-new" % name, auth=(cert, key), path="pki/roles/cfssl/cmp", expect_cert=False,
                           extra=("-csr", csr, "-implicit_confirm", "-untrusted", chain))

if __name__ == "__main__":
    harness.main()
