"""General messages (RFC 9483 §4.3) over TLS with the real gateway, each sent by two independent clients:
the project's client on OpenSSL's CMP API (tests/e2e/cmpclient.c; the 3.0 CLI cannot ask for these
infoTypes) and a BouncyCastle 1.72 client (tests/e2e/bc/BcCmpClient.java). caCerts; the root CA update
of RFC 9483 §4.3.2 (id-it-rootCaCert with the client's root, or none, answered with id-it-rootCaKeyUpdate, with
and without a configured update, and the drafts' request); certReqTemplate; crlStatusList -> crls; an
unknown infoType; and the certificate profile of RFC 9483 §3.1 choosing the role a genm and an ir are served by.
The returned ITAVs are decoded independently with pyasn1 (RFC 5280/4211 modules); refusals are
decoded error messages."""
import os
import time
import unittest
import warnings

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from pyasn1.codec.der import decoder as der_decoder  # noqa: E402
from pyasn1.codec.der import encoder as der_encoder  # noqa: E402
from pyasn1.type import namedtype, tag, univ  # noqa: E402
from pyasn1_modules import rfc4211, rfc5280  # noqa: E402

CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
CA_CERTS, ROOT_UPDATE, TEMPLATE = "1.3.6.1.5.5.7.4.17", "1.3.6.1.5.5.7.4.18", "1.3.6.1.5.5.7.4.19"
ROOT_CERT, CRL_STATUS, CRLS = "1.3.6.1.5.5.7.4.20", "1.3.6.1.5.5.7.4.22", "1.3.6.1.5.5.7.4.23"
OLD_ROOT = ["cmpgw demo", "cmpgw demo root CA"]
NEW_ROOT = ["cmpgw demo", "cmpgw demo root CA G2"]
TEXT_BAD_ROOT = ("the id-it-rootCaCert value is not a certificate: send the root CA certificate you trust, or no "
                 "value (RFC 9483 §4.3.2)")
CRL_CLOCK_SKEW_SECS = 300  # GW_CRL_CLOCK_SKEW_SECS (base/limits.h)


