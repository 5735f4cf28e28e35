"""General messages (RFC 9483 §4.3) over TLS with the real gateway, sent by the project's client on OpenSSL's
CMP API (the 3.0 CLI cannot ask for these infoTypes): caCerts, rootCaKeyUpdate, certReqTemplate,
crlStatusList -> crls, an unknown infoType, and a PBM-protected genm. The returned ITAVs are decoded
independently with pyasn1 (RFC 5280/4211 modules); refusals are decoded error messages."""
import os
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from pyasn1.codec.der import decoder as der_decoder  # noqa: E402
from pyasn1.type import univ  # noqa: E402
from pyasn1_modules import rfc4211, rfc5280  # noqa: E402

CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
CA_CERTS, ROOT_UPDATE, TEMPLATE = "1.3.6.1.5.5.7.4.17", "1.3.6.1.5.5.7.4.18", "1.3.6.1.5.5.7.4.19"
CRL_STATUS, CRLS = "1.3.6.1.5.5.7.4.22", "1.3.6.1.5.5.7.4.23"


class CertSeq(univ.SequenceOf):
    componentType = rfc5280.Certificate()


class CrlSeq(univ.SequenceOf):
    componentType = rfc5280.CertificateList()


def subject_of(cert):
    """The subject's attribute values, in order, e.g. ["cmpgw demo", "cmpgw demo root CA"]."""
    out = []
    for rdn in cert["tbsCertificate"]["subject"][0]:
        for atv in rdn:
            out.append(str(der_decoder.decode(bytes(atv["value"]))[0]))
    return out


def seq_body(der):
    """The content of the DER SEQUENCE |der|."""
    if der[0] != 0x30:
        raise harness.Failure("not a SEQUENCE: %r" % der[:4])
    n, off = der[1], 2
    if n & 0x80:
        off += n & 0x7f
        n = int.from_bytes(der[2:off], "big")
    if off + n != len(der):
        raise harness.Failure("SEQUENCE length %d does not match %d bytes" % (n, len(der) - off))
    return der[off:]


