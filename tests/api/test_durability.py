"""Durability and process life: kill -9 and restart on the same data directory, the data
directory lock, SIGTERM/SIGINT while requests are in flight."""

import http.client
import re
import signal
import threading
import time

from conftest import LISTEN_RE, STARTUP_TIMEOUT, assert_error, now_ms, wait_until


def _enqueuers(s, q, n_threads, per_thread, acked, stop, errors):
    """Threads that enqueue until told to stop; ids answered 201 go into acked, unexpected
    answers into errors (503 and dropped connections are expected while the server stops)."""

    def run(t):
        for i in range(per_thread):
            if stop.is_set():
                return
            try:
                st, body = s.post(f"/v1/queues/{q}/jobs", {"data": {"t": t, "i": i}},
                                  timeout=20)
            except (OSError, http.client.HTTPException):
                return
            if st == 201:
                acked.append((body["id"], {"t": t, "i": i}))
            elif st != 503:
                errors.append((st, body))
                return

    threads = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def test_kill9_keeps_acknowledged_jobs(server):
    s = server
    q = s.qname()
    before = [s.enqueue(q, {"n": i}, priority=i % 3)["id"] for i in range(50)]
    acked, stop, errors = [], threading.Event(), []
    threads = _enqueuers(s, q, 8, 200, acked, stop, errors)
    wait_until(lambda: len(acked) >= 100, timeout=30, what="100 acknowledged enqueues")
    s.kill9()
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    s.restart()
    for i, jid in enumerate(before):
        j = s.job(jid)
        assert j["state"] == "waiting" and j["data"] == {"n": i}
    missing = []
    for jid, data in list(acked):
        r = s.request("GET", f"/v1/jobs/{jid}")
        if r.status != 200 or r.json["data"] != data:
            missing.append((jid, r.status))
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged jobs lost: {missing[:5]}"
    # The queue still hands them out in priority order.
    first = s.fetch(q, count=3)
    assert all(j["priority"] == 2 for j in first)


def test_kill9_keeps_every_state(server):
    s = server
    q = s.qname()
    done = s.enqueue(q, "done")
    j = s.fetch_one(q)
    s.complete(j, {"out": [1, 2]})
    dead = s.enqueue(q, "dead", max_attempts=1)
    j = s.fetch_one(q)
    s.fail(j, "broken", type="bad_input")
    retrying = s.enqueue(q, "retrying", backoff={"type": "fixed", "delay_ms": 3600_000})
    j = s.fetch_one(q)
    s.fail(j, "later")
    sched = s.enqueue(q, "sched", delay_ms=3600_000)
    cancelled = s.enqueue(q, "cancelled")
    s.post(f"/v1/jobs/{cancelled['id']}/cancel")
    waiting = s.enqueue(q, "waiting", priority="high", group="g", tags={"k": "v"})
    snap = {x["id"]: s.job(x["id"]) for x in (done, dead, retrying, sched, cancelled, waiting)}
    s.kill9()
    s.restart()
    for jid, old in snap.items():
        new = s.job(jid)
        for k in ("state", "data", "priority", "attempt", "max_attempts", "result", "error",
                  "run_at", "group", "tags", "created_at", "queue"):
            assert new[k] == old[k], (old["data"], k, old[k], new[k])


def test_kill9_active_job_comes_back_waiting(server):
    s = server
    q = s.qname()
    s.enqueue(q, "a", lease_ms=600_000)
    s.enqueue(q, "b", lease_ms=600_000)
    a = s.fetch_one(q)
    s.heartbeat(a, checkpoint={"frame": 9})
    s.kill9()
    s.restart()
    j = s.job(a["id"])
    assert j["state"] == "waiting"
    assert j["attempt"] == 0
    assert j["checkpoint"] == {"frame": 9}
    assert_error(s.request("POST", f"/v1/jobs/{a['id']}/complete", {"lease": a["lease"]}), 409,
                 "lease_lost")
    assert_error(s.request("POST", f"/v1/jobs/{a['id']}/heartbeat", {"lease": a["lease"]}), 409,
                 "lease_lost")
    got = s.fetch(q, count=2)
    assert sorted(x["data"] for x in got) == ["a", "b"]
    again = [x for x in got if x["id"] == a["id"]][0]
    assert again["attempt"] == 0
    assert again["checkpoint"] == {"frame": 9}
    assert_error(s.request("POST", f"/v1/jobs/{a['id']}/complete", {"lease": a["lease"]}), 409,
                 "lease_lost")
    assert s.complete(again)["state"] == "completed"


def test_kill9_keeps_queue_settings(server):
    s = server
    q = s.qname()
    s.create_queue(q, type="RENDER", concurrency=3, max_size=77,
                   defaults={"max_attempts": 6})
    s.post(f"/v1/queues/{q}/pause")
    qid = s.queue(q)["id"]
    s.kill9()
    s.restart()
    qu = s.queue(q)
    assert qu["id"] == qid
    assert qu["status"] == "paused"
    assert qu["type"] == "RENDER"
    assert qu["concurrency"] == 3
    assert qu["max_size"] == 77
    assert qu["defaults"]["max_attempts"] == 6


