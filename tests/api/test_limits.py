"""Fairness and limits through HTTP: groups and round-robin, tiers, the server-wide cap
(GET/PATCH /v1/config, persisted), the config file, rate limits and queue backoff, the
circuit breaker, resource-aware fetch, and the CLI's config commands."""

import json
import os
import subprocess
from pathlib import Path

from conftest import assert_error, wait_until

REPO = Path(__file__).resolve().parents[2]
JOBQ = os.environ.get("JOBQ") or str(REPO / "build" / "jobq")


def groups_of(jobs):
    return [j["group"] for j in jobs]


# ---- groups and fairness ------------------------------------------------------------------


def test_group_limit_skips_saturated_groups_and_round_robins(srv, q):
    srv.create_queue(q, group_concurrency=1)
    assert srv.queue(q)["fairness"] == "round_robin"
    srv.enqueue_bulk(q, [{"group": "big", "data": i} for i in range(30)])
    srv.enqueue_bulk(q, [{"group": f"small-{i}"} for i in range(3)])
    jobs = srv.fetch(q, count=10)
    assert sorted(groups_of(jobs)) == ["big", "small-0", "small-1", "small-2"]
    assert srv.fetch(q, count=10) == [], "every group at its limit"
    big = next(j for j in jobs if j["group"] == "big")
    srv.complete(big)
    nxt = srv.fetch(q, count=10)
    assert groups_of(nxt) == ["big"] and nxt[0]["data"] == 1


def test_round_robin_serves_a_small_group_before_a_big_backlog(srv, q):
    srv.create_queue(q, fairness="round_robin")
    srv.enqueue_bulk(q, [{"group": "big"} for _ in range(50)])
    small = srv.enqueue(q, group="small")
    assert small["position"] == 50, "position is the (priority, seq) rank"
    got = []
    while not any(j["id"] == small["id"] for j in got):
        js = srv.fetch(q, count=1)
        assert js
        got += js
        srv.complete(js[0])
    assert len(got) == 2, f"small group's job waited behind {len(got) - 1} jobs"


def test_group_limits_hold_after_a_restart(server):
    q = server.qname()
    server.create_queue(q, group_concurrency=1)
    server.enqueue_bulk(q, [{"group": g} for g in ("a", "b") for _ in range(3)])
    assert len(server.fetch(q, count=10)) == 2
    server.kill9()
    server.start()
    # the two that were active went back to waiting; still one per group
    got = server.fetch(q, count=10)
    assert sorted(groups_of(got)) == ["a", "b"]
    assert server.fetch(q, count=10) == []


def test_a_retrying_job_runs_after_its_queue_stops_grouping(srv, q):
    srv.create_queue(q, group_concurrency=1)
    srv.enqueue_bulk(q, [{"group": "a"}, {"group": "a"}, {"group": "b"}])
    a1 = srv.fetch_one(q)
    out = srv.call("POST", f"/v1/jobs/{a1['id']}/fail",
                   {"lease": a1["lease"], "error": {"message": "later"}, "retry_in_ms": 300})
    assert out["state"] == "retrying"
    assert srv.call("PATCH", f"/v1/queues/{q}", {"group_concurrency": 0})["fairness"] == "fifo"
    got = []
    wait_until(lambda: got.extend(srv.fetch(q, count=5)) or len(got) == 3, 10)
    assert a1["id"] in [j["id"] for j in got]
    assert srv.call("GET", "/healthz") is not None, "the server lives on"


def test_fairness_option_is_validated_and_shown(srv, q):
    srv.create_queue(q)
    assert srv.queue(q)["fairness"] == "fifo"
    r = srv.request("PATCH", f"/v1/queues/{q}", {"fairness": "random"})
    assert_error(r, 400, "invalid_argument", "fairness")
    assert srv.call("PATCH", f"/v1/queues/{q}", {"fairness": "round_robin"})["fairness"] == \
        "round_robin"
    assert srv.call("PATCH", f"/v1/queues/{q}", {"fairness": None})["fairness"] == "fifo"


# ---- tiers ---------------------------------------------------------------------------------


