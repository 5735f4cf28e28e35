"""Staged migration of a role between two CAs (docs/migration.md), with the real gateway, real `openssl cmp`
and two upstreams: the demo's local issuer ("old") and the Vault-API test server ("vault": p10cr signed by
Vault itself, CRMF by its delegate issuer under Vault's role policy). Each step is a reload of the role's
"migration", as an operator would make it:

  off       everything from the old CA;
  shadow    issued by the old CA, each request also checked against Vault's role: "shadow" audit records
            (would issue / would refuse, with the reason) and cmpgw_migration_shadow_total; Vault signs nothing;
  live      by allow-list: the listed devices (ir, p10cr, and a kur of an old-CA certificate, whose status is
            read from the old CA's store) from the new CA, the others from the old; an old-CA certificate of a
            moved device revoked at the old CA;
  percent   10 % then 50 %: exactly the devices the documented hash puts there (worked out here with hashlib),
            the 10 % inside the 50 %;
  rollback  mode off: a kur of a new-CA certificate issued by the old CA, and the new CA's certificates
            (delegate's and Vault's own) still revoked where they were issued.
And across a reload (MigrationAcrossReload): a p10cr answered `waiting` whose client polls while a reload
moves the role to another step is finished, pollReq and certConf, by the CA it was sent to. MigrationByPbm: a
PBM-protected request is placed by the subject it asks for, a signed one by its signer. MigrationComplete: at
100 % a subject with a `/` inside a value moves too. MigrationAcrossCas: what a holder of certificates of both
CAs can make of them (a revoked one, a name outside the role, the other CA's certificate named in a kur or an
rr, an RA's rr where the CAs issued one serial each, a new-CA signer whose status cannot be had, a rejected kur
across the CAs, the finished migration).
"""
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402
from cryptography import x509  # noqa: E402

CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
CA_CERTS = "1.3.6.1.5.5.7.4.17"
CRL_STATUS = "1.3.6.1.5.5.7.4.22"
MIGRATION = "fleet-2026"
OLD_ISSUER = "CN=cmpgw demo issuing CA,O=cmpgw demo"
DELEGATE_ISSUER = "CN=cmpgw delegate issuer"  # as Vault signed it
VAULT_ISSUER = "CN=vault test issuing CA,O=cmpgw e2e"


def bucket(name, key):
    """The documented cohort hash: first 8 bytes of SHA-256(name || 0x00 || key), big-endian, mod 10000."""
    return int.from_bytes(hashlib.sha256(name.encode() + b"\0" + key.encode()).digest()[:8], "big") % 10000


def issuer_of(cert):
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-issuer", "-nameopt", "RFC2253"]).stdout.decode()
    return out.strip().split("=", 1)[1]


admin = harness.admin


audit = harness.audit_records


