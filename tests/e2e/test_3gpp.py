"""3GPP TS 33.310 base-station enrolment (docs/3gpp.md) with real `openssl cmp` over TLS.

A vendor PKI (vendor root -> vendor intermediate -> base stations) signs the devices' ir; the device sends
its intermediate in extraCerts (-untrusted), the gateway holds only the vendor root. The operator's RA
(the gateway signer) answers with the operator root in extraCerts and caPubs. Asserted on decoded answers:
an allowed device is issued (ir/ip/certConf/pkiconf, Annex G), one not on the allow-list gets notAuthorized,
a PBM request on the route gets notAuthorized, a SHA-1-signed ir gets badAlg, and the operator certificate
renews by kur (its own subject only) while a vendor certificate not on the list cannot.

With a second vendor CA the role trusts, each allow-list line names the trust entry its device chains to:
the first vendor cannot mint a certificate with the second's listed subject or serial and enrol as its device.
"""
import json
import subprocess
import sys

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

from pyasn1.codec.der import encoder as der_encoder  # noqa: E402

ROUTE = "pki/roles/bs/cmp"
ROUTE_PLAIN = "pki/roles/bs-plain/cmp"
ROUTE_ANY = "pki/roles/bs-any/cmp"
ALLOWED = "/O=Vendor Inc/CN=bs-0001"
BY_SERIAL = "/O=Vendor Inc/CN=bs-0002"
STRANGER = "/O=Vendor Inc/CN=bs-0666"
SERIAL2 = "0x1C0FFEE2"
TEXT_KUR_NOT_ISSUED = ("key update renews a certificate a CA of this route issued, and %s's was not: enrol with "
                       "it instead (ir, cr or p10cr)")


def make_ca(d, name, subject, issuer=None, pathlen=None):
    key = harness.genkey(d / ("%s.key" % name))
    bc = "basicConstraints=critical,CA:TRUE" + (",pathlen:%d" % pathlen if pathlen is not None else "")
    ext = "%s\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n" % bc
    (d / ("%s.ext" % name)).write_text(ext + ("authorityKeyIdentifier=keyid\n" if issuer else ""))
    harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", d / ("%s.csr" % name)])
    argv = ["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-days", "30", "-sha256",
            "-extfile", d / ("%s.ext" % name), "-out", d / ("%s.pem" % name)]
    argv += ["-CA", d / ("%s.pem" % issuer), "-CAkey", d / ("%s.key" % issuer), "-set_serial", "0x51"] \
        if issuer else ["-signkey", key]
    harness.run(argv)


def make_device(d, name, subject, serial, issuer="vint"):
    """A base-station vendor certificate from the vendor intermediate (or the CA |issuer|)."""
    key = harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                       "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / ("%s.pem" % issuer),
                 "-CAkey", d / ("%s.key" % issuer), "-days", "30", "-sha256", "-extfile", d / ("%s.ext" % name),
                 "-set_serial", serial, "-out", d / ("%s.pem" % name)])
    return d / ("%s.pem" % name), key


def pem_der(path):
    return subprocess.run(["openssl", "x509", "-in", str(path), "-outform", "DER"], check=True,
                          stdout=subprocess.PIPE).stdout


def extra_certs(answer):
    ec = answer.msg["extraCerts"]
    return [der_encoder.encode(c) for c in ec] if ec.isValue else []


def ca_pubs(answer):
    body = answer.msg["body"][answer.body_type]
    return [der_encoder.encode(c) for c in body["caPubs"]] if body["caPubs"].isValue else []


