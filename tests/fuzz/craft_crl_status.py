"""Writes a genm asking for the CRLs of a crlStatusList that names them (RFC 9483 §4.3.4), which no CLI
sends with a value: the header of a captured signature-protected genm (same sender, transactionID,
nonces), one InfoTypeAndValue id-it-crlStatusList whose value holds a CRLStatus per ENTRY, signed anew
with the request's ECDSA key, its extraCerts kept.

    craft_crl_status.py GENM.der KEY.pem OUT.der ENTRY...

ENTRY is issuer:CERT.pem[:TIME] (a CRLSource naming the subject of CERT.pem as the CRL's issuer, [1]
GeneralNames, with thisUpdate TIME, a GeneralizedTime such as 20260101000000Z, if given) or dp:URI (a
CRLSource naming a distribution point, [0] DistributionPointName fullName).
"""
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from craft_error import encode, resigned

CRL_STATUS_LIST = bytes.fromhex("06082b06010505070416")  # 1.3.6.1.5.5.7.4.22


def crl_status(entry):
    """One CRLStatus ::= SEQUENCE { source CRLSource, thisUpdate Time OPTIONAL } (RFC 9810 §5.3.19.16)."""
    kind, _, rest = entry.partition(":")
    if kind == "dp":  # dpn [0] DistributionPointName: fullName [0] GeneralNames, a URI [6]
        return encode(0x30, encode(0xA0, encode(0xA0, encode(0x86, rest.encode()))))
    if kind != "issuer":
        sys.exit("craft_crl_status: %s is neither issuer:CERT.pem[:TIME] nor dp:URI" % entry)
    pem, _, when = rest.partition(":")
    name = x509.load_pem_x509_certificate(open(pem, "rb").read()).subject.public_bytes()
    source = encode(0xA1, encode(0x30, encode(0xA4, name)))  # issuer [1] GeneralNames: directoryName [4]
    return encode(0x30, source + (encode(0x18, when.encode()) if when else b""))


def main():
    req, key_path, out, *entries = sys.argv[1:]
    der = open(req, "rb").read()
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not entries:
        sys.exit("usage: craft_crl_status.py GENM.der EC-KEY.pem OUT.der ENTRY...")
    value = encode(0x30, b"".join(crl_status(e) for e in entries))
    body = encode(0xA0 | 21, encode(0x30, encode(0x30, CRL_STATUS_LIST + value)))
    open(out, "wb").write(resigned(der, key, body))


if __name__ == "__main__":
    main()
