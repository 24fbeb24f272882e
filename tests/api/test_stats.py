"""Stats, series, daily aggregates, health and Prometheus metrics against a known workload
(docs/metrics.md): counts and rates exactly, timings within bounds the test measured itself,
health transitions driven by short alert thresholds, /metrics parsed and checked by
`promtool check metrics`, and today's daily numbers across a clean restart and a kill -9."""

import json
import re
import shutil
import sqlite3
import subprocess
import threading
import time

from conftest import assert_error, now_ms, wait_until

HOLD_S = 0.3  # how long the workload's jobs run


def run_workload(s, q, worker="w-stats"):
    """10 jobs: 5 run at once (concurrency 5) for HOLD_S, 4 complete and 1 fails for good;
    then 5 more complete at once. Returns (hold times in ms as the client saw them, stats
    taken while the first 5 ran)."""
    s.create_queue(q, concurrency=5, max_size=100)
    s.enqueue_bulk(q, [{"data": {"n": i}} for i in range(10)])
    first = s.fetch(q, count=10, worker=worker)
    assert len(first) == 5, "concurrency 5 hands out 5"
    started = time.monotonic()
    busy = s.call("GET", f"/v1/queues/{q}/stats")
    workers = s.call("GET", "/v1/workers")["workers"]
    time.sleep(HOLD_S)
    holds = []
    for j in first[:4]:
        s.complete(j, {"ok": True})
        holds.append((time.monotonic() - started) * 1000)
    s.fail(first[4], "broken input", retryable=False)
    rest = s.fetch(q, count=10, worker=worker)
    assert len(rest) == 5
    for j in rest:
        s.complete(j)
    return holds, busy, workers


def test_stats_known_workload(server):
    s = server
    q = s.qname("stats")
    holds, busy, workers = run_workload(s, q)

    # while 5 of 5 ran: utilization, queue utilization, the worker
    assert busy["utilization_percent"] == 100
    assert busy["queue_utilization_percent"] == 5  # 5 waiting of max_size 100
    assert busy["counts"]["active"] == 5 and busy["counts"]["waiting"] == 5
    assert busy["active_workers"] == 1
    w = [x for x in workers if x["id"] == "w-stats"]
    assert len(w) == 1 and w[0]["queues"] == [q] and w[0]["active_jobs"] == 5
    assert now_ms() - 10000 < w[0]["last_seen_at"] <= now_ms()

    st = s.call("GET", f"/v1/queues/{q}/stats")
    assert st["counts"]["completed"] == 9 and st["counts"]["failed"] == 1
    assert (st["enqueued"], st["processed"], st["failed"], st["retried"]) == (10, 9, 1, 0)
    assert st["success_rate"] == 90 and st["error_rate"] == 10
    assert st["last_15m"] == {"enqueued": 10, "completed": 9, "failed": 1, "error_rate": 10}
    assert st["utilization_percent"] == 0
    assert st["queue_utilization_percent"] == 0
    assert st["throughput_per_min"] > 0

    # processing: 4 jobs ran at least HOLD_S, 5 ran for next to nothing
    p = st["processing_ms"]
    assert p["count"] == 9
    assert p["p50"] < HOLD_S * 1000, p  # the 5 quick ones are the median
    assert HOLD_S * 1000 * 31 / 32 <= p["p95"] <= max(holds) + 50, (p, holds)
    assert p["p99"] == p["p95"]  # nearest rank of 9 samples: both the largest
    assert 4 * HOLD_S * 1000 / 9 <= p["avg"] <= (sum(holds) + 5 * 1000) / 9, p
    wt = st["wait_ms"]
    assert wt["count"] == 10
    assert wt["p95"] >= HOLD_S * 1000 * 31 / 32, wt  # the second five waited for the first

    total = s.call("GET", "/v1/stats")
    assert q in total["queues"] and total["queues"][q]["processed"] == 9
    t = total["total"]
    assert t["processed"] == 9 and t["failed"] == 1 and t["enqueued"] == 10
    assert t["processing_ms"]["count"] == 9 and t["wait_ms"]["count"] == 10
    assert t["active_workers"] == 1
    assert total["uptime_ms"] > 0

    # the series: every count of the workload in the last few minutes
    def series(metric, minutes=5, queue=q):
        r = s.call("GET", f"/v1/stats/series?queue={queue}&metric={metric}&minutes={minutes}")
        assert r["metric"] == metric and r["minutes"] == minutes
        assert len(r["points"]) == minutes
        ats = [pt["at"] for pt in r["points"]]
        assert ats == sorted(ats) and all(b - a == 60000 for a, b in zip(ats, ats[1:]))
        assert ats[-1] <= now_ms() < ats[-1] + 60000 + 5000
        return [pt["value"] for pt in r["points"]]

    assert sum(series("completed")) == 9
    assert sum(series("failed")) == 1
    assert sum(series("enqueued")) == 10
    assert series("waiting")[-1] == 0
    p95s = [v for v in series("processing_p95") if v is not None]
    assert p95s and max(p95s) >= HOLD_S * 1000 * 31 / 32
    r = s.call("GET", "/v1/stats/series?metric=completed&minutes=5")
    assert r["queue"] is None and sum(pt["value"] for pt in r["points"]) == 9
    assert len(s.call("GET", f"/v1/stats/series?queue={q}")["points"]) == 60  # the defaults

    # today's daily line
    d = s.call("GET", f"/v1/stats/daily?queue={q}")
    assert len(d["days"]) == 1
    day = d["days"][0]
    assert day["day"] == time.strftime("%Y-%m-%d", time.gmtime(now_ms() / 1000))
    assert (day["queue"], day["enqueued"], day["completed"], day["failed"]) == (q, 10, 9, 1)
    assert day["processing_ms"]["count"] == 9
    assert day["processing_ms"]["p95"] == p["p95"]