class Migration(harness.GatewayTestCase):
    certs = {}  # device name -> (certificate, key) last issued to it

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        harness.keep_store(cfg, gw)
        cls.vault = vaultenv.running(cls, d)
        cls.vault.make_delegate()
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["upstreams"]["vault-delegate"] = {"type": "local", "cert": "vault-delegate.pem",
                                              "key": "vault-delegate.key", "chain": "vault-delegate-chain.pem",
                                              "store": "delegate-store"}
        # signers issued by either CA authenticate (a kur, an rr): both chains are known, with every issuer
        # of Vault's "issuer_ca"
        (d / "both-chains.pem").write_text("".join((d / f).read_text() for f in
                                                   ("issuing.pem", "vault-ca.pem", "vault-ca2.pem",
                                                    "vault-delegate.pem")))
        cfg["trust"]["demo"]["untrusted_file"] = "both-chains.pem"
        role = cfg["roles"]["default"]
        role.update({"upstream_role": "devices", "crmf": "delegate", "delegate": "vault-delegate", "ttl": "24h",
                     "migration": {"name": MIGRATION, "from": "local", "to": "vault", "mode": "off",
                                   "cohort": {"percent": 0, "by": "subject"}}})
        cls.base = json.loads(json.dumps(cfg))

    def migrate(self, mode, cohort):
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["default"]["migration"].update(mode=mode, cohort=cohort)
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def ir(self, name, subject=None, san=True):
        key = self.newkey(name)
        subject = subject or "/CN=%s.example.com" % name
        extra = ["-implicit_confirm"] + (["-sans", subject.split("=", 1)[1]] if san else [])
        res = self.gw.cmp("ir", name, newkey=key, subject=subject, extra=extra)
        self.certs[name] = (res.cert, key)
        return res.cert

    def kur(self, name, out):
        cert, key = self.certs[name]
        new = self.newkey(out)
        res = self.gw.cmp("kur", out, auth=(cert, key), newkey=new, extra=["-implicit_confirm"])
        self.assertEqual(res.first.body_type, "kup", res.answers)
        self.certs[name] = (res.cert, new)
        return res.cert, cert

    def p10cr(self, name):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        res = self.gw.cmp("p10cr", name, extra=["-csr", csr, "-implicit_confirm"])
        self.certs[name] = (res.cert, key)
        return res.cert

    def rr(self, name, cert, key):
        d = self.gw.dir
        rsp = d / ("%s.rsp.der" % name)
        p = harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path",
                         "pki/cmp", "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem",
                         "-tls_cert", d / "client.pem", "-tls_key", d / "client.key", "-oldcert", cert,
                         "-cert", cert, "-key", key, "-revreason", "4", "-rspout", rsp], cwd=d, check=False)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-2000:])
        self.assertEqual(harness.rp_status(rsp.read_bytes()), (0, [], []))
        serial = int(harness.serial_hex(cert), 16)
        return [r for r in audit(self.gw, "revoked") if int(r.get("serial", "0"), 16) == serial]

    def issued_record(self, cert):
        serial = int(harness.serial_hex(cert), 16)
        got = [r for r in audit(self.gw, "issued") if int(r.get("serial", "0"), 16) == serial]
        self.assertEqual(len(got), 1, got)
        return got[0]

    def report(self, *args):
        p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--json"] + list(args),
                           capture_output=True, cwd=self.gw.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def ca_certs(self, name):
        """The subjects genm caCerts (RFC 9483 §4.3.1) announces, as cmpclient prints them."""
        d = self.gw.dir
        p = harness.run([CLIENT_BIN, "--url", self.gw.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                         "--tls-key", d / "client.key", "--cert", d / "client.pem", "--key", d / "client.key",
                         "genm", "--out", d / name, CA_CERTS])
        return [l.strip()[len("cert "):] for l in p.stdout.decode().splitlines() if l.startswith("  cert ")]

    def crl_issuers(self, name, *sources):
        """The issuers of the CRLs genm crlStatusList (RFC 9483 §4.3.4) answers, for a list naming the CAs of
        the PEM files |sources| as the CRLs' issuers, with no thisUpdate (the client holds none of them)."""
        d = self.gw.dir
        value = harness.crl_status_list(d, name, sources)
        harness.run([CLIENT_BIN, "--url", self.gw.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                     "--tls-key", d / "client.key", "--cert", d / "client.pem", "--key", d / "client.key",
                     "genm", "--out", d / name, "%s:der:%s" % (CRL_STATUS, value)])
        der = (d / ("%s.0.der" % name)).read_bytes()
        _, off, end = harness.tlv(der)  # SEQUENCE OF CertificateList
        issuers = []
        while off < end:
            _, _, nxt = harness.tlv(der, off)
            issuers.append(x509.load_der_x509_crl(der[off:nxt]).issuer.rfc4514_string())
            off = nxt
        return sorted(issuers)

    def shadow_metric(self, result):
        _, text = admin(self.gw, "/metrics")
        for line in text.splitlines():
            if line.startswith("cmpgw_migration_shadow_total{") and 'result="%s"' % result in line:
                return float(line.rsplit(" ", 1)[1])
        return 0

    # -- the steps, in order ---------------------------------------------------------------------

    def test_1_off_everything_from_old(self):
        for name in ("dev1", "dev2", "dev5"):
            self.assertEqual(issuer_of(self.ir(name)), OLD_ISSUER)
        self.assertEqual(self.issued_record(self.certs["dev1"][0])["upstream"], "local")
        announced = self.ca_certs("cacerts-off")
        self.assertIn("/O=cmpgw demo/CN=cmpgw demo issuing CA", announced)
        self.assertNotIn("/O=cmpgw e2e/CN=vault test issuing CA", announced)

    def test_2_shadow_checks_vault_issues_nothing(self):
        self.migrate("shadow", {"percent": 100, "by": "subject"})
        # from now on clients learn the new CA too, before any of them is issued by it
        announced = self.ca_certs("cacerts-shadow")
        self.assertIn("/O=cmpgw demo/CN=cmpgw demo issuing CA", announced)
        self.assertIn("/O=cmpgw e2e/CN=vault test issuing CA", announced)
        since = audit(self.gw, "issued")[-1]["time"][:19]  # whole seconds: the report's granularity
        mark = self.vault.mark()
        before = len(audit(self.gw, "shadow"))
        synced = harness.metric(self.gw, "cmpgw_audit_write_seconds_count")
        self.assertEqual(issuer_of(self.ir("dev3")), OLD_ISSUER)
        # a name Vault's role does not allow: the old CA issues it, the shadow record says Vault would not
        self.assertEqual(issuer_of(self.ir("odd", subject="/CN=odd.other.org")), OLD_ISSUER)
        shadows = audit(self.gw, "shadow")[before:]
        self.assertEqual([s["upstream"] for s in shadows], ["vault", "vault"], shadows)
        self.assertTrue(shadows[0]["status"].startswith("would issue"), shadows[0])
        self.assertTrue(shadows[1]["status"].startswith("would refuse: "), shadows[1])
        self.assertIn("other.org", shadows[1]["status"])
        self.assertEqual(shadows[1]["common_name"], "odd.other.org")
        # the names asked for are on the record, as on every other (they were left out)
        self.assertEqual([s["alt_names"] for s in shadows], ["dev3.example.com", "odd.other.org"], shadows)
        # a shadow record certifies nothing: only the two issued records waited for an fsync
        self.assertEqual(harness.metric(self.gw, "cmpgw_audit_write_seconds_count") - synced, 2)
        got = [e["path"] for e in self.vault.since(mark)]
        self.assertTrue(got and all(p == "/v1/pki/roles/devices" for p in got), got)  # read, never signed
        self.assertEqual(list((self.gw.dir / "delegate-store").glob("*.pem")), [])
        self.assertGreaterEqual(self.shadow_metric("refuse"), 1)
        self.assertGreaterEqual(self.shadow_metric("issue"), 1)
        # cmpgw report: the shadow differences by kind, from the audit log
        rep = self.report("--since", since + "Z", "--role", "default")["roles"]["default"]
        self.assertEqual(rep["shadow"], {"issue": 1, "refuse": 1})
        self.assertEqual(rep["migration"]["mode"], "shadow")
        self.assertEqual(rep["upstreams"]["local"]["issued"],
                         len([r for r in audit(self.gw, "issued") if r["time"][:19] >= since]))

    def test_3_live_by_allowlist(self):
        (self.gw.dir / "cohort.txt").write_text("# moved first\n/CN=dev1.example.com\n/CN=dev5.example.com\n"
                                                "/CN=dev7.example.com\n")
        self.migrate("live", {"allowlist": "cohort.txt", "by": "subject"})
        shadows = len(audit(self.gw, "shadow"))
        self.assertEqual(issuer_of(self.ir("dev5")), DELEGATE_ISSUER)  # CRMF: Vault's delegate
        self.assertEqual(issuer_of(self.ir("dev6")), OLD_ISSUER)       # not in the cohort
        mark = self.vault.mark()
        self.assertEqual(issuer_of(self.p10cr("dev7")), VAULT_ISSUER)   # a CSR: Vault signs it
        self.assertEqual(len(self.vault.since(mark, "/sign/devices")), 1)
        self.assertEqual(len(audit(self.gw, "shadow")), shadows)       # live mode checks nothing twice
        # dev1 moved: its kur (signed by its old-CA certificate) is issued by the new CA, the old
        # certificate's status read from the old CA's store
        new, old = self.kur("dev1", "dev1-kur")
        self.assertEqual(issuer_of(old), OLD_ISSUER)
        self.assertEqual(issuer_of(new), DELEGATE_ISSUER)
        rec = self.issued_record(new)
        self.assertEqual(rec["upstream"], "vault-delegate")
        self.assertIn("signer: store of upstream local", rec["credential_status"])
        # dev2 did not move: its kur stays with the old CA
        new2, _ = self.kur("dev2", "dev2-kur")
        self.assertEqual(issuer_of(new2), OLD_ISSUER)
        # dev1's old-CA certificate, revoked by its holder: at the old CA, though dev1 has moved
        revoked = self.rr("dev1-old-rr", old, self.gw.dir / "dev1.key")
        self.assertEqual([r["upstream"] for r in revoked], ["local"], revoked)
        # and a kur signed with it is now refused by the old CA's status
        res = self.gw.cmp("kur", "dev1-stale", auth=(old, self.gw.dir / "dev1.key"), newkey=self.newkey("st"),
                          expect_cert=False)
        self.assert_cmp_error(res.first, ("kup", "error"), "certRevoked", "is revoked")
        self.assertIsNone(res.cert)

    def test_3a_genm_crls_of_each_ca(self):
        """While devices hold certificates of three CAs (the old one, Vault, Vault's delegate), a client
        naming one CA's CRL gets that CA's, one naming all gets each; one naming none of them (the root's)
        gets the route's own, one CRL for its one entry (RFC 9483 §4.3.4)."""
        self.assertEqual(self.crl_issuers("crls-vault", "vault-ca.pem"), [VAULT_ISSUER])
        self.assertEqual(self.crl_issuers("crls-delegate", "vault-delegate.pem"), [DELEGATE_ISSUER])
        self.assertEqual(self.crl_issuers("crls-all", "issuing.pem", "vault-ca.pem", "vault-delegate.pem"),
                         sorted([OLD_ISSUER, VAULT_ISSUER, DELEGATE_ISSUER]))
        self.assertEqual(self.crl_issuers("crls-root", "ca.pem"), [OLD_ISSUER])

    def test_4_percent_cohort_nested(self):
        names = ["pct%d" % i for i in range(400)]
        low = [n for n in names if bucket(MIGRATION, "/CN=%s.example.com" % n) < 1000][:2]
        mid = [n for n in names if 1000 <= bucket(MIGRATION, "/CN=%s.example.com" % n) < 5000][:2]
        high = [n for n in names if bucket(MIGRATION, "/CN=%s.example.com" % n) >= 5000][:2]
        self.assertEqual((len(low), len(mid), len(high)), (2, 2, 2))
        moved = {}
        for percent in (10, 50):
            self.migrate("live", {"percent": percent, "by": "subject"})
            moved[percent] = {n for n in low + mid + high if issuer_of(self.ir("%s-%d" % (n, percent),
                                                                             "/CN=%s.example.com" % n))
                              == DELEGATE_ISSUER}
        self.assertEqual(moved[10], set(low))
        self.assertEqual(moved[50], set(low + mid))
        self.assertTrue(moved[10] <= moved[50])

    def test_5_rollback_loses_nothing(self):
        self.migrate("off", {"percent": 0, "by": "subject"})
        # dev5 moved and has a new-CA certificate: its kur is issued by the old CA again, no error
        new, old = self.kur("dev5", "dev5-back")
        self.assertEqual(issuer_of(old), DELEGATE_ISSUER)
        self.assertEqual(issuer_of(new), OLD_ISSUER)
        self.assertIn("signer: store of upstream vault-delegate", self.issued_record(new)["credential_status"])
        # the new CA's certificates stay revocable where they were issued
        cert, key = self.certs["dev1"]
        self.assertEqual([r["upstream"] for r in self.rr("dev1-new-rr", cert, key)], ["vault-delegate"])
        mark = self.vault.mark()
        cert, key = self.certs["dev7"]
        self.assertEqual([r["upstream"] for r in self.rr("dev7-rr", cert, key)], ["vault"])
        self.assertEqual(len(self.vault.since(mark, "/revoke")), 1)

    def test_6_report(self):
        """Where the devices stand: the side of the last certificate issued to each."""
        rep = self.report()
        self.assertEqual(rep["unreadable_lines"], 0)
        role = rep["roles"]["default"]
        # new CA: dev1 (kur), dev7 (Vault), the four pct devices of the 50 % cohort; old: dev2, dev3, odd,
        # dev5 (rolled back), dev6, the two pct devices outside it
        self.assertEqual(role["devices"], {"on_to": 6, "on_from": 7})
        self.assertEqual(role["upstreams"]["vault"]["issued"], 1)
        self.assertEqual(role["upstreams"]["vault"]["revoked"], 1)
        self.assertEqual(role["upstreams"]["vault-delegate"]["revoked"], 1)
        self.assertEqual(role["upstreams"]["-"]["refused"], {"certRevoked": 1})
        # a role neither the configuration nor the log knows is a typo, not a role without traffic: it said
        # "0 records" and exited 0; its twins, a configured role with no records, and a role only the log
        # knows (since removed from the configuration), are reported
        p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--role", "nope"],
                           capture_output=True, cwd=self.gw.dir)
        self.assertEqual((p.returncode, p.stdout), (2, b""), p.stderr)
        self.assertIn(b'cmpgw: --role "nope": no role of that name in %s or the audit log %s; known: default\n'
                      % (str(self.gw.config_path).encode(), str(self.gw.dir / "audit.log").encode()), p.stderr)
        self.assertEqual(self.report("--role", "default", "--since", "2099-01-01")["records"], 0)
        gone = self.gw.dir / "audit-gone.log"
        gone.write_text('{"time":"2026-01-01T00:00:00.000Z","event":"issued","role":"gone","upstream":"local"}\n')
        self.assertEqual(self.report("--audit", str(gone), "--role", "gone")["records"], 1)
        p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--audit", str(gone),
                            "--role", "nope"], capture_output=True, cwd=self.gw.dir)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"known: default, gone\n", p.stderr)
        # a date that does not exist is no time (it was taken as a prefix of the records' times); a leap day is
        for since in ("2026-13-01", "2026-02-30", "2026-12-01T24:00", "2026-12-01T10:60:00Z"):
            p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--since", since],
                               capture_output=True, cwd=self.gw.dir)
            self.assertEqual((since, p.returncode, p.stdout), (since, 2, b""), p.stderr)
            self.assertIn(b"expected a UTC time", p.stderr)
        self.assertEqual(self.report("--since", "2028-02-29T23:59:59Z")["records"], 0)
        p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path)], capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"devices last issued by vault: 6; still on local: 7", p.stdout)
        p = subprocess.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--since", "yesterday"],
                           capture_output=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"expected a UTC time", p.stderr)

    def test_7_same_ca_twice_refused(self):
        """Two upstreams under one CA name and key: their certificates could not be told apart."""
        cfg = json.loads(json.dumps(self.base))
        (self.gw.dir / "store2").mkdir(exist_ok=True)
        cfg["upstreams"]["local2"] = dict(cfg["upstreams"]["local"], store="store2")
        cfg["roles"]["default"]["migration"]["to"] = "local2"
        for k in ("upstream_role", "crmf", "delegate"):
            del cfg["roles"]["default"][k]
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.gw.config_path)],
                           capture_output=True, cwd=self.gw.dir)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"$.roles.default.migration.to", p.stderr + p.stdout)
        self.assertIn(b"could not be told apart", p.stderr + p.stdout)
        self.gw.config_path.write_text(json.dumps(self.base, indent=2))

    def test_8_untrusted_new_ca_warned(self):
        """A migrating role whose trust entries do not cover the new CA: `cmpgw check` says so."""
        cfg = json.loads(json.dumps(self.base))
        fca, _, _ = harness.make_foreign_pki(self.gw.dir / "foreign")
        cfg["trust"]["demo"] = {"ca_file": str(fca), "revocation": "none"}  # trusts neither CA
        path = self.gw.dir / "untrusted-new.json"
        path.write_text(json.dumps(cfg, indent=2))
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)], capture_output=True,
                           cwd=self.gw.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"$.roles.default.migration: the CA of \\\"vault\\\"", p.stderr)
        self.assertIn(b"does not chain to the role's trust entries", p.stderr)
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.gw.config_path)], capture_output=True,
                           cwd=self.gw.dir)
        self.assertNotIn(b"does not chain", p.stderr)
        self.assertNotIn(b"is neither a trust anchor", p.stderr)

    def test_8_unheld_new_ca_warned(self):
        """A migrating role that trusts the root of the new CA but holds not the CA itself: its devices send
        their own certificate, and their kur and rr would be refused. `cmpgw check` names the CA, and the
        delegate that stands in for Vault, whose chain runs through that CA."""
        cfg = json.loads(json.dumps(self.base))
        cfg["trust"]["demo"]["untrusted_file"] = "issuing.pem"  # the demo root, Vault's CAs under it
        path = self.gw.dir / "unheld-new.json"
        path.write_text(json.dumps(cfg, indent=2))
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)], capture_output=True,
                           cwd=self.gw.dir)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"$.roles.default.migration: the CA of \\\"vault\\\" (/O=cmpgw e2e/CN=vault test issuing CA) "
                      b"is neither a trust anchor nor an intermediate of the role's trust entries", p.stderr)
        # the delegate issues the moved devices' CRMF certificates under Vault's CA, which it cannot chain through
        self.assertIn(b"$.roles.default.migration: the CA of \\\"vault-delegate\\\" (unable to get local issuer "
                      b"certificate) does not chain to the role's trust entries", p.stderr)


