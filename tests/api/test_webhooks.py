"""Webhooks: registration, per-job webhooks, signed deliveries with retries, filters, the
progress throttle, and the durable outbox across kill -9.

Deliveries go to a real HTTP receiver on loopback (http.server in a thread) that records
every request and answers with the status codes the test scripts. Servers run with
--webhook-backoff-ms so retries take milliseconds (the schedule is the same, scaled)."""

import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import assert_error, wait_until

REPO = Path(__file__).resolve().parents[2]
JOBQ = os.environ.get("JOBQ") or str(REPO / "build" / "jobq")
FAST = ["--webhook-backoff-ms", "100"]


# ---- the verification snippet of docs/webhooks.md, run as the page shows it -----------------

def _docs_verify():
    """verify() as docs/webhooks.md defines it: its first python block, executed as is."""
    page = (REPO / "docs" / "webhooks.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(compile(code, "docs/webhooks.md", "exec"), scope)
    return scope["verify"]


verify = _docs_verify()


# ---- a receiver ----------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Records every POST; answers `codes` in turn (then 200). Not listening until start()."""

    def __init__(self, codes=(), port=None, gate=None):
        self.port = port or free_port()
        self.codes = list(codes)
        self.gate = gate  # a threading.Event every answer waits for (a slow endpoint)
        self.waiting = 0
        self.calls = []  # dicts: path, headers, body, json, code
        self.lock = threading.Lock()
        self.httpd = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if rec.gate:
                    with rec.lock:
                        rec.waiting += 1
                    rec.gate.wait(30)
                with rec.lock:
                    code = rec.codes.pop(0) if rec.codes else 200
                    rec.calls.append({"path": self.path, "headers": self.headers, "body": body,
                                      "json": json.loads(body), "code": code})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.gate:
            self.gate.set()
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def got(self, path=None, type=None):
        with self.lock:
            return [c for c in self.calls
                    if (path is None or c["path"] == path)
                    and (type is None or c["json"].get("type") == type)]

    def wait(self, n, path=None, type=None, timeout=10.0):
        return wait_until(lambda: (lambda g: g if len(g) >= n else None)(self.got(path, type)),
                          timeout, what=f"{n} deliveries to {path or 'any path'} of {type}")


@pytest.fixture
def receiver():
    made = []

    def make(codes=(), port=None, start=True, gate=None):
        r = Receiver(codes, port, gate)
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


def add_hook(s, url, events, **extra):
    body = {"url": url, "events": events}
    body.update(extra)
    return s.call("POST", "/v1/webhooks", body, 201)


def deliveries(s, hook_id):
    return s.call("GET", f"/v1/webhooks/{hook_id}/deliveries")["deliveries"]


def settled(s, hook_id, n):
    """The hook's deliveries once n of them are finished and none is pending."""
    def check():
        ds = deliveries(s, hook_id)
        done = [d for d in ds if d["status"] in ("delivered", "failed")]
        return ds if len(done) >= n and len(done) == len(ds) else None
    return wait_until(check, 15, what=f"{n} finished deliveries of {hook_id}")


def run_job(s, q, complete=True, **opts):
    j = s.enqueue(q, {"v": 1}, **opts)
    got = s.fetch_until(q)
    assert got["id"] == j["id"]
    if complete:
        s.complete(got, {"ok": True})
    return got


# ---- registration ---------------------------------------------------------------------------

def test_create_list_get_delete(srv):
    h = add_hook(srv, "https://example.com/hook", ["job.completed", "job.failed"],
                 queues=["render"], project="p1", secret="s3cret", token="tok")
    assert h["id"] and h["url"] == "https://example.com/hook"
    assert h["events"] == ["job.completed", "job.failed"]
    assert h["queues"] == ["render"] and h["project"] == "p1"
    assert h["has_secret"] is True and h["has_token"] is True
    assert "secret" not in h and "token" not in h  # never shown again
    assert isinstance(h["created_at"], int) and h["pending"] == 0
    assert srv.call("GET", f"/v1/webhooks/{h['id']}") == h
    listed = srv.call("GET", "/v1/webhooks")
    assert h in listed["webhooks"]
    assert set(listed["outbox"]) >= {"pending", "sending", "delivered", "failed", "dropped", "max"}
    assert deliveries(srv, h["id"]) == []
    r = srv.request("DELETE", f"/v1/webhooks/{h['id']}")
    assert r.status == 204
    assert_error(srv.request("GET", f"/v1/webhooks/{h['id']}"), 404, "not_found")
    assert_error(srv.request("DELETE", f"/v1/webhooks/{h['id']}"), 404, "not_found")
    assert_error(srv.request("GET", f"/v1/webhooks/{h['id']}/deliveries"), 404, "not_found")


@pytest.mark.parametrize("body,field", [
    ({"events": ["*"]}, "url"),
    ({"url": "ftp://example.com/", "events": ["*"]}, "url"),
    ({"url": "example.com/hook", "events": ["*"]}, "url"),
    ({"url": "http://", "events": ["*"]}, "url"),
    ({"url": 5, "events": ["*"]}, "url"),
    ({"url": "http://x/"}, "events"),
    ({"url": "http://x/", "events": []}, "events"),
    ({"url": "http://x/", "events": "job.completed"}, "events"),
    ({"url": "http://x/", "events": ["job.finished"]}, "events"),
    ({"url": "http://x/", "events": ["*"], "queues": []}, "queues"),
    ({"url": "http://x/", "events": ["*"], "queues": ["bad name"]}, "queues"),
    ({"url": "http://x/", "events": ["*"], "project": 7}, "project"),
    ({"url": "http://x/", "events": ["*"], "secret": ""}, "secret"),
    ({"url": "http://x/", "events": ["*"], "token": "a\r\nX-Evil: 1"}, "token"),
    ({"url": "http://x/", "events": ["*"], "retries": 9}, "retries"),
])
def test_bad_hooks_are_refused_naming_the_field(srv, body, field):
    assert_error(srv.request("POST", "/v1/webhooks", body), 400, "invalid_argument", field)


def test_bad_bodies(srv):
    assert_error(srv.request("POST", "/v1/webhooks", "[1]"), 400, "invalid_argument", "body")
    assert_error(srv.request("POST", "/v1/webhooks", "{"), 400, "invalid_json")
    assert_error(srv.request("POST", "/v1/webhooks", b""), 400, "invalid_json")
    assert_error(srv.request("GET", "/v1/webhooks/x/deliveries?limit=-1"), 400,
                 "invalid_argument", "limit")


@pytest.mark.parametrize("hook,field", [
    ({"events": ["job.completed"]}, "webhook.url"),
    ({"url": "gopher://x/"}, "webhook.url"),
    ({"url": "http://x/", "events": ["nope"]}, "webhook.events"),
    ({"url": "http://x/", "token": 5}, "webhook.token"),
    ({"url": "http://x/", "queues": ["q"]}, "webhook"),
    ("http://x/", "webhook"),
])
def test_bad_job_webhooks_are_refused(srv, q, hook, field):
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"data": 1, "webhook": hook}),
                 400, "invalid_argument", field)
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs",
                             {"jobs": [{"data": 1}, {"data": 2, "webhook": hook}]}),
                 400, "invalid_argument", field)