def test_series_and_daily_bad_arguments(srv, q):
    srv.create_queue(q)
    for path, field in [("/v1/stats/series?metric=bogus", "metric"),
                        ("/v1/stats/series?metric=processing_p95", "queue"),
                        (f"/v1/stats/series?queue={q}&minutes=0", "minutes"),
                        (f"/v1/stats/series?queue={q}&minutes=1441", "minutes"),
                        (f"/v1/stats/series?queue={q}&minutes=x", "minutes"),
                        ("/v1/stats/daily?days=0", "days"),
                        ("/v1/stats/daily?days=367", "days")]:
        r = srv.request("GET", path)
        assert_error(r, 400, "invalid_argument", field)
        if field in ("minutes", "days"):  # the range said is the one accepted
            assert "from 1 to" in r.json["error"]["message"], r.json
    assert_error(srv.request("GET", "/v1/stats/series?queue=no-such-queue"), 404, "not_found")
    assert_error(srv.request("GET", "/v1/stats/daily?queue=no-such-queue"), 404, "not_found")
    # a queue without any activity: zeros, unknowns, no days
    r = srv.call("GET", f"/v1/stats/series?queue={q}&metric=processing_p95&minutes=3")
    assert [pt["value"] for pt in r["points"]] == [None, None, None]
    assert srv.call("GET", f"/v1/stats/daily?queue={q}&days=90") == {"days": []}


# ---- health -------------------------------------------------------------------------------


def health_of(s, q):
    h = s.call("GET", "/v1/health")
    return h, h["queues"][q]


