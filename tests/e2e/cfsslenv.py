"""A real `cfssl serve` (Debian golang-cfssl) on loopback, for the cfssl end-to-end tests.

Cfssl(dir, root_pem, root_key).start() makes, under |dir|:
  cfssl-ca.pem/.key   cfssl's signing CA, an intermediate of the demo root (pathlen 0)
  cfssl-issuer.pem    cfssl-ca.pem + the root: the gateway's "issuer_ca" for this upstream
  cfssl-tls.pem/.key  cfssl's TLS server certificate for 127.0.0.1 (issued by the demo root)
  cfssl.authkey       the HMAC key of the "servers" profile, hex (cfssl's "auth_keys" format)
  cfssl-config.json   profiles: devices, servers (auth_key), strict (name_whitelist), default
  certs.db            sqlite certificate database (-db-config): cfssl records what it signs and revoke works
and runs `cfssl serve` over TLS on a free port until stop(). cfssl 1.2.0 creates no tables itself;
the schema is cfssl's certdb/sqlite migration 001.
"""
import json
import os
import sqlite3
import subprocess
import time
import urllib.request
import ssl
from pathlib import Path

import harness

STRICT_WHITELIST = r"^[a-z0-9-]+\.example\.com$"

SCHEMA = """
CREATE TABLE certificates (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  ca_label                 blob,
  status                   blob NOT NULL,
  reason                   int,
  expiry                   timestamp,
  revoked_at               timestamp,
  pem                      blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
CREATE TABLE ocsp_responses (
  serial_number            blob NOT NULL,
  authority_key_identifier blob NOT NULL,
  body                     blob NOT NULL,
  expiry                   timestamp,
  PRIMARY KEY(serial_number, authority_key_identifier)
);
"""


def sign_cert(d, name, subj, issuer, ext, days=30):
    """A certificate |name|.pem for a fresh key, issued by |issuer| (a name prefix in |d|)."""
    d = Path(d)
    harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", d / ("%s.key" % name), "-subj", subj, "-out",
                 d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text(ext)
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / ("%s.pem" % issuer),
                 "-CAkey", d / ("%s.key" % issuer), "-days", str(days), "-sha256", "-extfile",
                 d / ("%s.ext" % name), "-set_serial", "0x%s" % os.urandom(16).hex(), "-out",
                 d / ("%s.pem" % name)])
    return d / ("%s.pem" % name)


