"""Writes a captured request again with extraCerts no client sends, its header, body and protection as they
are (the protection does not cover extraCerts). The gateway decodes a message's extraCerts last, once it is
to be authenticated (gw_shim_set_extra_certs): these reach that step, and the refusals that come before it.

    craft_extra_certs.py REQUEST.der OUT_PREFIX

writes OUT_PREFIX-junk.der (no certificate: a SEQUENCE { INTEGER 1 } in place of one, DER all the same,
which OpenSSL refuses), OUT_PREFIX-cut.der (its first certificate cut short after its tbsCertificate, the
lengths around it written anew), OUT_PREFIX-many.der (its certificates and new self-signed ones, 16 in all:
GW_MAX_EXTRA_CERTS) and OUT_PREFIX-over.der (17, one past it: decoded the plain way).
"""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from craft_error import encode, tlv

MAX_EXTRA_CERTS = 16  # GW_MAX_EXTRA_CERTS in base/limits.h


def split(der):
    """The elements of the PKIMessage |der| before its extraCerts, and its certificates (DER each)."""
    _, p, end = tlv(der, 0)
    head, certs = b"", []
    while p < end:
        tag, c, e = tlv(der, p)
        if tag != 0xA1:
            head += der[p:e]
        else:
            _, q, q_end = tlv(der, c)  # the SEQUENCE OF CMPCertificate
            while q < q_end:
                _, _, n = tlv(der, q)
                certs.append(der[q:n])
                q = n
        p = e
    if not certs:
        sys.exit("craft_extra_certs: the request has no extraCerts")
    return head, certs


def message(head, certs):
    return encode(0x30, head + encode(0xA1, encode(0x30, b"".join(certs))))


def new_cert(n):
    """A self-signed P-256 certificate no one sent before, as a client without credentials makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz extraCert %d" % n)])
    now = datetime.datetime(2026, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(n + 1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def main():
    req, prefix = sys.argv[1:3]
    head, certs = split(open(req, "rb").read())
    _, c, _ = tlv(certs[0], 0)
    _, _, tbs_end = tlv(certs[0], c)
    extra = [new_cert(n) for n in range(MAX_EXTRA_CERTS + 1 - len(certs))]
    out = {
        "junk": message(head, [encode(0x30, encode(0x02, b"\x01"))]),
        "cut": message(head, [encode(0x30, certs[0][c:tbs_end])] + certs[1:]),
        "many": message(head, certs + extra[:MAX_EXTRA_CERTS - len(certs)]),
        "over": message(head, certs + extra),
    }
    for kind, der in out.items():
        open("%s-%s.der" % (prefix, kind), "wb").write(der)


if __name__ == "__main__":
    main()
