"""A full worker queue answers 503 with Retry-After at once (docs/design.md D4), while the requests
that got a place are served."""
import subprocess
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

PARALLEL = 5


class QueueFull(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["workers"] = 1
        cfg["queue_depth"] = 1
        cfg["upstreams"]["local"]["delay"] = "2s"  # each sign call holds the one worker 2 s

    def test_queue_full_503(self):
        ders = [self.gw.make_request("burst%d" % i, subject="/CN=burst%d" % i) for i in range(PARALLEL)]
        procs = []
        for i, der in enumerate(ders):
            d = self.gw.dir
            argv = ["curl", "-sS", "--http1.1", "--cacert", d / "ca.pem", "--cert", d / "client.pem",
                    "--key", d / "client.key", "-H", "Content-Type: application/pkixcmp",
                    "--data-binary", "@%s" % der, "-D", d / ("burst%d.hdr" % i), "-o", d / ("burst%d.body" % i),
                    "--max-time", str(harness.CLIENT_TIMEOUT), self.gw.url()]
            procs.append(subprocess.Popen([str(a) for a in argv], stderr=subprocess.PIPE))
        for p in procs:
            _, err = p.communicate(timeout=harness.CLIENT_TIMEOUT + 10)
            self.assertEqual(p.returncode, 0, err)
        results = [harness.CurlResult((self.gw.dir / ("burst%d.hdr" % i)).read_text(),
                                      (self.gw.dir / ("burst%d.body" % i)).read_bytes()) for i in range(PARALLEL)]
        busy = [r for r in results if r.status == 503]
        ok = [r for r in results if r.status == 200]
        self.assertTrue(busy, results)
        self.assertTrue(ok, results)
        self.assertEqual(len(busy) + len(ok), PARALLEL, results)
        for r in busy:
            self.assertRegex(r.headers.get("retry-after", ""), r"^[0-9]+$", r)
        for r in ok:
            self.assertEqual(r.headers.get("content-type"), "application/pkixcmp", r)
            ans = harness.decode_cmp(r.body)
            self.assertEqual((ans.body_type, ans.status), ("ip", 0), ans)


if __name__ == "__main__":
    harness.main()
