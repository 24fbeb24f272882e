"""/v1/events: Server-Sent Events and WebSocket subscribers (docs/events.md).

Order and completeness under concurrent producers and workers, resuming with Last-Event-ID
and ?since=, the gap event when the ring no longer holds what was asked for, seqs that a
kill -9 does not reuse, filters, the overflow of a subscriber that does not read while the
server stays responsive, and the same stream over a WebSocket.
"""

import http.client
import json
import socket
import threading
import time

import pytest
import websocket

from conftest import assert_error, wait_until


class SSE:
    """A Server-Sent Events reader on its own connection: events are dicts, with "_id" set
    from the id: line when there was one."""

    def __init__(self, srv, path="/v1/events", headers=None, timeout=10.0):
        self.conn = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

    def next(self):
        """The next event (comments skipped), or None at the end of the stream."""
        ev_id, data = None, []
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if data:
                    ev = json.loads("\n".join(data))
                    ev["_id"] = ev_id
                    return ev
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                ev_id = int(value)
            elif field == "data":
                data.append(value)

    def take(self, n):
        out = []
        while len(out) < n:
            ev = self.next()
            assert ev is not None, f"stream ended after {out!r}"
            out.append(ev)
        return out

    def until(self, pred):
        """Events up to and including the first for which pred is true."""
        out = []
        while True:
            ev = self.next()
            assert ev is not None, f"stream ended before the awaited event; got {out[-5:]!r}"
            out.append(ev)
            if pred(ev):
                return out

    def close(self):
        self.conn.close()


def last_seq(srv, q):
    """Makes one event (on a queue next to q) and returns its seq, read back from a replay:
    everything after it is newer."""
    job = srv.enqueue(q + "-probe", {"probe": True})
    s = SSE(srv, f"/v1/events?since=0&job={job['id']}")
    ev = s.next()
    s.close()
    assert ev["type"] == "job.created" and ev["job"] == job["id"], ev
    return ev["seq"]


def test_sse_basic_shape_and_content_type(srv, q):
    since = last_seq(srv, q)
    s = SSE(srv, f"/v1/events?since={since}&queues={q}")
    assert s.status == 200
    assert s.resp.getheader("Content-Type").startswith("text/event-stream")
    job = srv.enqueue(q, {"n": 1}, project="p1", group="g1")
    got = srv.fetch_one(q)
    srv.call("POST", f"/v1/jobs/{job['id']}/progress",
             {"lease": got["lease"], "percent": 40, "stage": "tts"})
    srv.complete(got, {"url": "s3://x"})
    evs = s.until(lambda e: e["type"] == "job.completed")
    assert [e["type"] for e in evs] == ["job.created", "job.started", "job.progress",
                                       "job.completed"]
    for e in evs:
        assert e["_id"] == e["seq"]
        assert e["queue"] == q and e["job"] == job["id"]
        assert e["project"] == "p1" and e["group"] == "g1"
        assert isinstance(e["at"], int)
    assert [e["seq"] for e in evs] == list(range(evs[0]["seq"], evs[0]["seq"] + 4))
    assert evs[1]["attempt"] == 1 and evs[1]["worker"] == "test-worker"
    assert evs[2]["progress"]["percent"] == 40 and evs[2]["progress"]["stage"] == "tts"
    assert evs[3]["state"] == "completed" and evs[3]["result"] == {"url": "s3://x"}
    s.close()


def test_order_without_gaps_8_producers_4_workers(server):
    """Every event, in seq order with no gap, while 8 producers and 4 workers run; each job's
    events in the order its life went."""
    q = "busy"
    per_producer = 40
    total = 8 * per_producer
    since = last_seq(server, q)
    sub = SSE(server, f"/v1/events?since={since}", timeout=30)
    stop = threading.Event()
    errors = []

    def produce(n):
        try:
            for i in range(per_producer):
                server.enqueue(q, {"p": n, "i": i})
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    def work():
        try:
            while not stop.is_set():
                for j in server.fetch(q, count=4, wait_ms=200):
                    server.complete(j, {"ok": True})
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    workers = [threading.Thread(target=work) for _ in range(4)]
    for t in threads + workers:
        t.start()
    life = {}
    completed = 0
    prev = since
    try:
        while completed < total:
            ev = sub.next()
            assert ev is not None, "stream ended"
            assert ev["seq"] == prev + 1, f"seq {ev['seq']} after {prev}: a gap or reorder"
            prev = ev["seq"]
            life.setdefault(ev["job"], []).append(ev["type"])
            if ev["type"] == "job.completed":
                completed += 1
    finally:
        stop.set()
        for t in threads + workers:
            t.join()
        sub.close()
    assert not errors, errors
    assert len(life) == total
    for jid, types in life.items():
        assert types == ["job.created", "job.started", "job.completed"], (jid, types)


