#!/usr/bin/python3
"""Seeds at and just past the size caps of base/limits.h, which no other seed comes near (the others are
at most a few KiB, and libFuzzer grows inputs from its seeds only slowly): each cap is reached from the
first run. Made from the committed seeds and pki/ each time they are used, not committed: most of their
bytes are padding, up to 1 MiB of it.

    tests/fuzz/cap_seeds.py OUT_DIR      (writes OUT_DIR/<target>/cap-*)

run.sh gives OUT_DIR/<target> to libFuzzer as a second corpus directory (read, never written), and the
replay of `make test` replays it after the target's corpus (tests/fuzz/CMakeLists.txt). For the three CMP
targets, from the signed ir seed: 4096 and 4097 ASN.1 elements (GW_MAX_MSG_ELEMENTS), extraCerts of
16 certificates in exactly 32 KiB and in one byte more, and of 17 in more (GW_MAX_EXTRA_CERTS_BYTES),
a PKIMessage of exactly 64 KiB and 8 bytes more (GW_MAX_CMP_BODY). For fuzz_vault_answer, sign answers
with a ca_chain of 16 and 17 certificates (GW_MAX_UPSTREAM_CHAIN), a certificate's PEM of exactly 64 KiB
and one byte more (GW_MAX_UPSTREAM_PEM); for it and fuzz_cfssl_answer, a sign answer of exactly 1 MiB and
one byte more (GW_MAX_UPSTREAM_BODY); for fuzz_config, the demo configuration likewise
(GW_MAX_CONFIG_SIZE). The padding is what each format lets through unread: an ITAV of an unknown
infoType in the header's generalInfo (outside the signature only for fuzz_cmp_signed, which signs each
request anew), white space in JSON and after a PEM block.
"""
import datetime
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from answer_seeds import CFSSL, VAULT, pem
from craft_error import encode, tlv
from craft_extra_certs import MAX_EXTRA_CERTS, message, split

HERE = Path(__file__).resolve().parent
CMP_TARGETS = ("fuzz_cmp_request", "fuzz_cmp_signed", "fuzz_cmp_shim")
# base/limits.h
MAX_MSG_ELEMENTS = 4096
MAX_EXTRA_CERTS_BYTES = 32 * 1024
MAX_CMP_BODY = 64 * 1024
MAX_UPSTREAM_CHAIN = 16
MAX_UPSTREAM_PEM = 64 * 1024
MAX_UPSTREAM_BODY = 1024 * 1024
MAX_CONFIG_SIZE = 1024 * 1024
UNKNOWN_INFO_TYPE = encode(0x06, bytes([0x2B, 6, 1, 4, 1, 0x82, 0xE9, 0x1C, 1]))  # 1.3.6.1.4.1.46236.1


# extensions gw_shim_der_count opens the value of (OpenSSL decodes them with a CRL): issuingDistributionPoint,
# authorityKeyIdentifier, certificateIssuer
DECODED_EXTS = (bytes([0x55, 0x1D, 28]), bytes([0x55, 0x1D, 35]), bytes([0x55, 0x1D, 29]))


def children(der, off, end):
    while off < end:
        tag, c, e = tlv(der, off)
        yield tag, c, e
        off = e


def elements(der, off=0, end=None):
    """The elements of |der| from |off| as gw_shim_der_count counts them (gateway/cmp/shim_d2i.c): each
    TLV, constructed ones walked into; a primitive one under a tag not universal as many more as its
    contents could hold, and the value of an extension of DECODED_EXTS likewise."""
    n = 0
    for tag, c, e in children(der, off, len(der) if end is None else end):
        n += 1
        if not tag & 0x20:
            n += (e - c) // 2 if tag & 0xC0 else 0
            continue
        parts = list(children(der, c, e))
        if (tag == 0x30 and len(parts) in (2, 3) and parts[0][0] == 0x06 and der[parts[0][1]:parts[0][2]]
                in DECODED_EXTS and parts[-1][0] == 0x04 and (len(parts) == 2 or parts[1][0] == 0x01)):
            n += (parts[-1][2] - parts[-1][1]) // 2
        n += elements(der, c, e)
    return n


def with_info(der, value):
    """The PKIMessage |der| with one more ITAV {UNKNOWN_INFO_TYPE, |value|} in its header's generalInfo."""
    _, p, end = tlv(der, 0)
    _, hc, he = tlv(der, p)
    fields, q = [], hc
    while q < he:
        _, _, e = tlv(der, q)
        fields.append(der[q:e])
        q = e
    itav = encode(0x30, UNKNOWN_INFO_TYPE + value)
    info = [f for f in fields if f[0] == 0xA8]
    if info:  # [8] EXPLICIT SEQUENCE OF InfoTypeAndValue: one more entry
        _, sc, se = tlv(info[0], tlv(info[0], 0)[1])
        fields[fields.index(info[0])] = encode(0xA8, encode(0x30, info[0][sc:se] + itav))
    else:
        fields.append(encode(0xA8, encode(0x30, itav)))
    return encode(0x30, encode(0x30, b"".join(fields)) + der[he:end])


def cmp_elements(der, total):
    """|der| with a SEQUENCE of NULLs in a new ITAV, |total| elements in all."""
    base = elements(with_info(der, encode(0x30, b"")))
    return with_info(der, encode(0x30, b"\x05\x00" * (total - base)))


def cmp_body(der, size):
    """|der| with an OCTET STRING in a new ITAV, |size| bytes in all."""
    n = size - len(with_info(der, encode(0x04, b"")))
    while len(with_info(der, encode(0x04, b"\x00" * n))) > size:  # its length takes bytes of its own
        n -= 1
    out = with_info(der, encode(0x04, b"\x00" * n))
    if len(out) != size:
        sys.exit("cap_seeds: no PKIMessage of %d bytes" % size)
    return out


