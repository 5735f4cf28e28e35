"""Every refusal in docs/errors.md, one test per row, against a real gateway over TLS.

The table in docs/errors.md is the one source of the expected answers: this module parses it and
each test asserts its row (HTTP status and one-line reason, or the decoded CMP answer's body type,
PKIStatus rejection, failInfo and exactly the statusString, `{...}` matching any value). Requests
come from `openssl cmp` (-reqout/-rspout), from curl, or are crafted: a request `openssl cmp` built
is captured, changed with pyasn1 and signed again with the client's key (python3-cryptography),
so the gateway sees a well-protected message that is wrong in exactly one way. No answer may carry
OpenSSL internals (reason strings, "CMP routines", packed error codes).
"""
import hashlib
import hmac
import os
import re
import ssl
import sys
import tempfile
import threading
import time
import unittest
import warnings
from pathlib import Path

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from pyasn1.codec.der import decoder, encoder  # noqa: E402
from pyasn1.type import char, univ  # noqa: E402
from pyasn1_modules import rfc3447, rfc4210, rfc4211  # noqa: E402

DOC = harness.REPO / "docs" / "errors.md"
E2E = Path(__file__).resolve().parent

# What an answer must never contain: OpenSSL's own texts (3.0 puts them in every error it builds).
INTERNALS = re.compile(r"CMP routines|CRMF routines|error:[0-9A-Fa-f]{8}|EVP lib|popo missing|"
                       r"request rejected by server|unexpected pkibody|error validating|no suitable sender")

# Rows whose situation needs an upstream or a broken disk: (test module, a literal it asserts).
ELSEWHERE = {
    "audit_down": ("test_audit.py", "the audit log cannot be written; nothing was issued"),
    "audit_down_rr": ("test_audit.py", "the audit log cannot be written; nothing was revoked"),
    "audit_lost": ("test_vault.py", "the audit log cannot be written; the certificate was not released"),
    "signer_failed": ("test_pkcs11.py", "the gateway's signer key could not sign the CMP "),
    "withdrawals_backlog": ("../unit/test_cmp.c", "too many revocations of certificates "),
    "txn_not_kept": ("../unit/test_cmp.c", "the gateway could not keep this transaction open for its certConf; "),
    "txn_role_removed": ("../unit/test_cmp.c", " was removed by a configuration reload after this transaction "),
    "txn_signer_untrusted": ("../unit/test_cmp.c", "the signer certificate no longer chains to a CA trusted on this "),
    "txn_secret_changed": ("../unit/test_cmp.c", "the secret of this PBM reference was changed by a configuration "),
    "txn_secret_removed": ("../unit/test_cmp.c", "this PBM reference was removed by a configuration reload after this "),
    "pbm_not_accepted": ("../unit/test_cmp.c", " is not accepted on role "),
    "delegate_role_unread": ("../unit/test_cmp.c", " could not be read: "),
    "delegate_role_unread_lately": ("../unit/test_cmp.c", " could not be read a moment ago: the CA's role "
                                    "definition is needed to issue; "),
    "delegate_role_being_read": ("../unit/test_cmp.c", " is being read for another request: retry in a few seconds"),
    "txn_state_unavailable": ("test_shared_state.py", "the gateway cannot reach its cluster to answer this "),
    "replay_unavailable": ("test_shared_state.py", "the gateway cannot check this request against its cluster now; "),
    "crmf_to_csr_ca": ("test_vault.py", "send a p10cr"),
    "upstream_busy": ("test_vault.py", "Vault is busy"),
    "cfssl_policy": ("../unit/test_cfssl.c", "refused by the cfssl profile's policy: "),
    "cfssl_csr": ("../unit/test_cfssl.c", "cfssl refused the CSR: "),
    "cfssl_auth_failed": ("../unit/test_cfssl.c", "operator problem: the gateway's cfssl authentication failed: "),
    "cfssl_auth_required": ("../unit/test_cfssl.c", "the cfssl profile has an auth_key; set auth_key_file on the "),
    "cfssl_auth_invalid_token": ("../unit/test_cfssl.c", "auth_key_file does not match the cfssl profile's auth_key: "),
    "cfssl_auth_no_provider": ("../unit/test_cfssl.c", "the cfssl profile has no auth_key; remove auth_key_file or "),
    "cfssl_failed": ("../unit/test_cfssl.c", " failed (HTTP "),
    "cfssl_unexpected": ("../unit/test_cfssl.c", ": HTTP "),
    "cfssl_certificate_beside_failure": ("../unit/test_cfssl.c", "false; cfssl's error: "),
    "vault_sans_do_not_fit": ("../unit/test_vault.c", "the subjectAltNames do not fit"),
    "vault_sign_refusal_not_vaults": ("../unit/test_vault.c", "not Vault's own answer"),
    "vault_answer_unread": ("../unit/test_vault.c", "its audit device), do not retry blindly"),
    "cfssl_answer_unread": ("../unit/test_cfssl.c", "(cfssl may have issued: see its database), not retried"),
    "upstream_refused_gateway": ("test_cmp_upstream.py", " did not accept the gateway's own request (its "),
    "issued_serial_revoked": ("test_vault_answers.py", " was revoked through this gateway: "),
    "issued_serial_unchecked": ("../unit/test_cmp.c", " was revoked through this gateway cannot be checked now; "),
    "issued_serial_reissued": ("test_vault_answers.py", " went out through this gateway: "),
    "upstream_tid_in_use": ("test_cmp_upstream.py", " had the gateway's own transactionID in use; nothing was "),
    "upstream_unreachable": ("test_cmp_upstream.py", " could not be reached, it is unavailable: "),
    "upstream_no_answer": ("test_cmp_upstream.py", " did not answer in time (none within "),
    "delegate_name": ("test_vault.py", " is not allowed by the upstream role ("),
    "delegate_uri": ("../unit/test_policy.c", " is not allowed by the upstream role (allowed_uri_sans: "),
    "delegate_cn_kind": ("test_vault.py", "upstream role does not take (cn_validations: "),
    "delegate_cn_required": ("../unit/test_policy.c", "the upstream role requires a common name (require_cn) "),
    "delegate_user_id": ("test_vault.py", " is not allowed by the upstream role (allowed_user_ids: "),
    "delegate_subject_not_allowed": ("test_vault.py", "the certificate's subject "),
    "delegate_serial_number": ("../unit/test_policy.c", " is not allowed by the upstream role (allowed_serial_numbers: "),
    "delegate_role_subject": ("../unit/test_policy.c", "cannot be written into a certificate"),
    "delegate_cn_san": ("../unit/test_policy.c", "upstream role adds as a subjectAltName unless exclude_cn_from_sans)"),
    "delegate_cn_email": ("../unit/test_policy.c", "cannot be the email subjectAltName the upstream role adds for it"),
    "delegate_max_ttl": ("../unit/test_policy.c", "exceeds the upstream role's max_ttl of "),
    "delegate_not_after": ("../unit/test_policy.c", "ends after the upstream role's not_after of "),
    "cn_san_type": ("test_vault.py", " does not allow: set exclude_cn_from_sans on the role, or "),
    "rr_not_holder": ("test_rr.py", "only the holder of a certificate (signing the rr with it) or an RA of role "),
    "rr_ra_untrusted": ("test_rr.py", "the RA certificate was not issued by a CA of role "),
    "rr_pbm": ("test_rr.py", "PBM protection is not accepted for rr"),
    "rr_count": ("test_rr.py", "name exactly one certificate per revocation request"),
    "rr_not_route_ca": ("test_rr.py", "the certificate was not issued by this route's CA"),
    "rr_wrong_issuer": ("test_rr.py", " was not issued by the CA the revocation request names: check issuer "),
    "rr_serial_twice": ("../unit/test_rrgenm.c", "have both issued a certificate with serial"),
    "rr_no_serial": ("test_rr.py", "the CA has issued no certificate with serial "),
    "rr_ra_outside_role": ("test_rr.py", " may revoke only certificates of its role: "),
    "rr_ra_no_lookup": ("test_rr.py", "an RA may revoke on this route only the certificate it signs with: the CA "),
    "rr_lookup_failed": ("test_rr.py", "the certificate to revoke cannot be looked up at the CA now; retry later"),
    "rr_revoke_failed": ("test_rr.py", "the CA could not revoke the certificate now "),
    "rr_revoke_refused": ("test_rr.py", "the CA refused to revoke the certificate with serial "),
    "rr_reason_remove": ("test_rr.py", "revocation reason removeFromCRL releases a certificate from hold, "),
    "genm_unknown": ("test_genm.py", "is not supported: this server answers id-it-caCerts, id-it-rootCaCert, "),
    "genm_twice": ("test_vault.py", "a genm must ask for each infoType once; "),
    "genm_crl_unavailable": ("test_vault.py", "the CA's CRL could not be fetched now; retry later"),
    "genm_crl_refused": ("test_vault.py", "the CA's CRL did not pass this gateway's checks and "),
    "genm_crl_too_large": ("../unit/test_rrgenm.c", "does not fit in a CMP response (at most 100 KiB)"),
    "genm_crl_not_served": ("test_vault.py", "the CRL of a CA named in the id-it-crlStatusList is not "),
    "genm_root_cert": ("test_genm.py", "the id-it-rootCaCert value is not a certificate: send the root CA "),
    "genm_count": ("../unit/test_rrgenm.c", "a genm must ask for 1 to "),
    "genm_crl_status_malformed": ("../unit/test_rrgenm.c", "the id-it-crlStatusList value is malformed (RFC 9483 §4.3.4)"),
    "genm_crl_not_published": ("../unit/test_rrgenm.c", "this route's CA publishes no CRL over CMP"),
    "genm_crls_too_large": ("../unit/test_rrgenm.c", ") do not fit in a CMP response (at most 100 KiB): ask for one CRL "),
    "genm_answer_too_large": ("../unit/test_rrgenm.c", " bytes) does not fit in a CMP response (at most 100 KiB): ask "
                              "for one infoType per genm"),
    "genm_crl_unreadable": ("../unit/test_rrgenm.c", "the CA's CRL is unreadable; it was not passed on"),
    "genm_template_failed": ("../unit/test_rrgenm.c", "internal error: the certificate request template could not "),
    "genm_answer_failed": ("../unit/test_rrgenm.c", "internal error: the answer could not be built"),
    "device_not_allowed": ("test_3gpp.py", "is not on this route's allow-list"),
    "kur_not_issued": ("test_3gpp.py", "key update renews a certificate a CA of this route issued, and "),
    "signature_only_route": ("test_3gpp.py", "this route accepts signature-protected requests only: sign with the "),
    "weak_hash": ("test_3gpp.py", " is not accepted on this route: sign with SHA-"),
    "extra_certs": ("test_trust.py", "extraCerts are malformed or hold more than 16 certificates or 32768 bytes"),
    "weak_signer": ("test_trust.py", "message protection could not be verified: the signer certificate is "),
    "weak_protection": ("test_trust.py", "message protection is signed with a hash under 112 bits of security "),
    "signer_candidates": ("test_trust.py", "more than 4 certificates carry the sender's name: send only the "),
    "signer_ambiguous": ("test_trust.py", "message protection is ambiguous: several valid certificates with the "),
    "http_auth_budget": ("test_abuse.py", "too many failed authentications from this address"),
    "http_in_flight": ("test_abuse.py", "too many requests in flight from this address: retry once one is answered"),
    "extra_certs_extensions": ("test_abuse.py", "the certificates in extraCerts carry more than "),
    "extra_certs_key": ("test_abuse.py", "a key in this request is above this server's limits: RSA keys up to "),
    "requested_key_limits": ("test_abuse.py", "a key in this request is above this server's limits: RSA keys up to "),
    "replay_share": ("test_abuse.py", "too many recent transactions from "),
    "rr_already_revoked": ("test_abuse.py", "the certificate is already revoked"),
    "rr_not_begun": ("../unit/test_rrgenm.c", "the gateway cannot begin this revocation now ("),
    "http_client_cert_dropped": ("test_reload.py", "TLS client certificate no longer accepted (expired, or not "),
    "http_listener_removed": ("test_reload.py", "this listener was removed by a configuration reload"),
    "http_forbidden_path": ("test_reject.py", " is disabled by policy (forbid)"),
    "http_shutting_down": ("test_shutdown.py", "shutting down"),
    "admin_no_token": ("test_admin_token.py", 'unauthorized: send "Authorization: Bearer <the token of admin.token_file>"'),
    "admin_wrong_token": ("test_admin_token.py", "unauthorized: wrong admin token"),
    "admin_no_token_file": ("test_admin_token.py", "admin token_file not configured; use SIGHUP"),
    "admin_reload_busy": ("test_admin_token.py", "a reload is already in progress; retry once it has ended"),
    "admin_stopping": ("test_admin_token.py", "reload is not available: the gateway is stopping"),
    "admin_not_found": ("test_admin.py", "not found: the admin listener serves /healthz, /readyz, /metrics and "),
    "admin_method": ("test_admin.py", "method not allowed: use "),
    "crl_unknown_path": ("test_crl.py", ": a local issuer's CRL is served at "),
    "crl_method": ("test_crl.py", " not allowed: a CRL is fetched with GET"),
    "crl_unavailable": ("test_crl.py", "the CRL is unavailable; retry later"),
    "http_path_too_long": ("test_reject.py", "path too long ("),
    "credential_revoked": ("test_trust.py", "is revoked; authenticate with a valid one"),
    "credential_status_unknown": ("test_trust.py", "certificate cannot be checked now ("),
    "credential_issuer_unchecked": ("test_trust.py", "accepts certificates of its upstreams only"),
    "upstream_role_grants": ("test_upstream_answers.py", " does not allow; restrict the Vault role ("),
    "csr_extension": ("test_upstream_answers.py", "this route's CA copies the CSR's extensions: leave it out of the CSR"),
    "csr_ext_requests": ("test_upstream_answers.py",
                         "the CSR asks for extensions in more than one extensionRequest attribute or value: put every "),
    "issued_key_usage": ("test_upstream_answers.py", "the CA issued a certificate outside this route's policy (keyUsage "),
    "issued_ext_key_usage": ("test_upstream_answers.py",
                             "the CA issued a certificate outside this route's policy (extendedKeyUsage "),
    "issued_not_before": ("test_upstream_answers.py", "backdated the certificate to "),
    "issued_extension": ("test_cmp_upstream.py", " (not in its allowed_extensions)); it was not released"),
    "issued_basic_constraints": ("test_cmp_upstream.py", "pathLenConstraint is outside role "),
    "issued_san": ("test_cmp_upstream.py", ", which the request did not ask for); it was not released"),
    "issued_subject": ("test_cmp_upstream.py", "outside this route's policy (the CA changed the "),
    "issued_subject_not_allowed": ("test_vault.py", "outside this route's policy (the certificate's subject "),
}


