"""The Idempotency-Key header: replays of the first answer, a reused key with another body,
a key still in progress, errors not kept, records surviving kill -9, and expiry."""

import json

from conftest import assert_error, raw_request, read_responses, wait_until


def post(s, path, body, key, **kw):
    return s.request("POST", path, body, headers={"Idempotency-Key": key}, **kw)


def test_enqueue_replays_the_first_answer(srv):
    q = srv.qname()
    r1 = post(srv, f"/v1/queues/{q}/jobs", {"data": {"n": 1}}, "enq-1")
    assert r1.status == 201 and r1.header("Idempotent-Replayed") is None
    r2 = post(srv, f"/v1/queues/{q}/jobs", {"data": {"n": 1}}, "enq-1")
    assert r2.status == 201 and r2.header("Idempotent-Replayed") == "true"
    assert r2.body == r1.body
    assert srv.queue(q)["counts"]["waiting"] == 1
    # the same key on another path is another key
    r3 = post(srv, f"/v1/queues/{srv.qname()}/jobs", {"data": {"n": 1}}, "enq-1")
    assert r3.status == 201 and r3.json["id"] != r1.json["id"]
    # no key: no replay
    assert srv.enqueue(q, {"n": 1})["id"] != r1.json["id"]


def test_same_key_other_body_is_422(srv):
    q = srv.qname()
    assert post(srv, f"/v1/queues/{q}/jobs", {"data": 1}, "k-body").status == 201
    r = post(srv, f"/v1/queues/{q}/jobs", {"data": 2}, "k-body")
    assert_error(r, 422, "idempotency_key_reused", field="Idempotency-Key")
    assert srv.queue(q)["counts"]["waiting"] == 1


def test_errors_are_not_kept(srv):
    q = srv.qname()
    r = post(srv, f"/v1/queues/{q}/jobs", {"data": 1, "priority": "huge"}, "k-err")
    assert_error(r, 400, "invalid_argument", field="priority")
    # the key is free again: a corrected request (another body) runs
    r = post(srv, f"/v1/queues/{q}/jobs", {"data": 1}, "k-err")
    assert r.status == 201 and r.header("Idempotent-Replayed") is None


def test_bad_keys_are_400(srv):
    q = srv.qname()
    for key in ("x" * 256, "has space"):
        assert_error(post(srv, f"/v1/queues/{q}/jobs", {"data": 1}, key), 400,
                     "invalid_argument", field="Idempotency-Key")
    # GET ignores the header
    assert srv.request("GET", "/v1/queues", headers={"Idempotency-Key": "x y"}).status == 200


