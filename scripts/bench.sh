#!/usr/bin/env bash
# bench.sh — run jobq-bench workloads, each against a fresh jobqd (run by `make bench`).
#
#   scripts/bench.sh BUILD_DIR                 the six workloads (w1-seq … w3)
#   scripts/bench.sh BUILD_DIR w2 w3 …         only these workloads
#   scripts/bench.sh BUILD_DIR w2-sse          w2 with $SSE (default 10) event-stream
#                                              subscribers attached (docs/events.md)
#   scripts/bench.sh BUILD_DIR extra           RSS per waiting job, restart time and w2 drain
#                                              rate with a 1M-job backlog vs 10k
#   scripts/bench.sh BUILD_DIR all             both
#   scripts/bench.sh BUILD_DIR w2-groups       w2 on a queue with 10,000 groups of which
#                                              9,000 are at their limit (vs plain w2)
#
# Environment: JOBS (default 100000), W3_JOBS (default: JOBS capped at 2000),
# EXTRA_JOBS (default 1000000), PAYLOAD (default 200 bytes), SSE (default 10).
# Each workload gets its own server on 127.0.0.1:0 with a new data dir (removed after),
# pinned to CPU 0; the client runs on CPU 1. One JSON line per result on stdout; server logs
# and progress on stderr. Exits non-zero if any workload or measurement failed.
set -uo pipefail

usage() {
    echo "usage: $0 BUILD_DIR [all|extra|w1-seq|w1-pipe|w1-bulk|w2|w2-single|w3|w2-groups|w2-sse ...]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "bench: no directory $1" >&2; exit 2; }
shift
JOBQD=$BUILD/jobqd
BENCH=$BUILD/jobq-bench
for f in "$JOBQD" "$BENCH"; do
    [ -x "$f" ] || { echo "bench: $f is missing (make $f)" >&2; exit 2; }
done

JOBS=${JOBS:-100000}
W3_JOBS=${W3_JOBS:-$(( JOBS < 2000 ? JOBS : 2000 ))}
EXTRA_JOBS=${EXTRA_JOBS:-1000000}
PAYLOAD=${PAYLOAD:-200}
SSE=${SSE:-10}
WORKLOADS=(w1-seq w1-pipe w1-bulk w2 w2-single w3)

SERVER_CPU=(taskset -c 0)
CLIENT_CPU=(taskset -c 1)
if [ "$(nproc 2>/dev/null || echo 1)" -lt 2 ] || ! command -v taskset >/dev/null; then
    echo "bench: fewer than 2 CPUs or no taskset: server and client are not pinned" >&2
    SERVER_CPU=()
    CLIENT_CPU=()
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/jobq-bench.XXXXXX")
SPID=""   # the running jobqd
SDATA=""  # its data dir
SLOG=""   # its stderr
SADDR=""  # HOST:PORT it listens on
FAILED=0

cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
        kill -KILL "$SPID" 2>/dev/null
        wait "$SPID" 2>/dev/null
    fi
    [ -n "$SDATA" ] && rm -rf "$SDATA"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }

show_log() {
    echo "bench: last lines of the server's log ($1):" >&2
    tail -n 20 "$SLOG" | sed 's/^/  | /' >&2
}

# launch DATA LISTEN: start jobqd in the background (does not wait for it to serve).
launch() {
    SDATA=$1
    SLOG=$TMP/jobqd.$(date +%s%N).log
    "${SERVER_CPU[@]}" "$JOBQD" --listen "$2" --data "$SDATA" 2>"$SLOG" &
    SPID=$!
}