def test_shipped_tiers_limit_groups_and_set_priority(srv, q):
    free = srv.enqueue_bulk(q, [{"group": "u-free", "tier": "free"} for _ in range(3)])
    pro = srv.enqueue_bulk(q, [{"group": "u-pro", "tier": "pro"} for _ in range(8)])
    explicit = srv.enqueue(q, group="u-free2", tier="free", priority="urgent")
    assert free[0]["priority"] == -10 and pro[0]["priority"] == 10
    assert explicit["priority"] == 20, "an explicit priority wins over the tier's"
    jobs = srv.fetch(q, count=50)
    g = groups_of(jobs)
    assert g.count("u-free") == 1 and g.count("u-pro") == 5 and g.count("u-free2") == 1
    assert jobs[0]["id"] == explicit["id"]


def test_queue_group_concurrency_and_tier_take_the_smaller(srv, q):
    srv.create_queue(q, group_concurrency=3)
    srv.enqueue_bulk(q, [{"group": "acme", "tier": "enterprise"} for _ in range(12)])
    assert len(srv.fetch(q, count=50)) == 3


# ---- /v1/config ----------------------------------------------------------------------------


def test_config_get_shows_shipped_tiers(srv):
    c = srv.call("GET", "/v1/config")
    assert c["tiers"]["free"] == {"group_concurrency": 1, "priority": -10}
    assert c["tiers"]["enterprise"] == {"group_concurrency": 10, "priority": 20}
    assert c["max_active_jobs"] == 0


def test_max_active_jobs_applies_at_once_and_persists(server):
    qa, qb = server.qname(), server.qname()
    for _ in range(5):
        server.enqueue(qa)
        server.enqueue(qb)
    c = server.call("PATCH", "/v1/config", {"max_active_jobs": 2})
    assert c["max_active_jobs"] == 2 and c["runtime"] == {"max_active_jobs": 2}
    got = server.fetch([qa, qb], count=10)
    assert len(got) == 2
    assert server.call("GET", "/v1/config")["active_jobs"] == 2
    # a parked fetch is served when the cap goes up
    server.call("PATCH", "/v1/config", {"max_active_jobs": 3})
    assert len(server.fetch([qa, qb], count=10)) == 1
    server.restart()
    assert server.call("GET", "/v1/config")["max_active_jobs"] == 3
    # the three that were active went back to waiting at restart: three again, no more
    assert len(server.fetch([qa, qb], count=10)) == 3
    assert server.fetch([qa, qb], count=10) == []
    c = server.call("PATCH", "/v1/config", {"max_active_jobs": None})
    assert c["max_active_jobs"] == 0 and c["runtime"] == {}
    assert len(server.fetch([qa, qb], count=10)) == 7


def test_config_patch_tiers_and_bad_input(srv, q):
    c = srv.call("PATCH", "/v1/config", {"tiers": {"studio": {"group_concurrency": 2,
                                                              "priority": "high"}}})
    assert c["tiers"]["studio"] == {"group_concurrency": 2, "priority": 10}
    try:
        srv.enqueue_bulk(q, [{"group": "s1", "tier": "studio"} for _ in range(4)])
        assert len(srv.fetch(q, count=10)) == 2
    finally:
        c = srv.call("PATCH", "/v1/config", {"tiers": {"studio": None}})
    assert "studio" not in c["tiers"]
    for body, field in [({"max_active_jobs": -1}, "max_active_jobs"),
                        ({"max_active_jobs": "3"}, "max_active_jobs"),
                        ({"tiers": {"x": {"group_concurrency": -1}}}, "tiers.x.group_concurrency"),
                        ({"tiers": {"x": {"priority": "soon"}}}, "tiers.x.priority"),
                        ({"tiers": []}, "tiers"),
                        ({"bogus": 1}, "bogus")]:
        assert_error(srv.request("PATCH", "/v1/config", body), 400, "invalid_argument", field)


SEED_002 = {
    "max_active_jobs": 40,
    "tiers": {
        "free": {"group_concurrency": 1, "priority": "low"},
        "basic": {"group_concurrency": 2, "priority": "normal"},
        "pro": {"group_concurrency": 5, "priority": "high"},
        "enterprise": {"group_concurrency": 10, "priority": "urgent"},
    },
    "queues": {
        "video-generation": {"concurrency": 2},
        "script-generation": {"concurrency": 5},
        "scene-creation": {"concurrency": 3},
        "audio-synthesis": {"concurrency": 3, "rate_limit": {"max": 100, "per_ms": 60000}},
        "image-generation": {"concurrency": 5},
        "world-building": {"concurrency": 2},
        "content-analysis": {"concurrency": 10},
        "video-composition": {"concurrency": 1},
        "personalization": {"concurrency": 5},
        "ai-processing": {"concurrency": 3,
                          "circuit_breaker": {"failures": 5, "cooldown_ms": 30000}},
    },
}