class ThreeGpp(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        d = gw.dir
        make_ca(d, "vroot", "/O=Vendor Inc/CN=Vendor Root CA")
        make_ca(d, "vint", "/O=Vendor Inc/CN=Vendor Device CA", issuer="vroot", pathlen=0)
        make_device(d, "bs1", ALLOWED, "0x1C0FFEE1")
        make_device(d, "bs2", BY_SERIAL, SERIAL2)
        make_device(d, "bs666", STRANGER, "0x1C0FF666")
        # the role trusts two CAs (the vendor's, the operator's for kur): each line names the one it is of
        (d / "bs.allow").write_text("# base stations of this operator\ntrust:vendor %s\n\n  trust:vendor\t "
                                    "serial:1c:0f:fe:e2  \n" % ALLOWED)
        cfg["signer"]["chain"] = "ca.pem"  # the operator root: the gateway must put it in extraCerts
        cfg["trust"]["vendor"] = {"ca_file": "vroot.pem", "revocation": "none"}  # the intermediate comes from the device
        cfg["trust"]["operator"] = {"ca_file": "ca.pem", "untrusted_file": "issuing.pem", "revocation": "none"}
        # no chain: the operator root in the ip comes from the signer configuration alone
        cfg["upstreams"]["operator-ca"] = {"type": "local", "cert": "issuing.pem", "key": "issuing.key"}
        role = {
            "upstream": "operator-ca",
            "trust": ["vendor", "operator"],
            "pbm": ["demo-device"],
            "key_usage": ["digitalSignature", "keyAgreement"],
            "ext_key_usage": ["clientAuth", "serverAuth"],
            "allowed_san_types": ["dns"],
            "implicit_confirm": False,
            "device_allowlist": "bs.allow",
            "subject_from_signer": True,
            "ca_pubs": "ca.pem",
            "min_hash": "sha256",
        }
        cfg["roles"]["bs"] = role
        plain = dict(role)
        for k in ("subject_from_signer", "ca_pubs", "min_hash"):
            del plain[k]
        cfg["roles"]["bs-plain"] = plain
        cfg["roles"]["bs-any"] = dict(role, kur_any_signer=True)
        # the demo role's upstream has the operator CA: its certificates renew here only if it holds the list
        cfg["roles"]["default"]["device_allowlist"] = "bs.allow"

    def ir(self, out, device, *, path=ROUTE, digest=None, untrusted=True, sans=None, **kw):
        d = self.gw.dir
        extra = ["-untrusted", d / "vint.pem"] if untrusted else []
        if digest:
            extra += ["-digest", digest]
        if sans:
            extra += ["-sans", sans]
        key = self.newkey(out)
        res = self.gw.cmp("ir", out, auth=(d / ("%s.pem" % device), d / ("%s.key" % device)), newkey=key,
                          path=path, extra=extra, **kw)
        return res, key

    def test_allowed_device_vendor_chain(self):
        res, key = self.ir("ok", "bs1")
        ip = res.first
        self.assertEqual(ip.body_type, "ip")
        self.assertEqual(ip.status, 0, ip)
        # no -subject: openssl cmp puts the vendor certificate's subject in the template
        self.assert_issued(res.cert, key, "CN=bs-0001,O=Vendor Inc", [], ip.extra_certs_pem())
        ec = extra_certs(ip)
        self.assertTrue(pem_der(self.gw.dir / "signer.pem") in ec, "RA certificate missing from ip extraCerts")
        self.assertTrue(pem_der(self.gw.dir / "ca.pem") in ec, "operator root missing from ip extraCerts")
        self.assertEqual(ca_pubs(ip), [pem_der(self.gw.dir / "ca.pem")])
        # Annex G: ip, certConf, pkiconf
        self.assertFalse(ip.implicit_confirm())
        self.assertEqual(res.last.body_type, "pkiconf")

    def test_allowed_by_serial(self):
        res, _ = self.ir("serial", "bs2")
        self.assertEqual(res.first.status, 0, res.first)

    def p10cr_no_subject(self, out, path):
        """A p10cr whose CSR names no subject, only a DNS SAN, signed with the allowed vendor certificate.
        (OpenSSL 3.0's server refuses an ir without template subject: signature POPO needs one.)"""
        d = self.gw.dir
        key = self.newkey(out)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/", "-addext",
                     "subjectAltName=DNS:bs.example.net", "-out", d / ("%s.csr" % out)])
        res = self.gw.cmp("p10cr", out, auth=(d / "bs1.pem", d / "bs1.key"), path=path,
                          extra=["-csr", d / ("%s.csr" % out), "-untrusted", d / "vint.pem"])
        self.assertEqual(res.first.status, 0, res.first)
        return res, key

    def test_subject_from_signer(self):
        res, key = self.p10cr_no_subject("p10-subj", ROUTE)
        self.assert_issued(res.cert, key, "CN=bs-0001,O=Vendor Inc", ["DNS:bs.example.net"],
                           res.first.extra_certs_pem())

    def test_subject_twin_without_subject_from_signer(self):
        res, key = self.p10cr_no_subject("p10-plain", ROUTE_PLAIN)
        self.assertEqual(ca_pubs(res.first), [])  # caPubs only where configured
        out = harness.run(["openssl", "x509", "-in", res.cert, "-noout", "-subject"]).stdout.decode()
        self.assertEqual(out.strip(), "subject=")

    def test_device_not_on_allowlist(self):
        res, _ = self.ir("stranger", "bs666", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized")
        self.assertEqual(res.first.status_strings, ["device %s is not on this route's allow-list" % STRANGER])
        # docs/errors.md device_not_allowed: logged, with what the device was told
        self.assertIn(("bs", STRANGER, res.first.status_strings[0]), self.gw.denials("device_allowlist"))

    def test_device_on_plain_route_needs_list_too(self):
        res, _ = self.ir("stranger-plain", "bs666", path=ROUTE_PLAIN, expect_cert=False)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized", "is not on this route's allow-list")

    def test_pbm_refused(self):
        res = self.gw.cmp("ir", "pbm", auth="pbm", newkey=self.newkey("pbm"), subject="/CN=bs-pbm", path=ROUTE,
                          expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized")
        self.assertEqual(res.first.status_strings,
                         ["this route accepts signature-protected requests only: sign with the device "
                          "certificate (3GPP TS 33.310)"])
        self.assertEqual(self.gw.denials("signature_only_route"),
                         [("bs", "pbm:demo-device", res.first.status_strings[0])])

    def test_sha224_refused(self):
        res, _ = self.ir("sha224", "bs1", digest="sha224", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.first, ("ip",), "badAlg")
        self.assertEqual(res.first.status_strings,
                         ["SHA-224 is not accepted on this route: sign with SHA-256 or stronger (3GPP TS 33.310)"])

    def test_sha1_refused_on_every_route(self):
        """SHA-1 protection is under 112 bits of security: refused with or without min_hash (weak_protection)."""
        for path in (ROUTE, ROUTE_PLAIN):
            with self.subTest(path=path):
                res, _ = self.ir("sha1-" + path.split("/")[-2], "bs1", path=path, digest="sha1", expect_cert=False)
                self.assertIsNone(res.cert)
                self.assert_cmp_error(res.first, ("error",), "badAlg")
                self.assertEqual(res.first.status_strings,
                                 ["message protection is signed with a hash under 112 bits of security "
                                  "(ecdsa-with-SHA1): sign with SHA-256 or stronger"])

    def test_sha384_accepted(self):
        res, _ = self.ir("sha384", "bs1", digest="sha384")
        self.assertEqual(res.first.status, 0, res.first)

    def test_sha224_accepted_without_min_hash(self):
        res, _ = self.ir("sha224-plain", "bs1", path=ROUTE_PLAIN, digest="sha224")
        self.assertEqual(res.first.status, 0, res.first)

    def test_vendor_intermediate_required(self):
        """The gateway holds only the vendor root: without the device's chain the signature cannot be trusted."""
        res, _ = self.ir("nochain", "bs1", untrusted=False, expect_cert=False)
        self.assertIsNone(res.cert)
        self.assertNotEqual(res.first.status, 0, res.first)

    def test_kur_with_operator_certificate(self):
        d = self.gw.dir
        res, key = self.ir("first", "bs1")
        new = self.newkey("renewed")
        kur = self.gw.cmp("kur", "renew", auth=(res.cert, key), newkey=new, path=ROUTE)
        self.assertEqual(kur.first.body_type, "kup")
        self.assertEqual(kur.first.status, 0, kur.first)
        self.assert_issued(kur.cert, new, "CN=bs-0001,O=Vendor Inc", [],
                           kur.first.extra_certs_pem())
        self.assertEqual(kur.last.body_type, "pkiconf")
        # twin: a vendor certificate that is not on the list cannot "renew" itself into an operator one
        bad = self.gw.cmp("kur", "renew-bad", auth=(d / "bs666.pem", d / "bs666.key"), newkey=self.newkey("rb"),
                          path=ROUTE, extra=["-untrusted", d / "vint.pem"], expect_cert=False)
        self.assertIsNone(bad.cert)
        self.assert_cmp_error(bad.first, ("kup",), "notAuthorized", "is not on this route's allow-list")

    def test_kur_with_vendor_certificate(self):
        """RFC 9483 §4.1.3: a kur updates a certificate this PKI issued. The listed vendor certificate, which
        the role trusts to enrol with and no upstream of the role issued, gets an ir's answer, not a renewal."""
        d = self.gw.dir
        kur = self.gw.cmp("kur", "renew-vendor", auth=(d / "bs1.pem", d / "bs1.key"), newkey=self.newkey("rv"),
                          path=ROUTE, extra=["-untrusted", d / "vint.pem"], expect_cert=False)
        self.assertIsNone(kur.cert)
        self.assert_cmp_error(kur.first, ("kup",), "badCertId", TEXT_KUR_NOT_ISSUED % ALLOWED)
        self.assertIn(("bs", ALLOWED, TEXT_KUR_NOT_ISSUED % ALLOWED), self.gw.denials("kur_not_issued"))
        # twins: the operator certificate an ir of it gets renews (test_kur_with_operator_certificate); and a
        # role that says "kur_any_signer" takes the vendor certificate's kur as its ir
        res, _ = self.ir("vendor-first", "bs1")
        self.assertEqual(res.first.status, 0, res.first)
        ok = self.gw.cmp("kur", "renew-vendor-any", auth=(d / "bs1.pem", d / "bs1.key"), newkey=self.newkey("rva"),
                         path=ROUTE_ANY, extra=["-untrusted", d / "vint.pem"])
        self.assertEqual(ok.first.body_type, "kup")
        self.assertEqual(ok.first.status, 0, ok.first)

    def test_kur_other_subject(self):
        """The operator certificate renews itself: asking for another station's subject is an enrolment."""
        # bs-0002 is listed by its vendor certificate's serial, which its operator certificate does not have
        res, key = self.ir("first2", "bs2")
        other = self.gw.cmp("kur", "renew-other", auth=(res.cert, key), newkey=self.newkey("ro"), path=ROUTE,
                            subject=ALLOWED, expect_cert=False)
        self.assertIsNone(other.cert)
        self.assert_cmp_error(other.first, ("kup",), "notAuthorized",
                              "device %s is not on this route's allow-list" % BY_SERIAL)
        # twin: the same operator certificate renewing its own subject
        same = self.gw.cmp("kur", "renew-same", auth=(res.cert, key), newkey=self.newkey("rs"), path=ROUTE)
        self.assertEqual(same.first.status, 0, same.first)

    def test_kur_subject_spelt_otherwise(self):
        """A subject X509_NAME_cmp takes for the operator certificate's (case and runs of spaces ignored) is
        another name to a relying party that compares names byte for byte, and to the allow-list: an
        enrolment, checked against the list, not the renewal of the certificate's own subject."""
        res, key = self.ir("first-spelt", "bs2")
        for i, subject in enumerate(("/O=Vendor Inc/CN=BS-0002", "/O=Vendor  Inc/CN=bs-0002")):
            with self.subTest(subject=subject):
                other = self.gw.cmp("kur", "renew-spelt-%d" % i, auth=(res.cert, key),
                                    newkey=self.newkey("rsp%d" % i), path=ROUTE, subject=subject, expect_cert=False)
                self.assertIsNone(other.cert)
                self.assert_cmp_error(other.first, ("kup",), "notAuthorized",
                                      "device %s is not on this route's allow-list" % BY_SERIAL)
        # twin: the certificate's own subject, spelt out in the template, renews
        same = self.gw.cmp("kur", "renew-spelt-same", auth=(res.cert, key), newkey=self.newkey("rss"), path=ROUTE,
                           subject=BY_SERIAL)
        self.assertEqual(same.first.status, 0, same.first)

    def test_kur_with_certificate_of_a_role_with_the_list(self):
        """An operator certificate of another role holding the same allow-list renews here: not listed itself
        (its station is listed by its vendor certificate's serial), it is exempt as this role's own are."""
        res, key = self.ir("plain-station", "bs2", path=ROUTE_PLAIN)
        self.assertEqual(res.first.status, 0, res.first)
        renewed = self.gw.cmp("kur", "renew-plain-station", auth=(res.cert, key), newkey=self.newkey("rpl"),
                              path=ROUTE)
        self.assertEqual(renewed.first.status, 0, renewed.first)


class ThreeGppSharedCa(harness.GatewayTestCase):
    """The demo role, with PBM and no allow-list, shares the operator CA with a 3GPP role."""

    @classmethod
    def edit_config(cls, cfg, gw):
        ThreeGpp.edit_config.__func__(cls, cfg, gw)
        del cfg["roles"]["default"]["device_allowlist"]
        # a station the operator also lists under its own CA: a certificate of the demo role under its subject
        # passes the list
        with open(gw.dir / "bs.allow", "a") as f:
            f.write("trust:operator %s\n" % ALLOWED)

    def test_kur_with_certificate_of_a_role_without_the_list(self):
        """A certificate the demo role issued to a PBM secret holder, under the subject of a station that is
        not listed, is no operator certificate to renew on the 3GPP route."""
        key = self.newkey("pbm-station")
        res = self.gw.cmp("ir", "pbm-station", auth="pbm", newkey=key, subject=STRANGER)
        self.assertEqual(res.first.status, 0, res.first)
        kur = self.gw.cmp("kur", "renew-pbm-station", auth=(res.cert, key), newkey=self.newkey("rps"),
                          path=ROUTE, expect_cert=False)
        self.assertIsNone(kur.cert)
        self.assert_cmp_error(kur.first, ("kup",), "notAuthorized",
                              "device %s is not on this route's allow-list" % STRANGER)
        # twin: one of that role under a subject listed for the operator CA is checked against the list, and
        # passes it (the load warns of this pair of roles: the demo role sets no allowed_subjects)
        listed = self.gw.cmp("ir", "pbm-listed", auth="pbm", newkey=self.newkey("pbm-listed"), subject=ALLOWED)
        self.assertEqual(listed.first.status, 0, listed.first)
        ok = self.gw.cmp("kur", "renew-pbm-listed", auth=(listed.cert, self.gw.dir / "pbm-listed.key"),
                         newkey=self.newkey("rpbl"), path=ROUTE)
        self.assertEqual(ok.first.status, 0, ok.first)


B_SUBJECT = "/O=Vendor B/CN=bs-b-0001"  # listed by subject
B_SERIAL = "0x2B0002"  # listed by serial
FORGED_SERIAL_SUBJECT = "/O=Vendor Inc/CN=bs-0777"


class ThreeGppTwoVendors(harness.GatewayTestCase):
    """The operator buys base stations from two vendors, and the role trusts both vendor roots. A serial
    number is unique only per CA and a subject is what a CA writes: the list says of which vendor each is."""

    @classmethod
    def edit_config(cls, cfg, gw):
        ThreeGpp.edit_config.__func__(cls, cfg, gw)
        d = gw.dir
        make_ca(d, "broot", "/O=Vendor B/CN=Vendor B Root CA")
        make_device(d, "bsb1", B_SUBJECT, "0x2B0001", issuer="broot")
        make_device(d, "bsb2", "/O=Vendor B/CN=bs-b-0002", B_SERIAL, issuer="broot")
        # vendor A's devices named as vendor B's: B's listed subject, B's listed serial
        make_device(d, "forged-subject", B_SUBJECT, "0x1C0FF001")
        make_device(d, "forged-serial", FORGED_SERIAL_SUBJECT, B_SERIAL)
        cfg["trust"]["vendor-b"] = {"ca_file": "broot.pem", "revocation": "none"}
        (d / "bs.allow").write_text("trust:vendor %s\ntrust:vendor serial:1c0ffee2\n# vendor B\n"
                                    "trust:vendor-b %s\ntrust:vendor-b serial:%s\n"
                                    % (ALLOWED, B_SUBJECT, B_SERIAL[2:]))
        for role in ("bs", "bs-plain"):
            cfg["roles"][role]["trust"] = ["vendor", "vendor-b", "operator"]

    ir = ThreeGpp.ir

    def test_forged_subject_refused(self):
        res, _ = self.ir("ir-forged-subject", "forged-subject", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized")
        self.assertEqual(res.first.status_strings, ["device %s is not on this route's allow-list" % B_SUBJECT])

    def test_forged_serial_refused(self):
        res, _ = self.ir("ir-forged-serial", "forged-serial", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized",
                              "device %s is not on this route's allow-list" % FORGED_SERIAL_SUBJECT)

    def test_vendor_b_devices_enrol(self):
        for device in ("bsb1", "bsb2"):
            res, _ = self.ir("b-" + device, device)
            self.assertEqual(res.first.status, 0, res.first)

    def test_bare_line_refused_at_load(self):
        """A line naming no trust entry could be of either vendor: the start refuses it, naming the line."""
        def bare(cfg, gw):
            ThreeGppTwoVendors.edit_config.__func__(ThreeGppTwoVendors, cfg, gw)
            (gw.dir / "bs.allow").write_text("trust:vendor %s\n# vendor B\nserial:%s\n" % (ALLOWED, B_SERIAL[2:]))

        rc, err = harness.refused_start(bare)
        self.assertNotEqual(rc, 0)
        msgs = [json.loads(line).get("msg", "") for line in err.splitlines() if line.startswith("{")]
        want = ('bs.allow" line 3: no "trust:<name> " before "serial:2B0002", and the role trusts 3 entries: name '
                'the one its device chains to')
        self.assertTrue(any(want in m for m in msgs), err)

    def test_vendor_a_devices_enrol(self):
        for device in ("bs1", "bs2"):
            res, _ = self.ir("a-" + device, device)
            self.assertEqual(res.first.status, 0, res.first)
        res, _ = self.ir("a-stranger", "bs666", expect_cert=False)
        self.assert_cmp_error(res.first, ("ip",), "notAuthorized", "is not on this route's allow-list")


if __name__ == "__main__":
    harness.main()
