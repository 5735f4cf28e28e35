"""Polling for slow upstreams (docs/polling.md) with `openssl cmp`, which polls by itself:
a role with "poll_after" answers an ir or p10cr whose upstream call outlasts it with `waiting`, serves
pollReq with pollRep(checkAfter) until the certificate arrives, then ip and certConf as usual. Against
the local issuer's "delay" knob and the Vault-API test server set to a latency above poll_after; a role
without poll_after still blocks (the twin); and a gateway restarted while its client polls: the client
fails cleanly with a decoded CMP error, and the first run's audit log shows the certificate (with
the redis state and transaction records, the restarted gateway delivers it instead); a certificate whose
call the stop waited for is on record as not delivered. A Vault that
issues after the upstream's timeout (its retry of a 503 answered late) has that certificate revoked
and on the audit log as not delivered.
"""
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402
from pyasn1.error import PyAsn1Error  # noqa: E402
import vaultenv  # noqa: E402

WAITING, REJECTION, ACCEPTED = 3, 2, 0  # PKIStatus (RFC 9810 §5.2.3)
MAX_RSP = 16


def cmp_polling(gw, cmd, out, path, extra, timeout=harness.CLIENT_TIMEOUT, meanwhile=None):
    """`openssl cmp` with room for every answer of a polled transaction; returns (proc, answers, cert).
    |meanwhile|, if given, is called with the running client's Popen and returns before it is waited for."""
    d = gw.dir
    rsp = [d / ("%s.rsp%02d.der" % (out, i)) for i in range(MAX_RSP)]
    certout = d / ("%s.cert.pem" % out)
    for f in rsp + [certout]:
        if f.exists():
            f.unlink()
    argv = ["openssl", "cmp", "-cmd", cmd, "-server", "127.0.0.1:%d" % gw.port, "-path", path,
            "-trusted", d / "ca.pem", "-rspout", ",".join(str(f) for f in rsp),
            "-msg_timeout", str(timeout), "-total_timeout", str(timeout),
            "-tls_used", "-tls_trusted", d / "ca.pem", "-tls_cert", d / "client.pem", "-tls_key", d / "client.key",
            "-cert", d / "client.pem", "-key", d / "client.key", "-certout", certout] + list(extra)
    if meanwhile is None:
        p = harness.run(argv, cwd=d, check=False, timeout=timeout + 10)
    else:
        with subprocess.Popen([str(a) for a in argv], cwd=d, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) as proc:
            try:
                meanwhile(proc)
                stdout, stderr = proc.communicate(timeout=timeout + 10)
            except BaseException:
                proc.kill()
                raise
        p = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    files = [f for f in rsp if f.exists()]
    answers = []
    for f in files:
        try:
            answers.append(harness.decode_cmp(f))
        except (PyAsn1Error, IndexError):
            # a client |meanwhile| killed may have been writing its last answer: that one alone may be torn
            if p.returncode >= 0 or f != files[-1]:
                raise
    return p, answers, certout if certout.exists() else None


def first_answer(gw, out):
    """The first answer the client of cmp_polling(|gw|, ..., |out|, ...) wrote, once it is whole; else None."""
    try:
        return harness.decode_cmp(gw.dir / ("%s.rsp00.der" % out))
    except (OSError, PyAsn1Error):  # not there yet, or half written
        return None


def quit_when_told_to_wait(gw, out, stopped):
    """A |meanwhile| for cmp_polling: the client killed as soon as its first answer (the one that tells it to
    poll) is whole on file: a client that stops polling, at a point no timeout of its own would fix on a loaded
    machine. |stopped|() is called then, the client gone, to see what the gateway had done by that time."""

    def meanwhile(client):
        harness.settled(lambda: first_answer(gw, out) is not None or client.poll() is not None, bool,
                        harness.CLIENT_TIMEOUT)
        client.kill()
        client.wait()
        stopped()

    return meanwhile