def test_hooks_survive_restart(server):
    h = add_hook(server, "http://127.0.0.1:9/h", ["*"], secret="x")
    server.restart()
    assert server.call("GET", f"/v1/webhooks/{h['id']}") == h
    server.kill9()
    server.start()
    assert server.call("GET", f"/v1/webhooks/{h['id']}") == h
    assert server.request("DELETE", f"/v1/webhooks/{h['id']}").status == 204
    server.kill9()
    server.start()
    assert_error(server.request("GET", f"/v1/webhooks/{h['id']}"), 404)


def test_cli(server, receiver):
    def jobq(*args):
        r = subprocess.run([JOBQ, "--url", server.url, *args], capture_output=True, text=True,
                           timeout=30)
        return r.returncode, r.stdout, r.stderr

    rc, out, err = jobq("webhook", "add", "http://127.0.0.1:9/cli", "--event", "job.completed",
                        "--queue", "render", "--secret", "s", "--bearer", "t")
    assert rc == 0, err
    h = json.loads(out)
    assert h["events"] == ["job.completed"] and h["queues"] == ["render"] and h["has_token"]
    rc, out, _ = jobq("webhook", "list")
    assert rc == 0 and [x["id"] for x in json.loads(out)["webhooks"]] == [h["id"]]
    rc, out, _ = jobq("webhook", "get", h["id"])
    assert rc == 0 and json.loads(out) == h
    rc, out, _ = jobq("webhook", "deliveries", h["id"], "--limit", "5")
    assert rc == 0 and json.loads(out) == {"deliveries": []}
    rc, out, err = jobq("webhook", "add", "ftp://nope", "--event", "job.completed")
    assert rc == 1 and "invalid_argument" in err
    rc, _, err = jobq("webhook", "frob")
    assert rc == 2
    rc, out, _ = jobq("webhook", "rm", h["id"])
    assert rc == 0
    rc, _, err = jobq("webhook", "get", h["id"])
    assert rc == 1 and "not_found" in err


