#!/usr/bin/env bash
# The first benchmark (`make bench`): cmpload against OpenSSL's own CMP server (`openssl cmp -port`,
# the reference for the cost of CMP processing) and against cmpgw on the demo PKI, side by side in
# one run on loopback, alternating A/B rounds to tame the noise of a shared machine.
#
#   tests/bench/run.sh BUILD_DIR
#   tests/bench/run.sh --selftest BUILD_DIR   cmpload's own checks against the mock (a ctest)
#
# Knobs (environment): BENCH_DURATION seconds per measurement (default 5), BENCH_ROUNDS A/B rounds
# (default 3), BENCH_THREADS client threads of the concurrent case (default 4), BENCH_WARMUP
# seconds (default 2), BENCH_SCRAPE=1 adds a third case to every round: the same cmpgw while
# /metrics is scraped every second, as Prometheus would (the cost of the metrics, side by side);
# BENCH_REDIS=1 adds two more cmpgw sharing their state in a redis-server ("cmp.state": "redis",
# transaction records on): one measured alone beside the in-memory one, then both with every
# certConf sent to the other instance than its ir (a rebuild each); server CPU counts every
# process involved, redis-server's included. BENCH_PER_MESSAGE=0 leaves out the two cases of a
# client that opens a new connection per message (as openssl cmp 3.0 does), with its TLS session
# resumed, then with a full handshake each time.
# Defaults keep the whole run within 5 to 7 minutes. Prints a Markdown table, then one
# machine-readable line: "ratio cpu=... throughput=..." (cmpgw / mock: server CPU per enrolment with
# one client thread, throughput with BENCH_THREADS), per_message=... full_handshake=... (server CPU
# per enrolment of those clients / keep-alive's), half_peak_p99_ms=... (p99 of an open-loop load at
# half of cmpgw's highest rate, cmpload --rate; half_peak_gateway_p99_ms=... its time waiting for
# the gateway, the client's own work taken out), idle_kib=... (resident KiB per idle TLS connection
# of BENCH_IDLE_CONNS, default 1000; 0 leaves it out) and latency_hiding=... (throughput of
# BENCH_LATENCY_CLIENTS p10cr clients, default 512, through the vault adapter with the Vault-API
# test server answering after 50 ms / at once: tests/bench/latency.py; 0 leaves it out);
# cpu_plain=... is cmpgw's server CPU per enrolment over a plain HTTP listener (as behind a
# TLS-terminating balancer) over the mock's, one client thread; cpu_user=... cpu's ratio in user
# space alone (utime; the kernel's share, stime, is a column of the table); floor=... cmpgw's over
# the in-process floor (tests/bench/floor.c: OpenSSL's CMP server alone, a fresh context per
# transaction); instructions=... cmpgw's instructions per enrolment over the mock's, counted by
# callgrind (BENCH_INSTRUCTIONS enrolments, default 200; 0 leaves it out), a figure the machine's
# noise does not move, and instructions_per_message=... cmpgw's with a connection per message over
# its own with keep-alive, counted the same way.
set -euo pipefail

selftest=0
if [[ ${1:-} == --selftest ]]; then
    selftest=1
    shift
