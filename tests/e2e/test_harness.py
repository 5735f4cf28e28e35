"""The harness's port claims (harness.claim_port): a port one test process holds is drawn by no other, its
file goes when its holder lets go or ends, and a lock taken on a file its holder removed meanwhile claims
nothing. No gateway: the claims' own logic, in a lock directory of the test's own, with real processes.
The harness's reading of a gateway's log (Gateway.log_lines): each line parsed once, a line still being
written read once it is whole, a gateway started again read from its new file's start; and of its audit log
(json_lines, audit_records): a record still being written read once it is whole.
Its readings of a gateway's sockets in /proc (accepted, listen_queue, connections, gateway_ends,
read_whole), over sockets of this process standing in for the gateway's. Its stop of an upstream's process
(stopped, waiting), over a real process: what is sent to it waits unread, and it goes on after the block,
one that raised too."""
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time
import types
import unittest
from pathlib import Path
from unittest import mock

sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

HERE = Path(__file__).resolve().parent
REAL_FLOCK = fcntl.flock


class PortClaims(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cmpgw-e2e-harness-")
        self.addCleanup(self.tmp.cleanup)
        self.dir = Path(self.tmp.name) / "cmpgw-e2e-ports"  # where harness puts it under this TMPDIR
        patch = mock.patch.object(harness, "PORT_LOCK_DIR", self.dir)
        patch.start()
        self.addCleanup(patch.stop)
        self.addCleanup(self.release_all)

    @staticmethod
    def release_all():
        for port in list(harness.PORT_LOCKS):
            harness.release_port(port)

    def holder(self, code):
        """Another test process (python, harness imported, TMPDIR the test's) running |code|, then printing
        "ready" and waiting for its stdin to close."""
        p = subprocess.Popen([sys.executable, "-B", "-c", "import sys, harness\n%s\nprint('ready', flush=True)\n"
                              "sys.stdin.read()\n" % code], cwd=HERE, env=dict(os.environ, TMPDIR=self.tmp.name),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.end, p)
        self.assertEqual(p.stdout.readline(), "ready\n", p.stderr.read() if p.poll() is not None else "")
        return p

    @staticmethod
    def end(p):
        """|p| told to end (its stdin closed): its exit status and stderr."""
        if p.returncode is None:
            _, err = p.communicate("", timeout=30)
            p.stderr_text = err
        return p.returncode, p.stderr_text

    def test_port_another_process_holds_not_claimed(self):
        p = self.holder("assert harness.claim_port(10001)")
        self.assertFalse(harness.claim_port(10001))
        self.assertEqual(self.end(p), (0, ""))
        self.assertTrue(harness.claim_port(10001))  # its holder ended

    def test_files_go_when_their_holder_ends(self):
        """Drawn ports' files are there while their process runs, and go when it ends: before, one file
        stayed for each port ever drawn, run after run."""
        p = self.holder("ports = [harness.free_port() for _ in range(3)]")
        self.assertEqual(len(list(self.dir.iterdir())), 3)
        self.assertEqual(self.end(p), (0, ""))
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_file_of_a_killed_holder_claimed_then_removed(self):
        """A holder killed -9 leaves its file, but not its lock: the next claim takes the file over and
        removes it when it lets go."""
        p = self.holder("assert harness.claim_port(10002)")
        p.kill()
        self.assertEqual(self.end(p)[0], -9)
        self.assertEqual([f.name for f in self.dir.iterdir()], ["10002"])
        self.assertTrue(harness.claim_port(10002))
        harness.release_port(10002)
        self.assertEqual(list(self.dir.iterdir()), [])
        self.assertTrue(harness.claim_port(10002))

    def test_lock_on_a_removed_file_claims_nothing(self):
        """The race the file's removal opens: this process opens the port's file, its holder lets go (removes
        the file, then unlocks), and this process's lock succeeds, on a file without its name. Another
        process may by then have created the file anew and claimed the port through it: the lock is no
        claim, whether or not that happened."""
        for created_again in (False, True):
            with self.subTest(created_again=created_again):
                port = 10003 + created_again
                held = self.holder("assert harness.claim_port(%d)" % port)
                others = []

                def holder_lets_go_first(fd, op):
                    self.assertEqual(self.end(held), (0, ""))  # between this process's open and its lock
                    if created_again:
                        others.append(self.holder("assert harness.claim_port(%d)" % port))
                    return REAL_FLOCK(fd, op)

                with mock.patch.object(harness.fcntl, "flock", side_effect=holder_lets_go_first):
                    self.assertFalse(harness.claim_port(port))
                self.assertNotIn(port, harness.PORT_LOCKS)
                for other in others:
                    self.assertEqual(self.end(other), (0, ""))
                self.assertTrue(harness.claim_port(port))  # once no one holds it


class LogLines(unittest.TestCase):
    """Gateway.log_lines over a stderr file this test writes, as a gateway started with it would."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cmpgw-e2e-harness-")
        self.addCleanup(self.tmp.cleanup)
        self.gw = harness.Gateway.__new__(harness.Gateway)
        self.gw.stderr_path = Path(self.tmp.name) / "gateway.stderr"
        self.start()

    def start(self):
        """What Gateway.start does to the file: opened anew (emptied) for the gateway to write to."""
        self.gw._err = open(self.gw.stderr_path, "wb", buffering=0)
        self.addCleanup(self.gw._err.close)

    def write(self, text):
        self.gw._err.write(text.encode())

    def test_each_line_parsed_once(self):
        """A gateway's log after a load run is megabytes: a test that polls it would parse all of it at
        each look (0.4 to 0.8 s a look after test_reload's 20 s load)."""
        self.write('{"event": "a"}\nnot json\n{"event": "b"}\n')
        parse = mock.Mock(side_effect=harness.json.loads)
        with mock.patch.object(harness.json, "loads", parse):
            self.assertEqual([l["event"] for l in self.gw.log_lines()], ["a", "b"])
            self.assertEqual(parse.call_count, 3)
            self.assertEqual([l["event"] for l in self.gw.log_lines()], ["a", "b"])
            self.assertEqual(parse.call_count, 3)
            self.write('{"event": "c"}\n')
            self.assertEqual([l["event"] for l in self.gw.log_lines()], ["a", "b", "c"])
            self.assertEqual(parse.call_count, 4)

    def test_line_being_written_read_once_whole(self):
        self.write('{"event": "a"}\n{"event": ')
        self.assertEqual([l["event"] for l in self.gw.log_lines()], ["a"])
        self.write('"b", "msg": "\u00e9t\u00e9"}\n')
        self.assertEqual([(l["event"], l.get("msg")) for l in self.gw.log_lines()], [("a", None), ("b", "\u00e9t\u00e9")])

    def test_started_again_read_from_its_new_file(self):
        """A gateway stopped and started again writes a new file from its start, and may have written more
        than the one before by the time the test looks."""
        self.write('{"event": "old"}\n')
        self.assertEqual([l["event"] for l in self.gw.log_lines()], ["old"])
        self.gw._err.close()
        self.start()
        self.write('{"event": "new-1"}\n{"event": "new-2"}\n')
        self.assertEqual([l["event"] for l in self.gw.log_lines()], ["new-1", "new-2"])

    def test_no_file_yet(self):
        self.gw._err.close()
        self.gw.stderr_path.unlink()
        self.assertEqual(self.gw.log_lines(), [])


class JsonLines(unittest.TestCase):
    """harness.json_lines and audit_records over an audit log this test appends to, as a gateway would while
    a test reads it: a record the reader finds half written is read once it is whole. A process of this test
    stands in for the gateway: while it runs the last line may be half written; once it has exited (or with
    strict, for a rotated file) a last line without its newline is a record torn for good, and fails."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="cmpgw-e2e-harness-")
        self.addCleanup(self.tmp.cleanup)
        proc = subprocess.Popen(["sleep", "60"])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        self.gw = types.SimpleNamespace(dir=Path(self.tmp.name), proc=proc)
        self.path = self.gw.dir / "audit.log"

    def test_torn_last_line_of_a_finished_file_fails(self):
        """The audit log of a gateway that has exited, or one rotated away, whose last record has no newline:
        strict readers fail on it (the lenient ones skipped it, and a record torn at exit or rotation
        passed)."""
        self.append('{"event": "issued", "tid": "01"}\n{"event": "issued", "ti')
        with self.assertRaises(harness.Failure):
            harness.whole_lines(self.path, strict=True)
        with self.assertRaises(harness.Failure):
            harness.json_lines(self.path, b'"01"', strict=True)
        self.gw.proc.kill()
        self.gw.proc.wait()
        with self.assertRaises(harness.Failure):
            harness.audit_records(self.gw, "issued")
        self.gw.proc = None  # as stop() leaves it
        with self.assertRaises(harness.Failure):
            harness.audit_records(self.gw, "issued")

    def test_whole_last_line_of_a_finished_file_read(self):
        """The twin: every line whole, strict readers read them all."""
        self.append('{"event": "issued", "tid": "01"}\n{"event": "issued", "tid": "02"}\n')
        self.gw.proc.kill()
        self.gw.proc.wait()
        self.assertEqual([r["tid"] for r in harness.audit_records(self.gw, "issued")], ["01", "02"])
        self.assertEqual(len(harness.whole_lines(self.path, strict=True)), 2)

    def append(self, text):
        with open(self.path, "ab") as f:
            f.write(text.encode())

    def test_record_being_written_read_once_whole(self):
        self.append('{"event": "issued", "tid": "01"}\n{"event": "issued", "ti')
        self.assertEqual([r["tid"] for r in harness.audit_records(self.gw, "issued")], ["01"])
        self.assertEqual(harness.json_lines(self.path, b'"02"'), [])
        self.append('d": "02"}\n')
        self.assertEqual([r["tid"] for r in harness.audit_records(self.gw, "issued")], ["01", "02"])
        self.assertEqual(harness.json_lines(self.path, b'"02"'), [{"event": "issued", "tid": "02"}])

    def test_whole_line_not_json_still_fails(self):
        self.append('{"event": "issued"}\nnot json\n')
        with self.assertRaises(ValueError):
            harness.audit_records(self.gw, "issued")

    def test_no_file_yet(self):
        self.assertEqual(harness.audit_records(self.gw, "issued"), [])
        self.assertEqual(harness.whole_lines(self.path), [])


class SocketStates(unittest.TestCase):
    """This process stands in for the gateway: a listener of its own, and the other end of its clients."""

    def setUp(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(self.listener.close)
        self.port = self.listener.getsockname()[1]
        self.gw = types.SimpleNamespace(proc=types.SimpleNamespace(pid=os.getpid()))

    def connect(self):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(c.close)
        return c

    def accept(self):
        s = self.listener.accept()[0]
        self.addCleanup(s.close)
        return s

    def test_queued_then_accepted(self):
        c = self.connect()
        self.assertEqual(harness.listen_queue(self.gw, self.port), 1)
        self.assertFalse(harness.accepted(self.gw, [c]))
        self.assertEqual((harness.connections(self.gw, self.port), harness.gateway_ends(self.gw, [c])), (0, set()))
        self.accept()
        self.assertEqual(harness.listen_queue(self.gw, self.port), 0)
        self.assertTrue(harness.accepted(self.gw, [c]))
        self.assertEqual(harness.connections(self.gw, self.port), 1)

    def test_read_whole_once_the_other_end_read_it_all(self):
        c = self.connect()
        s = self.accept()
        c.sendall(b"x" * 5000)
        self.assertFalse(harness.read_whole(self.gw, c))
        got = 0
        while got < 4999:
            got += len(s.recv(4999 - got))
        self.assertFalse(harness.read_whole(self.gw, c))  # a byte left
        s.recv(1)
        self.assertTrue(harness.settled(lambda: harness.read_whole(self.gw, c), bool))

    def test_reset_connection_followed_by_its_inode(self):
        """A client that closes with data unread resets the connection: the other end leaves /proc/net/tcp
        while it is still open, and only its inode shows when it is closed."""
        c = self.connect()
        s = self.accept()
        ends = harness.gateway_ends(self.gw, [c])
        self.assertEqual(len(ends), 1)
        s.sendall(b"unread")
        here = harness.tcp_address(c.getsockname())
        self.assertTrue(harness.settled(lambda: [t["rx"] for t in harness.tcp_sockets() if t["local"] == here],
                                        lambda rx: rx == [6]))
        c.close()
        self.assertEqual(harness.settled(lambda: harness.connections(self.gw, self.port), lambda k: k == 0), 0)
        self.assertEqual(harness.socket_inodes(os.getpid()) & ends, ends)
        s.close()
        self.assertEqual(harness.socket_inodes(os.getpid()) & ends, set())


class Stopped(unittest.TestCase):
    """A real process stands in for an upstream: Python's http.server on a port of its own."""

    REQUEST = b"GET / HTTP/1.0\r\n\r\n"

    def setUp(self):
        self.port = harness.free_port()
        self.addCleanup(harness.release_port, self.port)  # no claim left for PortClaims in this process
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.proc.wait)
        self.addCleanup(self.proc.kill)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def connect(self):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(c.close)
        return c

    def test_unread_while_stopped_answered_after(self):
        c = self.connect()
        with self.assertRaises(KeyError):
            with harness.stopped(self.proc):
                self.assertTrue(harness.all_stopped(self.proc.pid))
                c.sendall(self.REQUEST)
                self.assertGreaterEqual(harness.settled(lambda: harness.waiting(self.port), bool), len(self.REQUEST))
                ends = (harness.tcp_address(c.getpeername()), harness.tcp_address(c.getsockname()))
                self.assertEqual([t["rx"] for t in harness.tcp_sockets() if (t["local"], t["remote"]) == ends],
                                 [len(self.REQUEST)])
                raise KeyError("the block's failure")
        self.assertTrue(c.recv(64).startswith(b"HTTP/1.0 200"))
        self.assertFalse(harness.all_stopped(self.proc.pid))


if __name__ == "__main__":
    unittest.main(verbosity=2)