# ---- deliveries ----------------------------------------------------------------------------

def test_retries_signature_and_token(server_factory, receiver):
    s = server_factory(FAST)
    rec = receiver(codes=[500, 503])  # the first two attempts fail
    q = s.qname()
    h = add_hook(s, rec.url + "/hook", ["job.completed"], queues=[q], secret="whsec-test",
                 token="tok-1")
    job = run_job(s, q)
    calls = rec.wait(3, "/hook")
    [d] = settled(s, h["id"], 1)
    assert len(rec.got("/hook")) == 3  # delivered on the third attempt, then never again
    assert [c["code"] for c in calls] == [500, 503, 200]
    assert [c["headers"]["X-Jobq-Attempt"] for c in calls] == ["1", "2", "3"]
    assert len({c["headers"]["X-Jobq-Delivery"] for c in calls}) == 1
    assert {c["body"] for c in calls} == {calls[0]["body"]}
    for c in calls:
        assert c["headers"]["Content-Type"] == "application/json"
        assert c["headers"]["Authorization"] == "Bearer tok-1"
        assert c["headers"]["X-Jobq-Event"] == "job.completed"
        assert verify(b"whsec-test", c["headers"], c["body"])
        assert not verify(b"wrong-secret", c["headers"], c["body"])
        assert not verify(b"whsec-test", c["headers"], c["body"] + b" ")
    ev = calls[0]["json"]
    assert ev["type"] == "job.completed" and ev["job"] == job["id"] and ev["queue"] == q
    assert isinstance(ev["seq"], int) and isinstance(ev["at"], int)
    assert d["status"] == "delivered" and d["attempts"] == 3 and d["code"] == 200
    assert d["error"] is None and d["event"] == "job.completed" and d["job"] == job["id"]
    assert d["id"] == calls[0]["headers"]["X-Jobq-Delivery"] and d["seq"] == ev["seq"]
    assert [a["code"] for a in d["log"]] == [500, 503, 200]
    assert [a["error"] for a in d["log"]] == ["HTTP 500", "HTTP 503", None]
    assert d["finished_at"] >= d["created_at"]
    outbox = s.call("GET", "/v1/webhooks")["outbox"]
    assert outbox["delivered"] == 1 and outbox["pending"] == 0


def test_failed_for_good_after_four_attempts(server_factory, receiver):
    s = server_factory(FAST)
    rec = receiver(codes=[500, 500, 500, 500, 500])
    q = s.qname()
    h = add_hook(s, rec.url + "/x", ["job.completed"], queues=[q])
    run_job(s, q)
    [d] = settled(s, h["id"], 1)
    assert d["status"] == "failed" and d["attempts"] == 4 and d["code"] == 500
    assert d["error"] == "HTTP 500" and len(d["log"]) == 4
    assert len(rec.got("/x")) == 4
    # the retries waited 100, 400 and 1600 ms (--webhook-backoff-ms 100, times 4 each)
    gaps = [b["at"] - a["at"] for a, b in zip(d["log"], d["log"][1:])]
    assert [g >= w for g, w in zip(gaps, [100, 400, 1600])] == [True] * 3, gaps
    assert s.call("GET", "/v1/webhooks")["outbox"]["failed"] == 1


def test_unreachable_endpoint_errors_are_reported(server_factory):
    s = server_factory(FAST)
    q = s.qname()
    h = add_hook(s, f"http://127.0.0.1:{free_port()}/gone", ["job.created"], queues=[q])
    s.enqueue(q, 1)
    [d] = settled(s, h["id"], 1)
    assert d["status"] == "failed" and d["attempts"] == 4 and d["code"] == 0
    assert "connect" in d["error"].lower()