def generalized_time(ahead):
    """GeneralizedTime text of now plus |ahead| seconds."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + ahead))


class CertSeq(univ.SequenceOf):
    componentType = rfc5280.Certificate()


class CrlSeq(univ.SequenceOf):
    componentType = rfc5280.CertificateList()


def explicit(n):
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


class RootCaKeyUpdateContent(univ.Sequence):
    """RFC 9810 §5.3.19.15 (EXPLICIT TAGS module)."""
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("newWithNew", rfc5280.Certificate()),
        namedtype.OptionalNamedType("newWithOld", rfc5280.Certificate().subtype(explicitTag=explicit(0))),
        namedtype.OptionalNamedType("oldWithNew", rfc5280.Certificate().subtype(explicitTag=explicit(1))))


def name_of(name):
    """The attribute values of a Name, in order, e.g. ["cmpgw demo", "cmpgw demo root CA"]."""
    return [str(der_decoder.decode(bytes(atv["value"]))[0]) for rdn in name[0] for atv in rdn]


def subject_of(cert):
    return name_of(cert["tbsCertificate"]["subject"])


def seq_body(der, tag_byte=0x30):
    """The content of the DER SEQUENCE (or other constructed TLV with |tag_byte|) |der|."""
    if der[0] != tag_byte:
        raise harness.Failure("not tagged 0x%02x: %r" % (tag_byte, der[:4]))
    n, off = der[1], 2
    if n & 0x80:
        off += n & 0x7f
        n = int.from_bytes(der[2:off], "big")
    if off + n != len(der):
        raise harness.Failure("SEQUENCE length %d does not match %d bytes" % (n, len(der) - off))
    return der[off:]


def genp_itavs(answer):
    """[(infoType, value DER or None)] of a decoded genp (pyasn1-modules 0.2.8 names the genp body "gen")."""
    if answer.body_type not in ("genp", "gen"):
        raise harness.Failure("expected a genp, got %r" % answer)
    return [(str(i["infoType"]), bytes(i["infoValue"]) if i["infoValue"].isValue else None)
            for i in answer.msg["body"][answer.body_type]]


def root_update(der):
    """The decoded RootCaKeyUpdateContent |der|, with nothing after it."""
    content, rest = der_decoder.decode(der, asn1Spec=RootCaKeyUpdateContent())
    if rest:
        raise harness.Failure("%d bytes after the RootCaKeyUpdateContent" % len(rest))
    return content


def template_of(der):
    """(CertTemplate, [keySpec control types]) of a CertReqTemplateContent."""
    tmpl, rest = der_decoder.decode(seq_body(der), asn1Spec=rfc4211.CertTemplate())
    controls, rest2 = der_decoder.decode(rest, asn1Spec=rfc4211.Controls())
    if rest2:
        raise harness.Failure("bytes after the keySpec controls")
    return tmpl, controls


def eku_of(tmpl):
    """The extendedKeyUsage OIDs a CertTemplate prescribes."""
    for e in tmpl["extensions"]:
        if str(e["extnID"]) == "2.5.29.37":
            return [str(k) for k in der_decoder.decode(bytes(e["extnValue"]), asn1Spec=rfc5280.ExtKeyUsageSyntax())[0]]
    return []


class GenmCase(harness.GatewayTestCase):
    """Both clients against one gateway."""

    @classmethod
    def setUpClass(cls):
        harness.bc_classes()  # compile before the gateway starts: javac is the slow part
        super().setUpClass()

    def setUp(self):
        # pyasn1 0.4 on Python 3.11+ warns about its own BIT STRING code on every decode
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pyasn1")

    def own(self, name, *args, auth="sig", profile=None, path="/pki/cmp", expect_ok=True):
        """Runs cmpclient with |args| (a subcommand and its arguments); (exit code, stdout lines, decoded
        last answer or None, stderr)."""
        d = self.gw.dir
        rspout = d / ("%s.rsp.der" % name)
        if rspout.exists():
            rspout.unlink()
        argv = [CLIENT_BIN, "--url", self.gw.url(path), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                "--tls-key", d / "client.key", "--rspout", rspout]
        if auth == "sig":
            argv += ["--cert", d / "client.pem", "--key", d / "client.key"]
        else:
            argv += ["--ref", "demo-device", "--secret", d / "pbm.secret"]
        if profile:
            argv += ["--profile", profile]
        p = harness.run(argv + list(args), check=False)
        lines, err = p.stdout.decode().splitlines(), p.stderr.decode(errors="replace")
        if expect_ok and p.returncode != 0:
            raise harness.Failure("cmpclient %s exited %d: %s %s" % (args[0], p.returncode, lines, err))
        return p.returncode, lines, harness.decode_cmp(rspout) if rspout.exists() else None, err

    def genm(self, name, *oids, expect_ok=True, **kw):
        """cmpclient genm; returns (exit code, stdout lines, {index: value DER}, decoded answer)."""
        d = self.gw.dir
        rc, lines, answer, _ = self.own(name, "genm", "--out", d / name, *oids, expect_ok=expect_ok, **kw)
        values = {}
        for i in range(len(oids)):
            f = d / ("%s.%d.der" % (name, i))
            if f.exists():
                values[i] = f.read_bytes()
        return rc, lines, values, answer

    def rootcaupdate(self, name, oldroot=None, **kw):
        args = ["rootcaupdate", "--out", self.gw.dir / name] + (["--oldroot", self.gw.dir / oldroot] if oldroot else [])
        return self.own(name, *args, **kw)

    def bc(self, name, info_type, *extra, check=True, **kw):
        d = self.gw.dir
        extra = [str(d / a) if a.endswith(".pem") else a for a in extra]
        return harness.bc_genm(self.gw, name, info_type, extra=extra, check=check, **kw)

    def assert_update(self, der, own=True):
        """|der| is the configured update: newWithNew, newWithOld signed by the old root, oldWithNew."""
        u = root_update(der)
        self.assertEqual(subject_of(u["newWithNew"]), NEW_ROOT)
        self.assertEqual(subject_of(u["newWithOld"]), NEW_ROOT)
        self.assertEqual(name_of(u["newWithOld"]["tbsCertificate"]["issuer"]), OLD_ROOT)
        self.assertEqual(u["newWithOld"]["tbsCertificate"]["subjectPublicKeyInfo"],
                         u["newWithNew"]["tbsCertificate"]["subjectPublicKeyInfo"])
        self.assertEqual(u["oldWithNew"].isValue, own)
        if own:
            self.assertEqual(subject_of(u["oldWithNew"]), OLD_ROOT)
            self.assertEqual(name_of(u["oldWithNew"]["tbsCertificate"]["issuer"]), NEW_ROOT)
        # newWithOld verifies under the root the client trusts, by openssl rather than by either client
        f = self.gw.dir / "checked-newwithold.pem"
        f.write_text(harness.der_to_pem(seq_body(der_encoder.encode(u["newWithOld"]), 0xa0)))
        harness.verify_chain(f, self.gw.dir / "ca.pem")


# ---------------------------------------------------------------------------------------------
# A gateway with a root CA update configured
# ---------------------------------------------------------------------------------------------

class Genm(GenmCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        harness.make_root_update(gw.dir)
        cfg["root_ca_update"] = {"new_with_new": "newroot.pem", "new_with_old": "newwithold.pem",
                                 "old_with_new": "oldwithnew.pem"}
        cfg["roles"]["default"]["authorization"] = {"allowed_key_types": ["ec:P-256", "rsa:3072"]}

    # -- caCerts (RFC 9483 §4.3.1) -------------------------------------------------------------------------

    def test_ca_certs(self):
        _, lines, values, _ = self.genm("cacerts", CA_CERTS)
        self.assertEqual(lines[:2], ["genp 1", "itav %s %d" % (CA_CERTS, len(values[0]))])
        certs, rest = der_decoder.decode(values[0], asn1Spec=CertSeq())
        self.assertEqual(rest, b"")
        self.assertEqual([subject_of(c) for c in certs],
                         [["cmpgw demo", "cmpgw demo issuing CA"], OLD_ROOT])
        self.assertIn("  cert /O=cmpgw demo/CN=cmpgw demo issuing CA", lines)

    def test_ca_certs_pbm(self):
        _, lines, values, _ = self.genm("cacerts-pbm", CA_CERTS, auth="pbm")
        self.assertEqual(len(der_decoder.decode(values[0], asn1Spec=CertSeq())[0]), 2)

    def test_bc_ca_certs(self):
        for mode in ("sig", "pbm"):
            with self.subTest(mode=mode):
                r = self.bc("bc-cacerts-" + mode, "caCerts", mode=mode)
                self.assertEqual(r.lines, ["genp 1", "itav %s %d" % (CA_CERTS, len(r.values[0]))])
                certs, _ = der_decoder.decode(r.values[0], asn1Spec=CertSeq())
                self.assertEqual([subject_of(c) for c in certs], [["cmpgw demo", "cmpgw demo issuing CA"], OLD_ROOT])

    # -- root CA update (RFC 9483 §4.3.2) ------------------------------------------------------------------

    def test_root_ca_cert(self):
        """id-it-rootCaCert with the old root: the update, checked by the client as RFC 4210 §4.4 says."""
        _, lines, answer, _ = self.rootcaupdate("rootupd", oldroot="ca.pem")
        self.assertEqual(lines, ["rootCaKeyUpdate newWithNew /O=cmpgw demo/CN=cmpgw demo root CA G2",
                                 "newWithOld signed by the old root", "oldWithNew signed by the new root"])
        [(oid, value)] = genp_itavs(answer)
        self.assertEqual(oid, ROOT_UPDATE)
        self.assert_update(value)

    def test_root_ca_cert_without_root(self):
        """No root named: the update, for the client to check against what it trusts."""
        _, lines, answer, _ = self.rootcaupdate("rootupd-none")
        self.assertEqual(lines[1:], ["newWithOld present", "oldWithNew signed by the new root"])
        self.assert_update(genp_itavs(answer)[0][1])

    def test_root_ca_cert_other_root(self):
        """The twin: a client that trusts the new root already, or another certificate, gets no update."""
        for root in ("newroot.pem", "client.pem"):
            with self.subTest(root=root):
                _, lines, answer, _ = self.rootcaupdate("rootupd-" + root, oldroot=root)
                self.assertEqual(lines, ["rootCaKeyUpdate absent"])
                self.assertEqual(genp_itavs(answer), [(ROOT_UPDATE, None)])

    def test_genm_root_cert(self):
        """docs/errors.md row genm_root_cert: a value that is no certificate is refused, said so."""
        d = self.gw.dir
        (d / "int.der").write_bytes(bytes.fromhex("020107"))
        (d / "seq.der").write_bytes(bytes.fromhex("3003020107"))
        for value in ("int.der", "seq.der"):
            with self.subTest(value=value):
                rc, _, values, answer = self.genm("rootcert-" + value, "%s:der:%s" % (ROOT_CERT, d / value),
                                                  expect_ok=False)
                self.assertEqual((rc, values), (2, {}))
                self.assertEqual((answer.body_type, answer.status, answer.fail_info), ("error", 2, ["badRequest"]))
                self.assertEqual(answer.status_strings, [TEXT_BAD_ROOT])
        # the twin: the same request with a certificate as the value is answered
        _, lines, values, _ = self.genm("rootcert-cert", "%s:cert:%s" % (ROOT_CERT, d / "ca.pem"))
        self.assertEqual(lines, ["genp 1", "itav %s %d" % (ROOT_UPDATE, len(values[0]))])

    def test_root_ca_key_update_drafts(self):
        """The drafts' request (id-it-rootCaKeyUpdate, no value) is still answered with the update."""
        _, lines, values, _ = self.genm("rootupd-draft", ROOT_UPDATE)
        self.assertEqual(lines, ["genp 1", "itav %s %d" % (ROOT_UPDATE, len(values[0]))])
        self.assert_update(values[0])

    def test_bc_root_ca_cert(self):
        r = self.bc("bc-rootupd", "rootCaCert", "--root", "ca.pem")
        self.assertEqual(r.lines, ["genp 1", "itav %s %d" % (ROOT_UPDATE, len(r.values[0])),
                                   "rootCaKeyUpdate newWithNew O=cmpgw demo,CN=cmpgw demo root CA G2",
                                   "newWithOld signed by our root", "oldWithNew signed by the new root"])
        self.assert_update(r.values[0])

    def test_bc_root_ca_cert_without_root(self):
        r = self.bc("bc-rootupd-none", "rootCaCert", mode="pbm")
        self.assertEqual(r.lines[3:], ["newWithOld present", "oldWithNew signed by the new root"])
        self.assert_update(r.values[0])

    def test_bc_root_ca_cert_other_root(self):
        for root in ("newroot.pem", "client.pem"):
            with self.subTest(root=root):
                r = self.bc("bc-rootupd-" + root, "rootCaCert", "--root", root)
                self.assertEqual((r.lines, r.values), (["genp 1", "itav %s absent" % ROOT_UPDATE,
                                                        "rootCaKeyUpdate absent"], {}))

    def test_bc_root_ca_key_update_drafts(self):
        r = self.bc("bc-rootupd-draft", "rootCaKeyUpdate", "--root", "ca.pem")
        self.assertEqual(r.lines[2:], ["rootCaKeyUpdate newWithNew O=cmpgw demo,CN=cmpgw demo root CA G2",
                                       "newWithOld signed by our root", "oldWithNew signed by the new root"])

    # -- certReqTemplate (RFC 9483 §4.3.3) -----------------------------------------------------------------

    def assert_default_template(self, der):
        tmpl, controls = template_of(der)
        self.assertFalse(tmpl["subject"].isValue)  # the client names itself
        self.assertEqual(sorted(str(e["extnID"]) for e in tmpl["extensions"]), ["2.5.29.15", "2.5.29.37"])
        self.assertEqual([str(c["type"]) for c in controls], ["1.3.6.1.5.5.7.5.1.11", "1.3.6.1.5.5.7.5.1.12"])
        alg = der_decoder.decode(bytes(controls[0]["value"]), asn1Spec=rfc5280.AlgorithmIdentifier())[0]
        self.assertEqual(str(alg["algorithm"]), "1.2.840.10045.2.1")  # id-ecPublicKey, P-256
        self.assertEqual(str(der_decoder.decode(bytes(alg["parameters"]))[0]), "1.2.840.10045.3.1.7")
        self.assertEqual(int(der_decoder.decode(bytes(controls[1]["value"]))[0]), 3072)

    def test_cert_req_template(self):
        _, _, values, _ = self.genm("template", TEMPLATE)
        self.assert_default_template(values[0])

    def test_bc_cert_req_template(self):
        r = self.bc("bc-template", "certReqTemplate")
        self.assertEqual(r.lines, ["genp 1", "itav %s %d" % (TEMPLATE, len(r.values[0]))])
        self.assert_default_template(r.values[0])

    # -- crlStatusList (RFC 9483 §4.3.4) -------------------------------------------------------------------

    def assert_crl(self, der):
        crls, rest = der_decoder.decode(der, asn1Spec=CrlSeq())
        self.assertEqual((len(crls), rest), (1, b""))
        self.assertEqual(name_of(crls[0]["tbsCertList"]["issuer"]), ["cmpgw demo", "cmpgw demo issuing CA"])

    def test_crls(self):
        _, lines, values, _ = self.genm("crls", CRL_STATUS)
        self.assertEqual(lines[1], "itav %s %d" % (CRLS, len(values[0])))
        self.assert_crl(values[0])

    def crl_status(self, name, source_pem, this_update):
        """A file with a crlStatusList value: one CRLStatus naming the subject of |source_pem| as its issuer
        CRLSource ([1] EXPLICIT GeneralNames, RFC 9810 §5.3.19.16) with thisUpdate |this_update|."""
        return harness.crl_status_list(self.gw.dir, name, [source_pem], this_update)

    def test_crls_current_for_another_ca(self):
        """The client's CRL of another CA says nothing of this CA's: an absent value ("yours is current")
        only answers a CRLStatus that names the issuer of the CRL served, however new the client's is."""
        value = self.crl_status("crls-other", "ca.pem", generalized_time(0))  # the root's, not the issuing CA's
        _, lines, values, _ = self.genm("crls-other", "%s:der:%s" % (CRL_STATUS, value))
        self.assertEqual(lines[1], "itav %s %d" % (CRLS, len(values.get(0, b""))))
        self.assert_crl(values[0])

    def test_crls_current_for_this_ca(self):
        """A client whose CRL of this CA is as new as the one served (a minute on: the CRL may be signed
        as the genm comes), by a clock that runs up to the skew ahead of the gateway's
        (GW_CRL_CLOCK_SKEW_SECS), is told it is current."""
        for ahead in (60, CRL_CLOCK_SKEW_SECS - 60):
            with self.subTest(ahead=ahead):
                name = "crls-same-%d" % ahead
                value = self.crl_status(name, "issuing.pem", generalized_time(ahead))
                _, lines, values, _ = self.genm(name, "%s:der:%s" % (CRL_STATUS, value))
                self.assertEqual((lines[1], values), ("itav %s absent" % CRLS, {}))

    def test_crls_client_clock_ahead(self):
        """A client's CRL dated further ahead than the skew is no CRL the gateway would take, but a wrong
        clock's: it is not newer than the one served, which the client gets (RFC 9810 §5.3.19.17), else it
        would be told its CRL is current for as long as its clock is wrong. Twin of
        test_crls_current_for_this_ca."""
        for name, when in (("crls-ahead-skew", generalized_time(CRL_CLOCK_SKEW_SECS + 60)),
                           ("crls-ahead-2099", "20991231000000Z")):
            with self.subTest(when=when):
                value = self.crl_status(name, "issuing.pem", when)
                _, lines, values, _ = self.genm(name, "%s:der:%s" % (CRL_STATUS, value))
                self.assertEqual(lines[1], "itav %s %d" % (CRLS, len(values.get(0, b""))))
                self.assert_crl(values[0])

    def test_bc_crls(self):
        r = self.bc("bc-crls", "crlStatusList", "--crl-issuer", "issuing.pem")
        self.assertEqual(r.lines, ["genp 1", "itav %s %d" % (CRLS, len(r.values[0]))])
        self.assert_crl(r.values[0])

    # -- what is not answered ---------------------------------------------------------------------

    def test_unknown_info_type(self):
        rc, lines, values, answer = self.genm("unknown", "1.2.3.4", expect_ok=False)
        self.assertEqual(rc, 2)
        self.assertEqual(values, {})
        self.assertEqual((answer.body_type, answer.status, answer.fail_info), ("error", 2, ["badRequest"]))
        self.assertEqual(answer.status_strings, [
            "infoType 1.2.3.4 is not supported: this server answers id-it-caCerts, id-it-rootCaCert, "
            "id-it-certReqTemplate and id-it-crlStatusList"])

    def test_known_and_unknown_twin(self):
        """One unknown infoType refuses the whole genm: nothing half-answered."""
        rc, _, values, answer = self.genm("mixed", CA_CERTS, "1.2.3.4", expect_ok=False)
        self.assertEqual((rc, values), (2, {}))
        self.assertEqual(answer.fail_info, ["badRequest"])