def test_health_transitions(server):
    s = server
    q = s.qname("health")
    s.create_queue(q, alert={"backlog": 2, "paused_ms": 300, "error_rate": 30})
    h, me = health_of(s, q)
    assert me == {"status": "healthy", "reasons": []}
    assert (h["status"], h["healthy"], h["total"], h["overloaded"], h["errors"], h["store"]) == \
        ("healthy", 1, 1, 0, 0, "ok")

    s.enqueue_bulk(q, [{}, {}, {}])
    h, me = health_of(s, q)
    assert me["status"] == "degraded" and h["status"] == "degraded"
    assert len(me["reasons"]) == 1 and me["reasons"][0].startswith("backlog:"), me
    assert h["overloaded"] == 1 and h["healthy"] == 0

    # one failure of two ended jobs: 50% > 30%
    a, b = s.fetch(q, count=2)
    s.complete(a)
    s.fail(b, retryable=False)
    h, me = health_of(s, q)
    assert me["status"] == "degraded"
    assert [r.split(":")[0] for r in me["reasons"]] == ["error_rate"], me
    assert h["overloaded"] == 0

    # paused longer than paused_ms
    s.create_queue(q + "-p", alert={"paused_ms": 1000})
    s.call("POST", f"/v1/queues/{q}-p/pause")
    assert health_of(s, q + "-p")[1]["status"] == "healthy"
    me = wait_until(lambda: (lambda m: m if m["status"] == "degraded" else None)(
        health_of(s, q + "-p")[1]), timeout=10, what="paused queue degraded")
    assert me["reasons"][0].startswith("paused:"), me
    s.call("POST", f"/v1/queues/{q}-p/resume")
    assert health_of(s, q + "-p")[1] == {"status": "healthy", "reasons": []}


def test_health_idle_and_seed_rules(server_factory):
    # a short sweep interval, so the idle rule sees the waiting start quickly
    s = server_factory(["--health-interval-ms", "100"])
    q = s.qname("idle")
    s.create_queue(q, concurrency=1,
                   alert={"idle_ms": 1000, "utilization": 50, "processing_p95_ms": 200})
    s.enqueue_bulk(q, [{}, {}])
    me = wait_until(lambda: (lambda m: m if m["status"] == "degraded" else None)(
        health_of(s, q)[1]), timeout=10, what="idle queue degraded")
    assert [r.split(":")[0] for r in me["reasons"]] == ["idle"], me
    j = s.fetch_one(q)
    me = health_of(s, q)[1]
    assert "utilization" in [r.split(":")[0] for r in me["reasons"]], me
    time.sleep(0.3)  # the job runs longer than processing_p95_ms
    s.complete(j)
    me = health_of(s, q)[1]
    assert [r.split(":")[0] for r in me["reasons"]] == ["processing_p95"], me


def test_alert_options_validated_and_patched(srv, q):
    qu = srv.create_queue(q)
    assert qu["alert"] == {"backlog": 100, "error_rate": 10, "paused_ms": 3600000,
                           "idle_ms": 1800000, "utilization": None, "processing_p95_ms": None}
    for bad, field in [({"backlog": -1}, "backlog"), ({"error_rate": 101}, "error_rate"),
                       ({"utilization": "high"}, "utilization"), ({"paused_ms": 1.5}, "paused_ms"),
                       ({"processing_p95_ms": -2}, "processing_p95_ms"), ({"bogus": 1}, "bogus"),
                       ([], "alert")]:
        assert_error(srv.request("PATCH", f"/v1/queues/{q}", {"alert": bad}), 400,
                     "invalid_argument", field)
    qu = srv.call("PATCH", f"/v1/queues/{q}", {"alert": {"utilization": 90,
                                                         "processing_p95_ms": 7200000}})
    assert qu["alert"]["utilization"] == 90 and qu["alert"]["processing_p95_ms"] == 7200000
    qu = srv.call("PATCH", f"/v1/queues/{q}", {"alert": {"backlog": 50}})
    assert qu["alert"]["backlog"] == 50 and qu["alert"]["utilization"] == 90, "partial keeps"
    qu = srv.call("PATCH", f"/v1/queues/{q}", {"alert": {"utilization": None}})
    assert qu["alert"]["utilization"] is None and qu["alert"]["backlog"] == 50


# ---- Prometheus ---------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([^}]*)\})? (\S+)$')


