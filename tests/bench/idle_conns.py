#!/usr/bin/env python3
"""Resident memory of idle TLS connections (tests/bench/run.sh): opens N connections to a cmpgw listener,
each with the demo client certificate and one request answered (as a keep-alive client between two
messages), and reads the gateway's resident memory before and after. Fails if the gateway closed any
of them before the reading (its keep-alive timeout, say): the figure would be per connection it no
longer holds. Both figures come from the gateway's /metrics on its admin listener
(process_resident_memory_bytes, process_open_fds), as any user may read them: only root reads
/proc/<pid>/fd of a gateway, which is not dumpable. Prints one JSON line.

    idle_conns.py ADMIN_PORT PORT PKI_DIR N
"""
import concurrent.futures
import json
import socket
import ssl
import sys
import time
import urllib.request


OPENERS = 4  # connections being opened at once


def usage(admin_port):
    """The gateway's resident KiB and open descriptors, as /proc/<pid>/status (VmRSS) and /proc/<pid>/fd
    would show them: the descriptor of this scrape's own connection is not counted."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, never a proxy
    with opener.open("http://127.0.0.1:%d/metrics" % admin_port, timeout=10) as r:
        text = r.read().decode()
    got = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("process_resident_memory_bytes", "process_open_fds"):
            got[parts[0]] = float(parts[1])
    if len(got) != 2:
        raise RuntimeError("the gateway's /metrics lacks process_resident_memory_bytes or process_open_fds")
    return int(got["process_resident_memory_bytes"]) // 1024, int(got["process_open_fds"]) - 1


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
    admin_port, port, pki, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
    ctx.load_cert_chain(pki + "/client.pem", pki + "/client.key")
    before, fds_before = usage(admin_port)
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
        after, fds_after = usage(admin_port)
        held = fds_after - fds_before
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
