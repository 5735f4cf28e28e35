"""Two gateway instances sharing their replay keys and open transactions in a real redis-server ("cmp.state":
"redis"; docs/operations.md, "Several instances"): a request replayed to the second instance is refused
(transactionIdInUse), the per-identity cap of open transactions holds across both, a transaction's certConf on
its own instance still completes; with Redis stopped new requests are refused with systemUnavail and a clear
text, and after a restart (scripts flushed: NOSCRIPT) both serve again; a Redis that could evict keys is
refused at start.
"""
import json
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
import redisenv  # noqa: E402


class SharedState(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfg["cmp"] = {"max_transactions_per_identity": 2, "state": cls.redis.state()}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gw2 = cls.gw.twin(cls.gw.dir.parent / "pki2")
        cls.gw2.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw2.stop()
        finally:
            super().tearDownClass()

    def issued(self, gw):
        path = gw.dir / "audit.log"
        return [r for r in (json.loads(l) for l in path.read_text().splitlines())
                if r.get("event") == "issued"] if path.exists() else []

    def post(self, gw, der):
        res = gw.curl(data=der)
        self.assertEqual(res.status, 200, res)
        return harness.decode_cmp(res.body)

    def test_replay_to_the_other_instance_refused(self):
        der = self.gw.make_request("replayed")
        self.assertEqual(self.post(self.gw, der).body_type, "ip")
        before = len(self.issued(self.gw2))
        again = self.post(self.gw2, der)
        self.assert_cmp_error(again, ("ip", "error"), "transactionIdInUse", "replayed message")
        self.assertEqual(len(self.issued(self.gw2)), before)  # the second instance issued nothing

    def test_cap_of_open_transactions_across_instances(self):
        """max_transactions_per_identity 2: two open on the first instance, a third on the second refused.
        PBM-protected, so that the transactions left open count against another identity than the tests'."""
        ders = [self.gw.make_request("open%d" % i, auth="pbm", extra=()) for i in range(3)]  # no certConf sent
        for der in ders[:2]:
            self.assertEqual(self.post(self.gw, der).body_type, "ip")
        third = self.post(self.gw2, ders[2])
        self.assert_cmp_error(third, ("ip", "error"), "systemUnavail", "too many open transactions for pbm:")
        # a transaction confirmed on its own instance frees its place everywhere
        self.redis.command("FLUSHDB")  # (the two above stay open until their TTL: start clean)
        res = self.gw2.cmp("ir", "confirmed", newkey=self.newkey("confirmed"), subject="/CN=confirmed")
        self.assertEqual([a.body_type for a in res.answers], ["ip", "pkiconf"])
        self.assertEqual(self.redis.command("KEYS", "cmpgw:txn:*"), "*0")

    def readyz(self, gw, want_status, wait=10):
        """Waits until /readyz answers |want_status|; its JSON."""
        deadline = time.monotonic() + wait
        while True:
            status, body = harness.admin(gw, "/readyz")
            if status == want_status or time.monotonic() > deadline:
                self.assertEqual(status, want_status, body)
                return json.loads(body)
            time.sleep(0.2)

    def test_redis_down_then_back(self):
        self.assertEqual(self.readyz(self.gw, 200)["checks"]["shared_state"], "ok")
        self.redis.stop()
        try:
            # not ready while Redis is away, without any request asking (the pinger)
            self.assertIn("unreachable", self.readyz(self.gw2, 503)["checks"]["shared_state"])
            der = self.gw.make_request("down")
            ans = self.post(self.gw, der)
            self.assert_cmp_error(ans, ("ip", "error"), "systemUnavail", "cluster")
            lines = [l for l in self.gw.log_lines() if l.get("event") == "shared_state_unavailable"]
            self.assertTrue(lines and "unreachable" in lines[-1]["reason"], lines)
        finally:
            self.redis.start()
        self.readyz(self.gw2, 200)
        self.redis.command("SCRIPT", "FLUSH")  # as after a restart without the scripts: EVAL loads them
        for gw, name in ((self.gw, "back1"), (self.gw2, "back2")):
            res = gw.cmp("ir", name, newkey=self.newkey(name), subject="/CN=%s" % name,
                         extra=("-implicit_confirm",))
            self.assertEqual(res.first.body_type, "ip")

    def test_redis_that_evicts_refused_at_start(self):
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        try:
            gw3 = self.gw.twin(self.gw.dir.parent / "pki3")
            rc, err = gw3.start_refused()
        finally:
            self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.assertNotEqual(rc, 0)
        self.assertIn("maxmemory-policy is allkeys-lru, not noeviction", err)

    def test_local_store_must_be_shared(self):
        """A local issuer's revocations must reach every instance: an unshared store is refused."""
        cfg = json.loads(json.dumps(self.gw.config))
        (self.gw.dir / "store").mkdir(exist_ok=True)
        cfg["upstreams"]["local"]["store"] = "store"
        path = self.gw.dir / "cluster-store.json"
        for shared, want_rc in ((True, 0), (False, 1)):
            cfg["upstreams"]["local"]["shared_store"] = shared
            path.write_text(json.dumps(cfg))
            p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)], capture_output=True)
            self.assertEqual(p.returncode, want_rc, p.stderr)
        self.assertIn(b"$.upstreams.local.store: with \"cmp.state\" \"redis\" every instance must see the same "
                      b"store", p.stderr)


if __name__ == "__main__":
    harness.main()
