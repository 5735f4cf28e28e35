#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target of BUILD_DIR (configured with -DCMPGW_FUZZ=ON) for SECONDS,
# one after the other, on tests/fuzz/corpus/<target> as its growing corpus, with its dictionary
# (tests/fuzz/<target>.dict) if there is one and crash artifacts under tests/fuzz/crashes/<target>/.
# Prints per target the executions, the coverage (edges: libFuzzer's "cov") and the crashes found;
# exits 1 if any target crashed, leaked, timed out or ran out of memory (its log is printed).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]      (default: every fuzz_* of BUILD_DIR)
#
# FUZZ_TIMEOUT (seconds, default 10) is how long one input may take before it counts as a hang.
#
# The seeds at and past the size caps (cap_seeds.py) are made anew into BUILD_DIR/tests/fuzz/caps/, a
# second corpus directory of each target that libFuzzer reads but does not write to.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
seconds=$2
shift 2
bin=$build/tests/fuzz
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=()
    for f in "$bin"/fuzz_*; do
        [[ -x $f ]] && targets+=("$(basename "$f")")
    done
fi
[[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no fuzz targets in $bin (configure with -DCMPGW_FUZZ=ON)" >&2; exit 1; }

caps=$bin/caps
rm -rf "$caps"
/usr/bin/python3 -B "$here/cap_seeds.py" "$caps"

# The longest input a target is given: by default the largest seed's size, at least 4096 bytes, which
# keeps the inputs of the targets below short of the caps they have (base/limits.h); each gets its cap
# and room past it, where the seeds of cap_seeds.py lie.
max_len() {
    case $1 in
    fuzz_cmp_request | fuzz_cmp_signed | fuzz_cmp_shim) echo $((64 * 1024 + 1024)) ;; # GW_MAX_CMP_BODY
    # GW_MAX_UPSTREAM_BODY, GW_MAX_CONFIG_SIZE
    fuzz_vault_answer | fuzz_cfssl_answer | fuzz_config) echo $((1024 * 1024 + 1024)) ;;
    esac
}

failed=0
printf '%-18s %12s %8s %8s %8s\n' target executions edges corpus crashes
for t in "${targets[@]}"; do
    corpus=$here/corpus/$t
    crashes=$here/crashes/$t
    log=$bin/$t.log
    mkdir -p "$corpus" "$crashes"
    before=$(find "$crashes" -type f ! -name '.*' | wc -l)
    opts=(-max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1
        -artifact_prefix="$crashes/")
    [[ -f $here/$t.dict ]] && opts+=(-dict="$here/$t.dict")
    len=$(max_len "$t")
    [[ -n $len ]] && opts+=(-max_len="$len")
    dirs=("$corpus")
    [[ -d $caps/$t ]] && dirs+=("$caps/$t")
    rc=0
    "$bin/$t" "${opts[@]}" "${dirs[@]}" </dev/null >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # the last status line ("#N DONE cov: E ft: ..." or the one before a crash)
    edges=$(grep -oE '^#[0-9]+.*cov: [0-9]+' "$log" | tail -n 1 | sed 's/.*cov: //')
    found=$(($(find "$crashes" -type f ! -name '.*' | wc -l) - before))
    printf '%-18s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${edges:-?}" "$(find "$corpus" -type f | wc -l)" "$found"
    if [[ $rc -ne 0 || $found -ne 0 ]]; then
        failed=1
        echo "fuzz: $t exited $rc with $found new artifact(s) in $crashes; its log ($log) ends:" >&2
        tail -n 60 "$log" >&2
    fi
done
exit $failed
