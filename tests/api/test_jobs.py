"""Jobs: enqueue (one and bulk), read, list/search, paging, delete, cancel, retry, patch,
history, result, priorities and positions, delays."""

import re
import threading
import time

import pytest

from conftest import assert_error, now_ms

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_enqueue_returns_the_job(srv, q):
    t0 = now_ms()
    job = srv.enqueue(q, {"chunk_id": "c-1", "n": [1, 2.5, None, True]}, name="transcribe-chunk")
    t1 = now_ms()
    assert UUID7.match(job["id"]), job["id"]
    assert job["queue"] == q
    assert job["name"] == "transcribe-chunk"
    assert job["data"] == {"chunk_id": "c-1", "n": [1, 2.5, None, True]}
    assert job["state"] == "waiting"
    assert job["priority"] == 0
    assert job["attempt"] == 0
    assert job["max_attempts"] == 3
    assert job["backoff"]["type"] == "exponential"
    assert job["backoff"]["delay_ms"] == 2000
    assert job["position"] == 0
    assert isinstance(job["estimated_start_ms"], (int, float))
    assert job["result"] is None and job["error"] is None
    assert job["checkpoint"] is None
    assert t0 - 5 <= job["created_at"] <= t1 + 5
    got = srv.job(job["id"])
    for k, v in job.items():
        if k not in ("estimated_start_ms", "updated_at"):
            assert got[k] == v, k


def test_get_job_matches_enqueue_answer(srv, q):
    job = srv.enqueue(q, {"x": 1}, group="user-1", project="p-1", tags={"video_id": "42"},
                      priority="high", max_attempts=5, timeout_ms=60000, lease_ms=15000)
    got = srv.job(job["id"])
    for k in ("id", "queue", "data", "state", "priority", "group", "project", "tags",
              "max_attempts", "timeout_ms", "lease_ms", "created_at"):
        assert got[k] == job[k], k
    assert got["group"] == "user-1"
    assert got["project"] == "p-1"
    assert got["tags"] == {"video_id": "42"}
    assert got["priority"] == 10
    assert got["max_attempts"] == 5
    assert got["timeout_ms"] == 60000
    assert got["lease_ms"] == 15000


def test_data_defaults_to_null(srv, q):
    st, job = srv.post(f"/v1/queues/{q}/jobs", {})
    assert st == 201, job
    assert job["data"] is None


def test_data_round_trips_exactly(srv, q):
    data = {"s": "héllo \u2603 \"quoted\" \\ \n\t", "emoji": "\U0001F600", "neg": -17,
            "big": 2 ** 53, "max64": 2 ** 63 - 1, "min64": -(2 ** 63), "f": 0.1, "e": 1.5e300,
            "empty": {}, "list": [], "nested": [[{"a": [None]}]]}
    job = srv.enqueue(q, data)
    assert job["data"] == data
    assert srv.job(job["id"])["data"] == data
    assert srv.fetch_one(q)["data"] == data


def test_data_string_with_nul_escape(srv, q):
    # "\u0000" is valid JSON; data is any JSON value.
    job = srv.enqueue(q, {"nul": "a\u0000b"})
    assert srv.job(job["id"])["data"] == {"nul": "a\u0000b"}


def test_data_may_be_any_json_value(srv, q):
    for value in ["text", 12, 3.25, True, False, [1, "a"], None]:
        job = srv.enqueue(q, value)
        assert srv.job(job["id"])["data"] == value


def test_server_ids_are_time_sortable(srv, q):
    ids = [srv.enqueue(q, i)["id"] for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


def test_client_given_id(srv, q):
    job = srv.enqueue(q, 1, id="render:video-1.part_2")
    assert job["id"] == "render:video-1.part_2"
    assert srv.job("render:video-1.part_2")["data"] == 1
    st, body = srv.post(f"/v1/queues/{q}/jobs", {"id": "render:video-1.part_2", "data": 2})
    assert_error((st, body), 409, "conflict")
    assert srv.job("render:video-1.part_2")["data"] == 1


def test_client_id_taken_in_another_queue_conflicts(srv, q):
    jid = f"shared-{q}"
    srv.enqueue(q, 1, id=jid)
    st, body = srv.post(f"/v1/queues/{q}-other/jobs", {"id": jid})
    assert_error((st, body), 409, "conflict")


def test_get_unknown_job_404(srv):
    assert_error(srv.request("GET", "/v1/jobs/0190c3a2-0000-7000-8000-000000000000"), 404,
                 "not_found")


def test_named_priorities(srv, q):
    expected = {"low": -10, "normal": 0, "high": 10, "urgent": 20}
    for name, value in expected.items():
        assert srv.enqueue(q, name, priority=name)["priority"] == value


def test_numeric_priority_bounds(srv, q):
    assert srv.enqueue(q, priority=1000)["priority"] == 1000
    assert srv.enqueue(q, priority=-1000)["priority"] == -1000
    for bad in (1001, -1001):
        assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"priority": bad}), 400,
                     "invalid_argument", "priority")