class Cfssl:
    def __init__(self, d, root="ca"):
        self.dir = Path(d)
        self.root = root
        self.port = harness.free_port()
        self.proc = None
        self.log_path = self.dir / "cfssl.log"

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def upstream(self, **extra):
        """The gateway's "upstreams" entry for this server, with |extra| keys on top."""
        conf = {"type": "cfssl", "url": self.url, "tls_ca": "ca.pem", "issuer_ca": "cfssl-issuer.pem",
                "timeout": "10s"}
        conf.update(extra)
        return conf

    def make_pki(self, extra_profiles=None):
        """|extra_profiles|: more signing profiles (name -> cfssl profile) besides the ones below."""
        d = self.dir
        sign_cert(d, "cfssl-ca", "/O=cmpgw e2e/CN=cfssl e2e CA", self.root,
                  "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        sign_cert(d, "cfssl-tls", "/O=cmpgw e2e/CN=127.0.0.1", self.root,
                  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                  "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
        (d / "cfssl-issuer.pem").write_text((d / "cfssl-ca.pem").read_text() +
                                            (d / ("%s.pem" % self.root)).read_text())
        key = os.urandom(16).hex()
        (d / "cfssl.authkey").write_text(key + "\n")
        os.chmod(d / "cfssl.authkey", 0o600)
        (d / "cfssl.wrongkey").write_text(os.urandom(16).hex())
        os.chmod(d / "cfssl.wrongkey", 0o600)
        usages = ["digital signature", "key agreement", "client auth", "server auth"]
        config = {
            "signing": {
                "default": {"expiry": "24h", "usages": usages},
                "profiles": {
                    "devices": {"expiry": "72h", "usages": usages},
                    "servers": {"expiry": "72h", "usages": usages, "auth_key": "gateway"},
                    "strict": {"expiry": "72h", "usages": usages, "name_whitelist": STRICT_WHITELIST},
                },
            },
            "auth_keys": {"gateway": {"type": "standard", "key": key}},
        }
        config["signing"]["profiles"].update(extra_profiles or {})
        (d / "cfssl-config.json").write_text(json.dumps(config, indent=2))
        db = sqlite3.connect(str(d / "certs.db"))
        db.executescript(SCHEMA)
        db.close()
        (d / "cfssl-db.json").write_text(json.dumps({"driver": "sqlite3", "data_source": str(d / "certs.db")}))

    def start(self):
        d = self.dir
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["cfssl", "serve", "-address", "127.0.0.1", "-port", str(self.port), "-ca", d / "cfssl-ca.pem",
             "-ca-key", d / "cfssl-ca.key", "-config", d / "cfssl-config.json", "-db-config",
             d / "cfssl-db.json", "-tls-cert", d / "cfssl-tls.pem", "-tls-key", d / "cfssl-tls.key",
             "-loglevel", "1"], cwd=d, stdout=self._log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def info(self):
        ctx = ssl.create_default_context(cafile=str(self.dir / ("%s.pem" % self.root)))
        req = urllib.request.Request(self.url + "/api/v1/cfssl/info", data=b"{}", method="POST")
        with urllib.request.urlopen(req, context=ctx, timeout=5) as f:
            return json.loads(f.read())

    def wait_ready(self):
        deadline = time.monotonic() + harness.START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise harness.Failure("cfssl serve exited %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                if self.info().get("success"):
                    return
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise harness.Failure("cfssl serve not ready on %d (%s):\n%s" % (self.port, last, self.log()))

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.proc = None

    def record(self, cert_pem_path):
        """cfssl's certdb row (status, reason) for a certificate, or None if cfssl never signed it."""
        p = harness.run(["openssl", "x509", "-in", cert_pem_path, "-noout", "-serial"])
        return self.record_serial(int(p.stdout.decode().strip().split("=", 1)[1], 16))

    def record_serial(self, serial):
        """cfssl's certdb row (status, reason) for the certificate with |serial| (an int), or None."""
        serial = str(serial)
        db = sqlite3.connect(str(self.dir / "certs.db"))
        try:
            row = db.execute("SELECT status, reason FROM certificates WHERE serial_number = ?", (serial,)).fetchone()
        finally:
            db.close()
        return row


def running(case, d, extra_profiles=None):
    """A `cfssl serve` with its PKI in |d|, started, and stopped after |case|'s gateway."""
    cfssl = case.keep_running(Cfssl(d))
    cfssl.make_pki(extra_profiles)
    cfssl.start()
    return cfssl


def slow_route(case, cfg, d):
    """A running cfssl with its PKI in |d| as |case|.cfssl, a harness.SlowRelay to it as |case|.relay, and
    role "cfssl" (profile devices, DNS names) whose upstream reaches cfssl through the relay, without
    checking revocation: the relay can make each call to cfssl take as long as a test needs."""
    case.cfssl = running(case, d)
    case.relay = case.keep_running(harness.SlowRelay(case.cfssl.port))
    cfg["upstreams"]["cfssl"] = case.cfssl.upstream(check_revocation=False,
                                                    url="https://127.0.0.1:%d" % case.relay.port)
    cfg["roles"]["cfssl"] = dict(cfg["roles"]["default"], upstream="cfssl", upstream_role="devices",
                                 allowed_san_types=["dns"])


def enrolled(case, name):
    """A certificate of role "cfssl" for |name| (a p10cr through |case|.gw, implicitConfirm): its CmpResult,
    key and chain file."""
    d = case.gw.dir
    key = case.newkey(name)
    harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/O=cmpgw e2e/CN=%s.example.com" % name,
                 "-addext", "subjectAltName=DNS:%s.example.com" % name, "-out", d / ("%s.csr" % name)])
    res = case.gw.cmp("p10cr", name, path="pki/roles/cfssl/cmp",
                      extra=["-csr", d / ("%s.csr" % name), "-implicit_confirm"])
    chain = d / ("%s.chain.pem" % name)
    chain.write_text(res.first.extra_certs_pem())
    return res, key, chain


def holder_rr(gw, name, res, key, chain, reason):
    """The holder's rr through |gw| of |res|'s certificate, as enrolled() returns it with its |key| and
    |chain|, for |reason| (a CRLReason number): its rp's (status, failInfo, texts)."""
    out = gw.cmp("rr", name, auth=(res.cert, key), path="pki/roles/cfssl/cmp", expect_cert=False,
                 extra=["-oldcert", res.cert, "-revreason", reason, "-untrusted", chain])
    return harness.rp_status(out.rsp_files[0].read_bytes())