# ---------------------------------------------------------------------------------------------
# No root CA update configured: id-it-rootCaKeyUpdate with an absent value, whatever the request
# ---------------------------------------------------------------------------------------------

class GenmNoUpdate(GenmCase):

    def test_root_ca_cert(self):
        for root in ("ca.pem", None):
            with self.subTest(root=root):
                _, lines, answer, _ = self.rootcaupdate("noupd-%s" % root, oldroot=root)
                self.assertEqual(lines, ["rootCaKeyUpdate absent"])
                self.assertEqual(genp_itavs(answer), [(ROOT_UPDATE, None)])
        _, lines, _, answer = self.genm("noupd-draft", ROOT_UPDATE)
        self.assertEqual((lines, genp_itavs(answer)), (["genp 1", "itav %s absent" % ROOT_UPDATE],
                                                       [(ROOT_UPDATE, None)]))

    def test_bc_root_ca_cert(self):
        for extra in (["--root", "ca.pem"], []):
            with self.subTest(extra=extra):
                r = self.bc("bc-noupd%d" % len(extra), "rootCaCert", *extra)
                self.assertEqual(r.lines, ["genp 1", "itav %s absent" % ROOT_UPDATE, "rootCaKeyUpdate absent"])
                self.assertEqual(genp_itavs(r.answer), [(ROOT_UPDATE, None)])


