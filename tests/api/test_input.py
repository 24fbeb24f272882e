"""Malformed and hostile input: bad JSON, deep nesting, big bodies, unknown fields, wrong
types, out-of-range values, raw-socket garbage, odd framing. After each the server must still
answer /healthz."""

import json
import random
import socket
import time

import pytest

from conftest import assert_error, raw_request, read_responses, send_streaming


@pytest.fixture
def healthy(srv):
    yield srv
    r = srv.request("GET", "/healthz", timeout=10)
    assert r.status == 200, f"/healthz after the test: {r!r}"


def _post_raw(port, path, body, extra_headers=""):
    req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n{extra_headers}\r\n").encode() + body
    s = raw_request(port, req)
    resps, _ = read_responses(s, 1)
    s.close()
    return resps


# ---- JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"{", b"{\"data\":}", b"nul", b"{\"data\": 1} trailing", b"{'data': 1}", b"{\"a\" 1}",
    b"[1,2", b"{\"data\": \"unterminated}", b"\xff\xfe{}", b"{\"data\": \"\xc3\x28\"}",
    b"{\"data\": NaN}", b"{\"data\": 01}", b"\x00",
])
def test_bad_json_400(healthy, q, body):
    srv = healthy
    r = srv.request("POST", f"/v1/queues/{q}/jobs", body)
    assert_error(r, 400, "invalid_json")
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")


@pytest.mark.parametrize("path", ["/v1/queues", "/v1/fetch", "/v1/ack", "/v1/dead-letter/retry"])
def test_bad_json_on_other_endpoints(healthy, path):
    assert_error(healthy.request("POST", path, b"{\"x\":"), 400, "invalid_json")


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_nesting_10000_deep(healthy, q, opener, closer):
    n = 10000
    body = '{"data":' + opener * n + "1" + closer * n + "}"
    assert_error(healthy.request("POST", f"/v1/queues/{q}/jobs", body), 400, "invalid_json")
    unbalanced = '{"data":' + opener * n
    assert_error(healthy.request("POST", f"/v1/queues/{q}/jobs", unbalanced), 400,
                 "invalid_json")


def test_nesting_limit(healthy, q):
    srv = healthy
    ok = {"data": json.loads("[" * 40 + "]" * 40)}
    r = srv.request("POST", f"/v1/queues/{q}/jobs", ok)
    assert r.status == 201, r
    deep = '{"data":' + "[" * 100 + "]" * 100 + "}"
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", deep), 400, "invalid_json")


def test_body_not_an_object(healthy, q):
    for body in ("[1,2]", '"text"', "42", "null"):
        assert_error(healthy.request("POST", f"/v1/queues/{q}/jobs", body), 400)


# ---- size limits --------------------------------------------------------------------------


def _big_body(n):
    head = b'{"data":"'
    return head + b"x" * (n - len(head) - 2) + b'"}'