def parse_table(path=DOC):
    """id -> {"answer", "fail", "text", "regex"} from the rows between the errors-table markers."""
    rows, inside = {}, False
    for line in path.read_text().splitlines():
        if line.startswith("<!-- errors-table"):
            inside = True
            continue
        if line.startswith("<!-- end errors-table"):
            break
        if not inside or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6:
            raise AssertionError("row has %d cells, not 6: %s" % (len(cells), line))
        rid, _, answer, fail, text, _ = cells
        text = text.strip("`")
        regex = "".join(".+" if p.startswith("{") else re.escape(p) for p in re.split(r"(\{[^}]*\})", text) if p)
        rows[rid.strip("`")] = {"answer": answer, "fail": fail, "text": text, "regex": "^%s$" % regex}
    return rows


ROWS = parse_table()


# ---------------------------------------------------------------------------------------------
# Crafted messages
# ---------------------------------------------------------------------------------------------

def load(der):
    msg, rest = decoder.decode(der, asn1Spec=rfc4210.PKIMessage())
    if rest:
        raise harness.Failure("trailing bytes after a captured PKIMessage")
    return msg


def der_seq(content):
    n = len(content)
    if n < 0x80:
        return b"\x30" + bytes([n]) + content
    nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(nb)]) + nb + content


def bits(template, data):
    """A BIT STRING of |template|'s type (and tags) holding |data|."""
    return template.clone(univ.BitString(hexValue=data.hex()))


def resign(msg, key_path):
    """Protects |msg| again with the EC key at |key_path| (ecdsa-with-SHA256, as openssl cmp did)."""
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
    part = der_seq(encoder.encode(msg["header"]) + encoder.encode(msg["body"]))  # ProtectedPart
    msg["protection"] = bits(msg.componentType["protection"].asn1Object, key.sign(part, ec.ECDSA(hashes.SHA256())))
    return msg


SHA256_ALG = bytes.fromhex("300b0609608648016503040201")  # AlgorithmIdentifier id-sha256, no parameters
ECDSA_SHA256_ALG = bytes.fromhex("300a06082a8648ce3d040302")  # ecdsa-with-SHA256


def with_poposk_input(msg, new_key, key):
    """|msg| (an ir) with its POPO signature made by the EC key at |new_key| over a poposkInput (the header's
    sender and the template's key, RFC 4211 §4.1) instead of over the certReq, then protected with |key|."""
    crm = msg["body"]["ir"][0]
    spki = encoder.encode(crm["certReq"]["certTemplate"]["publicKey"])  # [6] IMPLICIT SubjectPublicKeyInfo
    content = harness.der_tlv(0xa0, encoder.encode(msg["header"]["sender"])) + b"\x30" + spki[1:]
    signer = serialization.load_pem_private_key(Path(new_key).read_bytes(), None)
    sig = signer.sign(der_seq(content), ec.ECDSA(hashes.SHA256()))  # over POPOSigningKeyInput
    popo = harness.der_tlv(0xa1, harness.der_tlv(0xa0, content) + ECDSA_SHA256_ALG +
                           harness.der_tlv(0x03, b"\0" + sig))
    signed, _ = decoder.decode(der_seq(encoder.encode(crm["certReq"]) + popo), asn1Spec=rfc4211.CertReqMsg())
    body = msg["body"].clone()
    reqs = body.componentType["ir"].asn1Object.clone()
    reqs.append(signed)
    body["ir"] = reqs
    msg["body"] = body
    return resign(msg, key)


def certconf(ir, ip, cert_hash, key, recip=None, sender=None, status=None):
    """A certConf in |ir|'s transaction (answered by |ip|) confirming |cert_hash|, signed with |key|; with a
    statusInfo of |status| if given."""
    m = ir
    body = m["body"].clone()
    cc = body.componentType["certConf"].asn1Object.clone()
    cs = rfc4210.CertStatus()
    cs["certHash"] = cert_hash
    cs["certReqId"] = 0
    if status is not None:
        cs["statusInfo"]["status"] = status
    cc.append(cs)
    body["certConf"] = cc
    m["body"] = body
    set_octets(m["header"], "senderNonce", os.urandom(16))
    set_octets(m["header"], "recipNonce", recip or ip.header["senderNonce"].asOctets())
    if sender is not None:
        m["header"]["sender"] = sender
    return resign(m, key)




def with_hash_alg(conf, key_path, pvno=3, alg=SHA256_ALG):
    """The DER of certConf |conf| (one CertStatus) with pvno |pvno| and hashAlg [0] |alg| after its
    CertStatus's fields (RFC 9810 §5.3.18, the CMP module's EXPLICIT tags), which rfc4210's CertStatus and
    OpenSSL 3.0's lack, signed again with the EC key at |key_path|."""
    conf["header"]["pvno"] = pvno
    hdr, body = encoder.encode(conf["header"]), encoder.encode(conf["body"])
    _, start, _ = harness.tlv(body)  # certConf [24]
    _, start, _ = harness.tlv(body, start)  # CertConfirmContent
    _, start, end = harness.tlv(body, start)  # its CertStatus
    status = harness.der_tlv(0x30, body[start:end] + harness.der_tlv(0xa0, alg))
    body = harness.der_tlv(0xb8, harness.der_tlv(0x30, status))
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
    sig = key.sign(der_seq(hdr + body), ec.ECDSA(hashes.SHA256()))
    extra = encoder.encode(conf["extraCerts"]) if conf["extraCerts"].isValue else b""
    return der_seq(hdr + body + harness.der_tlv(0xa0, harness.der_tlv(0x03, b"\0" + sig)) + extra)


def rebody(msg, kind, content, key):
    """|msg| with the body |kind| built by |content| from its empty one, a fresh senderNonce, signed with |key|."""
    body = msg["body"].clone()
    value = body.componentType[kind].asn1Object.clone()
    content(value)
    body[kind] = value
    msg["body"] = body
    set_octets(msg["header"], "senderNonce", os.urandom(16))
    return resign(msg, key)


def pollreq(msg, key):
    """A pollReq (certReqId 0) in |msg|'s transaction."""
    def entry(preq):
        e = preq.componentType.clone()
        e["certReqId"] = 0
        preq.append(e)
    return rebody(msg, "pollReq", entry, key)


def bad_extra_certs(msg):
    """The DER of |msg| (its extraCerts last) with extraCerts holding no certificate but a SEQUENCE { INTEGER 1 }:
    DER all the same, which OpenSSL refuses to decode."""
    der = encoder.encode(msg)
    _, start, end = harness.tlv(der)
    parts, off = [], start
    while off < end:
        tag, _, nxt = harness.tlv(der, off)
        parts.append((tag, der[off:nxt]))
        off = nxt
    if parts[-1][0] != 0xa1:
        raise harness.Failure("no extraCerts to replace")
    junk = harness.der_tlv(0xa1, harness.der_tlv(0x30, harness.der_tlv(0x30, b"\x02\x01\x01")))
    return der_seq(b"".join(p for _, p in parts[:-1]) + junk)


def error_msg(msg, key):
    """An error message (status rejection: the client aborts) in |msg|'s transaction."""
    def rejection(err):
        err["pKIStatusInfo"]["status"] = 2
    return rebody(msg, "error", rejection, key)


def flip_last(bitstring):
    b = bytearray(bitstring.asOctets())
    b[-1] ^= 1
    return bits(bitstring, bytes(b))


def spki_bits_in_pieces(cert):
    """DER certificate |cert| with the BIT STRING of its subjectPublicKeyInfo constructed of one piece (BER)."""
    def fields(buf, start, end):
        out = []
        while start < end:
            _, _, nxt = harness.tlv(buf, start)
            out.append(buf[start:nxt])
            start = nxt
        return out

    _, start, end = harness.tlv(cert)
    tbs, *rest = fields(cert, start, end)
    _, start, end = harness.tlv(tbs)
    tbs_fields = fields(tbs, start, end)
    i = 6 if tbs_fields[0][0] == 0xa0 else 5  # [version,] serial, signature, issuer, validity, subject, key
    _, start, end = harness.tlv(tbs_fields[i])
    alg, bits = fields(tbs_fields[i], start, end)
    tbs_fields[i] = harness.der_tlv(0x30, alg + harness.der_tlv(0x23, bits))
    return harness.der_tlv(0x30, harness.der_tlv(0x30, b"".join(tbs_fields)) + b"".join(rest))


def without(seq, *names):
    """A copy of the SEQUENCE |seq| without its components |names|."""
    out = seq.clone()
    for k, v in seq.items():
        if k not in names and v.isValue:
            out[k] = v
    return out


def set_octets(hdr, name, value):
    hdr[name] = hdr.componentType[name].asn1Object.clone(value)


# PBM's owf and mac (RFC 9810 §5.1.3.1) by OID, as hashlib names the hash of each
PBM_OWF = {"1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.3": "sha512"}
PBM_MAC = {"1.3.6.1.5.5.8.1.2": "sha1", "1.2.840.113549.2.9": "sha256", "1.2.840.113549.2.11": "sha512"}


def set_pbm_algs(msg, owf=None, mac=None):
    """|msg|'s PBMParameter with the owf and/or mac OIDs given (its MAC left as it was)."""
    alg = msg["header"]["protectionAlg"]
    par, _ = decoder.decode(alg["parameters"].asOctets(), asn1Spec=rfc4211.PBMParameter())
    if owf:
        par["owf"]["algorithm"] = univ.ObjectIdentifier(owf)
    if mac:
        par["mac"]["algorithm"] = univ.ObjectIdentifier(mac)
    alg["parameters"] = alg["parameters"].clone(univ.Any(encoder.encode(par)))
    return msg


def remac(msg, secret):
    """Protects |msg| again with PBM under |secret| and the parameters in its header (RFC 4211 §4.4)."""
    par, _ = decoder.decode(msg["header"]["protectionAlg"]["parameters"].asOctets(),
                            asn1Spec=rfc4211.PBMParameter())
    owf = PBM_OWF[str(par["owf"]["algorithm"])]
    key = hashlib.new(owf, secret + par["salt"].asOctets()).digest()
    for _ in range(int(par["iterationCount"]) - 1):
        key = hashlib.new(owf, key).digest()
    part = der_seq(encoder.encode(msg["header"]) + encoder.encode(msg["body"]))  # ProtectedPart
    mac = hmac.new(key, part, PBM_MAC[str(par["mac"]["algorithm"])]).digest()
    msg["protection"] = bits(msg.componentType["protection"].asn1Object, mac)
    return msg


PROFILE = "1.3.6.1.5.5.7.4.21"  # id-it-certProfile (RFC 9483 §3.1)


class Utf8Strings(univ.SequenceOf):
    componentType = char.UTF8String()


def profile_value(*names):
    """CertProfileValue ::= SEQUENCE SIZE (1..MAX) OF UTF8String, as DER."""
    seq = Utf8Strings()
    for n in names:
        seq.append(n)
    return encoder.encode(seq)


def add_general_info(msg, oid, value_der=None):
    """Appends an InfoTypeAndValue to the header's generalInfo (creating it if absent)."""
    hdr = msg["header"]
    gi = hdr["generalInfo"] if hdr["generalInfo"].isValue else hdr.componentType["generalInfo"].asn1Object.clone()
    itav = gi.componentType.clone()
    itav["infoType"] = univ.ObjectIdentifier(oid)
    if value_der is not None:
        itav["infoValue"] = univ.Any(value_der)
    gi.append(itav)
    hdr["generalInfo"] = gi
    return msg


def rsa_exponent_one_key(path):
    """An RSA-2048 private key with e = d = 1, which OpenSSL does not generate but reads and signs with: each
    of its signatures is the padded digest itself, which anyone can write for its public key."""
    k = rsa.generate_private_key(65537, 2048).private_numbers()
    key = rfc3447.RSAPrivateKey()
    for field, value in (("version", 0), ("modulus", k.p * k.q), ("publicExponent", 1), ("privateExponent", 1),
                         ("prime1", k.p), ("prime2", k.q), ("exponent1", 1), ("exponent2", 1),
                         ("coefficient", k.iqmp)):
        key[field] = value
    der = path.with_suffix(".der")
    der.write_bytes(encoder.encode(key))
    harness.run(["openssl", "pkey", "-inform", "DER", "-in", der, "-out", path])
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------------------------------------
# Assertions
# ---------------------------------------------------------------------------------------------

class RowAssertions:
    """expect(row, answer): |answer| (a CurlResult or a CmpAnswer) is what docs/errors.md says."""

    def setUp(self):
        # pyasn1 0.4 on Python 3.11+ warns about its own BIT STRING code on every encode
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pyasn1")

    def expect(self, rid, answer):
        row = ROWS[rid]
        if row["answer"].startswith("HTTP "):
            self.assertIsInstance(answer, harness.CurlResult, answer)
            self.assertEqual(answer.status, int(row["answer"].split()[1]), answer)
            text = answer.body.decode("utf-8", errors="replace")
            self.assertNotIn("\n", text.strip(), repr(text))  # one line, not a page
            self.assertRegex(text.strip(), row["regex"])
            return answer
        if isinstance(answer, harness.CurlResult):
            self.assertEqual(answer.status, 200, answer)
            self.assertEqual(answer.headers.get("content-type"), "application/pkixcmp", answer)
            answer = harness.decode_cmp(answer.body)
        allowed = {"ip/cp/kup": ("ip", "cp", "kup")}.get(row["answer"], (row["answer"],))
        self.assertIn(answer.body_type, allowed, answer)
        self.assertEqual(answer.status, 2, answer)  # rejection (RFC 9810 §5.2.3)
        self.assertEqual(answer.fail_info, [row["fail"]], answer)
        self.assertEqual(len(answer.status_strings), 1, answer)
        self.assertRegex(answer.status_strings[0], row["regex"])
        self.assertIsNone(INTERNALS.search(answer.status_strings[0]), answer)
        return answer


