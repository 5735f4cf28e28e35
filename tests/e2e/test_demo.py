"""make demo as a new user meets it: deploy/demo.sh over a fresh demo directory starts the gateway with a
configuration that loads without a warning (at its start and in `cmpgw check`), and every command it
prints runs and issues, and a certificate it issued can be revoked (its issuer keeps a store); the role's bounds hold (a DNS SAN outside demo.example, an IP SAN, another
subject and a host name as the CN, with a dot or without, are refused); and deploy/demo-pki.sh rewrites
the configuration of a demo from before those bounds, keeping its PKI. The configuration is the demo's as deploy/demo-pki.sh
writes it, never the suite's widened copy (harness.widen_demo_role). The example the Debian package
installs as /etc/cmpgw/cmpgw.json (deploy/examples/cmpgw.json) passes `cmpgw check` without a warning
too, over the demo's PKI, and so does every other example it ships (deploy/examples/*.json), with the files
its guide makes."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import vaultenv  # noqa: E402

EXAMPLES = harness.REPO / "deploy" / "examples"


def warnings(log_text):
    """The log lines of |log_text| at level warn or error."""
    out = []
    for line in log_text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("level") in ("warn", "error"):
            out.append(line)
    return out


class Demo(unittest.TestCase):
    """deploy/demo.sh in the foreground, as `make demo` runs it, over a demo directory of its own."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        cls.demo = cls.tmp / "demo"
        cls.port = harness.free_port()
        cls.admin_port = harness.free_port(avoid=(cls.port,))
        # the gateway demo.sh execs runs as the harness runs one (a sanitizer build's suppressions)
        env = harness.sanitizer_env(dict(os.environ, CMPGW_PORT=str(cls.port), CMPGW_ADMIN_PORT=str(cls.admin_port)),
                                    cls.tmp)
        cls.out_path = cls.tmp / "demo.stdout"
        cls.err_path = cls.tmp / "demo.stderr"
        with open(cls.out_path, "wb") as out, open(cls.err_path, "wb") as err:
            # demo.sh execs the gateway: this process is the gateway once it prints the commands
            cls.proc = subprocess.Popen(["bash", str(harness.REPO / "deploy" / "demo.sh"), str(harness.BUILD_DIR),
                                         str(cls.demo)], cwd=harness.REPO, stdout=out, stderr=err, env=env)
        try:
            cls.wait_ready()
        except BaseException:
            cls.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def wait_ready(cls):
        deadline = time.monotonic() + harness.START_TIMEOUT + 30  # demo-pki.sh first makes the PKI
        last = None
        while time.monotonic() < deadline:
            if cls.proc.poll() is not None:
                raise harness.Failure("demo.sh exited %d:\n%s" % (cls.proc.returncode, cls.err_path.read_text()))
            try:
                ctx = ssl.create_default_context(cafile=str(cls.demo / "ca.pem"))
                with socket.create_connection(("127.0.0.1", cls.port), timeout=2) as s:
                    with ctx.wrap_socket(s, server_hostname="127.0.0.1"):
                        return
            except (OSError, ssl.SSLError) as e:
                last = e
                time.sleep(0.2)
        raise harness.Failure("the demo did not serve on port %d (%s):\n%s" % (cls.port, last,
                                                                                cls.err_path.read_text()))

    @classmethod
    def stop(cls):
        if cls.proc.poll() is None:
            cls.proc.send_signal(signal.SIGTERM)
        return cls.proc.wait(harness.STOP_TIMEOUT)

    @classmethod
    def tearDownClass(cls):
        try:
            rc = cls.stop()
            if rc != 0:
                raise harness.Failure("the demo gateway exited %d:\n%s" % (rc, cls.err_path.read_text()))
        finally:
            if not os.environ.get("CMPGW_E2E_KEEP"):
                shutil.rmtree(cls.tmp, ignore_errors=True)

    def printed_commands(self):
        """The numbered command blocks demo.sh prints ("# 1. ..." up to a blank line), in order."""
        text = self.out_path.read_text()
        blocks = re.findall(r"(?ms)^# \d+\. .*?(?=^$)", text)
        self.assertGreaterEqual(len(blocks), 4, text)
        return blocks

    def paste(self, block):
        """Runs |block| as a user pasting it into a shell at the repository root would."""
        return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=harness.REPO, capture_output=True,
                              text=True, timeout=harness.CLIENT_TIMEOUT * 2)

    def test_1_starts_without_a_warning(self):
        """Before the demo's role named the hosts it may issue for, every start warned that it issues
        certificates naming any host a client asks for."""
        text = self.err_path.read_text()
        self.assertIn('"level":"info"', text)  # the start's log is there to read
        self.assertEqual(warnings(text), [])

    def test_2_check_finds_no_warning(self):
        p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.demo / "cmpgw.json")],
                           cwd=self.demo, capture_output=True, text=True, timeout=60,
                           env=harness.sanitizer_env(dict(os.environ), self.tmp))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("OK", p.stdout)
        self.assertEqual(warnings(p.stderr), [], p.stderr)

    def test_3_printed_commands_issue(self):
        """Each printed command runs in order (the kur renews the certificate of the first) and issues
        what it asks for; then the printed `openssl x509` shows the first one."""
        for block in self.printed_commands():
            p = self.paste(block)
            self.assertEqual(p.returncode, 0, "%s\n%s%s" % (block, p.stdout, p.stderr))
        want = {"device1": ["DNS:device1.demo.example"], "device2": [], "device3": [],
                "device1-new": ["DNS:device1.demo.example"]}
        for name, sans in want.items():
            subject, got = harness.cert_info(self.demo / ("%s.pem" % name))
            cn = name.split("-")[0]
            self.assertEqual((subject, sorted(got)), ("CN=%s,O=cmpgw demo" % cn, sans))
            harness.verify_chain(self.demo / ("%s.pem" % name), self.demo / "ca.pem", self.demo / "issuing.pem")
        look = re.search(r"(?m)^# Look at a result:\n(.*)$", self.out_path.read_text())
        self.assertIsNotNone(look)
        p = self.paste(look.group(1))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("DNS:device1.demo.example", p.stdout)

    def enrol_outside(self, name, subject, sans):
        d = self.demo
        harness.genkey(d / ("%s.key" % name))
        return subprocess.run(
            ["openssl", "cmp", "-cmd", "ir", "-server", "127.0.0.1:%d" % self.port, "-path", "pki/cmp",
             "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem",
             "-tls_key", d / "client.key", "-cert", d / "client.pem", "-key", d / "client.key",
             "-newkey", d / ("%s.key" % name), "-subject", subject, "-certout", d / ("%s.pem" % name)]
            + (["-sans", sans] if sans else []), capture_output=True, text=True, timeout=harness.CLIENT_TIMEOUT)

    def test_4_names_outside_the_bounds_are_refused(self):
        """The twins of the printed first command, one name each outside the role's bounds."""
        cases = [("outside-dns", "/O=cmpgw demo/CN=device-outside-dns", "device1.example",
                  "DNS name device1.example is not allowed on role default (allowed: *.demo.example)"),
                 ("outside-ip", "/O=cmpgw demo/CN=device-outside-ip", "192.0.2.1",
                  "subjectAltName type ip is not allowed on role default"),
                 ("outside-subject", "/O=other/CN=device-outside-subject", "outside-subject.demo.example",
                  "requested subject /O=other/CN=device-outside-subject is not allowed on role default"),
                 # a host name as the CN, which TLS clients would take as the host of a certificate
                 ("outside-cn", "/O=cmpgw demo/CN=host.demo.example", "host.demo.example",
                  "requested subject /O=cmpgw demo/CN=host.demo.example is not allowed on role default"),
                 # without a dot too, without a DNS SAN: a server certificate for https://localhost/
                 ("outside-cn-bare", "/O=cmpgw demo/CN=localhost", None,
                  "common name localhost is not allowed on role default (allowed: device*)")]
        for name, subject, sans, why in cases:
            with self.subTest(name):
                p = self.enrol_outside(name, subject, sans)
                out = p.stdout + p.stderr  # openssl cmp prints the server's answer to either
                self.assertNotEqual(p.returncode, 0, out)
                self.assertIn("badCertTemplate", out)
                self.assertIn(why, out)
                self.assertFalse((self.demo / ("%s.pem" % name)).exists())
        # and the same request inside the bounds issues: the refusals above are for the names alone
        p = self.enrol_outside("inside", "/O=cmpgw demo/CN=device-inside", "inside.demo.example")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_5_a_certificate_of_the_demo_is_revoked(self):
        """The holder of the third printed command's certificate revokes it, and a second rr finds it
        revoked. Before the demo's issuer kept a store, every rr was refused: it could revoke nothing."""
        d = self.demo
        rr = ["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.port, "-path", "pki/cmp",
              "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem",
              "-tls_key", d / "client.key", "-cert", d / "device3.pem", "-key", d / "device3.key",
              "-oldcert", d / "device3.pem", "-revreason", "1"]
        p = subprocess.run(rr, capture_output=True, text=True, timeout=harness.CLIENT_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertTrue(any((d / "store" / "revoked").iterdir()))
        p = subprocess.run(rr, capture_output=True, text=True, timeout=harness.CLIENT_TIMEOUT)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)


