"""SIGTERM with a request in flight: the request still gets its certificate, new connections are refused,
and the gateway exits 0 (gw_server_stop: stop accepting, drain, exit).

A client that pipelined requests and never read the answers held the drain until its deadline (HTTP/1
had no send timeout): limits.send_timeout now ends its connection during the drain too."""
import socket
import threading
import time
import unittest

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402


class ShutdownInFlight(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["upstreams"]["local"]["delay"] = "3s"

    def test_sigterm_drains_in_flight_request(self):
        key = self.newkey("inflight")
        out = {}

        def enrol():
            try:
                out["res"] = self.gw.cmp("ir", "inflight", newkey=key, subject="/CN=inflight",
                                         extra=["-implicit_confirm"])
            except Exception as e:  # reported below, on the test thread
                out["error"] = e

        t = threading.Thread(target=enrol)
        t.start()
        time.sleep(1.0)  # the ir now waits in the upstream's 3 s delay
        self.assertTrue(t.is_alive(), out)
        self.gw.signal_stop()
        time.sleep(0.5)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.gw.port), timeout=2).close()
        t.join(harness.CLIENT_TIMEOUT)
        self.assertNotIn("error", out, out.get("error"))
        self.assert_issued(out["res"].cert, key, "CN=inflight", [], out["res"].first.extra_certs_pem())
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])



class ShutdownStuckReader(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"send_timeout": "2s"}

    def test_sigterm_drain_ends_a_client_that_never_reads(self):
        sock, peer = harness.stuck_pipeliner(self.gw)
        try:
            self.gw.signal_stop()
            rc = self.gw.wait_exit()
        finally:
            sock.close()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])
        events = [e for e in self.gw.log_lines() if e.get("event") in ("drain_timeout", "http1_connection_closed")]
        self.assertEqual([(e["event"], e.get("peer")) for e in events], [("http1_connection_closed", peer)])

if __name__ == "__main__":
    harness.main()
