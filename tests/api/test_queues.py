"""Queues: create, read by name and id, list and filter, patch, delete, pause/resume, drain,
clear, clean, recover, stats, auto-create, --strict-queues, max_size, concurrency,
retention, last_processed_at / last_error."""

import re
import threading
import time
import uuid

from conftest import assert_error, now_ms, wait_until

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_create_queue(srv, q):
    t0 = now_ms()
    qu = srv.create_queue(q, type="INGEST", description="raw uploads", concurrency=4)
    t1 = now_ms()
    assert UUID.match(qu["id"]), qu["id"]
    assert qu["name"] == q
    assert qu["type"] == "INGEST"
    assert qu["description"] == "raw uploads"
    assert qu["status"] == "active"
    assert qu["concurrency"] == 4
    assert qu["defaults"]["max_attempts"] == 3
    assert qu["defaults"]["backoff"]["type"] == "exponential"
    assert qu["defaults"]["backoff"]["delay_ms"] == 2000
    assert qu["keep_completed"]["count"] == 1000
    assert qu["keep_failed"]["age_ms"] == 7 * 24 * 3600 * 1000
    assert isinstance(qu["counts"], dict)
    assert qu["counts"].get("waiting", 0) == 0
    assert qu["last_processed_at"] is None
    assert qu["last_error_at"] is None
    assert qu["last_error"] is None
    assert t0 - 5 <= qu["created_at"] <= t1 + 5
    assert qu["updated_at"] >= qu["created_at"]


def test_create_duplicate_409(srv, q):
    srv.create_queue(q)
    assert_error(srv.request("POST", "/v1/queues", {"name": q}), 409, "conflict")


def test_create_bad_names(srv):
    for name in ["", "has space", "slash/name", "x" * 129, "ünïcode"]:
        assert_error(srv.request("POST", "/v1/queues", {"name": name}), 400, "invalid_argument",
                     "name")
    assert_error(srv.request("POST", "/v1/queues", {"type": "X"}), 400, "invalid_argument",
                 "name")
    ok = "A-z_0.9" + "x" * 121
    assert len(ok) == 128
    assert srv.create_queue(ok)["name"] == ok


def test_get_by_name_and_id(srv, q):
    qu = srv.create_queue(q)
    by_name = srv.queue(q)
    by_id = srv.queue(qu["id"])
    assert by_name["id"] == by_id["id"] == qu["id"]
    assert by_id["name"] == q
    assert_error(srv.request("GET", f"/v1/queues/{srv.qname()}"), 404, "not_found")


def test_path_accepts_queue_id(srv, q):
    qu = srv.create_queue(q)
    job = srv.enqueue(qu["id"], "via-id")
    assert job["queue"] == q
    st, body = srv.post(f"/v1/queues/{qu['id']}/pause")
    assert st == 200 and body["status"] == "paused", body
    assert srv.queue(q)["status"] == "paused"


def test_list_with_filters_and_paging(srv):
    kind = "T" + uuid.uuid4().hex[:10]
    names = [srv.create_queue(srv.qname(), type=kind)["name"] for _ in range(5)]
    srv.create_queue(srv.qname(), type=kind + "-other")
    st, body = srv.get(f"/v1/queues?type={kind}")
    assert st == 200, body
    assert body["total"] == 5
    assert sorted(x["name"] for x in body["queues"]) == sorted(names)

    seen = []
    for offset in (0, 2, 4):
        page = srv.call("GET", f"/v1/queues?type={kind}&limit=2&offset={offset}")
        assert page["total"] == 5
        assert len(page["queues"]) == (2 if offset < 4 else 1)
        seen += [x["name"] for x in page["queues"]]
    assert sorted(seen) == sorted(names)
    assert srv.call("GET", f"/v1/queues?type={kind}&limit=2&offset=10")["queues"] == []

    srv.post(f"/v1/queues/{names[1]}/pause")
    srv.post(f"/v1/queues/{names[3]}/pause")
    paused = srv.call("GET", f"/v1/queues?type={kind}&status=paused")
    assert paused["total"] == 2
    assert sorted(x["name"] for x in paused["queues"]) == sorted([names[1], names[3]])
    active = srv.call("GET", f"/v1/queues?type={kind}&status=active")
    assert sorted(x["name"] for x in active["queues"]) == sorted(
        [names[0], names[2], names[4]])


