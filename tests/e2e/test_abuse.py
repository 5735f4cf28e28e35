"""Abuse of the local issuer's store and CRL, with the real gateway over TLS (docs/security.md).

A crash between the temporary write and the link of a revocation used to leave a fixed temporary name
that made every later revocation of that serial fail; two rr of one serial at once collided the same way.
Now temporary names are unique, leftovers are removed at start, and the second of two concurrent rr
answers certRevoked. The CRL number and thisUpdate are kept on disk: a restart with the clock stepped
back two days (libfaketime) makes neither go backwards (RFC 5280 §5.2.3).

One identity cannot fill the replay cache: past its share (cmp.max_recent_per_identity) it alone is
refused, and another identity is still served.

Work before any signature check is bounded: a genm from an unknown key carrying 60 self-made RSA-3072
certificates with ~3070-bit public exponents, all naming the sender, cost ~1 s of server CPU when OpenSSL
tried each; it is now refused from the count of public keys in its DER, before OpenSSL decodes one
(OpenSSL 3.0 spends some 0.2 ms on each key it decodes). Keys above the limits (RSA modulus over 8192
bits, exponent of 2^32 or more) are refused wherever the gateway would verify with them.

Connections are bounded per client address, HTTP/2 is offered only where a listener asks for it, and an
address that keeps failing to authenticate (a failed TLS handshake counts too, and so does one the client
leaves unfinished after the gateway's signed flight) gets HTTP 429 with Retry-After before any CMP work,
and its new TLS connections are closed at accept, before any handshake.

An HTTP/2 client that never opens its flow-control window once its request is answered held its
connection, and the stream's memory, forever: its connection is now ended after limits.send_timeout.
An HTTP/1 client that pipelines requests and never reads the answers did the same (libh2o times HTTP/1
only while it reads a request): limits.send_timeout now ends any connection whose pending output the
client takes no byte of for that long, a stall timer rather than a deadline for the whole send, so that
a client reading slowly but steadily keeps its connection on either protocol.
The body timeout took a stream for the one before it in the same memory (malloc hands a freed stream's
back at once): a client sending one request after another, each in time, lost its connection after
limits.body_timeout; each request now counts from its own start. (An ASan build, whose allocator holds
freed memory back, would not reuse the memory and cannot show it.)

Clients without a certificate held every connection place of a plain listener (or of a TLS one that asks
none) for good, each connection past its opening sending a request to an unknown path every few seconds:
a newcomer at either connection cap now has the oldest connection of no proven client closed for it. A
connection holding more request input than a 16 KiB head and a CMP body is ended at the next sweep: libh2o
buffers a head up to 408 KiB until its 5 s request timer. The sweep that ends them was a timer of libh2o's
event loop, which keeps the wall clock: with the clock stepped back (libfaketime steps it at run time) no sweep
came until the clock caught up, and connections that send nothing were kept; the sweep now keeps the monotonic
clock, and so does the wait for a trusted proxy's PROXY header.

One address holds at most limits.max_requests_in_flight_per_address requests in flight, across its
connections and HTTP/2 streams: 100 streams on each of a few connections filled the work queue.

A peer without credentials wrote one request line for each request refused, as fast as it sent them:
the lines of a peer not authenticated are now paced, the counters still count every request. A certProfile
not served, refused before any credential is checked and counted against nothing, wrote a profile_refused
line for each request beside it: paced too. So are the lines saying why a protection was refused
(signer_refused, pbm_refused, pbm_alg, protection_alg, weak_protection, weak_signer), which the failed-auth
budget bounded per address only. So is tls_peer_dropped, which a client resuming sessions made while its
certificate was valid wrote once a resumption, at no cost to it, once the certificate had expired. A client
with a trusted TLS certificate wrote a line for each request, unpaced, as fast as it sent them: its lines are
now paced per client certificate (its plain successes aside), so that its flood holds back its own lines and
not another client's. So did a client authenticated by its CMP protection alone, and anyone replaying a message
of it they captured (each replay refused and a line): its lines are now paced per sender credential. The count
of a client's lines held back was said late, under another client's line, when its place in the bounded table
of clients went to another: it is now said then, in a line of its own naming the client, and every request
line names its client the same way ("client").

A CRL past its nextUpdate, which a CA late to publish serves again and again, was fetched anew for every
request one of its certificates signed, a replay refused right after too: now at most every
GW_STATUS_RETRY_SECS.
"""
import datetime
import email.utils
import hashlib
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

from cryptography import x509  # noqa: E402
from pyasn1.codec.der import encoder  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402

RA_SUBJECT = "/O=cmpgw demo/CN=cmpgw demo CMP signer"  # the demo signer carries id-kp-cmcRA
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# how long a client waits for a log line that is to come: it returns as soon as the line is there
ENDED_WAIT = 2.5 + 10 * harness.SLOW



class StoreAndCrl(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        harness.keep_store(cfg, gw)
        cfg["roles"]["default"]["authorization"] = {"ra_subjects": [RA_SUBJECT]}

    def rr_as_ra(self, name, victim, out):
        d = self.gw.dir
        out[name] = self.gw.cmp("rr", name, auth=(d / "signer.pem", d / "signer.key"), expect_cert=False,
                                extra=("-oldcert", victim, "-revreason", "4"))

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
        victim, _ = self.enrol("left")
        serial = harness.serial_hex(victim)
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
        out = {}
        racers = [threading.Thread(target=self.rr_as_ra, args=("race%d" % i, victim, out)) for i in range(2)]
        for t in racers:
            t.start()
        for t in racers:
            t.join(harness.CLIENT_TIMEOUT)
        answers = sorted((a.first.status, a.first.fail_info, a.first.status_strings) for a in out.values())
        self.assertEqual(answers, [(0, [], []), (2, ["certRevoked"], ["the certificate is already revoked"])])
        self.assertEqual(len([p for p in revoked.iterdir()]), 1)  # one record, no temporary file left

    def test_crl_number_grows_across_a_restart_with_the_clock_back(self):
        before_number, before_update = self.crl("before")
        self.restart({"LD_PRELOAD": FAKETIME, "FAKETIME": "-2d", "DONT_FAKE_MONOTONIC": "1",
                      "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        try:
            after_number, after_update = self.crl("after")
            said = [e for e in self.gw.log_lines() if e.get("event") == "local_crl_state_ahead"]
        finally:
            self.restart()  # the other tests run on the real clock
        # numbered past the last one; dated by the clock, two days back, and the step said: held to the last
        # CRL's date, every later CRL would carry it until the clock caught up
        self.assertGreater(after_number, before_number)
        self.assertLess(time.mktime(after_update), time.mktime(before_update) - 86400)
        self.assertTrue(said)



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



TEXT_KEY_LIMITS = ("a key in this request is above this server's limits: RSA keys up to 8192 bits with a public "
                   "exponent below 2^32")

TEXT_TOO_MANY_KEYS = ("the PKIMessage holds more than 24 public keys (certificates, templates): send at most 16 "
                      "extraCerts and one request")

TEXT_EXT_BYTES = ("the certificates in extraCerts carry more than 8192 bytes of extensions: send the signer's "
                  "certificate and its chain only")


def heavy_bundle(path, signer_key, name, count):
    """|count| certificates naming |name|, each with a 3072-bit modulus and a ~3070-bit public exponent."""
    n = rsa.generate_private_key(65537, 3072).public_key().public_numbers().n
    now = datetime.datetime.now(datetime.timezone.utc)
    pems = []
    for i in range(count):
        e = (n >> 3) | 1  # odd, far above 2^32
        key = rsa.RSAPublicNumbers(e - 2 * i, n).public_key()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key)
                .serial_number(i + 1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(signer_key, hashes.SHA256()))
        pems.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    path.write_text("".join(pems))
    return path


def huge_exponent_key(path):
    """An RSA-3072 private key whose public exponent has ~3070 bits (a valid key: d inverts it)."""
    k = rsa.generate_private_key(65537, 3072).private_numbers()
    p, q = k.p, k.q
    phi = (p - 1) * (q - 1)
    e = (phi >> 4) | 1
    while True:
        try:
            d = pow(e, -1, phi)
            break
        except ValueError:
            e += 2
    pub = rsa.RSAPublicNumbers(e, p * q)
    priv = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), pub).private_key()
    path.write_bytes(priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return path


class BoundedWork(harness.GatewayTestCase):

    @classmethod
    def edit_config(cls, cfg, gw):
        pbm_only = dict(cfg["roles"]["default"])
        del pbm_only["trust"]
        cfg["roles"]["pbmonly"] = pbm_only

    def attacker(self):
        d = self.gw.dir
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "attacker")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
                .sign(key, hashes.SHA256()))
        (d / "attacker.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / "attacker.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        return key, name

    def attacker_with_names(self, count):
        """The attacker's self-signed certificate and key, with |count| dNSNames in its subjectAltName."""
        d = self.gw.dir
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "attacker")])
        now = datetime.datetime.now(datetime.timezone.utc)
        sans = [x509.DNSName("host%05d.example.com" % i) for i in range(count)]
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName(sans), False).sign(key, hashes.SHA256()))
        (d / "named.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / "named.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        return d / "named.pem", d / "named.key"

    def test_extension_bytes_of_extra_certs(self):
        """OpenSSL parses a certificate's extensions once the gateway looks at it (its SKID, a chain): 32 KiB of
        subjectAltNames in one self-made certificate cost 8 ms before its signer was refused. Past 8 KiB the
        extraCerts are refused unread; 100 names (2.4 KiB) are read, and the signer is refused as untrusted."""
        for count, fail, text in ((500, "badRequest", TEXT_EXT_BYTES),
                                  (100, "badMessageCheck", "not issued by a CA trusted on this route")):
            auth = self.attacker_with_names(count)
            res = self.gw.cmp("genm", "named%d" % count, auth=auth, extra=("-extracerts", auth[0]), expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), fail, text)

    def genm(self, name, bundle):
        d = self.gw.dir
        return self.gw.cmp("genm", name, auth=(d / "attacker.pem", d / "attacker.key"), expect_cert=False,
                           extra=("-extracerts", bundle))

    def test_sixty_heavy_certificates_naming_the_sender(self):
        """Refused from the count of its keys in the DER, before OpenSSL decodes one (http_too_many_keys)."""
        d = self.gw.dir
        key, name = self.attacker()
        bundle = heavy_bundle(d / "heavy60.pem", key, name, 60)
        der = self.gw.make_request("heavy60", auth=(d / "attacker.pem", d / "attacker.key"),
                                   extra=("-extracerts", bundle, "-implicit_confirm"))
        for _ in range(3):
            r = self.gw.curl(data=der)
            self.assertEqual((r.status, r.body.decode().strip()), (400, TEXT_TOO_MANY_KEYS), r)

    def test_heavy_exponents_under_the_count_cap(self):
        key, name = self.attacker()
        res = self.genm("heavy3", heavy_bundle(self.gw.dir / "heavy3.pem", key, name, 3))
        self.assert_cmp_error(res.first, ("error",), "badRequest", TEXT_KEY_LIMITS)

    def test_heavy_exponents_on_a_route_without_trust(self):
        """No signature verifies where the role names no trust, but OpenSSL 3.0 tried one with the key of each
        extraCert naming the sender first: 15 RSA-3072 keys with ~3070-bit exponents beside a 3072-bit signer
        (a signature of their length) cost some 350 ms, and the answer, a badRequest, counted nothing against
        the address. Refused before any is looked at, as signature protection this route does not accept."""
        d = self.gw.dir
        key = rsa.generate_private_key(65537, 3072)
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "attacker")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        (d / "rsa-attacker.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / "rsa-attacker.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                               serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
        bundle = heavy_bundle(d / "heavy15.pem", key, name, 15)
        for _ in range(3):
            res = self.gw.cmp("genm", "heavy15", auth=(d / "rsa-attacker.pem", d / "rsa-attacker.key"),
                              path="pki/roles/pbmonly/cmp", extra=("-extracerts", bundle), expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), "badMessageCheck",
                                  "signature protection is not accepted on this route")

    def test_requested_key_with_a_huge_exponent(self):
        """OpenSSL would verify the proof of possession with the requested key: refused before that."""
        res = self.gw.cmp("ir", "huge-e", newkey=huge_exponent_key(self.gw.dir / "huge-e.key"), subject="/CN=huge-e",
                          extra=("-implicit_confirm",), expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badCertTemplate", TEXT_KEY_LIMITS)

    def test_csr_key_with_a_huge_exponent(self):
        """The p10cr twin: OpenSSL would verify the CSR's self-signature with the key it carries."""
        d = self.gw.dir
        harness.run(["openssl", "req", "-new", "-key", huge_exponent_key(d / "huge-e10.key"), "-subj", "/CN=huge-e10",
                     "-out", d / "huge-e10.csr"])
        res = self.gw.cmp("p10cr", "huge-e10", extra=("-csr", d / "huge-e10.csr", "-implicit_confirm"),
                          expect_cert=False)
        self.assert_cmp_error(res.first, ("error",), "badCertTemplate", TEXT_KEY_LIMITS)



def h2_frame(ftype, flags, stream, payload):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_literal(name, value):  # HPACK literal without indexing, new name, no Huffman (RFC 7541 §6.2.2)
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


# SETTINGS_INITIAL_WINDOW_SIZE 0: the flow-control window of each stream shut (RFC 9113 §6.5.2)
H2_WINDOW_SHUT = (4).to_bytes(2, "big") + (0).to_bytes(4, "big")


def h2_block(method, path, content_type=None, length=None):
    """The HEADERS block of a request to this host: |content_type| and content-length |length| where given."""
    block = (h2_literal(b":method", method) + h2_literal(b":scheme", b"https") + h2_literal(b":path", path) +
             h2_literal(b":authority", b"127.0.0.1"))
    if content_type is not None:
        block += h2_literal(b"content-type", content_type)
    if length is not None:
        block += h2_literal(b"content-length", str(length).encode())
    return block


def h2_post(stream, body, path=b"/pki/cmp"):
    """HEADERS and DATA (END_STREAM) of one POST of |body| on |stream|."""
    block = h2_block(b"POST", path, b"application/pkixcmp", len(body))
    return h2_frame(1, 0x4, stream, block) + h2_frame(0, 0x1, stream, body)


def h2_connect(gw, settings=b"", source="127.0.0.1", timeout=1):
    """A TLS connection with ALPN h2 from |source|, the client preface and SETTINGS (|settings|) sent;
    |timeout| for what the test reads and writes on it, not for the handshake (an ASan build beside other
    tests took over a second for one)."""
    ctx = gw.tls_context()
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", gw.port), timeout=10, source_address=(source, 0))
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    sock.settimeout(timeout)
    if sock.selected_alpn_protocol() != "h2":
        sock.close()
        raise harness.Failure("no h2 in ALPN")
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, settings))
    return sock