# ---------------------------------------------------------------------------------------------
# certProfile (RFC 9483 §3.1): the profile selects the role, which the answers show
# ---------------------------------------------------------------------------------------------

class GenmProfiles(GenmCase):
    """Role "tls" accepts Ed25519 keys only and grants serverAuth; the default role EC P-256 and
    RSA 3072 and grants clientAuth and serverAuth. Profile "tls-server" selects "tls"."""

    @classmethod
    def edit_config(cls, cfg, gw):
        default = cfg["roles"]["default"]
        default["authorization"] = {"allowed_key_types": ["ec:P-256", "rsa:3072"]}
        cfg["roles"]["tls"] = dict(default, ext_key_usage=["serverAuth"], key_usage=["digitalSignature"],
                                   authorization={"allowed_key_types": ["ed25519"]})
        cfg["profiles"] = {"tls-server": "role:tls", "device": "role:default"}

    def assert_tls_template(self, der):
        tmpl, controls = template_of(der)
        self.assertEqual(eku_of(tmpl), ["1.3.6.1.5.5.7.3.1"])  # serverAuth
        self.assertEqual([str(c["type"]) for c in controls], ["1.3.6.1.5.5.7.5.1.11"])
        alg = der_decoder.decode(bytes(controls[0]["value"]), asn1Spec=rfc5280.AlgorithmIdentifier())[0]
        self.assertEqual(str(alg["algorithm"]), "1.3.101.112")  # Ed25519

    def test_profile_template(self):
        _, _, values, _ = self.genm("prof-template", TEMPLATE, profile="tls-server")
        self.assert_tls_template(values[0])
        # the twins: another profile, and none, get the default role's template
        for profile in ("device", None):
            with self.subTest(profile=profile):
                _, _, values, _ = self.genm("prof-template-%s" % profile, TEMPLATE, profile=profile)
                tmpl, controls = template_of(values[0])
                self.assertEqual(sorted(eku_of(tmpl)), ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
                self.assertEqual(len(controls), 2)

    def test_bc_profile_template(self):
        r = self.bc("bc-prof-template", "certReqTemplate", "--profile", "tls-server")
        self.assert_tls_template(r.values[0])
        r = self.bc("bc-prof-template-pbm", "certReqTemplate", "--profile", "tls-server", mode="pbm")
        self.assert_tls_template(r.values[0])

    def test_profile_refused(self):
        cases = [("nope", "/pki/cmp", 'certProfile "nope" is not served on this path: name a profile this server\'s '
                  'operator gave you for this path'),
                 ("tls-server", "/pki/roles/default/cmp", 'certProfile "tls-server" is not served on this path')]
        for profile, path, text in cases:
            with self.subTest(profile=profile, path=path):
                rc, _, values, answer = self.genm("prof-refused-" + profile, TEMPLATE, profile=profile, path=path,
                                                  expect_ok=False)
                self.assertEqual((rc, values), (2, {}))
                self.assertEqual((answer.body_type, answer.fail_info), ("error", ["badRequest"]))
                self.assertTrue(answer.status_strings[0].startswith(text), answer)
        # the twin: the profile of the path's own role is accepted there
        _, _, values, _ = self.genm("prof-role-path", TEMPLATE, profile="tls-server", path="/pki/roles/tls/cmp")
        self.assert_tls_template(values[0])

    def test_bc_profile_refused(self):
        for profile, path in (("nope", "/pki/cmp"), ("tls-server", "/.well-known/cmp/p/default")):
            with self.subTest(profile=profile, path=path):
                r = self.bc("bc-prof-refused-" + profile, "certReqTemplate", "--profile", profile,
                            url=self.gw.url(path), check=False)
                self.assertEqual(r.returncode, 1, r)
                self.assertEqual((r.answer.body_type, r.answer.fail_info), ("error", ["badRequest"]), r)
                self.assertIn('certProfile "%s"' % profile, r.answer.status_strings[0])

    def test_profile_ir(self):
        """The project's client enrols an Ed25519 key under profile tls-server (ir, ip, certConf, pkiconf):
        the certificate is the tls role's. Without the profile the same request is the default role's,
        which does not take Ed25519 keys."""
        d = self.gw.dir
        key = d / "prof-ir.key"
        harness.run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", key])
        rc, lines, answer, _ = self.own("prof-ir", "ir", "--newkey", key, "--subject", "/CN=prof-ir",
                                        "--certout", d / "prof-ir.pem", profile="tls-server")
        self.assertEqual(lines, ["issued /CN=prof-ir"])
        self.assertEqual(answer.body_type, "pkiconf")
        eku = harness.run(["openssl", "x509", "-in", d / "prof-ir.pem", "-noout", "-ext", "extendedKeyUsage"])
        self.assertIn("TLS Web Server Authentication", eku.stdout.decode())
        self.assertNotIn("Client", eku.stdout.decode())
        rc, _, answer, _ = self.own("prof-ir-none", "ir", "--newkey", key, "--subject", "/CN=prof-ir-none",
                                    expect_ok=False)
        self.assertEqual(rc, 2)
        self.assertEqual(answer.status, 2, answer)
        self.assertIn("badCertTemplate", answer.fail_info)


if __name__ == "__main__":
    harness.main()