def test_config_file_expresses_the_seed_table(server_factory, tmp_path):
    path = tmp_path / "jobq.json"
    path.write_text(json.dumps(SEED_002))
    s = server_factory(["--config", str(path), "--tier", "pro=7/urgent"])
    c = s.call("GET", "/v1/config")
    assert c["max_active_jobs"] == 40
    assert c["tiers"]["pro"] == {"group_concurrency": 7, "priority": 20}, "flags over the file"
    assert c["tiers"]["free"] == {"group_concurrency": 1, "priority": -10}
    for name, opts in SEED_002["queues"].items():
        got = s.queue(name)
        assert got["concurrency"] == opts["concurrency"], name
    assert s.queue("audio-synthesis")["rate_limit"] == {"max": 100, "per_ms": 60000}
    jobs = s.enqueue_bulk("video-generation", [{"group": f"u{i}"} for i in range(5)])
    assert len(jobs) == 5 and len(s.fetch("video-generation", count=10)) == 2
    # a runtime PATCH wins over the file, across a restart, until it is dropped
    s.call("PATCH", "/v1/config", {"max_active_jobs": 4})
    s.restart()
    assert s.call("GET", "/v1/config")["max_active_jobs"] == 4
    assert s.call("PATCH", "/v1/config", {"max_active_jobs": None})["max_active_jobs"] == 40


def test_bad_config_file_stops_the_server(server_factory, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"tiers": {"free": {"group_concurrency": "one"}}}))
    s = server_factory(["--config", str(path)], start=False)
    proc, log = s.spawn()
    assert proc.wait(10) == 1
    assert "tiers.free.group_concurrency" in log.read_text()


def test_bad_tier_flag_stops_the_server(server_factory):
    for arg in ["pro=5/", "pro=5/4294967306", "pro=5/loud", "pro=", "=5"]:
        s = server_factory(["--tier", arg], start=False)
        proc, log = s.spawn()
        assert proc.wait(10) != 0, arg
        assert "--tier" in log.read_text(), arg


def test_config_file_partial_alert_keeps_the_queues_other_thresholds(server_factory, tmp_path):
    path = tmp_path / "jobq.json"
    path.write_text(json.dumps({"queues": {"renders": {"alert": {"backlog": 7}}}}))
    s = server_factory(["--config", str(path)])
    s.call("PATCH", "/v1/queues/renders", {"alert": {"paused_ms": 5000, "idle_ms": 6000,
                                                     "utilization": 50,
                                                     "processing_p95_ms": 7000}})
    s.restart()  # the file applies again, as a PATCH naming only "backlog"
    alert = s.queue("renders")["alert"]
    assert alert["backlog"] == 7
    assert (alert["paused_ms"], alert["idle_ms"], alert["processing_p95_ms"]) == (5000, 6000, 7000)
    assert alert["utilization"] == 50


# ---- rate limits and backoff ---------------------------------------------------------------


def test_rate_limit_caps_dispatch_and_a_parked_fetch_wakes_when_it_opens(srv, q):
    srv.create_queue(q, rate_limit={"max": 3, "per_ms": 1000})
    srv.enqueue_bulk(q, [{} for _ in range(6)])
    first = srv.fetch(q, count=10)
    assert len(first) == 3
    t0 = max(j["started_at"] for j in first)
    second = srv.fetch(q, count=10, wait_ms=5000)
    assert 1 <= len(second) <= 3, "the parked fetch woke when the window opened"
    assert min(j["started_at"] for j in second) >= min(j["started_at"] for j in first) + 1000
    assert min(j["started_at"] for j in second) >= t0


def test_rate_window_outlives_a_restart(server):
    server.create_queue("tts", rate_limit={"max": 2, "per_ms": 60000})
    server.enqueue_bulk("tts", [{} for _ in range(4)])
    for j in server.fetch("tts", count=10):
        server.complete(j)
    server.restart()
    assert server.fetch("tts", count=10) == [], "2 started in the last minute"
    server.call("PATCH", "/v1/queues/tts", {"rate_limit": {"max": 3, "per_ms": 60000}})
    assert len(server.fetch("tts", count=10)) == 1, "room for one more in the window"