def test_list_bad_parameters(srv):
    assert_error(srv.request("GET", "/v1/queues?status=sleepy"), 400, "invalid_argument")
    assert_error(srv.request("GET", "/v1/queues?limit=-1"), 400, "invalid_argument")
    assert_error(srv.request("GET", "/v1/queues?offset=x"), 400, "invalid_argument")


def test_patch_queue(srv, q):
    qu = srv.create_queue(q)
    time.sleep(0.01)
    st, body = srv.patch(f"/v1/queues/{q}", {"description": "new", "type": "RENDER",
                                             "concurrency": 3, "max_size": 50,
                                             "defaults": {"max_attempts": 9}})
    assert st == 200, body
    assert body["description"] == "new"
    assert body["type"] == "RENDER"
    assert body["concurrency"] == 3
    assert body["max_size"] == 50
    assert body["defaults"]["max_attempts"] == 9
    assert body["updated_at"] > qu["updated_at"]
    got = srv.queue(q)
    for k in ("description", "type", "concurrency", "max_size", "defaults"):
        assert got[k] == body[k], k
    assert srv.enqueue(q)["max_attempts"] == 9


def test_patch_status(srv, q):
    srv.create_queue(q)
    st, body = srv.patch(f"/v1/queues/{q}", {"status": "paused"})
    assert st == 200 and body["status"] == "paused", body
    srv.enqueue(q)
    assert srv.fetch(q) == []
    st, body = srv.patch(f"/v1/queues/{q}", {"status": "active"})
    assert st == 200 and body["status"] == "active", body
    assert len(srv.fetch(q)) == 1


def test_patch_bad_input(srv, q):
    srv.create_queue(q, concurrency=2)
    assert_error(srv.request("PATCH", f"/v1/queues/{q}", {"bogus": 1}), 400, "invalid_argument",
                 "bogus")
    assert_error(srv.request("PATCH", f"/v1/queues/{q}", {"concurrency": -1}), 400,
                 "invalid_argument", "concurrency")
    assert_error(srv.request("PATCH", f"/v1/queues/{q}", {"concurrency": "many"}), 400,
                 "invalid_argument", "concurrency")
    assert_error(srv.request("PATCH", f"/v1/queues/{q}", {"status": "sleeping"}), 400,
                 "invalid_argument", "status")
    assert_error(srv.request("PATCH", f"/v1/queues/{srv.qname()}", {"concurrency": 1}), 404,
                 "not_found")
    assert srv.queue(q)["concurrency"] == 2


def test_delete_queue(srv, q):
    srv.create_queue(q)
    srv.enqueue(q)
    r = srv.request("DELETE", f"/v1/queues/{q}")
    assert r.status == 204, r
    assert r.body == b""
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")
    assert_error(srv.request("DELETE", f"/v1/queues/{q}"), 404, "not_found")


def test_delete_queue_with_active_jobs(srv, q):
    srv.create_queue(q)
    srv.enqueue(q)
    srv.fetch_one(q)
    assert_error(srv.request("DELETE", f"/v1/queues/{q}"), 409, "invalid_state")
    assert srv.queue(q)["name"] == q
    r = srv.request("DELETE", f"/v1/queues/{q}?force=true")
    assert r.status == 204, r
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_auto_create_on_enqueue(srv, q):
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")
    srv.enqueue(q, "x")
    qu = srv.queue(q)
    assert qu["name"] == q
    assert qu["status"] == "active"
    assert qu["defaults"]["max_attempts"] == 3
    assert qu["counts"]["waiting"] == 1


def test_strict_queues(server_factory):
    s = server_factory(args=["--strict-queues"])
    name = s.qname()
    assert_error(s.request("POST", f"/v1/queues/{name}/jobs", {"data": 1}), 404, "not_found")
    assert_error(s.request("GET", f"/v1/queues/{name}"), 404, "not_found")
    s.create_queue(name)
    assert s.enqueue(name, 1)["queue"] == name
    assert_error(s.request("POST", f"/v1/queues/{name}-2/jobs", {"jobs": [{"data": 1}]}), 404,
                 "not_found")