def parse_metrics(text):
    """{name: {"type", "help", "samples": [(labels dict, value)]}}, checking the layout."""
    fams, cur = {}, None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in fams, f"family {name} twice"
            fams[name] = cur = {"help": help_, "type": None, "samples": []}
            cur["name"] = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert cur and cur["name"] == name, f"TYPE without HELP: {line}"
            cur["type"] = typ
        else:
            m = SAMPLE.match(line)
            assert m, f"bad sample line {line!r}"
            name, labels = m.group(1), {}
            for part in filter(None, (m.group(3) or "").split(",")):
                k, _, v = part.partition("=")
                labels[k] = v.strip('"')
            base = re.sub(r"_(bucket|sum|count)$", "", name) if cur["type"] == "histogram" \
                else name
            assert base == cur["name"], f"sample {name} outside its family {cur['name']}"
            cur["samples"].append((name, labels, float(m.group(4))))
    return fams


def value(fams, fam, name=None, **labels):
    got = [v for n, lb, v in fams[fam]["samples"]
           if n == (name or fam) and all(lb.get(k) == x for k, x in labels.items())]
    assert len(got) == 1, f"{fam} {labels}: {got}"
    return got[0]


def test_metrics_exposition(server):
    s = server
    q = s.qname("prom")
    run_workload(s, q)
    r = s.request("GET", "/metrics")
    assert r.status == 200
    assert r.header("Content-Type").startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    fams = parse_metrics(text)
    assert fams["jobq_jobs"]["type"] == "gauge"
    assert value(fams, "jobq_jobs", queue=q, state="completed") == 9
    assert value(fams, "jobq_jobs", queue=q, state="failed") == 1
    assert value(fams, "jobq_jobs", queue=q, state="waiting") == 0
    for fam, v in [("jobq_jobs_enqueued_total", 10), ("jobq_jobs_completed_total", 9),
                   ("jobq_jobs_failed_total", 1), ("jobq_jobs_retried_total", 0),
                   ("jobq_jobs_stalled_total", 0)]:
        assert fams[fam]["type"] == "counter"
        assert value(fams, fam, queue=q) == v, fam
    for fam, n in [("jobq_job_processing_seconds", 9), ("jobq_job_wait_seconds", 10)]:
        assert fams[fam]["type"] == "histogram"
        buckets = [(lb["le"], v) for nm, lb, v in fams[fam]["samples"]
                   if nm == fam + "_bucket" and lb["queue"] == q]
        les = [float(le) for le, _ in buckets]
        assert les[0] == 0.1 and les[-2] == 14400 and les[-1] == float("inf"), les
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        assert counts[-1] == n == value(fams, fam, fam + "_count", queue=q)
    # 4 jobs ran at least HOLD_S: above the 0.25 s bucket, all within 10 s
    le = {lb["le"]: v for nm, lb, v in fams["jobq_job_processing_seconds"]["samples"]
          if nm.endswith("_bucket") and lb["queue"] == q}
    assert le["0.25"] == 5 and le["10"] == 9, le
    assert value(fams, "jobq_job_processing_seconds", "jobq_job_processing_seconds_sum",
                 queue=q) >= 4 * HOLD_S * 31 / 32
    assert value(fams, "jobq_queue_status", queue=q, status="active") == 1
    assert value(fams, "jobq_queue_status", queue=q, status="paused") == 0
    assert value(fams, "jobq_queue_health", queue=q) == 0  # 10% failed: not over alert.error_rate
    assert value(fams, "jobq_workers") == 1
    assert value(fams, "jobq_uptime_seconds") > 0
    assert value(fams, "jobq_store_up") == 1

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/deps.sh installs Debian's prometheus"
    p = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_metrics_empty_server_is_valid(server):
    r = server.request("GET", "/metrics")
    fams = parse_metrics(r.body.decode())
    assert fams["jobq_jobs"]["samples"] == []
    assert value(fams, "jobq_store_up") == 1
    p = subprocess.run([shutil.which("promtool") or "promtool", "check", "metrics"], input=r.body,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


# ---- daily across restarts ----------------------------------------------------------------


def today_line(s, q):
    d = s.call("GET", f"/v1/stats/daily?queue={q}&days=1")["days"]
    return d[0] if d else None


def stored_today(s, q):
    """[enqueued, completed, failed] of today's `daily` document of q in the store, or None."""
    db = sqlite3.connect(f"file:{s.data_dir / 'jobq.db'}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute("SELECT body FROM docs WHERE kind = 'daily'").fetchall()
    finally:
        db.close()
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for (body,) in rows:
        d = json.loads(body)
        if d["queue"] == q and d["day"] == day:
            return [d["enqueued"], d["completed"], d["failed"]]
    return None


def test_daily_survives_clean_restart(server):
    s = server
    q = s.qname("daily")
    run_workload(s, q)
    before = today_line(s, q)
    s.restart()
    after = today_line(s, q)
    assert after == before, (before, after)
    # and goes on counting
    s.enqueue(q, {})
    s.complete(s.fetch_one(q))
    again = today_line(s, q)
    assert (again["enqueued"], again["completed"]) == (11, 10)


def test_daily_survives_kill9_after_a_flush(server_factory):
    s = server_factory(["--stats-flush-ms", "100"])
    q = s.qname("daily9")
    run_workload(s, q)
    before = today_line(s, q)
    # the flush runs every 100 ms on the server's loop: wait until the store holds today's
    # document with these numbers (read from the SQLite file, as a second reader)
    wait_until(lambda: stored_today(s, q) == [before[k] for k in ("enqueued", "completed",
                                                                     "failed")],
               timeout=10, what="today's numbers flushed to the store")
    s.kill9()
    s.start()
    after = today_line(s, q)
    assert after == before, (before, after)


# ---- health.changed -------------------------------------------------------------------------


def test_health_changed_reaches_a_webhook(server_factory):
    from test_webhooks import Receiver  # the webhook tests' recording HTTP server

    rec = Receiver().start()
    try:
        s = server_factory(["--health-interval-ms", "100"])
        q = s.qname("hc")
        s.create_queue(q, alert={"paused_ms": 200})
        s.call("POST", "/v1/webhooks", {"url": rec.url + "/h", "events": ["health.changed"]},
               201)
        s.call("POST", f"/v1/queues/{q}/pause")
        ev = rec.wait(1, type="health.changed")[0]["json"]
        assert (ev["queue"], ev["status"], ev["previous"]) == (q, "degraded", "healthy"), ev
        assert ev["reasons"][0].startswith("paused:"), ev
        assert isinstance(ev["seq"], int) and ev["at"] > 0
        s.call("POST", f"/v1/queues/{q}/resume")
        ev = rec.wait(2, type="health.changed")[1]["json"]
        assert (ev["queue"], ev["status"], ev["previous"], ev["reasons"]) == \
            (q, "healthy", "degraded", []), ev
    finally:
        rec.stop()


# ---- the CLI ------------------------------------------------------------------------------


def test_cli_stats_series_daily_health(srv, q):
    import json
    import os
    from pathlib import Path

    jobq = os.environ.get("JOBQ") or str(Path(__file__).resolve().parents[2] / "build" / "jobq")

    def cli(*args):
        return subprocess.run([jobq, "--url", srv.url, *args], capture_output=True, text=True,
                              timeout=30)

    srv.enqueue(q, {})
    srv.complete(srv.fetch_one(q))
    r = cli("stats", "--series", "completed", "--queue", q, "--minutes", "3")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "completed" and len(out["points"]) == 3
    assert sum(p["value"] for p in out["points"]) == 1
    r = cli("stats", "--daily", "--queue", q, "--days", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["days"][0]["completed"] == 1
    r = cli("health")
    assert r.returncode == 0 and json.loads(r.stdout)["queues"][q]["status"] == "healthy"
    r = cli("stats", "--series", "bogus")
    assert r.returncode == 1 and "metric" in r.stderr
    r = cli("stats", "--series", "completed", "--daily")
    assert r.returncode == 2
    r = cli("stats", "--minutes", "0", "--series", "completed")
    assert r.returncode == 2
