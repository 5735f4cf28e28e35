"""The Vault-API test server (tests/upstreams/vault_api_server.py) on loopback, for the vault e2e tests.

VaultApi(dir).make_pki() makes, under |dir| (a demo PKI made by deploy/demo-pki.sh):
  vault-ca.pem/.key       the PKI mount's default issuer, an intermediate of the demo root (pathlen 0)
  vault-ca2.pem/.key      a second issuer ("second"), for issuer/<ref>/sign routes
  vault-issuers.pem       both issuers + the root: the gateway's "issuer_ca" for this upstream
  vault-roles.json        roles devices, flaky, slow, ttl-only (Vault role fields)
  vault-tokens.json       the token the gateway holds (vault.token) and nothing else
  vault.token, vault-bad.token
  vault-certauth.json     cert auth mount "cert" with role "cmpgw" (the demo client.pem logs in)
start() runs the server over TLS (the demo's server.pem for 127.0.0.1) on a free port; control(...)
sets its switches; requests() reads what it received.
"""
import json
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import harness

SERVER = Path(__file__).resolve().parents[1] / "upstreams" / "vault_api_server.py"
TOKEN = "hvs.CAESIGatewayTokenForE2E"

DEVICES = {"allowed_domains": ["example.com"], "allow_subdomains": True, "allow_bare_domains": False,
           "allow_ip_sans": True, "key_type": "ec", "key_bits": 256, "ttl": 86400, "max_ttl": 30 * 86400,
           "key_usage": ["DigitalSignature", "KeyAgreement"], "ext_key_usage": ["ClientAuth"],
           "server_flag": True, "client_flag": True}


def ca_ext(pathlen=0):
    return ("basicConstraints=critical,CA:TRUE,pathlen:%d\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" % pathlen)


def sign_cert(d, name, subj, issuer, ext, days=30):
    d = Path(d)
    harness.genkey(d / ("%s.key" % name))
    harness.run(["openssl", "req", "-new", "-key", d / ("%s.key" % name), "-subj", subj, "-out",
                 d / ("%s.csr" % name)])
    (d / ("%s.ext" % name)).write_text(ext)
    harness.run(["openssl", "x509", "-req", "-in", d / ("%s.csr" % name), "-CA", d / ("%s.pem" % issuer),
                 "-CAkey", d / ("%s.key" % issuer), "-days", str(days), "-sha256", "-extfile",
                 d / ("%s.ext" % name), "-out", d / ("%s.pem" % name)])
    return d / ("%s.pem" % name)


def colon_serial(serial):
    """|serial|, hex in whole octets as harness.serial_hex writes it, as Vault writes a serial in its paths
    and serial_number fields: colon-separated octets."""
    return ":".join(serial[i:i + 2] for i in range(0, len(serial), 2))


