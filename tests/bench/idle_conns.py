#!/usr/bin/env python3
"""Resident memory of idle TLS connections (tests/bench/run.sh): opens N connections to a cmpgw listener,
each with the demo client certificate and one request answered (as a keep-alive client between two
messages), and reads the gateway's VmRSS before and after. Fails if the gateway closed any of them
before the reading (its keep-alive timeout, say): the figure would be per connection it no longer
holds; it counts them in /proc/<pid>/fd, which only root reads of a gateway (it is not dumpable).
Prints one JSON line.

    idle_conns.py PID PORT PKI_DIR N
"""
import concurrent.futures
import json
import os
import socket
import ssl
import sys
import time


OPENERS = 4  # connections being opened at once


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def open_one(ctx, port):
    """A TLS connection with one request answered, left open."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise
    t.sendall(b"GET /pki/idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if not t.recv(4096).startswith(b"HTTP/1.1 "):
        t.close()
        raise RuntimeError("no HTTP answer")
    return t


def main():
    pid, port, pki, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
    ctx.load_cert_chain(pki + "/client.pem", pki + "/client.key")
    before, fds_before = rss_kib(pid), len(os.listdir("/proc/%d/fd" % pid))
    conns = []
    started = time.monotonic()
    try:
        # a few at a time: the gateway closes an idle HTTP/1.1 connection after its request timeout
        # (5 s), and one after the other 1 000 connections take about that long to open
        with concurrent.futures.ThreadPoolExecutor(max_workers=OPENERS) as pool:
            futures = [pool.submit(open_one, ctx, port) for _ in range(n)]
            for f in futures:
                conns.append(f.result())
        opened_s = time.monotonic() - started
        time.sleep(0.5)
        after = rss_kib(pid)
        held = len(os.listdir("/proc/%d/fd" % pid)) - fds_before
        if held < n:
            raise RuntimeError("the gateway holds %d of the %d connections at the reading (opened in %.1f s): "
                               "it closed some" % (held, n, opened_s))
    finally:
        for t in conns:
            t.close()
    print(json.dumps({"connections": n, "rss_before_kib": before, "rss_after_kib": after,
                      "kib_per_connection": round((after - before) / n, 1), "opened_s": round(opened_s, 2)}))


if __name__ == "__main__":
    main()