def audit(gw, event, path=None):
    """|gw|'s audit records of |event|, or those of |path|, a copy made after it exited: strict (whole_lines)
    but while the gateway may append."""
    strict = path is not None or not harness.appending(gw)
    return [r for r in harness.json_lines(path or gw.dir / "audit.log", strict=strict) if r.get("event") == event]


def of_tid(gw, event, tid):
    """|gw|'s audit records of |event| for the transaction |tid|. Only the lines that name it are parsed: a
    load run before leaves thousands of records, and wait_revoked looks five times a second."""
    return [r for r in harness.json_lines(gw.dir / "audit.log", tid.encode())
            if r.get("event") == event and r.get("tid") == tid]


def wait_revoked(gw, tid, wait_s):
    """Waits for the outcome, not for a time: until |tid| has a "revoked" record, at most |wait_s|."""
    deadline = time.monotonic() + wait_s
    while not of_tid(gw, "revoked", tid) and time.monotonic() < deadline:
        time.sleep(0.2)


def revoked_at_vault(vault, serial):
    return vault.api("GET", "/v1/pki/cert/%s" % vaultenv.colon_serial(serial))["data"]["revocation_time"] != 0


def vault_poll_role(cls, cfg, gw, **upstream):
    """Upstream "vault" (the Vault-API test server, started for |cls|, with |upstream| keys on top) and
    role "vault-poll" on it, polling after 500 ms."""
    cls.vault = vaultenv.running(cls, gw.dir)
    base = dict(cfg["roles"]["default"])
    base["allowed_san_types"] = ["dns"]
    cfg["upstreams"]["vault"] = cls.vault.upstream(namespace="e2e", **upstream)
    cfg["roles"]["vault-poll"] = dict(base, upstream="vault", upstream_role="devices", poll_after="500ms")


