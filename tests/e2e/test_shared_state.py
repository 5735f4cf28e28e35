"""Two gateway instances sharing their state in a real redis-server ("cmp.state": "redis"; docs/operations.md,
"Several instances"). SharedState: a request replayed to the second instance is refused (transactionIdInUse),
the per-identity cap of open transactions holds across both; with Redis stopped new requests are refused with
systemUnavail and /readyz says so, the outage's shared_state_unavailable lines paced (the first at once, then one
in 10 s counting those held back, the end logged with the rest), also while Redis answers lookups and refuses
writes (a replica), and after a restart (scripts flushed: NOSCRIPT) both serve again; a Redis
that could evict keys is refused at start; an unshared local store is refused. Continuation ("mac_key_file"):
the certConf of an ir answered by one instance is answered by the other (context rebuilt from the record),
also after the first was killed -9; an altered record is refused; a forged certConf, or one from another TLS
client, is refused before the record is replayed or leased; so is one on another role's path, an error message
too, which costs the address nothing while a forged one is counted; the client's error message after a reload
that took its signer's trust anchor aborts its transaction (pkiconf, rejected_by_client) on an instance without
its copy as on the one with it; one from another TLS client, or while Redis is down, is refused there after its
record was read once (one log line); a record of an older release (version 2) is continued; an expiry is recorded once (by its owner, or by
one of the others when the owner was killed); `openssl cmp -keep_alive 0` through a real haproxy in round-robin
over three instances puts every certConf on another instance than its ir, with one "issued" and one "confirmed"
per enrolment across the three audit logs. OversizedRecord: a record larger than an instance writes is refused
inside Redis, neither handed over nor leased. PolledContinuation: a request answered `waiting` is polled on
any instance (round-robin through haproxy), delivered by another instance when the first was killed after its
upstream call returned, answered pollRep then "did not answer in time" when it was killed during the call, and
an uncollected certificate's expiry is recorded once across the three. LateResultElsewhere: a certificate whose
upstream call returns after another instance gave up on it at the deadline is withdrawn. RevokedElsewhere: a
certificate of a Vault upstream revoked through one instance is refused by the other at once, though the other
holds a CRL from before the revocation, and a certificate Vault issues under the serial of one revoked through
one instance is not released by the other. RevokedOnceAcrossInstances: one certificate of cfssl revoked through both
instances at the same moment is revoked at cfssl once, the second rr answered certRevoked, also when the shared
revoked set is full (cmp.max_revoked) and cannot keep that revocation. ReplayOnAClockBehind: a request
replayed, once Redis dropped its replay key, to an instance whose clock lags so that its messageTime is
within the window there, is refused badTime on Redis's clock.
MigrationStepBetweenInstances: a request answered `waiting` by an
instance at one migration step is collected on one at another (a rolling reload), from the CA it was sent to.
"""
import calendar
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import cfsslenv  # noqa: E402
import harness  # noqa: E402
import redisenv  # noqa: E402
import test_errors  # noqa: E402
import test_polling  # noqa: E402
import vaultenv  # noqa: E402


class TwoInstances(harness.GatewayTestCase):
    """The class's gateway and a twin over the same PKI and configuration (gw2), one Redis."""

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

    @staticmethod
    def audit(gw, event, cn=None):
        return harness.audit_records(gw, event, cn)

    def readyz(self, gw, want_status, wait=10):
        """Waits until /readyz answers |want_status|; its JSON. Ready again after Redis was down, the
        outage's end is logged (shared_state_recovered)."""
        deadline = time.monotonic() + wait
        while True:
            status, body = harness.admin(gw, "/readyz")
            if status == want_status or time.monotonic() > deadline:
                self.assertEqual(status, want_status, body)
                return json.loads(body)
            time.sleep(0.2)

    @staticmethod
    def outage_lines_due(gw):
        """Waits until the last shared_state_unavailable or shared_state_recovered line of |gw| (an earlier
        test's outage) went out GW_LOG_OUTAGE_SECS ago, and no end held back for those 10 s (a late failure
        after an end reopens the outage) is still to come: the PING of every second says it once they are
        over. Then the first line of the next outage, and its end, go out at once, and count only its own."""
        events = ("shared_state_unavailable", "shared_state_recovered")
        seen = -1
        while True:
            lines = [l for l in gw.log_lines() if l.get("event") in events]
            if len(lines) == seen or not lines:
                return
            seen = len(lines)
            last = calendar.timegm(time.strptime(lines[-1]["time"][:19], "%Y-%m-%dT%H:%M:%S"))
            time.sleep(max(0.0, last + GW_LOG_OUTAGE_SECS + 0.1 - time.time()) + 2 * PING_SECS)