class Base(RowAssertions, harness.GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.own_keys = {p: p.read_bytes() for p in cls.gw.dir.glob("*.key")}

    def tearDown(self):
        # the gateway's own keys (signer.key, client.key, ...) are as the demo made them: a test that
        # replaced one would leave the tests after it a gateway whose files no longer match what it runs
        for path, data in self.own_keys.items():
            self.assertEqual(path.read_bytes(), data, "%s was overwritten" % path.name)
        super().tearDown()

    def newkey(self, name):
        """A fresh key for a request of |name|, in a file no other holds: <name>.key may be one of the
        gateway's own (a request named "signer" would replace the response signer's key) or a key a
        credential of another test signs with."""
        fd, path = tempfile.mkstemp(prefix="%s." % name, suffix=".new.key", dir=self.gw.dir)
        os.close(fd)
        return harness.genkey(path)

    def send(self, name, msg, path="/pki/cmp", **kw):
        """POSTs |msg| (bytes or a pyasn1 PKIMessage) with curl over TLS; returns the CurlResult."""
        f = self.gw.dir / ("%s.sent.der" % name)
        f.write_bytes(msg if isinstance(msg, bytes) else encoder.encode(msg))
        return self.gw.curl(data=f, path=path, **kw)

    def fresh(self, name, **kw):
        """A captured, never sent ir from `openssl cmp` (signed with client.pem unless auth="pbm")."""
        return load(self.gw.make_request(name, subject="/CN=%s" % name, **kw).read_bytes())

    def key(self):
        return self.gw.dir / "client.key"

    def open_txn(self, name):
        """An ir answered with a certificate whose certConf the client never sent: (ir, ip, cert DER)."""
        res = self.gw.cmp("ir", name, newkey=self.newkey(name), subject="/CN=%s" % name,
                          extra=("-disable_confirm",))
        self.assertFalse(res.first.implicit_confirm(), res.first)
        cert = ssl.PEM_cert_to_DER_cert(res.cert.read_text())
        return load(res.req_files[0].read_bytes()), res.first, cert

    def certconf(self, ir, ip, cert_hash, key=None, recip=None, sender=None, status=None):
        return certconf(ir, ip, cert_hash, key or self.key(), recip=recip, sender=sender, status=status)

    def ir(self, name, **kw):
        """`openssl cmp -cmd ir` expected to be refused; returns its last decoded answer."""
        if "newkey" not in kw:
            kw["newkey"] = self.newkey(name)
        kw.setdefault("subject", "/CN=%s" % name)
        res = self.gw.cmp("ir", name, expect_cert=False, **kw)
        self.assertIsNone(res.cert)
        self.assertNotEqual(res.returncode, 0)
        return res.last


# ---------------------------------------------------------------------------------------------
# The gateway as the demo configures it, plus roles that each refuse one thing
# ---------------------------------------------------------------------------------------------

class Errors(Base):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)  # the rr twin revokes
        # every refusal here comes from 127.0.0.1, and most count against its failed-authentication budget
        # (test_abuse tests it): this class tests the answers themselves, some hundred of them, so no budget
        cfg.setdefault("limits", {})["auth_failures_per_address"] = 0
        base = dict(cfg["roles"]["default"])
        pbm_only = dict(base)
        del pbm_only["trust"]
        cfg["roles"].update({
            "pbmonly": pbm_only,
            "tlssubj": dict(base, authorization={"tls_subjects": ["/O=cmpgw demo/CN=nobody"]}),
            "tlsreq": dict(base, authorization={"tls_client": "require"}),
            "signer": dict(base, authorization={"signer_subjects": ["/O=cmpgw demo/CN=nobody"]}),
            "names": dict(base, authorization={"allowed_dns_names": ["*.example.com"]}),
            "wild": dict(base, allow_wildcard_certificates=True, authorization={"allowed_dns_names": ["*.example.com"]}),
            "tlssigner": dict(base, authorization={"tls_must_be_signer": True}),
            "subjreq": dict(base, require_subject=True),
            "dnsonly": dict(base, allowed_san_types=["dns"]),
            "p384": dict(base, authorization={"allowed_key_types": ["ec:P-384"]}),
            "subjects": dict(base, authorization={"allowed_subjects": ["/O=cmpgw demo/CN=dev-*"]}),
            "mailany": dict(base, allowed_san_types=["dns", "email"]),
            "mailpat": dict(base, allowed_san_types=["dns", "email"], authorization={
                "allowed_emails": ["*@example.com"]}),
            "subjmail": dict(base, allowed_san_types=["dns", "email"], authorization={
                "allowed_subjects": ["/O=cmpgw demo/CN=dev-*/emailAddress=*@example.com"]}),
            "tlssan": dict(base, authorization={"tls_sans": ["*.example.com"]}),
            "tlstrust": dict(base, authorization={"tls_trust": ["foreign"]}),
            "kurreuse": dict(base, key_reuse="allow"),
        })
        # a CA the listener's client_ca does not hold: the demo client passes the handshake, not tls_trust
        fca, _, _ = harness.make_foreign_pki(gw.dir / "foreign")
        cfg["trust"]["foreign"] = {"ca_file": str(fca), "revocation": "none"}

    # -- HTTP ----------------------------------------------------------------------------------

    def test_http_unknown_path(self):
        der = self.gw.make_request("path").read_bytes()
        for path, why in (("/nowhere/cmp", "unknown path /nowhere/cmp"), ("/pki/roles/nobody/cmp", "unknown role"),
                          ("/pki/%63mp", "percent-encoded path"), ("/pki//cmp", "empty or dot segment in path"),
                          ("/.well-known/cmp/p/nolabel", "unknown label")):
            r = self.expect("http_unknown_path", self.send("path", der, path=path))
            self.assertTrue(r.body.decode().startswith(why), (path, r))

    def test_http_path_refused(self):
        """The fallback for a path refused without a reason of its own: the route match names the cause of each
        refusal, so a path wrong in each way it can be gets its own row's answer, never this one."""
        der = self.gw.make_request("fallback").read_bytes()
        own = [ROWS[rid]["regex"] for rid in ("http_unknown_path", "http_forbidden_path", "http_path_too_long")]
        for path in ("/nowhere/cmp", "/pki", "/pki/roles", "/pki/roles/x", "/pki/roles/a~b/cmp", "/pki/roles/x/y",
                     "/pki/cmp/nope", "/pki/cmp/ir/more", "/.well-known/cmp/p", "/.well-known/cmp/p/a~b",
                     "/" + "a" * 600):
            r = self.send("fallback", der, path=path)
            text = r.body.decode("utf-8", errors="replace").strip()
            self.assertNotRegex(text, ROWS["http_path_refused"]["regex"], (path, r))
            self.assertTrue(any(re.match(rx, text) for rx in own), (path, r))
            self.assertIn(r.status, (403, 404), (path, r))

    def test_http_method(self):
        r = self.expect("http_method", self.gw.curl(method="GET"))
        self.assertEqual(r.headers.get("allow"), "POST", r)

    def test_http_no_content_type(self):
        der = self.gw.make_request("noctype")
        self.expect("http_no_content_type", self.gw.curl("-H", "Content-Type:", data=der, content_type=None))

    def test_http_content_type(self):
        """Refused; the client's Content-Type quoted in the error line goes through the shared escaper: a C1
        control, a bidi override, U+2028 and a byte not UTF-8 each read as U+FFFD."""
        der = self.gw.make_request("ctype")
        self.expect("http_content_type", self.gw.curl(data=der, content_type="application/octet-stream"))
        hdr = self.gw.dir / "ctype-hostile.hdr"
        hdr.write_bytes(b"Content-Type: a\xc2\x9bb\xe2\x80\xaec\xe2\x80\xa8d\xffe\n")
        r = self.expect("http_content_type", self.gw.curl("-H", "@%s" % hdr, data=der, content_type=None))
        fffd = "\ufffd"
        self.assertEqual(r.body.decode("utf-8"), 'unsupported Content-Type "a%sb%sc%sd%se": expected '
                         "application/pkixcmp\n" % (fffd, fffd, fffd, fffd))

    def test_http_too_large(self):
        """Refused on its Content-Length. With "Expect: 100-continue" the body never leaves the client; sent at
        once, it may still be arriving when libh2o answers and closes, and the client's send then meets a
        connection reset before it reads the 413 (docs/errors.md)."""
        f = self.gw.dir / "big.sent.der"
        f.write_bytes(b"\x30\x84\x00\x01\x11\x70" + b"\x00" * 70000)
        self.expect("http_too_large", self.gw.curl("-H", "Expect: 100-continue", data=f))

    def test_http_empty(self):
        self.expect("http_empty", self.send("empty", b""))

    def test_http_not_der(self):
        """PEM, truncated, not a SEQUENCE; and, which OpenSSL decodes and which would hide contents from the
        count of its keys (http_too_many_keys), the request itself in an indefinite length (BER), or its
        extraCerts' SEQUENCE OF sent primitive (X.690 has a SEQUENCE constructed)."""
        der = self.gw.make_request("notder").read_bytes()
        _, start, end = harness.tlv(der)
        indefinite = b"\x30\x80" + der[start:end] + b"\x00\x00"
        off = start
        while der[off] != 0xa1:  # extraCerts [1]: its content, a SEQUENCE, primitive
            off = harness.tlv(der, off)[2]
        inner = harness.tlv(der, off)[1]
        self.assertEqual(der[inner], 0x30)
        primitive = der[:inner] + b"\x10" + der[inner + 1:]
        for i, body in enumerate([harness.der_to_pem(der, "PKIMESSAGE").encode(), der[:-7], b"\x04\x02ab",
                                  indefinite, primitive]):
            with self.subTest(i=i):
                self.expect("http_not_der", self.send("notder%d" % i, body))

    def with_extra_certs(self, der, n, key_in_pieces=False):
        """|der| with extraCerts of |n| copies of the demo client's certificate instead of its own; with
        |key_in_pieces|, its key's BIT STRING in a constructed one (BER), which OpenSSL decodes as the whole."""
        _, off, end = harness.tlv(der)
        parts = []
        while off < end:
            tag, _, next_off = harness.tlv(der, off)
            if tag != 0xa1:
                parts.append(der[off:next_off])
            off = next_off
        pem = (self.gw.dir / "client.pem").read_bytes()
        client = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
        if key_in_pieces:
            client = spki_bits_in_pieces(client)
        return harness.der_tlv(0x30, b"".join(parts) + harness.der_tlv(0xa1, harness.der_tlv(0x30, client * n)))

    def test_http_too_many_keys(self):
        """OpenSSL 3.0 spends some 0.2 ms on each public key it decodes, before any check: 300 in 64 KiB cost
        60 ms, 100 ms as templates. They are counted in the DER first. An ir holds two (its template's key and
        its POPO): 23 certificates more are one too many, also with each key's BIT STRING in pieces (BER,
        which OpenSSL decodes as well: such keys went uncounted, 400 templates in 40 KiB); with 22 it is
        decoded, and the engine refuses it."""
        der = self.gw.make_request("keys").read_bytes()
        r = self.expect("http_too_many_keys", self.send("keys23", self.with_extra_certs(der, 23)))
        self.assertIn("more than 24 public keys", r.body.decode())
        self.expect("http_too_many_keys", self.send("keys23-pieces", self.with_extra_certs(der, 23, True)))
        ans = self.expect("extra_certs", self.send("keys22", self.with_extra_certs(der, 22)))
        self.assertEqual(ans.body_type, "error")

    def test_http_too_many_elements(self):
        """OpenSSL decodes every element of a message before any check, some 0.5 us each: 64 KiB of small
        generalInfo entries (20 000 elements) cost 11 ms. Counted in the DER first: 2100 entries of two
        elements are over 4096; with 1000 the message is decoded, and the engine refuses it."""
        m = self.fresh("elems")
        for _ in range(2100):
            add_general_info(m, "1.2.3.4")
        self.expect("http_too_many_elements", self.send("elems", resign(m, self.key())))
        m = self.fresh("elems-twin")
        for _ in range(1000):
            add_general_info(m, "1.2.3.4")
        self.expect("general_info_limits", self.send("elems-twin", resign(m, self.key())))
        # OpenSSL 3.0 decodes a CRL entry's certificateIssuer as it decodes the CRL, before any check: 30 000
        # GeneralNames in its OCTET STRING (60 KiB) cost 90 000 allocations, 15 times a message at the cap. They
        # count as elements, as many as the value could hold; the same names in a subjectAltName, which OpenSSL
        # leaves undecoded, count as one, and that message is decoded (and refused as no request)
        self.expect("http_too_many_elements", self.send("crl-issuer", self.crlann("crl-issuer", 29, 30000)))
        a = self.expect("not_a_request", self.send("crl-san", self.crlann("crl-san", 17, 30000)))
        self.assertIn("crlann is not a request", a.status_strings[0])

    def crlann(self, name, ext_id, names):
        """The header of a fresh ir over a crlann body (RFC 9810 §5.3.20, unprotected: the engine refuses its body
        type first) of one CRL whose one entry has the extension id-ce |ext_id| holding |names| empty dNSNames."""
        t, alg = harness.der_tlv(0x17, b"250101000000Z"), bytes.fromhex("300d06092a864886f70d01010b0500")
        gns = harness.der_tlv(0x30, b"\x82\x00" * names)
        ext = harness.der_tlv(0x30, bytes.fromhex("0603551d") + bytes([ext_id]) + harness.der_tlv(0x04, gns))
        entry = harness.der_tlv(0x30, bytes.fromhex("020107") + t + harness.der_tlv(0x30, ext))
        tbs = harness.der_tlv(0x30, bytes.fromhex("020101") + alg + b"\x30\x00" + t + harness.der_tlv(0x30, entry))
        crl = harness.der_tlv(0x30, tbs + alg + b"\x03\x01\x00")
        return der_seq(encoder.encode(self.fresh(name)["header"]) + harness.der_tlv(0xb2, harness.der_tlv(0x30, crl)))

    def test_http_trailing(self):
        self.expect("http_trailing", self.send("trailing", self.gw.make_request("trailing").read_bytes() + b"\0"))

    # -- refused before OpenSSL sees the message (error body) -----------------------------------

    def test_no_tid(self):
        m = self.fresh("notid")
        m["header"] = without(m["header"], "transactionID")
        self.expect("no_tid", self.send("notid", resign(m, self.key())))

    def test_no_sender_nonce(self):
        """A request without senderNonce is refused: its answer could carry no recipNonce (RFC 9483 §3.1). So is a
        certConf without one, which leaves the transaction open: the client's own certConf then confirms."""
        m = self.fresh("nononce")
        m["header"] = without(m["header"], "senderNonce")
        self.expect("no_sender_nonce", self.send("nononce", resign(m, self.key())))
        ir, ip, cert = self.open_txn("nononceconf")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
        bare = load(encoder.encode(conf))
        bare["header"] = without(bare["header"], "senderNonce")
        self.expect("no_sender_nonce", self.send("nononceconf-bare", resign(bare, self.key())))
        a = harness.decode_cmp(self.send("nononceconf-conf", conf).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_short_tid(self):
        """RFC 9483 §3.1: a transactionID of 128 random bits. A shorter one is refused in an ir, a p10cr and an
        error message alike, before any transaction is looked up or begun; the twin of 16 bytes is issued."""
        text = ("transactionID of %d bytes is too short: start the transaction with a random transactionID of 16 "
                "bytes or more (RFC 9483 §3.1)")
        for what, n in (("ir", 1), ("ir", 15), ("p10cr", 8), ("error", 4)):
            with self.subTest(what=what, n=n):
                name = "shorttid-%s-%d" % (what, n)
                m = load(self.gw.make_request(name, "p10cr" if what == "p10cr" else "ir",
                                              subject="/CN=" + name).read_bytes())
                set_octets(m["header"], "transactionID", os.urandom(n))
                m = error_msg(m, self.key()) if what == "error" else resign(m, self.key())
                a = self.expect("short_tid", self.send(name, m))
                self.assertEqual(a.status_strings, [text % n])
        m = self.fresh("shorttid-twin")
        set_octets(m["header"], "transactionID", os.urandom(16))
        a = harness.decode_cmp(self.send("shorttid-twin", resign(m, self.key())).body)
        self.assertEqual((a.body_type, a.status), ("ip", 0), a)

    def test_short_sender_nonce(self):
        """RFC 9483 §3.1: a senderNonce of at least 128 bits in every message. A shorter one is refused in an ir,
        and in a certConf, which leaves its transaction as it was: the client's own certConf then confirms."""
        text = ("senderNonce of %d bytes is too short: send a fresh random senderNonce of 16 bytes or more in every "
                "message (RFC 9483 §3.1)")
        for n in (1, 15):
            with self.subTest(n=n):
                m = self.fresh("shortnonce%d" % n)
                set_octets(m["header"], "senderNonce", os.urandom(n))
                a = self.expect("short_sender_nonce", self.send("shortnonce%d" % n, resign(m, self.key())))
                self.assertEqual(a.status_strings, [text % n])
        ir, ip, cert = self.open_txn("shortnonceconf")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
        short = load(encoder.encode(conf))
        set_octets(short["header"], "senderNonce", os.urandom(8))
        a = self.expect("short_sender_nonce", self.send("shortnonceconf-short", resign(short, self.key())))
        self.assertEqual(a.status_strings, [text % 8])
        a = harness.decode_cmp(self.send("shortnonceconf-conf", conf).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_not_a_request(self):
        m = self.fresh("pkiconf")
        body = m["body"].clone()
        body["pkiconf"] = body.componentType["pkiconf"].asn1Object.clone("")
        m["body"] = body
        a = self.expect("not_a_request", self.send("pkiconf", resign(m, self.key())))
        self.assertIn("pkiconf is not a request", a.status_strings[0])

    def test_long_tid(self):
        """Over 64 bytes (GW_MAX_TID_LEN) the client is told the limit, as under 16: refused as the header is read,
        in an ir and an error message alike; the twin of 64 bytes is issued."""
        text = ("transactionID of %d bytes is too long: start the transaction with a random transactionID of 16 to 64 "
                "bytes (RFC 9483 §3.1)")
        for what, n in (("ir", 65), ("ir", 1000), ("error", 100)):
            with self.subTest(what=what, n=n):
                name = "longtid-%s-%d" % (what, n)
                m = self.fresh(name)
                set_octets(m["header"], "transactionID", os.urandom(n))
                m = error_msg(m, self.key()) if what == "error" else resign(m, self.key())
                a = self.expect("long_tid", self.send(name, m))
                self.assertEqual(a.status_strings, [text % n])
        m = self.fresh("longtid-twin")
        set_octets(m["header"], "transactionID", os.urandom(64))
        a = harness.decode_cmp(self.send("longtid-twin", resign(m, self.key())).body)
        self.assertEqual((a.body_type, a.status), ("ip", 0), a)

    def test_long_sender_nonce(self):
        """Over 64 bytes (GW_MAX_NONCE_LEN), in an ir, and in a certConf, which leaves its transaction as it was:
        the client's own certConf then confirms. The twin of 64 bytes is issued."""
        text = ("senderNonce of %d bytes is too long: send a fresh random senderNonce of 16 to 64 bytes in every "
                "message (RFC 9483 §3.1)")
        for n in (65, 1000):
            with self.subTest(n=n):
                m = self.fresh("longnonce%d" % n)
                set_octets(m["header"], "senderNonce", os.urandom(n))
                a = self.expect("long_sender_nonce", self.send("longnonce%d" % n, resign(m, self.key())))
                self.assertEqual(a.status_strings, [text % n])
        ir, ip, cert = self.open_txn("longnonceconf")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
        over = load(encoder.encode(conf))
        set_octets(over["header"], "senderNonce", os.urandom(80))
        a = self.expect("long_sender_nonce", self.send("longnonceconf-long", resign(over, self.key())))
        self.assertEqual(a.status_strings, [text % 80])
        a = harness.decode_cmp(self.send("longnonceconf-conf", conf).body)
        self.assertEqual(a.body_type, "pkiconf", a)
        m = self.fresh("longnonce-twin")
        set_octets(m["header"], "senderNonce", os.urandom(64))
        a = harness.decode_cmp(self.send("longnonce-twin", resign(m, self.key())).body)
        self.assertEqual((a.body_type, a.status), ("ip", 0), a)

    def test_malformed_header(self):
        """A senderKID over 128 bytes (GW_MAX_KID_LEN), signed or PBM-protected (the PBM one refused before its
        reference is looked up)."""
        for auth in ("sig", "pbm"):
            with self.subTest(auth=auth):
                m = self.fresh("hdrkid-%s" % auth, **({"auth": "pbm"} if auth == "pbm" else {}))
                set_octets(m["header"], "senderKID", b"k" * 129)
                self.expect("malformed_header", self.send("hdrkid-" + auth, resign(m, self.key()) if auth == "sig" else m))

    def test_unprotected(self):
        m = self.fresh("unprot")
        self.expect("unprotected", self.send("unprot", without(m, "protection")))

    def test_pbm_failed(self):
        cases = [("wrong secret", ("pbm", "demo-device", "pass:not-the-secret-123"), "pki/cmp"),
                 ("unknown reference", ("pbm", "no-such-device", "pass:whatever-secret"), "pki/cmp")]
        for i, (what, auth, path) in enumerate(cases):
            with self.subTest(what=what):
                self.expect("pbm_failed", self.ir("pbmfail%d" % i, auth=auth, path=path))

    def test_pbm_iterations(self):
        m = self.fresh("pbmiter", auth="pbm")
        alg = m["header"]["protectionAlg"]
        par, _ = decoder.decode(alg["parameters"].asOctets(), asn1Spec=rfc4211.PBMParameter())
        par["iterationCount"] = self.gw.config.get("cmp", {}).get("pbm_max_iterations", 10000) + 1
        alg["parameters"] = alg["parameters"].clone(univ.Any(encoder.encode(par)))
        a = self.expect("pbm_iterations", self.send("pbmiter", m))
        self.assertEqual(a.status_strings, ["PBM iterationCount 10001 is above this server's cap of 10000"])
        # checked before the reference is looked up: an unknown one gets the same answer, so none is probed
        set_octets(m["header"], "senderKID", b"no-such-device")
        self.expect("pbm_iterations", self.send("pbmiter-unknown", m))

    def test_pbm_alg(self):
        """PBM's owf and mac come from an allow-list (RFC 9481 §2, §6.2.1), checked before the key is derived
        and before the reference is looked up: `openssl cmp -digest` under PBM is its owf too, so sha1 and
        sha3-512 are refused; so are a crafted MD5, SHAKE128, SHAKE256 or unknown owf (OpenSSL 3.0 derives a
        SHAKE PBM key at half the length RFC 9481 §2.2 requires) and an HMAC-MD5 mac, whoever's reference
        they name. Twins: openssl cmp's default (owf sha256, mac hmac-sha1), owf sha512 with mac
        hmacWithSHA512, owf sha224 (`-digest sha224`) and mac hmacWithSHA224 are issued."""
        accepts = ("is not accepted: use owf SHA-224, SHA-256, SHA-384 or SHA-512 and mac HMAC-SHA1, "
                   "HMAC-SHA224, HMAC-SHA256, HMAC-SHA384 or HMAC-SHA512")
        for digest in ("sha1", "sha3-512"):
            with self.subTest(digest=digest):
                a = self.expect("pbm_alg", self.ir("pbmalg-" + digest, auth="pbm", extra=("-digest", digest)))
                self.assertEqual(a.status_strings, ["PBM protection with owf %s and mac hmac-sha1 %s" % (digest, accepts)])
        crafted = (("md5", "1.2.840.113549.2.5", None, "owf md5 and mac hmac-sha1"),
                   ("shake128", "2.16.840.1.101.3.4.2.11", None, "owf shake128 and mac hmac-sha1"),
                   ("shake256", "2.16.840.1.101.3.4.2.12", None, "owf shake256 and mac hmac-sha1"),
                   ("unknown", "1.3.6.1.4.1.55555.1", None, "owf unknown and mac hmac-sha1"),
                   ("hmac-md5", None, "1.3.6.1.5.5.8.1.1", "owf sha256 and mac hmac-md5"))
        for what, owf, mac, names in crafted:
            with self.subTest(crafted=what):
                m = set_pbm_algs(self.fresh("pbmalg-" + what, auth="pbm"), owf, mac)
                a = self.expect("pbm_alg", self.send("pbmalg-" + what, m))
                self.assertEqual(a.status_strings, ["PBM protection with %s %s" % (names, accepts)])
                set_octets(m["header"], "senderKID", b"no-such-device")
                self.expect("pbm_alg", self.send("pbmalg-%s-unknown" % what, m))
        self.assertGreaterEqual(len([e for e in self.gw.log_lines() if e.get("event") == "pbm_alg"]), 11)
        for name, extra in (("pbmalg-default", ()), ("pbmalg-sha512", ("-digest", "sha512", "-mac", "hmacWithSHA512")),
                            ("pbmalg-sha224", ("-digest", "sha224")), ("pbmalg-hmac224", ("-mac", "hmacWithSHA224"))):
            with self.subTest(twin=name):
                res = self.gw.cmp("ir", name, auth="pbm", newkey=self.newkey(name), subject="/CN=" + name,
                                  extra=extra + ("-implicit_confirm",))
                self.assertEqual((res.first.body_type, res.first.status), ("ip", 0), res.first)

    def test_protection_alg(self):
        """A protectionAlg that is neither PasswordBasedMac nor a signature algorithm OpenSSL knows (PBMAC1, RFC 9481
        §6.1.2; DHBasedMac) is refused as such, on a route with trust and on a PBM-only one, not as an untrusted
        signer; one OpenSSL does not know at all likewise, named in dotted form, not as a message not protected."""
        for name, oid in (("PBMAC1", "1.2.840.113549.1.5.14"), ("Diffie-Hellman based MAC", "1.2.840.113533.7.66.30"),
                          ("1.3.6.1.4.1.55555.7.1", "1.3.6.1.4.1.55555.7.1")):
            for path in ("/pki/cmp", "/pki/roles/pbmonly/cmp"):
                with self.subTest(alg=name, path=path):
                    m = self.fresh("protalg", auth="pbm")
                    m["header"]["protectionAlg"]["algorithm"] = univ.ObjectIdentifier(oid)
                    a = self.expect("protection_alg", self.send("protalg", m, path=path))
                    self.assertTrue(a.status_strings[0].startswith("message protection %s is not" % name), a)
        self.assertTrue(any(e.get("event") == "protection_alg" for e in self.gw.log_lines()))

    # -- refused by OpenSSL's checks, rewritten by the engine (error body) ----------------------

    def test_untrusted_signer(self):
        _, cert, key = harness.make_foreign_pki(self.gw.dir / "foreign")
        self.expect("untrusted_signer", self.ir("untrusted", auth=(cert, key)))

    def signer_refused(self, m):
        """(cause, tried_from) of the signer_refused lines logged for the message |m|."""
        tid = bytes(m["header"]["transactionID"]).hex()
        return [(e.get("cause"), e.get("tried_from")) for e in self.gw.log_lines()
                if e.get("event") == "signer_refused" and e.get("tid") == tid]

    def test_bad_signature(self):
        """Answered as untrusted_signer; the log says the signature did not verify with the client's certificate."""
        m = self.fresh("badsig")
        m["protection"] = flip_last(m["protection"])
        self.expect("bad_signature", self.send("badsig", m))
        self.assertEqual(self.signer_refused(m), [("signature", "extraCerts")])

    def test_signature_not_accepted(self):
        self.expect("signature_not_accepted", self.ir("pbmonly", path="pki/roles/pbmonly/cmp"))

    def test_no_digital_signature(self):
        """openssl cmp will not sign with such a certificate: the client's key certified again without
        digitalSignature replaces client.pem in a captured ir's extraCerts."""
        d = self.gw.dir
        harness.run(["openssl", "req", "-new", "-key", d / "client.key", "-subj", "/O=cmpgw demo/CN=demo-client",
                     "-out", d / "noku.csr"])
        (d / "noku.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyEncipherment\n"
                                    "subjectKeyIdentifier=hash\n")
        harness.run(["openssl", "x509", "-req", "-in", d / "noku.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                     "-days", "2", "-extfile", d / "noku.ext", "-set_serial", "0x5001", "-out", d / "noku.pem"])
        noku, _ = decoder.decode(ssl.PEM_cert_to_DER_cert((d / "noku.pem").read_text()),
                                 asn1Spec=rfc4210.CMPCertificate())
        m = self.fresh("noku")
        extra = m["extraCerts"]
        extra[0] = noku
        m = resign(m, self.key())
        self.expect("no_digital_signature", self.send("noku", m))
        self.assertEqual(self.signer_refused(m), [("key_usage", "extraCerts")])
        # its twin, whose signature does not verify, has shown no key: told no more than an untrusted signer
        twin = self.fresh("noku-twin")
        twin["extraCerts"][0] = noku
        twin = resign(twin, self.key())
        twin["protection"] = flip_last(twin["protection"])
        self.expect("untrusted_signer", self.send("noku-twin", twin))
        self.assertEqual(self.signer_refused(twin), [("signature", "extraCerts")])

    def test_pvno(self):
        for pvno in (3, 1):
            with self.subTest(pvno=pvno):
                m = self.fresh("pvno%d" % pvno)
                m["header"]["pvno"] = pvno
                self.expect("pvno", self.send("pvno%d" % pvno, resign(m, self.key())))

    def test_sender_not_dn(self):
        m = self.fresh("sender")
        gn = m["header"]["sender"].clone()
        gn["rfc822Name"] = "device@example.com"
        m["header"]["sender"] = gn
        self.expect("sender_not_dn", self.send("sender", resign(m, self.key())))

    def test_multiple_requests(self):
        m = self.fresh("two")
        m["body"]["ir"].append(m["body"]["ir"][0])
        self.expect("multiple_requests", self.send("two", resign(m, self.key())))

    def test_cert_req_id(self):
        m = self.fresh("reqid")
        m["body"]["ir"][0]["certReq"]["certReqId"] = 1
        self.expect("cert_req_id", self.send("reqid", resign(m, self.key())))

    # -- the certificate request's own answer (ip/cp/kup rejection) ---------------------------

    def test_bad_pop(self):
        m = self.fresh("badpop")
        sig = m["body"]["ir"][0]["pop"]["signature"]
        sig["signature"] = flip_last(sig["signature"])
        self.expect("bad_pop", self.send("badpop", resign(m, self.key())))
        m = self.fresh("nopop")
        m["body"]["ir"][0] = without(m["body"]["ir"][0], "pop")
        self.expect("bad_pop", self.send("nopop", resign(m, self.key())))
        m = load(self.gw.make_request("badcsr", "p10cr", subject="/CN=badcsr").read_bytes())
        m["body"]["p10cr"]["signature"] = flip_last(m["body"]["p10cr"]["signature"])
        self.expect("bad_pop", self.send("badcsr", resign(m, self.key())))

    def assert_not_authorized(self, rid, role, answer):
        """|answer|, a refusal by |role|'s authorization, is logged not_authorized with |rid| as its reason and
        the statusString as its msg (docs/errors.md)."""
        logged = [l.get("reason") for l in self.gw.log_lines() if l.get("event") == "not_authorized" and
                  l.get("role") == role and l.get("msg") == answer.status_strings[0]]
        self.assertEqual(logged, [rid])

    def test_central_keygen(self):
        """An ir or cr whose certTemplate has no publicKey, or one with an empty subjectPublicKey, asks for central
        key generation (RFC 9483 §4.1.6): refused as such, not as a failed proof of possession. The twin with its
        key but without a POPO is still bad_pop."""
        for cmd, form in (("ir", "absent"), ("ir", "empty"), ("cr", "absent")):
            with self.subTest(cmd=cmd, form=form):
                name = "ckg-%s-%s" % (cmd, form)
                m = load(self.gw.make_request(name, cmd, subject="/CN=" + name).read_bytes())
                crm = m["body"][cmd][0]
                tmpl = crm["certReq"]["certTemplate"]
                if form == "absent":
                    crm["certReq"]["certTemplate"] = without(tmpl, "publicKey")
                else:
                    key = tmpl["publicKey"]["subjectPublicKey"]
                    tmpl["publicKey"]["subjectPublicKey"] = key.clone(univ.BitString(()))
                m["body"][cmd][0] = without(crm, "pop")  # nothing to prove possession of
                self.expect("central_keygen", self.send(name, resign(m, self.key())))
        m = self.fresh("ckg-twin")
        m["body"]["ir"][0] = without(m["body"]["ir"][0], "pop")
        self.expect("bad_pop", self.send("ckg-twin", resign(m, self.key())))

    def test_tls_subject(self):
        a = self.expect("tls_subject", self.ir("tlssubj", path="pki/roles/tlssubj/cmp"))
        self.assertEqual(a.status_strings, ["TLS client certificate subject /O=cmpgw demo/CN=demo-client is not "
                                            "allowed on role tlssubj (allowed: /O=cmpgw demo/CN=nobody)"])
        self.assert_not_authorized("tls_subject", "tlssubj", a)

    def test_tls_required(self):
        a = self.expect("tls_required", self.ir("tlsreq", path="pki/roles/tlsreq/cmp", tls=(None, None)))
        self.assert_not_authorized("tls_required", "tlsreq", a)

    def test_signer_subject(self):
        a = self.expect("signer_subject", self.ir("signer", path="pki/roles/signer/cmp"))
        self.assert_not_authorized("signer_subject", "signer", a)

    def test_kur_pbm(self):
        a = self.expect("kur_pbm", self.gw.cmp("kur", "kurpbm", auth="pbm", newkey=self.newkey("kurpbm"),
                                               extra=("-oldcert", self.gw.dir / "client.pem"), expect_cert=False).last)
        self.assertEqual(self.gw.denials("kur_pbm"), [("default", "pbm:demo-device", a.status_strings[0])])

    def test_kur_other_cert(self):
        other = self.gw.cmp("ir", "kurold", newkey=self.newkey("kurold"), subject="/CN=kurold").cert
        res = self.gw.cmp("kur", "kurother", newkey=self.newkey("kurother"), extra=("-oldcert", other),
                          expect_cert=False)
        a = self.expect("kur_other_cert", res.last)
        self.assertEqual(self.gw.denials("kur_other_cert"),
                         [("default", "/O=cmpgw demo/CN=demo-client", a.status_strings[0])])

    def test_key_reuse(self):
        """RFC 9483 §4.1.3 (a new key pair SHOULD be used): `openssl cmp -cmd kur` with -newkey the key of the
        certificate it updates (-key) is refused before the CA is asked; so are `-cmd cr -cert old -key old`
        without -newkey and a p10cr signed so whose CSR is of the old key, which would renew it as well. Twins:
        the same requests on a role with "key_reuse": "allow" certify that key; on the default role, a new key
        is certified."""
        cert, key = self.enrol("kurreuse")
        csr = self.gw.dir / "kurreuse-old.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=kurreuse", "-out", csr])
        before = len(harness.audit_records(self.gw, "intent"))
        asks = (("kur", "kup", dict(newkey=key)), ("cr", "cp", {}), ("p10cr", "cp", dict(extra=("-csr", csr))))
        refused = []
        for cmd, body, kw in asks:
            with self.subTest(cmd=cmd):
                kw = dict(kw, extra=kw.get("extra", ()) + ("-implicit_confirm",))
                res = self.gw.cmp(cmd, "kurreuse-same-" + cmd, auth=(cert, key), expect_cert=False, **kw)
                self.assertIsNone(res.cert)
                a = self.expect("key_reuse", res.last)
                self.assertEqual(a.body_type, body)
                # RFC 9483 §4.1.3 is the kur's: an ir, cr or p10cr held to its rule cites no section
                want = ("a key update (RFC 9483 §4.1.3)" if cmd == "kur" else
                        "a %s signed with a certificate a CA of this route issued" % cmd)
                self.assertEqual(a.status_strings[0].split(" must certify")[0], want)
                refused.append(("default", a.status_strings[0]))
        self.assertEqual(len(harness.audit_records(self.gw, "intent")), before)  # the CA was never asked
        self.assertEqual([(role, msg) for role, _, msg in self.gw.denials("key_reuse")], refused)
        for cmd, _, kw in asks:
            with self.subTest(cmd=cmd, role="kurreuse"):
                kw = dict(kw, extra=kw.get("extra", ()) + ("-implicit_confirm",))
                same = self.gw.cmp(cmd, "kurreuse-allowed-" + cmd, auth=(cert, key), path="pki/roles/kurreuse/cmp",
                                   **kw)
                self.assertEqual(harness.pubkey_pem_of_cert(same.cert), harness.pubkey_pem_of_key(key))
        for cmd in ("kur", "cr"):
            with self.subTest(cmd=cmd, key="new"):
                new = self.newkey("kurreuse-new-" + cmd)
                renewed = self.gw.cmp(cmd, "kurreuse-new-" + cmd, auth=(cert, key), newkey=new,
                                      extra=("-implicit_confirm",))
                self.assertEqual(harness.pubkey_pem_of_cert(renewed.cert), harness.pubkey_pem_of_key(new))

    def test_message_time(self):
        for name, when in (("past", "20200101000000Z"), ("future", "20990101000000Z")):
            with self.subTest(when=name):
                m = self.fresh("time%s" % name)
                m["header"]["messageTime"] = m["header"]["messageTime"].clone(when)
                self.expect("message_time", self.send("time" + name, resign(m, self.key())))

    def test_replay(self):
        der = self.gw.make_request("replay").read_bytes()
        self.assertEqual(harness.decode_cmp(self.send("replay1", der).body).status, 0)
        self.expect("replay", self.send("replay2", der))

    def test_tid_in_use(self):
        m = self.fresh("tidreuse")
        self.assertEqual(harness.decode_cmp(self.send("tidreuse1", m).body).status, 0)
        set_octets(m["header"], "senderNonce", os.urandom(16))
        self.expect("tid_in_use", self.send("tidreuse2", resign(m, self.key())))

    def test_name_not_allowed(self):
        a = self.expect("name_not_allowed", self.ir("evil", path="pki/roles/names/cmp", subject="/CN=ok.example.com",
                                                    extra=("-sans", "evil.example.org")))
        self.assertEqual(a.status_strings, ["DNS name evil.example.org is not allowed on role names "
                                            "(allowed: *.example.com)"])
        # a subject emailAddress or mail is held to allowed_emails as an email subjectAltName is; each has a twin
        for name, attr, kind in (("mailpat", "emailAddress", "subject emailAddress"),
                                 ("ldappat", "mail", "subject attribute mail")):
            with self.subTest(attr=attr):
                a = self.expect("name_not_allowed", self.ir(name, path="pki/roles/mailpat/cmp",
                                                            subject="/CN=mail/%s=ceo@bank.example" % attr))
                self.assertEqual(a.status_strings, ["%s ceo@bank.example is not allowed on role mailpat "
                                                    "(allowed: *@example.com)" % kind])
                res = self.gw.cmp("ir", name + "-ok", newkey=self.newkey(name + "-ok"), path="pki/roles/mailpat/cmp",
                                  subject="/CN=mail/%s=ceo@example.com" % attr)
                self.assertIsNotNone(res.cert)

    def test_tls_signer_pbm(self):
        a = self.expect("tls_signer_pbm", self.ir("tlspbm", path="pki/roles/tlssigner/cmp", auth="pbm"))
        self.assert_not_authorized("tls_signer_pbm", "tlssigner", a)

    def test_tls_signer_other(self):
        cert, key = self.enrol("tlsother")
        a = self.expect("tls_signer_other", self.ir("tlsother2", path="pki/roles/tlssigner/cmp", auth=(cert, key)))
        self.assert_not_authorized("tls_signer_other", "tlssigner", a)

    def p10cr(self, name, path, subject, sans=None):
        """`openssl cmp -cmd p10cr` with a CSR for |subject| (and DNS |sans|), expected to be refused."""
        key, csr = self.newkey(name), self.gw.dir / ("%s.csr" % name)
        argv = ["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr]
        if sans:
            argv += ["-addext", "subjectAltName=" + ",".join("DNS:" + n for n in sans)]
        harness.run(argv)
        res = self.gw.cmp("p10cr", name, path=path, extra=("-csr", csr), expect_cert=False)
        self.assertIsNone(res.cert)
        return res.last

    def test_subject_required(self):
        self.expect("subject_required", self.p10cr("nosubj", "pki/roles/subjreq/cmp", "/", ["nosubj.example.com"]))

    def test_no_name(self):
        self.expect("no_name", self.p10cr("noname", "pki/cmp", "/"))

    def test_popo_input(self):
        """A POPO signing a poposkInput (the sender's name and the key) proves the key but covers nothing of the
        template, and OpenSSL 3.0 verifies it whatever the template holds: refused before the CA is asked. Its
        twin, the same request with its POPO over the certReq as `openssl cmp` made it, issues."""
        before = len(harness.audit_records(self.gw, "intent"))
        m = with_poposk_input(self.fresh("popoinput"), self.gw.dir / "popoinput.key", self.key())
        a = self.expect("popo_input", self.send("popoinput", m))
        self.assertEqual(a.body_type, "ip")
        self.assertEqual(len(harness.audit_records(self.gw, "intent")), before)  # the CA was never asked
        twin = harness.decode_cmp(self.send("popoinput-twin", self.fresh("popoinput-twin")).body)
        self.assertEqual((twin.body_type, twin.status), ("ip", 0), twin)

    def test_weak_popo(self):
        """A SHA-1 POPO or CSR signature under a protection that passes (SHA-256, or a PBM MAC) is refused on a
        route without min_hash, before the CA is asked; each twin with SHA-256 issues."""
        text = ("the %s signature uses a hash under 112 bits of security (SHA-1): sign the %s with SHA-256 or "
                "stronger")
        # p10cr: the CSR made with `openssl req -sha1`, the message signed with SHA-256 (openssl cmp's default)
        for digest in ("sha1", "sha256"):
            key, csr = self.newkey("weakcsr-" + digest), self.gw.dir / ("weakcsr-%s.csr" % digest)
            harness.run(["openssl", "req", "-new", "-%s" % digest, "-key", key, "-subj", "/CN=weakcsr-" + digest,
                         "-out", csr])
            res = self.gw.cmp("p10cr", "weakcsr-" + digest, extra=("-csr", csr, "-implicit_confirm"),
                              expect_cert=digest != "sha1")
            if digest == "sha1":
                self.assertIsNone(res.cert)
                a = self.expect("weak_popo", res.first)
                self.assertEqual((a.body_type, a.status_strings), ("cp", [text % ("CSR's", "CSR")]))
            else:
                self.assertEqual((res.first.body_type, res.first.status), ("cp", 0), res.first)
        # ir under PBM: openssl cmp signs its POPO with its -digest, which is its PBM owf too (a SHA-1 owf is
        # pbm_alg): captured with -digest sha1, the owf made SHA-256 and the MAC made again; the twin as it sends
        m = set_pbm_algs(self.fresh("weakpopo-sha1", auth="pbm", extra=("-digest", "sha1", "-mac",
                                                                        "hmacWithSHA256", "-implicit_confirm")),
                         owf="2.16.840.1.101.3.4.2.1")
        secret = (self.gw.dir / "pbm.secret").read_bytes().rstrip(b"\r\n")
        a = self.expect("weak_popo", self.send("weakpopo-sha1", remac(m, secret)))
        self.assertEqual((a.body_type, a.status_strings), ("ip", [text % ("proof-of-possession", "request")]))
        res = self.gw.cmp("ir", "weakpopo-sha256", auth="pbm", newkey=self.newkey("weakpopo-sha256"),
                          subject="/CN=weakpopo-sha256",
                          extra=("-digest", "sha256", "-mac", "hmacWithSHA256", "-implicit_confirm"))
        self.assertEqual((res.first.body_type, res.first.status), ("ip", 0), res.first)
        # ir signed with SHA-256 around a SHA-1 POPO: captured with -digest sha1, its protection made again
        m = self.fresh("weakpopo-sig", extra=("-digest", "sha1", "-implicit_confirm"))
        m["header"]["protectionAlg"]["algorithm"] = univ.ObjectIdentifier("1.2.840.10045.4.3.2")  # ecdsa-with-SHA256
        a = self.expect("weak_popo", self.send("weakpopo-sig", resign(m, self.key())))
        self.assertEqual(a.status_strings, [text % ("proof-of-possession", "request")])
        self.assertEqual(len([e for e in self.gw.log_lines() if e.get("event") == "weak_popo"]), 3)

    def test_san_type_not_allowed(self):
        a = self.expect("san_type_not_allowed", self.ir("santype", path="pki/roles/dnsonly/cmp",
                                                        extra=("-sans", "127.0.0.1")))
        self.assertEqual(a.status_strings, ["subjectAltName type ip is not allowed on role dnsonly"])

    def test_san_malformed(self):
        for name, san in (("sanbad", "under_score.example.com"), ("sanpart", "a*.example.com")):
            with self.subTest(san=san):
                a = self.expect("san_malformed", self.ir(name, extra=("-sans", san)))
                self.assertEqual(a.status_strings, ["subjectAltName dns entry is malformed"])

    def test_san_uri_refused(self):
        """A URI whose host a URL parser reads as another than it seems (intranet, evil), on a role that
        allows any URI: refused whatever the patterns, naming the URI and why."""
        for name, uri, why in (
                ("uriquery", "https://intranet?.example.com/x",
                 "it has a '?' before the '/' that would end its authority, where URL parsers end the host: "
                 "a query must follow a path"),
                ("urislash", "https:///intranet?.example.com/x",
                 "a URL parser adds or skips slashes after the scheme of an http, https, ws, wss or ftp URI: "
                 "it must have \"//\" and a host"),
                ("urifrag", "https://evil#.example.com/x", "it holds a '#', which begins a fragment")):
            with self.subTest(uri=uri):
                a = self.expect("san_uri_refused", self.ir(name, extra=("-sans", uri)))
                self.assertEqual(a.status_strings, ["subjectAltName URI %s is refused: %s" % (uri, why)])

    def test_too_many_sans(self):
        sans = ",".join("h%d.example.com" % i for i in range(101))
        a = self.expect("too_many_sans", self.ir("sans101", extra=("-sans", sans)))
        self.assertEqual(a.status_strings, ["too many subjectAltName entries (101; the limit is 100)"])

    def test_san_bytes(self):
        """Within the count, but more bytes than a certificate the gateway issues may carry: one such would
        be refused later as a kur's signer or a TLS client certificate."""
        sans = ",".join("%s%02d.example.com" % ("h" * 58, i) for i in range(60))
        a = self.expect("san_bytes", self.ir("sanbytes", extra=("-sans", sans)))
        self.assertRegex(a.status_strings[0], r"^subjectAltName entries of \d+ bytes in all \(the limit is 4096\)$")
        ok = ",".join("%s%02d.example.com" % ("h" * 58, i) for i in range(50))  # its twin, under the limit
        self.assertIsNotNone(self.gw.cmp("ir", "sanbytes-ok", newkey=self.newkey("sanbytes-ok"), subject="/CN=sanbytes-ok",
                                         extra=("-sans", ok, "-implicit_confirm")).cert)

    def test_key_not_allowed(self):
        key = self.gw.dir / "weak-rsa1024.key"
        harness.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", key])
        os.chmod(key, 0o600)
        self.expect("key_not_allowed", self.ir("rsa1024", newkey=key))
        # P-256 with its parameters spelled out (RFC 5480 §2.1.1: named curves only), which OpenSSL 3.0 names
        # P-256 all the same: refused before the CA is asked, not issued and then refused as the CA's fault
        key = self.gw.dir / "explicit-p256.key"
        harness.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt",
                     "ec_param_enc:explicit", "-out", key])
        os.chmod(key, 0o600)
        before = len(harness.audit_records(self.gw, "intent"))
        self.expect("key_not_allowed", self.ir("explicitp256", newkey=key))
        self.assertEqual(len(harness.audit_records(self.gw, "intent")), before)  # the CA was never asked
        # RSA public exponents: odd and at least 65537. With e = 1 the POPO and the CSR signature are the padded
        # digests themselves, which OpenSSL verifies as any: in an ir, a p10cr and a kur alike, refused before
        # the CA is asked
        d = self.gw.dir
        e1 = rsa_exponent_one_key(d / "e1-rsa.key")
        e3 = d / "e3-rsa.key"
        harness.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt",
                     "rsa_keygen_pubexp:3", "-out", e3])
        os.chmod(e3, 0o600)
        csr = d / "e1-rsa.csr"
        harness.run(["openssl", "req", "-new", "-key", e1, "-subj", "/CN=rsa-e1-p10", "-out", csr])
        old_key = self.newkey("rsa-e1-old")
        old = self.gw.cmp("ir", "rsa-e1-old", newkey=old_key, subject="/CN=rsa-e1-old",
                          extra=("-implicit_confirm",)).cert
        before = len(harness.audit_records(self.gw, "intent"))
        self.expect("key_not_allowed", self.ir("rsa-e1", newkey=e1))
        self.expect("key_not_allowed", self.ir("rsa-e3", newkey=e3))
        res = self.gw.cmp("p10cr", "rsa-e1-p10", extra=("-csr", csr), expect_cert=False)
        self.assertIsNone(res.cert)
        self.assertEqual(self.expect("key_not_allowed", res.last).body_type, "cp")
        res = self.gw.cmp("kur", "rsa-e1-kur", auth=(old, old_key), newkey=e1, expect_cert=False)
        self.assertIsNone(res.cert)
        self.assertEqual(self.expect("key_not_allowed", res.last).body_type, "kup")
        self.assertEqual(len(harness.audit_records(self.gw, "intent")), before)  # the CA was never asked
        # the twin: an RSA key with e = 65537 from the same client goes through
        key = d / "e65537-rsa.key"
        harness.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key])
        os.chmod(key, 0o600)
        self.assertIsNotNone(self.gw.cmp("ir", "rsa-e65537", newkey=key, subject="/CN=rsa-e65537",
                                         extra=("-implicit_confirm",)).cert)

    def test_key_not_allowed_on_role(self):
        a = self.expect("key_not_allowed_on_role", self.ir("p256", path="pki/roles/p384/cmp"))
        self.assertEqual(a.status_strings, ["key ec:P-256 is not allowed on role p384 (allowed: ec:P-384)"])

    def test_name_wildcard(self):
        """The role's own "*.example.com" allows a host under it, not the wildcard name itself, in a SAN or
        the CN."""
        a = self.expect("name_wildcard", self.ir("wildsan", path="pki/roles/names/cmp", subject="/CN=ok.example.com",
                                                 extra=("-sans", "*.example.com")))
        self.assertEqual(a.status_strings, ["DNS name *.example.com is a wildcard, which role names does not issue "
                                            "(allow_wildcard_certificates): ask for each host's own name"])
        a = self.expect("name_wildcard", self.ir("wildcn", path="pki/roles/names/cmp", subject="/CN=*.EXAMPLE.com."))
        self.assertIn("common name *.EXAMPLE.com. is a wildcard", a.status_strings[0])

    def test_name_control(self):
        """Whatever the patterns: without allowed_common_names, a CN that X509_check_host reads as no host name
        would not be held to allowed_dns_names at all, and a C string ends it at a NUL."""
        a = self.expect("name_control", self.ir("ctl", path="pki/roles/names/cmp",
                                                subject="/CN=www.bank.example\x01.example.com"))
        self.assertEqual(a.status_strings, ["common name www.bank.example?.example.com holds a control character, "
                                            "which no name may hold"])

    def test_name_invisible(self):
        """A zero-width space in a CN the role's pattern matches, a right-to-left override in an O: each sent
        as UTF-8 by `openssl cmp -subject`, each refused naming the character and its place."""
        a = self.expect("name_invisible", self.ir("zwsp", path="pki/roles/names/cmp",
                                                  subject="/CN=bank\u200b.example.com"))
        self.assertEqual(a.status_strings, ["common name bank???.example.com holds U+200B at character 5, an "
                                            "invisible, format or control character, which no name may hold"])
        a = self.expect("name_invisible", self.ir("rlo", subject="/O=Bank \u202eevil/CN=rlo"))
        self.assertEqual(a.status_strings, ["subject attribute O Bank ???evil holds U+202E at character 6, an "
                                            "invisible, format or control character, which no name may hold"])
        # letters of other scripts are no such character
        res = self.gw.cmp("ir", "muller", newkey=self.newkey("muller"), subject="/O=M\u00fcller \u6771\u4eac/CN=muller")
        self.assertIsNotNone(res.cert)

    def test_name_wildcard_label(self):
        a = self.expect("name_wildcard_label", self.ir("wildlabel", path="pki/roles/wild/cmp", subject="/CN=a*.example.com"))
        self.assertIn("common name a*.example.com has a '*'", a.status_strings[0])
        # where the role allows them, a wildcard name within its patterns is issued
        res = self.gw.cmp("ir", "wildok", newkey=self.newkey("wildok"), subject="/CN=*.example.com",
                          path="pki/roles/wild/cmp", extra=("-sans", "*.example.com"))
        sans = harness.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", res.cert]).stdout
        self.assertIn(b"DNS:*.example.com", sans)
    def test_subject_email(self):
        a = self.expect("subject_email", self.ir("mail", subject="/CN=mail/emailAddress=ceo@bank.example"))
        self.assertEqual(a.status_strings, ["the subject holds an emailAddress, which role default does not allow"])
        # a mail (rfc822Mailbox) attribute is the holder's address to LDAP and mail software: the same rule
        a = self.expect("subject_email", self.ir("ldapmail", subject="/CN=mail/mail=ceo@bank.example"))
        self.assertEqual(a.status_strings, ["the subject holds a mail attribute, which role default does not allow"])
        # twin: a role that allows email addresses issues it
        res = self.gw.cmp("ir", "ldapmail-ok", newkey=self.newkey("ldapmail-ok"), path="pki/roles/mailany/cmp",
                          subject="/CN=mail/mail=ceo@bank.example")
        subject = harness.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "compat", "-in", res.cert]).stdout
        self.assertIn(b"/mail=ceo@bank.example", subject)

    def test_subject_email_two_at(self):
        """On a role that allows email addresses and has no pattern for them, as an email subjectAltName may not."""
        a = self.expect("subject_email_two_at", self.ir("mail2at", path="pki/roles/mailany/cmp",
                                                        subject="/CN=mail/emailAddress=ceo@evil@bank.example"))
        self.assertEqual(a.status_strings, ["subject emailAddress ceo@evil@bank.example holds more than one '@': "
                                            "mailers differ on which ends the local part"])
        res = self.gw.cmp("ir", "mail1at", newkey=self.newkey("mail1at"), path="pki/roles/mailany/cmp",
                          subject="/CN=mail/emailAddress=ceo@bank.example")
        self.assertIsNotNone(res.cert)
        # a mail (rfc822Mailbox) attribute is an address as much, to LDAP and mail software
        a = self.expect("subject_email_two_at", self.ir("ldap2at", path="pki/roles/mailany/cmp",
                                                        subject="/CN=mail/mail=ceo@evil@bank.example"))
        self.assertEqual(a.status_strings, ["subject attribute mail ceo@evil@bank.example holds more than one '@': "
                                            "mailers differ on which ends the local part"])

    def test_subject_email_not_address(self):
        """As test_subject_email_two_at: an address without an '@', or with nothing on a side of it, is none."""
        for name, value, why in (("mailnoat", "ceo", "holds no '@'"),
                                 ("mailnolocal", "@bank.example", "has nothing before its '@'"),
                                 ("ldapnodomain", "ceo@", "has nothing after its '@'")):
            with self.subTest(value=value):
                attr, kind = ("mail", "subject attribute mail") if name.startswith("ldap") else \
                    ("emailAddress", "subject emailAddress")
                a = self.expect("subject_email_not_address",
                                self.ir(name, path="pki/roles/mailany/cmp", subject="/CN=mail/%s=%s" % (attr, value)))
                self.assertEqual(a.status_strings, ["%s %s %s: an email address is local-part@domain"
                                                    % (kind, value, why)])

    def test_subject_not_allowed(self):
        a = self.expect("subject_not_allowed", self.ir("subj", path="pki/roles/subjects/cmp",
                                                       subject="/O=cmpgw demo/OU=admins/CN=dev-1"))
        self.assertEqual(a.status_strings, ["requested subject /O=cmpgw demo/OU=admins/CN=dev-1 is not allowed on "
                                            "role subjects (allowed: /O=cmpgw demo/CN=dev-*)"])
        # in an emailAddress value a '*' stops at '@': a second '@' (mail for evil, to some mailers) is refused,
        # the twin with one '@' is issued
        mail = "pki/roles/subjmail/cmp"
        a = self.expect("subject_not_allowed", self.ir("subjmail", path=mail,
                                                       subject="/O=cmpgw demo/CN=dev-1/emailAddress=a@evil@example.com"))
        self.assertEqual(a.status_strings, ["requested subject /O=cmpgw demo/CN=dev-1/emailAddress=a@evil@example.com "
                                            "is not allowed on role subjmail (allowed: "
                                            "/O=cmpgw demo/CN=dev-*/emailAddress=*@example.com)"])
        res = self.gw.cmp("ir", "subjmail-ok", newkey=self.newkey("subjmail-ok"), path=mail,
                          subject="/O=cmpgw demo/CN=dev-1/emailAddress=a@example.com")
        subject = harness.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "compat", "-in", res.cert]).stdout
        self.assertIn(b"emailAddress=a@example.com", subject)

    def test_tls_san(self):
        a = self.expect("tls_san", self.ir("tlssan", path="pki/roles/tlssan/cmp"))
        self.assert_not_authorized("tls_san", "tlssan", a)

    def test_tls_trust(self):
        """A TLS client certificate the listener verified (its client_ca) that does not chain to the role's
        tls_trust: refused in the CMP answer, and logged as an authorization refusal naming the role."""
        a = self.expect("tls_trust", self.ir("tlstrust", path="pki/roles/tlstrust/cmp"))
        text = ("TLS client certificate /O=cmpgw demo/CN=demo-client does not chain to a trusted CA "
                "(tls_trust of role tlstrust)")
        self.assertEqual(a.status_strings, [text])
        logged = [l for l in self.gw.log_lines() if l.get("event") == "not_authorized" and l.get("role") == "tlstrust"]
        self.assertEqual([(l.get("tls_subject"), l.get("reason"), l.get("msg")) for l in logged],
                         [("/O=cmpgw demo/CN=demo-client", "tls_trust", text)])

    # -- rr: what `openssl cmp -cmd rr` cannot send ---------------------------------------------

    def holder_rr(self, name):
        """A holder's rr (reason keyCompromise) for a fresh certificate, captured unsent: (rr, holder's key)."""
        cert, key = self.enrol(name)
        der = self.gw.make_request("%s-rr" % name, "rr", auth=(cert, key),
                                   extra=("-oldcert", cert, "-revreason", "1"))
        return load(der.read_bytes()), key

    def not_revoked(self, name):
        """No intent to revoke |name|'s certificate is on record: the refusal came before the CA was asked."""
        self.assertFalse([r for r in harness.audit_records(self.gw, "intent")
                          if (r["body_type"], r["identity"]) == ("rr", "/CN=%s" % name)])

    def test_rr_reason(self):
        """Reason 7 is unassigned in RFC 5280 §5.3.1, and two reasons leave the CA to pick one."""
        m, key = self.holder_rr("rrseven")
        details = m["body"]["rr"][0]["crlEntryDetails"]
        details[0]["extnValue"] = details[0]["extnValue"].clone(encoder.encode(univ.Enumerated(7)))
        self.expect("rr_reason", self.send("rrseven", resign(m, key)))
        self.not_revoked("rrseven")
        m, key = self.holder_rr("rrtwo")
        details = m["body"]["rr"][0]["crlEntryDetails"]
        details.append(details[0])
        self.expect("rr_reason", self.send("rrtwo", resign(m, key)))
        self.not_revoked("rrtwo")
        # the twin: signed again unchanged, it revokes
        m, key = self.holder_rr("rrtwin")
        a = harness.decode_cmp(self.send("rrtwin", resign(m, key)).body)
        self.assertEqual((a.body_type, a.status), ("rp", 0), a)
        with self.assertRaises(AssertionError):  # what not_revoked looks for is written
            self.not_revoked("rrtwin")

    def test_rr_no_cert_id(self):
        for i, field in enumerate(("issuer", "serialNumber")):
            with self.subTest(without=field):
                m, key = self.holder_rr("rrnoid%d" % i)
                rd = m["body"]["rr"][0]
                rd["certDetails"] = without(rd["certDetails"], field)
                self.expect("rr_no_cert_id", self.send("rrnoid%d" % i, resign(m, key)))
                self.not_revoked("rrnoid%d" % i)

    # -- certConf and pollReq ------------------------------------------------------------------

    def test_no_txn(self):
        done = self.gw.cmp("ir", "closed", newkey=self.newkey("closed"), subject="/CN=closed")
        self.assertEqual([a.body_type for a in done.answers], ["ip", "pkiconf"])
        self.expect("no_txn", self.send("closed-conf", done.req_files[1].read_bytes()))
        pr = pollreq(load(done.req_files[1].read_bytes()), self.key())
        self.expect("no_txn", self.send("closed-poll", pr))
        # refused before its extraCerts are decoded (new certificates each time would cost the gateway their
        # parsing, uncounted): extraCerts that are no certificates get the same answer
        self.expect("no_txn", self.send("closed-poll-junk", bad_extra_certs(pr)))
        # an error message has nothing to abort either: refused alike, before its extraCerts or its protection
        # (once, it was authenticated as a request, answered pkiconf, and its junk extraCerts an HTTP 400)
        err = error_msg(load(done.req_files[1].read_bytes()), self.key())
        self.expect("no_txn", self.send("closed-error", err))
        self.expect("no_txn", self.send("closed-error-junk", bad_extra_certs(err)))

    def test_other_sender(self):
        ir, ip, cert = self.open_txn("othersender")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest(), sender=ip.header["sender"])
        self.expect("other_sender", self.send("othersender-conf", conf))

    def test_other_tls_client(self):
        """The transaction's own certConf, signed with its signer's key, from another device's TLS connection
        (another TLS client certificate): refused, logged, and the transaction left open for its client,
        whose own connection then confirms it."""
        ir, ip, cert = self.open_txn("othertls")
        tls_cert, tls_key = self.enrol("othertls-device")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
        self.expect("other_tls_client", self.send("othertls-conf", conf,
                                                  tls=(harness.tls_bundle(self.gw.dir, tls_cert), tls_key)))
        tid = ip.header["transactionID"].asOctets().hex().upper()
        logged = [l for l in self.gw.log_lines() if l.get("event") == "txn_other_tls_client"]
        self.assertTrue(any(l.get("tid", "").upper() == tid for l in logged), logged)
        a = harness.decode_cmp(self.send("othertls-own", conf).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_pinned_signer(self):
        ir, ip, cert = self.open_txn("pinned")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest(), key=self.newkey("pinned-other"))
        self.expect("pinned_signer", self.send("pinned-conf", conf))

    def test_txn_other_path(self):
        """The transaction's own certConf, pollReq and error message, signed with its signer's key over its TLS
        client, sent to the paths of roles that do not trust its signer or do not authorize it: refused, logged,
        and the transaction left as it was, open for its certConf on the path of its request. Once, each was
        answered under the transaction's role, and the error message aborted it."""
        ir, ip, cert = self.open_txn("otherpath")
        digest = hashlib.sha256(cert).digest()
        tid = ip.header["transactionID"].asOctets().hex().upper()
        sent = [("conf", self.certconf(ir, ip, digest), "/pki/roles/pbmonly/cmp"),
                ("poll", pollreq(load(encoder.encode(ir)), self.key()), "/pki/roles/signer/cmp/"),
                ("error", error_msg(load(encoder.encode(ir)), self.key()), "/pki/roles/tlssubj/cmp")]
        for name, msg, path in sent:
            with self.subTest(message=name):
                self.expect("txn_other_path", self.send("otherpath-" + name, msg, path=path))
        logged = [l for l in self.gw.log_lines() if l.get("event") == "txn_other_path" and
                  l.get("tid", "").upper() == tid]
        self.assertEqual(len(logged), 3, logged)
        self.assertEqual(logged[0].get("role"), "default", logged)
        a = harness.decode_cmp(self.send("otherpath-own", self.certconf(ir, ip, digest)).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_txn_other_path_twin(self):
        """The paths that give a transaction its role are one: its certConf on the role's label path, on the
        well-known default path and, with an operation segment, on the role's own path is answered."""
        for i, path in enumerate(("/.well-known/cmp/p/default", "/.well-known/cmp", "/pki/roles/default/cmp",
                                  "/pki/cmp/certification")):
            with self.subTest(path=path):
                ir, ip, cert = self.open_txn("samerole%d" % i)
                conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
                a = harness.decode_cmp(self.send("samerole%d-conf" % i, conf, path=path).body)
                self.assertEqual(a.body_type, "pkiconf", a)

    def test_cert_hash(self):
        ir, ip, cert = self.open_txn("hash")
        conf = self.certconf(ir, ip, hashlib.sha256(cert + b"x").digest())
        self.expect("cert_hash", self.send("hash-conf", conf))

    def test_cert_status_count(self):
        """A certConf that accepts the certificate in its first CertStatus and rejects it in a second (RFC 9483
        §4.1.1 allows one) is refused, not read as its first: the certificate is revoked, the transaction closed."""
        ir, ip, cert = self.open_txn("ccstatuses")
        serial = harness.serial_hex(self.gw.dir / "ccstatuses.cert.pem")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest())
        rejecting = rfc4210.CertStatus()
        rejecting["certHash"] = hashlib.sha256(cert).digest()
        rejecting["certReqId"] = 0
        rejecting["statusInfo"]["status"] = 2
        conf["body"]["certConf"].append(rejecting)
        self.expect("cert_status_count", self.send("ccstatuses-conf", resign(conf, self.key())))
        self.expect("no_txn", self.send("ccstatuses-own", self.certconf(ir, ip, hashlib.sha256(cert).digest())))
        self.assertFalse([r for r in harness.audit_records(self.gw, "confirmed") if r.get("serial") == serial])
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r.get("serial") == serial], bool)
        self.assertEqual(len(revoked), 1, revoked)

    def test_cert_conf_hash_alg(self):
        """A certConf whose CertStatus carries hashAlg (RFC 9810 §5.3.18, pvno 3: a certificate signed without a
        hash, e.g. Ed25519), which OpenSSL 3.0's CertStatus lacks, is refused with a signed error that says what
        to send instead (with pvno 2 too), not HTTP 400: the transaction stays open, and its certConf without
        hashAlg is confirmed."""
        ir, ip, cert = self.open_txn("hashalg")
        digest = hashlib.sha256(cert).digest()
        for pvno in (3, 2):
            with self.subTest(pvno=pvno):
                conf = self.certconf(ir, ip, digest)
                nonce = conf["header"]["senderNonce"].asOctets()
                a = self.expect("cert_conf_hash_alg", self.send("hashalg-conf%d" % pvno,
                                                                with_hash_alg(conf, self.key(), pvno=pvno)))
                self.assertEqual(a.header["recipNonce"].asOctets(), nonce)  # an answer to this message
        a = harness.decode_cmp(self.send("hashalg-own", self.certconf(ir, ip, digest)).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_recip_nonce(self):
        ir, ip, cert = self.open_txn("recip")
        conf = self.certconf(ir, ip, hashlib.sha256(cert).digest(), recip=os.urandom(16))
        self.expect("recip_nonce", self.send("recip-conf", conf))

    def test_confirm_twin(self):
        """The certConf the refusals above are twins of is accepted: the crafting is not the refusal."""
        ir, ip, cert = self.open_txn("twin")
        a = harness.decode_cmp(self.send("twin-conf", self.certconf(ir, ip, hashlib.sha256(cert).digest())).body)
        self.assertEqual(a.body_type, "pkiconf", a)

    def test_poll_nothing(self):
        """A pollReq answering the ip, where the certConf was due, closes the transaction without confirming its
        certificate: the certificate is revoked, as after a certConf that does not confirm it, not left valid
        behind a "rejected" record."""
        ir, ip, cert = self.open_txn("pollconf")
        serial = harness.serial_hex(self.gw.dir / "pollconf.cert.pem")
        m = load(encoder.encode(ir))
        set_octets(m["header"], "recipNonce", ip.header["senderNonce"].asOctets())
        self.expect("poll_nothing", self.send("pollconf-poll", pollreq(m, self.key())))
        self.expect("no_txn", self.send("pollconf-conf", self.certconf(ir, ip, hashlib.sha256(cert).digest())))
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r.get("serial") == serial], bool)
        self.assertEqual(len(revoked), 1, revoked)
        rejected = [r for r in harness.audit_records(self.gw, "rejected") if r.get("serial") == serial]
        self.assertEqual(len(rejected), 1, rejected)

    def test_poll_count(self):
        """A pollReq with two entries (certReqId 0 twice) where the certConf was due is refused by OpenSSL 3.0
        with the pollReq's own words, not a certificate request's, and closes the transaction: its certificate
        is revoked."""
        ir, ip, cert = self.open_txn("pollcount")
        serial = harness.serial_hex(self.gw.dir / "pollcount.cert.pem")
        m = load(encoder.encode(ir))
        set_octets(m["header"], "recipNonce", ip.header["senderNonce"].asOctets())

        def entries(preq):
            for _ in range(2):
                e = preq.componentType.clone()
                e["certReqId"] = 0
                preq.append(e)
        self.expect("poll_count", self.send("pollcount-poll", rebody(m, "pollReq", entries, self.key())))
        self.expect("no_txn", self.send("pollcount-conf", self.certconf(ir, ip, hashlib.sha256(cert).digest())))
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r.get("serial") == serial], bool)
        self.assertEqual(len(revoked), 1, revoked)

    def test_crafted_twin(self):
        """A captured ir signed again unchanged is issued: what the crafted rows change is what is refused."""
        a = harness.decode_cmp(self.send("twin-ir", resign(self.fresh("twinir"), self.key())).body)
        self.assertEqual((a.body_type, a.status), ("ip", 0), a)