class PollingLocal(harness.GatewayTestCase):
    """The local issuer held 2.5 s per call; role "slow" polls after 500 ms, the default role blocks.
    Role "overdue" blocks on a local issuer held past its 1 s timeout."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["upstreams"]["local"]["delay"] = "2500ms"
        cfg["roles"]["slow"] = dict(cfg["roles"]["default"], poll_after="500ms")
        cfg["upstreams"]["overdue"] = dict(cfg["upstreams"]["local"], timeout="1s", store="overdue-store")
        (gw.dir / "overdue-store").mkdir(exist_ok=True)
        cfg["roles"]["overdue"] = dict(cfg["roles"]["default"], upstream="overdue")

    def test_ir_waiting_pollrep_then_ip(self):
        key = self.newkey("polled")
        p, answers, cert = cmp_polling(self.gw, "ir", "polled", "pki/roles/slow/cmp",
                                       ["-newkey", key, "-subject", "/CN=polled"])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        kinds = [a.body_type for a in answers]
        self.assertEqual(answers[0].body_type, "ip", answers)
        self.assertEqual(answers[0].status, WAITING, answers)
        self.assertIn("pollRep", kinds)
        final = [a for a in answers[1:] if a.body_type == "ip"]
        self.assertEqual(len(final), 1, answers)
        self.assertEqual(final[0].status, ACCEPTED, answers)
        self.assertEqual(kinds[-1], "pkiconf", answers)
        self.assert_issued(cert, key, "CN=polled", [], final[0].extra_certs_pem())
        tid = answers[0].header["transactionID"].asOctets().hex()
        self.assertEqual(len([r for r in audit(self.gw, "waiting") if r.get("tid") == tid]), 1)
        issued = [r for r in audit(self.gw, "issued") if r.get("tid") == tid]
        self.assertEqual(len(issued), 1, issued)  # written once, by the completion
        self.assertEqual(len([r for r in audit(self.gw, "confirmed") if r.get("tid") == tid]), 1)

    def test_replayed_pollreq_leaves_the_transaction(self):
        """A pollReq sent again by someone who captured it (after the gateway answered it) is refused
        with badRecipientNonce and ends nothing: the client's own next pollReq collects the certificate."""
        key = self.newkey("replayed")
        req = [self.gw.dir / ("replayed.req%02d.der" % i) for i in range(MAX_RSP)]
        rsp = [self.gw.dir / ("replayed.rsp%02d.der" % i) for i in range(MAX_RSP)]
        for f in req:
            if f.exists():
                f.unlink()
        replays = []

        def replay(client):
            # the first pollRep (checkAfter 1 s): the client sleeps, its first pollReq is now an old one.
            # Stopped there, the client sends its next pollReq only after the replay was answered, however
            # late the replay comes; -reqout writes each request before it is sent.
            self.assertTrue(harness.settled(lambda: rsp[1].exists() or client.poll() is not None, bool))
            client.send_signal(signal.SIGSTOP)
            try:
                self.assertTrue(rsp[1].exists(), "no first pollRep")
                self.assertFalse(req[2].exists(), "the client polled again before it was stopped")
                replays.append(self.gw.curl(path="/pki/roles/slow/cmp", data=req[1]))
            finally:
                client.send_signal(signal.SIGCONT)

        p, answers, cert = cmp_polling(self.gw, "ir", "replayed", "pki/roles/slow/cmp",
                                       ["-newkey", key, "-subject", "/CN=replayed",
                                        "-reqout", ",".join(str(f) for f in req)], meanwhile=replay)
        self.assertEqual(replays[0].status, 200, replays[0].status_line)
        a = harness.decode_cmp(replays[0].body)
        self.assert_cmp_error(a, ["error"], "badRecipientNonce",
                              "recipNonce does not match the senderNonce of this server's last message: "
                              "answer the latest response")
        self.assertEqual(harness.decode_cmp(req[1]).body_type, "pollReq")
        self.assertEqual(harness.decode_cmp(req[2]).body_type, "pollReq")  # its own, after the replay
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        self.assertEqual([a.body_type for a in answers][-2:], ["ip", "pkiconf"], answers)
        self.assert_issued(cert, key, "CN=replayed", [], answers[-2].extra_certs_pem())
        tid = answers[0].header["transactionID"].asOctets().hex()
        self.assertEqual(len([r for r in audit(self.gw, "confirmed") if r.get("tid") == tid]), 1)

    def test_without_poll_after_the_worker_waits(self):
        key = self.newkey("blocking")
        p, answers, cert = cmp_polling(self.gw, "ir", "blocking", "pki/cmp",
                                       ["-newkey", key, "-subject", "/CN=blocking"])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        self.assertEqual([a.body_type for a in answers], ["ip", "pkiconf"], answers)
        self.assertEqual(answers[0].status, ACCEPTED, answers)

    def test_served_request_has_no_late_certificate(self):
        """A served request without poll_after never waits in the blocking sign wait, whose certificate after
        the deadline is only logged (late_issue): its answer comes in the same pass however long the issuer
        took, and the certificate is delivered, on the audit log as issued and confirmed."""
        key = self.newkey("overdue")
        p, answers, cert = cmp_polling(self.gw, "ir", "overdue", "pki/roles/overdue/cmp",
                                       ["-newkey", key, "-subject", "/CN=overdue"])
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        self.assertEqual([(a.body_type, a.status) for a in answers][:1], [("ip", ACCEPTED)], answers)
        self.assert_issued(cert, key, "CN=overdue", [], answers[0].extra_certs_pem())
        tid = answers[0].header["transactionID"].asOctets().hex()
        self.assertEqual(len(of_tid(self.gw, "issued", tid)), 1)
        self.assertEqual(len(of_tid(self.gw, "confirmed", tid)), 1)
        self.assertNotIn("late_issue", [l.get("event") for l in self.gw.log_lines()])