class Genm(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        harness.make_root_update(gw.dir)
        cfg["root_ca_update"] = {"new_with_new": "newroot.pem", "new_with_old": "newwithold.pem",
                                 "old_with_new": "oldwithnew.pem"}
        cfg["roles"]["default"]["authorization"] = {"allowed_key_types": ["ec:P-256", "rsa:3072"]}

    def genm(self, name, *oids, auth="sig", expect_ok=True):
        """Runs cmpclient genm; returns (exit code, stdout lines, {index: value DER}, response DER)."""
        d = self.gw.dir
        argv = [CLIENT_BIN, "--url", self.gw.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                "--tls-key", d / "client.key", "--rspout", d / ("%s.rsp.der" % name)]
        if auth == "sig":
            argv += ["--cert", d / "client.pem", "--key", d / "client.key"]
        else:
            argv += ["--ref", "demo-device", "--secret", d / "pbm.secret"]
        p = harness.run(argv + ["genm", "--out", d / name] + list(oids), check=False)
        lines = p.stdout.decode().splitlines()
        if expect_ok and p.returncode != 0:
            raise harness.Failure("cmpclient genm exited %d: %s %s" % (p.returncode, lines, p.stderr.decode()))
        values = {}
        for i in range(len(oids)):
            f = d / ("%s.%d.der" % (name, i))
            if f.exists():
                values[i] = f.read_bytes()
        return p.returncode, lines, values, (d / ("%s.rsp.der" % name)).read_bytes()

    def test_ca_certs(self):
        _, lines, values, _ = self.genm("cacerts", CA_CERTS)
        self.assertEqual(lines[:2], ["genp 1", "itav %s %d" % (CA_CERTS, len(values[0]))])
        certs, rest = der_decoder.decode(values[0], asn1Spec=CertSeq())
        self.assertEqual(rest, b"")
        self.assertEqual([subject_of(c) for c in certs],
                         [["cmpgw demo", "cmpgw demo issuing CA"], ["cmpgw demo", "cmpgw demo root CA"]])
        self.assertIn("  cert /O=cmpgw demo/CN=cmpgw demo issuing CA", lines)

    def test_ca_certs_pbm(self):
        _, lines, values, _ = self.genm("cacerts-pbm", CA_CERTS, auth="pbm")
        self.assertEqual(len(der_decoder.decode(values[0], asn1Spec=CertSeq())[0]), 2)

    def test_root_ca_update(self):
        _, lines, values, _ = self.genm("rootupd", ROOT_UPDATE)
        self.assertEqual(lines[1], "itav %s %d" % (ROOT_UPDATE, len(values[0])))
        # RootCaKeyUpdateContent ::= SEQUENCE { newWithNew, [0] newWithOld OPTIONAL, [1] oldWithNew OPTIONAL }
        nwn, rest = der_decoder.decode(seq_body(values[0]), asn1Spec=rfc5280.Certificate())
        self.assertEqual(subject_of(nwn), ["cmpgw demo", "cmpgw demo root CA G2"])

    def test_cert_req_template(self):
        _, lines, values, _ = self.genm("template", TEMPLATE)
        body = seq_body(values[0])
        tmpl, rest = der_decoder.decode(body, asn1Spec=rfc4211.CertTemplate())
        self.assertFalse(tmpl["subject"].isValue)  # the client names itself
        self.assertEqual(sorted(str(e["extnID"]) for e in tmpl["extensions"]), ["2.5.29.15", "2.5.29.37"])
        controls, rest2 = der_decoder.decode(rest, asn1Spec=rfc4211.Controls())
        self.assertEqual(rest2, b"")
        self.assertEqual([str(c["type"]) for c in controls], ["1.3.6.1.5.5.7.5.1.11", "1.3.6.1.5.5.7.5.1.12"])
        alg = der_decoder.decode(bytes(controls[0]["value"]), asn1Spec=rfc5280.AlgorithmIdentifier())[0]
        self.assertEqual(str(alg["algorithm"]), "1.2.840.10045.2.1")  # id-ecPublicKey, P-256
        self.assertEqual(str(der_decoder.decode(bytes(alg["parameters"]))[0]), "1.2.840.10045.3.1.7")
        self.assertEqual(int(der_decoder.decode(bytes(controls[1]["value"]))[0]), 3072)

    def test_crls(self):
        _, lines, values, _ = self.genm("crls", CRL_STATUS)
        self.assertEqual(lines[1], "itav %s %d" % (CRLS, len(values[0])))
        crls, rest = der_decoder.decode(values[0], asn1Spec=CrlSeq())
        self.assertEqual((len(crls), rest), (1, b""))
        issuer = [str(der_decoder.decode(bytes(atv["value"]))[0])
                  for rdn in crls[0]["tbsCertList"]["issuer"][0] for atv in rdn]
        self.assertEqual(issuer, ["cmpgw demo", "cmpgw demo issuing CA"])

    def test_unknown_info_type(self):
        rc, lines, values, rsp = self.genm("unknown", "1.2.3.4", expect_ok=False)
        self.assertEqual(rc, 2)
        self.assertEqual(values, {})
        answer = harness.decode_cmp(rsp)
        self.assertEqual((answer.body_type, answer.status, answer.fail_info), ("error", 2, ["badRequest"]))
        self.assertEqual(answer.status_strings, [
            "infoType 1.2.3.4 is not supported: this server answers id-it-caCerts, id-it-rootCaCert, "
            "id-it-certReqTemplate and id-it-crlStatusList"])

    def test_known_and_unknown_twin(self):
        """One unknown infoType refuses the whole genm: nothing half-answered."""
        rc, _, values, rsp = self.genm("mixed", CA_CERTS, "1.2.3.4", expect_ok=False)
        self.assertEqual((rc, values), (2, {}))
        self.assertEqual(harness.decode_cmp(rsp).fail_info, ["badRequest"])


if __name__ == "__main__":
    harness.main()