class VaultApi:
    def __init__(self, d):
        self.dir = Path(d)
        self.port = harness.free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.log = self.dir / "vault-requests.jsonl"
        self.proc = None

    def upstream(self, **extra):
        """The gateway's "upstreams" entry for this server (token auth), with |extra| keys on top."""
        conf = {"type": "vault", "url": self.url, "tls_ca": "ca.pem", "issuer_ca": "vault-issuers.pem",
                "token_file": "vault.token", "timeout": "10s"}
        conf.update(extra)
        return conf

    def make_pki(self, extra_roles=None):
        """|extra_roles|: more Vault roles (name -> Vault role fields) besides the ones below."""
        d = self.dir
        sign_cert(d, "vault-ca", "/O=cmpgw e2e/CN=vault test issuing CA", "ca", ca_ext(1), days=365)
        sign_cert(d, "vault-ca2", "/O=cmpgw e2e/CN=vault test second issuer", "ca", ca_ext(), days=365)
        (d / "vault-issuers.pem").write_text("".join((d / f).read_text() for f in
                                                     ("vault-ca.pem", "vault-ca2.pem", "ca.pem")))
        roles = {"devices": DEVICES, "flaky": DEVICES, "slow": DEVICES,
                 "ttl-only": {"ttl": 3600, "max_ttl": 7200}}
        roles.update(extra_roles or {})
        (d / "vault-roles.json").write_text(json.dumps(roles))
        (d / "vault-tokens.json").write_text(json.dumps({TOKEN: {"expires": 0}}))
        for f, t in (("vault.token", TOKEN), ("vault-bad.token", "hvs.revoked-or-never-issued")):
            (d / f).write_text(t + "\n")
            (d / f).chmod(0o600)
        (d / "delegate-store").mkdir(mode=0o700, exist_ok=True)
        (d / "vault-certauth.json").write_text(json.dumps({"mount": "cert", "roles": {"cmpgw": {"token_ttl": 600}}}))

    def start(self):
        d = self.dir
        argv = [sys.executable, SERVER, "--port", str(self.port), "--tls-cert", d / "server.pem",
                "--tls-key", d / "server.key", "--client-ca", d / "ca.pem",
                "--issuer", "default=%s,%s,%s" % (d / "vault-ca.pem", d / "vault-ca.key", d / "ca.pem"),
                "--issuer", "second=%s,%s,%s" % (d / "vault-ca2.pem", d / "vault-ca2.key", d / "ca.pem"),
                "--roles", d / "vault-roles.json", "--tokens", d / "vault-tokens.json",
                "--cert-auth", d / "vault-certauth.json", "--log", self.log]
        self._err = open(d / "vault-server.stderr", "wb")
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=self._err)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise harness.Failure("vault_api_server exited: %s" % (d / "vault-server.stderr").read_text())
            try:
                self.control({})
                return
            except OSError:
                time.sleep(0.1)
        raise harness.Failure("vault_api_server did not start")

    def api(self, method, path, body=None, token=TOKEN):
        """One call to the server's Vault API, as `vault write` would make it; returns the JSON answer."""
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        req = urllib.request.Request(self.url + path, method=method, headers={"X-Vault-Token": token},
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def make_delegate(self, name="vault-delegate", domains=("example.com",)):
        """The delegate issuer for CRMF, as docs/vault.md obtains it: a key and CSR here, then
        pki/root/sign-intermediate with max_path_length=0 and permitted_dns_domains, for 768h (Vault's
        longest lease), so that a role's 720h max_ttl fits within it however long a test class runs.
        Writes |name|.key, |name|.pem and |name|-chain.pem (Vault's CA chain) in the work dir."""
        d = self.dir
        harness.genkey(d / ("%s.key" % name))
        harness.run(["openssl", "req", "-new", "-key", d / ("%s.key" % name), "-subj",
                     "/O=cmpgw e2e/CN=cmpgw delegate issuer", "-out", d / ("%s.csr" % name)])
        ans = self.api("POST", "/v1/pki/root/sign-intermediate", {
            "csr": (d / ("%s.csr" % name)).read_text(), "common_name": "cmpgw delegate issuer", "ttl": "768h",
            "max_path_length": 0, "permitted_dns_domains": ",".join(domains), "format": "pem"})
        (d / ("%s.pem" % name)).write_text(ans["data"]["certificate"] + "\n")
        (d / ("%s-chain.pem" % name)).write_text("\n".join(ans["data"]["ca_chain"]) + "\n")
        return d / ("%s.pem" % name)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self._err.close()
            self.proc = None

    def control(self, state):
        """Sets the server's switches (see vault_api_server.py); {} clears them."""
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        req = urllib.request.Request(self.url + "/_control", data=json.dumps(state).encode(), method="POST")
        with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
            return json.loads(r.read())

    def requests(self, contains=None):
        """What the server received (excluding /_control), optionally only paths containing |contains|."""
        out = []
        for e in harness.json_lines(self.log):  # the server may be appending a line
            if e["path"].startswith("/_control"):
                continue
            if contains is None or contains in e["path"]:
                out.append(e)
        return out

    def mark(self):
        """The number of requests so far: pass to since() to see only what followed."""
        return len(self.requests())

    def since(self, mark, contains=None):
        return [e for e in self.requests()[mark:] if contains is None or contains in e["path"]]


def running(case, d, extra_roles=None):
    """A Vault-API test server with its PKI in |d|, started, and stopped after |case|'s gateway."""
    vault = case.keep_running(VaultApi(d))
    vault.make_pki(extra_roles)
    vault.start()
    return vault


def login_upstream(common):
    """The upstream |common| (VaultApi.upstream()) logging in with the gateway's TLS certificate at
    the "cert" auth mount instead of reading a token file."""
    login = dict(common, tls_cert="client.pem", tls_key="client.key",
                 auth={"cert": {"mount": "cert", "role": "cmpgw"}})
    del login["token_file"]
    return login


def role_base(cfg):
    """The demo's default role without its upstream, taking DNS and IP names: a Vault route's start."""
    base = dict(cfg["roles"]["default"])
    base.pop("upstream", None)
    base["allowed_san_types"] = ["dns", "ip"]
    return base


def token_and_login(case, cfg, gw):
    """A running Vault-API server as |case|.vault, and two routes to its role "devices": "vault" with a
    token file, "vault-login" with a certificate login."""
    case.vault = running(case, gw.dir)
    common = case.vault.upstream()
    cfg["upstreams"].update({"vault": common, "vault-login": login_upstream(common)})
    base = role_base(cfg)
    cfg["roles"].update({
        "vault": dict(base, upstream="vault", upstream_role="devices"),
        "vault-login": dict(base, upstream="vault-login", upstream_role="devices"),
    })
