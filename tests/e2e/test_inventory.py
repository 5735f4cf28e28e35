"""The local issuer's durable store and `cmpgw inventory`, and audit log rotation with SIGUSR1: every
certificate issued is on disk as <serial>.pem before the client gets it and is listed by the inventory;
after the log is renamed and SIGUSR1 sent, new records go to a fresh file and none are lost."""
import datetime
import json
import os
import signal
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402


def serial_of(cert):
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-serial"]).stdout.decode()
    return out.strip().split("=", 1)[1].lower().lstrip("0") or "0"


def norm(serial):
    """Serials as the audit log and the store write them (whole bytes), without leading zeros."""
    return serial.lower().lstrip("0") or "0"


# A name a reader would not read as it is: a C1 control (U+009B, a terminal's CSI), a bidi override,
# a line separator, a tab and a comma (RFC 2253 escapes it); in the dNSName (an IA5String, bytes as they
# come) also a byte not UTF-8 and a NUL.
HOSTILE_CN = "x\u009by\u202ez\u2028w\t,v"
HOSTILE_DNS = b"a\xc2\x9bb\xe2\x80\xaec\xe2\x80\xa8d\xffe\x00f\tg"
FFFD = "\ufffd"


def hostile_cert_pem():
    """A self-signed certificate with HOSTILE_CN and HOSTILE_DNS, its SAN written byte for byte."""
    gn = b"\x82" + bytes([len(HOSTILE_DNS)]) + HOSTILE_DNS
    sans = b"\x30" + bytes([len(gn)]) + gn
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE_CN)])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x5eed).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, sans), False)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def audit_lines(path, strict=False):
    """Every line must be one JSON object; with |strict| (a rotated file) the last one whole too."""
    return [json.loads(line) for line in harness.whole_lines(path, strict=strict)]