def test_filters_by_type_queue_and_project(srv, receiver):
    rec = receiver()
    q1, q2 = srv.qname(), srv.qname()
    a = add_hook(srv, rec.url + "/a", ["job.created"], queues=[q1])
    b = add_hook(srv, rec.url + "/b", ["job.completed", "job.failed"], project="proj-b")
    c = add_hook(srv, rec.url + "/c", ["job.*"], queues=[q2])
    try:
        j1 = srv.enqueue(q1, 1, project="proj-b")
        j2 = srv.enqueue(q2, 2)
        srv.complete(srv.fetch_until(q1))  # completes j1: project proj-b
        got = srv.fetch_until(q2)
        srv.fail(got, "no", retryable=False)  # fails j2 for good: no project
        settled(srv, a["id"], 1)
        settled(srv, b["id"], 1)
        settled(srv, c["id"], 3)
        assert [(c_["json"]["type"], c_["json"]["job"]) for c_ in rec.got("/a")] == \
            [("job.created", j1["id"])]
        assert [(c_["json"]["type"], c_["json"]["job"]) for c_ in rec.got("/b")] == \
            [("job.completed", j1["id"])]
        types = sorted(c_["json"]["type"] for c_ in rec.got("/c"))
        assert types == ["job.created", "job.failed", "job.started"], types
        assert {c_["json"]["job"] for c_ in rec.got("/c")} == {j2["id"]}
    finally:
        for h in (a, b, c):
            srv.request("DELETE", f"/v1/webhooks/{h['id']}")


def test_job_webhook(srv, receiver):
    rec = receiver()
    q = srv.qname()
    j = srv.enqueue(q, {"clip": 1},
                    webhook={"url": rec.url + "/job", "token": "per-job",
                             "events": ["job.completed", "job.failed"]})
    other = srv.enqueue(q, {"clip": 2})  # no webhook: nothing for it
    got = srv.fetch_until(q)
    assert got["id"] == j["id"]
    srv.complete(got, {"url": "s3://out"})
    srv.complete(srv.fetch_until(q))
    [call] = rec.wait(1, "/job")
    assert call["json"]["type"] == "job.completed" and call["json"]["job"] == j["id"]
    assert call["headers"]["Authorization"] == "Bearer per-job"
    assert "X-Jobq-Signature" not in call["headers"]
    [d] = settled(srv, f"job:{j['id']}", 1)
    assert d["status"] == "delivered" and d["attempts"] == 1
    assert_error(srv.request("GET", f"/v1/webhooks/job:{other['id']}/deliveries"), 404)
    assert "webhook" not in srv.job(j["id"])  # may carry a secret: never shown


def test_job_webhook_survives_restart(server_factory, receiver):
    s = server_factory(FAST)
    rec = receiver()
    q = s.qname()
    j = s.enqueue(q, 1, webhook={"url": rec.url + "/r", "events": ["job.completed"],
                                 "secret": "after"})
    s.kill9()  # the webhook is kept with the job's options
    s.start()
    s.complete(s.fetch_until(q))
    [call] = rec.wait(1, "/r")
    assert call["json"]["job"] == j["id"] and verify(b"after", call["headers"], call["body"])


def test_job_webhook_defaults_to_every_job_event(srv, receiver):
    rec = receiver()
    q = srv.qname()
    j = run_job(srv, q, webhook={"url": rec.url + "/all", "secret": "k"})
    calls = rec.wait(3, "/all")
    assert [c["json"]["type"] for c in sorted(calls, key=lambda c: c["json"]["seq"])] == \
        ["job.created", "job.started", "job.completed"]
    assert all(verify(b"k", c["headers"], c["body"]) for c in calls)
    assert all(c["json"]["job"] == j["id"] for c in calls)