def test_resume_with_last_event_id_and_since(srv, q):
    since = last_seq(srv, q)
    s = SSE(srv, f"/v1/events?since={since}&queues={q}")
    srv.enqueue(q, 1)
    first = s.next()
    s.close()
    jobs = [srv.enqueue(q, i)["id"] for i in range(5)]  # missed while away
    # Last-Event-ID wins over ?since (an EventSource reconnects with both)
    s = SSE(srv, f"/v1/events?since=0&queues={q}", headers={"Last-Event-ID": str(first["seq"])})
    got = s.take(5)
    s.close()
    assert [e["job"] for e in got] == jobs
    assert got[0]["seq"] > first["seq"]
    s = SSE(srv, f"/v1/events?since={got[2]['seq']}&queues={q}")
    assert [e["job"] for e in s.take(2)] == jobs[3:]
    s.close()


def test_gap_when_the_ring_no_longer_holds_it(server_factory):
    srv = server_factory(["--event-ring", "5"])
    q = "g"
    jobs = [srv.enqueue(q, i)["id"] for i in range(12)]
    s = SSE(srv, "/v1/events?since=1")
    gap = s.next()
    assert gap["type"] == "gap" and gap["_id"] is None, gap
    assert gap["since"] == 1
    evs = s.take(5)
    assert gap["next"] == evs[0]["seq"]
    assert [e["job"] for e in evs] == jobs[-5:]
    s.close()
    # a resume the ring still covers has no gap
    s = SSE(srv, f"/v1/events?since={evs[1]['seq']}")
    assert [e["job"] for e in s.take(3)] == jobs[-3:]
    s.close()


def test_kill9_reuses_no_seq(server):
    q = "k"
    server.enqueue(q, 1)
    before = last_seq(server, q)
    server.kill9()
    server.start()
    job = server.enqueue(q, 2)
    s = SSE(server, f"/v1/events?since={before}")
    gap = s.next()
    # events the old process published may never have reached this subscriber: say so
    assert gap["type"] == "gap", gap
    ev = s.next()
    s.close()
    assert ev["job"] == job["id"] and ev["seq"] > before, (before, ev)
    assert gap["next"] <= ev["seq"]


def test_filters(srv):
    a, b = srv.qname(), srv.qname()
    since = last_seq(srv, a)
    j1 = srv.enqueue(a, 1, project="proj-x", group="grp-x")
    j2 = srv.enqueue(b, 2, project="proj-y")
    got = srv.fetch_one(a)
    srv.complete(got)
    srv.enqueue(b, 3, group="grp-x")

    def replay(params, n):
        s = SSE(srv, f"/v1/events?since={since}&{params}")
        evs = s.take(n)
        s.close()
        return [(e["type"], e["job"]) for e in evs]

    assert replay(f"queues={b}", 2) == [("job.created", j2["id"]), ("job.created", replay(
        f"queues={b}&group=grp-x", 1)[0][1])]
    assert replay(f"queues={a},{b}&types=job.completed", 1) == [("job.completed", j1["id"])]
    assert replay(f"types=job.*&project=proj-y", 1) == [("job.created", j2["id"])]
    assert replay(f"job={j1['id']}", 3) == [("job.created", j1["id"]), ("job.started", j1["id"]),
                                           ("job.completed", j1["id"])]
    assert replay(f"group=grp-x&types=job.started,job.completed&queues={a}", 2) == \
        [("job.started", j1["id"]), ("job.completed", j1["id"])]


@pytest.mark.parametrize("query,field", [("since=abc", "since"), ("since=-1", "since"),
                                         ("queues=", "queues"), ("types=a,,b", "types"),
                                         ("job=", "job")])
def test_bad_arguments(srv, query, field):
    r = srv.request("GET", f"/v1/events?{query}")
    assert_error(r, 400, "invalid_argument", field)
    r = srv.request("GET", "/v1/events", headers={"Last-Event-ID": "x1"})
    assert_error(r, 400, "invalid_argument", "Last-Event-ID")


def test_queue_events(srv, q):
    srv.create_queue(q)
    since = last_seq(srv, q)
    s = SSE(srv, f"/v1/events?since={since}&types=queue.*&queues={q}")
    srv.call("POST", f"/v1/queues/{q}/pause")
    srv.call("POST", f"/v1/queues/{q}/resume")
    srv.call("POST", f"/v1/queues/{q}/drain")
    evs = s.take(4)
    s.close()
    assert [e["type"] for e in evs] == ["queue.paused", "queue.resumed", "queue.draining",
                                       "queue.drained"]
    assert evs[0]["status"] == "paused" and "job" not in evs[0]