def h2_frames(buf):
    """The whole frames at the start of |buf| as (type, flags, stream, payload), and what is left."""
    out = []
    while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
        n = int.from_bytes(buf[:3], "big")
        out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n]))
        buf = buf[9 + n:]
    return out, buf


def h2_status(block):
    """The :status at the start of a HEADERS block: indexed (RFC 7541 static table 8..14) or a literal of the
    indexed name 8 with a plain value, as h2o writes it; None otherwise."""
    if block[0] & 0x80:
        return {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}.get(block[0] & 0x7F)
    if block[0] in (0x48, 0x08, 0x18) and not block[1] & 0x80:
        return int(block[2:2 + block[1]])
    return None


def h2_batches(test, sock, deadline, closed):
    """The frames |sock| reads until |deadline|, a list each read, the server's SETTINGS ACKed; a read of
    nothing (the connection closed) fails |test| with |closed|."""
    buf = b""
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        test.assertNotEqual(data, b"", closed)
        frames, buf = h2_frames(buf + data)
        for ftype, flags, _, _ in frames:
            if ftype == 4 and not flags & 1:
                sock.sendall(h2_frame(4, 1, 0, b""))
        yield frames


def h2_answers(sock, streams, deadline):
    """Reads until each of |streams| has ended: {stream: (status, body)}; ACKs the server's SETTINGS."""
    buf, status, body, done = b"", {}, {}, set()
    while not set(streams) <= done and time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if data == b"":
            break
        frames, buf = h2_frames(buf + data)
        for ftype, flags, stream, payload in frames:
            if ftype == 4 and not flags & 1:
                sock.sendall(h2_frame(4, 1, 0, b""))
            if ftype == 1:
                status[stream] = h2_status(payload)
            if ftype == 0:
                body[stream] = body.get(stream, b"") + payload
            if ftype in (0, 1) and flags & 1:
                done.add(stream)
    return {s: (status.get(s), body.get(s, b"")) for s in streams if s in done}