class MigrationAcrossReload(harness.GatewayTestCase):
    """A request whose upstream answers after poll_after, and whose role's migration a reload changes while
    its client polls: pollReq and certConf finish it at the CA it was sent to, whatever the cohort says after
    (docs/migration.md, "A request in flight stays with its CA"). Both CAs are slow here:
    the local issuer by its "delay", the Vault-API server by its latency; device "mover" is the cohort."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["upstreams"]["local"]["delay"] = "2500ms"
        (gw.dir / "cohort.txt").write_text("/CN=mover.example.com\n")
        cfg["roles"]["default"].update({
            "upstream_role": "devices", "ttl": "24h", "poll_after": "500ms",
            "migration": {"name": MIGRATION, "from": "local", "to": "vault", "mode": "live",
                          "cohort": {"allowlist": "cohort.txt", "by": "subject"}}})
        cls.base = json.loads(json.dumps(cfg))

    def setUp(self):
        self.vault.control({"latency_ms": 2500, "match": "sign/"})

    def tearDown(self):
        self.vault.control({})

    def reload(self, mode):
        """A reload to migration mode |mode|, or with "finished" to the role on "to" alone (docs/migration.md,
        "Finish"): the old CA is still configured, for the certificates it issued."""
        cfg = json.loads(json.dumps(self.base))
        cfg["roles"]["default"]["migration"]["mode"] = mode
        if mode == "finished":
            cfg["roles"]["default"]["upstream"] = "vault"
            del cfg["roles"]["default"]["migration"]
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def polled_across(self, name, mode_then):
        """A p10cr of CN=mover.example.com (no implicit confirmation: its certConf comes after the reload
        too); a reload to |mode_then| once it was answered "waiting" and its client polls. Returns the
        certificate, the answers and the issued record."""
        import test_polling
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=mover.example.com", "-out", csr])
        result = {}

        def client():
            result["r"] = test_polling.cmp_polling(self.gw, "p10cr", name, "pki/cmp", ["-csr", csr])

        t = threading.Thread(target=client)
        t.start()
        waiting = self.gw.dir / ("%s.rsp00.der" % name)
        deadline = time.monotonic() + 10
        while not waiting.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.reload(mode_then)
        t.join(harness.CLIENT_TIMEOUT + 20)
        p, answers, cert = result["r"]
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", test_polling.WAITING), answers)
        kinds = [a.body_type for a in answers]
        self.assertIn("pollRep", kinds)
        self.assertEqual(kinds[-2:], ["cp", "pkiconf"], answers)  # collected, then confirmed
        tid = answers[0].header["transactionID"].asOctets().hex()
        issued = test_polling.of_tid(self.gw, "issued", tid)
        self.assertEqual(len(issued), 1, issued)
        self.assertEqual(len(test_polling.of_tid(self.gw, "confirmed", tid)), 1)
        self.assertEqual(test_polling.of_tid(self.gw, "revoked", tid), [])
        return cert, issued[0]

    def test_moved_device_collects_from_the_new_ca_after_a_rollback(self):
        self.reload("live")
        mark = self.vault.mark()
        cert, issued = self.polled_across("to-off", "off")
        self.assertEqual(issuer_of(cert), VAULT_ISSUER)
        self.assertEqual(issued["upstream"], "vault")
        self.assertEqual(len(self.vault.since(mark, "/sign/devices")), 1)

    def test_device_collects_from_the_old_ca_after_it_moved(self):
        self.reload("off")
        mark = self.vault.mark()
        cert, issued = self.polled_across("off-to-live", "live")
        self.assertEqual(issuer_of(cert), OLD_ISSUER)
        self.assertEqual(issued["upstream"], "local")
        self.assertEqual(self.vault.since(mark, "/sign/"), [])

    def test_device_collects_from_the_old_ca_after_the_migration_finished(self):
        self.reload("off")
        mark = self.vault.mark()
        cert, issued = self.polled_across("off-finished", "finished")
        self.assertEqual(issuer_of(cert), OLD_ISSUER)
        self.assertEqual(issued["upstream"], "local")
        self.assertEqual(self.vault.since(mark, "/sign/"), [])


class MigrationByPbm(harness.GatewayTestCase):
    """"by": "signer_subject" (the default) places a signed request by its signer; a PBM-protected request
    has none and is placed by the subject it asks for (docs/migration.md), so the holder of a PBM secret
    chooses its CA among the subjects the role lets it ask for. The same CSR, once each way."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        (gw.dir / "cohort.txt").write_text("/CN=chosen.example.com\n")
        cfg["roles"]["default"].update({
            "upstream_role": "devices", "ttl": "24h",
            "migration": {"name": MIGRATION, "from": "local", "to": "vault", "mode": "live",
                          "cohort": {"allowlist": "cohort.txt"}}})

    def test_pbm_placed_by_the_subject_it_asks_for(self):
        key = self.newkey("chosen")
        csr = self.gw.dir / "chosen.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=chosen.example.com", "-out", csr])
        by_pbm = self.gw.cmp("p10cr", "chosen-pbm", auth="pbm", extra=["-csr", csr, "-implicit_confirm"])
        self.assertEqual(issuer_of(by_pbm.cert), VAULT_ISSUER)
        # signed by the demo client, whose subject is not in the cohort: the old CA, whatever it asks for
        by_signer = self.gw.cmp("p10cr", "chosen-sig", extra=["-csr", csr, "-implicit_confirm"])
        self.assertEqual(issuer_of(by_signer.cert), OLD_ISSUER)


