# Sourced by tests/bench/run.sh and soak.sh: what both need to stand up the demo gateway.

# free_port: a TCP port on 127.0.0.1 free a moment ago, below the kernel's ephemeral range (no outgoing
# connection takes it as its local port while a server is restarted on it).
free_port() {
    python3 -c '
import random, socket
first = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
while True:
    s, port = socket.socket(), random.randrange(10000, first)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    print(port)
    break'
}

# bench_pki DIR GW_PORT ADMIN_PORT [PLAIN_PORT]: the demo PKI and cmpgw.json in DIR, with a second,
# plain HTTP listener on PLAIN_PORT if given. Every client of a benchmark is one identity on one
# address: the per-identity share of the replay cache and the per-address limits, which bound one
# credential in production, are raised, as a deployment behind a load balancer or an RA raises them.
bench_pki() {
    CMPGW_PORT=$2 CMPGW_ADMIN_PORT=$3 "$root/deploy/demo-pki.sh" "$1" >/dev/null
    python3 - "$1/cmpgw.json" "${4:-}" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
# no store, as the floors were measured: it writes and fsyncs every certificate issued
del cfg["upstreams"]["local"]["store"]
cfg["cmp"] = dict(cfg.get("cmp", {}), max_recent_per_identity=100000, max_transactions_per_identity=10000)
cfg["limits"] = dict(cfg.get("limits", {}), max_connections_per_address=4096,
                     max_requests_in_flight_per_address=4096)
if sys.argv[2]:
    cfg["listeners"].append({"address": "127.0.0.1", "port": int(sys.argv[2]), "plain_http": True})
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
}

# gw_usage ADMIN_PORT: "<resident KiB> <open descriptors>" of the cmpgw whose admin listener is on
# ADMIN_PORT, from its /metrics (process_resident_memory_bytes, process_open_fds): /proc/<pid>/fd of a
# gateway is root's alone to read (the gateway is not dumpable), and its own figures are anyone's who
# may reach the admin listener. The descriptor of the scrape's own connection is not counted: the
# figures are what /proc/<pid>/status and /proc/<pid>/fd show between scrapes.
gw_usage() {
    curl -fsS --noproxy '*' "http://127.0.0.1:$1/metrics" |
        awk '$1 == "process_resident_memory_bytes" { rss = $2 } $1 == "process_open_fds" { fds = $2 }
             END { if (rss == "" || fds == "") exit 1; printf "%d %d\n", rss / 1024, fds - 1 }'
}