def filler_cert(n, pad):
    """A P-256 certificate signed by its own key with |pad| bytes of organizationalUnitName in its subject (not an extension: their
    values have a cap of their own, GW_MAX_EXTRA_CERTS_EXT_BYTES)."""
    key = ec.derive_private_key(n + 1, ec.SECP256R1())  # a key of its own, the same on each run
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz extraCert %d" % n)])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz extraCert %d" % n),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "x" * pad)])
    now = datetime.datetime(2026, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(n + 1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def extra_bytes(head, certs):
    """The bytes of the extraCerts SEQUENCE OF of message(head, certs), as gw_shim_d2i caps it."""
    return len(encode(0x30, b"".join(certs)))


def cmp_extra(der, count, size):
    """|der| with |count| extraCerts (its own first) of exactly |size| bytes: the fillers share the padding,
    the last takes what is left (tried again where its signature came out a byte shorter or longer)."""
    head, certs = split(der)
    n_fill = count - len(certs)
    small = len(filler_cert(0, 200))
    per = 200 + (size - extra_bytes(head, certs) - 8 - n_fill * small) // n_fill
    fillers = [filler_cert(n, per) for n in range(n_fill - 1)]
    rest = size - extra_bytes(head, certs + fillers + [filler_cert(n_fill, per)])
    for _ in range(100):
        for pad in range(per + rest - 4, per + rest + 5):
            got = certs + fillers + [filler_cert(n_fill, pad)]
            if extra_bytes(head, got) == size:
                return message(head, got)
    sys.exit("cap_seeds: no extraCerts of %d certificates in %d bytes" % (count, size))


def cmp_seeds():
    der = (HERE / "corpus" / "fuzz_cmp_request" / "seed-ir-sig.der").read_bytes()
    return {
        "elements-at.der": cmp_elements(der, MAX_MSG_ELEMENTS),
        "elements-over.der": cmp_elements(der, MAX_MSG_ELEMENTS + 1),
        "extra-bytes-at.der": cmp_extra(der, MAX_EXTRA_CERTS, MAX_EXTRA_CERTS_BYTES),
        "extra-bytes-over.der": cmp_extra(der, MAX_EXTRA_CERTS, MAX_EXTRA_CERTS_BYTES + 1),
        "extra-count-over.der": cmp_extra(der, MAX_EXTRA_CERTS + 1, MAX_EXTRA_CERTS_BYTES + 1024),
        "body-at.der": cmp_body(der, MAX_CMP_BODY),
        "body-over.der": cmp_body(der, MAX_CMP_BODY + 8),  # fuzz_cmp_signed signs anew: a byte or two less
    }


def big_pem(size):
    """A certificate in PEM of |size| bytes: an extension of padding, white space after the block."""
    key = ec.derive_private_key(1, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz big certificate")])
    now = datetime.datetime(2026, 1, 1)
    n = size * 3 // 4 - 2048
    pad = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.46236.2"), encode(0x04, b"\x00" * n))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(pad, critical=False).sign(key, hashes.SHA256()))
    text = cert.public_bytes(serialization.Encoding.PEM).decode()
    if len(text) > size:
        sys.exit("cap_seeds: a PEM certificate of %d bytes is over %d" % (len(text), size))
    return text + "\n" * (size - len(text))


def padded(doc, size):
    """The JSON text of |doc| with white space after it, |size| bytes in all."""
    text = json.dumps(doc)
    return text + " " * (size - len(text))


def vault_seeds():
    sign = VAULT["sign"]
    chain = [pem("ca.pem"), pem("issuing.pem")] * MAX_UPSTREAM_CHAIN

    def with_data(**data):
        return json.dumps(dict(sign, data=dict(sign["data"], **data)))

    return {
        "sign-chain-at.json": with_data(ca_chain=chain[:MAX_UPSTREAM_CHAIN]),
        "sign-chain-over.json": with_data(ca_chain=chain[:MAX_UPSTREAM_CHAIN + 1]),
        "sign-pem-at.json": with_data(certificate=big_pem(MAX_UPSTREAM_PEM)),
        "sign-pem-over.json": with_data(certificate=big_pem(MAX_UPSTREAM_PEM) + "\n"),
        "sign-body-at.json": padded(sign, MAX_UPSTREAM_BODY),
        "sign-body-over.json": padded(sign, MAX_UPSTREAM_BODY + 1),
    }


def cfssl_seeds():
    return {
        "sign-body-at.json": padded(CFSSL["sign"], MAX_UPSTREAM_BODY),
        "sign-body-over.json": padded(CFSSL["sign"], MAX_UPSTREAM_BODY + 1),
    }


def config_seeds():
    demo = json.loads((HERE / "corpus" / "fuzz_config" / "seed-demo.json").read_text())
    return {"demo-at.json": padded(demo, MAX_CONFIG_SIZE), "demo-over.json": padded(demo, MAX_CONFIG_SIZE + 1)}


def main():
    out = Path(sys.argv[1])
    cmp = cmp_seeds()
    seeds = {t: cmp for t in CMP_TARGETS}
    seeds.update({"fuzz_vault_answer": vault_seeds(), "fuzz_cfssl_answer": cfssl_seeds(),
                  "fuzz_config": config_seeds()})
    for target, files in seeds.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, body in files.items():
            (d / ("cap-" + name)).write_bytes(body if isinstance(body, bytes) else body.encode())


if __name__ == "__main__":
    main()
