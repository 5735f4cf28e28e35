"""The PROXY protocol behind an L4 load balancer (docs/operations.md, "Behind a load balancer"): a listener with
"trusted_proxies" ["127.0.0.2/32"] reads a version 1 or 2 header from connections of 127.0.0.2 only, and
takes the client's address from it (request log, per-address limits); a trusted proxy that sends no header,
or a malformed one, is closed with a logged reason; a header from anyone else is never read (it breaks their
TLS). End to end: `openssl cmp` through a real haproxy in TCP mode (TLS passthrough, send-proxy-v2 and
send-proxy, from source 127.0.0.2) enrols, the gateway sees the client's address, never the balancer's.
"""
import json
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

PROXY = "127.0.0.2"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, sport, dst="127.0.0.1", dport=8443):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    return V2_SIG + b"\x21\x11" + struct.pack(">H", len(body)) + body


def v1_header(src, sport, dst="127.0.0.1", dport=8443):
    return ("PROXY TCP4 %s %s %d %d\r\n" % (src, dst, sport, dport)).encode()


class Haproxy:
    """haproxy in the foreground, TCP mode: one frontend per PROXY protocol version, to one gateway."""

    def __init__(self, d, gw_port):
        self.ports = {"v2": harness.free_port(), "v1": harness.free_port()}
        cfg = ["global", "    maxconn 256", "defaults", "    mode tcp", "    timeout connect 5s",
               "    timeout client 30s", "    timeout server 30s"]
        for name, send in (("v2", "send-proxy-v2"), ("v1", "send-proxy")):
            cfg += ["frontend fe_%s" % name, "    bind 127.0.0.1:%d" % self.ports[name],
                    "    default_backend be_%s" % name, "backend be_%s" % name,
                    "    server gw 127.0.0.1:%d %s source %s" % (gw_port, send, PROXY)]
        self.path = d / "haproxy.cfg"
        self.path.write_text("\n".join(cfg) + "\n")
        harness.run(["haproxy", "-c", "-f", self.path])
        self._err = open(d / "haproxy.stderr", "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.path)], stdout=self._err,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.ports["v1"]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise harness.Failure("haproxy did not start: %s" % (d / "haproxy.stderr").read_text())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self._err.close()


class ProxyProtocol(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["listeners"][0]["trusted_proxies"] = [PROXY + "/32"]
        cfg["limits"] = {"max_connections_per_address": 2}

    def connect(self, header=None, source=PROXY):
        """A TLS connection to the gateway from |source|, |header| sent first; the TLS socket."""
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(10)
        raw.bind((source, 0))
        raw.connect(("127.0.0.1", self.gw.port))
        if header is not None:
            raw.sendall(header)
        return self.gw.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")

    def requests(self):
        return [l for l in self.gw.log_lines() if l.get("event") == "request"]

    def request_from(self, header, source=PROXY):
        """One GET over a connection opened with |header|; the peer the gateway logged for it."""
        before = len(self.requests())
        with self.connect(header, source) as s:
            s.sendall(b"GET /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = harness.read_to_eof(s)
        self.assertTrue(answer.startswith(b"HTTP/1.1 "), answer[:100])
        return self.request_after(before)["peer"]

    def request_after(self, before, wait=5):
        """The first request line logged after the first |before| ones."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            lines = self.requests()
            if len(lines) > before:
                return lines[before]
            time.sleep(0.05)
        self.fail("no request line logged:\n" + self.gw.stderr()[-2000:])

    def refused_reasons(self):
        return [l.get("reason") for l in self.gw.log_lines() if l.get("event") == "proxy_header_refused"]

    def test_v2_header_names_the_client(self):
        self.assertEqual(self.request_from(v2_header("192.0.2.77", 5555)), "192.0.2.77:5555")

    def test_v1_header_names_the_client(self):
        self.assertEqual(self.request_from(v1_header("198.51.100.5", 4444)), "198.51.100.5:4444")

    def test_v2_local_keeps_the_proxy_address(self):
        local = V2_SIG + b"\x20\x00\x00\x00"  # LOCAL: the balancer's own connection (a health check)
        self.assertTrue(self.request_from(local).startswith(PROXY + ":"))

    def test_trusted_proxy_without_header_closed(self):
        with self.assertRaises((ssl.SSLError, OSError)):
            self.connect(None).close()
        deadline = time.monotonic() + 5
        while "no PROXY protocol header" not in self.refused_reasons() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("no PROXY protocol header", self.refused_reasons())

    def test_header_from_untrusted_address_never_read(self):
        """127.0.0.1 is no trusted proxy: its PROXY line is TLS garbage, and nobody is 203.0.113.9."""
        with self.assertRaises((ssl.SSLError, OSError)):
            self.connect(v1_header("203.0.113.9", 1), source="127.0.0.1").close()
        self.assertEqual(self.request_from(None, source="127.0.0.1").split(":")[0], "127.0.0.1")
        self.assertNotIn("203.0.113.9", self.gw.stderr())

    def test_limits_count_the_client_not_the_proxy(self):
        """max_connections_per_address 2: a third connection of one client is refused, another client's is not."""
        held = [self.connect(v2_header("192.0.2.10", 1000 + i)) for i in range(2)]
        try:
            with self.assertRaises((ssl.SSLError, OSError)):
                s = self.connect(v2_header("192.0.2.10", 1002))
                s.sendall(b"GET /pki/cmp HTTP/1.1\r\nHost: x\r\n\r\n")
                if not s.recv(1):
                    raise OSError("closed")
            self.assertEqual(self.request_from(v2_header("192.0.2.11", 2000)), "192.0.2.11:2000")
        finally:
            for s in held:
                s.close()

    def test_request_line_utf8_whatever_the_path(self):
        """A client's path of bytes that are no UTF-8 is logged as U+FFFD: the line stays JSON that a strict
        reader (journald, a log shipper) takes, and names the client the header gave."""
        before = len(self.requests())
        with self.connect(v2_header("192.0.2.88", 8888)) as s:
            s.sendall(b"GET /pki/\xff\xc0\xaf\xed\xa0\x80x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            harness.read_to_eof(s)
        line = self.request_after(before)
        self.assertEqual(line["peer"], "192.0.2.88:8888")
        self.assertEqual(line["path"], "/pki/" + "\ufffd" * 6 + "x")
        for raw in self.gw.stderr_path.read_bytes().splitlines():
            raw.decode("utf-8")  # strict: no line of the log is anything but UTF-8

    @unittest.skipUnless(shutil.which("haproxy"), "haproxy (deploy/deps.sh installs it)")
    def test_openssl_cmp_through_haproxy(self):
        lb = self.keep_running(Haproxy(self.gw.dir, self.gw.port))
        for version in ("v2", "v1"):
            key = self.newkey("lb-" + version)
            real_port, self.gw.port = self.gw.port, lb.ports[version]
            before = len(self.requests())
            try:
                res = self.gw.cmp("ir", "lb-" + version, newkey=key, subject="/CN=lb-%s" % version,
                                  extra=("-implicit_confirm",))
            finally:
                self.gw.port = real_port
            self.assert_issued(res.cert, key, "CN=lb-%s" % version, untrusted_pem=res.first.extra_certs_pem())
            line = self.request_after(before)
            self.assertTrue(line["peer"].startswith("127.0.0.1:"), line)
            self.assertEqual(line["tls_subject"], "/O=cmpgw demo/CN=demo-client", line)
        self.assertNotIn('"peer":"%s:' % PROXY, self.gw.stderr())

    @unittest.skipUnless(shutil.which("haproxy"), "haproxy (deploy/deps.sh installs it)")
    def test_example_config_is_valid(self):
        """deploy/haproxy.cfg, with its files made here, is what haproxy 2.6 accepts."""
        d = self.gw.dir
        (d / "check.pem").write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
        text = (harness.REPO / "deploy" / "haproxy.cfg").read_text()
        text = text.replace("/etc/haproxy/cmpgw-ca.pem", str(d / "ca.pem"))
        text = text.replace("/etc/haproxy/cmpgw-check.pem", str(d / "check.pem"))
        (d / "haproxy-example.cfg").write_text(text)
        p = harness.run(["haproxy", "-c", "-f", d / "haproxy-example.cfg"], check=False)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def test_zz_stop_with_headers_pending(self):
        """Last: connections still waiting for their header close with the gateway, which exits cleanly."""
        pending = []
        for part in (b"", b"PROXY TCP4 ", V2_SIG[:7]):
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            raw.bind((PROXY, 0))
            raw.connect(("127.0.0.1", self.gw.port))
            raw.sendall(part)
            pending.append(raw)
        self.assertTrue(harness.settled(lambda: harness.accepted(self.gw, pending), bool))
        self.gw.stop()  # exit 0, no sanitizer report
        for raw in pending:
            raw.settimeout(5)
            self.assertEqual(raw.recv(1), b"")
            raw.close()


if __name__ == "__main__":
    harness.main()
