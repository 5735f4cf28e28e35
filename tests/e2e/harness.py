"""End-to-end harness: a real cmpgw process, a demo PKI, and real clients (openssl cmp, curl, BouncyCastle).

Each test module subclasses GatewayTestCase; the class starts one gateway on a free loopback port
(setUpClass) and stops it with SIGTERM (tearDownClass), asserting exit status 0 and, under
CMPGW_SANITIZE=ON, a stderr free of sanitizer reports; under CMPGW_SANITIZE=thread (ThreadSanitizer,
make build-tsan), no report file tsan.<pid> in the gateway's directory. Every helper raises Failure
carrying the client's stderr when a client does not do what the helper was asked for.

Environment (set by ctest): CMPGW_BIN, CMPGW_BUILD_DIR, CMPGW_SANITIZE, CMPGW_LOAD_BIN.
Set CMPGW_E2E_KEEP=1 to keep the temporary directories for inspection.
"""
import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_modules import rfc4210

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("CMPGW_BUILD_DIR", REPO / "build")).resolve()
GATEWAY_BIN = Path(os.environ.get("CMPGW_BIN", BUILD_DIR / "cmpgw")).resolve()
LOAD_BIN = os.environ.get("CMPGW_LOAD_BIN")  # cmpload, for tests that put a gateway under load
SANITIZE = os.environ.get("CMPGW_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES", "THREAD")
TSAN = os.environ.get("CMPGW_SANITIZE", "OFF").upper() == "THREAD"
# "redis": every GatewayTestCase runs with "cmp.state" in a redis-server of its own (tests/CMakeLists.txt)
STATE = os.environ.get("CMPGW_E2E_STATE", "memory")
LSAN_SUPP = REPO / "tests" / "lsan.supp"
TSAN_SUPP = REPO / "tests" / "tsan.supp"
BC_SOURCE = Path(__file__).resolve().parent / "bc" / "BcCmpClient.java"
BC_JARS = ":".join("/usr/share/java/%s.jar" % j for j in ("bcprov", "bcpkix", "bcutil"))
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer", "runtime error")
if TSAN:  # the helpers of that build (cmpload, cmpclient) report to their stderr, with the same suppressions
    os.environ.setdefault("TSAN_OPTIONS", "suppressions=%s" % TSAN_SUPP)

# Sanitizer builds are several times slower to start and to answer.
SLOW = 4 if SANITIZE else 1
START_TIMEOUT = 15 * SLOW
CLIENT_TIMEOUT = 30 * SLOW
STOP_TIMEOUT = 30


class Failure(AssertionError):
    """A client or the gateway did not do what a helper expected."""


