"""redis-server on a free loopback port, for the shared-state e2e tests ("cmp.state": "redis").

RedisServer(dir).start() runs Debian's redis-server 7 in the foreground with what cmpgw requires
(appendonly yes, maxmemory-policy noeviction), an ACL user "cmpgw" limited to its key prefix
(password in redis.pass, mode 0600) allowed only the commands the gateway's scripts run, an admin
user for the tests' own commands, and the default user off. stop() and start() again keep its
append-only file, as a restarted Redis would.
"""
import socket
import subprocess
import time
from pathlib import Path

import harness

USER, PASSWORD, PREFIX = "cmpgw", "e2e-redis-secret-4f1d", "cmpgw:"
ADMIN, ADMIN_PASSWORD = "admin", "e2e-redis-admin-9c2e"  # the test's own commands (FLUSHDB, CONFIG SET, ...)
# what the gateway's scripts need, as docs/operations.md lists it
GATEWAY_COMMANDS = ["evalsha", "eval", "get", "set", "del", "exists", "expire", "zadd", "zrem", "zcard",
                    "zremrangebyscore", "zrangebyscore", "ttl", "time", "config|get", "info", "ping"]


class RedisServer:
    def __init__(self, d):
        self.dir = Path(d) / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = harness.free_port()
        self.proc = None
        self.password_file = Path(d) / "redis.pass"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)

    def state(self):
        """The gateway's "cmp.state" for this server."""
        return {"backend": "redis", "address": "127.0.0.1", "port": self.port, "username": USER,
                "password_file": str(self.password_file), "key_prefix": PREFIX, "timeout": "500ms"}

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "", "--daemonize", "no",
                "--user", "default", "off",
                "--user", USER, "on", ">" + PASSWORD, "~%s*" % PREFIX] + ["+" + c for c in GATEWAY_COMMANDS] + [
                "--user", ADMIN, "on", ">" + ADMIN_PASSWORD, "~*", "+@all"]
        self._log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise harness.Failure("redis-server exited: %s" % (self.dir / "redis.log").read_text()[-2000:])
            try:
                if self.command("PING") == "+PONG":
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise harness.Failure("redis-server did not start")

    def command(self, *args):
        """One command as the admin user (RESP over a socket); the first line of the answer."""
        return self.command_lines(*args)[0]

    def command_lines(self, *args):
        """One command as the admin user; the lines of its answer, read as RESP to the answer's end
        (a slow answer, such as an EVAL building megabytes on a busy machine, is waited for: up to 30 s)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            def send(parts):
                s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p)
                                                             for p in (x.encode() for x in parts)))
            send(["AUTH", ADMIN, ADMIN_PASSWORD])
            send([str(a) for a in args])
            f = s.makefile("rb")
            auth = _reply(f)
            if auth != ["+OK"]:
                raise harness.Failure("redis AUTH: %s" % auth)
            return _reply(f)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self._log.close()
            self.proc = None


def _reply(f):
    """One RESP reply from the file f, flattened to its lines: a bulk string's header and data, an
    array's header and its elements' lines; a connection closed before its end is a ConnectionError."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("redis closed the connection mid-answer")
    line = line[:-2].decode(errors="replace")
    if line[:1] == "$" and int(line[1:]) >= 0:
        data = f.read(int(line[1:]) + 2)
        if len(data) != int(line[1:]) + 2:
            raise ConnectionError("redis closed the connection mid-answer")
        return [line, data[:-2].decode(errors="replace")]
    if line[:1] == "*" and int(line[1:]) > 0:
        return [line] + [l for _ in range(int(line[1:])) for l in _reply(f)]
    return [line]
