#!/usr/bin/python3
"""A Vault-API test server: the parts of Vault's PKI secrets engine and cert auth that cmpgw uses.

Faithful to Vault's JSON (docs/design.md U1): {"errors": [...]} on any status >= 400,
sign/<role> and issuer/<ref>/sign/<role> that verify the CSR signature and apply the role's name,
key and TTL rules with Vault's error strings, add the CN to the SANs unless exclude_cn_from_sans (an
address with an '@' as an email name, else a DNS name) and grant the role's usages (key_usage, ext_key_usage,
ext_key_usage_oids and the *_flag switches), sign-verbatim[/<role>] that copies every CSR extension but
basicConstraints into the certificate (and the call's key_usage/ext_key_usage where the CSR names none),
root/sign-intermediate, serial_number as colon hex,
numeric expiration, ca_chain, cert/<serial>, revoke, crl and crl/der (DER, the default issuer's
revocations), issuer/<ref>/crl/der (DER, that issuer's revocations, as Vault's multi-issuer mounts serve),
roles/<name>, auth/<mount>/login with the
TLS client certificate. Not a Vault: no storage, no ACL language (a token either exists or not).

Switches (POST /_control with a JSON object, GET /_control to read; or --state FILE at start):
  latency_ms     int   hold every answer this long (after the work is done: a timeout leaves a
                       certificate issued and the outcome unknown, like a real CA); read as the
                       request arrives, before it is logged, so that a test that saw it in the log
                       may change the switches without changing how long it is held
  hold_unforced  bool  latency_ms holds only the answers force_status leaves alone: a CA that fails
                       at once, then, once force_count is spent, holds what it is asked next
  force_status   int   answer this status instead, with Vault's own words for it: 403 "permission
                       denied", 404 no handler for route (the mount gone), 412 "required index state
                       not present", 429 'request path "<path>": rate limit quota exceeded', 500,
                       503 "Vault is sealed"; with force_count N only the next N requests
  force_message  str   the forced answer's error message instead (what a proxy or a WAF in front of
                       Vault might say in Vault's envelope), "{token}" in it replaced by the
                       request's X-Vault-Token (a plugin or a proxy that echoes the request), and
                       "{token_u}" by the same with every other character, from the first, a JSON
                       u-escape (a backslash, "u", four hex digits): the same string to a JSON parser
  warnings_only  bool  sign answers 200 with only warnings and no certificate
  garbage        bool  sign answers 200 with a body that is not JSON
  no_ca_chain    bool  sign answers without ca_chain (issuing_ca only)
  crl_stale      bool  crl answers a CRL whose nextUpdate passed two hours ago (an issuer that
                       stopped publishing); applies whatever "match" says
  crl_forged     bool  a CRL answer is signed with a key of its own, under the issuer's name (a CRL
                       the issuer did not make); applies whatever "match" says
  crl_delta      bool  a CRL answer is a delta CRL (deltaCRLIndicator), as crl/delta serves
  crl_future     bool  a CRL answer's thisUpdate is an hour ahead of the clock
  login_lease    any   the cert login answer's auth.lease_duration is this JSON value (-1, 2**32,
                       "3600") instead of the role's token_ttl; the token itself lives token_ttl
  sign_data      obj   its members replace those of a sign answer's data ({"expiration": -1})
  sign_warnings  any   a sign answer's warnings are this JSON value (17 strings, [1]) instead of Vault's
  sign_status    int   sign/<role> and sign-verbatim issue the certificate and answer it with this status
                       (500, 503) and an "errors" list beside its data: a CA that failed after signing
  sign_hash      str   "sha1": sign/<role> and sign-verbatim sign the certificate with SHA-1 (a CA
                       that still does), not SHA-256
  serial_number  str   sign/<role> and sign-verbatim issue the certificate with this serial (colon hex,
                       as Vault writes it) instead of a random one: a CA that issues a serial again
                       (the one certificate kept under it is the new one, its revocation the old one's)
  certificate_after str appended to a sign answer's data.certificate after its PEM (a second
                       certificate, text): the certificate issued stays first
  trailing       str   appended after the JSON document of every answer, as bytes after the document
  close          bool  every answer closes its connection (Connection: close), so the next request
                       opens a new one with a fresh TLS handshake
  match          str   the switches apply only to request paths containing this string
  sealed         bool  GET /v1/sys/health answers 503 (sealed); that path is never logged nor
                       forced, so that a gateway's health probes do not disturb the other switches
Every request is appended to --log as one JSON line (method, path, token, namespace, body,
client certificate subject) so tests can assert what Vault received.

Usage: vault_api_server.py --port P --tls-cert server.pem --tls-key server.key
         --issuer default=issuing.pem,issuing.key[,chain.pem] [--issuer other=...]
         --roles roles.json --tokens tokens.json [--client-ca ca.pem] [--cert-auth certauth.json]
         [--mount pki] [--log requests.jsonl] [--state state.json]
roles.json:    {"web": {"allowed_domains": ["example.com"], "allow_subdomains": true, ...}}
tokens.json:   {"hvs.token": {"expires": 0}}   (0 = never; unix seconds otherwise)
certauth.json: {"mount": "cert", "roles": {"cmpgw": {"token_ttl": 3600}}}
"""
import argparse
import datetime
import fnmatch
import ipaddress
import json
import os
import secrets
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