def refused_start(edit_config):
    """A gateway over a fresh demo PKI, its configuration changed by |edit_config|, started expecting it to
    stop before it serves: (exit code, stderr). The PKI is removed afterwards (kept with CMPGW_E2E_KEEP)."""
    tmp = Path(tempfile.mkdtemp(prefix="cmpgw-e2e-"))
    try:
        return Gateway(tmp / "pki", edit_config).start_refused()
    finally:
        if not os.environ.get("CMPGW_E2E_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)


def settled(read, done, timeout=20.0):
    """read() again until done(its value) or |timeout| s passed, and the last value for the caller to
    assert on: the gateway revokes a withdrawn certificate on a thread of its own, after it answered."""
    value = read()
    deadline = time.monotonic() + timeout
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def wait_listener_closed(gw):
    """Waits (at most STOP_TIMEOUT) until |gw|'s CMP listener refuses connections: it has begun to drain,
    every request from now on answered "shutting down". A connection that reached the backlog as the
    listener closed is reset instead: that listener is closed too."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return
        if time.monotonic() > deadline:
            raise AssertionError("the CMP listener still accepts connections after SIGTERM")
        time.sleep(0.05)


def tcp_address(addr):
    """(host, port) as /proc/net/tcp writes it: hex, the IPv4 address in host order."""
    return "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(addr[0]))[0], addr[1])


def socket_inodes(pid):
    """The inodes of the sockets process |pid| holds open, as its /proc/PID/fd links name them."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            out.add(link[len("socket:["):-1])
    return out


def tcp_sockets(pid=None):
    """The IPv4 TCP sockets the kernel holds, as /proc/net/tcp shows them, or only those of process |pid|:
    dicts of local and remote (tcp_address), listening (bool), the bytes in its send and receive queues
    (for a listening socket, "rx" is the connections waiting in its accept queue) and its inode. A socket
    reset by its peer leaves /proc/net/tcp at once, whoever still holds it open (socket_inodes)."""
    mine = None if pid is None else socket_inodes(pid)
    with open("/proc/%s/net/tcp" % (pid or "self")) as f:
        lines = f.read().splitlines()[1:]
    out = []
    for f in (l.split() for l in lines):
        if mine is None or f[9] in mine:
            tx, rx = (int(q, 16) for q in f[4].split(":"))
            out.append({"local": f[1], "remote": f[2], "listening": f[3] == "0A", "tx": tx, "rx": rx,
                        "inode": f[9]})
    return out


def accepted(gw, socks):
    """Whether |gw|'s process holds the other end of each of |socks|: accepted, none left in the listen
    queue, where the listener's close would reset it rather than the gateway close it."""
    peers = {s["remote"] for s in tcp_sockets(gw.proc.pid)}
    return all(tcp_address(s.getsockname()) in peers for s in socks)


def listen_queue(gw, port):
    """The connections to |port| that |gw|'s listeners have not accepted yet."""
    return sum(s["rx"] for s in tcp_sockets(gw.proc.pid)
               if s["listening"] and s["local"].endswith(":%04X" % port))


def connections(gw, port):
    """The connections to |gw|'s |port| that its process holds and the kernel still lists, with none reset by
    its client (gateway_ends follows those)."""
    return len([s for s in tcp_sockets(gw.proc.pid)
                if not s["listening"] and s["local"].endswith(":%04X" % port)])


def gateway_ends(gw, socks):
    """The inodes of |gw|'s sockets at the other end of |socks|, one for each it has accepted. Each stays
    among the gateway's open sockets (socket_inodes) until the gateway closes it, as libh2o calls the
    gateway's close callback, which gives back the connection's count; reset by a client that closed
    with data unread (TLS 1.3 session tickets), it is gone from /proc/net/tcp before that."""
    mine = {tcp_address(s.getsockname()) for s in socks}
    return {s["inode"] for s in tcp_sockets(gw.proc.pid) if s["remote"] in mine}


def read_whole(gw, sock):
    """Whether |gw| has read all that |sock| sent so far: the gateway holds its other end, every byte of it
    acknowledged (none in |sock|'s send queue) and none left in the gateway's receive queue."""
    here, there = tcp_address(sock.getsockname()), tcp_address(sock.getpeername())
    sent = [s for s in tcp_sockets() if s["local"] == here and s["remote"] == there]
    held = [s for s in tcp_sockets(gw.proc.pid) if s["remote"] == here]
    return len(sent) == 1 and sent[0]["tx"] == 0 and len(held) == 1 and held[0]["rx"] == 0


def whole_lines(path, contains=None, strict=False):
    """The lines of |path| that end in a newline (those with |contains| in them, if given), as bytes; [] before
    it exists. A writer appending meanwhile may have put out only the start of its last line (a reader can see
    a write(2) half done when it crosses a page): that line is left for the next read. With |strict|, for a
    file no writer appends to any more (one rotated away, or the log of a gateway that has exited), such a line
    is a record its writer tore for good, and raises Failure."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    end = data.rfind(b"\n") + 1
    if strict and end < len(data):
        raise Failure("%s ends in a line without its newline, torn by its writer: %r" % (path, data[end:][:200]))
    lines = data[:end].splitlines()
    return lines if contains is None else [l for l in lines if contains in l]


def json_lines(path, contains=None, strict=False):
    """The JSON objects of whole_lines(|path|, |contains|, |strict|), blank lines skipped: each must parse."""
    return [json.loads(l) for l in whole_lines(path, contains, strict) if l.strip()]


def appending(gw):
    """Whether |gw|'s process runs, and may be appending to its audit log: else a torn last line is for good."""
    return gw.proc is not None and gw.proc.poll() is None


def audit_records(gw, event, cn=None):
    """|gw|'s audit records of |event| (and the common name |cn|), oldest first; [] before the log exists. Strict
    (whole_lines) once the gateway has exited (stop, wait_exit, a kill): lenient only while it may append."""
    return [r for r in json_lines(gw.dir / "audit.log", strict=not appending(gw))
            if r.get("event") == event and (cn is None or r.get("common_name") == cn)]


AUDIT_FULL_AT = 64 << 20  # a file size limit far above the gateway's other files (its stderr)


def audit_log_full(gw):
    """Every later write to |gw|'s audit log fails (EFBIG), as on a full disk: the log is moved to
    audit.log.kept, its reopened successor starts (sparse) past a file size limit that the running
    gateway is then held to. audit_log_room lifts the limit."""
    d = gw.dir
    os.rename(d / "audit.log", d / "audit.log.kept")
    # 0600 whatever the umask: a log its group or others may write is refused
    with os.fdopen(os.open(d / "audit.log", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.truncate(2 * AUDIT_FULL_AT)
    def reopens():
        return len([l for l in gw.log_lines() if l.get("event") == "audit_reopened"])

    before = reopens()
    gw.proc.send_signal(signal.SIGUSR1)
    if settled(reopens, lambda n: n > before, 10) == before:  # however busy the machine
        raise Failure("the audit log was not reopened: %s" % gw.stderr()[-2000:])
    gw.fsize_was = resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, (AUDIT_FULL_AT, gw.fsize_was[1]))


def audit_log_room(gw):
    """Undoes audit_log_full's limit (the log stays as it is)."""
    resource.prlimit(gw.proc.pid, resource.RLIMIT_FSIZE, gw.fsize_was)


def admin(gw, path, method="GET", token=None):
    """(status, body text) of one request to |gw|'s admin listener (a POST has an empty body). A POST
    carries the bearer token of the demo's admin.token, or |token| ("" for none)."""
    token_file = gw.dir / "admin.token"
    if token is None and method == "POST" and token_file.exists():
        token = token_file.read_text()
    headers = {"Authorization": "Bearer " + token} if token else {}
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (gw.admin_port, path), method=method,
                                 data=b"" if method == "POST" else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as rsp:
            return rsp.status, rsp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(gw, name, default=None, **labels):
    """The value of |gw|'s metric |name| with |labels| on its admin listener's /metrics, or |default|."""
    from prometheus_client.parser import text_string_to_metric_families
    _, text = admin(gw, "/metrics")
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return default


def read_to_eof(sock):
    """All that |sock| sends until its peer closes."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def stuck_pipeliner(gw, request=b"GET /pki/cmp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", quiet=1):
    """A TLS connection to |gw| with a 4 KiB receive buffer that pipelines |request| until the gateway waits
    to write (its answers fill the socket buffers, and nothing reads them): (the socket, the client's
    address as the gateway logs it, the count of requests sent). A batch at a time, each read whole before
    the next goes, so that the gateway holds at most a batch unread: sent on while it reads, a client's
    requests pile up in the socket buffers meanwhile (the kernel grows the gateway's receive buffer to
    megabytes), which libh2o reads at once as soon as an answer is taken, past the input a connection may
    hold. Waiting, not busy: a batch left unread while the answers queued for this client have not grown
    for |quiet| seconds (libh2o reads the next batch only once it has answered the last, which a loaded
    machine may take as long)."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window it offers
    raw.settimeout(5)
    raw.connect(("127.0.0.1", gw.port))
    sock = gw.tls_context().wrap_socket(raw, server_hostname="127.0.0.1")
    here, batch, sent = tcp_address(sock.getsockname()), 256, 0
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while time.monotonic() < deadline:
        sock.sendall(request * batch)
        sent += batch
        queued, since = None, time.monotonic()
        while not read_whole(gw, sock) and time.monotonic() < deadline:
            now = [s["tx"] for s in tcp_sockets(gw.proc.pid) if s["remote"] == here]
            if now != queued:
                queued, since = now, time.monotonic()
            elif queued and queued[0] > 0 and time.monotonic() - since >= quiet:
                sock.settimeout(quiet)
                return sock, "127.0.0.1:%d" % sock.getsockname()[1], sent
            time.sleep(0.005)
    sock.close()
    raise Failure("the gateway took pipelined requests for %d s without waiting to write" % CLIENT_TIMEOUT)


class SlowRelay:
    """A TCP relay on loopback to |port|: once slow(seconds) is called, the next chunk a client sends on each
    connection waits that long before it goes on, as to a slow CA (once: a TLS handshake and a request sent
    in pieces take it once too). Bytes pass untouched (TLS ends at the CA)."""

    def __init__(self, port):
        self.target, self.delay, self.armed = port, 0, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    def relay(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return
        threading.Thread(target=self.pump, args=(upstream, client, False), daemon=True).start()
        self.pump(client, upstream, True)

    def slow(self, seconds):
        self.delay, self.armed = seconds, self.armed + 1

    def pump(self, src, dst, slow):
        waited = 0  # the slow() whose delay this connection took
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if slow and self.delay and waited != self.armed:
                    waited = self.armed
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        src.close()  # each socket is the source of one pump

    def stop(self):
        self.sock.close()


def all_stopped(pid):
    """Whether every thread of process |pid| is stopped (state T in /proc/PID/task/*/stat): a SIGSTOP is
    taken by each thread in turn."""
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
        states = [Path("/proc/%d/task/%s/stat" % (pid, t)).read_text().rsplit(")", 1)[1].split()[0]
                  for t in tasks]
    except OSError:  # gone, or a thread ended meanwhile
        return False
    return all(s in ("T", "t") for s in states)


@contextlib.contextmanager
def stopped(proc):
    """|proc| (a real upstream's subprocess.Popen) stopped with SIGSTOP for the block: a CA that hangs. The
    kernel still completes the connections made to it and takes the bytes sent on them (waiting() counts
    those), and nothing reads or answers them. SIGCONT after the block, however it ends."""
    proc.send_signal(signal.SIGSTOP)
    try:
        if not settled(lambda: all_stopped(proc.pid), bool, timeout=10):
            raise Failure("process %d did not stop on SIGSTOP" % proc.pid)
        yield proc
    finally:
        proc.send_signal(signal.SIGCONT)


def waiting(port):
    """The bytes sent to loopback |port| that nothing has read: those of the connections to it, accepted or
    still in its listener's queue, as /proc/net/tcp shows them (its process stopped, say)."""
    here = tcp_address(("127.0.0.1", port))
    return sum(s["rx"] for s in tcp_sockets() if not s["listening"] and s["local"] == here)


# The ports this test process drew, each held by a lock on a file of its own until the process ends; the
# file goes with the lock (release_port), so that the files of finished runs do not pile up.
PORT_LOCKS = {}
PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "cmpgw-e2e-ports"
PORT_LOCK_OWNER = os.getpid()  # a forked child leaves its parent's claims alone (release_ports)


def claim_port(port):
    """Whether |port| is now this process's to bind: no other test process of a parallel run drew it. Two
    processes that drew the same free port before either bound it would otherwise both start on it. The lock
    counts only if the file still has its name once locked: a holder letting go removes the file before it
    unlocks, and a lock on the removed file, which the next claimer creates anew, claims nothing."""
    if port in PORT_LOCKS:
        return False
    PORT_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    path = PORT_LOCK_DIR / str(port)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked, named = os.fstat(fd), os.stat(path)
    except OSError:  # held by another process, or its file removed since it was opened here
        os.close(fd)
        return False
    if (locked.st_dev, locked.st_ino) != (named.st_dev, named.st_ino):  # removed, and created again since
        os.close(fd)
        return False
    PORT_LOCKS[port] = fd
    return True


def release_port(port):
    """Lets go of a port claim_port gave this process, its file first, then the lock: whoever opened the
    file meanwhile and locks it after finds it has no name (claim_port)."""
    fd = PORT_LOCKS.pop(port)
    try:
        os.unlink(PORT_LOCK_DIR / str(port))
    finally:
        os.close(fd)


@atexit.register
def release_ports():
    """The ports this process still holds, let go as it ends (a process killed leaves its files behind: the
    next process to draw such a port claims the file and removes it when it ends)."""
    if os.getpid() == PORT_LOCK_OWNER:
        for port in list(PORT_LOCKS):
            release_port(port)


def free_port(avoid=()):
    """A TCP port on 127.0.0.1 that was free a moment ago, drawn from below the kernel's ephemeral range:
    no outgoing connection of any process takes it as its local port, so a gateway killed and started
    again on its port (while the other tests of a parallel run connect) finds it free. Never one of
    |avoid|: a port drawn for the same gateway and not bound yet is free too; nor one another test process
    drew (claim_port)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        first_ephemeral = int(f.read().split()[0])
    for _ in range(1000):
        port = random.randrange(10000, first_ephemeral)
        if port in avoid or not claim_port(port):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use, though no test process claims it: claimed for nothing
                release_port(port)
                continue
            return port
    raise Failure("no free port below %d" % first_ephemeral)


def run(argv, *, cwd=None, timeout=CLIENT_TIMEOUT, check=True, env=None, input=None):
    """Runs a command; with check, raises Failure with its stderr unless it exits 0."""
    p = subprocess.run([str(a) for a in argv], cwd=cwd, timeout=timeout, env=env, input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise Failure("%s exited %d\nstdout: %s\nstderr: %s" % (
            " ".join(str(a) for a in argv), p.returncode, p.stdout.decode(errors="replace")[-2000:],
            p.stderr.decode(errors="replace")[-4000:]))
    return p


# ---------------------------------------------------------------------------------------------
# PKI material
# ---------------------------------------------------------------------------------------------

def genkey(path):
    """A fresh EC P-256 key at |path| (what the demo's printed commands do)."""
    run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
    return Path(path)


def tls_bundle(d, cert):
    """A certificate the demo's issuer issued and that CA in one file, to use as a TLS client
    certificate (`openssl cmp -tls_cert` and curl send what the file holds)."""
    out = d / (cert.name + ".tls.pem")
    out.write_text(cert.read_text() + (d / "issuing.pem").read_text())
    return out


def keep_store(cfg, gw):
    """Gives the demo's local issuer a store (needed to revoke and to list what it issued)."""
    (gw.dir / "store").mkdir(exist_ok=True)
    cfg["upstreams"]["local"]["store"] = "store"


def make_root_update(d):
    """A root CA key update for the demo PKI in |d| (tests/root-update-pki.sh): newroot.pem (newWithNew),
    newwithold.pem, oldwithnew.pem, newroot.key."""
    run(["bash", REPO / "tests" / "root-update-pki.sh", d])


def make_foreign_pki(d):
    """A CA the gateway does not trust and a client certificate it issued: (ca.pem, client.pem, client.key)."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    genkey(d / "fca.key")
    run(["openssl", "req", "-x509", "-new", "-key", d / "fca.key", "-subj", "/O=elsewhere/CN=foreign root CA",
         "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", d / "fca.pem"])
    genkey(d / "fclient.key")
    run(["openssl", "req", "-new", "-key", d / "fclient.key", "-subj", "/O=elsewhere/CN=foreign-client",
         "-out", d / "fclient.csr"])
    (d / "fclient.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                   "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
                                   "authorityKeyIdentifier=keyid\n")
    run(["openssl", "x509", "-req", "-in", d / "fclient.csr", "-CA", d / "fca.pem", "-CAkey", d / "fca.key",
         "-days", "30", "-extfile", d / "fclient.ext", "-set_serial", "0x1001", "-out", d / "fclient.pem"])
    return d / "fca.pem", d / "fclient.pem", d / "fclient.key"


def cert_info(cert):
    """(subject line, [SAN entries]) of a PEM certificate, as the openssl CLI prints them."""
    p = run(["openssl", "x509", "-in", cert, "-noout", "-subject", "-ext", "subjectAltName",
             "-nameopt", "RFC2253"])
    lines = p.stdout.decode().splitlines()
    subject = lines[0].split("=", 1)[1].strip()
    sans = []
    for line in lines[1:]:
        if "Subject Alternative Name" in line:
            continue
        sans += [s.strip() for s in line.split(",") if s.strip()]
    return subject, sans


def serial_hex(cert):
    """The serial of a PEM certificate as the gateway writes it: lower-case hex in whole octets."""
    out = run(["openssl", "x509", "-in", cert, "-noout", "-serial"]).stdout.decode()
    return out.strip().split("=", 1)[1].lower()


def pubkey_pem_of_cert(cert):
    return run(["openssl", "x509", "-in", cert, "-noout", "-pubkey"]).stdout.decode().strip()


def pubkey_pem_of_key(key):
    return run(["openssl", "pkey", "-in", key, "-pubout"]).stdout.decode().strip()


def verify_chain(cert, ca, untrusted=None):
    """openssl verify |cert| against |ca|, with |untrusted| intermediates; raises Failure."""
    argv = ["openssl", "verify", "-CAfile", ca]
    if untrusted:
        argv += ["-untrusted", untrusted]
    p = run(argv + [cert])
    if b": OK" not in p.stdout:
        raise Failure("openssl verify: %s %s" % (p.stdout, p.stderr))


def der_to_pem(der, label="CERTIFICATE"):
    import base64
    b = base64.b64encode(der).decode()
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (
        label, "\n".join(b[i:i + 64] for i in range(0, len(b), 64)), label)


# ---------------------------------------------------------------------------------------------
# CMP messages (decoded independently of OpenSSL, with pyasn1-modules' RFC 4210 module)
# ---------------------------------------------------------------------------------------------

def der_tlv(tag, body):
    """One DER TLV: |tag| byte, definite length, |body|."""
    n, size = len(body), (len(body).bit_length() + 7) // 8
    length = bytes([n]) if n < 0x80 else bytes([0x80 | size]) + n.to_bytes(size, "big")
    return bytes([tag]) + length + body


def crl_status_list(d, name, sources, this_update=None):
    """A file |name|.value.der in |d| holding a crlStatusList value (RFC 9483 §4.3.4): one CRLStatus per PEM
    certificate of |sources| (file names in |d|), naming its subject as the CRLSource's issuer ([1] EXPLICIT
    GeneralNames, RFC 9810 §5.3.19.16), with thisUpdate |this_update| (GeneralizedTime text), or none."""
    from cryptography import x509
    entries = b""
    for pem in sources:
        issuer = x509.load_pem_x509_certificate((d / pem).read_bytes()).subject.public_bytes()
        source = der_tlv(0xa1, der_tlv(0x30, der_tlv(0xa4, issuer)))
        entries += der_tlv(0x30, source + (der_tlv(0x18, this_update.encode()) if this_update else b""))
    f = d / ("%s.value.der" % name)
    f.write_bytes(der_tlv(0x30, entries))
    return f


def tlv(buf, off=0):
    """(tag byte, content start, content end) of the DER TLV at |off|."""
    tag, n = buf[off], buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(buf[off:off + k], "big")
        off += k
    if off + n > len(buf):
        raise Failure("truncated DER")
    return tag, off, off + n


def status_info(si):
    """(PKIStatus, [failInfo names], [statusString]) of a decoded PKIStatusInfo."""
    fails = []
    if si["failInfo"].isValue:
        names = list(rfc4210.PKIFailureInfo.namedValues)
        fails = [names[i] for i in range(min(len(si["failInfo"]), len(names))) if si["failInfo"][i]]
    texts = [str(t) for t in si["statusString"]] if si["statusString"].isValue else []
    return int(si["status"]), fails, texts


def rp_status(der):
    """(PKIStatus, [failInfo names], [statusString]) of an rp. pyasn1's RFC 4210 module cannot decode
    rp's revCerts, so the walk to the first PKIStatusInfo is by hand."""
    _, start, _ = tlv(der)                      # PKIMessage
    _, _, hdr_end = tlv(der, start)             # header
    tag, body, _ = tlv(der, hdr_end)            # [12] rp
    if tag != 0xac:
        raise Failure("expected rp ([12]), got tag 0x%02x" % tag)
    _, rep, _ = tlv(der, body)                  # RevRepContent
    _, status, _ = tlv(der, rep)                # status SEQUENCE OF PKIStatusInfo
    _, _, si_end = tlv(der, status)
    si, _ = der_decoder.decode(der[status:si_end], asn1Spec=rfc4210.PKIStatusInfo())
    return status_info(si)


class CmpAnswer:
    """A decoded PKIMessage: body type, and for ip/cp/kup/error its PKIStatusInfo."""

    def __init__(self, der):
        self.der = der
        self.status = None
        self.fail_info = []
        self.status_strings = []
        _, start, _ = tlv(der)
        _, _, hdr_end = tlv(der, start)
        if der[hdr_end] == 0xac:  # rp: see rp_status
            self.msg = None
            self.body_type = "rp"
            self.header, _ = der_decoder.decode(der[start:hdr_end], asn1Spec=rfc4210.PKIHeader())
            self.status, self.fail_info, self.status_strings = rp_status(der)
            return
        self.msg, rest = der_decoder.decode(der, asn1Spec=rfc4210.PKIMessage())
        if rest:
            raise Failure("%d trailing bytes after the PKIMessage" % len(rest))
        body = self.msg["body"]
        self.body_type = body.getName()
        self.header = self.msg["header"]
        si = None
        if self.body_type in ("ip", "cp", "kup"):
            si = body[self.body_type]["response"][0]["status"]
        elif self.body_type == "error":
            si = body["error"]["pKIStatusInfo"]
        if si is not None:
            self.status, self.fail_info, self.status_strings = status_info(si)

    def extra_certs_pem(self):
        """The message's extraCerts as one PEM bundle (empty string if none)."""
        ec = self.msg["extraCerts"] if self.msg is not None else None
        if ec is None or not ec.isValue:
            return ""
        return "".join(der_to_pem(der_encoder.encode(c)) for c in ec)

    def implicit_confirm(self):
        gi = self.header["generalInfo"]
        return gi.isValue and any(str(i["infoType"]) == "1.3.6.1.5.5.7.4.13" for i in gi)

    def __repr__(self):
        return "CmpAnswer(%s, status=%s, failInfo=%s, statusString=%s)" % (
            self.body_type, self.status, self.fail_info, self.status_strings)


def decode_cmp(path_or_der):
    der = path_or_der if isinstance(path_or_der, bytes) else Path(path_or_der).read_bytes()
    return CmpAnswer(der)


# ---------------------------------------------------------------------------------------------
# The gateway process
# ---------------------------------------------------------------------------------------------

def widen_demo_role(cfg):
    """The demo's role "default" with no bounds on the names it issues, as the suite needs it. The demo
    bounds them, as a deployment should (the subject "/O=cmpgw demo/CN=...", DNS SANs under demo.example,
    no IP or URI SANs); the suite enrols whatever subjects and SANs a test is about (IP and URI SANs, names
    outside demo.example) and tests the bounds on roles of its own. Tests of the demo itself keep its
    configuration (Gateway(..., widen=False)). Its local issuer keeps no store either, as the suite's tests
    are written for (keep_store gives it one)."""
    del cfg["upstreams"]["local"]["store"]
    role = cfg["roles"]["default"]
    role["allowed_san_types"] = ["dns", "ip", "uri"]
    role.pop("authorization")


def sanitizer_env(env, workdir):
    """|env| with what a gateway of a sanitizer build runs under (of a release build, as it is): the
    suppressions of what libh2o keeps to the process's end, and, under TSan, a report file per process in
    |workdir|."""
    if TSAN:
        # Every report, each in a file of its own process (a gateway, its `cmpgw check`): the gateway's
        # stderr is its log, and a report cut into it by a test that reads the log would be lost.
        env["TSAN_OPTIONS"] = "halt_on_error=0:second_deadlock_stack=1:suppressions=%s:log_path=%s" % (
            TSAN_SUPP, Path(workdir) / "tsan")
    elif SANITIZE:
        env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
        if LSAN_SUPP.exists():
            env["LSAN_OPTIONS"] = "suppressions=%s" % LSAN_SUPP
    return env


class Gateway:
    """One cmpgw process over a demo PKI in |workdir|; its role "default" widened (widen_demo_role)
    unless |widen| is False."""

    def __init__(self, workdir, edit_config=None, widen=True):
        self.dir = Path(workdir)
        self.port = free_port()
        self.admin_port = free_port(avoid=(self.port,))
        env = dict(os.environ, CMPGW_PORT=str(self.port), CMPGW_ADMIN_PORT=str(self.admin_port))
        run(["bash", REPO / "deploy" / "demo-pki.sh", self.dir], env=env)
        self.config_path = self.dir / "cmpgw.json"
        self.config = json.loads(self.config_path.read_text())
        if widen:
            widen_demo_role(self.config)
        if edit_config:
            edit_config(self.config, self)
        if widen or edit_config:
            self.config_path.write_text(json.dumps(self.config, indent=2))
        self.pbm_secret = (self.dir / "pbm.secret").read_text().strip()
        self.proc = None
        self.stderr_path = self.dir / "gateway.stderr"
        self.stdout_path = self.dir / "gateway.stdout"

    def twin(self, workdir):
        """Another gateway over the same PKI and configuration (a second instance of a cluster): its
        own ports, audit log and stores, in |workdir|. Not started."""
        g = Gateway.__new__(Gateway)
        shutil.copytree(self.dir, workdir, ignore=shutil.ignore_patterns("audit.log", "gateway.std*"))
        g.dir = Path(workdir)
        g.port = free_port()
        g.admin_port = free_port(avoid=(g.port,))
        g.config = json.loads(json.dumps(self.config))
        g.config["listeners"][0]["port"] = g.port
        if "admin" in g.config:
            g.config["admin"]["port"] = g.admin_port
        g.config_path = g.dir / "cmpgw.json"
        g.config_path.write_text(json.dumps(g.config, indent=2))
        g.pbm_secret = self.pbm_secret
        g.proc = None
        g.stderr_path = g.dir / "gateway.stderr"
        g.stdout_path = g.dir / "gateway.stdout"
        return g

    def env(self):
        return sanitizer_env(dict(os.environ), self.dir)

    def start(self, extra_env=None):
        """Starts the gateway (again, after stop()); |extra_env| adds variables, e.g. a faked clock."""
        if not GATEWAY_BIN.exists():
            raise Failure("gateway binary %s does not exist (set CMPGW_BIN)" % GATEWAY_BIN)
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        env = self.env()
        env.update(extra_env or {})
        self.proc = subprocess.Popen([str(GATEWAY_BIN), "-c", str(self.config_path)], cwd=self.dir,
                                     stdout=self._out, stderr=self._err, env=env)
        self.wait_ready()

    def start_refused(self, timeout=30):
        """Starts the gateway expecting it to stop before it serves; returns its exit code and stderr."""
        try:
            self.start()
        except Failure:
            pass
        else:
            self.stop()
            raise Failure("the gateway started, and was expected not to")
        rc = self.proc.wait(timeout)
        self._err.close()  # stop() closes them otherwise, and expects a running gateway
        self._out.close()
        return rc, self.stderr()

    def load_argv(self, subject, threads, duration, extra=()):
        """cmpload (CMPGW_LOAD_BIN) against this gateway with the demo client's credentials."""
        d = self.dir
        argv = [LOAD_BIN, "--url", self.url(), "--cafile", d / "ca.pem", "--tls-cert", d / "client.pem",
                "--tls-key", d / "client.key", "--cert", d / "client.pem", "--key", d / "client.key",
                "--trusted", d / "ca.pem", "--subject", subject, "--threads", str(threads),
                "--duration", str(duration), "--keys", "200"] + list(extra)
        return [str(a) for a in argv]

    def tls_context(self, cert="client.pem", key="client.key"):
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        if cert:
            ctx.load_cert_chain(str(self.dir / cert), str(self.dir / key))
        return ctx

    def handshake(self, source="127.0.0.1", cert="client.pem", key="client.key", server=None):
        """Whether a TLS connection from |source| to |server| (host, port; the first listener by default)
        with the client certificate |cert| (a path, or a file of the work dir) is served: a request line
        on it gets an answer. With TLS 1.3 the client's side of the
        handshake completes before the gateway has verified the client's certificate, and a refusal closes
        the connection without its alert reaching the client: only the gateway's metrics tell a failed
        handshake (cmpgw_tls_handshakes_total) from a connection closed before any TLS."""
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.pem"))
        ctx.load_cert_chain(str(self.dir / cert), str(self.dir / key))
        raw = socket.create_connection(server or ("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT,
                                       source_address=(source, 0))
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /pki/cmp HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(1) != b""
        except (ssl.SSLError, ConnectionError, EOFError):
            return False
        finally:
            raw.close()

    def wait_ready(self, port=None):
        """Waits until the listener completes a TLS handshake; raises if the gateway dies first."""
        port = port or self.port
        deadline = time.monotonic() + START_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure("gateway exited %d during start:\n%s" % (self.proc.returncode, self.stderr()))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    with self.tls_context().wrap_socket(s, server_hostname="127.0.0.1"):
                        return
            except (OSError, ssl.SSLError) as e:
                last = e
                time.sleep(0.1)
        raise Failure("gateway did not accept TLS on port %d within %ds (%s):\n%s" % (
            port, START_TIMEOUT, last, self.stderr()))

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        """The JSON objects of the gateway's stderr (non-JSON lines are skipped). Each line is parsed once:
        a call reads what the gateway wrote since the one before, up to its last whole line (a load run
        leaves megabytes, which a test polling its log would parse again at each look). The lines
        parsed are those of the file |_err| (re)started the gateway with: a start opens it anew."""
        if getattr(self, "_parsed_of", None) is not getattr(self, "_err", None):
            self._parsed_of, self._parsed, self._parsed_to = getattr(self, "_err", None), [], 0
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(self._parsed_to)
                tail = f.read()
        except OSError:
            return []
        whole = tail.rfind(b"\n") + 1
        for line in tail[:whole].decode(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                self._parsed.append(obj)
        self._parsed_to += whole
        return list(self._parsed)

    def denials(self, reason):
        """(role, identity, msg) of each not_authorized log line whose reason is |reason| (a docs/errors.md row):
        who was refused, and the statusString it was told."""
        return [(l.get("role"), l.get("identity"), l.get("msg")) for l in self.log_lines()
                if l.get("event") == "not_authorized" and l.get("reason") == reason]

    def signal_stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("gateway did not exit within %ds of SIGTERM:\n%s" % (timeout, self.stderr()[-4000:]))
        finally:
            self._err.close()
            self._out.close()
        return rc

    def stop(self):
        """SIGTERM, then assert exit 0 and a clean sanitizer report."""
        if self.proc is None:
            return
        self.signal_stop()
        rc = self.wait_exit()
        self.proc = None
        self.check_stderr()
        if rc != 0:
            raise Failure("gateway exited %d after SIGTERM:\n%s" % (rc, self.stderr()[-4000:]))

    def check_stderr(self):
        text = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise Failure("gateway stderr contains %r:\n%s" % (mark, text[-8000:]))
        for report in sorted(self.dir.glob("tsan.*")):
            raise Failure("ThreadSanitizer reported (%s):\n%s" % (report, report.read_text(errors="replace")[:8000]))

    # -- clients --------------------------------------------------------------------------------

    def url(self, path="/pki/cmp", port=None):
        return "https://127.0.0.1:%d%s" % (port or self.port, path)

    def cmp(self, cmd, out, *, auth="sig", newkey=None, subject=None, extra=(), path="pki/cmp",
            tls=("client.pem", "client.key"), reqin=None, expect_cert=True, timeout=CLIENT_TIMEOUT, port=None):
        """Runs `openssl cmp -cmd |cmd|`, files under |out| (a name prefix in the work dir).

        auth: "sig" (client.pem), "pbm" (demo-device + pbm.secret), or (cert, key) for another signer,
        or ("pbm", ref, secret) for another PBM credential. Returns a CmpResult with the decoded last
        response; with expect_cert, raises Failure unless a certificate was issued.
        """
        d = self.dir
        rsp = [d / ("%s.rsp%d.der" % (out, i)) for i in range(1, 4)]
        req = [d / ("%s.req%d.der" % (out, i)) for i in range(1, 4)]
        for f in rsp + req:
            if f.exists():
                f.unlink()
        certout = d / ("%s.cert.pem" % out)
        if certout.exists():
            certout.unlink()
        argv = ["openssl", "cmp", "-cmd", cmd, "-server", "127.0.0.1:%d" % (port or self.port), "-path", path,
                "-trusted", d / "ca.pem", "-rspout", ",".join(str(f) for f in rsp),
                "-reqout", ",".join(str(f) for f in req), "-msg_timeout", str(CLIENT_TIMEOUT),
                "-total_timeout", str(CLIENT_TIMEOUT)]
        if tls:
            argv += ["-tls_used", "-tls_trusted", d / "ca.pem"]
            if tls[0]:
                argv += ["-tls_cert", d / tls[0], "-tls_key", d / tls[1]]
        if auth == "sig":
            argv += ["-cert", d / "client.pem", "-key", d / "client.key"]
        elif auth == "pbm":
            argv += ["-ref", "demo-device", "-secret", "file:%s" % (d / "pbm.secret")]
        elif auth[0] == "pbm":
            argv += ["-ref", auth[1], "-secret", auth[2]]
        else:
            argv += ["-cert", auth[0], "-key", auth[1]]
        if newkey:
            argv += ["-newkey", newkey]
        if subject:
            argv += ["-subject", subject]
        if cmd in ("ir", "cr", "kur", "p10cr"):
            argv += ["-certout", certout]
        if reqin:
            argv += ["-reqin", reqin]
        argv += list(extra)
        p = run(argv, cwd=d, check=False, timeout=timeout)
        res = CmpResult(p, [f for f in rsp if f.exists()], [f for f in req if f.exists()],
                        certout if certout.exists() else None)
        if expect_cert and (p.returncode != 0 or res.cert is None):
            raise Failure("openssl cmp %s did not issue a certificate (exit %d): %s\nstderr:\n%s" % (
                cmd, p.returncode, res.answers, res.stderr[-4000:]))
        if not res.answers:
            raise Failure("openssl cmp %s received no CMP response (exit %d):\n%s" % (
                cmd, p.returncode, res.stderr[-4000:]))
        return res

    def make_request(self, name, cmd="ir", *, auth="sig", subject="/CN=e2e-captured", extra=("-implicit_confirm",),
                     env=None):
        """A fresh request PKIMessage as `openssl cmp` would send it, captured without sending it to the
        gateway (a one-shot plain-HTTP catcher on loopback answers 503); saved as |name|.der in the
        work dir. auth: "sig", "pbm", (cert, key) or ("pbm", ref, secret) as for cmp(); env: variables
        added to the client's (a libfaketime clock for its messageTime). Returns the path."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(CLIENT_TIMEOUT)
        got = {}

        def catch():
            try:
                conn, _ = srv.accept()
                with conn:
                    conn.settimeout(CLIENT_TIMEOUT)
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        buf += conn.recv(65536)
                    head, body = buf.split(b"\r\n\r\n", 1)
                    n = [int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                         if l.lower().startswith(b"content-length:")][0]
                    while len(body) < n:
                        body += conn.recv(65536)
                    got["der"] = body[:n]
                    conn.sendall(b"HTTP/1.0 503 captured\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError as e:
                got["error"] = e
            finally:
                srv.close()

        t = threading.Thread(target=catch)
        t.start()
        key = genkey(self.dir / ("%s.key" % name))
        d = self.dir
        argv = ["openssl", "cmp", "-cmd", cmd, "-server", "127.0.0.1:%d" % srv.getsockname()[1],
                "-path", "pki/cmp", "-subject", subject, "-certout", d / ("%s.unused.pem" % name),
                "-trusted", d / "ca.pem"]
        if cmd == "p10cr":
            csr = d / ("%s.csr" % name)
            run(["openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr])
            argv += ["-csr", csr]
        else:
            argv += ["-newkey", key]
        if auth == "sig":
            argv += ["-cert", d / "client.pem", "-key", d / "client.key"]
        elif auth == "pbm":
            argv += ["-ref", "demo-device", "-secret", "file:%s" % (d / "pbm.secret")]
        elif auth[0] == "pbm":
            argv += ["-ref", auth[1], "-secret", auth[2]]
        else:  # (cert, key) of another signer
            argv += ["-cert", auth[0], "-key", auth[1]]
        p = run(argv + list(extra), cwd=d, check=False, env=dict(os.environ, **env) if env else None)
        if "der" not in got:  # the client gave up before sending: unblock the catcher
            try:
                socket.create_connection(srv.getsockname(), timeout=1).close()
            except OSError:
                pass
        t.join(CLIENT_TIMEOUT)
        if "der" not in got:
            raise Failure("could not capture a %s request: %s\n%s" % (cmd, got.get("error"), p.stderr.decode()))
        out = d / ("%s.der" % name)
        out.write_bytes(got["der"])
        return out

    def curl(self, *args, path="/pki/cmp", data=None, content_type="application/pkixcmp", method=None,
             http="--http1.1", tls=("client.pem", "client.key"), timeout=CLIENT_TIMEOUT):
        """curl against the gateway; returns a CurlResult (status, headers, body)."""
        d = self.dir
        hdr = d / ("curl-%d.hdr" % time.monotonic_ns())
        body = d / ("curl-%d.body" % time.monotonic_ns())
        argv = ["curl", "-sS", http, "--cacert", d / "ca.pem", "-D", hdr, "-o", body,
                "--max-time", str(timeout)]
        if tls and tls[0]:
            argv += ["--cert", d / tls[0], "--key", d / tls[1]]
        if method:
            argv += ["-X", method]
        if data is not None:
            argv += ["--data-binary", "@%s" % data]
            if content_type is not None:
                argv += ["-H", "Content-Type: %s" % content_type]
        argv += list(args) + [self.url(path)]
        p = run(argv, check=False, timeout=timeout + 5)
        if p.returncode != 0:
            raise Failure("curl exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
        return CurlResult(hdr.read_text(errors="replace"), body.read_bytes())


class CmpResult:
    def __init__(self, proc, rsp_files, req_files, cert):
        self.returncode = proc.returncode
        self.stderr = proc.stderr.decode(errors="replace")
        self.rsp_files = rsp_files
        self.req_files = req_files
        self.cert = cert
        self.answers = [decode_cmp(f) for f in rsp_files]

    @property
    def last(self):
        return self.answers[-1]

    @property
    def first(self):
        return self.answers[0]


class CurlResult:
    def __init__(self, header_text, body):
        # With -D, the last block is the final response (1xx blocks come first).
        blocks = [b for b in header_text.replace("\r\n", "\n").split("\n\n") if b.strip()]
        lines = blocks[-1].split("\n") if blocks else [""]
        self.status_line = lines[0]
        parts = self.status_line.split(" ", 2)
        self.version = parts[0] if parts else ""
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self.body = body

    def __repr__(self):
        return "CurlResult(%s %r %r)" % (self.status_line, self.headers, self.body[:200])


# ---------------------------------------------------------------------------------------------
# BouncyCastle client
# ---------------------------------------------------------------------------------------------

def bc_classes():
    """Compiles BcCmpClient.java once per source hash into CMPGW_BUILD_DIR; returns the class dir."""
    digest = hashlib.sha256(BC_SOURCE.read_bytes()).hexdigest()[:16]
    out = BUILD_DIR / "e2e-bc" / digest
    if (out / "BcCmpClient.class").exists():
        return out
    tmp = Path(tempfile.mkdtemp(prefix="bc-", dir=BUILD_DIR if BUILD_DIR.exists() else None))
    run(["javac", "-nowarn", "-d", tmp, "-cp", BC_JARS, BC_SOURCE], timeout=180)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, out)
    except OSError:  # another test module compiled it concurrently
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def bc_auth(gw, mode):
    """The BouncyCastle client's protection arguments: "sig" (client.pem), "pbm" (demo-device), or
    ("pbm", reference, secret file)."""
    d = gw.dir
    if mode == "sig":
        return ["sig", d / "client.pem", d / "client.key"]
    if mode == "pbm":
        return ["pbm", "demo-device", d / "pbm.secret"]
    return ["pbm", mode[1], mode[2]]


def bc_argv(gw, url, mode, subject, out, rsp, extra):
    d = gw.dir
    return (["java", "-cp", "%s:%s" % (bc_classes(), BC_JARS), "BcCmpClient", url or gw.url(), d / "ca.pem",
             d / "client.pem", d / "client.key"] + bc_auth(gw, mode) + [subject, out, rsp] + list(extra))


def bc_enrol(gw, out, mode="sig", subject="CN=bc-client,O=cmpgw e2e", extra=(), url=None, check=True):
    """Runs the BouncyCastle client; returns (returncode, stderr, cert path or None, CmpAnswer or None)."""
    d = gw.dir
    cert = d / ("%s.cert.pem" % out)
    rsp = d / ("%s.rsp.der" % out)
    for f in (cert, rsp):
        if f.exists():
            f.unlink()
    argv = bc_argv(gw, url, mode, subject, cert, rsp, extra)
    p = run(argv, check=False, timeout=CLIENT_TIMEOUT + 30)
    stderr = p.stderr.decode(errors="replace")
    if check and p.returncode != 0:
        raise Failure("BouncyCastle client exited %d:\n%s" % (p.returncode, stderr))
    return (p.returncode, stderr, cert if cert.exists() else None,
            decode_cmp(rsp) if rsp.exists() else None)


class BcGenm:
    """What the BouncyCastle client got for one genm: exit code, stdout lines, stderr, the answered
    values by position (DER), and the decoded last response (or None)."""

    def __init__(self, returncode, lines, stderr, values, answer):
        self.returncode, self.lines, self.stderr, self.values, self.answer = returncode, lines, stderr, values, answer

    def __repr__(self):
        return "BcGenm(rc=%d, %r, %r, %s)" % (self.returncode, self.lines, self.answer, self.stderr[-500:])


def bc_genm(gw, out, info_type, mode="sig", extra=(), url=None, check=True):
    """The BouncyCastle client sends one genm of |info_type| (caCerts, rootCaCert, ...); a BcGenm."""
    d = gw.dir
    prefix = d / out
    rsp = d / ("%s.rsp.der" % out)
    for f in [rsp] + [Path("%s.%d.der" % (prefix, i)) for i in range(8)]:
        if f.exists():
            f.unlink()
    p = run(bc_argv(gw, url, mode, "-", prefix, rsp, ["--genm", info_type] + list(extra)), check=False,
            timeout=CLIENT_TIMEOUT + 30)
    res = BcGenm(p.returncode, p.stdout.decode(errors="replace").splitlines(), p.stderr.decode(errors="replace"),
                 {i: Path("%s.%d.der" % (prefix, i)).read_bytes() for i in range(8)
                  if Path("%s.%d.der" % (prefix, i)).exists()},
                 decode_cmp(rsp) if rsp.exists() else None)
    if check and p.returncode != 0:
        raise Failure("BouncyCastle genm %s exited %d: %r" % (info_type, p.returncode, res))
    return res


# ---------------------------------------------------------------------------------------------
# Test case base
# ---------------------------------------------------------------------------------------------

class GatewayTestCase(unittest.TestCase):
    """One gateway per test class. Override edit_config(cfg, gw) to change cmpgw.json."""

    maxDiff = None
    gw = None
    peers = ()  # upstream servers edit_config started (anything with stop()), stopped after the gateway

    @classmethod
    def edit_config(cls, cfg, gw):
        pass

    @classmethod
    def keep_running(cls, server):
        """Registers |server| (started by edit_config) to be stopped after the gateway; returns it."""
        cls.peers = tuple(cls.peers) + (server,)
        return server

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cmpgw-e2e-")
        cls.gw = Gateway(Path(cls.tmp) / "pki", cls.with_state if STATE == "redis" else cls.edit_config)
        cls.gw.start()

    @classmethod
    def with_state(cls, cfg, gw):
        """CMPGW_E2E_STATE=redis: the class's own edits, then its state in a redis-server of its own,
        with transaction records, and every local store marked shared (as a cluster needs)."""
        import redisenv  # it imports this module
        cls.edit_config(cfg, gw)
        if "state" in cfg.get("cmp", {}):
            return
        redis = cls.keep_running(redisenv.RedisServer(gw.dir)).start()
        key = gw.dir / "state.key"
        key.write_text(os.urandom(32).hex() + "\n")
        key.chmod(0o600)
        cfg.setdefault("cmp", {})["state"] = dict(redis.state(), mac_key_file=str(key))
        for up in cfg.get("upstreams", {}).values():
            if up.get("type") == "local" and "store" in up:
                up["shared_store"] = True

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.gw is not None:
                cls.gw.stop()
        finally:
            for server in cls.peers:
                server.stop()
            if not os.environ.get("CMPGW_E2E_KEEP"):
                shutil.rmtree(cls.tmp, ignore_errors=True)
            else:
                print("kept", cls.tmp)

    # -- assertions shared by the tests ---------------------------------------------------------

    def assert_issued(self, cert, newkey, subject, sans=(), untrusted_pem=""):
        """The certificate names |subject| and |sans|, certifies |newkey|, and chains to ca.pem."""
        self.assertIsNotNone(cert, "no certificate written")
        got_subject, got_sans = cert_info(cert)
        self.assertEqual(got_subject, subject)
        self.assertEqual(sorted(got_sans), sorted(sans))
        if newkey is not None:
            self.assertEqual(pubkey_pem_of_cert(cert), pubkey_pem_of_key(newkey))
        bundle = None
        if untrusted_pem:
            bundle = Path(str(cert) + ".chain.pem")
            bundle.write_text(untrusted_pem)
        verify_chain(cert, self.gw.dir / "ca.pem", bundle)

    def assert_cmp_error(self, answer, body_types, fail_bit, text_contains=None):
        """|answer| is a rejection of one of |body_types| carrying failInfo |fail_bit|."""
        self.assertIn(answer.body_type, body_types, answer)
        self.assertEqual(answer.status, 2, answer)  # rejection (RFC 9810 §5.2.3)
        self.assertIn(fail_bit, answer.fail_info, answer)
        if text_contains is not None:
            self.assertTrue(any(text_contains in s for s in answer.status_strings), answer)

    def assert_rejected(self, res, fail_bit, *texts):
        """|res| (a CmpResult) got no certificate: its first answer is an ip/cp/error rejection with
        failInfo |fail_bit| and a statusString that contains each of |texts|."""
        ans = res.first
        self.assert_cmp_error(ans, ("ip", "cp", "error"), fail_bit)
        text = " ".join(ans.status_strings)
        for t in texts:
            self.assertIn(t, text, ans)
        self.assertIsNone(res.cert)

    def newkey(self, name):
        return genkey(self.gw.dir / ("%s.key" % name))

    def enrol(self, name, **kw):
        """An ir with implicitConfirm for /CN=|name| and a fresh key: (certificate file, key file)."""
        key = self.newkey(name)
        return self.gw.cmp("ir", name, newkey=key, subject="/CN=%s" % name, extra=("-implicit_confirm",), **kw).cert, key


def main():
    unittest.main(verbosity=2)