class MigrationShadowSlowTarget(harness.GatewayTestCase):
    """Shadow mode asks "to" for nothing that issues: a "to" that answers slowly, or not at all, must not hold
    up what "from" issues. The shadow check read Vault's role for each request of the cohort, one request at a
    time per role, and a read that failed was tried again by the next: with Vault's answers later than its
    timeout, four requests at once were issued by the old CA after 3, 6, 9 and 12 s. Now one request reads, the
    others meanwhile are recorded "not checked" at once, and a read that failed is not tried again before the
    policy's cache time."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream(timeout="3s")
        cfg["roles"]["default"].update({
            "upstream_role": "devices",
            "migration": {"name": MIGRATION, "from": "local", "to": "vault", "mode": "shadow",
                          "cohort": {"percent": 100}}})

    def ir(self, name):
        res = self.gw.cmp("ir", name, newkey=self.newkey(name), subject="/CN=%s.example.com" % name,
                          extra=["-implicit_confirm"])
        return issuer_of(res.cert)

    def test_slow_target_holds_up_no_issuance(self):
        self.vault.control({"latency_ms": 6000})  # every answer past the upstream's 3 s timeout
        got = {}
        mark = self.vault.mark()
        threads = [threading.Thread(target=lambda i=i: got.update({i: self.ir("slow%d" % i)})) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(list(got.values()), [OLD_ISSUER] * 4)
        # one read Vault's role and waited; the others did not read it, nor wait to read it after
        self.assertEqual(len(self.vault.since(mark, "/roles/")), 1, self.vault.since(mark))
        mark = self.vault.mark()
        self.assertEqual(self.ir("after"), OLD_ISSUER)
        # the failed read is not tried again at once
        self.assertEqual(self.vault.since(mark, "/roles/"), [])
        shadows = audit(self.gw, "shadow")
        self.assertEqual(len(shadows), 5, shadows)
        self.assertTrue(all(s["status"].startswith("not checked: ") for s in shadows), shadows)


class MigrationComplete(harness.GatewayTestCase):
    """At "percent": 100 every request is in the cohort (docs/migration.md, "Widen" and "Finish"), also one
    whose subject has no one-line form to hash (a `/` inside a value), which a client chooses as it
    chooses any subject it asks for: it cannot fall back to the old CA."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["roles"]["default"].update({
            "upstream_role": "devices", "ttl": "24h",
            "migration": {"name": MIGRATION, "from": "local", "to": "vault", "mode": "live",
                          "cohort": {"percent": 100, "by": "subject"}}})

    def p10cr(self, name, subject):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr])
        res = self.gw.cmp("p10cr", name, extra=["-csr", csr, "-implicit_confirm"], expect_cert=False)
        self.assertIsNotNone(res.cert, res.answers)
        return issuer_of(res.cert)

    def test_every_subject_moves(self):
        self.assertEqual(self.p10cr("plain", "/CN=plain.example.com"), VAULT_ISSUER)
        self.assertEqual(self.p10cr("slashed", "/O=a\\/b/CN=slashed.example.com"), VAULT_ISSUER)



