"""Black-box tests of the `jobq` command-line client against a real jobqd.

`$JOBQ` names the CLI (default build/jobq), `$JOBQD` the server (default build/jobqd). Each
test gets its own server on a free loopback port and a temporary data directory (fixture
`cli_server`, self-contained so this file does not depend on conftest.py). The CLI's effects
are checked through the HTTP API directly (urllib), so the CLI is never its own oracle.

Worker tests run `jobq worker` with small shell scripts; the scripts and the test meet
through files in the test's temporary directory (a "go" file releases a waiting script), so
nothing sleeps longer than the behaviour takes.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBQ = os.environ.get("JOBQ") or str(REPO / "build" / "jobq")
JOBQD = os.environ.get("JOBQD") or str(REPO / "build" / "jobqd")
LISTEN_RE = re.compile(r"jobqd: listening on (\S+):(\d+)")
STARTUP_TIMEOUT = 15.0  # s; sanitizer builds start slowly
ERROR_RE = re.compile(r"^jobq: [a-z_0-9]+: .+", re.M)


def wait_for(fn, timeout=10.0, what="condition"):
    """Call fn until it returns something truthy; return that, or fail after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last {got!r}")
        time.sleep(0.02)


class JobqServer:
    def __init__(self, tmp):
        self.tmp = tmp
        data = tmp / "data"
        data.mkdir()
        self.log = tmp / "jobqd.log"
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                [JOBQD, "--listen", "127.0.0.1:0", "--data", str(data)],
                stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            m = LISTEN_RE.search(self.log.read_text(errors="replace"))
            if m:
                self.url = f"http://{m.group(1)}:{m.group(2)}"
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"jobqd did not start:\n{self.log.read_text()}")
            time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    # -- the HTTP API, as the oracle ---------------------------------------------------------

    def api(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def job(self, jid):
        st, body = self.api("GET", f"/v1/jobs/{jid}")
        assert st == 200, (st, body)
        return body

    def wait_state(self, jid, states, timeout=10.0):
        states = (states,) if isinstance(states, str) else tuple(states)

        def check():
            j = self.job(jid)
            return j if j["state"] in states else None

        return wait_for(check, timeout, f"job {jid} in {states}")

    def enqueue(self, queue, data=None, **opts):
        body = dict(opts, data=data)
        st, job = self.api("POST", f"/v1/queues/{queue}/jobs", body)
        assert st == 201, (st, job)
        return job

    def fetch(self, queue, count=1):
        st, body = self.api("POST", "/v1/fetch",
                            {"queues": [queue], "count": count, "worker": "test:1"})
        assert st == 200, (st, body)
        return body["jobs"]


@pytest.fixture
def cli_server(tmp_path):
    s = JobqServer(tmp_path)
    yield s
    s.stop()


def jobq(server, *args, input=None, env=None, url=True):
    """Runs the CLI; returns the CompletedProcess."""
    cmd = [JOBQ] + (["--url", server.url] if url and server else []) + [str(a) for a in args]
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60,
                          env=env)


def ok(server, *args, **kw):
    """Runs the CLI, expects exit 0, returns its stdout parsed as JSON (None if empty)."""
    r = jobq(server, *args, **kw)
    assert r.returncode == 0, f"jobq {args}: exit {r.returncode}\n{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else None


def fails(server, *args, code, status=1, **kw):
    """Runs the CLI, expects failure with `jobq: <code>: <message>` on stderr."""
    r = jobq(server, *args, **kw)
    assert r.returncode == status, f"jobq {args}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout == "", r.stdout
    if code is not None:
        assert re.search(rf"^jobq: {re.escape(code)}: \S", r.stderr, re.M), r.stderr
    return r


# ---- usage ------------------------------------------------------------------------------


