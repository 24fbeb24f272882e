"""Store failure: the disk refuses writes (a file-size limit of one byte, set on the running
server with prlimit, makes every write fail with EFBIG as a full disk would). The server
answers changes with 503, keeps serving reads, corrupts nothing, and recovers by itself
when the disk does."""

import signal
import sqlite3
import subprocess

from conftest import assert_error, wait_until


def prlimit_fsize(pid, soft):
    subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={soft}:unlimited"], check=True)


def test_disk_full_answers_503_and_recovers(server):
    s = server
    q = s.qname()
    before = s.enqueue(q, {"n": "before"})
    pid = s.proc.pid

    prlimit_fsize(pid, 1)
    try:
        st, body = s.post(f"/v1/queues/{q}/jobs", {"data": {"n": "during"}})
        assert st == 503, (st, body)
        assert body["error"]["code"] == "unavailable"
        # While the store fails: changes are refused before they touch anything, reads work.
        assert_error(s.request("POST", f"/v1/queues/{q}/jobs", {"data": 1}), 503, "unavailable")
        assert_error(s.request("POST", "/v1/fetch", {"queues": [q]}), 503, "unavailable")
        assert_error(s.request("GET", "/readyz"), 503, "unavailable")
        assert s.job(before["id"])["state"] == "waiting"
        st, _ = s.get("/healthz")
        assert st == 200
    finally:
        prlimit_fsize(pid, "unlimited")

    # The kept batch is retried by the server itself; then it serves normally.
    wait_until(lambda: s.get("/readyz")[0] == 200, timeout=10, what="readyz after recovery")
    after = s.enqueue(q, {"n": "after"})
    got = s.fetch(q, count=10)
    assert before["id"] in {j["id"] for j in got}

    # Nothing acknowledged is lost across a crash, and the file is intact.
    s.kill9()
    s.restart()
    assert s.job(before["id"])["data"] == {"n": "before"}
    assert s.job(after["id"])["data"] == {"n": "after"}
    s.kill9()
    db = sqlite3.connect(str(s.data_dir / "jobq.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    s.restart()


def test_sigterm_while_the_store_fails_exits_nonzero(server):
    s = server
    q = s.qname()
    kept = s.enqueue(q, {"n": "kept"})
    prlimit_fsize(s.proc.pid, 1)
    st, body = s.post(f"/v1/queues/{q}/jobs", {"data": {"n": "refused"}})
    assert st == 503, (st, body)
    s.proc.send_signal(signal.SIGTERM)
    # the stop waits for the store a while, then gives up and says so in its exit status
    assert s.proc.wait(timeout=30) == 2
    s.restart()
    assert s.job(kept["id"])["data"] == {"n": "kept"}
