"""`jobq events`, `jobq wait` and `jobq top` against a real jobqd (docs/cli.md).

`$JOBQ` names the CLI (default build/jobq). The server comes from conftest's `srv`; the CLI's
output is checked against what the HTTP API says.
"""

import json
import os
import subprocess
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOBQ = os.environ.get("JOBQ") or str(REPO / "build" / "jobq")


def jobq(srv, *args, timeout=20):
    return subprocess.run([JOBQ, "--url", srv.url, *args], capture_output=True, text=True,
                          timeout=timeout)


def first_seq(srv, q):
    job = srv.enqueue(q + "-probe", 1)
    r = jobq(srv, "events", "--since", "0", "--job", job["id"], "--count", "1")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["seq"]


def test_events_prints_filtered_json_lines(srv, q):
    since = first_seq(srv, q)
    a = srv.enqueue(q, 1)
    srv.enqueue(q + "-other", 2)
    got = srv.fetch_one(q)
    srv.complete(got)
    r = jobq(srv, "events", "--since", str(since), "--queue", q, "--type", "job.created",
             "--type", "job.completed", "--count", "2")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(e["type"], e["job"]) for e in evs] == [("job.created", a["id"]),
                                                    ("job.completed", a["id"])]


def test_events_usage_errors(srv):
    r = jobq(srv, "events", "--since", "x")
    assert r.returncode == 2 and "--since" in r.stderr
    r = jobq(srv, "events", "stray")
    assert r.returncode == 2


def test_wait_follows_progress_until_completed(srv, q):
    job = srv.enqueue(q, {"v": 1})
    got = srv.fetch_one(q)
    proc = subprocess.Popen([JOBQ, "--url", srv.url, "wait", job["id"]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()  # the job as read once the stream is open
    assert job["id"] in first and "active" in first, first

    def work():
        srv.call("POST", f"/v1/jobs/{job['id']}/progress",
                 {"lease": got["lease"], "percent": 25, "stage": "stt"})
        srv.call("POST", f"/v1/jobs/{job['id']}/progress",
                 {"lease": got["lease"], "percent": 75, "stage": "tts", "eta_ms": 3000})
        srv.complete(got, {"url": "s3://out"})

    t = threading.Thread(target=work)
    t.start()
    out, err = proc.communicate(timeout=20)
    t.join()
    assert proc.returncode == 0, err
    assert json.loads(out)["result"] == {"url": "s3://out"}
    assert "tts" in err and "eta 3s" in err, err  # not a terminal: a line per change


def test_wait_on_a_failed_job_exits_1(srv, q):
    job = srv.enqueue(q, 1, max_attempts=1)
    got = srv.fetch_one(q)
    srv.fail(got, "no luck", retryable=False)
    r = jobq(srv, "wait", job["id"])
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["state"] == "failed"
    r = jobq(srv, "wait", "no-such-job")
    assert r.returncode == 1 and "not_found" in r.stderr


def test_top_prints_a_table(srv, q):
    srv.enqueue(q, 1)
    srv.enqueue(q, 2)
    r = jobq(srv, "top", "--iterations", "1")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["QUEUE", "STATUS", "WAITING", "ACTIVE"]
    row = [line.split() for line in lines[1:] if line.split()[0] == q[:24]]
    assert row and row[0][1] == "active" and row[0][2] == "2", lines