# ---------------------------------------------------------------------------------------------
# What a certConf that is answered (no refusal) does to its certificate
# ---------------------------------------------------------------------------------------------

class Confirmations(Base):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)  # a certificate not confirmed is revoked

    def test_certconf_status_not_accepted_withdraws(self):
        """A certConf whose status is neither accepted nor rejection (RFC 9483 §4.1.1 allows no other), here
        waiting (3) and an undefined 7, confirms nothing: its certificate is on record as rejected by its
        client and revoked, as OpenSSL itself reads it, not confirmed. Its twin, status accepted (0), confirms."""
        for name, status in (("ccwaiting", 3), ("ccundefined", 7), ("ccaccepted", 0)):
            with self.subTest(status=status):
                ir, ip, cert = self.open_txn(name)
                serial = harness.serial_hex(self.gw.dir / ("%s.cert.pem" % name))
                conf = self.certconf(ir, ip, hashlib.sha256(cert).digest(), status=status)
                a = harness.decode_cmp(self.send(name + "-conf", conf).body)
                self.assertEqual(a.body_type, "pkiconf", a)
                event = "confirmed" if status == 0 else "rejected_by_client"
                self.assertEqual([r.get("serial") for r in harness.audit_records(self.gw, event)
                                  if r.get("serial") == serial], [serial])
                revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                                   if r.get("serial") == serial], bool,
                                          timeout=2 if status == 0 else 20)
                self.assertEqual(len(revoked), 0 if status == 0 else 1, revoked)