MOUNT_DEFAULT_TTL = 32 * 24 * 3600  # Vault's system max lease TTL is 768h
ROLE_DEFAULTS = {
    "ttl": 0, "max_ttl": 0, "allowed_domains": [], "allow_subdomains": False, "allow_bare_domains": False,
    "allow_glob_domains": False, "allow_any_name": False, "allow_localhost": True, "allow_ip_sans": True,
    "allowed_uri_sans": [], "enforce_hostnames": True, "use_csr_common_name": True, "use_csr_sans": True,
    "require_cn": True, "key_type": "rsa", "key_bits": 2048,
    "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"],
    "ext_key_usage": [], "ext_key_usage_oids": [], "server_flag": True, "client_flag": True,
    "code_signing_flag": False, "email_protection_flag": False, "issuer_ref": "default",
    "no_store": False, "generate_lease": False, "not_before_duration": 30,
    "cn_validations": ["email", "hostname"], "allowed_user_ids": [], "allowed_serial_numbers": [],
    "country": [], "province": [], "locality": [], "street_address": [], "postal_code": [], "organization": [],
    "ou": [],
}
# The role's own subject attributes, in the order Vault (Go's pkix.Name) writes them.
ROLE_SUBJECT = (("country", NameOID.COUNTRY_NAME), ("province", NameOID.STATE_OR_PROVINCE_NAME),
                ("locality", NameOID.LOCALITY_NAME), ("street_address", NameOID.STREET_ADDRESS),
                ("postal_code", NameOID.POSTAL_CODE), ("organization", NameOID.ORGANIZATION_NAME),
                ("ou", NameOID.ORGANIZATIONAL_UNIT_NAME))
KU_ARGS = {
    "digitalsignature": "digital_signature", "contentcommitment": "content_commitment",
    "keyencipherment": "key_encipherment", "dataencipherment": "data_encipherment",
    "keyagreement": "key_agreement", "certsign": "key_cert_sign", "crlsign": "crl_sign",
    "encipheronly": "encipher_only", "decipheronly": "decipher_only",
}
EKU_OIDS = {
    "serverauth": ExtendedKeyUsageOID.SERVER_AUTH, "clientauth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codesigning": ExtendedKeyUsageOID.CODE_SIGNING, "emailprotection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocspsigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
FORCED = {
    403: ["permission denied"],
    404: ['no handler for route "{path}". route entry not found.'],  # its router: no such mount
    412: ["required index state not present"],
    429: ['request path "{path}": rate limit quota exceeded'],
    500: ["internal error"],
    503: ["Vault is sealed"],
}


GARBAGE = object()  # the answer body switch "garbage" sends instead of JSON


class VaultError(Exception):
    def __init__(self, status, *errors):
        super().__init__(errors[0] if errors else str(status))
        self.status = status
        self.errors = list(errors)


def colon_hex(n):
    h = "%x" % n
    if len(h) % 2:
        h = "0" + h
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def load_pems(data):
    """Every certificate of a PEM bundle (cryptography 38, Debian 12, has no load_pem_x509_certificates)."""
    end = b"-----END CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(p + end) for p in data.split(end) if b"-----BEGIN" in p]


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode().strip()  # Vault trims PEMs


def not_after(cert):
    return getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def parse_ttl(v):
    """Vault's TypeDurationSecond: a number of seconds or "72h"/"30m"/"45s"/"2d"."""
    if v is None or v == "":
        return 0
    if isinstance(v, bool):
        raise VaultError(400, "error converting input %r for field \"ttl\"" % v)
    if isinstance(v, (int, float)):
        return int(v)
    s = str(v).strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if s[-1] in units:
            return int(float(s[:-1]) * units[s[-1]])
        return int(s)
    except (ValueError, IndexError):
        raise VaultError(400, "error converting input %s for field \"ttl\": time: invalid duration \"%s\"" % (s, s))


def comma_list(v):
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x).strip() for x in v if str(x).strip()]
    return [x.strip() for x in str(v).split(",") if x.strip()]


