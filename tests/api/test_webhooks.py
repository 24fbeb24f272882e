"""Webhooks: registration, per-job webhooks, signed deliveries with retries, filters, the
progress throttle, and the durable outbox across kill -9.

Deliveries go to a real HTTP receiver on loopback (http.server in a thread) that records
every request and answers with the status codes the test scripts. Servers run with
--webhook-backoff-ms so retries take milliseconds (the schedule is the same, scaled)."""

import hashlib
import hmac
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


# ---- the verification snippet of docs/webhooks.md, verbatim -------------------------------

def verify(secret: bytes, headers, body: bytes, tolerance_s: int = 300) -> bool:
    ts = headers.get("X-Jobq-Timestamp", "")
    sig = headers.get("X-Jobq-Signature", "")
    if not ts.isdigit() or not sig.startswith("sha256="):
        return False
    if abs(time.time() - int(ts)) > tolerance_s:
        return False  # too old (or from the future): a replay
    expected = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig[len("sha256="):])


# ---- a receiver ----------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """Records every POST; answers `codes` in turn (then 200). Not listening until start()."""

    def __init__(self, codes=(), port=None):
        self.port = port or free_port()
        self.codes = list(codes)
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

    def make(codes=(), port=None, start=True):
        r = Receiver(codes, port)
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