# ---------------------------------------------------------------------------------------------
# Limits: a required messageTime, one open transaction per identity, a one-worker pool
# ---------------------------------------------------------------------------------------------

class Limits(Base):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["cmp"] = {"require_message_time": True, "max_transactions_per_identity": 1}
        cfg["workers"] = 1
        cfg["queue_depth"] = 1
        cfg["upstreams"]["local"]["delay"] = "2s"  # each sign call holds the one worker

    def test_message_time_missing(self):
        m = self.fresh("notime")
        m["header"] = without(m["header"], "messageTime")
        self.expect("message_time_missing", self.send("notime", resign(m, self.key())))

    def test_too_many_open(self):
        first = self.gw.cmp("ir", "open1", newkey=self.newkey("open1"), subject="/CN=open1",
                            extra=("-disable_confirm",))
        self.assertEqual(first.first.status, 0)
        a = self.expect("too_many_open", self.ir("open2", extra=("-disable_confirm",)))
        self.assertIn("for /O=cmpgw demo/CN=demo-client:", a.status_strings[0])

    def test_http_busy(self):
        import subprocess
        d = self.gw.dir
        ders = [self.gw.make_request("busy%d" % i, subject="/CN=busy%d" % i) for i in range(6)]
        procs = []
        for i, der in enumerate(ders):
            argv = ["curl", "-sS", "--http1.1", "--cacert", d / "ca.pem", "--cert", d / "client.pem", "--key",
                    d / "client.key", "-H", "Content-Type: application/pkixcmp", "--data-binary", "@%s" % der,
                    "-D", d / ("busy%d.hdr" % i), "-o", d / ("busy%d.body" % i), "--max-time",
                    str(harness.CLIENT_TIMEOUT), self.gw.url()]
            procs.append(subprocess.Popen([str(a) for a in argv], stderr=subprocess.PIPE))
        for p in procs:
            p.communicate(timeout=harness.CLIENT_TIMEOUT + 10)
        results = [harness.CurlResult((d / ("busy%d.hdr" % i)).read_text(), (d / ("busy%d.body" % i)).read_bytes())
                   for i in range(6)]
        busy = [r for r in results if r.status == 503]
        self.assertTrue(busy, results)
        for r in busy:
            self.expect("http_busy", r)
            self.assertRegex(r.headers.get("retry-after", ""), r"^[0-9]+$", r)