class Issuer:
    def __init__(self, name, cert_path, key_path, chain_path=None):
        self.name = name
        self.cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
        self.key = serialization.load_pem_private_key(open(key_path, "rb").read(), None)
        self.chain = []
        if chain_path:
            self.chain = load_pems(open(chain_path, "rb").read())
        self.id = secrets.token_hex(16)


class Vault:
    """State of the fake: issuers, roles, tokens, certificates, switches."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.mount = args.mount.strip("/")
        self.issuers = {}
        for spec in args.issuer:
            name, files = spec.split("=", 1)
            self.issuers[name] = Issuer(name, *files.split(","))
        self.default_issuer = "default" if "default" in self.issuers else next(iter(self.issuers))
        self.roles = json.load(open(args.roles)) if args.roles else {}
        self.tokens_file = args.tokens
        self.cert_auth = json.load(open(args.cert_auth)) if args.cert_auth else None
        self.login_tokens = {}
        self.certs = {}  # serial int -> (cert, issuer, revocation_time)
        self.state = json.load(open(args.state)) if args.state else {}
        self.log_path = args.log

    def tokens(self):
        toks = json.load(open(self.tokens_file)) if self.tokens_file else {}
        toks.update(self.login_tokens)
        return toks

    def log(self, entry):
        if not self.log_path:
            return
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def switch(self, path, name):
        st = self.state
        if st.get("match") and st["match"] not in path:
            return None
        return st.get(name)

    def take_forced(self, path):
        """The forced status for this request, if any (counting down force_count)."""
        with self.lock:
            st = self.state
            code = st.get("force_status")
            if not code or (st.get("match") and st["match"] not in path):
                return None
            if "force_count" in st:
                if st["force_count"] <= 0:
                    return None
                st["force_count"] -= 1
            return int(code)

    def role(self, name):
        if name not in self.roles:
            raise VaultError(400, "unknown role: %s" % name)
        r = dict(ROLE_DEFAULTS)
        r.update(self.roles[name])
        if r["key_type"] == "ec" and "key_bits" not in self.roles[name]:
            r["key_bits"] = 256
        return r

    def issuer(self, ref):
        ref = ref or "default"
        if ref == "default":
            ref = self.default_issuer
        for i in self.issuers.values():
            if ref in (i.name, i.id):
                return i
        raise VaultError(400, "unable to find PKI issuer for reference: %s" % ref)


# ---- policy checks, Vault's strings ----

def host_allowed(role, name):
    if role["allow_any_name"]:
        return True
    if role["allow_localhost"] and name in ("localhost", "localdomain"):
        return True
    for d in role["allowed_domains"]:
        if role["allow_bare_domains"] and name == d:
            return True
        if role["allow_subdomains"] and name.endswith("." + d.lstrip("*.")) and not d.startswith("*"):
            return True
        if role["allow_glob_domains"] and "*" in d and fnmatch.fnmatchcase(name, d):
            return True
    return False


def check_key(role, pub):
    kt = role["key_type"]
    if isinstance(pub, rsa.RSAPublicKey):
        actual, bits = "rsa", pub.key_size
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        actual, bits = "ec", pub.curve.key_size
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        actual, bits = "ed25519", 0
    else:
        raise VaultError(400, "unsupported key type in CSR")
    if kt == "any":
        if actual == "rsa" and bits < 2048:
            raise VaultError(400, "RSA keys < 2048 bits are unsafe and not supported: got %d" % bits)
        return actual, bits
    if actual != kt:
        raise VaultError(400, "role requires keys of type %s" % kt)
    if kt != "ed25519" and role["key_bits"] and bits < role["key_bits"]:
        raise VaultError(400, "role requires a minimum of a %d-bit key, but CSR's key is %d bits"
                         % (role["key_bits"], bits))
    return actual, bits


def csr_sans(csr):
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], [], []
    return (san.get_values_for_type(x509.DNSName), san.get_values_for_type(x509.RFC822Name),
            [str(i) for i in san.get_values_for_type(x509.IPAddress)],
            san.get_values_for_type(x509.UniformResourceIdentifier))


def load_csr(body):
    data = body.get("csr")
    if not data:
        raise VaultError(400, "csr contains no data")
    try:
        csr = x509.load_pem_x509_csr(data.encode())
    except ValueError as e:
        raise VaultError(400, "certificate request could not be parsed: %s" % e)
    if not csr.is_signature_valid:
        raise VaultError(400, "request signature invalid: x509: ECDSA verification failure")
    return csr


def role_names(role, csr, body):
    """(cn, dns+email, ips, uris) for sign/<role>, with Vault's checks."""
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns and role["use_csr_common_name"] else body.get("common_name", "")
    if not cn and role["require_cn"]:
        raise VaultError(400, 'the common_name field is required, or must be provided in a CSR with '
                              '"use_csr_common_name" set to true, unless "require_cn" is set to false')
    if role["use_csr_sans"]:
        dns, emails, ips, uris = csr_sans(csr)
    else:
        alt = comma_list(body.get("alt_names"))
        dns, emails = [a for a in alt if "@" not in a], [a for a in alt if "@" in a]
        ips, uris = comma_list(body.get("ip_sans")), comma_list(body.get("uri_sans"))
    if cn and not host_allowed(role, cn.split("@")[-1] if "@" in cn else cn):
        raise VaultError(400, "common name %s not allowed by this role" % cn)
    for n in dns + emails:
        if not host_allowed(role, n.split("@")[-1] if "@" in n else n):
            raise VaultError(400, "subject alternate name %s not allowed by this role" % n)
    if ips and not role["allow_ip_sans"]:
        raise VaultError(400, "IP Subject Alternative Names are not allowed in this role, but was provided %s"
                         % ips[0])
    for u in uris:
        if not any(fnmatch.fnmatchcase(u, p) for p in role["allowed_uri_sans"]):
            raise VaultError(400, "URI Subject Alternative Names are not allowed in this role, but were provided "
                                  "%s" % u)
    if cn and not body.get("exclude_cn_from_sans"):
        dns, emails = cn_sans(cn, dns, emails)
    return cn, dns + emails, ips, uris


