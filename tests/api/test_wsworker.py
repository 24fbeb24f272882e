"""/v1/worker: the worker protocol over one WebSocket (docs/events.md).

Jobs pushed up to the credit granted, the verbs answered on the socket with the request's
id, errors naming the field, a dropped socket leaving its jobs to their lease or giving them
back at once when asked, and the server closing the socket when it stops.
"""

import json

import pytest
import websocket

from conftest import assert_error, wait_until


def connect(srv):
    return websocket.create_connection(f"ws://{srv.host}:{srv.port}/v1/worker", timeout=10)


def send(ws, **m):
    ws.send(json.dumps(m))


def recv(ws):
    return json.loads(ws.recv())


def recv_op(ws, op):
    """The next message with this op (pushed jobs and replies may interleave)."""
    while True:
        m = recv(ws)
        if m["op"] == op:
            return m
        assert m["op"] in ("job", "fetch"), m


def test_push_up_to_credit_and_verbs(srv, q):
    ids = [srv.enqueue(q, {"n": i})["id"] for i in range(3)]
    ws = connect(srv)
    send(ws, op="fetch", id=1, queues=[q], credit=2, worker="ws-box")
    got = [recv(ws), recv(ws), recv(ws)]
    jobs = [m["job"] for m in got if m["op"] == "job"]
    reply = [m for m in got if m["op"] == "fetch"][0]
    assert reply["id"] == 1 and reply["credit"] == 0
    assert [j["id"] for j in jobs] == ids[:2]
    assert all(j["state"] == "active" and j["lease"] for j in jobs)
    assert srv.job(ids[2])["state"] == "waiting"  # no credit left for it
    j = jobs[0]
    send(ws, op="heartbeat", id="hb", job=j["id"], lease=j["lease"], extend_ms=60000)
    hb = recv_op(ws, "heartbeat")
    assert hb["id"] == "hb" and hb["job"] == j["id"] and hb["cancel_requested"] is False
    send(ws, op="progress", id=2, job=j["id"], lease=j["lease"], percent=50, stage="mux")
    assert recv_op(ws, "progress")["id"] == 2
    assert srv.job(j["id"])["progress"]["stage"] == "mux"
    send(ws, op="logs", id=3, job=j["id"], lease=j["lease"], lines=["a", "b"])
    assert recv_op(ws, "logs")["appended"] == 2
    send(ws, op="complete", id=4, job=j["id"], lease=j["lease"], result={"ok": 1})
    done = recv_op(ws, "complete")
    assert done == {"op": "complete", "id": 4, "job": j["id"], "state": "completed"}
    assert srv.job(j["id"])["result"] == {"ok": 1}
    k = jobs[1]
    send(ws, op="fail", id=5, job=k["id"], lease=k["lease"],
         error={"message": "bad input", "retryable": False})
    assert recv_op(ws, "fail")["state"] == "failed"
    # more credit: the waiting job comes at once, a new one as soon as it is enqueued
    send(ws, op="fetch", id=6, credit=2)
    m = recv(ws)
    assert m["op"] == "job" and m["job"]["id"] == ids[2]
    assert recv_op(ws, "fetch")["credit"] == 1
    late = srv.enqueue(q, {"late": True})
    m = recv(ws)
    assert m["op"] == "job" and m["job"]["id"] == late["id"]
    assert m["job"]["worker"] == "ws-box"
    ws.close()


@pytest.mark.parametrize("msg,field", [
    ({"op": "fetch", "credit": 1}, "queues"),
    ({"op": "fetch", "queues": "x"}, "queues"),
    ({"op": "fetch", "queues": ["x"], "credit": -1}, "credit"),
    ({"op": "fetch", "queues": ["x"], "bogus": 1}, "bogus"),
    ({"op": "complete", "lease": "x"}, "job"),
    ({"op": "complete", "job": "nope"}, "lease"),
    ({"op": "fail", "job": "J", "lease": "L", "error": "x"}, "error"),
    ({"op": "progress", "job": "J", "lease": "L", "percent": 200}, "percent"),
    ({"op": "dance"}, "op"),
    ({"id": 1}, "op"),
])
def test_bad_messages_name_the_field(srv, q, msg, field):
    job = srv.enqueue(q, 1)
    got = srv.fetch_one(q)
    msg = json.loads(json.dumps(msg).replace('"J"', json.dumps(job["id"]))
                     .replace('"L"', json.dumps(got["lease"])))
    msg["id"] = "x1"
    ws = connect(srv)
    ws.send(json.dumps(msg))
    m = recv(ws)
    assert m["op"] == "error" and m["id"] == "x1", m
    assert m["error"]["code"] == "invalid_argument"
    assert m["error"]["details"]["field"] == field, m
    # the connection goes on
    ws.send("not json")
    assert recv(ws)["error"]["code"] == "invalid_json"
    send(ws, op="complete", id=9, job=job["id"], lease="0000000000000001")
    assert recv(ws)["error"]["code"] == "lease_lost"
    ws.close()


def test_drop_leaves_jobs_to_their_lease(srv, q):
    srv.create_queue(q, defaults={"lease_ms": 400})
    job = srv.enqueue(q, 1)
    ws = connect(srv)
    send(ws, op="fetch", queues=[q], credit=1)
    assert recv(ws)["op"] == "job"
    ws.sock.close()  # no close handshake: the worker vanished
    assert srv.job(job["id"])["state"] == "active"
    srv.wait_state(job["id"], "waiting", timeout=10)
    assert srv.job(job["id"])["stalls"] == 1


def test_release_on_close_gives_jobs_back_at_once(srv, q):
    job = srv.enqueue(q, 1)
    ws = connect(srv)
    send(ws, op="fetch", queues=[q], credit=1, release_on_close=True)
    pushed = recv(ws)["job"]
    ws.close()
    j = srv.wait_state(job["id"], "waiting")
    assert j["attempt"] == 0 and j["stalls"] == 0
    # the old lease is dead
    r = srv.request("POST", f"/v1/jobs/{job['id']}/complete", {"lease": pushed["lease"]})
    assert_error(r, 409)


def test_plain_get_is_426(srv):
    r = srv.request("GET", "/v1/worker")
    assert_error(r, 426, "upgrade_required")


def test_server_stop_closes_worker_sockets(server):
    ws = connect(server)
    send(ws, op="fetch", queues=["x"], credit=1)
    assert recv(ws)["op"] == "fetch"
    assert server.terminate() == 0, server.log_text()
    frame = ws.recv_frame()
    assert frame.opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1001
