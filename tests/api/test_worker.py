"""Worker protocol: fetch (incl. long-poll), leases, heartbeats, stalls, timeouts, retries and
backoff, rate_limit errors, checkpoints, dead letters, ack batches, logs, workers list."""

import json
import socket
import threading
import time

from conftest import assert_error, now_ms, raw_request


def _retry_delay_window(srv, job, **fail_kw):
    """Fail job; return (answer, lo, hi) where the server's delay lies in run_at-hi..run_at-lo."""
    t0 = now_ms()
    out = srv.fail(job, **fail_kw)
    t1 = now_ms()
    return out, out["run_at"] - t1 - 5, out["run_at"] - t0 + 5


def _assert_delay(srv, job, expected, **fail_kw):
    out, lo, hi = _retry_delay_window(srv, job, **fail_kw)
    assert out["state"] == "retrying", out
    assert lo <= expected <= hi, f"retry delay: run_at implies {lo}..{hi} ms, want {expected}"
    return out


# ---- fetch --------------------------------------------------------------------------------


def test_fetch_hands_out_a_leased_job(srv, q):
    job = srv.enqueue(q, {"k": 1}, lease_ms=20000)
    t0 = now_ms()
    got = srv.fetch_one(q, worker="host-a:42")
    t1 = now_ms()
    assert got["id"] == job["id"]
    assert got["data"] == {"k": 1}
    assert got["state"] == "active"
    assert got["attempt"] == 0
    assert isinstance(got["lease"], str) and got["lease"]
    assert t0 + 20000 - 5 <= got["lease_expires_at"] <= t1 + 20000 + 5
    assert got["worker"] == "host-a:42"
    assert t0 - 5 <= got["started_at"] <= t1 + 5
    j = srv.job(job["id"])
    assert j["state"] == "active" and j["worker"] == "host-a:42"
    assert srv.fetch(q) == []


def test_fetch_single_queue_field(srv, q):
    srv.enqueue(q, "x")
    st, body = srv.post("/v1/fetch", {"queue": q, "worker": "w"})
    assert st == 200, body
    assert [j["data"] for j in body["jobs"]] == ["x"]


def test_fetch_defaults_to_one_job(srv, q):
    srv.enqueue_bulk(q, [{"data": i} for i in range(3)])
    st, body = srv.post("/v1/fetch", {"queues": [q]})
    assert st == 200, body
    assert len(body["jobs"]) == 1


def test_fetch_unknown_queue_is_empty(srv, q):
    start = time.monotonic()
    assert srv.fetch([q, srv.qname()], count=5) == []
    assert time.monotonic() - start < 5


def test_fetch_count_up_to_1000(srv, q):
    srv.enqueue_bulk(q, [{"data": i} for i in range(1001)])
    got = srv.fetch(q, count=1000)
    assert len(got) == 1000
    assert [j["data"] for j in got] == list(range(1000))
    assert len({j["lease"] for j in got}) == 1000
    assert_error(srv.request("POST", "/v1/fetch", {"queues": [q], "count": 1001}), 400,
                 "invalid_argument", "count")
    assert [j["data"] for j in srv.fetch(q, count=10)] == [1000]


def test_fetch_across_queues(srv):
    a, b = srv.qname(), srv.qname()
    srv.enqueue(a, "a1")
    srv.enqueue(b, "b1")
    got = srv.fetch([a, b], count=10)
    assert sorted(j["data"] for j in got) == ["a1", "b1"]
    assert {j["queue"] for j in got} == {a, b}


# ---- long-poll ----------------------------------------------------------------------------


def _parked_fetch(srv, queues, wait_ms, out, key="jobs", worker="parked"):
    def run():
        start = time.monotonic()
        try:
            out[key] = srv.fetch(queues, wait_ms=wait_ms, worker=worker)
        finally:
            out[key + "_t"] = time.monotonic()
        out[key + "_elapsed"] = out[key + "_t"] - start

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_long_poll_returns_when_job_arrives(srv, q):
    out = {}
    t = _parked_fetch(srv, [q], 20000, out)
    time.sleep(0.3)
    assert t.is_alive(), f"fetch did not park: {out}"
    sent = time.monotonic()
    job = srv.enqueue(q, "wake")
    t.join(25)
    assert not t.is_alive()
    assert [j["id"] for j in out["jobs"]] == [job["id"]]
    assert out["jobs_t"] - sent < 5, "long-poll did not return promptly after the enqueue"