def cn_sans(cn, dns, emails):
    """(dns, emails) with the CN Vault adds (generateCreationBundle): one holding an '@' to the email names,
    whatever email_protection_flag says, any other to the DNS names (Vault: only a hostname after IDNA
    conversion, which is not modelled); names Vault dedups are not repeated. An email name must be an
    IA5String, or Go's x509.CreateCertificate fails and Vault with it."""
    if "@" not in cn:
        return (dns if cn in dns else [cn] + dns), emails
    if not cn.isascii():
        raise VaultError(500, 'unable to create certificate: x509: "%s" cannot be encoded as an IA5String' % cn)
    return dns, (emails if cn in emails else emails + [cn])


def role_subject(role, cn):
    """The subject sign/<role> writes: the role's attributes (several values of one in one RDN), then the CN,
    none of the CSR's others."""
    rdns = [x509.RelativeDistinguishedName([x509.NameAttribute(oid, v) for v in dict.fromkeys(role[key])])
            for key, oid in ROLE_SUBJECT if role[key]]
    if cn:
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    return x509.Name(rdns)


def choose_ttl(role, body, issuer, warnings):
    ttl = parse_ttl(body.get("ttl")) or role["ttl"] or MOUNT_DEFAULT_TTL
    max_ttl = role["max_ttl"] or MOUNT_DEFAULT_TTL
    if ttl > max_ttl:
        warnings.append('TTL "%ds" is longer than permitted maxTTL "%ds", so maxTTL is being used' % (ttl, max_ttl))
        ttl = max_ttl
    now = datetime.datetime.now(datetime.timezone.utc)
    end = now + datetime.timedelta(seconds=ttl)
    if end > not_after(issuer.cert):
        raise VaultError(400, "cannot satisfy request, as TTL would result in notAfter of %s that is beyond "
                              "the expiration of the CA certificate at %s" % (end.isoformat(),
                                                                               not_after(issuer.cert).isoformat()))
    return now, end