# await_listen TIMEOUT_S: wait for the "listening on" line; sets SADDR. 0 or 1.
await_listen() {
    local deadline=$(( $(date +%s) + $1 )) line
    while :; do
        line=$(grep -m1 -o 'jobqd: listening on [^ ]*' "$SLOG" 2>/dev/null)
        if [ -n "$line" ]; then
            SADDR=${line#jobqd: listening on }
            return 0
        fi
        if ! kill -0 "$SPID" 2>/dev/null; then
            wait "$SPID"
            echo "bench: jobqd exited with status $? before serving" >&2
            show_log "start"
            SPID=""
            return 1
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "bench: jobqd did not say 'listening on' within $1 s" >&2
            show_log "start"
            return 1
        fi
        sleep 0.005
    done
}

# start_server: fresh data dir, port 0; waits until it serves.
start_server() {
    launch "$(mktemp -d "$TMP/data.XXXXXX")" 127.0.0.1:0
    await_listen 60
}

# stop_server: SIGTERM, wait up to 30 s (then SIGKILL), remove the data dir.
stop_server() {
    local t0 rc
    [ -n "$SPID" ] || return 0
    t0=$(now_ns)
    kill -TERM "$SPID" 2>/dev/null
    for _ in $(seq 600); do
        kill -0 "$SPID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$SPID" 2>/dev/null; then
        echo "bench: jobqd did not exit within 30 s of SIGTERM; killed" >&2
        show_log "stop"
        kill -KILL "$SPID" 2>/dev/null
        FAILED=1
    fi
    wait "$SPID"
    rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench: jobqd exited with status $rc after SIGTERM ($(ms_since "$t0") ms)" >&2
        show_log "stop"
        FAILED=1
    fi
    SPID=""
    rm -rf "$SDATA"
    SDATA=""
}

# client ARGS…: run jobq-bench pinned against the running server; prints its line.
client() {
    "${CLIENT_CPU[@]}" "$BENCH" --url "http://$SADDR" --payload "$PAYLOAD" "$@"
}

# labelled NAME LINE: a jobq-bench line with "measure":NAME in front.
labelled() {
    printf '%s\n' "$2" | sed "s/^{/{\"measure\":\"$1\",/"
}

vmrss_kb() {
    awk '/^VmRSS:/ {print $2}' "/proc/$SPID/status"
}

run_workload() {
    local w=$1 n=$JOBS out extra=()
    [ "$w" = w3 ] && n=$W3_JOBS
    if [ "$w" = w2-sse ]; then
        w=w2
        extra=(--sse "$SSE")
    fi
    echo "bench: $1, $n jobs" >&2
    start_server || { FAILED=1; return; }
    if out=$(client --workload "$w" --jobs "$n" "${extra[@]}"); then
        printf '%s\n' "$out"
    else
        echo "bench: $w failed" >&2
        show_log "$w"
        FAILED=1
    fi
    stop_server
}

# w2-groups: the w2 drain on a grouped queue (group_concurrency 1) with 10,000 groups, 9,000
# of them at their limit with a job waiting, the JOBS backlog spread over the other 1,000.
run_w2_groups() {
    local q=bench-groups-$$ out
    echo "bench: w2-groups, $JOBS jobs, 9000 of 10000 groups at their limit" >&2
    start_server || { FAILED=1; return; }
    if ! /usr/bin/env python3 "$(dirname "$0")/bench_groups.py" "$SADDR" "$q" "$JOBS" 10000 9000 \
        "$PAYLOAD"; then
        echo "bench: w2-groups: setup failed" >&2
        show_log "w2-groups setup"
        FAILED=1
        stop_server
        return
    fi
    if out=$(client --workload w2 --jobs "$JOBS" --queue "$q" --no-preload); then
        printf '%s\n' "$out" | sed 's/"workload":"w2"/"workload":"w2-groups"/'
    else
        echo "bench: w2-groups failed" >&2
        show_log "w2-groups"
        FAILED=1
    fi
    stop_server
}

# extra: RSS per waiting job and restart time with EXTRA_JOBS live jobs, then w2 drain rate
# with an EXTRA_JOBS backlog vs a 10k one.
run_extra() {
    local q=bench-extra-$$ out before after t0 port ppid listen_ms=""
    echo "bench: extra: loading $EXTRA_JOBS jobs" >&2
    start_server || { FAILED=1; return; }
    before=$(vmrss_kb)
    if ! out=$(client --workload w1-bulk --jobs "$EXTRA_JOBS" --conns 4 --queue "$q"); then
        echo "bench: extra: load failed" >&2
        show_log "load"
        FAILED=1
        stop_server
        return
    fi
    after=$(vmrss_kb)
    labelled "load_${EXTRA_JOBS}" "$out"
    awk -v b="$before" -v a="$after" -v n="$EXTRA_JOBS" -v p="$PAYLOAD" 'BEGIN {
        per = (a - b) * 1024 / n
        printf "{\"measure\":\"rss_per_waiting_job\",\"jobs\":%d,\"rss_before_kb\":%d," \
               "\"rss_after_kb\":%d,\"bytes_per_job\":%.1f,\"overhead_bytes_per_job\":%.1f}\n",
               n, b, a, per, per - p }'

    echo "bench: extra: kill -9 with $EXTRA_JOBS live jobs, restart on the same data" >&2
    kill -KILL "$SPID"
    wait "$SPID" 2>/dev/null
    port=${SADDR##*:}
    t0=$(now_ns)
    launch "$SDATA" "127.0.0.1:$port"
    "$BENCH" --url "http://127.0.0.1:$port" --wait-ready --t0-ns "$t0" --stall-s 600 \
        >"$TMP/ready" &
    ppid=$!
    while kill -0 "$ppid" 2>/dev/null; do
        if [ -z "$listen_ms" ] && grep -q 'jobqd: listening on' "$SLOG"; then
            listen_ms=$(ms_since "$t0")
        fi
        if ! kill -0 "$SPID" 2>/dev/null; then
            kill "$ppid" 2>/dev/null
            break
        fi
        sleep 0.005
    done
    if wait "$ppid"; then
        [ -n "$listen_ms" ] || listen_ms=$(ms_since "$t0")
        sed "s/^{/{\"measure\":\"restart\",\"jobs\":$EXTRA_JOBS,\"listening_ms\":$listen_ms,/" \
            "$TMP/ready"
        SADDR=127.0.0.1:$port
        echo "bench: extra: draining the recovered backlog (checks that all jobs survived)" >&2
        if out=$(client --workload w2 --jobs "$EXTRA_JOBS" --queue "$q" --no-preload); then
            labelled "w2_after_restart_${EXTRA_JOBS}" "$out"
        else
            echo "bench: extra: draining the recovered backlog failed" >&2
            show_log "drain after restart"
            FAILED=1
        fi
    else
        echo "bench: extra: restarted jobqd did not become ready" >&2
        show_log "restart"
        FAILED=1
    fi
    stop_server

    for n in "$EXTRA_JOBS" 10000; do
        echo "bench: extra: w2 with a backlog of $n" >&2
        start_server || { FAILED=1; continue; }
        if out=$(client --workload w2 --jobs "$n"); then
            labelled "w2_backlog_$n" "$out"
        else
            echo "bench: extra: w2 with a backlog of $n failed" >&2
            show_log "w2 $n"
            FAILED=1
        fi
        stop_server
    done
}

[ $# -gt 0 ] || set -- "${WORKLOADS[@]}"
for arg in "$@"; do
    case $arg in
    all)
        for w in "${WORKLOADS[@]}"; do run_workload "$w"; done
        run_extra
        ;;
    extra) run_extra ;;
    w1-seq | w1-pipe | w1-bulk | w2 | w2-single | w3 | w2-sse) run_workload "$arg" ;;
    w2-groups) run_w2_groups ;;
    *) usage ;;
    esac
done
exit "$FAILED"