fi
build=${1:?usage: $0 [--selftest] BUILD_DIR}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "$build" && pwd)
load=$build/tests/bench/cmpload
gw=$build/cmpgw
duration=${BENCH_DURATION:-5}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-4}
warmup=${BENCH_WARMUP:-2}
scrape=${BENCH_SCRAPE:-0}
with_redis=${BENCH_REDIS:-0}
per_message=${BENCH_PER_MESSAGE:-1}
# BENCH_PIN=1: servers on CPU 1, the load client on CPU 0 (taskset), so that neither takes the
# other's core; off by default: on two cores each side then has only one.
srv_pin=()
cli_pin=()
if [[ ${BENCH_PIN:-0} == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    srv_pin=(taskset -c 1)
    cli_pin=(taskset -c 0)
fi
idle_conns=${BENCH_IDLE_CONNS:-1000}
subject="/O=cmpgw demo/CN=device-bench"
tck=$(getconf CLK_TCK)

[[ -x $load ]] || { echo "bench: $load not built" >&2; exit 2; }
command -v openssl >/dev/null || { echo "bench: openssl not found" >&2; exit 2; }

tmp=$(mktemp -d /tmp/cmpgw-bench.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/bench/common.sh
. "$root/tests/bench/common.sh"

# wait_listen PORT PID [SECONDS]: waits up to SECONDS (default 5) for a listener on PORT while PID
# lives, without connecting (the mock stalls 1 s on an idle connection).
wait_listen() {
    local port=$1 pid=$2 i
    for ((i = 0; i < 10 * ${3:-5}; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# utime+stime, then stime alone, of the PIDs in clock ticks (all their threads); fields counted
# after the ")" of comm.
cpu_ticks() {
    local p rest user kernel sum=0 sys=0
    for p in "$@"; do
        rest=$(sed 's/.*) //' "/proc/$p/stat")
        read -r user kernel <<<"$(awk '{ print $12, $13 }' <<<"$rest")"
        sum=$((sum + user + kernel))
        sys=$((sys + kernel))
    done
    echo "$sum $sys"
}

mock_port=$(free_port)
gw_port=$(free_port)
admin_port=$(free_port)
plain_port=$(free_port)
pki=$tmp/pki
bench_pki "$pki" "$gw_port" "$admin_port" "$plain_port"

# (1) OpenSSL's mock CMP server: plain HTTP, path /pkix/, one transaction at a time, signs its
# responses with the demo signer, trusts the demo root for client signatures, and returns the same
# canned certificate every time (hence cmpload --accept-any-key against it). It binds the wildcard
# address (no option to choose); the benchmark only talks to it on 127.0.0.1.
(cd "$pki" && exec "${srv_pin[@]}" openssl cmp -port "$mock_port" -srv_cert signer.pem -srv_key signer.key \
    -srv_trusted ca.pem -rsp_cert client.pem -verbosity 3 >"$tmp/mock.log" 2>&1) &
mock_pid=$!
pids+=("$mock_pid")
wait_listen "$mock_port" "$mock_pid" || { echo "bench: the mock server did not start" >&2; cat "$tmp/mock.log" >&2; exit 2; }

common=(--cert "$pki/client.pem" --key "$pki/client.key" --trusted "$pki/ca.pem" --subject "$subject")
mock_args=(--url "http://127.0.0.1:$mock_port/pkix/" --accept-any-key "${common[@]}")
gw_args=(--url "https://127.0.0.1:$gw_port/pki/cmp" --cafile "$pki/ca.pem" --tls-cert "$pki/client.pem"
    --tls-key "$pki/client.key" "${common[@]}")
plain_args=(--url "http://127.0.0.1:$plain_port/pki/cmp" "${common[@]}")
pm_args=("${gw_args[@]}" --per-message)
full_args=("${gw_args[@]}" --per-message --no-resume)

# expect NAME RC FIELD=VALUE...: runs cmpload with the rest of "$@" after "--", checks its exit
# status and fields of its JSON line (FIELD>0 means positive). Counts failures in $fails.
fails=0
expect() {
    local name=$1 want_rc=$2 rc=0 out chk ok=1
    shift 2
    local checks=()
    while [[ $1 != -- ]]; do checks+=("$1"); shift; done
    shift
    out=$(timeout 60 "$load" "$@" 2>"$tmp/case.err") || rc=$?
    [[ $rc == "$want_rc" ]] || ok=0
    for chk in "${checks[@]}"; do
        python3 -c '
import json, sys
d = json.loads(sys.argv[1]); k, op, v = sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.exit(0 if (d[k] > v if op == ">" else d[k] == v) else 1)' \
            "${out:-{\}}" "${chk%%[=>]*}" "$([[ $chk == *'>'* ]] && echo '>' || echo '=')" "${chk##*[=>]}" \
            2>/dev/null || ok=0
    done
    if ((ok)); then
        echo "ok   $name"
    else
        echo "FAIL $name (rc $rc, want $want_rc): $out"
        sed 's/^/     /' "$tmp/case.err" | head -5
        fails=$((fails + 1))
    fi
}

# cmpload's own checks: each positive case beside the failures it must count, never hide.
run_selftest() {
    local pbm_port closed_port pbm_pid bad="$tmp/bad.secret"
    pbm_port=$(free_port)
    closed_port=$(free_port)
    (cd "$pki" && exec openssl cmp -port "$pbm_port" -srv_secret file:pbm.secret -srv_ref demo-device \
        -rsp_cert client.pem -verbosity 3 >"$tmp/mock-pbm.log" 2>&1) &
    pbm_pid=$!
    pids+=("$pbm_pid")
    wait_listen "$pbm_port" "$pbm_pid" || { echo "selftest: the PBM mock did not start" >&2; return 1; }
    printf 'not-the-secret' >"$bad"
    local pbm=(--url "http://127.0.0.1:$pbm_port/pkix/" --ref demo-device --accept-any-key)

    expect "signature, 2 threads, 20 enrolments" 0 enrolments=20 errors=0 -- "${mock_args[@]}" --threads 2 --count 20
    expect "implicitConfirm asked" 0 enrolments=5 errors=0 -- "${mock_args[@]}" --count 5 --implicit-confirm
    expect "duration mode" 0 'enrolments>0' errors=0 -- "${mock_args[@]}" --duration 1
    expect "canned cert for another key is an error" 1 enrolments=0 cmp_errors=3 -- \
        --url "http://127.0.0.1:$mock_port/pkix/" "${common[@]}" --count 3
    expect "untrusted response signer" 1 enrolments=0 cmp_errors=2 -- \
        --url "http://127.0.0.1:$mock_port/pkix/" --accept-any-key --cert "$pki/client.pem" \
        --key "$pki/client.key" --trusted "$pki/issuing.pem" --count 2
    expect "pinned wrong server cert" 1 enrolments=0 cmp_errors=1 -- \
        --url "http://127.0.0.1:$mock_port/pkix/" --accept-any-key --cert "$pki/client.pem" \
        --key "$pki/client.key" --srvcert "$pki/client.pem" --count 1
    expect "closed port" 1 enrolments=0 transport_errors=2 -- \
        --url "http://127.0.0.1:$closed_port/pkix/" "${common[@]}" --count 2
    expect "wrong path (404)" 1 enrolments=0 http_errors=1 -- \
        --url "http://127.0.0.1:$mock_port/nope" "${common[@]}" --count 1
    expect "PBM" 0 enrolments=10 errors=0 -- "${pbm[@]}" --secret-file "$pki/pbm.secret" --count 10 --threads 2
    expect "PBM, wrong secret" 1 enrolments=0 cmp_errors=2 -- "${pbm[@]}" --secret-file "$bad" --count 2
    expect "PBM, empty secret file" 2 -- "${pbm[@]}" --secret-file /dev/null --count 1
    expect "no --url" 2 -- "${common[@]}"
    expect "ftp:// url" 2 -- --url ftp://127.0.0.1/ "${common[@]}"
    expect "--alt-url ftp://" 2 -- "${mock_args[@]}" --alt-url ftp://127.0.0.1/
    expect "--alt-url, the same server" 0 enrolments=4 errors=0 -- "${mock_args[@]}" \
        --alt-url "http://127.0.0.1:$mock_port/pkix/" --count 4
    expect "--alt-url takes every certConf" 1 enrolments=0 transport_errors=2 -- "${mock_args[@]}" \
        --alt-url "http://127.0.0.1:$closed_port/pkix/" --count 2
    expect "--rate: an open loop" 0 enrolments=5 errors=0 -- "${mock_args[@]}" --rate 50 --count 5
    expect "--rate 0" 2 -- "${mock_args[@]}" --rate 0
    expect "--threads 0" 2 -- "${mock_args[@]}" --threads 0
    expect "--threads too many" 2 -- "${mock_args[@]}" --threads 100000
    expect "--count -1" 2 -- "${mock_args[@]}" --count -1
    expect "--count 5x" 2 -- "${mock_args[@]}" --count 5x
    expect "--duration 0" 2 -- "${mock_args[@]}" --duration 0
    expect "--duration nan" 2 -- "${mock_args[@]}" --duration nan
    expect "subject without slash" 2 -- "${mock_args[@]}" --subject CN=x
    expect "subject with empty value" 2 -- "${mock_args[@]}" --subject /CN=
    expect "--cert without --key" 2 -- --url "http://127.0.0.1:$mock_port/pkix/" --cert "$pki/client.pem" \
        --trusted "$pki/ca.pem"
    expect "signer cert not PEM" 2 -- --url "http://127.0.0.1:$mock_port/pkix/" --cert "$pki/pbm.ref" \
        --key "$pki/client.key" --trusted "$pki/ca.pem"
    expect "stray argument" 2 -- "${mock_args[@]}" extra
    if "$load" --help | grep -q -- '--implicit-confirm' && "$load" --help >/dev/null; then
        echo "ok   --help"
    else
        echo "FAIL --help"
        fails=$((fails + 1))
    fi
    echo "selftest: $fails failed"
    ((fails == 0))
}

if ((selftest)); then
    run_selftest
    exit $?
fi

# (2) cmpgw on the demo PKI (HTTPS, local issuer), if this build has one that starts and enrols.
# Descriptors for the idle-connection measurement: the gateway's and this script's (its client).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
gw_pid=
if [[ -x $gw ]]; then
    (cd "$pki" && exec "${srv_pin[@]}" "$gw" -c "$pki/cmpgw.json" >"$tmp/cmpgw.log" 2>&1) &
    gw_pid=$!
    pids+=("$gw_pid")
    if ! wait_listen "$gw_port" "$gw_pid" \
        || ! timeout 30 "$load" "${gw_args[@]}" --count 1 >/dev/null 2>"$tmp/smoke.err"; then
        echo "bench: cmpgw did not start or enrol; measuring the mock only" >&2
        cat "$tmp/smoke.err" >&2 || true
        tail -5 "$tmp/cmpgw.log" >&2 || true
        gw_pid=
    fi
else
    echo "bench: $gw not built; measuring the mock only" >&2
fi

# (3) BENCH_REDIS: redis-server as cmpgw requires it, and a second cmpgw on the same PKI sharing it.
redis_pids=
alt_pids=
rgw_args=()
alt_args=()
rpids=()
if [[ -n $gw_pid && $with_redis == 1 ]]; then
    redis_port=$(free_port)
    rgw_port=$(free_port)
    rgw2_port=$(free_port)
    openssl rand -hex 32 >"$pki/state.key"
    chmod 600 "$pki/state.key"
    mkdir -p "$tmp/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --appendonly yes \
        --maxmemory-policy noeviction --save "" --daemonize no >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    wait_listen "$redis_port" "$redis_pid" || { echo "bench: redis-server did not start" >&2; exit 2; }
    for i in 1 2; do
        port=$rgw_port
        [[ $i == 2 ]] && port=$rgw2_port
        python3 - "$pki/cmpgw.json" "$pki/cmpgw-redis$i.json" "$port" "$redis_port" "$i" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["listeners"] = cfg["listeners"][:1]  # the TLS listener alone, on a port of its own
cfg["listeners"][0]["port"] = int(sys.argv[3])
cfg.pop("admin", None)
cfg["audit"]["file"] = "audit-redis%s.log" % sys.argv[5]
cfg["cmp"]["state"] = {"backend": "redis", "address": "127.0.0.1", "port": int(sys.argv[4]),
                       "mac_key_file": "state.key"}
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
PY
        (cd "$pki" && exec "${srv_pin[@]}" "$gw" -c "$pki/cmpgw-redis$i.json" >"$tmp/cmpgw-redis$i.log" 2>&1) &
        rpids[i]=$!
        pids+=("${rpids[i]}")
    done
    rgw_args=(--url "https://127.0.0.1:$rgw_port/pki/cmp" --cafile "$pki/ca.pem" --tls-cert "$pki/client.pem"
        --tls-key "$pki/client.key" "${common[@]}")
    alt_args=("${rgw_args[@]}" --alt-url "https://127.0.0.1:$rgw2_port/pki/cmp")
    if wait_listen "$rgw_port" "${rpids[1]}" && wait_listen "$rgw2_port" "${rpids[2]}" &&
        timeout 30 "$load" "${alt_args[@]}" --count 2 >/dev/null 2>"$tmp/smoke.err"; then
        redis_pids="${rpids[1]} $redis_pid"
        alt_pids="${rpids[1]} ${rpids[2]} $redis_pid"
    else
        echo "bench: cmpgw with redis did not start or enrol across two instances" >&2
        cat "$tmp/smoke.err" >&2 || true
        tail -5 "$tmp/cmpgw-redis1.log" "$tmp/cmpgw-redis2.log" >&2 || true
        exit 2
    fi
fi

# Scrapes cmpgw's /metrics once a second until killed (BENCH_SCRAPE).
scraper() {
    while :; do
        curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/metrics" || echo "bench: a scrape failed" >&2
        sleep 1
    done
}

# The audit log's fsyncs so far (cmpgw_audit_fsyncs_total of the demo cmpgw), or 0.
fsyncs() {
    curl -fsS "http://127.0.0.1:$admin_port/metrics" 2>/dev/null |
        awk '$1 == "cmpgw_audit_fsyncs_total" { print $2; found = 1 } END { if (!found) print 0 }'
}

# measure NAME PID THREADS ARGS [scrape]: one timed cmpload run; appends a JSON line with the
# server's CPU (and the audit fsyncs of the demo cmpgw). With "scrape", /metrics is scraped during the run.
measure() {
    local name=$1 pid=$2 n=$3 c0 c1 k0 k1 out spid= f0 f1
    local -n args=$4
    if [[ ${5:-} == scrape ]]; then
        scraper &
        spid=$!
    fi
    # shellcheck disable=SC2086 # $pid may name several processes (cmpgw and its redis-server)
    read -r c0 k0 <<<"$(cpu_ticks $pid)"
    f0=$(fsyncs)
    out=$(timeout $((duration + 60)) "${cli_pin[@]}" "$load" "${args[@]}" --threads "$n" --duration "$duration" \
        2>>"$tmp/load.err") || true
    # shellcheck disable=SC2086
    read -r c1 k1 <<<"$(cpu_ticks $pid)"
    f1=$(fsyncs)
    if [[ -n $spid ]]; then
        kill "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
    fi
    [[ -n $out ]] || out='{"enrolments":0,"errors":1,"seconds":0,"rate":0,"p50_ms":0,"p99_ms":0,"max_ms":0}'
    # the run's JSON through the environment: awk -v would undo its escapes
    out=$out awk -v name="$name" -v n="$n" -v c=$((c1 - c0)) -v k=$((k1 - k0)) -v hz="$tck" -v f0="$f0" -v f1="$f1" \
        'BEGIN { printf "{\"server\":\"%s\",\"threads\":%d,\"cpu_s\":%.2f,\"sys_s\":%.2f,\"fsyncs\":%d,\"run\":%s}\n",
                        name, n, c / hz, k / hz, f1 - f0, ENVIRON["out"] }' >>"$tmp/results.jsonl"
    echo "bench: $name threads=$n $out" >&2
}

# warm NAME THREADS ARGS: untimed run (TLS session, page cache, allocator) before the rounds.
warm() {
    local -n wargs=$3
    timeout $((warmup + 60)) "${cli_pin[@]}" "$load" "${wargs[@]}" --threads "$2" --duration "$warmup" \
        >/dev/null 2>&1 || true
}

for n in 1 "$threads"; do
    warm mock "$n" mock_args
    if [[ -n $gw_pid ]]; then warm cmpgw "$n" gw_args; fi
    if [[ -n $gw_pid && $per_message == 1 ]]; then warm cmpgw-pm "$n" pm_args; fi
    if [[ -n $redis_pids ]]; then warm cmpgw+redis "$n" rgw_args; fi
    if [[ -n $alt_pids ]]; then warm cmpgw+redis-x2 "$n" alt_args; fi
    for ((r = 0; r < rounds; r++)); do
        measure mock "$mock_pid" "$n" mock_args
        if [[ -n $gw_pid ]]; then measure cmpgw "$gw_pid" "$n" gw_args; fi
        if [[ -n $gw_pid && $n == 1 ]]; then measure cmpgw-plain "$gw_pid" "$n" plain_args; fi
        if [[ -n $gw_pid && $scrape == 1 ]]; then measure cmpgw+scrape "$gw_pid" "$n" gw_args scrape; fi
        if [[ -n $gw_pid && $per_message == 1 ]]; then
            measure cmpgw-pm "$gw_pid" "$n" pm_args
            measure cmpgw-full "$gw_pid" "$n" full_args
        fi
        if [[ -n $redis_pids ]]; then measure cmpgw+redis "$redis_pids" "$n" rgw_args; fi
        if [[ -n $alt_pids ]]; then measure cmpgw+redis-x2 "$alt_pids" "$n" alt_args; fi
    done
done

# solo_config NAME PORT [ADMIN_PORT]: $pki/cmpgw-NAME.json, the demo configuration with its TLS
# listener alone on PORT, its admin listener on ADMIN_PORT (none without), and an audit log of its
# own: a second gateway beside the first.
solo_config() {
    python3 - "$pki/cmpgw.json" "$pki/cmpgw-$1.json" "$2" "audit-$1.log" "${3:-}" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg["listeners"] = cfg["listeners"][:1]
cfg["listeners"][0]["port"] = int(sys.argv[3])
if sys.argv[5]:
    cfg["admin"]["port"] = int(sys.argv[5])
else:
    cfg.pop("admin", None)
cfg["audit"]["file"] = sys.argv[4]
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
PY
}

# Open loop at half of cmpgw's highest closed-loop rate: the latency a client sees when the gateway
# is busy but not saturated (enrolments due on a fixed schedule, latency from when each was due).
if [[ -n $gw_pid ]]; then
    half=$(python3 -c '
import json, sys
rates = [json.loads(l)["run"]["rate"] for l in open(sys.argv[1]) if json.loads(l)["server"] == "cmpgw"]
print(max(1, int(max(rates, default=0) / 2)))' "$tmp/results.jsonl")
    out=$(timeout $((2 * duration + 60)) "${cli_pin[@]}" "$load" "${gw_args[@]}" --rate "$half" --threads 16 \
        --duration $((2 * duration)) 2>>"$tmp/load.err") || true
    echo "bench: open loop at $half/s $out" >&2
    [[ -n $out ]] && printf '{"half_peak_rate":%s,"run":%s}\n' "$half" "$out" >"$tmp/openloop.json"
fi

# Resident memory per idle TLS connection (BENCH_IDLE_CONNS, 0: not measured), on a cmpgw of its own
# just started: one that served the load before would place the connections in memory it freed. Its
# admin listener tells its memory and descriptors (/metrics).
if [[ -n $gw_pid && $idle_conns -gt 0 ]]; then
    idle_port=$(free_port)
    idle_admin_port=$(free_port)
    solo_config idle "$idle_port" "$idle_admin_port"
    (cd "$pki" && exec "${srv_pin[@]}" "$gw" -c "$pki/cmpgw-idle.json" >"$tmp/cmpgw-idle.log" 2>&1) &
    idle_pid=$!
    pids+=("$idle_pid")
    if wait_listen "$idle_port" "$idle_pid" && wait_listen "$idle_admin_port" "$idle_pid"; then
        python3 "$root/tests/bench/idle_conns.py" "$idle_admin_port" "$idle_port" "$pki" "$idle_conns" \
            >"$tmp/idle.json" 2>>"$tmp/load.err" ||
            echo "bench: the idle-connection measurement failed (see its error above)" >&2
    fi
    kill "$idle_pid" 2>/dev/null || true
fi

# The in-process floor: OpenSSL's CMP client and server in one process, no transport (cmpfloor).
if [[ -x $build/tests/bench/cmpfloor ]]; then
    "${srv_pin[@]}" "$build/tests/bench/cmpfloor" "$pki" 2000 >"$tmp/floor.jsonl" 2>>"$tmp/load.err" ||
        echo "bench: the in-process floor failed (see $tmp/load.err)" >&2
fi

# Instructions per enrolment (BENCH_INSTRUCTIONS enrolments, default 200; 0, or no valgrind: not
# counted): the mock and a cmpgw of its own, each under callgrind, counted from after a warm-up to a
# dump, one client thread; cmpgw also with a connection per message (sessions resumed). Repeatable
# where CPU seconds are not, but blind to the kernel's work (which counts in the CPU figures above)
# and to cache misses.
# count_instructions PORT SERVER... -- NAME=ARGS...: SERVER under callgrind, then one count per NAME
# with cmpload's ARGS (an array's name); appends {"server": NAME, "instructions": ...} for each.
count_instructions() {
    local port=$1 vpid i k=0 pass name total enr server=()
    shift
    while [[ $1 != -- ]]; do
        server+=("$1")
        shift
    done
    shift
    # LD_BIND_NOW set: cmpgw would otherwise run itself again to get it, out of valgrind's hands
    (cd "$pki" && LD_BIND_NOW=1 exec valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" "${server[@]}" \
        >"$tmp/cg-$port.log" 2>&1) &
    vpid=$!
    pids+=("$vpid")
    wait_listen "$port" "$vpid" 60 || true # valgrind takes seconds to start a server; a failure shows below
    for pass in "$@"; do
        name=${pass%%=*}
        local -n cargs=${pass#*=}
        total=
        enr=0
        timeout 300 "$load" "${cargs[@]}" --count 20 >/dev/null 2>>"$tmp/load.err" &&
            callgrind_control -z "$vpid" >/dev/null 2>&1 &&
            enr=$(timeout 600 "$load" "${cargs[@]}" --count "$instructions" 2>>"$tmp/load.err" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(0 if d["errors"] else d["enrolments"])') &&
            callgrind_control -d "$vpid" >/dev/null 2>&1 &&
            k=$((k + 1)) &&
            for ((i = 0; i < 100; i++)); do
                total=$(awk '$1 == "totals:" || $1 == "summary:" { print $2; exit }' "$tmp/cg.$vpid.$k" \
                    2>/dev/null)
                [[ -n $total ]] && break
                sleep 0.1
            done
        unset -n cargs
        if [[ -n $total && $enr -gt 0 ]]; then
            printf '{"server":"%s","enrolments":%d,"instructions":%s}\n' "$name" "$enr" "$total" \
                >>"$tmp/instructions.jsonl"
        else
            echo "bench: counting $name's instructions failed (see $tmp/cg-$port.log)" >&2
        fi
    done
    kill -9 "$vpid" 2>/dev/null || true # the dumps are written; the rest is not wanted
    wait "$vpid" 2>/dev/null || true
}
instructions=${BENCH_INSTRUCTIONS:-200}
if [[ -n $gw_pid && $instructions -gt 0 ]] && command -v valgrind callgrind_control >/dev/null; then
    cg_mock_port=$(free_port)
    cg_gw_port=$(free_port)
    solo_config callgrind "$cg_gw_port"
    cg_mock_args=(--url "http://127.0.0.1:$cg_mock_port/pkix/" --accept-any-key "${common[@]}")
    cg_gw_args=(--url "https://127.0.0.1:$cg_gw_port/pki/cmp" --cafile "$pki/ca.pem"
        --tls-cert "$pki/client.pem" --tls-key "$pki/client.key" "${common[@]}")
    cg_pm_args=("${cg_gw_args[@]}" --per-message)
    count_instructions "$cg_mock_port" openssl cmp -port "$cg_mock_port" -srv_cert signer.pem \
        -srv_key signer.key -srv_trusted ca.pem -rsp_cert client.pem -verbosity 3 -- mock=cg_mock_args
    count_instructions "$cg_gw_port" "$gw" -c "$pki/cmpgw-callgrind.json" -- cmpgw=cg_gw_args \
        cmpgw-pm=cg_pm_args
elif [[ $instructions -gt 0 ]]; then
    echo "bench: valgrind not installed; instructions not counted" >&2
fi

# Upstream latency hiding (BENCH_LATENCY_CLIENTS, 0: not measured): its own gateway in front of the
# Vault-API test server, p10cr through the vault adapter (tests/bench/latency.py).
if [[ -n $gw_pid && ${BENCH_LATENCY_CLIENTS:-512} -gt 0 ]]; then
    /usr/bin/python3 "$root/tests/bench/latency.py" "$build" "$tmp/latency.json" >"$tmp/latency.out" 2>>"$tmp/load.err" ||
        echo "bench: the latency-hiding measurement failed (see $tmp/load.err)" >&2
fi

echo
echo "## Machine"
echo
echo "- nproc: $(nproc); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "- kernel: $(uname -sr); $(openssl version); $(curl-config --version 2>/dev/null || echo libcurl)"
if ((${#srv_pin[@]})); then
    echo "- servers pinned to CPU 1, the load client to CPU 0 (BENCH_PIN=1); each measurement ${duration} s, ${rounds} A/B rounds, ir + certConf"
else
    echo "- client and servers share the machine; each measurement ${duration} s, ${rounds} A/B rounds, ir + certConf"
fi
echo
python3 - "$tmp/results.jsonl" "$tmp/idle.json" "$tmp/openloop.json" "$tmp/latency.json" "$tmp/floor.jsonl" \
    "$tmp/instructions.jsonl" <<'PY'
import json, os, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for r in rows:
    groups.setdefault((r["threads"], r["server"]), []).append(r)

def agg(rs):
    enr = sum(r["run"]["enrolments"] for r in rs)
    secs = sum(r["run"]["seconds"] for r in rs)
    rates = [r["run"]["rate"] for r in rs]
    cpu = sum(r["cpu_s"] for r in rs)
    return {
        "rate": enr / secs if secs else 0.0,
        "lo": min(rates), "hi": max(rates),
        "p50": statistics.median(r["run"]["p50_ms"] for r in rs),
        "p99": statistics.median(r["run"]["p99_ms"] for r in rs),
        "cpu_ms": 1000.0 * cpu / enr if enr else float("nan"),
        "sys_ms": 1000.0 * sum(r.get("sys_s", 0) for r in rs) / enr if enr else float("nan"),
        "client_ms": 1000.0 * sum(r["run"].get("client_cpu_s", 0) for r in rs) / enr if enr else float("nan"),
        "errors": sum(r["run"]["errors"] for r in rs),
        "enr": enr,
        "connections": sum(r["run"].get("connections", 0) for r in rs),
        "fsyncs": sum(r.get("fsyncs", 0) for r in rs),
        "resumed": sum(r["run"].get("resumed", 0) for r in rs),
    }

print("| server | client threads | enrolments/s (rounds min–max) | p50 ms | p99 ms "
      "| server CPU ms/enrolment | of it in the kernel | client CPU ms/enrolment | enrolments | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
res = {}
for (n, srv) in sorted(groups, key=lambda k: (k[0], k[1] != "mock")):
    a = res[(n, srv)] = agg(groups[(n, srv)])
    label = {"mock": "openssl cmp -port (mock, HTTP)", "cmpgw": "cmpgw (HTTPS, local issuer)",
             "cmpgw-plain": "cmpgw over plain HTTP (a plain_http listener, local issuer)",
             "cmpgw+scrape": "cmpgw, /metrics scraped every second",
             "cmpgw-pm": "cmpgw, a connection per message, TLS session resumed",
             "cmpgw-full": "cmpgw, a connection per message, full TLS handshakes",
             "cmpgw+redis": "cmpgw, shared state in redis-server (CPU of both)",
             "cmpgw+redis-x2": "two cmpgw + redis-server, each certConf on the other instance"}[srv]
    print(f"| {label} | {n} | {a['rate']:.0f} ({a['lo']:.0f}–{a['hi']:.0f}) | {a['p50']:.2f} | {a['p99']:.2f} "
          f"| {a['cpu_ms']:.2f} | {a['sys_ms']:.2f} | {a['client_ms']:.2f} | {a['enr']} | {a['errors']} |")
print()
for n in sorted({k[0] for k in res}):
    m, g = res.get((n, "mock")), res.get((n, "cmpgw"))
    pl = res.get((n, "cmpgw-plain"))
    if m and pl and m["rate"] and m["cpu_ms"]:
        print(f"- {n} client thread(s): cmpgw over plain HTTP / mock: throughput {pl['rate'] / m['rate']:.2f}x, "
              f"server CPU per enrolment {pl['cpu_ms'] / m['cpu_ms']:.2f}x (TLS costs "
              f"{g['cpu_ms'] - pl['cpu_ms'] if g else 0:.2f} ms per enrolment)")
    if m and g and m["rate"] and m["cpu_ms"] == m["cpu_ms"] and m["cpu_ms"]:
        print(f"- {n} client thread(s): cmpgw/mock throughput {g['rate'] / m['rate']:.2f}x, "
              f"server CPU per enrolment {g['cpu_ms'] / m['cpu_ms']:.2f}x, "
              f"audit fsyncs per enrolment {g['fsyncs'] / g['enr'] if g['enr'] else 0:.2f}")
    sc = res.get((n, "cmpgw+scrape"))
    if g and sc and g["rate"] and g["cpu_ms"]:
        print(f"- {n} client thread(s): scraped/unscraped cmpgw throughput {sc['rate'] / g['rate']:.3f}x, "
              f"server CPU per enrolment {sc['cpu_ms'] / g['cpu_ms']:.3f}x")
    rd = res.get((n, "cmpgw+redis"))
    if g and rd and g["rate"] and g["cpu_ms"]:
        print(f"- {n} client thread(s): redis/memory cmpgw throughput {rd['rate'] / g['rate']:.3f}x, "
              f"server CPU per enrolment {rd['cpu_ms'] / g['cpu_ms']:.3f}x, "
              f"p50 {rd['p50'] - g['p50']:+.2f} ms, p99 {rd['p99'] - g['p99']:+.2f} ms per enrolment (ir + certConf)")
    x2 = res.get((n, "cmpgw+redis-x2"))
    if rd and x2 and rd["rate"] and rd["cpu_ms"]:
        print(f"- {n} client thread(s): certConf on the other instance / same instance: throughput "
              f"{x2['rate'] / rd['rate']:.3f}x, server CPU per enrolment {x2['cpu_ms'] / rd['cpu_ms']:.3f}x, "
              f"p50 {x2['p50'] - rd['p50']:+.2f} ms (the rebuild)")
    pm, full = res.get((n, "cmpgw-pm")), res.get((n, "cmpgw-full"))
    if g and pm and full and g["cpu_ms"]:
        print(f"- {n} client thread(s): a connection per message: server CPU per enrolment "
              f"{pm['cpu_ms'] / g['cpu_ms']:.2f}x keep-alive's with resumption "
              f"({pm['resumed']} of {pm['connections']} handshakes resumed), "
              f"{full['cpu_ms'] / g['cpu_ms']:.2f}x with full handshakes")
print()
ratio = []
n_hi = max(k[0] for k in res) if res else 0
m1, g1, mh, gh = (res.get(k) for k in ((1, "mock"), (1, "cmpgw"), (n_hi, "mock"), (n_hi, "cmpgw")))
if m1 and g1 and m1["cpu_ms"]:
    ratio.append(f"cpu={g1['cpu_ms'] / m1['cpu_ms']:.2f}")
if m1 and g1 and m1["cpu_ms"] > m1["sys_ms"]:
    ratio.append(f"cpu_user={(g1['cpu_ms'] - g1['sys_ms']) / (m1['cpu_ms'] - m1['sys_ms']):.2f}")
p1 = res.get((1, "cmpgw-plain"))
if m1 and p1 and m1["cpu_ms"]:
    ratio.append(f"cpu_plain={p1['cpu_ms'] / m1['cpu_ms']:.2f}")
if mh and gh and mh["rate"]:
    ratio.append(f"throughput={gh['rate'] / mh['rate']:.2f}")
pm, full = res.get((1, "cmpgw-pm")), res.get((1, "cmpgw-full"))
if g1 and pm and full and g1["cpu_ms"]:
    ratio.append(f"per_message={pm['cpu_ms'] / g1['cpu_ms']:.2f} full_handshake={full['cpu_ms'] / g1['cpu_ms']:.2f}")
def optional(path):
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else None

ol = optional(sys.argv[3])
if ol:
    r = ol["run"]
    print(f"- open loop at half of cmpgw's peak ({ol['half_peak_rate']}/s asked, {r['rate']:.0f}/s done, "
          f"16 client threads): p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms per enrolment "
          f"(ir + certConf; the local issuer adds no delay); of it waiting for the gateway (the client's "
          f"own work taken out): p50 {r['server_p50_ms']:.2f} ms, p99 {r['server_p99_ms']:.2f} ms; {r['errors']} errors")
    ratio.append(f"half_peak_p99_ms={r['p99_ms']:.2f} half_peak_gateway_p99_ms={r['server_p99_ms']:.2f}")
idle = optional(sys.argv[2])
if idle:
    print(f"- idle TLS connections (a cmpgw just started; client certificate, one request answered): {idle['kib_per_connection']} KiB "
          f"resident each over {idle['connections']} ({idle['rss_before_kib']} -> {idle['rss_after_kib']} KiB)")
    ratio.append(f"idle_kib={idle['kib_per_connection']:.1f}")
floor = {}
if os.path.exists(sys.argv[5]):
    floor = {r["mode"]: r for r in (json.loads(l) for l in open(sys.argv[5]) if l.strip())}
if "fresh" in floor and "shared" in floor:
    fr, sh = floor["fresh"], floor["shared"]
    print(f"- in-process floor (OpenSSL's CMP client and server in one process, DER in and out, a canned "
          f"certificate): {fr['server_ms_per_enrolment']:.2f} ms of server work per enrolment with a fresh "
          f"context per transaction, {sh['server_ms_per_enrolment']:.2f} ms with a shared one "
          f"(OSSL_CMP_SRV_process_request alone: {fr['process_request_ms_per_enrolment']:.2f} ms)")
    if g1 and fr["server_ms_per_enrolment"]:
        ratio.append(f"floor={g1['cpu_ms'] / fr['server_ms_per_enrolment']:.2f}")
if os.path.exists(sys.argv[6]):
    ins = {r["server"]: r for r in (json.loads(l) for l in open(sys.argv[6]) if l.strip())}
    per = {k: r["instructions"] / r["enrolments"] for k, r in ins.items()}
    if "mock" in per and "cmpgw" in per:
        print(f"- instructions per enrolment (callgrind, every thread, one client thread, "
              f"{ins['cmpgw']['enrolments']} enrolments after a warm-up): mock {per['mock'] / 1e6:.2f} M, "
              f"cmpgw (TLS) {per['cmpgw'] / 1e6:.2f} M; the kernel's work not counted")
        ratio.append(f"instructions={per['cmpgw'] / per['mock']:.2f}")
    if "cmpgw" in per and "cmpgw-pm" in per:
        print(f"- instructions per enrolment of cmpgw with a connection per message (sessions resumed): "
              f"{per['cmpgw-pm'] / 1e6:.2f} M, {per['cmpgw-pm'] / per['cmpgw']:.2f}x keep-alive's")
        ratio.append(f"instructions_per_message={per['cmpgw-pm'] / per['cmpgw']:.2f}")
lat = optional(sys.argv[4])
if lat:
    print(f"- upstream latency hiding ({lat['clients']} clients, p10cr through the vault adapter, 16 workers): "
          f"{lat['rate_slow']:.0f}/s with Vault answering after {lat['latency_ms']} ms, {lat['rate_zero']:.0f}/s "
          f"at once; gateway threads {lat['threads_slow']} and {lat['threads_zero']}; {lat['errors']} errors; "
          f"gateway CPU per Vault enrolment (4 clients, Vault at once) {lat.get('vault_cpu_ms', 0):.2f} ms")
    ratio.append(f"latency_hiding={lat['latency_hiding']:.2f}")
print("ratio " + " ".join(ratio))
errors = sum(a["errors"] for a in res.values())
sys.exit(1 if errors else 0)
PY