def test_long_poll_across_queues(srv):
    a, b, c = srv.qname(), srv.qname(), srv.qname()
    out = {}
    t = _parked_fetch(srv, [a, b, c], 20000, out)
    time.sleep(0.3)
    assert t.is_alive()
    sent = time.monotonic()
    srv.enqueue(c, "in-c")
    t.join(25)
    assert [j["data"] for j in out["jobs"]] == ["in-c"]
    assert out["jobs"][0]["queue"] == c
    assert out["jobs_t"] - sent < 5


def test_long_poll_returns_when_scheduled_job_is_due(srv, q):
    job = srv.enqueue(q, "soon", delay_ms=500)
    out = {}
    t = _parked_fetch(srv, [q], 20000, out)
    t.join(25)
    assert [j["id"] for j in out["jobs"]] == [job["id"]]
    assert now_ms() >= job["run_at"]
    assert out["jobs_elapsed"] < 10


def test_long_poll_times_out_empty(srv, q):
    start = time.monotonic()
    assert srv.fetch(q, wait_ms=400) == []
    assert time.monotonic() - start >= 0.35, "fetch with wait_ms returned before the wait"


def test_long_poll_several_parked_each_get_one(srv, q):
    outs = [{} for _ in range(3)]
    threads = [_parked_fetch(srv, [q], 20000, o, worker=f"w{i}") for i, o in enumerate(outs)]
    time.sleep(0.3)
    srv.enqueue_bulk(q, [{"data": i} for i in range(3)])
    for t in threads:
        t.join(25)
    got = [o["jobs"] for o in outs]
    assert all(len(g) == 1 for g in got), got
    assert sorted(g[0]["data"] for g in got) == [0, 1, 2]