def test_help_and_usage_errors():
    r = jobq(None, "--help")
    assert r.returncode == 0 and "Usage: jobq" in r.stdout
    for cmd in ("queues", "queue", "add", "get", "list", "cancel", "retry", "dead", "stats",
                "worker"):
        assert re.search(rf"^  {cmd}\b", r.stdout, re.M), f"--help does not list {cmd}"
        h = jobq(None, cmd, "--help")
        assert h.returncode == 0 and h.stdout.startswith(f"Usage: jobq {cmd}"), (cmd, h)
    for args in ([], ["frobnicate"], ["add", "q"], ["add", "q", "{not json"],
                 ["add", "--bogus", "q", "{}"], ["list", "--limit", "x"], ["get"],
                 ["worker", "--queue", "q"], ["queue", "explode", "q"], ["--url"]):
        r = jobq(None, *args)
        assert r.returncode == 2, (args, r)
        assert r.stderr.startswith("jobq: "), (args, r.stderr)


def test_unreachable_server_is_an_error(tmp_path):
    # Port 1 on loopback: nothing listens there.
    r = subprocess.run([JOBQ, "--url", "http://127.0.0.1:1", "get", "x"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert ERROR_RE.match(r.stderr), r.stderr


# ---- jobs -------------------------------------------------------------------------------


def test_add_with_options_and_get(cli_server):
    job = ok(cli_server, "add", "render", '{"frame": 7, "tags": ["a"]}', "--priority", "5",
             "--attempts", "4", "--timeout", "60000", "--group", "user-1", "--project", "p-9",
             "--name", "frame-7", "--id", "job-7")
    assert job["id"] == "job-7"
    assert job["queue"] == "render"
    assert job["data"] == {"frame": 7, "tags": ["a"]}
    assert job["state"] == "waiting"
    assert (job["priority"], job["max_attempts"], job["timeout_ms"]) == (5, 4, 60000)
    assert (job["group"], job["project"], job["name"]) == ("user-1", "p-9", "frame-7")

    stored = cli_server.job("job-7")
    assert stored["data"] == {"frame": 7, "tags": ["a"]} and stored["max_attempts"] == 4

    got = ok(cli_server, "get", "job-7")
    assert got["id"] == "job-7" and got["data"] == stored["data"]


def test_add_priority_name_delay_and_stdin(cli_server):
    job = ok(cli_server, "add", "q", "[1, 2]", "--priority", "high")
    assert job["priority"] == 10  # docs/api.md: high=10
    assert cli_server.job(job["id"])["data"] == [1, 2]

    delayed = ok(cli_server, "add", "q", '"later"', "--delay", "60000")
    assert delayed["state"] == "scheduled"
    assert cli_server.job(delayed["id"])["state"] == "scheduled"

    piped = ok(cli_server, "add", "q", "-", input='{"from": "stdin"}\n')
    assert cli_server.job(piped["id"])["data"] == {"from": "stdin"}


def test_url_from_environment(cli_server):
    env = dict(os.environ, JOBQ_URL=cli_server.url)
    job = ok(None, "add", "envq", "1", env=env, url=False)
    assert cli_server.job(job["id"])["queue"] == "envq"


def test_errors_name_the_server_code(cli_server):
    fails(cli_server, "get", "no-such-job", code="not_found")
    ok(cli_server, "add", "q", "{}", "--id", "dup")
    fails(cli_server, "add", "q", "{}", "--id", "dup", code="conflict")
    fails(cli_server, "add", "q", "{}", "--priority", "5000", code="invalid_argument")
    waiting = ok(cli_server, "add", "q", "{}")
    fails(cli_server, "retry", waiting["id"], code="invalid_state")


def test_list_filters_and_limit(cli_server):
    a = [ok(cli_server, "add", "list-a", json.dumps(i))["id"] for i in range(3)]
    ok(cli_server, "add", "list-b", "0")
    delayed = ok(cli_server, "add", "list-a", "9", "--delay", "60000")["id"]

    out = ok(cli_server, "list", "--queue", "list-a")
    assert [j["id"] for j in out["jobs"]] == [delayed] + a[::-1]  # newest first
    assert all(j["queue"] == "list-a" for j in out["jobs"])

    out = ok(cli_server, "list", "--queue", "list-a", "--limit", "2")
    assert [j["id"] for j in out["jobs"]] == [delayed, a[2]]
    assert out["next_cursor"]

    out = ok(cli_server, "list", "--queue", "list-a", "--state", "scheduled")
    assert [j["id"] for j in out["jobs"]] == [delayed]

    out = ok(cli_server, "list", "--state", "waiting,scheduled", "--limit", "1000")
    assert len(out["jobs"]) == 5


def test_cancel_retry_and_dead(cli_server):
    jid = ok(cli_server, "add", "cr", '{"n": 1}')["id"]
    out = ok(cli_server, "cancel", jid)
    assert out["state"] == "cancelled"
    assert cli_server.job(jid)["state"] == "cancelled"

    out = ok(cli_server, "retry", jid)
    assert out["state"] == "waiting" and out["attempt"] == 0
    assert cli_server.job(jid)["state"] == "waiting"

    # Make it fail for good through the worker protocol, then find it in the dead letters.
    [leased] = cli_server.fetch("cr")
    st, body = cli_server.api("POST", f"/v1/jobs/{jid}/fail",
                              {"lease": leased["lease"],
                               "error": {"message": "bad input", "retryable": False}})
    assert st == 200 and body["state"] == "failed", body
    ok(cli_server, "add", "other", "{}")

    dead = ok(cli_server, "dead", "--queue", "cr")
    assert [j["id"] for j in dead["jobs"]] == [jid]
    assert dead["jobs"][0]["error"]["message"] == "bad input"
    assert ok(cli_server, "dead", "--queue", "other")["jobs"] == []
    assert jid in [j["id"] for j in ok(cli_server, "dead")["jobs"]]

    ok(cli_server, "retry", jid)
    assert cli_server.job(jid)["state"] == "waiting"
    assert ok(cli_server, "dead", "--queue", "cr")["jobs"] == []


def test_stats(cli_server):
    ok(cli_server, "add", "st", "{}")
    ok(cli_server, "add", "st", "{}")
    out = ok(cli_server, "stats")
    st, expected = cli_server.api("GET", "/v1/stats")
    assert st == 200
    # The CLI prints the server's answer; timings and uptime move, the counts do not.
    assert isinstance(out, dict) and out.keys() == expected.keys()
    assert out["queues"]["st"]["counts"]["waiting"] == 2

    q = ok(cli_server, "stats", "--queue", "st")
    st, expected = cli_server.api("GET", "/v1/queues/st/stats")
    assert st == 200 and isinstance(q, dict) and q.keys() == expected.keys()
    fails(cli_server, "stats", "--queue", "no-such-queue", code="not_found")


# ---- queues -----------------------------------------------------------------------------


def test_queue_create_get_and_list(cli_server):
    q = ok(cli_server, "queue", "create", "media", "--concurrency", "3", "--max-size", "10",
           "--type", "INGEST", "--description", "media files", "--attempts", "5")
    assert q["name"] == "media"
    assert (q["concurrency"], q["max_size"], q["type"]) == (3, 10, "INGEST")
    assert q["defaults"]["max_attempts"] == 5
    st, stored = cli_server.api("GET", "/v1/queues/media")
    assert st == 200 and stored["concurrency"] == 3 and stored["description"] == "media files"

    fails(cli_server, "queue", "create", "media", code="conflict")
    assert ok(cli_server, "queue", "get", "media")["id"] == q["id"]
    assert ok(cli_server, "queue", "get", q["id"])["name"] == "media"  # {q} may be the id
    assert "media" in [x["name"] for x in ok(cli_server, "queues")["queues"]]
    fails(cli_server, "queue", "get", "nope", code="not_found")

    # Jobs take the queue's defaults; max_size is enforced.
    ok(cli_server, "queue", "create", "tiny", "--max-size", "1")
    assert ok(cli_server, "add", "tiny", "1")["max_attempts"] == 3
    fails(cli_server, "add", "tiny", "2", code="queue_full")


def test_queue_pause_resume_drain_clear_delete(cli_server):
    ok(cli_server, "queue", "create", "ops")
    assert ok(cli_server, "queue", "pause", "ops")["status"] == "paused"
    job = ok(cli_server, "add", "ops", "{}")  # enqueue still accepted while paused
    assert cli_server.fetch("ops") == []
    assert ok(cli_server, "queue", "resume", "ops")["status"] == "active"

    ok(cli_server, "add", "ops", "{}", "--delay", "60000")
    assert ok(cli_server, "queue", "clear", "ops")["removed"] == 2
    assert cli_server.api("GET", f"/v1/jobs/{job['id']}")[0] == 404

    # Drain with a job still running: the queue refuses new jobs until that one is done.
    ok(cli_server, "add", "ops", "{}")
    [running] = cli_server.fetch("ops")
    assert ok(cli_server, "queue", "drain", "ops")["status"] == "draining"
    fails(cli_server, "add", "ops", "{}", code="queue_draining")
    st, _ = cli_server.api("POST", f"/v1/jobs/{running['id']}/complete",
                           {"lease": running["lease"]})
    assert st == 200
    wait_for(lambda: ok(cli_server, "queue", "get", "ops")["status"] == "paused",
             what="drained queue paused")

    r = jobq(cli_server, "queue", "delete", "ops")
    assert r.returncode == 0 and r.stdout == "", r
    assert cli_server.api("GET", "/v1/queues/ops")[0] == 404


def test_queue_update(cli_server):
    ok(cli_server, "queue", "create", "upd", "--concurrency", "1")
    q = ok(cli_server, "queue", "update", "upd", "--concurrency", "7", "--rate-limit",
           "100/60000")
    assert q["concurrency"] == 7 and q["rate_limit"] == {"max": 100, "per_ms": 60000}
    st, stored = cli_server.api("GET", "/v1/queues/upd")
    assert stored["concurrency"] == 7


def test_queue_delete_force(cli_server):
    ok(cli_server, "add", "busy", "{}")
    assert len(cli_server.fetch("busy")) == 1
    fails(cli_server, "queue", "delete", "busy", code="invalid_state")
    assert cli_server.api("GET", "/v1/queues/busy")[0] == 200
    ok(cli_server, "queue", "delete", "busy", "--force")
    assert cli_server.api("GET", "/v1/queues/busy")[0] == 404


# ---- worker -----------------------------------------------------------------------------


class Worker:
    """A running `jobq worker`; stopped with SIGTERM (expecting exit 0) at the end."""

    def __init__(self, server, tmp, queues, command, *extra):
        self.err = tmp / f"worker-{time.monotonic_ns()}.log"
        args = [JOBQ, "--url", server.url, "worker", "--exec", command]
        for q in queues:
            args += ["--queue", q]
        args += list(extra)
        env = dict(os.environ, T_DIR=str(tmp))
        with open(self.err, "wb") as f:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=f, env=env)

    def log(self):
        return self.err.read_text(errors="replace")

    def stop(self, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not exit after SIGTERM:\n{self.log()}")


@pytest.fixture
def worker(cli_server, tmp_path):
    started = []

    def start(queue, script, *extra):
        queues = [queue] if isinstance(queue, str) else queue
        path = tmp_path / f"job-{len(started)}.sh"
        path.write_text(script)
        w = Worker(cli_server, tmp_path, queues, f"exec sh {shlex.quote(str(path))}", *extra)
        started.append(w)
        return w

    yield start
    for w in started:
        rc = w.stop()
        assert rc == 0, f"worker exit status {rc}:\n{w.log()}"


def wait_file(path, timeout=10.0):
    return wait_for(lambda: path.exists() and path.read_text(), timeout, f"file {path.name}")


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# Waits until the test creates $T_DIR/go.$JOBQ_JOB_ID.
WAIT_GO = 'while [ ! -e "$T_DIR/go.$JOBQ_JOB_ID" ]; do sleep 0.02; done\n'


def test_worker_progress_and_json_result(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "w", '{"n": 3}')["id"]
    worker("w", 'echo "PROGRESS 10 Loading"\n'
                'echo "PROGRESS 42.5 Analyzing the audio"\n'
                'echo "ready" > "$T_DIR/ready.$JOBQ_JOB_ID"\n' + WAIT_GO +
                'echo "some chatter"\n'
                'echo \'{"words": 812, "ok": true}\'\n')
    wait_file(tmp_path / f"ready.{jid}")

    def progressed():
        p = cli_server.job(jid).get("progress") or {}
        return p if p.get("percent") == 42.5 else None

    p = wait_for(progressed, what="progress 42.5")
    assert p["stage"] == "Analyzing the audio"
    assert cli_server.job(jid)["state"] == "active"

    (tmp_path / f"go.{jid}").touch()
    done = cli_server.wait_state(jid, ("completed", "failed"))
    assert done["state"] == "completed", done
    assert done["result"] == {"words": 812, "ok": True}


def test_worker_non_json_last_line_gives_no_result(cli_server, worker):
    jid = ok(cli_server, "add", "w", "{}")["id"]
    worker("w", 'echo \'{"not": "last"}\'\necho "all done"\n')
    done = cli_server.wait_state(jid, ("completed", "failed"))
    assert done["state"] == "completed", done
    assert done["result"] is None


def test_worker_stdin_and_environment(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "envq", '{"input": "x.wav"}', "--name", "stt")["id"]
    worker("envq", 'cat > "$T_DIR/stdin.json"\n'
                   'env | grep "^JOBQ_" > "$T_DIR/env.txt"\n')
    cli_server.wait_state(jid, "completed")
    job = json.loads((tmp_path / "stdin.json").read_text())
    assert job["id"] == jid and job["queue"] == "envq" and job["name"] == "stt"
    assert job["data"] == {"input": "x.wav"}
    assert job["attempt"] == 0
    assert isinstance(job.get("lease"), str) and job["lease"]  # the job as fetched
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines())
    assert env["JOBQ_JOB_ID"] == jid
    assert env["JOBQ_ATTEMPT"] == "1"
    assert env["JOBQ_QUEUE"] == "envq"
    assert env["JOBQ_URL"] == cli_server.url


def test_worker_exit_75_retries(cli_server, worker, tmp_path):
    # A long backoff: after the first attempt the job must sit in `retrying`.
    slow = ok(cli_server, "add", "t", '"slow"', "--attempts", "3",
              "--options", '{"backoff": {"type": "fixed", "delay_ms": 600000}}')["id"]
    # A short one: the second attempt runs, sees JOBQ_ATTEMPT=2, and succeeds.
    fast = ok(cli_server, "add", "t", '"fast"', "--attempts", "3",
              "--options", '{"backoff": {"type": "fixed", "delay_ms": 50}}')["id"]
    worker("t", 'echo "$JOBQ_ATTEMPT" >> "$T_DIR/attempts.$JOBQ_JOB_ID"\n'
                'if [ "$JOBQ_ATTEMPT" = 1 ]; then echo "try later" >&2; exit 75; fi\n'
                'echo \'"second time lucky"\'\n')

    j = cli_server.wait_state(slow, "retrying")
    assert j["attempt"] == 1
    assert j["error"]["retryable"] is True
    assert "75" in j["error"]["message"]

    j = cli_server.wait_state(fast, ("completed", "failed"))
    assert j["state"] == "completed", j
    assert j["result"] == "second time lucky"
    assert (tmp_path / f"attempts.{fast}").read_text().split() == ["1", "2"]
    assert (tmp_path / f"attempts.{slow}").read_text().split() == ["1"]


def test_worker_exit_1_fails_for_good(cli_server, worker):
    jid = ok(cli_server, "add", "f", "{}", "--attempts", "5")["id"]
    # A stray byte that is not UTF-8 must not keep the failure from being reported.
    worker("f", "printf 'cannot parse \\377 input\\n' >&2\nexit 3\n")
    j = cli_server.wait_state(jid, ("failed", "retrying", "completed"))
    assert j["state"] == "failed", j
    assert j["attempt"] == 1
    assert j["error"]["retryable"] is False
    assert "3" in j["error"]["message"]
    assert "cannot parse ? input" in j["error"]["message"]  # the last stderr line
    assert ok(cli_server, "logs", jid)["lines"] == ["cannot parse ? input"]
    assert jid in [x["id"] for x in ok(cli_server, "dead", "--queue", "f")["jobs"]]


def test_worker_killed_by_signal_fails(cli_server, worker):
    jid = ok(cli_server, "add", "sig", "{}", "--attempts", "5")["id"]
    worker("sig", "kill -KILL $$\n")
    j = cli_server.wait_state(jid, ("failed", "retrying", "completed"))
    assert j["state"] == "failed", j
    assert j["error"]["retryable"] is False
    assert "signal" in j["error"]["message"] and "9" in j["error"]["message"]


def test_worker_stderr_goes_to_the_job_log(cli_server, worker):
    jid = ok(cli_server, "add", "logq", "{}")["id"]
    worker("logq", 'echo "first line" >&2\necho "not a log line"\necho "second line" >&2\n')
    cli_server.wait_state(jid, "completed")
    st, body = cli_server.api("GET", f"/v1/jobs/{jid}/logs")
    assert st == 200 and body["lines"] == ["first line", "second line"], body
    assert ok(cli_server, "logs", jid)["lines"] == ["first line", "second line"]


def test_worker_checkpoint_is_stored(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "ck", "{}")["id"]
    worker("ck", 'echo \'CHECKPOINT {"frame": 120, "file": "part-3.mp4"}\'\n' + WAIT_GO)

    def checkpointed():
        return cli_server.job(jid).get("checkpoint")

    cp = wait_for(checkpointed, what="checkpoint")
    assert cp == {"frame": 120, "file": "part-3.mp4"}
    assert cli_server.job(jid)["state"] == "active"
    (tmp_path / f"go.{jid}").touch()
    cli_server.wait_state(jid, "completed")


def test_worker_cancel_kills_the_command(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "cx", "{}")["id"]
    # The shell and its sleep both belong to the command's process group; the trap shows
    # that SIGTERM came first (SIGKILL would follow only after 5 s).
    worker("cx", 'trap \'echo term > "$T_DIR/term"; exit 143\' TERM\n'
                 'sleep 30 &\necho $! > "$T_DIR/sleep.pid"\necho $$ > "$T_DIR/sh.pid"\nwait\n',
           "--lease-ms", "1500")
    sh_pid = int(wait_file(tmp_path / "sh.pid"))
    sleep_pid = int(wait_file(tmp_path / "sleep.pid"))
    cli_server.wait_state(jid, "active")

    t0 = time.monotonic()
    out = ok(cli_server, "cancel", jid)
    assert out["state"] in ("active", "cancelled")
    wait_for(lambda: gone(sh_pid) and gone(sleep_pid), timeout=10, what="command killed")
    elapsed = time.monotonic() - t0
    assert (tmp_path / "term").read_text() == "term\n"
    assert elapsed < 4.5, elapsed  # heartbeats every 0.5 s; SIGTERM works at once
    j = cli_server.wait_state(jid, ("cancelled", "failed", "completed"), timeout=10)
    assert j["state"] == "cancelled", j


def test_worker_timeout_kills_the_command(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "to", "{}", "--timeout", "1000", "--attempts", "1")["id"]
    # The command ignores SIGTERM: only the SIGKILL that follows 5 s later stops it.
    worker("to", 'trap "" TERM\necho $$ > "$T_DIR/sh.pid"\nsleep 30\n')
    sh_pid = int(wait_file(tmp_path / "sh.pid"))
    j = cli_server.wait_state(jid, ("failed", "completed"), timeout=10)
    assert j["state"] == "failed", j
    assert j["error"].get("type") == "timeout", j
    wait_for(lambda: gone(sh_pid), timeout=15, what="command killed")


def test_worker_concurrency(cli_server, worker, tmp_path):
    ids = [ok(cli_server, "add", "cc", json.dumps(i))["id"] for i in range(4)]
    worker("cc", 'touch "$T_DIR/started.$JOBQ_JOB_ID"\n' + WAIT_GO, "--concurrency", "3")

    def started():
        s = [i for i in ids if (tmp_path / f"started.{i}").exists()]
        return s if len(s) == 3 else None

    first = wait_for(started, what="three commands running")
    assert len([i for i in ids if cli_server.job(i)["state"] == "active"]) == 3
    rest = [i for i in ids if i not in first]
    assert cli_server.job(rest[0])["state"] == "waiting"

    (tmp_path / f"go.{first[0]}").touch()
    cli_server.wait_state(first[0], "completed")
    wait_for(lambda: (tmp_path / f"started.{rest[0]}").exists(), what="the freed slot used")
    for i in ids:
        (tmp_path / f"go.{i}").touch()
    for i in ids:
        cli_server.wait_state(i, "completed")


def test_worker_serves_several_queues(cli_server, worker):
    a = ok(cli_server, "add", "qa", '"a"')["id"]
    b = ok(cli_server, "add", "qb", '"b"')["id"]
    worker(["qa", "qb"], 'echo "\\"$JOBQ_QUEUE\\""\n')
    assert cli_server.wait_state(a, "completed")["result"] == "qa"
    assert cli_server.wait_state(b, "completed")["result"] == "qb"


def test_worker_sigterm_finishes_running_jobs(cli_server, worker, tmp_path):
    first = ok(cli_server, "add", "sd", "{}")["id"]
    w = worker("sd", 'touch "$T_DIR/started.$JOBQ_JOB_ID"\n' + WAIT_GO + 'echo \'"finished"\'\n')
    wait_for(lambda: (tmp_path / f"started.{first}").exists(), what="first job running")

    w.proc.send_signal(signal.SIGTERM)
    second = ok(cli_server, "add", "sd", "{}")["id"]
    time.sleep(0.5)  # the worker must still be there, waiting for its command
    assert w.proc.poll() is None, w.log()

    (tmp_path / f"go.{first}").touch()
    assert w.proc.wait(15) == 0, w.log()
    assert cli_server.job(first)["state"] == "completed"
    assert cli_server.job(first)["result"] == "finished"
    assert cli_server.job(second)["state"] == "waiting"  # nothing fetched after the signal


def test_idle_worker_exits_on_sigterm(cli_server, worker):
    w = worker("idle", "true\n")
    wait_for(lambda: "fetching" in w.log(), what="worker started")
    t0 = time.monotonic()
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(10) == 0, w.log()
    assert time.monotonic() - t0 < 5  # the parked long-poll does not hold it
    jid = ok(cli_server, "add", "idle", "{}")["id"]
    assert cli_server.job(jid)["state"] == "waiting"


def test_worker_second_signal_stops_the_command(cli_server, worker, tmp_path):
    jid = ok(cli_server, "add", "ss", "{}", "--attempts", "3")["id"]
    w = worker("ss", 'echo $$ > "$T_DIR/sh.pid"\nsleep 30\n')
    sh_pid = int(wait_file(tmp_path / "sh.pid"))

    w.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # two separate signals, not one coalesced pending signal
    w.proc.send_signal(signal.SIGTERM)
    assert w.proc.wait(15) == 0, w.log()
    assert gone(sh_pid)
    j = cli_server.job(jid)
    assert j["state"] in ("retrying", "waiting"), j  # reported retryable, not lost or final
    assert j["error"]["retryable"] is True