class OlderDemo(unittest.TestCase):

    def test_rewrites_the_configuration_of_an_older_demo(self):
        """A build/demo from before the role's bounds gets the new configuration over the same PKI, so
        that the printed commands and the configuration agree."""
        with tempfile.TemporaryDirectory(prefix="cmpgw-e2e-") as tmp:
            d = Path(tmp) / "demo"
            script = harness.REPO / "deploy" / "demo-pki.sh"
            harness.run(["bash", script, d])
            ca = (d / "ca.pem").read_bytes()
            cfg = json.loads((d / "cmpgw.json").read_text())
            cfg["roles"]["default"].pop("authorization")
            (d / "cmpgw.json").write_text(json.dumps(cfg, indent=2))
            harness.run(["bash", script, d])
            self.assertEqual((d / "ca.pem").read_bytes(), ca)
            role = json.loads((d / "cmpgw.json").read_text())["roles"]["default"]
            self.assertEqual(role["authorization"]["allowed_dns_names"], ["*.demo.example"])
            # from before its CNs were named too: the demo role grants serverAuth, and a TLS client takes
            # CN=localhost as the host name of a certificate without DNS SANs
            cfg = json.loads((d / "cmpgw.json").read_text())
            cfg["roles"]["default"]["authorization"].pop("allowed_common_names")
            (d / "cmpgw.json").write_text(json.dumps(cfg, indent=2))
            harness.run(["bash", script, d])
            self.assertEqual((d / "ca.pem").read_bytes(), ca)
            role = json.loads((d / "cmpgw.json").read_text())["roles"]["default"]
            self.assertEqual(role["authorization"]["allowed_common_names"], ["device*"])
            # from before its issuer kept a store: none of its certificates could be revoked
            cfg = json.loads((d / "cmpgw.json").read_text())
            del cfg["upstreams"]["local"]["store"]
            (d / "cmpgw.json").write_text(json.dumps(cfg, indent=2))
            (d / "store").rmdir()
            harness.run(["bash", script, d])
            self.assertEqual((d / "ca.pem").read_bytes(), ca)
            self.assertEqual(json.loads((d / "cmpgw.json").read_text())["upstreams"]["local"]["store"], "store")
            self.assertEqual((d / "store").stat().st_mode & 0o777, 0o700)
            # and a current one is left as it is
            (d / "cmpgw.json").write_text((d / "cmpgw.json").read_text() + "\n")
            before = (d / "cmpgw.json").read_text()
            harness.run(["bash", script, d])
            self.assertEqual((d / "cmpgw.json").read_text(), before)