def test_parked_client_that_leaves_is_dropped(srv, q):
    body = json.dumps({"queues": [q], "wait_ms": 30000, "worker": "gone"}).encode()
    req = (f"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    gone = raw_request(srv.port, req)
    time.sleep(0.3)  # parked first, so it is first in line
    out = {}
    t = _parked_fetch(srv, [q], 20000, out, worker="stays")
    time.sleep(0.3)
    gone.shutdown(socket.SHUT_RDWR)
    gone.close()
    time.sleep(0.5)
    job = srv.enqueue(q, "for-the-living")
    t.join(25)
    assert [j["id"] for j in out.get("jobs", [])] == [job["id"]], \
        f"job went to the client that left: {srv.job(job['id'])}"
    assert srv.job(job["id"])["worker"] == "stays"


def test_parked_client_that_leaves_does_not_take_next_job(srv, q):
    body = json.dumps({"queues": [q], "wait_ms": 30000, "worker": "gone"}).encode()
    req = (f"POST /v1/fetch HTTP/1.1\r\nHost: x\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    gone = raw_request(srv.port, req)
    time.sleep(0.3)
    gone.close()
    time.sleep(0.5)
    job = srv.enqueue(q, "x")
    time.sleep(0.2)
    assert srv.job(job["id"])["state"] == "waiting"
    assert srv.fetch_one(q, worker="later")["id"] == job["id"]


# ---- complete / leases --------------------------------------------------------------------


def test_complete(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    t0 = now_ms()
    done = srv.complete(job, {"text": "ok"})
    t1 = now_ms()
    assert done["state"] == "completed"
    assert done["result"] == {"text": "ok"}
    assert t0 - 5 <= done["finished_at"] <= t1 + 5
    assert srv.job(job["id"])["result"] == {"text": "ok"}


def test_complete_is_idempotent_for_the_same_lease(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    srv.complete(job, 1)
    again = srv.complete(job, 1)
    assert again["state"] == "completed"
    assert srv.job(job["id"])["result"] == 1


def test_wrong_lease_is_lease_lost(srv, q):
    srv.enqueue(q)
    srv.enqueue(q)
    a = srv.fetch_one(q)
    b = srv.fetch_one(q)
    for verb, extra in (("complete", {}), ("fail", {"error": {"message": "x"}}),
                        ("heartbeat", {}), ("progress", {"percent": 5})):
        body = {"lease": b["lease"], **extra}
        assert_error(srv.request("POST", f"/v1/jobs/{a['id']}/{verb}", body), 409, "lease_lost")
        body = {"lease": "not-a-lease", **extra}
        assert_error(srv.request("POST", f"/v1/jobs/{a['id']}/{verb}", body), 409, "lease_lost")
    assert srv.state(a["id"]) == "active"
    assert srv.complete(a)["state"] == "completed"


def test_verbs_on_finished_job_are_lease_lost(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    srv.complete(job)
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/fail",
                             {"lease": job["lease"], "error": {"message": "late"}}),
                 409, "lease_lost")
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/heartbeat", {"lease": job["lease"]}),
                 409, "lease_lost")
    assert srv.state(job["id"]) == "completed"


def test_verbs_on_unknown_job_404(srv):
    for verb in ("complete", "heartbeat"):
        assert_error(srv.request("POST", f"/v1/jobs/no-such-job/{verb}", {"lease": "x"}), 404,
                     "not_found")


def test_heartbeat_extends_lease(srv, q):
    srv.enqueue(q, lease_ms=400)
    job = srv.fetch_one(q)
    t0 = now_ms()
    hb = srv.heartbeat(job, extend_ms=3000)
    t1 = now_ms()
    assert t0 + 3000 - 5 <= hb["lease_expires_at"] <= t1 + 3000 + 5
    assert hb["cancel_requested"] is False
    time.sleep(0.8)
    assert srv.state(job["id"]) == "active"
    t0 = now_ms()
    hb = srv.heartbeat(job)  # default extension: the job's lease_ms
    t1 = now_ms()
    assert t0 + 400 - 5 <= hb["lease_expires_at"] <= t1 + 400 + 5
    assert srv.complete(job)["state"] == "completed"


def test_heartbeats_keep_job_alive(srv, q):
    srv.enqueue(q, lease_ms=300)
    job = srv.fetch_one(q)
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        srv.heartbeat(job)
        time.sleep(0.08)
    assert srv.state(job["id"]) == "active"
    assert srv.complete(job)["state"] == "completed"


def test_lease_expiry_stalls_back_to_waiting(srv, q):
    job = srv.enqueue(q, lease_ms=300)
    f = srv.fetch_one(q)
    j = srv.wait_state(job["id"], "waiting", timeout=10)
    assert j["attempt"] == 0
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/complete", {"lease": f["lease"]}),
                 409, "lease_lost")
    again = srv.fetch_one(q)
    assert again["id"] == job["id"]
    assert again["attempt"] == 0
    assert again["lease"] != f["lease"]
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/heartbeat", {"lease": f["lease"]}),
                 409, "lease_lost")
    assert srv.complete(again)["state"] == "completed"


def test_stalls_beyond_max_stalls_fail(srv, q):
    job = srv.enqueue(q, lease_ms=300)
    srv.fetch_one(q)
    srv.wait_state(job["id"], "waiting", timeout=10)  # stall 1 of max_stalls 1
    srv.fetch_one(q)
    j = srv.wait_state(job["id"], ("failed", "waiting"), timeout=10)
    assert j["state"] == "failed"
    assert j["error"]["type"] == "stalled"


def test_max_stalls_queue_option(srv, q):
    srv.create_queue(q, max_stalls=0)
    job = srv.enqueue(q, lease_ms=300)
    srv.fetch_one(q)
    j = srv.wait_state(job["id"], ("failed", "waiting"), timeout=10)
    assert j["state"] == "failed"
    assert j["error"]["type"] == "stalled"

    q2 = srv.qname()
    srv.create_queue(q2, max_stalls=2)
    job = srv.enqueue(q2, lease_ms=300)
    for _ in range(2):
        srv.fetch_one(q2)
        j = srv.wait_state(job["id"], ("waiting", "failed"), timeout=10)
        assert j["state"] == "waiting"
    srv.fetch_one(q2)
    j = srv.wait_state(job["id"], ("failed", "waiting"), timeout=10)
    assert j["state"] == "failed" and j["error"]["type"] == "stalled"