def test_progress_is_throttled_and_coalesced(server_factory, receiver):
    s = server_factory(FAST + ["--webhook-progress-ms", "2000"])
    rec = receiver()
    q = s.qname()
    h = add_hook(s, rec.url + "/p", ["job.progress"], queues=[q])
    s.enqueue(q, 1)
    job = s.fetch_until(q)
    for pct in (10, 20, 30):
        s.call("POST", f"/v1/jobs/{job['id']}/progress", {"lease": job["lease"], "percent": pct})
    first = rec.wait(1, "/p")[0]
    assert first["json"]["type"] == "job.progress"
    ds = settled(s, h["id"], 2)  # the held one goes out when the window ends
    assert len(ds) == 2 and all(d["status"] == "delivered" for d in ds)
    calls = rec.got("/p")
    assert len(calls) == 2
    assert [c["json"]["progress"]["percent"] for c in calls] == [10, 30]
    # inside the next window (it began when 30 went out): held, replaced, then dropped when
    # the job ends, although this hook does not take job.completed
    s.call("POST", f"/v1/jobs/{job['id']}/progress", {"lease": job["lease"], "percent": 40})
    s.call("POST", f"/v1/jobs/{job['id']}/progress", {"lease": job["lease"], "percent": 50})
    held = [d for d in deliveries(s, h["id"]) if d["status"] == "throttled"]
    assert len(held) == 1 and held[0]["next_attempt_at"]
    s.complete(job)
    ds = deliveries(s, h["id"])
    assert len(ds) == 2 and all(d["status"] == "delivered" for d in ds), ds
    assert s.call("GET", "/v1/webhooks")["outbox"]["pending"] == 0


def test_delivery_survives_kill9(server_factory, receiver):
    # backoff 300 ms: attempts at 0, 0.3, 1.5 and 6.3 s; the receiver comes up after 1 or 2
    s = server_factory(["--webhook-backoff-ms", "300"])
    rec = receiver(start=False)  # nobody listens yet
    q = s.qname()
    h = add_hook(s, rec.url + "/k", ["job.completed"], queues=[q], secret="kk")
    j = run_job(s, q, webhook={"url": rec.url + "/jk"})
    wait_until(lambda: all(d["attempts"] >= 1 for d in
                           deliveries(s, h["id"]) + deliveries(s, f"job:{j['id']}"))
               and len(deliveries(s, h["id"])) == 1, 10, what="a failed first attempt")
    [d] = deliveries(s, h["id"])
    assert d["status"] in ("retrying", "sending", "pending") and d["code"] == 0
    s.kill9()
    s.start()
    rec.start()
    [call] = rec.wait(1, "/k", timeout=15)
    assert call["json"]["type"] == "job.completed" and call["json"]["job"] == j["id"]
    assert verify(b"kk", call["headers"], call["body"])
    rec.wait(3, "/jk", timeout=15)  # the job's own webhook resumed too (created, started, completed)
    [d2] = settled(s, h["id"], 1)
    assert d2["id"] == d["id"] and d2["status"] == "delivered" and d2["attempts"] >= 2
    assert d2["log"][0]["code"] == 0 and d2["log"][-1]["code"] == 200


def test_accepted_delivery_is_sent_after_kill9_before_any_attempt(server_factory, receiver):
    s = server_factory(FAST)
    rec = receiver(start=False)
    q = s.qname()
    h = add_hook(s, rec.url + "/z", ["job.created"], queues=[q])
    j = s.enqueue(q, 1)  # acknowledged: its delivery is durable with it
    s.kill9()
    rec.start()
    s.start()
    [call] = rec.wait(1, "/z")
    assert call["json"]["job"] == j["id"]
    settled(s, h["id"], 1)


def test_history_is_bounded_and_survives_restart(server_factory, receiver):
    s = server_factory(FAST)
    rec = receiver()
    q = s.qname()
    h = add_hook(s, rec.url + "/h", ["job.created"], queues=[q])
    s.enqueue_bulk(q, [{"data": i} for i in range(60)])
    rec.wait(60, "/h")
    ds = settled(s, h["id"], 50)
    assert len(ds) == 50  # the 50 most recent finished deliveries
    s.restart()
    again = deliveries(s, h["id"])
    assert sorted(again, key=lambda d: d["id"]) == sorted(ds, key=lambda d: d["id"])
    finished = [d["finished_at"] for d in again]
    assert finished == sorted(finished, reverse=True)  # newest first
    assert len(s.call("GET", f"/v1/webhooks/{h['id']}/deliveries?limit=7")["deliveries"]) == 7