class PollingVault(harness.GatewayTestCase):
    """The Vault-API test server answering sign calls after 2.5 s; the role polls after 500 ms."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        vault_poll_role(cls, cfg, gw)


    def _p10cr(self, name, cn):
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s" % cn, "-out", csr])
        return key, cmp_polling(self.gw, "p10cr", name, "pki/roles/vault-poll/cmp", ["-csr", csr])

    def test_p10cr_polled_until_vault_answers(self):
        self.vault.control({"latency_ms": 2500, "match": "sign/"})
        key, (p, answers, cert) = self._p10cr("vpoll", "poll.example.com")
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        self.assertIn("pollRep", [a.body_type for a in answers])
        final = [a for a in answers[1:] if a.body_type == "cp"]
        self.assertEqual([a.status for a in final], [ACCEPTED], answers)
        self.assert_issued(cert, key, "CN=poll.example.com", ["DNS:poll.example.com"], final[0].extra_certs_pem())
        self.assertEqual(len(self.vault.requests("sign/devices")), 1)  # asked once, released from the store

    def test_vault_refusal_arrives_through_pollreq(self):
        self.vault.control({"latency_ms": 2500, "match": "sign/"})
        _, (p, answers, cert) = self._p10cr("vbad", "poll.not-allowed.org")
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        self.assert_cmp_error(answers[-1], ("cp",), "badCertTemplate")

    def test_refused_answer_with_certificate_withdrawn(self):
        # Vault issues, but its answer is refused (expiration out of range) after the client was told to
        # poll: the certificate is on record and revoked at Vault, the pollReq gets the refusal
        self.vault.control({"latency_ms": 2500, "match": "sign/", "sign_data": {"expiration": -1}})
        mark = self.vault.mark()
        _, (p, answers, cert) = self._p10cr("vrefused", "refused.example.com")
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        self.assert_cmp_error(answers[-1], ("cp",), "systemFailure")
        tid = answers[0].header["transactionID"].asOctets().hex()
        # revoked on the gateway's withdrawal thread, which may end after the pollReq got the refusal
        harness.settled(lambda: [r for r in audit(self.gw, "revoked") if r.get("tid") == tid], bool)
        revokes = self.vault.since(mark, "/revoke")
        self.assertEqual(len(revokes), 1, revokes)
        serial = revokes[0]["body"]["serial_number"].replace(":", "").lstrip("0")
        mine = [(r["event"], r.get("serial", "").lstrip("0")) for r in harness.json_lines(self.gw.dir / "audit.log")
                if r.get("tid") == tid and r["event"] in ("issued", "rejected", "revoked")]
        # the pollReq's own refusal (a "rejected" record without a serial) may come before or after the
        # withdrawal thread's "revoked": only the certificate's records are in a fixed order
        self.assertEqual([m for m in mine if m[1] == serial], [("rejected", serial), ("revoked", serial)], mine)


class PollingVaultOutside(harness.GatewayTestCase):
    """Vault answers after 2.5 s with a certificate outside the role's policy (its Vault role writes an
    organization the request did not ask for): checked when it comes, not when a pollReq collects it,
    so a client that stops polling leaves no valid certificate on record as issued."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        cls.vault = vaultenv.running(cls, gw.dir,
                                     {"devices-org": dict(vaultenv.DEVICES, organization=["Elsewhere"])})
        base = dict(cfg["roles"]["default"])
        base["allowed_san_types"] = ["dns"]
        cfg["upstreams"]["vault"] = cls.vault.upstream(namespace="e2e")
        cfg["roles"]["vault-org"] = dict(base, upstream="vault", upstream_role="devices-org", poll_after="500ms")

    def _p10cr(self, name, latency_ms=2500, meanwhile=None):
        self.vault.control({"latency_ms": latency_ms, "match": "sign/"})
        key = self.newkey(name)
        csr = self.gw.dir / ("%s.csr" % name)
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s.example.com" % name, "-out", csr])
        p, answers, cert = cmp_polling(self.gw, "p10cr", name, "pki/roles/vault-org/cmp", ["-csr", csr],
                                       meanwhile=meanwhile)
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        return answers, answers[0].header["transactionID"].asOctets().hex()

    def assert_withdrawn_at_arrival(self, tid):
        self.assertEqual(of_tid(self.gw, "issued", tid), [])
        rejected = [r for r in of_tid(self.gw, "rejected", tid) if r.get("serial")]  # not the pollReq's
        self.assertEqual(len(rejected), 1, rejected)
        self.assertIn("the CA changed the subject", rejected[0].get("status", ""), rejected)
        serial = rejected[0]["serial"].lower()
        self.assertEqual([r.get("serial", "").lower() for r in of_tid(self.gw, "revoked", tid)], [serial])
        self.assertTrue(revoked_at_vault(self.vault, serial))

    def test_unpolled_certificate_withdrawn_when_it_comes(self):
        # the client stops once told to poll (the waiting cp after poll_after's 500 ms), before Vault answers
        # (4 s); the transaction lives on for minutes, the check must not wait for it
        seen = {}

        def stopped():
            tid = first_answer(self.gw, "orgquit").header["transactionID"].asOctets().hex()
            seen["before"] = of_tid(self.gw, "rejected", tid) + of_tid(self.gw, "issued", tid)

        _, tid = self._p10cr("orgquit", latency_ms=4000, meanwhile=quit_when_told_to_wait(self.gw, "orgquit", stopped))
        self.assertEqual(seen["before"], [])  # the certificate came after the client stopped
        wait_revoked(self.gw, tid, 20)
        self.assert_withdrawn_at_arrival(tid)

    def test_pollreq_gets_the_refusal(self):
        answers, tid = self._p10cr("orgpoll")
        self.assert_cmp_error(answers[-1], ("cp",), "badCertTemplate", "outside this route's policy")
        harness.settled(lambda: of_tid(self.gw, "revoked", tid), bool)
        self.assert_withdrawn_at_arrival(tid)