def test_timeout_fails_attempt(srv, q):
    job = srv.enqueue(q, timeout_ms=300, lease_ms=30000, max_attempts=1)
    f = srv.fetch_one(q)
    j = srv.wait_state(job["id"], ("failed", "completed", "waiting"), timeout=10)
    assert j["state"] == "failed"
    assert j["error"]["type"] == "timeout"
    assert j["attempt"] == 1
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/complete", {"lease": f["lease"]}),
                 409, "lease_lost")


def test_timeout_holds_despite_heartbeats_and_is_retried(srv, q):
    job = srv.enqueue(q, timeout_ms=400, lease_ms=300, max_attempts=2,
                      backoff={"type": "fixed", "delay_ms": 60000})
    f = srv.fetch_one(q)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = srv.request("POST", f"/v1/jobs/{job['id']}/heartbeat", {"lease": f["lease"]})
        if r.status != 200:
            assert_error(r, 409, "lease_lost")
            break
        time.sleep(0.05)
    j = srv.job(job["id"])
    assert j["state"] == "retrying", j
    assert j["attempt"] == 1
    assert j["error"]["type"] == "timeout"


# ---- fail / retries / backoff -------------------------------------------------------------


def test_fixed_backoff(srv, q):
    srv.enqueue(q, max_attempts=3, backoff={"type": "fixed", "delay_ms": 300})
    j = srv.fetch_one(q)
    out = _assert_delay(srv, j, 300, message="one")
    assert out["attempt"] == 1
    assert out["error"]["message"] == "one"
    assert srv.fetch(q) == []
    assert srv.job(j["id"])["state"] == "retrying"
    j = srv.fetch_until(q, timeout=10)
    assert j["attempt"] == 1
    out = _assert_delay(srv, j, 300, message="two")
    assert out["attempt"] == 2
    j = srv.fetch_until(q, timeout=10)
    out = srv.fail(j, "three")
    assert out["state"] == "failed"
    assert out["attempt"] == 3
    assert out["error"]["message"] == "three"


def test_exponential_backoff(srv, q):
    srv.enqueue(q, max_attempts=4,
                backoff={"type": "exponential", "delay_ms": 100, "factor": 3, "jitter": 0})
    j = srv.fetch_one(q)
    _assert_delay(srv, j, 100)
    j = srv.fetch_until(q, timeout=10)
    _assert_delay(srv, j, 300)
    j = srv.fetch_until(q, timeout=10)
    _assert_delay(srv, j, 900)
    j = srv.fetch_until(q, timeout=10)
    assert srv.fail(j)["state"] == "failed"


def test_exponential_backoff_max_ms(srv, q):
    srv.enqueue(q, max_attempts=3,
                backoff={"type": "exponential", "delay_ms": 200, "factor": 10, "max_ms": 500})
    j = srv.fetch_one(q)
    _assert_delay(srv, j, 200)
    j = srv.fetch_until(q, timeout=10)
    _assert_delay(srv, j, 500)


def test_list_backoff_last_entry_repeats(srv, q):
    srv.enqueue(q, max_attempts=5, backoff={"type": "list", "delays_ms": [100, 250]})
    j = srv.fetch_one(q)
    _assert_delay(srv, j, 100)
    for _ in range(2):
        j = srv.fetch_until(q, timeout=10)
        _assert_delay(srv, j, 250)


def test_retry_in_ms_overrides_backoff(srv, q):
    srv.enqueue(q, backoff={"type": "fixed", "delay_ms": 60000})
    j = srv.fetch_one(q)
    _assert_delay(srv, j, 200, retry_in_ms=200)
    assert srv.fetch_until(q, timeout=10)["id"] == j["id"]


def test_retrying_job_has_no_position(srv, q):
    srv.enqueue(q, backoff={"type": "fixed", "delay_ms": 60000})
    j = srv.fetch_one(q)
    srv.fail(j)
    got = srv.job(j["id"])
    assert got["state"] == "retrying"
    assert got["position"] is None


