"""Abuse of the local issuer's store and CRL, with the real gateway over TLS (docs/security.md).

A crash between the temporary write and the link of a revocation used to leave a fixed temporary name
that made every later revocation of that serial fail; two rr of one serial at once collided the same way.
Now temporary names are unique, leftovers are removed at start, and the second of two concurrent rr
answers certRevoked. The CRL number and thisUpdate are kept on disk: a restart with the clock stepped
back two days (libfaketime) makes neither go backwards (RFC 5280 §5.2.3).

One identity cannot fill the replay cache: past its share (cmp.max_recent_per_identity) it alone is
refused, and another identity is still served.
"""
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

RA_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo CMP signer"  # the demo signer carries id-kp-cmcRA
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def serial_hex(cert):
    out = harness.run(["openssl", "x509", "-in", cert, "-noout", "-serial"]).stdout.decode()
    return out.strip().split("=", 1)[1].lower()


class StoreAndCrl(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        (gw.dir / "store").mkdir(exist_ok=True)
        cfg["upstreams"]["local"]["store"] = "store"
        cfg["roles"]["default"]["authorization"] = {"ra_subjects": [RA_SUBJECT]}

    def enrol(self, name):
        key = self.newkey(name)
        return self.gw.cmp("ir", name, newkey=key, subject="/CN=%s" % name, extra=("-implicit_confirm",)).cert

    def rr_argv(self, name, victim):
        d = self.gw.dir
        return ["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path", "pki/cmp",
                "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem",
                "-tls_key", d / "client.key", "-cert", d / "signer.pem", "-key", d / "signer.key", "-oldcert",
                victim, "-revreason", "4", "-rspout", d / ("%s.rsp.der" % name)]

    def restart(self, extra_env=None):
        self.gw.stop()
        self.gw.start(extra_env)

    def crl(self, name):
        """(CRL number, thisUpdate as a struct_time) of GET /pki/crl/local."""
        r = self.gw.curl(path="/pki/crl/local", tls=None)
        self.assertEqual(r.status, 200, r)
        f = self.gw.dir / ("%s.crl.der" % name)
        f.write_bytes(r.body)
        text = harness.run(["openssl", "crl", "-inform", "DER", "-in", f, "-noout", "-text"]).stdout.decode()
        number = int(re.search(r"X509v3 CRL Number:\s*\n\s*(\d+)", text).group(1))
        last = re.search(r"Last Update: (.+)", text).group(1).strip()
        return number, time.strptime(last, "%b %d %H:%M:%S %Y %Z")

    def test_leftover_temp_file_then_concurrent_rr(self):
        victim = self.enrol("left")
        serial = serial_hex(victim)
        revoked = self.gw.dir / "store" / "revoked"
        revoked.mkdir(exist_ok=True)
        # what a crash between write and link left behind, in the old fixed name and the new pattern
        for name in (".%s.tmp" % serial, ".%s.999.1.0badc0de.tmp" % serial):
            (revoked / name).write_text("time=1 reason=1\n")
            harness.run(["touch", "-d", "1 hour ago", revoked / name])
        self.restart()
        self.assertEqual(sorted(p.name for p in revoked.iterdir()), [])
        self.assertTrue(any(e.get("event") == "store_swept" for e in self.gw.log_lines()))
        # two RAs revoke the same serial at the same moment: one revokes, the other is told it is revoked
        procs = [subprocess.Popen([str(a) for a in self.rr_argv("race%d" % i, victim)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for i in range(2)]
        for p in procs:
            p.communicate(timeout=harness.CLIENT_TIMEOUT)
        answers = sorted(harness.rp_status((self.gw.dir / ("race%d.rsp.der" % i)).read_bytes()) for i in range(2))
        self.assertEqual(answers, [(0, [], []), (2, ["certRevoked"], ["the certificate is already revoked"])])
        self.assertEqual(len([p for p in revoked.iterdir()]), 1)  # one record, no temporary file left

    def test_crl_number_grows_across_a_restart_with_the_clock_back(self):
        before_number, before_update = self.crl("before")
        self.restart({"LD_PRELOAD": FAKETIME, "FAKETIME": "-2d", "DONT_FAKE_MONOTONIC": "1",
                      "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        try:
            after_number, after_update = self.crl("after")
        finally:
            self.restart()  # the other tests run on the real clock
        self.assertGreater(after_number, before_number)
        self.assertGreaterEqual(time.mktime(after_update), time.mktime(before_update))



class ReplayShare(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["cmp"] = {"max_recent_per_identity": 3}

    def test_one_identity_over_its_share(self):
        for i in range(3):
            self.gw.cmp("ir", "share%d" % i, newkey=self.newkey("share%d" % i), subject="/CN=share%d" % i,
                        extra=("-implicit_confirm",))
        over = self.gw.cmp("ir", "share3", newkey=self.newkey("share3"), subject="/CN=share3",
                           extra=("-implicit_confirm",), expect_cert=False)
        self.assert_rejected(over, "systemUnavail",
                             "too many recent transactions from /O=cmpgw demo/CN=demo-client: retry later")
        other = self.gw.cmp("ir", "share-pbm", auth="pbm", newkey=self.newkey("share-pbm"), subject="/CN=share-pbm",
                            extra=("-implicit_confirm",))
        self.assertIsNotNone(other.cert)


if __name__ == "__main__":
    harness.main()