def build_cert(issuer, subject, pub, now, end, dns, ips, uris, ku_names, eku_oids, copied=(), backdate=30,
               sha1=False, serial=None):
    """A certificate as Vault's Go code makes it; |copied| are CSR extensions (sign-verbatim), which, as
    Go's x509.CreateCertificate does with ExtraExtensions, replace the ones of the same OID; its notBefore
    is |backdate| seconds before now (the role's not_before_duration); |serial| (int) replaces the random one."""
    exts = [(x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.SubjectKeyIdentifier.from_public_key(pub), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False)]
    ku = {v: False for v in KU_ARGS.values()}
    for n in ku_names:
        if n.lower() in KU_ARGS:
            ku[KU_ARGS[n.lower()]] = True
    if not isinstance(pub, rsa.RSAPublicKey):  # key encipherment means nothing for EC/Ed keys
        ku["key_encipherment"] = False
    if any(ku.values()):
        exts.append((x509.KeyUsage(**ku), True))
    if eku_oids:
        exts.append((x509.ExtendedKeyUsage(eku_oids), False))
    names = [x509.DNSName(d) if "@" not in d else x509.RFC822Name(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    if names:
        exts.append((x509.SubjectAlternativeName(names), False))
    for e in copied:
        exts = [(v, c) for v, c in exts if v.oid != e.oid] + [(e.value, e.critical)]
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.cert.subject).public_key(pub)
         .serial_number(serial or int.from_bytes(secrets.token_bytes(19), "big") | 1)
         .not_valid_before(now - datetime.timedelta(seconds=backdate)).not_valid_after(end))
    for v, c in exts:
        b = b.add_extension(v, critical=c)
    algo = None if isinstance(issuer.key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else \
        hashes.SHA1() if sha1 else hashes.SHA256()
    return b.sign(issuer.key, algo)


def oid_list(v):
    """ext_key_usage_oids: dotted OIDs, as a list or a comma-separated string."""
    try:
        return [x509.ObjectIdentifier(o) for o in comma_list(v)]
    except ValueError as e:
        raise VaultError(400, "%s could not be parsed as a valid oid for an extended key usage" % e)


def role_ekus(role):
    """Vault's parseExtKeyUsages: the four flags, the ext_key_usage names, the ext_key_usage_oids."""
    oids = [EKU_OIDS[e.lower()] for e in role["ext_key_usage"] if e.lower() in EKU_OIDS]
    for flag, oid in (("server_flag", ExtendedKeyUsageOID.SERVER_AUTH), ("client_flag", ExtendedKeyUsageOID.CLIENT_AUTH),
                      ("code_signing_flag", ExtendedKeyUsageOID.CODE_SIGNING),
                      ("email_protection_flag", ExtendedKeyUsageOID.EMAIL_PROTECTION)):
        if role[flag] and oid not in oids:
            oids.append(oid)
    return oids + [o for o in oid_list(role["ext_key_usage_oids"]) if o not in oids]


# ---- the handler ----

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vault-api-test"

    def log_message(self, fmt, *args):  # quiet: the JSON log is the record
        pass

    def vault(self):
        return self.server.vault

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}, raw
        try:
            body = json.loads(raw)
        except ValueError:
            raise VaultError(400, "failed to parse JSON input: invalid character")
        if not isinstance(body, dict):
            raise VaultError(400, "failed to parse JSON input: not an object")
        return body, raw

    def peer_subject(self):
        try:
            der = self.connection.getpeercert(binary_form=True)
        except (AttributeError, ValueError):
            return None, None
        if not der:
            return None, None
        c = x509.load_der_x509_certificate(der)
        return c, c.subject.rfc4514_string()

    def send(self, status, obj=None, raw=None, ctype="application/json"):
        if obj is GARBAGE:
            status, raw, ctype = 200, b"<html>this is not Vault JSON\x00\xff", "text/html"
        data = raw if raw is not None else json.dumps(obj).encode()
        # the switches shape the answers under test, not the control channel or the health probes
        plain = self.path.startswith("/_control") or self.path.startswith("/v1/sys/health")
        if raw is None and not plain and self.vault().switch(self.path, "trailing"):
            data += self.vault().switch(self.path, "trailing").encode()
        if not plain and self.hold_ms:
            time.sleep(self.hold_ms / 1000.0)
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            if not plain and self.vault().switch(self.path, "close"):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("POST")  # Vault: PUT = POST

    def handle_any(self, method):
        v = self.vault()
        self.hold_ms = v.switch(self.path, "latency_ms")  # this request's, whatever later switches say
        body, raw = {}, b""
        try:
            body, raw = self.read_body()
        except VaultError as e:
            return self.send(e.status, {"errors": e.errors})
        if self.path.split("?")[0] == "/v1/sys/health":
            # Vault's health endpoint (unauthenticated); neither logged nor forced, so that a
            # gateway's periodic probes leave the request log and the forced answers to the tests
            sealed = v.state.get("sealed", False)
            return self.send(503 if sealed else 200, {"initialized": True, "sealed": sealed, "standby": False})
        peer, peer_subj = self.peer_subject()
        v.log({"time": time.time(), "method": method, "path": self.path,
               "token": self.headers.get("X-Vault-Token"), "namespace": self.headers.get("X-Vault-Namespace"),
               "body": body if body else raw.decode(errors="replace"), "client_cert": peer_subj})
        if self.path.startswith("/_control"):
            return self.control(method, body)
        try:
            forced = v.take_forced(self.path)
            if forced and v.switch(self.path, "hold_unforced"):
                self.hold_ms = None
            if forced:
                msgs = [m.format(path=self.path[4:]) for m in FORCED.get(forced, ["forced status"])]
                if v.switch(self.path, "force_message"):
                    tok = self.headers.get("X-Vault-Token") or ""
                    msgs = [v.switch(self.path, "force_message").replace("{token}", tok)]
                    if "{token_u}" in msgs[0]:  # after json.dumps, which would escape the backslashes
                        esc = "".join("\\u%04x" % ord(c) if i % 2 == 0 else c for i, c in enumerate(tok))
                        raw = json.dumps({"errors": msgs}).replace("{token_u}", esc)
                        return self.send(forced, raw=raw.encode())
                raise VaultError(forced, *msgs)
            status, obj = self.route(method, self.path.split("?")[0], body, peer)
        except VaultError as e:
            return self.send(e.status, {"errors": e.errors})
        if obj is None:
            return self.send(status, raw=b"", ctype="application/json")
        if isinstance(obj, bytes):
            return self.send(status, raw=obj, ctype="application/pkix-crl")
        return self.send(status, obj)

    def control(self, method, body):
        v = self.vault()
        if method == "POST":
            with v.lock:
                v.state = dict(body)
        return self.send(200, v.state)

    def envelope(self, data=None, warnings=None, auth=None):
        return {"request_id": secrets.token_hex(8), "lease_id": "", "renewable": False, "lease_duration": 0,
                "data": data, "wrap_info": None, "warnings": warnings or None, "auth": auth}

    def check_token(self):
        tok = self.headers.get("X-Vault-Token")
        info = self.vault().tokens().get(tok) if tok else None
        if info is None or (info.get("expires") and info["expires"] < time.time()):
            raise VaultError(403, "permission denied")

    def route(self, method, path, body, peer):
        v = self.vault()
        auth_prefix = "/v1/auth/%s/login" % (v.cert_auth or {}).get("mount", "cert")
        if path == auth_prefix and method == "POST" and v.cert_auth is not None:
            return self.cert_login(body, peer)
        prefix = "/v1/%s/" % v.mount
        if not path.startswith(prefix):
            raise VaultError(404, "no handler for route \"%s\". route entry not found." % path[4:])
        parts = path[len(prefix):].strip("/").split("/")
        if method == "GET" and len(parts) == 2 and parts[0] == "cert":
            return self.cert_read(parts[1])  # unauthenticated in Vault
        if method == "GET" and parts in (["crl"], ["crl", "der"]):
            return self.crl(None)  # unauthenticated in Vault
        if method == "GET" and len(parts) == 4 and parts[0] == "issuer" and parts[2:] == ["crl", "der"]:
            return self.crl(parts[1])  # unauthenticated in Vault
        self.check_token()
        issuer_ref = None
        if len(parts) >= 3 and parts[0] == "issuer":
            issuer_ref, parts = parts[1], parts[2:]
        if method == "POST" and parts[0] == "sign" and len(parts) == 2:
            return self.sign_role(parts[1], issuer_ref, body)
        if method == "POST" and parts[0] == "sign-verbatim" and len(parts) <= 2:
            return self.sign_verbatim(parts[1] if len(parts) == 2 else None, issuer_ref, body)
        if method == "POST" and parts == ["root", "sign-intermediate"]:
            return self.sign_intermediate(issuer_ref, body)
        if method == "POST" and parts == ["revoke"] and issuer_ref is None:
            return self.revoke(body)
        if method == "GET" and len(parts) == 2 and parts[0] == "roles" and issuer_ref is None:
            return self.role_read(parts[1])
        raise VaultError(404, "unsupported path")

    def answer_signed(self, cert, issuer, warnings):
        v = self.vault()
        path = self.path
        with v.lock:  # a serial issued again keeps its revocation, as the CA's CRL does
            v.certs[cert.serial_number] = [cert, issuer, v.certs.get(cert.serial_number, [0, 0, 0])[2]]
        if v.switch(path, "garbage"):
            return 200, GARBAGE
        if v.switch(path, "warnings_only"):
            return 200, self.envelope(None, warnings + ["the certificate was not returned (test switch)"])
        data = {"certificate": pem(cert), "issuing_ca": pem(issuer.cert),
                "serial_number": colon_hex(cert.serial_number),
                "expiration": int(not_after(cert).timestamp())}
        if not v.switch(path, "no_ca_chain"):
            data["ca_chain"] = [pem(issuer.cert)] + [pem(c) for c in issuer.chain]
        if v.switch(path, "certificate_after"):
            data["certificate"] += "\n" + v.switch(path, "certificate_after")
        data.update(v.switch(path, "sign_data") or {})
        answer = self.envelope(data, warnings)
        if v.switch(path, "sign_warnings") is not None:
            answer["warnings"] = v.switch(path, "sign_warnings")
        if v.switch(path, "sign_status"):
            answer["errors"] = ["internal error"]
            return int(v.switch(path, "sign_status")), answer
        return 200, answer

    def forced_serial(self):
        """The serial_number switch as an int, or None."""
        s = self.vault().switch(self.path, "serial_number")
        return int(s.replace(":", "").replace("-", ""), 16) if s else None

    def sign_role(self, role_name, issuer_ref, body):
        v = self.vault()
        role = v.role(role_name)
        csr = load_csr(body)
        check_key(role, csr.public_key())
        issuer = v.issuer(issuer_ref or role["issuer_ref"])
        warnings = []
        if body.get("common_name") and role["use_csr_common_name"]:
            warnings.append("the common_name field was provided but the role is set with "
                            '"use_csr_common_name" set to true')
        cn, dns, ips, uris = role_names(role, csr, body)
        now, end = choose_ttl(role, body, issuer, warnings)
        subject = role_subject(role, cn)
        cert = build_cert(issuer, subject, csr.public_key(), now, end, dns, ips, uris, role["key_usage"],
                          role_ekus(role), backdate=parse_ttl(role["not_before_duration"]),
                          sha1=v.switch(self.path, "sign_hash") == "sha1", serial=self.forced_serial())
        return self.answer_signed(cert, issuer, warnings)

    def sign_verbatim(self, role_name, issuer_ref, body):
        v = self.vault()
        role = dict(ROLE_DEFAULTS)
        if role_name is not None:
            r = v.role(role_name)  # only ttl, max_ttl, not_before_duration, issuer_ref and storage flags apply
            role.update({k: r[k] for k in ("ttl", "max_ttl", "not_before_duration", "issuer_ref", "no_store",
                                           "generate_lease")})
        csr = load_csr(body)
        try:
            bc = csr.extensions.get_extension_for_class(x509.BasicConstraints).value
            if bc.ca:
                raise VaultError(400, "sign-verbatim refuses to issue CA certificates")
        except x509.ExtensionNotFound:
            pass
        issuer = v.issuer(issuer_ref or role["issuer_ref"])
        warnings = []
        now, end = choose_ttl(role, body, issuer, warnings)
        dns, emails, ips, uris = csr_sans(csr)
        # the call's usages (Vault's defaults when it names none) for a CSR that asks for none ...
        ku_names = comma_list(body["key_usage"]) if "key_usage" in body else ROLE_DEFAULTS["key_usage"]
        ekus = [EKU_OIDS[e.lower()] for e in comma_list(body.get("ext_key_usage")) if e.lower() in EKU_OIDS]
        ekus += oid_list(body.get("ext_key_usage_oids"))
        # ... and every extension of the CSR but basicConstraints, verbatim (Vault's signCert with
        # UseCSRValues copies them into ExtraExtensions, which replace what the template made)
        copied = [e for e in csr.extensions if e.oid != ExtensionOID.BASIC_CONSTRAINTS]
        cert = build_cert(issuer, csr.subject, csr.public_key(), now, end, dns + emails, ips, uris, ku_names, ekus,
                          copied, backdate=parse_ttl(role["not_before_duration"]),
                          sha1=v.switch(self.path, "sign_hash") == "sha1", serial=self.forced_serial())
        return self.answer_signed(cert, issuer, warnings)

    def sign_intermediate(self, issuer_ref, body):
        """root/sign-intermediate: a CA certificate for the CSR's key (a delegate issuer, docs/vault.md)."""
        v = self.vault()
        csr = load_csr(body)
        issuer = v.issuer(issuer_ref)
        cn = body.get("common_name")
        if not cn and not body.get("use_csr_values"):
            raise VaultError(400, "the common_name field is required")
        subject = csr.subject if body.get("use_csr_values") else x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        warnings = []
        now, end = choose_ttl(dict(ROLE_DEFAULTS, ttl=0, max_ttl=parse_ttl(body.get("ttl")) or MOUNT_DEFAULT_TTL),
                              body, issuer, warnings)
        plen = int(body.get("max_path_length", -1))
        pub = csr.public_key()
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.cert.subject).public_key(pub)
             .serial_number(int.from_bytes(secrets.token_bytes(19), "big") | 1)
             .not_valid_before(now - datetime.timedelta(seconds=30)).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None if plen < 0 else plen), critical=True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                            critical=False))
        permitted = comma_list(body.get("permitted_dns_domains"))
        if permitted:
            b = b.add_extension(x509.NameConstraints([x509.DNSName(d) for d in permitted], None), critical=True)
        cert = b.sign(issuer.key, hashes.SHA256())
        with v.lock:
            v.certs[cert.serial_number] = [cert, issuer, 0]
        data = {"certificate": pem(cert), "issuing_ca": pem(issuer.cert),
                "ca_chain": [pem(issuer.cert)] + [pem(c) for c in issuer.chain],
                "serial_number": colon_hex(cert.serial_number), "expiration": int(not_after(cert).timestamp())}
        return 200, self.envelope(data, warnings)

    def revoke(self, body):
        v = self.vault()
        s = body.get("serial_number")
        if not s and not body.get("certificate"):
            raise VaultError(400, "The serial number or certificate to revoke must be provided.")
        if s and body.get("certificate"):
            raise VaultError(400, "Must provide either the certificate or the serial to revoke; not both.")
        if s:
            serial = int(s.replace(":", "").replace("-", ""), 16)
        else:
            serial = x509.load_pem_x509_certificate(body["certificate"].encode()).serial_number
        with v.lock:
            entry = v.certs.get(serial)
            if entry is None:
                raise VaultError(400, "certificate with serial %s not found." % colon_hex(serial))
            if not_after(entry[0]) < datetime.datetime.now(datetime.timezone.utc):
                return 200, self.envelope(None, ["certificate with serial %s already expired; refusing to add "
                                                 "to CRL" % colon_hex(serial)])
            if not entry[2]:
                entry[2] = int(time.time())
            t = entry[2]
        rfc = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, self.envelope({"revocation_time": t, "revocation_time_rfc3339": rfc, "state": "revoked"})

    def crl(self, ref):
        """The CRL of issuer |ref| (None: the default), DER, as GET <mount>/crl and
        <mount>/issuer/<ref>/crl/der serve it: every revoked certificate that issuer issued."""
        v = self.vault()
        i = v.issuer(ref)
        now = datetime.datetime.now(datetime.timezone.utc)
        this_update, next_update = now - datetime.timedelta(minutes=1), now + datetime.timedelta(hours=72)
        if v.state.get("crl_stale"):
            this_update, next_update = now - datetime.timedelta(days=3), now - datetime.timedelta(hours=2)
        if v.state.get("crl_future"):
            this_update = now + datetime.timedelta(hours=1)
        b = (x509.CertificateRevocationListBuilder().issuer_name(i.cert.subject)
             .last_update(this_update).next_update(next_update))
        if v.state.get("crl_delta"):
            b = b.add_extension(x509.DeltaCRLIndicator(1), critical=True)
        with v.lock:
            revoked = [(serial, rt) for serial, (cert, issuer, rt) in v.certs.items() if rt and issuer is i]
        for serial, rt in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(
                datetime.datetime.fromtimestamp(rt, datetime.timezone.utc)).build())
        key = ec.generate_private_key(ec.SECP256R1()) if v.state.get("crl_forged") else i.key
        algo = None if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else hashes.SHA256()
        return 200, b.sign(key, algo).public_bytes(serialization.Encoding.DER)

    def cert_read(self, serial_text):
        v = self.vault()
        if serial_text == "ca_chain":
            i = v.issuer(None)
            chain = "\n".join([pem(i.cert)] + [pem(c) for c in i.chain])
            return 200, self.envelope({"certificate": chain, "ca_chain": chain})
        try:
            serial = int(serial_text.replace(":", "").replace("-", ""), 16)
        except ValueError:
            raise VaultError(404)
        with v.lock:
            entry = v.certs.get(serial)
        if entry is None:
            raise VaultError(404)
        cert, issuer, rt = entry
        rfc = datetime.datetime.fromtimestamp(rt, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if rt else ""
        return 200, self.envelope({"certificate": pem(cert), "revocation_time": rt,
                                   "revocation_time_rfc3339": rfc, "issuer_id": issuer.id})

    def role_read(self, name):
        v = self.vault()
        if name not in v.roles:
            raise VaultError(404)
        return 200, self.envelope(v.role(name))

    def cert_login(self, body, peer):
        v = self.vault()
        if peer is None:
            raise VaultError(400, "invalid certificate or no client certificate supplied")
        roles = v.cert_auth.get("roles", {})
        name = body.get("name")
        if name and name not in roles:
            raise VaultError(400, "no chain matching all constraints could be found for this login certificate")
        cfg = roles.get(name) or (next(iter(roles.values())) if roles else {})
        ttl = int(cfg.get("token_ttl", 3600))
        token = "hvb." + secrets.token_urlsafe(24)
        with v.lock:
            v.login_tokens[token] = {"expires": time.time() + ttl if ttl else 0}
        lease = v.switch(self.path, "login_lease")
        return 200, self.envelope(None, None, {"client_token": token, "accessor": "", "policies": ["cmpgw"],
                                              "token_policies": ["cmpgw"],
                                              "lease_duration": ttl if lease is None else lease,
                                              "renewable": False, "token_type": "batch",
                                              "metadata": {"common_name": peer.subject.rfc4514_string()}})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-cert", required=True)
    ap.add_argument("--tls-key", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--issuer", action="append", required=True)
    ap.add_argument("--roles")
    ap.add_argument("--tokens")
    ap.add_argument("--cert-auth")
    ap.add_argument("--mount", default="pki")
    ap.add_argument("--log")
    ap.add_argument("--state")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    if args.client_ca:
        ctx.load_verify_locations(args.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ThreadingHTTPServer.request_queue_size = 1024  # a gateway opens connections by the dozen, like Vault's clients
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    srv.daemon_threads = True
    srv.vault = Vault(args)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("vault-api-test listening on https://127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