def test_not_retryable_fails_at_once(srv, q):
    srv.enqueue(q, max_attempts=5)
    j = srv.fetch_one(q)
    out = srv.fail(j, "bad input", retryable=False, type="validation", details={"f": "x"})
    assert out["state"] == "failed"
    assert out["attempt"] == 1
    assert out["error"]["message"] == "bad input"
    assert out["error"]["type"] == "validation"
    assert out["error"]["retryable"] is False
    assert out["error"]["details"] == {"f": "x"}
    assert srv.fetch(q) == []


def test_rate_limit_error_does_not_spend_attempt(srv, q):
    srv.enqueue(q, max_attempts=1)
    j = srv.fetch_one(q)
    for _ in range(2):
        out = _assert_delay(srv, j, 250, message="429 from provider", type="rate_limit",
                            retry_in_ms=250)
        assert out["attempt"] == 0
        j = srv.fetch_until(q, timeout=10)
        assert j["attempt"] == 0
    out = srv.fail(j, "real")
    assert out["state"] == "failed" and out["attempt"] == 1


# ---- progress and checkpoints -------------------------------------------------------------


def test_progress(srv, q):
    srv.enqueue(q, lease_ms=500)
    j = srv.fetch_one(q)
    t0 = now_ms()
    st, body = srv.post(f"/v1/jobs/{j['id']}/progress",
                        {"lease": j["lease"], "percent": 45.5, "stage": "Analyzing",
                         "message": "frame 10/22", "eta_ms": 1200, "data": {"frame": 10}})
    t1 = now_ms()
    assert st == 200, body
    assert body["cancel_requested"] is False
    assert t0 + 500 - 5 <= body["lease_expires_at"] <= t1 + 500 + 5
    p = srv.job(j["id"])["progress"]
    assert p["percent"] == 45.5
    assert p["stage"] == "Analyzing"
    assert p["message"] == "frame 10/22"
    assert p["eta_ms"] == 1200
    assert p["data"] == {"frame": 10}


def test_progress_bad_input(srv, q):
    srv.enqueue(q)
    j = srv.fetch_one(q)
    for bad in (101, -1, "half"):
        assert_error(srv.request("POST", f"/v1/jobs/{j['id']}/progress",
                                 {"lease": j["lease"], "percent": bad}),
                     400, "invalid_argument", "percent")
    assert_error(srv.request("POST", f"/v1/jobs/{j['id']}/progress",
                             {"lease": j["lease"], "percent": 1, "colour": "red"}),
                 400, "invalid_argument", "colour")


def test_checkpoint_handed_to_next_attempt(srv, q):
    srv.enqueue(q, backoff={"type": "fixed", "delay_ms": 50})
    j = srv.fetch_one(q)
    assert j["checkpoint"] is None
    srv.call("POST", f"/v1/jobs/{j['id']}/progress",
             {"lease": j["lease"], "percent": 30, "checkpoint": {"frame": 120}})
    assert srv.job(j["id"])["checkpoint"] == {"frame": 120}
    srv.fail(j, "crashed at frame 130")
    j2 = srv.fetch_until(q, timeout=10)
    assert j2["checkpoint"] == {"frame": 120}
    srv.heartbeat(j2, checkpoint={"frame": 480, "file": "part2.mp4"})
    assert srv.job(j["id"])["checkpoint"] == {"frame": 480, "file": "part2.mp4"}
    srv.fail(j2, "again")
    j3 = srv.fetch_until(q, timeout=10)
    assert j3["checkpoint"] == {"frame": 480, "file": "part2.mp4"}


def test_checkpoint_survives_stall(srv, q):
    srv.enqueue(q, lease_ms=300)
    j = srv.fetch_one(q)
    srv.heartbeat(j, checkpoint=[1, 2, 3])
    srv.wait_state(j["id"], "waiting", timeout=10)
    assert srv.fetch_one(q)["checkpoint"] == [1, 2, 3]


# ---- dead letter --------------------------------------------------------------------------


def _dead(srv, q, n, etype):
    ids = []
    for _ in range(n):
        srv.enqueue(q)
        j = srv.fetch_one(q)
        srv.fail(j, f"err {etype}", type=etype, retryable=False)
        ids.append(j["id"])
    return ids