def test_rate_limit_error_with_queue_backoff_pauses_the_queue(srv, q):
    srv.enqueue_bulk(q, [{} for _ in range(2)])
    j = srv.fetch_one(q)
    body = {"lease": j["lease"], "error": {"message": "429", "type": "rate_limit"},
            "retry_in_ms": 1200, "queue_backoff": True}
    out = srv.call("POST", f"/v1/jobs/{j['id']}/fail", body)
    assert out["state"] == "retrying" and out["attempt"] == 0
    assert srv.fetch(q, count=5) == [], "the whole queue waits"
    got = srv.fetch(q, count=5, wait_ms=5000)
    assert got and min(x["started_at"] for x in got) >= out["updated_at"] + 1200
    r = srv.request("POST", f"/v1/jobs/{got[0]['id']}/fail",
                    {"lease": got[0]["lease"], "error": {"message": "x"}, "queue_backoff": 1})
    assert_error(r, 400, "invalid_argument", "queue_backoff")


# ---- circuit breaker -----------------------------------------------------------------------


def test_circuit_breaker_opens_probes_once_and_closes(srv, q):
    srv.create_queue(q, circuit_breaker={"failures": 2, "cooldown_ms": 500},
                     defaults={"max_attempts": 10, "backoff": {"type": "fixed", "delay_ms": 0}})
    srv.enqueue_bulk(q, [{} for _ in range(5)])
    for j in srv.fetch(q, count=2):
        srv.fail(j, type="provider", message="provider down")
    got = srv.queue(q)
    assert got["status"] == "error"
    assert got["breaker"]["state"] == "open" and got["breaker"]["failures"] == 2
    assert got["breaker"]["trial_at"] >= got["last_error_at"] + 500
    assert srv.fetch(q, count=5) == []
    trial = srv.fetch(q, count=5, wait_ms=5000)
    assert len(trial) == 1, "half-open: exactly one trial"
    assert srv.fetch(q, count=5) == []
    srv.fail(trial[0], type="provider", message="still down")
    assert srv.queue(q)["status"] == "error"
    trial = srv.fetch(q, count=5, wait_ms=5000)
    assert len(trial) == 1
    assert srv.queue(q)["breaker"]["state"] == "half_open"
    srv.complete(trial[0])
    assert srv.queue(q)["status"] == "active"
    assert srv.queue(q)["breaker"] == {"state": "closed", "failures": 0, "trial_at": None}
    rest = srv.fetch(q, count=10)
    assert len(rest) == 4
    waiting_attempts = sorted(j["attempt"] for j in rest)
    assert waiting_attempts == [0, 0, 0, 1], "jobs held back spent no attempts"


# ---- resources -----------------------------------------------------------------------------


def test_fetch_capacity_hands_out_only_what_fits(srv, q):
    big = srv.enqueue(q, requires={"gpu": 2, "vram_mb": 40000}, priority="high")
    small = srv.enqueue(q, requires={"gpu": 1, "vram_mb": 16000})
    plain = srv.enqueue(q)
    got = srv.fetch(q, count=5, worker="gpu-box", capacity={"gpu": 1, "vram_mb": 24000})
    assert [j["id"] for j in got] == [small["id"], plain["id"]], "the big job does not fit"
    got = srv.fetch(q, count=5, worker="gpu-box", capacity={"gpu": 1, "vram_mb": 24000})
    assert got == [], "its gpu is taken by the small job"
    other = srv.fetch(q, count=5, worker="big-box", capacity={"gpu": 4, "vram_mb": 96000})
    assert [j["id"] for j in other] == [big["id"]]
    for bad in ({"gpu": -1}, [], {"gpu": "1"}):
        r = srv.request("POST", "/v1/fetch", {"queues": [q], "capacity": bad})
        assert_error(r, 400, "invalid_argument", "capacity")


def test_parked_fetch_with_capacity_wakes_when_capacity_frees(srv, q):
    a = srv.enqueue(q, requires={"gpu": 1})
    b = srv.enqueue(q, requires={"gpu": 1})
    cap = {"gpu": 1}
    first = srv.fetch(q, worker="box", capacity=cap)
    assert [j["id"] for j in first] == [a["id"]]
    import threading
    result = {}

    def park():
        result["jobs"] = srv.fetch(q, worker="box", capacity=cap, wait_ms=5000)

    t = threading.Thread(target=park)
    t.start()
    wait_until(lambda: srv.job(b["id"])["state"] == "waiting", what="b waiting")
    srv.complete(first[0])
    t.join(10)
    assert [j["id"] for j in result["jobs"]] == [b["id"]]