class PackagedExample(unittest.TestCase):

    def test_check_finds_no_warning(self):
        """deploy/examples/cmpgw.json, with the files it names made by deploy/demo-pki.sh, as
        tests/e2e/test_deb.py checks the packaged copy: its absolute paths (the store, the revoked file,
        the audit log) move into the scratch directory, and "run_as_root" takes the place of "user":
        "cmpgw", a user that exists only where the package is installed. Before its role named the
        hosts it may issue for, every start of a packaged gateway warned that the role issues
        certificates naming any host a client asks for."""
        with tempfile.TemporaryDirectory(prefix="cmpgw-e2e-") as tmp:
            etc = Path(tmp) / "etc"
            harness.run(["bash", harness.REPO / "deploy" / "demo-pki.sh", etc])
            cfg = json.loads((harness.REPO / "deploy" / "examples" / "cmpgw.json").read_text())
            self.assertEqual(cfg.pop("user"), "cmpgw")
            cfg["run_as_root"] = True
            var = Path(tmp) / "var"
            (var / "local").mkdir(parents=True)
            self.assertEqual(cfg["upstreams"]["local"]["store"], "/var/lib/cmpgw/local")
            cfg["upstreams"]["local"]["store"] = str(var / "local")
            self.assertEqual(cfg["cmp"]["revoked_file"], "/var/lib/cmpgw/revoked")
            cfg["cmp"]["revoked_file"] = str(var / "revoked")
            self.assertEqual(cfg["audit"]["file"], "/var/log/cmpgw/audit.log")
            cfg["audit"]["file"] = str(var / "audit.log")
            config = etc / "cmpgw.json"
            config.write_text(json.dumps(cfg, indent=2))
            p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(config)], cwd=etc,
                               capture_output=True, text=True, timeout=60,
                               env=harness.sanitizer_env(dict(os.environ), etc))
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("%s: OK" % config, p.stdout)
            self.assertEqual(warnings(p.stderr), [], p.stderr)

    def test_every_example_checks_without_warning(self):
        """Every deploy/examples/*.json (the package ships them all as /usr/share/doc/cmpgw/examples, and
        docs/vault.md and docs/cfssl.md tell users to run theirs), with the files it names made as its guide
        makes them: `cmpgw check` passes without a warning. Before their roles named the hosts they may issue
        for, vault.json, cfssl.json, cmp-ra.json and 3gpp.json each warned that a role issues certificates
        naming any host a client asks for, and vault.json's default path signed any CSR verbatim."""
        with tempfile.TemporaryDirectory(prefix="cmpgw-e2e-") as tmp:
            etc, var = Path(tmp) / "etc", Path(tmp) / "var"
            harness.run(["bash", harness.REPO / "deploy" / "demo-pki.sh", etc])
            make_example_files(etc)
            names = sorted(f.name for f in EXAMPLES.glob("*.json"))
            self.assertIn("vault.json", names)
            for name in names:
                with self.subTest(example=name):
                    cfg = json.loads((EXAMPLES / name).read_text())
                    if "user" in cfg:  # a user that exists only where the package is installed
                        self.assertEqual(cfg.pop("user"), "cmpgw")
                    cfg["run_as_root"] = True
                    config = etc / name
                    config.write_text(json.dumps(relocated(cfg, var), indent=2))
                    p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(config)], cwd=etc,
                                       capture_output=True, text=True, timeout=60,
                                       env=harness.sanitizer_env(dict(os.environ), etc))
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                    self.assertIn("%s: OK" % config, p.stdout)
                    self.assertEqual(warnings(p.stderr), [], p.stderr)