def test_deleting_a_hook_drops_its_deliveries(server_factory, receiver):
    s = server_factory(["--webhook-backoff-ms", "60000"])
    rec = receiver(start=False)
    q = s.qname()
    h = add_hook(s, rec.url + "/d", ["job.created"], queues=[q])
    s.enqueue(q, 1)
    wait_until(lambda: deliveries(s, h["id"])[0]["status"] == "retrying", what="a retry")
    assert s.call("GET", f"/v1/webhooks/{h['id']}")["pending"] == 1
    assert s.request("DELETE", f"/v1/webhooks/{h['id']}").status == 204
    assert s.call("GET", "/v1/webhooks")["outbox"]["pending"] == 0
    s.restart()
    assert s.call("GET", "/v1/webhooks") == {"webhooks": [], "outbox": s.call(
        "GET", "/v1/webhooks")["outbox"]}
    assert s.call("GET", "/v1/webhooks")["outbox"]["pending"] == 0


def test_a_slow_endpoint_holds_only_its_own_slots(srv, receiver):
    gate = threading.Event()
    slow, fast = receiver(gate=gate), receiver()
    q = srv.qname()
    hs = add_hook(srv, slow.url + "/slow", ["job.created"], queues=[q])
    hf = add_hook(srv, fast.url + "/fast", ["job.created"], queues=[q])
    try:
        srv.enqueue_bulk(q, [{"data": i} for i in range(10)])
        # the fast endpoint gets all ten while the slow one holds its four slots
        fast.wait(10, "/fast")
        settled(srv, hf["id"], 10)
        wait_until(lambda: slow.waiting == 4, what="four POSTs held by the slow endpoint")
        ds = deliveries(srv, hs["id"])
        assert sorted(d["status"] for d in ds) == ["pending"] * 6 + ["sending"] * 4
        assert srv.call("GET", "/v1/webhooks")["outbox"]["sending"] == 4
        # the engine does not wait for it either
        j = srv.enqueue(q, 1)
        srv.complete(srv.fetch_until(q, timeout=5))
        assert srv.state(j["id"]) in ("waiting", "completed")
        gate.set()
        settled(srv, hs["id"], 11)
        assert len(slow.got("/slow")) == 11
    finally:
        gate.set()
        for h in (hs, hf):
            srv.request("DELETE", f"/v1/webhooks/{h['id']}")


def test_full_outbox_drops_new_deliveries_and_counts_them(server_factory):
    s = server_factory(["--webhook-backoff-ms", "60000", "--webhook-outbox-max", "3"])
    q = s.qname()
    h = add_hook(s, f"http://127.0.0.1:{free_port()}/down", ["job.created"], queues=[q])
    ids = [x["id"] for x in s.enqueue_bulk(q, [{"data": i} for i in range(5)])]
    assert len(ids) == 5  # the jobs themselves are never refused
    outbox = s.call("GET", "/v1/webhooks")["outbox"]
    assert outbox["pending"] == 3 and outbox["dropped"] == 2 and outbox["max"] == 3
    assert len(deliveries(s, h["id"])) == 3
    assert "webhook outbox full" in s.log_text()


def test_deleting_a_hook_while_its_posts_are_in_flight(srv, receiver):
    gate = threading.Event()
    slow = receiver(gate=gate)
    q = srv.qname()
    h = add_hook(srv, slow.url + "/gone", ["job.created"], queues=[q], secret="s")
    delivered = srv.call("GET", "/v1/webhooks")["outbox"]["delivered"]
    try:
        srv.enqueue_bulk(q, [{"data": i} for i in range(3)])
        wait_until(lambda: slow.waiting == 3, what="three POSTs held by the endpoint")
        assert srv.request("DELETE", f"/v1/webhooks/{h['id']}").status == 204
        outbox = srv.call("GET", "/v1/webhooks")["outbox"]
        assert outbox["pending"] == 0 and outbox["sending"] == 3  # still on the wire
        assert srv.request("GET", f"/v1/webhooks/{h['id']}/deliveries").status == 404
    finally:
        gate.set()
    # their answers come back to a hook that is gone: dropped, nothing recorded
    wait_until(lambda: srv.call("GET", "/v1/webhooks")["outbox"]["sending"] == 0,
               what="the abandoned POSTs to end")
    assert srv.call("GET", "/v1/webhooks")["outbox"]["delivered"] == delivered
    fast = receiver()
    h2 = add_hook(srv, fast.url + "/next", ["job.created"], queues=[q])
    srv.enqueue(q, 1)
    fast.wait(1, "/next")
    settled(srv, h2["id"], 1)