# ---- CLI -----------------------------------------------------------------------------------


def cli(server, *args):
    r = subprocess.run([JOBQ, "--url", f"http://127.0.0.1:{server.port}"] + list(args),
                       capture_output=True, text=True, timeout=30)
    return r


def test_cli_config_get_and_set(server):
    r = cli(server, "config", "set", "--max-active-jobs", "5", "--tier", "studio=3/high")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["max_active_jobs"] == 5 and c["tiers"]["studio"] == {"group_concurrency": 3,
                                                                   "priority": 10}
    r = cli(server, "config", "get")
    assert r.returncode == 0 and json.loads(r.stdout)["max_active_jobs"] == 5
    r = cli(server, "config", "set", "--max-active-jobs", "none", "--drop-tier", "studio")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["max_active_jobs"] == 0 and "studio" not in c["tiers"]
    r = cli(server, "config", "set", "--tier", "nonsense")
    assert r.returncode == 2
    q = server.qname()
    r = cli(server, "queue", "create", q, "--fairness", "round_robin", "--circuit-breaker",
            "5/30000", "--group-concurrency", "2")
    assert r.returncode == 0, r.stderr
    got = server.queue(q)
    assert got["fairness"] == "round_robin"
    assert got["circuit_breaker"] == {"failures": 5, "cooldown_ms": 30000}


def test_cli_worker_capacity_runs_only_what_fits(server, tmp_path):
    """A worker with 3 slots but one gpu runs the gpu jobs one at a time."""
    q = server.qname()
    ids = [server.enqueue(q, requires={"gpu": 1})["id"] for _ in range(3)]
    script = tmp_path / "job.sh"
    script.write_text('date +%s%N > "$T_DIR/start.$JOBQ_JOB_ID"\nsleep 0.3\n'
                      'date +%s%N > "$T_DIR/end.$JOBQ_JOB_ID"\n')
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen([JOBQ, "--url", f"http://127.0.0.1:{server.port}", "worker",
                             "--queue", q, "--concurrency", "3", "--capacity", '{"gpu": 1}',
                             "--exec", f"sh {script}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                            env=dict(os.environ, T_DIR=str(tmp_path)))
    try:
        wait_until(lambda: all(server.state(i) == "completed" for i in ids), timeout=20,
                   what="all three jobs completed")
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    spans = sorted((int((tmp_path / f"start.{i}").read_text()),
                    int((tmp_path / f"end.{i}").read_text())) for i in ids)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert s1 >= e0, "two gpu jobs ran at once on a one-gpu worker"


def test_websocket_worker_capacity(srv, q):
    import websocket
    big = srv.enqueue(q, requires={"gpu": 2})
    small = srv.enqueue(q, requires={"gpu": 1})
    other = srv.enqueue(q, requires={"gpu": 1})
    ws = websocket.create_connection(f"ws://{srv.host}:{srv.port}/v1/worker", timeout=10)
    try:
        ws.send(json.dumps({"op": "fetch", "id": 1, "queues": [q], "credit": 5,
                            "worker": "ws-gpu", "capacity": {"gpu": 1}}))
        pushed = []
        while True:
            m = json.loads(ws.recv())
            if m["op"] == "fetch":
                break
            pushed.append(m["job"])
        assert [j["id"] for j in pushed] == [small["id"]], "one gpu: one 1-gpu job, never big"
        j = pushed[0]
        ws.send(json.dumps({"op": "complete", "id": 2, "job": j["id"], "lease": j["lease"]}))
        got = None  # the complete's reply and the next push may come in either order
        while got is None or got["op"] != "job":
            got = json.loads(ws.recv())
        assert got["job"]["id"] == other["id"], "its gpu free again: the next job that fits"
        ws.send(json.dumps({"op": "fetch", "id": 3, "capacity": {"gpu": -1}}))
        while True:
            m = json.loads(ws.recv())
            if m.get("id") == 3:
                break
        assert m["op"] == "error" and m["id"] == 3, m
        assert m["error"]["details"]["field"] == "capacity", m
    finally:
        ws.close()
    assert srv.job(big["id"])["state"] == "waiting"