class SharedState(TwoInstances):
    FLOOD = 15  # requests sent while Redis is down: fewer than the 20 refusals whose lines a client has in 10 s

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfg["cmp"] = {"max_transactions_per_identity": 2, "state": cls.redis.state()}

    def post(self, gw, der):
        res = gw.curl(data=der)
        self.assertEqual(res.status, 200, res)
        return harness.decode_cmp(res.body)

    def test_replay_to_the_other_instance_refused(self):
        der = self.gw.make_request("replayed")
        self.assertEqual(self.post(self.gw, der).body_type, "ip")
        before = len(self.audit(self.gw2, "issued"))
        again = self.post(self.gw2, der)
        self.assert_cmp_error(again, ("ip", "error"), "transactionIdInUse", "replayed message")
        self.assertEqual(len(self.audit(self.gw2, "issued")), before)  # the second instance issued nothing

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

    def test_redis_down_then_back(self):
        self.assertEqual(self.readyz(self.gw, 200)["checks"]["shared_state"], "ok")
        self.redis.stop()
        try:
            # not ready while Redis is away, without any request asking (the pinger)
            self.assertIn("unreachable", self.readyz(self.gw2, 503)["checks"]["shared_state"])
            der = self.gw.make_request("down")
            ans = self.post(self.gw, der)
            self.assert_cmp_error(ans, ("ip", "error"), "systemUnavail")
            self.assertEqual(ans.status_strings,
                             ["the gateway cannot check this request against its cluster now; retry later"])
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

    def flood_outage(self, der, begin, end):
        """Sends |der| FLOOD times between begin() and end() of an outage, each refused systemUnavail, the first
        line of the outage due at once; returns the outage's and the request lines after, and the seconds the
        flood took."""
        self.readyz(self.gw, 200)  # another test's outage over
        self.outage_lines_due(self.gw)  # and its last line 10 s ago: the first line of this one goes out
        before = len(self.gw.log_lines())
        begin()
        try:
            start = time.monotonic()
            for _ in range(self.FLOOD):  # the same message: one Redis cannot check leaves no trace
                self.assert_cmp_error(self.post(self.gw, der), ("ip", "error"), "systemUnavail", "retry later")
            elapsed = time.monotonic() - start
        finally:
            end()
        self.readyz(self.gw, 200)
        return [l for l in self.gw.log_lines()[before:]
                if l.get("event") in ("shared_state_unavailable", "shared_state_recovered", "request")], elapsed

    def test_redis_down_lines_paced(self):
        """Each request Redis fails wrote its own shared_state_unavailable line at level error: a client, or
        many, flooded the log just as the operator read it. The first line of an outage goes out at once, then
        one in GW_LOG_OUTAGE_SECS, each saying how many it held back; the outage's end, when Redis answers
        again, says how many since the last line. Every request is still refused, and its request line out."""
        der = self.gw.make_request("downmany")
        lines, elapsed = self.flood_outage(der, self.redis.stop, self.redis.start)
        down = [l for l in lines if l["event"] == "shared_state_unavailable"]
        self.assertTrue(down and down[0].get("suppressed") == "0" and down[0]["tid"], down[:3])
        self.assertLessEqual(len(down), 1 + int((elapsed + 1) // GW_LOG_OUTAGE_SECS), (len(down), elapsed))
        self.assertEqual(down[0]["level"], "error")
        back = [l for l in lines if l["event"] == "shared_state_recovered"]
        self.assertEqual(len(back), 1, back)
        self.assertIn("answers again", back[0]["msg"])
        # every line held back is counted once, by the next line out or by the end
        self.assertEqual(len(down) + sum(int(l["suppressed"]) for l in down + back), self.FLOOD)
        self.assertEqual(len([l for l in lines if l["event"] == "request" and l["tid"] == down[0]["tid"]]),
                         self.FLOOD)  # each its own request line

    def test_redis_refusing_writes_lines_paced(self):
        """Redis answers lookups and refuses writes (a replica after a failover: READONLY). A request signed by
        a certificate an upstream issued has its revocation looked up, which goes through, then its replay
        check refused, a write: before, each lookup ended the outage (shared_state_recovered) and each write
        began another, its line out at once, two lines a request. The outage lasts until the PING, which
        writes, goes through again: one line in GW_LOG_OUTAGE_SECS, one end counting the rest."""
        key = self.newkey("rosigner")
        signer = self.gw.cmp("ir", "rosigner", newkey=key, subject="/CN=rosigner", extra=("-implicit_confirm",))
        der = self.gw.make_request("readonly", auth=(signer.cert, key))

        def refuse_writes():
            self.assertEqual(self.redis.command("REPLICAOF", "127.0.0.1", "1"), "+OK")  # no primary there

        def take_writes():
            self.assertEqual(self.redis.command("REPLICAOF", "NO", "ONE"), "+OK")

        lines, elapsed = self.flood_outage(der, refuse_writes, take_writes)
        down = [l for l in lines if l["event"] == "shared_state_unavailable"]
        self.assertTrue(down and "READONLY" in down[0]["reason"], down[:3])
        self.assertLessEqual(len(down), 1 + int((elapsed + 1) // GW_LOG_OUTAGE_SECS), (len(down), elapsed))
        back = [l for l in lines if l["event"] == "shared_state_recovered"]
        self.assertEqual(len(back), 1, back[:3])
        self.assertEqual(len(down) + sum(int(l["suppressed"]) for l in down + back), self.FLOOD)

    def test_redis_that_evicts_refused_at_start(self):
        """A Redis that evicts refuses the start with exit status 1, which the unit restarts: Redis may be
        set right without the gateway's configuration changing (78, the configuration refused, is not)."""
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        try:
            gw3 = self.gw.twin(self.gw.dir.parent / "pki3")
            rc, err = gw3.start_refused()
        finally:
            self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.assertEqual(rc, 1, err)
        self.assertIn("maxmemory-policy is allkeys-lru, not noeviction", err)

    def test_local_store_must_be_shared(self):
        """A local issuer's revocations must reach every instance: an unshared store is refused."""
        cfg = json.loads(json.dumps(self.gw.config))
        (self.gw.dir / "store").mkdir(exist_ok=True)
        cfg["upstreams"]["local"]["store"] = "store"
        path = self.gw.dir / "cluster-store.json"
        for shared, want_rc in ((True, 0), (False, 78)):
            cfg["upstreams"]["local"]["shared_store"] = shared
            path.write_text(json.dumps(cfg))
            p = subprocess.run([str(harness.GATEWAY_BIN), "check", "-c", str(path)], capture_output=True)
            self.assertEqual(p.returncode, want_rc, p.stderr)
        self.assertIn(b"$.upstreams.local.store: with \"cmp.state\" \"redis\" every instance must see the same "
                      b"store", p.stderr)


class ReplayOnAClockBehind(TwoInstances):
    """A class of its own: a messageTime window of 5 s and a transaction TTL of 10 s keep a transactionID in
    Redis for 40 s (twice the window and 30 s), which the test waits out."""
    FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    BEHIND = 44  # s the second instance's clock lags: past the replay key's 40 s, within the window then

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfg["cmp"] = {"message_time_window": 5, "transaction_ttl": 10, "state": cls.redis.state()}

    def replay_keys(self):
        return set(self.redis.command_lines("KEYS", "cmpgw:replay:*")[2::2])

    def test_replay_after_its_key_expired_refused_on_a_clock_behind(self):
        """A request accepted by the first instance, its replay key gone from Redis 40 s later, is sent to the
        second, whose clock runs BEHIND s late: its messageTime is within the window on that clock, and its
        cache never saw it. Judged on Redis's clock too, it is refused badTime and issues nothing."""
        # every certificate (made as the class began, notBefore that second) valid on the second instance's clock,
        # BEHIND s late, when it starts (BEHIND - 1 s after the request at the earliest): the request made 5 s
        # after the newest. It was made at once, and a start within a second of them refused the client's
        # certificate as not yet valid (an empty reply)
        newest = max(p.stat().st_mtime for d in (self.gw.dir, self.gw2.dir) for p in d.glob("*.pem"))
        time.sleep(max(0.0, newest + 5 - time.time()))
        before = self.replay_keys()
        made = time.time()
        der = self.gw.make_request("behind")
        res = self.gw.curl(data=der)
        self.assertEqual(res.status, 200, res)
        self.assertEqual(harness.decode_cmp(res.body).body_type, "ip")
        accepted = time.time()
        (key,) = self.replay_keys() - before
        time.sleep(max(0.0, made + self.BEHIND - 1 - time.time(), accepted + 40.5 - time.time()))
        self.assertEqual(self.redis.command("EXISTS", key), ":0")  # expired on Redis's clock
        self.gw2.stop()
        self.gw2.start({"LD_PRELOAD": self.FAKETIME, "FAKETIME": "-%d" % self.BEHIND, "DONT_FAKE_MONOTONIC": "1",
                        "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        try:
            issued = len(self.audit(self.gw2, "issued"))
            res = self.gw2.curl(data=der)
            self.assertEqual(res.status, 200, res)
            again = harness.decode_cmp(res.body)
            after = len(self.audit(self.gw2, "issued"))
            skews = [l for l in self.gw2.log_lines() if l.get("event") == "shared_state_clock_skew"]
        finally:
            self.gw2.stop()
            self.gw2.start()  # the other tests run on the real clock
        self.assert_cmp_error(again, ("ip", "error"), "badTime", "off the server clock")
        # the offset is Redis's: on the second instance's own clock the messageTime is within the window
        off = int(re.search(r"messageTime is (-?\d+) s off", " ".join(again.status_strings)).group(1))
        self.assertLessEqual(off, -self.BEHIND + 4, again)
        self.assertEqual(after, issued)  # the second instance issued nothing
        # the cause said: Redis's clock is BEHIND s ahead of the second instance's
        self.assertEqual(len(skews), 1, skews)
        self.assertLessEqual(abs(int(skews[0]["skew"]) - self.BEHIND), 2, skews)


class ClockAheadOfRedis(TwoInstances):
    """The second instance's clock runs AHEAD s ahead of Redis's, past a messageTime window of 5 s."""
    FAKETIME = ReplayOnAClockBehind.FAKETIME
    AHEAD = 20

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfg["cmp"] = {"message_time_window": 5, "state": cls.redis.state()}

    def test_skew_refused_and_logged(self):
        """A fresh request, its messageTime on the second instance's clock (the client's runs as far ahead),
        passes that instance's own window and is refused badTime on Redis's; the log says the clocks differ,
        by how much, and what to do (the device's clock is not at fault)."""
        fake = {"LD_PRELOAD": self.FAKETIME, "FAKETIME": "+%d" % self.AHEAD, "DONT_FAKE_MONOTONIC": "1"}
        self.gw2.stop()
        self.gw2.start(dict(fake, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"))
        try:
            der = self.gw.make_request("ahead", env=fake)
            res = self.gw2.curl(data=der)
            self.assertEqual(res.status, 200, res)
            refused = harness.decode_cmp(res.body)
            deadline = time.monotonic() + 5
            while not [l for l in self.gw2.log_lines() if l.get("event") == "shared_state_clock_skew"] and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            lines = [l for l in self.gw2.log_lines() if l.get("event") == "shared_state_clock_skew"]
            issued = len(self.audit(self.gw2, "issued", "e2e-captured"))
        finally:
            self.gw2.stop()
            self.gw2.start()  # on the real clock again
        self.assert_cmp_error(refused, ("ip", "error"), "badTime", "off the server clock")
        self.assertEqual(issued, 0)
        self.assertEqual(len(lines), 1, lines)
        (line,) = lines
        self.assertEqual(line["level"], "warn", line)
        self.assertEqual(line["suppressed"], "0", line)
        # Redis's clock less the instance's: AHEAD s behind, read in whole seconds a moment apart
        self.assertLessEqual(abs(int(line["skew"]) + self.AHEAD), 2, line)
        self.assertLessEqual(abs(int(line["local_offset"])), 2, line)
        self.assertLessEqual(abs(int(line["offset"]) - self.AHEAD), 2, line)
        self.assertIn("clock and Redis's differ by", line["reason"])
        self.assertIn("run NTP on both", line["reason"])


class RevokedElsewhere(TwoInstances):
    """A certificate revoked through one instance is refused by the other at once, though the other holds
    the CA's CRL from before the revocation (read again only every 5 minutes)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["roles"]["vault"] = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices",
                                     allowed_san_types=["dns"])
        cfg["cmp"] = {"state": cls.redis.state()}

    def p10cr(self, gw, name, signer=None):
        """A p10cr on role vault through |gw|, signed by |signer| (cert, key) with its CA sent along."""
        key = self.newkey(name)
        csr = gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % name, "-addext",
                     "subjectAltName=DNS:%s" % name, "-out", csr])
        extra = ["-csr", csr, "-untrusted", gw.dir / "vault-ca.pem"]
        return gw.cmp("p10cr", name, path="pki/roles/vault/cmp", extra=extra, auth=signer or "sig",
                      expect_cert=False), key

    def revoked(self, name, cert, key):
        """The holder's rr of |cert| (keyCompromise) through the first instance, `openssl cmp -cmd rr`
        itself; asserts that it was accepted."""
        d = self.gw.dir
        rsp = d / ("%s-rr.rsp.der" % name)
        harness.run(["openssl", "cmp", "-cmd", "rr", "-server", "127.0.0.1:%d" % self.gw.port, "-path",
                     "pki/roles/vault/cmp", "-trusted", d / "ca.pem", "-tls_used", "-tls_trusted", d / "ca.pem",
                     "-tls_cert", d / "client.pem", "-tls_key", d / "client.key", "-cert", cert, "-key", key,
                     "-untrusted", d / "vault-ca.pem", "-oldcert", cert, "-revreason", "1", "-rspout", rsp],
                    cwd=d)
        self.assertEqual(harness.decode_cmp(rsp.read_bytes()).status, 0)

    def test_revoked_through_one_refused_by_the_other(self):
        res, key = self.p10cr(self.gw, "r-1.example.com")
        cert = res.cert
        self.assertIsNotNone(cert, res.answers)
        # the second instance reads the CA's CRL now, while it does not list the certificate
        self.assertIsNotNone(self.p10cr(self.gw2, "r-2.example.com", (cert, key))[0].cert)
        self.revoked("r-1", cert, key)
        res = self.p10cr(self.gw2, "r-3.example.com", (cert, key))[0]
        self.assert_rejected(res, "certRevoked", "the signer certificate (serial %s) is revoked" %
                             harness.serial_hex(cert).lower())
        self.assertTrue(any(line.get("event") == "credential_revoked" and line.get("source") == "revoked through cmpgw"
                            for line in self.gw2.log_lines()))

    def test_serial_revoked_through_one_not_released_by_the_other(self):
        """Vault issues the serial of a certificate revoked through one instance again, to a request through
        the other: that one finds the serial in the shared revoked set, and does not release the certificate
        (issued_serial_revoked in docs/errors.md). Twin: a serial of its own issues there."""
        res, key = self.p10cr(self.gw, "s-1.example.com")
        cert = res.cert
        self.assertIsNotNone(cert, res.answers)
        self.revoked("s-1", cert, key)
        serial = harness.serial_hex(cert)
        self.vault.control({"serial_number": vaultenv.colon_serial(serial),
                            "match": "/sign/"})
        try:
            res = self.p10cr(self.gw2, "s-2.example.com")[0]
        finally:
            self.vault.control({})
        self.assert_rejected(res, "systemFailure", "a certificate with this issuer name and serial %s was revoked "
                             "through this gateway" % serial)
        self.assertEqual([line.get("serial") for line in self.gw2.log_lines()
                          if line.get("event") == "cert_serial_reused"], [serial])
        self.assertIsNotNone(self.p10cr(self.gw2, "s-3.example.com")[0].cert)


CLIENT_BIN = os.environ.get("CMPGW_CLIENT_BIN", str(harness.BUILD_DIR / "tests" / "cmpclient"))
GW_STATE_CLAIM_SLACK = 5  # base/limits.h
GW_LOG_OUTAGE_SECS = 10  # base/limits.h: one shared_state_unavailable line in so many seconds of an outage
PING_SECS = 1  # base/limits.h GW_STATE_PING_SECS: how often readiness asks Redis


class RevokedOnceAcrossInstances(TwoInstances):
    """The holder's rr of one certificate of cfssl through each instance at the same moment: cfssl cannot say
    a certificate is revoked and records a second revocation's reason and time over the first's, so one
    instance revokes it and the other waits for that one's mark in Redis, then answers certRevoked. Each
    revocation takes 2 s at cfssl (a relay holds what the gateways send), so both rrs are in while the first
    is at the CA; before the mark was shared, both reached cfssl. cmp.max_revoked is small, so that a test
    can fill the shared revoked set."""

    MAX_REVOKED = 8

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        cfsslenv.slow_route(cls, cfg, gw.dir)
        cfg["cmp"] = {"state": cls.redis.state(), "max_revoked": cls.MAX_REVOKED}

    def revoked_at_once(self, name, res, key, chain):
        """The rrs of |res|'s certificate through both instances at once, each 2 s at cfssl: their rp
        statuses, sorted, and the audit's revoked records of it."""
        self.relay.slow(2)
        try:
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                asked = [pool.submit(cfsslenv.holder_rr, gw, rr_name, res, key, chain, reason)
                         for gw, rr_name, reason in ((self.gw, name + "-rr1", "1"), (self.gw2, name + "-rr2", "4"))]
                rps = [f.result() for f in asked]
        finally:
            self.relay.slow(0)
        serial = harness.serial_hex(res.cert)
        revoked = [r for gw in (self.gw, self.gw2) for r in self.audit(gw, "revoked") if r.get("serial") == serial]
        return rps, revoked

    def test_revoked_once_at_the_ca(self):
        res, key, chain = cfsslenv.enrolled(self, "once")
        rps, revoked = self.revoked_at_once("once", res, key, chain)
        self.assertEqual(sorted(rps), [(0, [], []), (2, ["certRevoked"], ["the certificate is already revoked"])])
        self.assertEqual(len(revoked), 1, revoked)
        # cfssl holds the reason of the rr that was accepted, not the other's written over it
        reason = 1 if rps[0][0] == 0 else 4
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", reason))

    def test_revoked_once_when_the_shared_set_is_full(self):
        """The shared revoked set full: the first instance's revocation is not kept there
        (revocation_not_kept), so the one that waited for its mark does not find it in the set. It finds the
        mark left "done" instead, and answers certRevoked; before, it revoked the certificate again once the
        mark was deleted (two revoked records, two accepted rrs, cfssl holding the second's reason). From that
        mark alone, the instance that waited refuses the certificate as a signer too; before, a p10cr signed
        with it was granted there."""
        res, key, chain = cfsslenv.enrolled(self, "full")
        now = int(time.time())
        room = self.MAX_REVOKED - int(self.redis.command("ZCARD", "cmpgw:revoked")[1:])
        filler = ["cmpgw:revoked:filler%d" % i for i in range(room)]  # live entries of no certificate
        for member in filler:
            self.redis.command("ZADD", "cmpgw:revoked", now + 3600, member)
        self.addCleanup(lambda: self.redis.command("ZREM", "cmpgw:revoked", *filler) if filler else None)
        rps, revoked = self.revoked_at_once("full", res, key, chain)
        self.assertEqual(len(revoked), 1, revoked)
        self.assertEqual(sorted(rps), [(0, [], []), (2, ["certRevoked"], ["the certificate is already revoked"])])
        reason = 1 if rps[0][0] == 0 else 4
        self.assertEqual(self.cfssl.record(res.cert), ("revoked", reason))
        first, other = (self.gw, self.gw2) if reason == 1 else (self.gw2, self.gw)
        serial = harness.serial_hex(res.cert).lower()
        # what the log tells of the others: they refuse it while its mark is "done", as the p10cr below finds
        self.assertIn("the other instances refuse this certificate at most until the revocation's mark expires (twice "
                      "its upstream's timeout plus 15 s), then only once its CA's CRL lists it",
                      [l.get("msg") for l in first.log_lines() if l.get("event") == "revocation_not_kept" and
                       "cmp.max_revoked" in l.get("reason", "")], first.stderr()[-3000:])
        self.assertTrue(any(l.get("event") == "rr_already_revoked" and l.get("source") == "gateway" and
                            l.get("serial", "").lower() == serial for l in other.log_lines()),
                        other.stderr()[-3000:])
        csr = self.gw.dir / "full-new.csr"
        harness.run(["openssl", "req", "-new", "-key", self.newkey("full-new"), "-subj", "/O=cmpgw e2e/CN=full.example.com",
                     "-addext", "subjectAltName=DNS:full.example.com", "-out", csr])
        renewed = other.cmp("p10cr", "full-new", auth=(res.cert, key), path="pki/roles/cfssl/cmp", expect_cert=False,
                            extra=("-csr", csr, "-implicit_confirm", "-untrusted", chain))
        self.assert_rejected(renewed, "certRevoked", "the signer certificate (serial %s) is revoked" % serial)


class ThreeInstances(TwoInstances):
    """Three instances over one Redis with transaction records ("mac_key_file"), every enrolment ending
    with a certConf; helpers to send a transaction's messages to different instances."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        key = gw.dir / "state.key"
        key.write_bytes(os.urandom(32).hex().encode() + b"\n")
        key.chmod(0o600)
        cfg["cmp"] = {"transaction_ttl": "4s", "state": dict(cls.redis.state(), mac_key_file="state.key")}
        cfg["roles"]["default"]["implicit_confirm"] = False  # every enrolment ends with a certConf

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gw3 = cls.gw.twin(cls.gw.dir.parent / "pki3")  # a third instance, for the balancer
        cls.gw3.start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw3.stop()
        finally:
            super().tearDownClass()

    @property
    def instances(self):
        return (self.gw, self.gw2, self.gw3)

    def events(self, event):
        return [l for g in self.instances for l in g.log_lines() if l.get("event") == event]

    def everywhere(self, event, name):
        """The audit records |event| of |name| across the three audit logs."""
        return [r for g in self.instances for r in self.audit(g, event, name)]

    def wait_for(self, what, timeout=30, watched=None):
        """Polls |what| until it is true; past |timeout|, fails with the log tails of the |watched|
        instances (the second one's by default)."""
        deadline = time.monotonic() + timeout
        while not what():
            self.assertLess(time.monotonic(), deadline, "\n".join(
                "%s: %s" % (g.dir.name, g.stderr()[-3000:]) for g in (watched or (self.gw2,))))
            time.sleep(0.1)

    def answered(self, event, name):
        """Waits until the first instance has answered the ir of |name|: its |event| audit record
        ("issued", "waiting") comes before the transaction is parked and its shared record written,
        the request's log line after."""
        def logged():
            tids = {r["tid"] for r in self.audit(self.gw, event, name)}
            return any(l.get("event") == "request" and l.get("tid") in tids for l in self.gw.log_lines())
        self.wait_for(logged, timeout=20, watched=(self.gw,))

    @contextlib.contextmanager
    def round_robin(self):
        """For the block, the first instance's port is a real haproxy's in round-robin over the three
        instances, each connection to the next."""
        port = harness.free_port()
        cfg = self.gw.dir / "haproxy-rr.cfg"
        cfg.write_text("\n".join([
            "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 30s", "    timeout server 30s",
            "frontend fe", "    bind 127.0.0.1:%d" % port, "    default_backend be",
            "backend be", "    balance roundrobin",
            "    server gw1 127.0.0.1:%d" % self.gw.port, "    server gw2 127.0.0.1:%d" % self.gw2.port,
            "    server gw3 127.0.0.1:%d" % self.gw3.port]) + "\n")
        lb = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        real = self.gw.port
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    self.assertLess(time.monotonic(), deadline, "haproxy did not listen")
                    time.sleep(0.1)
            self.gw.port = port
            yield
        finally:
            self.gw.port = real
            lb.terminate()
            lb.wait(10)

    def enrol(self, name, first, nxt, before_next=None, wait=True):
        """cmpclient ir to |first|, its certConf to |nxt|; the last request sent is kept as <name>.last.der."""
        d = self.gw.dir
        harness.genkey(d / ("%s.key" % name))
        argv = [CLIENT_BIN, "--url", first.url(), "--next-url", nxt.url(), "--cafile", d / "ca.pem",
                "--tls-cert", d / "client.pem", "--tls-key", d / "client.key", "--cert", d / "client.pem",
                "--key", d / "client.key", "--reqout", d / ("%s.last.der" % name)]
        if before_next:
            argv += ["--before-next", before_next]
        argv += ["ir", "--newkey", d / ("%s.key" % name), "--subject", "/CN=%s" % name,
                 "--certout", d / ("%s.pem" % name)]
        p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not wait:
            return p
        out, err = p.communicate(timeout=60)
        return p.returncode, out.decode() + err.decode()

    def kill_first(self):
        """kill -9 of the first instance: nothing of its memory survives."""
        self.gw.proc.kill()
        self.gw.proc.wait(10)
        self.gw._err.close()
        self.gw._out.close()
        self.gw.proc = None

    def first_killed(self, p, flag):
        """kill -9 of the first instance, then client |p|'s next message let go (|flag|); its (exit status,
        output). The first instance starts again after, for the tests after this one."""
        self.kill_first()
        try:
            flag.write_text("")
            out, err = p.communicate(timeout=60)
            return p.returncode, out + err
        finally:
            self.gw.start()


class Continuation(ThreeInstances):
    """With "mac_key_file", any instance continues a transaction another began: the certConf of an ir
    answered by the first instance is answered by the second (its context rebuilt from the record), or
    told to retry later while Redis is down."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["roles"]["pbmonly"] = {k: v for k, v in cfg["roles"]["default"].items() if k != "trust"}

    def parked(self, name, flag):
        """An ir answered by the first instance, its certConf held back until |flag| exists; the client."""
        p = self.enrol(name, self.gw, self.gw2, before_next=flag, wait=False)
        self.answered("issued", name)
        return p

    def test_certconf_on_the_other_instance(self):
        rc, out = self.enrol("moved", self.gw, self.gw2)
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(self.audit(self.gw, "issued", "moved")), 1)
        self.assertEqual(len(self.audit(self.gw2, "issued", "moved")), 0)  # one issuance across the instances
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "moved")], ["confirmed"])
        self.assertTrue(any(l.get("event") == "txn_continued" for l in self.gw2.log_lines()))
        # the same certConf again, to the first instance (its copy is still parked there): not answered twice
        ans = harness.decode_cmp(self.gw.curl(data=self.gw.dir / "moved.last.der").body)
        self.assert_cmp_error(ans, ("error",), "badRequest", "no open transaction")
        self.assertEqual(self.audit(self.gw, "confirmed", "moved"), [])
        # the first instance's context expires without a record: the other one closed it
        deadline = time.monotonic() + 10
        while not any(l.get("event") == "txn_closed_elsewhere" for l in self.gw.log_lines()):
            self.assertLess(time.monotonic(), deadline, self.gw.stderr()[-3000:])
            time.sleep(0.2)
        self.assertEqual(self.audit(self.gw, "expired_unconfirmed", "moved"), [])

    def test_altered_record_refused(self):
        flag = self.gw.dir / "altered.flag"
        p = self.parked("altered", flag)
        key = self.redis.command("KEYS", "cmpgw:rec:*")  # "*1": the next line names it
        self.assertEqual(key, "*1")
        name = self.redis.command_lines("KEYS", "cmpgw:rec:*")[-1]
        self.assertEqual(self.redis.command("SETRANGE", name, "40", "X"), ":" + self.redis.command("STRLEN", name)[1:])
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 2, out + err)
        self.assertIn(b"no open transaction", out + err)
        self.assertTrue(any(l.get("event") == "txn_record_invalid" for l in self.gw2.log_lines()))
        self.assertEqual(self.audit(self.gw2, "confirmed", "altered"), [])

    def test_forged_message_neither_replayed_nor_leased(self):
        """A certConf naming a transaction the first instance answered, from its sender's name but not signed
        by its key (a real certConf of another transaction, its transactionID changed): the second instance
        refuses it before it replays the stored request or leases the record, and the first before it leases
        the record for its copy, so that naming a transaction is not enough to hold it up; a lease another
        instance holds does not change the answer. The real certConf is answered after."""
        rc, out = self.enrol("donor", self.gw, self.gw)
        self.assertEqual(rc, 0, out)
        donor = (self.gw.dir / "donor.last.der").read_bytes()  # its certConf
        donor_tid = bytes.fromhex(self.audit(self.gw, "issued", "donor")[0]["tid"])
        self.assertEqual(donor.count(donor_tid), 1)
        flag = self.gw.dir / "forged.flag"
        p = self.parked("forged", flag)
        tid = self.audit(self.gw, "issued", "forged")[0]["tid"]
        forged = self.gw.dir / "forged.der"
        forged.write_bytes(donor.replace(donor_tid, bytes.fromhex(tid)))
        lease = "cmpgw:lease:" + tid
        ans = harness.decode_cmp(self.gw2.curl(data=forged).body)
        self.assert_cmp_error(ans, ("error",), "badMessageCheck", "signer of this transaction")
        self.assertEqual([l for l in self.gw2.log_lines() if l.get("tid") == tid and
                          l.get("event") in ("txn_continued", "txn_not_continued")], [])  # nothing replayed
        self.redis.command("SET", lease, "elsewhere", "EX", "30")
        try:  # with the lease another instance holds: the same answer, here and on the instance with its copy
            for gw in (self.gw2, self.gw):
                ans = harness.decode_cmp(gw.curl(data=forged).body)
                self.assert_cmp_error(ans, ("error",), "badMessageCheck", "signer of this transaction")
            self.assertEqual(self.redis.command_lines("GET", lease)[-1], "elsewhere")
        finally:
            self.redis.command("DEL", lease)
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "forged")], ["confirmed"])

    def held_certconf(self, name):
        """The certConf the client of parked(|name|) holds back: written before it waits (--reqout)."""
        f = self.gw.dir / ("%s.last.der" % name)

        def written():
            try:
                return harness.decode_cmp(f).body_type == "certConf"
            except Exception:  # the ir still, or the certConf half written
                return False
        self.wait_for(written, watched=(self.gw,))
        return f

    def test_other_tls_client_neither_replayed_nor_leased(self):
        """The certConf of a transaction the first instance answered, signed by its signer but sent by another
        device (another TLS client certificate): the second instance refuses it from the TLS client the record
        names, before it replays the stored request or leases the record, and the first before it leases the
        record for its copy. The transaction stays open: the client's own certConf is answered after."""
        flag = self.gw.dir / "othertls.flag"
        p = self.parked("othertls", flag)
        conf = self.held_certconf("othertls")
        tid = self.audit(self.gw, "issued", "othertls")[0]["tid"]
        cert, key = self.enrol_tls_client("othertls-device")
        tls = (harness.tls_bundle(self.gw.dir, cert), key)
        for gw in (self.gw2, self.gw):
            ans = harness.decode_cmp(gw.curl(data=conf, tls=tls).body)
            self.assert_cmp_error(ans, ("error",), "notAuthorized", "another client certificate")
            self.assertTrue(any(l.get("event") == "txn_other_tls_client" and l.get("tid") == tid
                                for l in gw.log_lines()), gw.stderr()[-3000:])
        self.assertEqual([l for l in self.gw2.log_lines() if l.get("tid") == tid and
                          l.get("event") in ("txn_continued", "txn_not_continued")], [])  # nothing replayed
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:lease:" + tid), ":0")
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "othertls")], ["confirmed"])

    def test_error_from_other_tls_client_looked_up_once(self):
        """The error message of a transaction the first instance answered, signed by its signer but sent by
        another device, to the second instance (no copy): the record refuses it from the TLS client it binds,
        after the message was authenticated as a request (the record is read before, once: one
        txn_other_tls_client line for the one message; once, the record was read again after the
        authentication, and logged twice). Nothing is aborted: the client's own certConf confirms after."""
        flag = self.gw.dir / "othertlserr.flag"
        p = self.parked("othertlserr", flag)
        conf = test_errors.load(self.held_certconf("othertlserr").read_bytes())
        tid = self.audit(self.gw, "issued", "othertlserr")[0]["tid"]
        err = self.gw.dir / "othertlserr.error.der"
        err.write_bytes(test_errors.encoder.encode(test_errors.error_msg(conf, self.gw.dir / "client.key")))
        cert, key = self.enrol_tls_client("othertlserr-device")
        ans = harness.decode_cmp(self.gw2.curl(data=err, tls=(harness.tls_bundle(self.gw.dir, cert), key)).body)
        self.assert_cmp_error(ans, ("error",), "notAuthorized", "another client certificate")
        lines = [l for l in self.gw2.log_lines() if l.get("event") == "txn_other_tls_client" and l.get("tid") == tid]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(self.everywhere("rejected_by_client", "othertlserr"), [])
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "othertlserr")], ["confirmed"])

    def test_certconf_on_another_roles_path(self):
        """The certConf of a transaction the first instance answered, from its own client but sent to the path
        of another role (one that trusts no signer): the second instance, without a copy, refuses it as the
        first, with its copy, does, before either replays the stored request or leases the record. The
        transaction stays open: the client's certConf on the path of its request is answered after. Once,
        the second instance answered "no open transaction" and the first confirmed the certificate."""
        flag = self.gw.dir / "otherpath.flag"
        p = self.parked("otherpath", flag)
        conf = self.held_certconf("otherpath")
        tid = self.audit(self.gw, "issued", "otherpath")[0]["tid"]
        for gw in (self.gw2, self.gw):
            ans = harness.decode_cmp(gw.curl(data=conf, path="/pki/roles/pbmonly/cmp").body)
            self.assert_cmp_error(ans, ("error",), "badRequest", "begun on a path of another role")
            self.assertTrue(any(l.get("event") == "txn_other_path" and l.get("tid") == tid
                                for l in gw.log_lines()), gw.stderr()[-3000:])
        self.assertEqual([l for l in self.gw2.log_lines() if l.get("tid") == tid and
                          l.get("event") in ("txn_continued", "txn_not_continued")], [])  # nothing replayed
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:lease:" + tid), ":0")
        self.assertEqual(self.audit(self.gw, "confirmed", "otherpath"), [])
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "otherpath")], ["confirmed"])

    def test_certconf_after_a_reload_of_the_other_instance(self):
        """A reload of the second instance gives the role another trust anchor while the certConf of a
        transaction the first instance answered is held back: that instance has no copy and cannot
        replay the request, yet the certConf, over the TLS client certificate the record binds and signed
        with the signer's key, is the transaction's own. It is answered as a single gateway answers it
        (signerNotTrusted, not a failed authentication), the record ends and the certificate is
        withdrawn there."""
        flag = self.gw.dir / "reloaded.flag"
        p = self.parked("reloaded", flag)
        tid = self.audit(self.gw, "issued", "reloaded")[0]["tid"]
        base = self.gw2.config_path.read_text()
        cfg = json.loads(base)
        ca, _, _ = harness.make_foreign_pki(self.gw2.dir / "foreign")
        cfg["trust"]["foreign"] = {"ca_file": str(ca), "revocation": "none"}
        cfg["roles"]["default"]["trust"] = ["foreign"]
        self.gw2.config_path.write_text(json.dumps(cfg, indent=2))
        try:
            status, body = harness.admin(self.gw2, "/reload", "POST")
            self.assertEqual(status, 200, body)
            flag.write_text("")
            out, err = p.communicate(timeout=60)
            self.assertNotEqual(p.returncode, 0, out + err)
            self.assertIn(b"no longer chains to a CA trusted on this route", out + err)
        finally:
            self.gw2.config_path.write_text(base)
            status, body = harness.admin(self.gw2, "/reload", "POST")
            self.assertEqual(status, 200, body)
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:rec:" + tid), ":0")
        rejected = self.audit(self.gw2, "rejected", "reloaded")
        self.assertEqual(len(rejected), 1, rejected)
        self.assertIn("signerNotTrusted", rejected[0]["status"])
        # withdrawn through the upstream whose CA issued it: the demo's keeps no store, so on record as failed
        self.wait_for(lambda: self.audit(self.gw2, "revoke_failed", "reloaded"))
        outcomes = [l["outcome"] for l in self.gw2.log_lines() if l.get("event") == "request" and l.get("tid") == tid]
        self.assertEqual(len(outcomes), 1, outcomes)
        self.assertIn("signerNotTrusted", outcomes[0])  # not badMessageCheck: the address pays nothing

    def test_error_after_a_reload_answered_as_by_a_single_gateway(self):
        """The twin for an error message: both instances reloaded with another trust anchor for the role, the
        client's own error message aborting its transaction. A single gateway does not hold an error message
        to its running configuration (its transaction is closed either way): the first instance, with its
        copy, answers pkiconf and records rejected_by_client. So does the second one, without a copy and
        unable to replay the request, for the error message of another transaction: not the reload's
        refusal, nor a `rejected` record; the record ends and the certificate is withdrawn there."""
        flags = {n: self.gw.dir / ("%s.flag" % n) for n in ("abortcopy", "abortrec")}
        clients = {n: self.parked(n, f) for n, f in flags.items()}
        errors = {}
        for n in flags:
            conf = test_errors.load(self.held_certconf(n).read_bytes())
            errors[n] = self.gw.dir / ("%s.error.der" % n)
            errors[n].write_bytes(test_errors.encoder.encode(test_errors.error_msg(conf, self.gw.dir / "client.key")))
        tid = self.audit(self.gw, "issued", "abortrec")[0]["tid"]
        ca, _, _ = harness.make_foreign_pki(self.gw2.dir / "foreign")
        bases = {}
        try:
            for gw in (self.gw, self.gw2):
                bases[gw] = gw.config_path.read_text()
                cfg = json.loads(bases[gw])
                cfg["trust"]["foreign"] = {"ca_file": str(ca), "revocation": "none"}
                cfg["roles"]["default"]["trust"] = ["foreign"]
                gw.config_path.write_text(json.dumps(cfg, indent=2))
                status, body = harness.admin(gw, "/reload", "POST")
                self.assertEqual(status, 200, body)
            for n, gw in (("abortcopy", self.gw), ("abortrec", self.gw2)):
                ans = harness.decode_cmp(gw.curl(data=errors[n]).body)
                self.assertEqual((ans.body_type, ans.status), ("pkiconf", None), (n, ans))
                self.assertEqual(len(self.audit(gw, "rejected_by_client", n)), 1, (n, gw.stderr()[-3000:]))
                self.assertEqual(self.everywhere("rejected", n), [], n)
        finally:
            for gw, base in bases.items():
                gw.config_path.write_text(base)
                status, body = harness.admin(gw, "/reload", "POST")
                self.assertEqual(status, 200, body)
            for p in clients.values():
                p.kill()
                p.communicate(timeout=10)
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:rec:" + tid), ":0")
        self.wait_for(lambda: self.audit(self.gw2, "revoke_failed", "abortrec"))  # withdrawn: no store here
        outcomes = [l["outcome"] for l in self.gw2.log_lines() if l.get("event") == "request" and l.get("tid") == tid]
        self.assertEqual(outcomes, ["client_error"])

    def enrol_tls_client(self, name):
        """A certificate and key from the demo's issuer, for another device's TLS connections."""
        key = harness.genkey(self.gw.dir / ("%s.key" % name))
        res = self.gw.cmp("ir", name, newkey=key, subject="/CN=%s" % name)
        return res.cert, key

    def test_record_of_an_older_instance_continued(self):
        """A record as an instance of an older release writes it (version 2: no TLS client) is continued by
        another instance, bound to no TLS client (docs/design.md D26): a rolling upgrade strands no
        enrolment."""
        flag = self.gw.dir / "older.flag"
        p = self.parked("older", flag)
        self.held_certconf("older")
        tid = self.audit(self.gw, "issued", "older")[0]["tid"]
        name = "cmpgw:rec:" + tid
        rec = bytes.fromhex(self.redis.command_lines(
            "EVAL", "return (redis.call('GET', KEYS[1]):gsub('.', function(c) "
            "return string.format('%02x', c:byte()) end))", "1", name)[-1])
        self.assertEqual(rec[:11], b"cmpgw-txn-3")
        fields, off = [], 11
        while off < len(rec) - 32:
            n = int.from_bytes(rec[off:off + 4], "big")
            fields.append(rec[off:off + 4 + n])
            off += 4 + n
        self.assertEqual(len(fields), 7)
        self.assertTrue(fields[6][4:].startswith(b"sha256:"), fields[6])  # the client's TLS certificate
        mac_key = (self.gw.dir / "state.key").read_bytes().rstrip(b"\n")
        tid_bytes = bytes.fromhex(tid)
        older = b"cmpgw-txn-2" + b"".join(fields[:6])
        older += hmac.new(mac_key, len(tid_bytes).to_bytes(4, "big") + tid_bytes + older, hashlib.sha256).digest()
        self.redis.command("EVAL", "local t = {} for i = 1, #ARGV[1], 2 do "
                           "t[#t + 1] = string.char(tonumber(ARGV[1]:sub(i, i + 1), 16)) end "
                           "return redis.call('SET', KEYS[1], table.concat(t), 'KEEPTTL')", "1", name, older.hex())
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "older")], ["confirmed"])
        self.assertEqual([l.get("tls_client") for l in self.gw2.log_lines()
                          if l.get("event") == "txn_continued" and l.get("tid") == tid], ["unbound (older record)"])

    def test_owner_killed_after_ip(self):
        flag = self.gw.dir / "killed.flag"
        rc, out = self.first_killed(self.parked("orphan", flag), flag)
        self.assertEqual(rc, 0, out)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "orphan")], ["confirmed"])

    def unconfirmed(self, name, kill_owner):
        """An ir answered by the first instance whose certConf never comes (the client is stopped);
        with |kill_owner| the first instance is killed -9 too. Waits until an instance records the
        expiry; returns the expired_unconfirmed records of each of the three audit logs."""
        p = self.parked(name, self.gw.dir / ("%s.never" % name))
        p.kill()
        p.communicate()
        if kill_owner:
            self.kill_first()
        try:
            # transaction_ttl 4 s, then GW_STATE_CLAIM_SLACK for a dead owner; failing, the log of each
            # instance that could have recorded it
            self.wait_for(lambda: self.everywhere("expired_unconfirmed", name), watched=self.instances[1:])
            time.sleep(GW_STATE_CLAIM_SLACK + 2)  # room for a second record, which must not come
        finally:
            if kill_owner:
                self.gw.start()  # for the tests after this one, whatever happened here
        return [self.audit(g, "expired_unconfirmed", name) for g in self.instances]

    def test_expiry_recorded_once_by_its_owner(self):
        first, second, third = self.unconfirmed("lapsed", kill_owner=False)
        self.assertEqual((len(first), len(second), len(third)), (1, 0, 0))

    def test_expiry_of_a_dead_owner_recorded_by_another(self):
        first, second, third = self.unconfirmed("orphaned", kill_owner=True)
        self.assertEqual((len(first), len(second) + len(third)), (0, 1))  # once, by whichever claimed it
        record = (second + third)[0]
        self.assertIn("the instance that issued it is gone", record["status"])
        self.assertEqual(record["serial"], self.audit(self.gw, "issued", "orphaned")[0]["serial"])

    def test_redis_down_for_a_certconf(self):
        """Redis stopped while a transaction waits for its certConf: the certConf, on the instance that must
        read the transaction's record, is refused with systemUnavail, retry later; nothing is closed."""
        flag = self.gw.dir / "stateless.flag"
        p = self.parked("stateless", flag)
        self.redis.stop()
        try:
            flag.write_text("")
            out, err = p.communicate(timeout=60)
        finally:
            self.redis.start()
        self.assertEqual(p.returncode, 2, out + err)
        self.assertIn(b"the gateway cannot reach its cluster to answer this transaction; retry later", out + err)
        self.assertEqual(self.everywhere("confirmed", "stateless"), [])

    def test_redis_down_for_an_error_message(self):
        """The twin for the client's error message: on the instance without its copy it aborts nothing and is
        told to retry, its record asked once (the outage's one shared_state_unavailable line, none held back
        when it ends; once, asked again after the message was authenticated, and logged twice)."""
        flag = self.gw.dir / "statelesserr.flag"
        p = self.parked("statelesserr", flag)
        conf = test_errors.load(self.held_certconf("statelesserr").read_bytes())
        tid = self.audit(self.gw, "issued", "statelesserr")[0]["tid"]
        err = self.gw.dir / "statelesserr.error.der"
        err.write_bytes(test_errors.encoder.encode(test_errors.error_msg(conf, self.gw.dir / "client.key")))
        self.readyz(self.gw2, 200)  # an earlier outage over
        self.outage_lines_due(self.gw2)  # and its last line 10 s ago: the first line of this one goes out
        before = len(self.gw2.log_lines())
        self.redis.stop()
        try:
            ans = harness.decode_cmp(self.gw2.curl(data=err).body)
        finally:
            self.redis.start()
        self.assert_cmp_error(ans, ("error",), "systemUnavail", "cannot reach its cluster")
        self.readyz(self.gw2, 200)  # the outage's end logged, with the count of its lines held back
        lines = [l for l in self.gw2.log_lines()[before:]
                 if l.get("event") in ("shared_state_unavailable", "shared_state_recovered")]
        self.assertEqual([(l["event"], l.get("tid"), l.get("suppressed")) for l in lines],
                         [("shared_state_unavailable", tid, "0"), ("shared_state_recovered", None, "0")])
        self.assertEqual(self.everywhere("rejected_by_client", "statelesserr"), [])
        p.kill()
        p.communicate(timeout=10)

    @unittest.skipUnless(shutil.which("haproxy"), "haproxy (deploy/deps.sh installs it)")
    def test_round_robin_through_haproxy(self):
        """`openssl cmp -keep_alive 0` through haproxy in round-robin over three instances: every message on
        another instance than the one before, one "issued" and one "confirmed" per enrolment across the three."""
        before = len(self.events("txn_continued"))
        with self.round_robin():
            for i in range(6):
                name = "rr%d" % i
                res = self.gw.cmp("ir", name, newkey=self.newkey(name), subject="/CN=%s" % name,
                                  extra=("-keep_alive", "0"))
                self.assertEqual([a.body_type for a in res.answers], ["ip", "pkiconf"])
                issued, confirmed = self.everywhere("issued", name), self.everywhere("confirmed", name)
                self.assertEqual((len(issued), len(confirmed)), (1, 1), (issued, confirmed))
        # three instances in turn, two messages per enrolment: every certConf on another instance
        self.assertEqual(len(self.events("txn_continued")) - before, 6)


