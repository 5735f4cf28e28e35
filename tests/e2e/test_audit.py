"""The audit log with a real gateway and `openssl cmp`: one "issued" line per certificate, its
serial the certificate's and its fields the configured audit_fields; SIGUSR1 reopens the file after a rename
(rotation); `cmpgw check` refuses a directory others may write; and when the log cannot be written,
nothing is issued: the CA is not even asked."""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import test_admin  # noqa: E402

FIELDS = ["common_name", "alt_names", "ip_sans", "key_type"]


def records(path, strict=False):
    """|path|'s records; |strict| for a file the gateway no longer appends to (harness.whole_lines)."""
    return harness.json_lines(path, strict=strict)


def serial_of(cert):
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-serial"]).stdout.decode().strip()
    return int(out.split("=", 1)[1], 16)


class Audit(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["audit"] = {"file": "audit.log", "audit_fields": FIELDS}

    def issued(self, path=None, strict=False):
        return [r for r in records(path or self.gw.dir / "audit.log", strict) if r["event"] == "issued"]

    def test_one_issued_line_per_certificate(self):
        d = self.gw.dir
        before = len(self.issued())
        certs = []
        for i, (cmd, auth) in enumerate((("ir", "sig"), ("cr", "pbm"), ("ir", "pbm"))):
            res = self.gw.cmp(cmd, "aud%d" % i, auth=auth, newkey=self.newkey("aud%d" % i),
                              subject="/CN=audit-%d" % i, extra=("-sans", "a%d.example.com,127.0.0.%d" % (i, i + 1)))
            certs.append((res.cert, i, auth))
        key = self.newkey("aud10")
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=audit-p10", "-out", d / "aud10.csr"])
        res = self.gw.cmp("p10cr", "aud10", extra=("-csr", d / "aud10.csr"))
        lines = self.issued()
        self.assertEqual(len(lines), before + 4, lines)
        by_serial = {int(r["serial"], 16): r for r in lines}
        self.assertEqual(len(by_serial), len(lines))  # one line per certificate
        for cert, i, auth in certs:
            r = by_serial[serial_of(cert)]
            self.assertEqual(r["common_name"], "audit-%d" % i)
            self.assertIn("a%d.example.com" % i, r["alt_names"])
            self.assertIn("127.0.0.%d" % (i + 1), r["ip_sans"])
            self.assertEqual(r["key_type"], "ec")
            self.assertEqual(r["role"], "default")
            self.assertEqual(r["upstream"], "local")
            self.assertEqual(r["status"], "accepted")
            self.assertEqual(r["identity"], "/O=cmpgw demo/CN=demo-client" if auth == "sig" else "pbm:demo-device")
            self.assertNotIn("uri_sans", r)  # not configured
        p10 = by_serial[serial_of(res.cert)]
        self.assertEqual((p10["body_type"], p10["common_name"]), ("p10cr", "audit-p10"))
        # each issued certificate was announced before the upstream call and confirmed after it: in the file,
        # its transaction's intent line comes first, then its issued line, then its confirmed line
        events = [(r["event"], r.get("tid")) for r in records(d / "audit.log")]
        for tid in {r["tid"] for r in lines[before:]}:
            at = [[i for i, ev in enumerate(events) if ev == (e, tid)] for e in ("intent", "issued", "confirmed")]
            self.assertEqual([len(a) for a in at], [1, 1, 1], (tid, events))
            self.assertLess(at[0][0], at[1][0], (tid, events))
            self.assertLess(at[1][0], at[2][0], (tid, events))

    def test_sigusr1_reopens_after_rename(self):
        d = self.gw.dir
        self.gw.cmp("ir", "rot1", newkey=self.newkey("rot1"), subject="/CN=before-rotation")
        os.rename(d / "audit.log", d / "audit.log.1")
        self.gw.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not (d / "audit.log").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        res = self.gw.cmp("ir", "rot2", newkey=self.newkey("rot2"), subject="/CN=after-rotation")
        new = [r for r in self.issued(d / "audit.log") if r.get("common_name") == "after-rotation"]
        old = [r for r in self.issued(d / "audit.log.1", strict=True) if r.get("common_name") == "after-rotation"]
        self.assertEqual(len(new), 1)
        self.assertEqual(int(new[0]["serial"], 16), serial_of(res.cert))
        self.assertEqual(old, [])
        self.assertTrue(any(r.get("common_name") == "before-rotation"
                            for r in self.issued(d / "audit.log.1", strict=True)))

    def test_sigusr1_during_reloads(self):
        """SIGUSR1 while reloads run (POST /reload, on a thread of its own): each reload keeps the open log
        (it checks the descriptor a reopen replaces, under the log's lock), each reopen takes, and every
        record lands in the file at the path. ThreadSanitizer reported the unlocked check (at the stop)."""
        d = self.gw.dir
        for i in range(6):
            done = {}
            t = threading.Thread(target=lambda: done.update(r=harness.admin(self.gw, "/reload", "POST")))
            t.start()
            for _ in range(4):
                self.gw.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.02)
            t.join(60)
            self.assertEqual(done["r"][0], 200, done)
        res = self.gw.cmp("ir", "usr1", newkey=self.newkey("usr1"), subject="/CN=after-reopens")
        new = [r for r in self.issued(d / "audit.log") if r.get("common_name") == "after-reopens"]
        self.assertEqual([int(r["serial"], 16) for r in new], [serial_of(res.cert)])

    def test_check_refuses_a_directory_others_may_write(self):
        """`cmpgw check` refuses what the start and a reopen refuse: a directory where others could plant
        a link at the log's path."""
        d = self.gw.dir
        mode = d.stat().st_mode & 0o7777
        d.chmod(0o777)
        try:
            check = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(self.gw.config_path)],
                                   capture_output=True, text=True, env=self.gw.env())
        finally:
            d.chmod(mode)
        self.assertEqual(check.returncode, 78, check.stdout + check.stderr)
        self.assertIn('audit.file: the directory "%s" is writable by group or others without the sticky bit '
                      '(mode 0777): make it 0755' % d, check.stderr)

    def test_check_refuses_a_directory_named_by_a_link(self):
        """`cmpgw check` refuses a log whose directory is a symbolic link, which whoever may replace it
        could point at a directory of their choice; the same log named by the directory itself passes."""
        d = self.gw.dir
        (d / "logs").mkdir(mode=0o700)
        (d / "logs-link").symlink_to(d / "logs")
        cfg = json.loads(self.gw.config_path.read_text())
        results = {}
        for name in ("logs-link", "logs"):
            cfg["audit"]["file"] = str(d / name / "audit.log")
            path = d / ("check-%s.json" % name)
            path.write_text(json.dumps(cfg))
            results[name] = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)],
                                           capture_output=True, text=True, env=self.gw.env())
        self.assertEqual(results["logs-link"].returncode, 78, results["logs-link"].stderr)
        self.assertIn('audit.file: the directory "%s" is a symbolic link to "%s": name the directory itself'
                      % (d / "logs-link", (d / "logs").resolve()), results["logs-link"].stderr)
        self.assertEqual(results["logs"].returncode, 0, results["logs"].stdout + results["logs"].stderr)

    def test_zz_unwritable_log_issues_nothing(self):
        # last (zz): the log of this gateway is broken for good afterwards
        d = self.gw.dir
        holder, holder_key = self.enrol("holder-no-audit")  # revoked below, once the log is broken
        harness.audit_log_full(self.gw)  # every write fails with EFBIG
        calls, seen = self.sign_calls(), len(self.gw.log_lines())
        res = self.gw.cmp("ir", "full", newkey=self.newkey("full"), subject="/CN=no-audit", expect_cert=False)
        self.assertIsNone(res.cert)
        self.assert_cmp_error(res.last, ("ip",), "systemUnavail",
                              "the audit log cannot be written; nothing was issued")
        self.assertEqual(res.last.status_strings, ["the audit log cannot be written; nothing was issued"])
        # what the client cannot see: the CA was never asked (an intent whose write failed was only logged, or
        # one written after the sign call, would leave a certificate the log does not announce)
        self.assertEqual(self.sign_calls(), calls)
        # the records attempted were its intent and its refusal, both lost (logged), none on record
        lost = [(l.get("record"), l.get("tid")) for l in self.gw.log_lines()[seen:]
                if l.get("event") == "audit_write_failed"]
        self.assertEqual([r for (r, _) in lost], ["intent", "rejected"], lost)
        self.assertEqual(lost[0][1], lost[1][1], lost)
        self.assertEqual([r for r in records(d / "audit.log.kept", strict=True) if r.get("tid") == lost[0][1]], [])
        # nor is a certificate revoked: the rr's intent cannot be written, so the CA is not asked either
        rsp = d / "holder-no-audit-rr.rsp.der"
        harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path", "pki/cmp",
                     "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert",
                     d / "client.pem", "-tls_key", d / "client.key", "-oldcert", holder, "-cert", holder,
                     "-key", holder_key, "-revreason", "1", "-rspout", rsp], cwd=d, check=False)
        rp = harness.decode_cmp(rsp.read_bytes())
        self.assert_cmp_error(rp, ("rp",), "systemUnavail")
        self.assertEqual(rp.status_strings, ["the audit log cannot be written; nothing was revoked"])

    def sign_calls(self):
        """The sign calls to any upstream counted on /metrics so far, whatever their result."""
        status, body = harness.admin(self.gw, "/metrics")
        self.assertEqual(status, 200, body)
        return test_admin.total(test_admin.samples(body), "cmpgw_upstream_sign_calls_total")


if __name__ == "__main__":
    harness.main()
