"""Writes the error message a client sends to abort its transaction (RFC 9810 §5.3.21), which no CLI
sends: the header of a captured signature-protected request (same sender, transactionID, nonces),
an ErrorMsgContent with a rejection, signed anew with the request's ECDSA key, its extraCerts kept.

    craft_error.py REQUEST.der KEY.pem OUT.der

Works on bytes (no re-encoding of the captured parts), so that the header is exactly the request's.
"""
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def tlv(buf, off):
    """(tag byte, start of content, end of element) of the DER element at |off|."""
    tag, n, p = buf[off], buf[off + 1], off + 2
    if n & 0x80:
        k = n & 0x7F
        n, p = int.from_bytes(buf[p:p + k], "big"), p + k
    return tag, p, p + n


def encode(tag, content):
    n = len(content)
    if n < 0x80:
        head = bytes([n])
    else:
        k = (n.bit_length() + 7) // 8
        head = bytes([0x80 | k]) + n.to_bytes(k, "big")
    return bytes([tag]) + head + content


def resigned(der, key, body):
    """The PKIMessage |der| (a captured signature-protected request) with |body|, DER of a PKIBody, for its
    own: its header as it is, signed anew with the ECDSA |key|, its extraCerts kept."""
    _, p, end = tlv(der, 0)
    _, _, h_end = tlv(der, p)
    header = der[p:h_end]
    q, extra = h_end, b""
    while q < end:  # body, protection [0], extraCerts [1]
        tag, _, e = tlv(der, q)
        if tag == 0xA1:
            extra = der[q:e]
        q = e
    sig = key.sign(encode(0x30, header + body), ec.ECDSA(hashes.SHA256()))
    protection = encode(0xA0, encode(0x03, b"\x00" + sig))
    return encode(0x30, header + body + protection + extra)


def main():
    req, key_path, out = sys.argv[1:4]
    der = open(req, "rb").read()
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        sys.exit("craft_error: %s is not an EC key (the request's protectionAlg is ECDSA)" % key_path)
    text = encode(0x0C, b"fuzz seed: the client aborts the transaction")
    bad_request = encode(0x03, b"\x05\x20")  # failInfo with bit 2 set
    status = encode(0x30, encode(0x02, b"\x02") + encode(0x30, text) + bad_request)  # rejection
    body = encode(0xA0 | 23, encode(0x30, status))
    open(out, "wb").write(resigned(der, key, body))


if __name__ == "__main__":
    main()