class MigrationAcrossCas(harness.GatewayTestCase):
    """What a client holding certificates of both CAs controls while its role moves, against what the gateway
    trusts: role "default" moves from the old CA ("local") to Vault (its delegate for CRMF) at 100 %, for
    names dev*.example.com only; role "other" (path p/o) stays on the old CA, for any name, and gives the
    devices their old-CA certificates. A certificate the old CA revoked gets nothing from the new one (ir
    or kur signed with it); an old-CA certificate of a name the moving role does not allow does not renew
    into the new CA; a kur's oldCertID and an rr name the signer's own certificate, never the holder's
    other one at the other CA; an RA's rr goes to the CA that issued the certificate; and a certificate
    of the new CA its client rejects is revoked where it was issued, not at the CA of the certificate it
    renewed."""

    OTHER = ".well-known/cmp/p/o"

    @classmethod
    def edit_config(cls, cfg, gw):
        other = json.loads(json.dumps(cfg["roles"]["default"]))
        Migration.edit_config.__func__(cls, cfg, gw)
        cfg["roles"]["default"]["authorization"] = {"allowed_common_names": ["dev*.example.com"],
                                                     "ra_subjects": ["/O=cmpgw demo/CN=cmpgw demo CMP signer"]}
        cfg["roles"]["default"]["migration"].update(mode="live", cohort={"percent": 100})
        cfg["roles"]["other"] = other
        cfg["label_to_path_policy"]["o"] = "role:other"

    def old_cert(self, name):
        """An old-CA certificate of CN=|name|.example.com, by role "other": (certificate, key)."""
        key = self.newkey(name)
        res = self.gw.cmp("ir", name, newkey=key, subject="/CN=%s.example.com" % name, path=self.OTHER,
                          extra=["-implicit_confirm"])
        self.assertEqual(issuer_of(res.cert), OLD_ISSUER)
        return res.cert, key

    def signed(self, cmd, out, signer, extra=(), path="pki/cmp"):
        """|cmd| signed with |signer| (certificate, key), with a new key where it asks for a certificate."""
        newkey = self.newkey(out) if cmd != "rr" else None
        return self.gw.cmp(cmd, out, auth=signer, newkey=newkey, path=path, expect_cert=False,
                           extra=list(extra) + ["-implicit_confirm"])

    def assert_refused(self, res, fail_bit, text):
        self.assert_cmp_error(res.first, ("ip", "kup", "error"), fail_bit, text)
        self.assertIsNone(res.cert)

    def delegate_issued(self):
        return len(list((self.gw.dir / "delegate-store").glob("*.pem")))

    def test_revoked_old_ca_certificate_gets_nothing_from_the_new_ca(self):
        cert, key = self.old_cert("dev-revoked")
        res = self.gw.cmp("rr", "dev-revoked-rr", auth=(cert, key), path=self.OTHER, expect_cert=False,
                          extra=["-oldcert", cert, "-revreason", "1"])
        self.assertEqual(harness.rp_status(res.rsp_files[0].read_bytes()), (0, [], []))
        before = self.delegate_issued()
        for cmd in ("ir", "kur"):
            res = self.signed(cmd, "dev-revoked-" + cmd, (cert, key),
                              ["-subject", "/CN=dev-revoked.example.com"] if cmd == "ir" else [])
            self.assert_refused(res, "certRevoked", "is revoked")
        self.assertEqual(self.delegate_issued(), before)

    def test_old_ca_certificate_outside_the_role_does_not_renew(self):
        cert, key = self.old_cert("intruder")  # a name Vault's role allows, role "default" does not
        before = self.delegate_issued()
        res = self.signed("kur", "intruder-kur", (cert, key))
        self.assert_refused(res, "badCertTemplate", "intruder.example.com is not allowed on role default")
        self.assertEqual(self.delegate_issued(), before)

    def test_old_cert_id_and_rr_name_the_signer_not_its_twin(self):
        old, old_key = self.old_cert("dev-twin")
        res = self.signed("kur", "dev-twin-kur", (old, old_key))
        self.assertEqual(issuer_of(res.cert), DELEGATE_ISSUER, res.answers)
        new, new_key = res.cert, self.gw.dir / "dev-twin-kur.key"
        before = self.delegate_issued()
        # a kur signed with one CA's certificate naming the other's as the one it updates
        for signer, named in (((new, new_key), old), ((old, old_key), new)):
            res = self.signed("kur", "dev-twin-cross", signer, ["-oldcert", named])
            self.assert_refused(res, "notAuthorized", "oldCertID names another certificate")
        self.assertEqual(self.delegate_issued(), before)
        # an rr signed with one naming the other: neither CA is asked
        revoked = len(audit(self.gw, "revoked"))
        for signer, named in (((new, new_key), old), ((old, old_key), new)):
            res = self.gw.cmp("rr", "dev-twin-rr", auth=signer, expect_cert=False,
                              extra=["-oldcert", named, "-revreason", "1"])
            self.assert_cmp_error(res.first, ("rp", "error"), "notAuthorized")
        self.assertEqual(len(audit(self.gw, "revoked")), revoked)

    def test_rejected_new_ca_certificate_revoked_at_the_new_ca(self):
        old, old_key = self.old_cert("dev-reject")
        fca, _, _ = harness.make_foreign_pki(self.gw.dir / "foreign-reject")
        before = len(audit(self.gw, "revoked"))
        res = self.gw.cmp("kur", "dev-reject-kur", auth=(old, old_key), newkey=self.newkey("dev-reject-kur"),
                          expect_cert=False, extra=["-out_trusted", fca])
        self.assertNotEqual(res.returncode, 0)
        revoked = harness.settled(lambda: audit(self.gw, "revoked")[before:], bool)
        self.assertEqual([(r["body_type"], r["upstream"]) for r in revoked], [("kur", "vault-delegate")], revoked)
        self.assertNotEqual(int(revoked[0]["serial"], 16), int(harness.serial_hex(old), 16))
        # the old certificate the client still holds renews again
        self.assertEqual(issuer_of(self.signed("kur", "dev-reject-again", (old, old_key)).cert), DELEGATE_ISSUER)

    def test_ra_revokes_at_the_ca_that_issued(self):
        """An RA's rr names issuer and serial: each CA's certificate is revoked by that CA, none by the other."""
        ra = (self.gw.dir / "signer.pem", self.gw.dir / "signer.key")
        old, old_key = self.old_cert("dev-ra")
        new = self.signed("kur", "dev-ra-kur", (old, old_key)).cert
        csr = self.gw.dir / "dev-ra-p10.csr"
        harness.run(["openssl", "req", "-new", "-key", self.newkey("dev-ra-p10"), "-subj", "/CN=dev-ra.example.com",
                     "-out", csr])
        vault = self.gw.cmp("p10cr", "dev-ra-p10", extra=["-csr", csr, "-implicit_confirm"]).cert
        self.assertEqual([issuer_of(c) for c in (old, new, vault)], [OLD_ISSUER, DELEGATE_ISSUER, VAULT_ISSUER])
        for cert, upstream, at_vault in ((old, "local", 0), (new, "vault-delegate", 0), (vault, "vault", 1)):
            mark = self.vault.mark()
            res = self.gw.cmp("rr", "dev-ra-rr", auth=ra, expect_cert=False,
                              extra=["-oldcert", cert, "-revreason", "1"])
            self.assertEqual(harness.rp_status(res.rsp_files[0].read_bytes()), (0, [], []), res.answers)
            serial = int(harness.serial_hex(cert), 16)
            got = [r["upstream"] for r in audit(self.gw, "revoked") if int(r.get("serial", "0"), 16) == serial]
            self.assertEqual(got, [upstream])
            self.assertEqual(len(self.vault.since(mark, "/revoke")), at_vault)

    def vault_cert(self, name, serial=None):
        """A certificate Vault signs for CN=|name|.example.com (a p10cr, in the cohort), of |serial| where
        given: (certificate, key)."""
        key, csr = self.newkey(name), self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        if serial is not None:
            self.vault.control({"serial_number": ":".join("%02x" % b for b in serial.to_bytes(20, "big"))})
        try:
            cert = self.gw.cmp("p10cr", name, extra=["-csr", csr, "-implicit_confirm"]).cert
        finally:
            self.vault.control({})
        self.assertEqual(issuer_of(cert), VAULT_ISSUER)
        return cert, key

    def test_serials_collide_across_cas(self):
        """The old CA and Vault have each issued a certificate of one serial. Vault revokes by serial alone:
        an RA's rr for the old CA's goes to the old CA, Vault is not asked, and the holder of Vault's still
        renews with it; the RA's rr for Vault's then revokes Vault's alone."""
        ra = (self.gw.dir / "signer.pem", self.gw.dir / "signer.key")
        old, old_key = self.old_cert("dev-same")
        serial = int(harness.serial_hex(old), 16)
        twin, twin_key = self.vault_cert("dev-same-v", serial)
        self.assertEqual(int(harness.serial_hex(twin), 16), serial)
        for cert, upstream, at_vault in ((old, "local", 0), (twin, "vault", 1)):
            mark = self.vault.mark()
            res = self.gw.cmp("rr", "dev-same-rr", auth=ra, expect_cert=False,
                              extra=["-oldcert", cert, "-revreason", "1"])
            self.assertEqual(harness.rp_status(res.rsp_files[0].read_bytes()), (0, [], []), res.answers)
            got = [r["upstream"] for r in audit(self.gw, "revoked") if int(r.get("serial", "0"), 16) == serial]
            self.assertEqual(got[-1:], [upstream])
            self.assertEqual(len(self.vault.since(mark, "/revoke")), at_vault)
            if upstream == "local":
                self.assertEqual(issuer_of(self.signed("kur", "dev-same-kur", (twin, twin_key)).cert),
                                 DELEGATE_ISSUER)
        self.assert_refused(self.signed("kur", "dev-same-kur2", (twin, twin_key)), "certRevoked", "is revoked")

    def test_a_new_ca_status_unknown_fails_closed(self):
        """A signer Vault issued, checked by Vault's CRL (or its cert/<serial>): while the CRL is stale and
        cert/<serial> fails, its kur is refused (systemUnavail), as an old-CA signer's would be; once the
        status can be had, one Vault revoked behind the gateway's back is refused, the other renews."""
        cert, key = self.vault_cert("dev-stat")
        revoked, revoked_key = self.vault_cert("dev-stat-r")
        self.vault.control({"crl_stale": True, "force_status": 500, "match": "/cert"})
        try:
            res = self.signed("kur", "dev-stat-kur", (cert, key))
            self.assert_refused(res, "systemUnavail", "past its nextUpdate; and the status query failed")
        finally:
            self.vault.control({})
        ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
        req = urllib.request.Request(self.vault.url + "/v1/pki/revoke", method="POST",
                                     data=json.dumps({"serial_number": harness.serial_hex(revoked)}).encode(),
                                     headers={"X-Vault-Token": (self.gw.dir / "vault.token").read_text().strip()})
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            self.assertEqual(r.status, 200)
        self.assert_refused(self.signed("kur", "dev-stat-r-kur", (revoked, revoked_key)), "certRevoked", "is revoked")
        self.assertEqual(issuer_of(self.signed("kur", "dev-stat-kur2", (cert, key)).cert), DELEGATE_ISSUER)

    def reload(self, cfg):
        self.gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = admin(self.gw, "/reload", "POST")
        self.assertEqual(status, 200, body)

    def test_z_finished_old_ca_certificate_renews_no_more(self):
        """The last step (docs/migration.md, "Finish"): the role on the new CA alone, the old CA still
        configured for role "other". A certificate of the old CA no longer renews on the role; once the
        role's trust entry drops the old CA's chain too, a chain validated before the reload does not let
        it enrol either."""
        old, old_key = self.old_cert("dev-late")
        enrol = ["-subject", "/CN=dev-late.example.com"]
        self.assertEqual(issuer_of(self.signed("ir", "dev-late-ir", (old, old_key), enrol).cert), DELEGATE_ISSUER)
        cfg = json.loads(self.gw.config_path.read_text())
        role = cfg["roles"]["default"]
        role["upstream"] = "vault"
        del role["migration"]
        self.reload(cfg)
        res = self.signed("kur", "dev-late-kur", (old, old_key))
        self.assert_refused(res, "badCertId", "enrol with it instead")
        (self.gw.dir / "new-chains.pem").write_text("".join((self.gw.dir / f).read_text() for f in
                                                            ("vault-ca.pem", "vault-delegate.pem")))
        cfg["trust"]["new"] = dict(cfg["trust"]["demo"], untrusted_file="new-chains.pem")
        role["trust"] = ["new"]
        self.reload(cfg)
        res = self.signed("ir", "dev-late-ir2", (old, old_key), enrol)
        self.assert_refused(res, "badMessageCheck", "not issued by a CA trusted on this route")
        new_key = self.newkey("dev-late-p10")
        csr = self.gw.dir / "dev-late.csr"
        harness.run(["openssl", "req", "-new", "-key", new_key, "-subj", "/CN=dev-late.example.com", "-out", csr])
        res = self.gw.cmp("p10cr", "dev-late-p10", extra=["-csr", csr, "-implicit_confirm"])
        self.assertEqual(issuer_of(res.cert), VAULT_ISSUER, res.answers)


if __name__ == "__main__":
    harness.main()