# ---------------------------------------------------------------------------------------------
# A transaction whose request is still running: each sign call takes 3 s
# ---------------------------------------------------------------------------------------------

class Busy(Base):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)  # a certificate no pollReq collected is revoked
        cfg["upstreams"]["local"]["delay"] = "%ds" % (3 * harness.SLOW)
        cfg["roles"]["polled"] = dict(cfg["roles"]["default"], poll_after="300ms")

    def test_txn_busy(self):
        """A pollReq and an error message while the ir runs: told to retry, and the ir goes on to its ip."""
        ir = encoder.encode(self.fresh("busy"))
        answers = []
        inflight = lambda: harness.metric(self.gw, "cmpgw_upstream_inflight_calls", 0, upstream="local")
        self.assertEqual(harness.settled(inflight, lambda n: n == 0), 0)  # another test's polled call ended
        running = threading.Thread(target=lambda: answers.append(self.send("busy-ir", ir)))
        running.start()
        # the ir holds its transactionID once its checks passed: by the time its sign call is out
        self.assertEqual(harness.settled(inflight, bool), 1, self.gw.stderr()[-3000:])
        self.expect("txn_busy", self.send("busy-poll", pollreq(load(ir), self.key())))
        self.expect("txn_busy", self.send("busy-error", error_msg(load(ir), self.key())))
        running.join(harness.CLIENT_TIMEOUT)
        a = harness.decode_cmp(answers[0].body)
        self.assertEqual((a.body_type, a.status), ("ip", 0), a)

    def test_cert_req_id(self):
        """The pollReq of the row (OpenSSL 3.0.22 checks its certReqId, RFC 9483 §4.4): certReqId 1 in a deferred
        transaction is refused and closes it; the certificate that comes later is revoked, no pollReq collects
        it."""
        ir = self.fresh("pollid")
        a = harness.decode_cmp(self.send("pollid-ir", ir, path="/pki/roles/polled/cmp").body)
        self.assertEqual((a.body_type, a.status), ("ip", 3), a)  # waiting
        tid = a.header["transactionID"].asOctets().hex()

        def poll(req_id, recip):
            def entry(preq):
                e = preq.componentType.clone()
                e["certReqId"] = req_id
                preq.append(e)
            m = load(encoder.encode(ir))
            set_octets(m["header"], "recipNonce", recip.header["senderNonce"].asOctets())
            return rebody(m, "pollReq", entry, self.key())
        refused = self.expect("cert_req_id", self.send("pollid-poll", poll(1, a), path="/pki/roles/polled/cmp"))
        self.expect("no_txn", self.send("pollid-poll0", poll(0, refused), path="/pki/roles/polled/cmp"))
        revoked = harness.settled(lambda: [r for r in harness.audit_records(self.gw, "revoked")
                                           if r.get("tid", "").lower() == tid], bool, timeout=10 * harness.SLOW)
        self.assertEqual(len(revoked), 1, revoked)


