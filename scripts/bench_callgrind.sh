#!/usr/bin/env bash
# bench_callgrind.sh — server instructions (callgrind) for one w2 drain, the load excluded.
#
#   scripts/bench_callgrind.sh BUILD_DIR plain|groups|sse [JOBS]
#
# Starts BUILD_DIR/jobqd under valgrind --tool=callgrind on a fresh data dir, loads JOBS
# (default 10000) jobs (plain: w1-bulk into one queue; groups: scripts/bench_groups.py, 9,000
# of 10,000 groups at their limit), zeroes the counters, drains the backlog with jobq-bench
# w2 (sse: with $SSE, default 10, /v1/events subscribers attached), and prints {"workload","jobs","instructions","per_job"} for the drain (both server
# threads). Wall-clock numbers on a shared VM move by 20%; instruction counts move by ~1%
# (group-commit batch sizes vary).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BUILD_DIR plain|groups|sse [JOBS]" >&2; exit 2; }
BUILD=$(cd "$1" && pwd)
MODE=$2
N=${3:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/jobq-cg.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$BUILD/jobqd" \
    --listen 127.0.0.1:0 --data "$TMP/data" 2>"$TMP/log" &
VP=$!
for _ in $(seq 600); do grep -q "listening on" "$TMP/log" && break; sleep 0.1; done
ADDR=$(grep -o 'listening on [^ ]*' "$TMP/log" | cut -d' ' -f3)
Q=cg-$MODE
if [ "$MODE" = groups ]; then
    python3 "$HERE/bench_groups.py" "$ADDR" "$Q" "$N" 10000 9000 200
else
    "$BUILD/jobq-bench" --url "http://$ADDR" --workload w1-bulk --jobs "$N" --queue "$Q" \
        --conns 4 >/dev/null
fi
sleep 1 # the last batch of the load is durable
callgrind_control -z "$VP" >/dev/null
EXTRA=()
[ "$MODE" = sse ] && EXTRA=(--sse "${SSE:-10}")
"$BUILD/jobq-bench" --url "http://$ADDR" --workload w2 --jobs "$N" --queue "$Q" --no-preload \
    --stall-s 600 "${EXTRA[@]}" >/dev/null
callgrind_control -d "$VP" >/dev/null
kill -TERM "$VP"
wait "$VP" || true
IR=$(callgrind_annotate "$TMP/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "{\"workload\":\"w2-$MODE\",\"jobs\":$N,\"instructions\":$IR,\"per_job\":$((IR / N))}"