class Admission(harness.GatewayTestCase):
    ends = set()  # the gateway's ends of the connections hold() made (harness.gateway_ends)

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"max_connections_per_address": 4, "body_timeout": "3s", "send_timeout": "2s"}
        cfg["listeners"][0]["tls"]["http2"] = True

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        return self.gw.tls_context().wrap_socket(s, server_hostname="127.0.0.1")

    def hold(self, n, proven=False):
        """|n| connections held at once, each admitted. First the gateway is seen to have closed those an
        earlier test held, which gave back their count: one refused now is a failure, not a close it had
        yet to see. |proven|: each then makes an ir that passes its checks, so that none is one to close for
        a newcomer at the cap (its client certificate alone proves nothing)."""
        self.assertEqual(harness.settled(lambda: harness.socket_inodes(self.gw.proc.pid) & self.ends,
                                         lambda left: not left), set())
        self.assertEqual(harness.settled(lambda: harness.connections(self.gw, self.gw.port),
                                         lambda k: k == 0), 0)
        held = []
        try:
            while len(held) < n:
                held.append(self.connect())
            ends = harness.gateway_ends(self.gw, held)
            self.assertEqual(len(ends), n)
            type(self).ends = self.ends | ends
            for i, c in enumerate(held if proven else []):
                der = self.gw.make_request("admission-%d" % i).read_bytes()
                status, body = http1_exchange(c, (b"POST /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                  b"Content-Type: application/pkixcmp\r\n"
                                                  b"Content-Length: %d\r\n\r\n" % len(der)) + der)
                self.assertEqual(status, 200, body)
        except BaseException:
            for c in held:
                c.close()
            raise
        return held

    def refused_lines(self):
        return [e for e in self.gw.log_lines() if e.get("event") == "connection_refused" and
                "max_connections_per_address" in e.get("reason", "")]

    def assert_closed_at_accept(self):
        """A new connection is closed by the gateway, not served nor left waiting (a timeout is no refusal),
        and the gateway says why."""
        before = len(self.refused_lines())
        try:
            extra = self.connect()
        except socket.timeout:  # left waiting
            raise
        except (ssl.SSLError, OSError):  # the close before the handshake: reset, or an EOF in its place
            pass
        else:
            with extra:
                extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(extra.recv(1), b"", "served past max_connections_per_address")
        self.assertGreater(len(harness.settled(self.refused_lines, lambda l: len(l) > before)), before)

    def test_connections_per_address(self):
        for c in self.hold(4):
            c.close()
        held = self.hold(4, proven=True)  # the closes gave back every count
        try:
            self.assert_closed_at_accept()
        finally:
            for c in held:
                c.close()
        for c in self.hold(4):  # and again after a refusal, which took none
            c.close()

    def test_admin_connections_leave_the_count_alone(self):
        """Connections to the admin listener are outside the per-address count: closing them gave back
        none of the CMP listener's, or a client of that address (every local account, on loopback) could
        open connections past its limit by closing admin ones in between."""
        held = self.hold(4, proven=True)
        try:
            for _ in range(3):
                self.assertEqual(harness.admin(self.gw, "/healthz")[0], 200)
            # the gateway has seen those closes
            self.assertEqual(harness.settled(lambda: harness.connections(self.gw, self.gw.admin_port),
                                             lambda k: k == 0), 0)
            self.assert_closed_at_accept()
        finally:
            for c in held:
                c.close()

    def h2_trickle(self):
        """An HTTP/2 POST whose body comes one byte every 1.5 s: (seconds until the gateway ended it, bytes sent)."""
        ctx = self.gw.tls_context()
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=1),
                               server_hostname="127.0.0.1")
        self.assertEqual(sock.selected_alpn_protocol(), "h2")

        def frame(ftype, flags, stream, payload):
            return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload

        def literal(name, value):  # HPACK literal without indexing, new name, no Huffman (RFC 7541 §6.2.2)
            return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

        block = (literal(b":method", b"POST") + literal(b":scheme", b"https") + literal(b":path", b"/pki/cmp") +
                 literal(b":authority", b"127.0.0.1") + literal(b"content-type", b"application/pkixcmp"))
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x4, 1, block))
        start, sent = time.monotonic(), 0
        try:
            while time.monotonic() - start < 20:
                sock.sendall(frame(0, 0, 1, b"\x30"))
                sent += 1
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    try:
                        if sock.recv(65536) == b"":
                            return time.monotonic() - start, sent
                    except socket.timeout:
                        pass
        except (ssl.SSLError, OSError):
            return time.monotonic() - start, sent
        finally:
            sock.close()
        return None, sent

    def test_http2_trickle_ended_within_the_body_timeout(self):
        before = len(self.gw.log_lines())
        took, sent = self.h2_trickle()
        # body_timeout 3 s, swept every second: 20 s is a hang, however loaded the machine
        self.assertIsNotNone(took, "the gateway kept a trickling HTTP/2 request for 20 s")
        # the client may see the close before the line is written; ended by body_timeout, not by another cap
        closed = harness.settled(lambda: [(e.get("timeout"), e.get("timeout_s")) for e in
                                          self.gw.log_lines()[before:] if e.get("event") == "http2_connection_closed"],
                                 bool, timeout=5)
        self.assertEqual(closed, [("body_timeout", "3")])

    def h2_arriving(self, count, wait=2.5):
        """|count| HTTP/2 POSTs on one connection whose bodies keep arriving (60000 bytes declared, 1000 sent):
        the log lines of the gateway ending that connection within |wait| s (by default 2.5, short of
        body_timeout's 3 s), returned as soon as there is one."""
        sock = h2_connect(self.gw)
        peer = "127.0.0.1:%d" % sock.getsockname()[1]

        def ended():
            return [e for e in self.gw.log_lines() if e.get("event") == "http2_connection_closed" and
                    e.get("peer") == peer]
        block = h2_block(b"POST", b"/pki/cmp", b"application/pkixcmp", 60000)
        try:
            sock.sendall(b"".join(h2_frame(1, 0x4, 2 * i + 1, block) + h2_frame(0, 0, 2 * i + 1, b"0" * 1000)
                                  for i in range(count)))
            deadline = time.monotonic() + wait
            while not ended() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sock.close()
        return ended()

    def test_http2_streams_arriving_at_once_bounded(self):
        """libh2o buffers up to 64 KiB of each of 100 streams a connection before the gateway sees them: a
        connection with more requests arriving than a CMP client sends is ended at the next sweep; one with
        as many as it may have is left to body_timeout."""
        # the line comes within a second, by the gateway's clock; the client's wait for it is no part of the
        # check (were the sweep not to end it, body_timeout would, saying so), so a loaded machine has room
        ended = self.h2_arriving(20, ENDED_WAIT)
        self.assertEqual([e.get("timeout") for e in ended], ["streams"], ended)
        # ended only by body_timeout, if the log is read late (a loaded machine): never by the sweep of streams
        ended = self.h2_arriving(4)
        self.assertEqual([e for e in ended if e.get("timeout") != "body_timeout"], [], ended)

    def h2_unsent(self, count, wait=2.5):
        """|count| HTTP/2 POSTs of an empty body on one connection whose flow-control window stays shut
        (SETTINGS_INITIAL_WINDOW_SIZE 0): each is answered at once (400), its answer never sent, its stream
        and the body libh2o buffered for it held. The log lines of the gateway ending that connection within
        |wait| s (by default 2.5), returned as soon as there is one: the second sweep that finds the answers
        unsent ends it for their number, within 2 s; send_timeout (2 s) ends it at the third, from 2 s."""
        sock = h2_connect(self.gw, settings=H2_WINDOW_SHUT)
        peer = "127.0.0.1:%d" % sock.getsockname()[1]
        try:
            sock.sendall(b"".join(h2_post(2 * i + 1, b"") for i in range(count)))
            deadline = time.monotonic() + wait
            while not self.ended_lines("http2_connection_closed", peer) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sock.close()
        return self.ended_lines("http2_connection_closed", peer)

    def test_http2_answers_held_at_once_bounded(self):
        """Answered streams whose answers the client never takes keep their bodies in libh2o until the
        stream ends: 100 of 64 KiB a connection, each for send_timeout, were the sweep to count only those
        still arriving. A connection with more of them than a CMP client has open is ended at the next
        sweep; one with as many as it may have is left to send_timeout."""
        # within 2 s by the gateway's clock, and 2.5 s left a loaded machine little room to write and read
        # the line; a longer wait lets nothing else pass (send_timeout would end it, saying so)
        ended = self.h2_unsent(20, ENDED_WAIT)
        self.assertEqual([e.get("timeout") for e in ended], ["streams"], ended)
        self.assertEqual([e for e in self.h2_unsent(4) if e.get("timeout") != "send_timeout"], [])

    def test_http2_answers_taken_late_kept(self):
        """A client that sends several requests at once on one connection, over a link whose flow-control window
        opens late (a round trip, here 0.4 s, after the answers' HEADERS came): a sweep may come by while each
        answer waits unsent. They are counted against the 4 a connection only from the next sweep, which
        finds them taken: the connection and its answers stay. Five rounds, a sweep in the wait in some (the
        wait leaves 0.6 s before a next sweep, for a loaded machine)."""
        for _ in range(5):
            sock = h2_connect(self.gw, settings=H2_WINDOW_SHUT, timeout=0.2)
            streams = tuple(2 * i + 1 for i in range(6))
            block = h2_block(b"POST", b"/pki/cmp", b"text/plain")  # a 415: no failed authentication
            try:
                sock.sendall(b"".join(h2_frame(1, 0x4, s, block) + h2_frame(0, 0x1, s, b"x") for s in streams))
                answered = {}
                for frames in h2_batches(self, sock, time.monotonic() + 5,
                                         "the connection closed before its answers came"):
                    answered.update((stream, h2_status(payload)) for ftype, _, stream, payload in frames
                                    if ftype == 1)
                    if set(answered) == set(streams):
                        break
                self.assertEqual(answered, {s: 415 for s in streams})
                time.sleep(0.4)
                sock.sendall(h2_frame(4, 0, 0, (4).to_bytes(2, "big") + (65535).to_bytes(4, "big")))
                got = h2_answers(sock, streams, time.monotonic() + 5)
            finally:
                sock.close()
            self.assertEqual(sorted(got), list(streams), "the connection ended before its answers were taken")
            self.assertTrue(all(body.startswith(b"unsupported Content-Type") for _, body in got.values()), got)

    def test_http2_window_never_opened_ended_within_the_send_timeout(self):
        """SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE: the answer (a 400) can never be sent, and its
        stream would live as long as the connection. The gateway ends the connection and says so. The PINGs the
        client sends meanwhile make the gateway write, but move no answer: no progress."""
        sock = h2_connect(self.gw, settings=H2_WINDOW_SHUT)
        sock.sendall(h2_post(1, b"not a PKIMessage"))
        buf, statuses, closed = b"", [], False
        deadline = time.monotonic() + 2 + 1 + 10 * harness.SLOW  # send_timeout 2 s, swept every second
        try:
            while time.monotonic() < deadline and not closed:
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    try:
                        sock.sendall(h2_frame(6, 0, 0, b"12345678"))  # PING
                    except (ssl.SSLError, OSError):
                        closed = True
                    continue
                except (ssl.SSLError, OSError):
                    closed = True
                    break
                closed = data == b""
                frames, buf = h2_frames(buf + data)
                for ftype, flags, stream, payload in frames:
                    if ftype == 4 and not flags & 1:
                        sock.sendall(h2_frame(4, 1, 0, b""))  # ACK its SETTINGS: a well-behaved peer otherwise
                    if ftype == 1 and stream == 1:
                        statuses.append(h2_status(payload))
                    self.assertNotEqual((ftype, stream), (0, 1), "DATA sent through a window of 0")
        finally:
            sock.close()
        self.assertEqual(statuses, [400])  # answered: the headers need no window, the body does
        self.assertTrue(closed, "the gateway kept an HTTP/2 connection whose answer it could not send")
        deadline = time.monotonic() + 5  # the client may see the close before the line is written
        while not [e for e in self.gw.log_lines() if e.get("event") == "http2_connection_closed" and
                   e.get("peer", "").startswith("127.0.0.1:") and "send_timeout" in e.get("reason", "")]:
            self.assertLess(time.monotonic(), deadline, "no http2_connection_closed line:\n" + self.gw.stderr()[-3000:])
            time.sleep(0.1)

    def ended_lines(self, event, peer):
        return [e for e in self.gw.log_lines() if e.get("event") == event and e.get("peer") == peer]

    def ended_count(self, protocol):
        return harness.metric(self.gw, "cmpgw_slow_connections_ended_total", 0, protocol=protocol,
                              timeout="send_timeout")

    def test_http1_pipeliner_that_never_reads_ended_after_the_send_timeout(self):
        """Requests pipelined over TLS through a 4 KiB receive buffer, and no answer read: the gateway's answers
        wait in the socket with no byte taken. libh2o 2.2.5 times HTTP/1 only while a request is read, so the
        connection, its answers and its share of max_connections_per_address were held forever."""
        before = self.ended_count("http1")
        sock, peer, _ = harness.stuck_pipeliner(self.gw)
        try:
            deadline = time.monotonic() + 2 + 1 + 10 * harness.SLOW  # send_timeout 2 s, swept every second
            while not self.ended_lines("http1_connection_closed", peer):
                self.assertLess(time.monotonic(), deadline, "no http1_connection_closed for " + peer)
                time.sleep(0.2)
            line = self.ended_lines("http1_connection_closed", peer)[0]
            self.assertEqual((line["timeout"], line["timeout_s"]), ("send_timeout", "2"))
            sock.settimeout(5)
            with self.assertRaises((ssl.SSLError, OSError, EOFError)):  # what was sent, then the end
                while sock.recv(65536):
                    pass
                raise EOFError
        finally:
            sock.close()
        self.assertGreaterEqual(self.ended_count("http1"), before + 1)
        # libh2o 2.2.5 took the next pipelined request after each answer whose write failed: the thousands
        # already read were served, for nobody, once the connection was ended
        lines = self.gw.log_lines()
        closed = max(i for i, l in enumerate(lines)
                     if l.get("event") == "http1_connection_closed" and l.get("peer") == peer)
        self.assertEqual([l for l in lines[closed + 1:] if l.get("event") == "request" and l.get("peer") == peer],
                         [])

    def test_http1_slow_steady_reader_kept_past_the_send_timeout(self):
        """The same pipeliner reading 2 KiB every 0.1 s for three send_timeouts: its answers never stop moving,
        so its connection stays, however long the whole send takes."""
        sock, peer, sent = harness.stuck_pipeliner(self.gw, quiet=0.5)  # reading begins well within send_timeout
        got, steps = 0, 3 * 2 / 0.1
        self.assertGreater(sent * 200, steps * 2048)  # answers of 231 bytes: more than it reads, to the end
        try:
            sock.settimeout(5)
            for _ in range(int(steps)):
                step = got + 2048
                while got < step:  # a TLS record at a time: the answers' headers and bodies are records of their own
                    data = sock.recv(step - got)
                    self.assertTrue(data, "ended after %d bytes: %s"
                                    % (got, self.ended_lines("http1_connection_closed", peer)))
                    got += len(data)
                time.sleep(0.1)
        finally:
            sock.close()
        self.assertEqual(self.ended_lines("http1_connection_closed", peer), [])

    def test_http2_answer_taken_slowly_kept_past_the_send_timeout(self):
        """A window of 0, then 2 bytes more every 0.3 s: the answer's body goes out for longer than send_timeout,
        a few bytes at each step. Its connection stays until the answer is all sent (the deadline this timer
        replaced ended it send_timeout after the answer)."""
        sock = h2_connect(self.gw, settings=H2_WINDOW_SHUT)
        sock.settimeout(0.3)
        peer = "127.0.0.1:%d" % sock.getsockname()[1]
        sock.sendall(h2_post(1, b"not a PKIMessage"))
        buf, status, body, ended, closed = b"", None, b"", False, False
        deadline = time.monotonic() + harness.CLIENT_TIMEOUT
        try:
            while not ended and not closed and time.monotonic() < deadline:
                try:
                    data = sock.recv(65536)
                    closed = data == b""
                except socket.timeout:
                    data = b""
                    if status is not None:
                        sock.sendall(h2_frame(8, 0, 1, (2).to_bytes(4, "big")))  # WINDOW_UPDATE, stream 1
                except (ssl.SSLError, OSError):
                    closed = True
                frames, buf = h2_frames(buf + data)
                for ftype, flags, stream, payload in frames:
                    if ftype == 4 and not flags & 1:
                        sock.sendall(h2_frame(4, 1, 0, b""))
                    if (ftype, stream) == (1, 1):
                        status = h2_status(payload)
                    if (ftype, stream) == (0, 1):
                        body += payload
                        ended = bool(flags & 1)
        finally:
            sock.close()
        self.assertFalse(closed, "ended after %d bytes of the answer" % len(body))
        self.assertTrue(ended, "the answer was not all sent: %r" % body)
        self.assertEqual(status, 400)
        self.assertGreater(len(body), 2 * (2 + 1) / 0.3)  # more steps than send_timeout and a sweep hold
        self.assertEqual(self.ended_lines("http2_connection_closed", peer), [])

    def test_http2_requests_one_after_another_each_in_time_kept(self):
        """Each request's body comes 0.9 s after its headers, well within body_timeout (3 s), the next one as soon
        as the last is answered: a stream in the memory of the one before it is a new request, not one arriving
        since the first began. The connection serves them all."""
        body = b"not a PKIMessage"
        sock = h2_connect(self.gw)
        peer = "127.0.0.1:%d" % sock.getsockname()[1]
        try:
            for i in range(8):
                stream = 2 * i + 1
                post = h2_post(stream, body)
                sock.sendall(post[:-(9 + len(body))])  # HEADERS, without END_STREAM
                time.sleep(0.9)
                sock.sendall(post[-(9 + len(body)):])  # DATA, with END_STREAM
                got = h2_answers(sock, (stream,), time.monotonic() + 5 + 10 * harness.SLOW)
                self.assertEqual(got.get(stream, (None,))[0], 400, "request %d: %r" % (i, got))
        finally:
            sock.close()
        self.assertFalse([e for e in self.gw.log_lines() if e.get("event") == "http2_connection_closed" and
                          e.get("peer") == peer])

    def test_http2_body_over_the_limit_reset_and_the_connection_served_on(self):
        """libh2o ends an HTTP/2 body past GW_MAX_CMP_BODY itself, before the gateway sees the request: the
        stream is reset (REFUSED_STREAM), with no 413 and no request line, and the connection serves its next
        stream (docs/errors.md, http_too_large)."""
        body = b"\x30" * 70000
        block = h2_block(b"POST", b"/pki/cmp", b"application/pkixcmp", len(body))
        chunks = [body[i:i + 16384] for i in range(0, len(body), 16384)]  # SETTINGS_MAX_FRAME_SIZE
        sock = h2_connect(self.gw)
        try:
            sock.sendall(h2_frame(1, 0x4, 1, block) +
                         b"".join(h2_frame(0, 0x1 if c is chunks[-1] else 0, 1, c) for c in chunks))
            reset = None
            for frames in h2_batches(self, sock, time.monotonic() + 5 * harness.SLOW, "the connection closed"):
                for ftype, flags, stream, payload in frames:
                    self.assertNotIn((ftype, stream), ((1, 1), (7, 0)), "an answer or a GOAWAY")
                    if ftype == 3 and stream == 1 and reset is None:
                        reset = int.from_bytes(payload, "big")
                if reset is not None:
                    break
            self.assertEqual(reset, 7)  # REFUSED_STREAM (RFC 9113 §7)
            sock.sendall(h2_post(3, b""))
            answer = h2_answers(sock, (3,), time.monotonic() + 5 * harness.SLOW)
            self.assertEqual(answer.get(3), (400, b"empty body: expected a DER-encoded PKIMessage\n"))
        finally:
            sock.close()
        lines = [e for e in self.gw.log_lines() if e.get("event") == "request" and e.get("status") == "413"]
        self.assertEqual(lines, [])

    def test_http2_on_where_asked(self):
        der = self.gw.make_request("h2")
        r = self.gw.curl(data=der, http="--http2")
        self.assertEqual((r.version, r.status), ("HTTP/2", 200), r)



def post(conn, der):
    """(status, Retry-After, body) of a CMP POST of |der| on the kept-alive http.client connection |conn|."""
    conn.request("POST", "/pki/cmp", body=der, headers={"Content-Type": "application/pkixcmp"})
    r = conn.getresponse()
    return r.status, r.getheader("Retry-After"), r.read()