# ---------------------------------------------------------------------------------------------
# certProfile (RFC 9483 §3.1): profile "device" selects role "profiled"
# ---------------------------------------------------------------------------------------------

class Profiles(Base):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["roles"]["profiled"] = dict(cfg["roles"]["default"])
        cfg["roles"]["names"] = dict(cfg["roles"]["default"], authorization={"allowed_dns_names": ["*.example.com"]})
        cfg["profiles"] = {"device": "role:profiled", "web": "role:default"}

    def assert_names_nothing(self, answer):
        """The profile is refused before the signature is checked: the answer names no profile or role of
        the configuration, which anyone, with or without credentials, could otherwise list."""
        for name in ("device", "web", "profiled", "names", "default"):
            self.assertNotIn(name, answer.status_strings[0].replace('"device"', ""))

    NOT_SERVED = ('certProfile "%s" is not served on this path: name a profile this server\'s operator gave you '
                  'for this path, or leave certProfile out')

    def profile_refused(self, name, path):
        """The reason of the last log line refusing certProfile |name| on |path|."""
        logged = [l for l in self.gw.log_lines() if l.get("event") == "profile_refused" and
                  l.get("profile") == name and l.get("route") == path]
        self.assertTrue(logged, name)
        return logged[-1].get("reason")

    def test_profile_unknown(self):
        for i, key in enumerate((self.key(), self.newkey("profstranger"))):  # trusted, then no credential
            m = add_general_info(self.fresh("profunknown%d" % i), PROFILE, profile_value("nope%d" % i))
            a = self.expect("profile_unknown", self.send("profunknown%d" % i, resign(m, key)))
            self.assertEqual(a.status_strings, [self.NOT_SERVED % ("nope%d" % i)])
            self.assert_names_nothing(a)
            self.assertEqual(self.profile_refused("nope%d" % i, "/pki/cmp"), "profile_unknown")

    def test_profile_mismatch(self):
        """On a role path a profile of another role and one that does not exist are answered alike (but for
        the name echoed): a client without credentials cannot probe which profiles there are. The log
        tells the operator which it was."""
        for i, key in enumerate((self.key(), self.newkey("profstranger2"))):
            answers = []
            for name, reason in (("device", "profile_mismatch"), ("devicf%d" % i, "profile_unknown")):
                m = add_general_info(self.fresh("profmismatch%d%s" % (i, name)), PROFILE, profile_value(name))
                a = self.expect(reason, self.send("profmismatch%d%s" % (i, name), resign(m, key),
                                                  path="/pki/roles/names/cmp"))
                self.assertEqual(a.status_strings, [self.NOT_SERVED % name])
                self.assert_names_nothing(a)
                self.assertEqual(self.profile_refused(name, "/pki/roles/names/cmp"), reason)
                answers.append((a.body_type, a.status, a.fail_info, a.status_strings[0].replace(name, "X")))
            self.assertEqual(answers[0], answers[1])

    def test_profile_malformed(self):
        cases = [("an INTEGER", encoder.encode(univ.Integer(7))), ("an empty list", profile_value()),
                 ("no value", None)]
        for i, (what, value) in enumerate(cases):
            with self.subTest(value=what):
                m = add_general_info(self.fresh("profbad%d" % i), PROFILE, value)
                self.expect("profile_malformed", self.send("profbad%d" % i, resign(m, self.key())))
        m = self.fresh("proftwice")
        add_general_info(add_general_info(m, PROFILE, profile_value("device")), PROFILE, profile_value("web"))
        self.expect("profile_malformed", self.send("proftwice", resign(m, self.key())))

    def test_general_info_limits(self):
        m = self.fresh("gimany")  # carries implicitConfirm already
        for _ in range(16):
            add_general_info(m, "1.2.3.4")
        self.expect("general_info_limits", self.send("gimany", resign(m, self.key())))
        m = add_general_info(self.fresh("gilong"), PROFILE, profile_value("d" * 65))
        self.expect("general_info_limits", self.send("gilong", resign(m, self.key())))

    def test_profile_twin(self):
        """The profile the refusals above are twins of: named on the default path, on the path of its own
        role, and 16 generalInfo entries with a 64-byte name, each answered with a certificate."""
        for i, (path, extra) in enumerate([("/pki/cmp", 0), ("/pki/roles/profiled/cmp", 0), ("/pki/cmp", 14)]):
            with self.subTest(path=path, extra=extra):
                m = add_general_info(self.fresh("proftwin%d" % i), PROFILE, profile_value("device"))
                for _ in range(extra):
                    add_general_info(m, "1.2.3.4")
                a = harness.decode_cmp(self.send("proftwin%d" % i, resign(m, self.key()), path=path).body)
                self.assertEqual((a.body_type, a.status), ("ip", 0), a)



