#!/usr/bin/env bash
# bench/run.sh BUILD_DIR - runs every benchmark and prints one table.
# The raw machine-readable lines (see bench/bench.h) are kept in
# BUILD_DIR/bench.log; the table below is made from them.
set -uo pipefail
build=${1:-build-bench}
here=$(cd "$(dirname "$0")" && pwd)
export MP_BENCH_PY_DIR="$here/py"
log="$build/bench.log"
: > "$log"
status=0
shopt -s nullglob
for exe in "$build"/bench/bench_*; do
    [ -x "$exe" ] || continue
    echo "== $(basename "$exe")" >&2
    if ! "$exe" | tee -a "$log" >&2; then
        echo "bench: $(basename "$exe") failed" >&2
        status=1
    fi
done
echo
echo "mproc benchmark table (medians of ${MP_BENCH_RUNS:-5} runs; raw lines in $log)"
awk '
function kv(s,   a, i, n, p) {
    delete f; n = split(s, a, " ")
    for (i = 2; i <= n; i++) { p = index(a[i], "="); if (p) f[substr(a[i], 1, p-1)] = substr(a[i], p+1) }
}
/^@bench / { kv($0); printf "%-14s %-24s %-22s %14s %s\n", f["bench"], f["metric"], f["impl"], f["value"], f["unit"] }
/^@rss /   { kv($0); rss[++nr] = sprintf("%-14s %-24s %-22s %14s KiB", f["bench"], "peak-rss", f["impl"], f["value"]) }
/^@ratio / { kv($0); rat[++nq] = sprintf("%-14s %-24s %s vs %s: %sx", f["bench"], f["metric"], f["impl"], f["vs"], f["value"]) }
END {
    for (i = 1; i <= nr; i++) print rss[i]
    if (nq) { print ""; print "ratios (above 1: mproc is better)" }
    for (i = 1; i <= nq; i++) print rat[i]
}' "$log"
exit $status