def test_priority_order_and_positions(srv, q):
    a = srv.enqueue(q, "a")                       # 0
    b = srv.enqueue(q, "b", priority="high")      # 10
    c = srv.enqueue(q, "c")                       # 0
    d = srv.enqueue(q, "d", priority="low")       # -10
    e = srv.enqueue(q, "e", priority="urgent")    # 20
    f = srv.enqueue(q, "f", priority=5)           # 5
    order = [e, b, f, a, c, d]
    for pos, job in enumerate(order):
        assert srv.job(job["id"])["position"] == pos, job["data"]
    got = srv.fetch(q, count=2)
    assert [j["id"] for j in got] == [e["id"], b["id"]]
    assert srv.job(f["id"])["position"] == 0
    assert srv.job(d["id"])["position"] == 3
    got = srv.fetch(q, count=10)
    assert [j["data"] for j in got] == ["f", "a", "c", "d"]


def test_fifo_within_priority(srv, q):
    ids = [srv.enqueue(q, i, priority=3)["id"] for i in range(20)]
    for i, jid in enumerate(ids):
        assert srv.job(jid)["position"] == i
    got = [srv.fetch_one(q)["id"] for _ in range(20)]
    assert got == ids


def test_position_only_for_waiting_jobs(srv, q):
    sched = srv.enqueue(q, delay_ms=60000)
    assert sched["state"] == "scheduled"
    assert sched["position"] is None
    assert sched["estimated_start_ms"] is None
    w = srv.enqueue(q)
    assert w["position"] == 0
    active = srv.fetch_one(q)
    got = srv.job(active["id"])
    assert got["state"] == "active"
    assert got["position"] is None
    assert got["estimated_start_ms"] is None


def test_queue_defaults_apply_to_jobs(srv, q):
    srv.create_queue(q, defaults={"max_attempts": 7, "priority": 4, "timeout_ms": 9000,
                                  "lease_ms": 8000,
                                  "backoff": {"type": "fixed", "delay_ms": 1234}})
    job = srv.enqueue(q)
    assert job["max_attempts"] == 7
    assert job["priority"] == 4
    assert job["timeout_ms"] == 9000
    assert job["lease_ms"] == 8000
    assert job["backoff"]["type"] == "fixed" and job["backoff"]["delay_ms"] == 1234
    own = srv.enqueue(q, max_attempts=2, priority=-3, lease_ms=500)
    assert own["max_attempts"] == 2 and own["priority"] == -3 and own["lease_ms"] == 500


# ---- bulk ---------------------------------------------------------------------------------


def test_bulk_enqueue(srv, q):
    jobs = srv.enqueue_bulk(q, [{"data": i, "priority": 1} for i in range(5)])
    assert [j["data"] for j in jobs] == list(range(5))
    assert all(j["state"] == "waiting" and j["queue"] == q for j in jobs)
    assert len({j["id"] for j in jobs}) == 5
    assert [srv.job(j["id"])["position"] for j in jobs] == list(range(5))


def test_bulk_is_atomic(srv, q):
    srv.enqueue(q, "before")
    items = [{"data": 0}, {"data": 1}, {"data": 2, "priority": 5000}, {"data": 3}]
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": items})
    err = assert_error(r, 400, "invalid_argument")
    assert err["details"]["index"] == 2, err
    listed = srv.list_jobs(queue=q, limit=100)["jobs"]
    assert [j["data"] for j in listed] == ["before"]


def test_bulk_with_taken_id_enqueues_nothing(srv, q):
    srv.enqueue(q, "first", id=f"{q}-taken")
    r = srv.request("POST", f"/v1/queues/{q}/jobs",
                    {"jobs": [{"data": "new1"}, {"id": f"{q}-taken", "data": "dup"}]})
    assert_error(r, 409, "conflict")
    r = srv.request("POST", f"/v1/queues/{q}/jobs",
                    {"jobs": [{"id": f"{q}-x", "data": 1}, {"id": f"{q}-x", "data": 2}]})
    assert r.status in (400, 409), r
    assert_error(r, r.status)
    listed = srv.list_jobs(queue=q, limit=100)["jobs"]
    assert [j["data"] for j in listed] == ["first"]


