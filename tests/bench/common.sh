# Sourced by tests/bench/run.sh and soak.sh: what both need to stand up the demo gateway.

# A free TCP port on 127.0.0.1 (the kernel picks it; the short race is harmless here).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
cfg["cmp"] = dict(cfg.get("cmp", {}), max_recent_per_identity=100000, max_transactions_per_identity=10000)
cfg["limits"] = dict(cfg.get("limits", {}), max_connections_per_address=4096)
if sys.argv[2]:
    cfg["listeners"].append({"address": "127.0.0.1", "port": int(sys.argv[2]), "plain_http": True})
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
}
