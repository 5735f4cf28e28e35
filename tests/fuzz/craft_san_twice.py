"""Writes a certificate with its subjectAltName extension twice, which OpenSSL's tools never write (they
replace an extension named again): a certificate holding a subjectAltName and an extension 2.5.29.99
(an id-ce arc no standard assigns) renamed 2.5.29.17, its TBSCertificate signed anew with the ECDSA key
of its issuer.

    craft_san_twice.py CERT.der CA_KEY.pem OUT.der

Works on bytes: the two object identifiers are of one length, so no length changes.
"""
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from craft_error import encode, tlv

ID_CE_99 = bytes.fromhex("0603551d63")  # 2.5.29.99
SUBJECT_ALT_NAME = bytes.fromhex("0603551d11")  # 2.5.29.17


def main():
    cert_path, key_path, out = sys.argv[1:4]
    der = open(cert_path, "rb").read()
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        sys.exit("craft_san_twice: %s is not an EC key" % key_path)
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    if tbs.count(ID_CE_99) != 1 or tbs.count(SUBJECT_ALT_NAME) != 1:
        sys.exit("craft_san_twice: %s needs one subjectAltName and one extension 2.5.29.99" % cert_path)
    tbs = tbs.replace(ID_CE_99, SUBJECT_ALT_NAME)
    _, p, _ = tlv(der, 0)
    _, _, tbs_end = tlv(der, p)
    _, _, alg_end = tlv(der, tbs_end)
    sig = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    open(out, "wb").write(encode(0x30, tbs + der[tbs_end:alg_end] + encode(0x03, b"\x00" + sig)))


if __name__ == "__main__":
    main()