class PollingAbandoned(harness.GatewayTestCase):
    """The client gives up polling before Vault answers (3 s); the certificate comes within the
    upstream's timeout, nobody collects it, and the transaction expires (transaction_ttl 1 s plus the
    upstream's 4 s): the certificate nobody received is revoked at Vault, the audit log says why."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        vault_poll_role(cls, cfg, gw, timeout="4s")
        cfg.setdefault("cmp", {})["transaction_ttl"] = "1s"

    def test_uncollected_certificate_revoked(self):
        # the client gives up once told to poll (the waiting cp after poll_after's 500 ms), before Vault
        # answers (3 s): a timeout of its own (2 s, once 1 s) was eaten by a loaded machine before that answer
        self.vault.control({"latency_ms": 3000, "match": "sign/"})
        key = self.newkey("gaveup")
        csr = self.gw.dir / "gaveup.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=gaveup.example.com", "-out", csr])
        seen = {}

        def stopped():
            tid = first_answer(self.gw, "gaveup").header["transactionID"].asOctets().hex()
            seen["before"] = of_tid(self.gw, "issued", tid)

        p, answers, cert = cmp_polling(self.gw, "p10cr", "gaveup", "pki/roles/vault-poll/cmp", ["-csr", csr],
                                       meanwhile=quit_when_told_to_wait(self.gw, "gaveup", stopped))
        self.assertEqual(p.returncode, -signal.SIGKILL)  # gave up polling: nothing collected
        self.assertEqual(seen["before"], [])  # the certificate came after the client stopped
        self.assertIsNone(cert)
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        tid = answers[0].header["transactionID"].asOctets().hex()
        # the call lands at 3 s, the transaction expires at 5 s (with transaction records, from its
        # record GW_STATE_CLAIM_SLACK later)
        wait_revoked(self.gw, tid, 60)
        issued = of_tid(self.gw, "issued", tid)
        self.assertEqual([r.get("status") for r in issued], ["awaiting the client's pollReq"], issued)
        serial = issued[0]["serial"].lower()
        undelivered = [r for r in audit(self.gw, "expired_undelivered") if r.get("tid") == tid]
        self.assertEqual([(r.get("serial", "").lower(), r.get("status")) for r in undelivered],
                         [(serial, "no pollReq collected it before its transaction closed")], undelivered)
        revoked = [r for r in audit(self.gw, "revoked") if r.get("tid") == tid]
        self.assertEqual([r.get("serial", "").lower() for r in revoked], [serial], revoked)
        self.assertTrue(revoked_at_vault(self.vault, serial))
        self.assertIn("txn_expired_pending", [l.get("event") for l in self.gw.log_lines()])


class PollingVaultLate(harness.GatewayTestCase):
    """Vault answers after the upstream's 3 s timeout (a 503 after 2.2 s, the retry it allows answered
    2.2 s later): the client's pollReq past the deadline gets systemUnavail, and the certificate Vault
    issued then is on the audit log as not delivered and revoked at Vault."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        vault_poll_role(cls, cfg, gw, timeout="3s")

    def test_certificate_after_the_deadline_revoked(self):
        # two margins a loaded machine eats into: the retry goes out only if its back-off ends before the
        # deadline (at 2.4 s of 3 s; 1.7 s of 2 s once left 300 ms), and the certificate must come after the
        # client's first pollReq past the deadline (one a second from 1.5 s: 3.5 s; the certificate at 4.6 s)
        self.vault.control({"latency_ms": 2200, "force_status": 503, "force_count": 1, "match": "sign/"})
        key = self.newkey("late")
        csr = self.gw.dir / "late.csr"
        harness.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=late.example.com", "-out", csr])
        p, answers, cert = cmp_polling(self.gw, "p10cr", "late", "pki/roles/vault-poll/cmp", ["-csr", csr])
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", WAITING), answers)
        self.assert_cmp_error(answers[-1], ("cp",), "systemUnavail")
        tid = answers[0].header["transactionID"].asOctets().hex()
        wait_revoked(self.gw, tid, 30)  # the retry lands over a second after the deadline
        issued = of_tid(self.gw, "issued", tid)
        self.assertEqual([r.get("status") for r in issued], ["issued after the deadline; not delivered"], issued)
        serial = issued[0]["serial"].lower()
        self.assertEqual([r.get("serial", "").lower() for r in of_tid(self.gw, "revoked", tid)], [serial])
        self.assertTrue(revoked_at_vault(self.vault, serial))
        self.assertIn("late_issue", [l.get("event") for l in self.gw.log_lines()])


