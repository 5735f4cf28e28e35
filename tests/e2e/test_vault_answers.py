"""A Vault answer out of range is refused whole, through the real gateway and the Vault-API test server
(tests/upstreams/vault_api_server.py, switches login_lease, sign_data, sign_warnings and trailing):

- a cert-auth login answer whose lease_duration is negative (the token would never be renewed) or
  2^32 (it would wrap to 0, "never expires"): no sign call is made, the client gets systemUnavail naming
  the field;
- a sign answer with a certificate but an expiration of -1, a ca_chain entry that is not a string,
  bytes after the JSON document, a second certificate after it in data.certificate, or 17 warnings
  (switch sign_warnings): the certificate is not delivered, the client gets systemFailure naming
  the field, and the audit log has no "issued" record for the transaction; the certificate the gateway
  reads out of the refused answer (Vault issued it all the same; with bytes after the document, from
  the whole JSON object before them) is on the audit log as "rejected" with its serial and revoked at
  Vault.

A sign answered with an error status (500; 503, which is otherwise sent again) that still holds a certificate
(switch sign_status: a CA that failed after signing) was issued all the same: it is sent once, not delivered,
on the audit log as "rejected" with its serial and revoked at Vault.

A certificate whose serial number RFC 5280 does not allow (zero, negative, more than 20 octets), which no
upstream revokes by serial, is not released either: systemFailure, on record as rejected and as not revoked.
Nor is one for another key than the requested one: on record as rejected and not_withdrawn, and not revoked
at Vault (it may be its holder's).

A ca_chain holding a CA that did not sign the certificate reaches the client without it; one holding a
certificate made of the root's name and key under a root of Vault's own, and that root, reaches it with the
root of issuer_ca instead. A certificate
signed by another CA under the root of issuer_ca, one Vault does not issue under, is not released; nor
is one Vault signed with SHA-1 (switch sign_hash).

A certificate whose serial is that of one revoked through the gateway (switch serial_number: a CA that
issues a serial again) is revoked on arrival wherever revocation goes by issuer and serial: it is not
released, and not revoked again. One whose serial is that of a certificate the gateway let through before, never revoked, is not
released either, nor revoked: that would revoke the earlier one.

A private key in a sign answer (data.private_key, or a PEM block of data.certificate) reaches neither the
client nor a log: the certificate is read alone, and a data.certificate holding the key alone is refused.

Each is asserted on the decoded CMP answer (PKIStatus rejection, failInfo, statusString) next to its twin
that issues once the switch is cleared.
"""
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402