def _raw_post(s, path, body, key):
    data = json.dumps(body).encode()
    return raw_request(s.port, f"POST {path} HTTP/1.1\r\nHost: x\r\nIdempotency-Key: {key}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                       .encode() + data)


def test_key_in_progress_is_409_then_replayed(srv):
    q = srv.qname()
    body = {"queues": [q], "wait_ms": 1500, "worker": "w"}
    sock = _raw_post(srv, "/v1/fetch", body, "k-fetch")
    # once the first is registered (another body with the key is 422), the same request
    # answers 409 while the first is parked in its long poll
    wait_until(lambda: post(srv, "/v1/fetch", {"queues": [q]}, "k-fetch").status == 422,
               timeout=5, what="the first request in progress")
    assert_error(post(srv, "/v1/fetch", body, "k-fetch"), 409, "conflict", field="Idempotency-Key")
    got, _ = read_responses(sock, 1, timeout=10)
    sock.close()
    assert got and got[0].status == 200 and json.loads(got[0].body) == {"jobs": []}
    r = post(srv, "/v1/fetch", body, "k-fetch")
    assert r.status == 200 and r.header("Idempotent-Replayed") == "true"
    assert r.json == {"jobs": []}


def test_a_client_that_leaves_frees_its_key(srv):
    q = srv.qname()
    sock = _raw_post(srv, "/v1/fetch", {"queues": [q], "wait_ms": 30000, "worker": "w"}, "k-gone")
    wait_until(lambda: post(srv, "/v1/fetch", {"queues": [q]}, "k-gone").status == 422,
               timeout=5, what="the first request in progress")
    sock.close()
    r = wait_until(lambda: (lambda x: x if x.status == 200 else None)(
        post(srv, "/v1/fetch", {"queues": [q]}, "k-gone")), timeout=5, what="the key freed")
    assert r.json == {"jobs": []}


def test_other_posts_and_204_answers(srv):
    q = srv.qname()
    s = srv.call("POST", "/v1/schedules", {"name": srv.qname("s"), "queue": q,
                                          "cron": "0 0 1 1 *"}, 201)
    r1 = post(srv, f"/v1/schedules/{s['id']}/trigger", None, "trig")
    r2 = post(srv, f"/v1/schedules/{s['id']}/trigger", None, "trig")
    assert r1.status == r2.status == 201 and r1.json["id"] == r2.json["id"]
    assert srv.call("GET", f"/v1/schedules/{s['id']}")["runs"] == 1
    r1 = post(srv, f"/v1/queues/{q}/pause", None, "pause")
    r2 = post(srv, f"/v1/queues/{q}/pause", None, "pause")
    assert r1.status == r2.status == 200 and r2.header("Idempotent-Replayed") == "true"


def test_records_survive_kill9(server):
    s = server
    q = s.qname()
    r1 = post(s, f"/v1/queues/{q}/jobs", {"data": "x"}, "durable")
    assert r1.status == 201
    s.kill9()
    s.restart()
    r2 = post(s, f"/v1/queues/{q}/jobs", {"data": "x"}, "durable")
    assert r2.status == 201 and r2.header("Idempotent-Replayed") == "true"
    assert r2.json["id"] == r1.json["id"]
    assert s.queue(q)["counts"]["waiting"] == 1


def test_records_expire_after_the_ttl(server_factory):
    s = server_factory(["--idempotency-ttl-ms", "500"])
    q = s.qname()
    r1 = post(s, f"/v1/queues/{q}/jobs", {"data": "x"}, "short")
    assert r1.status == 201

    def fresh():
        r = post(s, f"/v1/queues/{q}/jobs", {"data": "x"}, "short")
        assert r.status == 201
        return r if r.header("Idempotent-Replayed") is None else None

    r2 = wait_until(fresh, timeout=10, interval=0.1, what="the record to expire")
    assert r2.json["id"] != r1.json["id"]
    # expired records are gone from the store too: a restart does not bring r1's back
    s.terminate()
    s.start()
    r3 = post(s, f"/v1/queues/{q}/jobs", {"data": "x"}, "short")
    assert r3.status == 201 and r3.json["id"] != r1.json["id"]


def test_memory_cap_forgets_the_oldest_answers_first(server_factory):
    # each kept enqueue answer takes about 1 KiB: 8 KiB keeps the last few of 20, not all
    s = server_factory(["--idempotency-max-bytes", "8192"])
    q = s.qname()
    first = [post(s, f"/v1/queues/{q}/jobs", {"data": i}, f"cap-{i}") for i in range(20)]
    assert all(r.status == 201 for r in first)
    last = post(s, f"/v1/queues/{q}/jobs", {"data": 19}, "cap-19")
    assert last.header("Idempotent-Replayed") == "true" and last.json["id"] == first[19].json["id"]
    # the oldest answer was forgotten, from the store as well: after a restart the request
    # runs anew, while the newest is still replayed
    s.terminate()
    s.start()
    again = post(s, f"/v1/queues/{q}/jobs", {"data": 0}, "cap-0")
    assert again.status == 201 and again.header("Idempotent-Replayed") is None
    assert again.json["id"] != first[0].json["id"]
    last = post(s, f"/v1/queues/{q}/jobs", {"data": 19}, "cap-19")
    assert last.header("Idempotent-Replayed") == "true" and last.json["id"] == first[19].json["id"]


def test_bad_flags_are_refused(tmp_path):
    import subprocess
    from conftest import JOBQD
    for flag, value in (("--idempotency-ttl-ms", "0"), ("--idempotency-max-bytes", "100"),
                        ("--idempotency-max-bytes", "lots")):
        p = subprocess.run([JOBQD, "--data", str(tmp_path), flag, value], capture_output=True,
                           timeout=10)
        assert p.returncode == 1 and flag[2:].encode() in p.stderr, (flag, value, p.stderr)