@unittest.skipIf(harness.STATE == "redis", "with transaction records the result goes beside the record, for any "
                 "instance to deliver")
class PollingStopped(harness.GatewayTestCase):
    """SIGTERM while a deferred request's call runs, on a single gateway: the stop waits for the call, and
    the certificate it returns, which no pollReq can collect any more, is on record as issued and then as
    not delivered (`expired_undelivered`, "the gateway stopped before a pollReq collected it"), as one
    that came before the stop is: its "issued" record alone reads as one still awaiting its pollReq."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["upstreams"]["local"]["delay"] = "2s"
        cfg["roles"]["slow"] = dict(cfg["roles"]["default"], poll_after="500ms")

    def test_certificate_of_a_call_the_stop_waited_for(self):
        key = self.newkey("stopped")
        out = {}
        waiting = self.gw.dir / "stopped.rsp00.der"

        def enrol():
            out["res"] = cmp_polling(self.gw, "ir", "stopped", "pki/roles/slow/cmp",
                                     ["-newkey", key, "-subject", "/CN=stopped", "-keep_alive", "0"],
                                     timeout=5 * harness.SLOW)

        t = threading.Thread(target=enrol)
        t.start()
        harness.settled(waiting.exists, bool)  # told to poll: the call (2 s) runs
        self.assertTrue(waiting.exists(), self.gw.stderr()[-3000:])
        self.gw.signal_stop()
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])
        t.join(20)
        tid = harness.decode_cmp(waiting).header["transactionID"].asOctets().hex()
        mine = [(r["event"], r.get("status")) for r in audit(self.gw, "issued") + audit(self.gw, "expired_undelivered")
                if r.get("tid") == tid]
        self.assertEqual(mine, [("issued", "awaiting the client's pollReq"),
                                ("expired_undelivered", "the gateway stopped before a pollReq collected it")],
                         self.gw.stderr()[-3000:])
        serials = {r["serial"] for e in ("issued", "expired_undelivered") for r in of_tid(self.gw, e, tid)}
        self.assertEqual(len(serials), 1, serials)


class PollingRestart(harness.GatewayTestCase):
    """The gateway stops while its client polls: the call still lands in the audit log; the restarted
    gateway knows no such transaction and says so, or, with transaction records in a shared state,
    delivers the certificate from the record."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["upstreams"]["local"]["delay"] = "7s"
        cfg["upstreams"]["local"]["timeout"] = "30s"
        cfg["roles"]["slow"] = dict(cfg["roles"]["default"], poll_after="5s")  # pollRep checkAfter 5 s

    def test_restart_during_polling(self):
        key = self.newkey("restart")
        out = {}

        def enrol():
            out["res"] = cmp_polling(self.gw, "ir", "restart", "pki/roles/slow/cmp",
                                     # a connection kept alive dies with the first gateway: openssl cmp 3.0
                                     # then fails with a transport error; a new one per message reaches the
                                     # restarted gateway
                                     ["-newkey", key, "-subject", "/CN=restart", "-keep_alive", "0"],
                                     timeout=60)

        first_pollrep = self.gw.dir / "restart.rsp01.der"
        if first_pollrep.exists():
            first_pollrep.unlink()
        t = threading.Thread(target=enrol)
        t.start()
        # waiting answered at 5 s, then the first pollRep, which asks for 5 s more: the client sleeps
        # while the upstream call (7 s) still runs
        harness.settled(first_pollrep.exists, bool)
        self.assertTrue(first_pollrep.exists(), self.gw.stderr()[-3000:])
        self.gw.signal_stop()
        rc = self.gw.wait_exit()  # waits for the 7 s upstream call, within the drain deadline
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0)
        first_run_audit = self.gw.dir / "audit.first-run.log"
        shutil.copy(self.gw.dir / "audit.log", first_run_audit)
        events = [l.get("event") for l in self.gw.log_lines()]
        shared = harness.STATE == "redis"  # with transaction records the transaction outlives the process
        self.assertIn("txn_left_to_cluster" if shared else "txn_abandoned_pending", events)
        self.gw.start()  # same port, same config, empty transaction table
        t.join(90)
        p, answers, cert = out["res"]
        self.assertEqual((answers[0].body_type, answers[0].status), ("ip", WAITING), answers)
        tid = answers[0].header["transactionID"].asOctets().hex()
        issued = [r for r in audit(self.gw, "issued", first_run_audit) if r.get("tid") == tid]
        self.assertEqual(len(issued), 1, issued)
        self.assertEqual(issued[0].get("status"), "awaiting the client's pollReq")
        if shared:  # the restarted process delivers the result the first one left beside the record
            self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-3000:])
            self.assertEqual([a.body_type for a in answers][-2:], ["ip", "pkiconf"])
            self.assertEqual([r for r in audit(self.gw, "issued") if r.get("tid") == tid], issued)
            self.assertEqual(len([r for r in audit(self.gw, "confirmed") if r.get("tid") == tid]), 1)
            return
        self.assertNotEqual(p.returncode, 0)
        self.assertIsNone(cert)
        self.assertIn("polling failed", p.stdout.decode(errors="replace"))
        self.assert_cmp_error(answers[-1], ("error",), "badRequest", "no open transaction")

if __name__ == "__main__":
    harness.main()
