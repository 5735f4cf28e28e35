#!/usr/bin/python3
"""Upstream latency hiding (`make bench-latency`): cmpgw in front of the Vault-API test server, p10cr
through the vault adapter, BENCH_LATENCY_CLIENTS cmpload threads (each one client with a keep-alive
connection, implicitConfirm). Alternating rounds with Vault answering at once and after
BENCH_LATENCY_MS, side by side on one gateway; the gateway's thread count is sampled during each.

Prints a Markdown table, then one machine-readable line:
  latency_hiding=R threads_zero=N threads_slow=N vault_cpu_ms=C
R = throughput with the latency / throughput without (best round of each). The gateway runs its
configured 16 workers: a waiting sign call must hold none of them, nor a thread of its own.
C = the gateway's CPU per Vault enrolment, measured apart: 4 clients, Vault answering at once (512
clients would add their TLS handshakes to it).

Usage: tests/bench/latency.py BUILD_DIR [JSON_OUT]   (JSON_OUT: the figures, for run.sh's ratio line)
Knobs (environment): BENCH_LATENCY_CLIENTS (default 512), BENCH_LATENCY_MS (default 50),
BENCH_DURATION seconds per measurement (default 5), BENCH_ROUNDS (default 2), BENCH_PIN=1 (gateway
and Vault server on CPU 1, the load on CPU 0).
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.dont_write_bytecode = True
import harness  # noqa: E402
import vaultenv  # noqa: E402

CLIENTS = int(os.environ.get("BENCH_LATENCY_CLIENTS", "512"))
LATENCY_MS = int(os.environ.get("BENCH_LATENCY_MS", "50"))
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
PIN = os.environ.get("BENCH_PIN") == "1"


def threads_of(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def measure(load, gw, label, clients=CLIENTS):
    """One timed cmpload run; returns (enrolments per second, errors, the gateway's peak thread count,
    the gateway's CPU ms per enrolment)."""
    d = gw.dir
    argv = ([] if not PIN else ["taskset", "-c", "0"]) + [
        load, "--url", "https://127.0.0.1:%d/pki/roles/vault/cmp" % gw.port, "--cafile", d / "ca.pem",
        "--tls-cert", d / "client.pem", "--tls-key", d / "client.key", "--cert", d / "client.pem",
        "--key", d / "client.key", "--trusted", d / "ca.pem", "--p10cr", "--subject", "/CN=load.example.com",
        "--implicit-confirm", "--threads", str(clients), "--duration", str(DURATION), "--keys", "4000",
        "--timeout", "60000"]
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.25):
            peak[0] = max(peak[0], threads_of(gw.proc.pid))

    s = threading.Thread(target=sample)
    s.start()
    ticks = cpu_ticks(gw.proc.pid)
    try:
        p = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=DURATION + 120)
    finally:
        done.set()
        s.join()
    ticks = cpu_ticks(gw.proc.pid) - ticks
    try:
        r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (IndexError, ValueError):
        sys.exit("bench: cmpload (%s) printed no result: %s" % (label, p.stderr.decode()[-2000:]))
    if r["errors"]:
        print("bench: cmpload (%s): %s" % (label, p.stderr.decode()[-1500:]), file=sys.stderr)
    cpu_ms = 1000.0 * ticks / os.sysconf("SC_CLK_TCK") / r["enrolments"] if r["enrolments"] else 0.0
    return r["rate"], r["errors"], peak[0], cpu_ms


