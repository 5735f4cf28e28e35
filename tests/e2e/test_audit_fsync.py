"""The audit record of an issued certificate reaches the disk before the response that carries the
certificate leaves (docs/design.md D8). Timing cannot show that, so the gateway runs under
strace and the test reads the order of its system calls: write of the "issued" line to the audit file,
fsync of that file, then the first write of the response to the client's socket."""
import os
import re
import signal
import subprocess
import tempfile
import unittest
from pathlib import Path

import sys
sys.dont_write_bytecode = True  # keep the source tree clean of __pycache__
import harness  # noqa: E402

SYSCALLS = "trace=openat,accept,accept4,fsync,fdatasync,write,writev,sendto,sendmsg"


class StracedGateway(harness.Gateway):
    """The gateway process started under strace -f, its trace in |self.trace|."""

    def start(self):
        self.trace = self.dir / "strace.txt"
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        argv = ["strace", "-f", "-qq", "-s", "200", "-e", SYSCALLS, "-o", str(self.trace),
                str(harness.GATEWAY_BIN), "-c", str(self.config_path)]
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=self._out, stderr=self._err, env=self.env())
        self.wait_ready()

    def env(self):
        env = super().env()
        if harness.SANITIZE:  # LeakSanitizer cannot run under ptrace; the other e2e tests cover leaks
            env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0"
        return env

    def signal_stop(self):
        """SIGTERM to the gateway itself, not to strace (which would detach and leave it running)."""
        children = Path("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)).read_text().split()
        for pid in children:
            os.kill(int(pid), signal.SIGTERM)


def completed(lines, start, call, fd):
    """Index of the line where |call| on |fd|, started at or after |start|, returned 0."""
    pending = set()
    for i in range(start, len(lines)):
        line = lines[i]
        pid = line.split(" ", 1)[0]
        if re.search(r"\b%s\(%d\) += 0" % (call, fd), line):
            return i
        if re.search(r"\b%s\(%d <unfinished" % (call, fd), line):
            pending.add(pid)
        elif pid in pending and re.search(r"<\.\.\. %s resumed>\) += 0" % call, line):
            return i
    return None


class AuditFsync(harness.GatewayTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cmpgw-e2e-")
        cls.gw = StracedGateway(Path(cls.tmp) / "pki", cls.edit_config)
        cls.gw.start()

    def test_issued_record_is_synced_before_the_response(self):
        res = self.gw.cmp("ir", "synced", newkey=self.newkey("synced"), subject="/CN=synced",
                          extra=("-implicit_confirm",))
        self.assertIsNotNone(res.cert)
        self.gw.stop()
        lines = self.gw.trace.read_text(errors="replace").splitlines()

        audit_fd = next(int(m.group(1)) for m in (re.search(r'openat\(.*audit\.log".*\) = (\d+)', l) for l in lines)
                        if m)
        # strace -f splits a call another thread's call interrupts: "<... accept4 resumed>..." ends it
        conns = [int(m.group(1)) for m in (re.search(r"accept4?(?:\(| resumed>).*\) = (\d+)", l) for l in lines)
                 if m]
        self.assertTrue(conns, "no accepted connection in the trace")
        issued = next(i for i, l in enumerate(lines)
                      if re.search(r"\bwrite\(%d, .*\\\"event\\\":\\\"issued\\\"" % audit_fd, l))
        synced = completed(lines, issued, "fsync", audit_fd)
        self.assertIsNotNone(synced, "the audit file was not fsync'd after the issued record")
        response = next((i for i in range(issued, len(lines))
                         if re.search(r"\b(write|writev|sendto|sendmsg)\((%s)," % "|".join(map(str, conns)),
                                      lines[i])), None)
        self.assertIsNotNone(response, "no response write after the issued record (connections %s):\n%s"
                             % (conns, "\n".join(l for l in lines if "accept" in l or "write" in l)))
        self.assertLess(synced, response, "the response left before the audit record was on disk:\n%s"
                        % "\n".join(lines[issued:response + 1]))


if __name__ == "__main__":
    harness.main()