class StoreAndRotation(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["audit"] = {"file": "audit.log", "audit_fields": ["common_name", "alt_names", "key_type"]}

    def inventory(self, *extra, check=True):
        """`cmpgw inventory`: (exit code, stdout lines, stderr)."""
        p = harness.run([str(harness.GATEWAY_BIN), "inventory", "-c", str(self.gw.config_path)] + list(extra),
                        cwd=self.gw.dir, check=check, env=self.gw.env())
        return p.returncode, p.stdout.decode().splitlines(), p.stderr.decode()

    def enrol(self, name):
        res = self.gw.cmp("ir", name, newkey=self.newkey(name), subject="/CN=%s" % name,
                          extra=("-implicit_confirm", "-sans", "%s.example" % name))
        return res.cert, serial_of(res.cert)

    def test_hostile_names(self):
        """A name in the store is printed through the shared escaper: what a reader would not see as itself
        is U+FFFD, a control reads as in JSON, and the row keeps its six columns."""
        path = self.gw.dir / "store" / "5eed.pem"
        path.write_bytes(hostile_cert_pem())
        self.addCleanup(path.unlink)
        _, out, _ = self.inventory()
        rows = [line.split("\t") for line in out[1:] if line.startswith("5eed\t")]
        self.assertEqual(len(rows), 1, out)
        self.assertEqual(rows[0][3:], ["CN=x%sy%sz%sw\\t\\\\,v" % (FFFD, FFFD, FFFD),
                                       "DNS:a%sb%sc%sd%se\\u0000f\\tg" % (FFFD, FFFD, FFFD, FFFD), "local"])

    def report(self, audit, *extra):
        """`cmpgw report --audit |audit|`: (exit code, stdout)."""
        p = harness.run([str(harness.GATEWAY_BIN), "report", "-c", str(self.gw.config_path), "--audit", str(audit)]
                        + list(extra), cwd=self.gw.dir, check=False, env=self.gw.env())
        return p.returncode, p.stdout.decode()

    def test_config_refused(self):
        """A configuration `cmpgw inventory` and `cmpgw report` cannot load exits 78 (EX_CONFIG), as `cmpgw
        check` and a start do: no retry mends it. They exited 1, as for a record they cannot read, which
        stays 1 (the twin: an audit log that is not there)."""
        bad = self.gw.dir / "refused.json"
        bad.write_text('{"listeners": [')
        self.addCleanup(bad.unlink)
        for cmd, extra in (("inventory", []), ("report", ["--audit", str(self.gw.dir / "audit.log")])):
            for path in (bad, self.gw.dir / "absent.json"):
                with self.subTest(cmd=cmd, path=path.name):
                    p = harness.run([str(harness.GATEWAY_BIN), cmd, "-c", str(path)] + extra, cwd=self.gw.dir,
                                    check=False, env=self.gw.env())
                    self.assertEqual(p.returncode, 78, p.stderr)
                    self.assertIn(path.name, p.stderr.decode())
        rc, out = self.report(self.gw.dir / "absent-audit.log")
        self.assertEqual(rc, 1, out)

    def test_upstream_not_listed_is_usage(self):
        """`--upstream NAME` naming no upstream, or one without a store, is a wrong argument: 2, as `cmpgw report
        --role` of a role nobody knows. It exited 1, as for a record that could not be read, which a retry
        may mend; nothing is listed."""
        cfg = json.loads(self.gw.config_path.read_text())
        del cfg["upstreams"]["local"]["store"]
        storeless = self.gw.dir / "storeless.json"
        storeless.write_text(json.dumps(cfg))
        self.addCleanup(storeless.unlink)
        for path, name, said in ((self.gw.config_path, "nope", "no upstream named nope"),
                                 (storeless, "local", "upstream local is not a local issuer with a \"store\"")):
            with self.subTest(name=name):
                p = harness.run([str(harness.GATEWAY_BIN), "inventory", "-c", str(path), "--upstream", name],
                                cwd=self.gw.dir, check=False, env=self.gw.env())
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(said, p.stderr.decode())
                self.assertEqual(p.stdout, b"")

    def test_report_hostile_names(self):
        """`cmpgw report` prints the names of an audit log it did not write (an older gateway's, a JSON
        escape that decodes to a control) through the shared escaper, in the table and in --json."""
        role = b"r\xc2\x9b\xe2\x80\xae\xe2\x80\xa8\\u001b\xffx"  # C1, bidi override, U+2028, ESC, not UTF-8
        audit = self.gw.dir / "hostile-audit.log"
        audit.write_bytes(b'{"time":"2026-12-01T10:00:00.000Z","event":"rejected","role":"' + role +
                          b'","upstream":"u\xe2\x80\xa8p","status":"rejection: bad\xe2\x80\xaeTime: no"}\n')
        self.addCleanup(audit.unlink)
        rc, out = self.report(audit)
        self.assertEqual(rc, 0, out)
        lines = out.split("\n")
        self.assertIn("role r%s%s%s\\u001b%sx" % (FFFD, FFFD, FFFD, FFFD), lines)
        self.assertIn("  u%sp%s %10d %10d %10d %12d %10d" % (FFFD, " " * 17, 0, 0, 0, 0, 1), lines)
        self.assertIn("    refused by failInfo: bad%sTime 1" % FFFD, lines)
        rc, out = self.report(audit, "--json")
        self.assertEqual(rc, 0, out)
        roles = json.loads(out)["roles"]
        self.assertEqual(list(roles), ["r%s%s%s\x1b%sx" % (FFFD, FFFD, FFFD, FFFD)])
        up = list(roles.values())[0]["upstreams"]
        self.assertEqual(list(up), ["u%sp" % FFFD])
        self.assertEqual(up["u%sp" % FFFD]["refused"], {"bad%sTime" % FFFD: 1})

    def test_store_inventory_and_rotation(self):
        d = self.gw.dir
        cert1, serial1 = self.enrol("inv-one")
        stored = {norm(p.stem): p for p in (d / "store").glob("*.pem")}
        self.assertIn(serial1, stored)
        self.assertEqual(harness.run(["openssl", "x509", "-in", stored[serial1], "-outform", "DER"]).stdout,
                         harness.run(["openssl", "x509", "-in", cert1, "-outform", "DER"]).stdout)

        # rotation: rename, SIGUSR1, and the next record lands in a fresh audit.log
        log, rotated = d / "audit.log", d / "audit.log.1"
        os.rename(log, rotated)
        self.gw.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(log.exists(), "SIGUSR1 did not reopen the audit log:\n" + self.gw.stderr()[-2000:])
        self.assertEqual(oct(log.stat().st_mode & 0o777), oct(0o600))
        cert2, serial2 = self.enrol("inv-two")
        old, new = audit_lines(rotated, strict=True), audit_lines(log)
        self.assertIn(serial1, [norm(r.get("serial", "")) for r in old])
        self.assertNotIn(serial2, [norm(r.get("serial", "")) for r in old])
        issued = [r for r in new if norm(r.get("serial", "")) == serial2]
        self.assertTrue(issued, new)
        self.assertEqual(issued[0].get("common_name"), "inv-two")
        self.assertNotIn("csr", issued[0])

        # the inventory: header, both certificates by notBefore, subject and SANs
        _, out, _ = self.inventory()
        self.assertEqual(out[0].split("\t"), ["serial", "not_before", "not_after", "subject", "sans", "upstream"])
        rows = [line.split("\t") for line in out[1:]]
        self.assertEqual(sorted(norm(r[0]) for r in rows), sorted([serial1, serial2]))
        # by notBefore; within one second (both were issued quickly), by serial
        self.assertEqual(rows, sorted(rows, key=lambda r: (r[1], r[0])))
        self.assertIn(["CN=inv-two", "DNS:inv-two.example", "local"], [r[3:] for r in rows])
        self.assertIn(["CN=inv-one", "DNS:inv-one.example", "local"], [r[3:] for r in rows])
        self.assertEqual(self.inventory("--upstream", "local")[1], out)

        # adversarial twins: an unknown upstream, and an unreadable record
        rc, _, err = self.inventory("--upstream", "nope", check=False)
        self.assertEqual(rc, 2)
        self.assertIn("no upstream named nope", err)
        (d / "store" / "broken.pem").write_text("not a certificate\n")
        rc, lines, err = self.inventory(check=False)
        self.assertEqual(rc, 1)
        self.assertIn("broken.pem", err)
        self.assertEqual(len(lines), 3)  # the readable ones are still listed
        (d / "store" / "broken.pem").unlink()
        # a file's name is shown through the shared escaper too: an ESC sequence, a bidi override
        hostile = d / "store" / os.fsdecode(b"x\x1b[2J\xe2\x80\xae.pem")
        hostile.write_text("not a certificate\n")
        rc, _, err = self.inventory(check=False)
        hostile.unlink()
        self.assertEqual(rc, 1)
        self.assertIn("x\\u001b[2J\ufffd.pem is not a readable certificate", err)


if __name__ == "__main__":
    harness.main()
