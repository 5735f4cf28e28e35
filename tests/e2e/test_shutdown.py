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
        deadline = time.monotonic() + harness.CLIENT_TIMEOUT
        while not harness.audit_records(self.gw, "intent", cn="inflight"):  # recorded as the CA is asked
            self.assertLess(time.monotonic(), deadline, out)
            time.sleep(0.05)
        self.assertTrue(t.is_alive(), out)  # the ir waits in the upstream's 3 s delay
        self.gw.signal_stop()
        harness.wait_listener_closed(self.gw)
        t.join(harness.CLIENT_TIMEOUT)
        self.assertNotIn("error", out, out.get("error"))
        self.assert_issued(out["res"].cert, key, "CN=inflight", [], out["res"].first.extra_certs_pem())
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])



class ShutdownKeptConnection(harness.GatewayTestCase):

    def test_request_while_draining(self):
        """A request on a keep-alive connection opened before SIGTERM, sent while the gateway drains, is
        answered 503 "shutting down" and its connection closed (docs/errors.md, http_shutting_down); the
        gateway then exits 0."""
        der = self.gw.make_request("drained", subject="/CN=drained").read_bytes()
        raw = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        sock = self.gw.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")
        try:
            self.gw.signal_stop()
            harness.wait_listener_closed(self.gw)  # draining: this connection idles on
            sock.sendall(b"POST /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/pkixcmp\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(der) + der)
            answer = harness.read_to_eof(sock)
        finally:
            sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").lower().split("\r\n")
        self.assertTrue(lines[0].startswith("http/1.1 503 "), head)
        self.assertIn("connection: close", lines[1:], head)
        self.assertEqual(body, b"shutting down\n")
        rc = self.gw.wait_exit()
        self.gw.proc = None
        self.gw.check_stderr()
        self.assertEqual(rc, 0, self.gw.stderr()[-3000:])


class ShutdownStuckReader(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"send_timeout": "2s"}

    def test_sigterm_drain_ends_a_client_that_never_reads(self):
        sock, peer, _ = harness.stuck_pipeliner(self.gw)
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
