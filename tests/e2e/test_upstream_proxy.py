"""No upstream call takes a proxy from the environment (docs/vault.md, "Proxies"): a gateway started with
http_proxy, https_proxy, HTTPS_PROXY and ALL_PROXY pointing at a loopback listener enrols through the
Vault-API test server (token and cert-auth login alike), and that listener is never
connected to: the Vault token goes to Vault alone.

Nor does an upstream call write its TLS secrets where SSLKEYLOGFILE says: libcurl honours that variable,
and with those secrets anyone who recorded the traffic reads the Vault token in it."""
import socket
import tempfile
import threading
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402


class ProxyTrap:
    """A loopback listener that records every connection (and the first bytes sent on it), then closes it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.seen.append(conn.recv(4096))
                except OSError:
                    self.seen.append(b"")

    def stop(self):
        self.sock.close()


class EnvironmentProxy(harness.GatewayTestCase):
    trap = None

    @classmethod
    def edit_config(cls, cfg, gw):
        vaultenv.token_and_login(cls, cfg, gw)

    @classmethod
    def setUpClass(cls):
        cls.trap = ProxyTrap()
        proxy = "http://127.0.0.1:%d" % cls.trap.port
        env = {name: proxy for name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}
        env.update(no_proxy="", NO_PROXY="")
        cls.tmp = tempfile.mkdtemp(prefix="cmpgw-e2e-")
        cls.keylog = Path(cls.tmp) / "sslkeys.log"
        env["SSLKEYLOGFILE"] = str(cls.keylog)
        cls.gw = harness.Gateway(Path(cls.tmp) / "pki",
                                 cls.with_state if harness.STATE == "redis" else cls.edit_config)
        try:
            cls.gw.start(extra_env=env)
        except Exception:
            cls.gw = None
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.trap.stop()

    def p10cr(self, role, name, subject):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr])
        res = self.gw.cmp("p10cr", name, path="pki/roles/%s/cmp" % role, extra=["-csr", csr])
        cn = subject.split("=", 1)[1]  # the test server's role copies the CN into a DNS name
        self.assert_issued(res.cert, key, subject.lstrip("/"), ["DNS:" + cn], res.first.extra_certs_pem())

    def test_vault_calls_bypass_the_environment_proxy(self):
        mark = self.vault.mark()
        self.p10cr("vault", "proxy-token", "/CN=proxy-token.example.com")
        self.p10cr("vault-login", "proxy-login", "/CN=proxy-login.example.com")
        got = [e["path"] for e in self.vault.since(mark)]
        self.assertIn("/v1/pki/sign/devices", got)
        self.assertIn("/v1/auth/cert/login", got)
        self.assertEqual(self.trap.seen, [])
        token = (self.gw.dir / "vault.token").read_text().strip()
        self.assertFalse(any(token.encode() in b for b in self.trap.seen))

    def test_no_tls_secrets_written_where_the_environment_says(self):
        self.p10cr("vault", "keylog-token", "/CN=keylog-token.example.com")  # over TLS, as the login
        self.assertFalse(self.keylog.exists(), "libcurl wrote the upstream TLS secrets to SSLKEYLOGFILE")


if __name__ == "__main__":
    harness.main()
