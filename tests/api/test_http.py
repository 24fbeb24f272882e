"""HTTP behaviour: health endpoints, routing errors, keep-alive, pipelining, error shape."""

import http.client
import json
import threading
import time

import pytest

from conftest import assert_error, raw_request, read_responses


def test_healthz_and_readyz(srv):
    for path in ("/healthz", "/readyz"):
        r = srv.request("GET", path)
        assert r.status == 200, r


def test_unknown_path_404(srv):
    for path in ("/nope", "/v1/nothing-here", "/v1/jobs/x/y/z", "/v2/queues"):
        assert_error(srv.request("GET", path), 404, "not_found")


@pytest.mark.parametrize("method,path", [
    ("PUT", "/v1/queues"),
    ("DELETE", "/v1/fetch"),
    ("GET", "/v1/fetch"),
    ("GET", "/v1/ack"),
    ("PUT", "/v1/jobs/some-id"),
    ("GET", "/v1/jobs/some-id/complete"),
    ("POST", "/healthz"),
])
def test_wrong_method_405(srv, method, path):
    assert_error(srv.request(method, path), 405, "method_not_allowed")


def _keepalive_sequence(srv, q):
    """(method, path, body, expected status) on one connection, errors included."""
    return [
        ("GET", "/healthz", None, 200),
        ("POST", "/v1/queues", {"name": q}, 201),
        ("POST", f"/v1/queues/{q}/jobs", {"data": {"n": 1}}, 201),
        ("GET", f"/v1/queues/{q}", None, 200),
        ("GET", "/v1/jobs/no-such-job", None, 404),
        ("POST", f"/v1/queues/{q}/jobs", b"{not json", 400),
        ("POST", "/v1/fetch", {"queues": [q], "worker": "ka"}, 200),
        ("GET", f"/v1/jobs?queue={q}", None, 200),
        ("PATCH", f"/v1/queues/{q}", {"description": "d"}, 200),
        ("GET", "/readyz", None, 200),
    ]


def test_keep_alive(srv, q):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.connect()
    sock = conn.sock
    try:
        for method, path, body, want in _keepalive_sequence(srv, q):
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read()
            assert r.status == want, (method, path, r.status, raw)
            assert (r.getheader("Connection") or "").lower() != "close", \
                f"{method} {path} answered with Connection: close"
            assert conn.sock is sock, f"connection was closed after {method} {path}"
    finally:
        conn.close()


def test_http10_request_is_answered(srv):
    s = raw_request(srv.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    resps, _ = read_responses(s, 1)
    s.close()
    assert resps and resps[0].status == 200


def test_pipelining(srv, q):
    srv.create_queue(q)
    body = json.dumps({"data": "piped"}).encode()
    one = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    get = f"GET /v1/queues/{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    s = raw_request(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + one + one + get)
    resps, closed = read_responses(s, 4, timeout=10)
    s.close()
    assert [r.status for r in resps] == [200, 201, 201, 200], resps
    assert json.loads(resps[3].body)["counts"]["waiting"] == 2
    assert srv.queue(q)["counts"]["waiting"] == 2


def test_every_request_answered_without_other_traffic(srv, q):
    # A reply completed off the request path (after the store commits) must be sent without
    # waiting for unrelated network activity to wake the server.
    hung = []
    for i in range(100):
        try:
            r = srv.request("POST", f"/v1/queues/{q}/jobs", {"data": i}, timeout=5)
            assert r.status == 201, r
        except TimeoutError:
            hung.append(i)
    assert not hung, f"{len(hung)} of 100 enqueues got no answer within 5 s: {hung[:10]}"


def test_many_connections_at_once(srv, q):
    results = []

    def one(i):
        st, body = srv.post(f"/v1/queues/{q}/jobs", {"data": i})
        results.append(st)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [201] * 50
    assert srv.queue(q)["counts"]["waiting"] == 50


def test_idle_half_request_does_not_block_others(srv):
    s = raw_request(srv.port, b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Le")
    try:
        start = time.monotonic()
        for _ in range(5):
            assert srv.request("GET", "/healthz").status == 200
        assert time.monotonic() - start < 5
    finally:
        s.close()
    assert srv.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/v1/jobs/does-not-exist", None, 404),
    ("GET", "/v1/queues/does-not-exist-queue", None, 404),
    ("POST", "/v1/queues", b"{", 400),
    ("POST", "/v1/queues", {"name": "bad name"}, 400),
    ("POST", "/v1/fetch", {"queues": []}, 400),
    ("POST", "/v1/jobs/does-not-exist/cancel", None, 404),
    ("GET", "/not-a-route", None, 404),
    ("DELETE", "/v1/fetch", None, 405),
])
def test_error_body_shape(srv, method, path, body, status):
    r = srv.request(method, path, body) if body is not None else srv.request(method, path)
    assert_error(r, status)
    assert set(r.json) == {"error"}


def test_server_answers_json_content_type(srv, q):
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"data": 1})
    assert r.status == 201
    assert "application/json" in r.header("Content-Type", "")
    r = srv.request("GET", "/v1/queues")
    assert "application/json" in r.header("Content-Type", "")