class AuthFailureBudget(harness.GatewayTestCase):
    """A class of its own: once its address is over budget, this gateway answers it nothing else. A plain HTTP
    listener on loopback beside the TLS one: there the address gets HTTP 429 on new connections too."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

    def test_failed_authentications_then_429(self):
        import http.client
        d = self.gw.dir
        _, fcert, fkey = harness.make_foreign_pki(d / "foreign")
        der = self.gw.make_request("after-budget").read_bytes()  # even a good request waits out the window
        # a connection kept alive from before the budget was used up
        kept = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                           context=self.gw.tls_context())
        kept.connect()
        for i in range(3):
            res = self.gw.cmp("ir", "stranger%d" % i, auth=(fcert, fkey), newkey=self.newkey("stranger%d" % i),
                              subject="/CN=stranger", expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), "badMessageCheck")
        status, retry, body = post(kept, der)
        kept.close()
        self.assertEqual(status, 429, body)
        self.assertGreater(int(retry or "0"), 0)
        self.assertIn(b"too many failed authentications from this address", body)
        plain = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        status, retry, body = post(plain, der)
        plain.close()
        self.assertEqual(status, 429, body)
        self.assertGreater(int(retry or "0"), 0)
        # a new TLS connection is closed before its handshake: no handshake is counted, failed or not
        handshakes = harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result="ok")
        self.assertFalse(self.gw.handshake())
        self.assertEqual(harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result="ok"),
                         handshakes)
        # another address still enrols
        r = self.gw.curl("--interface", "127.0.0.2", data=self.gw.dir / "after-budget.der")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.decode_cmp(r.body).body_type, "ip")
        # the operator is told once, at the failure that used the budget up, not at each refusal after it
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0]["peer"].startswith("127.0.0.1"), lines)
        self.assertIn("badMessageCheck", lines[0]["last"])


class AuthFailureBudgetReset(harness.GatewayTestCase):
    """A gateway of its own too: an HTTP/2 client that resets each stream still pays for its failures."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}
        cfg["listeners"][0]["tls"]["http2"] = True

    def gone_unauthenticated(self):
        return [e for e in self.gw.log_lines() if e.get("event") == "request" and
                e.get("outcome", "").startswith("client gone") and "badMessageCheck" in e.get("outcome", "")]

    def test_reset_streams_count_against_the_budget(self):
        _, fcert, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        ctx = self.gw.tls_context()
        ctx.set_alpn_protocols(["h2"])

        def frame(ftype, flags, stream, payload):
            return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload

        def literal(name, value):  # HPACK literal without indexing, new name, no Huffman (RFC 7541 §6.2.2)
            return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value

        for i in range(3):
            der = self.gw.make_request("reset%d" % i, auth=(fcert, fkey), subject="/CN=stranger").read_bytes()
            block = (literal(b":method", b"POST") + literal(b":scheme", b"https") + literal(b":path", b"/pki/cmp") +
                     literal(b":authority", b"127.0.0.1") + literal(b"content-type", b"application/pkixcmp") +
                     literal(b"content-length", str(len(der)).encode()))
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.gw.port), timeout=10),
                                 server_hostname="127.0.0.1") as sock:
                self.assertEqual(sock.selected_alpn_protocol(), "h2")
                # the request and its RST_STREAM (CANCEL) in one write: the stream is gone before the answer
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x4, 1, block) +
                             frame(0, 0x1, 1, der) + frame(3, 0, 1, (8).to_bytes(4, "big")))
                deadline = time.monotonic() + 10
                while len(self.gone_unauthenticated()) <= i:
                    self.assertLess(time.monotonic(), deadline,
                                    "no line for the reset stream:\n" + self.gw.stderr()[-3000:])
                    time.sleep(0.1)
        self.assertFalse(self.gw.handshake())  # over budget: closed at accept