def test_counts(srv, q):
    srv.enqueue_bulk(q, [{"data": i} for i in range(4)])
    srv.enqueue(q, delay_ms=60000)
    a = srv.fetch_one(q)
    b = srv.fetch_one(q)
    srv.complete(a)
    c = srv.queue(q)["counts"]
    assert c["waiting"] == 2
    assert c["scheduled"] == 1
    assert c["active"] == 1
    assert c["completed"] == 1
    assert c.get("failed", 0) == 0
    srv.fail(b, "x", retryable=False)
    c = srv.queue(q)["counts"]
    assert c["active"] == 0 and c["failed"] == 1


# ---- pause / resume / drain ---------------------------------------------------------------


def test_pause_and_resume(srv, q):
    srv.create_queue(q)
    srv.enqueue(q, "before")
    st, body = srv.post(f"/v1/queues/{q}/pause")
    assert st == 200, body
    assert body["status"] == "paused"
    assert srv.enqueue(q, "during")["state"] == "waiting"
    assert srv.fetch(q, count=10) == []
    st, body = srv.post(f"/v1/queues/{q}/resume")
    assert st == 200 and body["status"] == "active", body
    assert [j["data"] for j in srv.fetch(q, count=10)] == ["before", "during"]


def test_pause_lets_active_jobs_finish(srv, q):
    srv.enqueue(q)
    job = srv.fetch_one(q)
    srv.post(f"/v1/queues/{q}/pause")
    srv.heartbeat(job)
    done = srv.complete(job, "ok")
    assert done["state"] == "completed"


def test_resume_wakes_parked_fetch(srv, q):
    srv.create_queue(q)
    srv.post(f"/v1/queues/{q}/pause")
    srv.enqueue(q, "held")
    out = {}

    def park():
        start = time.monotonic()
        out["jobs"] = srv.fetch(q, wait_ms=15000)
        out["t"] = time.monotonic() - start

    t = threading.Thread(target=park)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "fetch on a paused queue returned a job or did not park"
    srv.post(f"/v1/queues/{q}/resume")
    t.join(20)
    assert [j["data"] for j in out["jobs"]] == ["held"]
    assert out["t"] < 8, f"parked fetch took {out['t']:.1f}s to see the resumed queue"


def test_drain(srv, q):
    srv.create_queue(q)
    srv.enqueue(q, "a")
    srv.enqueue(q, "b")
    a = srv.fetch_one(q)
    st, body = srv.post(f"/v1/queues/{q}/drain")
    assert st == 200, body
    assert body["status"] == "draining"
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"data": "c"}), 409,
                 "queue_draining")
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": [{"data": "c"}]}), 409,
                 "queue_draining")
    b = srv.fetch_one(q)
    assert b["data"] == "b"
    srv.complete(a)
    assert srv.queue(q)["status"] == "draining"
    srv.complete(b)
    wait_until(lambda: srv.queue(q)["status"] == "paused", what="drained queue to pause")
    # A paused queue accepts new jobs again (it just does not hand them out).
    assert srv.enqueue(q, "d")["state"] == "waiting"
    assert srv.fetch(q) == []


def test_drain_empty_queue_pauses(srv, q):
    srv.create_queue(q)
    st, body = srv.post(f"/v1/queues/{q}/drain")
    assert st == 200, body
    assert body["status"] in ("draining", "paused")
    wait_until(lambda: srv.queue(q)["status"] == "paused", what="empty drained queue to pause")


def test_queue_actions_on_unknown_queue_404(srv):
    name = srv.qname()
    for action in ("pause", "resume", "drain", "clear", "recover"):
        assert_error(srv.request("POST", f"/v1/queues/{name}/{action}"), 404, "not_found")
    assert_error(srv.request("POST", f"/v1/queues/{name}/clean",
                             {"state": "completed", "older_than_ms": 0}), 404, "not_found")
    assert_error(srv.request("GET", f"/v1/queues/{name}/stats"), 404, "not_found")


# ---- clear / clean / recover --------------------------------------------------------------


