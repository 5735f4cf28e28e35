#!/usr/bin/env bash
# The soak (`make soak`): the demo cmpgw under an open-loop load at half of its highest rate for
# BENCH_SOAK_SECONDS (default 600), its resident memory (VmRSS) and open descriptors sampled every
# 10 s. After the first two minutes (warm-up: allocator arenas, caches, and the replay cache, which
# keeps each transactionID for twice message_time_window and 30 s: 30 s each here, so that it holds
# 90 s' worth, about 18 000, and stops growing within the warm-up) both must stay
# within 5 % of their mean; the script prints the samples and exits 1 otherwise, or on any failed
# enrolment. Both are read from the gateway's /metrics (gw_usage in common.sh), as any user may: only
# root reads /proc/<pid>/fd of a gateway, which is not dumpable.
#
#   tests/bench/soak.sh BUILD_DIR
set -euo pipefail

build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
load=$build/tests/bench/cmpload
gw=$build/cmpgw
seconds=${BENCH_SOAK_SECONDS:-600}
threads=${BENCH_SOAK_THREADS:-16}

tmp=$(mktemp -d /tmp/cmpgw-soak.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/bench/common.sh
. "$root/tests/bench/common.sh"

port=$(free_port)
admin_port=$(free_port)
pki=$tmp/pki
bench_pki "$pki" "$port" "$admin_port"
python3 - "$pki/cmpgw.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["cmp"].update(message_time_window="30s", transaction_ttl="30s")
json.dump(cfg, open(sys.argv[1], "w"), indent=2)
PY
(cd "$pki" && exec "$gw" -c "$pki/cmpgw.json" >"$tmp/cmpgw.log" 2>&1) &
gw_pid=$!
pids+=("$gw_pid")
args=(--url "https://127.0.0.1:$port/pki/cmp" --cafile "$pki/ca.pem" --tls-cert "$pki/client.pem"
    --tls-key "$pki/client.key" --cert "$pki/client.pem" --key "$pki/client.key" --trusted "$pki/ca.pem"
    --subject "/O=cmpgw demo/CN=device-soak")
for ((i = 0; ; i++)); do
    timeout 10 "$load" "${args[@]}" --count 1 >/dev/null 2>&1 && break
    if ((i == 50)) || ! kill -0 "$gw_pid" 2>/dev/null; then
        echo "soak: cmpgw did not start or enrol" >&2
        tail -5 "$tmp/cmpgw.log" >&2
        exit 2
    fi
    sleep 0.1
done
peak=$("$load" "${args[@]}" --threads 4 --duration 5 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["rate"])')
rate=$(python3 -c "print(max(1, int($peak / 2)))")
echo "soak: peak $peak/s with 4 threads; ${seconds} s at $rate/s, $threads threads" >&2

# the load outlasts the last sample, which must not see its connections close
"$load" "${args[@]}" --rate "$rate" --threads "$threads" --duration $((seconds + 15)) --keys 2000 \
    >"$tmp/load.json" 2>"$tmp/load.err" &
load_pid=$!
pids+=("$load_pid")
echo "| s | VmRSS KiB | open fds |"
echo "|---:|---:|---:|"
: >"$tmp/samples"
for ((t = 10; t <= seconds; t += 10)); do
    sleep 10
    kill -0 "$gw_pid" 2>/dev/null || { echo "soak: the gateway died" >&2; tail -5 "$tmp/cmpgw.log" >&2; exit 1; }
    usage=$(gw_usage "$admin_port") || { echo "soak: cannot read the gateway's /metrics" >&2; exit 1; }
    read -r rss fds <<<"$usage"
    echo "| $t | $rss | $fds |"
    echo "$t $rss $fds" >>"$tmp/samples"
done
wait "$load_pid" || true
echo
python3 - "$tmp/samples" "$tmp/load.json" <<'PY'
import json, sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
load = json.load(open(sys.argv[2])) if open(sys.argv[2]).read().strip() else {"enrolments": 0, "errors": 1}
late = [r for r in rows if r[0] > 120] or rows
ok = load["errors"] == 0
for i, name in ((1, "VmRSS"), (2, "open fds")):
    vals = [r[i] for r in late]
    mean = sum(vals) / len(vals)
    spread = max(abs(v - mean) / mean for v in vals) if mean else 0
    ok &= spread <= 0.05
    print(f"- {name} from {late[0][0]} s on: {min(vals)}..{max(vals)}, within {100 * spread:.1f} % of the mean {mean:.0f}")
print(f"- load: {load['enrolments']} enrolments, {load['errors']} errors, p50 {load.get('p50_ms', 0)} ms, "
      f"p99 {load.get('p99_ms', 0)} ms")
print("soak: " + ("flat" if ok else "NOT flat, or enrolments failed"))
sys.exit(0 if ok else 1)
PY