class FailedHandshakeBudget(harness.GatewayTestCase):
    """A gateway of its own: its address is over budget after three failed TLS handshakes."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}

    def handshakes(self, result):
        return harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result=result)

    def test_failed_handshakes_count_then_closed_at_accept(self):
        """A client certificate of a CA the listener does not trust ends each handshake with the gateway's
        alert (unknown CA), the client chain decoded and verified each time: one address repeated it as
        fast as it connected, counted in a metric only. Now each counts against the address's budget of
        failed authentications: past it, its connections are closed at accept, before any TLS, and the
        operator gets one line for it. Another address is not affected: it enrols meanwhile."""
        _, fcert, fkey = harness.make_foreign_pki(self.gw.dir / "foreign")
        self.assertTrue(self.gw.handshake())  # the twin: a trusted client certificate, not counted
        for i in range(3):
            self.assertFalse(self.gw.handshake(cert=fcert, key=fkey))
            self.assertEqual(self.handshakes("failed"), i + 1)
        ok = self.handshakes("ok")
        for cert, key in ((fcert, fkey), ("client.pem", "client.key")):
            self.assertFalse(self.gw.handshake(cert=cert, key=key))
        self.assertEqual((self.handshakes("failed"), self.handshakes("ok")), (3, ok))  # no handshake at all
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["last"], "TLS handshake: unknown CA")
        self.assertTrue(self.gw.handshake(source="127.0.0.2"))
        r = self.gw.curl("--interface", "127.0.0.2", data=self.gw.make_request("other-address"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.decode_cmp(r.body).body_type, "ip")


class AbandonedHandshakeBudget(harness.GatewayTestCase):
    """A gateway of its own: its address is over budget after three handshakes it leaves after the gateway's
    flight."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}

    def client_hello(self, tls12=False):
        """A TLS client (trusting the gateway, with no certificate of its own) and its ClientHello."""
        ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
        with self.assertRaises(ssl.SSLWantReadError):
            tls.do_handshake()
        return tls, inc, out, out.read()

    def leave_after_flight(self, end, tls12=False):
        """Sends a whole ClientHello, reads the gateway's flight until the client has its own ready, and sends
        none of it: the connection then ends by the client's close ("close"), its reset ("reset"), or the
        gateway's handshake timeout ("wait")."""
        tls, inc, out, hello = self.client_hello(tls12)
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=harness.CLIENT_TIMEOUT)
        try:
            s.sendall(hello)
            while not out.pending:
                data = s.recv(65536)
                self.assertNotEqual(data, b"", "the gateway closed before its flight")
                inc.write(data)
                try:
                    tls.do_handshake()  # TLS 1.3: the client's side is done with the server's Finished
                except ssl.SSLWantReadError:
                    pass
            if end == "reset":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if end == "wait":
                s.settimeout(30)
                self.assertEqual(harness.read_to_eof(s), b"")  # closed by the gateway, some 5 s on
        finally:
            s.close()

    def abandoned(self, expect):
        """Waits until the gateway counted |expect| abandoned handshakes (it sees a close after the client
        made it); the count."""
        deadline = time.monotonic() + 5
        while True:
            n = harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result="abandoned")
            if n >= expect or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def test_handshakes_left_after_the_flight_count(self):
        """A client without credentials that sends a ClientHello, takes the gateway's signed flight and
        leaves had it sign (some 0.8 ms) as fast as it connected, counted nowhere. Now a handshake that ends
        unfinished after the flight, whether the client closes, resets, or lets it time out, over TLS 1.3
        or 1.2, counts against its address's budget: past it, its connections are closed at accept. Its
        twins count nothing: a connection closed without a byte or before a whole ClientHello (a
        balancer's TCP check, a port scan), and a completed handshake."""
        _, _, _, hello = self.client_hello()
        for _ in range(5):
            socket.create_connection(("127.0.0.1", self.gw.port), timeout=5).close()
            with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
                s.sendall(hello[:len(hello) // 2])
            self.assertTrue(self.gw.handshake())
        self.assertEqual(self.abandoned(1), 0)  # waited for: nothing comes
        self.leave_after_flight("close")
        self.assertEqual(self.abandoned(1), 1)
        self.leave_after_flight("reset", tls12=True)
        self.assertEqual(self.abandoned(2), 2)
        self.assertTrue(self.gw.handshake())  # two of three
        self.assertEqual([e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"], [])
        self.leave_after_flight("wait")
        self.assertEqual(self.abandoned(3), 3)
        self.assertFalse(self.gw.handshake())  # over budget: closed at accept
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["last"], "TLS handshake: left unfinished after the gateway's flight")
        self.assertTrue(self.gw.handshake(source="127.0.0.2"))


def still_open(s):
    """Whether the peer of the connected socket |s| has not closed it (no byte read)."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(5)


class IdleConnections(harness.GatewayTestCase):
    """A gateway of its own: 8 connections in all, 4 an address, 6 s to complete a TLS handshake (room for a
    loaded machine to accept all of them before the first is ended), and a budget of 2 failed authentications
    an address (a connection that completed its handshake may still hold a place as the idle ones come)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"max_connections": 8, "max_connections_per_address": 4, "handshake_timeout": "6s",
                         "auth_failures_per_address": 2, "auth_failure_window": "60s"}

    def test_idle_connections_ended_at_the_handshake_timeout_and_counted(self):
        """Connections that send nothing, not even a ClientHello, held their share of max_connections until
        libh2o's own handshake timeout (10 s), counted nowhere: two addresses filled this gateway's 8 and it
        refused everyone else, and re-opened them for free. Now limits.handshake_timeout ends each, logged
        handshake_timeout, and counts it against its address's budget: a legitimate client is served once
        they are gone, and an address that used its budget up so has its next connections closed at
        accept. An address that made no such connection is not affected."""
        idle = []
        try:
            deadline = time.monotonic() + 4  # each loop thread accepts its share of them in its own time
            while True:
                # 4 open from each address; one the cap refused (wait_ready's connection may still have held a
                # place) is opened again, so that the two addresses hold all 8 places
                for source in ("127.0.0.2", "127.0.0.3"):
                    while sum(1 for s in idle if s.getsockname()[0] == source and still_open(s)) < 4:
                        idle.append(socket.create_connection(("127.0.0.1", self.gw.port), timeout=5,
                                                             source_address=(source, 0)))
                if not self.gw.handshake():
                    break
                self.assertLess(time.monotonic(), deadline, "the idle connections did not fill the cap")
                time.sleep(0.05)
            for s in idle:
                s.settimeout(30)
                self.assertEqual(harness.read_to_eof(s), b"")  # ended by the gateway, never a byte sent
        finally:
            for s in idle:
                s.close()
        self.assertTrue(any(e.get("event") == "connection_refused" for e in self.gw.log_lines()))
        deadline = time.monotonic() + 10  # the gateway counts each as it sees its close
        while len([e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]) < 2:
            self.assertLess(time.monotonic(), deadline, self.gw.stderr()[-3000:])
            time.sleep(0.1)
        ended = [e for e in self.gw.log_lines() if e.get("event") == "handshake_timeout"]
        self.assertEqual(sorted({e["peer"].rsplit(":", 1)[0] for e in ended}), ["127.0.0.2", "127.0.0.3"])
        self.assertEqual({(e["listener"], e["timeout_s"]) for e in ended}, {("cmp", "6")})
        timed_out = harness.metric(self.gw, "cmpgw_tls_handshakes_total", 0, listener="cmp", result="timeout")
        self.assertGreaterEqual(timed_out, 4)  # the idle ones the gateway took: 8 but for places held a while
        self.assertEqual(harness.metric(self.gw, "cmpgw_slow_connections_ended_total", 0, protocol="tls",
                                        timeout="handshake_timeout"), timed_out)
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(sorted(e["peer"].rsplit(":", 1)[0] for e in lines), ["127.0.0.2", "127.0.0.3"])
        self.assertEqual({e["last"] for e in lines}, {"TLS handshake: none within limits.handshake_timeout"})
        self.assertTrue(self.gw.handshake())  # a legitimate client is served
        r = self.gw.curl(data=self.gw.make_request("after-idle"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.decode_cmp(r.body).body_type, "ip")
        self.assertFalse(self.gw.handshake(source="127.0.0.2"))  # over budget: closed at accept


class PlainIdleConnections(harness.GatewayTestCase):
    """A gateway of its own with a plain listener beside the TLS one, and 2 s to have a first request whole
    (below libh2o's own request timeout of 5 s, which would end such a connection unlogged)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})
        cfg["limits"] = {"handshake_timeout": "2s"}

    def test_openings_ended_at_the_handshake_timeout(self):
        """On a plain listener limits.handshake_timeout counts from the accept to a first request whole: a
        connection that sends nothing, part of a request line, or a request line and part of its headers is
        ended, no byte sent to it, logged handshake_timeout with its peer and counted as an http1
        handshake_timeout; not against its address's budget, and a client that sends its request is served."""
        openings = (b"", b"POST /pki/cm", b"POST /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        conns, peers = [], []
        try:
            for opening in openings:
                s = socket.create_connection(("127.0.0.1", self.gw.plain_port), timeout=5)
                conns.append(s)
                peers.append("127.0.0.1:%d" % s.getsockname()[1])
                s.sendall(opening)
            for s in conns:
                s.settimeout(30)  # a bound, not a speed: ended within it or the recv raises
                self.assertEqual(harness.read_to_eof(s), b"")
        finally:
            for s in conns:
                s.close()
        deadline = time.monotonic() + 30  # the client may see the close before the line is written
        while True:
            ended = [e for e in self.gw.log_lines() if e.get("event") == "handshake_timeout"]
            if len(ended) >= len(openings):
                break
            self.assertLess(time.monotonic(), deadline, self.gw.stderr()[-3000:])
            time.sleep(0.1)
        self.assertEqual(sorted(e["peer"] for e in ended), sorted(peers))
        self.assertEqual({(e["listener"], e["reason"], e["timeout_s"]) for e in ended},
                         {("cmp", "no request within limits.handshake_timeout", "2")})
        self.assertEqual(harness.metric(self.gw, "cmpgw_slow_connections_ended_total", 0, protocol="http1",
                                        timeout="handshake_timeout"), len(openings))
        self.assertFalse(any(e.get("event") == "auth_budget_exhausted" for e in self.gw.log_lines()))
        with socket.create_connection(("127.0.0.1", self.gw.plain_port), timeout=harness.CLIENT_TIMEOUT) as s:
            s.sendall(b"GET /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            self.assertTrue(harness.read_to_eof(s).startswith(b"HTTP/1.1 405 "))


def gateway_date(gw):
    """The time the Date header of an answer of |gw|'s admin listener gives: its event loop's clock."""
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % gw.admin_port, timeout=30) as rsp:
        return email.utils.parsedate_to_datetime(rsp.headers["Date"]).timestamp()


class ClockSteppedBack(harness.GatewayTestCase):
    """A gateway of its own, 2 s to complete a TLS handshake, with 127.0.0.4 a trusted proxy of its listener,
    on a clock libfaketime steps at run time (FAKETIME_TIMESTAMP_FILE, read again every second; the monotonic
    clock left alone)."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["listeners"][0]["trusted_proxies"] = ["127.0.0.4/32"]
        cfg["limits"] = {"handshake_timeout": "2s"}

    def test_openings_ended_with_the_clock_stepped_back(self):
        """libh2o 2.2.5 times its event loop by the wall clock, and the sweep was one of its timers: with the
        clock stepped back an hour (NTP correcting a clock that ran ahead) no sweep came for the hour. Nor did
        libh2o's own handshake timeout end a connection while one that a timer of the old clock holds is
        ahead of it (its timers of one timeout run in order): a connection that sent nothing over the step
        kept every later one, which a peer without a certificate could fill max_connections with, and so did
        the wait for a trusted proxy's PROXY header. The sweep now keeps the monotonic clock: a connection
        that sends nothing is ended after limits.handshake_timeout, and one of a trusted proxy without its
        PROXY header after 12 s, whatever the wall clock did."""
        clock = self.gw.dir / "faketime.rc"
        clock.write_text("+0\n")
        self.gw.stop()
        self.gw.start({"LD_PRELOAD": FAKETIME, "FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_CACHE_DURATION": "1",
                       "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                       "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"})
        conns = [socket.create_connection(("127.0.0.1", self.gw.port), timeout=30)]  # over the step
        try:
            clock.write_text("-1h\n")
            deadline = time.monotonic() + 10  # the file is read again within a second of the step
            while gateway_date(self.gw) > time.time() - 1800:
                self.assertLess(time.monotonic(), deadline, "the gateway's clock did not step back")
                time.sleep(0.2)
            conns.append(socket.create_connection(("127.0.0.1", self.gw.port), timeout=30))
            conns.append(socket.create_connection(("127.0.0.1", self.gw.port), timeout=30,
                                                  source_address=("127.0.0.4", 0)))
            start = time.monotonic()
            for s in conns:
                self.assertEqual(harness.read_to_eof(s), b"")  # within 30 s, or the recv raises
            self.assertGreater(time.monotonic() - start, 11)  # the header's 12 s, not at once
            peers = sorted("127.0.0.1:%d" % s.getsockname()[1] for s in conns[:2])
        finally:
            for s in conns:
                s.close()
        deadline = time.monotonic() + 10  # the client may see the close before the line is written
        while {"handshake_timeout", "proxy_header_refused"} - {e.get("event") for e in self.gw.log_lines()}:
            self.assertLess(time.monotonic(), deadline, self.gw.stderr()[-3000:])
            time.sleep(0.1)
        ended = [e for e in self.gw.log_lines() if e.get("event") == "handshake_timeout"]
        self.assertEqual(sorted((e["peer"], e["timeout_s"]) for e in ended), [(p, "2") for p in peers])
        self.assertEqual([e["reason"] for e in self.gw.log_lines() if e.get("event") == "proxy_header_refused"],
                         ["no complete PROXY protocol header within 12 s"])

def http1_exchange(s, request):
    """Sends |request| on the connected socket |s| and reads one answer to it (its head and its
    Content-Length of body): (status, body), or (None, b"") where the gateway closed the connection."""
    s.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    n = [int(l.split(b":", 1)[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
    while n and len(body) < n[0]:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


class IdleHeldConnections(harness.GatewayTestCase):
    """A gateway of its own with a plain listener beside the TLS one (a client there has no certificate, as on
    a TLS listener with client_auth "none" or "optional"), 8 connections in all, 4 an address, and one loop
    thread (the room for a newcomer is made on the thread that accepts it)."""

    UNKNOWN = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    @classmethod
    def edit_config(cls, cfg, gw):
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})
        cfg["loop_threads"] = 1
        cfg["limits"] = {"max_connections": 8, "max_connections_per_address": 4}

    def setUp(self):
        super().setUp()
        # the harness's own connections (wait_ready) and those of an earlier test are gone: each held a place
        for port in (self.gw.port, self.gw.plain_port):
            self.assertEqual(harness.settled(lambda: harness.connections(self.gw, port), lambda k: k == 0), 0)

    def idle(self, source):
        """A connection from |source| past its opening that holds its place with a request now and then to an
        unknown path (404, never a failed authentication): what holds a place for good on a plain listener,
        and with a TLS handshake without a certificate on a TLS one."""
        s = socket.create_connection(("127.0.0.1", self.gw.plain_port), timeout=harness.CLIENT_TIMEOUT,
                                     source_address=(source, 0))
        self.assertEqual(http1_exchange(s, self.UNKNOWN)[0], 404)
        return s

    def evicted_lines(self):
        return [e for e in self.gw.log_lines() if e.get("event") == "connection_evicted"]

    def test_idle_connections_make_room_at_max_connections(self):
        """Connections with no certificate that send a request to an unknown path every few seconds (libh2o's
        request timer starts again with each) held the 8 places for good: every newcomer was closed at accept
        (connection_refused). Now a newcomer at max_connections has the oldest connection with no verified
        certificate, no request in flight and no authenticated request shut down for it (connection_evicted),
        and is served; a connection that made an authenticated request keeps its place."""
        held = []
        try:
            authed = socket.create_connection(("127.0.0.1", self.gw.plain_port), timeout=harness.CLIENT_TIMEOUT,
                                              source_address=("127.0.0.5", 0))
            held.append(authed)
            der = self.gw.make_request("idle-held").read_bytes()
            post = (b"POST /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/pkixcmp\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(der)) + der
            status, body = http1_exchange(authed, post)
            self.assertEqual(status, 200, body)
            for source in ("127.0.0.2",) * 4 + ("127.0.0.3",) * 3:
                held.append(self.idle(source))
            oldest_idle = held[1]
            oldest_port = oldest_idle.getsockname()[1]
            newcomer = socket.create_connection(("127.0.0.1", self.gw.plain_port),
                                                timeout=harness.CLIENT_TIMEOUT, source_address=("127.0.0.4", 0))
            held.append(newcomer)
            self.assertEqual(http1_exchange(newcomer, self.UNKNOWN)[0], 404, "refused at max_connections")
            self.assertEqual(harness.read_to_eof(oldest_idle), b"")  # shut down for the newcomer
            self.assertTrue(all(still_open(s) for s in held[2:]))
            self.assertEqual(http1_exchange(authed, self.UNKNOWN)[0], 404)  # kept its place, and is served
        finally:
            for s in held:
                s.close()
        lines = harness.settled(self.evicted_lines, lambda l: len(l) >= 1)
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["peer"], "127.0.0.2:%d" % oldest_port)
        self.assertIn("max_connections", lines[0]["reason"])
        # the bounds that decide which connection goes: a proven request's 30 s, a certificate's 5 s of grace
        self.assertIn("in the last 30 s", lines[0]["reason"])
        self.assertIn("5 s after its TLS handshake", lines[0]["reason"])

    def test_idle_connections_make_room_at_the_address_cap(self):
        """The same at max_connections_per_address: the oldest of the address's idle connections makes room for
        its newcomer, which was closed at accept, and another address's connections keep their places."""
        other = self.idle("127.0.0.3")
        held = [self.idle("127.0.0.2") for _ in range(4)]
        try:
            newcomer = socket.create_connection(("127.0.0.1", self.gw.plain_port),
                                                timeout=harness.CLIENT_TIMEOUT, source_address=("127.0.0.2", 0))
            held.append(newcomer)
            self.assertEqual(http1_exchange(newcomer, self.UNKNOWN)[0], 404, "refused at the address cap")
            self.assertEqual(harness.read_to_eof(held[0]), b"")
            self.assertTrue(still_open(other) and all(still_open(s) for s in held[1:]))
        finally:
            other.close()
            for s in held:
                s.close()
        lines = harness.settled(self.evicted_lines, lambda l: len(l) >= 1)
        self.assertIn("max_connections_per_address", lines[-1]["reason"])
        self.assertIn("in the last 30 s", lines[-1]["reason"])

    def test_newcomer_at_its_address_cap_makes_room_among_its_own(self):
        """At max_connections and at its address's cap both, a newcomer had the oldest idle connection of
        another address shut down first (the cap in all was judged first), and then, still over its own cap, one
        of its own as well: two places taken for one. Now only its own address's oldest makes room for it."""
        others = [self.idle("127.0.0.3") for _ in range(4)]
        held = [self.idle("127.0.0.2") for _ in range(4)]
        try:
            newcomer = socket.create_connection(("127.0.0.1", self.gw.plain_port),
                                                timeout=harness.CLIENT_TIMEOUT, source_address=("127.0.0.2", 0))
            held.append(newcomer)
            self.assertEqual(http1_exchange(newcomer, self.UNKNOWN)[0], 404, "refused at the address cap")
            self.assertEqual(harness.read_to_eof(held[0]), b"")
            self.assertTrue(all(still_open(s) for s in others), "another address's connection closed")
            self.assertTrue(all(still_open(s) for s in held[1:]))
        finally:
            for s in others + held:
                s.close()

    def test_replayed_message_proves_nothing(self):
        """A connection that sent a message captured from another client (its protection verifies, and the
        replay is refused without counting a failure) was marked as one of a proven client, and kept its place
        for good. Now only a request that passed every check proves its connection: the replaying one is the
        oldest idle one, shut down for the newcomer."""
        der = self.gw.make_request("replayed").read_bytes()
        post = (b"POST /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/pkixcmp\r\n"
                b"Content-Length: %d\r\n\r\n" % len(der)) + der
        with socket.create_connection(("127.0.0.1", self.gw.plain_port), timeout=harness.CLIENT_TIMEOUT,
                                      source_address=("127.0.0.6", 0)) as client:
            self.assertEqual(http1_exchange(client, post)[0], 200)
        held = []
        try:
            replayer = socket.create_connection(("127.0.0.1", self.gw.plain_port),
                                                timeout=harness.CLIENT_TIMEOUT, source_address=("127.0.0.2", 0))
            held.append(replayer)
            status, body = http1_exchange(replayer, post)
            self.assertEqual(status, 200, body)  # an error PKIMessage: a replay
            held += [self.idle("127.0.0.2") for _ in range(3)]
            newcomer = socket.create_connection(("127.0.0.1", self.gw.plain_port),
                                                timeout=harness.CLIENT_TIMEOUT, source_address=("127.0.0.2", 0))
            held.append(newcomer)
            self.assertEqual(http1_exchange(newcomer, self.UNKNOWN)[0], 404, "refused at the address cap")
            # shut down for the newcomer, not by libh2o's 5 s request timer, which would close it too
            peer = "127.0.0.2:%d" % replayer.getsockname()[1]
            evicted = harness.settled(lambda: [e for e in self.evicted_lines() if e.get("peer") == peer], bool,
                                      timeout=5)
            self.assertEqual(len(evicted), 1, "the replaying connection kept its place")
            self.assertEqual(harness.read_to_eof(replayer), b"")
            self.assertTrue(all(still_open(s) for s in held[1:]))
        finally:
            for s in held:
                s.close()

    def test_large_head_ended(self):
        """libh2o 2.2.5 buffers a request head up to 417 792 bytes, for up to its 5 s request timeout (which
        starts again with each request): a connection past its opening could hold some 0.4 MB that long, again
        and again. Input buffered beyond a head allowance of 16 KiB and a CMP body is now ended at the next
        sweep (every second), logged http1_connection_closed with timeout "input"."""
        with self.idle("127.0.0.2") as s:
            peer = "127.0.0.2:%d" % s.getsockname()[1]
            pad = b"X-Pad: " + b"a" * 8000 + b"\r\n"
            s.sendall(b"GET /y HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad * 15)  # 120 KB, the head not ended
            self.assertEqual(harness.read_to_eof(s), b"")
        # ended by the sweep, which says so naming it, not by libh2o's request timeout, which says nothing
        lines = harness.settled(
            lambda: [e for e in self.gw.log_lines() if e.get("event") == "http1_connection_closed"
                     and e.get("peer") == peer], bool)
        self.assertEqual([e["timeout"] for e in lines], ["input"], lines)
        self.assertEqual(harness.metric(self.gw, "cmpgw_slow_connections_ended_total", 0, protocol="http1",
                                        timeout="input"), 1)



class IdleHeldHttp2(harness.GatewayTestCase):
    """A gateway of its own whose TLS listener speaks HTTP/2 and asks for a client certificate without requiring
    one, 2 connections an address, one loop thread."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["listeners"][0]["tls"].update({"http2": True, "client_auth": "optional"})
        cfg["loop_threads"] = 1
        cfg["limits"] = {"max_connections_per_address": 2}

    def bare_h2(self):
        """An HTTP/2 connection from 127.0.0.2 with no client certificate that opens no stream and PINGs: libh2o
        starts its idle timer again with each read, so no timer of its own ends it."""
        ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", self.gw.port), timeout=harness.CLIENT_TIMEOUT,
                                       source_address=("127.0.0.2", 0))
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.assertEqual(s.selected_alpn_protocol(), "h2")
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        self.ping(s)
        return s

    def ping(self, s):
        """Sends a PING on |s| and reads until its answer (an ACK PING)."""
        s.sendall(h2_frame(6, 0, 0, b"8 bytes!"))
        data = b""
        while not any(t == 6 and f & 1 for t, f, _, _ in h2_frames(data)[0]):
            chunk = s.recv(65536)
            self.assertNotEqual(chunk, b"", "closed")
            data += chunk

    def evictions(self):
        """The peers of the gateway's connection_evicted lines so far."""
        return [e["peer"] for e in self.gw.log_lines() if e.get("event") == "connection_evicted"]

    def assert_evicted(self, s, mark):
        """|s| was closed to make room since |mark| (len(evictions())), its address named in a connection_evicted
        line, and it reads as closed: no idle timer of libh2o's, which closes one too, did it. A connection of
        the test before, closed by its client but not yet seen closed by the gateway, may be named as well."""
        peer = "127.0.0.2:%d" % s.getsockname()[1]
        self.assertIn(peer, harness.settled(lambda: self.evictions()[mark:], lambda got: peer in got))
        harness.read_to_eof(s)  # closed by the gateway: a timeout raises

    def test_bare_http2_connections_make_room(self):
        """Two such connections held their address's places for good, and its newcomer was closed at accept.
        Now the oldest is closed for the newcomer, which is served (its PING answered)."""
        held, mark = [], len(self.evictions())
        try:
            held = [self.bare_h2(), self.bare_h2()]
            held.append(self.bare_h2())  # raised "closed", or a TLS error, where the cap refused it
            self.assert_evicted(held[0], mark)
            self.ping(held[1])
            self.ping(held[2])
        finally:
            for s in held:
                s.close()
        lines = harness.settled(lambda: [e for e in self.gw.log_lines() if e.get("event") == "connection_evicted"],
                                lambda l: len(l) >= 1)
        self.assertIn("max_connections_per_address", lines[0]["reason"])

    def test_unread_answer_does_not_hold_a_place(self):
        """A connection with no certificate whose client takes no answer (SETTINGS_INITIAL_WINDOW_SIZE 0, then a
        GET of a CRL, which counts no failure) kept its request undisposed and so counted as one with a request
        in flight for as long as it liked: the newcomer had the other, bare, connection closed instead. Now a
        request answered no longer protects its connection: the oldest, that one, is closed."""
        held, mark = [], len(self.evictions())
        try:
            ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
            ctx.set_alpn_protocols(["h2"])
            raw = socket.create_connection(("127.0.0.1", self.gw.port), timeout=harness.CLIENT_TIMEOUT,
                                           source_address=("127.0.0.2", 0))
            stuck = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            held.append(stuck)
            block = h2_block(b"GET", b"/pki/crl/local")
            stuck.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, H2_WINDOW_SHUT) +
                          h2_frame(1, 0x5, 1, block))
            data = b""
            while not any(t == 1 and st == 1 for t, _, st, _ in h2_frames(data)[0]):  # answered: its HEADERS
                chunk = stuck.recv(65536)
                self.assertNotEqual(chunk, b"", "closed")
                data += chunk
            held.append(self.bare_h2())
            held.append(self.bare_h2())  # raised "closed", or a TLS error, where the cap refused it
            self.assert_evicted(stuck, mark)
            self.ping(held[1])
            self.ping(held[2])
        finally:
            for s in held:
                s.close()

    def certified_h2(self):
        """An HTTP/2 connection from 127.0.0.2 with a verified client certificate that opens no stream (a device
        part-way through its upload, to the gateway) and PINGs."""
        ctx = self.gw.tls_context()
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", self.gw.port), timeout=harness.CLIENT_TIMEOUT,
                                       source_address=("127.0.0.2", 0))
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        self.ping(s)
        return s

    def test_client_certificate_kept_until_its_first_request(self):
        """A connection with a verified client certificate whose request had not reached the workers yet (libh2o
        hands it over once its body arrived) was the oldest to make room with: devices behind one address
        re-enrolling at once closed each other part-way through their uploads. Now it is kept for its grace
        time after the handshake, and the bare connection after it is closed for the newcomer."""
        held, mark = [], len(self.evictions())
        try:
            held.append(self.certified_h2())
            held.append(self.bare_h2())
            held.append(self.bare_h2())  # raised "closed", or a TLS error, where the cap refused it
            self.assert_evicted(held[1], mark)
            self.ping(held[0])
            self.ping(held[2])
        finally:
            for s in held:
                s.close()

    def test_client_certificate_alone_proves_nothing(self):
        """A connection with a verified client certificate (which may be revoked: that is checked per request)
        and no request was never one to make room with. Now it is, once its grace time after the handshake
        (GW_PEER_GRACE_MS, 5 s) passed without a request answered."""
        held, mark = [], len(self.evictions())
        try:
            certified = self.certified_h2()
            held.append(certified)
            for _ in range(6):  # past the grace; a PING a second keeps libh2o's idle timer from ending it
                time.sleep(1)
                self.ping(certified)
            held.append(self.bare_h2())
            held.append(self.bare_h2())
            self.assert_evicted(certified, mark)
            self.ping(held[1])
            self.ping(held[2])
        finally:
            for s in held:
                s.close()

class UndecodableBodyBudget(harness.GatewayTestCase):
    """A gateway of its own: its address is over budget after three messages refused before their sender
    is known."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}

    def test_refused_before_authentication_counts(self):
        """A body that does not decode as a PKIMessage (HTTP 400) and a PKIMessage refused before its
        protection is checked (an answer sent back as a request, badRequest) cost their decoding, up to
        some 6 ms with 24 keys, and counted against nothing: one address could repeat them as fast as it
        could send. Now each counts as a failed authentication: after three, the address's connections are
        closed at accept. A request that enrols counts nothing (the twin), and another address enrols."""
        r = self.gw.curl(data=self.gw.make_request("first"))
        self.assertEqual(r.status, 200, r)
        ip = self.gw.dir / "first-ip.der"
        ip.write_bytes(r.body)
        ans = harness.decode_cmp(self.gw.curl(data=ip).body)
        self.assert_cmp_error(ans, ("error",), "badRequest", "PKIBody type ip is not a request")
        garbage = self.gw.dir / "garbage.der"
        garbage.write_bytes(b"\x30\x03\x02\x01")  # truncated: no PKIMessage
        for _ in range(2):
            r = self.gw.curl(data=garbage)
            self.assertEqual((r.status, r.body), (400, b"body is not a DER-encoded PKIMessage\n"))
        self.assertFalse(self.gw.handshake())
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["last"], "http 400: body is not a DER-encoded PKIMessage")  # its outcome
        r = self.gw.curl("--interface", "127.0.0.2", data=self.gw.make_request("other-address"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(harness.decode_cmp(r.body).body_type, "ip")


class SenderNotNameBudget(harness.GatewayTestCase):
    """A gateway of its own, with a budget of three failed authentications an address."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}

    def test_signed_with_a_sender_not_a_name_counts(self):
        """A signed message whose sender is no directoryName (RFC 9483 §3.1: the subject of its certificate)
        went to OpenSSL 3.0, which took in its extraCerts, parsing their extensions (8 ms for 32 KiB of
        subjectAltNames), before it refused the sender: a badRequest that counted nothing, repeatable as fast
        as it could be sent. It is refused before, with the same answer, as a form no conforming client sends:
        three of them use the address's budget up."""
        from test_errors import load, resign
        m = load(self.gw.make_request("sender").read_bytes())
        gn = m["header"]["sender"].clone()
        gn["rfc822Name"] = "device@example.com"
        m["header"]["sender"] = gn
        f = self.gw.dir / "sender.sent.der"
        f.write_bytes(encoder.encode(resign(m, self.gw.dir / "client.key")))
        for _ in range(3):
            ans = harness.decode_cmp(self.gw.curl(data=f).body)
            self.assert_cmp_error(ans, ("error",), "badRequest", "the sender must be a directoryName")
        self.assertFalse(self.gw.handshake())
        lines = [e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"]
        self.assertEqual(len(lines), 1, lines)


class AskedForUncounted(harness.GatewayTestCase):
    """A gateway of its own, with a budget of three failed authentications an address."""

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 3, "auth_failure_window": "60s"}

    def test_refused_for_what_it_asks_counts_nothing(self):
        """A request refused before its protection is checked for what a conforming client may ask for (here a
        key over the limits; a certProfile, central key generation) is no failed authentication: four of them
        leave the address its budget (a fleet behind one address would lose it), where three refusals of a
        form no client sends use it up (UndecodableBodyBudget)."""
        key = huge_exponent_key(self.gw.dir / "asked.key")
        for i in range(4):
            res = self.gw.cmp("ir", "asked%d" % i, newkey=key, subject="/CN=asked%d" % i,
                              extra=("-implicit_confirm",), expect_cert=False)
            self.assert_cmp_error(res.first, ("error",), "badCertTemplate", TEXT_KEY_LIMITS)
        self.assertTrue(self.gw.handshake())
        self.assertEqual([e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"], [])
        self.gw.cmp("ir", "asked-twin", newkey=self.newkey("asked-twin"), subject="/CN=asked-twin",
                    extra=("-implicit_confirm",))

    def test_cert_conf_hash_alg_counts_nothing(self):
        """A certConf with hashAlg (RFC 9810 §5.3.18), which a CMP version 3 client sends for a certificate signed
        without a hash, is refused (unsupportedVersion) before its protection could be verified: no failed
        authentication, four of them leave the address its budget, and its transaction open."""
        from pyasn1.codec.der import encoder
        from test_errors import certconf, load, with_hash_alg
        res = self.gw.cmp("ir", "hashalg", newkey=self.newkey("hashalg"), subject="/CN=hashalg",
                          extra=("-disable_confirm",))
        ir, ip = load(res.req_files[0].read_bytes()), res.first
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(res.cert.read_text())).digest()
        key = self.gw.dir / "client.key"
        for i in range(4):
            f = self.gw.dir / ("hashalg-conf%d.der" % i)
            f.write_bytes(with_hash_alg(certconf(load(encoder.encode(ir)), ip, digest, key), key))
            self.assert_cmp_error(harness.decode_cmp(self.gw.curl(data=f).body), ("error",), "unsupportedVersion",
                                  "certConf hashAlg (CMP version 3, RFC 9810 §5.3.18) is not supported")
        self.assertTrue(self.gw.handshake())
        self.assertEqual([e for e in self.gw.log_lines() if e.get("event") == "auth_budget_exhausted"], [])
        f = self.gw.dir / "hashalg-conf.der"
        f.write_bytes(encoder.encode(certconf(ir, ip, digest, key)))
        self.assertEqual(harness.decode_cmp(self.gw.curl(data=f).body).body_type, "pkiconf")


class RequestsInFlightPerAddress(harness.GatewayTestCase):
    """A slow CA holds each request; one address may have 2 of them in flight, whatever it multiplexes."""

    DELAY = 4 * harness.SLOW

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"max_requests_in_flight_per_address": 2}
        cfg["listeners"][0]["tls"]["http2"] = True
        cfg["upstreams"]["local"]["delay"] = "%ds" % cls.DELAY  # each sign call holds its request

    def test_streams_past_the_cap_refused_another_address_served(self):
        ders = [self.gw.make_request("inflight%d" % i, subject="/CN=inflight%d" % i).read_bytes() for i in range(5)]
        garbage = self.gw.dir / "inflight-garbage.der"
        garbage.write_bytes(b"not a PKIMessage")
        deadline = time.monotonic() + 3 * self.DELAY + harness.CLIENT_TIMEOUT
        first = h2_connect(self.gw)
        try:
            # four valid requests on four streams of one connection, in one write
            first.sendall(b"".join(h2_post(2 * i + 1, ders[i]) for i in range(4)))
            refused = h2_answers(first, (5, 7), deadline)
            self.assertEqual([refused.get(s, (None,))[0] for s in (5, 7)], [429, 429])
            for stream in (5, 7):
                self.assertEqual(refused[stream][1],
                                 b"too many requests in flight from this address: retry once one is answered\n")
            # streams 1 and 3 wait for the CA: another connection of the same address is refused too ...
            r = self.gw.curl(data=garbage)
            self.assertEqual(r.status, 429, r)
            self.assertGreater(int(r.headers.get("retry-after", "0")), 0, r)
            # ... and another address is served
            other = h2_connect(self.gw, source="127.0.0.2")
            try:
                other.sendall(h2_post(1, ders[4]))
                self.assertEqual(h2_answers(other, (1,), deadline).get(1, (None,))[0], 200)
            finally:
                other.close()
            served = h2_answers(first, (1, 3), deadline)
            self.assertEqual([served.get(s, (None,))[0] for s in (1, 3)], [200, 200])
        finally:
            first.close()
        # answered: the address has room again (a garbage body gets as far as the CMP parser)
        r = self.gw.curl(data=garbage)
        self.assertEqual(r.status, 400, r)
        refusals = [e for e in self.gw.log_lines() if e.get("event") == "request" and e.get("status") == "429"]
        self.assertEqual(len(refusals), 3, refusals)
        self.assertTrue(all(e["peer"].startswith("127.0.0.1:") for e in refusals), refusals)



def requests_by_status(gw):
    """{HTTP status: cmpgw_requests_total summed over its other labels}."""
    from prometheus_client.parser import text_string_to_metric_families
    _, text = harness.admin(gw, "/metrics")
    got = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "cmpgw_requests_total":
                got[s.labels["status"]] = got.get(s.labels["status"], 0) + s.value
    return got


class RequestLinesPaced(harness.GatewayTestCase):
    """A peer without credentials made one request line for each request refused, as fast as it could
    send them (some 8 000 a second over one connection). The lines of a request whose peer is not
    authenticated (no verified TLS client certificate, no verified CMP protection) are now paced:
    GW_LOG_PACE_LINES a GW_LOG_PACE_SECS window, the lines held back counted in the next one's
    "suppressed"; the counters count every request. A client with a trusted TLS certificate has its lines paced
    per certificate, its plain successes aside (a client authenticated by its message's protection alone:
    CmpSenderLinesPaced).
    A plain listener beside the TLS one (whose client certificate is optional); no failed-auth budget,
    so that the CMP-level refusals counted against it do not shut the address out."""
    PACE_LINES, PACE_SECS = 20, 10  # GW_LOG_PACE_LINES, GW_LOG_PACE_SECS

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 0}
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

    def lines(self, before):
        return [e for e in self.gw.log_lines()[before:] if e.get("event") == "request"]

    def refused(self, conn, count):
        """|count| requests on the kept-alive http.client connection |conn|, each refused another way; the
        statuses they got."""
        unprotected = self.gw.make_request("paced-unprotected",
                                           extra=("-implicit_confirm", "-unprotected_requests")).read_bytes()
        kinds = [("POST", "/no/such/path", b"x", "application/pkixcmp", 404),
                 ("GET", "/pki/cmp", None, None, 405),
                 ("POST", "/pki/cmp", b"x", "text/plain", 415),
                 ("POST", "/pki/cmp", b"", "application/pkixcmp", 400),  # before the engine
                 ("POST", "/pki/cmp", b"\x30\x03\x02\x01\x00", "application/pkixcmp", 400),  # no PKIMessage
                 ("POST", "/pki/cmp", unprotected, "application/pkixcmp", 200)]  # badMessageCheck
        statuses = {}
        for i in range(count):
            method, path, body, ctype, want = kinds[i % len(kinds)]
            conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, want, (method, path, ctype))
            statuses[str(want)] = statuses.get(str(want), 0) + 1
        return statuses

    def test_refused_without_credentials_paced(self):
        import http.client
        n = 1200  # on each listener
        before, counted = len(self.gw.log_lines()), requests_by_status(self.gw)
        start = time.monotonic()
        plain = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        tls = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                          context=self.gw.tls_context(cert=None))
        sent = {}
        for conn in (plain, tls):
            for status, k in self.refused(conn, n).items():
                sent[status] = sent.get(status, 0) + k
        elapsed = time.monotonic() - start
        plain.close()
        tls.close()
        counted_after = requests_by_status(self.gw)
        self.assertEqual({s: counted_after.get(s, 0) - counted.get(s, 0) for s in sent}, sent)
        lines = self.lines(before)
        windows = int(elapsed // self.PACE_SECS) + 2  # the windows the requests can have fallen in
        self.assertLessEqual(len(lines), windows * self.PACE_LINES, (len(lines), elapsed))
        self.assertTrue(all(l.get("suppressed", "").isdigit() for l in lines), lines[:3])
        self.assertTrue(all(l["tls_subject"] == "" and l["identity"] == "" for l in lines), lines[:3])
        # once the window has passed, the next line says how many were held back: none is lost
        time.sleep(self.PACE_SECS + 0.5)
        r = self.gw.curl(path="/no/such/path", data=self.gw.dir / "paced-unprotected.der", tls=None)
        self.assertEqual(r.status, 404, r)
        lines = self.lines(before)
        self.assertEqual(len(lines) + sum(int(l["suppressed"]) for l in lines), 2 * n + 1)
        self.assertGreater(int(lines[-1]["suppressed"]), 0, lines[-1])

    def refused_404(self, conn, count):
        for _ in range(count):
            conn.request("POST", "/no/such/path", body=b"x", headers={"Content-Type": "application/pkixcmp"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 404)

    def test_authenticated_lines_paced_per_client(self):
        """A client with a trusted TLS certificate sent requests to an unknown path as fast as a peer without
        credentials can, each a 404 and a line written, some 12 bytes logged a byte sent. Its refusals are now
        paced per client certificate: GW_LOG_PACE_LINES a window for it, "suppressed" counting its own lines held
        back, and another client's lines in the same window are all written. Its plain successes are not paced."""
        import http.client
        from test_tls import short_lived_client
        n = 3 * self.PACE_LINES
        other_cert, other_key = short_lived_client(self.gw.dir, 3600)  # CN=short-lived, of the same CA
        before = len(self.gw.log_lines())
        start = time.monotonic()
        flooder = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                              context=self.gw.tls_context())
        self.refused_404(flooder, n)
        flooded = time.time()  # each of its lines was paced before its answer left: its last window began by now
        other = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                            context=self.gw.tls_context(other_cert, other_key))
        self.refused_404(other, self.PACE_LINES)
        other.close()
        # the flooder's plain success, its own refusals' window spent: written
        status, _, body = post(flooder, self.gw.make_request("paced-tls", subject="/CN=paced-tls").read_bytes())
        self.assertEqual(status, 200)
        self.assertEqual(harness.decode_cmp(body).body_type, "ip")
        flooder.close()
        elapsed = time.monotonic() - start
        lines = self.lines(before)
        flood = [l for l in lines if l["tls_subject"] == "/O=cmpgw demo/CN=demo-client" and l["status"] == "404"]
        windows = int(elapsed // self.PACE_SECS) + 2
        self.assertLessEqual(len(flood), windows * self.PACE_LINES, (len(flood), elapsed))
        self.assertTrue(flood and all(l.get("suppressed", "").isdigit() for l in flood), flood[:3])
        others = [l for l in lines if l["tls_subject"] == "/O=cmpgw demo/CN=short-lived"]
        self.assertEqual(len(others), self.PACE_LINES, others[:3])
        self.assertTrue(all(l["status"] == "404" and l["suppressed"] == "0" for l in others), others[:3])
        issued = [l for l in lines if l["req_type"] == "ir" and l["tls_subject"]]
        self.assertEqual([(l["outcome"], "suppressed" in l) for l in issued], [("accepted", False)])
        # once the window has passed, the flooder's next line says how many of its own were held back: the
        # gateway's window begins with a line (its second, on the wall clock), later than |start| if the first
        # line came late or the flood outlasted a window
        time.sleep(max(0, flooded + self.PACE_SECS + 0.5 - time.time()))
        flooder = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                              context=self.gw.tls_context())
        self.refused_404(flooder, 1)
        flooder.close()
        flood = [l for l in self.lines(before) if l["tls_subject"] == "/O=cmpgw demo/CN=demo-client"
                 and l["status"] == "404"]
        self.assertEqual(len(flood) + sum(int(l["suppressed"]) for l in flood), n + 1)
        self.assertGreater(int(flood[-1]["suppressed"]), 0, flood[-1])