# ---------------------------------------------------------------------------------------------
# The table itself
# ---------------------------------------------------------------------------------------------

class Table(unittest.TestCase):

    def test_every_row_has_a_test(self):
        tests = {name[len("test_"):] for cls in (Errors, Limits, Busy, Profiles) for name in dir(cls)
                 if name.startswith("test_")}
        missing = sorted(set(ROWS) - tests - set(ELSEWHERE))
        self.assertEqual(missing, [], "rows of docs/errors.md without a test")

    def test_every_refusal_test_has_a_row(self):
        tests = {name[len("test_"):] for cls in (Errors, Limits, Busy, Profiles) for name in dir(cls)
                 if name.startswith("test_")}
        self.assertEqual(sorted(tests - set(ROWS) - {"confirm_twin", "crafted_twin", "profile_twin",
                                                     "txn_other_path_twin"}), [])

    def test_rows_tested_elsewhere(self):
        for rid, (module, literal) in ELSEWHERE.items():
            with self.subTest(row=rid):
                self.assertIn(rid, ROWS)
                self.assertIn(literal, ROWS[rid]["text"].replace("{", "").replace("}", ""))
                self.assertIn(literal, (E2E / module).read_text())

    def test_rows_well_formed(self):
        fails = set(rfc4210.PKIFailureInfo.namedValues.keys())
        for rid, row in ROWS.items():
            with self.subTest(row=rid):
                if row["answer"].startswith("HTTP "):
                    self.assertEqual(row["fail"], "")
                else:
                    self.assertIn(row["fail"], fails)
                    self.assertIsNone(INTERNALS.search(row["text"]))
        self.assertGreaterEqual(len(ROWS), 40)

    def test_parser_rejects_a_broken_row(self):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            broken = Path(d) / "errors.md"
            broken.write_text("<!-- errors-table -->\n| `x` | a | error | badRequest | `t` |\n"
                              "<!-- end errors-table -->\n")
            with self.assertRaises(AssertionError):
                parse_table(broken)


if __name__ == "__main__":
    harness.main()