def test_dead_letter_list_and_stats(server):
    s = server
    a, b = s.qname(), s.qname()
    xa = _dead(s, a, 2, "x_type")
    ya = _dead(s, a, 1, "y_type")
    xb = _dead(s, b, 1, "x_type")
    s.enqueue(a, "alive")
    body = s.call("GET", f"/v1/dead-letter?queue={a}&limit=100")
    assert {j["id"] for j in body["jobs"]} == set(xa + ya)
    assert all(j["state"] == "failed" for j in body["jobs"])
    assert [j["id"] for j in body["jobs"]] == list(reversed(xa + ya))
    everything = s.call("GET", "/v1/dead-letter?limit=100")
    assert {j["id"] for j in everything["jobs"]} == set(xa + ya + xb)
    stats = s.call("GET", "/v1/dead-letter/stats")
    assert stats["total"] == 4
    assert stats["queues"][a]["total"] == 3
    assert stats["queues"][a]["types"] == {"x_type": 2, "y_type": 1}
    assert stats["queues"][b] == {"total": 1, "types": {"x_type": 1}}


def test_dead_letter_bulk_retry(srv, q):
    ids = _dead(srv, q, 3, "boom")
    other = srv.qname()
    oid = _dead(srv, other, 1, "boom")[0]
    body = srv.call("POST", "/v1/dead-letter/retry", {"ids": [ids[0]]})
    assert body == {"retried": 1}
    j = srv.job(ids[0])
    assert j["state"] == "waiting" and j["attempt"] == 0
    body = srv.call("POST", "/v1/dead-letter/retry", {"queue": q})
    assert body == {"retried": 2}
    for jid in ids:
        assert srv.state(jid) == "waiting"
    assert srv.state(oid) == "failed"
    assert srv.call("GET", f"/v1/dead-letter?queue={q}")["jobs"] == []
    assert len(srv.fetch(q, count=10)) == 3


# ---- ack batch ----------------------------------------------------------------------------


def test_ack_batch(srv, q):
    srv.enqueue_bulk(q, [{"data": i, "max_attempts": 1} for i in range(3)])
    a, b, c = srv.fetch(q, count=3)
    body = {"acks": [
        {"id": a["id"], "lease": a["lease"], "result": {"ok": 1}},
        {"id": b["id"], "lease": b["lease"], "error": {"message": "bad", "retryable": False}},
        {"id": c["id"], "lease": "stale-lease", "result": 1},
        {"id": "no-such-job", "lease": "x", "result": 1},
    ]}
    st, out = srv.post("/v1/ack", body)
    assert st == 200, out
    res = out["results"]
    assert [r["id"] for r in res] == [a["id"], b["id"], c["id"], "no-such-job"]
    assert [r["status"] for r in res] == [200, 200, 409, 404]
    assert res[2]["error"]["code"] == "lease_lost"
    assert res[3]["error"]["code"] == "not_found"
    assert srv.job(a["id"])["result"] == {"ok": 1}
    assert srv.state(a["id"]) == "completed"
    assert srv.state(b["id"]) == "failed"
    assert srv.state(c["id"]) == "active"


def test_ack_bad_input(srv):
    assert_error(srv.request("POST", "/v1/ack", {"acks": "no"}), 400, "invalid_argument", "acks")


# ---- logs ---------------------------------------------------------------------------------


def test_logs(srv, q):
    srv.enqueue(q, backoff={"type": "fixed", "delay_ms": 50})
    j = srv.fetch_one(q)
    for lines in (["first", "second"], ["third"]):
        r = srv.request("POST", f"/v1/jobs/{j['id']}/logs", {"lease": j["lease"], "lines": lines})
        assert 200 <= r.status < 300, r
    assert srv.call("GET", f"/v1/jobs/{j['id']}/logs")["lines"] == ["first", "second", "third"]
    assert_error(srv.request("POST", f"/v1/jobs/{j['id']}/logs",
                             {"lease": "wrong", "lines": ["x"]}), 409, "lease_lost")
    srv.fail(j, "x")
    j2 = srv.fetch_until(q, timeout=10)
    srv.call("POST", f"/v1/jobs/{j['id']}/logs", {"lease": j2["lease"], "lines": ["retry"]},
             expect=(200, 201, 204))
    assert srv.call("GET", f"/v1/jobs/{j['id']}/logs")["lines"] == ["retry"]
    assert srv.call("GET", f"/v1/jobs/{j['id']}/logs?attempt=1")["lines"] == [
        "first", "second", "third"]
    assert srv.call("GET", f"/v1/jobs/{j['id']}/logs?attempt=2")["lines"] == ["retry"]