class CmpSenderLinesPaced(harness.GatewayTestCase):
    """A gateway of its own, with a plain listener as RequestLinesPaced: the lines its senders' floods hold back
    would be counted in another test's "suppressed"."""
    PACE_LINES, PACE_SECS = RequestLinesPaced.PACE_LINES, RequestLinesPaced.PACE_SECS

    @classmethod
    def edit_config(cls, cfg, gw):
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

    def lines_of(self, before, identity):
        return [e for e in self.gw.log_lines()[before:] if e.get("event") == "request" and e["identity"] == identity]

    def test_replays_paced_per_sender(self):
        """A client authenticated by its CMP message's protection alone (a plain listener, a TLS one without a
        client certificate) had every request line written, and so had anyone replaying a message of it they
        captured: each replay verified, refused as one and a line, as fast as they came, nothing counted
        against the address. These lines are now paced per sender credential (the certificate that signed,
        the PBM reference), its plain successes aside: the signer's flood holds back its own lines, and a PBM
        sender's lines in the same window are all written."""
        import http.client
        n = 3 * self.PACE_LINES
        signed = self.gw.make_request("paced-signer").read_bytes()
        pbm = self.gw.make_request("paced-pbm", auth="pbm").read_bytes()
        before = len(self.gw.log_lines())
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        for _ in range(n):
            self.assertEqual(post(conn, signed)[0], 200)
        flooded = time.time()  # each of its lines was paced before its answer left: its last window began by now
        conn.close()
        other = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                            context=self.gw.tls_context(cert=None))
        for _ in range(self.PACE_LINES + 1):  # accepted, then as many replays as a window lets out
            self.assertEqual(post(other, pbm)[0], 200)
        other.close()
        elapsed = time.monotonic() - start
        flood = self.lines_of(before, "/O=cmpgw demo/CN=demo-client")
        self.assertEqual([(l["outcome"], "suppressed" in l) for l in flood[:1]], [("accepted", False)])
        replays = flood[1:]
        windows = int(elapsed // self.PACE_SECS) + 2
        self.assertLessEqual(len(replays), windows * self.PACE_LINES, (len(replays), elapsed))
        self.assertTrue(replays and all(l.get("suppressed", "").isdigit() for l in replays), replays[:3])
        self.assertTrue(all("replayed message" in l["outcome"] for l in replays), replays[:3])
        others = self.lines_of(before, "pbm:demo-device")
        self.assertEqual([(l["outcome"], "suppressed" in l) for l in others[:1]], [("accepted", False)])
        self.assertEqual([l.get("suppressed") for l in others[1:]], ["0"] * self.PACE_LINES, others[:3])
        # once the window has passed (anchored as the gateway anchors it, test_authenticated_lines_paced_per_client),
        # the signer's next line says how many of its own were held back
        time.sleep(max(0, flooded + self.PACE_SECS + 0.5 - time.time()))
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        self.assertEqual(post(conn, signed)[0], 200)
        conn.close()
        replays = self.lines_of(before, "/O=cmpgw demo/CN=demo-client")[1:]
        self.assertEqual(len(replays) + sum(int(l["suppressed"]) for l in replays), n)
        self.assertGreater(int(replays[-1]["suppressed"]), 0, replays[-1])

    def test_request_line_names_its_client(self):
        """The request_lines_held line names a client by what its lines are paced under (the hash of its TLS
        client certificate, or of the certificate that signed its message, or its PBM reference), which its
        request lines did not say: neither could be joined to the other. A request line now says it as
        "client", "" for a peer not authenticated."""
        import http.client
        signed = self.gw.make_request("named-signer").read_bytes()
        pbm = self.gw.make_request("named-pbm", auth="pbm").read_bytes()
        tls = self.gw.make_request("named-tls", auth="pbm").read_bytes()
        cert = ssl.PEM_cert_to_DER_cert((self.gw.dir / "client.pem").read_text())  # signs, and TLS client
        client = "sha256:" + hashlib.sha256(cert).hexdigest()
        before = len(self.gw.log_lines())
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        self.assertEqual(post(conn, signed)[0], 200)  # its signer
        conn.request("POST", "/no/such/path", body=b"x", headers={"Content-Type": "application/pkixcmp"})
        r = conn.getresponse()
        r.read()
        self.assertEqual(r.status, 404)  # no credential
        conn.close()
        for der, cert in ((pbm, None), (tls, "client.pem")):  # its PBM reference; its TLS client certificate
            conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                               context=self.gw.tls_context(cert=cert))
            self.assertEqual(post(conn, der)[0], 200)
            conn.close()
        lines = [l for l in self.gw.log_lines()[before:] if l.get("event") == "request"]
        self.assertEqual([(l["identity"], l.get("client")) for l in lines],
                         [("/O=cmpgw demo/CN=demo-client", client), ("", ""),
                          ("pbm:demo-device", "pbm:demo-device"), ("pbm:demo-device", client)], lines)