def test_stop_abandons_posts_in_flight_and_resends_them_after(server_factory, receiver):
    s = server_factory(FAST)
    gate = threading.Event()
    slow = receiver(gate=gate)
    q = s.qname()
    h = add_hook(s, slow.url + "/t", ["job.created"], queues=[q])
    ids = {x["id"] for x in s.enqueue_bulk(q, [{"data": i} for i in range(2)])}
    try:
        wait_until(lambda: slow.waiting == 2, what="two POSTs held by the endpoint")
        # the stop does not wait for the endpoint (which holds its answers for 30 s) nor
        # for the 10 s transfer timeout
        t0 = time.monotonic()
        assert s.terminate(timeout=8) == 0, s.log_text()
        assert time.monotonic() - t0 < 8
    finally:
        gate.set()
    s.start()
    # sent again: the outcome of the abandoned attempt was never stored
    wait_until(lambda: len(slow.got("/t")) >= 4, what="both deliveries sent again")
    ds = settled(s, h["id"], 2)
    assert {d["job"] for d in ds} == ids
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in ds)
    calls = slow.got("/t")
    assert {c["headers"]["X-Jobq-Delivery"] for c in calls} == {d["id"] for d in ds}


def test_delivery_in_flight_at_kill9_is_sent_again(server_factory, receiver):
    s = server_factory(FAST)
    gate = threading.Event()
    slow = receiver(gate=gate)
    q = s.qname()
    h = add_hook(s, slow.url + "/k9", ["job.created"], queues=[q])
    j = s.enqueue(q, 1)
    try:
        wait_until(lambda: slow.waiting == 1, what="the POST held by the endpoint")
        s.kill9()
    finally:
        gate.set()
    s.start()
    wait_until(lambda: len(slow.got("/k9")) >= 2, what="the delivery sent again")
    [d] = settled(s, h["id"], 1)
    assert d["job"] == j["id"] and d["status"] == "delivered"
    assert {c["headers"]["X-Jobq-Delivery"] for c in slow.got("/k9")} == {d["id"]}


def test_a_stop_while_deliveries_flow_leaves_the_rest_for_the_next_start(server_factory, receiver):
    s = server_factory(FAST)
    gate = threading.Event()
    rec = receiver(gate=gate)
    q = s.qname()
    hooks = [add_hook(s, f"{rec.url}/drain{i}", ["job.created"], queues=[q]) for i in range(8)]
    s.enqueue_bulk(q, [{"data": i} for i in range(125)])  # 1000 deliveries
    wait_until(lambda: rec.waiting == 32, what="32 POSTs held by the endpoint")
    gate.set()  # deliveries flow, 32 at a time
    assert s.terminate() == 0, s.log_text()
    # the stop started no new POST: most of the outbox is still pending, for the next start
    assert len(rec.got()) < 1000
    s.start()
    assert "resuming" in s.log_text()
    wait_until(lambda: len({c["headers"]["X-Jobq-Delivery"] for c in rec.got()}) == 1000,
               timeout=30, what="every delivery after the restart")
    for h in hooks:
        wait_until(lambda: s.call("GET", f"/v1/webhooks/{h['id']}")["pending"] == 0,
                   what="an empty outbox")


SLOW_DNS = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>
/* getaddrinfo as a stuck name server makes it: slow.invalid takes 20 s, then fails */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (node && !strcmp(node, "slow.invalid")) {
        sleep(20);
        return EAI_AGAIN;
    }
    real = (int (*)(const char *, const char *, const struct addrinfo *,
                    struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    return real(node, service, hints, res);
}
"""


def test_a_stop_does_not_wait_for_a_slow_name_resolution(server_factory, tmp_path, monkeypatch):
    src, shim = tmp_path / "slowdns.c", tmp_path / "slowdns.so"
    src.write_text(SLOW_DNS)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    monkeypatch.setenv("LD_PRELOAD", str(shim))
    # the sanitizer build wants its runtime first; the shim only wraps getaddrinfo
    monkeypatch.setenv("ASAN_OPTIONS", ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x))
    s = server_factory(FAST)
    q = s.qname()
    h = add_hook(s, "http://slow.invalid/x", ["job.created"], queues=[q])
    s.enqueue(q, 1)
    wait_until(lambda: deliveries(s, h["id"])[0]["status"] == "sending", what="a POST resolving")
    assert s.call("GET", "/healthz") is not None  # the loop is free meanwhile
    # the transfer is abandoned while its name resolves: curl must not wait for the resolver
    assert s.terminate(timeout=15) == 0, s.log_text()