def test_bulk_empty_list_is_refused(srv, q):
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": []}), 400,
                 "invalid_argument")


# ---- list / search ------------------------------------------------------------------------


def test_list_newest_first_with_cursor(srv, q):
    ids = [srv.enqueue(q, i)["id"] for i in range(7)]
    pages = []
    first = srv.list_jobs(queue=q, limit=3)
    pages.append(first["jobs"])
    assert len(first["jobs"]) == 3
    cursor = first["next_cursor"]
    assert cursor
    srv.enqueue(q, "late")  # a job added while paging is not in the later pages
    for _ in range(10):
        if not cursor:
            break
        page = srv.list_jobs(queue=q, limit=3, cursor=cursor)
        assert len(page["jobs"]) <= 3
        pages.append(page["jobs"])
        cursor = page["next_cursor"]
    assert cursor is None
    seen = [j["id"] for p in pages for j in p]
    assert seen == list(reversed(ids))
    assert len(pages[1]) == 3


def test_list_filters(srv, q):
    other = srv.qname()
    a = srv.enqueue(q, "a", group="g1", project="p1", tags={"video": "1", "lang": "en"})
    b = srv.enqueue(q, "b", group="g2", project="p1", tags={"video": "2"})
    c = srv.enqueue(q, "c", group="g1", project="p2")
    srv.enqueue(other, "other", group="g1", project="p1", tags={"video": "1"})

    def ids(**params):
        return [j["id"] for j in srv.list_jobs(limit=100, **params)["jobs"]]

    assert ids(queue=q) == [c["id"], b["id"], a["id"]]
    assert ids(queue=q, group="g1") == [c["id"], a["id"]]
    assert ids(queue=q, project="p1") == [b["id"], a["id"]]
    assert ids(queue=q, **{"tag.video": "1"}) == [a["id"]]
    assert ids(queue=q, **{"tag.lang": "en"}) == [a["id"]]
    assert ids(queue=q, **{"tag.video": "3"}) == []
    assert ids(queue=q, group="g1", project="p2") == [c["id"]]


def test_list_state_filter(srv, q):
    a = srv.enqueue(q, "a")
    b = srv.enqueue(q, "b")
    c = srv.enqueue(q, "c", delay_ms=60000)
    job = srv.fetch_one(q)
    assert job["id"] == a["id"]
    srv.complete(job, {"ok": True})

    def ids(state):
        return {j["id"] for j in srv.list_jobs(queue=q, state=state, limit=100)["jobs"]}

    assert ids("waiting") == {b["id"]}
    assert ids("scheduled") == {c["id"]}
    assert ids("completed") == {a["id"]}
    assert ids("waiting,completed") == {a["id"], b["id"]}
    assert ids("failed") == set()
    for j in srv.list_jobs(queue=q, state="waiting,scheduled", limit=100)["jobs"]:
        assert j["state"] in ("waiting", "scheduled")


@pytest.mark.parametrize("query", ["state=sleeping", "state=waiting,bogus", "limit=1001",
                                   "limit=abc", "cursor=not-a-cursor"])
def test_list_bad_parameters(srv, q, query):
    assert_error(srv.request("GET", f"/v1/jobs?queue={q}&{query}"), 400, "invalid_argument")


# ---- delete / cancel / retry --------------------------------------------------------------


def test_delete_job(srv, q):
    job = srv.enqueue(q)
    r = srv.request("DELETE", f"/v1/jobs/{job['id']}")
    assert r.status == 204, r
    assert r.body == b""
    assert_error(srv.request("GET", f"/v1/jobs/{job['id']}"), 404, "not_found")
    assert_error(srv.request("DELETE", f"/v1/jobs/{job['id']}"), 404, "not_found")