class OversizedRecord(ThreeInstances):
    """A class of its own, whose instances wait seconds for Redis and keep a transaction for a minute: the
    script that refuses an 8 MiB record reads it into Lua first, which took Redis 0.6 s on a two-core machine
    at a load of 17, longer than the 500 ms the other classes allow; there, the time from the ir to its
    certConf can also pass their 4 s TTL, and the first instance's expiry drops the record. Neither is what
    this class checks."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["cmp"]["transaction_ttl"] = "60s"
        cfg["cmp"]["state"]["timeout"] = "5s"

    parked = Continuation.parked

    def test_oversized_record_refused_inside_redis(self):
        """A record larger than any instance writes (put there by whoever else can write to Redis, up to
        Redis's 512 MiB) is refused by the script that would hand it over: no instance pulls it in, HMACs
        it, or leases it, whoever sends a certConf naming its transactionID."""
        flag = self.gw.dir / "oversized.flag"
        p = self.parked("oversized", flag)
        tid = self.audit(self.gw, "issued", "oversized")[0]["tid"]
        name = "cmpgw:rec:" + tid
        # 8 MiB, made inside Redis; the same key, so the record's TTL and deadline stay
        self.redis.command("EVAL", "return redis.call('SET', KEYS[1], string.rep('x', 8388608), 'KEEPTTL')", "1",
                           name)
        self.assertEqual(self.redis.command("STRLEN", name), ":8388608")
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 2, out + err)
        self.assertIn(b"no open transaction", out + err)
        lines = [l for l in self.gw2.log_lines() if l.get("event") == "txn_record_invalid" and l.get("tid") == tid]
        self.assertTrue(lines, self.gw2.stderr()[-3000:])
        self.assertIn("larger than an instance writes", lines[-1]["reason"])
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:lease:" + tid), ":0")  # not leased either
        self.assertEqual(self.audit(self.gw2, "confirmed", "oversized"), [])


class ErrorOnAnotherRolesPath(ThreeInstances):
    """A class of its own, whose address is over budget after one failed authentication (its connections
    closed at accept after): test_certconf_on_another_roles_path for an error message, the client aborting."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["roles"]["pbmonly"] = {k: v for k, v in cfg["roles"]["default"].items() if k != "trust"}
        cfg["limits"] = {"auth_failures_per_address": 1, "auth_failure_window": "60s"}

    parked = Continuation.parked
    held_certconf = Continuation.held_certconf

    def test_error_on_another_roles_path(self):
        """The error message of a transaction the first instance answered, from its own client (its signer,
        answering the ip) but sent to the path of another role (one that trusts no signer): the second
        instance, without a copy, refuses it as the first, with its copy, does, before either replays the
        stored request or leases the record, and neither counts it against the address. Nothing is
        aborted: the client's certConf on the path of its request is answered after, by the second
        instance, which an address over its budget would have been refused. Once, the second instance
        authenticated it as a request of that role first and refused its signature as not accepted
        there (badMessageCheck), counted."""
        flag = self.gw.dir / "errpath.flag"
        p = self.parked("errpath", flag)
        conf = self.held_certconf("errpath")
        tid = self.audit(self.gw, "issued", "errpath")[0]["tid"]
        err = self.gw.dir / "errpath.error.der"
        msg = test_errors.error_msg(test_errors.load(conf.read_bytes()), self.gw.dir / "client.key")
        err.write_bytes(test_errors.encoder.encode(msg))
        for gw in (self.gw2, self.gw):
            ans = harness.decode_cmp(gw.curl(data=err, path="/pki/roles/pbmonly/cmp").body)
            self.assert_cmp_error(ans, ("error",), "badRequest", "begun on a path of another role")
            self.assertTrue(any(l.get("event") == "txn_other_path" and l.get("tid") == tid
                                for l in gw.log_lines()), gw.stderr()[-3000:])
        self.assertEqual([l for l in self.gw2.log_lines() if l.get("tid") == tid and
                          l.get("event") in ("txn_continued", "txn_not_continued")], [])  # nothing replayed
        self.assertEqual(self.redis.command("EXISTS", "cmpgw:lease:" + tid), ":0")
        self.assertEqual(self.everywhere("rejected_by_client", "errpath"), [])  # nothing aborted
        self.assertEqual(self.gw.curl(data=err, path="/pki/roles/pbmonly/cmp").status, 200)  # not over budget
        flag.write_text("")
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "errpath")], ["confirmed"])

    def test_forged_error_counted(self):
        """The twins: an error message naming that transaction on the path of its request, but forged, is
        refused by an instance without its copy and counted against the address as before (its next
        connection is closed at accept): from another sender, not signed by it (the record refuses it before
        checking any protection: it is authenticated first), or with the sender's name and another key
        (pinned_signer). Runs after test_error_on_another_roles_path: it leaves the address over budget."""
        flag = self.gw.dir / "forgederr.flag"
        p = self.parked("forgederr", flag)
        try:
            conf = test_errors.load(self.held_certconf("forgederr").read_bytes())
            other = test_errors.load(test_errors.encoder.encode(conf))
            other["header"]["sender"] = other["header"]["recipient"]  # the gateway's name
            key = harness.genkey(self.gw.dir / "forgederr-other.key")
            sent = [(self.gw2, other, "message protection could not be verified"),
                    (self.gw3, conf, "signer of this transaction")]
            for i, (gw, msg, text) in enumerate(sent):
                f = self.gw.dir / ("forgederr-%d.der" % i)
                f.write_bytes(test_errors.encoder.encode(test_errors.error_msg(msg, key)))
                ans = harness.decode_cmp(gw.curl(data=f).body)
                self.assert_cmp_error(ans, ("error",), "badMessageCheck", text)
                self.assertFalse(gw.handshake())
            self.assertEqual(self.everywhere("rejected_by_client", "forgederr"), [])
        finally:
            p.kill()
            p.communicate(timeout=10)