def test_logs_are_bounded(srv, q):
    srv.enqueue(q)
    j = srv.fetch_one(q)
    for start in range(0, 1100, 275):
        srv.call("POST", f"/v1/jobs/{j['id']}/logs",
                 {"lease": j["lease"], "lines": [f"line-{i}" for i in range(start, start + 275)]},
                 expect=(200, 201, 204))
    lines = srv.call("GET", f"/v1/jobs/{j['id']}/logs")["lines"]
    assert len(lines) == 1000
    assert lines[0] == "line-100"
    assert lines[-1] == "line-1099"


# ---- workers ------------------------------------------------------------------------------


def test_workers_list(server):
    s = server
    a, b = s.qname(), s.qname()
    s.enqueue(a)
    t0 = now_ms()
    s.fetch([a, b], worker="render-host-1:42")
    s.fetch([b], worker="render-host-2:7")
    t1 = now_ms()
    body = s.call("GET", "/v1/workers")
    by_id = {w["id"]: w for w in body["workers"]}
    assert set(by_id) == {"render-host-1:42", "render-host-2:7"}
    w1 = by_id["render-host-1:42"]
    assert set(w1["queues"]) == {a, b}
    n = w1["active_jobs"]
    assert (len(n) if isinstance(n, list) else n) == 1
    n = by_id["render-host-2:7"]["active_jobs"]
    assert (len(n) if isinstance(n, list) else n) == 0
    assert t0 - 5 <= w1["last_seen_at"] <= t1 + 5


def test_ack_bodies_of_every_shape(srv, q):
    """Batch acks give the same answers whatever the body looks like: pretty-printed with
    a nested result (kept as sent), ids written with escapes, or refused duplicate keys."""
    for i in range(3):
        srv.enqueue(q, {"i": i}, id=f"{q}-a{i}")
    jobs = {j["id"]: j for j in srv.fetch(q, count=3)}
    a0, a1, a2 = (jobs[f"{q}-a{i}"] for i in range(3))
    pretty = ('{\n  "acks": [\n    {"id": "%s", "lease": "%s", "result": {"n": [1, 2], "s": "\\u00e9"}},\n'
              '    {"lease": "%s", "id": "%s", "error": {"message": "no", "retryable": false}}\n  ]\n}'
              % (a0["id"], a0["lease"], a1["lease"], a1["id"]))
    r = srv.request("POST", "/v1/ack", pretty)
    assert r.status == 200, r.json
    assert [x["status"] for x in r.json["results"]] == [200, 200]
    assert srv.job(a0["id"])["result"] == {"n": [1, 2], "s": "\u00e9"}
    assert srv.job(a1["id"])["state"] == "failed"
    # an id spelled with an escape is the same id
    escaped = a2["id"].replace("-", "\\u002d")
    r = srv.request("POST", "/v1/ack",
                    '{"acks":[{"id":"%s","lease":"%s","result":7}]}' % (escaped, a2["lease"]))
    assert r.status == 200 and r.json["results"][0]["status"] == 200, r.json
    assert srv.job(a2["id"])["result"] == 7
    # a repeated key is refused whole, nothing applied
    srv.enqueue(q, {"i": 9}, id=f"{q}-a9")
    j9 = srv.fetch_one(q)
    r = srv.request("POST", "/v1/ack",
                    '{"acks":[{"id":"%s","lease":"%s","lease":"x"}]}' % (j9["id"], j9["lease"]))
    assert r.status == 400 and r.json["error"]["code"] == "invalid_json", r.json
    assert srv.job(j9["id"])["state"] == "active"