def test_graceful_restart_keeps_everything(server):
    s = server
    q = s.qname()
    jobs = s.enqueue_bulk(q, [{"data": i} for i in range(20)])
    active = s.fetch_one(q)
    s.restart()
    for j in jobs[1:]:
        assert s.job(j["id"])["state"] == "waiting"
    back = s.job(active["id"])
    assert back["state"] == "waiting" and back["attempt"] == 0
    assert sorted(j["data"] for j in s.fetch(q, count=20)) == list(range(20))


def test_ids_keep_increasing_after_restart(server):
    s = server
    q = s.qname()
    a = s.enqueue(q)["id"]
    s.kill9()
    s.restart()
    b = s.enqueue(q)["id"]
    assert b > a


def test_second_server_on_same_data_dir_refuses(server):
    proc, log = server.spawn()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if "listening on" in log.read_text(errors="replace"):
            break
        time.sleep(0.02)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
        raise AssertionError(f"second jobqd on the same data dir kept running:\n"
                             f"{log.read_text(errors='replace')}")
    rc = proc.returncode
    text = log.read_text(errors="replace")
    assert rc == 1, f"exit status {rc}:\n{text}"
    assert "lock" in text.lower() or "in use" in text.lower(), text
    assert "listening on" not in text
    assert server.request("GET", "/healthz").status == 200
    assert server.enqueue(server.qname(), 1)["state"] == "waiting"


def test_creates_missing_data_dir(server_factory, tmp_path):
    d = tmp_path / "does" / "not" / "exist"
    s = server_factory(data_dir=tmp_path / "placeholder", start=False)
    s.data_dir = d
    s.start()
    q = s.qname()
    jid = s.enqueue(q, "x")["id"]
    s.kill9()
    s.restart()
    assert s.job(jid)["data"] == "x"


def _sigterm_in_flight(s, sig):
    q = s.qname()
    idle_q = s.qname()
    acked, stop, errors = [], threading.Event(), []
    parked = {}

    def park():
        try:
            parked["resp"] = s.request("POST", "/v1/fetch",
                                       {"queues": [idle_q], "wait_ms": 60000, "worker": "p"},
                                       timeout=60)
        except (OSError, http.client.HTTPException) as e:
            parked["exc"] = e

    pt = threading.Thread(target=park, daemon=True)
    pt.start()
    threads = _enqueuers(s, q, 6, 10_000, acked, stop, errors)
    wait_until(lambda: len(acked) >= 50, timeout=30, what="50 acknowledged enqueues")
    time.sleep(0.1)
    start = time.monotonic()
    rc = s.terminate(sig)
    took = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join(30)
    pt.join(30)
    assert not errors, errors[:5]
    assert rc == 0, f"exit status {rc} after {sig.name} with requests in flight:\n{s.log_text()}"
    assert took < 30, "the parked long-poll held the shutdown until its wait ran out"
    assert not pt.is_alive(), "parked fetch never answered after shutdown"
    if "resp" in parked:
        r = parked["resp"]
        assert r.status in (200, 503), r
        if r.status == 200:
            assert r.json["jobs"] == []
        else:
            assert_error(r, 503, "unavailable")
    s.start()
    lost = [jid for jid, _ in acked if s.request("GET", f"/v1/jobs/{jid}").status != 200]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged jobs lost on {sig.name}"


def test_sigterm_with_requests_in_flight(server):
    _sigterm_in_flight(server, signal.SIGTERM)


def test_sigint_with_requests_in_flight(server):
    _sigterm_in_flight(server, signal.SIGINT)


def test_restart_does_not_change_timestamps(server):
    s = server
    q = s.qname()
    j = s.enqueue(q, delay_ms=3600_000)
    t = now_ms()
    s.restart()
    k = s.job(j["id"])
    assert k["created_at"] == j["created_at"] <= t
    assert k["run_at"] == j["run_at"]
    assert k["state"] == "scheduled"


def test_serves_health_while_it_loads(server):
    """The server listens before it has read the store back: /healthz answers 200 at once,
    /readyz and the API 503 `unavailable` until every job is loaded, then all is there."""
    s = server
    q = s.qname()
    for _ in range(20):
        st, _ = s.post(f"/v1/queues/{q}/jobs", {"jobs": [{"data": i} for i in range(10000)]})
        assert st == 201
    s.kill9()
    proc, log = s.spawn()
    s.proc = proc
    s.logs.append(log)
    loading = re.compile(r"jobqd: loading \S+; serving /healthz on (\S+):(\d+)")
    m = wait_until(lambda: loading.search(log.read_text(errors="replace")), timeout=STARTUP_TIMEOUT,
                   what="the loading line")
    s.port = int(m.group(2))
    seen = {"healthz": set(), "readyz": set(), "jobs": set()}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen["healthz"].add(s.get("/healthz")[0])
        jobs = s.get(f"/v1/queues/{q}")[0]
        r = s.request("GET", "/readyz")
        seen["readyz"].add(r.status)
        if r.status == 503:  # still loading after the API request, so it came during the load
            assert r.json["error"]["code"] == "unavailable"
            seen["jobs"].add(jobs)
        if r.status == 200:
            break
    assert seen["healthz"] == {200}, seen
    assert seen["readyz"] == {503, 200}, f"never saw the recovery window: {seen}"
    assert seen["jobs"] == {503}, seen
    assert LISTEN_RE.search(log.read_text(errors="replace")), "no listening line once ready"
    assert s.get(f"/v1/queues/{q}")[1]["counts"]["waiting"] == 200000