class PolledContinuation(ThreeInstances):
    """A deferred request (poll_after; docs/polling.md) goes on on any instance: the one whose upstream call
    it waits for writes the result beside the transaction's record, and a pollReq on any other instance
    answers pollRep from the record until it is there, then the certificate."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["local"]["delay"] = "2500ms"
        cfg["upstreams"]["local"]["timeout"] = "6s"
        cfg["roles"]["default"]["poll_after"] = "500ms"

    def deferred(self, name, flag):
        """An ir answered `waiting` by the first instance, its pollReqs held back until |flag| exists."""
        p = self.enrol(name, self.gw, self.gw2, before_next=flag, wait=False)
        self.answered("waiting", name)
        return p

    @unittest.skipUnless(shutil.which("haproxy"), "haproxy (deploy/deps.sh installs it)")
    def test_polling_spread_over_three_instances(self):
        """`openssl cmp -keep_alive 0` through haproxy in round-robin: ir, pollReqs, certConf each on another
        instance; one "waiting", one "issued" and one "confirmed" per enrolment across the three audit logs."""
        before = len(self.events("txn_continued"))
        for i in range(2):
            name = "spread%d" % i
            with self.round_robin():  # each enrolment from the first instance on
                p, answers, cert = test_polling.cmp_polling(
                    self.gw, "ir", name, "pki/cmp",
                    ["-newkey", self.newkey(name), "-subject", "/CN=%s" % name, "-keep_alive", "0"])
            self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
            kinds = [a.body_type for a in answers]
            self.assertEqual((kinds[0], answers[0].status), ("ip", test_polling.WAITING), answers)
            self.assertIn("pollRep", kinds)
            self.assertEqual(kinds[-2:], ["ip", "pkiconf"], kinds)
            self.assert_issued(cert, self.gw.dir / ("%s.key" % name), "CN=%s" % name, [],
                               answers[-2].extra_certs_pem())
            counts = [len(self.everywhere(e, name)) for e in ("waiting", "issued", "confirmed")]
            self.assertEqual(counts, [1, 1, 1])
        # every message after the ir of each enrolment on another instance than the one before
        self.assertGreaterEqual(len(self.events("txn_continued")) - before, 2 * 3)

    def test_owner_killed_after_the_result_came(self):
        """The first instance killed -9 once its call returned: the second delivers the certificate from the
        shared result (no second "issued" record) and answers the certConf."""
        flag = self.gw.dir / "result.flag"
        p = self.deferred("resulted", flag)
        self.wait_for(lambda: self.redis.command("KEYS", "cmpgw:res:*") == "*1")  # the result is shared
        rc, out = self.first_killed(p, flag)
        self.assertEqual(rc, 0, out)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", "resulted")], ["confirmed"])
        self.assertEqual(self.audit(self.gw2, "issued", "resulted"), [])  # on the first one's audit log
        self.assertEqual(len(self.audit(self.gw, "issued", "resulted")), 1)

    def test_owner_killed_during_the_upstream_call(self):
        """The first instance killed -9 while its call runs: the second answers pollRep until the call's
        deadline (the upstream's timeout), then a rejection that says the outcome is unknown."""
        flag = self.gw.dir / "call.flag"
        rc, out = self.first_killed(self.deferred("midcall", flag), flag)
        self.assertEqual(rc, 2, out)
        self.assertIn(b"did not answer in time", out)
        self.assertIn(b"systemUnavail", out)
        self.assertEqual(self.everywhere("issued", "midcall"), [])

    def test_expiry_of_an_uncollected_result_recorded_once(self):
        """The client gone after `waiting`: the certificate issued for it is recorded expired_undelivered
        once across the three audit logs, from the shared record."""
        p = self.deferred("uncollected", self.gw.dir / "uncollected.never")
        p.kill()
        p.communicate()
        # transaction_ttl 4 s + the upstream's timeout 6 s, then GW_STATE_CLAIM_SLACK
        self.wait_for(lambda: self.everywhere("expired_undelivered", "uncollected"), timeout=40)
        time.sleep(GW_STATE_CLAIM_SLACK + 2)  # room for a second record, which must not come
        records = self.everywhere("expired_undelivered", "uncollected")
        self.assertEqual(len(records), 1, records)
        self.assertEqual(records[0]["serial"], self.audit(self.gw, "issued", "uncollected")[0]["serial"])


class LateResultElsewhere(ThreeInstances):
    """The deadline of a deferred request won on another instance: the first instance's upstream call
    outlives its timeout and the client's pollReqs go to the second, which answers "did not answer in
    time" and closes the transaction. The certificate the call returns after that is delivered by no one:
    on record as not delivered, and withdrawn at the CA, as when the deadline wins on the instance that
    made the call."""

    @classmethod
    def edit_config(cls, cfg, gw):
        super().edit_config(cfg, gw)
        cfg["upstreams"]["local"]["delay"] = "7s"  # past the timeout + GW_STATE_CLOCK_SKEW_MS (2 s)
        cfg["upstreams"]["local"]["timeout"] = "2s"
        cfg["roles"]["default"]["poll_after"] = "500ms"

    def test_certificate_after_the_deadline_elsewhere_withdrawn(self):
        rc, out = self.enrol("lateelsewhere", self.gw, self.gw2)
        self.assertEqual(rc, 2, out)
        self.assertIn("did not answer in time", out)
        self.wait_for(lambda: self.audit(self.gw, "expired_undelivered", "lateelsewhere"), timeout=30,
                      watched=(self.gw,))
        serial = self.audit(self.gw, "expired_undelivered", "lateelsewhere")[0]["serial"]
        # withdrawn by the completion right after its "expired_undelivered" record: "revoked", or here, where
        # the shared instances' local CA keeps no store, "revoke_failed" saying to revoke it by hand
        self.wait_for(lambda: [r for e in ("revoked", "revoke_failed") for r in self.audit(self.gw, e)
                               if r.get("serial") == serial], timeout=10, watched=(self.gw,))
        self.assertEqual(self.everywhere("confirmed", "lateelsewhere"), [])


class MigrationStepBetweenInstances(TwoInstances):
    """A rolling reload of a migration step (docs/migration.md): one instance has the role's migration "off",
    the other already "live", the device in the cohort. A CRMF ir that the first instance sends to its CA,
    slower than poll_after, is polled for and confirmed on the second, which must plan it for the upstream
    its record names, not for the one its own step would choose now: the old CA (the local issuer) plans the
    requested names, Vault's delegate issuer those Vault's role writes (the CN only)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        key = gw.dir / "state.key"
        key.write_bytes(os.urandom(32).hex().encode() + b"\n")
        key.chmod(0o600)
        cfg["cmp"] = {"state": dict(cls.redis.state(), mac_key_file="state.key")}
        cls.vault = vaultenv.running(cls, gw.dir)
        cls.vault.make_delegate()
        (gw.dir / "delegate-store").mkdir(exist_ok=True)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["upstreams"]["vault-delegate"] = {"type": "local", "cert": "vault-delegate.pem",
                                              "key": "vault-delegate.key", "chain": "vault-delegate-chain.pem",
                                              "store": "delegate-store", "shared_store": True}
        for up in ("local", "vault-delegate"):
            cfg["upstreams"][up].update(delay="2500ms", timeout="6s")
        (gw.dir / "cohort.txt").write_text("/O=cmpgw e2e/CN=mover1.example.com\n/O=cmpgw e2e/CN=mover2.example.com\n")
        cfg["roles"]["default"].update({
            "upstream_role": "devices", "crmf": "delegate", "delegate": "vault-delegate", "ttl": "24h",
            "poll_after": "500ms", "implicit_confirm": False,
            "migration": {"from": "local", "to": "vault", "mode": "off",
                          "cohort": {"allowlist": "cohort.txt", "by": "subject"}}})

    @staticmethod
    def step(gw, mode):
        cfg = json.loads(gw.config_path.read_text())
        cfg["roles"]["default"]["migration"]["mode"] = mode
        gw.config_path.write_text(json.dumps(cfg, indent=2))
        status, body = harness.admin(gw, "/reload", "POST")
        assert status == 200, body

    def polled_elsewhere(self, cn):
        """cmpclient's ir of /O=cmpgw e2e/CN=|cn| on the first instance, its pollReqs and certConf on the
        second; the issuer of the certificate it confirmed."""
        d = self.gw.dir
        harness.genkey(d / ("%s.key" % cn))
        argv = [CLIENT_BIN, "--url", self.gw.url(), "--next-url", self.gw2.url(), "--cafile", d / "ca.pem",
                "--tls-cert", d / "client.pem", "--tls-key", d / "client.key", "--cert", d / "client.pem",
                "--key", d / "client.key", "ir", "--newkey", d / ("%s.key" % cn), "--subject",
                "/O=cmpgw e2e/CN=%s" % cn, "--certout", d / ("%s.pem" % cn)]
        p = subprocess.run([str(a) for a in argv], capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, (p.stdout + p.stderr).decode(errors="replace") + self.gw2.stderr()[-3000:])
        self.assertEqual(len(self.audit(self.gw, "waiting", cn)), 1)
        self.assertEqual([r["status"] for r in self.audit(self.gw2, "confirmed", cn)], ["confirmed"])
        self.assertEqual(self.audit(self.gw2, "revoked", cn), [])
        return harness.run(["openssl", "x509", "-in", d / ("%s.pem" % cn), "-noout", "-issuer", "-nameopt",
                            "RFC2253"]).stdout.decode().strip()

    def test_old_ca_request_polled_where_the_device_moved(self):
        self.step(self.gw, "off")
        self.step(self.gw2, "live")
        self.assertEqual(self.polled_elsewhere("mover1.example.com"), "issuer=CN=cmpgw demo issuing CA,O=cmpgw demo")
        self.assertEqual(self.audit(self.gw, "waiting", "mover1.example.com")[0]["upstream"], "local")

    def test_new_ca_request_polled_where_the_step_is_rolled_back(self):
        self.step(self.gw, "live")
        self.step(self.gw2, "off")
        self.assertEqual(self.polled_elsewhere("mover2.example.com"), "issuer=CN=cmpgw delegate issuer")
        self.assertEqual(self.audit(self.gw, "waiting", "mover2.example.com")[0]["upstream"], "vault-delegate")


if __name__ == "__main__":
    harness.main()