def make_example_files(etc):
    """The files deploy/examples/*.json name besides the demo's (deploy/demo-pki.sh), in |etc|, as their guides
    make them: Vault's issuers, token and CRMF delegate (docs/vault.md), cfssl's issuer and authsign key
    (docs/cfssl.md), the CMP CA's certificate (docs/cmp-relay.md), the vendor root and the allow-list of
    base stations (docs/3gpp.md)."""
    vaultenv.VaultApi(etc).make_pki()
    vaultenv.sign_cert(etc, "vault-delegate", "/O=cmpgw e2e/CN=cmpgw delegate issuer", "vault-ca",
                       vaultenv.ca_ext() + "nameConstraints=critical,permitted;DNS:example.com\n")
    (etc / "vault-delegate-chain.pem").write_text((etc / "vault-ca.pem").read_text() + (etc / "ca.pem").read_text())
    vaultenv.sign_cert(etc, "cfssl-ca", "/O=example/CN=cfssl CA", "ca", vaultenv.ca_ext(), days=365)
    (etc / "cfssl-issuer.pem").write_text((etc / "cfssl-ca.pem").read_text() + (etc / "ca.pem").read_text())
    (etc / "cfssl.authkey").write_text(os.urandom(16).hex() + "\n")
    (etc / "cfssl.authkey").chmod(0o600)
    for name, subject in (("upstream-ca", "/O=example/CN=upstream CMP CA"), ("vendor-root", "/O=Vendor X/CN=root")):
        harness.genkey(etc / ("%s.key" % name))
        harness.run(["openssl", "req", "-x509", "-new", "-key", etc / ("%s.key" % name), "-subj", subject,
                     "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", etc / ("%s.pem" % name)])
    (etc / "enb.allow").write_text("trust:vendor /O=Vendor X/CN=enb-000123\n")


def relocated(cfg, var):
    """|cfg| with each absolute path under /var (a store, the revoked file, the audit log) moved into |var|,
    a store made there as the package makes it."""
    if isinstance(cfg, dict):
        out = {k: relocated(v, var) for k, v in cfg.items()}
        if isinstance(out.get("store"), str) and out["store"] != cfg["store"]:
            Path(out["store"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        return out
    if isinstance(cfg, list):
        return [relocated(v, var) for v in cfg]
    if isinstance(cfg, str) and cfg.startswith("/var/"):
        (var / cfg[1:]).parent.mkdir(parents=True, exist_ok=True)
        return str(var / cfg[1:])
    return cfg


if __name__ == "__main__":
    unittest.main(verbosity=2)