def dechunk(body):
    """The payload of a chunked body (as far as it goes)."""
    out, pos = b"", 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return out
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return out
        out += body[eol + 2:eol + 2 + size]
        pos = eol + 2 + size + 2


def test_slow_subscriber_dropped_with_overflow(server_factory):
    srv = server_factory(["--event-buffer", "4096"])
    q = "slow"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # the subscriber is attached (nothing to poll for: it reads nothing)
    for _ in range(10):
        srv.enqueue_bulk(q, [{"data": {"pad": "x" * 100}} for _ in range(500)])
        t = time.monotonic()
        assert srv.call("GET", "/healthz")["status"] == "ok"
        assert time.monotonic() - t < 1.0, "the server slowed down for a slow subscriber"
    # now read what it was given: events in order, then one overflow, then the end
    sock.settimeout(10)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if b"\r\n0\r\n\r\n" in buf:
            break
    sock.close()
    text = dechunk(buf.split(b"\r\n\r\n", 1)[1]).decode()
    datas = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert datas and datas[-1]["type"] == "overflow", datas[-3:]
    seqs = [d["seq"] for d in datas[:-1]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert datas[-1]["last"] == seqs[-1]
    assert len(seqs) < 5000
    # the server is fine, and a new subscriber can resume from where that one stopped
    s = SSE(srv, f"/v1/events?since={seqs[-1]}")
    assert s.next()["seq"] == seqs[-1] + 1
    s.close()


def ws_url(srv, path):
    return f"ws://{srv.host}:{srv.port}{path}"


def test_websocket_events(srv, q):
    since = last_seq(srv, q)
    ws = websocket.create_connection(ws_url(srv, f"/v1/events?since={since}&queues={q}"),
                                     timeout=10)
    job = srv.enqueue(q, {"w": 1})
    got = srv.fetch_one(q)
    srv.complete(got)
    evs = [json.loads(ws.recv()) for _ in range(3)]
    assert [e["type"] for e in evs] == ["job.created", "job.started", "job.completed"]
    assert all(e["job"] == job["id"] for e in evs)
    ws.ping("x")  # answered by the server; the stream goes on
    srv.enqueue(q, 2)
    assert json.loads(ws.recv())["type"] == "job.created"
    ws.close()  # close handshake
    # resume over WebSocket, with a gap-free replay
    ws = websocket.create_connection(ws_url(srv, f"/v1/events?since={evs[0]['seq']}&queues={q}"),
                                     timeout=10)
    assert json.loads(ws.recv())["seq"] == evs[1]["seq"]
    ws.close()


def test_websocket_bad_handshake(srv):
    r = srv.request("GET", "/v1/events", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                  "Sec-WebSocket-Version": "13"})
    assert_error(r, 400, "invalid_argument", "Sec-WebSocket-Key")
    r = srv.request("GET", "/v1/events", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                  "Sec-WebSocket-Version": "8",
                                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert_error(r, 400, "invalid_argument", "Sec-WebSocket-Version")


def test_open_streams_end_on_shutdown(server):
    s = SSE(server, "/v1/events")
    ws = websocket.create_connection(ws_url(server, "/v1/events"), timeout=10)
    rc = server.terminate()
    assert rc == 0, server.log_text()
    assert s.next() is None  # the SSE body ended
    frame = ws.recv_frame()  # a close frame: 1001, going away
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1001
    s.close()


def test_unfiltered_subscribers_share_the_stream(server):
    """Subscribers without a filter share one framed stream: each still sees every event
    from where it joined, in order, whatever the others do."""
    q = "share"
    since = last_seq(server, q)
    a = SSE(server, f"/v1/events?since={since}")
    server.enqueue_bulk(q, [{"data": i} for i in range(50)])
    b = SSE(server, "/v1/events")  # live only: joins between the two bulks
    jobs = server.enqueue_bulk(q, [{"data": i} for i in range(50, 100)])
    c = SSE(server, f"/v1/events?since={since}")  # all of it, by replay
    got_a = a.take(100)
    got_b = b.take(50)
    got_c = c.take(100)
    for got in (got_a, got_b, got_c):
        seqs = [e["seq"] for e in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert got_a == got_c
    assert [e["job"] for e in got_b] == [j["id"] for j in jobs]
    b.close()
    server.enqueue(q, "after b left")
    assert a.next()["seq"] == c.next()["seq"] == got_a[-1]["seq"] + 1
    a.close()
    c.close()