class VaultAnswers(harness.GatewayTestCase):
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        vaultenv.token_and_login(cls, cfg, gw)

    def setUp(self):
        self.vault.control({})

    def p10cr(self, role, name, expect_cert):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        return self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr],
                           expect_cert=expect_cert)

    def issued_tids(self):
        return {r.get("tid") for r in harness.json_lines(self.gw.dir / "audit.log") if r.get("event") == "issued"}

    def test_login_lease_out_of_range(self):
        for i, (lease, text) in enumerate([
                (-1, "auth.lease_duration is -1, not 0 to 315360000"),
                (2 ** 32, "auth.lease_duration is 4294967296, not 0 to 315360000")]):
            with self.subTest(lease=lease):
                self.vault.control({"login_lease": lease})
                mark = self.vault.mark()
                res = self.p10cr("vault-login", "lease%d" % i, expect_cert=False)
                self.assert_rejected(res, "systemUnavail", "Vault cert login: the answer is refused: " + text)
                # only logins (the role read and the sign call each try one): nothing reached Vault's PKI
                self.assertEqual({e["path"] for e in self.vault.since(mark)}, {"/v1/auth/cert/login"})
        # the twin: the same login with the lease Vault states issues
        self.vault.control({})
        mark = self.vault.mark()
        res = self.p10cr("vault-login", "lease-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assertEqual(len(self.vault.since(mark, "/login")), 1)
        self.assertEqual(len(self.vault.since(mark, "/sign/devices")), 1)

    def records(self, tid):
        return [(r["event"], r.get("serial", "")) for r in harness.json_lines(self.gw.dir / "audit.log")
                if r.get("tid") == tid and r["event"] != "intent"]

    def test_sign_answer_out_of_range(self):
        cases = [  # (switches, reason)
            ({"sign_data": {"expiration": -1}}, "data.expiration is -1, not 1 to 253402300799"),
            ({"sign_data": {"ca_chain": [42]}}, "data.ca_chain[0] is an integer, not a string"),
            ({"trailing": "\n{\"data\":{}}"}, "not Vault JSON: trailing data after the JSON document"),
            # the certificate issued first, another after it: the one issued is still on record
            ({"certificate_after": (self.vault.dir / "vault-ca2.pem").read_text()},
             "data.certificate holds more than 1 certificate"),
            # warnings out of range beside a good certificate: Vault issued it all the same
            ({"sign_warnings": ["w%d" % n for n in range(17)]}, "warnings has 17 entries, more than 16"),
        ]
        for i, (state, text) in enumerate(cases):
            with self.subTest(state=state):
                self.vault.control(dict(state, match="/sign/"))
                mark = self.vault.mark()
                res = self.p10cr("vault", "sign%d" % i, expect_cert=False)
                self.assert_rejected(res, "systemFailure", "Vault's answer (HTTP 200) is refused: " + text)
                self.assertEqual(len(self.vault.since(mark, "/sign/")), 1)  # refused, not asked again
                tid = res.first.header["transactionID"].asOctets().hex()
                self.assertNotIn(tid, self.issued_tids())
                revokes = self.vault.since(mark, "/revoke")
                # Vault issued it: on record and revoked there, never forgotten
                harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
                revokes = self.vault.since(mark, "/revoke")
                self.assertEqual(len(revokes), 1, revokes)
                serial = revokes[0]["body"]["serial_number"].replace(":", "").lstrip("0")
                self.assertEqual([(e, s.lstrip("0")) for e, s in self.records(tid)],
                                 [("rejected", serial), ("revoked", serial)])
                at_vault = self.vault.api("GET", "/v1/pki/cert/%s" % revokes[0]["body"]["serial_number"])
                self.assertNotEqual(at_vault["data"]["revocation_time"], 0)
        self.vault.control({})
        res = self.p10cr("vault", "sign-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        self.assertIn(res.first.header["transactionID"].asOctets().hex(), self.issued_tids())

    def test_sign_error_status_with_certificate(self):
        """A 500 or a 503 whose body holds data.certificate beside its errors: once, the certificate was dropped
        (neither recorded nor revoked), and a 503 was sent again twice, each time issuing another. Twin: the
        same request answered 200 issues."""
        for st in (500, 503):
            with self.subTest(status=st):
                self.vault.control({"sign_status": st, "match": "/sign/"})
                mark = self.vault.mark()
                res = self.p10cr("vault", "status%d" % st, expect_cert=False)
                self.assert_rejected(res, "systemFailure")
                self.assertEqual(res.first.status_strings, [
                    "Vault's answer (HTTP %d) is refused: it holds a certificate beside an error status" % st])
                self.assertEqual(len(self.vault.since(mark, "/sign/")), 1)  # issued: not asked again
                tid = res.first.header["transactionID"].asOctets().hex()
                self.assertNotIn(tid, self.issued_tids())
                recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
                revokes = self.vault.since(mark, "/revoke")
                self.assertEqual(len(revokes), 1, revokes)
                serial = revokes[0]["body"]["serial_number"].replace(":", "").lstrip("0")
                self.assertEqual([(e, s.lstrip("0")) for e, s in recs], [("rejected", serial), ("revoked", serial)])
        self.vault.control({})
        res = self.p10cr("vault", "status-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)

    def test_sign_answer_serial_out_of_range(self):
        """A certificate for the requested key and names, within the role, signed by Vault's issuer, with a serial
        number of 21 octets, zero or negative: once released, its holder's rr was refused badCertId (Vault
        writes no such serial) and the audit log cut the 21 octets to 20. Not released: systemFailure naming
        the serial, on record as rejected and revoke_failed (nothing Vault could be asked) with the whole
        serial, which its operator revokes by hand. Twin: the same request answered by Vault itself issues."""
        d = self.gw.dir
        for name, serial, hexed in (("serial21", "0x" + "7f" * 21, "7f" * 21), ("serial0", "0", "0"),
                                    ("serialneg", "-5", "-05")):
            with self.subTest(serial=serial):
                key = self.newkey(name)
                csr = d / ("%s.csr" % name)
                harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
                (d / ("%s.ext" % name)).write_text(
                    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
                    "subjectAltName=DNS:%s.example.com\n" % name)
                harness.run(["openssl", "x509", "-req", "-in", csr, "-CA", self.vault.dir / "vault-ca.pem", "-CAkey",
                             self.vault.dir / "vault-ca.key", "-days", "1", "-sha256", "-set_serial", serial,
                             "-extfile", d / ("%s.ext" % name), "-out", d / ("%s.pem" % name)])
                self.vault.control({"sign_data": {"certificate": (d / ("%s.pem" % name)).read_text()},
                                    "match": "/sign/"})
                mark = self.vault.mark()
                res = self.gw.cmp("p10cr", name, path="pki/roles/vault/cmp", extra=["-csr", csr], expect_cert=False)
                self.assert_rejected(res, "systemFailure")
                self.assertEqual(res.first.status_strings, [
                    "the CA returned an unusable certificate (the certificate upstream vault returned is malformed: "
                    "its serial number is not a positive integer of at most 20 octets); it was not released"])
                tid = res.first.header["transactionID"].asOctets().hex()
                self.assertNotIn(tid, self.issued_tids())
                recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
                self.assertEqual(recs, [("rejected", hexed), ("revoke_failed", hexed)])
                self.assertEqual(self.vault.since(mark, "/revoke"), [])
        self.vault.control({})
        res = self.p10cr("vault", "serial-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)

    def test_sign_answer_for_another_key(self):
        """A certificate Vault's issuer signed for the requested names but another key (a CA answering with
        someone else's certificate): not released (systemFailure), on record as rejected and as not withdrawn
        (`not_withdrawn`, its serial there for an operator to check at the CA), and not revoked at Vault:
        it may be its holder's. Twin: the same request answered by Vault itself issues."""
        d, name = self.gw.dir, "otherkey"
        key, other = self.newkey(name), self.newkey(name + "-holder")
        for k, csr in ((key, d / ("%s.csr" % name)), (other, d / ("%s-holder.csr" % name))):
            harness.run(["openssl", "req", "-new", "-key", k, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        (d / ("%s.ext" % name)).write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
            "subjectAltName=DNS:%s.example.com\n" % name)
        harness.run(["openssl", "x509", "-req", "-in", d / ("%s-holder.csr" % name), "-CA",
                     self.vault.dir / "vault-ca.pem", "-CAkey", self.vault.dir / "vault-ca.key", "-days", "1",
                     "-sha256", "-set_serial", "0x5eed", "-extfile", d / ("%s.ext" % name),
                     "-out", d / ("%s-holder.pem" % name)])
        self.vault.control({"sign_data": {"certificate": (d / ("%s-holder.pem" % name)).read_text()},
                            "match": "/sign/"})
        mark = self.vault.mark()
        res = self.gw.cmp("p10cr", name, path="pki/roles/vault/cmp", extra=["-csr", d / ("%s.csr" % name)],
                          expect_cert=False)
        self.assert_rejected(res, "systemFailure")
        self.assertEqual(len(res.first.status_strings), 1, res.first)
        self.assertIn("another public key than requested", res.first.status_strings[0])
        tid = res.first.header["transactionID"].asOctets().hex()
        self.assertNotIn(tid, self.issued_tids())
        recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
        self.assertEqual(recs, [("rejected", "5eed"), ("not_withdrawn", "5eed")])
        kept = [r for r in harness.audit_records(self.gw, "not_withdrawn") if r.get("tid") == tid]
        self.assertEqual([r["status"] for r in kept], ["not revoked: the certificate the upstream returned does "
                                                       "not certify the requested key"])
        self.assertEqual(self.vault.since(mark, "/revoke"), [])
        self.vault.control({})
        res = self.p10cr("vault", "otherkey-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)

    def test_sign_answer_chain_trimmed(self):
        # ca_chain with a CA that did not sign the certificate (the mount's other issuer): the client gets
        # the chain the certificate was verified on (its issuer, then the root that signed that), not it
        d = self.vault.dir
        body = {f: "".join((d / f).read_text().strip().splitlines()[1:-1])
                for f in ("vault-ca.pem", "vault-ca2.pem", "ca.pem")}
        chain = [(d / f).read_text() for f in ("vault-ca2.pem", "vault-ca.pem", "ca.pem")]
        self.vault.control({"sign_data": {"ca_chain": chain}, "match": "/sign/"})
        res = self.p10cr("vault", "chain", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        sent = res.first.extra_certs_pem().replace("\n", "")
        self.assertIn(body["vault-ca.pem"], sent)
        self.assertIn(body["ca.pem"], sent)
        self.assertNotIn(body["vault-ca2.pem"], sent)

    def test_sign_answer_chain_forged_root(self):
        """ca_chain with a certificate Vault made of the demo root's name and key, signed by a root of Vault's
        own, and that root: no signature check tells it from a real cross-certificate. issuer_ca holds the
        demo root, so the chain climbs on to that one, and neither certificate of Vault's reaches the client.
        Twin: test_sign_answer_chain_trimmed, where ca_chain holds the demo root."""
        d = self.vault.dir
        w = self.gw.dir
        harness.genkey(w / "forged-root.key")
        harness.run(["openssl", "req", "-new", "-x509", "-key", w / "forged-root.key", "-subj", "/CN=forged root",
                     "-days", "2", "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", w / "forged-root.pem"])
        (w / "cross.ext").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                                     "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        # the demo root re-signed: its subject and key, issued by the forged root
        harness.run(["openssl", "x509", "-in", d / "ca.pem", "-CA", w / "forged-root.pem", "-CAkey",
                     w / "forged-root.key", "-set_serial", "7", "-days", "2", "-sha256", "-clrext",
                     "-extfile", w / "cross.ext", "-out", w / "cross.pem"])
        body = {f: "".join(p.read_text().strip().splitlines()[1:-1])
                for f, p in (("vault-ca", d / "vault-ca.pem"), ("root", d / "ca.pem"),
                             ("cross", w / "cross.pem"), ("forged", w / "forged-root.pem"))}
        chain = [p.read_text() for p in (d / "vault-ca.pem", w / "cross.pem", w / "forged-root.pem")]
        self.vault.control({"sign_data": {"ca_chain": chain}, "match": "/sign/"})
        res = self.p10cr("vault", "forged-chain", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        sent = res.first.extra_certs_pem().replace("\n", "")
        self.assertIn(body["vault-ca"], sent)
        self.assertIn(body["root"], sent)
        self.assertNotIn(body["cross"], sent)
        self.assertNotIn(body["forged"], sent)

    def test_sign_answer_by_a_ca_outside_issuer_ca(self):
        """A certificate for the requested key and names, valid and within the role, but signed by another CA
        under the root of issuer_ca (the demo's local issuing CA), which Vault sends in ca_chain: it chains to
        issuer_ca, yet Vault does not issue under that CA and could neither withdraw nor revoke it. Not
        released: systemFailure naming its issuer, on record as rejected, and nothing sent to Vault's revoke
        (revoke_failed: to revoke by hand at its issuer). Twin: the same request answered by Vault issues."""
        d = self.gw.dir
        key = self.newkey("foreign")
        csr = d / "foreign.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=foreign.example.com", "-out", csr])
        (d / "foreign.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "extendedKeyUsage=clientAuth\nsubjectAltName=DNS:foreign.example.com\n")
        harness.run(["openssl", "x509", "-req", "-in", csr, "-CA", d / "issuing.pem", "-CAkey", d / "issuing.key",
                     "-days", "1", "-sha256", "-extfile", d / "foreign.ext", "-out", d / "foreign.pem"])
        self.vault.control({"sign_data": {"certificate": (d / "foreign.pem").read_text(),
                                          "ca_chain": [(d / "issuing.pem").read_text()]}, "match": "/sign/"})
        mark = self.vault.mark()
        res = self.gw.cmp("p10cr", "foreign", path="pki/roles/vault/cmp", extra=["-csr", csr], expect_cert=False)
        self.assert_rejected(res, "systemFailure")
        self.assertEqual(res.first.status_strings, [
            "the CA returned an unusable certificate (the certificate upstream vault returned is signed by "
            "/O=cmpgw demo/CN=cmpgw demo issuing CA, not by a CA it issues under (issuer_ca)); it was not "
            "released"])
        tid = res.first.header["transactionID"].asOctets().hex()
        self.assertNotIn(tid, self.issued_tids())
        serial = harness.run(["openssl", "x509", "-in", d / "foreign.pem", "-noout", "-serial"]).stdout.decode()
        serial = serial.strip().split("=", 1)[1].lower().lstrip("0")
        recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
        self.assertEqual([(e, s.lstrip("0")) for e, s in recs], [("rejected", serial), ("revoke_failed", serial)])
        self.assertEqual(self.vault.since(mark, "/revoke"), [])
        self.vault.control({})
        res = self.gw.cmp("p10cr", "foreign-ok", path="pki/roles/vault/cmp", extra=["-csr", csr])
        self.assertIn(res.first.status, (0, 1), res.first)

    def test_sign_answer_signed_with_sha1(self):
        """A certificate Vault signed with SHA-1 (63 bits of security in OpenSSL 3.0, under the 112 of level 2
        the issued chain is verified at): not released, systemFailure naming the weak hash, on record as
        rejected and revoked at Vault. Twin: the same request signed with SHA-256 issues."""
        self.vault.control({"sign_hash": "sha1", "match": "/sign/"})
        mark = self.vault.mark()
        res = self.p10cr("vault", "sha1", expect_cert=False)
        self.assert_rejected(res, "systemFailure")
        self.assertEqual(res.first.status_strings, [
            "the CA returned an unusable certificate (the certificate upstream vault returned is signed with a "
            "hash under 112 bits of security (SHA-1, MD5) (issuer_ca)); it was not released"])
        tid = res.first.header["transactionID"].asOctets().hex()
        self.assertNotIn(tid, self.issued_tids())
        recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2)
        self.assertEqual([e for e, _ in recs], ["rejected", "revoked"])
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 1)
        self.vault.control({})
        res = self.p10cr("vault", "sha1-ok", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)

    def test_issued_serial_revoked(self):
        """Vault issues the serial of a certificate its holder revoked through the gateway again: the new
        certificate counts as revoked wherever revocation goes by issuer and serial (Vault's CRL lists the
        serial; the gateway's own revoked set would refuse it as a credential). Not released: systemFailure
        saying so in words true also where two CAs share the issuer name, on record as rejected with that
        serial, logged cert_serial_reused naming the upstream and serial, and Vault is not asked to revoke
        it again (cfssl would write the new revocation's reason and time over the first's). Twin: the same
        request with a serial of its own issues."""
        d = self.gw.dir
        first = self.p10cr("vault", "reused-first", expect_cert=True).cert
        rr = self.gw.cmp("rr", "reused-rr", auth=(first, d / "reused-first.key"), path="pki/roles/vault/cmp",
                         expect_cert=False, extra=["-extracerts", d / "vault-ca.pem", "-oldcert", first,
                                                   "-revreason", "1"]).first
        self.assertEqual(rr.status, 0, rr)
        serial = harness.serial_hex(first)
        self.vault.control({"serial_number": vaultenv.colon_serial(serial),
                            "match": "/sign/"})
        mark = self.vault.mark()
        res = self.p10cr("vault", "reused", expect_cert=False)
        self.assert_rejected(res, "systemFailure")
        self.assertEqual(res.first.status_strings, [
            "a certificate with this issuer name and serial %s was revoked through this gateway: "
            "where revocation goes by issuer and serial, this one counts as revoked; it was not released: "
            "tell the PKI's operator" % serial])
        self.assertEqual(len(self.vault.since(mark, "/sign/")), 1)
        tid = res.first.header["transactionID"].asOctets().hex()
        self.assertNotIn(tid, self.issued_tids())
        logged = [e for e in self.gw.log_lines() if e.get("event") == "cert_serial_reused"]
        self.assertEqual([(e.get("tid"), e.get("upstream"), e.get("serial")) for e in logged],
                         [(tid, "vault", serial)])
        # the twin: a serial of its own
        self.vault.control({})
        res = self.p10cr("vault", "reused-twin", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2, timeout=2)
        self.assertEqual(recs, [("rejected", serial)])
        self.assertEqual(self.vault.since(mark, "/revoke"), [])
        # not even queued for a withdrawal (which would find the serial revoked and skip the CA)
        self.assertEqual([e for e in self.gw.log_lines() if e.get("event") == "revoke_not_repeated"], [])

    def test_serial_issued_twice(self):
        """Vault issues the serial of a certificate the gateway let through before, never revoked, to another
        certificate: revocation goes by issuer and serial, so revoking either would revoke both. Not
        released: systemFailure saying so, on record as rejected with that serial, logged cert_serial_reused
        naming the upstream, issuer, serial and the earlier certificate's transaction, and not revoked at
        Vault (that would revoke the earlier one, valid and in its holder's use). Twin: the same request
        with a serial of its own issues."""
        earlier = self.p10cr("vault", "twice-first", expect_cert=True)
        earlier_tid = earlier.first.header["transactionID"].asOctets().hex()
        serial = harness.serial_hex(earlier.cert)
        self.vault.control({"serial_number": ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)),
                            "match": "/sign/"})
        mark = self.vault.mark()
        res = self.p10cr("vault", "twice", expect_cert=False)
        self.assert_rejected(res, "systemFailure")
        self.assertEqual(res.first.status_strings, [
            "another certificate with this issuer name and serial %s went out through this gateway: "
            "where revocation goes by issuer and serial, revoking one revokes both; this one was not released: "
            "tell the PKI's operator" % serial])
        self.assertEqual(len(self.vault.since(mark, "/sign/")), 1)
        tid = res.first.header["transactionID"].asOctets().hex()
        self.assertNotIn(tid, self.issued_tids())
        logged = [e for e in self.gw.log_lines() if e.get("event") == "cert_serial_reused" and e.get("tid") == tid]
        self.assertEqual([(e.get("level"), e.get("upstream"), e.get("serial"), e.get("earlier_tid")) for e in logged],
                         [("error", "vault", serial, earlier_tid)])
        self.assertIn("CN=", logged[0].get("issuer", ""))
        # the twin: a serial of its own
        self.vault.control({})
        res = self.p10cr("vault", "twice-twin", expect_cert=True)
        self.assertIn(res.first.status, (0, 1), res.first)
        recs = harness.settled(lambda: self.records(tid), lambda rs: len(rs) >= 2, timeout=2)
        self.assertEqual(recs, [("rejected", serial)])
        self.assertEqual(self.vault.since(mark, "/revoke"), [])
        self.assertIn(("issued", serial), self.records(earlier_tid))
        self.assertEqual([e for e, _ in self.records(earlier_tid) if e.startswith("revoke")], [])

    def test_sign_answer_with_a_private_key(self):
        """A private key in a sign answer (Vault's issue endpoint answers with one, in data.private_key; a
        hostile or misconfigured Vault could send one to a sign call, there or as a PEM block of
        data.certificate) reaches neither the client, nor the log, nor the audit log: the certificate is
        read alone, the key's block skipped, and a data.certificate that holds the key alone is refused
        without quoting it."""
        key = self.newkey("leaked")
        pem = key.read_text()
        b64 = [line for line in pem.splitlines() if not line.startswith("-----")]
        der = harness.run(["openssl", "pkey", "-in", key, "-outform", "DER"]).stdout
        cases = [  # (switches, issued)
            ({"sign_data": {"private_key": pem, "private_key_type": "ec"}, "certificate_after": pem}, True),
            ({"sign_data": {"certificate": pem, "private_key": pem}}, False),
        ]
        for i, (state, issued) in enumerate(cases):
            with self.subTest(issued=issued):
                self.vault.control(dict(state, match="/sign/"))
                res = self.p10cr("vault", "leak%d" % i, expect_cert=issued)
                if issued:
                    self.assertIn(res.first.status, (0, 1), res.first)
                else:
                    self.assert_rejected(res, "systemFailure", "data.certificate holds no PEM certificate")
                for f in res.rsp_files:
                    self.assertNotIn(der, f.read_bytes())
                    self.assertNotIn(der[-32:], f.read_bytes())  # the private value, or its end
        texts = [self.gw.stderr(), (self.gw.dir / "audit.log").read_text()]
        for where in texts:
            for line in b64:
                self.assertNotIn(line, where)
            self.assertNotIn("PRIVATE KEY", where)


if __name__ == "__main__":
    harness.main()