def test_clear(srv, q):
    srv.enqueue(q, "done")
    done = srv.fetch_one(q)
    srv.complete(done)
    srv.enqueue(q, "active")
    active = srv.fetch_one(q)
    srv.enqueue(q, "retrying", backoff={"type": "fixed", "delay_ms": 60000})
    r = srv.fetch_one(q)
    assert srv.fail(r, "later")["state"] == "retrying"
    w1 = srv.enqueue(q, "w1")
    w2 = srv.enqueue(q, "w2")
    s = srv.enqueue(q, "s", delay_ms=60000)
    st, body = srv.post(f"/v1/queues/{q}/clear")
    assert st == 200, body
    assert body == {"removed": 4}
    for j in (w1, w2, s, r):
        assert_error(srv.request("GET", f"/v1/jobs/{j['id']}"), 404, "not_found")
    assert srv.state(active["id"]) == "active"
    assert srv.state(done["id"]) == "completed"
    srv.complete(active)
    assert srv.call("POST", f"/v1/queues/{q}/clear") == {"removed": 0}


def _finish_jobs(srv, q, n, how):
    ids = []
    for i in range(n):
        srv.enqueue(q, i, max_attempts=1)
        j = srv.fetch_one(q)
        if how == "complete":
            srv.complete(j)
        else:
            srv.fail(j, f"e{i}")
        ids.append(j["id"])
        time.sleep(0.005)
    return ids


def test_clean_completed_keep(srv, q):
    ids = _finish_jobs(srv, q, 4, "complete")
    st, body = srv.post(f"/v1/queues/{q}/clean", {"state": "completed", "older_than_ms": 0,
                                                  "keep": 1})
    assert st == 200, body
    assert body == {"removed": 3}
    assert srv.state(ids[-1]) == "completed"
    for jid in ids[:-1]:
        assert_error(srv.request("GET", f"/v1/jobs/{jid}"), 404, "not_found")


def test_clean_failed_and_age(srv, q):
    ids = _finish_jobs(srv, q, 3, "fail")
    w = srv.enqueue(q, "waiting")
    body = srv.call("POST", f"/v1/queues/{q}/clean",
                    {"state": "failed", "older_than_ms": 3600_000})
    assert body == {"removed": 0}
    body = srv.call("POST", f"/v1/queues/{q}/clean", {"state": "failed", "older_than_ms": 0})
    assert body == {"removed": 3}
    for jid in ids:
        assert_error(srv.request("GET", f"/v1/jobs/{jid}"), 404, "not_found")
    assert srv.state(w["id"]) == "waiting"


def test_clean_bad_state(srv, q):
    srv.create_queue(q)
    assert_error(srv.request("POST", f"/v1/queues/{q}/clean", {"state": "waiting"}), 400,
                 "invalid_argument", "state")
    assert_error(srv.request("POST", f"/v1/queues/{q}/clean", {"state": "completed",
                                                                "bogus": 1}),
                 400, "invalid_argument", "bogus")


def test_recover_leaves_live_worker_alone(srv, q):
    srv.enqueue(q, lease_ms=60000)
    job = srv.fetch_one(q, worker="live-worker")
    srv.heartbeat(job)
    st, body = srv.post(f"/v1/queues/{q}/recover")
    assert st == 200, body
    assert body == {"recovered": 0}
    assert srv.state(job["id"]) == "active"
    assert srv.complete(job)["state"] == "completed"


# ---- stats --------------------------------------------------------------------------------


def test_queue_stats(srv, q):
    srv.enqueue_bulk(q, [{"data": i, "max_attempts": 1} for i in range(3)])
    a = srv.fetch_one(q)
    b = srv.fetch_one(q)
    srv.complete(a)
    srv.fail(b, "bad")
    st, body = srv.get(f"/v1/queues/{q}/stats")
    assert st == 200, body
    counts = body["counts"]
    assert counts["waiting"] == 1
    assert counts["completed"] == 1
    assert counts["failed"] == 1
    assert counts.get("active", 0) == 0
    assert body["enqueued"] == 3
    assert body["failed"] == 1
    assert isinstance(body["processed"], int) and body["processed"] >= 1
    st, by_id = srv.get(f"/v1/queues/{srv.queue(q)['id']}/stats")
    assert st == 200 and by_id["counts"] == counts