def edit(vault):
    def edit_config(cfg, gw):
        vault.dir = gw.dir
        vault.make_pki()
        vault.start()
        cfg["queue_depth"] = 4 * CLIENTS
        cfg["cmp"] = dict(cfg.get("cmp", {}), max_recent_per_identity=100000,
                          max_transactions_per_identity=10000)
        cfg["limits"] = dict(cfg.get("limits", {}), max_connections_per_address=4 * CLIENTS,
                             max_requests_in_flight_per_address=4 * CLIENTS)
        cfg["upstreams"]["vault"] = vault.upstream(max_inflight=4 * CLIENTS, timeout="60s")
        role = dict(cfg["roles"]["default"], upstream="vault", upstream_role="devices")
        role["allowed_san_types"] = ["dns"]
        cfg["roles"]["vault"] = role
    return edit_config


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    build = Path(sys.argv[1]).resolve()
    # the harness read CMPGW_BIN when it was imported; without it, the gateway is the one of |build|
    harness.GATEWAY_BIN = Path(os.environ.get("CMPGW_BIN", build / "cmpgw")).resolve()
    load = build / "tests" / "bench" / "cmpload"
    tmp = Path(tempfile.mkdtemp(prefix="cmpgw-bench-latency-"))
    vault = vaultenv.VaultApi(tmp / "pki")
    gw = harness.Gateway(tmp / "pki", edit(vault))
    try:
        gw.start()
        if PIN:
            for pid in (gw.proc.pid, vault.proc.pid):
                subprocess.run(["taskset", "-a", "-p", "-c", "1", str(pid)], stdout=subprocess.DEVNULL, check=True)
        rows = []
        for r in range(ROUNDS):
            for ms in (0, LATENCY_MS):
                vault.control({"latency_ms": ms, "match": "/sign/"} if ms else {})
                rate, errors, threads, _ = measure(load, gw, "%d ms" % ms)
                rows.append((r + 1, ms, rate, errors, threads))
                print("round %d, Vault after %3d ms: %7.1f enrolments/s, %d errors, gateway threads %d" %
                      (r + 1, ms, rate, errors, threads), file=sys.stderr)
        vault.control({})
        _, cpu_errors, _, vault_cpu = measure(load, gw, "4 clients", clients=4)
        print("4 clients, Vault at once: gateway CPU %.2f ms per enrolment, %d errors" % (vault_cpu, cpu_errors),
              file=sys.stderr)
    finally:
        try:
            gw.stop()
        finally:
            vault.stop()  # also when the gateway's exit was a failure
    best = {ms: max(x[2] for x in rows if x[1] == ms) for ms in (0, LATENCY_MS)}
    threads = {ms: max(x[4] for x in rows if x[1] == ms) for ms in (0, LATENCY_MS)}
    print("machine: %s, %d CPUs, %s; %d clients, %d s per run, %d rounds" % (
        platform.processor() or platform.machine(), os.cpu_count(), platform.release(), CLIENTS, DURATION,
        ROUNDS))
    print()
    print("| round | Vault latency | enrolments/s | errors | gateway threads (peak) |")
    print("|---|---|---|---|---|")
    for r, ms, rate, errors, th in rows:
        print("| %d | %d ms | %.1f | %d | %d |" % (r, ms, rate, errors, th))
    print()
    figures = {"latency_hiding": best[LATENCY_MS] / best[0] if best[0] else 0.0, "threads_zero": threads[0],
               "threads_slow": threads[LATENCY_MS], "clients": CLIENTS, "latency_ms": LATENCY_MS,
               "rate_zero": best[0], "rate_slow": best[LATENCY_MS], "errors": sum(x[3] for x in rows) + cpu_errors,
               "vault_cpu_ms": vault_cpu}
    print("gateway CPU per enrolment with 4 clients and Vault answering at once: %.2f ms" % vault_cpu)
    print()
    print("latency_hiding=%.2f threads_zero=%d threads_slow=%d vault_cpu_ms=%.2f" % (
        figures["latency_hiding"], threads[0], threads[LATENCY_MS], vault_cpu))
    if len(sys.argv) == 3:
        Path(sys.argv[2]).write_text(json.dumps(figures))
    if not os.environ.get("CMPGW_E2E_KEEP"):
        subprocess.run(["rm", "-rf", str(tmp)])


if __name__ == "__main__":
    main()
