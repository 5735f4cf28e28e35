"""make deb: deploy/deb.sh builds the Debian package (the release build, whichever build directory
this test runs in); lintian finds no error in it; it holds the gateway, the units, the manual pages,
the example configuration as a conffile and the sysusers file; its maintainer scripts create the
user and enable the service without starting it; the extracted gateway finds the extracted example
configuration valid, and the extracted unit passes `systemd-analyze verify` (silent) and
`systemd-analyze security --offline=true --threshold=30`. The manual pages render without a
warning and name every option of `cmpgw --help` and every top-level key of the configuration."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

# The package is built once for the whole module; from scratch, in well under a minute on one core.
BUILD_TIMEOUT = 540
TOOLS = ("dpkg-buildpackage", "dh", "dpkg-deb", "lintian", "systemd-analyze", "man", "openssl", "readelf")

# What the example configuration names in /etc/cmpgw, all made by deploy/demo-pki.sh.
EXAMPLE_FILES = ("server.pem", "server.key", "ca.pem", "signer.pem", "signer.key", "issuing.pem",
                 "issuing.key", "pbm.secret")


class Package(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            raise harness.Failure("%s not found: deploy/deps.sh installs it" % ", ".join(missing))
        # one compiler at a time: the rest of the suite runs beside this test (ctest -j)
        env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=1")
        p = harness.run(["bash", harness.REPO / "deploy" / "deb.sh", harness.BUILD_DIR], timeout=BUILD_TIMEOUT,
                        env=env)
        cls.deb = Path(p.stdout.decode().strip().splitlines()[-1])
        cls.tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
        cls.root = cls.tmp / "root"
        harness.run(["dpkg-deb", "-x", cls.deb, cls.root])
        cls.control = cls.tmp / "control"
        harness.run(["dpkg-deb", "-e", cls.deb, cls.control])

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "tmp"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_contents(self):
        listed = harness.run(["dpkg-deb", "-c", self.deb]).stdout.decode()
        paths = {line.split()[-1].lstrip(".") for line in listed.splitlines()}
        for want in ("/usr/bin/cmpgw", "/lib/systemd/system/cmpgw.service", "/lib/systemd/system/cmpgw.socket",
                     "/usr/share/man/man8/cmpgw.8.gz", "/usr/share/man/man5/cmpgw.json.5.gz",
                     "/etc/cmpgw/cmpgw.json", "/usr/lib/sysusers.d/cmpgw.conf", "/usr/share/doc/cmpgw/copyright"):
            self.assertIn(want, paths)
        self.assertEqual((self.control / "conffiles").read_text().split(), ["/etc/cmpgw/cmpgw.json"])
        self.assertEqual((self.root / "usr/lib/sysusers.d/cmpgw.conf").read_text().strip(),
                         'u cmpgw - "cmpgw CMP gateway" /var/lib/cmpgw')
        self.assertEqual((self.root / "etc/cmpgw/cmpgw.json").read_bytes(),
                         (harness.REPO / "deploy" / "examples" / "cmpgw.json").read_bytes())

    def test_release_build(self):
        """The packaged gateway is the release build, never the ASan one this test may run in."""
        binary = self.root / "usr" / "bin" / "cmpgw"
        needed = harness.run(["readelf", "-d", binary]).stdout.decode()
        self.assertNotIn("libasan", needed)
        self.assertNotIn("libubsan", needed)
        version = harness.run([binary, "--version"]).stdout.decode().splitlines()[0]
        deb_version = harness.run(["dpkg-deb", "-f", self.deb, "Version"]).stdout.decode().strip()
        self.assertEqual(version, "cmpgw " + deb_version)
        depends = harness.run(["dpkg-deb", "-f", self.deb, "Depends"]).stdout.decode()
        self.assertIn("libssl3 (>= 3.0.22)", depends)

    def test_maintainer_scripts(self):
        postinst = (self.control / "postinst").read_text()
        self.assertIn("systemd-sysusers", postinst)
        self.assertIn("deb-systemd-helper enable 'cmpgw.service'", postinst)
        # not started on installation (the files the example names are not there yet), restarted
        # after an upgrade if it ran; the socket unit is optional and not enabled
        self.assertNotIn("deb-systemd-invoke start", postinst)
        self.assertIn("deb-systemd-invoke try-restart 'cmpgw.service'", postinst)
        # the socket's snippet is the one that enables only what the administrator enabled before
        self.assertIn("deb-systemd-helper debian-installed 'cmpgw.socket'", postinst)
        prerm = (self.control / "prerm").read_text()
        self.assertRegex(prerm, r'"\$1" = remove .*\n\s*deb-systemd-invoke stop cmpgw.socket cmpgw.service')

    def test_lintian(self):
        p = subprocess.run(["lintian", "--fail-on", "error", str(self.deb)], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotRegex(p.stdout, r"(?m)^E: ", p.stdout)

    def test_example_configuration_checks(self):
        """The packaged /etc/cmpgw/cmpgw.json, with the files it names, is valid for the packaged gateway.
        Its absolute paths (the store, the revoked file, the audit log) move into the scratch tree. "user": "cmpgw" goes:
        that user exists only where the package is installed, and `cmpgw check` run as root with "user"
        checks as that user; "run_as_root" takes its place, since this test runs as root."""
        pki = self.tmp / "pki"
        harness.run(["bash", harness.REPO / "deploy" / "demo-pki.sh", pki])
        etc = self.root / "etc" / "cmpgw"
        for name in EXAMPLE_FILES:
            shutil.copy(pki / name, etc / name)
        config = etc / "cmpgw.json"
        cfg = json.loads(config.read_text())
        self.assertEqual(cfg.pop("user"), "cmpgw")
        cfg["run_as_root"] = True
        store = self.root / "var" / "lib" / "cmpgw" / "local"
        self.assertEqual(cfg["upstreams"]["local"]["store"], "/var/lib/cmpgw/local")
        store.mkdir(parents=True)
        cfg["upstreams"]["local"]["store"] = str(store)
        self.assertEqual(cfg["cmp"]["revoked_file"], "/var/lib/cmpgw/revoked")
        cfg["cmp"]["revoked_file"] = str(store.parent / "revoked")
        self.assertEqual(cfg["audit"]["file"], "/var/log/cmpgw/audit.log")
        (self.root / "var" / "log" / "cmpgw").mkdir(parents=True)
        cfg["audit"]["file"] = str(self.root / "var" / "log" / "cmpgw" / "audit.log")
        config.write_text(json.dumps(cfg, indent=2))
        p = harness.run([self.root / "usr" / "bin" / "cmpgw", "check", "-c", config], check=False)
        out = p.stdout.decode() + p.stderr.decode()
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("%s: OK" % config, p.stdout.decode())

    def test_unit_verifies(self):
        with tempfile.TemporaryDirectory() as d:
            # verify checks that ExecStart exists: point it at the packaged binary
            unit = Path(d) / "cmpgw.service"
            unit.write_text((self.root / "lib/systemd/system/cmpgw.service").read_text()
                            .replace("/usr/bin/cmpgw", str(self.root / "usr/bin/cmpgw")))
            v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
            self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ""))
            s = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=30", str(unit)],
                               capture_output=True, text=True)
            self.assertEqual(s.returncode, 0, s.stdout + s.stderr)
            sock = Path(d) / "cmpgw.socket"
            sock.write_text((self.root / "lib/systemd/system/cmpgw.socket").read_text())
            v = subprocess.run(["systemd-analyze", "verify", str(sock)], capture_output=True, text=True)
            self.assertEqual((v.returncode, v.stdout + v.stderr), (0, ""))

    def man(self, page):
        """The page rendered as lintian renders it; fails on any warning of groff or man."""
        env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")
        p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                           capture_output=True, text=True, env=env)
        self.assertEqual((p.returncode, p.stderr), (0, ""), page)
        return p.stdout

    def test_manual_pages(self):
        cmpgw8 = self.root / "usr/share/man/man8/cmpgw.8.gz"
        json5 = self.root / "usr/share/man/man5/cmpgw.json.5.gz"
        self.man(cmpgw8)
        self.man(json5)
        # every option of the usage text is in cmpgw(8)
        source = (harness.REPO / "docs" / "man" / "cmpgw.8").read_text()
        usage = harness.run([self.root / "usr/bin/cmpgw", "--help"]).stdout.decode()
        options = re.findall(r"^\s+(-\w), (--[\w-]+)", usage, re.M)
        self.assertGreaterEqual(len(options), 4, usage)
        for short, long in options:
            self.assertIn("%s, %s" % (short.replace("-", "\\-"), long.replace("-", "\\-")), source)
        for command in ("cmpgw check", "cmpgw inventory"):
            self.assertIn(command, usage)
            self.assertIn(command, source)
        # every top-level key of the reference is in cmpgw.json(5)
        reference = (harness.REPO / "docs" / "configuration.md").read_text()
        top = reference.split("\n## Top level\n", 1)[1].split("\n## ", 1)[0]
        keys = re.findall(r"^\| `(\w+)` \|", top, re.M)
        self.assertGreaterEqual(len(keys), 20, top)
        summary = (harness.REPO / "docs" / "man" / "cmpgw.json.5").read_text().replace("\\-", "-")
        for key in keys:
            self.assertRegex(summary, r"\b%s\b" % re.escape(key))


if __name__ == "__main__":
    unittest.main()
