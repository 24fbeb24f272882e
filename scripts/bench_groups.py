#!/usr/bin/env python3
"""bench_groups.py — sets up the w2-groups backlog on a running jobqd (untimed).

    bench_groups.py HOST:PORT QUEUE JOBS [GROUPS] [SATURATED] [PAYLOAD]

Creates QUEUE with group_concurrency 1; gives each of SATURATED groups (default 9000) two
jobs and takes one of each with a worker that never finishes them, so those groups stay at
their limit with a job waiting; then enqueues JOBS jobs spread round-robin over the other
GROUPS - SATURATED groups (default 10000 - 9000 = 1000). jobq-bench --workload w2
--no-preload then drains exactly JOBS jobs while the saturated groups stay in the queue.
Standard library only."""

import http.client
import json
import sys


def call(conn, method, path, body):
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        sys.exit(f"bench_groups: {method} {path} -> {r.status}: {data[:300]!r}")
    return json.loads(data) if data else None


def main():
    addr, queue, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    groups = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
    saturated = int(sys.argv[5]) if len(sys.argv) > 5 else 9000
    payload = int(sys.argv[6]) if len(sys.argv) > 6 else 200
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    data = {"p": "x" * max(0, payload - 8)}
    call(conn, "POST", "/v1/queues", {"name": queue, "group_concurrency": 1,
                                      "defaults": {"lease_ms": 3600000}})
    held = [{"group": f"sat-{g}", "data": data} for g in range(saturated)] * 2
    for i in range(0, len(held), 1000):
        call(conn, "POST", f"/v1/queues/{queue}/jobs", {"jobs": held[i:i + 1000]})
    taken = 0
    while taken < saturated:
        got = call(conn, "POST", "/v1/fetch", {"queues": [queue], "count": 1000,
                                                "worker": "holder"})["jobs"]
        if not got:
            sys.exit(f"bench_groups: only {taken} of {saturated} saturating jobs handed out")
        taken += len(got)
    ready = groups - saturated
    batch = []
    for i in range(jobs):
        batch.append({"group": f"g-{i % ready}", "data": data})
        if len(batch) == 1000 or i == jobs - 1:
            call(conn, "POST", f"/v1/queues/{queue}/jobs", {"jobs": batch})
            batch = []
    print(f"bench_groups: {saturated} groups at their limit, {jobs} jobs over {ready} groups",
          file=sys.stderr)


if __name__ == "__main__":
    main()