# ---- limits -------------------------------------------------------------------------------


def test_concurrency_respected_by_fetch(srv, q):
    srv.create_queue(q, concurrency=2)
    srv.enqueue_bulk(q, [{"data": i} for i in range(5)])
    got = srv.fetch(q, count=5)
    assert len(got) == 2
    assert srv.fetch(q, count=5, worker="other") == []
    srv.complete(got[0])
    more = srv.fetch(q, count=5)
    assert len(more) == 1
    assert srv.queue(q)["counts"]["active"] == 2


def test_concurrency_wakes_parked_fetch_when_slot_frees(srv, q):
    srv.create_queue(q, concurrency=1)
    srv.enqueue(q, "a")
    srv.enqueue(q, "b")
    a = srv.fetch_one(q)
    out = {}

    def park():
        out["jobs"] = srv.fetch(q, wait_ms=15000, worker="parked")

    t = threading.Thread(target=park)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "fetch handed out a job beyond the queue's concurrency"
    start = time.monotonic()
    srv.complete(a)
    t.join(20)
    assert [j["data"] for j in out["jobs"]] == ["b"]
    assert time.monotonic() - start < 8


def test_max_size(srv, q):
    srv.create_queue(q, max_size=2)
    srv.enqueue(q, 1)
    srv.enqueue(q, 2, delay_ms=60000)  # scheduled jobs count
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"data": 3})
    assert_error(r, 429, "queue_full")
    assert r.header("Retry-After") == "1", r.headers
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": [{"data": 3}]})
    assert_error(r, 429, "queue_full")
    srv.fetch_one(q)  # active jobs do not count
    srv.enqueue(q, 4)
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"data": 5}), 429, "queue_full")
    assert srv.queue(q)["counts"]["waiting"] == 1


def test_max_size_bulk_is_all_or_nothing(srv, q):
    srv.create_queue(q, max_size=3)
    srv.enqueue(q, 0)
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": [{"data": i} for i in range(3)]})
    assert_error(r, 429, "queue_full")
    assert srv.queue(q)["counts"]["waiting"] == 1
    assert len(srv.enqueue_bulk(q, [{"data": 1}, {"data": 2}])) == 2


# ---- retention ----------------------------------------------------------------------------


def test_keep_completed_by_count(srv, q):
    srv.create_queue(q, keep_completed={"count": 2})
    ids = _finish_jobs(srv, q, 5, "complete")

    def trimmed():
        return all(srv.request("GET", f"/v1/jobs/{j}").status == 404 for j in ids[:3])

    wait_until(trimmed, what="old completed jobs to be removed")
    for j in ids[3:]:
        assert srv.state(j) == "completed"
    assert srv.queue(q)["counts"]["completed"] == 2


def test_keep_failed_by_count(srv, q):
    srv.create_queue(q, keep_failed={"count": 1})
    ids = _finish_jobs(srv, q, 3, "fail")

    def trimmed():
        return all(srv.request("GET", f"/v1/jobs/{j}").status == 404 for j in ids[:2])

    wait_until(trimmed, what="old failed jobs to be removed")
    assert srv.state(ids[2]) == "failed"
    assert srv.queue(q)["counts"]["failed"] == 1


# ---- last processed / last error ----------------------------------------------------------


def test_last_processed_and_last_error(srv, q):
    srv.enqueue(q)
    j = srv.fetch_one(q)
    t0 = now_ms()
    srv.complete(j)
    t1 = now_ms()
    qu = srv.queue(q)
    assert t0 - 5 <= qu["last_processed_at"] <= t1 + 5
    assert qu["last_error_at"] is None
    srv.enqueue(q, max_attempts=1)
    j = srv.fetch_one(q)
    t0 = now_ms()
    srv.fail(j, "disk on fire")
    t1 = now_ms()
    qu = srv.queue(q)
    assert t0 - 5 <= qu["last_error_at"] <= t1 + 5
    assert "disk on fire" in str(qu["last_error"])