def test_delete_active_job_409(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    assert_error(srv.request("DELETE", f"/v1/jobs/{job['id']}"), 409, "invalid_state")
    assert srv.state(job["id"]) == "active"
    srv.complete(job)
    assert srv.request("DELETE", f"/v1/jobs/{job['id']}").status == 204


def test_cancel_waiting_and_scheduled(srv, q):
    w = srv.enqueue(q, "w")
    s = srv.enqueue(q, "s", delay_ms=60000)
    for job in (w, s):
        st, body = srv.post(f"/v1/jobs/{job['id']}/cancel")
        assert st == 200, body
        assert body["state"] == "cancelled"
        assert srv.state(job["id"]) == "cancelled"
    assert srv.fetch(q) == []


def test_cancel_final_job_409(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    srv.complete(job)
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/cancel"), 409, "invalid_state")
    assert srv.state(job["id"]) == "completed"
    assert_error(srv.request("POST", "/v1/jobs/nope-nope/cancel"), 404, "not_found")


def test_cancel_active_then_worker_completes(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    st, body = srv.post(f"/v1/jobs/{job['id']}/cancel")
    assert st == 200, body
    assert body["state"] == "active"
    assert body["cancel_requested"] is True
    hb = srv.heartbeat(job)
    assert hb["cancel_requested"] is True
    srv.complete(job, {"partial": True})
    assert srv.state(job["id"]) == "cancelled"


def test_cancel_active_then_worker_fails(srv, q):
    srv.enqueue(q, max_attempts=5)
    job = srv.fetch_one(q)
    assert srv.post(f"/v1/jobs/{job['id']}/cancel")[0] == 200
    prog = srv.call("POST", f"/v1/jobs/{job['id']}/progress", {"lease": job["lease"],
                                                                "percent": 10})
    assert prog["cancel_requested"] is True
    srv.fail(job, "stopped")
    assert srv.state(job["id"]) == "cancelled"
    assert srv.fetch(q) == []


def test_cancel_active_then_lease_expires(srv, q):
    srv.enqueue(q, lease_ms=300)
    job = srv.fetch_one(q)
    assert srv.post(f"/v1/jobs/{job['id']}/cancel")[0] == 200
    srv.wait_state(job["id"], "cancelled", timeout=10)
    assert srv.fetch(q) == []


def test_retry_failed_and_cancelled(srv, q):
    srv.enqueue(q, "f", max_attempts=1)
    job = srv.fetch_one(q)
    failed = srv.fail(job, "nope")
    assert failed["state"] == "failed" and failed["attempt"] == 1
    st, body = srv.post(f"/v1/jobs/{job['id']}/retry")
    assert st == 200, body
    assert body["state"] == "waiting"
    assert body["attempt"] == 0
    again = srv.fetch_one(q)
    assert again["id"] == job["id"] and again["attempt"] == 0

    c = srv.enqueue(q, "c")
    srv.post(f"/v1/jobs/{c['id']}/cancel")
    st, body = srv.post(f"/v1/jobs/{c['id']}/retry")
    assert st == 200 and body["state"] == "waiting", body


def test_retry_wrong_state_409(srv, q):
    w = srv.enqueue(q)
    assert_error(srv.request("POST", f"/v1/jobs/{w['id']}/retry"), 409, "invalid_state")
    job = srv.fetch_one(q)
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/retry"), 409, "invalid_state")
    srv.complete(job)
    assert_error(srv.request("POST", f"/v1/jobs/{job['id']}/retry"), 409, "invalid_state")


# ---- patch --------------------------------------------------------------------------------


def test_patch_priority_recomputes_position(srv, q):
    a = srv.enqueue(q, "a")
    b = srv.enqueue(q, "b")
    c = srv.enqueue(q, "c")
    st, body = srv.patch(f"/v1/jobs/{c['id']}", {"priority": "high"})
    assert st == 200, body
    assert body["priority"] == 10
    assert body["position"] == 0
    assert srv.job(a["id"])["position"] == 1
    assert srv.job(b["id"])["position"] == 2
    st, body = srv.patch(f"/v1/jobs/{a['id']}", {"priority": -5})
    assert st == 200 and body["position"] == 2, body
    assert [j["data"] for j in srv.fetch(q, count=3)] == ["c", "b", "a"]


def test_patch_bad_input(srv, q):
    a = srv.enqueue(q)
    assert_error(srv.request("PATCH", f"/v1/jobs/{a['id']}", {"priority": 5000}), 400,
                 "invalid_argument", "priority")
    assert_error(srv.request("PATCH", f"/v1/jobs/{a['id']}", {"colour": "red"}), 400,
                 "invalid_argument", "colour")
    assert_error(srv.request("PATCH", "/v1/jobs/no-such-job", {"priority": 1}), 404,
                 "not_found")
    assert srv.job(a["id"])["priority"] == 0


def test_patch_run_at_of_scheduled_job(srv, q):
    job = srv.enqueue(q, delay_ms=3600_000)
    later = now_ms() + 7200_000
    st, body = srv.patch(f"/v1/jobs/{job['id']}", {"run_at": later})
    assert st == 200, body
    assert body["run_at"] == later and body["state"] == "scheduled"
    st, body = srv.patch(f"/v1/jobs/{job['id']}", {"run_at": now_ms()})
    assert st == 200, body
    got = srv.fetch_until(q, timeout=5)
    assert got["id"] == job["id"]


# ---- delays -------------------------------------------------------------------------------


def test_delay_ms_schedules_then_runs(srv, q):
    t0 = now_ms()
    job = srv.enqueue(q, "later", delay_ms=400)
    t1 = now_ms()
    assert job["state"] == "scheduled"
    assert t0 + 400 - 5 <= job["run_at"] <= t1 + 400 + 5
    assert srv.fetch(q) == []
    got = srv.fetch_until(q, timeout=10)
    assert got["id"] == job["id"]
    assert now_ms() >= job["run_at"]


def test_scheduled_becomes_waiting_when_due(srv, q):
    job = srv.enqueue(q, delay_ms=300)
    j = srv.wait_state(job["id"], "waiting", timeout=10)
    assert now_ms() >= job["run_at"]
    assert j["position"] == 0


def test_run_at(srv, q):
    due = now_ms() + 400
    job = srv.enqueue(q, run_at=due)
    assert job["state"] == "scheduled" and job["run_at"] == due
    past = srv.enqueue(q, run_at=now_ms() - 1000)
    assert past["state"] == "waiting"
    first = srv.fetch_one(q)
    assert first["id"] == past["id"]
    got = srv.fetch_until(q, timeout=10)
    assert got["id"] == job["id"]
    assert now_ms() >= due


# ---- history and result -------------------------------------------------------------------


def test_history(srv, q):
    job = srv.enqueue(q, backoff={"type": "fixed", "delay_ms": 50})
    f1 = srv.fetch_one(q, worker="w-1")
    srv.fail(f1, "first try")
    f2 = srv.fetch_until(q, worker="w-2")
    srv.complete(f2, {"done": 1})
    st, hist = srv.get(f"/v1/jobs/{job['id']}/history")
    assert st == 200, hist
    assert isinstance(hist, list)
    for h in hist:
        for k in ("at", "from", "to", "attempt", "worker", "error"):
            assert k in h, h
    ats = [h["at"] for h in hist]
    assert ats == sorted(ats)
    tos = [h["to"] for h in hist]
    want = ["active", "retrying", "active", "completed"]
    it = iter(tos)
    assert all(s in it for s in want), tos
    assert tos[-1] == "completed"
    retry = [h for h in hist if h["to"] == "retrying"][0]
    assert retry["from"] == "active"
    assert "first try" in str(retry["error"])
    actives = [h for h in hist if h["to"] == "active"]
    assert [h["worker"] for h in actives] == ["w-1", "w-2"]
    assert_error(srv.request("GET", "/v1/jobs/no-such/history"), 404, "not_found")


def test_result(srv, q):
    job = srv.enqueue(q)
    st, body = srv.get(f"/v1/jobs/{job['id']}/result")
    assert st == 200, body
    assert body["state"] == "waiting"
    assert body["result"] is None and body["error"] is None
    f = srv.fetch_one(q)
    srv.complete(f, {"text": "hello", "n": [1, 2]})
    st, body = srv.get(f"/v1/jobs/{job['id']}/result")
    assert st == 200
    assert body["state"] == "completed"
    assert body["result"] == {"text": "hello", "n": [1, 2]}
    assert body["error"] is None
    assert srv.job(job["id"])["result"] == {"text": "hello", "n": [1, 2]}


def test_result_of_failed_job(srv, q):
    srv.enqueue(q, max_attempts=1)
    f = srv.fetch_one(q)
    srv.fail(f, "broken", type="bad_input", details={"line": 3})
    body = srv.call("GET", f"/v1/jobs/{f['id']}/result")
    assert body["state"] == "failed"
    assert body["result"] is None
    assert body["error"]["message"] == "broken"
    assert body["error"]["type"] == "bad_input"
    assert body["error"]["details"] == {"line": 3}


def test_result_wait_ms_returns_when_final(srv, q):
    job = srv.enqueue(q)
    f = srv.fetch_one(q)

    def finish():
        time.sleep(0.3)
        srv.complete(f, 42)

    t = threading.Thread(target=finish)
    t.start()
    start = time.monotonic()
    st, body = srv.get(f"/v1/jobs/{job['id']}/result?wait_ms=20000")
    elapsed = time.monotonic() - start
    t.join()
    assert st == 200, body
    assert body["state"] == "completed" and body["result"] == 42
    assert elapsed < 10, f"result?wait_ms did not return when the job finished ({elapsed:.1f}s)"


def test_result_wait_ms_times_out_with_current_state(srv, q):
    job = srv.enqueue(q)
    start = time.monotonic()
    st, body = srv.get(f"/v1/jobs/{job['id']}/result?wait_ms=300")
    elapsed = time.monotonic() - start
    assert st == 200, body
    assert body["state"] == "waiting"
    assert elapsed >= 0.25, "result?wait_ms answered before the job was final or time was up"