def fnv1a(data):
    """base/hash.h gw_fnv1a from GW_FNV1A_BASIS."""
    h = 14695981039346656037
    for b in data:
        h = ((h ^ b) * 1099511628211) % (1 << 64)
    return h


class HeldLinesSaidWhenPlaceTaken(harness.GatewayTestCase):
    """A gateway of its own, with a plain listener and nine PBM references whose places in the table of paced
    clients begin at the same one (GW_LOG_PACE_PEERS places, a client's among GW_LOG_PACE_PROBE)."""
    PACE_LINES, PACE_SECS = RequestLinesPaced.PACE_LINES, RequestLinesPaced.PACE_SECS
    PEERS, PROBE = 256, 8  # GW_LOG_PACE_PEERS, GW_LOG_PACE_PROBE
    REFS = []

    @classmethod
    def edit_config(cls, cfg, gw):
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

        def at(ref):  # where its places begin
            return fnv1a(b"pbm:" + ref.encode()) % cls.PEERS

        refs = (r for r in ("held-%d" % i for i in range(100000)) if at(r) == at("held-0"))
        cls.REFS = [next(refs) for _ in range(cls.PROBE + 1)]
        for ref in cls.REFS:
            (gw.dir / ("%s.secret" % ref)).write_text("%s-secret-0123456789\n" % ref)
            (gw.dir / ("%s.secret" % ref)).chmod(0o600)
            cfg["pbm"][ref] = {"secret_file": "%s.secret" % ref}
        cfg["roles"]["default"]["pbm"] = cfg["roles"]["default"]["pbm"] + cls.REFS

    def replays(self, der, count):
        """|der| sent |count| times on a new connection to the plain listener, each answered 200."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
        for _ in range(count):
            self.assertEqual(post(conn, der)[0], 200)
        conn.close()

    def test_count_said_when_the_place_changes_hands(self):
        """A client whose place in the table went to another, its window over, had the count of its lines held
        back said under the next line of the clients paced as one: late, and under another client's name. It is
        now said as the place changes hands, in a request_lines_held line that names the client. Here eight
        PBM senders each fill a place and hold 3 lines back; once their windows are over, a ninth takes the
        first place."""
        ders = [self.gw.make_request(ref, auth=("pbm", ref, "file:%s" % (self.gw.dir / (ref + ".secret")))).read_bytes()
                for ref in self.REFS]
        before = len(self.gw.log_lines())
        for der in ders[:self.PROBE]:  # accepted, then replays: a window's lines out, 3 held back
            self.replays(der, 1 + self.PACE_LINES + 3)
        time.sleep(self.PACE_SECS + 0.5)  # every window over
        self.replays(ders[self.PROBE], 2)
        lines = [e for e in self.gw.log_lines()[before:] if e.get("event") in ("request", "request_lines_held")]
        held = [l for l in lines if l["event"] == "request_lines_held"]
        self.assertEqual([(l["client"], l["suppressed"]) for l in held], [("pbm:" + self.REFS[0], "3")], held)
        first = [l for l in lines if l["event"] == "request" and l["identity"] == "pbm:" + self.REFS[0]]
        said = len(first) + sum(int(l.get("suppressed", "0")) for l in first) + int(held[0]["suppressed"])
        self.assertEqual(said, 1 + self.PACE_LINES + 3)  # every one of its lines out, or counted once
        last = [l for l in lines if l["event"] == "request" and l["identity"] == "pbm:" + self.REFS[-1]]
        self.assertEqual([l.get("suppressed") for l in last], [None, "0"], last)


def sent_paced(case, event, der):
    """|der| sent 3 × GW_LOG_PACE_LINES times over one connection to |case|'s plain listener, each answered
    200: |event| was logged at most GW_LOG_PACE_LINES times in each window they can have fallen in, each
    line saying how many it held back. The last answer's body."""
    import http.client
    before = len(case.gw.log_lines())
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", case.gw.plain_port, timeout=harness.CLIENT_TIMEOUT)
    for _ in range(3 * case.PACE_LINES):
        status, _, body = post(conn, der)
        case.assertEqual(status, 200)
    conn.close()
    elapsed = time.monotonic() - start
    lines = [e for e in case.gw.log_lines()[before:] if e.get("event") == event]
    windows = int(elapsed // case.PACE_SECS) + 2
    case.assertLessEqual(len(lines), windows * case.PACE_LINES, (len(lines), elapsed))
    case.assertTrue(lines and all(l.get("suppressed", "").isdigit() for l in lines), lines[:3])
    return body


class ProfileLinesPaced(harness.GatewayTestCase):
    """A gateway of its own: the request lines its refusals hold back would be counted in another test's
    "suppressed". A plain listener, as in RequestLinesPaced."""
    PACE_LINES, PACE_SECS = RequestLinesPaced.PACE_LINES, RequestLinesPaced.PACE_SECS

    @classmethod
    def edit_config(cls, cfg, gw):
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

    def test_profile_refusals_paced(self):
        """A certProfile not served is refused before the protection is checked, and costs its address nothing
        (a fleet behind one address may ask for one): each refusal wrote a profile_refused line beside the paced
        request line, as fast as a peer without credentials sent them, some 2 000 a second from one
        connection. The profile_refused lines are now paced as the request lines are."""
        from test_errors import PROFILE, add_general_info, load, profile_value, resign
        m = add_general_info(load(self.gw.make_request("paced-profile").read_bytes()), PROFILE, profile_value("nope"))
        body = sent_paced(self, "profile_refused", encoder.encode(resign(m, self.gw.dir / "client.key")))
        self.assert_cmp_error(harness.decode_cmp(body), ("error",), "badRequest", 'certProfile "nope" is not served')


class RefusalLinesPaced(harness.GatewayTestCase):
    """A gateway of its own, without a failed-auth budget (so that its refusals do not shut the address out) and
    with a plain listener, as RequestLinesPaced."""
    PACE_LINES, PACE_SECS = RequestLinesPaced.PACE_LINES, RequestLinesPaced.PACE_SECS

    @classmethod
    def edit_config(cls, cfg, gw):
        cfg["limits"] = {"auth_failures_per_address": 0}
        gw.plain_port = harness.free_port(avoid=(gw.port, gw.admin_port))
        cfg["listeners"].append({"address": "127.0.0.1", "port": gw.plain_port, "plain_http": True})

    def test_refusals_before_the_protection_paced(self):
        """A refusal before the message's protection verified wrote a line of its own beside the paced request
        line, each as fast as a peer without credentials sent them: signer_refused (with the subject the client
        chose), pbm_refused, pbm_alg, protection_alg, weak_protection. The failed-auth budget bounded them per
        address, but an attacker has as many budgets as addresses, and the budget may be off (as here). They
        are now paced, each event apart, as the request lines are."""
        from pyasn1.type import univ
        from test_errors import load, set_octets, set_pbm_algs
        d = self.gw.dir
        _, fcert, fkey = harness.make_foreign_pki(d / "foreign")
        unknown_ref = load(self.gw.make_request("paced-ref", auth="pbm").read_bytes())
        set_octets(unknown_ref["header"], "senderKID", b"no-such-device")
        md5_owf = set_pbm_algs(load(self.gw.make_request("paced-owf", auth="pbm").read_bytes()), "1.2.840.113549.2.5")
        pbmac1 = load(self.gw.make_request("paced-alg", auth="pbm").read_bytes())
        pbmac1["header"]["protectionAlg"]["algorithm"] = univ.ObjectIdentifier("1.2.840.113549.1.5.14")  # PBMAC1
        cases = (("signer_refused", self.gw.make_request("paced-foreign", auth=(fcert, fkey)).read_bytes()),
                 ("pbm_refused", encoder.encode(unknown_ref)), ("pbm_alg", encoder.encode(md5_owf)),
                 ("protection_alg", encoder.encode(pbmac1)),
                 ("weak_protection", self.gw.make_request("paced-sha1", extra=("-digest", "sha1")).read_bytes()))
        for event, der in cases:
            with self.subTest(event=event):
                self.assertEqual(harness.decode_cmp(sent_paced(self, event, der)).body_type, "error")


class DroppedPeerLinesPaced(harness.GatewayTestCase):
    """A gateway of its own, whose pace of tls_peer_dropped no other test spends."""
    PACE_LINES, PACE_SECS = RequestLinesPaced.PACE_LINES, RequestLinesPaced.PACE_SECS

    def connect(self, ctx, session=None):
        """A request on a new TLS connection offering |session|: (its session, whether it resumed)."""
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=harness.CLIENT_TIMEOUT) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1", session=session) as t:
                t.sendall(b"GET /no/such/path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                harness.read_to_eof(t)
                return t.session, t.session_reused

    def test_resumptions_past_the_certificate_expiry_paced(self):
        """A session from the cache whose client certificate has since expired resumes, keeping no certificate,
        and writes tls_peer_dropped: one line for each such resumption, with no signature made and nothing
        counted against the address, as fast as a client holding sessions made while its certificate was valid
        connects. The lines are now paced as the request lines of a peer without credentials are."""
        from test_tls import short_lived_client
        n = 3 * self.PACE_LINES
        valid = 8 * harness.SLOW  # for n + 1 full handshakes, under a sanitizer too
        start = time.monotonic()
        cert, key = short_lived_client(self.gw.dir, valid)
        ctx = ssl.create_default_context(cafile=str(self.gw.dir / "ca.pem"))
        ctx.load_cert_chain(str(cert), str(key))
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
        sessions = [self.connect(ctx)[0] for _ in range(n + 1)]  # each a full handshake, cached
        self.assertLess(time.monotonic() - start, valid - 1, "not all made while the certificate was valid")
        time.sleep(max(0, start + valid + 1 - time.monotonic()))
        before = len(self.gw.log_lines())
        start = time.monotonic()
        self.assertTrue(all(self.connect(ctx, s)[1] for s in sessions[:n]))
        elapsed = time.monotonic() - start
        lines = [e for e in self.gw.log_lines()[before:] if e.get("event") == "tls_peer_dropped"]
        windows = int(elapsed // self.PACE_SECS) + 2
        self.assertLessEqual(len(lines), windows * self.PACE_LINES, (len(lines), elapsed))
        self.assertTrue(lines and all(l.get("suppressed", "").isdigit() for l in lines), lines[:3])
        self.assertTrue(all(l["tls_subject"] == "/O=cmpgw demo/CN=short-lived" for l in lines), lines[:3])
        self.assertTrue(all(l.get("peer", "").startswith("127.0.0.1:") for l in lines), lines[:3])  # who
        # once the window has passed, the next line says how many were held back: none is lost
        time.sleep(self.PACE_SECS + 0.5)
        self.assertTrue(self.connect(ctx, sessions[n])[1])
        lines = [e for e in self.gw.log_lines()[before:] if e.get("event") == "tls_peer_dropped"]
        self.assertEqual(len(lines) + sum(int(l["suppressed"]) for l in lines), n + 1)
        self.assertGreater(int(lines[-1]["suppressed"]), 0, lines[-1])


class ExpiredCrlFetches(harness.GatewayTestCase):
    """A gateway in front of the Vault-API test server, whose CRL comes out two hours past its nextUpdate."""
    vault = None

    @classmethod
    def edit_config(cls, cfg, gw):
        import vaultenv
        cls.vault = vaultenv.running(cls, gw.dir)
        cfg["upstreams"]["vault"] = cls.vault.upstream()
        cfg["roles"]["default"].update(upstream="vault", upstream_role="devices", allowed_san_types=["dns", "ip"])

    def csr(self, name):
        d = self.gw.dir
        harness.run(["openssl", "req", "-new", "-key", self.newkey(name), "-subj", "/CN=%s.example.com" % name,
                     "-out", d / ("%s.csr" % name)])
        return d / ("%s.csr" % name)

    def test_one_fetch_of_an_expired_crl_for_many_requests(self):
        """The status of a certificate Vault issued comes from Vault's CRL. One past its nextUpdate was fetched
        again, whole, for every request that certificate signed, a replay refused right after too, while the CA
        went on serving the same one: 30 sends of one message made 30 CRL fetches (and 30 cert/<serial>
        lookups, past the grace). Now a newer CRL is looked for at most every GW_STATUS_RETRY_SECS."""
        import http.client
        d = self.gw.dir
        res = self.gw.cmp("p10cr", "crl-holder", extra=("-csr", self.csr("crl-holder"), "-implicit_confirm"))
        chain = d / "crl-holder.chain.pem"
        chain.write_text(res.first.extra_certs_pem())
        self.vault.control({"crl_stale": True})
        der = self.gw.make_request("crl-replayed", cmd="p10cr", auth=(res.cert, d / "crl-holder.key"),
                                   subject="/CN=crl-replayed.example.com",
                                   extra=("-csr", self.csr("crl-replayed"), "-implicit_confirm", "-untrusted",
                                          chain)).read_bytes()
        mark = self.vault.mark()
        start = time.monotonic()
        conn = http.client.HTTPSConnection("127.0.0.1", self.gw.port, timeout=harness.CLIENT_TIMEOUT,
                                           context=self.gw.tls_context())
        answers = []
        for _ in range(20):
            status, _, body = post(conn, der)
            self.assertEqual(status, 200)
            answers.append(harness.decode_cmp(body))
        conn.close()
        elapsed = time.monotonic() - start
        self.assertEqual((answers[0].body_type, answers[0].status), ("cp", 0), answers[0].status_strings)  # cert/<serial>
        self.assert_cmp_error(answers[-1], ("cp",), "transactionIdInUse", "replayed message")
        fetches = self.vault.since(mark, "/crl")
        self.assertLessEqual(len(fetches), int(elapsed // 5) + 2, (len(fetches), elapsed))  # GW_STATUS_RETRY_SECS


if __name__ == "__main__":
    harness.main()
