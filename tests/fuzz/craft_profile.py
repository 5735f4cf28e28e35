"""Writes a request naming a certProfile (RFC 9483 §3.1), which `openssl cmp` of OpenSSL 3.0 cannot
send: a captured signature-protected request with one InfoTypeAndValue id-it-certProfile holding
NAME added to its header's generalInfo (after what it holds, or as a new generalInfo), signed anew
with the request's ECDSA key, its body and extraCerts kept: that request again, naming a profile.

    craft_profile.py REQUEST.der KEY.pem OUT.der NAME
"""
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from craft_error import encode, resigned, tlv

CERT_PROFILE = bytes.fromhex("06082b06010505070415")  # 1.3.6.1.5.5.7.4.21


def with_profile(header, name):
    """The content of PKIHeader |header| with the certProfile |name| in its generalInfo [8], its last field."""
    itav = encode(0x30, CERT_PROFILE + encode(0x30, encode(0x0C, name.encode())))
    q = 0
    while q < len(header):
        tag, p, e = tlv(header, q)
        if tag == 0xA8:
            _, s, s_end = tlv(header, p)  # the SEQUENCE OF InfoTypeAndValue
            return header[:q] + encode(0xA8, encode(0x30, header[s:s_end] + itav))
        q = e
    return header + encode(0xA8, encode(0x30, itav))


def main():
    req, key_path, out, name = sys.argv[1:5]
    der = open(req, "rb").read()
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        sys.exit("craft_profile: %s is not an EC key (the request's protectionAlg is ECDSA)" % key_path)
    _, p, end = tlv(der, 0)
    _, h, h_end = tlv(der, p)
    _, _, b_end = tlv(der, h_end)
    body = der[h_end:b_end]
    header = encode(0x30, with_profile(der[h:h_end], name))
    open(out, "wb").write(resigned(encode(0x30, header + der[h_end:end]), key, body))


if __name__ == "__main__":
    main()