def test_body_over_limit_413(healthy, q):
    body = _big_body(2 * 1024 * 1024)
    hdr = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode()
    s = raw_request(healthy.port, b"")
    resps, _ = send_streaming(s, hdr, (body[i:i + 65536] for i in range(0, len(body), 65536)))
    s.close()
    assert resps, "no answer to a 2 MiB body"
    assert resps[0].status == 413, resps[0]
    assert_error(resps[0], 413, "payload_too_large")
    assert_error(healthy.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_chunked_body_over_limit_413(healthy, q):
    hdr = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Transfer-Encoding: chunked\r\n\r\n").encode()
    body = _big_body(2 * 1024 * 1024)

    def chunks():
        for i in range(0, len(body), 65536):
            part = body[i:i + 65536]
            yield f"{len(part):x}\r\n".encode() + part + b"\r\n"
        yield b"0\r\n\r\n"

    s = raw_request(healthy.port, b"")
    resps, _ = send_streaming(s, hdr, chunks())
    s.close()
    assert resps, "no answer to a 2 MiB chunked body"
    assert_error(resps[0], 413, "payload_too_large")
    assert_error(healthy.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_body_just_under_limit_accepted(healthy, q):
    body = _big_body(1024 * 1024 - 1024)
    r = healthy.request("POST", f"/v1/queues/{q}/jobs", body)
    assert r.status == 201, r
    assert len(healthy.job(r.json["id"])["data"]) == len(body) - 11


def test_body_through_http_client_2mib(healthy, q):
    try:
        r = healthy.request("POST", f"/v1/queues/{q}/jobs", _big_body(2 * 1024 * 1024))
    except (BrokenPipeError, ConnectionResetError):
        r = None
    if r is not None:
        assert_error(r, 413, "payload_too_large")
    assert_error(healthy.request("GET", f"/v1/queues/{q}"), 404, "not_found")


# ---- unknown fields, types, ranges --------------------------------------------------------


@pytest.mark.parametrize("path,body,field", [
    ("/v1/queues/{q}/jobs", {"data": 1, "bogus": 2}, "bogus"),
    ("/v1/queues/{q}/jobs", {"jobs": [{"data": 1}, {"data": 2, "bogus": 2}]}, "bogus"),
    ("/v1/queues", {"name": "{q}", "colour": "red"}, "colour"),
    ("/v1/fetch", {"queues": ["{q}"], "bogus": 1}, "bogus"),
    ("/v1/queues/{q}/jobs", {"backoff": {"type": "fixed", "delay_ms": 10, "zzz": 1}}, "backoff"),
])
def test_unknown_field_400(healthy, q, path, body, field):
    body = json.loads(json.dumps(body).replace("{q}", q))
    err = assert_error(healthy.request("POST", path.replace("{q}", q), body), 400,
                       "invalid_argument", field)
    if field == "backoff":
        assert "zzz" in err["details"]["field"], err


@pytest.mark.parametrize("opts,field", [
    ({"priority": "highest"}, "priority"),
    ({"priority": 1.5}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": 1001}, "priority"),
    ({"priority": -1001}, "priority"),
    ({"max_attempts": "3"}, "max_attempts"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 1001}, "max_attempts"),
    ({"delay_ms": -5}, "delay_ms"),
    ({"delay_ms": "100"}, "delay_ms"),
    ({"run_at": "tomorrow"}, "run_at"),
    ({"timeout_ms": -1}, "timeout_ms"),
    ({"lease_ms": "x"}, "lease_ms"),
    ({"lease_ms": -100}, "lease_ms"),
    ({"tags": {"a": 1}}, "tags"),
    ({"tags": ["a"]}, "tags"),
    ({"group": 5}, "group"),
    ({"project": ["p"]}, "project"),
    ({"name": 5}, "name"),
    ({"requires": {"gpu": "one"}}, "requires"),
    ({"backoff": {"type": "sideways", "delay_ms": 10}}, "backoff"),
    ({"backoff": {"type": "exponential", "delay_ms": 100, "jitter": 2}}, "backoff"),
    ({"backoff": {"type": "fixed", "delay_ms": -1}}, "backoff"),
    ({"backoff": "fast"}, "backoff"),
    ({"id": "has space"}, "id"),
    ({"id": ""}, "id"),
    ({"id": "x" * 129}, "id"),
    ({"id": 17}, "id"),
])
def test_enqueue_bad_option_400(healthy, q, opts, field):
    srv = healthy
    assert_error(srv.request("POST", f"/v1/queues/{q}/jobs", {"data": 1, **opts}), 400,
                 "invalid_argument", field)
    r = srv.request("POST", f"/v1/queues/{q}/jobs", {"jobs": [{"data": 0}, {"data": 1, **opts}]})
    err = assert_error(r, 400, "invalid_argument")
    assert err["details"]["index"] == 1
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_huge_integer_priority_400(healthy, q):
    body = '{"data": 1, "priority": ' + "9" * 40 + "}"
    r = healthy.request("POST", f"/v1/queues/{q}/jobs", body)
    assert_error(r, 400, ("invalid_argument", "invalid_json"))


@pytest.mark.parametrize("body,field", [
    ({"concurrency": -1}, "concurrency"),
    ({"concurrency": "2"}, "concurrency"),
    ({"max_size": -1}, "max_size"),
    ({"max_stalls": -1}, "max_stalls"),
    ({"type": 7}, "type"),
    ({"description": {"a": 1}}, "description"),
    ({"keep_completed": {"count": -1}}, "keep_completed"),
    ({"defaults": {"max_attempts": 0}}, ("defaults", "max_attempts")),
    ({"defaults": {"priority": 5000}}, ("defaults", "priority")),
    ({"status": "sleeping"}, "status"),
])
def test_queue_bad_option_400(healthy, q, body, field):
    srv = healthy
    # A nested field may be named by its path ("defaults.priority") or by its own name.
    err = assert_error(srv.request("POST", "/v1/queues", {"name": q, **body}), 400,
                       "invalid_argument")
    fields = (field,) if isinstance(field, str) else field
    got = err.get("details", {}).get("field")
    assert isinstance(got, str) and any(got.startswith(f) for f in fields), err
    assert_error(srv.request("GET", f"/v1/queues/{q}"), 404, "not_found")


@pytest.mark.parametrize("body,field", [
    ({"queues": "q1"}, "queues"),
    ({"queues": []}, "queues"),
    ({"queues": [1]}, "queues"),
    ({"queues": ["ok"], "count": 0}, "count"),
    ({"queues": ["ok"], "count": 1001}, "count"),
    ({"queues": ["ok"], "count": "5"}, "count"),
    ({"queues": ["ok"], "wait_ms": -1}, "wait_ms"),
    ({"queues": ["ok"], "wait_ms": 600001}, "wait_ms"),
    ({"queues": ["ok"], "worker": 5}, "worker"),
    ({"count": 1}, "queues"),
])
def test_fetch_bad_input_400(healthy, body, field):
    assert_error(healthy.request("POST", "/v1/fetch", body), 400, "invalid_argument", field)


def test_worker_verbs_bad_input(healthy, q):
    srv = healthy
    srv.enqueue(q)
    j = srv.fetch_one(q)
    path = f"/v1/jobs/{j['id']}"
    assert_error(srv.request("POST", f"{path}/complete", {}), 400, "invalid_argument", "lease")
    assert_error(srv.request("POST", f"{path}/complete", {"lease": 5}), 400, "invalid_argument",
                 "lease")
    assert_error(srv.request("POST", f"{path}/fail", {"lease": j["lease"], "error": "x"}), 400,
                 "invalid_argument", "error")
    assert_error(srv.request("POST", f"{path}/heartbeat",
                             {"lease": j["lease"], "extend_ms": -5}), 400, "invalid_argument",
                 "extend_ms")
    assert_error(srv.request("POST", f"{path}/complete", {"lease": j["lease"], "x": 1}), 400,
                 "invalid_argument", "x")
    assert srv.state(j["id"]) == "active"
    assert srv.complete(j)["state"] == "completed"


# ---- raw socket abuse ---------------------------------------------------------------------


def _rand(n, seed):
    return random.Random(seed).randbytes(n)


GARBAGE = {
    "random-bytes": _rand(4096, 1),
    "random-after-request-line": b"GET /healthz HTTP/1.1\r\n" + _rand(2048, 2),
    "no-version": b"GET /healthz\r\n\r\n",
    "bad-request-line": b"GARBAGE\r\n\r\n",
    "binary-method": b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
    "header-without-colon": b"GET /healthz HTTP/1.1\r\nHost x\r\nnonsense\r\n\r\n",
    "huge-header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n",
    "huge-url": b"GET /" + b"a" * 200000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "many-headers": b"GET /healthz HTTP/1.1\r\n" + b"".join(
        b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    "negative-length": b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{}",
    "huge-length": b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\n"
                   b"Content-Length: 99999999999999999999999999\r\n\r\n{}",
    "hex-length": b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n{}",
    "bad-chunk-size": b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\nabc\r\n0\r\n\r\n",
    "huge-chunk-size": b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       b"\r\nfffffffffffffffffffff\r\nabc\r\n",
    "nul-in-path": b"GET /v1/jobs/ab\x00cd HTTP/1.1\r\nHost: x\r\n\r\n",
    "percent-garbage": b"GET /v1/jobs/%zz%00%ff HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-lf": b"GET /healthz HTTP/1.1\nHost: x\n\n",
    "tls-hello": bytes.fromhex("160301020001000200030300") + _rand(500, 3),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_on_raw_socket(healthy, name):
    s = raw_request(healthy.port, b"")
    try:
        try:
            s.sendall(GARBAGE[name])
        except (BrokenPipeError, ConnectionResetError):
            pass
        resps, _ = read_responses(s, 1, timeout=1.5)
    finally:
        s.close()
    for r in resps:
        assert r.status < 500 or r.status == 505, f"{name}: {r.status} {r.body[:200]!r}"


def test_truncated_body_then_close(healthy, q):
    body = json.dumps({"data": "never finished"}).encode()
    req = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:10]
    s = raw_request(healthy.port, req)
    time.sleep(0.2)
    s.close()
    time.sleep(0.2)
    assert_error(healthy.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_content_length_with_comma(healthy, q):
    body = json.dumps({"data": 1}).encode()
    n = len(body)
    for value in (f"{n}, {n}", f"{n},{n}", f"{n}, {n + 5}"):
        req = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               f"\r\nContent-Length: {value}\r\n\r\n").encode() + body
        s = raw_request(healthy.port, req)
        resps, _ = read_responses(s, 1, timeout=5)
        s.close()
        assert resps, f"no answer to Content-Length: {value}"
        assert resps[0].status == 400, (value, resps[0].status, resps[0].body[:200])
    assert_error(healthy.request("GET", f"/v1/queues/{q}"), 404, "not_found")


def test_request_in_tiny_chunks_with_pauses(healthy, q):
    body = json.dumps({"data": {"slow": "ly"}, "priority": "high"}).encode()
    req = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    s = raw_request(healthy.port, b"")
    try:
        i = 0
        while i < len(req):
            step = 1 + i % 3
            s.sendall(req[i:i + step])
            i += step
            time.sleep(0.005)
            if req[:i].endswith(b"\r\n\r\n"):
                time.sleep(0.3)  # pause between headers and body
        resps, _ = read_responses(s, 1, timeout=10)
    finally:
        s.close()
    assert resps and resps[0].status == 201, resps
    job = json.loads(resps[0].body)
    assert healthy.job(job["id"])["data"] == {"slow": "ly"}
    assert healthy.job(job["id"])["priority"] == 10


def test_get_in_tiny_chunks_then_keep_alive(healthy):
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s = raw_request(healthy.port, b"")
    try:
        for b in req:
            s.sendall(bytes([b]))
            time.sleep(0.003)
        first, _ = read_responses(s, 1, timeout=10)
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        second, _ = read_responses(s, 1, timeout=10)
    finally:
        s.close()
    assert first and first[0].status == 200
    assert second and second[0].status == 200


def test_chunked_request_body(healthy, q):
    body = json.dumps({"data": "chunked!"}).encode()
    parts = [body[:5], body[5:9], body[9:]]
    req = (f"POST /v1/queues/{q}/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Transfer-Encoding: chunked\r\n\r\n").encode()
    for p in parts:
        req += f"{len(p):x}\r\n".encode() + p + b"\r\n"
    req += b"0\r\n\r\n"
    s = raw_request(healthy.port, req)
    resps, _ = read_responses(s, 1)
    s.close()
    assert resps and resps[0].status == 201, resps
    assert json.loads(resps[0].body)["data"] == "chunked!"


def test_many_connections_opened_and_dropped(healthy):
    socks = []
    for _ in range(200):
        socks.append(socket.create_connection(("127.0.0.1", healthy.port), timeout=5))
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.close()
    assert healthy.request("GET", "/healthz").status == 200


def test_server_survives_input_fuzz(healthy, q):
    rnd = random.Random(7)
    valid = json.dumps({"data": {"a": [1, 2, {"b": "c"}]}, "priority": 5, "tags": {"k": "v"},
                        "backoff": {"type": "fixed", "delay_ms": 10}}).encode()
    for i in range(300):
        b = bytearray(valid)
        for _ in range(rnd.randint(1, 4)):
            op = rnd.random()
            pos = rnd.randrange(len(b))
            if op < 0.4:
                b[pos] = rnd.randrange(256)
            elif op < 0.7:
                del b[pos]
            else:
                b.insert(pos, rnd.choice(b'{}[]",:\\0-eE.\x00\xff'))
        r = healthy.request("POST", f"/v1/queues/{q}/jobs", bytes(b))
        assert r.status in (201, 400), (bytes(b), r)
        if r.status == 400:
            assert_error(r, 400, ("invalid_json", "invalid_argument"))
